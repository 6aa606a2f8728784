"""gsplat backend: its patch layout checked on CPU, and gsplat held equal to the torch raster renderer on CUDA.

CPU (always runs): ``GsplatRenderer`` runs its real code (patch radius ``patch_radius_for``, patch cameras and batch
layout ``gsplat_patch_inputs``, reshape back ``patches_from_gsplat``, loss) with ``gsplat.rasterization`` replaced
by ``emulate_rasterization``, a pure-torch copy of what gsplat 1.5.3's CUDA kernels compute for one-Gaussian
scenes (persp_proj with its Jacobian clamp, eps2d, opacity-aware bounding box and culling, pixel centres at +0.5,
``min(0.999, o exp(-sigma))`` cut at 1/255). Alpha patches, losses and gradients must equal ``RasterRenderer``'s
in float64. Where the gsplat package is importable (not in CI), the emulated projection is also checked against
gsplat's own ``_torch_impl``; and the CUDA tests' code is dry-run on CPU with the emulated kernels in float32.

CUDA (skipped without CUDA or a working gsplat): ``GsplatRenderer`` against ``RasterRenderer`` on 17 joints x 4 and
8 views, two image sizes and two patch sizes, with random (seeded) anisotropic, rotated splats near their targets.
Tolerances (shared/reference/gsplat.md):
- alpha patches: per-pixel max |diff| <= 1/255 + 1e-5 (a pixel at the 1/255 cut can flip under fast-math
  ``__expf``), and under 0.1 % of the non-zero pixels off by more than 1e-5;
- squared_error: rtol 1e-3 (atol 1e-4 of the largest term); support: within 1 % (+2 px) per channel;
- gradients wrt means, log_scales, quats: ``assert_close(rtol=2e-3, atol=1e-3 * max|g|)``.
The reference is the raster renderer in float64 on the same (float32) parameters, so the differences measured are
gsplat's own float32 arithmetic. The measured differences are printed (``[cuda] ...`` lines with ``-rA`` or ``-s``).
"""

from __future__ import annotations

import math
import sys
import time
import types
from importlib.machinery import ModuleSpec

import numpy as np
import pytest
import torch

from skelsplat_ros.fusion.adam import cameras_to_torch
from skelsplat_ros.fusion.gaussians import project_gaussians, quaternion_to_matrix
from skelsplat_ros.fusion.renderers import get_renderer
from skelsplat_ros.fusion.renderers import gsplat_renderer as renderers_gsplat
from skelsplat_ros.fusion.renderers.base import (
    MIN_ALPHA,
    HeatmapTargets,
    SplatParams,
    ViewCameras,
)
from skelsplat_ros.fusion.renderers.gsplat_renderer import (
    gsplat_patch_inputs,
    gsplat_unavailable_reason,
    patch_radius_for,
    patches_from_gsplat,
)
from skelsplat_ros.fusion.renderers.raster import (
    RasterRenderer,
    evaluate_heatmaps,
    patch_grid,
    patch_loss,
    rasterize_patches_torch,
)
from skelsplat_ros.sim import make_rig

F64 = torch.float64
NUM_JOINTS = 17
ALPHA_MAX_ATOL = 1.0 / 255.0 + 1e-5
# Bulk criterion (gsplat.md): under 0.1 % of the pixels where either side is non-zero may differ by more than 1e-5.
# float32 rounding alone stays well below that (the float32 emulation on CPU measures it: test below); __expf
# (fast math) adds ~1e-6 relative.
BULK_ATOL = 1e-5
BULK_FRACTION = 1e-3


# --------------------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------------------


