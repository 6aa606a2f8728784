"""The hand-off to the fusion thread (io/frame_queue.py): bounded, newest frames win, an idle consumer's claim."""

from __future__ import annotations

import threading
import time

import pytest

from skelsplat_ros.io.frame_queue import FrameQueue


def test_the_oldest_frames_are_dropped_when_full():
    queue: FrameQueue[int] = FrameQueue(2)
    assert queue.put([1, 2, 3, 4]) == 2 and len(queue) == 2
    assert [queue.get(), queue.get()] == [3, 4]
    with pytest.raises(ValueError, match="at least one frame"):
        FrameQueue(0)


def test_an_idle_consumer_has_a_claim_on_one_more_frame_and_close_wakes_it():
    queue: FrameQueue[int] = FrameQueue(1)
    got: list[int | None] = []

    def consume() -> None:
        while (frame := queue.get(poll=0.05)) is not None:
            got.append(frame)
            time.sleep(0.2)  # fusing

    thread = threading.Thread(target=consume)
    thread.start()
    deadline = time.monotonic() + 5.0
    while not queue.idle and time.monotonic() < deadline:
        time.sleep(0.001)
    assert queue.idle
    # A burst of two while it waits: one is its own already, the other waits behind it; nothing dropped.
    assert queue.put([1, 2]) == 0
    deadline = time.monotonic() + 5.0
    while got != [1, 2] and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.close()
    thread.join(timeout=5.0)
    assert got == [1, 2] and not thread.is_alive()
    assert queue.get() is None
