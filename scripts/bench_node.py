#!/usr/bin/env python3
"""Benchmark of the ROS fusion node: latency and accuracy (a), and a soak run (b).

(a) latency: simulated rig (--rig; lab, 4 cameras, by default) at 30 Hz, for --latency-seconds, once per
    --methods entry, counted from the rig's first frame: the rig sends nothing until the fresh node subscribes
    (which it does once warmed up), and every frame from then on counts, the start included. Reports the end-to-end
    latency (capture stamp -> `skeletons` received by this process) median and p99, the share of captured frames
    that came out fused, the same over the first second alone, and the streaming MPJPE against ground truth next to
    robust triangulation of exactly the same frames (the keypoints this process received on the camera topics).
    --trace N prints the latency of each of the first N frames.
    With --people N (2-5) the scene has N people (shuffled detections, id -1): the MPJPE is that of the skeletons
    matched to a true person (300 mm gate), with recall, precision and id switches instead of the robust column.
    --hri on,off runs each method with the node's ROS4HRI output on and off, one after the other; this process then
    also reads /tf and /humans/bodies/tracked, as an HRI client would (so the node builds and sends the frames).
    --depth-filter on,off likewise with the node's depth_filter parameter on and off (issue 21 item 2, lag 0).
(b) soak: surround rig, 8 cameras at 60 Hz, for --soak-seconds (default 60; the issue asks for 10 minutes:
    --soak-seconds 600). Samples the node's queues, drops by reason and RSS over time; prints whether memory
    stays flat (slope of a line fit over the second half of the run). Also from the rig's first frame.

The sim rig and the fusion node run as subprocesses (``python -m``), this process only listens. DDS stays on
loopback in a domain of its own. Run from the repository: ``.venv/bin/python scripts/bench_node.py``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from skelsplat_ros.bench.process_stats import percentile, rss_mb
from skelsplat_ros.ros.demo import Monitor, ros_environment, start_rig_and_node, stop_processes


class Session:
    """Sim rig + fusion node subprocesses and an in-process listener node, up before the rig sends its first frame
    (see :func:`skelsplat_ros.ros.demo.start_rig_and_node`)."""

    def __init__(self, workdir: Path, sim_params: dict, node_params: dict, record_keypoints: bool,
                 node_env: dict[str, str] | None = None, hri_client: bool = False) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from skelsplat_ros.msg import Keypoints2DArray

        self.workdir = workdir
        self.context = Context()
        rclpy.init(context=self.context, args=[])
        self.node = Node("skelsplat_bench", context=self.context)
        self.monitor = Monitor(keep_joints=True)
        self.monitor.attach(self.node)
        # stamp ns -> {camera: raw message}; parsed only for the frames that matter, at the end.
        self.keypoints: collections.OrderedDict[int, dict] = collections.OrderedDict()
        if record_keypoints:
            from skelsplat_ros.sim import make_rig

            for camera in make_rig(sim_params.get("rig", "lab")).names:
                self.node.create_subscription(
                    Keypoints2DArray, f"{camera}/keypoints",
                    lambda msg, camera=camera: self._on_keypoints(camera, msg), qos_profile_sensor_data)
        self.tf_messages = self.tracked_messages = 0
        if hri_client:
            from hri_msgs.msg import IdsList
            from rclpy.qos import QoSProfile
            from tf2_msgs.msg import TFMessage

            def count(name: str):
                return lambda _: setattr(self, name, getattr(self, name) + 1)

            self.node.create_subscription(TFMessage, "/tf", count("tf_messages"), QoSProfile(depth=100))
            self.node.create_subscription(IdsList, "/humans/bodies/tracked", count("tracked_messages"),
                                          QoSProfile(depth=100))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.processes = start_rig_and_node(workdir, sim_params, node_params, self.node, node_env=node_env)
        self.node_process = self.processes[1]
        from skelsplat_ros.geometry.calibration import load_calibration

        self.rig = load_calibration(workdir / "calibration.toml")

    def _on_keypoints(self, camera: str, msg) -> None:
        from skelsplat_ros.ros.conversions import stamp_to_ns

        self.keypoints.setdefault(stamp_to_ns(msg.header.stamp), {})[camera] = msg
        while len(self.keypoints) > 100_000:
            self.keypoints.popitem(last=False)

    def spin_for(self, seconds: float, every: float | None = None, callback=None) -> None:
        end = time.monotonic() + seconds
        next_call = time.monotonic() + (every or 0.0)
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)
            if every and time.monotonic() >= next_call:
                callback()
                next_call += every
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"a node exited ({proc.returncode}); logs in {self.workdir}")

    def wait_first_frame(self, timeout: float = 120.0) -> float:
        """Until the rig's first frame (sent once the node subscribed) is received; returns its capture stamp (s)."""
        deadline = time.monotonic() + timeout
        while self.monitor.first_stamp is None:
            self.spin_for(0.02)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no frame within {timeout:.0f} s (did the node subscribe?); logs in {self.workdir}")
        return self.monitor.first_stamp

    def close(self) -> None:
        stop_processes(self.processes)
        self.context.try_shutdown()


