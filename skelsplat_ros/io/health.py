"""What a live fusion node reports about itself (``/diagnostics``): counters, per-frame figures over a window, and the
state of each camera's input. Pure Python and numpy; the node turns :func:`diagnostic_report` into a message.

A camera's state says what it sent within ``camera_timeout`` (seconds):

- ``ok``: at least one valid message (one the validator accepted, whether or not its frame was fused);
- ``invalid input``: messages, but every one of them rejected (a detector sending junk): neither dead nor alive,
  and the report says how many were rejected;
- ``dead``: nothing at all. A camera not heard from yet counts as ``ok`` for ``camera_timeout`` after input started.

Only ``ok`` cameras are waited for by the synchronizer (its liveness counts valid messages only).
"""

from __future__ import annotations

import collections
import statistics
import threading
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CAMERA_OK", "CAMERA_INVALID", "CAMERA_DEAD", "FrameSample", "Window", "NodeStatistics", "camera_states",
           "diagnostic_report"]

CAMERA_OK, CAMERA_INVALID, CAMERA_DEAD = "ok", "invalid input", "dead"


@dataclass(frozen=True)
class FrameSample:
    """Figures of one published frame, seconds: capture stamp to publish (``latency``), its parts (stamp to the
    synchronizer's emission, emission to the fusion thread), the fusion's wall and thread CPU time, and how many views
    had data."""

    latency: float
    input_wait: float
    queue_wait: float
    fusion_time: float
    fusion_cpu: float
    views: int


@dataclass
class Window:
    """What happened since the previous report: ``seconds`` long, frames ``published``, messages per camera
    (``received`` = ``valid`` + ``rejected``) and the samples of the published frames."""

    seconds: float
    published: int = 0
    received: dict[str, int] = field(default_factory=dict)
    valid: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    samples: list[FrameSample] = field(default_factory=list)


