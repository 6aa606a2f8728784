"""Multi-person fusion of whole recordings ``[V, F, S, J, 3]``: :func:`track_streaming` (the live tracker replayed)
and :func:`track_offline` (the same association, then track stitching across short gaps and an offline SkelSplat
fit per person with that person's temporal and bone priors).

Every recording comes here whatever its file: a 5-D ``.npz``, a JSON folder read with ``--people all`` and a ROS bag
with several people per message. Time is the frames' capture time: ``f / fps`` by default, or the stamps a
recording gives (a bag's), so that the tracker's life times and the stitching gaps are true seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..fusion.config import FusionConfig
from ..fusion.offline import fuse_offline
from ..fusion.result import frame_stamps, split_keypoints, triangulate_baseline
from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton
from .lagged import LaggedTracker
from .tracker import MultiPersonTracker, PersonEstimate, TrackerConfig


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
    stamps: np.ndarray | None = None,
    rigs: list[CameraRig] | None = None,
    lag: float = 0.0,
) -> MultiPersonResult:
    """A recording ``[V, F, S, J, 3]`` through :class:`MultiPersonTracker` frame by frame: what the node would have
    published (confirmed tracks only, from their confirmation on).

    Args:
        stamps: capture time of each frame ``[F]`` in seconds; default ``f / fps``.
        rigs: the cameras of each frame ``[F]`` (moving cameras); default ``rig`` for all.
        lag: 0: the causal tracker; seconds: :class:`~.lagged.LaggedTracker` (each frame estimated from the
            frames up to ``lag`` after it; people confirmed within the look-ahead from their first frame).
    """
    keypoints = _check(keypoints, rig, skeleton)
    num_frames = keypoints.shape[1]
    times = frame_stamps(num_frames, fps, stamps)
    published: list[list[PersonEstimate]] = [[] for _ in range(num_frames)]
    lagged = None if lag == 0 else LaggedTracker(rig, skeleton, fusion, config, lag)
    tracker = MultiPersonTracker(rig, skeleton, fusion, config) if lagged is None else None
    index: dict[float, list[int]] = {}  # stamp -> frames not yet output (a repeated stamp restarts the tracker)
    for f in range(num_frames):
        frame_rig = rigs[f] if rigs is not None else None
        if lagged is None:
            published[f] = tracker.step(split_slots(keypoints, f), float(times[f]), rig=frame_rig).people
        else:
            index.setdefault(float(times[f]), []).append(f)
            for frame in lagged.step(split_slots(keypoints, f), float(times[f]), rig=frame_rig)[1]:
                published[index[frame.stamp].pop(0)] = frame.people
        if progress:
            progress(f + 1, num_frames)
    for frame in lagged.flush() if lagged is not None else []:
        published[index[frame.stamp].pop(0)] = frame.people
    return people_array(published, num_frames, skeleton)


def people_array(published: list[list[PersonEstimate]], num_frames: int, skeleton: Skeleton) -> MultiPersonResult:
    """The people published at each frame (``TrackerStep.people``) as one result, a slice per track id."""
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


@dataclass(frozen=True)
class StitchConfig:
    """How :func:`track_offline` joins tracks that the causal tracker split.

    Attributes:
        max_gap: a track may continue one that ended at most this long (s) before it started.
        max_distance: ... when the mean distance between the first's last joints and the second's first joints is at
            most this (m) plus ``speed`` times the gap.
        speed: allowance for walking during the gap (m/s).
    """

    max_gap: float = 1.0
    max_distance: float = 0.3
    speed: float = 1.0


def _stitch(spans: dict[int, tuple[int, int]], ends: dict[int, tuple[np.ndarray, np.ndarray]], times: np.ndarray,
            stitch: StitchConfig) -> dict[int, int]:
    """Which track continues which: ``{later id: earlier id}``, greedy by distance, each track continued once.
    ``times [F]``: capture time of each frame (s)."""
    candidates = []
    for a, (_, last_a) in spans.items():
        for b, (first_b, _) in spans.items():
            gap = float(times[first_b] - times[last_a])
            if a == b or not 0 < gap <= stitch.max_gap:
                continue
            distance = np.linalg.norm(ends[a][1] - ends[b][0], axis=-1)
            if not np.isfinite(distance).any():
                continue
            mean = float(np.nanmean(distance))
            if mean <= stitch.max_distance + stitch.speed * gap:
                candidates.append((mean, a, b))
    parent: dict[int, int] = {}
    continued: set[int] = set()
    for _, a, b in sorted(candidates):
        if a in continued or b in parent:
            continue
        parent[b] = a
        continued.add(a)
    return parent


def _quick_points(rig: CameraRig, rows: np.ndarray, fusion: FusionConfig) -> np.ndarray:
    """Robust triangulation ``[J, 3]`` of one person's keypoints ``[V, J, 3]`` (where a track starts or ends)."""
    uv, confidence = split_keypoints(rig, rows[:, None])
    points, _ = triangulate_baseline(rig, uv, confidence, fusion, "robust")
    return points[0]


