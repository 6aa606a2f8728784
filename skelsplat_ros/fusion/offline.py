"""Offline fusion of a whole recording (``default``: triangulation, Hampel cleaning, per-subject bone prior, a
Gauss-Newton prefit per frame, then Adam with temporal smoothing over all frames)."""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig
from ..geometry.triangulation import linear_covariance
from ..skeleton.models import Skeleton
from .config import FusionConfig
from .objective import TemporalPrior
from .refine import refine
from .result import (
    FusionResult,
    bone_lengths_of,
    concatenate_results,
    estimate_bone_prior,
    fallback_position,
    refine_output,
    split_keypoints,
    summarise,
    triangulate_baseline,
)


def hampel_clean(points: np.ndarray, window: int, threshold: float, min_distance: float) -> np.ndarray:
    """Replace temporal outliers of ``points [F, J, 3]`` by NaN, then interpolate every gap linearly over frames.

    A frame is an outlier when its distance to the running median (``2 window + 1`` frames) exceeds both
    ``threshold`` scaled MADs of that distance and ``min_distance``. Joints never estimated stay NaN; gaps at the
    ends are held at the nearest estimate.
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
        for axis in range(3):
            cleaned[:, joint, axis] = np.interp(frames, frames[known], cleaned[known, joint, axis])
    return cleaned


def fuse_offline(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    config: FusionConfig,
    progress: Callable[[int, int], None] | None = None,
) -> FusionResult:
    """Fuse a whole recording: keypoints ``[V, F, J, 3]`` (x px, y px, confidence; NaN or 0 = missing).

    Args:
        progress: called as ``progress(frames_done, total)`` after each chunk.
    """
    uv, confidence = split_keypoints(rig, keypoints)
    if uv.shape[2] != skeleton.num_joints:
        raise ValueError(f"keypoints have {uv.shape[2]} joints, skeleton {skeleton.name!r} has {skeleton.num_joints}")
    names = list(skeleton.joint_names)
    num_frames = uv.shape[1]
    points, support = triangulate_baseline(rig, uv, confidence, config, config.triangulation)
    if config.method != "skelsplat":
        cov = linear_covariance(rig, points, support, config.nominal_pixel_sigma)
        if progress:
            progress(num_frames, num_frames)
        return summarise(rig, points, uv, support, cov, names)

    known = np.isfinite(points).all(axis=-1)
    if config.hampel_window > 0:
        points = hampel_clean(points, config.hampel_window, config.hampel_threshold, config.hampel_min_distance)
        known = np.isfinite(points).all(axis=-1)
    bone_prior = None
    if config.bone_lengths:
        bone_prior = estimate_bone_prior(
            bone_lengths_of(points, skeleton), config.refine.bone_length_sigma, config.refine.bone_length_spread
        )
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
    return concatenate_results(chunks, names)
