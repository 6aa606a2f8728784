"""A recording replayed with ``skelsplat play`` (a real process publishing the bag and /clock) through the live node
on sim time: the bag's stamps are years old, yet nothing is rejected as stale, and the node publishes what the
offline bag route fuses from the same messages."""

from __future__ import annotations

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
from bag_helpers import START_NS, play_bag, write_keypoints_bag  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from skelsplat_ros.msg import Skeleton3DArray  # noqa: E402

from skelsplat_ros.fusion import preset_config  # noqa: E402
from skelsplat_ros.ros.bag import read_bag_frames  # noqa: E402
from skelsplat_ros.ros.conversions import skeleton_arrays, stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.node import FusionNode  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402
from skelsplat_ros.tracking.recording import track_streaming  # noqa: E402

FPS = 20.0
FRAMES = 50


def test_replayed_bag_through_the_node_on_sim_time_matches_the_offline_route(ros_env, tmp_path):
    scenario = make_scenario("lab", num_frames=FRAMES, fps=FPS, seed=6)
    write_keypoints_bag(tmp_path / "rec", scenario.rig.names, scenario.keypoints, FPS, "h36m17", rig=scenario.rig,
                        latency=0.03)
    assert (time.time_ns() - START_NS) * 1e-9 > 2.0  # older than max_stamp_age: stale to a node on wall time
    frames = read_bag_frames(tmp_path / "rec", "h36m17", 17)
    # The node tracks people: its offline twin is the tracker over the same frames (one detection slot per view).
    offline = track_streaming(frames.rigs[0], scenario.skeleton, frames.keypoints[:, :, None],
                              preset_config("default", "robust"), frames.fps)
    expected = {stamp: dict(zip(offline.track_ids.tolist(), people))
                for stamp, people in zip(frames.stamps_ns.tolist(), offline.joints)}

    context = Context()
    rclpy.init(context=context, args=[])
    node = FusionNode(context=context, parameter_overrides=[
        Parameter("use_sim_time", value=True), Parameter("cameras", value=scenario.rig.names),
        Parameter("method", value="robust"), Parameter("threads", value=0),
        Parameter("worker_queue", value=FRAMES)])  # every frame fused, however loaded the machine: this is no latency test
    probe = Node("replay_probe", context=context)
    received: dict[int, tuple[int, np.ndarray]] = {}
    probe.create_subscription(Skeleton3DArray, "skeletons", lambda m: received.__setitem__(
        stamp_to_ns(m.header.stamp), (m.skeletons[0].id, skeleton_arrays(m.skeletons[0])[0])) if m.skeletons
        else None, QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=lambda: _spin(executor), daemon=True)
    thread.start()
    try:
        play_bag(tmp_path / "rec")
        deadline = time.monotonic() + 10.0
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
    for stamp, (track_id, joints) in received.items():
        np.testing.assert_allclose(joints, expected[stamp][track_id], atol=1e-9)


def _spin(executor) -> None:
    try:
        executor.spin()
    except Exception:  # the context shut down under it
        pass
