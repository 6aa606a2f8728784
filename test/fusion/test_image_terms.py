"""The Gauss-Newton image terms: the numba kernel against the numpy reference, and both against finite differences."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import skelsplat_ros.fusion.gauss_newton as gauss_newton
import skelsplat_ros.fusion.output as output
from skelsplat_ros.fusion import fuse_streaming, preset_config
from skelsplat_ros.fusion.image_terms import image_terms_numba, image_terms_numpy
from skelsplat_ros.sim import make_scenario

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def evaluation_point():
    """Portrait rig with heavy detector noise (outliers, missing joints), means 3 cm off the truth, one joint put
    behind the first camera, varied weights and heatmap variances."""
    scenario = make_scenario("portrait", num_frames=6, noise="heavy", seed=4)
    rig = scenario.rig
    uv = rig.undistort(scenario.keypoints[..., :2])
    confidence = np.nan_to_num(scenario.keypoints[..., 2])
    rng = np.random.default_rng(0)
    means = scenario.ground_truth + rng.normal(scale=0.03, size=scenario.ground_truth.shape)
    means[2, 5] = rig.centres[0] - 0.2 * rig.R[0][2]  # on the optical axis, behind the camera
    weights = np.where(np.isfinite(uv).all(-1), confidence, 0.0)
    variance = 25.0 * np.clip(confidence, 0.05, None) ** -1.0
    return rig, means, np.nan_to_num(uv), weights, variance


def _arguments(point, sigma=0.03):
    rig, means, uv, weights, variance = point
    return rig.K, rig.R, rig.t, means, uv, weights, variance, sigma


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1])
def test_the_kernel_equals_the_reference(evaluation_point, sigma):
    reference = image_terms_numpy(*_arguments(evaluation_point, sigma))
    compiled = image_terms_numba(*_arguments(evaluation_point, sigma))
    assert (reference.depth[0, 2, 5] < 0) and (compiled.depth[0, 2, 5] < 0)
    for name, expected, got in zip(reference._fields, reference, compiled):
        assert got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_gradient_is_the_derivative_of_the_majoriser(evaluation_point):
    """At the point where it is built, the quadratic majoriser touches the image term, and its slope there is the
    image term's own: d image / d x = gradient along every axis (up to the frozen splat covariance, whose dependence
    on the mean the solver drops: checked with a splat so small that it hardly matters)."""
    rig, means, uv, weights, variance = evaluation_point
    sigma, step = 1e-4, 1e-7
    terms = image_terms_numba(*_arguments(evaluation_point, sigma))
    front = (terms.depth > 0).all(axis=0)
    for axis in range(3):
        shifted = means.copy()
        shifted[..., axis] += step
        moved = image_terms_numba(rig.K, rig.R, rig.t, shifted, uv, weights, variance, sigma)
        numeric = (moved.image - terms.image) / step
        np.testing.assert_allclose(numeric[front], terms.gradient[..., axis][front], rtol=1e-2, atol=1e-3)


def test_streaming_fusion_is_the_same_with_either_implementation(monkeypatch):
    scenario = make_scenario("portrait", num_frames=30, noise="heavy", seed=5)
    config = preset_config("default")
    args = (scenario.rig, scenario.skeleton, scenario.keypoints, config, scenario.fps)
    compiled = fuse_streaming(*args)
    monkeypatch.setattr(gauss_newton, "image_terms", image_terms_numpy)
    monkeypatch.setattr(output, "image_terms", image_terms_numpy)  # the views' verdict on held joints
    reference = fuse_streaming(*args)
    np.testing.assert_allclose(compiled.joints, reference.joints, atol=1e-7)
    # Output from the frame the bone lengths are known (fusion/output.py, rule 4).
    assert np.isfinite(compiled.joints[config.bone_warmup:]).mean() > 0.9


def test_offline_prefit_is_the_same_with_either_implementation(monkeypatch):
    scenario = make_scenario("lab", num_frames=40, noise="realistic", seed=5)
    config = replace(preset_config("default"), smoothing=None)
    from skelsplat_ros.fusion import fuse_offline

    args = (scenario.rig, scenario.skeleton, scenario.keypoints, config)
    compiled = fuse_offline(*args)
    monkeypatch.setattr(gauss_newton, "image_terms", image_terms_numpy)
    reference = fuse_offline(*args)
    np.testing.assert_allclose(compiled.joints, reference.joints, atol=1e-7)


def test_without_numba_the_reference_runs(evaluation_point, monkeypatch):
    import sys

    from skelsplat_ros.fusion import image_terms as module

    module._numba_available.cache_clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    try:
        calls = []
        monkeypatch.setattr(module, "image_terms_numpy", lambda *a: calls.append(a) or image_terms_numpy(*a))
        terms = module.image_terms(*_arguments(evaluation_point))
        assert calls and np.isfinite(terms.image).all()
    finally:
        module._numba_available.cache_clear()
