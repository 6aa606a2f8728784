"""SkelSplat refinement: one anisotropic Gaussian per joint, fitted by Adam to per-view heatmaps plus priors.

The objective, for Gaussians ``[F, J]`` seen by views ``[V]``:

``L = image term + symmetry term + bone-length term + temporal term``

- image term: the renderer's per (view, frame, joint) L2 between splat and heatmap, either the paper's masked mean
  per view averaged over views (``loss_normalisation="masked_mean"``) or each term divided by the heatmap's own
  energy and weighted by detection confidence (``"energy"``), summed;
- symmetry: ``|len(left limb) - len(right limb)|`` for forearms and lower legs (the paper's term);
- bone length: squared deviation of every bone from a per-subject length, in units of that bone's tolerance
  (:class:`BonePrior`);
- temporal: offline, squared second differences over frames (acceleration); streaming, squared deviation from a
  constant-velocity prediction, both in units of ``temporal_sigma``.

Everything is batched: independent frames optimise side by side (Adam is element-wise, so this equals running
them one at a time), and the temporal term couples them when asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .camera import CameraRig
from .gauss_newton import GaussNewtonObjective, minimise, sigma_schedule
from .gaussians import invert_2x2, project_gaussians
from .renderers import HeatmapTargets, SplatParams, ViewCameras, get_renderer
from .skeleton import Skeleton
from .triangulation import linear_covariance


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the refinement. World units are the calibration's (metres in ROS).

    Attributes:
        optimizer: ``adam`` (the paper's: any renderer, shapes optionally fitted) or ``gauss_newton`` (the closed-form
            ``analytic`` objective with fixed isotropic splats, solved in numpy: ``gauss_newton.py``; needs
            ``energy`` normalisation, ``target_sigma_px`` and no symmetry term; ``backend`` is ignored).
        steps: Adam steps (the paper's 500 iterations with accumulation 4 are 125 steps), or Gauss-Newton iterations.
        splat_sigma_start: ``gauss_newton`` only: splat size of the first iteration, shrinking geometrically to
            ``init_sigma`` at the last (``None`` = ``init_sigma`` throughout).
        backend: renderer name (``raster``, ``analytic``, ``gsplat``, ``auto``).
        init_sigma: initial isotropic standard deviation of every Gaussian.
        distal_sigma: initial sigma of the distal joints (ankles, elbows, wrists); ``None`` = ``init_sigma``.
        optimise_shape: also fit log-scales and rotations (the paper does, with their own learning rates).
        position_lr: initial position learning rate, multiplied by the rig's spatial scale when
            ``position_lr_spatial`` (the 3DGS ``spatial_lr_scale``), else in world units per step.
        position_lr_final: final position learning rate (same scaling).
        lr_schedule_iterations: the log-linear decay reaches ``position_lr_final`` after this many iterations.
        iterations_per_step: iterations counted per Adam step for the schedule (the paper's accumulation of 4).
        scale_lr, rotation_lr: learning rates of log-scales and quaternions.
        adam_eps: Adam epsilon (1e-15 in the paper).
        target_sigma_px: heatmap sigma in px; ``None`` = the paper's: the projected initial Gaussian's eigenvalues.
        confidence_sigma_power: heatmap sigma grows as ``confidence ** -power`` (0 = ignore confidences there).
        subpixel_targets: heatmaps at the exact keypoint; ``False`` = the paper's truncation to the pixel.
        use_confidence: weight each (view, joint) by the detector's confidence; ``False`` = every detection 1.
        loss_normalisation: ``masked_mean`` (paper) or ``energy`` (see module docstring).
        symmetry_weight: weight of the forearm/lower-leg symmetry term (paper: 1e-5 per mm = 1e-2 per metre).
        bone_length_weight: weight of the per-subject bone-length term (0 = off).
        bone_length_sigma: smallest tolerance of the bone-length term (world units; see ``BonePrior``).
        bone_length_spread: each bone's tolerance widens to this many robust standard deviations of the length
            samples it was estimated from (0 = ``bone_length_sigma`` for every bone).
        temporal_weight: weight of the temporal term (0 = off).
        temporal_sigma: tolerance of the temporal term (world units per frame^2 offline, world units streaming).
        frame_chunk: frames optimised together (bounds memory; the temporal term only couples within a chunk).
        device: torch device.
    """

    optimizer: str = "adam"
    steps: int = 125
    splat_sigma_start: float | None = None
    backend: str = "raster"
    init_sigma: float = math.exp(3.0) / 1000.0
    distal_sigma: float | None = None
    optimise_shape: bool = True
    position_lr: float = 5e-4
    position_lr_final: float = 5e-6
    position_lr_spatial: bool = True
    lr_schedule_iterations: int = 4000
    iterations_per_step: int = 4
    scale_lr: float = 5e-3
    rotation_lr: float = 1e-3
    adam_eps: float = 1e-15
    target_sigma_px: float | None = None
    confidence_sigma_power: float = 0.0
    subpixel_targets: bool = False
    use_confidence: bool = False
    loss_normalisation: str = "masked_mean"
    symmetry_weight: float = 1e-2
    bone_length_weight: float = 0.0
    bone_length_sigma: float = 0.01
    bone_length_spread: float = 0.0
    temporal_weight: float = 0.0
    temporal_sigma: float = 0.01
    frame_chunk: int = 64
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.loss_normalisation not in ("masked_mean", "energy"):
            raise ValueError(f"loss_normalisation must be masked_mean or energy, not {self.loss_normalisation!r}")
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if self.optimizer not in ("adam", "gauss_newton"):
            raise ValueError(f"optimizer must be adam or gauss_newton, not {self.optimizer!r}")
        if self.optimizer == "gauss_newton" and (
            self.loss_normalisation != "energy" or self.target_sigma_px is None or self.symmetry_weight > 0
        ):
            raise ValueError("gauss_newton needs loss_normalisation='energy', a target_sigma_px and symmetry_weight=0")


