"""The length unit of a calibration file that does not say which it is.

A calibration TOML carries no unit: Pose2Sim writes metres, other tools millimetres or centimetres. Read in the
wrong unit, every skeleton comes out 10 or 100 times too small or too large, and no later step notices. So the
unit is detected only from evidence, and where the evidence cannot decide, :func:`detect_units` refuses
(:class:`UnitsError`, whose message names the setting that decides: ``--calibration-units`` or the node parameter
``calibration_units``). The units are a factor of 10 apart; evidence decides when exactly one of them puts a
measured length into a range narrower than that factor, or the ranges of the others hold nothing plausible:

1. **People** (keypoints at hand, one person per view-frame): triangulated with the rig as written, a person's size,
   the median distance of the joints from their median point (0.3-0.45 m for adults standing or walking), lies in
   :data:`PERSON_SIZE_M` (0.12-1.0 m) in exactly one unit at most. Triangulation scales with the translations, so
   no unit has to be assumed to measure it.
2. **The rig**: the width of the field of view where the cameras look, the distance from each camera to the point
   nearest every optical axis times its image width over its focal length (the focal length against the image
   size: a long lens sees a narrow field far away). Cameras that capture people see 1-25 m across there
   (:data:`FIELD_WIDTH_M`); a wider range than the factor 10, so a rig decides only when the others' readings are
   implausible (a 4 m field in centimetres would be 0.4 m in millimetres, too small to hold a person: decided; a
   10 m field in centimetres would be 1 m in millimetres: not decided). One camera, or cameras whose axes do not
   converge, give no rig evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera, CameraRig
from .triangulation import triangulate_robust

__all__ = ["FIELD_WIDTH_M", "PERSON_SIZE_M", "UNIT_SCALES", "UnitsDecision", "UnitsError", "detect_units", "scale_rig"]

UNIT_SCALES = {"m": 1.0, "cm": 0.01, "mm": 0.001}
"""Metres per calibration unit."""
PERSON_SIZE_M = (0.12, 1.0)
"""Plausible size of a person in metres: the median distance of their joints from their median point."""
FIELD_WIDTH_M = (1.0, 25.0)
"""Plausible width in metres of the field of view where a people-capturing rig's cameras look."""
UNITS_HINT = "give the unit: --calibration-units m|cm|mm (node parameter calibration_units)"

_SAMPLE_FRAMES = 60  # frames triangulated for the people evidence (evenly spread over the recording)


class UnitsError(ValueError):
    """The unit of a calibration cannot be told from the evidence; the message says what was measured."""


@dataclass(frozen=True)
class UnitsDecision:
    """A detected unit and the evidence that decided it, in words (for the log)."""

    units: str
    evidence: str


def scale_rig(rig: CameraRig, factor: float) -> CameraRig:
    """The rig with its translations multiplied by ``factor`` (file units to metres)."""
    return CameraRig([Camera(c.name, c.K, c.R, c.t * factor, c.size, c.dist) for c in rig])


def _units_within(length: float, window: tuple[float, float]) -> list[str]:
    """The units in which ``length`` (file units) falls inside ``window`` (metres)."""
    return [u for u, scale in UNIT_SCALES.items() if window[0] <= length * scale <= window[1]]


def person_size(rig: CameraRig, keypoints: np.ndarray) -> float | None:
    """Median size (file units) of the person in ``keypoints [V, F, J, 3]`` (views in ``rig`` order), triangulated
    robustly in up to 60 frames; None when fewer than 5 frames give 4 joints."""
    frames = np.unique(np.linspace(0, keypoints.shape[1] - 1, min(_SAMPLE_FRAMES, keypoints.shape[1])).astype(int))
    sample = keypoints[:, frames]
    confidence = np.where(np.isfinite(sample[..., :2]).all(-1), np.nan_to_num(sample[..., 2]), 0.0)
    points = triangulate_robust(rig, rig.undistort(sample[..., :2]), confidence).points  # [F, J, 3]
    sizes = []
    for frame_points in points:
        known = frame_points[np.isfinite(frame_points).all(-1)]
        if len(known) >= 4:
            sizes.append(np.median(np.linalg.norm(known - np.median(known, axis=0), axis=-1)))
    return float(np.median(sizes)) if len(sizes) >= 5 else None


def field_width(rig: CameraRig) -> float | None:
    """Median width (file units) of the cameras' field of view at the point nearest every optical axis; None for
    one camera or axes that do not converge in front of the cameras."""
    if len(rig) < 2:
        return None
    axes = rig.R[:, 2, :]  # each camera's viewing direction in the world
    projectors = np.eye(3) - axes[:, :, None] * axes[:, None, :]  # [V, 3, 3]: distance to the axis
    normal = projectors.sum(axis=0)
    eigenvalues = np.linalg.eigvalsh(normal)
    if eigenvalues[0] < 1e-3 * eigenvalues[-1]:
        return None  # parallel axes: no point where they meet
    target = np.linalg.solve(normal, np.einsum("vab,vb->a", projectors, rig.centres))
    depth = np.einsum("va,va->v", target - rig.centres, axes)
    if np.median(depth) <= 0:
        return None
    return float(np.median(np.abs(depth) * rig.sizes[:, 0] / rig.K[:, 0, 0]))


def detect_units(rig: CameraRig, keypoints: np.ndarray | None = None) -> UnitsDecision:
    """The unit of ``rig`` (as written in its file) from the evidence (module docstring).

    Args:
        rig: the calibration read with no unit conversion.
        keypoints: ``[V, F, J, 3]`` of one person, views in ``rig`` order, or None (or several people
            ``[V, F, S, J, 3]``, whose slots say nothing of who is who: not used).

    Raises:
        UnitsError: the evidence does not decide.
    """
    said = []
    if keypoints is not None and np.ndim(keypoints) == 4:
        size = person_size(rig, keypoints)
        if size is not None:
            units = _units_within(size, PERSON_SIZE_M)
            if len(units) == 1:
                return UnitsDecision(units[0], f"a person measures {size * UNIT_SCALES[units[0]]:.2f} m in {units[0]}")
            said.append(f"the people measure {size:.3g} units across")
    width = field_width(rig)
    if width is not None:
        units = _units_within(width, FIELD_WIDTH_M)
        if len(units) == 1:
            return UnitsDecision(units[0], f"the cameras' field is {width * UNIT_SCALES[units[0]]:.1f} m wide in "
                                           f"{units[0]}")
        plausible = " or ".join(f"{width * UNIT_SCALES[u]:.2f} m in {u}" for u in units) or "implausible in every unit"
        said.append(f"the cameras' field is {width:.3g} units wide ({plausible})")
    else:
        said.append("the cameras' axes do not meet" if len(rig) > 1 else "one camera has no spread")
    raise UnitsError(f"cannot tell the calibration's length unit ({'; '.join(said)}): {UNITS_HINT}")
