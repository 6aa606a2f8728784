"""Partial-view synchronizer: groups per-camera messages by capture stamp and tolerates missing cameras.

Why our own: ``message_filters.ApproximateTimeSynchronizer`` emits nothing while any one input is silent, so
one dead camera stalls the whole fusion (ros2/message_filters #63). Here a group of messages whose stamps lie
within ``slop`` of the group's first message is emitted

- as soon as every *live* camera is in (a camera not heard from for ``dead_after`` seconds is not waited for, so
  a dead camera costs no latency once it is known dead; a camera that comes back is waited for again), or
- once ``max_wait`` seconds (of the ``now`` clock) have passed since the group's first arrival, if it has at least
  ``min_views`` cameras; otherwise it is dropped (``insufficient_views``).

Frames come out in stamp order: when a group is emitted, every older pending group is resolved first (emitted
partial, or dropped). Two clocks are involved, on purpose: stamps (capture time, ROS time) decide grouping and
order; ``now`` (a monotonic clock in the node) decides waiting, so a bag played faster or slower still waits
``max_wait`` of real time.

Pure Python, no ROS import; the node feeds it from its subscription callbacks and a timer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["DROP_REASONS", "PartialViewSynchronizer", "SyncedFrame"]

T = TypeVar("T")

DROP_REASONS = (
    "late",  # stamp at or before the last resolved frame
    "duplicate",  # second message of one camera in one group
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


class PartialViewSynchronizer(Generic[T]):
    """Approximate-time synchronizer that accepts partial view sets.

    Args:
        cameras: camera names (inputs).
        slop: a message joins a pending group whose stamp is within ``slop`` seconds of its own (the nearest one).
        max_wait: seconds (``now`` clock) a group waits for missing cameras after its first message arrived.
        min_views: a group resolved with fewer cameras is dropped as ``insufficient_views``.
        max_pending: at most this many groups wait at once; beyond, the oldest is dropped (``overflow``).
        dead_after: a camera silent for this long (``now`` clock) is not waited for; default
            ``max(1.0, 5 * max_wait)``. Never-heard cameras count as alive until ``dead_after`` after the first call.
        jump_threshold: a stamp more than this many seconds before the newest stamp seen is a backwards clock jump
            (bag loop, clock reset) rather than a late message ...
        jump_confirm: ... once that many distinct cameras report such stamps, agreeing with each other within
            ``jump_threshold`` (default ``min(min_views, cameras)``), so that one camera with a wrong clock cannot
            wipe the state again and again. These messages are held (``max(max_wait, 0.5 s)``) until confirmed,
            then replayed into the cleared state; unconfirmed they count as ``late``.
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
        self.cameras = list(cameras)
        self.slop = float(slop)
        self.max_wait = float(max_wait)
        self.min_views = int(min_views)
        self.max_pending = int(max_pending)
        self.dead_after = float(dead_after) if dead_after is not None else max(1.0, 5.0 * self.max_wait)
        self.jump_threshold = float(jump_threshold)
        self.jump_confirm = int(jump_confirm) if jump_confirm is not None else min(self.min_views, len(cameras))
        self.drops: dict[str, int] = {reason: 0 for reason in DROP_REASONS}
        self.emitted = 0
        self.emitted_partial = 0
        self._last_seen: dict[str, float] = {}
        self._started: float | None = None
        self.reset()

    # --- state ---------------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget pending groups and the stamp history (counters and camera liveness are kept)."""
        self._pending: list[_Group] = []  # sorted by stamp
        self._floor: float | None = None  # stamp of the last resolved group (emitted or dropped)
        self._newest: float | None = None  # newest stamp accepted
        self._jump_evidence: dict[str, tuple[float, Any, float]] = {}  # camera -> (stamp, payload, now)

    @property
    def pending(self) -> int:
        """Number of groups waiting."""
        return len(self._pending)

    def alive(self, now: float) -> list[str]:
        """Cameras heard from within ``dead_after`` (never-heard ones count as alive during start-up)."""
        out = []
        for camera in self.cameras:
            seen = self._last_seen.get(camera, self._started)
            if seen is None or now - seen <= self.dead_after:
                out.append(camera)
        return out

    def last_seen(self, camera: str) -> float | None:
        return self._last_seen.get(camera)

    # --- input ---------------------------------------------------------------------------------------------------

    def add(self, camera: str, stamp: float, payload: T, now: float) -> list[SyncedFrame[T]]:
        """Add one message; returns the frames that became ready (in stamp order), maybe none."""
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
            self._jump_evidence[camera] = (stamp, payload, now)
            # A real jump moves every camera to the same new time; stragglers with other old stamps do not count.
            agreeing = {c: e for c, e in self._jump_evidence.items() if abs(e[0] - stamp) <= self.jump_threshold}
            if len(agreeing) < self.jump_confirm:
                return self.poll(now)
            # Confirmed: start over from the held messages (the newest state is meaningless now).
            self.drops["clock_jump"] += 1
            self.drops["late"] += len(self._jump_evidence) - len(agreeing)
            held = sorted(agreeing.items(), key=lambda item: item[1][0])
            self.reset()
            for cam, (s, p, arrived) in held:
                out += self._insert(cam, s, p, arrived, now)
            return out + self.poll(now)
        return self._insert(camera, stamp, payload, now, now) + self.poll(now)

    def poll(self, now: float) -> list[SyncedFrame[T]]:
        """Resolve groups that timed out (``max_wait``) or are complete for the live cameras; call it periodically."""
        if self._started is None:
            self._started = now
        self._expire_jump_evidence(now)
        out: list[SyncedFrame[T]] = []
        alive = set(self.alive(now))
        # The newest group that is ready decides: it and everything older go out (order is kept).
        ready_index = -1
        for index, group in enumerate(self._pending):
            timed_out = now - group.first_arrival >= self.max_wait
            complete_for_live = alive.issubset(group.views) and len(group.views) >= 1
            if timed_out or complete_for_live:
                ready_index = index
        if ready_index >= 0:
            out += self._resolve_through(ready_index, now)
        return out

    # --- internals -----------------------------------------------------------------------------------------------

    def _insert(self, camera: str, stamp: float, payload: T, arrived: float, now: float) -> list[SyncedFrame[T]]:
        nearest: _Group | None = None
        for group in self._pending:
            distance = abs(group.stamp - stamp)
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
                return []
        self._newest = stamp if self._newest is None else max(self._newest, stamp)
        if nearest is not None:
            if camera in nearest.views:
                self.drops["duplicate"] += 1
                return []
            nearest.views[camera] = payload
            nearest.stamps[camera] = stamp
            if len(nearest.views) == len(self.cameras):
                return self._resolve_through(self._pending.index(nearest), now)
            return []
        group = _Group(stamp=stamp, first_arrival=arrived, views={camera: payload}, stamps={camera: stamp})
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
            self._floor = group.stamp if self._floor is None else max(self._floor, group.stamp)
            if len(group.views) < self.min_views:
                self.drops["insufficient_views"] += 1
                continue
            complete = len(group.views) == len(self.cameras)
            self.emitted += 1
            self.emitted_partial += not complete
            out.append(SyncedFrame(group.stamp, group.views, group.stamps, complete, group.first_arrival, now))
        return out

    def _expire_jump_evidence(self, now: float) -> None:
        """Unconfirmed backwards stamps held longer than ``max(max_wait, 0.5 s)`` were just late messages."""
        window = max(self.max_wait, 0.5)
        for camera in [c for c, (_, _, arrived) in self._jump_evidence.items() if now - arrived > window]:
            del self._jump_evidence[camera]
            self.drops["late"] += 1
