"""Multi-view fusion: from per-view 2D keypoints to 3D joints, offline (whole recording) or streaming (causal).

Pipeline of ``method="skelsplat"``:
1. undistort keypoints (the calibration's OpenCV model);
2. initial guess: triangulation (unweighted DLT for the ``paper`` preset; for ``default`` every view subset up to
   ``EXHAUSTIVE_MAX_VIEWS`` cameras, leave-one-out view removal beyond);
3. offline only: outlier frames of the initial guess removed by a Hampel filter over time, gaps interpolated;
4. per-subject bone lengths and tolerances from the triangulated lengths (over the recording offline, over a
   sliding window when streaming);
5. SkelSplat refinement (``refine.py``) with the preset's priors. ``default`` offline: a Gauss-Newton prefit
   per frame, then Adam with temporal smoothing over all frames; streaming: Gauss-Newton, warm-started from a
   constant-velocity prediction of the previous outputs that is also its temporal prior.

``triangulate`` (confidence-weighted DLT), ``dlt`` (unweighted) and ``robust`` stop after step 2 and are the
baselines. Joints nobody can estimate come out NaN with confidence 0.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .camera import CameraRig
from .refine import BonePrior, RefineConfig, RefineResult, TemporalPrior, refine
from .skeleton import Skeleton
from .triangulation import (
    linear_covariance,
    project_pinhole,
    triangulate_dlt,
    triangulate_greedy,
    triangulate_robust,
    valid_observations,
)

METHODS = ("skelsplat", "triangulate", "robust", "dlt")
PRESETS = ("default", "paper")
MODES = ("offline", "streaming")
INITS = ("dlt", "robust", "greedy", "auto")
EXHAUSTIVE_MAX_VIEWS = 5
"""``init="auto"`` searches every view subset up to this many views (26 subsets), then drops views greedily."""
NOMINAL_RATE_HZ = 30.0
"""Frame rate the streaming temporal prior's tolerance is expressed at."""


@dataclass(frozen=True)
class FusionConfig:
    """What the fuser does, besides the refinement settings.

    Attributes:
        method: ``skelsplat``, ``triangulate`` (confidence-weighted DLT), ``robust`` or ``dlt``.
        refine: refinement settings (``skelsplat`` only).
        streaming_refine: refinement settings for streaming, when they differ (fewer steps: it is warm-started).
        prefit: offline only: a first, cheap refinement (Gauss-Newton, no temporal term) that the main one starts
            from, so that it needs fewer steps; ``None`` = start from the triangulation.
        init: initial guess for ``skelsplat``: ``dlt`` (paper), ``robust`` (every view subset), ``greedy`` (drop
            the worst view until the rest agree: linear instead of exponential in the number of views) or ``auto``
            (``robust`` up to ``EXHAUSTIVE_MAX_VIEWS`` views, ``greedy`` above).
        min_views: joints seen by fewer views are not triangulated.
        min_confidence: detections below this confidence are ignored by the triangulation.
        robust_threshold_px: reprojection threshold of the robust subset search.
        hampel_window: half-window (frames) of the offline outlier filter on the initial guess; 0 = off.
        hampel_threshold: a frame is an outlier beyond this many scaled MADs (and ``hampel_min_distance``).
        hampel_min_distance: ... and at least this far from the median (world units).
        bone_lengths: estimate per-subject bone lengths for the bone-length term.
        bone_window: streaming: frames in the sliding window of bone-length medians.
        gate_distance: streaming: a triangulated joint farther than this from the prediction is replaced by it.
        reset_after: streaming: a gap longer than this (seconds) or a stamp going backwards resets the history.
        nominal_pixel_sigma: pixel noise assumed for the covariances of the triangulation baselines.
    """

    method: str = "skelsplat"
    refine: RefineConfig = field(default_factory=RefineConfig)
    streaming_refine: RefineConfig | None = None
    prefit: RefineConfig | None = None
    init: str = "robust"
    min_views: int = 2
    min_confidence: float = 0.3
    robust_threshold_px: float = 15.0
    hampel_window: int = 0
    hampel_threshold: float = 4.0
    hampel_min_distance: float = 0.05
    bone_lengths: bool = False
    bone_window: int = 150
    gate_distance: float = 0.3
    reset_after: float = 1.0
    nominal_pixel_sigma: float = 3.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        if self.min_views < 2:
            raise ValueError("min_views must be at least 2")

    @property
    def triangulation(self) -> str:
        """The triangulation run first: the method itself for the baselines, the initial guess for ``skelsplat``."""
        return self.init if self.method == "skelsplat" else self.method


