"""Where the refined rig sits in the world: what holds the world frame and what sets the scale.

People fix a rig only up to position, orientation and scale (seven degrees of freedom). The rough calibration's
world frame (its origin and its "up") is kept by cameras that did not move, or else by fitting the refined rig onto
the rough camera positions as a whole; the scale comes from one anchor the user gives, never from an average body:

- ``fixed``: cameras that did not move keep their poses exactly; two or more of them also set the scale;
- ``baseline``: the distance between two cameras' centres, measured; the first camera holds the frame (it did
  not move);
- ``height``: the standing height of the one person in the recording; the person's leg and trunk lengths (median
  over the recording) are the fraction :data:`LEG_AND_TRUNK` of a standing height, so the scale is as good as that
  proportion is for the person (about 1-2 % between adults; prefer a baseline for centimetres at the cameras);
- ``keep_size``: the rough calibration's size (the spread of its camera centres) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import Camera, CameraRig
from ..skeleton.models import Skeleton

__all__ = ["WorldAnchor", "LEG_AND_TRUNK", "leg_and_trunk", "similarity_onto", "transform_rig"]

LEG_AND_TRUNK = 0.818 - 0.039
"""Hip-to-ankle plus hip-centre-to-shoulder-centre length as a fraction of standing height: shoulder height 0.818 H
less ankle height 0.039 H (Drillis and Contini's segment proportions, as tabulated by Winter, Biomechanics and Motor
Control of Human Movement)."""


@dataclass(frozen=True)
class WorldAnchor:
    """What the user holds fixed (see the module docstring). Exactly one scale source: two or more ``fixed``
    cameras, ``baseline``, ``height`` or ``keep_size``; ``fixed`` with one camera holds the frame only.

    Attributes:
        fixed: names of cameras that did not move.
        baseline: ``(camera A, camera B, metres)``.
        height: metres.
        keep_size: keep the rough rig's size.
    """

    fixed: tuple[str, ...] = ()
    baseline: tuple[str, str, float] | None = None
    height: float | None = None
    keep_size: bool = False

    def check(self, rig: CameraRig) -> None:
        """``ValueError`` naming the problem: unknown cameras, no or several scale sources, a bad length."""
        names = list(self.fixed) + (list(self.baseline[:2]) if self.baseline else [])
        unknown = [n for n in names if n not in rig.names]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; the calibration has {rig.names}")
        if len(set(self.fixed)) != len(self.fixed):
            raise ValueError(f"a fixed camera is listed twice: {list(self.fixed)}")
        sources = [len(self.fixed) >= 2, self.baseline is not None, self.height is not None, self.keep_size]
        if sum(sources) != 1:
            raise ValueError("give exactly one scale anchor: --fixed with two or more cameras, --baseline, --height "
                             "or --keep-size (people alone fix the rig only up to its scale)")
        if self.baseline is not None:
            a, b, metres = self.baseline
            if a == b or not metres > 0:
                raise ValueError(f"--baseline needs two different cameras and a positive distance, got {a} {b} {metres}")
            if self.fixed:
                raise ValueError("--baseline holds the world frame by its first camera; give no --fixed with it")
        if self.height is not None and not 0.5 < self.height < 2.8:
            raise ValueError(f"--height is a person's standing height in metres, got {self.height}")
        if len(rig) - len(self.fixed) < 1:
            raise ValueError("every camera is fixed: nothing to refine")

    def held(self, rig: CameraRig) -> list[int]:
        """Views held exactly during the adjustment (those that hold the world frame)."""
        if self.fixed:
            return [rig.index(n) for n in self.fixed]
        if self.baseline is not None:
            return [rig.index(self.baseline[0])]
        return []


def leg_and_trunk(skeleton: Skeleton, points: np.ndarray) -> float:
    """Median leg (hip-knee-ankle, both sides averaged) plus trunk (hip centre to shoulder centre) length of one
    person's joints ``[F, J, 3]``; NaN when the skeleton lacks those joints or they are never seen."""
    names = list(skeleton.joint_names)
    try:
        hips = [names.index(f"{s}_hip") for s in "lr"]
        knees = [names.index(f"{s}_knee") for s in "lr"]
        ankles = [names.index(f"{s}_ankle") for s in "lr"]
        shoulders = [names.index(f"{s}_shoulder") for s in "lr"]
    except ValueError:
        return float("nan")

    def median_length(a: np.ndarray, b: np.ndarray) -> float:
        length = np.linalg.norm(a - b, axis=-1)
        length = length[np.isfinite(length)]
        return float(np.median(length)) if len(length) else float("nan")

    leg = np.nanmean([median_length(points[:, h], points[:, k]) + median_length(points[:, k], points[:, a])
                      for h, k, a in zip(hips, knees, ankles)])
    trunk = median_length(points[:, hips].mean(axis=1), points[:, shoulders].mean(axis=1))
    return float(leg + trunk)


def similarity_onto(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The rotation ``Q [3, 3]`` and translation ``p [3]`` (no scale) that best map ``source [N, 3]`` onto
    ``target [N, 3]`` in least squares (Kabsch / Umeyama)."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    ms, mt = w @ source, w @ target
    covariance = ((target - mt) * w[:, None]).T @ (source - ms)
    u, _, vt = np.linalg.svd(covariance)
    d = np.sign(np.linalg.det(u @ vt))
    Q = u @ np.diag([1.0, 1.0, d]) @ vt
    return Q, mt - Q @ ms


def transform_rig(rig: CameraRig, scale: float, Q: np.ndarray, p: np.ndarray) -> CameraRig:
    """The rig seen in the world moved by ``X -> scale Q X + p`` (rotation ``Q [3, 3]``, ``p [3]`` in metres): each
    camera keeps what it sees."""
    cameras = []
    for camera in rig:
        R = camera.R @ Q.T
        centre = scale * Q @ camera.centre + p
        cameras.append(Camera(camera.name, camera.K, R, -R @ centre, camera.size, camera.dist))
    return CameraRig(cameras)