def _window_median(monitor: Monitor, window: tuple[float, float], key: str) -> float:
    """Median of a /diagnostics value over the reports received within ``window`` (wall-clock seconds)."""
    values = [float(d[key]) for t, d in monitor.diagnostics_history if window[0] <= t <= window[1] + 1.0 and key in d]
    return percentile(values, 50)


def _switches(text: str) -> list[bool | None]:
    """``on,off`` (a node parameter switched, one run each) as ``[True, False]``; empty: ``[None]`` (the default)."""
    return [None] if not text else [{"on": True, "off": False}[h.strip()] for h in text.split(",")]


# --- (a) latency and accuracy ----------------------------------------------------------------------------------------


def bench_latency(method: str, seconds: float, noise: str, workdir: Path, people: int = 1, seed: int = 0,
                  rig: str = "lab", trace: int = 0, node_env: dict[str, str] | None = None,
                  hri: bool | None = None, lag: float = 0.0, depth_filter: bool | None = None) -> dict:
    from skelsplat_ros.fusion import fuse_offline, preset_config
    from skelsplat_ros.ros.conversions import parse_keypoints
    from skelsplat_ros.ros.demo import track_summary
    from skelsplat_ros.skeleton.models import get_skeleton

    node_params = ({"method": method, "diagnostics_period": 1.0, "lag": lag} | ({} if hri is None else {"hri": hri})
                   | ({} if depth_filter is None else {"depth_filter": depth_filter}))
    session = Session(workdir, {"rig": rig, "rate": 30.0, "noise": noise, "seed": seed, "people": people},
                      node_params, record_keypoints=people == 1, node_env=node_env, hri_client=hri is not None)
    try:
        first = session.wait_first_frame()
        # Every frame captured in the window counts, the rig's first included; one more second for the last ones.
        window = (first, first + seconds)
        session.spin_for(window[1] + 1.0 - time.time())
        monitor = session.monitor
        captured, _ = monitor.frame_counts(*window)
        diagnostics = dict(monitor.diagnostics)
    finally:
        session.close()

    records = [r for r in monitor.records if window[0] <= r.stamp < window[1]]
    latency_ms = np.array([r.received - r.stamp for r in records]) * 1e3
    start = _first_frames(monitor, first, trace)
    # Accuracy on the frames the node fused, next to robust triangulation of the same received keypoints.
    skeleton = get_skeleton("h36m17")
    cameras = session.rig.names
    fused, truth, views = [], [], []
    for record in records:
        ns = record.stamp_ns
        gt = monitor.ground_truth.get(ns, {}).get(0)  # {person: [J, 3]}; one person: person 0
        # The node stamps a frame with its first message's stamp; the sim stamps all cameras alike.
        msgs = session.keypoints.get(ns)
        if gt is None or msgs is None or record.joints is None:
            continue
        frame = np.full((len(cameras), skeleton.num_joints, 3), np.nan)
        for v, camera in enumerate(cameras):
            if camera in msgs:
                parsed = parse_keypoints(msgs[camera], skeleton.name, skeleton.num_joints)
                if parsed.keypoints is not None:
                    frame[v] = parsed.keypoints
        fused.append(record.joints)
        truth.append(gt)
        views.append(frame)
    label = ", ".join([method] + [f"{name} {'on' if value else 'off'}" for name, value in
                                  (("hri", hri), ("depth filter", depth_filter)) if value is not None])
    result = {"method": label, "lag": lag, "tf_messages": session.tf_messages,
              "tracked_messages": session.tracked_messages,
              "people": people, "seconds": seconds, "captured": captured, "fused": len(records),
              "out_percent": 100.0 * len(records) / max(captured, 1),
              "latency_median_ms": percentile(latency_ms, 50), "latency_p99_ms": percentile(latency_ms, 99),
              "latency_max_ms": float(np.max(latency_ms)) if latency_ms.size else float("nan"),
              "fusion_time_mean_ms": diagnostics.get("fusion_time_mean_ms", "-"),
              # Over the measured seconds: median of the node's per-second means, wall and CPU (thread) time.
              "fusion_wall_median_ms": _window_median(monitor, window, "fusion_time_mean_ms"),
              "fusion_cpu_median_ms": _window_median(monitor, window, "fusion_cpu_mean_ms"),
              # The node's own view: capture stamp to its publish call (no delivery to, or handling by, this reader).
              "node_latency_median_ms": _window_median(monitor, window, "latency_median_ms"),
              "input_wait_median_ms": _window_median(monitor, window, "input_wait_median_ms"),
              "queue_wait_median_ms": _window_median(monitor, window, "queue_wait_median_ms"),
              "matched_frames": len(fused), **start}
    if people > 1:
        # No robust-triangulation column: it would need the true association; see `skelsplat bench` for that.
        summary = track_summary(records)
        result.update({"matched_frames": summary.frames, "mpjpe_mm": 1e3 * summary.mpjpe,
                       "recall": summary.recall, "precision": summary.precision,
                       "id_switches": sum(summary.switches.values()), "tracks": len(summary.track_frames)})
    elif fused:
        fused_a, truth_a = np.array(fused), np.array(truth)
        robust = fuse_offline(session.rig, skeleton, np.stack(views, axis=1), preset_config("default", "robust"))
        result["mpjpe_mm"] = 1e3 * float(np.nanmean(np.linalg.norm(fused_a - truth_a, axis=-1)))
        result["robust_mpjpe_mm"] = 1e3 * float(np.nanmean(np.linalg.norm(robust.joints - truth_a, axis=-1)))
    return result


