"""A recording replayed with ``skelsplat play`` (a real process publishing the bag and /clock) through the live node
on sim time: the bag's stamps are years old, yet nothing is rejected as stale, and the node publishes what the
offline bag route fuses from the same messages."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
pytest.importorskip("skelsplat_ros.msg")

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import START_NS, write_keypoints_bag  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from skelsplat_ros.msg import Skeleton3DArray  # noqa: E402

from skelsplat_ros.fusion import fuse_streaming, preset_config  # noqa: E402
from skelsplat_ros.ros.bag import read_bag_frames  # noqa: E402
from skelsplat_ros.ros.conversions import skeleton_arrays, stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.node import FusionNode  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FPS = 20.0
FRAMES = 50


def test_replayed_bag_through_the_node_on_sim_time_matches_the_offline_route(ros_env, tmp_path):
    scenario = make_scenario("lab", num_frames=FRAMES, fps=FPS, seed=6)
    write_keypoints_bag(tmp_path / "rec", scenario.rig.names, scenario.keypoints, FPS, "h36m17", rig=scenario.rig,
                        latency=0.03)
    assert (time.time_ns() - START_NS) * 1e-9 > 2.0  # older than max_stamp_age: stale to a node on wall time
    frames = read_bag_frames(tmp_path / "rec", "h36m17", 17)
    offline = fuse_streaming(frames.rigs[0], scenario.skeleton, frames.keypoints, preset_config("default", "robust"),
                             frames.fps, stamps=(frames.stamps_ns - frames.stamps_ns[0]) * 1e-9)
    expected = dict(zip(frames.stamps_ns.tolist(), offline.joints))

    context = Context()
    rclpy.init(context=context, args=[])
    node = FusionNode(context=context, parameter_overrides=[
        Parameter("use_sim_time", value=True), Parameter("cameras", value=scenario.rig.names),
        Parameter("method", value="robust"), Parameter("threads", value=0)])
    probe = Node("replay_probe", context=context)
    received: dict[int, np.ndarray] = {}
    probe.create_subscription(Skeleton3DArray, "skeletons", lambda m: received.__setitem__(
        stamp_to_ns(m.header.stamp), skeleton_arrays(m.skeletons[0])[0]) if m.skeletons else None,
        QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=lambda: _spin(executor), daemon=True)
    thread.start()
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        run = subprocess.run([sys.executable, "-m", "skelsplat_ros.cli", "play", str(tmp_path / "rec"),
                              "--start-delay", "8"], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        deadline = time.monotonic() + 3.0
        while len(received) < FRAMES and time.monotonic() < deadline:
            time.sleep(0.05)
        counters = node.counters()
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=5.0)
        node.destroy_node()
        probe.destroy_node()
        context.try_shutdown()
    assert counters.get("rejected.stale_stamp", 0) == 0 and counters.get("rejected.future_stamp", 0) == 0, counters
    assert len(received) >= 0.9 * FRAMES, (len(received), {k: v for k, v in counters.items() if v})
    for stamp, joints in received.items():
        np.testing.assert_allclose(joints, expected[stamp], atol=1e-9)


def _spin(executor) -> None:
    try:
        executor.spin()
    except Exception:  # the context shut down under it
        pass
