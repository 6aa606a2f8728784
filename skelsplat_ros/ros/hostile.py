"""A simulated rig behind a misbehaving detector: valid keypoints mixed with malformed ones on the same topics.

For the fuzz test and ``scripts/bench_reliability.py``: every ``1 / rate`` s, each camera's topic
``<camera>/keypoints`` gets the valid message of the current frame of a simulated recording and
``malformed_per_valid`` malformed ones (:class:`skelsplat_ros.sim.hostile.HostileDetector`), in a random order.
Malformed messages are drawn from a pool made at start-up (``pool`` per camera), restamped for each frame: making
them costs milliseconds each, which would slow the rig below its rate.
The valid messages' stamps map to their frame (``frame_of_stamp``), so a listener can tell which fused outputs are
valid frames and how far they are from the ground truth.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time as RosTime
from std_msgs.msg import Header

from skelsplat_ros.msg import Keypoints2DArray, PersonKeypoints2D
from skelsplat_ros.sim import Scenario
from skelsplat_ros.sim.hostile import HostileDetector, HostileMessage

from .conversions import keypoints_msg, stamp_to_ns
from .sim_rig import pingpong_index, subscribed_by

__all__ = ["HostileRigNode", "hostile_msg"]


def hostile_msg(message: HostileMessage, valid_stamp_ns: int = 0) -> Keypoints2DArray:
    """The ``Keypoints2DArray`` of a malformed message coming with a valid message stamped ``valid_stamp_ns``."""
    stamp = RosTime(nanoseconds=message.stamp_ns(valid_stamp_ns)).to_msg()
    msg = Keypoints2DArray(header=Header(stamp=stamp, frame_id=message.frame_id), skeleton=message.skeleton)
    people = []
    for index, (x, y, conf) in enumerate(message.people):
        person = PersonKeypoints2D(id=index)
        person.x, person.y, person.confidence = x, y, conf
        people.append(person)
    msg.people = people
    return msg


class HostileRigNode(Node):
    """Plays ``scenario`` back and forth at ``rate`` Hz, each valid message among ``malformed_per_valid`` malformed
    ones (see the module docstring). ``sent`` counts the messages by kind (``valid`` or the malformation). With
    ``wait_for_node`` it publishes nothing until that node subscribes to every camera's keypoints; cameras in
    ``invalid_only`` send only the malformed messages, cameras in ``silent`` nothing at all."""

    def __init__(self, scenario: Scenario, rate: float, malformed_per_valid: int = 3, seed: int = 0,
                 max_people: int = 50, pool: int = 64, wait_for_node: str = "", invalid_only: tuple[str, ...] = (),
                 silent: tuple[str, ...] = (), **node_kwargs: Any) -> None:
        super().__init__("skelsplat_hostile_rig", **node_kwargs)
        self.wait_for_node = wait_for_node
        self.invalid_only, self.silent = set(invalid_only), set(silent)
        self.publishing_since: float | None = None  # monotonic time of the first frame published
        self.scenario = scenario
        self.malformed_per_valid = int(malformed_per_valid)
        self.detector = HostileDetector(scenario.rig.sizes, scenario.skeleton.num_joints, scenario.skeleton.name,
                                        seed=seed, max_people=max_people)
        self._order = np.random.default_rng(seed + 1)
        self.pool = [[(m, hostile_msg(m)) for m in self.detector.messages(view, f"{camera}_optical", pool)]
                     for view, camera in enumerate(scenario.rig.names)] if malformed_per_valid else []
        self.pubs = {camera: self.create_publisher(Keypoints2DArray, f"{camera}/keypoints", qos_profile_sensor_data)
                     for camera in scenario.rig.names}
        self.frame_of_stamp: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.sent: collections.Counter[str] = collections.Counter()
        self.tick = 0
        self.create_timer(1.0 / rate, self._publish_frame)

    def _publish_frame(self) -> None:
        scenario = self.scenario
        if self.publishing_since is None:
            if self.wait_for_node and not subscribed_by(self, self.wait_for_node,
                                                        [f"{c}/keypoints" for c in scenario.rig.names]):
                return
            self.publishing_since = time.monotonic()
        index = pingpong_index(self.tick, scenario.num_frames)
        self.tick += 1
        stamp = self.get_clock().now().to_msg()
        stamp_ns = stamp_to_ns(stamp)
        self.frame_of_stamp[stamp_ns] = index
        while len(self.frame_of_stamp) > 200_000:
            self.frame_of_stamp.popitem(last=False)
        for view, camera in enumerate(scenario.rig.names):
            if camera in self.silent:
                continue
            frame_id = f"{camera}_optical"
            valid = camera not in self.invalid_only
            batch: list[Keypoints2DArray] = []
            if valid:
                batch.append(keypoints_msg(scenario.keypoints[view, index], stamp, frame_id, scenario.skeleton.name))
            for k in self._order.integers(0, len(self.pool[view]), self.malformed_per_valid) if self.pool else ():
                message, msg = self.pool[view][k]
                msg.header.stamp = RosTime(nanoseconds=message.stamp_ns(stamp_ns)).to_msg()
                batch.append(msg)
                self.sent[message.malformation] += 1
            self.sent["valid"] += valid
            for k in self._order.permutation(len(batch)):
                self.pubs[camera].publish(batch[k])