def _first_frames(monitor: Monitor, first: float, trace: int) -> dict:
    """The start of a run: frames captured in its first second, how many came out and their latency; and the
    latency of each of the first ``trace`` frames captured (NaN = never came out)."""
    latency = {r.stamp_ns: 1e3 * (r.received - r.stamp) for r in monitor.records}
    captured = sorted(set(monitor.ground_truth) | set(latency))  # stamps ns, from the rig's first frame
    first_second = [latency[ns] for ns in captured if ns * 1e-9 < first + 1.0 and ns in latency]
    return {"first_second_captured": sum(1 for ns in captured if ns * 1e-9 < first + 1.0),
            "first_second_out": len(first_second),
            "first_second_latency_median_ms": percentile(first_second, 50),
            "first_second_latency_p99_ms": percentile(first_second, 99),
            "first_second_latency_max_ms": max(first_second, default=float("nan")),
            "trace_ms": [latency.get(ns, float("nan")) for ns in captured[:trace]]}


# --- (b) soak --------------------------------------------------------------------------------------------------------


def bench_soak(method: str, seconds: float, sample_every: float, noise: str, workdir: Path, people: int = 1) -> dict:
    session = Session(workdir, {"rig": "surround", "rate": 60.0, "noise": noise, "seed": 1, "people": people},
                      {"method": method, "diagnostics_period": min(2.0, sample_every), "max_wait": 0.03},
                      record_keypoints=False)
    samples: list[dict] = []
    try:
        session.wait_first_frame()
        monitor = session.monitor
        started = time.time()
        last_count = [0]

        def sample() -> None:
            diag = monitor.diagnostics
            records = monitor.records[last_count[0]:]
            last_count[0] = len(monitor.records)
            lat = np.array([r.received - r.stamp for r in records]) * 1e3
            samples.append({
                "t": time.time() - started,
                "rss_mb": rss_mb(session.node_process.pid),
                "out_hz": len(records) / sample_every,
                "lat_med_ms": percentile(lat, 50),
                "lat_p99_ms": percentile(lat, 99),
                "sync_pending": diag.get("sync_pending", "-"),
                "worker_queue": diag.get("worker_queue", "-"),
                "drops": {k: int(v) for k, v in diag.items()
                          if k.startswith(("dropped.", "rejected.")) or k in ("fusion_errors", "nonfinite_joints")},
            })
            s = samples[-1]
            print(f"  {s['t']:7.0f} {s['rss_mb']:8.1f} {s['out_hz']:7.1f} {s['lat_med_ms']:8.1f} "
                  f"{s['lat_p99_ms']:8.1f} {s['sync_pending']:>8} {s['worker_queue']:>7}  "
                  + " ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(s["drops"].items()) if v), flush=True)

        print(f"  {'t (s)':>7} {'RSS MB':>8} {'out Hz':>7} {'lat med':>8} {'lat p99':>8} {'pending':>8} "
              f"{'queue':>7}  drops (cumulative)")
        session.spin_for(seconds, every=sample_every, callback=sample)
    finally:
        session.close()
    rss = np.array([s["rss_mb"] for s in samples])
    t = np.array([s["t"] for s in samples])
    half = len(samples) // 2
    slope = float(np.polyfit(t[half:], rss[half:], 1)[0] * 60.0) if len(samples) - half >= 3 else float("nan")
    return {"method": method, "seconds": seconds, "samples": samples,
            "rss_start_mb": float(rss[0]) if rss.size else float("nan"),
            "rss_end_mb": float(rss[-1]) if rss.size else float("nan"),
            "rss_slope_mb_per_min_second_half": slope,
            "drops_final": samples[-1]["drops"] if samples else {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="skelsplat,robust", help="methods for (a), comma separated")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="(a) measured seconds per method")
    parser.add_argument("--trace", type=int, default=0, help="(a) print the latency of each of the first N frames")
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="(b) duration; 600 = the 10 min soak")
    parser.add_argument("--soak-method", default="skelsplat", help="(b) fusion method")
    parser.add_argument("--sample-every", type=float, default=0.0, help="(b) sampling period (default duration/20)")
    parser.add_argument("--noise", default="realistic", help="detector noise preset")
    parser.add_argument("--lag", type=float, default=0.0, help="(a) the node's lag parameter (s; fixed-lag output)")
    parser.add_argument("--people", type=int, default=1, help="people in the simulated scene (1-5), (a) and (b)")
    parser.add_argument("--seed", type=int, default=0, help="(a) simulation seed")
    parser.add_argument("--rig", default="lab",
                        help="(a) simulated rig: lab (4 cameras) or portrait (4 portrait HD cameras; with --noise heavy "
                             "the heavy-rig speed scenario of `skelsplat bench`)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--node-from", default="",
                        help="(a) run the fusion node from this source tree (its skelsplat_ros/ first on PYTHONPATH), "
                             "e.g. an export of main for a baseline in the same session")
    parser.add_argument("--cold", action="store_true",
                        help="(a) the node starts with an empty numba cache (as on its first run after an install): "
                             "its warm-up compiles the kernel")
    parser.add_argument("--hri", default="", help="(a) on,off: each method with the node's hri output on, then off "
                        "(this process reading /tf and /humans/bodies/tracked); empty: the node's default")
    parser.add_argument("--depth-filter", default="", help="(a) on,off: each method with the node's depth_filter "
                        "parameter on, then off (default: the node's default)")
    parser.add_argument("--domain-id", type=int, default=None)
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    domain = ros_environment(args.domain_id)
    workdir = Path(tempfile.mkdtemp(prefix="skelsplat_bench_node_"))
    print(f"bench_node: ROS_DOMAIN_ID={domain} (loopback only), logs in {workdir}")
    report: dict = {"latency": [], "soak": None}
    if not args.skip_latency:
        print(f"\n(a) {args.rig} rig at 30 Hz, {args.people} "
              f"{'person' if args.people == 1 else 'people'} (seed {args.seed}), {args.noise} noise, "
              f"{args.latency_seconds:g} s per method, lag {args.lag:g} s")
        switches = _switches(args.hri)
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            for hri in switches:
                for depth_filter in _switches(args.depth_filter):
                    sub = workdir / "_".join([f"latency_{method}"] + [f"{name}_{'on' if value else 'off'}" for name, value
                                                                      in (("hri", hri), ("depth", depth_filter))
                                                                      if value is not None])
                    sub.mkdir()
                    node_env = {"PYTHONPATH": args.node_from} if args.node_from else {}
                    if args.cold:
                        node_env["NUMBA_CACHE_DIR"] = str(sub / "numba_cache")
                    result = bench_latency(method, args.latency_seconds, args.noise, sub, args.people, args.seed,
                                           args.rig, args.trace, node_env, hri, args.lag, depth_filter)
                    report["latency"].append(result)
        print(f"\n  {'method':<10} {'frames out':>11} {'lat med ms':>11} {'lat p99 ms':>11} {'fusion ms':>10} "
              f"{'MPJPE mm':>9} {'robust mm':>10}  (same frames)")
        for r in report["latency"]:
            print(f"  {r['method']:<10} {r['out_percent']:10.1f}% {r['latency_median_ms']:11.1f} "
                  f"{r['latency_p99_ms']:11.1f} {r['fusion_time_mean_ms']:>10} {r.get('mpjpe_mm', float('nan')):9.1f} "
                  f"{r.get('robust_mpjpe_mm', float('nan')):10.1f}  ({r['matched_frames']} frames)")
            print(f"  {'':<10} fusion per frame, median of the per-second means: {r['fusion_wall_median_ms']:.1f} ms "
                  f"wall, {r['fusion_cpu_median_ms']:.1f} ms CPU (the fusion thread's own time); stamp to publish "
                  f"in the node {r['node_latency_median_ms']:.1f} ms (median of its per-second medians): stamp to "
                  f"synchronized {r['input_wait_median_ms']:.1f} ms, then to the fusion thread "
                  f"{r['queue_wait_median_ms']:.1f} ms")
            print(f"  {'':<10} first second: {r['first_second_out']}/{r['first_second_captured']} frames out, "
                  f"latency median {r['first_second_latency_median_ms']:.1f} ms, p99 "
                  f"{r['first_second_latency_p99_ms']:.1f} ms, max {r['first_second_latency_max_ms']:.1f} ms")
            if r["trace_ms"]:
                print(f"  {'':<10} first {len(r['trace_ms'])} frames, latency ms (nan = lost): "
                      + " ".join(f"{v:.0f}" for v in r["trace_ms"]))
            if args.hri:
                print(f"  {'':<10} read {r['tf_messages']} /tf and {r['tracked_messages']} /humans/bodies/tracked "
                      "messages")
            if "recall" in r:
                print(f"  {'':<10} people: recall {100 * r['recall']:.1f} %, precision {100 * r['precision']:.1f} % "
                      f"(300 mm gate), {r['tracks']} track ids, {r['id_switches']} id switches")
    if not args.skip_soak:
        every = args.sample_every or max(1.0, args.soak_seconds / 20.0)
        print(f"\n(b) soak: surround rig, 8 cameras at 60 Hz, {args.people} "
              f"{'person' if args.people == 1 else 'people'}, {args.soak_method}, {args.soak_seconds:g} s")
        sub = workdir / "soak"
        sub.mkdir()
        soak = bench_soak(args.soak_method, args.soak_seconds, every, args.noise, sub, args.people)
        report["soak"] = soak
        print(f"\n  RSS {soak['rss_start_mb']:.1f} -> {soak['rss_end_mb']:.1f} MB; slope over the second half "
              f"{soak['rss_slope_mb_per_min_second_half']:+.2f} MB/min")
        print("  drops by reason (final): "
              + (", ".join(f"{k}={v}" for k, v in sorted(soak["drops_final"].items()) if v) or "none"))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
