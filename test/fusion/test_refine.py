"""The refinement: Adam through the renderers and Gauss-Newton on the closed-form objective, on known ground truth."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from skelsplat_ros.fusion import preset_config
from skelsplat_ros.fusion.adam import Objective
from skelsplat_ros.fusion.gauss_newton import (
    GaussNewtonObjective,
    minimise,
    minimise_numpy,
    sigma_schedule,
)
from skelsplat_ros.fusion.objective import (
    BonePrior,
    RefineConfig,
    TemporalPrior,
    detection_weights,
    heatmap_variance_growth,
)
from skelsplat_ros.fusion.refine import refine
from skelsplat_ros.geometry.triangulation import (
    project_pinhole,
    project_with_jacobian,
    triangulate_dlt,
)
from skelsplat_ros.sim import generate_motion, make_rig
from skelsplat_ros.skeleton.models import get_skeleton

SKELETON = get_skeleton("h36m17")


@pytest.fixture(scope="module")
def scene():
    """Lab rig, 4 frames of motion and their exact projections (pinhole: the rig has no distortion)."""
    rig = make_rig("lab", seed=3)
    truth = generate_motion(SKELETON, 4, seed=3)
    uv = project_pinhole(rig, truth)
    confidence = np.full(uv.shape[:-1], 0.9)
    return rig, truth, uv, confidence


def _gauss_newton(**changes) -> RefineConfig:
    return replace(preset_config("default").streaming_refine, temporal_weight=0.0, bone_length_weight=0.0, **changes)


def _gn_objective(rig, uv, confidence, config, init, bone_prior=None, prediction=None, temporal_scale=1.0):
    return GaussNewtonObjective(
        rig, uv, detection_weights(uv, confidence, config),
        config.target_sigma_px**2 * heatmap_variance_growth(confidence, config),
        active=np.isfinite(init).all(-1), bones=SKELETON.bone_array, bone_prior=bone_prior,
        bone_weight=config.bone_length_weight, prediction=prediction, temporal_weight=config.temporal_weight,
        temporal_scale=temporal_scale,
    )


def _torch_objective(rig, uv, confidence, config, means, bone_prior=None, temporal=None) -> np.ndarray:
    """The Adam objective (analytic renderer, splats of fixed isotropic size) per frame at ``means``."""
    adam = replace(config, optimizer="adam", backend="analytic")
    objective = Objective(rig, SKELETON, adam, uv, confidence, means, bone_prior, temporal)
    with torch.no_grad():
        image, _ = objective.image_term()
        return (image + objective.prior_terms()).double().numpy()


# --- devices ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset, backend", [("default", "analytic"), ("paper", "raster")])
def test_every_tensor_of_the_adam_objective_is_on_the_configured_device(scene, monkeypatch, preset, backend):
    """The device reaches every tensor: on torch's ``meta`` device (shapes only, no data), any tensor left on the
    CPU makes an operation fail, so the whole objective and its gradient run there only if nothing is left behind."""
    import skelsplat_ros.fusion.adam as adam
    from skelsplat_ros.fusion.renderers.raster import RasterRenderer

    rig, truth, uv, confidence = scene
    asked = []
    monkeypatch.setattr(adam, "resolve_device", lambda name: asked.append(name) or torch.device("meta"))
    config = replace(preset_config(preset, backend=backend, device="cuda").refine, temporal_weight=1.0,
                     bone_length_weight=1.0)
    bones = len(SKELETON.bone_array)
    objective = Objective(rig, SKELETON, config, uv, confidence, truth,
                          BonePrior(np.full(bones, 0.3), np.full(bones, 0.01)), TemporalPrior("predict", truth))
    assert asked == ["cuda"] and objective.device.type == "meta"
    if backend == "raster":
        objective.renderer = RasterRenderer(patch_radius=8)  # its automatic radius reads tensor values
    objective.splats.means.requires_grad_(True)
    objective.splats.log_scales.requires_grad_(True)
    image, per_view = objective.image_term()
    (image + objective.prior_terms()).sum().backward()
    for tensor in (image, per_view, objective.splats.means.grad, objective.splats.log_scales.grad,
                   objective.targets.centres, objective.cameras.K, objective.weights):
        assert tensor.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["analytic", "raster"])
def test_adam_on_cuda_matches_the_cpu(scene, backend):
    rig, truth, uv, confidence = scene
    rng = np.random.default_rng(4)
    init = truth + rng.normal(0.0, 0.02, truth.shape)
    base = replace(preset_config("default", backend=backend).refine, temporal_weight=0.0, bone_length_weight=0.0)
    on_cpu = refine(rig, SKELETON, replace(base, device="cpu"), uv, confidence, init)
    on_gpu = refine(rig, SKELETON, replace(base, device="cuda"), uv, confidence, init)
    np.testing.assert_allclose(on_gpu.means, on_cpu.means, atol=1e-4)
    np.testing.assert_allclose(on_gpu.reprojection, on_cpu.reprojection, atol=0.05)


# --- covariances ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "gauss_newton"])
def test_covariance_is_the_position_uncertainty_not_the_splat_shape(scene, optimizer):
    rig, truth, uv, confidence = scene
    config = preset_config("default", optimizer=optimizer, device="cpu").refine
    config = replace(config, temporal_weight=0.0, bone_length_weight=0.0, steps=5)
    one_view = uv.copy()
    one_view[1:, :, 0] = np.nan  # joint 0 is seen by view 0 only
    result = refine(rig, SKELETON, config, one_view, confidence, truth)
    # Joints seen by all four views: 5 px heatmaps at ~4.3 m with f ~ 1070 px are ~20 mm per view, 10-15 mm over
    # four; the splats are ~30 mm wide: their shape is kept apart, it is not the uncertainty of the position.
    std = np.sqrt(np.linalg.eigvalsh(result.covariances[:, 1:]))
    assert 0.005 < std.min() and std.max() < 0.02
    if optimizer == "adam":
        assert np.sqrt(np.linalg.eigvalsh(result.splat_covariances).min()) > 0.025
    # Joint 0: unknown along the ray of its only view.
    values, vectors = np.linalg.eigh(result.covariances[:, 0])
    rays = result.means[:, 0] - rig[0].centre
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    assert (values[:, -1] > 1.0).all()
    assert (np.abs(np.einsum("fa,fa->f", vectors[:, :, -1], rays)) > 0.99).all()


# --- Gauss-Newton -----------------------------------------------------------------------------------------------


def test_project_with_jacobian_matches_finite_differences(scene):
    rig, truth, uv, _ = scene
    projected, jac, depth = project_with_jacobian(rig.K, rig.R, rig.t, truth)
    np.testing.assert_allclose(projected, uv, atol=1e-9)
    assert (depth > 0).all()
    step = 1e-6
    for axis in range(3):
        shifted = truth.copy()
        shifted[..., axis] += step
        numeric = (project_pinhole(rig, shifted) - uv) / step
        np.testing.assert_allclose(jac[..., axis], numeric, rtol=1e-4, atol=1e-3)


def test_gauss_newton_objective_is_the_adam_objective(scene):
    """Same numbers as the torch objective for fixed isotropic splats: image, bone and prediction terms."""
    rig, truth, uv, confidence = scene
    config = replace(_gauss_newton(), bone_length_weight=1.0, temporal_weight=0.5)
    rng = np.random.default_rng(0)
    means = truth + rng.normal(scale=0.02, size=truth.shape)
    lengths = np.linalg.norm(truth[0, SKELETON.bone_array[:, 0]] - truth[0, SKELETON.bone_array[:, 1]], axis=-1)
    bones = BonePrior(lengths=lengths + 0.01, sigmas=np.full(len(lengths), 0.02))
    prediction = truth + 0.03
    gn = _gn_objective(rig, uv, confidence, config, means, bones, prediction, config.temporal_sigma * 2.0)
    reference = _torch_objective(
        rig, uv, confidence, config, means, bones, TemporalPrior("predict", prediction, sigma_scale=2.0)
    )
    np.testing.assert_allclose(gn.energy(means, config.init_sigma), reference, rtol=2e-4)


def test_gauss_newton_recovers_the_truth_from_5_cm_off(scene):
    rig, truth, uv, confidence = scene
    config = _gauss_newton(steps=8, step_tolerance=0.0)  # the solver's precision, not the streaming stop's
    start = truth + np.random.default_rng(1).normal(scale=0.05 / np.sqrt(3), size=truth.shape)
    result = refine(rig, SKELETON, config, uv, confidence, start)
    error = np.linalg.norm(result.means - truth, axis=-1)
    assert error.max() < 5e-4, error.max()
    assert np.nanmax(result.reprojection) < 0.1
    assert (result.agreement > 0.99).all()
    assert result.covariances.shape == truth.shape + (3,)
    assert (np.linalg.eigvalsh(result.covariances) > 0).all()


def test_a_fit_without_covariances_is_the_same_fit(scene):
    """``covariances=False`` (the fixed lag's read-out, which has its own) leaves out only the covariances."""
    rig, truth, uv, confidence = scene
    start = truth + np.random.default_rng(2).normal(scale=0.02, size=truth.shape)
    full = refine(rig, SKELETON, _gauss_newton(), uv, confidence, start)
    bare = refine(rig, SKELETON, _gauss_newton(), uv, confidence, start, covariances=False)
    assert bare.covariances is None
    for name in ("means", "reprojection", "agreement", "final_loss"):
        np.testing.assert_array_equal(getattr(bare, name), getattr(full, name))


def test_each_iteration_lowers_the_objective(scene):
    rig, truth, uv, confidence = scene
    config = _gauss_newton()
    noisy = uv + np.random.default_rng(2).normal(scale=3.0, size=uv.shape)
    start = truth + 0.03
    objective = _gn_objective(rig, noisy, confidence, config, start)
    means, energies = start, [objective.energy(start, config.init_sigma)]
    for _ in range(6):
        means = minimise(objective, means, [config.init_sigma])
        energies.append(objective.energy(means, config.init_sigma))
    assert (np.diff(np.stack(energies), axis=0) <= 1e-9).all()
    assert (energies[-1] < 0.5 * energies[0]).all()


def test_gauss_newton_reaches_the_adam_minimum(scene):
    """On noisy keypoints, Gauss-Newton ends at least as low on the shared objective as 400 Adam steps."""
    rig, truth, uv, confidence = scene
    noisy = uv + np.random.default_rng(3).normal(scale=2.0, size=uv.shape)
    config = _gauss_newton(steps=10)
    gn = refine(rig, SKELETON, config, noisy, confidence, truth)
    adam = replace(
        config, optimizer="adam", backend="analytic", steps=400, lr_schedule_iterations=400, position_lr=0.002,
        position_lr_final=0.0001,
    )
    reference = refine(rig, SKELETON, adam, noisy, confidence, truth)
    gn_value = _torch_objective(rig, noisy, confidence, config, gn.means)
    adam_value = _torch_objective(rig, noisy, confidence, config, reference.means)
    assert (gn_value <= adam_value + 1e-3 * np.abs(adam_value)).all(), (gn_value, adam_value)
    assert np.abs(gn.means - reference.means).max() < 2e-3


def test_gauss_newton_ignores_a_view_off_by_80_px(scene):
    rig, truth, uv, confidence = scene
    corrupted = uv.copy()
    corrupted[1, :, 5] += 80.0  # one view of the left hip, every frame
    dlt = triangulate_dlt(rig, corrupted)
    assert np.linalg.norm(dlt[:, 5] - truth[:, 5], axis=-1).min() > 0.02
    result = refine(rig, SKELETON, _gauss_newton(steps=8), corrupted, confidence, truth + 0.02)
    assert np.linalg.norm(result.means[:, 5] - truth[:, 5], axis=-1).max() < 2e-3
    assert (result.agreement[1, :, 5] < 1e-3).all()
    assert (result.agreement[[0, 2, 3], :, 5] > 0.99).all()


def test_bone_prior_holds_a_joint_seen_by_one_view(scene):
    """A wrist seen by a single view has no depth: the bone prior and the prediction fill it in."""
    rig, truth, uv, confidence = scene
    conf = confidence.copy()
    wrist = SKELETON.joint_names.index("l_wrist")
    conf[1:, :, wrist] = 0.0
    lengths = np.linalg.norm(truth[0, SKELETON.bone_array[:, 0]] - truth[0, SKELETON.bone_array[:, 1]], axis=-1)
    bones = BonePrior(lengths=lengths, sigmas=np.full(len(lengths), 0.005))
    config = replace(_gauss_newton(steps=8), bone_length_weight=1.0, temporal_weight=0.03)
    start = truth.copy()
    start[:, wrist] += np.array([0.1, -0.1, 0.05])
    temporal = TemporalPrior("predict", truth + 0.005)
    result = refine(rig, SKELETON, config, uv, conf, start, bones, temporal)
    assert np.linalg.norm(result.means[:, wrist] - truth[:, wrist], axis=-1).max() < 0.02


def test_an_anchor_fixes_a_joint_only_along_the_direction_it_informs(scene):
    """Streaming's depth filter anchors a joint along the depth its views barely fix (``TemporalPrior.anchor``, an
    information matrix): a wrist one view sees, started 10 cm off along that view's ray, goes to the anchor's depth
    along the ray, while across it the view places it, not the anchor (5 cm off across)."""
    rig, truth, uv, confidence = scene
    conf = confidence.copy()
    wrist = SKELETON.joint_names.index("l_wrist")
    conf[1:, :, wrist] = 0.0
    centre = -rig.R[0].T @ rig.t[0]
    ray = truth[:, wrist] - centre
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)  # [F, 3]
    across = np.cross(ray, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across, axis=-1, keepdims=True)
    anchor, information = np.full(truth.shape, np.nan), np.zeros(truth.shape + (3,))
    anchor[:, wrist] = truth[:, wrist] + 0.05 * across
    information[:, wrist] = ray[:, :, None] * ray[:, None, :] / 0.01**2
    start = truth.copy()
    start[:, wrist] += 0.1 * ray
    config = _gauss_newton(steps=8)
    free = refine(rig, SKELETON, config, uv, conf, start)
    held = refine(rig, SKELETON, config, uv, conf, start,
                  temporal=TemporalPrior("predict", anchor=anchor, anchor_information=information))
    assert np.linalg.norm(free.means[:, wrist] - truth[:, wrist], axis=-1).min() > 0.05  # nothing else fixes depth
    assert np.linalg.norm(held.means[:, wrist] - truth[:, wrist], axis=-1).max() < 0.005
    others = np.arange(SKELETON.num_joints) != wrist
    np.testing.assert_allclose(held.means[:, others], free.means[:, others], atol=1e-6)
    with pytest.raises(ValueError, match="gauss_newton"):
        refine(rig, SKELETON, replace(config, optimizer="adam", backend="analytic"), uv, conf, start,
               temporal=TemporalPrior("predict", anchor=anchor, anchor_information=information))