def make_scene(
    num_views: int,
    image_size: tuple[int, int],
    target_sigma_px: tuple[float, float],
    num_frames: int = 1,
    seed: int = 0,
    splat_sigma_m: tuple[float, float] = (0.008, 0.04),
    offset_px: float = 4.0,
    dtype: torch.dtype = F64,
    device: str = "cpu",
) -> tuple[SplatParams, ViewCameras, HeatmapTargets]:
    """17 joints x ``num_frames`` random splats (anisotropic: per-axis sigmas from ``splat_sigma_m``, rotated,
    opacity 0.5..1) in the rig's working volume, seen by the 4-camera ``lab`` or 8-camera ``surround`` rig at
    ``image_size``; targets within ``offset_px`` of the projections, with axis-aligned sigmas from
    ``target_sigma_px``."""
    rig = make_rig("lab" if num_views == 4 else "surround", image_size=image_size, seed=seed)
    assert len(rig) == num_views
    cameras = cameras_to_torch(rig, "cpu", F64)
    rng = np.random.default_rng(seed)
    shape = (num_frames, NUM_JOINTS)
    means = rng.uniform([-0.4, -0.4, 0.2], [0.4, 0.4, 1.8], shape + (3,))
    splats = SplatParams(
        means=torch.tensor(means, dtype=F64),
        quats=torch.tensor(rng.normal(size=shape + (4,)), dtype=F64),
        log_scales=torch.tensor(np.log(rng.uniform(*splat_sigma_m, shape + (3,))), dtype=F64),
        opacities=torch.tensor(rng.uniform(0.5, 1.0, shape), dtype=F64),
    )
    means2d, _, depth = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t,
                                          cameras.image_size)
    size = cameras.image_size[:, None, None, :]
    assert (depth > 0.5).all() and ((means2d > 0) & (means2d < size)).all(), "scene precondition: splats in view"
    centres = means2d + torch.tensor(rng.uniform(-offset_px, offset_px, means2d.shape), dtype=F64)
    sigmas = torch.tensor(rng.uniform(*target_sigma_px, means2d.shape), dtype=F64)
    covariances = torch.diag_embed(sigmas**2)
    targets = HeatmapTargets(centres=centres, covariances=covariances)
    return _cast(splats, cameras, targets, dtype, device)


def _cast(splats, cameras, targets, dtype, device):
    as_ = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    return (
        SplatParams(as_(splats.means), as_(splats.quats), as_(splats.log_scales), as_(splats.opacities)),
        ViewCameras(as_(cameras.K), as_(cameras.R), as_(cameras.t), as_(cameras.image_size)),
        HeatmapTargets(as_(targets.centres), as_(targets.covariances)),
    )


def raster_alpha(splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets, radius: int) -> torch.Tensor:
    """``RasterRenderer``'s alpha patches ``[V, F, J, P, P]`` (its own internals, in its own order)."""
    means2d, cov2d, _ = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t,
                                          cameras.image_size)
    origins, offsets = patch_grid(targets, radius)
    return rasterize_patches_torch(means2d, cov2d, splats.opacities, origins[..., None, None, :] + offsets)


def heat_patches(targets: HeatmapTargets, radius: int) -> torch.Tensor:
    origins, offsets = patch_grid(targets, radius)
    return evaluate_heatmaps(targets, origins[..., None, None, :] + offsets)


def with_params(splats: SplatParams, params: list[torch.Tensor]) -> SplatParams:
    means, log_scales, quats = params
    return SplatParams(means, quats, log_scales, splats.opacities)