@dataclass
class BonePrior:
    """What the bone-length term pulls towards.

    Attributes:
        lengths: ``[B]`` per-subject bone lengths (NaN = no prior on that bone).
        sigmas: ``[B]`` tolerance of each bone (world units).
    """

    lengths: np.ndarray
    sigmas: np.ndarray


@dataclass
class TemporalPrior:
    """What the temporal term pulls towards.

    Attributes:
        mode: ``smooth`` (offline second differences) or ``predict`` (streaming, pull to ``prediction``).
        prediction: ``[F, J, 3]`` predicted positions for ``predict`` (NaN = no prediction for that joint).
        sigma_scale: multiplies ``temporal_sigma``: a prediction across a longer gap is less certain.
    """

    mode: str
    prediction: np.ndarray | None = None
    sigma_scale: float = 1.0


@dataclass
class RefineResult:
    """Per frame and joint.

    Attributes:
        means: ``[F, J, 3]``; covariances: ``[F, J, 3, 3]`` (the fitted Gaussians).
        reprojection: ``[V, F, J]`` px distance between projected means and keypoints (NaN where missing).
        agreement: ``[V, F, J]`` in [0, 1], how well each view's heatmap and splat overlap at the end.
        final_loss: the objective after the last step, per frame ``[F]``.
    """

    means: np.ndarray
    covariances: np.ndarray
    reprojection: np.ndarray
    agreement: np.ndarray
    final_loss: np.ndarray


def position_learning_rate(step: int, config: RefineConfig, spatial_scale: float) -> float:
    """Log-linear decay of the 3DGS position schedule, with the paper's iteration counting."""
    progress = min(step * config.iterations_per_step / config.lr_schedule_iterations, 1.0)
    scale = spatial_scale if config.position_lr_spatial else 1.0
    return scale * math.exp((1 - progress) * math.log(config.position_lr) + progress * math.log(config.position_lr_final))


def cameras_to_torch(rig: CameraRig, device: str = "cpu", dtype: torch.dtype = torch.float32) -> ViewCameras:
    """The rig's pinhole parameters as tensors."""
    as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    return ViewCameras(K=as_t(rig.K), R=as_t(rig.R), t=as_t(rig.t), image_size=as_t(rig.sizes))


