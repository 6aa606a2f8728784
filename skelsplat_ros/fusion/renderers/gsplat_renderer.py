"""gsplat (CUDA) backend: the same patch rasterisation as ``RasterRenderer``, run by gsplat's kernels.

Each joint of each frame is its own one-Gaussian scene (gsplat batch dimensions), so joints never occlude one
another, and each (view, joint) is rendered through a patch camera: the view's intrinsics with the principal point
moved to the patch origin and the image cut to the patch. gsplat samples pixel ``i`` at ``i + 0.5``; the extra half
pixel in the shifted principal point puts its samples on the integer grid ``RasterRenderer`` uses.

gsplat is optional (``pip install .[gsplat]``) and has no CPU rasteriser: asking for it without CUDA fails at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
import weakref

import torch

from ..gaussians import project_gaussians
from ..objective import EPS2D, MAX_ALPHA
from .base import HeatmapTargets, ImageLoss, Renderer, SplatParams, ViewCameras
from .raster import evaluate_heatmaps, heatmap_patch_radius, patch_grid, patch_loss

GSPLAT_VERSION = "1.5.3"
"""The gsplat release this backend was written and tested against."""


def gsplat_unavailable_reason() -> str | None:
    """Why gsplat cannot run here (one line), or ``None`` when it can."""
    if not torch.cuda.is_available():
        return "the gsplat backend needs CUDA, and torch sees no CUDA device here (use --backend raster or analytic)"
    if importlib.util.find_spec("gsplat") is None:
        return f"the gsplat backend needs the gsplat package: pip install 'gsplat=={GSPLAT_VERSION}'"
    package = importlib.import_module("gsplat")
    if package not in _EXTENSION_STATUS:
        _EXTENSION_STATUS[package] = _load_extension()
    return _EXTENSION_STATUS[package]


_EXTENSION_STATUS: weakref.WeakKeyDictionary[types.ModuleType, str | None] = weakref.WeakKeyDictionary()
"""Outcome of loading the CUDA extension, per imported gsplat package: a failed JIT build is not retried on every
call (Python does not cache failed imports, and each attempt can take minutes)."""


def _load_extension() -> str | None:
    try:
        # Importing the backend triggers gsplat's JIT build of its CUDA sources on first use.
        from gsplat.cuda._backend import _C
    except Exception as error:  # noqa: BLE001 - any build/import failure means "not usable", with its reason
        return f"gsplat's CUDA extension could not be loaded: {_first_line(error)}"
    if _C is None:
        return "gsplat's CUDA extension failed to build (no CUDA toolkit?)"
    return None


def _first_line(error: BaseException, limit: int = 200) -> str:
    """``Type: first non-empty line`` of an exception, cut to ``limit`` characters (build errors carry whole logs)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def gsplat_usable() -> bool:
    """True when CUDA and a working gsplat are both present."""
    return gsplat_unavailable_reason() is None


def patch_radius_for(
    splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets, patch_radius: int | None = None
) -> int:
    """The patch half-size ``RasterRenderer`` uses for these splats and targets (``patch_radius`` when given)."""
    if patch_radius:
        return patch_radius
    with torch.no_grad():
        means2d, cov2d, _ = project_gaussians(
            splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t, cameras.image_size
        )
    return heatmap_patch_radius(targets, means2d, cov2d)


