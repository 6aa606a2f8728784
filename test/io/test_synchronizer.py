"""PartialViewSynchronizer on known message sequences (pure Python, no ROS)."""

from __future__ import annotations

import math
import random

import pytest

from skelsplat_ros.io.sync import DROP_REASONS, PartialViewSynchronizer

CAMS = ["a", "b", "c", "d"]
PERIOD = 1.0 / 30.0


def make(**overrides) -> PartialViewSynchronizer:
    kwargs = dict(cameras=CAMS, slop=0.010, max_wait=0.050, min_views=2, max_pending=8)
    kwargs.update(overrides)
    return PartialViewSynchronizer(**kwargs)


def feed(sync: PartialViewSynchronizer, events: list[tuple[float, str, float]]) -> list:
    """Events (now, camera, stamp), with a poll every millisecond in between; returns all frames."""
    out = []
    now = events[0][0] if events else 0.0
    for event_now, camera, stamp in sorted(events, key=lambda e: e[0]):
        while now + 1e-3 < event_now:
            now += 1e-3
            out += sync.poll(now)
        now = event_now
        out += sync.add(camera, stamp, (camera, stamp), now)
    for _ in range(200):
        now += 1e-3
        out += sync.poll(now)
    return out


def test_complete_sets_emitted_at_once_in_stamp_order():
    sync = make()
    frames = []
    for k in range(5):
        stamp = k * PERIOD
        for i, cam in enumerate(CAMS):
            frames += sync.add(cam, stamp, cam, now=stamp + 0.002 + 0.001 * i)
    assert [f.stamp for f in frames] == pytest.approx([k * PERIOD for k in range(5)])
    assert all(f.complete and f.num_views == 4 and f.wait == pytest.approx(0.003) for f in frames)
    assert frames[0].views == {c: c for c in CAMS}
    assert sync.pending == 0 and sum(sync.drops.values()) == 0 and sync.emitted == 5


def test_jitter_within_slop_groups_together():
    rng = random.Random(1)
    events = []
    for k in range(30):
        for cam in CAMS:
            stamp = k * PERIOD + rng.uniform(-0.004, 0.004)  # unsynchronised camera clocks
            events.append((k * PERIOD + 0.005 + rng.uniform(0, 0.01), cam, stamp))
    frames = feed(make(), events)
    assert len(frames) == 30
    assert all(f.complete for f in frames)
    stamps = [f.stamp for f in frames]
    assert stamps == sorted(stamps)


def test_dead_camera_times_out_then_is_not_waited_for_and_comes_back():
    sync = make(dead_after=0.3)
    events = []
    for k in range(60):  # 2 s at 30 Hz; camera d dead between 0.5 s and 1.5 s
        stamp = k * PERIOD
        for cam in CAMS:
            if cam == "d" and 0.5 <= stamp < 1.5:
                continue
            events.append((stamp + 0.002, cam, stamp))
    frames = feed(sync, events)
    assert len(frames) == 60  # nothing lost: 3 views >= min_views
    partial = [f for f in frames if not f.complete]
    assert {f.num_views for f in partial} == {3}
    # The first set after d's return goes out before d's message arrives (d was dead, not waited for): partial.
    assert all(0.5 <= f.stamp < 1.5 + PERIOD / 2 for f in partial)
    # Right after the death the partial frames wait max_wait; once d is known dead they go out at once.
    early = [f.wait for f in partial if f.stamp < 0.5 + 0.2]
    late = [f.wait for f in partial if f.stamp > 0.5 + 0.35]
    assert min(early) >= 0.05 - 1e-9
    assert max(late) < 0.005
    # Back after 1.5 s: used again, complete sets.
    assert all(f.complete for f in frames if f.stamp >= 1.5 + PERIOD / 2)
    assert sync.drops["insufficient_views"] == 0 and sync.drops["late"] <= 1


