"""Renderers: gradients against finite differences, raster vs closed form, minimum on target, backend selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skelsplat_ros.fusion.gaussians import EPS2D, project_gaussians
from skelsplat_ros.fusion.renderers import get_renderer
from skelsplat_ros.fusion.renderers.analytic import AnalyticRenderer
from skelsplat_ros.fusion.renderers.base import (
    MIN_ALPHA,
    HeatmapTargets,
    SplatParams,
    ViewCameras,
)
from skelsplat_ros.fusion.renderers.raster import (
    RasterRenderer,
    heatmap_patch_radius,
    patch_grid,
)

F64 = torch.float64
FOCAL, DEPTH = 1000.0, 4.0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one torch thread is several times faster than two on a small machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _look_at(centre, target):
    forward = np.asarray(target, float) - np.asarray(centre, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    R = np.stack([right, np.cross(forward, right), forward])
    return R, -R @ np.asarray(centre, float)


def _three_views() -> ViewCameras:
    Ks, Rs, ts = [], [], []
    views = [([3.5, 0.5, 1.5], 1000.0), ([-1.0, 3.6, 2.0], 1300.0), ([-2.8, -2.6, 1.2], 900.0)]
    for k, (centre, focal) in enumerate(views):
        R, t = _look_at(centre, [0.0, 0.0, 1.0])
        Ks.append([[focal, 0.0, 640.0 + k], [0.0, focal, 360.0 - k], [0.0, 0.0, 1.0]])
        Rs.append(R)
        ts.append(t)
    return ViewCameras(
        torch.tensor(Ks, dtype=F64), torch.tensor(np.array(Rs), dtype=F64), torch.tensor(np.array(ts), dtype=F64),
        torch.tensor([[1280.0, 720.0]] * 3, dtype=F64),
    )


def _front_view() -> ViewCameras:
    """One camera at the origin looking along +z (world = camera frame)."""
    K = torch.tensor([[[FOCAL, 0.0, 640.0], [0.0, FOCAL, 360.0], [0.0, 0.0, 1.0]]], dtype=F64)
    return ViewCameras(K, torch.eye(3, dtype=F64)[None], torch.zeros(1, 3, dtype=F64),
                       torch.tensor([[1280.0, 720.0]], dtype=F64))


def _splat_at_pixel(uv, sigma_px: float, opacity: float = 0.9) -> SplatParams:
    """An isotropic splat at depth DEPTH in the front view, projecting to ``uv`` with a 2D sigma of ``sigma_px``
    (the 0.3 px^2 dilation included)."""
    sigma_world = math.sqrt(sigma_px**2 - EPS2D) * DEPTH / FOCAL
    mean = [(uv[0] - 640.0) / FOCAL * DEPTH, (uv[1] - 360.0) / FOCAL * DEPTH, DEPTH]
    return SplatParams(
        means=torch.tensor([[mean]], dtype=F64),
        quats=torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=F64),
        log_scales=torch.full((1, 1, 3), math.log(sigma_world), dtype=F64),
        opacities=torch.tensor([[opacity]], dtype=F64),
    )


def _targets(centres: np.ndarray, sigmas: np.ndarray) -> HeatmapTargets:
    """Isotropic targets from ``centres [V, F, J, 2]`` and ``sigmas [V, F, J]`` (px)."""
    sigmas = torch.as_tensor(sigmas, dtype=F64)
    return HeatmapTargets(torch.as_tensor(centres, dtype=F64), sigmas[..., None, None] ** 2 * torch.eye(2, dtype=F64))


def _scene(seed: int = 0, num_frames: int = 1, num_joints: int = 2, offset_px: float = 3.0, opacity: float = 0.9):
    """Splats in three views, each target offset by a few px from its splat's projection."""
    rng = np.random.default_rng(seed)
    cameras = _three_views()
    means = rng.uniform([-0.3, -0.3, 0.6], [0.3, 0.3, 1.4], (num_frames, num_joints, 3))
    quats = rng.normal(size=(num_frames, num_joints, 4))
    log_scales = np.log(rng.uniform(0.02, 0.04, (num_frames, num_joints, 3)))
    splats = SplatParams(
        torch.tensor(means, dtype=F64), torch.tensor(quats, dtype=F64), torch.tensor(log_scales, dtype=F64),
        torch.full((num_frames, num_joints), opacity, dtype=F64),
    )
    means2d, _, _ = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t,
                                      cameras.image_size)
    centres = means2d.numpy() + rng.uniform(-offset_px, offset_px, means2d.shape)
    targets = _targets(centres, rng.uniform(4.0, 7.0, means2d.shape[:-1]))
    return splats, cameras, targets


