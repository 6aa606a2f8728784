"""The robust bundle adjustment on synthetic observations with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.calibration.bundle import BundleSettings, Observations, ScaleAnchor, bundle_adjust, reprojection
from skelsplat_ros.calibration.refine import rig_change
from skelsplat_ros.geometry.camera import Camera, CameraRig
from skelsplat_ros.geometry.triangulation import project_pinhole, triangulate_dlt
from skelsplat_ros.sim import make_rig

from skelsplat_ros.sim import disturb_rig


def _problem(noise: float = 0.0, outliers: float = 0.0, seed: int = 0):
    """A lab rig, 400 points in the room seen by every camera, pixels with ``noise`` px and a fraction of
    ``outliers`` moved by 50-150 px."""
    rng = np.random.default_rng(seed)
    rig = make_rig("lab", seed=seed)
    points = rng.uniform([-1.5, -1.5, 0.0], [1.5, 1.5, 1.9], (400, 3))
    uv = np.moveaxis(project_pinhole(rig, points), 0, 1)  # [P, V, 2]
    uv = uv + rng.normal(0.0, noise, uv.shape)
    wrong = rng.random(uv.shape[:2]) < outliers
    angle = rng.uniform(0, 2 * np.pi, uv.shape[:2])
    uv[wrong] += (rng.uniform(50, 150, uv.shape[:2])[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1))[wrong]
    return rig, points, Observations(uv, np.ones(uv.shape[:2])), wrong


def _start(rig, observations):
    uv = np.moveaxis(observations.uv, 1, 0)
    return triangulate_dlt(rig, uv, observations.weight.T)


def test_exact_observations_give_back_the_true_cameras_and_leave_the_held_ones_alone():
    rig, _, observations, _ = _problem()
    rough = disturb_rig(rig, [2, 3], seed=1)
    result = bundle_adjust(rough, observations, _start(rough, observations), np.array([False, False, True, True]),
                           BundleSettings(noise=1.0))
    assert result.converged
    for v in (2, 3):
        rotation, translation = rig_change(rig[v], result.rig[v])
        assert rotation < 1e-4 and translation < 1e-5, (v, rotation, translation)
    for v in (0, 1):
        assert np.array_equal(result.rig[v].R, rough[v].R) and np.array_equal(result.rig[v].t, rough[v].t)
    assert np.nanmax(result.residuals) < 1e-4


def test_confident_outliers_do_not_pull_the_cameras():
    results = {}
    for outliers in (0.0, 0.1):  # the same noise, then a tenth of the pixels moved 50-150 px
        rig, _, observations, wrong = _problem(noise=1.0, outliers=outliers, seed=2)
        rough = disturb_rig(rig, [1, 2, 3], seed=3)
        anchor = ScaleAnchor(0, 1, float(np.linalg.norm(rig.centres[0] - rig.centres[1])))
        results[outliers] = bundle_adjust(rough, observations, _start(rough, observations),
                                          np.array([False, True, True, True]), BundleSettings(noise=1.0), anchor)
    clean, dirty = results[0.0], results[0.1]
    for v in (1, 2, 3):
        rotation, translation = rig_change(rig[v], dirty.rig[v])
        # Within the posterior's reach of the truth, and where the outlier-free data put the camera.
        assert rotation < 3 * dirty.camera_std[v, 0] and translation < 3 * dirty.camera_std[v, 1]
        rotation, translation = rig_change(clean.rig[v], dirty.rig[v])
        assert rotation < 0.5 * clean.camera_std[v, 0] and translation < 0.5 * clean.camera_std[v, 1]
    assert np.median(dirty.residuals[wrong]) > 40.0  # the outliers stay outliers
    assert np.median(dirty.residuals[~wrong]) < 1.5


def test_a_scale_anchor_holds_the_distance_between_two_cameras():
    rig, _, observations, _ = _problem(noise=0.5, seed=4)
    rough = disturb_rig(rig, [1, 2, 3], seed=5)
    anchor = ScaleAnchor(0, 2, 7.5)  # not the true distance: the rig comes out scaled to it
    result = bundle_adjust(rough, observations, _start(rough, observations), np.array([False, True, True, True]),
                           BundleSettings(noise=0.5), anchor)
    assert np.linalg.norm(result.rig.centres[0] - result.rig.centres[2]) == pytest.approx(7.5, abs=2e-3)
    truth = np.linalg.norm(rig.centres[0] - rig.centres[2])
    scale = 7.5 / truth
    assert np.linalg.norm(result.rig.centres[1] - result.rig.centres[0]) == pytest.approx(
        scale * np.linalg.norm(rig.centres[1] - rig.centres[0]), rel=1e-3)


def test_focal_refinement_finds_a_wrong_focal_length_and_its_prior_holds_a_right_one():
    rig, points, observations, _ = _problem(noise=0.3, seed=6)
    rough = disturb_rig(rig, [2], seed=7, degrees=(2.0, 3.0), metres=(0.05, 0.1))
    wrong_focal = rough.cameras[2]
    K = wrong_focal.K.copy()
    K[0, 0] *= 1.03
    K[1, 1] *= 1.03
    cameras = list(rough)
    cameras[2] = Camera(wrong_focal.name, K, wrong_focal.R, wrong_focal.t, wrong_focal.size)
    rough = CameraRig(cameras)
    free = np.array([False, False, True, False])
    refined = bundle_adjust(rough, observations, _start(rough, observations), free,
                            BundleSettings(noise=0.3, focal_sigma=0.1))
    assert refined.rig[2].K[0, 0] == pytest.approx(rig[2].K[0, 0], rel=2e-3)
    assert rig_change(rig[2], refined.rig[2])[0] < 0.05
    # Without focal refinement the wrong focal length stays, and the fit is worse.
    fixed = bundle_adjust(rough, observations, _start(rough, observations), free, BundleSettings(noise=0.3))
    assert fixed.rig[2].K[0, 0] == rough[2].K[0, 0]
    assert np.nanmedian(fixed.residuals) > np.nanmedian(refined.residuals)
    # A tight prior holds the given focal length, even a wrong one.
    tight = bundle_adjust(rough, observations, _start(rough, observations), free,
                          BundleSettings(noise=0.3, focal_sigma=1e-4))
    assert tight.rig[2].K[0, 0] == pytest.approx(rough[2].K[0, 0], rel=1e-3)


def test_reprojection_is_nan_where_nothing_was_observed():
    rig, points, observations, _ = _problem()
    observations.weight[:5, 1] = 0.0
    errors = reprojection(rig, points, observations)
    assert np.isnan(errors[:5, 1]).all() and np.nanmax(errors) < 1e-6
