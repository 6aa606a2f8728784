"""A recording's cameras through the detector, into the multi-person keypoint set that ``skelsplat fuse`` reads.

Each camera gets its own detector (a backend may follow people from frame to frame) and is detected over the span all
cameras share (:func:`~skelsplat_ros.detection.sources.aligned_span`). The result is ``keypoints [V, F, S, J, 3]``
with ``S = max_people`` slots, NaN-padded, plus a :class:`DetectionReport` of what was found and what it cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..io.keypoints import KeypointSet
from . import make_detector
from .base import DetectorConfig
from .sources import FrameSource, aligned_span

__all__ = ["DetectionReport", "detect_recording"]

NOMINAL_FPS = 30.0
"""Frame rate given to sources that know none (image folders without ``fps``)."""


@dataclass
class DetectionReport:
    """What a detection run found and cost.

    Attributes:
        cameras: ``[V]`` camera names.
        people: ``[V, F]`` people found per image.
        seconds: wall-clock time of the whole run (decoding included).
        cpu_seconds: CPU time of the process over the run (every thread: the backends run their own).
        detect_seconds: ``[V, F]`` wall-clock time of each image's detection alone.
        detect_cpu_seconds: ``[V, F]`` CPU time of the process during each image's detection (the backend's own
            threads included; other threads of the process add to it only while a detection runs).
        starts: ``[V]`` first frame used of each source.
    """

    cameras: list[str]
    people: np.ndarray
    seconds: float
    cpu_seconds: float
    detect_seconds: np.ndarray
    detect_cpu_seconds: np.ndarray
    starts: list[int]

    @property
    def num_frames(self) -> int:
        return int(self.people.shape[1])

    @property
    def images(self) -> int:
        return int(self.people.size)

    def detection_rate(self) -> np.ndarray:
        """Share of each camera's images in which somebody was found ``[V]``."""
        return (self.people > 0).mean(axis=1)

    def summary(self) -> str:
        """Per camera: share of images with people and people per image; then the time figures."""
        rates = self.detection_rate()
        per_camera = ", ".join(f"{name} {100 * rate:.0f} % ({self.people[v].mean():.2f}/image)"
                               for v, (name, rate) in enumerate(zip(self.cameras, rates)))
        return (f"images with people: {per_camera}; {self.images} images in {self.seconds:.1f} s "
                f"({1e3 * self.seconds / max(self.images, 1):.1f} ms/image, detection alone median "
                f"{1e3 * float(np.median(self.detect_seconds)):.1f} ms; CPU {self.cpu_seconds:.1f} s = "
                f"{1e3 * self.cpu_seconds / max(self.images, 1):.1f} ms/image, detection alone median "
                f"{1e3 * float(np.median(self.detect_cpu_seconds)):.1f} ms, mean "
                f"{1e3 * float(np.mean(self.detect_cpu_seconds)):.1f} ms)")


def detect_recording(
    sources: list[FrameSource],
    config: DetectorConfig,
    offsets: list[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[KeypointSet, DetectionReport]:
    """Detect every shared frame of every source: ``keypoints [V, F, max_people, J, 3]`` (fps of the sources).

    Args:
        sources: one per camera (the camera name is the source's).
        config: the detector settings (one detector is made per camera).
        offsets: per source, the frame showing the first common instant (see ``aligned_span``).
        progress: called as ``progress(done, total)`` after each image.

    Raises:
        SourceError: sources that do not line up; DetectorError: a backend that cannot run.
    """
    starts, count = aligned_span(sources, offsets)
    fps = next((s.fps for s in sources if s.fps), None) or NOMINAL_FPS
    total = len(sources) * count
    wall, cpu = time.perf_counter(), time.process_time()
    slots: np.ndarray | None = None
    people = np.zeros((len(sources), count), dtype=np.int64)
    detect_seconds = np.zeros((len(sources), count))
    detect_cpu = np.zeros((len(sources), count))
    for view, (source, start) in enumerate(zip(sources, starts)):
        detector = make_detector(config)
        try:
            for frame, image in enumerate(source.frames(start, count)):
                began, began_cpu = time.perf_counter(), time.process_time()
                found = detector.detect(image, round(1e9 * frame / fps))
                detect_seconds[view, frame] = time.perf_counter() - began
                detect_cpu[view, frame] = time.process_time() - began_cpu
                if slots is None:
                    slots = np.full((len(sources), count, config.max_people, found.shape[1], 3), np.nan)
                    slots[..., 2] = 0.0
                slots[view, frame, : len(found)] = found
                people[view, frame] = len(found)
                if progress is not None:
                    progress(view * count + frame + 1, total)
        finally:
            detector.close()
    keypoints = KeypointSet(slots, [s.name for s in sources], fps=fps, skeleton=detector.skeleton)
    report = DetectionReport([s.name for s in sources], people, time.perf_counter() - wall,
                             time.process_time() - cpu, detect_seconds, detect_cpu, starts)
    return keypoints, report
