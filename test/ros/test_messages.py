"""The generated interfaces: definitions, import layout, and real publish/subscribe over DDS.

Each round trip publishes from the fixture's context and subscribes from a second context, i.e.
two DDS participants that discover each other on loopback (rclpy puts all nodes of one context
into a single participant).
"""
import os
from pathlib import Path

import pytest
import rclpy
from geometry_msgs.msg import Point, TransformStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from skelsplat_ros.msg import (
    Keypoints2DArray,
    PersonKeypoints2D,
    Skeleton3D,
    Skeleton3DArray,
)
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

import skelsplat_ros

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif("SKELSPLAT_INSTALL_PREFIX" in os.environ,
                    reason="colcon test imports the installed copy on purpose (test_packaging.py checks it)")
def test_package_is_repo_copy_and_msg_is_generated():
    # The source package must be the editable repo copy (edits apply without reinstall) while the
    # msg subpackage comes from rosidl's generated code, wherever it was installed.
    assert Path(skelsplat_ros.__file__).resolve().is_relative_to(REPO / "skelsplat_ros")
    msg_pkg = __import__("skelsplat_ros.msg", fromlist=["_"])
    assert not Path(msg_pkg.__file__).resolve().is_relative_to(REPO / "skelsplat_ros")
    assert skelsplat_ros.__version__ == "0.1.0"


@pytest.mark.parametrize("msg_type, expected", [
    (PersonKeypoints2D, {
        "id": "int32", "x": "sequence<float>", "y": "sequence<float>",
        "confidence": "sequence<float>"}),
    (Keypoints2DArray, {
        "header": "std_msgs/Header", "skeleton": "string",
        "people": "sequence<skelsplat_ros/PersonKeypoints2D>"}),
    (Skeleton3D, {
        "id": "int32", "skeleton": "string", "joint_names": "sequence<string>",
        "positions": "sequence<geometry_msgs/Point>", "confidence": "sequence<float>",
        "covariance": "sequence<double>", "num_views": "sequence<uint8>",
        "reprojection_error": "sequence<float>"}),
    (Skeleton3DArray, {
        "header": "std_msgs/Header", "skeletons": "sequence<skelsplat_ros/Skeleton3D>"}),
    (TFMessage, {"transforms": "sequence<geometry_msgs/TransformStamped>"}),
])
def test_message_definitions(msg_type, expected):
    fields = msg_type.get_fields_and_field_types()
    for name, ros_type in expected.items():
        assert fields.get(name) == ros_type, f"{msg_type.__name__}.{name}"


def test_dds_isolation_settings(ros_env):
    # conftest sets these at import, before any rclpy.init in this process or its children.
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert int(os.environ["ROS_DOMAIN_ID"]) == ros_env["ROS_DOMAIN_ID"]


def _round_trip(context, spin_until, msg_type, topic, msg, timeout_s=15.0):
    """Publish msg on topic from `context` until a subscriber in a second context receives it."""
    sub_context = Context()
    rclpy.init(context=sub_context)
    pub_node = rclpy.create_node("skelsplat_test_pub", context=context)
    sub_node = rclpy.create_node("skelsplat_test_sub", context=sub_context)
    executor = SingleThreadedExecutor(context=sub_context)
    try:
        received = []
        sub_node.create_subscription(msg_type, topic, received.append, 10)
        publisher = pub_node.create_publisher(msg_type, topic, 10)
        executor.add_node(sub_node)
        # Messages published before discovery has matched both ends are dropped: keep publishing.
        assert spin_until(executor, lambda: received, timeout_s, tick=lambda: publisher.publish(msg)), \
            f"nothing received on {topic} within {timeout_s} s"
        return received[0]
    finally:
        executor.shutdown()
        sub_node.destroy_node()
        pub_node.destroy_node()
        sub_context.try_shutdown()


def _header(frame_id):
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 1700000000, 123456789
    return header


def test_skeleton3d_array_round_trip(rclpy_context, spin_until):
    skeleton = Skeleton3D(
        id=7, skeleton="coco17", joint_names=["nose", "left_eye"],
        positions=[Point(x=0.1, y=0.2, z=1.5), Point(x=-0.3, y=0.0, z=2.0)],
        confidence=[0.9, 0.0],
        covariance=[float(i) for i in range(18)],
        num_views=[3, 0],
        reprojection_error=[1.25, 0.0],
    )
    sent = Skeleton3DArray(header=_header("world"), skeletons=[skeleton])
    got = _round_trip(rclpy_context, spin_until, Skeleton3DArray, f"skelsplat_test/skeletons_{os.getpid()}", sent)
    assert got == sent
    got_skeleton = got.skeletons[0]
    assert list(got_skeleton.num_views) == [3, 0]
    assert list(got_skeleton.covariance) == [float(i) for i in range(18)]
    assert got_skeleton.positions[1].z == 2.0
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1700000000, 123456789)


def test_keypoints2d_array_round_trip(rclpy_context, spin_until):
    people = [
        PersonKeypoints2D(id=i, x=[10.5 + i, 20.0], y=[30.0, 40.25], confidence=[0.5, 0.0])
        for i in range(3)
    ]
    sent = Keypoints2DArray(header=_header("cam0_optical"), skeleton="coco17", people=people)
    got = _round_trip(rclpy_context, spin_until, Keypoints2DArray, f"skelsplat_test/keypoints_{os.getpid()}", sent)
    assert got == sent
    assert [p.id for p in got.people] == [0, 1, 2]
    assert list(got.people[2].x) == [12.5, 20.0]


def test_tf_message_round_trip(rclpy_context, spin_until):
    transform = TransformStamped(header=_header("world"), child_frame_id="nose_7")
    transform.transform.translation.x = 1.0
    transform.transform.rotation.w = 1.0
    sent = TFMessage(transforms=[transform])
    got = _round_trip(rclpy_context, spin_until, TFMessage, f"skelsplat_test/tf_{os.getpid()}", sent)
    assert got == sent
    assert got.transforms[0].child_frame_id == "nose_7"
