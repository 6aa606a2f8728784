#!/usr/bin/env python3
"""Benchmark of the node chain on real images: skelsplat_detector + skelsplat_node on the Pose2Sim multi-person take.

This process publishes the take's full-size frames (1088x1920 bgr8 ``sensor_msgs/Image``, or JPEG
``CompressedImage`` with ``--compressed``, decoded from the four videos as it goes) on ``/cam0N/image_raw`` at ``--rates`` Hz, all four stamped with the publication time, and
listens to ``skeletons``. The detector and the fusion node run as subprocesses (their console scripts), with
``config/detect.yaml`` (what ``detect.launch.py`` starts), in a DDS domain of their own on loopback. Per rate it reports the share of published frames that came out fused, the share
with both people, the latency from image stamp to skeleton (p50, p99), the detector's skips, and the CPU seconds
each process used per published frame (the machine may be loaded: CPU time is what the chain costs).

    .venv/bin/python scripts/fetch_pose2sim_multi.py
    .venv/bin/python scripts/bench_detect_chain.py [--rates 2,5,8] [--frames 100]
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


def run_rate(rate: float, frames: int, data: Path, bin_dir: Path, settle: float, compressed: bool,
             max_wait: float | None, take_stamps: bool) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CompressedImage, Image
    from skelsplat_ros.msg import Skeleton3DArray
    from std_msgs.msg import Header

    from skelsplat_ros.detection.sources import open_source
    from skelsplat_ros.ros.conversions import ns_to_stamp, stamp_to_ns

    cameras = "[" + ", ".join(CAMERAS) + "]"
    params = ["--params-file", str(REPO / "config" / "detect.yaml"), "-p", f"cameras:={cameras}"]  # detect.launch.py's
    kind, suffix = (CompressedImage, "image_raw/compressed") if compressed else (Image, "image_raw")
    detector = subprocess.Popen([str(bin_dir / "skelsplat_detector"), "--ros-args", *params,
                                 "-p", f"compressed:={str(compressed).lower()}", "--log-level", "warn"])
    fusion = subprocess.Popen([str(bin_dir / "skelsplat_node"), "--ros-args", *params,
                               "-p", f"calibration_file:={data / 'calib.toml'}", "-p", "skeleton:=coco17",
                               "-p", "publish_tf:=false", "-p", "publish_markers:=false", "--log-level", "warn",
                               *(["-p", f"max_wait:={max_wait}"] if max_wait else []),
                               # The take's own stamps lie in the past of the node's clock: no age check then.
                               *(["-p", "max_stamp_age:=0.0", "-p", "max_future:=0.0"] if take_stamps else [])])
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
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                all(p.get_subscription_count() for p in pubs.values())
                and node.count_publishers("skeletons") > 0):
            time.sleep(0.1)
        time.sleep(settle)  # the fusion node's warm-up before subscribing, the detector's models
        cpu_start = {"detector": cpu_seconds(detector.pid), "fusion": cpu_seconds(fusion.pid)}
        sent: dict[int, int] = {}  # stamp -> wall time of publication (ns)
        start, first = time.monotonic(), time.time_ns()
        for k, messages in enumerate(prepared):
            time.sleep(max(0.0, start + k / rate - time.monotonic()))
            stamp_ns = first + round(k * 1e9 / TAKE_FPS) if take_stamps else time.time_ns()
            for camera, message in zip(CAMERAS, messages):
                message.header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=f"{camera}_optical")
                pubs[camera].publish(message)
            sent[stamp_ns] = time.time_ns()
        time.sleep(3.0)
        cpu = {"detector": cpu_seconds(detector.pid) - cpu_start["detector"],
               "fusion": cpu_seconds(fusion.pid) - cpu_start["fusion"]}
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
        for process in (detector, fusion):
            process.terminate()
            process.wait(timeout=10)
    out = [received[s] for s in sent if s in received]
    latency = [1e3 * (received[s][0] - sent[s] * 1e-9) for s in sent if s in received]
    return {"rate": rate, "sent": len(sent), "out": sum(1 for _, n in out if n > 0),
            "both": sum(1 for _, n in out if n >= 2), "p50": percentile(latency, 50), "p99": percentile(latency, 99),
            "cpu_detector": cpu["detector"] / len(sent), "cpu_fusion": cpu["fusion"] / len(sent)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "pose2sim_multi")
    parser.add_argument("--rates", default="5", help="comma-separated publication rates (Hz)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the take published per rate (all decoded "
                        "before sending: 60 raw frames x 4 cameras hold 1.5 GB)")
    parser.add_argument("--compressed", action="store_true", help="publish JPEG CompressedImage (quality 90) on "
                        "/cam0N/image_raw/compressed instead of raw bgr8 Image")
    parser.add_argument("--max-wait", type=float, help="the fusion node's max_wait (default: config/detect.yaml's)")
    parser.add_argument("--take-stamps", action="store_true", help="stamp the frames 1/60 s apart, as the take was "
                        "filmed, whatever the publication rate (slow motion: the tracker sees the take's own motion; "
                        "latency is then from publication)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after discovery before sending")
    args = parser.parse_args()
    if not (args.data / "calib.toml").is_file():
        print(f"no {args.data / 'calib.toml'}: run scripts/fetch_pose2sim_multi.py first", file=sys.stderr)
        return 2
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    bin_dir = Path(sys.executable).parent
    print(f"images: {'JPEG CompressedImage' if args.compressed else 'bgr8 Image'}, 1088x1920, 4 cameras")
    print("| rate Hz | frames sent | out (>= 1 person) | both people | latency p50 ms | p99 ms | "
          "detector CPU ms/frame | fusion CPU ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        r = run_rate(rate, args.frames, args.data, bin_dir, args.settle, args.compressed, args.max_wait,
                     args.take_stamps)
        print(f"| {r['rate']:g} | {r['sent']} | {100 * r['out'] / r['sent']:.0f} % | {100 * r['both'] / r['sent']:.0f} % "
              f"| {r['p50']:.0f} | {r['p99']:.0f} | {1e3 * r['cpu_detector']:.0f} | {1e3 * r['cpu_fusion']:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
