"""``skelsplat play BAG``: republish a rosbag2 recording with ``/clock``, for a replay through the live node with
``use_sim_time:=true`` (``ros2 bag play --clock`` where rosbag2 is not installed).

Messages are published as recorded (serialized bytes, no decoding) at their log times, scaled by ``rate``; between
messages ``/clock`` advances at ``clock_rate`` Hz, and it is set to each message's log time just before the message,
so a node on sim time sees the same clock as during the recording: its stamp checks pass, its latency figures are
the recording's. ``/tf_static`` is republished transient-local (late subscribers get it, as from a static
broadcaster); other topics reliable, depth 100. A topic whose type is not importable here is skipped, with a line.

Nothing is sent before the node listens: playing starts once every keypoint topic has a subscriber (the fusion node
subscribes only when it is warmed up and ready to fuse its first frame), with ``/clock`` set to the recording's start
a moment before the first message. Topics nobody subscribes to are named on stderr; when nobody subscribes to any of
the awaited topics within ``wait`` seconds, nothing is played (:class:`NobodyListens`).

A bag that recorded ``/clock`` itself (a simulator's clock, recorded with its topics) is played on that clock:
its ``/clock`` is republished as recorded and no clock is made from the log times. Two clocks on one topic would
throw a node on sim time back and forth between them, and a simulator reset recorded in the bag (its clock going
back) must reach the node as it happened, so that the node's TF buffer and synchronizer start over.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from rosgraph_msgs.msg import Clock

from .bag import KEYPOINTS_TYPE, BagError
from .conversions import ns_to_stamp

__all__ = ["NobodyListens", "message_class", "play"]

_STATIC_QOS = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
_QOS = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)


class NobodyListens(RuntimeError):
    """No subscriber appeared on the topics a replay waits for; the message names them."""


def message_class(msgtype: str):
    """The rclpy class of ``pkg/msg/Name``, or ``None`` when that package is not installed here."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def play(path: str | Path, rate: float = 1.0, topics: list[str] | None = None, wait: float = 60.0,
         clock_rate: float = 100.0, args: list[str] | None = None) -> int:
    """Play the bag once; returns the number of messages published.

    It starts once every keypoint topic (every topic, in a bag without keypoints) has a subscriber, or after
    ``wait`` seconds with the topics nobody subscribes to named on stderr; raises :class:`NobodyListens` when none
    of them has one by then."""
    from rosbags.rosbag2 import Reader

    if rate <= 0 or clock_rate <= 0:
        raise ValueError("rate and clock rate must be positive")
    reader = Reader(Path(path))
    try:
        reader.open()
    except Exception as error:
        raise BagError(f"{path}: cannot open the recording ({error})") from None
    rclpy.init(args=args)
    node = Node("skelsplat_play")
    published = 0
    try:
        publishers, connections = {}, []
        for connection in reader.connections:
            if topics and connection.topic not in topics:
                continue
            cls = message_class(connection.msgtype)
            if cls is None:
                print(f"skelsplat play: skipping {connection.topic}: type {connection.msgtype} is not installed",
                      file=sys.stderr)
                continue
            if connection.topic not in publishers:
                qos = _STATIC_QOS if connection.topic == "/tf_static" else _QOS
                publishers[connection.topic] = node.create_publisher(cls, connection.topic, qos)
            connections.append(connection)
        recorded_clock = "/clock" in publishers
        if recorded_clock:
            clock_pub = publishers["/clock"]
            print("skelsplat play: the bag holds /clock: played as recorded (no clock made from the log times)",
                  file=sys.stderr)
        else:
            clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        awaited = sorted({c.topic for c in connections if c.msgtype == KEYPOINTS_TYPE}) or sorted(publishers)
        _wait_for_subscribers({topic: publishers[topic] for topic in awaited}, wait)
        unheard = sorted(topic for topic, publisher in publishers.items() if not publisher.get_subscription_count())
        if unheard:
            print(f"skelsplat play: nobody subscribes to {', '.join(unheard)} (played anyway)", file=sys.stderr)
        clock_period = 1.0 / clock_rate

        def publish_clock(ns: int) -> None:
            if not recorded_clock:
                clock_pub.publish(Clock(clock=ns_to_stamp(ns)))

        # A node on sim time gets the recording's clock before its first message (its stamp checks need it), and the
        # subscribers' side of discovery a moment to settle.
        settle = time.monotonic() + 0.1
        while time.monotonic() < settle:
            publish_clock(reader.start_time)
            time.sleep(clock_period)
        wall_start, bag_start = time.monotonic(), None

        for connection, log_ns, raw in reader.messages(connections=connections):
            if bag_start is None:
                bag_start = log_ns
                publish_clock(log_ns)
            due = wall_start + (log_ns - bag_start) * 1e-9 / rate
            while (left := due - time.monotonic()) > 0:
                time.sleep(min(left, clock_period))
                elapsed = time.monotonic() - wall_start
                publish_clock(bag_start + min(int(elapsed * rate * 1e9), log_ns - bag_start))
            publish_clock(log_ns)
            publishers[connection.topic].publish(bytes(raw))
            published += 1
        time.sleep(0.2)  # the last messages leave before the publishers are destroyed
    finally:
        reader.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return published


def _wait_for_subscribers(publishers: dict, wait: float) -> None:
    """Until every publisher of ``publishers`` (topic -> publisher) has a subscriber, ``wait`` seconds at most;
    :class:`NobodyListens` when none has one by then."""
    deadline = time.monotonic() + wait
    while not all(p.get_subscription_count() for p in publishers.values()):
        if time.monotonic() >= deadline:
            if not any(p.get_subscription_count() for p in publishers.values()):
                raise NobodyListens(f"nobody subscribes to {', '.join(publishers)} after {wait:g} s: nothing played "
                                    "(start the node first, or check ROS_DOMAIN_ID)")
            return
        time.sleep(0.01)
