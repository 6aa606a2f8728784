"""Offline fusion of a whole recording.

``default``: triangulation, Hampel cleaning, per-subject bone prior, a Gauss-Newton fit of the splat objective per
frame; then rounds of (robust zero-phase smoothing of the trajectories, weighted by each joint's information from
the views that agree: ``smoothing.py``; Gauss-Newton on the splat objective again, pulled to the smoothed
trajectory). The first round also re-estimates the bone lengths from the smoothed trajectory (less noisy, and not
biased long by depth noise as lengths of raw triangulations are).

With a renderer named (``raster``, ``gsplat``) or without ``smoothing``: a prefit, then Adam over all frames with
the second-difference temporal term.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig
from ..geometry.triangulation import linear_covariance
from ..skeleton.models import Skeleton
from .config import NOMINAL_RATE_HZ, FusionConfig
from .objective import BonePrior, RefineConfig, RefineResult, TemporalPrior, detection_weights, heatmap_variance_growth
from .refine import refine
from .result import (
    SUPPORT_THRESHOLD,
    FusionResult,
    bone_lengths_of,
    calibrate_covariance,
    checked_fps,
    concatenate_results,
    estimate_bone_prior,
    fallback_position,
    refine_output,
    refine_support,
    split_keypoints,
    summarise,
    triangulate_baseline,
)
from .output import complete_offer, decide_output, gap_offer, views_verdict
from .smoothing import SmoothingConfig, smooth_trajectories, view_information


def hampel_clean(
    points: np.ndarray, window: int, threshold: float, min_distance: float, max_gap: int | None = None
) -> np.ndarray:
    """Replace temporal outliers of ``points [F, J, 3]`` by NaN, then fill gaps over frames.

    A frame is an outlier when its distance to the running median (``2 window + 1`` frames) exceeds both
    ``threshold`` scaled MADs of that distance and ``min_distance``. Gaps between estimates are interpolated
    linearly and gaps at the ends held at the nearest estimate, those up to ``max_gap`` frames long only when it
    is given (a longer one: the joint, or the person, was gone; it stays NaN). Joints never estimated stay NaN.
    """
    num_frames = points.shape[0]
    cleaned = points.copy()
    if window > 0 and num_frames > 2:
        padded = np.pad(points, ((window, window), (0, 0), (0, 0)), mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1, axis=0)  # [F, J, 3, W]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows of never-seen joints
            median = np.nanmedian(windows, axis=-1)
            distance = np.linalg.norm(points - median, axis=-1)
            spread = np.linalg.norm(windows - median[..., None], axis=-2)
            mad = 1.4826 * np.nanmedian(spread, axis=-1)
        outlier = (distance > threshold * mad) & (distance > min_distance)
        cleaned[outlier] = np.nan
    frames = np.arange(num_frames)
    for joint in range(points.shape[1]):
        known = np.isfinite(cleaned[:, joint]).all(axis=-1)
        if known.sum() == 0 or known.all():
            continue
        fill = ~known if max_gap is None else ~known & (_run_lengths(~known) <= max_gap)
        for axis in range(3):
            filled = np.interp(frames, frames[known], cleaned[known, joint, axis])
            cleaned[:, joint, axis] = np.where(fill, filled, cleaned[:, joint, axis])
    return cleaned


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each entry of ``mask [F]``, the length of the run of equal values it belongs to."""
    edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [len(mask)]]))
    return np.repeat(lengths, lengths)


def fuse_offline(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    config: FusionConfig,
    progress: Callable[[int, int], None] | None = None,
    fps: float = NOMINAL_RATE_HZ,
) -> FusionResult:
    """Fuse a whole recording: keypoints ``[V, F, J, 3]`` (x px, y px, confidence; NaN or 0 = missing).

    Args:
        progress: called as ``progress(frames_done, total)`` after each chunk (each pass, when smoothing).
        fps: frame rate (the smoothing prior is in world units per second^k).
    """
    fps = checked_fps(fps)
    uv, confidence = split_keypoints(rig, keypoints)
    if uv.shape[2] != skeleton.num_joints:
        raise ValueError(f"keypoints have {uv.shape[2]} joints, skeleton {skeleton.name!r} has {skeleton.num_joints}")
    names = list(skeleton.joint_names)
    num_frames = uv.shape[1]
    if num_frames == 0:  # nothing to fuse: an empty result, as fuse_streaming gives
        return concatenate_results([], names)
    points, support = triangulate_baseline(rig, uv, confidence, config, config.triangulation)
    if config.method != "skelsplat":
        cov = linear_covariance(rig, points, support, config.nominal_pixel_sigma)
        if progress:
            progress(num_frames, num_frames)
        return summarise(rig, points, uv, support, cov, names)

    known = triangulated = np.isfinite(points).all(axis=-1)
    if config.hampel_window > 0:
        max_gap = None if config.max_gap is None else int(round(config.max_gap * fps))
        points = hampel_clean(
            points, config.hampel_window, config.hampel_threshold, config.hampel_min_distance, max_gap
        )
        known = np.isfinite(points).all(axis=-1)
    bone_prior = None
    if config.bone_lengths:
        # From frames that were triangulated, not across the gaps Hampel filled (a joint gone for a second).
        bone_prior = _bone_prior(np.where(triangulated[..., None], points, np.nan), skeleton, config)
    if config.smoothing is not None and config.prefit is not None:
        return _fuse_smoothed(rig, skeleton, uv, confidence, points, known, bone_prior, config, fps, progress)
    temporal = TemporalPrior("smooth") if config.refine.temporal_weight > 0 else None
    chunks: list[FusionResult] = []
    step = max(1, config.refine.frame_chunk)
    for start in range(0, num_frames, step):
        sl = slice(start, min(start + step, num_frames))
        init = np.where(known[sl][..., None], points[sl], fallback_position(points))
        if config.prefit is not None:
            init = refine(rig, skeleton, config.prefit, uv[:, sl], confidence[:, sl], init, bone_prior).means
        result = refine(rig, skeleton, config.refine, uv[:, sl], confidence[:, sl], init, bone_prior, temporal)
        chunks.append(refine_output(rig, uv[:, sl], confidence[:, sl], result, known[sl], names))
        if progress:
            progress(sl.stop, num_frames)
    fitted = concatenate_results(chunks, names)
    return _output(rig, uv, confidence, fitted, skeleton, bone_prior, config, config.refine, fps)