def _alpha_before_cut(splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets) -> torch.Tensor:
    """The splat values, without the 1/255 cut, on the largest patch the raster renderer may use."""
    means2d, cov2d, _ = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t,
                                          cameras.image_size)
    origins, offsets = patch_grid(targets, 64)
    pixels = origins[..., None, None, :] + offsets
    conic = torch.linalg.inv(cov2d)
    diff = pixels - means2d[..., None, None, :]
    mahal = torch.einsum("...i,...ij,...j->...", diff, conic[..., None, None, :, :], diff)
    return torch.clamp(splats.opacities, max=0.99)[None, ..., None, None] * torch.exp(-0.5 * mahal)


def _param_list(splats: SplatParams) -> list[torch.Tensor]:
    return [splats.means, splats.log_scales, splats.quats]


def _loss_fn(renderer, splats: SplatParams, cameras: ViewCameras, targets: HeatmapTargets):
    def fn(means, log_scales, quats):
        s = SplatParams(means, quats, log_scales, splats.opacities)
        return renderer.image_loss(s, cameras, targets).squared_error

    return fn


def _cut_mask(splats, cameras, targets) -> torch.Tensor:
    """Which patch pixels the raster renderer keeps (alpha >= 1/255)."""
    return _alpha_before_cut(splats, cameras, targets) >= MIN_ALPHA


def _perturbed(params: list[torch.Tensor], k: int, i: int, step: float) -> list[torch.Tensor]:
    out = [p.detach().clone() for p in params]
    out[k].reshape(-1)[i] += step
    return out


def _central_differences(renderer, splats, cameras, targets, step: float):
    """Autograd and central-difference gradients of the summed loss, and whether each +-step flips a cut pixel
    (always False for the analytic renderer, which has no cut)."""
    params = [p.clone().requires_grad_(True) for p in _param_list(splats)]
    fn = _loss_fn(renderer, splats, cameras, targets)
    grads = torch.autograd.grad(fn(*params).sum(), params)
    base_mask = _cut_mask(splats, cameras, targets) if isinstance(renderer, RasterRenderer) else None
    rows = []
    for k, grad in enumerate(grads):
        for i in range(grad.numel()):
            values, flipped = [], False
            for sign in (1.0, -1.0):
                moved = _perturbed(params, k, i, sign * step)
                values.append(fn(*moved).sum().item())
                moved_splats = SplatParams(moved[0], moved[2], moved[1], splats.opacities)
                if isinstance(renderer, RasterRenderer):
                    flipped |= bool((_cut_mask(moved_splats, cameras, targets) != base_mask).any())
            rows.append((grad.reshape(-1)[i].item(), (values[0] - values[1]) / (2 * step), flipped))
    return rows, max(g.abs().max().item() for g in grads)


# --- gradients --------------------------------------------------------------------------------------------------


def test_analytic_gradcheck_wrt_means_log_scales_quats():
    splats, cameras, targets = _scene(seed=1, num_frames=2, num_joints=2)
    inputs = [p.clone().requires_grad_(True) for p in _param_list(splats)]
    assert torch.autograd.gradcheck(_loss_fn(AnalyticRenderer(), splats, cameras, targets), inputs,
                                    eps=1e-6, atol=1e-7, rtol=1e-6)


def test_raster_gradcheck_where_no_pixel_crosses_the_cut():
    splats, cameras, targets = _scene(seed=2, num_frames=1, num_joints=2)
    eps = 1e-6
    # Precondition: no +-eps move of any parameter (what gradcheck does) takes a pixel across the 1/255 cut.
    rows, _ = _central_differences(RasterRenderer(), splats, cameras, targets, eps)
    assert not any(flipped for _, _, flipped in rows)
    inputs = [p.clone().requires_grad_(True) for p in _param_list(splats)]
    fn = _loss_fn(RasterRenderer(), splats, cameras, targets)
    assert torch.autograd.gradcheck(fn, inputs, eps=eps, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("renderer", [RasterRenderer(), AnalyticRenderer()], ids=["raster", "analytic"])
def test_gradient_of_total_loss_matches_central_differences(renderer):
    """Summed loss over 3 views x 2 frames x 3 joints, every parameter, steps of 1e-6.

    Away from the cut both renderers are smooth: 1e-5 relative agreement. A raster pixel crossing the 1/255 cut
    makes the loss jump by up to ~2/255, i.e. a central difference off by up to ~(2/255)/(2 step): those few
    components are left out, and must stay a small minority.
    """
    splats, cameras, targets = _scene(seed=3, num_frames=2, num_joints=3, offset_px=4.0)
    if isinstance(renderer, RasterRenderer):
        # Pin the patch size: a finite-difference step must not change which pixels are summed.
        means2d, cov2d, _ = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t,
                                              cameras.image_size)
        renderer = RasterRenderer(patch_radius=heatmap_patch_radius(targets, means2d, cov2d) + 2)
    rows, grad_scale = _central_differences(renderer, splats, cameras, targets, 1e-6)
    clean = [(g, n) for g, n, flipped in rows if not flipped]
    assert len(clean) >= 0.8 * len(rows)
    worst = max(abs(g - n) / max(abs(g), abs(n), 1e-3 * grad_scale) for g, n in clean)
    assert worst < 1e-5, worst


