"""The renderer interface: splats, cameras, heatmap targets and the per-channel image loss, shared by every backend."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..gaussians import covariance_3d

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
