"""``raster``: the pure-torch patch rasteriser (CPU or GPU), the reference the other backends are held to."""

from __future__ import annotations

import math

import torch

from ..gaussians import invert_2x2, project_gaussians
from ..objective import MAX_ALPHA
from .base import (
    HEATMAP_TRUNCATE,
    MIN_ALPHA,
    SPLAT_EXTENT,
    HeatmapTargets,
    ImageLoss,
    Renderer,
    SplatParams,
    ViewCameras,
)


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