# --- raster vs analytic -----------------------------------------------------------------------------------------


def _losses(sigma_render: float, sigma_target: float, offset_sigmas, direction=(1.0, 0.0), opacity=0.9):
    """Raster and analytic squared errors for a splat offset from its target by ``offset_sigmas`` target sigmas."""
    target = np.array([640.3, 360.7])  # off the pixel grid on purpose
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    raster, analytic = [], []
    for k in offset_sigmas:
        splats = _splat_at_pixel(target + k * sigma_target * d, sigma_render, opacity)
        targets = _targets(target[None, None, None], np.array([[[sigma_target]]]))
        raster.append(RasterRenderer().image_loss(splats, _front_view(), targets).squared_error.item())
        analytic.append(AnalyticRenderer().image_loss(splats, _front_view(), targets).squared_error.item())
    return np.array(raster), np.array(analytic)


OFFSETS = np.linspace(0.0, 3.0, 13)


@pytest.mark.parametrize("sigma", [2.0, 3.5, 5.0, 8.0])
@pytest.mark.parametrize("direction", [(1.0, 0.0), (1.0, 1.0), (0.3, -1.0)], ids=["x", "diagonal", "mostly_y"])
def test_raster_agrees_with_analytic_for_equal_sizes(sigma, direction):
    """Splat and target of equal size sigma (2..8 px), offsets 0..3 sigma.

    Tolerance: 0.5% of the analytic loss up to 2 sigma and 4% up to 3 sigma. Pixel sampling (Poisson summation,
    ~exp(-pi^2 sigma^2)), the 1/255 cut (~2e-5 of the splat energy) and the 4-sigma heatmap cut (~1e-8) are far
    smaller; what remains at 3 sigma is splat energy outside the target's square patch (radius 4 sigma), which
    the raster renderer does not see.
    """
    raster, analytic = _losses(sigma, sigma, OFFSETS, direction)
    relative = np.abs(raster / analytic - 1.0)
    assert relative[OFFSETS <= 2.0].max() < 5e-3, relative
    assert relative.max() < 4e-2, relative
    assert np.argmin(raster) == np.argmin(analytic) == 0
    assert (np.diff(raster) > 0).all() and (np.diff(analytic) > 0).all()


@pytest.mark.parametrize("sigma_render, sigma_target", [(2.0, 5.0), (2.0, 8.0), (3.0, 4.0), (5.0, 8.0)])
def test_raster_agrees_with_analytic_for_splats_smaller_than_targets(sigma_render, sigma_target):
    raster, analytic = _losses(sigma_render, sigma_target, OFFSETS, (1.0, 0.4))
    assert np.abs(raster / analytic - 1.0).max() < 5e-3
    assert np.argmin(raster) == np.argmin(analytic) == 0


@pytest.mark.parametrize("sigma_render, sigma_target", [(5.0, 2.0), (8.0, 2.0)])
def test_raster_minimum_stays_on_target_for_splats_larger_than_targets(sigma_render, sigma_target):
    raster, analytic = _losses(sigma_render, sigma_target, OFFSETS, (1.0, 0.3))
    assert np.argmin(analytic) == 0
    assert np.argmin(raster) == 0 and (np.diff(raster) > 0).all()
    assert np.abs(raster / analytic - 1.0).max() < 3e-2