def track_offline(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    fusion: FusionConfig,
    fps: float,
    config: TrackerConfig = TrackerConfig(),
    stitch: StitchConfig = StitchConfig(),
    progress: Callable[[int, int], None] | None = None,
    stamps: np.ndarray | None = None,
) -> MultiPersonResult:
    """Multi-person fusion of a whole recording ``[V, F, S, J, 3]``, its frames ``1 / fps`` apart (a recording's
    missing frames are frames without detections, never left out); ``stamps [F]`` (s) give the tracker the
    frames' true capture times, default ``f / fps``.

    1. The causal tracker's association (streaming refits included), recording which detections every track took,
       from its first frame on (the frames before its confirmation are recovered).
    2. Tracks that were ever confirmed are kept; one that starts within ``stitch.max_gap`` of another's end, near
       where it ended, continues it (keeps its id).
    3. Each person's detections over their span go through :func:`~skelsplat_ros.fusion.offline.fuse_offline`
       alone: their own bone lengths, temporal smoothing and gap interpolation (frames of a stitched gap are
       interpolated; frames outside the span stay NaN).
    """
    keypoints = _check(keypoints, rig, skeleton)
    tracker = MultiPersonTracker(rig, skeleton, fusion, config)
    num_frames, num_views, num_joints = keypoints.shape[1], len(rig), skeleton.num_joints
    times = frame_stamps(num_frames, fps, stamps)
    taken: dict[int, dict[int, np.ndarray]] = {}
    confirmed: set[int] = set()
    for f in range(num_frames):
        step = tracker.step(split_slots(keypoints, f), float(times[f]))
        for track_id, rows in step.assignments.items():
            taken.setdefault(track_id, {})[f] = rows
        confirmed.update(p.track_id for p in step.people)
        if progress:
            progress(f + 1, 2 * num_frames)
    spans = {t: (min(taken[t]), max(taken[t])) for t in confirmed}
    ends = {}
    for t, (first, last) in spans.items():
        ends[t] = (_quick_points(rig, taken[t][first], fusion), _quick_points(rig, taken[t][last], fusion))
    parent = _stitch(spans, ends, times, stitch)

    def root(t: int) -> int:
        while t in parent:
            t = parent[t]
        return t

    people: dict[int, dict[int, np.ndarray]] = {}
    for t in sorted(confirmed):
        people.setdefault(root(t), {}).update(taken[t])
    ids = sorted(people)
    joints, confidence, covariance = _empty(num_frames, len(ids), num_joints)
    for k, t in enumerate(ids):
        frames = people[t]
        first, last = min(frames), max(frames)
        recording = np.full((num_views, last - first + 1, num_joints, 3), np.nan)
        recording[..., 2] = 0.0
        for f, rows in frames.items():
            recording[:, f - first] = rows
        result = fuse_offline(rig, skeleton, recording, fusion, fps=fps)
        joints[first:last + 1, k] = result.joints
        confidence[first:last + 1, k] = result.confidence
        covariance[first:last + 1, k] = result.covariance
        if progress:
            progress(num_frames + int(num_frames * (k + 1) / len(ids)), 2 * num_frames)
    return MultiPersonResult(joints, confidence, covariance, np.array(ids, dtype=np.int64), list(skeleton.joint_names))