class NodeStatistics:
    """Cumulative counters by reason and a window of samples; thread-safe (input and fusion threads both write).

    Args:
        cameras: camera names.
        now: the node's monotonic clock now, seconds.
    """

    def __init__(self, cameras: list[str], now: float) -> None:
        self.lock = threading.Lock()
        self.cameras = list(cameras)
        self.counts: collections.Counter[str] = collections.Counter()
        self.published = 0
        self.rejected_by_camera = {camera: 0 for camera in self.cameras}
        self.last_rejected: dict[str, float] = {}  # camera -> monotonic time of its latest rejected message
        self.tracks = {"confirmed": 0, "tentative": 0}  # after the latest frame
        self.started: float | None = None  # when input started (see :meth:`start`)
        self._window_start = now
        self._window = self._new_window()

    def _new_window(self) -> Window:
        zero = dict.fromkeys(self.cameras, 0)
        return Window(0.0, received=dict(zero), valid=dict(zero), rejected=dict(zero))

    def start(self, now: float) -> None:
        """Input starts now (the keypoint subscriptions exist): cameras not heard from get ``camera_timeout`` from
        here, and the window restarts."""
        with self.lock:
            self.started = now
            self._window_start, self._window = now, self._new_window()

    def count(self, key: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[key] += amount

    def message(self, camera: str, now: float, counts: collections.Counter[str]) -> None:
        """One message of ``camera``, received at ``now``, with what it was counted as: ``accepted`` when the
        validator took it, else its rejection(s)."""
        with self.lock:
            self.counts.update(counts)
            self._window.received[camera] += 1
            if counts["accepted"]:
                self._window.valid[camera] += 1
            else:
                self._window.rejected[camera] += 1
                self.rejected_by_camera[camera] += 1
                self.last_rejected[camera] = now

    def frame(self, sample: FrameSample, ended: int, unassigned: int, capped: int, confirmed: int,
              tentative: int) -> None:
        """One published frame and what the tracker did in it (tracks that ended, detections nobody took, people
        dropped by the per-view cap, tracks alive after it)."""
        with self.lock:
            self.published += 1
            self._window.published += 1
            self._window.samples.append(sample)
            self.counts["tracks.ended"] += ended
            self.counts["detections.unassigned"] += unassigned
            if capped:
                self.counts["capped.people"] += capped
            self.tracks = {"confirmed": confirmed, "tentative": tentative}

    def take_window(self, now: float) -> Window:
        """The window since the previous call (or :meth:`start`), and a new one from ``now``."""
        with self.lock:
            window, self._window = self._window, self._new_window()
            window.seconds = max(now - self._window_start, 1e-9)
            self._window_start = now
            return window


def camera_states(cameras: list[str], now: float, timeout: float, last_valid: dict[str, float | None],
                  last_rejected: dict[str, float], started: float | None) -> dict[str, str]:
    """The state of each camera (see the module docstring) at ``now``; times in seconds of one monotonic clock.

    ``last_valid``: time of each camera's latest valid message (``None``: never); ``last_rejected``: of its latest
    rejected one; ``started``: when input started (``None``: not yet; nobody is dead then).
    """
    states = {}
    for camera in cameras:
        valid, rejected = last_valid.get(camera), last_rejected.get(camera)
        if valid is not None and now - valid <= timeout:
            states[camera] = CAMERA_OK
        elif rejected is not None and now - rejected <= timeout:
            states[camera] = CAMERA_INVALID
        elif valid is None and rejected is None and (started is None or now - started <= timeout):
            states[camera] = CAMERA_OK  # not heard from yet, still within its grace
        else:
            states[camera] = CAMERA_DEAD
    return states


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def diagnostic_report(window: Window, states: dict[str, str], lagging: dict[str, float],
                      counters: dict[str, int], rejected_by_camera: dict[str, int], never_heard: list[str],
                      extra: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """``(level, message, values)`` of one status: level ``"OK"`` or ``"WARN"``, a one-line message and the
    key/value pairs (``extra``: the node's own figures, e.g. queue lengths, inserted after the window's);
    ``never_heard``: cameras no valid message came from yet.

    The message names, in this order, what is wrong: no input at all, dead cameras and cameras sending only invalid
    messages (with how many were rejected in the window), cameras lagging beyond the wait, input without output.
    """
    seconds = window.seconds
    ms = {name: [1e3 * getattr(s, name) for s in window.samples]
          for name in ("latency", "input_wait", "queue_wait", "fusion_time", "fusion_cpu")}
    dead = [c for c, state in states.items() if state == CAMERA_DEAD]
    invalid = [c for c, state in states.items() if state == CAMERA_INVALID]
    values = {
        "output_rate_hz": f"{window.published / seconds:.2f}",
        "latency_median_ms": f"{_percentile(ms['latency'], 50):.1f}",
        "latency_p95_ms": f"{_percentile(ms['latency'], 95):.1f}",
        "latency_max_ms": f"{max(ms['latency'], default=float('nan')):.1f}",
        "input_wait_median_ms": f"{_percentile(ms['input_wait'], 50):.1f}",
        "queue_wait_median_ms": f"{_percentile(ms['queue_wait'], 50):.1f}",
        "fusion_time_mean_ms": f"{_mean(ms['fusion_time']):.1f}",
        "fusion_time_max_ms": f"{max(ms['fusion_time'], default=float('nan')):.1f}",
        "fusion_cpu_mean_ms": f"{_mean(ms['fusion_cpu']):.1f}",
        "views_per_frame_mean": f"{_mean([s.views for s in window.samples]):.2f}",
        **extra,
        "dead_cameras": " ".join(dead),
        "invalid_input_cameras": " ".join(invalid),
        "lagging_cameras": " ".join(f"{c}:{lag * 1e3:.0f}ms" for c, lag in lagging.items()),
    }
    for camera, state in states.items():
        values[f"camera.{camera}"] = state
        values[f"input_rate_hz.{camera}"] = f"{window.received[camera] / seconds:.2f}"
        values[f"valid_rate_hz.{camera}"] = f"{window.valid[camera] / seconds:.2f}"
        values[f"rejected_messages.{camera}"] = str(rejected_by_camera[camera])
    for key, count in sorted(counters.items()):
        values[key] = str(count)
    problems = []
    if dead:
        problems.append(f"no keypoints lately from: {' '.join(dead)}")
    if invalid:
        problems.append("only invalid keypoints lately from: " + " ".join(
            f"{c} ({window.rejected[c]} rejected in {seconds:.1f} s)" for c in invalid))
    if not any(window.received.values()):
        return "WARN", "no keypoints received", values
    if problems:
        return "WARN", "; ".join(problems), values
    if lagging:
        return "WARN", f"cameras lagging beyond max_wait: {' '.join(lagging)}", values
    if window.published == 0:
        return "WARN", "receiving keypoints but no frame fused", values
    message = f"fusing {window.published / seconds:.1f} Hz"
    return "OK", message + (f" (never heard: {' '.join(never_heard)})" if never_heard else ""), values
