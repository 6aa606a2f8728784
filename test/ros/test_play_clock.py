"""``skelsplat play`` of a bag that recorded a simulator's /clock, reset once (time back 20 s) in the middle: the
bag's clock is republished as recorded, reset included, and no clock made from the log times is mixed in (a node on
sim time would otherwise be thrown between two clocks)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from skelsplat_ros.ros.bag import typestore_with_our_messages  # noqa: E402
from skelsplat_ros.ros.conversions import ns_to_stamp, stamp_to_ns  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import play_bag  # noqa: E402

S = 1_000_000_000
LOG_START = 1_700_000_000 * S


def test_a_recorded_clock_is_played_as_recorded_reset_included(ros_env, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    sim = [100 * S + k * S // 10 for k in range(10)] + [80 * S + k * S // 10 for k in range(10)]  # the reset
    typestore = typestore_with_our_messages()
    with Writer(tmp_path / "sim", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        clock = writer.add_connection("/clock", "rosgraph_msgs/msg/Clock", typestore=typestore)
        for k, ns in enumerate(sim):  # the recorder's own clock goes on at 20 Hz
            writer.write(clock, LOG_START + k * S // 20, serialize_message(Clock(clock=ns_to_stamp(ns))))

    context = Context()
    rclpy.init(context=context, args=[])
    listener = Node("clock_listener", context=context)
    heard: list[int] = []
    listener.create_subscription(Clock, "/clock", lambda m: heard.append(stamp_to_ns(m.clock)), QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        run = play_bag(tmp_path / "sim")
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=5.0)
        listener.destroy_node()
        context.try_shutdown()
    assert heard == sim
    assert "played as recorded" in run.stderr
