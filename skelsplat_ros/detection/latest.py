"""The newest image per camera, waiting for a detector that is slower than the cameras (thread-safe, no ROS).

Each camera has one slot: an image that arrives while the camera's previous one still waits replaces it, and the
replaced one is counted as skipped, so the queue never grows and the detector always works on fresh images. The
detector takes the slot that has waited longest, so that every camera is served in turn.

Skipping keeps frames whole: the fusion node needs every camera's keypoints of one capture instant, so a detector
that falls behind must drop whole frames, not a different camera's image of each. Once one camera's image of a
frame has been taken, that frame's images of the other cameras are held when newer ones arrive (one held image per
camera, besides its slot) and taken first. Images whose stamps differ by at most ``SAME_FRAME_NS`` are one frame
(the fusion node's ``sync_slop`` default).

:class:`MissedImages` counts what never reached the slots: images a publisher sent (their publication sequence
numbers) that the subscription did not deliver, lost in transport or replaced in the subscription's own queue.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Generic, NamedTuple, TypeVar

__all__ = ["LatestPerCamera", "MissedImages", "SAME_FRAME_NS"]

Item = TypeVar("Item")

SAME_FRAME_NS = 10_000_000
"""Images of different cameras whose stamps differ by at most this (ns) belong to one frame."""
CLOCK_JUMP_NS = 1_000_000_000
"""A frame this much older than the one being detected starts again from it (a bag replayed from its start)."""


class _Waiting(NamedTuple, Generic[Item]):
    since: float  # time.monotonic() of the camera's first waiting image: its place in line
    stamp: int | None  # capture stamp (ns); None = unknown, never held
    item: Item


class LatestPerCamera(Generic[Item]):
    """One waiting item per camera, and one held for the frame being detected (see the module docstring)."""

    def __init__(self, cameras: list[str]) -> None:
        self._slots: dict[str, _Waiting[Item]] = {}
        self._held: dict[str, _Waiting[Item]] = {}
        self._frame: int | None = None  # stamp of the newest frame whose detection has begun
        self._cameras = set(cameras)
        self._busy: set[str] = set()
        self._ready = threading.Condition()
        self._closed = False
        self.skipped: Counter[str] = Counter(dict.fromkeys(cameras, 0))

    def put(self, camera: str, item: Item, stamp: int | None = None) -> bool:
        """Keep ``item`` (captured at ``stamp``, ns) as ``camera``'s newest; True when it replaced one still waiting
        that is dropped (counted as skipped); one of the frame being detected is held instead."""
        if camera not in self._cameras:
            raise KeyError(f"unknown camera {camera!r}")
        with self._ready:
            previous = self._slots.get(camera)
            skipped = previous is not None
            if skipped and camera not in self._held and self._in_frame(previous.stamp):
                self._held[camera] = previous
                skipped = False
            elif skipped:
                self.skipped[camera] += 1
            # A replacement keeps the slot's place in line: a busy camera must not push itself to the back.
            since = previous.since if previous is not None else time.monotonic()
            self._slots[camera] = _Waiting(since, stamp, item)
            self._ready.notify()
            return skipped

    def take(self, timeout: float | None = None) -> tuple[str, Item] | None:
        """The next item of a camera that is not busy, or None after ``timeout`` seconds or once closed: the images
        of the frame being detected first (held ones, then waiting ones), else the one that has waited longest. The
        camera is busy until :meth:`done`."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._free() or self._closed, timeout):
                return None
            if self._closed:
                return None
            held = [c for c in self._held if c not in self._busy]
            if held:
                camera = min(held, key=lambda c: self._held[c].since)
                taken = self._held.pop(camera)
            else:
                free = self._free()
                camera = min(free, key=lambda c: (not self._in_frame(self._slots[c].stamp), self._slots[c].since))
                taken = self._slots.pop(camera)
                if taken.stamp is not None and (self._frame is None or taken.stamp > self._frame + SAME_FRAME_NS
                                                or taken.stamp < self._frame - CLOCK_JUMP_NS):
                    self._frame = taken.stamp
            self._busy.add(camera)
            return camera, taken.item

    def done(self, camera: str) -> None:
        """``camera``'s item has been dealt with: its next one may be taken."""
        with self._ready:
            self._busy.discard(camera)
            self._ready.notify_all()

    def _in_frame(self, stamp: int | None) -> bool:
        return stamp is not None and self._frame is not None and abs(stamp - self._frame) <= SAME_FRAME_NS

    def _free(self) -> list[str]:
        return [c for c in {**self._slots, **self._held} if c not in self._busy]

    @property
    def waiting(self) -> int:
        with self._ready:
            return len(self._slots) + len(self._held)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every waiting ``take`` (it returns None) and refuse to block again."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class MissedImages:
    """Images sent to a camera's topic that never arrived, per camera, from the publication sequence numbers of
    those that did (one count per publisher: each numbers its own samples 1, 2, ...).

    A gap is an image the publisher sent that the subscriber never got: lost in transport, or replaced in the
    subscription's queue (it keeps the newest) before the node took it. A number at or below the last one seen (a
    publisher started again) only restarts the count. Not thread-safe: call it from one thread (the executor's).
    """

    def __init__(self, cameras: list[str]) -> None:
        self._last: dict[tuple[str, object], int] = {}
        self.missed: Counter[str] = Counter(dict.fromkeys(cameras, 0))

    def note(self, camera: str, publisher: object, sequence: int | None) -> int:
        """Record the arrival of ``publisher``'s image number ``sequence`` on ``camera`` (``None``: the middleware
        does not number its samples, nothing is counted); returns how many of its images were missed before it."""
        if sequence is None:
            return 0
        key = (camera, publisher)
        last = self._last.get(key)
        self._last[key] = sequence
        if last is None or sequence <= last:
            return 0
        gap = sequence - last - 1
        self.missed[camera] += gap
        return gap