class _OneJointGoesUphill(GaussNewtonObjective):
    """The objective with the step of one joint replaced by a move away from its views (a failed step)."""

    def __init__(self, *args, joint: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.joint = joint

    def step(self, means, sigma):
        energy, delta = super().step(means, sigma)
        delta[:, self.joint] = np.array([2.0, -2.0, 1.0])
        return energy, delta


def test_one_joint_whose_step_fails_does_not_freeze_its_frame(scene):
    """Per-joint acceptance: the frame still converges (the knee too, through its own per-joint steps) and the
    objective never rises. On the numpy reference, whose steps the objective here can spoil (the compiled loop's
    hand-back to the same fallback: test_minimise_kernel.py)."""
    rig, truth, uv, confidence = scene
    lengths = np.linalg.norm(truth[0, SKELETON.bone_array[:, 0]] - truth[0, SKELETON.bone_array[:, 1]], axis=-1)
    bones = BonePrior(lengths=lengths, sigmas=np.full(len(lengths), 0.01))
    config = replace(_gauss_newton(), bone_length_weight=1.0)
    start = truth + np.random.default_rng(5).normal(scale=0.02, size=truth.shape)
    knee = SKELETON.joint_names.index("l_knee")
    objective = _OneJointGoesUphill(
        rig, uv, detection_weights(uv, confidence, config),
        config.target_sigma_px**2 * heatmap_variance_growth(confidence, config),
        active=np.ones(truth.shape[:2], dtype=bool), bones=SKELETON.bone_array, bone_prior=bones,
        bone_weight=1.0, prediction=None, temporal_weight=0.0, temporal_scale=1.0, joint=knee,
    )
    means, energies = start, [objective.energy(start, config.init_sigma)]
    for _ in range(10):
        means = minimise_numpy(objective, means, [config.init_sigma])
        energies.append(objective.energy(means, config.init_sigma))
    assert (np.diff(np.stack(energies), axis=0) <= 1e-9).all()
    # Block by block converges slower than the joint solve, but every joint gets there (the knee by its own steps).
    error = np.linalg.norm(means - truth, axis=-1)
    assert error.max() < 5e-3 and error.mean() < 0.1 * np.linalg.norm(start - truth, axis=-1).mean(), error


def test_a_joint_far_behind_a_camera_gives_a_finite_objective_without_warnings(scene):
    """A line-search trial can throw a poorly constrained joint kilometres behind a camera (seen on Shelf): the
    objective there must stay finite and silent (it divided by a zero determinant), and that view adds nothing."""
    rig, truth, uv, confidence = scene
    config = _gauss_newton()
    objective = _gn_objective(rig, uv, confidence, config, truth)
    means = truth.copy()
    means[1, 5] = rig.centres[0] - 4000.0 * rig.R[0][2] + 0.3  # behind camera 0, near its optical axis
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy = objective.energy(means, config.init_sigma)
        _, blocks, bone_blocks, grad = objective.normal_equations(means, config.init_sigma)
        means = minimise(objective, means, [config.init_sigma] * 2)
    assert np.isfinite(energy).all() and np.isfinite(grad).all()
    assert np.isfinite(blocks).all() and np.isfinite(bone_blocks).all()
    assert np.isfinite(means).all()


class _CountingSteps(GaussNewtonObjective):
    """The objective, recording how many frames each Gauss-Newton step is computed for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stepped: list[int] = []

    def step(self, means, sigma):
        self.stepped.append(len(means))
        return super().step(means, sigma)

    def frames(self, keep):
        part = super().frames(keep)
        part.stepped = self.stepped  # one record for the objective and its parts
        return part


def test_converged_frames_stop_iterating(scene):
    """With a step tolerance, frames at the minimum take no more steps and stay put; a frame started away still
    gets there. The steps are counted on the numpy reference; the compiled loop ends at the same means."""
    rig, truth, uv, confidence = scene
    config = _gauss_newton()
    plain = _gn_objective(rig, uv, confidence, config, truth)
    converged = minimise(plain, truth + 0.01, [config.init_sigma] * 8)
    start = converged.copy()
    start[1] += 0.03
    objective = _CountingSteps(
        rig, uv, detection_weights(uv, confidence, config),
        config.target_sigma_px**2 * heatmap_variance_growth(confidence, config),
        active=np.ones(truth.shape[:2], dtype=bool), bones=SKELETON.bone_array, bone_prior=None,
        bone_weight=0.0, prediction=None, temporal_weight=0.0, temporal_scale=1.0,
    )
    means = minimise_numpy(objective, start, [config.init_sigma] * 8, tolerance=1e-5)
    assert objective.stepped[:2] == [len(truth), 1], objective.stepped
    compiled = minimise(plain, start, [config.init_sigma] * 8, tolerance=1e-5)
    for result in (means, compiled):
        np.testing.assert_array_equal(np.delete(result, 1, axis=0), np.delete(converged, 1, axis=0))
        assert np.abs(result[1] - converged[1]).max() < 1e-4
    with pytest.raises(ValueError, match="step_tolerance"):
        _gauss_newton(step_tolerance=-1.0)


def test_frozen_joints_keep_their_position(scene):
    rig, truth, uv, confidence = scene
    start = truth + 0.01
    start[:, 3] = np.nan  # no initial guess for the right ankle
    result = refine(rig, SKELETON, _gauss_newton(steps=4), uv, confidence, start)
    assert np.isfinite(result.means).all()
    np.testing.assert_allclose(result.means[:, 3], 0.0)  # NaN start -> held at the stand-in, masked by the fuser
    assert np.linalg.norm(result.means[:, 0] - truth[:, 0], axis=-1).max() < 1e-3


def test_sigma_schedule():
    assert sigma_schedule(None, 0.03, 3) == [0.03] * 3
    assert sigma_schedule(0.1, 0.03, 0) == []
    schedule = sigma_schedule(0.12, 0.03, 3)
    np.testing.assert_allclose(schedule, [0.12, 0.06, 0.03])


def test_gauss_newton_configuration_is_checked():
    with pytest.raises(ValueError, match="energy"):
        RefineConfig(optimizer="gauss_newton", loss_normalisation="masked_mean", target_sigma_px=5.0, symmetry_weight=0)
    with pytest.raises(ValueError, match="target_sigma_px"):
        RefineConfig(optimizer="gauss_newton", loss_normalisation="energy", symmetry_weight=0)
    with pytest.raises(ValueError, match="optimizer"):
        RefineConfig(optimizer="lbfgs")
    rig, skeleton = make_rig("lab"), SKELETON
    uv = np.zeros((4, 1, 17, 2))
    with pytest.raises(ValueError, match="predict"):
        refine(rig, skeleton, replace(_gauss_newton(), temporal_weight=1.0), uv, np.ones((4, 1, 17)),
               np.zeros((1, 17, 3)), temporal=TemporalPrior("smooth"))


# --- Adam -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["analytic", "raster"])
def test_adam_refinement_lowers_the_error_of_a_noisy_start(scene, backend):
    rig, truth, uv, confidence = scene
    config = replace(
        preset_config("default").refine, backend=backend, temporal_weight=0.0, bone_length_weight=0.0, steps=40,
        lr_schedule_iterations=40,
    )
    start = truth + np.random.default_rng(4).normal(scale=0.02, size=truth.shape)
    result = refine(rig, SKELETON, config, uv, confidence, start)
    before = np.linalg.norm(start - truth, axis=-1).mean()
    after = np.linalg.norm(result.means - truth, axis=-1).mean()
    assert after < 0.25 * before, (before, after)
