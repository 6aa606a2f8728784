"""Fusion results and the steps every fusion path shares: keypoint splitting, the triangulation baselines, the
per-subject bone prior and the summary (confidence, views, reprojection error) of a set of 3D joints."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..geometry.camera import CameraRig
from ..geometry.triangulation import (
    project_pinhole,
    project_with_jacobian,
    triangulate_dlt,
    triangulate_greedy,
    triangulate_robust,
    valid_observations,
)
from ..skeleton.models import Skeleton
from .config import EXHAUSTIVE_MAX_VIEWS, FusionConfig
from .objective import BonePrior, RefineResult

SUPPORT_THRESHOLD = 0.05
"""A view supports a joint when its support (detection confidence times its agreement with the fit, in [0, 1])
exceeds this: the views counted in ``FusionResult.num_views``."""


@dataclass
class FusionResult:
    """Fused joints, per frame and joint.

    Attributes:
        joints: ``[F, J, 3]`` world positions (NaN = not estimated; what a fusion path outputs is decided in
            ``output.py``).
        confidence: ``[F, J]`` in [0, 1]; 0 where NaN, and where a joint is output without enough views agreeing
            (an offline gap interpolated, a single-view joint).
        covariance: ``[F, J, 3, 3]`` position uncertainty of each joint (world units^2): first order, from the
            views that support it (``linear_covariance``), for every method; a direction no view constrains (along
            the ray of a joint seen by one view) has a large variance, not ~0.
        num_views: ``[F, J]`` views that support the joint.
        reprojection_error: ``[F, J]`` mean px distance to the supporting views' keypoints.
        joint_names: ``J`` names.
    """

    joints: np.ndarray
    confidence: np.ndarray
    covariance: np.ndarray
    num_views: np.ndarray
    reprojection_error: np.ndarray
    joint_names: list[str]

    def frame(self, index: int) -> "FusionResult":
        """One frame, keeping a frame axis of length 1."""
        pick = slice(index, index + 1) if index >= 0 else slice(index, index + 1 or None)
        return FusionResult(
            self.joints[pick], self.confidence[pick], self.covariance[pick], self.num_views[pick],
            self.reprojection_error[pick], self.joint_names,
        )


def split_keypoints(rig: CameraRig, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw keypoints ``[V, F, J, 3]`` -> undistorted pixels ``[V, F, J, 2]`` (NaN missing) and confidences."""
    if keypoints.ndim != 4 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be [V, F, J, 3], got {list(keypoints.shape)}")
    if keypoints.shape[0] != len(rig):
        raise ValueError(f"keypoints have {keypoints.shape[0]} views but the calibration has {len(rig)} cameras")
    valid = valid_observations(keypoints)
    uv = np.where(valid[..., None], keypoints[..., :2], np.nan)
    confidence = np.where(valid, np.clip(keypoints[..., 2], 0.0, 1.0), 0.0)
    return rig.undistort(uv), confidence


def summarise(
    rig: CameraRig, points: np.ndarray, uv: np.ndarray, support: np.ndarray, covariance: np.ndarray, names: list[str]
) -> FusionResult:
    """Confidence, views and reprojection error from per-view support weights ``[V, F, J]`` in [0, 1]."""
    estimated = np.isfinite(points).all(axis=-1)
    offset = project_pinhole(rig, points) - uv
    distance = np.sqrt(offset[..., 0] ** 2 + offset[..., 1] ** 2)
    used = (support > SUPPORT_THRESHOLD) & np.isfinite(distance)
    num_views = used.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        reproj = np.where(used, distance, 0.0).sum(axis=0) / num_views
    # Two views in full agreement give full confidence; one view alone cannot fix depth. (np.minimum/maximum, not
    # np.clip: the same for the NaN-free sums here, at a fraction of the per-call cost on a frame.)
    confidence = np.minimum(np.maximum(np.where(used, support, 0.0).sum(axis=0) / 2.0, 0.0), 1.0)
    confidence = np.where(estimated & (num_views >= 2), confidence, 0.0)
    return FusionResult(
        joints=np.where(estimated[..., None], points, np.nan),
        confidence=confidence.astype(np.float32),
        covariance=np.where(estimated[..., None, None], covariance, np.nan),
        num_views=np.where(estimated, num_views, 0).astype(np.uint8),
        reprojection_error=np.where(estimated & (num_views > 0), reproj, np.nan).astype(np.float32),
        joint_names=names,
    )


