"""What the calibration tests share: simulated scenes with ground truth, and rigs disturbed from them."""

from __future__ import annotations

import functools

import numpy as np

from skelsplat_ros.geometry.camera import Camera, CameraRig, rodrigues_to_matrix
from skelsplat_ros.sim.scenes import MultiPersonScenario, make_multi_person_scenario


@functools.lru_cache(maxsize=8)
def scene(people: int, frames: int = 300, seed: int = 0, rig: str = "lab") -> MultiPersonScenario:
    """A seeded multi-person scene with realistic detector noise (cached: several tests read the same one)."""
    return make_multi_person_scenario(rig, people, num_frames=frames, seed=seed, noise="realistic")


def disturb(rig: CameraRig, views: list[int], seed: int, degrees: tuple[float, float] = (10.0, 15.0),
            metres: tuple[float, float] = (0.3, 0.5)) -> CameraRig:
    """``rig`` with ``views`` turned by ``degrees`` about a random axis and moved by ``metres`` in a random
    direction (uniform in each range)."""
    rng = np.random.default_rng(seed)
    cameras = []
    for v, camera in enumerate(rig):
        if v in views:
            axis = rng.normal(size=3)
            turn = rodrigues_to_matrix(axis / np.linalg.norm(axis) * np.radians(rng.uniform(*degrees)))
            shift = rng.normal(size=3)
            centre = camera.centre + shift / np.linalg.norm(shift) * rng.uniform(*metres)
            R = turn @ camera.R
            camera = Camera(camera.name, camera.K, R, -R @ centre, camera.size, camera.dist)
        cameras.append(camera)
    return CameraRig(cameras)