def initial_splats(init_means: torch.Tensor, skeleton: Skeleton, config: RefineConfig) -> SplatParams:
    """Isotropic Gaussians at the initial guess ``[F, J, 3]`` (distal joints larger when configured)."""
    num_frames, num_joints, _ = init_means.shape
    sigma = torch.full((num_joints,), config.init_sigma, dtype=init_means.dtype, device=init_means.device)
    if config.distal_sigma is not None and skeleton.distal:
        sigma[list(skeleton.distal)] = config.distal_sigma
    log_scales = torch.log(sigma)[None, :, None].expand(num_frames, num_joints, 3).clone()
    quats = torch.zeros(num_frames, num_joints, 4, dtype=init_means.dtype, device=init_means.device)
    quats[..., 0] = 1.0
    opacities = torch.ones(num_frames, num_joints, dtype=init_means.dtype, device=init_means.device)
    return SplatParams(means=init_means.clone(), quats=quats, log_scales=log_scales, opacities=opacities)


def detection_weights(uv: np.ndarray, confidence: np.ndarray, config: RefineConfig) -> np.ndarray:
    """Weight ``[V, F, J]`` of each observation: its confidence (or 1 when confidences are ignored), 0 if missing."""
    valid = np.isfinite(uv).all(axis=-1) & (np.nan_to_num(confidence) > 0)
    return np.where(valid, confidence if config.use_confidence else 1.0, 0.0)


def heatmap_variance_growth(confidence: np.ndarray, config: RefineConfig) -> np.ndarray:
    """Factor ``[V, F, J]`` on each heatmap's variance: ``confidence ** (-2 power)`` (less sure = wider), or 1."""
    if config.confidence_sigma_power <= 0:
        return np.ones_like(confidence)
    return np.clip(np.nan_to_num(confidence), 0.05, None) ** (-2.0 * config.confidence_sigma_power)


def build_targets(
    uv: torch.Tensor, growth: torch.Tensor, splats: SplatParams, cameras: ViewCameras, config: RefineConfig
) -> HeatmapTargets:
    """Heatmaps from keypoints ``uv [V, F, J, 2]`` (undistorted px), variances scaled by ``growth [V, F, J]``.

    The paper builds them once, before optimising: sigma from the eigenvalues of the projected initial Gaussian
    (major axis on image rows, minor on columns: its axis-aligned filter), the centre truncated to its pixel.
    """
    centres = uv if config.subpixel_targets else torch.floor(uv) + 0.5
    if config.target_sigma_px is None:
        _, cov2d, _ = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t, cameras.image_size)
        a, b, c = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 1]
        mid, det = 0.5 * (a + c), a * c - b * b
        root = torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
        var_rows, var_cols = mid + root, torch.clamp(mid - root, min=1e-6)
    else:
        var_rows = var_cols = torch.full_like(uv[..., 0], config.target_sigma_px**2)
    var_rows, var_cols = var_rows * growth, var_cols * growth
    zero = torch.zeros_like(var_rows)
    covariances = torch.stack([var_cols, zero, zero, var_rows], dim=-1).reshape(uv.shape[:-1] + (2, 2))
    return HeatmapTargets(centres=torch.nan_to_num(centres), covariances=covariances.detach())


def _bone_lengths(means: torch.Tensor, bones: torch.Tensor) -> torch.Tensor:
    """Bone lengths ``[F, B]`` of ``means [F, J, 3]`` for ``bones [B, 2]``."""
    return torch.linalg.norm(means[:, bones[:, 0]] - means[:, bones[:, 1]], dim=-1)