def test_input_that_starts_long_after_the_synchronizer_gets_its_first_frame_whole():
    """Polled for 5 s before any message (a node ready long before its bag is played): the cameras are not dead for
    that silence, so the first frame waits for all of them and goes out complete."""
    sync = make(dead_after=1.0)
    for k in range(100):
        assert sync.poll(k * 0.05) == []
    frames = feed(sync, [(5.0 + 0.001 * v, cam, 100.0) for v, cam in enumerate(CAMS)]
                  + [(5.033 + 0.001 * v, cam, 100.033) for v, cam in enumerate(CAMS)])
    assert [(f.stamp, f.complete) for f in frames] == [(100.0, True), (100.033, True)]
    assert sync.drops["insufficient_views"] == 0
    # A camera never heard from is dead once dead_after has passed since the first message of any camera.
    quiet = make(dead_after=1.0)
    quiet.poll(0.0)
    quiet.add("a", 100.0, None, 5.0)
    assert "d" in quiet.alive(5.9) and "d" not in quiet.alive(6.1)


def test_too_few_views_dropped_as_insufficient():
    sync = make(min_views=3)
    frames = feed(sync, [(0.0, "a", 0.0), (0.001, "b", 0.0), (0.1, "a", 0.1), (0.1, "b", 0.1), (0.1, "c", 0.1)])
    assert [f.stamp for f in frames] == [0.1]
    assert sync.drops["insufficient_views"] == 1


def test_out_of_order_across_cameras_and_late_messages():
    sync = make()
    events = [
        # camera c delivers stamp 1 before stamp 0 reaches a and b
        (0.000, "c", PERIOD),
        (0.001, "a", 0.0),
        (0.002, "b", 0.0),
        (0.003, "c", 0.0),
        (0.004, "d", 0.0),  # group 0 complete -> emitted (older than group 1, which is still waiting)
        (0.005, "a", PERIOD),
        (0.006, "b", PERIOD),
        (0.007, "d", PERIOD),  # group 1 complete
        (0.050, "a", 0.5 * PERIOD - 0.011),  # older than the last emitted frame: late
        (0.051, "b", PERIOD + 0.002),  # belongs to the already emitted group 1: late
    ]
    frames = feed(sync, events)
    assert [f.stamp for f in frames] == pytest.approx([0.0, PERIOD])
    assert all(f.complete for f in frames)
    assert sync.drops["late"] == 2


def test_a_message_within_slop_of_two_frames_joins_the_nearer():
    # slop 10 ms: b's group at 15 ms is nearer to c's 9 ms than a's group at 0 ms is.
    sync = make(min_views=2)
    frames = feed(sync, [(0.000, "a", 0.000), (0.001, "b", 0.015), (0.002, "c", 0.009)])
    assert [(f.stamp, sorted(f.views)) for f in frames] == [(0.015, ["b", "c"])]
    assert sync.drops["insufficient_views"] == 1  # a alone
    # After a frame went out, a message nearer to it than to the frame still pending belongs to it: late.
    sync = make(min_views=2)
    frames = feed(sync, [(0.000, "a", 0.000), (0.001, "c", 0.000), (0.002, "d", 0.000),
                         (0.100, "a", 0.012), (0.101, "b", 0.003), (0.102, "c", 0.012)])
    assert [(f.stamp, sorted(f.views)) for f in frames] == [(0.0, ["a", "c", "d"]), (0.012, ["a", "c"])]
    assert sync.drops["late"] == 1


def test_newer_complete_group_flushes_older_partial_first():
    sync = make(max_wait=1.0)
    frames = []
    frames += sync.add("a", 0.0, 0, now=0.0)
    frames += sync.add("b", 0.0, 0, now=0.0)
    for cam in CAMS:
        frames += sync.add(cam, PERIOD, 1, now=0.01)
    summary = [(round(f.stamp, 4), f.complete, f.num_views) for f in frames]
    assert summary == [(0.0, False, 2), (round(PERIOD, 4), True, 4)]


