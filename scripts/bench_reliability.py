#!/usr/bin/env python3
"""Reliability benchmark of the ROS fusion node: valid frames under a flood of malformed keypoint messages.

A simulated rig (lab, 4 cameras, realistic noise) publishes each camera's valid keypoints among
``--malformed-per-valid`` malformed messages on the same topic (skelsplat_ros/ros/hostile.py: wrong lengths,
NaN/inf/1e38 pixels, confidences outside [0, 1], 0-50 people, unknown or empty skeleton names, odd frame ids,
stamps at 0 or far away), in a random order. The fusion node runs as a subprocess with the defaults of
config/skelsplat.yaml; this process publishes and listens.

The rig sends nothing until the fresh node subscribes (which it does once warmed up); every frame from then on counts,
the start included. ``--invalid-only CAM`` makes cameras send only malformed messages, ``--silent CAM`` nothing at all:
the node's /diagnostics must then call them "invalid input" and "dead", and every other camera "ok".

Reported per run (a clean baseline with no malformed message first, measured in the same invocation):
valid frames out (fused outputs whose stamp is a valid frame's / valid frames published, the last 0.5 s excluded),
latency of valid frames (capture stamp -> `skeletons` received here) median and p99, MPJPE against ground truth,
the node's rejections by kind, its RSS at the start and at the end, whether it stayed alive, and the state of each
camera in its last /diagnostics.

Run from the repository: ``.venv/bin/python scripts/bench_reliability.py --seconds 120``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from skelsplat_ros.bench.process_stats import cpu_seconds, percentile, rss_mb
from skelsplat_ros.ros.demo import Monitor, ros_environment, start_node_process, stop_processes


def _counters(diagnostics: dict[str, str]) -> dict[str, int]:
    """The node's cumulative input and drop counters from a /diagnostics status."""
    return {k: int(v) for k, v in diagnostics.items()
            if k.startswith(("rejected", "dropped.", "capped", "accepted", "fusion_errors")) and v.isdigit()}


