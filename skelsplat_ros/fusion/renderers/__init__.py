"""Renderers: the image-plane L2 between each joint's splat and its pseudo-ground-truth heatmap.

Every renderer has the same interface, :meth:`Renderer.image_loss`, and returns per (view, frame, joint):
- ``squared_error`` ``[V, F, J]``: sum over pixels of ``(render - heatmap)^2``;
- ``support`` ``[V, F, J]``: number of pixels where either is non-zero (the paper's mask ``M``).

Each joint is rendered into its own channel and never occludes another one (the published code couples channels
through alpha compositing; we keep them independent on purpose, see README). Implementations:
- ``raster``: pure torch, evaluates splat and heatmap on a patch around each target, CPU or GPU;
- ``analytic``: closed form of the same L2 integrated over the continuous image plane (both are 2D Gaussians);
- ``gsplat``: gsplat's CUDA rasteriser on the same patches (optional, ``gsplat_renderer``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import BACKENDS as RENDERERS

if TYPE_CHECKING:
    import torch

    from .base import Renderer


def get_renderer(name: str, device: "torch.device | str" = "cpu") -> "Renderer":
    """A renderer by name; ``auto`` picks gsplat on CUDA when it is usable, else ``analytic``.

    Raises:
        RuntimeError: ``gsplat`` asked for without CUDA or without the gsplat package.
    """
    import torch

    device = torch.device(device)
    if name == "auto":
        from .gsplat_renderer import gsplat_usable

        return get_renderer("gsplat" if device.type == "cuda" and gsplat_usable() else "analytic", device)
    if name == "raster":
        from .raster import RasterRenderer

        return RasterRenderer()
    if name == "analytic":
        from .analytic import AnalyticRenderer

        return AnalyticRenderer()
    if name == "gsplat":
        from .gsplat_renderer import GsplatRenderer

        return GsplatRenderer(device)
    raise ValueError(f"unknown backend {name!r}; choose from auto, {', '.join(RENDERERS)}")
