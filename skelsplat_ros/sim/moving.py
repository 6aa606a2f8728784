"""A moving camera rig: a robot with a stereo head circling the person, plus fixed wall cameras.

The robot's base (``base_link``: x forward, y left, z up) drives on a circle around the origin, always facing it;
two cameras on its head (a stereo pair) are fixed to the base, the wall cameras to the world. What ROS would
carry: ``world -> base_link`` on ``/tf`` at every frame, ``base_link -> <camera>_optical`` and
``world -> <wall camera>_optical`` on ``/tf_static``.

Detections of the mounted cameras are simulated in the base frame, where those cameras stand still and the person
moves relative to them: the detector's temporally correlated noise then behaves as for any camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import Camera, CameraRig, look_at
from ..geometry.transforms import Transform
from ..skeleton.models import Skeleton, get_skeleton
from .detector import NoiseModel, simulate_detections
from .motion import generate_motion

__all__ = ["MovingRigScenario", "make_moving_robot_scenario"]


@dataclass
class MovingRigScenario:
    """A recording with moving cameras.

    Attributes:
        skeleton: the joint layout.
        ground_truth: 3D joints ``[F, J, 3]`` (world, metres).
        keypoints: detections ``[V, F, J, 3]``, views ordered as ``names``.
        fps: frame rate.
        names: camera names ``[V]``: the mounted ones first, then the wall ones.
        mounted: the robot's cameras with ``R, t`` base-to-camera (``camera_T_base``).
        wall: the wall cameras, world-to-camera.
        base_poses: ``world_T_base`` per frame ``[F]``.
    """

    skeleton: Skeleton
    ground_truth: np.ndarray
    keypoints: np.ndarray
    fps: float
    names: list[str]
    mounted: CameraRig
    wall: CameraRig
    base_poses: list[Transform]

    @property
    def num_frames(self) -> int:
        return int(self.ground_truth.shape[0])

    def rig_at(self, frame: int) -> CameraRig:
        """The true cameras at ``frame`` (world-to-camera), in ``names`` order."""
        base_T_world = self.base_poses[frame].inverse()
        moving = [Camera(c.name, c.K, c.R @ base_T_world.rotation, c.R @ base_T_world.translation + c.t, c.size,
                         c.dist) for c in self.mounted]
        return CameraRig(moving + list(self.wall))


def _camera(name: str, centre: np.ndarray, target: np.ndarray, focal: float, size: tuple[int, int]) -> Camera:
    R, t = look_at(centre, target)
    K = np.array([[focal, 0.0, size[0] / 2.0], [0.0, focal, size[1] / 2.0], [0.0, 0.0, 1.0]])
    return Camera(name, K, R, t, size)


def make_moving_robot_scenario(num_frames: int = 300, fps: float = 30.0, seed: int = 0,
                               noise: str | NoiseModel = "realistic", skeleton_name: str = "h36m17",
                               radius: float = 3.2, angular_speed: float = 0.3, motion: str = "mixed",
                               ) -> MovingRigScenario:
    """Stereo head (baseline 0.12 m, 1.4 m high) on a robot circling at ``radius`` m and ``angular_speed`` rad/s
    (0.3 rad/s at 3.2 m is about 1 m/s), plus two wall cameras at room corners, all seeded by ``seed``."""
    skeleton = get_skeleton(skeleton_name)
    rng = np.random.default_rng([int(seed), 4242])
    ground_truth = generate_motion(skeleton, num_frames, fps=fps, seed=seed, motion=motion)
    # Mounted cameras in the base frame: looking forward (+x) at a point 1 m high, radius ahead.
    mounted = CameraRig([
        _camera(f"head_{side}", np.array([0.05, offset, 1.4]), np.array([radius, 0.0, 1.0]), 800.0, (1280, 720))
        for side, offset in (("left", 0.06), ("right", -0.06))
    ])
    start = rng.uniform(0, 2 * np.pi)
    angles = start + angular_speed * np.arange(num_frames) / fps
    base_poses = []
    for angle in angles:
        heading = angle + np.pi  # facing the origin
        rotation = np.array([[np.cos(heading), -np.sin(heading), 0.0], [np.sin(heading), np.cos(heading), 0.0],
                             [0.0, 0.0, 1.0]])
        base_poses.append(Transform(rotation, np.array([radius * np.cos(angle), radius * np.sin(angle), 0.0])))
    wall = CameraRig([
        _camera("wall_0", np.array([4.0, 3.5, 2.5]), np.array([0.0, 0.0, 1.0]), 1050.0, (1920, 1080)),
        _camera("wall_1", np.array([-4.0, 3.5, 2.5]), np.array([0.0, 0.0, 1.0]), 1050.0, (1920, 1080)),
    ])
    # The person seen from the base frame, where the mounted cameras are static.
    in_base = np.stack([pose.inverse().apply(points) for pose, points in zip(base_poses, ground_truth)])
    mounted_kp = simulate_detections(mounted, in_base, skeleton, noise, seed=seed, fps=fps)
    wall_kp = simulate_detections(wall, ground_truth, skeleton, noise, seed=seed + 1, fps=fps)
    return MovingRigScenario(skeleton, ground_truth, np.concatenate([mounted_kp, wall_kp]), float(fps),
                             mounted.names + wall.names, mounted, wall, base_poses)
