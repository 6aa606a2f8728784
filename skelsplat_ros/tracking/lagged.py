"""Fixed-lag multi-person output: the tracker's people published ``lag`` seconds late, each estimated by their own
fixed-lag smoother (``fusion/fixed_lag.py``) from the frames up to ``lag`` after it.

:class:`LaggedTracker` steps a fit-only :class:`~.tracker.MultiPersonTracker` (association, refits and life cycle as
live) and feeds every refit to its track's :class:`~skelsplat_ros.fusion.fixed_lag.LagSmoother`. A frame is output
once a frame stamped ``lag`` after it has been stepped, with every track refitted in it that is confirmed by then: a
person confirmed within the look-ahead is published from their first frame (the tracker's decision uses the
look-ahead too). A track whose state is mirrored starts a new smoother (its pending frames are read out by the old
one, in the labels they were fitted with).

What a frame out does not need (each smoother's bookkeeping of it, the bone priors of its next read-out) is left for
:meth:`LaggedTracker.settle`, which a caller that publishes runs after publishing (the node): the frame's latency is
the tracker's step and the read-out alone. The next step does it first otherwise; the outputs are the same.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..fusion.config import FusionConfig
from ..fusion.fixed_lag import LAG_TOLERANCE, LagSmoother, check_lag, fit_information, read_out, settle
from ..fusion.streaming import FrameFit
from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton
from .tracker import MultiPersonTracker, PersonEstimate, TrackerConfig, TrackerStep


@dataclass
class LaggedFrame:
    """One output frame: its capture ``stamp`` (s) and the confirmed people estimated at it."""

    stamp: float
    people: list[PersonEstimate]


class LaggedTracker:
    """:class:`~.tracker.MultiPersonTracker` with fixed-lag output (module docstring).

    Args:
        rig, skeleton, fusion, config: as :class:`~.tracker.MultiPersonTracker` (``fusion`` with the fixed-lag
            smoother: :func:`~skelsplat_ros.fusion.fixed_lag.uses_smoother`).
        lag: look-ahead in seconds (0: each frame at once, by the smoother's causal filter).
    """

    def __init__(self, rig: CameraRig, skeleton: Skeleton, fusion: FusionConfig,
                 config: TrackerConfig = TrackerConfig(), lag: float = 0.0):
        self.lag = check_lag(fusion, lag)
        self.skeleton, self.fusion = skeleton, fusion
        self.tracker = MultiPersonTracker(rig, skeleton, fusion, config, fit_only=True, look_ahead=self.lag > 0)
        self._smoothers: dict[int, LagSmoother] = {}  # live tracks'
        self._draining: list[LagSmoother] = []  # of mirrored or ended tracks, until their pending frames are out
        self._frames: deque[tuple[float, list[tuple[int, LagSmoother, FrameFit, np.ndarray]]]] = deque()
        self._confirmed: set[int] = set()

    @property
    def rig(self) -> CameraRig:
        return self.tracker.rig

    def step(self, detections: list[np.ndarray], stamp: float,
             rig: CameraRig | None = None) -> tuple[TrackerStep, list[LaggedFrame]]:
        """Track one frame as :meth:`MultiPersonTracker.step` and return its step with the frames now due, oldest
        first. A stamp that does not follow the last one first outputs every pending frame (the tracker then ends
        every track)."""
        self.settle()
        out: list[LaggedFrame] = []
        if self._frames and not stamp > self._frames[-1][0]:
            out = self.flush()
            self._smoothers.clear()
        step = self.tracker.step(detections, stamp, rig)
        self._confirmed.update(person.track_id for person in step.people)
        for track_id in step.mirrored + step.ended:
            if track_id in self._smoothers:
                self._draining.append(self._smoothers.pop(track_id))
        entries = []
        information = fit_information(self.fusion, [fit for fit, _ in step.fits.values()]) if step.fits else None
        for k, (track_id, (fit, views)) in enumerate(step.fits.items()):
            smoother = self._smoothers.get(track_id)
            if smoother is None:
                smoother = self._smoothers[track_id] = LagSmoother(self.skeleton, self.fusion, self.lag)
            smoother.add(fit, information[k])
            if track_id in self._confirmed and smoother.pending[0].stamp <= float(stamp) - self.lag + LAG_TOLERANCE:
                smoother.prefetch(smoother.pending[0].stamp)  # its frame out in this step
            entries.append((track_id, smoother, fit, views))
        self._frames.append((float(stamp), entries))
        return step, out + self._due(float(stamp))

    def settle(self) -> None:
        """The work of the frames last output that they did not need (module docstring): call it once they are
        published."""
        settle(self.fusion, list(self._smoothers.values()) + self._draining)

    def flush(self) -> list[LaggedFrame]:
        """Every pending frame, with the look-ahead there is (the end of a recording)."""
        return self._due(np.inf)

    def _due(self, until: float) -> list[LaggedFrame]:
        for smoother in list(self._smoothers.values()) + self._draining:
            smoother.due(until)  # what read_out's gap rule looks ahead at: the fits not yet output
        self._draining = [s for s in self._draining if s.pending]
        # A tentative track the tracker dropped says nothing: its smoother goes once it could be alive no more.
        forgotten = until - self.lag - self.tracker.config.delete_after
        for track_id in [k for k, s in self._smoothers.items() if not s.pending and s.newest.stamp < forgotten]:
            del self._smoothers[track_id]
        frames = []
        while self._frames and self._frames[0][0] <= until - self.lag + LAG_TOLERANCE:
            stamp, entries = self._frames.popleft()
            kept = [(track_id, smoother, fit, views) for track_id, smoother, fit, views in entries
                    if track_id in self._confirmed]
            results = read_out(self.skeleton, self.fusion, [(smoother, fit) for _, smoother, fit, _ in kept])
            people = [PersonEstimate(track_id, result, views)
                      for (track_id, _, _, views), result in zip(kept, results) if np.isfinite(result.joints).any()]
            frames.append(LaggedFrame(stamp, people))
        return frames
