"""Robust zero-phase smoothing of trajectories (``fusion/smoothing.py``) and the offline refinement built on it,
on trajectories and simulated takes with known ground truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from skelsplat_ros.fusion import FusionConfig, fuse_offline, fuse_streaming, preset_config
from skelsplat_ros.fusion.smoothing import (
    SmoothingConfig,
    _difference_gram,
    _solve_joints,
    smooth_trajectories,
    view_information,
)
from skelsplat_ros.sim import make_scenario

FPS = 30.0


def _truth(num_frames: int = 120) -> np.ndarray:
    """A smooth reaching-like trajectory ``[F, 1, 3]`` (m): slow sines, well under 2 Hz."""
    t = np.arange(num_frames) / FPS
    return np.stack([0.3 * np.sin(2.0 * t), 0.2 * np.cos(1.3 * t), 1.0 + 0.1 * np.sin(3.0 * t)], -1)[:, None]


def _isotropic(num_frames: int, sigma_m: float) -> np.ndarray:
    """Information ``[F, 1, 3, 3]`` of a measurement with ``sigma_m`` noise per axis."""
    return np.broadcast_to(np.eye(3) / sigma_m**2, (num_frames, 1, 3, 3)).copy()


def test_banded_solve_equals_the_dense_normal_equations():
    """Two joints with their own data and prior weights, solved by one factorisation, each as its dense system."""
    rng = np.random.default_rng(0)
    frames = 40
    x = rng.normal(size=(2, frames, 3))
    factors = rng.normal(size=(2, frames, 3, 3))
    info = factors @ factors.transpose(0, 1, 3, 2)
    info[0, 5:9] = 0.0  # a gap
    info[1, :3] *= 100.0  # a very sure start
    precision = np.array([3.0, 0.1])
    solved, logdet = _solve_joints(x, info, _difference_gram(frames, 3), precision, 3)
    difference = np.diff(np.eye(frames), n=3, axis=0)
    for joint in range(2):
        dense = np.kron(precision[joint] * difference.T @ difference, np.eye(3))
        for f in range(frames):
            dense[3 * f : 3 * f + 3, 3 * f : 3 * f + 3] += info[joint, f]
        rhs = np.einsum("fab,fb->fa", info[joint], x[joint]).reshape(-1)
        expected = np.linalg.solve(dense, rhs).reshape(frames, 3)
        np.testing.assert_allclose(solved[joint], expected, atol=1e-8)
        assert logdet[joint] == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-6)


def test_smoothing_removes_noise_and_fills_gaps_with_a_smooth_curve():
    truth = _truth()
    rng = np.random.default_rng(1)
    noisy = truth + rng.normal(scale=0.01, size=truth.shape)
    noisy[50:56] = np.nan  # a short gap
    smoothed, weights, _ = smooth_trajectories(noisy, _isotropic(len(truth), 0.01), FPS, SmoothingConfig(sigma=12.0))
    error = np.linalg.norm(smoothed - truth, axis=-1)
    raw = np.linalg.norm(noisy - truth, axis=-1)
    assert np.nanmean(error) < 0.5 * np.nanmean(raw)
    assert np.isfinite(smoothed).all() and error[50:56].max() < 0.01  # filled close to the truth
    assert (weights[50:56] == 0).all() and (weights[:50] > 0).all()


def test_an_outlier_frame_does_not_drag_its_neighbours():
    truth = _truth()
    rng = np.random.default_rng(2)
    noisy = truth + rng.normal(scale=0.005, size=truth.shape)
    noisy[60] += np.array([0.4, -0.3, 0.2])  # a confident 0.5 m outlier
    info = _isotropic(len(truth), 0.005)
    robust, weights, _ = smooth_trajectories(noisy, info, FPS, SmoothingConfig(sigma=12.0))
    plain, _, _ = smooth_trajectories(noisy, info, FPS, SmoothingConfig(sigma=12.0, robust_scale=0.0))
    near = slice(55, 66)
    robust_error = np.linalg.norm(robust - truth, axis=-1)[near].max()
    plain_error = np.linalg.norm(plain - truth, axis=-1)[near].max()
    assert weights[60, 0] < 0.01 and robust_error < 0.01 < plain_error


def test_one_view_fixes_two_axes_and_the_prior_fixes_the_third():
    """A joint seen by one camera along x for a stretch: its depth there comes from the frames around it."""
    truth = _truth()
    noisy = truth.copy()
    info = _isotropic(len(truth), 0.005)
    ray = np.array([1.0, 0.0, 0.0])
    info[40:50, 0] = (np.eye(3) - np.outer(ray, ray)) / 0.005**2  # depth (x) unobserved
    noisy[40:50, 0, 0] += 0.5  # ... and wrong by 0.5 m there
    smoothed, _, _ = smooth_trajectories(noisy, info, FPS, SmoothingConfig(sigma=12.0))
    assert np.abs(smoothed[40:50, 0, 0] - truth[40:50, 0, 0]).max() < 0.01


def test_adaptive_bandwidth_follows_the_motion_of_each_joint():
    """One slow joint and one quick one (a 3 Hz wave): the evidence gives the quick one the wider band, and both
    come out closer to the truth than with the slow joint's tolerance for both."""
    t = np.arange(150) / FPS
    slow = np.stack([0.2 * np.sin(0.8 * t), 0.1 * t, 1.0 + 0.0 * t], -1)
    quick = np.stack([0.15 * np.sin(2 * np.pi * 3.0 * t), 0.1 * np.cos(2 * np.pi * 2.0 * t), 1.2 + 0.0 * t], -1)
    truth = np.stack([slow, quick], axis=1)
    rng = np.random.default_rng(3)
    noisy = truth + rng.normal(scale=0.005, size=truth.shape)
    info = _isotropic(len(t), 0.005).repeat(2, axis=1)
    adaptive, _, sigmas = smooth_trajectories(noisy, info, FPS, SmoothingConfig(sigma=5.0, adaptive=True))
    fixed, _, _ = smooth_trajectories(noisy, info, FPS, SmoothingConfig(sigma=float(sigmas[0])))
    assert sigmas[1] > 10 * sigmas[0]
    error = lambda joints: np.linalg.norm(joints - truth, axis=-1).mean(0)  # noqa: E731
    assert (error(adaptive) <= error(fixed) + 1e-6).all() and error(adaptive)[1] < 0.5 * error(fixed)[1]


