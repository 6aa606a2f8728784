"""The newest image per camera: replaced images are counted as skipped, cameras are served in turn, nothing grows."""

from __future__ import annotations

import threading

import pytest

from skelsplat_ros.detection.latest import SAME_FRAME_NS, LatestPerCamera, MissedImages


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


def test_images_missed_are_the_gaps_in_each_publishers_sequence_numbers():
    missed = MissedImages(["a", "b"])
    assert [missed.note("a", "p", n) for n in (1, 2, 5, 6, 9)] == [0, 0, 2, 0, 2]
    assert missed.note("a", "q", 7) == 0 and missed.note("a", "q", 8) == 0  # another publisher numbers its own
    assert missed.note("b", "p", 3) == 0  # the first one heard: nothing known before it
    assert missed.note("a", "p", 1) == 0 and missed.note("a", "p", 3) == 1  # the publisher started again
    assert missed.note("a", "p", None) == 0  # a middleware without sequence numbers
    assert missed.missed == {"a": 5, "b": 0}


def test_a_detector_that_falls_behind_drops_whole_frames_not_one_camera_of_each():
    """One detection at a time, three cameras, frames 1 and 2 arriving while frame 1's first image is detected.
    Before, each camera kept only its newest image: frame 1 got one camera, frame 2 the other two, and the fusion
    node, which needs every camera of one instant, got no whole frame. Now frame 1's other images are held."""
    slots = LatestPerCamera(["a", "b", "c"])
    for camera in "abc":
        slots.put(camera, f"{camera}1", 1_000)
    assert slots.take(0) == ("a", "a1")
    for camera in "abc":
        assert slots.put(camera, f"{camera}2", 2_000 + SAME_FRAME_NS) is False  # b1, c1 are held, not skipped
    slots.done("a")
    taken = []
    while (item := slots.take(0)) is not None:
        taken.append(item[1])
        slots.done(item[0])
    assert taken[:2] == ["b1", "c1"] and sorted(taken[2:]) == ["a2", "b2", "c2"]
    assert slots.skipped == {"a": 0, "b": 0, "c": 0}


def test_only_the_frame_being_detected_is_held():
    t = 1_700_000_000 * 10**9
    slots = LatestPerCamera(["a", "b"])
    slots.put("a", "a1", t)
    slots.put("b", "b1", t)
    assert slots.take(0) == ("a", "a1")
    slots.put("b", "b2", t + 2 * SAME_FRAME_NS)  # b1 held
    assert slots.put("b", "b3", t + 4 * SAME_FRAME_NS) is True  # b2 is not frame 1's: skipped
    assert slots.take(0) == ("b", "b1")
    slots.done("a")
    slots.done("b")
    assert slots.take(0) == ("b", "b3") and slots.skipped == {"a": 0, "b": 1}
    slots.done("b")
    slots.put("a", "a4", t - 60 * 10**9)  # stamps went back (a bag replayed from its start): detection follows
    assert slots.take(0) == ("a", "a4")
    slots.put("b", "b4", t - 60 * 10**9)
    slots.put("b", "b5", t - 59 * 10**9)
    assert slots.take(0) == ("b", "b4")  # held: a4's frame is the one being detected now
    assert slots.take(0) is None  # b5 waits for b
