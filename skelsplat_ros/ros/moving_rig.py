"""A simulated moving rig on ROS (tests and the moving-robot benchmark; not a product node).

Plays a :class:`~skelsplat_ros.sim.moving.MovingRigScenario` in real time the way a robot would:

- ``/tf``: ``world -> base_link`` at every capture stamp (the robot's odometry/localisation);
- ``/tf_static`` (transient-local): ``base_link -> <head camera>_optical`` and ``world -> <wall camera>_optical``;
- ``<camera>/camera_info`` with every frame;
- ``<camera>/keypoints``: stamped with the capture time but published ``latency`` seconds later (the detector);
- ``ground_truth``: the true joints (``Skeleton3DArray``) at the capture stamp, at once.

Run alone (for the moving-robot benchmark): ``python -m skelsplat_ros.ros.moving_rig [--seed N] [--latency S]``.

``tf_gaps``: stamp windows (seconds since start) during which ``/tf`` is not published, to check that the fusion
node leaves those views out instead of using another pose. The frame index of every stamp is kept in
``frame_of_stamp`` for the evaluation.
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from skelsplat_ros.geometry.calibration import camera_info_fields
from skelsplat_ros.geometry.transforms import Transform as RigidTransform
from skelsplat_ros.msg import Keypoints2DArray, Skeleton3DArray
from skelsplat_ros.sim.moving import MovingRigScenario, make_moving_robot_scenario

from .conversions import keypoints_msg, ns_to_stamp, skeleton_array_msg
from .rig_publisher import STATIC_BROADCAST_QOS, optical_frame
from .sim_rig import subscribed_by
from .tf_listener import TF_QOS

BASE_FRAME = "base_link"


def _transform_msg(parent: str, child: str, transform: RigidTransform, stamp) -> TransformStamped:
    x, y, z = transform.translation
    qx, qy, qz, qw = transform.quaternion
    return TransformStamped(header=Header(stamp=stamp, frame_id=parent), child_frame_id=child,
                            transform=Transform(translation=Vector3(x=x, y=y, z=z),
                                                rotation=Quaternion(x=qx, y=qy, z=qz, w=qw)))


class MovingRigPublisher(Node):
    """Publishes ``scenario`` at its frame rate (played back and forth), keypoints ``latency`` s late."""

    def __init__(self, scenario: MovingRigScenario, latency: float = 0.1, world_frame: str = "world",
                 tf_gaps: tuple[tuple[float, float], ...] = (), wait_for_node: str = "", **node_kwargs) -> None:
        super().__init__("skelsplat_moving_rig", **node_kwargs)
        # The detector sends nothing until this node subscribes to every camera's keypoints (TF, CameraInfo and the
        # ground truth go out from the start, as a robot's do).
        self.wait_for_node = wait_for_node
        self.sending = not wait_for_node
        self.scenario = scenario
        self.latency_ns = int(latency * 1e9)
        self.world_frame = world_frame
        self.tf_gaps = tf_gaps
        self.tf_pub = self.create_publisher(TFMessage, "/tf", TF_QOS)
        self.static_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_BROADCAST_QOS)
        self.info_pubs = {c: self.create_publisher(CameraInfo, f"{c}/camera_info", QoSProfile(depth=1))
                          for c in scenario.names}
        self.keypoint_pubs = {c: self.create_publisher(Keypoints2DArray, f"{c}/keypoints", qos_profile_sensor_data)
                              for c in scenario.names}
        self.ground_truth_pub = self.create_publisher(Skeleton3DArray, "ground_truth", QoSProfile(depth=10))
        stamp = self.get_clock().now().to_msg()
        static = [_transform_msg(BASE_FRAME, optical_frame("", c.name), RigidTransform(c.R, c.t).inverse(), stamp)
                  for c in scenario.mounted]
        static += [_transform_msg(world_frame, optical_frame("", c.name), RigidTransform(c.R, c.t).inverse(), stamp)
                   for c in scenario.wall]
        self.static_pub.publish(TFMessage(transforms=static))
        cameras = list(scenario.mounted) + list(scenario.wall)
        self._info = {c.name: camera_info_fields(c) for c in cameras}
        self.tick = 0
        self.start_ns = self.get_clock().now().nanoseconds  # tf_gaps count from here (with wait_for_node: from sending)
        self.frame_of_stamp: dict[int, int] = {}
        self.tf_withheld: list[int] = []  # stamps (ns) whose /tf was not published
        self._pending: collections.deque[tuple[int, int]] = collections.deque()
        self.create_timer(1.0 / scenario.fps, self._on_tick)

    def _frame(self, tick: int) -> int:
        period = 2 * (self.scenario.num_frames - 1)
        i = tick % period
        return i if i < self.scenario.num_frames else period - i

    def _on_tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if not self.sending and subscribed_by(self, self.wait_for_node, [f"{c}/keypoints" for c in self.keypoint_pubs]):
            self.sending, self.start_ns = True, now_ns  # the run (and its TF gaps) starts with the first keypoints
        index = self._frame(self.tick)
        self.tick += 1
        self.frame_of_stamp[now_ns] = index
        stamp = ns_to_stamp(now_ns)
        elapsed = (now_ns - self.start_ns) * 1e-9
        if any(start <= elapsed < end for start, end in self.tf_gaps):
            self.tf_withheld.append(now_ns)
        else:
            pose = self.scenario.base_poses[index]
            self.tf_pub.publish(TFMessage(transforms=[_transform_msg(self.world_frame, BASE_FRAME, pose, stamp)]))
        joints = self.scenario.ground_truth[index]
        self.ground_truth_pub.publish(skeleton_array_msg(
            Header(stamp=stamp, frame_id=self.world_frame), self.scenario.skeleton.name,
            list(self.scenario.skeleton.joint_names), joints, np.ones(len(joints))))
        for camera, publisher in self.info_pubs.items():
            publisher.publish(CameraInfo(header=Header(stamp=stamp, frame_id=optical_frame("", camera)),
                                         **self._info[camera]))
        self._pending.append((now_ns, index))
        while self.sending and self._pending and self._pending[0][0] <= now_ns - self.latency_ns:
            capture_ns, frame = self._pending.popleft()
            for view, (camera, publisher) in enumerate(self.keypoint_pubs.items()):
                publisher.publish(keypoints_msg(self.scenario.keypoints[view, frame], ns_to_stamp(capture_ns),
                                                optical_frame("", camera), self.scenario.skeleton.name))

    def true_rig(self, stamp_ns: int):
        """The true cameras of the frame captured at ``stamp_ns``."""
        return self.scenario.rig_at(self.frame_of_stamp[stamp_ns])

    def truth(self, stamp_ns: int) -> np.ndarray:
        return self.scenario.ground_truth[self.frame_of_stamp[stamp_ns]]


def main(argv: list[str] | None = None) -> int:
    """Publish a moving-robot scenario until interrupted (ROS arguments after ``--ros-args`` go to rclpy)."""
    from .params import spin_node

    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    own = argv[: len(argv) - len(ros_args)]
    parser = argparse.ArgumentParser(prog="moving_rig", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the simulated recording (s)")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--latency", type=float, default=0.1, help="detector delay of the keypoints (s)")
    parser.add_argument("--noise", default="realistic")
    parser.add_argument("--wait-for-node", default="", help="send keypoints only once this node subscribes to them")
    options = parser.parse_args(own)
    scenario = make_moving_robot_scenario(int(options.seconds * options.rate), fps=options.rate, seed=options.seed,
                                          noise=options.noise)
    return spin_node(lambda: MovingRigPublisher(scenario, latency=options.latency,
                                                wait_for_node=options.wait_for_node),
                     "skelsplat_moving_rig", [sys.argv[0], *ros_args])


if __name__ == "__main__":
    sys.exit(main())