def test_duplicate_and_unknown_camera_and_invalid_stamp():
    sync = make()
    assert sync.add("a", 0.0, 1, now=0.0) == []
    assert sync.add("a", 0.0, 2, now=0.001) == []  # same camera, same stamp, no better: the first stays
    assert sync.add("zz", 0.0, 3, now=0.002) == []
    assert sync.add("b", math.nan, 4, now=0.003) == []
    frames = sync.add("b", 0.0, 5, now=0.004) + sync.poll(0.1)
    assert len(frames) == 1 and frames[0].views == {"a": 1, "b": 5}
    assert sync.drops["duplicate"] == 1 and sync.drops["unknown_camera"] == 1 and sync.drops["invalid_stamp"] == 1


def test_a_second_message_of_one_camera_with_another_stamp_is_a_frame_not_a_duplicate():
    # Camera a runs twice as fast as b, and slop spans two of a's frames: a's second message must not be lost.
    sync = make(slop=0.012, max_wait=0.05)
    frames = []
    frames += sync.add("a", 0.000, "a0", now=0.000)
    frames += sync.add("b", 0.000, "b0", now=0.001)
    frames += sync.add("a", 0.008, "a1", now=0.008)
    frames += sync.add("b", 0.008, "b1", now=0.009)
    frames += sync.poll(0.2)
    assert sync.drops["duplicate"] == 0
    assert [(f.stamp, f.views) for f in frames] == [(0.0, {"a": "a0", "b": "b0"}), (0.008, {"a": "a1", "b": "b1"})]


def test_two_messages_for_one_stamp_keep_the_better_one_whatever_the_order():
    for order in ((("bad", (0.2, 0.1)), ("good", (1.0, 0.9))), (("good", (1.0, 0.9)), ("bad", (0.2, 0.1)))):
        sync = make()
        for k, (payload, quality) in enumerate(order):
            sync.add("a", 0.0, payload, now=0.001 * k, quality=quality)
        frames = sync.add("b", 0.0, "b", now=0.003) + sync.poll(0.2)
        assert len(frames) == 1 and frames[0].views["a"] == "good", order
        assert sync.drops["duplicate"] == 1


def test_a_camera_always_later_than_max_wait_stops_costing_the_wait_and_is_reported():
    sync = make(max_wait=0.03, late_limit=5)
    events = []
    for k in range(60):  # 2 s at 30 Hz; d's messages arrive 80 ms after the others, every time
        stamp = k * PERIOD
        for cam in CAMS:
            events.append((stamp + (0.080 if cam == "d" else 0.002), cam, stamp))
    frames = feed(sync, events)
    assert len(frames) == 60
    waits = [f.wait for f in frames]
    # The first frames wait max_wait for d; once d is known to lag, frames go out as soon as a, b, c are in.
    assert min(waits[:3]) >= 0.03 - 1e-9
    assert max(waits[10:]) < 0.005
    assert set(sync.lagging()) == {"d"} and sync.lagging()["d"] == pytest.approx(0.078, abs=0.002)
    assert sync.lagging_events == 1


def test_a_lagging_camera_back_in_time_is_waited_for_again():
    sync = make(max_wait=0.03, late_limit=3)
    events = []
    for k in range(60):  # d is 80 ms late for the first second, then 10 ms late
        stamp = k * PERIOD
        for cam in CAMS:
            lag = (0.080 if stamp < 1.0 else 0.010) if cam == "d" else 0.002
            events.append((stamp + lag, cam, stamp))
    frames = feed(sync, events)
    assert not sync.lagging()
    assert all(f.complete for f in frames if f.stamp > 1.3)


def test_slop_over_half_the_frame_period_is_a_warning():
    wide, narrow = make(slop=0.02), make(slop=0.01)
    assert wide.slop_warning() is None  # nothing measured yet
    for sync in (wide, narrow):
        for k in range(10):
            for cam in CAMS:
                sync.add(cam, k * PERIOD, k, now=k * PERIOD)
    assert narrow.slop_warning() is None
    warning = wide.slop_warning()
    assert warning and "sync_slop 20.0 ms" in warning and "33.3 ms" in warning
    assert wide.frame_period() == pytest.approx(PERIOD)


