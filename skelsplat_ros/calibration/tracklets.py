"""Each camera's detections linked over time into 2D tracklets, and the detection noise measured on them.

Neither needs the cameras' poses: a tracklet follows one person through one camera's frames (at camera rates people
move a few pixels between frames), so association across cameras can work tracklet by tracklet however wrong the
starting calibration is, and the noise that decides whether a calibration converged is measured on the keypoints
alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..fusion.result import column_nanmedian
from ..tracking.tracker import gated_assignment

__all__ = ["TrackletConfig", "link_tracklets", "detection_noise", "median_over_joints"]


@dataclass(frozen=True)
class TrackletConfig:
    """How detections are linked.

    Attributes:
        min_confidence: keypoints below this confidence are ignored.
        min_joints: detections with fewer keypoints are ignored.
        gate: a detection continues a tracklet when the median distance of their shared keypoints is at most this
            fraction of the person's size in the image (the diagonal of the keypoints' bounding box), per frame
            of gap.
        max_gap: frames a tracklet may miss and still be continued.
        ambiguity: a link is made only when every other candidate of the tracklet and of the detection costs at
            least this many times more; otherwise the tracklet ends there (two people crossing in the image start
            new tracklets rather than risk one that changes person).
    """

    min_confidence: float = 0.3
    min_joints: int = 5
    gate: float = 0.25
    max_gap: int = 5
    ambiguity: float = 2.0


def median_over_joints(values: np.ndarray) -> np.ndarray:
    """Median over the last axis of ``values [..., J]`` ignoring NaN (NaN where all are), by one sort."""
    count = values.shape[-1]
    return column_nanmedian(np.moveaxis(values, -1, 0).reshape(count, -1)).reshape(values.shape[:-1])


def _size(uv: np.ndarray) -> np.ndarray:
    """Bounding-box diagonal ``[...]`` of keypoints ``[..., J, 2]`` (NaN = missing)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a detection with no keypoint: NaN, as intended
        span = np.nanmax(uv, axis=-2) - np.nanmin(uv, axis=-2)
    return np.linalg.norm(span, axis=-1)


def _unambiguous(cost: np.ndarray, row: int, column: int, config: TrackletConfig) -> bool:
    """No other detection near tracklet ``row`` and no other tracklet near detection ``column``."""
    others = np.concatenate([np.delete(cost[row], column), np.delete(cost[:, column], row)])
    return not (others < config.ambiguity * max(cost[row, column], 1e-3 * config.gate)).any()


def _link_view(uv: np.ndarray, usable: np.ndarray, flip: np.ndarray, config: TrackletConfig) -> np.ndarray:
    """Tracklet labels ``[F, S]`` (-1 = none) of one camera's keypoints ``uv [F, S, J, 2]`` (NaN = missing)."""
    num_frames, num_slots = usable.shape
    labels = np.full((num_frames, num_slots), -1, dtype=np.int64)
    last_uv: list[np.ndarray] = []  # per tracklet: its last keypoints [J, 2]
    last_frame: list[int] = []
    with np.errstate(all="ignore"):
        sizes = _size(uv)  # [F, S]
        for f in range(num_frames):
            slots = np.flatnonzero(usable[f])
            if not len(slots):
                continue
            alive = [k for k in range(len(last_uv)) if f - last_frame[k] <= config.max_gap]
            if alive:
                previous = np.stack([last_uv[k] for k in alive])  # [T, J, 2]
                current = uv[f, slots]  # [D, J, 2]
                direct = median_over_joints(np.linalg.norm(previous[:, None] - current[None], axis=-1))
                mirrored = median_over_joints(np.linalg.norm(previous[:, None] - current[None][:, :, flip], axis=-1))
                gap = f - np.array([last_frame[k] for k in alive])
                cost = np.fmin(direct, mirrored) / (sizes[f, slots][None] * gap[:, None])
                cost = np.where(np.isfinite(cost), cost, np.inf)
                pairs = [(r, c) for r, c in gated_assignment(cost, config.gate) if _unambiguous(cost, r, c, config)]
            else:
                pairs = []
            claimed = set()
            for row, column in pairs:
                k = alive[row]
                labels[f, slots[column]] = k
                last_uv[k], last_frame[k] = uv[f, slots[column]], f
                claimed.add(column)
            for column in range(len(slots)):
                if column not in claimed:
                    labels[f, slots[column]] = len(last_uv)
                    last_uv.append(uv[f, slots[column]])
                    last_frame.append(f)
    return labels


def link_tracklets(uv: np.ndarray, confidence: np.ndarray, flip: np.ndarray,
                   config: TrackletConfig = TrackletConfig()) -> np.ndarray:
    """Per-camera tracklet labels ``[V, F, S]`` (-1 = detection not used) of keypoints ``uv [V, F, S, J, 2]``
    (pixels, NaN = missing) with ``confidence [V, F, S, J]``; ``flip [J]`` is the skeleton's left/right permutation
    (a detector swapping left and right in one frame does not break a tracklet)."""
    usable_joint = (confidence >= config.min_confidence) & np.isfinite(uv).all(-1)
    uv = np.where(usable_joint[..., None], uv, np.nan)
    usable = usable_joint.sum(-1) >= config.min_joints  # [V, F, S]
    return np.stack([_link_view(uv[v], usable[v], flip, config) for v in range(len(uv))])


def detection_noise(uv: np.ndarray, confidence: np.ndarray, labels: np.ndarray, min_confidence: float = 0.3) -> float:
    """The detection noise (px): the median distance of a keypoint from the straight line through its positions in
    the frames before and after (``|x[f-1] - 2 x[f] + x[f+1]| / sqrt(6)``: for independent noise of std ``s`` per
    coordinate this is distributed as that noise's 2D distance, whose median is ``1.18 s``; motion between three
    frames adds little at camera rates), over every tracklet's keypoints of confidence ``>= min_confidence`` in
    three consecutive frames. It is measured on the detections alone, so that a calibration cannot make its own
    yardstick look good. NaN when no keypoint qualifies.

    Args:
        uv: ``[V, F, S, J, 2]`` pixels.
        confidence: ``[V, F, S, J]``.
        labels: ``[V, F, S]`` tracklet labels (:func:`link_tracklets`).
    """
    distances = []
    for v in range(len(uv)):
        for track in np.unique(labels[v][labels[v] >= 0]):
            frames, slots = np.nonzero(labels[v] == track)
            if len(frames) < 3:
                continue
            series = np.full((frames[-1] - frames[0] + 1,) + uv.shape[-2:], np.nan)
            good = confidence[v, frames, slots] >= min_confidence
            series[frames - frames[0]] = np.where(good[..., None], uv[v, frames, slots], np.nan)
            second = series[:-2] - 2.0 * series[1:-1] + series[2:]  # [F - 2, J, 2]
            norm = np.linalg.norm(second, axis=-1)
            distances.append(norm[np.isfinite(norm)] / np.sqrt(6.0))
    values = np.concatenate(distances) if distances else np.zeros(0)
    return float(np.median(values)) if len(values) else float("nan")