def test_view_information_matches_the_projection_geometry():
    take = make_scenario("lab", num_frames=2, noise="clean", seed=3)
    points = take.ground_truth
    one_view = np.zeros((len(take.rig), 2, points.shape[1]))
    one_view[0] = 1.0
    info = view_information(take.rig, points, one_view, pixel_sigma=2.0)
    eigen = np.linalg.eigvalsh(info)
    assert np.allclose(eigen[..., 0], 0.0, atol=1e-6 * eigen[..., -1].max())  # rank 2: no depth
    assert (eigen[..., 1] > 0).all()
    all_views = view_information(take.rig, points, np.ones_like(one_view), pixel_sigma=2.0)
    assert (np.linalg.eigvalsh(all_views)[..., 0] > 0).all()


def test_joints_never_seen_stay_nan_and_short_inputs_work():
    points = np.full((5, 2, 3), np.nan)
    points[:, 0] = 0.1
    smoothed, weights, _ = smooth_trajectories(points, _isotropic(5, 0.01).repeat(2, axis=1), FPS, SmoothingConfig())
    assert np.isnan(smoothed[:, 1]).all() and (weights[:, 1] == 0).all()
    np.testing.assert_allclose(smoothed[:, 0], 0.1, atol=1e-9)
    single, _, _ = smooth_trajectories(points[:1], _isotropic(1, 0.01).repeat(2, axis=1), FPS, SmoothingConfig())
    np.testing.assert_allclose(single[:, 0], 0.1)
    empty, _, _ = smooth_trajectories(points[:0], _isotropic(0, 0.01), FPS, SmoothingConfig())
    assert empty.shape == (0, 2, 3)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="order"):
        SmoothingConfig(order=7)
    with pytest.raises(ValueError, match="positive"):
        SmoothingConfig(sigma=0.0)
    with pytest.raises(ValueError, match="smoothing_rounds"):
        FusionConfig(smoothing_rounds=0)
    take = make_scenario("lab", num_frames=3, noise="clean", seed=3)
    with pytest.raises(ValueError, match="fps"):
        fuse_offline(take.rig, take.skeleton, take.keypoints, preset_config("default"), fps=0.0)


@pytest.fixture(scope="module")
def robot_take():
    """The narrow-baseline rig, where depth noise is largest: what the smoothing is for."""
    return make_scenario("robot", num_frames=90, noise="realistic", seed=7)


def test_offline_smoothing_beats_triangulation_and_streaming(robot_take):
    take = robot_take
    default = preset_config("default")
    smoothed = fuse_offline(take.rig, take.skeleton, take.keypoints, default, fps=take.fps)
    robust = fuse_offline(take.rig, take.skeleton, take.keypoints, replace(default, method="robust"))
    streaming = fuse_streaming(take.rig, take.skeleton, take.keypoints, default, take.fps)

    def mpjpe(joints):
        return float(np.nanmean(np.linalg.norm(joints - take.ground_truth, axis=-1)))

    # Measured: 0.13x and 0.38x; the bench has the figures on longer takes.
    assert mpjpe(smoothed.joints) < 0.4 * mpjpe(robust.joints)
    assert mpjpe(smoothed.joints) < 0.7 * mpjpe(streaming.joints)
    estimated = np.isfinite(smoothed.joints).all(-1)
    assert estimated.mean() > 0.95 and np.isfinite(smoothed.covariance[estimated]).all()
