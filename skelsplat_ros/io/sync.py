"""Partial-view synchronizer: groups per-camera messages by capture stamp and tolerates missing cameras.

Why our own: ``message_filters.ApproximateTimeSynchronizer`` emits nothing while any one input is silent, so
one dead camera stalls the whole fusion (ros2/message_filters #63). Here a group of messages whose stamps lie
within ``slop`` of the group's first message is emitted

- as soon as every *live* camera is in (a camera not heard from for ``dead_after`` seconds is not waited for, so
  a dead camera costs no latency once it is known dead; a camera that comes back is waited for again), or
- once ``max_wait`` seconds (of the ``now`` clock) have passed since the group's first arrival, if it has at least
  ``min_views`` cameras; otherwise it is dropped (``insufficient_views``).

Frames come out in stamp order: when a group is emitted, every older pending group is resolved first (emitted
partial, or dropped). A group that times out short of ``min_views`` is dropped on its own: it neither forces older
groups out nor makes later messages late (one camera with a clock ahead of the others cannot block them).

A camera whose messages keep arriving after their frame went out (``late_limit`` in a row, each later than
``max_wait`` after the frame's first message) is *lagging*: it is no longer waited for, so it stops costing
``max_wait`` on every frame. Its lag keeps being measured on its late messages; once ``late_limit`` in a row would
have made it within ``max_wait``, it is waited for again. :meth:`lagging` reports these cameras and their lag.

When one camera sends two messages for the same stamp, the one of higher ``quality`` (given by the caller, e.g. by
validation) is kept, never simply the first. A second message of the same camera with a *different* stamp is a
frame of its own (a camera faster than ``slop`` implies), not a duplicate. :meth:`slop_warning` says when ``slop``
exceeds half the frame period measured from the stamps (consecutive frames of one camera would then merge). Two clocks are involved, on purpose: stamps (capture time, ROS time) decide grouping and
order; ``now`` (a monotonic clock in the node) decides waiting, so a bag played faster or slower still waits
``max_wait`` of real time.

Pure Python, no ROS import; the node feeds it from its subscription callbacks and a timer.
"""

from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["DROP_REASONS", "PartialViewSynchronizer", "SyncedFrame"]

T = TypeVar("T")

DROP_REASONS = (
    "late",  # stamp at or before the last emitted frame
    "duplicate",  # second message of one camera for one stamp (the one of lower quality is dropped)
    "unknown_camera",  # camera not in the list given at construction
    "invalid_stamp",  # NaN or infinite stamp
    "insufficient_views",  # group resolved with fewer than min_views cameras (counted per group)
    "overflow",  # more than max_pending groups: the oldest one is dropped (counted per group)
    "clock_jump",  # stamps jumped backwards by more than jump_threshold: state cleared (counted per event)
)


@dataclass
class SyncedFrame(Generic[T]):
    """One synchronized set of views.

    Attributes:
        stamp: capture stamp of the group (the stamp of its first message), seconds.
        views: payload by camera name, only for the cameras that are in.
        stamps: stamp by camera name.
        complete: every camera of the synchronizer is in.
        first_arrival: ``now`` when the group's first message arrived.
        emitted_at: ``now`` when it was emitted.
    """

    stamp: float
    views: dict[str, T]
    stamps: dict[str, float]
    complete: bool
    first_arrival: float
    emitted_at: float

    @property
    def num_views(self) -> int:
        return len(self.views)

    @property
    def wait(self) -> float:
        """Seconds the group spent in the synchronizer (``now`` clock)."""
        return self.emitted_at - self.first_arrival


@dataclass
class _Group:
    stamp: float
    first_arrival: float
    views: dict[str, Any] = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)


