"""The newest image per camera: replaced images are counted as skipped, cameras are served in turn, nothing grows."""

from __future__ import annotations

import threading

import pytest

from skelsplat_ros.detection.latest import LatestPerCamera


def test_a_newer_item_replaces_the_waiting_one_and_counts_a_skip():
    slots = LatestPerCamera(["a", "b"])
    assert slots.put("a", 1) is False
    assert slots.put("a", 2) is True
    assert slots.put("a", 3) is True
    assert slots.take(0) == ("a", 3)
    assert slots.skipped == {"a": 2, "b": 0}
    assert slots.take(0) is None and slots.waiting == 0


def test_the_camera_that_waited_longest_goes_first_even_when_it_keeps_replacing():
    slots = LatestPerCamera(["a", "b", "c"])
    slots.put("b", "b1")
    slots.put("a", "a1")
    slots.put("b", "b2")  # b keeps its place in line
    slots.put("c", "c1")
    assert [slots.take(0) for _ in range(3)] == [("b", "b2"), ("a", "a1"), ("c", "c1")]


def test_take_blocks_until_an_item_arrives_and_close_wakes_it():
    slots = LatestPerCamera(["a"])
    results = []
    waiter = threading.Thread(target=lambda: results.append(slots.take(5.0)))
    waiter.start()
    slots.put("a", "x")
    waiter.join(5.0)
    assert results == [("a", "x")]
    waiter = threading.Thread(target=lambda: results.append(slots.take(5.0)))
    waiter.start()
    slots.close()
    waiter.join(5.0)
    assert results[-1] is None and slots.closed


def test_unknown_camera_is_an_error():
    with pytest.raises(KeyError, match="unknown camera 'z'"):
        LatestPerCamera(["a"]).put("z", 1)


def test_a_busy_camera_is_not_taken_again_until_done():
    slots = LatestPerCamera(["a", "b"])
    slots.put("a", 1)
    assert slots.take(0) == ("a", 1)
    slots.put("a", 2)
    slots.put("b", 3)
    assert slots.take(0) == ("b", 3)  # a waited longer but is still being detected
    assert slots.take(0) is None
    slots.done("a")
    assert slots.take(0) == ("a", 2)
