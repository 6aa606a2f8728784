"""Multi-person fusion of whole recordings ``[V, F, S, J, 3]``: :func:`track_streaming` (the live tracker replayed)
and :func:`track_offline` (the same association, then track stitching across short gaps and an offline SkelSplat
fit per person with that person's temporal and bone priors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..fusion.config import FusionConfig
from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton
from .tracker import MultiPersonTracker, TrackerConfig


@dataclass
class MultiPersonResult:
    """Fused people of a recording, one slice per track.

    Attributes:
        joints: ``[F, T, J, 3]`` world positions, NaN where the track is absent or the joint not estimated.
        confidence: ``[F, T, J]`` in [0, 1], 0 where NaN.
        covariance: ``[F, T, J, 3, 3]``, NaN where absent.
        track_ids: ``[T]`` ids, ascending.
        joint_names: ``J`` names.
    """

    joints: np.ndarray
    confidence: np.ndarray
    covariance: np.ndarray
    track_ids: np.ndarray
    joint_names: list[str]

    @property
    def num_tracks(self) -> int:
        return int(len(self.track_ids))


def split_slots(keypoints: np.ndarray, frame: int) -> list[np.ndarray]:
    """One frame of ``keypoints [V, F, S, J, 3]`` as the tracker's input: per view ``[S_v, J, 3]`` without the
    padding rows (no confident joint)."""
    rows = keypoints[:, frame]
    return [view[(np.nan_to_num(view[..., 2]) > 0).any(-1)] for view in rows]


def _check(keypoints: np.ndarray, rig: CameraRig, skeleton: Skeleton) -> np.ndarray:
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 5 or keypoints.shape[-1] != 3 or keypoints.shape[3] != skeleton.num_joints:
        raise ValueError(f"multi-person keypoints must be [V, F, S, {skeleton.num_joints}, 3], got {list(keypoints.shape)}")
    if keypoints.shape[0] != len(rig):
        raise ValueError(f"keypoints have {keypoints.shape[0]} views but the calibration has {len(rig)} cameras")
    return keypoints


def _empty(num_frames: int, num_tracks: int, num_joints: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.full((num_frames, num_tracks, num_joints, 3), np.nan),
        np.zeros((num_frames, num_tracks, num_joints), dtype=np.float32),
        np.full((num_frames, num_tracks, num_joints, 3, 3), np.nan),
    )


def track_streaming(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    fusion: FusionConfig,
    fps: float,
    config: TrackerConfig = TrackerConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> MultiPersonResult:
    """A recording ``[V, F, S, J, 3]`` through :class:`MultiPersonTracker` frame by frame: what the node would have
    published (confirmed tracks only, from their confirmation on)."""
    keypoints = _check(keypoints, rig, skeleton)
    tracker = MultiPersonTracker(rig, skeleton, fusion, config)
    num_frames = keypoints.shape[1]
    published: list[list] = []
    for f in range(num_frames):
        published.append(tracker.step(split_slots(keypoints, f), f / fps).people)
        if progress:
            progress(f + 1, num_frames)
    ids = sorted({person.track_id for people in published for person in people})
    column = {track_id: k for k, track_id in enumerate(ids)}
    joints, confidence, covariance = _empty(num_frames, len(ids), skeleton.num_joints)
    for f, people in enumerate(published):
        for person in people:
            k = column[person.track_id]
            joints[f, k] = person.result.joints[0]
            confidence[f, k] = person.result.confidence[0]
            covariance[f, k] = person.result.covariance[0]
    return MultiPersonResult(joints, confidence, covariance, np.array(ids, dtype=np.int64), list(skeleton.joint_names))
