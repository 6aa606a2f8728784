"""The fixed-lag filter bank's numba kernels (``fusion/_jerk_kernel.py``) against their numpy references
(``fusion/jerk_filter.py``): one update and one backward step on hostile states, and whole fixed-lag outputs, single
person and tracked, equal to 1e-9 m whichever implementation runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import skelsplat_ros.fusion.jerk_filter as jerk_filter
from skelsplat_ros.fusion import preset_config
from skelsplat_ros.fusion.fixed_lag import fuse_fixed_lag
from skelsplat_ros.fusion.jerk_filter import (
    RESTRICTED_UPDATES, advance_numba, advance_numpy, jerk_density, process_noise, rts_step_numba, rts_step_numpy,
    transition,
)
from skelsplat_ros.sim import make_scenario
from skelsplat_ros.sim.scenes import make_multi_person_scenario
from skelsplat_ros.tracking.recording import track_streaming

pytest.importorskip("numba")

C, J = 7, 17


def _state(rng: np.random.Generator):
    """A bank mid-recording: random states and covariances, three joints not started (NaN means), evidence and
    update counts on both sides of the restricted updates."""
    mean = rng.normal(size=(C, J, 9))
    mean[:, 14:] = np.nan
    root = rng.normal(scale=0.1, size=(C, J, 9, 9))
    covariance = root @ root.swapaxes(-1, -2) + 1e-3 * np.eye(9)
    covariance[:, 14:] = np.eye(9)
    evidence = rng.uniform(0.5, 3.0, size=(C, J, 3))
    updates = rng.integers(0, 2 * RESTRICTED_UPDATES, size=J)
    return mean, covariance, evidence, updates


def _measurements(rng: np.random.Generator):
    """Points near the states and information of full rank, rank 2 (one view's ray) and rank 0, confident outliers
    (robust weights well below 1) and joints 14 and 15 starting."""
    points = rng.normal(size=(J, 3))
    points[3] += 5.0  # an outlier: its weight is small
    rays = rng.normal(size=(J, 3, 3))
    information = rays @ rays.swapaxes(-1, -2) * 1e4
    information[5] = np.diag([1e4, 1e4, 0.0])  # rank 2
    information[6] = 0.0
    measured = np.ones(J, dtype=bool)
    measured[[6, 16]] = False
    start = np.zeros(J, dtype=bool)
    start[[14, 15]] = True
    magnitude = np.abs(np.linalg.eigvalsh(information))
    rank = (magnitude > magnitude.max(-1, keepdims=True) * 3 * np.finfo(float).eps).sum(-1)
    return points, information, measured, start, rank


@pytest.mark.parametrize("predict", [True, False])
@pytest.mark.parametrize("robust_scale", [0.0, 3.0, "per joint"])
def test_the_update_kernel_equals_the_reference(predict, robust_scale):
    if robust_scale == "per joint":  # the outlier (joint 3) judged tighter, one joint without robust weights
        robust_scale = np.full(J, 3.0)
        robust_scale[[3, 8]] = 1.5
        robust_scale[9] = 0.0
    rng = np.random.default_rng(7)
    state = _state(rng)
    measurements = _measurements(rng)
    dt = 0.0347
    rest = (predict, transition(dt), process_noise(dt), jerk_density(np.geomspace(0.3, 30, C)), np.exp(-dt / 10),
            np.diag(np.repeat([1.0, 4.0, 400.0], 3)), *measurements, robust_scale)
    reference_state = tuple(np.array(a) for a in state)
    compiled_state = tuple(np.array(a) for a in state)
    reference = advance_numpy(*reference_state, *rest)
    compiled = advance_numba(*compiled_state, *rest)
    for name, expected, got in zip(("mean", "covariance", "next_mean", "next_covariance"), reference, compiled):
        if expected is None:
            assert got is None, name
            continue
        assert got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=name)
    # In place: the evidence and the update counts (the outlier's robust weight shows in its chi^2 term).
    np.testing.assert_allclose(compiled_state[2], reference_state[2], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(compiled_state[3], reference_state[3])
    assert not np.array_equal(reference_state[3], state[3])
    # The inputs are left as they were (the bank's kept updates share them).
    np.testing.assert_array_equal(compiled_state[0], state[0])
    np.testing.assert_array_equal(compiled_state[1], state[1])


def test_the_backward_step_kernel_equals_the_reference():
    """Gains kept from an earlier step are used as they are; the missing ones of the chosen candidates are worked
    out and kept, the same in both."""
    rng = np.random.default_rng(8)
    mean, covariance, _, _ = _state(rng)
    step = transition(0.0347)
    predicted = step @ covariance @ step.T + 1e-4 * np.eye(9)
    smoothed_mean, smoothed_covariance = mean[2] + 0.1, covariance[4] + 0.01 * np.eye(9)
    choice = rng.integers(0, C, size=J)
    kept = rng.normal(scale=0.5, size=(C, J, 9, 9))
    has_gain = np.zeros((C, J), dtype=bool)
    has_gain[choice[:5], np.arange(5)] = True  # the first five joints' gains are kept ones
    results = []
    for implementation in (rts_step_numpy, rts_step_numba):
        gain, known = kept.copy(), has_gain.copy()
        results.append(implementation(smoothed_mean, smoothed_covariance, mean, covariance, step, mean - 0.05,
                                      predicted, gain, known, choice) + (gain, known))
    (*expected, expected_gain, expected_known), (*got, got_gain, got_known) = results
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got_known, expected_known)
    assert got_known[choice, np.arange(J)].all() and got_known.sum() == J
    np.testing.assert_allclose(got_gain[got_known], expected_gain[expected_known], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got_gain[choice[:5], np.arange(5)], kept[choice[:5], np.arange(5)])
    # A computed gain is P_f F^T P_pred^-1.
    c, j = choice[9], 9
    np.testing.assert_allclose(got_gain[c, j], covariance[c, j] @ step.T @ np.linalg.inv(predicted[c, j]), atol=1e-9)


def _with_reference(monkeypatch) -> None:
    monkeypatch.setattr(jerk_filter, "advance", advance_numpy)
    monkeypatch.setattr(jerk_filter, "rts_step", rts_step_numpy)


@pytest.mark.parametrize("rig, noise", [("robot", "hard"), ("lab", "realistic")])
def test_fixed_lag_output_is_the_same_with_either_implementation(monkeypatch, rig, noise):
    """Whole recordings: the robot rig with gross detector errors (robust weights, filters started late on a narrow
    baseline) and a 4-camera rig; at lag 0 and 0.2 s, joints within 1e-9 m and covariances within 1e-9 m^2."""
    scenario = make_scenario(rig, num_frames=60, noise=noise, seed=3)
    config = preset_config("default")
    args = (scenario.rig, scenario.skeleton, scenario.keypoints, config, scenario.fps)
    compiled = [fuse_fixed_lag(*args, lag=lag) for lag in (0.0, 0.2)]
    _with_reference(monkeypatch)
    reference = [fuse_fixed_lag(*args, lag=lag) for lag in (0.0, 0.2)]
    for got, expected in zip(compiled, reference):
        np.testing.assert_array_equal(np.isnan(got.joints), np.isnan(expected.joints))
        np.testing.assert_allclose(got.joints, expected.joints, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.covariance, expected.covariance, rtol=0, atol=1e-9)
        assert np.isfinite(got.joints).mean() > 0.5


def test_tracked_fixed_lag_output_is_the_same_with_either_implementation(monkeypatch):
    """Three people entering and leaving, the node's settings (complete skeletons), lag 0.2 s."""
    scene = make_multi_person_scenario("lab", 3, num_frames=60, noise="realistic", seed=1)
    config = replace(preset_config("default", "skelsplat", mode="streaming"), complete=True)
    args = (scene.rig, scene.skeleton, scene.keypoints, config, scene.fps)
    compiled = track_streaming(*args, lag=0.2)
    _with_reference(monkeypatch)
    reference = track_streaming(*args, lag=0.2)
    np.testing.assert_array_equal(compiled.track_ids, reference.track_ids)
    np.testing.assert_array_equal(np.isnan(compiled.joints), np.isnan(reference.joints))
    np.testing.assert_allclose(compiled.joints, reference.joints, rtol=0, atol=1e-9)
    np.testing.assert_allclose(compiled.covariance, reference.covariance, rtol=0, atol=1e-9)
    assert compiled.num_tracks >= 2


def test_without_numba_the_references_run(monkeypatch):
    import sys

    from skelsplat_ros.fusion import _numba
    from skelsplat_ros.fusion.jerk_filter import JerkFilterBank
    from skelsplat_ros.fusion.smoothing import SmoothingConfig

    _numba.numba_available.cache_clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    try:
        calls = []
        monkeypatch.setattr(jerk_filter, "advance_numpy", lambda *a: calls.append("advance") or advance_numpy(*a))
        monkeypatch.setattr(jerk_filter, "rts_step_numpy", lambda *a: calls.append("rts") or rts_step_numpy(*a))
        bank = JerkFilterBank(2, SmoothingConfig())
        for f in range(3):
            bank.update(f / 30.0, np.array([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]]) + 0.01 * f, np.eye(3)[None] * 1e4)
        mean, _ = bank.smoothed(0.0)
        assert calls.count("advance") == 3 and calls.count("rts") == 2 and np.isfinite(mean).all()
    finally:
        _numba.numba_available.cache_clear()
