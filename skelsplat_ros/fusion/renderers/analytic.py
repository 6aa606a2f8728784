"""``analytic``: the closed-form L2 between two 2D Gaussians, exact on the continuous image plane."""

from __future__ import annotations

import math

import torch

from ..gaussians import invert_2x2, project_gaussians
from ..objective import MAX_ALPHA
from .base import (
    HEATMAP_TRUNCATE,
    HeatmapTargets,
    ImageLoss,
    Renderer,
    SplatParams,
    ViewCameras,
)


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
