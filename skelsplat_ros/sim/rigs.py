"""Synthetic camera rigs: ``surround`` (8-camera mocap ring), ``lab`` (4 room corners), ``robot`` (3 cameras
with a narrow baseline on a robot facing the person) and ``portrait`` (4 portrait HD cameras on tripods around the
person), optionally with OpenCV lens distortion; :func:`make_ring_rig`, a ring of any number of cameras on
three tiers (a capture dome); and rough calibrations of rigs (:func:`disturb_rig`)."""

from __future__ import annotations

import math

import numpy as np

from ..geometry.camera import Camera, CameraRig, look_at, rodrigues_to_matrix
from .motion import _rot_z

RIG_KINDS: tuple[str, ...] = ("surround", "lab", "robot", "portrait")
_STREAM_RIG = 0x726967

# ----------------------------------------------------------------------------------------------------------------
# Camera rigs
# ----------------------------------------------------------------------------------------------------------------

_DEFAULT_SIZES = {"surround": (1920, 1080), "lab": (1920, 1080), "robot": (1280, 720), "portrait": (1080, 1920)}


def _random_distortion(rng: np.random.Generator, wide: bool) -> np.ndarray:
    k1 = rng.uniform(-0.12, 0.02) if wide else rng.uniform(-0.1, 0.1)
    k2 = rng.uniform(-0.02, 0.06) if k1 < 0 else rng.uniform(-0.04, 0.02)
    return np.array([k1, k2, rng.uniform(-1e-3, 1e-3), rng.uniform(-1e-3, 1e-3), 0.0])


def _make_camera(rng, name, centre, target, focal, size, default_size, distortion, wide=False) -> Camera:
    w, h = size
    scale = w / default_size[0]  # keep the field of view when the resolution changes
    f = focal * scale
    K = np.array([[f * rng.uniform(0.998, 1.002), 0.0, w / 2.0 + rng.uniform(-0.012, 0.012) * w],
                  [0.0, f, h / 2.0 + rng.uniform(-0.012, 0.012) * h],
                  [0.0, 0.0, 1.0]])
    R, _ = look_at(np.asarray(centre, float), np.asarray(target, float))
    R = _rot_z(rng.uniform(-0.015, 0.015)) @ R  # mounting roll, about the optical axis
    t = -R @ np.asarray(centre, float)
    dist = _random_distortion(rng, wide) if distortion else np.zeros(5)
    return Camera(name=name, K=K, R=R, t=t, size=(w, h), dist=dist)


def make_rig(kind: str, image_size: tuple[int, int] | None = None, distortion: bool = False, seed: int = 0) -> CameraRig:
    """A seeded synthetic camera rig around the origin (Z up, metres); cameras ``cam0..camN-1``.

    Args:
        kind: ``surround`` -- 8 cameras on a ~4 m circle (radius 3.8-4.2 m) at 2.0-2.5 m height, looking at ~1 m,
            1920x1080, f 1100-1500 px (a mocap lab); ``lab`` -- 4 cameras in the corners of a ~6.5x5.5 m room,
            2.4-2.7 m high, 1920x1080, f 950-1150 px; ``robot`` -- 3 cameras on a robot 2.5-2.9 m along +x facing
            the origin (stereo pair at 1.38-1.48 m, 0.25-0.3 m apart, and a chest camera at 1.12-1.18 m; all within
            0.4 m of each other), 1280x720, f 700-900 px (the human-robot case); ``portrait`` -- 4 cameras on
            tripods about 90 degrees apart, 2.8-3.4 m from the origin at 1.2-1.6 m height, portrait HD 1080x1920,
            f 1250-1550 px (phones or HD cameras turned on their side, so that a standing person fills the frame).
        image_size: ``(width, height)``; the focal length scales with the width, keeping the field of view.
        distortion: realistic OpenCV distortion (k1 -0.1..0.1, k2, small p1 p2).
        seed: rig jitter (positions, targets, focal lengths, principal points, roll, distortion).
    """
    if kind not in RIG_KINDS:
        raise ValueError(f"unknown rig kind {kind!r}; choose one of {RIG_KINDS}")
    rng = np.random.default_rng([int(seed), _STREAM_RIG, RIG_KINDS.index(kind)])
    default = _DEFAULT_SIZES[kind]
    size = tuple(int(v) for v in (image_size or default))
    cams = []
    if kind == "surround":
        offset = rng.uniform(-0.1, 0.1)
        for i in range(8):
            azimuth = offset + 2.0 * np.pi * i / 8 + rng.uniform(-0.08, 0.08)
            radius = rng.uniform(3.8, 4.2)
            centre = [radius * math.cos(azimuth), radius * math.sin(azimuth), rng.uniform(2.0, 2.5)]
            target = [rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(0.9, 1.1)]
            cams.append(_make_camera(rng, f"cam{i}", centre, target, rng.uniform(1100, 1500), size, default, distortion))
    elif kind == "lab":
        half = (rng.uniform(3.0, 3.5), rng.uniform(2.5, 3.0))
        for i, (sx, sy) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
            centre = [sx * (half[0] - 0.15), sy * (half[1] - 0.15), rng.uniform(2.4, 2.7)]
            target = [rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.8, 1.0)]
            cams.append(_make_camera(rng, f"cam{i}", centre, target, rng.uniform(950, 1150), size, default,
                                     distortion, wide=True))
    elif kind == "portrait":
        offset = rng.uniform(-0.3, 0.3)
        for i in range(4):
            azimuth = offset + 0.5 * np.pi * i + rng.uniform(-0.15, 0.15)
            radius = rng.uniform(2.8, 3.4)
            centre = [radius * math.cos(azimuth), radius * math.sin(azimuth), rng.uniform(1.2, 1.6)]
            target = [rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(0.85, 1.0)]
            cams.append(_make_camera(rng, f"cam{i}", centre, target, rng.uniform(1250, 1550), size, default, distortion))
    else:
        distance = rng.uniform(2.5, 2.9)
        azimuth = rng.uniform(-0.08, 0.08)
        base = np.array([distance * math.cos(azimuth), distance * math.sin(azimuth)])
        facing = azimuth + np.pi  # the robot faces the origin
        fwd = np.array([math.cos(facing), math.sin(facing)])
        lat = np.array([-fwd[1], fwd[0]])
        half_baseline = rng.uniform(0.125, 0.15)
        head_z = rng.uniform(1.38, 1.48)
        mounts = [(0.0, half_baseline, head_z), (0.0, -half_baseline, head_z), (0.05, 0.0, rng.uniform(1.12, 1.18))]
        for i, (ahead, side, z) in enumerate(mounts):
            centre = np.array([*(base + ahead * fwd + side * lat), z])
            target = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(0.9, 1.05)])
            cams.append(_make_camera(rng, f"cam{i}", centre, target, rng.uniform(700, 900), size, default, distortion))
    return CameraRig(cams)