def preset_config(preset: str = "default", method: str = "skelsplat", backend: str | None = None) -> FusionConfig:
    """The named preset, for ``method``, with the renderer ``backend`` overriding the preset's when given.

    ``raster`` or ``gsplat`` named explicitly also replace the ``default`` preset's Gauss-Newton passes (which
    evaluate the image term in closed form, without a renderer) by Adam steps through that renderer.

    ``paper`` is the published method with its numbers converted to metres: 20 mm Gaussians, 125 Adam steps with
    the 3DGS position schedule, heatmaps from the projected initial Gaussians truncated to the pixel, masked-mean
    L2, forearm/lower-leg symmetry at 1e-5 per mm, unweighted DLT start, confidences ignored.
    ``default`` is ours, tuned on the benchmark (see BENCHMARKS.md).
    """
    if preset == "paper":
        config = FusionConfig(method=method, refine=RefineConfig(), init="dlt", min_confidence=0.0)
    elif preset == "default":
        config = FusionConfig(
            method=method,
            refine=RefineConfig(
                steps=30,
                backend="analytic",
                init_sigma=0.03,
                optimise_shape=True,
                position_lr=0.005,
                position_lr_final=0.0005,
                position_lr_spatial=False,
                lr_schedule_iterations=30,
                iterations_per_step=1,
                scale_lr=0.02,
                rotation_lr=0.01,
                adam_eps=1e-8,
                target_sigma_px=5.0,
                confidence_sigma_power=0.5,
                subpixel_targets=True,
                use_confidence=True,
                loss_normalisation="energy",
                symmetry_weight=0.0,
                bone_length_weight=1.0,
                bone_length_sigma=0.01,
                bone_length_spread=0.5,
                temporal_weight=1.0,
                temporal_sigma=0.01,
                frame_chunk=512,
            ),
            init="auto",
            hampel_window=7,
            bone_lengths=True,
        )
        # Gauss-Newton on fixed-size splats: offline, a prefit that the smoothing refinement starts from; streaming,
        # the whole refinement. Its prior is a prediction from noisy past outputs, so a weak pull.
        gauss_newton = replace(config.refine, optimizer="gauss_newton", optimise_shape=False, temporal_weight=0.0)
        config = replace(
            config,
            prefit=replace(gauss_newton, steps=3),
            # A sliding window of lengths is less sure than a whole recording's: looser where they scatter.
            streaming_refine=replace(gauss_newton, steps=5, temporal_weight=0.03, bone_length_spread=1.0),
        )
    else:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if backend is not None:
        config = replace(config, refine=replace(config.refine, backend=backend))
        if backend in ("raster", "gsplat") and config.streaming_refine is not None:
            # Gauss-Newton has the closed-form image term built in; a renderer asked for by name gets Adam instead,
            # warm-started, so fewer and smaller steps.
            config = replace(
                config,
                prefit=None,
                streaming_refine=replace(
                    config.refine, steps=15, lr_schedule_iterations=15, position_lr=0.003, position_lr_final=0.0003,
                    temporal_weight=config.streaming_refine.temporal_weight,
                ),
            )
    return config


@dataclass
class FusionResult:
    """Fused joints, per frame and joint.

    Attributes:
        joints: ``[F, J, 3]`` world positions (NaN = not estimated).
        confidence: ``[F, J]`` in [0, 1] (0 where NaN).
        covariance: ``[F, J, 3, 3]`` world covariance (the fitted Gaussian for ``skelsplat``; the linearised
            triangulation covariance for the baselines).
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


def _split_keypoints(rig: CameraRig, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw keypoints ``[V, F, J, 3]`` -> undistorted pixels ``[V, F, J, 2]`` (NaN missing) and confidences."""
    if keypoints.ndim != 4 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be [V, F, J, 3], got {list(keypoints.shape)}")
    if keypoints.shape[0] != len(rig):
        raise ValueError(f"keypoints have {keypoints.shape[0]} views but the calibration has {len(rig)} cameras")
    valid = valid_observations(keypoints)
    uv = np.where(valid[..., None], keypoints[..., :2], np.nan)
    confidence = np.where(valid, np.clip(keypoints[..., 2], 0.0, 1.0), 0.0)
    return rig.undistort(uv), confidence