class PartialViewSynchronizer(Generic[T]):
    """Approximate-time synchronizer that accepts partial view sets.

    Args:
        cameras: camera names (inputs).
        slop: a message joins a pending group whose stamp is within ``slop`` seconds of its own (the nearest one).
        max_wait: seconds (``now`` clock) a group waits for missing cameras after its first message arrived.
        min_views: a group resolved with fewer cameras is dropped as ``insufficient_views``.
        max_pending: at most this many groups wait at once; beyond, the oldest is dropped (``overflow``).
        dead_after: a camera silent for this long (``now`` clock) is not waited for; default
            ``max(1.0, 5 * max_wait)``. Never-heard cameras count as alive until ``dead_after`` after the first
            message.
        jump_threshold: a stamp more than this many seconds before the newest stamp seen is a backwards clock jump
            (bag loop, clock reset) rather than a late message ...
        jump_confirm: ... once that many distinct cameras report such stamps, agreeing with each other within
            ``jump_threshold`` (default ``min(min_views, cameras)``), so that one camera with a wrong clock cannot
            wipe the state again and again. These messages are held (``max(max_wait, 0.5 s)``) until confirmed,
            then replayed into the cleared state; unconfirmed they count as ``late``.
        late_limit: late (or, for a lagging camera, timely) messages in a row that make a camera lagging (or not).
    """

    def __init__(
        self,
        cameras: list[str],
        slop: float,
        max_wait: float,
        min_views: int,
        max_pending: int,
        dead_after: float | None = None,
        jump_threshold: float = 1.0,
        jump_confirm: int | None = None,
        late_limit: int = 5,
    ) -> None:
        if not cameras:
            raise ValueError("the synchronizer needs at least one camera")
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"duplicate camera names: {cameras}")
        if slop < 0 or max_wait < 0:
            raise ValueError("slop and max_wait must be >= 0")
        if not 1 <= min_views <= len(cameras):
            raise ValueError(f"min_views must be in [1, {len(cameras)}], got {min_views}")
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        if jump_threshold <= slop:
            raise ValueError("jump_threshold must be larger than slop")
        if late_limit < 1:
            raise ValueError("late_limit must be >= 1")
        self.cameras = list(cameras)
        self.slop = float(slop)
        self.max_wait = float(max_wait)
        self.min_views = int(min_views)
        self.max_pending = int(max_pending)
        self.dead_after = float(dead_after) if dead_after is not None else max(1.0, 5.0 * self.max_wait)
        self.jump_threshold = float(jump_threshold)
        self.jump_confirm = int(jump_confirm) if jump_confirm is not None else min(self.min_views, len(cameras))
        self.late_limit = int(late_limit)
        self.drops: dict[str, int] = {reason: 0 for reason in DROP_REASONS}
        self.emitted = 0
        self.emitted_partial = 0
        self.replaced = 0  # duplicates that displaced a worse message of the same camera and stamp
        self.lagging_events = 0  # times a camera was found lagging
        self._last_seen: dict[str, float] = {}
        self._started: float | None = None  # ``now`` of the first message: cameras not heard yet count from here
        # Lag of each camera's messages behind the first message of their frame (``now`` clock), for lagging cameras.
        self._lag: dict[str, float] = {}
        self._streak: dict[str, int] = {camera: 0 for camera in self.cameras}
        self._lagging: set[str] = set()
        # Frame period: positive stamp steps of each camera (the latest few).
        self._last_stamp: dict[str, float] = {}
        self._steps: dict[str, collections.deque[float]] = {c: collections.deque(maxlen=32) for c in self.cameras}
        self.reset()

    # --- state ---------------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget pending groups and the stamp history (counters and camera liveness are kept)."""
        self._pending: list[_Group] = []  # sorted by stamp
        self._floor: float | None = None  # stamp of the last emitted group (or of one dropped for overflow)
        self._newest: float | None = None  # newest stamp accepted
        self._jump_evidence: dict[str, tuple[float, Any, float, Any]] = {}  # camera -> (stamp, payload, now, quality)
        # (stamp, first arrival) of the latest emitted groups: how late a late message is.
        self._emitted_recently: collections.deque[tuple[float, float]] = collections.deque(maxlen=64)

    @property
    def pending(self) -> int:
        """Number of groups waiting."""
        return len(self._pending)

    def alive(self, now: float) -> list[str]:
        """Cameras heard from within ``dead_after`` (never-heard ones count as alive until ``dead_after`` after the
        first message of any camera: a synchronizer that waited long for its input to start does not take the
        first frame for one of dead cameras)."""
        out = []
        for camera in self.cameras:
            seen = self._last_seen.get(camera, self._started)
            if seen is None or now - seen <= self.dead_after:
                out.append(camera)
        return out

    def last_seen(self, camera: str) -> float | None:
        return self._last_seen.get(camera)

    def lagging(self) -> dict[str, float]:
        """Cameras not waited for because their messages keep arriving after their frame went out, with their last
        measured lag (seconds after the first message of the frame)."""
        return {camera: self._lag.get(camera, math.nan) for camera in self.cameras if camera in self._lagging}

    def frame_period(self) -> float | None:
        """Shortest of the cameras' median stamp steps (seconds), once a camera has a few; else None."""
        medians = [statistics.median(steps) for steps in self._steps.values() if len(steps) >= 5]
        return min(medians) if medians else None

    def slop_warning(self) -> str | None:
        """A one-line warning when ``slop`` exceeds half the measured frame period, else None."""
        period = self.frame_period()
        if period is None or self.slop <= 0.5 * period:
            return None
        return (f"sync_slop {self.slop * 1e3:.1f} ms is more than half the frame period {period * 1e3:.1f} ms "
                f"(measured from the stamps): consecutive frames may merge; use at most {0.5 * period * 1e3:.1f} ms")

    # --- input ---------------------------------------------------------------------------------------------------

    def add(self, camera: str, stamp: float, payload: T, now: float, quality: Any = 0.0) -> list[SyncedFrame[T]]:
        """Add one message; returns the frames that became ready (in stamp order), maybe none.

        ``quality`` (any comparable value) decides between two messages of one camera for the same stamp: the higher
        one is kept; on a tie, the first.
        """
        if self._started is None:
            self._started = now
        if camera not in self.cameras:
            self.drops["unknown_camera"] += 1
            return []
        if not math.isfinite(stamp):
            self.drops["invalid_stamp"] += 1
            return []
        self._last_seen[camera] = now
        self._expire_jump_evidence(now)
        out: list[SyncedFrame[T]] = []
        if self._newest is not None and stamp < self._newest - self.jump_threshold:
            if camera in self._jump_evidence:
                self.drops["late"] += 1  # superseded by this newer one of the same camera
            self._jump_evidence[camera] = (stamp, payload, now, quality)
            # A real jump moves every camera to the same new time; stragglers with other old stamps do not count.
            agreeing = {c: e for c, e in self._jump_evidence.items() if abs(e[0] - stamp) <= self.jump_threshold}
            if len(agreeing) < self.jump_confirm:
                return self.poll(now)
            # Confirmed: start over from the held messages (the newest state is meaningless now).
            self.drops["clock_jump"] += 1
            self.drops["late"] += len(self._jump_evidence) - len(agreeing)
            held = sorted(agreeing.items(), key=lambda item: item[1][0])
            self.reset()
            for cam, (s, p, arrived, q) in held:
                out += self._insert(cam, s, p, arrived, now, q)
            return out + self.poll(now)
        return self._insert(camera, stamp, payload, now, now, quality) + self.poll(now)

    def poll(self, now: float) -> list[SyncedFrame[T]]:
        """Resolve groups that timed out (``max_wait``) or are complete for the live cameras; call it periodically."""
        self._expire_jump_evidence(now)
        out: list[SyncedFrame[T]] = []
        awaited = set(self.alive(now)) - self._lagging
        # The newest group that is ready to go out decides: it and everything older go out (order is kept). A ready
        # group short of min_views goes alone: it cannot be emitted, so it must not hurry older groups.
        ready_index = -1
        short: list[_Group] = []
        for index, group in enumerate(self._pending):
            timed_out = now - group.first_arrival >= self.max_wait
            complete_for_awaited = awaited.issubset(group.views) and len(group.views) >= 1
            if timed_out or complete_for_awaited:
                if len(group.views) >= self.min_views:
                    ready_index = index
                else:
                    short.append(group)
        if ready_index >= 0:
            out += self._resolve_through(ready_index, now)
        for group in short:
            if group in self._pending:
                self._pending.remove(group)
                self.drops["insufficient_views"] += 1
        return out

    # --- internals -----------------------------------------------------------------------------------------------

    def _insert(self, camera: str, stamp: float, payload: T, arrived: float, now: float,
                quality: Any) -> list[SyncedFrame[T]]:
        # The nearest group within slop that does not hold this camera yet, unless one holds it at this very stamp.
        nearest: _Group | None = None
        for group in self._pending:
            distance = abs(group.stamp - stamp)
            if camera in group.views:
                if group.stamps[camera] == stamp:
                    self._replace_duplicate(group, camera, payload, quality)
                    return []
                continue
            if distance <= self.slop and (nearest is None or distance < abs(nearest.stamp - stamp)):
                nearest = group
        if self._floor is not None:
            # Older than the last resolved frame, or nearer to it than to any pending group: its group is gone.
            behind_floor = stamp <= self._floor
            belongs_to_floor = stamp - self._floor <= self.slop and (
                nearest is None or stamp - self._floor < abs(nearest.stamp - stamp)
            )
            if behind_floor or belongs_to_floor:
                self.drops["late"] += 1
                self._note_late(camera, stamp, now)
                return []
        self._newest = stamp if self._newest is None else max(self._newest, stamp)
        self._note_stamp(camera, stamp)
        if nearest is not None:
            self._note_lag(camera, now - nearest.first_arrival)
            nearest.views[camera] = payload
            nearest.stamps[camera] = stamp
            nearest.quality[camera] = quality
            if len(nearest.views) == len(self.cameras):
                return self._resolve_through(self._pending.index(nearest), now)
            return []
        self._note_lag(camera, 0.0)
        group = _Group(stamp=stamp, first_arrival=arrived, views={camera: payload}, stamps={camera: stamp},
                       quality={camera: quality})
        index = 0
        while index < len(self._pending) and self._pending[index].stamp < stamp:
            index += 1
        self._pending.insert(index, group)
        while len(self._pending) > self.max_pending:
            dropped = self._pending.pop(0)
            self.drops["overflow"] += 1
            self._floor = dropped.stamp if self._floor is None else max(self._floor, dropped.stamp)
        if group in self._pending and len(group.views) == len(self.cameras):  # a one-camera rig
            return self._resolve_through(self._pending.index(group), now)
        return []

    def _resolve_through(self, index: int, now: float) -> list[SyncedFrame[T]]:
        """Emit (or drop, when short of views) the pending groups ``0..index``, oldest first."""
        out: list[SyncedFrame[T]] = []
        resolved, self._pending = self._pending[: index + 1], self._pending[index + 1:]
        for group in resolved:
            if len(group.views) < self.min_views:
                self.drops["insufficient_views"] += 1
                continue
            self._floor = group.stamp if self._floor is None else max(self._floor, group.stamp)
            self._emitted_recently.append((group.stamp, group.first_arrival))
            complete = len(group.views) == len(self.cameras)
            self.emitted += 1
            self.emitted_partial += not complete
            out.append(SyncedFrame(group.stamp, group.views, group.stamps, complete, group.first_arrival, now))
        return out

    def _replace_duplicate(self, group: _Group, camera: str, payload: T, quality: Any) -> None:
        """Two messages of one camera for one stamp: keep the better one (the first on a tie); count the other."""
        self.drops["duplicate"] += 1
        if quality > group.quality[camera]:
            group.views[camera] = payload
            group.quality[camera] = quality
            self.replaced += 1

    def _note_stamp(self, camera: str, stamp: float) -> None:
        previous = self._last_stamp.get(camera)
        if previous is not None and stamp > previous:
            self._steps[camera].append(stamp - previous)
        self._last_stamp[camera] = stamp  # the latest, not the largest: after a clock jump, steps count again

    def _note_late(self, camera: str, stamp: float, now: float) -> None:
        """A late message: how long after its frame's first message did it come (when that frame is known)?"""
        for emitted_stamp, first_arrival in reversed(self._emitted_recently):
            if abs(emitted_stamp - stamp) <= self.slop:
                self._note_lag(camera, now - first_arrival)
                return

    def _note_lag(self, camera: str, lag: float) -> None:
        """Count messages in a row on the other side of ``max_wait``: ``late_limit`` of them flip the camera."""
        late = lag > self.max_wait
        lagging = camera in self._lagging
        if lagging:
            self._lag[camera] = lag
        self._streak[camera] = self._streak[camera] + 1 if late != lagging else 0
        if self._streak[camera] >= self.late_limit:
            self._streak[camera] = 0
            if lagging:
                self._lagging.discard(camera)
            else:
                self._lagging.add(camera)
                self._lag[camera] = lag
                self.lagging_events += 1

    def _expire_jump_evidence(self, now: float) -> None:
        """Unconfirmed backwards stamps held longer than ``max(max_wait, 0.5 s)`` were just late messages."""
        window = max(self.max_wait, 0.5)
        for camera in [c for c, (_, _, arrived, _) in self._jump_evidence.items() if now - arrived > window]:
            del self._jump_evidence[camera]
            self.drops["late"] += 1
