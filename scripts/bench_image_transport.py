#!/usr/bin/env python3
"""Images between two processes on this machine, nothing else: does DDS deliver full-size camera images?

This process publishes ``--frames`` frames of 1088x1920 bgr8 ``sensor_msgs/Image`` (6 MB each, the Pose2Sim take's
size; random pixels) on 4 topics at ``--rate`` Hz, reliable, as a camera driver would. A subscriber process with
``skelsplat_detector``'s image QoS (reliable, keep the newest one) only counts what arrives, so nothing but the
transport can lose an image. Each row is one Fast DDS profile placement: none (Fast DDS's defaults), on the
publisher only, on the subscriber only (``config/fastdds_images.xml``: a 64 MB shared-memory segment).

    .venv/bin/python scripts/bench_image_transport.py [--rate 5] [--frames 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_images.xml"
VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
TOPICS = 4


def subscribe(seconds: float, out: Path) -> None:
    """Count the images that arrive on each topic for ``seconds``; write the counts to ``out`` (JSON)."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = Node("image_transport_sink")
    counts = [0] * TOPICS
    qos = QoSProfile(history=qos_profile_sensor_data.history, depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=qos_profile_sensor_data.durability)  # as skelsplat_detector subscribes
    for k in range(TOPICS):
        node.create_subscription(Image, f"cam{k}/image_raw", lambda _, k=k: counts.__setitem__(k, counts[k] + 1), qos)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    out.write_text(json.dumps(counts))


def publish(rate: float, frames: int, where: str) -> list[int]:
    """One run: a subscriber process, this process publishing; returns the images each topic's subscriber got."""
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    if where == "subscriber":
        env[VARIABLE] = str(PROFILE)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "counts.json"
        sink = subprocess.Popen([sys.executable, __file__, "--sink", str(frames / rate + 20), str(out)], env=env)
        source_env = {k: v for k, v in os.environ.items() if k != VARIABLE}
        if where == "publisher":
            source_env[VARIABLE] = str(PROFILE)
        subprocess.run([sys.executable, __file__, "--source", str(rate), str(frames)], env=source_env, check=True)
        sink.wait()
        return json.loads(out.read_text())


def source(rate: float, frames: int) -> None:
    """Publish ``frames`` frames on every topic at ``rate`` Hz once the subscriber is matched."""
    import numpy as np
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = Node("image_transport_source")
    reliable = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
    pubs = [node.create_publisher(Image, f"cam{k}/image_raw", reliable) for k in range(TOPICS)]
    pixels = np.random.default_rng(0).integers(0, 255, 1920 * 1088 * 3, dtype=np.uint8).tobytes()
    message = Image(height=1920, width=1088, encoding="bgr8", step=3 * 1088, data=pixels)
    deadline = time.monotonic() + 30
    while not all(p.get_subscription_count() for p in pubs) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    start = time.monotonic()
    for f in range(frames):
        time.sleep(max(0.0, start + f / rate - time.monotonic()))
        message.header.stamp.sec = f
        for pub in pubs:
            pub.publish(message)
    time.sleep(2.0)  # let the reliable protocol finish before the participant goes


def main() -> int:
    if sys.argv[1:2] == ["--sink"]:
        subscribe(float(sys.argv[2]), Path(sys.argv[3]))
        return 0
    if sys.argv[1:2] == ["--source"]:
        source(float(sys.argv[2]), int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    print(f"{TOPICS} topics of 1088x1920 bgr8 Image at {args.rate:g} Hz, {args.frames} frames; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| profile on | images received per topic, each run | received of sent |")
    print("|---|---|---|")
    for where in ("none", "publisher", "subscriber"):
        runs = [publish(args.rate, args.frames, where) for _ in range(args.repeats)]
        got = sum(map(sum, runs))
        print(f"| {where} | {'; '.join(' '.join(map(str, r)) for r in runs)} | "
              f"{100 * got / (TOPICS * args.frames * args.repeats):.0f} % |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
