"""The node's self-report (io/health.py), without ROS: each camera's state from what it sent, the status message and
values of a window, and the statistics' window."""

from __future__ import annotations

import collections

from skelsplat_ros.io.health import (
    CAMERA_DEAD,
    CAMERA_INVALID,
    CAMERA_OK,
    FrameSample,
    NodeStatistics,
    camera_states,
    diagnostic_report,
)

CAMS = ["a", "b", "c", "d"]


def test_a_camera_is_dead_only_when_nothing_came_and_invalid_input_when_only_junk_came():
    last_valid = {"a": 9.5, "b": 9.5, "c": 7.0, "d": None}
    last_rejected = {"a": 9.9, "c": 9.8}  # a: junk and valid; c: only junk lately; b: only valid; d: nothing
    states = camera_states(CAMS, now=10.0, timeout=1.0, last_valid=last_valid, last_rejected=last_rejected,
                           started=5.0)
    assert states == {"a": CAMERA_OK, "b": CAMERA_OK, "c": CAMERA_INVALID, "d": CAMERA_DEAD}
    # Junk that stopped too: dead. Valid again: ok, whatever junk comes with it.
    assert camera_states(["c"], 11.5, 1.0, {"c": 7.0}, {"c": 9.8}, 5.0) == {"c": CAMERA_DEAD}
    assert camera_states(["c"], 11.5, 1.0, {"c": 11.0}, {"c": 11.4}, 5.0) == {"c": CAMERA_OK}


def test_cameras_not_heard_yet_are_not_dead_before_input_starts_nor_within_the_timeout_after():
    never = {c: None for c in CAMS}
    assert set(camera_states(CAMS, 100.0, 1.0, never, {}, started=None).values()) == {CAMERA_OK}
    assert set(camera_states(CAMS, 100.5, 1.0, never, {}, started=100.0).values()) == {CAMERA_OK}
    assert set(camera_states(CAMS, 101.5, 1.0, never, {}, started=100.0).values()) == {CAMERA_DEAD}


def _window(stats: NodeStatistics, now: float):
    return stats.take_window(now)


def test_statistics_count_messages_per_camera_and_the_report_names_what_is_wrong():
    stats = NodeStatistics(CAMS, now=0.0)
    stats.start(0.0)
    for k in range(10):
        for camera in ("a", "b"):
            stats.message(camera, 0.1 * k, collections.Counter(accepted=1))
        stats.message("c", 0.1 * k, collections.Counter({"rejected.wrong_skeleton": 1}))
        stats.frame(FrameSample(0.010, 0.004, 0.001, 0.003, 0.002, 2), 0, 0, 0, 1, 0)
    window = _window(stats, 1.0)
    assert window.received == {"a": 10, "b": 10, "c": 10, "d": 0} and window.valid["c"] == 0
    assert window.rejected["c"] == 10 and stats.last_rejected == {"c": 0.9} and stats.published == 10
    states = {"a": CAMERA_OK, "b": CAMERA_OK, "c": CAMERA_INVALID, "d": CAMERA_DEAD}
    counters = dict(stats.counts)
    level, message, values = diagnostic_report(window, states, {}, counters, stats.rejected_by_camera, ["c", "d"],
                                               {"worker_queue": "0"})
    assert level == "WARN"
    assert message == "no keypoints lately from: d; only invalid keypoints lately from: c (10 rejected in 1.0 s)"
    assert values["dead_cameras"] == "d" and values["invalid_input_cameras"] == "c"
    assert values["camera.c"] == "invalid input" and values["rejected_messages.c"] == "10"
    assert values["valid_rate_hz.a"] == "10.00" and values["input_rate_hz.c"] == "10.00"
    assert values["rejected.wrong_skeleton"] == "10" and values["accepted"] == "20" and values["worker_queue"] == "0"
    assert values["latency_median_ms"] == "10.0" and values["views_per_frame_mean"] == "2.00"
    # The next window starts empty; all fine: OK, with the rate.
    stats.message("a", 1.5, collections.Counter(accepted=1))
    stats.frame(FrameSample(0.010, 0.004, 0.001, 0.003, 0.002, 2), 0, 0, 0, 1, 0)
    level, message, _ = diagnostic_report(_window(stats, 2.0), dict.fromkeys(CAMS, CAMERA_OK), {}, {},
                                          stats.rejected_by_camera, [], {})
    assert (level, message) == ("OK", "fusing 1.0 Hz")


def test_the_report_without_input_or_output_and_with_lagging_cameras():
    stats = NodeStatistics(CAMS, now=0.0)
    ok = dict.fromkeys(CAMS, CAMERA_OK)
    assert diagnostic_report(_window(stats, 1.0), ok, {}, {}, stats.rejected_by_camera, CAMS, {})[:2] == (
        "WARN", "no keypoints received")
    stats.message("a", 1.2, collections.Counter(accepted=1))
    assert diagnostic_report(_window(stats, 2.0), ok, {"b": 0.09}, {}, stats.rejected_by_camera, [], {})[:2] == (
        "WARN", "cameras lagging beyond max_wait: b")
    stats.message("a", 2.2, collections.Counter(accepted=1))
    report = diagnostic_report(_window(stats, 3.0), ok, {}, {}, stats.rejected_by_camera, ["d"], {})
    assert report[:2] == ("WARN", "receiving keypoints but no frame fused")
    assert report[2]["latency_median_ms"] == "nan"
