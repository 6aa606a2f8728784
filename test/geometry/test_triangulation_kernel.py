"""The robust triangulation: the compiled loop (``geometry/_triangulation_kernel.c``) against the numpy reference on
simulated takes with outliers, dropped views and confidences under the threshold, on every rig and on a ring of 12
cameras; the kernel checks its buffers; without the extension, or beyond 64 cameras, the reference runs."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import skelsplat_ros.geometry.triangulation as triangulation
from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at
from skelsplat_ros.geometry.triangulation import (
    project_pinhole,
    triangulate_robust,
    triangulate_robust_c,
    triangulate_robust_numpy,
)
from skelsplat_ros.sim import make_scenario

# A build without a C compiler has no extension; test/test_packaging.py fails where one should have been built.
extension = pytest.importorskip("skelsplat_ros.geometry._triangulation_kernel")

SETTINGS = [  # threshold px, min_confidence, min_views, max_subsets
    (15.0, 0.3, 2, 256),
    (5.0, 0.1, 2, 256),  # many points need a smaller subset
    (15.0, 0.3, 3, 4),  # the cap cuts the search short
    (2.0, 0.0, 2, 3),
    (15.0, 0.3, 2, 0),  # no subset at all: every point NaN
]


def _assert_same(got, expected):
    np.testing.assert_array_equal(got.views_used, expected.views_used)
    np.testing.assert_array_equal(np.isfinite(got.points), np.isfinite(expected.points))
    np.testing.assert_allclose(got.points, expected.points, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.error, expected.error, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("rig_name, noise", [("lab", "heavy"), ("portrait", "hard"), ("robot", "heavy"),
                                             ("surround", "heavy")])
def test_the_kernel_equals_the_reference_on_simulated_takes(rig_name, noise):
    """Heavy noise has outliers and dropped views; the robot rig's narrow baseline makes ill-conditioned systems."""
    scenario = make_scenario(rig_name, num_frames=20, noise=noise, seed=7)
    uv = scenario.rig.undistort(scenario.keypoints[..., :2])
    confidence = scenario.keypoints[..., 2]
    outcomes = set()
    for settings in SETTINGS:
        expected = triangulate_robust_numpy(scenario.rig, uv, confidence, *settings)
        _assert_same(triangulate_robust_c(scenario.rig, uv, confidence, *settings), expected)
        weight = np.nan_to_num(confidence)
        usable = np.isfinite(uv).all(-1) & (weight >= settings[1]) & (weight > 0)
        found = np.isfinite(expected.points).all(-1)
        every = (expected.views_used == usable).all(axis=0)
        outcomes |= {"all"} if (found & every).any() else set()
        outcomes |= {"fewer"} if (found & ~every).any() else set()
        outcomes |= {"none"} if (~found).any() else set()
    assert outcomes == {"all", "fewer", "none"}  # the takes exercise every branch of the search


def test_the_kernel_equals_the_reference_on_twelve_cameras_with_odd_inputs():
    """A ring of 12 cameras (4,096 subsets of a point seen by all: the cap decides), NaN and infinite pixels and
    confidences, confidences of exactly the threshold, a point behind some cameras."""
    cameras = []
    for k in range(12):
        angle = 2 * np.pi * k / 12
        centre = np.array([4.0 * np.cos(angle), 4.0 * np.sin(angle), 1.5])
        R, t = look_at(centre, np.array([0.0, 0.0, 1.0]))
        cameras.append(Camera(f"cam{k}", np.array([[900.0, 0, 640], [0, 900.0, 360], [0, 0, 1]]), R, t, (1280, 720)))
    rig = CameraRig(cameras)
    rng = np.random.default_rng(5)
    points = rng.uniform([-0.5, -0.5, 0.0], [0.5, 0.5, 2.0], (30, 3))
    points[0] = [5.0, 0.0, 1.5]  # outside the ring: behind the cameras across it
    uv = project_pinhole(rig, points) + rng.normal(0.0, 1.5, (12, 30, 2))
    uv += 80.0 * rng.normal(size=(12, 30, 2)) * (rng.random((12, 30, 1)) < 0.2)
    confidence = rng.uniform(0.0, 1.0, (12, 30))
    confidence[rng.random((12, 30)) < 0.05] = np.nan
    confidence[:, 1] = 0.3
    uv[rng.random((12, 30)) < 0.05] = np.nan
    uv[3, 2] = [np.inf, 10.0]
    for settings in ((4.0, 0.3, 2, 64), (4.0, 0.3, 3, 256), (20.0, 0.0, 2, 5)):
        _assert_same(triangulate_robust_c(rig, uv, confidence, *settings),
                     triangulate_robust_numpy(rig, uv, confidence, *settings))


