"""Renderers: the image-plane L2 between each joint's splat and its pseudo-ground-truth heatmap.

Every renderer has the same interface, :meth:`Renderer.image_loss`, and returns per (view, frame, joint):
- ``squared_error`` ``[V, F, J]``: sum over pixels of ``(render - heatmap)^2``;
- ``support`` ``[V, F, J]``: number of pixels where either is non-zero (the paper's mask ``M``).

Each joint is rendered into its own channel and never occludes another one (the published code couples channels
through alpha compositing; we keep them independent on purpose, see README). Implementations:
- ``raster``: pure torch, evaluates splat and heatmap on a patch around each target, CPU or GPU;
- ``analytic``: closed form of the same L2 integrated over the continuous image plane (both are 2D Gaussians);
- ``gsplat``: gsplat's CUDA rasteriser on the same patches (optional, ``renderers_gsplat``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from .gaussians import covariance_3d, invert_2x2, project_gaussians

MAX_ALPHA = 0.99
"""Opacity clamp of the published rasteriser."""
MIN_ALPHA = 1.0 / 255.0
"""Splat pixels fainter than this are skipped, as in 3DGS."""
HEATMAP_TRUNCATE = 4.0
"""The heatmap is cut at this many standard deviations per axis (scipy/CuPy ``gaussian_filter`` default)."""
SPLAT_EXTENT = math.sqrt(2.0 * math.log(255.0))
"""A full-opacity splat falls under 1/255 beyond this many standard deviations (about 3.33)."""


@dataclass
class SplatParams:
    """One Gaussian per joint, activated parameters.

    Attributes:
        means: ``[F, J, 3]`` world positions.
        quats: ``[F, J, 4]`` rotations (w, x, y, z), any norm.
        log_scales: ``[F, J, 3]`` log standard deviations (world units).
        opacities: ``[F, J]`` in [0, 1].
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacities: torch.Tensor

    def covariances(self) -> torch.Tensor:
        """World covariances ``[F, J, 3, 3]``."""
        return covariance_3d(self.quats, self.log_scales)


@dataclass
class ViewCameras:
    """Pinhole cameras as tensors (keypoints are undistorted before they reach the optimiser).

    Attributes:
        K: ``[V, 3, 3]``; R: ``[V, 3, 3]``; t: ``[V, 3]``; image_size: ``[V, 2]`` (width, height).
    """

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    image_size: torch.Tensor


@dataclass
class HeatmapTargets:
    """Pseudo-ground-truth heatmaps: one unit-peak 2D Gaussian per (view, frame, joint).

    Attributes:
        centres: ``[V, F, J, 2]`` px (same continuous frame as the projection).
        covariances: ``[V, F, J, 2, 2]`` px^2.
    """

    centres: torch.Tensor
    covariances: torch.Tensor


@dataclass
class ImageLoss:
    """``squared_error`` and ``support``, both ``[V, F, J]``."""

    squared_error: torch.Tensor
    support: torch.Tensor


class Renderer(ABC):
    """Interface shared by every backend."""

    name: str = ""

    @abstractmethod
    def image_loss(self, splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets) -> ImageLoss:
        """Per (view, frame, joint) L2 between the rendered splat and its heatmap; differentiable in ``splats``."""


def heatmap_patch_radius(
    targets: HeatmapTargets, means2d: torch.Tensor | None = None, cov2d: torch.Tensor | None = None, max_radius: int = 64
) -> int:
    """Half-size of the square patches centred on the targets.

    The patch holds each heatmap's 4-sigma support and, given the projected splats ``means2d [V, F, J, 2]`` and
    ``cov2d [V, F, J, 2, 2]``, every splat that overlaps its heatmap out to the 1/255 cut (3.33 sigma at full
    opacity), so that no splat energy is lost where the two interact. Splats that do not reach their heatmap at all
    contribute no gradient in either renderer and do not enlarge the patch.
    """
    sigma_t = torch.sqrt(torch.diagonal(targets.covariances, dim1=-2, dim2=-1).detach())
    radius = HEATMAP_TRUNCATE * sigma_t.amax().item()
    if means2d is not None and cov2d is not None:
        sigma_r = torch.sqrt(torch.diagonal(cov2d, dim1=-2, dim2=-1).detach().amax(-1))
        offset = (means2d.detach() - torch.round(targets.centres)).abs().amax(-1)
        reach = offset + SPLAT_EXTENT * sigma_r
        overlaps = offset < HEATMAP_TRUNCATE * sigma_t.amax(-1) + SPLAT_EXTENT * sigma_r
        if overlaps.any():
            radius = max(radius, reach[overlaps].amax().item())
    return int(min(max_radius, math.ceil(radius)))


