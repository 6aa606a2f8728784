"""The hand-off between a receiving thread and a fusion thread: a bounded queue where the newest frames win.

When fusion is slower than the cameras, queueing every frame would make the latency grow without bound; here the
oldest waiting frame is dropped (and counted by the caller) instead. A consumer that is idle, waiting for its next
frame, has a claim on one more: the next frame put is its own already, not one waiting behind it. Claiming it takes a
few milliseconds (the thread must get the GIL), while a burst of frames may be put at once (a detector's batch, late
keypoints): without the claim the burst's next frame would push it out.

The producer may also stand aside while the consumer fuses a frame it claimed idle (:meth:`FrameQueue.stand_aside`,
until the consumer's :meth:`FrameQueue.release`). Both are Python threads: whatever the producer does meanwhile (a
ROS executor's bookkeeping, some hundred small calls) takes the GIL whenever fusion lets it go for a compiled kernel,
and fusion then waits for it to give it back. Fusing a frame took 0.5-1 ms longer than its CPU time that way (3 people,
BENCHMARKS.md, "Fixed lag"); standing aside, the producer's work comes after the frame is out.

Pure Python (threading); the node's executor thread puts, its fusion thread gets.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

__all__ = ["FrameQueue"]

T = TypeVar("T")


class FrameQueue(Generic[T]):
    """At most ``size`` frames waiting (plus the one an idle consumer has claimed); the oldest are dropped.

    Args:
        size: frames that may wait behind the one being fused (>= 1).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the frame queue needs room for at least one frame, got {size}")
        self.size = int(size)
        self._frames: collections.deque[T] = collections.deque()
        self._cv = threading.Condition()
        self._idle = False
        self._claimed = False  # the consumer fuses a frame it claimed idle, and has not released the producer yet
        self._closed = False

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def idle(self) -> bool:
        """Whether the consumer waits for a frame (nothing queued, nothing being fused)."""
        return self._idle

    def put(self, frames: list[T]) -> int:
        """Queue ``frames`` (oldest first); returns how many waiting frames were dropped to make room."""
        if not frames:
            return 0
        dropped = 0
        with self._cv:
            self._claimed = self._claimed or self._idle
            for frame in frames:
                if len(self._frames) >= self.size + self._idle:
                    self._frames.popleft()
                    dropped += 1
                self._frames.append(frame)
            self._cv.notify_all()  # the consumer; a producer standing aside re-checks and waits on
        return dropped

    def get(self, poll: float = 0.5) -> T | None:
        """The oldest waiting frame, waiting for one as long as it takes; ``None`` once :meth:`close` was called.

        ``poll``: seconds between checks of the closed flag while waiting (a notify wakes it at once anyway).
        """
        with self._cv:
            while not self._frames and not self._closed:
                self._idle = True
                self._cv.wait(timeout=poll)
            self._idle = False
            if self._closed:
                return None
            return self._frames.popleft()

    def stand_aside(self, timeout: float) -> bool:
        """In the producer: wait until the consumer releases it (:meth:`release`), at most ``timeout`` seconds, if the
        consumer claimed the last frame put while idle; else return at once. False when ``timeout`` passed."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._claimed or self._closed, timeout=timeout)

    def release(self) -> None:
        """In the consumer: the producer need not stand aside any more (the frame is out, or the consumer is about to
        wait for something the producer brings). Harmless when nothing was claimed."""
        with self._cv:
            if self._claimed:
                self._claimed = False
                self._cv.notify_all()

    def close(self) -> None:
        """Wake the consumer and make every later :meth:`get` return ``None`` (frames still queued are dropped)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
