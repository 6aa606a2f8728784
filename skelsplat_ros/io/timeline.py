"""Where the frames of a recording lie in time.

Everything downstream of the input reads a frame's index as its time: frame ``f`` is ``f / fps`` seconds in. The
offline smoother's differences, gap interpolation, the tracker's life times and the time column of a TRC or CSV all
do. A recording must therefore keep the frames it lacks as missing frames (NaN), never close the gap up: frames on
either side of a one-second gap fused as neighbours are smoothed across a second of motion. (JSON folders and NPZ
``frame_numbers`` hold frame numbers, which say where the gaps are; a ROS bag holds capture stamps, placed here.)

:func:`frame_timeline` puts the capture stamps of a recording's frames on the camera's frame clock:

- the frame period is the median step between consecutive stamps (most steps are one frame);
- each step counts ``round(step / period)`` frames, at least one, so stamp jitter of up to half a period does not
  move a frame, and a clock that drifts over the recording does not either (each step is rounded on its own);
- the frames in between are missing: their stamps are interpolated between their neighbours' (for the output),
  while a frame that is there keeps its own stamp.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

__all__ = ["NOMINAL_PERIOD_NS", "Timeline", "frame_timeline", "spread_result"]

Result = TypeVar("Result")

NOMINAL_PERIOD_NS = 1e9 / 30.0
"""The frame period of a recording with fewer than two frames (nothing to measure it on)."""


@dataclass(frozen=True)
class Timeline:
    """A recording's frames on its frame clock.

    Attributes:
        slots: ``[N]`` timeline frame of each frame of the recording (strictly increasing, the first 0).
        stamps_ns: ``[F]`` capture stamp of every timeline frame (ns): a frame's own stamp where it is there,
            interpolated between its neighbours' where it is missing. ``F = slots[-1] + 1``.
        period_ns: the mean frame period along the recording (ns).
    """

    slots: np.ndarray
    stamps_ns: np.ndarray
    period_ns: float

    @property
    def num_frames(self) -> int:
        return int(self.stamps_ns.size)

    @property
    def fps(self) -> float:
        return 1e9 / self.period_ns

    @property
    def present(self) -> np.ndarray:
        """``[F]`` bool: the recording has this frame."""
        mask = np.zeros(self.num_frames, dtype=bool)
        mask[self.slots] = True
        return mask

    @property
    def missing(self) -> int:
        """Timeline frames the recording lacks."""
        return self.num_frames - int(self.slots.size)

    def spread(self, values: np.ndarray, fill: float, axis: int = 0) -> np.ndarray:
        """``values`` with ``N`` (recording frames) along ``axis`` -> ``F`` (timeline frames), ``fill`` where
        missing."""
        values = np.asarray(values)
        shape = list(values.shape)
        shape[axis] = self.num_frames
        out = np.full(shape, fill, dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
        index = [slice(None)] * values.ndim
        index[axis] = self.slots
        out[tuple(index)] = values
        return out


def frame_timeline(stamps_ns: np.ndarray) -> Timeline:
    """Place capture stamps ``[N]`` (ns, strictly increasing) on the frame clock (module docstring).

    Raises:
        ValueError: stamps that do not increase (a clock that jumped back: the recording holds two timelines).
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
    if stamps.size == 0:
        raise ValueError("a timeline needs at least one frame")
    steps = np.diff(stamps)
    if np.any(steps <= 0):
        at = int(np.argmax(steps <= 0))
        raise ValueError(f"frame stamps must increase; frame {at + 1} is {-steps[at] * 1e-9:.3f} s before frame {at} "
                         "(the clock jumped back: a clock reset or a recording played in a loop)")
    if stamps.size == 1:
        return Timeline(np.zeros(1, dtype=np.int64), stamps, NOMINAL_PERIOD_NS)
    period = float(np.median(steps))
    slots = np.concatenate([[0], np.cumsum(np.maximum(1, np.rint(steps / period)).astype(np.int64))])
    frames = np.arange(slots[-1] + 1)
    # Relative to the first stamp: float64 holds ns exactly only up to 2**53 ns (104 days), and ROS stamps are larger.
    timeline_stamps = stamps[0] + np.rint(np.interp(frames, slots, (stamps - stamps[0]).astype(np.float64))).astype(
        np.int64)
    timeline_stamps[slots] = stamps
    return Timeline(slots, timeline_stamps, float(stamps[-1] - stamps[0]) / float(slots[-1]))


def spread_result(result: Result, timeline: Timeline) -> Result:
    """A fusion result of the recording's frames (``FusionResult`` or ``MultiPersonResult``: per-frame arrays,
    frames first) on the timeline: missing frames have NaN joints and covariances, confidence and views 0."""
    fills = {"joints": np.nan, "confidence": 0.0, "covariance": np.nan, "num_views": 0, "reprojection_error": np.nan}
    return replace(result, **{key: timeline.spread(getattr(result, key), fill)
                              for key, fill in fills.items() if hasattr(result, key)})