def _summarise(
    rig: CameraRig, points: np.ndarray, uv: np.ndarray, support: np.ndarray, covariance: np.ndarray, names: list[str]
) -> FusionResult:
    """Confidence, views and reprojection error from per-view support weights ``[V, F, J]`` in [0, 1]."""
    estimated = np.isfinite(points).all(axis=-1)
    distance = np.linalg.norm(project_pinhole(rig, points) - uv, axis=-1)
    used = (support > 0.05) & np.isfinite(distance)
    num_views = used.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        reproj = np.where(used, distance, 0.0).sum(axis=0) / num_views
    # Two views in full agreement give full confidence; one view alone cannot fix depth.
    confidence = np.clip(np.where(used, support, 0.0).sum(axis=0) / 2.0, 0.0, 1.0) * (num_views >= 2)
    confidence = np.where(estimated, confidence, 0.0)
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
    usable = confidence >= max(config.min_confidence, 1e-9)
    if method == "auto":
        method = "robust" if len(rig) <= EXHAUSTIVE_MAX_VIEWS else "greedy"
    if method in ("robust", "greedy"):
        search = triangulate_robust if method == "robust" else triangulate_greedy
        result = search(rig, uv, confidence, config.robust_threshold_px, max(config.min_confidence, 1e-9), config.min_views)
        return result.points, np.where(result.views_used, confidence, 0.0)
    weights = np.where(usable, confidence if method == "triangulate" else 1.0, 0.0)
    points = triangulate_dlt(rig, np.where(usable[..., None], uv, np.nan), weights, config.min_views)
    return points, np.where(usable, confidence, 0.0)


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