class Objective:
    """The refinement objective for one chunk of frames, with everything that does not change precomputed."""

    def __init__(
        self,
        rig: CameraRig,
        skeleton: Skeleton,
        config: RefineConfig,
        uv: np.ndarray,
        confidence: np.ndarray,
        init_means: np.ndarray,
        bone_prior: BonePrior | None,
        temporal: TemporalPrior | None,
    ):
        device, dtype = config.device, torch.float32
        self.config = config
        self.cameras = cameras_to_torch(rig, device, dtype)
        self.renderer = get_renderer(config.backend, device)
        weights = detection_weights(uv, confidence, config)
        valid = weights > 0
        self.weights = torch.as_tensor(weights, dtype=dtype, device=device)
        self.uv = torch.as_tensor(np.where(valid[..., None], uv, 0.0), dtype=dtype, device=device)
        self.splats = initial_splats(torch.as_tensor(init_means, dtype=dtype, device=device), skeleton, config)
        growth = torch.as_tensor(heatmap_variance_growth(confidence, config), dtype=dtype, device=device)
        self.targets = build_targets(self.uv, growth, self.splats, self.cameras, config)
        self.symmetric = torch.as_tensor(skeleton.limb_end_symmetric_bones, device=device)
        self.bones = torch.as_tensor(skeleton.bone_array, device=device)
        self.bone_lengths = None
        if bone_prior is not None and config.bone_length_weight > 0:
            lengths = torch.as_tensor(bone_prior.lengths, dtype=dtype, device=device)
            self.bone_lengths = lengths
            self.bone_sigmas = torch.as_tensor(bone_prior.sigmas, dtype=dtype, device=device)
            self.bone_known = torch.isfinite(lengths)
        self.temporal = temporal if config.temporal_weight > 0 else None
        if self.temporal is not None and self.temporal.mode == "predict":
            prediction = torch.as_tensor(self.temporal.prediction, dtype=dtype, device=device)
            self.prediction_known = torch.isfinite(prediction).all(dim=-1)
            self.prediction = torch.nan_to_num(prediction)

    def image_term(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame image loss ``[F]`` and per (view, frame, joint) normalised loss ``[V, F, J]``."""
        loss = self.renderer.image_loss(self.splats, self.cameras, self.targets)
        if self.config.loss_normalisation == "masked_mean":
            masked = self.weights > 0
            per_view = (loss.squared_error * self.weights).sum(-1) / (loss.support * masked).sum(-1).clamp_min(1.0)
            views_with_data = masked.any(-1).to(per_view.dtype)
            per_frame = (per_view * views_with_data).sum(0) / views_with_data.sum(0).clamp_min(1.0)
            return per_frame, loss.squared_error
        _, det_t = invert_2x2(self.targets.covariances)
        energy = math.pi * torch.sqrt(det_t)
        normalised = loss.squared_error / energy
        return (normalised * self.weights).sum(dim=(0, 2)), normalised

    def prior_terms(self) -> torch.Tensor:
        """Per-frame prior loss ``[F]``."""
        cfg, means = self.config, self.splats.means
        total = torch.zeros(means.shape[0], dtype=means.dtype, device=means.device)
        if cfg.symmetry_weight > 0 and len(self.symmetric):
            lengths = _bone_lengths(means, self.bones)
            total = total + cfg.symmetry_weight * (lengths[:, self.symmetric[:, 0]] - lengths[:, self.symmetric[:, 1]]).abs().sum(-1)
        if self.bone_lengths is not None:
            deviation = (_bone_lengths(means, self.bones) - torch.nan_to_num(self.bone_lengths)) / self.bone_sigmas
            total = total + cfg.bone_length_weight * (deviation**2 * self.bone_known).sum(-1)
        if self.temporal is not None:
            if self.temporal.mode == "smooth" and means.shape[0] >= 3:
                accel = (means[2:] - 2 * means[1:-1] + means[:-2]) / cfg.temporal_sigma
                per = (accel**2).sum(dim=(-1, -2))
                total = total + cfg.temporal_weight * torch.nn.functional.pad(per, (1, 1))
            elif self.temporal.mode == "predict":
                offset = ((means - self.prediction) / (cfg.temporal_sigma * self.temporal.sigma_scale)) ** 2
                total = total + cfg.temporal_weight * (offset.sum(-1) * self.prediction_known).sum(-1)
        return total

    def agreement(self) -> tuple[np.ndarray, np.ndarray]:
        """Reprojection distance ``[V, F, J]`` px and heatmap overlap in [0, 1] ``[V, F, J]`` at the current means."""
        with torch.no_grad():
            means2d, cov2d, depth = project_gaussians(
                self.splats.means, self.splats.covariances(), self.cameras.K, self.cameras.R, self.cameras.t,
                self.cameras.image_size,
            )
            diff = means2d - self.targets.centres
            inv, _ = invert_2x2(cov2d + self.targets.covariances)
            mahal = (inv @ diff[..., None]).squeeze(-1).mul(diff).sum(-1)
            overlap = torch.exp(-0.5 * mahal)
            distance = torch.linalg.norm(means2d - self.uv, dim=-1)
            missing = (self.weights <= 0) | (depth <= 0)
            distance = torch.where(missing, torch.full_like(distance, float("nan")), distance)
            overlap = torch.where(missing, torch.zeros_like(overlap), overlap)
        return distance.cpu().numpy(), overlap.cpu().numpy()


def refine(
    rig: CameraRig,
    skeleton: Skeleton,
    config: RefineConfig,
    uv: np.ndarray,
    confidence: np.ndarray,
    init_means: np.ndarray,
    bone_prior: BonePrior | None = None,
    temporal: TemporalPrior | None = None,
) -> RefineResult:
    """Refine an initial guess ``init_means [F, J, 3]`` (finite) against undistorted keypoints ``uv [V, F, J, 2]``.

    Args:
        confidence: ``[V, F, J]``; 0 or a NaN pixel masks the observation.
        bone_prior: per-subject bone lengths and tolerances for the bone-length term.
        temporal: the temporal prior (needs ``config.temporal_weight > 0``).
    """
    if config.optimizer == "gauss_newton":
        return _refine_gauss_newton(rig, skeleton, config, uv, confidence, init_means, bone_prior, temporal)
    # exp() tails underflow into denormal floats, which x86 CPUs process about 100x slower.
    torch.set_flush_denormal(True)
    objective = Objective(rig, skeleton, config, uv, confidence, init_means, bone_prior, temporal)
    splats = objective.splats
    splats.means.requires_grad_(True)
    groups = [{"params": [splats.means], "lr": 0.0}]
    if config.optimise_shape:
        splats.log_scales.requires_grad_(True)
        splats.quats.requires_grad_(True)
        groups += [{"params": [splats.log_scales], "lr": config.scale_lr}, {"params": [splats.quats], "lr": config.rotation_lr}]
    optimizer = torch.optim.Adam(groups, eps=config.adam_eps)
    spatial_scale = rig.spatial_scale()
    per_frame = torch.zeros(init_means.shape[0])
    for step in range(config.steps):
        optimizer.param_groups[0]["lr"] = position_learning_rate(step, config, spatial_scale)
        optimizer.zero_grad(set_to_none=True)
        image, _ = objective.image_term()
        per_frame = image + objective.prior_terms()
        per_frame.sum().backward()
        optimizer.step()
    with torch.no_grad():
        image, _ = objective.image_term()
        per_frame = image + objective.prior_terms()
    distance, overlap = objective.agreement()
    return RefineResult(
        means=splats.means.detach().cpu().numpy().astype(np.float64),
        covariances=splats.covariances().detach().cpu().numpy().astype(np.float64),
        reprojection=distance,
        agreement=overlap,
        final_loss=per_frame.detach().cpu().numpy(),
    )


def _refine_gauss_newton(
    rig: CameraRig,
    skeleton: Skeleton,
    config: RefineConfig,
    uv: np.ndarray,
    confidence: np.ndarray,
    init_means: np.ndarray,
    bone_prior: BonePrior | None,
    temporal: TemporalPrior | None,
) -> RefineResult:
    """:func:`refine` with ``optimizer="gauss_newton"``; covariances are the first-order ones of the agreeing views."""
    prediction, temporal_scale = None, 1.0
    if temporal is not None and config.temporal_weight > 0:
        if temporal.mode != "predict":
            raise ValueError("gauss_newton supports the streaming ('predict') temporal prior only")
        prediction, temporal_scale = temporal.prediction, config.temporal_sigma * temporal.sigma_scale
    weights = detection_weights(uv, confidence, config)
    objective = GaussNewtonObjective(
        rig,
        uv,
        weights,
        config.target_sigma_px**2 * heatmap_variance_growth(confidence, config),
        active=np.isfinite(init_means).all(-1),
        bones=skeleton.bone_array,
        bone_prior=bone_prior if config.bone_length_weight > 0 else None,
        bone_weight=config.bone_length_weight,
        prediction=prediction,
        temporal_weight=config.temporal_weight,
        temporal_scale=temporal_scale,
    )
    sigmas = sigma_schedule(config.splat_sigma_start, config.init_sigma, config.steps)
    means = minimise(objective, np.nan_to_num(init_means), sigmas)
    final, distance, overlap, depth = objective.evaluate(means, config.init_sigma)
    missing = (weights <= 0) | (depth <= 0)
    covariances = linear_covariance(rig, means, np.where(missing, 0.0, weights * overlap), config.target_sigma_px)
    return RefineResult(
        means=means,
        covariances=covariances,
        reprojection=np.where(missing, np.nan, distance),
        agreement=np.where(missing, 0.0, overlap),
        final_loss=final,
    )


def with_overrides(config: RefineConfig, **overrides) -> RefineConfig:
    """A copy of ``config`` with fields replaced (unknown names raise ``TypeError``)."""
    return replace(config, **overrides)
