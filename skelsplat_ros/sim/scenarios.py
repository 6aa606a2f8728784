"""A simulated recording in one call: :class:`Scenario` and :func:`make_scenario`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton, get_skeleton
from .detector import DetectionInfo, NoiseModel, simulate_detections
from .motion import generate_motion
from .rigs import make_rig

# ----------------------------------------------------------------------------------------------------------------
# Scenarios
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A simulated recording.

    Attributes:
        rig: the cameras.
        skeleton: the joint layout.
        ground_truth: 3D joints ``[F, J, 3]`` (metres, world frame).
        keypoints: detections ``[V, F, J, 3]`` (x px, y px, confidence; missing = NaN, 0).
        fps: frame rate.
        noise: the noise model used.
        info: what the simulated detector did (see :class:`DetectionInfo`).
    """

    rig: CameraRig
    skeleton: Skeleton
    ground_truth: np.ndarray
    keypoints: np.ndarray
    fps: float
    noise: NoiseModel | None = None
    info: DetectionInfo | None = None

    @property
    def num_frames(self) -> int:
        return int(self.ground_truth.shape[0])

    @property
    def timestamps(self) -> np.ndarray:
        """Frame times ``[F]`` in seconds from 0."""
        return np.arange(self.num_frames) / self.fps


def make_scenario(rig_kind: str, skeleton_name: str = "h36m17", num_frames: int = 300, fps: float = 30,
                  noise: str | NoiseModel = "realistic", seed: int = 0, distortion: bool = False,
                  motion: str = "mixed", image_size: tuple[int, int] | None = None) -> Scenario:
    """Rig, motion and detections in one call (all seeded by ``seed``)."""
    skeleton = get_skeleton(skeleton_name)
    noise_model = NoiseModel.preset(noise) if isinstance(noise, str) else noise
    rig = make_rig(rig_kind, image_size=image_size, distortion=distortion, seed=seed)
    gt = generate_motion(skeleton, num_frames, fps=fps, seed=seed, motion=motion)
    kp, info = simulate_detections(rig, gt, skeleton, noise_model, seed=seed, fps=fps, return_info=True)
    return Scenario(rig=rig, skeleton=skeleton, ground_truth=gt, keypoints=kp, fps=float(fps), noise=noise_model,
                    info=info)
