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
