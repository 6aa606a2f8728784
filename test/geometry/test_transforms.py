"""The TF buffer against compositions known in closed form: static and moving edges, slerp, chains through the tree,
no extrapolation, the cache and the waiting lookup."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from skelsplat_ros.geometry.camera import rodrigues_to_matrix
from skelsplat_ros.geometry.transforms import (
    Transform,
    TransformBuffer,
    TransformError,
    matrix_to_quaternion,
    quaternion_to_matrix,
    slerp,
)

S = 1_000_000_000  # ns per second


def _random_transform(rng: np.random.Generator) -> Transform:
    return Transform(rodrigues_to_matrix(rng.normal(size=3)), rng.normal(size=3))


def _add(buffer: TransformBuffer, parent: str, child: str, transform: Transform, stamp: int = 0,
         static: bool = False) -> None:
    buffer.set_transform(parent, child, stamp, transform.translation, transform.quaternion, static=static)


def test_quaternion_round_trip_at_every_angle():
    rng = np.random.default_rng(0)
    for angle in (0.0, 1e-9, 0.3, np.pi / 2, np.pi - 1e-7, np.pi):
        axis = rng.normal(size=3)
        rotation = rodrigues_to_matrix(axis / np.linalg.norm(axis) * angle)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(rotation)), rotation, atol=1e-12)


def test_slerp_follows_constant_angular_velocity_and_takes_the_short_arc():
    axis = np.array([0.0, 0.0, 1.0])
    q0 = matrix_to_quaternion(rodrigues_to_matrix(axis * 0.2))
    q1 = matrix_to_quaternion(rodrigues_to_matrix(axis * 1.4))
    for fraction in (0.0, 0.25, 0.5, 1.0):
        expected = rodrigues_to_matrix(axis * (0.2 + 1.2 * fraction))
        np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, q1, fraction)), expected, atol=1e-12)
        # -q1 is the same rotation: the result must not go the long way round.
        np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, -q1, fraction)), expected, atol=1e-12)


def test_chain_through_common_ancestor_matches_matrix_products():
    rng = np.random.default_rng(1)
    world_base, base_cam, world_wall = (_random_transform(rng) for _ in range(3))
    buffer = TransformBuffer()
    _add(buffer, "world", "base", world_base, static=True)
    _add(buffer, "base", "cam", base_cam, static=True)
    _add(buffer, "world", "wall", world_wall, static=True)
    # cam_T_world = (world_T_base base_T_cam)^-1
    cam_world = buffer.lookup("cam", "world", 123)
    expected = (world_base @ base_cam).inverse()
    np.testing.assert_allclose(cam_world.rotation, expected.rotation, atol=1e-12)
    np.testing.assert_allclose(cam_world.translation, expected.translation, atol=1e-12)
    # Between two branches: wall_T_cam = world_T_wall^-1 world_T_base base_T_cam; applied to points.
    points = rng.normal(size=(5, 3))
    wall_cam = buffer.lookup("wall", "cam", 0)
    np.testing.assert_allclose(wall_cam.apply(points),
                               world_wall.inverse().apply(world_base.apply(base_cam.apply(points))), atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("cam", "cam", 0).rotation, np.eye(3))


def test_moving_edge_interpolates_between_samples_and_is_exact_on_them():
    buffer = TransformBuffer()
    axis = np.array([0.0, 0.0, 1.0])
    # A robot turning at 1 rad/s about z while driving at 1 m/s along x, sampled at 10 Hz.
    for k in range(11):
        pose = Transform(rodrigues_to_matrix(axis * 0.1 * k), np.array([0.1 * k, 0.0, 0.0]))
        _add(buffer, "world", "base", pose, stamp=k * S // 10)
    _add(buffer, "base", "cam", Transform(np.eye(3), np.array([0.0, 0.5, 1.0])), static=True)
    for t in (0.0, 0.3, 0.35, 0.77, 1.0):
        expected = Transform(rodrigues_to_matrix(axis * t), np.array([t, 0.0, 0.0]))
        world_cam = buffer.lookup("world", "cam", int(round(t * S)))
        np.testing.assert_allclose(world_cam.rotation, expected.rotation, atol=1e-12)
        np.testing.assert_allclose(world_cam.translation, expected.apply(np.array([0.0, 0.5, 1.0])), atol=1e-12)


def test_no_extrapolation_in_either_direction_with_the_reason():
    buffer = TransformBuffer()
    _add(buffer, "world", "base", Transform(), stamp=10 * S)
    _add(buffer, "world", "base", Transform(), stamp=11 * S)
    _add(buffer, "base", "cam", Transform(), static=True)
    with pytest.raises(TransformError, match="after the newest") as future:
        buffer.lookup("world", "cam", 11 * S + 1)
    assert future.value.reason == "future"
    with pytest.raises(TransformError, match="before the oldest") as past:
        buffer.lookup("cam", "world", 10 * S - 1)
    assert past.value.reason == "past"
    with pytest.raises(TransformError) as unknown:
        buffer.lookup("world", "nowhere", 10 * S)
    assert unknown.value.reason == "unknown_frame"
    _add(buffer, "map", "other", Transform(), static=True)
    with pytest.raises(TransformError) as apart:
        buffer.lookup("other", "cam", 10 * S)
    assert apart.value.reason == "no_chain"


def test_cache_forgets_samples_older_than_ten_seconds_behind_the_newest():
    buffer = TransformBuffer()
    for k in range(25):
        _add(buffer, "world", "base", Transform(np.eye(3), np.array([k, 0.0, 0.0])), stamp=k * S)
    np.testing.assert_allclose(buffer.lookup("world", "base", 14 * S).translation, [14, 0, 0])
    with pytest.raises(TransformError) as old:
        buffer.lookup("world", "base", 13 * S)
    assert old.value.reason == "past"


def test_out_of_order_samples_are_sorted_and_reparenting_starts_a_new_edge():
    buffer = TransformBuffer()
    _add(buffer, "world", "base", Transform(np.eye(3), np.array([2.0, 0, 0])), stamp=2 * S)
    _add(buffer, "world", "base", Transform(np.eye(3), np.array([0.0, 0, 0])), stamp=0)
    np.testing.assert_allclose(buffer.lookup("world", "base", S).translation, [1.0, 0, 0])
    _add(buffer, "odom", "base", Transform(np.eye(3), np.array([5.0, 0, 0])), stamp=3 * S)
    with pytest.raises(TransformError):
        buffer.lookup("world", "base", 3 * S)
    np.testing.assert_allclose(buffer.lookup("odom", "base", 3 * S).translation, [5.0, 0, 0])


@pytest.mark.parametrize("bad", [
    ("world", "world", [0, 0, 0], [0, 0, 0, 1]),
    ("", "cam", [0, 0, 0], [0, 0, 0, 1]),
    ("world", "cam", [np.nan, 0, 0], [0, 0, 0, 1]),
    ("world", "cam", [0, 0, 0], [0, 0, 0, 0]),
])
def test_bad_transforms_are_refused(bad):
    parent, child, translation, quaternion = bad
    with pytest.raises(ValueError):
        TransformBuffer().set_transform(parent, child, 0, translation, quaternion)


def test_wait_for_returns_once_the_transform_arrives_and_gives_up_after_the_bound():
    buffer = TransformBuffer()
    _add(buffer, "world", "cam", Transform(), stamp=0)

    def late() -> None:
        time.sleep(0.05)
        _add(buffer, "world", "cam", Transform(np.eye(3), np.array([1.0, 0, 0])), stamp=2 * S)

    threading.Thread(target=late).start()
    np.testing.assert_allclose(buffer.wait_for("world", "cam", S, timeout=2.0).translation, [0.5, 0, 0])
    started = time.monotonic()
    with pytest.raises(TransformError) as error:
        buffer.wait_for("world", "cam", 3 * S, timeout=0.05)
    assert error.value.reason == "future" and time.monotonic() - started >= 0.05


# --- time that jumps, and a buffer that must not grow (issue 18) ------------------------------------------------------


def _at(x: float) -> Transform:
    return Transform(np.eye(3), np.array([x, 0.0, 0.0]))


def _x(buffer: TransformBuffer, stamp: int, source: str = "cam") -> float | str:
    try:
        return float(buffer.lookup("world", source, stamp).translation[0])
    except TransformError as error:
        return error.reason


@pytest.mark.parametrize("back_s", [20.0, 3.0])
def test_a_backwards_jump_of_time_forgets_the_old_timeline_and_uses_the_new_one(back_s):
    """A bag played in a loop (or a simulator reset): 20 s back (beyond the cache) or 3 s back (within it, where the
    old samples would interleave with the new ones)."""
    buffer = TransformBuffer()
    end = 120 * S
    for k in range(201):  # 100-120 s at 10 Hz: the camera at x = 1, the robot base static
        _add(buffer, "world", "cam", _at(1.0), stamp=100 * S + k * S // 10)
    _add(buffer, "world", "base", _at(0.0), static=True)
    restart = end - int(back_s * S)
    for k in range(21):  # the new loop: the camera at x = 2
        _add(buffer, "world", "cam", _at(2.0), stamp=restart + k * S // 10)
    assert buffer.jumps == 1
    assert _x(buffer, restart + 15 * S // 10) == pytest.approx(2.0)
    assert _x(buffer, restart + 2 * S) == pytest.approx(2.0)
    assert _x(buffer, restart + 2 * S + 1) == "future"  # the old timeline's later samples are gone
    assert _x(buffer, restart, "base") == 0.0  # static edges are kept


def test_one_sample_stamped_far_ahead_leaves_the_edge_and_its_history_working():
    buffer = TransformBuffer()
    for k in range(101):
        _add(buffer, "world", "cam", _at(1.0), stamp=100 * S + k * S // 10)
    _add(buffer, "world", "cam", _at(9.0), stamp=3700 * S)  # a wrong clock, once
    for k in range(101, 151):
        _add(buffer, "world", "cam", _at(1.0), stamp=100 * S + k * S // 10)
    assert _x(buffer, 113 * S) == pytest.approx(1.0)
    assert _x(buffer, 105 * S) == pytest.approx(1.0)  # the cache was not emptied by the future stamp
    assert _x(buffer, 3700 * S) == "future" and buffer.jumps == 0


def test_time_that_jumps_forward_is_followed_after_two_samples():
    buffer = TransformBuffer()
    for k in range(11):
        _add(buffer, "world", "cam", _at(1.0), stamp=100 * S + k * S // 10)
    _add(buffer, "world", "cam", _at(3.0), stamp=200 * S)
    _add(buffer, "world", "cam", _at(3.0), stamp=200 * S + S // 10)
    assert _x(buffer, 200 * S + S // 20) == pytest.approx(3.0)
    assert _x(buffer, 100 * S + S // 2) == "past"


def test_one_late_sample_is_sorted_in_and_clears_nothing():
    buffer = TransformBuffer()
    for k in range(51):
        _add(buffer, "world", "cam", _at(k * 0.1), stamp=100 * S + k * S // 10)
        _add(buffer, "world", "other", _at(5.0), stamp=100 * S + k * S // 10)
    _add(buffer, "world", "cam", _at(0.25), stamp=102 * S + S // 20)  # 2.95 s late
    _add(buffer, "world", "cam", _at(5.1), stamp=105 * S + S // 10)
    _add(buffer, "world", "other", _at(5.0), stamp=105 * S + S // 10)
    assert buffer.jumps == 0
    assert _x(buffer, 102 * S + S // 20) == pytest.approx(0.25)
    assert _x(buffer, 104 * S) == pytest.approx(4.0) and _x(buffer, 101 * S, "other") == pytest.approx(5.0)


class _CountingDict(dict):
    """A dict that counts the passes over all of it (iteration, keys, values, items)."""

    passes = 0

    def __iter__(self):
        _CountingDict.passes += 1
        return super().__iter__()

    def values(self):
        _CountingDict.passes += 1
        return super().values()

    def items(self):
        _CountingDict.passes += 1
        return super().items()

    def keys(self):
        _CountingDict.passes += 1
        return super().keys()


def test_a_lookup_reads_only_the_edges_on_its_path_however_many_frames_were_received():
    """tf_lookup_growth: a lookup used to pass over every frame ever received (100 000: ~15 ms each). Counted,
    not timed: no pass over the whole tree."""
    buffer = TransformBuffer()
    for c in range(4):
        _add(buffer, "base_link", f"cam{c}", _at(0.1 * c), static=True)
    for k in range(11):
        _add(buffer, "world", "base_link", _at(0.01 * k), stamp=100 * S + k * S // 10)
    for k in range(2000):
        _add(buffer, "world", f"person_{k // 17}/joint_{k % 17}", _at(1.0), stamp=100 * S)
    buffer._edges = _CountingDict(buffer._edges)
    _CountingDict.passes = 0
    for c in range(4):
        assert _x(buffer, 100 * S + S // 2, f"cam{c}") == pytest.approx(0.05 + 0.1 * c)
    assert _CountingDict.passes == 0


def test_frames_silent_for_longer_than_the_cache_time_are_forgotten():
    buffer = TransformBuffer()
    _add(buffer, "base_link", "cam0", _at(0.1), static=True)
    for k in range(1000):  # joints of people tracked once and never again
        _add(buffer, "world", f"person_{k // 17}/joint_{k % 17}", _at(1.0), stamp=100 * S)
    for k in range(151):  # the robot keeps moving for 15 s
        _add(buffer, "world", "base_link", _at(0.0), stamp=100 * S + k * S // 10)
    assert buffer.frames() == {"world", "base_link", "cam0"}
    assert _x(buffer, 114 * S, "cam0") == pytest.approx(0.1)


def test_lookup_latest_uses_the_newest_time_every_edge_on_the_way_knows():
    """tf2's lookup at time 0 (what libhri does for body_<id>): the latest common time of the dynamic edges between
    the two frames; static edges hold at any time."""
    buffer = TransformBuffer()
    q = np.array([0.0, 0.0, 0.0, 1.0])
    buffer.set_transform("map", "world", 0, np.array([1.0, 0.0, 0.0]), q, static=True)
    for stamp, x in ((100, 0.0), (200, 1.0), (300, 2.0)):
        buffer.set_transform("world", "body_a", stamp, np.array([x, 0.0, 0.0]), q)
    for stamp, z in ((100, 0.0), (250, 0.5)):
        buffer.set_transform("body_a", "head_a", stamp, np.array([0.0, 0.0, z]), q)
    transform, stamp = buffer.lookup_latest("map", "head_a")
    assert stamp == 250
    np.testing.assert_allclose(transform.translation, [1.0 + 1.5, 0.0, 0.5])
    assert buffer.lookup_latest("map", "world")[1] is None
    with pytest.raises(TransformError) as error:
        buffer.lookup_latest("map", "nowhere")
    assert error.value.reason == "unknown_frame"
