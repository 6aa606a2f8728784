"""``/tf`` + ``/tf_static`` into a :class:`~skelsplat_ros.geometry.transforms.TransformBuffer` (tf2_ros is not on
PyPI; this is the part of its ``TransformListener`` the fusion node needs).

QoS as tf2_ros's listener, so every tf2 broadcaster matches: ``/tf`` depth 100, reliable, volatile; ``/tf_static``
depth 100, reliable, transient-local (a late subscriber still gets the latched static transforms).

As tf2_ros's listener, it clears the buffer's dynamic transforms when the node's clock is found to have gone back
(a bag replayed again with ``use_sim_time``, a simulator reset): the old timeline's poses must not be used for the
new one. The buffer itself also recognises jumps from the stamps (``geometry/transforms.py``), which covers time
that jumps in the stamps while the clock does not.
"""

from __future__ import annotations

import threading

from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.subscription import MessageInfo
from tf2_msgs.msg import TFMessage

from skelsplat_ros.geometry.transforms import TransformBuffer

from .conversions import stamp_to_ns

__all__ = ["TF_QOS", "TF_STATIC_QOS", "TfListener", "add_tf_message"]

TF_QOS = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE,
                           durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def add_tf_message(buffer: TransformBuffer, msg: TFMessage, static: bool) -> int:
    """Add every transform of a ``tf2_msgs/TFMessage`` (rclpy or rosbags message); returns how many were refused
    (empty or equal frame names, non-finite values, a zero quaternion)."""
    refused = 0
    for transform in msg.transforms:
        t, q = transform.transform.translation, transform.transform.rotation
        try:
            buffer.set_transform(transform.header.frame_id.lstrip("/"), transform.child_frame_id.lstrip("/"),
                                 stamp_to_ns(transform.header.stamp), (t.x, t.y, t.z), (q.x, q.y, q.z, q.w),
                                 static=static)
        except ValueError:
            refused += 1
    return refused


class TfListener:
    """Subscribes ``/tf`` and ``/tf_static`` on ``node`` and fills ``buffer``; counts refused transforms.

    The node's own ``/tf`` publishers (see :meth:`ignore_own_publishers`) are skipped before their messages are
    deserialised: a fusion node publishing a frame per joint must not spend its executor on reading them back.
    """

    def __init__(self, node: Node, buffer: TransformBuffer) -> None:
        self.buffer = buffer
        self.refused = 0
        self.received = 0
        self.cleared = 0  # times the clock went back and the buffer was cleared
        self._clock_ns: int | None = None  # the node's clock at the last message
        self._node = node
        self._own: set[bytes] = set()  # gids of the node's /tf publishers
        self._lock = threading.Lock()
        node.create_subscription(TFMessage, "/tf", self._on_raw_tf, TF_QOS, raw=True)
        node.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS)

    def ignore_own_publishers(self) -> None:
        """Skip from now on what the node's current ``/tf`` publishers send (call after creating them)."""
        node = self._node
        self._own = {bytes(info.endpoint_gid) for info in node.get_publishers_info_by_topic("/tf")
                     if info.node_name == node.get_name() and info.node_namespace == node.get_namespace()}

    def _on_raw_tf(self, data: bytes, info: MessageInfo) -> None:
        gid = info.get("publisher_gid")
        if gid is not None and gid.get("data") in self._own:
            return
        self._on_tf(deserialize_message(data, TFMessage), False)

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        now = self._node.get_clock().now().nanoseconds
        with self._lock:
            back = self._clock_ns is not None and now < self._clock_ns
            self._clock_ns = now
            if back:
                self.cleared += 1
        if back:
            self._node.get_logger().warning("the clock jumped back in time: clearing the TF buffer")
            self.buffer.clear()
        refused = add_tf_message(self.buffer, msg, static)
        with self._lock:
            self.received += len(msg.transforms)
            self.refused += refused