def leaf_params(splats: SplatParams, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Fresh leaves (means, log_scales, quats), optionally cast."""
    return [p.detach().to(dtype or p.dtype).clone().requires_grad_(True)
            for p in (splats.means, splats.log_scales, splats.quats)]


def loss_weights(shape, device, seed: int = 11) -> torch.Tensor:
    """Random positive weights per (view, frame, joint), so that a wrong permutation cannot cancel in the sum."""
    generator = torch.Generator().manual_seed(seed)
    return (0.5 + torch.rand(shape, generator=generator, dtype=F64)).to(device)


def bulk_fraction(diff: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of the pixels where ``a`` or ``b`` is non-zero that differ by more than ``BULK_ATOL``."""
    union = (a != 0) | (b != 0)
    return ((diff > BULK_ATOL) & union).sum().item() / max(1, union.sum().item())


def report(label: str, diff: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{label}: max |diff| {diff.max().item():.3g}, >{BULK_ATOL:g} on {bulk_fraction(diff, a, b):.3%} of pixels"


# --------------------------------------------------------------------------------------------------------------
# Pure-torch emulation of gsplat.rasterization for the one-Gaussian-per-scene layout
# --------------------------------------------------------------------------------------------------------------


def emulate_projection(means, quats, scales, viewmats, Ks, width: int, height: int, eps2d: float):
    """gsplat 1.5.3 pinhole EWA projection (``persp_proj`` in include/Utils.cuh, ``_torch_impl._persp_proj``).

    Shapes: means ``[B, N, 3]`` ... viewmats ``[B, C, 4, 4]``, Ks ``[B, C, 3, 3]``. Returns means2d ``[B, C, N, 2]``,
    cov2d ``[B, C, N, 2, 2]`` (with eps2d) and depths ``[B, C, N]``.
    """
    rot = quaternion_to_matrix(quats) * scales[..., None, :]
    covars = rot @ rot.transpose(-1, -2)  # [B, N, 3, 3]
    R, t = viewmats[..., :3, :3], viewmats[..., :3, 3]  # [B, C, 3, 3], [B, C, 3]
    means_c = torch.einsum("bcij,bnj->bcni", R, means) + t[:, :, None, :]
    covars_c = R[:, :, None] @ covars[:, None] @ R[:, :, None].transpose(-1, -2)
    x, y, z = means_c.unbind(-1)
    fx, fy = Ks[..., 0, 0, None], Ks[..., 1, 1, None]  # [B, C, 1]
    cx, cy = Ks[..., 0, 2, None], Ks[..., 1, 2, None]
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    tx = z * torch.clamp(x / z, min=-(cx / fx + 0.3 * tan_x), max=(width - cx) / fx + 0.3 * tan_x)
    ty = z * torch.clamp(y / z, min=-(cy / fy + 0.3 * tan_y), max=(height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * tx / z**2, zero, fy / z, -fy * ty / z**2], -1).reshape(z.shape + (2, 3))
    cov2d = jac @ covars_c @ jac.transpose(-1, -2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return means2d, cov2d, z


def emulate_rasterization(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, eps2d, sh_degree, packed,
    rasterize_mode,
):
    """What ``gsplat.rasterization`` returns as render_colors ``[B, C, H, W, D]`` for scenes of ONE Gaussian each.

    Per image: project (above); cull when depth < near_plane, det <= 0, opacity < 1/255, or the opacity-aware box
    ``ceil(min(3.33, sqrt(2 ln(255 o))) sqrt(cov_ii))`` misses the image (ProjectionEWA3DGSFused.cu); rasterise at
    pixel centres ``(j + 0.5, i + 0.5)`` with ``alpha = min(0.999, o exp(-sigma))``, skipped when sigma < 0 or
    alpha < 1/255 (RasterizeToPixels3DGSFwd.cu). With one Gaussian, transmittance is 1 and the colour is
    ``alpha * c``. The box covers every pixel with alpha >= 1/255, so tile culling changes nothing and is left out.
    """
    assert sh_degree is None and packed is False and rasterize_mode == "classic"
    assert means.shape[1] == 1, "the emulation covers one Gaussian per scene"
    means2d, cov2d, depth = emulate_projection(means, quats, scales, viewmats, Ks, width, height, eps2d)
    a, b, c = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 1]
    det = a * c - b * b
    conic = torch.stack([c / det, -b / det, a / det], dim=-1)  # [B, C, N, 3]
    opac = opacities[:, None, :].expand(depth.shape)  # [B, C, N]
    extend = torch.clamp(torch.sqrt(2.0 * torch.log(torch.clamp(opac, min=MIN_ALPHA) / MIN_ALPHA)), max=3.33)
    radius_x, radius_y = torch.ceil(extend * torch.sqrt(a)), torch.ceil(extend * torch.sqrt(c))
    mx, my = means2d[..., 0], means2d[..., 1]
    visible = (
        (depth >= near_plane) & (det > 0) & (opac >= MIN_ALPHA)
        & (mx + radius_x > 0) & (mx - radius_x < width) & (my + radius_y > 0) & (my - radius_y < height)
    )
    px = torch.arange(width, dtype=means.dtype, device=means.device) + 0.5
    py = torch.arange(height, dtype=means.dtype, device=means.device) + 0.5
    dx = px[None, :] - mx[..., None, None]  # [B, C, N, 1, W]
    dy = py[:, None] - my[..., None, None]  # [B, C, N, H, 1]
    sigma = (0.5 * (conic[..., 0, None, None] * dx * dx + conic[..., 2, None, None] * dy * dy)
             + conic[..., 1, None, None] * dx * dy)  # [B, C, N, H, W]
    alpha = torch.clamp(opac[..., None, None] * torch.exp(-sigma), max=0.999)
    keep = (sigma >= 0) & (alpha >= MIN_ALPHA) & visible[..., None, None]
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))[:, :, 0]  # [B, C, H, W] (N = 1)
    colors = torch.broadcast_to(colors[:, None], alpha.shape[:2] + colors.shape[1:])[:, :, 0]  # [B, N, D] -> [B, C, D]
    return alpha[..., None] * colors[:, :, None, None, :]


def emulated_alpha(splats, cameras, targets, radius: int) -> torch.Tensor:
    colors = emulate_rasterization(**gsplat_patch_inputs(splats, cameras, targets, radius))
    return patches_from_gsplat(colors, cameras.K.shape[0], *splats.means.shape[:2])


# --------------------------------------------------------------------------------------------------------------
# CPU: layout of GsplatRenderer against RasterRenderer
# --------------------------------------------------------------------------------------------------------------

CPU_CASES = [  # (views, image size, target sigma range px, frames)
    pytest.param(4, (1920, 1080), (2.0, 4.0), 2, id="4views-1080p-small-patch"),
    pytest.param(8, (960, 540), (5.0, 9.0), 1, id="8views-540p-large-patch"),
]