def run(malformed_per_valid: int, seconds: float, rate: float, method: str, seed: int, workdir: Path,
        sample_every: float, node_params: dict[str, str] | None = None, invalid_only: tuple[str, ...] = (),
        silent: tuple[str, ...] = (), node_env: dict[str, str] | None = None) -> dict:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from skelsplat_ros.geometry.calibration import save_calibration
    from skelsplat_ros.ros.hostile import HostileRigNode
    from skelsplat_ros.sim import make_scenario

    from skelsplat_ros.ros.node import NODE_NAME

    scenario = make_scenario("lab", num_frames=int(rate * 40), fps=rate, noise="realistic", seed=seed)
    calibration = workdir / "calibration.toml"
    save_calibration(scenario.rig, calibration)
    context = Context()
    rclpy.init(context=context, args=[])
    listener = Node("skelsplat_bench_reliability", context=context)
    monitor = Monitor(keep_joints=True)
    monitor.attach(listener)
    hostile = HostileRigNode(scenario, rate, malformed_per_valid=malformed_per_valid, seed=seed + 100,
                             wait_for_node=NODE_NAME, invalid_only=invalid_only, silent=silent, context=context)
    node_process = start_node_process("skelsplat_ros.ros.node",
                                      {"calibration_file": str(calibration), "method": method,
                                       "diagnostics_period": 1.0, **(node_params or {})}, workdir / "node.log",
                                      env=node_env)
    # The rig publishes from its own thread, so that listening never delays it.
    rig_executor = SingleThreadedExecutor(context=context)
    rig_executor.add_node(hostile)
    rig_thread = threading.Thread(target=rig_executor.spin, daemon=True)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    samples: list[dict] = []
    alive = True
    try:
        rig_thread.start()
        # The run starts with the rig's first frame, sent once the node subscribed.
        deadline = time.monotonic() + 120.0
        while hostile.publishing_since is None:
            executor.spin_once(timeout_sec=0.01)
            if node_process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not subscribe; its log is in {workdir}")
        started = time.time() - (time.monotonic() - hostile.publishing_since)
        cpu_start = cpu_seconds(node_process.pid)
        next_sample = time.monotonic()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
            if time.monotonic() >= next_sample:
                next_sample += sample_every
                samples.append({"t": time.time() - started, "rss_mb": rss_mb(node_process.pid),
                                "sync_pending": monitor.diagnostics.get("sync_pending", "-"),
                                "worker_queue": monitor.diagnostics.get("worker_queue", "-")})
            if node_process.poll() is not None:
                alive = False
                break
        stopped = time.time()
        cpu = cpu_seconds(node_process.pid) - cpu_start
        flush = time.monotonic() + 1.5  # the last frames, and one more diagnostics message
        while time.monotonic() < flush:
            executor.spin_once(timeout_sec=0.02)
        samples.append({"t": time.time() - started, "rss_mb": rss_mb(node_process.pid),
                        "sync_pending": monitor.diagnostics.get("sync_pending", "-"),
                        "worker_queue": monitor.diagnostics.get("worker_queue", "-")})
        alive = alive and node_process.poll() is None
        diagnostics = dict(monitor.diagnostics)
        counters_end = _counters(diagnostics)
        sent = dict(hostile.sent)
        frame_of_stamp = dict(hostile.frame_of_stamp)
    finally:
        stop_processes([node_process])
        rig_executor.shutdown(timeout_sec=2.0)
        context.try_shutdown()

    window = (started, stopped - 0.5)
    valid = [ns for ns in frame_of_stamp if window[0] <= ns * 1e-9 < window[1]]
    records = {r.stamp_ns: r for r in monitor.records if window[0] <= r.stamp < window[1]}
    out = [records[ns] for ns in valid if ns in records and records[ns].joints is not None]
    garbage_out = sum(1 for ns in records if ns not in frame_of_stamp)
    latency_ms = np.array([r.received - r.stamp for r in out]) * 1e3
    errors = [np.nanmean(np.linalg.norm(r.joints - scenario.ground_truth[frame_of_stamp[r.stamp_ns]], axis=-1))
              for r in out]
    rss = [s["rss_mb"] for s in samples]
    return {
        "malformed_per_valid": malformed_per_valid, "seconds": seconds, "rate": rate, "method": method,
        "valid_frames": len(valid), "valid_out": len(out), "valid_out_percent": 100.0 * len(out) / max(len(valid), 1),
        "garbage_frames_out": garbage_out,
        "latency_median_ms": percentile(latency_ms, 50), "latency_p99_ms": percentile(latency_ms, 99),
        "latency_max_ms": float(latency_ms.max()) if latency_ms.size else float("nan"),
        "mpjpe_mm": 1e3 * float(np.nanmean(errors)) if errors else float("nan"),
        "rss_start_mb": rss[0] if rss else float("nan"), "rss_end_mb": rss[-1] if rss else float("nan"),
        "rss_max_mb": max(rss) if rss else float("nan"),
        "node_cpu_percent": 100.0 * cpu / max(stopped - started, 1e-9),
        "alive": alive, "sent": sent,
        # Since the node started, which is when the measured window starts.
        "node_counters": {k: v for k, v in counters_end.items() if v},
        "dead_cameras": diagnostics.get("dead_cameras", "?"), "lagging_cameras": diagnostics.get("lagging_cameras", "?"),
        "invalid_input_cameras": diagnostics.get("invalid_input_cameras", "?"),
        "camera_states": {k.split(".", 1)[1]: v for k, v in diagnostics.items() if k.startswith("camera.")},
        "status": monitor.diagnostics_message,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run")
    parser.add_argument("--invalid-only", default="", help="comma-separated cameras that send only malformed messages")
    parser.add_argument("--silent", default="", help="comma-separated cameras that send nothing")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    parser.add_argument("--malformed-per-valid", type=int, default=3)
    parser.add_argument("--method", default="skelsplat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true", help="no clean run first")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling period, s")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a node parameter for every run (repeatable), e.g. input_queue_depth:=5")
    parser.add_argument("--node-from", default="",
                        help="run the fusion node from this source tree (first on PYTHONPATH), e.g. an export of main")
    parser.add_argument("--domain-id", type=int, default=None)
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    domain = ros_environment(args.domain_id)
    workdir = Path(tempfile.mkdtemp(prefix="skelsplat_bench_reliability_"))
    print(f"bench_reliability: ROS_DOMAIN_ID={domain} (loopback only), logs in {workdir}")
    node_params = dict(item.split(":=", 1) for item in args.param)
    mixes = ([0] if not args.skip_baseline else []) + [args.malformed_per_valid]
    results = []
    for mix in mixes:
        sub = workdir / f"mix{mix}"
        sub.mkdir()
        result = run(mix, args.seconds, args.rate, args.method, args.seed, sub, args.sample_every, node_params,
                     tuple(c for c in args.invalid_only.split(",") if c), tuple(c for c in args.silent.split(",") if c),
                     {"PYTHONPATH": args.node_from} if args.node_from else None)
        results.append(result)
        print(f"\nmalformed per valid {mix}: {result['valid_out']}/{result['valid_frames']} valid frames out "
              f"({result['valid_out_percent']:.1f} %), latency median {result['latency_median_ms']:.1f} ms, "
              f"p99 {result['latency_p99_ms']:.1f} ms, max {result['latency_max_ms']:.1f} ms, "
              f"MPJPE {result['mpjpe_mm']:.1f} mm, garbage frames out {result['garbage_frames_out']}")
        print(f"  node: alive {result['alive']}, CPU {result['node_cpu_percent']:.0f} %, RSS "
              f"{result['rss_start_mb']:.1f} -> {result['rss_end_mb']:.1f} MB (max {result['rss_max_mb']:.1f}), "
              f"dead cameras [{result['dead_cameras']}], invalid input [{result['invalid_input_cameras']}], "
              f"lagging [{result['lagging_cameras']}]")
        print("  cameras: " + ", ".join(f"{c} {state}" for c, state in result["camera_states"].items())
              + f"; status: {result['status']}")
        print("  sent: " + ", ".join(f"{k}={v}" for k, v in sorted(result["sent"].items())))
        counters = result["node_counters"]
        taken = counters.get("accepted", 0) + sum(v for k, v in counters.items() if k.startswith("rejected."))
        print(f"  node counters (window): taken {taken} of {sum(result['sent'].values())} sent; "
              + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"\nfigures written to {args.json}")
    return 0 if all(r["alive"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
