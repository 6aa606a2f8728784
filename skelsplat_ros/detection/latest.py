"""The newest image per camera, waiting for a detector that is slower than the cameras (thread-safe, no ROS).

Each camera has one slot: an image that arrives while the camera's previous one still waits replaces it, and the
replaced one is counted as skipped, so the queue never grows and the detector always works on fresh images. The
detector takes the slot that has waited longest, so that every camera is served in turn.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Generic, TypeVar

__all__ = ["LatestPerCamera"]

Item = TypeVar("Item")


class LatestPerCamera(Generic[Item]):
    """One waiting item per camera (see the module docstring)."""

    def __init__(self, cameras: list[str]) -> None:
        self._slots: dict[str, tuple[float, Item]] = {}
        self._cameras = set(cameras)
        self._busy: set[str] = set()
        self._ready = threading.Condition()
        self._closed = False
        self.skipped: Counter[str] = Counter(dict.fromkeys(cameras, 0))

    def put(self, camera: str, item: Item) -> bool:
        """Keep ``item`` as ``camera``'s newest; True when it replaced one still waiting (counted as skipped)."""
        if camera not in self._cameras:
            raise KeyError(f"unknown camera {camera!r}")
        with self._ready:
            replaced = camera in self._slots
            if replaced:
                self.skipped[camera] += 1
            # A replacement keeps the slot's place in line: a busy camera must not push itself to the back.
            since = self._slots[camera][0] if replaced else time.monotonic()
            self._slots[camera] = (since, item)
            self._ready.notify()
            return replaced

    def take(self, timeout: float | None = None) -> tuple[str, Item] | None:
        """The item of the camera (not busy) that has waited longest, or None after ``timeout`` seconds or once
        closed. The camera is busy until :meth:`done`."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._free() or self._closed, timeout):
                return None
            if self._closed:
                return None
            camera = min(self._free(), key=lambda c: self._slots[c][0])
            self._busy.add(camera)
            return camera, self._slots.pop(camera)[1]

    def done(self, camera: str) -> None:
        """``camera``'s item has been dealt with: its next one may be taken."""
        with self._ready:
            self._busy.discard(camera)
            self._ready.notify_all()

    def _free(self) -> list[str]:
        return [c for c in self._slots if c not in self._busy]

    @property
    def waiting(self) -> int:
        with self._ready:
            return len(self._slots)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every waiting ``take`` (it returns None) and refuse to block again."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