@pytest.mark.parametrize("num_views, image_size, sigma, frames", CPU_CASES)
def test_layout_shapes_and_patch_cameras(num_views, image_size, sigma, frames):
    splats, cameras, targets = make_scene(num_views, image_size, sigma, num_frames=frames)
    radius = patch_radius_for(splats, cameras, targets)
    inputs = gsplat_patch_inputs(splats, cameras, targets, radius)
    batch, size = frames * NUM_JOINTS, 2 * radius + 1
    assert inputs["width"] == inputs["height"] == size
    expected = {"means": (batch, 1, 3), "quats": (batch, 1, 4), "scales": (batch, 1, 3), "opacities": (batch, 1),
                "colors": (batch, 1, 1), "viewmats": (batch, num_views, 4, 4), "Ks": (batch, num_views, 3, 3)}
    for name, shape in expected.items():
        assert tuple(inputs[name].shape) == shape, name
    origins, _ = patch_grid(targets, radius)
    for f in range(frames):
        for j in (0, 7, NUM_JOINTS - 1):
            b = f * NUM_JOINTS + j
            assert torch.equal(inputs["means"][b, 0], splats.means[f, j])
            for v in range(num_views):
                K = inputs["Ks"][b, v]
                assert K[0, 0] == cameras.K[v, 0, 0] and K[1, 1] == cameras.K[v, 1, 1]
                assert K[0, 2] == pytest.approx(cameras.K[v, 0, 2].item() - origins[v, f, j, 0].item() + 0.5)
                assert K[1, 2] == pytest.approx(cameras.K[v, 1, 2].item() - origins[v, f, j, 1].item() + 0.5)
                assert torch.equal(inputs["viewmats"][b, v, :3, :3], cameras.R[v])
                assert torch.equal(inputs["viewmats"][b, v, :3, 3], cameras.t[v])
                assert torch.equal(inputs["viewmats"][b, v, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64))
    assert float(inputs["opacities"].max()) <= 0.99
    # patches_from_gsplat inverts the batch order: a tensor tagged with (b, v) comes back at [v, f, j].
    tags = torch.arange(batch * num_views, dtype=F64).reshape(batch, num_views, 1, 1, 1).expand(-1, -1, size, size, 1)
    back = patches_from_gsplat(tags, num_views, frames, NUM_JOINTS)
    assert back.shape == (num_views, frames, NUM_JOINTS, size, size)
    for v, f, j in [(0, 0, 0), (num_views - 1, frames - 1, NUM_JOINTS - 1), (1, frames - 1, 5)]:
        assert back[v, f, j, 0, 0].item() == (f * NUM_JOINTS + j) * num_views + v


@pytest.fixture
def emulated_gsplat(monkeypatch):
    """``GsplatRenderer`` running on CPU: gsplat's ``rasterization`` replaced by ``emulate_rasterization``.

    Everything else is the renderer's own code: patch radius, patch cameras, batch layout, reshapes, loss.
    """
    fake = types.ModuleType("gsplat")
    fake.__spec__ = ModuleSpec("gsplat", None)
    calls = []

    def rasterization(**kwargs):
        calls.append({k: (tuple(v.shape) if torch.is_tensor(v) else v) for k, v in kwargs.items()})
        colors = emulate_rasterization(**kwargs)
        return colors, colors[..., :1], {}

    fake.rasterization = rasterization
    monkeypatch.setitem(sys.modules, "gsplat", fake)
    monkeypatch.setattr(renderers_gsplat, "gsplat_unavailable_reason", lambda: None)
    renderer = renderers_gsplat.GsplatRenderer("cuda")  # only a device name: nothing is allocated there
    renderer.calls = calls
    return renderer


