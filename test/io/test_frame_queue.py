"""The hand-off to the fusion thread (io/frame_queue.py): bounded, newest frames win, an idle consumer's claim, and
the producer standing aside while the consumer fuses what it claimed."""

from __future__ import annotations

import contextlib
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
    _wait_idle(queue)
    # A burst of two while it waits: one is its own already, the other waits behind it; nothing dropped.
    assert queue.put([1, 2]) == 0
    deadline = time.monotonic() + 5.0
    while got != [1, 2] and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.close()
    thread.join(timeout=5.0)
    assert got == [1, 2] and not thread.is_alive()
    assert queue.get() is None


def _wait_idle(queue: FrameQueue) -> None:
    deadline = time.monotonic() + 5.0
    while not queue.idle and time.monotonic() < deadline:
        time.sleep(0.001)
    assert queue.idle


@contextlib.contextmanager
def _idle_consumer(release: threading.Event):
    """A queue of size 1 whose consumer waits idle for frames and holds each one it takes until ``release`` is set,
    then releases the producer; yields the queue and the frames fused."""
    queue: FrameQueue[int] = FrameQueue(1)
    fused: list[int] = []

    def consume() -> None:
        while (frame := queue.get(poll=0.05)) is not None:
            release.wait(timeout=5.0)
            fused.append(frame)
            queue.release()

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        _wait_idle(queue)
        yield queue, fused
    finally:
        queue.close()
        release.set()
        thread.join(timeout=5.0)
    assert not thread.is_alive()


def test_the_producer_stands_aside_until_the_consumer_releases_a_frame_it_claimed_idle():
    release = threading.Event()
    with _idle_consumer(release) as (queue, fused):
        queue.put([1])
        threading.Timer(0.2, release.set).start()
        started = time.monotonic()
        assert queue.stand_aside(timeout=5.0)
        assert time.monotonic() - started >= 0.15 and fused == [1]  # it waited for the release, not for nothing
        # Released: standing aside again returns at once.
        started = time.monotonic()
        assert queue.stand_aside(timeout=5.0) and time.monotonic() - started < 0.1


def test_standing_aside_is_bounded_and_closing_ends_it():
    with _idle_consumer(threading.Event()) as (queue, _):
        queue.put([1])
        started = time.monotonic()
        assert not queue.stand_aside(timeout=0.1)  # the consumer holds it: the bound returns the producer
        assert 0.08 <= time.monotonic() - started < 2.0
        threading.Timer(0.1, queue.close).start()
        assert queue.stand_aside(timeout=5.0)  # closed: nobody will release it


def test_a_frame_put_while_the_consumer_is_busy_claims_nothing():
    queue: FrameQueue[int] = FrameQueue(2)
    assert not queue.idle
    queue.put([1])  # no consumer waiting: nothing claimed
    started = time.monotonic()
    assert queue.stand_aside(timeout=5.0) and time.monotonic() - started < 0.1
    queue.release()  # harmless without a claim
    assert queue.get() == 1