def patch_grid(targets: HeatmapTargets, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixel origins ``[V, F, J, 2]`` of patches centred on the targets, and the offsets ``[P, P, 2]``."""
    origins = torch.round(targets.centres.detach()) - radius
    steps = torch.arange(2 * radius + 1, dtype=targets.centres.dtype, device=targets.centres.device)
    gy, gx = torch.meshgrid(steps, steps, indexing="ij")
    return origins, torch.stack([gx, gy], dim=-1)


def evaluate_heatmaps(targets: HeatmapTargets, pixels: torch.Tensor) -> torch.Tensor:
    """Unit-peak target Gaussians at pixel positions ``[V, F, J, P, P, 2]`` -> ``[V, F, J, P, P]``, cut at 4 sigma."""
    diff = pixels - targets.centres[..., None, None, :]
    inv, _ = invert_2x2(targets.covariances)
    mahal = _mahalanobis(diff, inv)
    sigma = torch.sqrt(torch.diagonal(targets.covariances, dim1=-2, dim2=-1))[..., None, None, :]
    inside = (diff.abs() <= HEATMAP_TRUNCATE * sigma).all(dim=-1)
    return torch.where(inside, torch.exp(-0.5 * mahal), torch.zeros_like(mahal))


def _mahalanobis(diff: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """``d^T A d`` for ``diff [V, F, J, P, P, 2]`` and symmetric ``inv [V, F, J, 2, 2]``."""
    a = inv[..., 0, 0, None, None]
    b = inv[..., 0, 1, None, None]
    c = inv[..., 1, 1, None, None]
    dx, dy = diff[..., 0], diff[..., 1]
    return a * dx * dx + 2.0 * b * dx * dy + c * dy * dy


def rasterize_patches_torch(
    means2d: torch.Tensor, cov2d: torch.Tensor, opacities: torch.Tensor, pixels: torch.Tensor
) -> torch.Tensor:
    """Reference rasteriser: one splat per channel, evaluated at ``pixels [V, F, J, P, P, 2]``.

    ``alpha = min(o, 0.99) * exp(-1/2 d^T Sigma^-1 d)``, zero below 1/255. The published rasteriser clamps the
    product instead; clamping the opacity keeps the splat an exact Gaussian (what ``analytic`` integrates and what
    gsplat, whose own clamp is 0.999, reproduces) and differs by under 0.01 at the peak only.

    Args:
        means2d: ``[V, F, J, 2]``; cov2d: ``[V, F, J, 2, 2]``; opacities: ``[F, J]``.

    Returns:
        alpha ``[V, F, J, P, P]``.
    """
    conic, _ = invert_2x2(cov2d)
    mahal = _mahalanobis(pixels - means2d[..., None, None, :], conic)
    alpha = torch.clamp(opacities, max=MAX_ALPHA)[None, ..., None, None] * torch.exp(-0.5 * mahal)
    return torch.where(alpha >= MIN_ALPHA, alpha, torch.zeros_like(alpha))


def patch_loss(alpha: torch.Tensor, heat: torch.Tensor) -> ImageLoss:
    """Squared error and support per channel from rendered and target patches ``[V, F, J, P, P]``."""
    support = ((alpha > 0) | (heat > 0)).sum(dim=(-2, -1)).to(alpha.dtype)
    return ImageLoss(squared_error=((alpha - heat) ** 2).sum(dim=(-2, -1)), support=support)


class RasterRenderer(Renderer):
    """Pure-torch differentiable patch rasteriser (CPU or GPU); the reference the other backends are held to."""

    name = "raster"

    def __init__(self, patch_radius: int | None = None):
        self.patch_radius = patch_radius

    def image_loss(self, splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets) -> ImageLoss:
        means2d, cov2d, _ = project_gaussians(
            splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t, cameras.image_size
        )
        radius = self.patch_radius or heatmap_patch_radius(targets, means2d, cov2d)
        origins, offsets = patch_grid(targets, radius)
        pixels = origins[..., None, None, :] + offsets
        alpha = rasterize_patches_torch(means2d, cov2d, splats.opacities, pixels)
        return patch_loss(alpha, evaluate_heatmaps(targets, pixels))


class AnalyticRenderer(Renderer):
    """Closed-form image-plane L2 between two 2D Gaussians (splat with peak ``a``, heatmap with peak 1).

    ``int (a g_r - g_t)^2 = pi a^2 sqrt|S_r| - 4 pi a sqrt(|S_r||S_t| / |S_r + S_t|) exp(-1/2 d^T (S_r+S_t)^-1 d)
    + pi sqrt|S_t|`` for unnormalised Gaussians ``g``. Exact on the continuous plane; it ignores the 1/255 cut,
    the 4-sigma heatmap truncation and pixel sampling, which is what ``raster`` adds.
    """

    name = "analytic"

    def image_loss(self, splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets) -> ImageLoss:
        means2d, cov2d, _ = project_gaussians(
            splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t, cameras.image_size
        )
        amplitude = torch.clamp(splats.opacities, max=MAX_ALPHA)[None]
        total_inv, total_det = invert_2x2(cov2d + targets.covariances)
        _, det_r = invert_2x2(cov2d)
        _, det_t = invert_2x2(targets.covariances)
        diff = means2d - targets.centres
        mahal = (
            total_inv[..., 0, 0] * diff[..., 0] ** 2
            + 2.0 * total_inv[..., 0, 1] * diff[..., 0] * diff[..., 1]
            + total_inv[..., 1, 1] * diff[..., 1] ** 2
        )
        cross = 4.0 * math.pi * amplitude * torch.sqrt(det_r * det_t / total_det) * torch.exp(-0.5 * mahal)
        squared = math.pi * amplitude**2 * torch.sqrt(det_r) - cross + math.pi * torch.sqrt(det_t)
        sigma_t = torch.sqrt(torch.diagonal(targets.covariances, dim1=-2, dim2=-1))
        target_area = (2.0 * HEATMAP_TRUNCATE) ** 2 * sigma_t[..., 0] * sigma_t[..., 1]
        render_area = 2.0 * math.pi * torch.log(255.0 * amplitude).clamp_min(0.0) * torch.sqrt(det_r)
        return ImageLoss(squared_error=squared, support=torch.maximum(target_area, render_area).detach())


RENDERERS = ("raster", "analytic", "gsplat")


def get_renderer(name: str, device: torch.device | str = "cpu") -> Renderer:
    """A renderer by name; ``auto`` picks gsplat on CUDA when it is usable, else ``analytic``.

    Raises:
        RuntimeError: ``gsplat`` asked for without CUDA or without the gsplat package.
    """
    device = torch.device(device)
    if name == "auto":
        from .renderers_gsplat import gsplat_usable

        return get_renderer("gsplat" if device.type == "cuda" and gsplat_usable() else "analytic", device)
    if name == "raster":
        return RasterRenderer()
    if name == "analytic":
        return AnalyticRenderer()
    if name == "gsplat":
        from .renderers_gsplat import GsplatRenderer

        return GsplatRenderer(device)
    raise ValueError(f"unknown backend {name!r}; choose from auto, {', '.join(RENDERERS)}")
