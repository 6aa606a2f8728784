"""The Gauss-Newton minimiser: the compiled loop (``fusion/_image_kernel.c``, :func:`minimise_c`) against the numpy
reference (:func:`minimise_numpy`) on objectives with every kind of term, frozen joints, the convergence stop and the
per-joint fallback; the kernel checks its buffers; the elimination order keeps a tree's zeros."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import skelsplat_ros.fusion.gauss_newton as gauss_newton
from skelsplat_ros.fusion import preset_config
from skelsplat_ros.fusion.gauss_newton import (
    GaussNewtonObjective,
    _elimination_positions,
    _kernel_arguments,
    minimise_c,
    minimise_numpy,
    sigma_schedule,
)
from skelsplat_ros.fusion.objective import EPS2D, MAX_ALPHA, BonePrior, detection_weights, heatmap_variance_growth
from skelsplat_ros.sim import make_scenario

# A build without a C compiler has no extension; test/test_packaging.py fails where one should have been built.
extension = pytest.importorskip("skelsplat_ros.fusion._image_kernel")


def _objective(priors: str, seed: int = 3):
    """Lab rig, 12 frames with heavy detector noise (outliers, missing joints), means 3 cm off the truth, three joints
    frozen; with ``priors`` "all": bone lengths per frame (one bone unknown), a prediction per frame (one joint
    without) at a per-frame scale, and an anchor on 10 joints with random information; "none": the image terms alone.
    Returns the objective, the start [F, J, 3] and the refinement settings."""
    scenario = make_scenario("lab", num_frames=12, noise="heavy", seed=seed)
    rig, skeleton, truth = scenario.rig, scenario.skeleton, scenario.ground_truth
    uv = rig.undistort(scenario.keypoints[..., :2])
    confidence = np.nan_to_num(scenario.keypoints[..., 2])
    config = replace(preset_config("default").streaming_refine, bone_length_weight=1.0, temporal_weight=0.5)
    rng = np.random.default_rng(seed)
    frames, joints = truth.shape[:2]
    init = truth + rng.normal(scale=0.03, size=truth.shape)
    init[3, 4] = np.nan
    init[5, :2] = np.nan
    bones = skeleton.bone_array
    terms = {}
    if priors == "all":
        lengths = np.linalg.norm(truth[:, bones[:, 0]] - truth[:, bones[:, 1]], axis=-1) + 0.01
        lengths[:, 2] = np.nan
        prediction = truth + 0.02
        prediction[2, 7] = np.nan
        anchor = truth + 0.01
        anchor[:, 10:] = np.nan
        spread = rng.normal(size=(frames, joints, 3, 3))
        terms = dict(bone_prior=BonePrior(lengths=lengths, sigmas=np.full(lengths.shape, 0.02)), bone_weight=1.0,
                     prediction=prediction, temporal_weight=0.5,
                     temporal_scale=config.temporal_sigma * rng.uniform(1.0, 2.0, size=(frames, 1)),
                     anchor=anchor, anchor_information=100.0 * np.einsum("fjab,fjcb->fjac", spread, spread))
    else:
        terms = dict(bone_prior=None, bone_weight=0.0, prediction=None, temporal_weight=0.0, temporal_scale=1.0)
    objective = GaussNewtonObjective(
        rig, uv, detection_weights(uv, confidence, config),
        config.target_sigma_px**2 * heatmap_variance_growth(confidence, config),
        active=np.isfinite(init).all(-1), bones=bones, **terms)
    return objective, np.nan_to_num(init), config


@pytest.mark.parametrize("priors", ["all", "none"])
@pytest.mark.parametrize("schedule, tolerance", [("narrowing", 0.0), ("fixed", 1e-4), ("long", 0.0)])
def test_the_compiled_minimiser_equals_the_reference(priors, schedule, tolerance, monkeypatch):
    """Same means to rounding; the long schedule without a stop runs converged frames on, whose steps fail by a hair:
    the kernel hands them back for the per-joint fallback, and they go on from there."""
    objective, start, config = _objective(priors)
    sigmas = {"narrowing": sigma_schedule(0.1, config.init_sigma, 5), "fixed": [config.init_sigma] * 8,
              "long": [config.init_sigma] * 12}[schedule]
    fallbacks = []
    descent = gauss_newton._per_joint_descent
    monkeypatch.setattr(gauss_newton, "_per_joint_descent", lambda o, m, s: fallbacks.append(len(m)) or descent(o, m, s))
    compiled = minimise_c(objective, start, sigmas, tolerance)
    compiled_fallbacks = list(fallbacks)
    reference = minimise_numpy(objective, start, sigmas, tolerance)
    np.testing.assert_allclose(compiled, reference, rtol=0, atol=1e-9)
    frozen = ~objective.active
    np.testing.assert_array_equal(compiled[frozen], start[frozen])
    energy = objective.energy(compiled, sigmas[-1])
    assert (energy < objective.energy(start, sigmas[-1])).all()
    if schedule == "long":
        assert compiled_fallbacks and sum(fallbacks) == 2 * sum(compiled_fallbacks)


def test_the_compiled_minimiser_takes_a_subset_of_frames_as_its_own_objective():
    """Frames are independent: minimising frames 2 and 5 alone gives their rows of the whole batch's result; a
    start in any memory layout gives the same means, and is left as it was."""
    objective, start, config = _objective("all")
    sigmas = sigma_schedule(0.1, config.init_sigma, 5)
    whole = minimise_c(objective, start, sigmas, 1e-4)
    keep = np.array([2, 5])
    np.testing.assert_array_equal(minimise_c(objective.frames(keep), start[keep], sigmas, 1e-4), whole[keep])
    fortran = np.asfortranarray(start)
    np.testing.assert_array_equal(minimise_c(objective, fortran, sigmas, 1e-4), whole)
    np.testing.assert_array_equal(fortran, start)


def test_the_compiled_minimiser_checks_its_buffers():
    """Sizes that do not match, a bone joint or an elimination position out of range, or positions that are not a
    permutation: a ValueError, and the means untouched."""
    objective, start, config = _objective("all")
    arguments = list(_kernel_arguments(objective))
    sigmas = np.array([config.init_sigma])

    def run(args, means):
        stopped = np.empty(len(means), dtype=np.int64)
        extension.minimise(*args, sigmas, 0.0, 4, EPS2D, MAX_ALPHA, means, stopped)
        return means

    assert np.isfinite(run(arguments, start.copy())).all()
    bones, positions = 6, 15
    broken = {
        3: arguments[3][:, :2],  # uv of 2 frames
        7: arguments[7][:, :3],  # bone mask of 3 bones
        11: arguments[11][:5],  # prediction of 5 frames
        bones: np.where(arguments[bones] == 0, len(start[0]), arguments[bones]),  # a joint index past the last
        positions: np.zeros_like(arguments[positions]),  # not a permutation
    }
    for index, value in broken.items():
        wrong = list(arguments)
        wrong[index] = np.ascontiguousarray(value)
        means = start.copy()
        with pytest.raises(ValueError, match="sizes do not match"):
            run(wrong, means)
        np.testing.assert_array_equal(means, start)
    with pytest.raises(ValueError, match="sizes do not match"):
        run(arguments, start[:-1].copy())


@pytest.mark.parametrize("bones", [
    [(0, 1), (1, 2), (2, 3), (1, 4), (4, 5), (0, 6), (6, 7)],  # a tree
    [(0, 1), (1, 2), (2, 3), (3, 0), (2, 4)],  # a cycle
])
def test_the_elimination_order_keeps_a_trees_zeros(bones):
    """Greedy minimum degree: on a tree each joint, when its turn comes, has at most one neighbour left (the
    factorisation adds no nonzero block); any bone graph gives a permutation of the joints."""
    num_joints = 1 + max(max(bone) for bone in bones)
    positions = _elimination_positions(num_joints, np.array(bones, dtype=np.int64).tobytes())
    assert sorted(positions.tolist()) == list(range(num_joints))
    if len(bones) == num_joints - 1:
        for first, second in bones:
            earlier = first if positions[first] < positions[second] else second
            later_neighbours = [b for bone in bones for a, b in (bone, bone[::-1])
                                if a == earlier and positions[b] > positions[earlier]]
            assert len(later_neighbours) == 1


def test_the_skeletons_tree_factors_without_fill():
    """The h36m17 skeleton (a tree) in its elimination order: the Cholesky factor of a normal matrix with its pattern
    has nonzero blocks only where the matrix has them."""
    objective, _, _ = _objective("none")
    bones, joints = objective.bones, objective.num_joints
    positions = _elimination_positions(joints, np.asarray(bones, dtype=np.int64).tobytes())
    pattern = np.eye(joints, dtype=bool)
    pattern[positions[bones[:, 0]], positions[bones[:, 1]]] = True
    pattern[positions[bones[:, 1]], positions[bones[:, 0]]] = True
    rng = np.random.default_rng(0)
    matrix = np.where(pattern, rng.uniform(0.1, 1.0, pattern.shape), 0.0)
    matrix = matrix + matrix.T + 2 * joints * np.eye(joints)
    factor = np.linalg.cholesky(matrix)
    assert not (np.abs(factor) > 1e-12)[~np.tril(pattern)].any()


def test_the_fits_use_the_compiled_minimiser_where_it_is_built(monkeypatch):
    """``minimise`` takes the kernel when the extension has it, the reference otherwise."""
    objective, start, config = _objective("none")
    sigmas = [config.init_sigma] * 3
    np.testing.assert_array_equal(gauss_newton.minimise(objective, start, sigmas), minimise_c(objective, start, sigmas))
    monkeypatch.setattr(gauss_newton, "_compiled_minimise", lambda: None)
    np.testing.assert_array_equal(gauss_newton.minimise(objective, start, sigmas),
                                  minimise_numpy(objective, start, sigmas))
