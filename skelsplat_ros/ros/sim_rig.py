"""``skelsplat_sim_rig``: a simulated camera rig watching one or several moving people, as a ROS node.

Publishes, at ``rate`` Hz, one Keypoints2DArray per camera on ``<camera>/keypoints`` (stamp = capture time, the
detector noise model's outliers, occlusions and dropped views included) and the true 3D joints as a
Skeleton3DArray on ``ground_truth`` with the same stamp, one Skeleton3D per person present (id = the person's
index). With ``people`` > 1 the scene is :func:`~skelsplat_ros.sim.make_multi_person_scenario`'s: people of
different sizes who cross, occlude each other, enter and leave, ghost detections in single views; every camera
lists its detections in a shuffled order with ``id = -1``, as an untracked detector does. The recording
(``motion_seconds`` long) is simulated once at start-up and played back and forth, so a long run has no jump in the
motion. ``drop_camera``/``drop_after``
silence one camera mid-run (a dead camera for tests and the demo). With ``wait_for_node`` the rig publishes nothing
until that node subscribes to every camera's keypoints, then starts at the recording's first frame: a benchmark
counts every frame sent from the moment the fusion node can be reached, start included.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.time import Time as RosTime
from std_msgs.msg import Header

from skelsplat_ros.geometry.calibration import load_calibration, save_calibration
from skelsplat_ros.geometry.camera import CameraRig
from skelsplat_ros.msg import Keypoints2DArray, Skeleton3DArray
from skelsplat_ros.sim import NoiseModel, generate_motion, make_rig, simulate_detections
from skelsplat_ros.skeleton.models import get_skeleton

from .conversions import keypoints_msg, skeleton_msg, stamp_to_ns
from .params import SIM_RIG_PARAMS, StartupError, declare, spin_node

NODE_NAME = "skelsplat_sim_rig"


def pingpong_index(tick: int, num_frames: int) -> int:
    """Frame played at ``tick`` when a recording of ``num_frames`` is played forwards, backwards, forwards..."""
    if num_frames <= 1:
        return 0
    period = 2 * (num_frames - 1)
    i = tick % period
    return i if i < num_frames else period - i


def subscribed_by(node: Node, name: str, topics: list[str]) -> bool:
    """Whether a node called ``name`` subscribes to every one of ``topics`` (relative names resolve in ``node``'s
    namespace), as far as ``node`` has discovered."""
    return all(any(info.node_name == name for info in node.get_subscriptions_info_by_topic(
        node.resolve_topic_name(topic))) for topic in topics)


class SimRigNode(Node):
    """The simulated rig. Raises :class:`StartupError` for an unusable configuration."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare(self, SIM_RIG_PARAMS)
        self.params = p
        self.people = int(p["people"])
        try:
            self.skeleton = get_skeleton(p["skeleton"])
            rate = float(p["rate"])
            num_frames = max(2, int(round(p["motion_seconds"] * rate)))
            if self.people == 1:
                if p["calibration_file"]:
                    self.rig: CameraRig = load_calibration(p["calibration_file"])
                else:
                    self.rig = make_rig(p["rig"], distortion=bool(p["distortion"]), seed=int(p["seed"]))
                truth = generate_motion(self.skeleton, num_frames, fps=rate, seed=int(p["seed"]), motion=p["motion"])
                detections = simulate_detections(self.rig, truth, self.skeleton, NoiseModel.preset(p["noise"]),
                                                 seed=int(p["seed"]), fps=rate)
                # One person, one slot: the multi-person layout with P = S = 1.
                self.ground_truth, self.keypoints = truth[:, None], detections[:, :, None]
            else:
                self.rig, self.ground_truth, self.keypoints = self._multi_person_scene(num_frames, rate)
        except (KeyError, ValueError, OSError) as error:
            raise StartupError(error.args[0] if isinstance(error, KeyError) and error.args else str(error)) from None
        if p["drop_camera"] and p["drop_camera"] not in self.rig.names:
            raise StartupError(f"drop_camera {p['drop_camera']!r} is not a camera of the rig {self.rig.names}")
        self.bumped_rig, self.bumped_keypoints, self.bump_stamp_ns = None, None, None
        if p["bump_camera"]:
            if p["bump_camera"] not in self.rig.names:
                raise StartupError(f"bump_camera {p['bump_camera']!r} is not a camera of the rig {self.rig.names}")
            self._bump(rate)
        if p["calibration_out"]:
            try:
                save_calibration(self.rig, p["calibration_out"])
            except OSError as error:
                raise StartupError(f"cannot write calibration_out {p['calibration_out']}: {error}") from None

        # Same QoS a detector node would use for its keypoints (see the fusion node's subscriptions).
        self.keypoint_pubs = {
            camera: self.create_publisher(Keypoints2DArray, f"{camera}/keypoints", qos_profile_sensor_data)
            for camera in self.rig.names
        }
        self.ground_truth_pub = self.create_publisher(Skeleton3DArray, "ground_truth", QoSProfile(depth=10))
        self._rng = np.random.default_rng(int(p["seed"]) + 7919)
        self.tick = 0
        self.started = time.monotonic()
        self.publishing_since: float | None = None  # monotonic time of the first frame published
        # Stamp (ns) -> frame index of what was published, for evaluations in the same process (tests, benchmark).
        # ground_truth [F, P, J, 3] (NaN while a person is absent) and keypoints [V, F, S, J, 3] are indexed by it.
        self.frame_of_stamp: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.published_per_camera = {camera: 0 for camera in self.rig.names}
        self._drop_reference = self.started
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(1.0 / rate, self._publish_frame)
        self.get_logger().info(
            f"simulating {self.people} {'person' if self.people == 1 else 'people'} seen by "
            f"{len(self.rig)} cameras {self.rig.names} at {rate:g} Hz, noise {p['noise']}, "
            f"{num_frames} frames played back and forth"
            + (f"; calibration written to {p['calibration_out']}" if p["calibration_out"] else "")
        )

    def _multi_person_scene(self, num_frames: int, rate: float) -> tuple[CameraRig, np.ndarray, np.ndarray]:
        """Rig, ground truth ``[F, P, J, 3]`` and detections ``[V, F, S, J, 3]`` of a multi-person scene."""
        from skelsplat_ros.sim.scenes import make_multi_person_scenario

        p = self.params
        if p["calibration_file"]:
            raise ValueError("people > 1 simulates one of the built-in rigs (parameter rig); calibration_file is "
                             "only for one person")
        scene = make_multi_person_scenario(p["rig"], self.people, num_frames=num_frames, fps=rate, noise=p["noise"],
                                           seed=int(p["seed"]), skeleton_name=self.skeleton.name)
        return scene.rig, scene.ground_truth, scene.keypoints

    def _bump(self, rate: float) -> None:
        """The rig with ``bump_camera`` turned and shifted, and every camera's keypoints as that rig sees the same
        people (only the bumped camera's are used, from ``bump_after`` on)."""
        from skelsplat_ros.geometry.camera import Camera, rodrigues_to_matrix
        from skelsplat_ros.sim.scenes import compose_people

        p = self.params
        view = self.rig.index(p["bump_camera"])
        camera = self.rig[view]
        R = rodrigues_to_matrix(np.array([0.0, np.radians(p["bump_degrees"]), 0.0])) @ camera.R
        centre = camera.centre + float(p["bump_metres"]) * camera.R[0]  # sideways: the image's x axis
        bumped = Camera(camera.name, camera.K, R, -R @ centre, camera.size, camera.dist)
        self.bumped_rig = CameraRig([bumped if v == view else c for v, c in enumerate(self.rig)])
        if self.people == 1:
            keypoints = simulate_detections(self.bumped_rig, self.ground_truth[:, 0], self.skeleton,
                                            NoiseModel.preset(p["noise"]), seed=int(p["seed"]), fps=rate)[:, :, None]
        else:
            keypoints = compose_people(self.bumped_rig, self.skeleton, self.ground_truth, fps=rate, noise=p["noise"],
                                       seed=int(p["seed"])).keypoints
        slots = max(keypoints.shape[2], self.keypoints.shape[2])
        self.keypoints, keypoints = (np.concatenate([k, np.full(k.shape[:2] + (slots - k.shape[2],) + k.shape[3:],
                                                                np.nan)], axis=2) for k in (self.keypoints, keypoints))
        self.bumped_keypoints = keypoints

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Runtime changes of drop_camera/drop_after/drop_duration (the others are read-only); restarts the clock."""
        for parameter in parameters:
            if parameter.name == "drop_camera" and parameter.value and parameter.value not in self.rig.names:
                return SetParametersResult(successful=False, reason=f"no camera {parameter.value!r} in the rig")
        for parameter in parameters:
            if parameter.name in self.params:
                self.params[parameter.name] = parameter.value
        self._drop_reference = time.monotonic()
        return SetParametersResult(successful=True)

    def camera_silent(self, camera: str, elapsed: float) -> bool:
        """Whether ``camera`` is silenced ``elapsed`` seconds after start (or the last runtime drop setting)."""
        p = self.params
        if camera != p["drop_camera"] or elapsed < p["drop_after"]:
            return False
        return p["drop_duration"] <= 0 or elapsed < p["drop_after"] + p["drop_duration"]

    def _publish_frame(self) -> None:
        if self.publishing_since is None:
            awaited = self.params["wait_for_node"]
            # The graph names the node; each publisher's match count says that DDS will also deliver to it.
            if awaited and not (subscribed_by(self, awaited, [f"{c}/keypoints" for c in self.rig.names])
                                and all(pub.get_subscription_count() for pub in self.keypoint_pubs.values())):
                return
            self.publishing_since = self._drop_reference = time.monotonic()
            if awaited:
                self.get_logger().info(f"{awaited} subscribes to the keypoints: publishing")
        elapsed = time.monotonic() - self._drop_reference
        index = pingpong_index(self.tick, len(self.ground_truth))
        self.tick += 1
        # One person keeps the id 0 it always had; several are published untracked and in the scene's shuffled order.
        person_id = 0 if self.people == 1 else -1
        # Every camera's message is built before the capture stamp is taken and published before the ground truth:
        # real cameras capture at once and publish in parallel, so none of them should wait here for the others.
        unstamped = RosTime().to_msg()
        messages = []
        bumped = self.bumped_keypoints is not None and \
            time.monotonic() - self.publishing_since >= self.params["bump_after"]
        for view, camera in enumerate(self.rig.names):
            if not self.camera_silent(camera, elapsed):
                frame_id = f"{self.params['frame_prefix']}{camera}_optical"
                source = self.bumped_keypoints if bumped and camera == self.params["bump_camera"] else self.keypoints
                messages.append((camera, keypoints_msg(source[view, index], unstamped, frame_id,
                                                       self.skeleton.name, person_id)))
        stamp = self.get_clock().now().to_msg()
        stamp_ns = stamp_to_ns(stamp)
        if bumped and self.bump_stamp_ns is None:
            self.bump_stamp_ns = stamp_ns
            self.get_logger().info(f"camera {self.params['bump_camera']} bumped: its keypoints are those of the "
                                   f"bumped camera from stamp {stamp_ns} ns on")
        self.frame_of_stamp[stamp_ns] = index
        while len(self.frame_of_stamp) > 200_000:
            self.frame_of_stamp.popitem(last=False)
        jitter = float(self.params["stamp_jitter"])
        for camera, msg in messages:
            msg.header.stamp = stamp
            if jitter > 0:
                jittered = stamp_ns + int(self._rng.uniform(-jitter, jitter) * 1e9)
                msg.header.stamp = RosTime(nanoseconds=jittered).to_msg()
            self.keypoint_pubs[camera].publish(msg)
            self.published_per_camera[camera] += 1
        names = list(self.skeleton.joint_names)
        truth = [skeleton_msg(self.skeleton.name, names, joints, np.ones(len(joints)), person_id=person)
                 for person, joints in enumerate(self.ground_truth[index])]
        self.ground_truth_pub.publish(Skeleton3DArray(header=Header(stamp=stamp, frame_id=self.params["world_frame"]),
                                                      skeletons=[t for t in truth if t is not None]))


def main(args: list[str] | None = None) -> int:
    """Console script ``skelsplat_sim_rig``; returns the exit status (1 for a bad configuration)."""
    return spin_node(SimRigNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