@pytest.mark.parametrize("num_views, image_size, sigma, frames", CPU_CASES)
def test_gsplat_renderer_reproduces_raster_on_cpu_with_emulated_kernels(emulated_gsplat, num_views, image_size,
                                                                        sigma, frames):
    """GsplatRenderer (its real code, gsplat's kernels emulated) gives RasterRenderer's alpha patches, losses and
    gradients wrt means, log_scales and quats, in float64: the layout and patch cameras are right."""
    splats, cameras, targets = make_scene(num_views, image_size, sigma, num_frames=frames, seed=num_views)
    radius = patch_radius_for(splats, cameras, targets)
    alpha, pixels = emulated_gsplat.render_patches(splats, cameras, targets)
    reference = raster_alpha(splats, cameras, targets, radius)
    assert alpha.shape == reference.shape == pixels.shape[:-1]
    assert emulated_gsplat.calls[-1]["width"] == 2 * radius + 1
    assert ((reference > 0).sum(dim=(-2, -1)) > 0).all()  # every splat is seen in its patch
    torch.testing.assert_close(alpha, reference, rtol=0, atol=1e-9)

    ref_loss = RasterRenderer().image_loss(splats, cameras, targets)
    loss = emulated_gsplat.image_loss(splats, cameras, targets)
    torch.testing.assert_close(loss.squared_error, ref_loss.squared_error, rtol=1e-9, atol=1e-9)
    assert torch.equal(loss.support, ref_loss.support)

    weights = loss_weights(ref_loss.squared_error.shape, "cpu")
    ref_params, params = leaf_params(splats), leaf_params(splats)
    ref_total = (RasterRenderer().image_loss(with_params(splats, ref_params), cameras, targets).squared_error
                 * weights).sum()
    total = (emulated_gsplat.image_loss(with_params(splats, params), cameras, targets).squared_error * weights).sum()
    for name, g_ref, g in zip(("means", "log_scales", "quats"), torch.autograd.grad(ref_total, ref_params),
                              torch.autograd.grad(total, params)):
        assert g_ref.abs().max() > 0, name
        torch.testing.assert_close(g, g_ref, rtol=1e-7, atol=1e-9 * g_ref.abs().max().item(), msg=name)


def test_gsplat_renderer_patch_size_follows_the_splats(emulated_gsplat):
    """Splats larger than their heatmaps enlarge RasterRenderer's patches; GsplatRenderer's must follow."""
    splats, cameras, targets = make_scene(4, (1920, 1080), (2.0, 3.0), num_frames=1, seed=12)
    big = SplatParams(splats.means, splats.quats, torch.full_like(splats.log_scales, math.log(0.05)),
                      splats.opacities)
    assert patch_radius_for(big, cameras, targets) > patch_radius_for(splats, cameras, targets)
    ref_loss = RasterRenderer().image_loss(big, cameras, targets)
    loss = emulated_gsplat.image_loss(big, cameras, targets)
    torch.testing.assert_close(loss.squared_error, ref_loss.squared_error, rtol=1e-9, atol=1e-9)
    assert torch.equal(loss.support, ref_loss.support)
    # An explicit patch radius is passed through unchanged.
    fixed = renderers_gsplat.GsplatRenderer("cuda", patch_radius=9)
    fixed.render_patches(big, cameras, targets)
    assert emulated_gsplat.calls[-1]["width"] == 19


def test_skewed_cameras_are_refused_rather_than_rendered_without_skew():
    """gsplat's projection reads fx, fy, cx, cy only: a camera with skew would be rendered wrongly, so it is an error."""
    splats, cameras, targets = make_scene(4, (1920, 1080), (2.0, 4.0), num_frames=1, seed=3)
    skewed_K = cameras.K.clone()
    skewed_K[1, 0, 1] = 3.0
    skewed = type(cameras)(K=skewed_K, R=cameras.R, t=cameras.t, image_size=cameras.image_size)
    with pytest.raises(ValueError, match="no skew term"):
        gsplat_patch_inputs(splats, skewed, targets, patch_radius_for(splats, skewed, targets))


def test_layout_check_catches_a_wrong_permutation():
    """Negative control: patches taken back in (joint, frame) instead of (frame, joint) order do not match."""
    splats, cameras, targets = make_scene(4, (1920, 1080), (2.0, 4.0), num_frames=2, seed=3)
    radius = patch_radius_for(splats, cameras, targets)
    colors = emulate_rasterization(**gsplat_patch_inputs(splats, cameras, targets, radius))
    size = 2 * radius + 1
    wrong = colors[..., 0].reshape(NUM_JOINTS, 2, 4, size, size).permute(2, 1, 0, 3, 4)
    assert (wrong - raster_alpha(splats, cameras, targets, radius)).abs().max() > 0.1


def test_float32_rounding_floor_of_the_patch_layout():
    """The emulation in float32 (as gsplat computes) against the float64 reference stays inside the CUDA tests'
    tolerances: float32 rounding alone does not use them up."""
    splats, cameras, targets = make_scene(8, (1920, 1080), (2.0, 4.0), num_frames=2, seed=5)
    radius = patch_radius_for(splats, cameras, targets)
    reference = raster_alpha(splats, cameras, targets, radius)
    s32, c32, t32 = _cast(splats, cameras, targets, torch.float32, "cpu")
    emulated = emulated_alpha(s32, c32, t32, radius).to(F64)
    diff = (emulated - reference).abs()
    assert diff.max() <= ALPHA_MAX_ATOL, report("float32", diff, emulated, reference)
    assert bulk_fraction(diff, emulated, reference) < BULK_FRACTION / 10, report("float32", diff, emulated, reference)


