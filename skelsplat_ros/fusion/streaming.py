"""Streaming (causal) fusion: :class:`StreamingFuser`, one synchronized set of views at a time (what the node
calls), and :func:`fuse_streaming`, a recording replayed through it."""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig
from ..geometry.triangulation import linear_covariance
from ..skeleton.models import Skeleton
from .config import NOMINAL_RATE_HZ, FusionConfig
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


def fuse_streaming(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    config: FusionConfig,
    fps: float,
    progress: Callable[[int, int], None] | None = None,
    stamps: np.ndarray | None = None,
    rigs: list[CameraRig] | None = None,
) -> FusionResult:
    """A recording ``[V, F, J, 3]`` through :class:`StreamingFuser`, frame by frame at ``fps``: what a live node
    would have published.

    Args:
        progress: called as ``progress(frames_done, total)`` after each frame.
        stamps: capture time of each frame ``[F]`` in seconds (a recording's stamps); default ``f / fps``.
        rigs: the cameras of each frame ``[F]`` (moving cameras); default ``rig`` for all.
    """
    fuser = StreamingFuser(rig, skeleton, config)
    num_frames = keypoints.shape[1]
    frames = []
    for f in range(num_frames):
        stamp = float(stamps[f]) if stamps is not None else f / fps
        frames.append(fuser.step(keypoints[:, f], stamp, rig=rigs[f] if rigs is not None else None))
        if progress:
            progress(f + 1, num_frames)
    return concatenate_results(frames, list(skeleton.joint_names))


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

    def step(self, keypoints: np.ndarray, stamp: float, rig: CameraRig | None = None) -> FusionResult:
        """Fuse one frame: ``keypoints [V, J, 3]`` (NaN rows for views without data) at time ``stamp`` (seconds).

        ``rig``: the cameras where they were at ``stamp`` (moving cameras), same names and order as the fuser's
        rig; ``None`` = the fuser's rig (static cameras). The state kept between frames is in world coordinates,
        so it carries over from one rig to the next.

        Returns a result with a frame axis of length 1.
        """
        if rig is None:
            rig = self.rig
        elif rig.names != self.rig.names:
            raise ValueError(f"the frame's rig has cameras {rig.names}, the fuser {self.rig.names}")
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if keypoints.ndim != 3 or keypoints.shape[1] != self.skeleton.num_joints or keypoints.shape[2] != 3:
            raise ValueError(
                f"keypoints must be [V, {self.skeleton.num_joints}, 3] for skeleton {self.skeleton.name!r}, "
                f"got {list(keypoints.shape)}"
            )
        if self._history and (stamp < self._history[-1][0] or stamp - self._history[-1][0] > self.config.reset_after):
            self.resets += 1
            self.reset()
        uv, confidence = split_keypoints(rig, keypoints[:, None])
        config, names = self.config, list(self.skeleton.joint_names)
        points, support = triangulate_baseline(rig, uv, confidence, config, config.triangulation)
        if config.method != "skelsplat":
            cov = linear_covariance(rig, points, support, config.nominal_pixel_sigma)
            return summarise(rig, points, uv, support, cov, names)

        prediction = self._prediction(stamp)
        init = points[0]
        if prediction is not None:
            with np.errstate(invalid="ignore"):
                far = np.linalg.norm(init - prediction, axis=-1) > config.gate_distance
            init = np.where((~np.isfinite(init).all(-1) | far)[:, None], prediction, init)
        known = np.isfinite(init).all(axis=-1)
        if not known.any():
            return summarise(rig, points, uv, support, np.full(points.shape + (3,), np.nan), names)
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
        init_full = np.where(known[:, None], init, fallback_position(init))[None]
        result = refine(rig, self.skeleton, settings, uv, confidence, init_full, bone_prior, temporal)
        # A joint no view supports this frame would only be the prediction: say it is not seen.
        fused = refine_output(rig, uv, confidence, result, known[None] & (confidence > 0).any(axis=0), names)
        self._history.append((stamp, np.where(fused.confidence[0][:, None] > 0, fused.joints[0], np.nan)))
        if config.bone_lengths:
            # From the triangulation, not from our own output: lengths the prior has already pulled would feed back.
            self._bone_window.append(bone_lengths_of(points[0], self.skeleton))
        return fused