def gsplat_patch_inputs(
    splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets, radius: int
) -> dict:
    """Keyword arguments of ``gsplat.rasterization`` that render every (view, frame, joint) patch (pure torch).

    Layout: batch ``B = F * J`` one-Gaussian scenes (index ``b = f * J + j``), each seen by the ``V`` views through
    patch cameras of ``P x P`` px, ``P = 2 * radius + 1``: the view's extrinsics and its intrinsics with the principal
    point moved by ``-origin + 0.5`` (origin from ``patch_grid``), so that gsplat's pixel ``(i, j)``, sampled at
    ``(j + 0.5, i + 0.5)`` in the patch camera, is the full-image pixel position ``origin + (j, i)`` that
    ``RasterRenderer`` samples. ``patches_from_gsplat`` turns gsplat's output back into ``[V, F, J, P, P]``.

    Shapes: means ``[B, 1, 3]``, quats ``[B, 1, 4]``, scales ``[B, 1, 3]``, opacities ``[B, 1]`` (clamped to
    ``MAX_ALPHA``), colors ``[B, 1, 1]`` (ones), viewmats ``[B, V, 4, 4]``, Ks ``[B, V, 3, 3]``. No CUDA needed: the
    CPU tests check this layout against ``RasterRenderer`` with a torch emulation of gsplat's kernels.
    """
    if bool((cameras.K[:, 0, 1] != 0).any()):
        raise ValueError("gsplat's projection has no skew term and these cameras have one (K[0, 1] != 0); "
                         "use the raster or analytic backend")
    num_views = cameras.K.shape[0]
    num_frames, num_joints = splats.means.shape[:2]
    batch = num_frames * num_joints
    size = 2 * radius + 1
    dtype, device = splats.means.dtype, splats.means.device
    origins, _ = patch_grid(targets, radius)  # [V, F, J, 2]

    viewmats = torch.eye(4, dtype=dtype, device=device).repeat(num_views, 1, 1)
    viewmats[:, :3, :3] = cameras.R
    viewmats[:, :3, 3] = cameras.t
    patch_K = cameras.K[:, None, None].repeat(1, num_frames, num_joints, 1, 1)  # [V, F, J, 3, 3]
    patch_K[..., 0, 2] = patch_K[..., 0, 2] - origins[..., 0] + 0.5
    patch_K[..., 1, 2] = patch_K[..., 1, 2] - origins[..., 1] + 0.5
    return dict(
        means=splats.means.reshape(batch, 1, 3),
        quats=splats.quats.reshape(batch, 1, 4),
        scales=torch.exp(splats.log_scales).reshape(batch, 1, 3),
        opacities=torch.clamp(splats.opacities, max=MAX_ALPHA).reshape(batch, 1),
        colors=torch.ones(batch, 1, 1, dtype=dtype, device=device),
        viewmats=viewmats[None].expand(batch, num_views, 4, 4),
        Ks=patch_K.permute(1, 2, 0, 3, 4).reshape(batch, num_views, 3, 3),
        width=size,
        height=size,
        near_plane=0.01,
        eps2d=EPS2D,
        sh_degree=None,
        packed=False,
        rasterize_mode="classic",
    )


def patches_from_gsplat(colors: torch.Tensor, num_views: int, num_frames: int, num_joints: int) -> torch.Tensor:
    """gsplat's rendered colors ``[B, V, P, P, 1]`` (layout of ``gsplat_patch_inputs``) as alpha ``[V, F, J, P, P]``."""
    size = colors.shape[-2]
    return colors[..., 0].reshape(num_frames, num_joints, num_views, size, size).permute(2, 0, 1, 3, 4)


class GsplatRenderer(Renderer):
    """Patch rasterisation through ``gsplat.rasterization``; same interface and results as ``RasterRenderer``."""

    name = "gsplat"

    def __init__(self, device: torch.device | str = "cuda", patch_radius: int | None = None):
        reason = gsplat_unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise RuntimeError("the gsplat backend needs CUDA tensors; choose device cuda")
        self.patch_radius = patch_radius

    def render_patches(
        self, splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alpha patches ``[V, F, J, P, P]`` and their full-image pixel positions ``[V, F, J, P, P, 2]``."""
        from gsplat import rasterization

        radius = patch_radius_for(splats, cameras, targets, self.patch_radius)
        colors, _, _ = rasterization(**gsplat_patch_inputs(splats, cameras, targets, radius))  # [B, V, P, P, 1]
        alpha = patches_from_gsplat(colors, cameras.K.shape[0], *splats.means.shape[:2])
        origins, offsets = patch_grid(targets, radius)
        return alpha, origins[..., None, None, :] + offsets

    def image_loss(self, splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets) -> ImageLoss:
        alpha, pixels = self.render_patches(splats, cameras, targets)
        return patch_loss(alpha, evaluate_heatmaps(targets, pixels))
