#!/usr/bin/env python3
"""Moving-robot benchmark: a stereo head on a robot circling the person plus two wall cameras, keypoints arriving
100 ms after capture, camera poses from /tf (the base pose at every capture stamp) and /tf_static.

(a) engine, per seed (no DDS, deterministic): cameras posed through the TF buffer at each frame's stamp, streaming
    SkelSplat (default preset) vs robust triangulation with the TRUE per-frame cameras; and, to show what posing
    at the stamp is worth, robust triangulation with the pose of the arrival time (100 ms later: the newest TF
    when the keypoints arrive).
(b) node, live: the moving rig (``python -m skelsplat_ros.ros.moving_rig``) and the fusion node (no calibration
    file: CameraInfo + TF) as subprocesses over DDS on loopback; this process listens. Frames out = fused frames
    / captured frames in the measured window; MPJPE of the node vs robust triangulation of the keypoints this
    process received, with the true cameras at each stamp (from the /tf it received), on the same frames.

Run from the repository: ``.venv/bin/python scripts/bench_moving_robot.py [--seeds 1,2,3] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from skelsplat_ros.bench.engine import score
from skelsplat_ros.fusion import StreamingFuser, fuse_streaming, preset_config
from skelsplat_ros.geometry.rig_source import TfRigSource, ViewRef
from skelsplat_ros.geometry.transforms import Transform, TransformBuffer
from skelsplat_ros.sim import make_moving_robot_scenario
from skelsplat_ros.sim.moving import MovingRigScenario

BASE = "base_link"
LATENCY = 0.1


def _buffer(scenario: MovingRigScenario, stamps_ns: np.ndarray) -> TransformBuffer:
    # The whole recording is buffered before fusing: the cache must span it (live, 10 s behind the newest).
    buffer = TransformBuffer(cache_ns=int(stamps_ns[-1] - stamps_ns[0]) + 1_000_000_000)
    for camera in scenario.mounted:
        pose = Transform(camera.R, camera.t).inverse()
        buffer.set_transform(BASE, f"{camera.name}_optical", 0, pose.translation, pose.quaternion, static=True)
    for camera in scenario.wall:
        pose = Transform(camera.R, camera.t).inverse()
        buffer.set_transform("world", f"{camera.name}_optical", 0, pose.translation, pose.quaternion, static=True)
    for stamp, pose in zip(stamps_ns.tolist(), scenario.base_poses):
        buffer.set_transform("world", BASE, stamp, pose.translation, pose.quaternion)
    return buffer


def _robust(rigs, keypoints: np.ndarray, skeleton) -> np.ndarray:
    """Robust triangulation ``[F, J, 3]`` of ``keypoints [V, F, J, 3]``, frame f with ``rigs[f]``."""
    fuser = StreamingFuser(rigs[0], skeleton, preset_config("default", "robust"))
    return np.stack([fuser.step(keypoints[:, f], 0.0, rig=rigs[f]).joints[0] for f in range(len(rigs))])


def engine(seed: int, frames: int) -> dict[str, float]:
    from types import SimpleNamespace

    from skelsplat_ros.geometry.calibration import camera_info_fields, intrinsics_from_camera_info

    scenario = make_moving_robot_scenario(frames, seed=seed)
    stamps_ns = np.round(np.arange(frames) / scenario.fps * 1e9).astype(np.int64)
    source = TfRigSource(scenario.names, "world", _buffer(scenario, stamps_ns))
    for camera in list(scenario.mounted) + list(scenario.wall):
        info = SimpleNamespace(header=SimpleNamespace(frame_id=f"{camera.name}_optical"), binning_x=0, binning_y=0,
                               roi=None, **camera_info_fields(camera))
        source.set_intrinsics(camera.name, intrinsics_from_camera_info(info))
    started = time.perf_counter()
    frame_rigs = [source.rig_for({c: ViewRef(f"{c}_optical", int(s)) for c in scenario.names}) for s in stamps_ns]
    posing_ms = 1e3 * (time.perf_counter() - started) / frames
    assert not any(r.missing for r in frame_rigs), "every view must be posed from the buffer"
    tf_rigs = [r.rig for r in frame_rigs]
    true_rigs = [scenario.rig_at(f) for f in range(frames)]
    late = int(round(LATENCY * scenario.fps))
    arrival_rigs = [true_rigs[min(f + late, frames - 1)] for f in range(frames)]
    started = time.perf_counter()
    streaming = fuse_streaming(tf_rigs[0], scenario.skeleton, scenario.keypoints, preset_config("default"),
                               scenario.fps, stamps=stamps_ns * 1e-9, rigs=tf_rigs).joints
    per_frame_ms = 1e3 * (time.perf_counter() - started) / frames
    valid = slice(0, frames - late)  # the arrival-time pose exists for these frames
    robust = _robust(true_rigs, scenario.keypoints, scenario.skeleton)
    arrival = _robust(arrival_rigs, scenario.keypoints, scenario.skeleton)
    truth = scenario.ground_truth
    return {"streaming": score(streaming[valid], truth[valid])[0], "robust": score(robust[valid], truth[valid])[0],
            "arrival": score(arrival[valid], truth[valid])[0], "ms": per_frame_ms, "posing_ms": posing_ms}


def node(seconds: float, seed: int, workdir: Path, rate: float) -> dict[str, float]:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from skelsplat_ros.msg import Keypoints2DArray, Skeleton3DArray
    from tf2_msgs.msg import TFMessage

    from skelsplat_ros.ros.conversions import parse_keypoints, skeleton_arrays, stamp_to_ns
    from skelsplat_ros.ros.demo import ros_environment, start_node_process, stop_processes
    from skelsplat_ros.ros.tf_listener import TF_QOS

    ros_environment(int(os.environ["ROS_DOMAIN_ID"]) if "ROS_DOMAIN_ID" in os.environ else None)
    scenario = make_moving_robot_scenario(2, seed=seed)  # only the cameras and the skeleton: the rig node plays it
    names, skeleton = scenario.names, scenario.skeleton
    context = Context()
    rclpy.init(context=context, args=[])
    listener = Node("moving_bench_listener", context=context)
    truth, fused, base, views = {}, {}, {}, collections.defaultdict(dict)
    listener.create_subscription(Skeleton3DArray, "ground_truth", lambda m: truth.__setitem__(
        stamp_to_ns(m.header.stamp), skeleton_arrays(m.skeletons[0])[0]), QoSProfile(depth=100))
    listener.create_subscription(Skeleton3DArray, "skeletons", lambda m: fused.__setitem__(
        stamp_to_ns(m.header.stamp), skeleton_arrays(m.skeletons[0])[0]) if m.skeletons else None,
        QoSProfile(depth=100))

    def on_tf(msg: TFMessage) -> None:
        for t in msg.transforms:
            if t.child_frame_id == BASE:
                q, p = t.transform.rotation, t.transform.translation
                base[stamp_to_ns(t.header.stamp)] = Transform.from_quaternion((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))

    listener.create_subscription(TFMessage, "/tf", on_tf, TF_QOS)
    counters: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": fusion"):
                counters.update({kv.key: kv.value for kv in status.values
                                 if kv.key.startswith(("dropped.", "tf.", "rejected.")) and kv.value != "0"})

    listener.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, QoSProfile(depth=10))

    def on_keypoints(camera: str, msg: Keypoints2DArray) -> None:
        views[stamp_to_ns(msg.header.stamp)][camera] = parse_keypoints(msg, skeleton.name, skeleton.num_joints).keypoints

    for camera in names:
        listener.create_subscription(Keypoints2DArray, f"{camera}/keypoints",
                                     lambda m, c=camera: on_keypoints(c, m), qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    processes = [
        start_node_process("skelsplat_ros.ros.node", {"cameras": names}, workdir / "node.log"),
        _start_rig(seed, seconds + 15.0, workdir / "rig.log", rate),
    ]
    try:
        # The rig's detector sends once the node subscribes (imports, warm-up); every frame from its first counts.
        deadline = time.monotonic() + 60.0
        while not views and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        start = min(views, default=time.time_ns())
        stop = start + int(seconds * 1e9)
        while time.time_ns() < stop + int(1e9):
            executor.spin_once(timeout_sec=0.05)
    finally:
        stop_processes(processes)
        listener.destroy_node()
        context.try_shutdown()
    captured = sorted(s for s in truth if start <= s < stop)
    out = [s for s in captured if s in fused]
    rigs, keypoints = [], np.full((len(names), len(out), skeleton.num_joints, 3), np.nan)
    for f, stamp in enumerate(out):
        pose = base[stamp].inverse()
        moving = [type(c)(c.name, c.K, c.R @ pose.rotation, c.R @ pose.translation + c.t, c.size, c.dist)
                  for c in scenario.mounted]
        rigs.append(type(scenario.wall)(moving + list(scenario.wall)))
        for v, camera in enumerate(names):
            if views[stamp].get(camera) is not None:
                keypoints[v, f] = views[stamp][camera]
    gt = np.stack([truth[s] for s in out])
    node_error = score(np.stack([fused[s] for s in out]), gt)[0]
    robust_error = score(_robust(rigs, keypoints, skeleton), gt)[0]
    return {"out": 100.0 * len(out) / max(len(captured), 1), "node": node_error, "robust": robust_error,
            "frames": len(captured), "drops": ", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "none"}


def _start_rig(seed: int, seconds: float, log: Path, rate: float):
    import subprocess

    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    from skelsplat_ros.ros.node import NODE_NAME

    return subprocess.Popen([sys.executable, "-m", "skelsplat_ros.ros.moving_rig", "--seed", str(seed),
                             "--seconds", str(seconds), "--latency", str(LATENCY), "--rate", str(rate),
                             "--wait-for-node", NODE_NAME],
                            stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="engine seeds (seed 0 was used while building the rig)")
    parser.add_argument("--frames", type=int, default=900, help="engine frames per seed (30 fps)")
    parser.add_argument("--node-runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per node run")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the node runs (Hz)")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-node", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    if not args.skip_engine:
        _engine_table(args)
    if args.skip_node:
        return 0
    _node_table(args)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


def _engine_table(args: argparse.Namespace) -> None:
    print("| seed | streaming SkelSplat (TF at stamp) mm | robust, true cameras mm | x robust | robust, pose at arrival "
          "(+100 ms) mm | streaming ms/frame | posing from TF ms/frame |")
    print("|---|---|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        r = engine(seed, args.frames)
        print(f"| {seed} | {r['streaming']:.1f} | {r['robust']:.1f} | {r['streaming'] / r['robust']:.2f} | "
              f"{r['arrival']:.1f} | {r['ms']:.2f} | {r['posing_ms']:.2f} |", flush=True)


def _node_table(args: argparse.Namespace) -> None:
    print(f"\nnode runs at {args.rate:g} Hz")
    print("\n| run | frames captured | frames out | node MPJPE mm | robust, true cameras, same frames mm | x robust | "
          "node counters (whole run) |")
    print("|---|---|---|---|---|---|---|")
    for run in range(args.node_runs):
        with tempfile.TemporaryDirectory() as tmp:
            r = node(args.seconds, 1 + run, Path(tmp), args.rate)
        print(f"| {run + 1} (seed {1 + run}) | {r['frames']} | {r['out']:.1f} % | {r['node']:.1f} | "
              f"{r['robust']:.1f} | {r['node'] / r['robust']:.2f} | {r['drops']} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