def test_the_kernel_checks_its_buffers():
    """Buffers whose sizes do not match, or more than 64 views: a ValueError, the outputs untouched."""
    scenario = make_scenario("lab", num_frames=2, noise="realistic", seed=1)
    rig, count = scenario.rig, 2 * scenario.skeleton.num_joints
    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    inputs = [f64(rig.K_inv), f64(rig.extrinsics), f64(rig.projection_matrices),
              f64(rig.undistort(scenario.keypoints[..., :2]).reshape(4, count, 2)),
              f64(scenario.keypoints[..., 2].reshape(4, count))]

    def outputs(points: int = count, views: int = 4):
        return np.full((points, 3), 7.0), np.zeros((views, points), dtype=bool), np.full(points, 7.0)

    extension.triangulate_robust(*inputs, 15.0, 0.3, 2, 256, *outputs())  # the sizes that agree
    for index, short in ((1, inputs[1][:3]), (3, inputs[3][:, :-1]), (4, inputs[4][:2])):
        wrong = list(inputs)
        wrong[index] = np.ascontiguousarray(short)
        out = outputs()
        with pytest.raises(ValueError, match="sizes do not match"):
            extension.triangulate_robust(*wrong, 15.0, 0.3, 2, 256, *out)
        assert (out[0] == 7.0).all() and (out[2] == 7.0).all()
    with pytest.raises(ValueError, match="sizes do not match"):
        extension.triangulate_robust(*inputs, 15.0, 0.3, 2, 256, *outputs(points=count - 1))
    many = [np.zeros((65, 3, 3)), np.zeros((65, 3, 4)), np.zeros((65, 3, 4)), np.zeros((65, 1, 2)), np.zeros((65, 1))]
    with pytest.raises(ValueError, match="V <= 64"):
        extension.triangulate_robust(*many, 15.0, 0.3, 2, 256, *outputs(points=1, views=65))


def test_the_reference_runs_without_the_extension_or_beyond_64_cameras(monkeypatch):
    scenario = make_scenario("lab", num_frames=3, noise="heavy", seed=2)
    uv, confidence = scenario.rig.undistort(scenario.keypoints[..., :2]), scenario.keypoints[..., 2]
    calls = []
    monkeypatch.setattr(triangulation, "triangulate_robust_numpy",
                        lambda *a: calls.append("numpy") or triangulate_robust_numpy(*a))
    monkeypatch.setattr(triangulation, "triangulate_robust_c", lambda *a: calls.append("c") or triangulate_robust_c(*a))
    expected = triangulate_robust_numpy(scenario.rig, uv, confidence)
    _assert_same(triangulate_robust(scenario.rig, uv, confidence), expected)
    monkeypatch.setattr(triangulation, "MAX_KERNEL_VIEWS", 3)  # the lab rig's 4 cameras are now too many
    _assert_same(triangulate_robust(scenario.rig, uv, confidence), expected)
    monkeypatch.setattr(triangulation, "MAX_KERNEL_VIEWS", 64)
    monkeypatch.setattr(triangulation, "_compiled_kernel", lambda: None)
    _assert_same(triangulate_robust(scenario.rig, uv, confidence), expected)
    assert calls == ["c", "numpy", "numpy"]
