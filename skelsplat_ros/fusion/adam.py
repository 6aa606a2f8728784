"""Adam through a renderer: the paper's optimiser, on any backend (``raster``, ``analytic``, ``gsplat``), shapes
optionally fitted. Everything is batched: independent frames optimise side by side (Adam is element-wise, so this
equals running them one at a time), and the temporal term couples them when asked.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..geometry.camera import CameraRig
from ..geometry.triangulation import linear_covariance
from ..skeleton.models import Skeleton
from .gaussians import invert_2x2, project_gaussians
from .objective import (
    BonePrior,
    RefineConfig,
    RefineResult,
    TemporalPrior,
    detection_weights,
    heatmap_variance_growth,
)
from .renderers import get_renderer
from .renderers.base import HeatmapTargets, SplatParams, ViewCameras


def position_learning_rate(step: int, config: RefineConfig, spatial_scale: float) -> float:
    """Log-linear decay of the 3DGS position schedule, with the paper's iteration counting."""
    progress = min(step * config.iterations_per_step / config.lr_schedule_iterations, 1.0)
    scale = spatial_scale if config.position_lr_spatial else 1.0
    return scale * math.exp((1 - progress) * math.log(config.position_lr) + progress * math.log(config.position_lr_final))


def resolve_device(name: str) -> torch.device:
    """The torch device of a ``RefineConfig.device``: ``auto`` = CUDA when torch sees a device, else the CPU.

    Raises:
        RuntimeError: a CUDA device asked for by name and CUDA is not usable here (one line naming CUDA).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA support" if torch.version.cuda is None else "torch sees no CUDA device"
        raise RuntimeError(f"device {name}: CUDA is not available here ({why}); choose device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name}: CUDA has only {torch.cuda.device_count()} device(s) here")
    return device


def cameras_to_torch(rig: CameraRig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> ViewCameras:
    """The rig's pinhole parameters as tensors."""
    # Copies: the rig's arrays are read-only and shared, which torch will not wrap.
    as_t = lambda a: torch.tensor(a, dtype=dtype, device=device)  # noqa: E731
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
        device, dtype = resolve_device(config.device), torch.float32
        self.device = device
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
                # A float, or one scale per frame ([F]: a batch of different people).
                scale = torch.as_tensor(np.reshape(self.temporal.sigma_scale, (-1, 1, 1)), dtype=means.dtype,
                                        device=means.device)
                offset = ((means - self.prediction) / (cfg.temporal_sigma * scale)) ** 2
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


def refine_adam(
    rig: CameraRig,
    skeleton: Skeleton,
    config: RefineConfig,
    uv: np.ndarray,
    confidence: np.ndarray,
    init_means: np.ndarray,
    bone_prior: BonePrior | None = None,
    temporal: TemporalPrior | None = None,
) -> RefineResult:
    """:func:`~skelsplat_ros.fusion.refine.refine` with ``optimizer="adam"`` on ``config.device``.

    ``covariances`` are the first-order position uncertainties from the agreeing views (as for Gauss-Newton);
    the fitted splats' shapes are in ``splat_covariances``.
    """
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
    means = splats.means.detach().cpu().numpy().astype(np.float64)
    # Each heatmap's own spread is the pixel noise its view was fitted with.
    heatmap_sigma = np.sqrt(objective.targets.covariances.diagonal(dim1=-2, dim2=-1).mean(-1).cpu().numpy())
    support = np.where(np.isfinite(distance), objective.weights.cpu().numpy() * overlap, 0.0)
    return RefineResult(
        means=means,
        covariances=linear_covariance(rig, means, support, heatmap_sigma),
        splat_covariances=splats.covariances().detach().cpu().numpy().astype(np.float64),
        reprojection=distance,
        agreement=overlap,
        final_loss=per_frame.detach().cpu().numpy(),
    )