_STREAM_RING = 0x72696e67
RING_TIERS_M = (1.2, 2.0, 2.8)
"""Heights of the ring's three tiers of cameras (camera ``i`` is on tier ``i % 3``)."""


def make_ring_rig(num_views: int, image_size: tuple[int, int] | None = None, distortion: bool = False,
                  seed: int = 0) -> CameraRig:
    """``num_views`` (at least 2) seeded cameras evenly spread around a ~4.5 m circle (radius 4.3-4.7 m), on three
    tiers at about :data:`RING_TIERS_M` in turn, looking at ~1 m near the origin, 1920x1080, f 1100-1400 px: a
    capture dome such as CMU Panoptic's 31 HD cameras, for any camera count (``cam0..camN-1``).

    Args: as :func:`make_rig`.
    """
    if num_views < 2:
        raise ValueError(f"make_ring_rig: a ring needs at least 2 cameras, got {num_views}")
    rng = np.random.default_rng([int(seed), _STREAM_RING, int(num_views)])
    default = _DEFAULT_SIZES["surround"]
    size = tuple(int(v) for v in (image_size or default))
    offset = rng.uniform(-0.1, 0.1)
    step = 2.0 * np.pi / num_views
    cams = []
    for i in range(num_views):
        azimuth = offset + step * i + rng.uniform(-0.1, 0.1) * step
        radius = rng.uniform(4.3, 4.7)
        height = RING_TIERS_M[i % len(RING_TIERS_M)] + rng.uniform(-0.1, 0.1)
        centre = [radius * math.cos(azimuth), radius * math.sin(azimuth), height]
        target = [rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(0.9, 1.1)]
        cams.append(_make_camera(rng, f"cam{i}", centre, target, rng.uniform(1100, 1400), size, default, distortion))
    return CameraRig(cams)


def disturb_rig(rig: CameraRig, views: list[int], seed: int, degrees: tuple[float, float] = (10.0, 15.0),
                metres: tuple[float, float] = (0.3, 0.5)) -> CameraRig:
    """A rough calibration of ``rig``: ``views`` turned by an angle uniform in ``degrees`` about a random axis and
    moved by a distance uniform in ``metres`` in a random direction (seeded); the other cameras as they are."""
    rng = np.random.default_rng([int(seed), _STREAM_RIG])
    cameras = []
    for v, camera in enumerate(rig):
        if v in views:
            axis, shift = rng.normal(size=3), rng.normal(size=3)
            R = rodrigues_to_matrix(axis / np.linalg.norm(axis) * np.radians(rng.uniform(*degrees))) @ camera.R
            centre = camera.centre + shift / np.linalg.norm(shift) * rng.uniform(*metres)
            camera = Camera(camera.name, camera.K, R, -R @ centre, camera.size, camera.dist)
        cameras.append(camera)
    return CameraRig(cameras)
