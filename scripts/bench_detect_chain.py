#!/usr/bin/env python3
"""Benchmark of the node chain on real images: skelsplat_detector + skelsplat_node on the Pose2Sim multi-person take.

This process plays the cameras: it publishes the take's full-size frames (1088x1920 bgr8 ``sensor_msgs/Image``, or
JPEG ``CompressedImage`` with ``--compressed``, all decoded and encoded before sending) on ``/cam0N/image_raw`` at
``--rates`` Hz, the four images of a frame stamped with its publication time, and listens to ``skeletons``. Like a
camera driver on the same machine, it publishes with ``config/fastdds_images.xml`` (a shared-memory segment that
holds a frame's images; ``--dds-profile none``: Fast DDS's default). The detector and the fusion node run as
subprocesses (their console scripts) with ``config/detect.yaml`` (what ``detect.launch.py`` starts), in a DDS
domain of their own on loopback. Sending starts once every node's subscriptions are matched (the fusion node
subscribes after its warm-up), after ``--settle`` seconds more.

Per rate: the share of the frames sent that came out fused (at least one person) and with both people; the
latency from image stamp to skeleton (p50, p99); the detector's own counts (images received, detected, skipped by
its newest-image policy, and missed: sent but never delivered to it); frames the fusion node fused with cameras
missing; CPU per image of the detector and per frame of the fusion node, the cores the chain used and what the
rest of the machine used meanwhile. "Tracker bound": the keypoints the detector published, replayed offline through
the same tracker at the same stamps (``track_streaming``, the node's fusion and tracker settings): what the chain would output
had nothing been late.

    .venv/bin/python scripts/fetch_pose2sim_multi.py
    .venv/bin/python scripts/bench_detect_chain.py [--rates 1,2,3,5] [--frames 60] [--compressed]
    .venv/bin/python scripts/bench_detect_chain.py --bound-only KEYPOINTS.npz [--rates 5,2,1]   # no chain
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from skelsplat_ros.bench.process_stats import cpu_seconds, percentile

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ["cam01", "cam02", "cam03", "cam04"]
TAKE_FPS = 60.0


def image_message(rgb: np.ndarray, compressed: bool):
    """A camera's frame as a bgr8 Image, or as a JPEG CompressedImage (quality 90), header left to the caller."""
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if compressed:
        return CompressedImage(format="jpeg", data=cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return Image(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8", is_bigendian=0, step=3 * bgr.shape[1],
                 data=bgr.tobytes())


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has used so far (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _, _, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tracker_bound(keypoints: dict[str, dict[int, np.ndarray]], stamps: list[int], calibration: Path) -> tuple[int, int]:
    """Frames (of ``stamps``, ns) with at least one person and with two, when the detections the detector published
    (``keypoints[camera][stamp] = [S, 17, 3]``) go through the tracker offline at those stamps, fused and tracked as
    the chain's fusion node does (:func:`node_settings`)."""
    from skelsplat_ros.geometry.calibration import load_calibration
    from skelsplat_ros.skeleton.models import get_skeleton
    from skelsplat_ros.tracking.recording import track_streaming

    rig = load_calibration(calibration)
    most = max([len(p) for by_stamp in keypoints.values() for p in by_stamp.values()] + [1])
    data = np.full((len(rig), len(stamps), most, 17, 3), np.nan)
    data[..., 2] = 0.0
    for v, camera in enumerate(rig.names):
        for f, stamp in enumerate(stamps):
            people = keypoints.get(camera, {}).get(stamp)
            if people is not None and len(people):
                data[v, f, :len(people)] = people
    seconds = (np.asarray(stamps, dtype=np.float64) - stamps[0]) * 1e-9
    fusion, tracking = node_settings()
    result = track_streaming(rig, get_skeleton("coco17"), data, fusion, 1.0, tracking, stamps=seconds)
    present = np.isfinite(result.joints).all(-1).any(-1).sum(axis=1)  # [F] people out
    return int((present >= 1).sum()), int((present >= 2).sum())


def node_settings():
    """``(FusionConfig, TrackerConfig)`` of the chain's fusion node: its parameters' defaults with
    ``config/detect.yaml`` over them, made into configurations by the node's own functions (with ``hri`` on by
    default, complete skeletons: a person is out from their confirmation, not once their bone lengths are known)."""
    import yaml

    from skelsplat_ros.ros.node import fusion_config, tracker_config
    from skelsplat_ros.ros.params import FUSION_NODE_PARAMS

    params = {spec.name: spec.default for spec in FUSION_NODE_PARAMS}
    params.update(yaml.safe_load((REPO / "config" / "detect.yaml").read_text())["skelsplat_node"]["ros__parameters"])
    return fusion_config(params), tracker_config(params)


def bound_of_file(path: Path, rate: float, frames: int, calibration: Path) -> tuple[int, int]:
    """:func:`tracker_bound` of the first ``frames`` frames of a 5-D keypoint NPZ (the take's detections, cameras in
    ``CAMERAS`` order), stamped ``1 / rate`` apart as the chain stamps them: the chain's bound without running it."""
    from skelsplat_ros.io.keypoints import load_keypoints

    data = load_keypoints(path)
    order = [list(data.cameras).index(camera) for camera in CAMERAS]
    stamps = [round(k * 1e9 / rate) for k in range(min(frames, data.keypoints.shape[1]))]
    detections = {camera: {stamp: data.keypoints[v, f][(np.nan_to_num(data.keypoints[v, f, ..., 2]) > 0).any(-1)]
                           for f, stamp in enumerate(stamps)} for camera, v in zip(CAMERAS, order)}
    return tracker_bound(detections, stamps, calibration)


def run_rate(rate: float, frames: int, data: Path, bin_dir: Path, settle: float, compressed: bool,
             max_wait: float | None, take_stamps: bool) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CompressedImage, Image
    from skelsplat_ros.msg import Keypoints2DArray, Skeleton3DArray
    from std_msgs.msg import Header

    from skelsplat_ros.detection.sources import open_source
    from skelsplat_ros.ros.conversions import ns_to_stamp, parse_keypoints, stamp_to_ns

    config = REPO / "config" / "detect.yaml"
    cameras = "[" + ", ".join(CAMERAS) + "]"
    params = ["--params-file", str(config), "-p", f"cameras:={cameras}"]  # as detect.launch.py
    kind, suffix = (CompressedImage, "image_raw/compressed") if compressed else (Image, "image_raw")
    # The profile is the publisher's (this process, the cameras); the nodes run with Fast DDS's defaults.
    nodes_env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    detector = subprocess.Popen([str(bin_dir / "skelsplat_detector"), "--ros-args", *params,
                                 "-p", f"compressed:={str(compressed).lower()}", "--log-level", "warn"], env=nodes_env)
    fusion = subprocess.Popen([str(bin_dir / "skelsplat_node"), "--ros-args", *params,
                               "-p", f"calibration_file:={data / 'calib.toml'}", "-p", "skeleton:=coco17",
                               "-p", "publish_tf:=false", "-p", "publish_markers:=false", "--log-level", "warn",
                               *(["-p", f"max_wait:={max_wait}"] if max_wait else []),
                               # The take's own stamps lie in the past of the node's clock: no age check then.
                               *(["-p", "max_stamp_age:=0.0", "-p", "max_future:=0.0"] if take_stamps else [])],
                              env=nodes_env)
    # Every frame is decoded (and encoded) before sending starts, so that publishing keeps the rate; the replies
    # are taken by an executor thread of their own, so that their arrival time is when they arrive.
    streams = [open_source(data / "videos" / f"{c}.mp4").frames(0, frames) for c in CAMERAS]
    prepared = [[image_message(next(stream), compressed) for stream in streams] for _ in range(frames)]
    rclpy.init()
    node = Node("chain_bench")
    pubs = {c: node.create_publisher(kind, f"{c}/{suffix}", QoSProfile(depth=5)) for c in CAMERAS}  # as drivers do
    received: dict[int, tuple[float, int]] = {}
    node.create_subscription(Skeleton3DArray, "skeletons", lambda m: received.setdefault(
        stamp_to_ns(m.header.stamp), (time.time(), len(m.skeletons))), QoSProfile(depth=100))
    detections: dict[str, dict[int, np.ndarray]] = {c: {} for c in CAMERAS}
    for camera in CAMERAS:
        node.create_subscription(Keypoints2DArray, f"{camera}/keypoints", lambda m, c=camera: detections[c].update(
            {stamp_to_ns(m.header.stamp): parse_keypoints(m, "coco17", 17).people}), QoSProfile(depth=100))
    diagnostics: dict[str, dict[str, str]] = {}
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
        {s.name.split(":")[-1].strip(): {kv.key: kv.value for kv in s.values} for s in m.status}),
        QoSProfile(depth=20))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (
                all(p.get_subscription_count() for p in pubs.values())  # the detector
                and all(node.count_subscribers(f"{c}/keypoints") >= 2 for c in CAMERAS)  # the fusion node and us
                and all(node.count_publishers(f"{c}/keypoints") for c in CAMERAS)
                and node.count_publishers("skeletons") > 0):
            time.sleep(0.1)
        time.sleep(settle)
        pids = {"detector": detector.pid, "fusion": fusion.pid}
        cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own_start, busy_start, wall_start = time.process_time(), machine_busy_seconds(), time.monotonic()
        sent: dict[int, int] = {}  # stamp -> wall time of publication (ns)
        start, first = time.monotonic(), time.time_ns()
        for k, messages in enumerate(prepared):
            time.sleep(max(0.0, start + k / rate - time.monotonic()))
            stamp_ns = first + round(k * 1e9 / TAKE_FPS) if take_stamps else time.time_ns()
            for camera, message in zip(CAMERAS, messages):
                message.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=f"{camera}_optical")
                pubs[camera].publish(message)
            sent[stamp_ns] = time.time_ns()
        time.sleep(3.0)  # the last frame through, and a diagnostics period
        cpu = {name: cpu_seconds(pid) - cpu_start[name] for name, pid in pids.items()}
        cpu["bench"] = time.process_time() - own_start
        busy, wall = machine_busy_seconds() - busy_start, time.monotonic() - wall_start
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
        for process in (detector, fusion):
            process.terminate()
            process.wait(timeout=10)
    stamps = sorted(sent)
    out = [received[s] for s in stamps if s in received]
    latency = [1e3 * (received[s][0] - sent[s] * 1e-9) for s in stamps if s in received]
    counts = diagnostics.get("detector", {})
    total = {key: sum(int(counts.get(f"{key}.{c}", 0)) for c in CAMERAS)
             for key in ("received", "detected", "skipped", "missed")}
    bound_out, bound_both = tracker_bound(detections, stamps, data / "calib.toml")
    ours = sum(cpu.values())
    return {"rate": rate, "sent": len(sent), "out": sum(1 for _, n in out if n > 0),
            "both": sum(1 for _, n in out if n >= 2), "p50": percentile(latency, 50), "p99": percentile(latency, 99),
            "images": 4 * len(sent), **total, "partial": diagnostics.get("fusion", {}).get("frames_partial", "?"),
            "bound_out": bound_out, "bound_both": bound_both,
            "cpu_image": cpu["detector"] / max(total["detected"], 1), "cpu_frame": cpu["fusion"] / len(sent),
            "cores_chain": ours / wall, "cores_others": max(busy - ours, 0.0) / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "pose2sim_multi")
    parser.add_argument("--rates", default="5", help="comma-separated publication rates (Hz)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the take published per rate (all decoded "
                        "before sending: 60 raw frames x 4 cameras hold 1.5 GB)")
    parser.add_argument("--compressed", action="store_true", help="publish JPEG CompressedImage (quality 90) on "
                        "/cam0N/image_raw/compressed instead of raw bgr8 Image")
    parser.add_argument("--dds-profile", default=str(REPO / "config" / "fastdds_images.xml"),
                        help="Fast DDS profile of the image publisher, this process ('none': Fast DDS's defaults); the nodes "
                        "run with the defaults")
    parser.add_argument("--max-wait", type=float, help="the fusion node's max_wait (default: config/detect.yaml's)")
    parser.add_argument("--take-stamps", action="store_true", help="stamp the frames 1/60 s apart, as the take was "
                        "filmed, whatever the publication rate (slow motion: the tracker sees the take's own motion; "
                        "latency is then from publication)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait after every node's subscriptions "
                        "are matched before sending")
    parser.add_argument("--bound-only", type=Path, metavar="KEYPOINTS.npz", help="run no chain: only the tracker "
                        "bound of these detections (a 5-D NPZ of the take, e.g. from skelsplat detect) at each rate")
    args = parser.parse_args()
    if not (args.data / "calib.toml").is_file():
        print(f"no {args.data / 'calib.toml'}: run scripts/fetch_pose2sim_multi.py first", file=sys.stderr)
        return 2
    if args.bound_only:
        print("| rate Hz | frames | tracker bound: out (>= 1 person), both people |\n|---|---|---|")
        for rate in (float(r) for r in args.rates.split(",")):
            out, both = bound_of_file(args.bound_only, rate, args.frames, args.data / "calib.toml")
            print(f"| {rate:g} | {args.frames} | {100 * out / args.frames:.0f} %, {100 * both / args.frames:.0f} % |")
        return 0
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    if args.dds_profile != "none":  # read at rclpy.init() (Fast DDS 2 would read FASTRTPS_DEFAULT_PROFILES_FILE)
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = args.dds_profile
    bin_dir = Path(sys.executable).parent
    print(f"images: {'JPEG CompressedImage' if args.compressed else 'bgr8 Image'}, 1088x1920, 4 cameras; DDS profile: "
          f"{Path(args.dds_profile).name if args.dds_profile != 'none' else 'Fast DDS defaults'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| rate Hz | frames sent | out (>= 1 person) | both people | tracker bound: out, both | latency p50 ms | "
          "p99 ms | images received / detected / skipped / missed of sent | partial frames | detector CPU ms/image | "
          "fusion CPU ms/frame | cores: chain, rest of the machine |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        r = run_rate(rate, args.frames, args.data, bin_dir, args.settle, args.compressed, args.max_wait,
                     args.take_stamps)
        share = lambda n: f"{100 * n / r['sent']:.0f} %"  # noqa: E731
        print(f"| {r['rate']:g} | {r['sent']} | {share(r['out'])} | {share(r['both'])} | {share(r['bound_out'])}, "
              f"{share(r['bound_both'])} | {r['p50']:.0f} | {r['p99']:.0f} | {r['received']} / {r['detected']} / "
              f"{r['skipped']} / {r['missed']} of {r['images']} | {r['partial']} | {1e3 * r['cpu_image']:.0f} | "
              f"{1e3 * r['cpu_frame']:.0f} | {r['cores_chain']:.2f}, {r['cores_others']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