def test_one_camera_with_a_clock_ahead_does_not_block_the_others():
    # d's clock runs 0.3 s ahead: its lone messages form groups that time out short of min_views; they must neither
    # make the other cameras' frames late nor hurry them out.
    sync = make(max_wait=0.03)
    events = []
    for k in range(30):
        stamp = k * PERIOD
        for cam in CAMS:
            events.append((stamp + 0.002, cam, stamp + (0.3 if cam == "d" else 0.0)))
    frames = feed(sync, events)
    assert len(frames) == 30 and {f.num_views for f in frames} == {3}
    assert sync.drops["late"] == 0


def test_bounded_queue_drops_oldest():
    sync = make(max_pending=3, max_wait=10.0)
    for k in range(6):
        assert sync.add("a", k * PERIOD, k, now=0.0) == []
    assert sync.pending == 3
    assert sync.drops["overflow"] == 3
    # A straggler for a dropped group is late, not a new group.
    sync.add("b", 0.0, 0, now=0.0)
    assert sync.drops["late"] == 1 and sync.pending == 3


def test_clock_jump_backwards_clears_state_and_keeps_working():
    sync = make()
    events = []
    for k in range(60):  # 2 s, then the bag loops back to its start (the node's `now` is monotonic)
        for cam in CAMS:
            events.append((k * PERIOD + 0.002, cam, 100.0 + k * PERIOD))
    for k in range(30):
        for cam in CAMS:
            events.append((2.0 + k * PERIOD + 0.002, cam, 100.0 + k * PERIOD))
    frames = feed(sync, events)
    assert sync.drops["clock_jump"] == 1
    assert len(frames) == 90
    assert [f.stamp for f in frames[60:]] == pytest.approx([100.0 + k * PERIOD for k in range(30)])
    assert all(f.complete for f in frames)
    assert sync.drops["late"] == 0


def test_one_camera_with_a_wrong_clock_does_not_reset_everyone():
    sync = make()
    events = []
    for k in range(30):
        for cam in CAMS:
            stamp = k * PERIOD - (5.0 if cam == "d" else 0.0)  # d is 5 s behind
            events.append((k * PERIOD + 0.002, cam, 10.0 + stamp))
    frames = feed(sync, events)
    assert sync.drops["clock_jump"] == 0
    assert len(frames) == 30 and {f.num_views for f in frames} == {3}
    assert sync.drops["late"] >= 29


def test_counters_cover_every_reason_and_validation():
    assert set(make().drops) == set(DROP_REASONS)
    with pytest.raises(ValueError):
        make(min_views=5)
    with pytest.raises(ValueError):
        make(cameras=["a", "a"])
    with pytest.raises(ValueError):
        make(max_pending=0)


def test_single_camera_rig_emits_immediately():
    sync = PartialViewSynchronizer(["only"], slop=0.01, max_wait=0.05, min_views=1, max_pending=4)
    frames = sync.add("only", 1.0, "x", now=0.0)
    assert len(frames) == 1 and frames[0].complete


def test_clock_jump_confirmed_across_slow_arrivals_and_a_straggler_from_another_time():
    sync = make(max_wait=0.005)
    frames = []
    for k in range(60):
        for cam in CAMS:
            frames += sync.add(cam, 50.0 + k * PERIOD, k, now=k * PERIOD)
    # A message from 1.5 s ago (a stuck camera), then all cameras restart at stamp 10, the first frame's
    # messages arriving further apart than max_wait (the jump must still be confirmed).
    frames += sync.add("a", 50.0 + 30 * PERIOD - 1.5, "old", now=2.0)
    for i, cam in enumerate(CAMS):
        frames += sync.add(cam, 10.0, 0, now=2.01 + 0.008 * i)
    for k in range(1, 10):
        for cam in CAMS:
            frames += sync.add(cam, 10.0 + k * PERIOD, k, now=2.05 + k * PERIOD)
    assert sync.drops["clock_jump"] == 1
    after = [f for f in frames if f.stamp < 20.0]
    assert after[0].stamp == 10.0 and after[0].num_views >= 2
    assert [f.stamp for f in after[1:]] == pytest.approx([10.0 + k * PERIOD for k in range(1, 10)])
    assert all(f.complete for f in after[1:])