def bone_lengths_of(points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Bone lengths ``[..., B]`` of ``points [..., J, 3]`` (NaN where a joint is missing)."""
    bones = skeleton.bone_array
    return np.linalg.norm(points[..., bones[:, 0], :] - points[..., bones[:, 1], :], axis=-1)


def estimate_bone_prior(lengths: np.ndarray, min_sigma: float, spread_factor: float) -> BonePrior:
    """Per-subject bone prior from length samples ``[N, B]`` (NaN = not seen in that sample).

    Lengths are medians. Tolerances are ``min_sigma``, widened to ``spread_factor`` robust standard deviations
    (1.4826 MAD) of the samples: where the triangulation is noisy (depth along a narrow baseline), its lengths are
    also biased long, and a tight prior would pull the joints apart.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bones never seen: all-NaN columns
        median = np.nanmedian(lengths, axis=0)
        spread = 1.4826 * np.nanmedian(np.abs(lengths - median), axis=0)
    sigmas = np.maximum(min_sigma, spread_factor * np.nan_to_num(spread))
    return BonePrior(lengths=median, sigmas=sigmas)


def _refine_output(
    rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, result: RefineResult, known: np.ndarray, names: list[str]
) -> FusionResult:
    """Fusion result of a refinement; joints with no usable initial guess stay NaN."""
    points = np.where(known[..., None], result.means, np.nan)
    support = np.where(np.isfinite(uv).all(-1), confidence, 0.0) * result.agreement
    return _summarise(rig, points, uv, support, result.covariances, names)


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
    uv, confidence = _split_keypoints(rig, keypoints)
    if uv.shape[2] != skeleton.num_joints:
        raise ValueError(f"keypoints have {uv.shape[2]} joints, skeleton {skeleton.name!r} has {skeleton.num_joints}")
    names = list(skeleton.joint_names)
    num_frames = uv.shape[1]
    points, support = triangulate_baseline(rig, uv, confidence, config, config.triangulation)
    if config.method != "skelsplat":
        cov = linear_covariance(rig, points, support, config.nominal_pixel_sigma)
        if progress:
            progress(num_frames, num_frames)
        return _summarise(rig, points, uv, support, cov, names)

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
        init = np.where(known[sl][..., None], points[sl], _fallback_position(points))
        if config.prefit is not None:
            init = refine(rig, skeleton, config.prefit, uv[:, sl], confidence[:, sl], init, bone_prior).means
        result = refine(rig, skeleton, config.refine, uv[:, sl], confidence[:, sl], init, bone_prior, temporal)
        chunks.append(_refine_output(rig, uv[:, sl], confidence[:, sl], result, known[sl], names))
        if progress:
            progress(sl.stop, num_frames)
    return concatenate_results(chunks, names)


def fuse_streaming(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    config: FusionConfig,
    fps: float,
    progress: Callable[[int, int], None] | None = None,
) -> FusionResult:
    """A recording ``[V, F, J, 3]`` through :class:`StreamingFuser`, frame by frame at ``fps``: what a live node
    would have published.

    Args:
        progress: called as ``progress(frames_done, total)`` after each frame.
    """
    fuser = StreamingFuser(rig, skeleton, config)
    num_frames = keypoints.shape[1]
    frames = []
    for f in range(num_frames):
        frames.append(fuser.step(keypoints[:, f], f / fps))
        if progress:
            progress(f + 1, num_frames)
    return concatenate_results(frames, list(skeleton.joint_names))


def _fallback_position(points: np.ndarray) -> np.ndarray:
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


class StreamingFuser:
    """Causal fusion, one synchronized set of views at a time; the API the ROS node calls.

    Keeps the last two outputs (constant-velocity prediction, warm start and temporal prior) and a sliding window of
    bone lengths. A stamp that goes backwards (bag loop, clock jump) or a gap over ``reset_after`` resets that state.
    """

    def __init__(self, rig: CameraRig, skeleton: Skeleton, config: FusionConfig):
        self.rig = rig
        self.skeleton = skeleton
        self.config = config
        self.resets = 0
        self.reset()

    def reset(self) -> None:
        """Forget the history (after a clock jump or a long gap)."""
        self._history: deque[tuple[float, np.ndarray]] = deque(maxlen=2)
        self._bone_window: deque[np.ndarray] = deque(maxlen=self.config.bone_window)

    def _prediction(self, stamp: float) -> np.ndarray | None:
        if not self._history:
            return None
        last_stamp, last = self._history[-1]
        if len(self._history) == 1:
            return last
        prev_stamp, prev = self._history[0]
        dt_prev = last_stamp - prev_stamp
        if dt_prev <= 0:
            return last
        velocity = (last - prev) / dt_prev
        predicted = last + velocity * (stamp - last_stamp)
        # A joint lost in the previous frame has no velocity: hold its last position.
        return np.where(np.isfinite(predicted), predicted, last)

    def step(self, keypoints: np.ndarray, stamp: float) -> FusionResult:
        """Fuse one frame: ``keypoints [V, J, 3]`` (NaN rows for views without data) at time ``stamp`` (seconds).

        Returns a result with a frame axis of length 1.
        """
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.ndim != 3 or keypoints.shape[1] != self.skeleton.num_joints or keypoints.shape[2] != 3:
            raise ValueError(
                f"keypoints must be [V, {self.skeleton.num_joints}, 3] for skeleton {self.skeleton.name!r}, "
                f"got {list(keypoints.shape)}"
            )
        if self._history and (stamp < self._history[-1][0] or stamp - self._history[-1][0] > self.config.reset_after):
            self.resets += 1
            self.reset()
        uv, confidence = _split_keypoints(self.rig, keypoints[:, None])
        config, names = self.config, list(self.skeleton.joint_names)
        points, support = triangulate_baseline(self.rig, uv, confidence, config, config.triangulation)
        if config.method != "skelsplat":
            cov = linear_covariance(self.rig, points, support, config.nominal_pixel_sigma)
            return _summarise(self.rig, points, uv, support, cov, names)

        prediction = self._prediction(stamp)
        init = points[0]
        if prediction is not None:
            with np.errstate(invalid="ignore"):
                far = np.linalg.norm(init - prediction, axis=-1) > config.gate_distance
            init = np.where((~np.isfinite(init).all(-1) | far)[:, None], prediction, init)
        known = np.isfinite(init).all(axis=-1)
        if not known.any():
            return _summarise(self.rig, points, uv, support, np.full(points.shape + (3,), np.nan), names)
        settings = config.streaming_refine or config.refine
        bone_prior = None
        if config.bone_lengths and len(self._bone_window) >= 5:
            bone_prior = estimate_bone_prior(
                np.stack(self._bone_window), settings.bone_length_sigma, settings.bone_length_spread
            )
        temporal = None
        if prediction is not None and settings.temporal_weight > 0:
            # Constant-velocity error grows about with the square of the gap (in 30 Hz frames).
            gap_frames = max(1.0, (stamp - self._history[-1][0]) * NOMINAL_RATE_HZ)
            temporal = TemporalPrior("predict", prediction[None], sigma_scale=gap_frames**2)
        init_full = np.where(known[:, None], init, _fallback_position(init))[None]
        result = refine(self.rig, self.skeleton, settings, uv, confidence, init_full, bone_prior, temporal)
        # A joint no view supports this frame would only be the prediction: say it is not seen.
        fused = _refine_output(self.rig, uv, confidence, result, known[None] & (confidence > 0).any(axis=0), names)
        self._history.append((stamp, np.where(fused.confidence[0][:, None] > 0, fused.joints[0], np.nan)))
        if config.bone_lengths:
            # From the triangulation, not from our own output: lengths the prior has already pulled would feed back.
            self._bone_window.append(bone_lengths_of(points[0], self.skeleton))
        return fused