def _output(
    rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, fitted: FusionResult, skeleton: Skeleton,
    bone_prior: BonePrior | None, config: FusionConfig, settings: RefineConfig, fps: float,
) -> FusionResult:
    """What is output of the fit of a recording (``output.py``): joints seen by enough views, held to the person's
    bone lengths (judged by the views as the last refinement ``settings`` would), and gaps of at most ``max_fill``
    between them filled from the fit."""
    fitted = calibrate_covariance(fitted, config.offline_covariance, config.nominal_pixel_sigma)
    views = views_verdict(rig, uv, confidence, settings, fitted.joint_names)
    prior = bone_prior if views is not None else None
    gaps = gap_offer(int(round(config.max_fill * fps)), fps, config.smoothing or SmoothingConfig(), views, fitted)
    complete = None
    if config.complete:
        complete = complete_offer(skeleton, sequential=True)
    return decide_output(fitted, skeleton, prior, config, views, gaps, complete=complete)


def _bone_prior(points: np.ndarray, skeleton: Skeleton, config: FusionConfig) -> BonePrior:
    """The person's bone prior from the lengths of ``points [F, J, 3]`` (NaN = not a sample)."""
    return estimate_bone_prior(
        bone_lengths_of(points, skeleton), config.refine.bone_length_sigma, config.refine.bone_length_spread
    )


def _refine_chunked(
    rig: CameraRig,
    skeleton: Skeleton,
    config: RefineConfig,
    uv: np.ndarray,
    confidence: np.ndarray,
    init: np.ndarray,
    bone_prior: BonePrior | None,
    prediction: np.ndarray | None,
    chunk: int,
) -> RefineResult:
    """Gauss-Newton (independent frames) over ``chunk`` frames at a time (bounds memory), pulled to
    ``prediction [F, J, 3]`` when given; the parts joined along frames."""
    parts = []
    for start in range(0, init.shape[0], max(1, chunk)):
        sl = slice(start, start + max(1, chunk))
        temporal = None if prediction is None else TemporalPrior("predict", prediction=prediction[sl])
        parts.append(refine(rig, skeleton, config, uv[:, sl], confidence[:, sl], init[sl], bone_prior, temporal))
    return RefineResult(
        means=np.concatenate([p.means for p in parts]),
        covariances=np.concatenate([p.covariances for p in parts]),
        reprojection=np.concatenate([p.reprojection for p in parts], axis=1),
        agreement=np.concatenate([p.agreement for p in parts], axis=1),
        final_loss=np.concatenate([p.final_loss for p in parts]),
    )


def _fuse_smoothed(
    rig: CameraRig,
    skeleton: Skeleton,
    uv: np.ndarray,
    confidence: np.ndarray,
    points: np.ndarray,
    known: np.ndarray,
    bone_prior: BonePrior | None,
    config: FusionConfig,
    fps: float,
    progress: Callable[[int, int], None] | None,
) -> FusionResult:
    """The ``default`` offline refinement (module docstring) from cleaned triangulations ``points [F, J, 3]``."""
    num_frames = points.shape[0]
    smoothing, chunk = config.smoothing, config.refine.frame_chunk
    init = np.where(known[..., None], points, fallback_position(points))
    result = _refine_chunked(rig, skeleton, config.prefit, uv, confidence, init, bone_prior, None, chunk)
    # Each view's pull on a joint: its detection weight over its heatmap's variance growth, times how well the
    # fitted splat agrees with it (a view the splat objective rejected adds no information).
    view_weights = detection_weights(uv, confidence, config.prefit) / heatmap_variance_growth(confidence, config.prefit)
    pulled = replace(config.prefit, temporal_weight=1.0, temporal_sigma=config.smoothing_pull)
    for round_index in range(config.smoothing_rounds):
        information = view_information(rig, result.means, view_weights * result.agreement, smoothing.pixel_sigma)
        smoothed, _, _ = smooth_trajectories(np.where(known[..., None], result.means, np.nan), information, fps, smoothing)
        if round_index == 0 and config.bone_lengths:
            # Only where the prefit's views saw both ends: the curve through gaps and one-view stretches is the
            # prior's guess, and a wrong detection that the fit refused must not lengthen the bone either.
            seen = (refine_support(uv, confidence, result) > SUPPORT_THRESHOLD).sum(axis=0) >= config.min_views
            bone_prior = _bone_prior(np.where(seen[..., None], smoothed, np.nan), skeleton, config)
        start = np.where(known[..., None], smoothed, init)
        result = _refine_chunked(rig, skeleton, pulled, uv, confidence, start, bone_prior, smoothed, chunk)
        if progress:
            progress(round(num_frames * (round_index + 1) / config.smoothing_rounds), num_frames)
    fitted = refine_output(rig, uv, confidence, result, known, list(skeleton.joint_names))
    return _output(rig, uv, confidence, fitted, skeleton, bone_prior, config, pulled, fps)