def test_emulated_projection_matches_gsplat_torch_impl():
    """Where the gsplat package is importable (CPU is enough), its torch reference projection, called with exactly
    the layout GsplatRenderer passes, gives the emulation's means2d, conics and depths."""
    torch_impl = pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat is not installed (optional extra)")
    splats, cameras, targets = make_scene(4, (1920, 1080), (2.0, 4.0), num_frames=2, seed=7)
    inputs = gsplat_patch_inputs(splats, cameras, targets, patch_radius_for(splats, cameras, targets))
    covars, _ = torch_impl._quat_scale_to_covar_preci(inputs["quats"], inputs["scales"], True, False, triu=False)
    _, means2d, depths, conics, _ = torch_impl._fully_fused_projection(
        inputs["means"], covars, inputs["viewmats"], inputs["Ks"], inputs["width"], inputs["height"],
        eps2d=inputs["eps2d"], near_plane=inputs["near_plane"],
    )
    e_means2d, e_cov2d, e_depth = emulate_projection(inputs["means"], inputs["quats"], inputs["scales"],
                                                      inputs["viewmats"], inputs["Ks"], inputs["width"],
                                                      inputs["height"], inputs["eps2d"])
    a, b, c = e_cov2d[..., 0, 0], e_cov2d[..., 0, 1], e_cov2d[..., 1, 1]
    det = a * c - b * b
    torch.testing.assert_close(means2d, e_means2d, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(depths, e_depth, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(conics, torch.stack([c / det, -b / det, a / det], -1), rtol=1e-9, atol=1e-12)


@pytest.mark.xfail(
    strict=True,
    reason="gsplat clamps the projection Jacobian to 1.15x the field of view of the camera it is given, here the "
    "PATCH camera, while RasterRenderer clamps to the full image: a splat whose centre projects more than 0.15 P "
    "outside its P x P patch gets a slightly different footprint through gsplat (alpha off by up to ~1/255 at the "
    "cut, loss by up to ~0.3 %). With the default patch radius every splat that overlaps its heatmap has its centre "
    "inside the patch, so this needs an explicit patch_radius, the 64 px cap, or a splat that misses its heatmap "
    "(reported, not fixed here)",
)
def test_layout_matches_raster_when_the_splat_projects_far_outside_its_patch():
    splats, cameras, targets = make_scene(4, (1920, 1080), (2.0, 3.0), num_frames=1, seed=9)
    radius = 12  # explicit, as RasterRenderer(patch_radius=12) / GsplatRenderer(patch_radius=12)
    moved = HeatmapTargets(targets.centres + torch.tensor([2.0 * radius, 0.0], dtype=F64), targets.covariances)
    big = SplatParams(splats.means, splats.quats, torch.full_like(splats.log_scales, math.log(0.06)),
                      splats.opacities)
    reference = raster_alpha(big, cameras, moved, radius)
    assert reference.amax() > 0.5  # the splats do reach the moved patches
    heat = heat_patches(moved, radius)
    emulated = emulated_alpha(big, cameras, moved, radius)
    torch.testing.assert_close(patch_loss(emulated, heat).squared_error, patch_loss(reference, heat).squared_error,
                               rtol=1e-3, atol=0)


# --------------------------------------------------------------------------------------------------------------
# CPU: availability
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_gsplat_backend_fails_fast_naming_cuda():
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="CUDA") as info:
        get_renderer("gsplat")
    assert time.perf_counter() - start < 2.0
    assert "\n" not in str(info.value)
    with pytest.raises(RuntimeError, match="CUDA"):
        renderers_gsplat.GsplatRenderer("cpu")


def test_gsplat_unavailable_reason_is_one_line():
    reason = gsplat_unavailable_reason()
    if torch.cuda.is_available() and reason is None:
        return  # usable here: the CUDA tests below run
    assert isinstance(reason, str) and reason.strip() and "\n" not in reason
    if not torch.cuda.is_available():
        assert "CUDA" in reason


def test_gsplat_unavailable_reason_stays_one_line_when_the_build_fails(monkeypatch):
    """A failed JIT build raises with the compiler's multi-line log; the reason must still be one short line."""
    fake_gsplat = types.ModuleType("gsplat")
    fake_gsplat.__spec__ = ModuleSpec("gsplat", None)
    fake_cuda = types.ModuleType("gsplat.cuda")
    fake_backend = types.ModuleType("gsplat.cuda._backend")

    def failing_getattr(name):
        raise RuntimeError("Error building extension 'gsplat_cuda':\n[1/29] nvcc ...\n" + "x" * 5000 + "\nerror: ...")

    fake_backend.__getattr__ = failing_getattr
    monkeypatch.setitem(sys.modules, "gsplat", fake_gsplat)
    monkeypatch.setitem(sys.modules, "gsplat.cuda", fake_cuda)
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", fake_backend)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    reason = gsplat_unavailable_reason()
    assert isinstance(reason, str) and "\n" not in reason and len(reason) <= 400, reason
    assert "gsplat_cuda" in reason
    # The failed build is remembered: asking again (auto does, per refinement) does not rebuild.
    attempts = []
    fake_backend.__getattr__ = lambda name: attempts.append(name) or failing_getattr(name)
    assert gsplat_unavailable_reason() == reason and not attempts


# --------------------------------------------------------------------------------------------------------------
# CUDA: gsplat against the torch raster renderer
# --------------------------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available (torch sees no GPU)")
GPU = "cuda"
"""Device of the CUDA tests' tensors (the CPU dry run below swaps in "cpu" and emulated gsplat kernels)."""


@pytest.fixture(scope="module")
def gsplat_renderer():
    """A GsplatRenderer on cuda, or skip with gsplat_unavailable_reason() (the first call may JIT-build gsplat)."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available (torch sees no GPU)")
    reason = gsplat_unavailable_reason()
    if reason is not None:
        pytest.skip(f"gsplat unusable: {reason}")
    return renderers_gsplat.GsplatRenderer("cuda")


GPU_CASES = [  # (views, image size, target sigma px, splat sigma m, frames): small and large patches
    pytest.param(4, (1920, 1080), (2.0, 4.0), (0.004, 0.012), 3, id="4views-1080p-small"),
    pytest.param(4, (960, 540), (6.0, 10.0), (0.02, 0.05), 2, id="4views-540p-large"),
    pytest.param(8, (1920, 1080), (2.0, 4.0), (0.004, 0.012), 2, id="8views-1080p-small"),
    pytest.param(8, (960, 540), (6.0, 10.0), (0.02, 0.05), 1, id="8views-540p-large"),
]


@pytest.mark.parametrize("num_views, image_size, sigma, splat_sigma, frames", GPU_CASES)
def test_gsplat_forward_matches_raster_on_cuda(gsplat_renderer, num_views, image_size, sigma, splat_sigma, frames):
    splats, cameras, targets = make_scene(num_views, image_size, sigma, num_frames=frames, seed=20 + num_views,
                                          splat_sigma_m=splat_sigma, dtype=torch.float32, device=GPU)
    ref_splats, ref_cameras, ref_targets = _cast(splats, cameras, targets, F64, GPU)
    radius = patch_radius_for(ref_splats, ref_cameras, ref_targets)
    alpha, pixels = gsplat_renderer.render_patches(splats, cameras, targets)
    reference = raster_alpha(ref_splats, ref_cameras, ref_targets, radius)
    assert alpha.shape == reference.shape == pixels.shape[:-1]
    diff = (alpha.to(F64) - reference).abs()
    text = report(f"[{GPU}] alpha {num_views} views {image_size} P={2 * radius + 1}", diff, alpha, reference)
    print(text)
    assert diff.max() <= ALPHA_MAX_ATOL, text
    assert bulk_fraction(diff, alpha, reference) < BULK_FRACTION, text

    loss = gsplat_renderer.image_loss(splats, cameras, targets)
    ref_loss = RasterRenderer().image_loss(ref_splats, ref_cameras, ref_targets)
    scale = ref_loss.squared_error.abs().max().item()
    torch.testing.assert_close(loss.squared_error.to(F64), ref_loss.squared_error, rtol=1e-3, atol=1e-4 * scale)
    support_diff = (loss.support.to(F64) - ref_loss.support).abs()
    assert (support_diff <= 2 + 0.01 * ref_loss.support).all(), support_diff.max()


@pytest.mark.parametrize("num_views, image_size, sigma, splat_sigma, frames", GPU_CASES)
def test_gsplat_gradients_match_raster_on_cuda(gsplat_renderer, num_views, image_size, sigma, splat_sigma, frames):
    splats, cameras, targets = make_scene(num_views, image_size, sigma, num_frames=frames, seed=40 + num_views,
                                          splat_sigma_m=splat_sigma, dtype=torch.float32, device=GPU)
    ref_splats, ref_cameras, ref_targets = _cast(splats, cameras, targets, F64, GPU)
    weights = loss_weights((num_views, frames, NUM_JOINTS), GPU)
    params, ref_params = leaf_params(splats), leaf_params(splats, F64)
    total = (gsplat_renderer.image_loss(with_params(splats, params), cameras, targets).squared_error
             * weights.float()).sum()
    ref_total = (RasterRenderer().image_loss(with_params(ref_splats, ref_params), ref_cameras, ref_targets)
                 .squared_error * weights).sum()
    grads = torch.autograd.grad(total, params)
    ref_grads = torch.autograd.grad(ref_total, ref_params)
    for name, g, g_ref in zip(("means", "log_scales", "quats"), grads, ref_grads):
        scale = g_ref.abs().max().item()
        rel = ((g.to(F64) - g_ref).abs().max().item()) / scale
        print(f"[{GPU}] grad {name} {num_views} views {image_size}: max|diff|/max|g| = {rel:.3g}")
        torch.testing.assert_close(g.to(F64), g_ref, rtol=2e-3, atol=1e-3 * scale, msg=name)


@needs_cuda
@pytest.mark.parametrize("dtype, tol", [(F64, 1e-9), (torch.float32, 2e-4)], ids=["float64", "float32"])
def test_raster_on_cuda_equals_raster_on_cpu(dtype, tol):
    splats, cameras, targets = make_scene(8, (1920, 1080), (2.0, 4.0), num_frames=2, seed=60, dtype=dtype)
    gpu = _cast(splats, cameras, targets, dtype, GPU)
    weights = loss_weights((8, 2, NUM_JOINTS), "cpu").to(dtype)
    results = []
    for (s, c, t), device in (((splats, cameras, targets), "cpu"), (gpu, GPU)):
        params = leaf_params(s)
        loss = RasterRenderer().image_loss(with_params(s, params), c, t)
        total = (loss.squared_error * weights.to(device)).sum()
        results.append((loss, torch.autograd.grad(total, params)))
    (cpu_loss, cpu_grads), (gpu_loss, gpu_grads) = results
    scale = cpu_loss.squared_error.abs().max().item()
    torch.testing.assert_close(gpu_loss.squared_error.cpu(), cpu_loss.squared_error, rtol=tol, atol=tol * scale)
    # The 1/255 cut may flip a pixel or two in float32 between devices.
    support_diff = (gpu_loss.support.cpu() - cpu_loss.support).abs()
    assert support_diff.max() <= (0 if dtype == F64 else 2)
    for name, g_gpu, g_cpu in zip(("means", "log_scales", "quats"), gpu_grads, cpu_grads):
        scale = g_cpu.abs().max().item()
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=max(tol, 1e-3 if dtype != F64 else tol),
                                   atol=(tol if dtype == F64 else 1e-3) * scale, msg=name)


def test_auto_picks_gsplat_on_cuda(gsplat_renderer):
    assert isinstance(get_renderer("auto", "cuda"), renderers_gsplat.GsplatRenderer)
    assert isinstance(get_renderer("gsplat", "cuda"), renderers_gsplat.GsplatRenderer)
    assert gsplat_unavailable_reason() is None


def test_refine_with_gsplat_matches_raster_on_cuda(gsplat_renderer):
    """End to end: the paper preset on a short simulated recording; both backends land as close to the ground truth
    (MPJPE within 1 mm of each other) and close to each other."""
    from dataclasses import replace

    from skelsplat_ros.fusion import fuse_offline, preset_config
    from skelsplat_ros.sim import make_scenario

    scenario = make_scenario("lab", num_frames=8, noise="realistic", seed=3)
    joints = {}
    for backend in ("raster", "gsplat"):
        config = preset_config("paper", backend=backend)
        config = replace(config, refine=replace(config.refine, device="cuda"))
        joints[backend] = fuse_offline(scenario.rig, scenario.skeleton, scenario.keypoints, config).joints
    mpjpe = {name: float(np.nanmean(np.linalg.norm(j - scenario.ground_truth, axis=-1))) * 1000 for name, j in
             joints.items()}
    gap = float(np.nanmax(np.linalg.norm(joints["gsplat"] - joints["raster"], axis=-1))) * 1000
    print(f"[cuda] refine MPJPE mm {mpjpe}, max per-joint gap {gap:.3f} mm")
    assert abs(mpjpe["gsplat"] - mpjpe["raster"]) < 1.0
    assert gap < 10.0


def test_cuda_checks_dry_run_on_cpu(emulated_gsplat, monkeypatch):
    """The CUDA tests' own code (scenes, casts, tolerances, reports) on CPU, with gsplat's kernels emulated in
    float32: so that the one GPU run does not fail on a mistake in the tests themselves."""
    monkeypatch.setattr(sys.modules[__name__], "GPU", "cpu")
    for case in GPU_CASES:
        test_gsplat_forward_matches_raster_on_cuda(emulated_gsplat, *case.values)
        test_gsplat_gradients_match_raster_on_cuda(emulated_gsplat, *case.values)
    test_raster_on_cuda_equals_raster_on_cpu(torch.float32, 2e-4)
