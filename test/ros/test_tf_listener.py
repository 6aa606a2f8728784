"""The TF listener over DDS, on simulated time: when the node's clock goes back (a bag replayed again with
use_sim_time, a simulator reset), it clears the buffer as tf2_ros's listener does, so that the first transform of
the new timeline is used at once, even a single one that the buffer could not tell from a late message."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from skelsplat_ros.geometry.transforms import TransformBuffer, TransformError  # noqa: E402
from skelsplat_ros.ros.conversions import ns_to_stamp  # noqa: E402
from skelsplat_ros.ros.tf_listener import TF_QOS, TfListener  # noqa: E402

from node_harness import Spinner, wait_until  # noqa: E402

S = 1_000_000_000


def _tf(stamp_ns: int, x: float) -> TFMessage:
    transform = TransformStamped()
    transform.header.stamp = ns_to_stamp(stamp_ns)
    transform.header.frame_id = "world"
    transform.child_frame_id = "cam0_optical"
    transform.transform.translation.x = x
    transform.transform.rotation.w = 1.0
    return TFMessage(transforms=[transform])


def _x(buffer: TransformBuffer, stamp_ns: int) -> float | None:
    try:
        return float(buffer.lookup("world", "cam0_optical", stamp_ns).translation[0])
    except TransformError:
        return None


def test_a_clock_that_goes_back_clears_the_buffer_and_the_new_transform_is_used(rclpy_context):
    listener_node = Node("tf_listener_under_test", context=rclpy_context,
                         parameter_overrides=[Parameter("use_sim_time", value=True)])
    buffer = TransformBuffer()
    listener = TfListener(listener_node, buffer)
    sender = Node("tf_clock_sender", context=rclpy_context)
    clock = sender.create_publisher(Clock, "/clock", QoSProfile(depth=10))
    tf = sender.create_publisher(TFMessage, "/tf", TF_QOS)
    spinner = Spinner(rclpy_context, [listener_node, sender])
    try:
        assert wait_until(lambda: tf.get_subscription_count() and clock.get_subscription_count(), 10.0)

        def at(clock_ns: int, stamp_ns: int, x: float) -> None:
            clock.publish(Clock(clock=ns_to_stamp(clock_ns)))
            assert wait_until(lambda: listener_node.get_clock().now().nanoseconds == clock_ns, 5.0)
            tf.publish(_tf(stamp_ns, x))

        for k in range(11):  # the first loop: 110-120 s, the camera at x = 1
            at(110 * S + k * S, 110 * S + k * S, 1.0)
        assert wait_until(lambda: _x(buffer, 120 * S) == 1.0, 5.0)
        at(100 * S, 100 * S, 2.0)  # the replay starts again: one transform of the new timeline, the camera at x = 2
        assert wait_until(lambda: _x(buffer, 100 * S) is not None, 5.0), "the new timeline's transform is not used"
        assert _x(buffer, 100 * S) == 2.0 and _x(buffer, 115 * S) is None
        assert listener.cleared == 1
    finally:
        spinner.stop()
        listener_node.destroy_node()
        sender.destroy_node()