def test_analytic_matches_closed_form_by_numerical_integration():
    # Independent check of the closed form with anisotropic covariances: integrate on a fine grid.
    splats, cameras, targets = _scene(seed=5, num_frames=1, num_joints=1)
    loss = AnalyticRenderer().image_loss(splats, cameras, targets).squared_error
    means2d, cov2d, _ = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t,
                                          cameras.image_size)
    for v in range(3):
        mu, S = means2d[v, 0, 0].numpy(), cov2d[v, 0, 0].numpy()
        c, T = targets.centres[v, 0, 0].numpy(), targets.covariances[v, 0, 0].numpy()
        step = 0.25  # Gaussians of sigma >= 4 px: a Riemann sum at 1/4 px is exact to ~1e-12
        axis = np.arange(-60.0, 60.0, step)
        gx, gy = np.meshgrid(axis + c[0], axis + c[1])
        grid = np.stack([gx, gy], -1)

        def gauss(centre, cov):
            d = grid - centre
            return np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d))

        integral = ((0.9 * gauss(mu, S) - gauss(c, T)) ** 2).sum() * step**2
        assert loss[v, 0, 0].item() == pytest.approx(integral, rel=1e-6)


# --- minimum on target ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("renderer", [RasterRenderer(), AnalyticRenderer()], ids=["raster", "analytic"])
def test_image_loss_is_minimal_when_the_splat_sits_on_the_target(renderer):
    splats, cameras, _ = _scene(seed=6, num_frames=1, num_joints=1)
    means2d, cov2d, _ = project_gaussians(splats.means, splats.covariances(), cameras.K, cameras.R, cameras.t,
                                          cameras.image_size)
    # Targets exactly on the projections, with the splats' own (anisotropic) footprint.
    targets = HeatmapTargets(means2d.detach().clone(), cov2d.detach().clone())

    def total(delta):
        moved = SplatParams(splats.means + torch.as_tensor(delta, dtype=F64), splats.quats, splats.log_scales,
                            splats.opacities)
        return renderer.image_loss(moved, cameras, targets).squared_error.sum().item()

    at_target = total(np.zeros(3))
    for axis in range(3):
        for sign in (-1, 1):
            for step in (0.002, 0.01, 0.05):
                delta = np.zeros(3)
                delta[axis] = sign * step
                assert total(delta) > at_target
    rng = np.random.default_rng(7)
    for _ in range(20):
        assert total(rng.normal(0.0, 0.01, 3)) > at_target
    # On target the gradient nearly vanishes compared with 1 cm off. Not exactly: moving the mean along a ray also
    # changes the projected size, and with a peak of 0.9 < 1 a slightly larger splat fits a unit-peak target better
    # (d L / d sigma_r^2 = pi a (a - 1) at equal sizes), a pull of ~0.2% of the 1 cm restoring force.
    means = splats.means.clone().requires_grad_(True)
    grad_on = torch.autograd.grad(
        renderer.image_loss(SplatParams(means, splats.quats, splats.log_scales, splats.opacities), cameras,
                            targets).squared_error.sum(), means)[0]
    off = (splats.means + torch.tensor([0.01, 0.0, 0.0], dtype=F64)).requires_grad_(True)
    grad_off = torch.autograd.grad(
        renderer.image_loss(SplatParams(off, splats.quats, splats.log_scales, splats.opacities), cameras,
                            targets).squared_error.sum(), off)[0]
    assert grad_on.norm() < 5e-3 * grad_off.norm()
    assert grad_off[0, 0, 0] > 0  # pulls back towards the target


def test_support_counts_the_union_of_nonzero_pixels():
    splats = _splat_at_pixel(np.array([640.0, 360.0]), 3.0, 0.9)
    targets = _targets(np.array([[[[640.0, 360.0]]]]), np.array([[[3.0]]]))
    support = RasterRenderer().image_loss(splats, _front_view(), targets).support.item()
    # Heatmap box: |dx|, |dy| <= 12 px -> 25 x 25 pixels; the splat's alpha >= 1/255 disc (r ~ 3.3 sigma) is inside.
    assert support == 25 * 25


# --- backend selection ------------------------------------------------------------------------------------------


def test_get_renderer_names():
    assert isinstance(get_renderer("raster"), RasterRenderer)
    assert isinstance(get_renderer("analytic"), AnalyticRenderer)
    with pytest.raises(ValueError, match="unknown backend 'opengl'"):
        get_renderer("opengl")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_auto_is_analytic_on_cpu():
    assert isinstance(get_renderer("auto"), AnalyticRenderer)
    assert isinstance(get_renderer("auto", "cpu"), AnalyticRenderer)