def triangulate_baseline(
    rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, config: FusionConfig, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[..., 3]`` and per-view support ``[V, ...]`` of a triangulation ``method`` (dlt, triangulate,
    robust, greedy or auto: see ``FusionConfig.init``)."""
    if method == "auto":
        method = "robust" if len(rig) <= EXHAUSTIVE_MAX_VIEWS else "greedy"
    if method in ("robust", "greedy"):
        search = triangulate_robust if method == "robust" else triangulate_greedy
        result = search(rig, uv, confidence, config.robust_threshold_px, max(config.min_confidence, 1e-9), config.min_views)
        return result.points, np.where(result.views_used, confidence, 0.0)
    usable = confidence >= max(config.min_confidence, 1e-9)
    weights = np.where(usable, confidence if method == "triangulate" else 1.0, 0.0)
    points = triangulate_dlt(rig, np.where(usable[..., None], uv, np.nan), weights, config.min_views)
    return points, np.where(usable, confidence, 0.0)


def bone_lengths_of(points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Bone lengths ``[..., B]`` of ``points [..., J, 3]`` (NaN where a joint is missing)."""
    bones = skeleton.bone_array
    return np.linalg.norm(points[..., bones[:, 0], :] - points[..., bones[:, 1], :], axis=-1)


def column_nanmedian(samples: np.ndarray) -> np.ndarray:
    """``np.nanmedian(samples, axis=0)`` of ``[N, B]`` (NaN for all-NaN columns) by one sort: numpy's own goes
    through masked arrays for small inputs, several times slower, and the streaming fuser calls this every frame."""
    ordered = np.sort(samples, axis=0)  # NaN last
    count = np.isfinite(samples).sum(axis=0)
    columns = np.arange(samples.shape[1])
    # An all-NaN column (count 0) picks rows -1 and 0 of its NaNs: NaN, with no special case.
    return 0.5 * (ordered[(count - 1) // 2, columns] + ordered[count // 2, columns])


def estimate_bone_prior(lengths: np.ndarray, min_sigma: float, spread_factor: float) -> BonePrior:
    """Per-subject bone prior from length samples ``[N, B]`` (NaN = not seen in that sample).

    Lengths are medians. Tolerances are ``min_sigma``, widened to ``spread_factor`` robust standard deviations
    (1.4826 MAD) of the samples: where the triangulation is noisy (depth along a narrow baseline), its lengths are
    also biased long, and a tight prior would pull the joints apart.
    """
    median = column_nanmedian(lengths)
    spread = 1.4826 * column_nanmedian(np.abs(lengths - median))
    sigmas = np.maximum(min_sigma, spread_factor * np.where(np.isnan(spread), 0.0, spread))
    return BonePrior(lengths=median, sigmas=sigmas)


def refine_support(uv: np.ndarray, confidence: np.ndarray, result: RefineResult) -> np.ndarray:
    """Each view's support ``[V, F, J]`` of a refinement's joints: its confidence times its agreement with them."""
    return np.where(np.isfinite(uv).all(-1), confidence, 0.0) * result.agreement


def refine_output(
    rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, result: RefineResult, known: np.ndarray, names: list[str],
    covariance: np.ndarray | None = None,
) -> FusionResult:
    """Fusion result of a refinement; joints with no usable initial guess stay NaN. Its covariance: ``covariance
    [F, J, 3, 3]`` where given, else the refinement's."""
    points = np.where(known[..., None], result.means, np.nan)
    return summarise(rig, points, uv, refine_support(uv, confidence, result),
                     result.covariances if covariance is None else covariance, names)


def fallback_position(points: np.ndarray) -> np.ndarray:
    """A finite stand-in ``[3]`` for joints without an initial guess (they are masked out of the output)."""
    finite = points[np.isfinite(points).all(axis=-1)]
    return finite.mean(axis=0) if finite.size else np.zeros(3)


def concatenate_results(parts: list[FusionResult], names: list[str]) -> FusionResult:
    if not parts:
        empty = np.zeros((0, len(names)))
        return FusionResult(
            np.zeros((0, len(names), 3)), empty.astype(np.float32), np.zeros((0, len(names), 3, 3)),
            empty.astype(np.uint8), empty.astype(np.float32), names,
        )
    return FusionResult(
        joints=np.concatenate([p.joints for p in parts]),
        confidence=np.concatenate([p.confidence for p in parts]),
        covariance=np.concatenate([p.covariance for p in parts]),
        num_views=np.concatenate([p.num_views for p in parts]),
        reprojection_error=np.concatenate([p.reprojection_error for p in parts]),
        joint_names=names,
    )



def _finite(value: float) -> float | None:
    """``value`` as a finite float, or ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def checked_stamp(stamp: float) -> float:
    """``stamp`` (seconds) as a float; a ``ValueError`` for anything that is not a finite number (after a NaN stamp
    every time comparison would be false: nothing would ever expire or reset)."""
    value = _finite(stamp)
    if value is None:
        raise ValueError(f"stamp must be a finite time in seconds, got {stamp!r}")
    return value


def checked_fps(fps: float) -> float:
    """``fps`` as a float; a ``ValueError`` unless it is a positive finite number."""
    value = _finite(fps)
    if value is None or value <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return value


def frame_stamps(num_frames: int, fps: float, stamps: np.ndarray | None = None) -> np.ndarray:
    """Capture times ``[F]`` (seconds) of a recording's frames: ``stamps`` when given, else ``f / fps``.

    Raises:
        ValueError: for ``fps`` not a positive finite number, or ``stamps`` not one finite time per frame.
    """
    fps = checked_fps(fps)
    if stamps is None:
        return np.arange(num_frames) / fps
    stamps = np.asarray(stamps, dtype=np.float64)
    if stamps.shape != (num_frames,):
        raise ValueError(f"stamps must be one time per frame, [{num_frames}], got {list(stamps.shape)}")
    if not np.isfinite(stamps).all():
        raise ValueError(f"stamps must be finite times in seconds; frame {int(np.argmin(np.isfinite(stamps)))} is not")
    return stamps


RESIDUAL_PRIOR_DOF = 0.5
"""Degrees of freedom of the prior (residual as assumed) in a joint's residual factor: its own residual dominates
as soon as it has one (chosen with the default preset's covariance scales on seeds 0-2)."""


DISSENT_VARIANCE = 8.0
"""Variance factor of a joint that only two views support while a view that detects it disagrees: two rays nearly
meet by chance (one of them an outlier or a swapped label), and two views leave one degree of freedom of residual,
too few to show it. Chosen on seeds 0-2 of the lab rig with ``hard`` noise and the portrait rig (realistic), where
such joints were most of those beyond 150 mm whose largest standard deviation was under 75 mm; it barely moves the
others (BENCHMARKS.md, "Fixed lag")."""


GROSS_SHARE = 0.05
"""Share of the views that detect a person's joints but disagree with the estimate (``dissenting_views``, pooled over
the person's joints in a frame) that an ordinary detector shows: 3.6-4.2 % with the simulator's ``realistic`` noise on
every rig, 13-18 % with ``hard`` (seeds 0-2). Beyond it, a person's views are often grossly wrong, and so, unseen, are
some of the views that agree (``STREAMING_GROSS``, ``LAG_GROSS``)."""

STREAMING_GROSS = (5.0, 0.0)
"""Streaming's ``gross`` of ``calibrate_covariance``: its residual is judged against the nominal pixel noise, which
says nothing of gross errors, so a person's variance grows by 5 per unit of dissenting share beyond ``GROSS_SHARE``
(chosen on seeds 0-2 of the robot and lab rigs with ``hard`` noise; BENCHMARKS.md, "Fixed lag")."""

LAG_GROSS = (0.0, 0.045)
"""The fixed lag's ``gross``: its residual is judged against the person's own pixel noise and its covariance already
holds that noise, so nothing widens; but a gross depth error on a narrow baseline is not exactly along the ellipsoid's
long axis, and its sideways part leaks out of the thin axes: those get at least 0.045 per unit of dissenting share
beyond ``GROSS_SHARE`` times the long axis's variance (chosen as ``STREAMING_GROSS``; a near-round covariance, the
4-camera rigs', does not change)."""


def dissenting_views(uv: np.ndarray, confidence: np.ndarray, num_views: np.ndarray, min_confidence: float) -> np.ndarray:
    """Per joint ``[..., J]``: the views that detect it (``uv [V, ..., J, 2]`` finite, ``confidence [V, ..., J]`` at
    least ``min_confidence``) beyond the ``num_views [..., J]`` that support the estimate."""
    detected = (np.isfinite(uv).all(-1) & (confidence >= min_confidence)).sum(axis=0)
    return np.maximum(detected - num_views.astype(np.int64), 0)


DISSENT_PULL = 2.0
"""Variance floor, in units of the squared pull (``dissent_pull``), along the direction in which the views that detect
a joint but disagree with it would pull it: a standard deviation of at least 1.4 times that pull. Where one wrong view
among three supporting ones carries the fit, the view it outvoted is the one that was right, and it pulls towards
the truth; where the dissenting view is the wrong one, the ellipsoid only reaches towards it. Chosen on seeds 6-11
(300 frames) of portrait (realistic) and lab (``hard``) streaming, the smallest that flags every joint beyond 150 mm
it can there (one, two views and no dissent, no rule of this kind can flag; seeds 0-2 have too few such joints to
choose on), and checked on seeds 0-2 (150 frames) of every rig (BENCHMARKS.md, "Fixed lag")."""


def dissent_pull(rig: CameraRig, points: np.ndarray, uv: np.ndarray, confidence: np.ndarray, support: np.ndarray,
                 min_confidence: float) -> np.ndarray:
    """How far ``[..., J, 3]`` (m) each joint ``points [..., J, 3]`` would move if the views that detect it (``uv
    [V, ..., J, 2]`` finite, ``confidence [V, ..., J]`` at least ``min_confidence``) but do not support it (``support
    [V, ..., J]`` at most ``SUPPORT_THRESHOLD``) counted as much as each view that does (one Gauss-Newton step on
    the views' reprojection errors alone); 0 where no view dissents."""
    detected = np.isfinite(uv).all(-1) & (confidence >= min_confidence)
    agree = detected & (support > SUPPORT_THRESHOLD)
    dissent = detected & ~agree
    finite = np.isfinite(points).all(-1)
    projected, jac, _ = project_with_jacobian(rig.K, rig.R, rig.t, np.where(finite[..., None], points, 0.0))
    block = np.einsum("...ka,...kb->...ab", jac, jac)  # [V, ..., J, 3, 3]
    information = np.einsum("v...,v...ab->...ab", (agree | dissent).astype(np.float64), block)
    information = information + np.eye(3) * 1e-9 * np.abs(information).max(initial=1.0)
    pull = np.einsum("v...,v...ka,v...k->...a", dissent.astype(np.float64), jac,
                     np.where(dissent[..., None], uv - projected, 0.0))
    step = np.linalg.solve(information, pull[..., None])[..., 0]
    return np.where((finite & dissent.any(0) & (detected.sum(0) >= 2))[..., None], step, 0.0)


def widen_toward_dissent(fitted: FusionResult, pull: np.ndarray) -> FusionResult:
    """``fitted`` with each joint's covariance ``[..., J, 3, 3]`` (m^2) widened, where needed, along its ``pull [...,
    J, 3]`` (m, ``dissent_pull``) to a variance of ``DISSENT_PULL`` times the pull's squared length there."""
    length2 = (pull**2).sum(-1)
    direction = pull / np.sqrt(np.maximum(length2, 1e-30))[..., None]
    along = np.einsum("...a,...ab,...b->...", direction, fitted.covariance, direction)
    lift = np.maximum(DISSENT_PULL * length2 - along, 0.0)  # NaN (no covariance) stays NaN
    return replace(fitted, covariance=fitted.covariance + lift[..., None, None] * direction[..., :, None]
                   * direction[..., None, :])


def calibrate_covariance(fitted: FusionResult, scales: tuple[float, float], pixel_sigma: float | np.ndarray,
                         dissent: np.ndarray | None = None, gross: tuple[float, float] = (0.0, 0.0)) -> FusionResult:
    """``fitted`` with each joint's covariance ``[..., J, 3, 3]`` (m^2, world frame) scaled by its residual and
    reshaped: times ``(nu + n e^2 / s^2) / (nu + 2 n - 3)`` (``n`` agreeing views, ``e`` their mean reprojection
    error, ``s = pixel_sigma`` px (a float, or per person ``[N, 1]``), ``nu = RESIDUAL_PRIOR_DOF``: views that
    disagree more than that pixel noise widen
    it), then its two smallest eigenvalues times ``scales[0]`` and its largest times ``scales[1]``
    (``FusionConfig.streaming_covariance``); times ``DISSENT_VARIANCE`` where two views support the joint and
    ``dissent [..., J]`` (``dissenting_views``) says another that detects it disagrees. With ``dissent``, a person
    (the last axis pooled) whose share of dissenting views ``x`` exceeds ``GROSS_SHARE`` gets every variance times
    ``1 + gross[0] (x - GROSS_SHARE)`` and its two smallest at least ``gross[1] (x - GROSS_SHARE)`` times its largest
    (``STREAMING_GROSS``, ``LAG_GROSS``)."""
    views = fitted.num_views.astype(np.float64)
    error = np.nan_to_num(fitted.reprojection_error.astype(np.float64), nan=0.0)
    residual = (RESIDUAL_PRIOR_DOF + views * (error / pixel_sigma) ** 2) / (
        RESIDUAL_PRIOR_DOF + np.maximum(2.0 * views - 3.0, 0.0))
    excess = np.zeros(views.shape[:-1] + (1,))
    if dissent is not None:
        residual = residual * np.where((views == 2) & (dissent > 0), DISSENT_VARIANCE, 1.0)
        detected = (views + dissent).sum(axis=-1, keepdims=True)
        excess = np.maximum(dissent.sum(axis=-1, keepdims=True) / np.maximum(detected, 1.0) - GROSS_SHARE, 0.0)
        residual = residual * (1.0 + gross[0] * excess)
    finite = np.isfinite(fitted.covariance).all((-1, -2))
    values, vectors = np.linalg.eigh(np.where(finite[..., None, None], fitted.covariance, np.eye(3)))
    values = values * np.array([scales[0], scales[0], scales[1]]) * residual[..., None]
    values = np.maximum(values, (gross[1] * excess)[..., None] * values[..., 2:])
    scaled = np.einsum("...ak,...k,...bk->...ab", vectors, values, vectors)
    return replace(fitted, covariance=np.where(finite[..., None, None], scaled, np.nan))
