"""3D Gaussians and their EWA projection, checked against independent float64 numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skelsplat_ros.fusion.gaussians import (
    EPS2D,
    covariance_3d,
    invert_2x2,
    project_gaussians,
    quaternion_to_matrix,
)
from skelsplat_ros.geometry.camera import (
    Camera,
    CameraRig,
    look_at,
    rodrigues_to_matrix,
)
from skelsplat_ros.geometry.triangulation import project_pinhole

WIDTH, HEIGHT = 1280, 720


def _quaternion_from_rvec(rvec: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(rvec)
    axis = rvec / angle if angle > 0 else np.zeros(3)
    return np.r_[np.cos(angle / 2), np.sin(angle / 2) * axis]


def _rig(skew: float = 0.0) -> CameraRig:
    cameras = []
    views = [
        ([3.5, 0.4, 1.6], 1000.0, 640.0, 360.0),
        ([-0.8, 3.9, 2.2], 1400.0, 631.5, 372.0),
        ([-3.0, -2.5, 1.0], 800.0, 650.0, 350.0),
    ]
    for k, (centre, focal, cx, cy) in enumerate(views):
        R, t = look_at(np.array(centre), np.array([0.0, 0.0, 1.0]))
        K = np.array([[focal, skew, cx], [0.0, focal * 1.01, cy], [0.0, 0.0, 1.0]])
        cameras.append(Camera(f"c{k}", K, R, t, (WIDTH, HEIGHT)))
    return CameraRig(cameras)


def _tensors(rig: CameraRig, dtype=torch.float64):
    return (
        torch.tensor(rig.K, dtype=dtype),
        torch.tensor(rig.R, dtype=dtype),
        torch.tensor(rig.t, dtype=dtype),
        torch.tensor(rig.sizes, dtype=dtype),
    )


def _random_gaussians(shape: tuple[int, int], seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.uniform([-0.4, -0.4, 0.2], [0.4, 0.4, 1.8], shape + (3,))
    quats = rng.normal(size=shape + (4,))
    log_scales = rng.uniform(np.log(0.01), np.log(0.08), shape + (3,))
    return means, quats, log_scales


# --- rotations and covariances ----------------------------------------------------------------------------------


def test_quaternion_to_matrix_matches_axis_angle():
    rng = np.random.default_rng(1)
    for _ in range(20):
        rvec = rng.normal(size=3)
        rvec *= rng.uniform(0, np.pi) / np.linalg.norm(rvec)
        q = torch.tensor(_quaternion_from_rvec(rvec) * rng.uniform(0.2, 5.0))  # any norm
        expected = rodrigues_to_matrix(rvec)
        np.testing.assert_allclose(quaternion_to_matrix(q).numpy(), expected, atol=1e-14)
        np.testing.assert_allclose(quaternion_to_matrix(-q).numpy(), expected, atol=1e-14)  # q and -q agree
    identity = quaternion_to_matrix(torch.tensor([[2.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    np.testing.assert_array_equal(identity.numpy(), np.eye(3)[None])


def test_covariance_3d_is_symmetric_psd_and_equals_r_s2_rt():
    means, quats, log_scales = _random_gaussians((4, 17), seed=2)
    cov = covariance_3d(torch.tensor(quats), torch.tensor(log_scales)).numpy()
    assert cov.shape == (4, 17, 3, 3)
    np.testing.assert_allclose(cov, np.swapaxes(cov, -1, -2), atol=1e-18)
    assert (np.linalg.eigvalsh(cov) > 0).all()
    for f in range(4):
        for j in range(17):
            w, x, y, z = quats[f, j] / np.linalg.norm(quats[f, j])
            # independent quaternion -> matrix via the axis-angle formula
            angle = 2 * np.arctan2(np.linalg.norm([x, y, z]), w)
            R = rodrigues_to_matrix(np.array([x, y, z]) / np.linalg.norm([x, y, z]) * angle)
            expected = R @ np.diag(np.exp(2 * log_scales[f, j])) @ R.T
            np.testing.assert_allclose(cov[f, j], expected, rtol=1e-12, atol=1e-18)
            np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(cov[f, j])), np.sort(np.exp(2 * log_scales[f, j])),
                                       rtol=1e-10)


# --- projection -------------------------------------------------------------------------------------------------


def _numpy_cov2d(camera: Camera, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """J W Sigma W^T J^T + 0.3 I for an on-image point (no clamp active), from first principles."""
    x, y, z = camera.R @ mean + camera.t
    fx, fy, skew = camera.K[0, 0], camera.K[1, 1], camera.K[0, 1]
    jac = np.array([[fx / z, skew / z, -(fx * x + skew * y) / z**2], [0.0, fy / z, -fy * y / z**2]])
    return jac @ camera.R @ cov @ camera.R.T @ jac.T + EPS2D * np.eye(2)


@pytest.mark.parametrize("skew", [0.0, 25.0])  # skewed pixels: the torch projection honours K[0, 1] like numpy
def test_project_gaussians_means_cov_and_depth(skew):
    rig = _rig(skew)
    means, quats, log_scales = _random_gaussians((2, 17), seed=3)
    cov = covariance_3d(torch.tensor(quats), torch.tensor(log_scales))
    means2d, cov2d, depth = project_gaussians(torch.tensor(means), cov, *_tensors(rig))
    assert means2d.shape == (3, 2, 17, 2) and cov2d.shape == (3, 2, 17, 2, 2) and depth.shape == (3, 2, 17)
    np.testing.assert_allclose(means2d.numpy(), project_pinhole(rig, means), atol=1e-9)
    np.testing.assert_allclose(depth.numpy(), np.stack([c.world_to_camera(means)[..., 2] for c in rig]), atol=1e-12)
    uv = project_pinhole(rig, means)
    checked = 0
    for v, camera in enumerate(rig):
        for f in range(2):
            for j in range(17):
                assert camera.in_image(uv[v, f, j])  # every test point is on-image: no clamp
                expected = _numpy_cov2d(camera, means[f, j], cov[f, j].numpy())
                np.testing.assert_allclose(cov2d[v, f, j].numpy(), expected, rtol=1e-12, atol=1e-12)
                checked += 1
    assert checked == 3 * 2 * 17
    # PSD, and at least the dilation on the diagonal.
    assert (torch.linalg.eigvalsh(cov2d) >= EPS2D - 1e-12).all()


def test_projected_size_scales_like_focal_over_depth():
    # An isotropic sigma at depth z has a projected sigma of about f * sigma / z (plus the 0.3 px^2 dilation).
    camera = Camera("c", np.diag([1000.0, 1000.0, 1.0]) + np.array([[0, 0, 640.0], [0, 0, 360.0], [0, 0, 0]]),
                    np.eye(3), np.zeros(3), (WIDTH, HEIGHT))
    rig = CameraRig([camera])
    for depth, sigma in [(2.0, 0.02), (5.0, 0.02), (5.0, 0.05)]:
        mean = torch.tensor([[[0.0, 0.0, depth]]], dtype=torch.float64)
        cov = (sigma**2 * torch.eye(3, dtype=torch.float64))[None, None]
        _, cov2d, _ = project_gaussians(mean, cov, *_tensors(rig))
        expected = (1000.0 * sigma / depth) ** 2 + EPS2D
        np.testing.assert_allclose(cov2d[0, 0, 0].numpy(), expected * np.eye(2), atol=1e-12)


def test_off_image_jacobian_is_clamped_like_gsplat():
    rig = CameraRig([_rig()[0]])
    camera = rig[0]
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    lim_x = (WIDTH - cx) / fx + 0.3 * (0.5 * WIDTH / fx)
    lim_y_neg = cy / fy + 0.3 * (0.5 * HEIGHT / fy)
    z = 4.0
    cam_points = np.array([[3.0 * lim_x * z, -3.0 * lim_y_neg * z, z], [0.5 * lim_x * z, 0.2 * z, z]])
    world = (cam_points - camera.t) @ camera.R
    sigma = 0.05
    cov = (sigma**2 * torch.eye(3, dtype=torch.float64)).expand(1, 2, 3, 3)
    means2d, cov2d, _ = project_gaussians(torch.tensor(world[None]), cov, *_tensors(rig))
    np.testing.assert_allclose(means2d[0, 0, 0].numpy(), [fx * 3 * lim_x + cx, -fy * 3 * lim_y_neg + cy], atol=1e-6)
    # The Jacobian uses x/z clamped to lim_x and y/z clamped to -lim_y_neg for the far-off point.
    tx, ty = lim_x * z, -lim_y_neg * z
    jac = np.array([[fx / z, 0.0, -fx * tx / z**2], [0.0, fy / z, -fy * ty / z**2]])
    expected = sigma**2 * jac @ jac.T + EPS2D * np.eye(2)  # isotropic: W Sigma W^T = sigma^2 I
    np.testing.assert_allclose(cov2d[0, 0, 0].numpy(), expected, rtol=1e-12)
    # The on-image point is unclamped.
    x, y = cam_points[1, :2]
    jac = np.array([[fx / z, 0.0, -fx * x / z**2], [0.0, fy / z, -fy * y / z**2]])
    np.testing.assert_allclose(cov2d[0, 0, 1].numpy(), sigma**2 * jac @ jac.T + EPS2D * np.eye(2), rtol=1e-12)


def test_project_gaussians_gradcheck_wrt_means_and_covariances():
    rig = _rig()
    means, quats, log_scales = _random_gaussians((2, 3), seed=4)
    K, R, t, size = _tensors(rig)
    means_t = torch.tensor(means, requires_grad=True)
    cov_t = covariance_3d(torch.tensor(quats), torch.tensor(log_scales)).detach().requires_grad_(True)

    def fn(m, c):
        means2d, cov2d, depth = project_gaussians(m, c, K, R, t, size)
        return means2d, cov2d, depth

    assert torch.autograd.gradcheck(fn, (means_t, cov_t), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_project_gaussians_gradcheck_through_quaternions_and_scales():
    rig = CameraRig([_rig()[1]])
    means, quats, log_scales = _random_gaussians((1, 2), seed=5)
    K, R, t, size = _tensors(rig)

    def fn(q, s):
        return project_gaussians(torch.tensor(means), covariance_3d(q, s), K, R, t, size)[1]

    q = torch.tensor(quats, requires_grad=True)
    s = torch.tensor(log_scales, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (q, s), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_invert_2x2():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(5, 2, 2))
    spd = torch.tensor(a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(2))
    inv, det = invert_2x2(spd)
    np.testing.assert_allclose(det.numpy(), np.linalg.det(spd.numpy()), rtol=1e-12)
    np.testing.assert_allclose((inv @ spd).numpy(), np.broadcast_to(np.eye(2), (5, 2, 2)), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    rig = _rig()
    means, quats, log_scales = _random_gaussians((1, 4), seed=7)
    cov = covariance_3d(torch.tensor(quats, dtype=dtype), torch.tensor(log_scales, dtype=dtype))
    outputs = project_gaussians(torch.tensor(means, dtype=dtype), cov, *_tensors(rig, dtype))
    assert all(o.dtype == dtype for o in outputs)
    reference = project_gaussians(
        torch.tensor(means), covariance_3d(torch.tensor(quats), torch.tensor(log_scales)), *_tensors(rig)
    )
    if dtype == torch.float32:
        np.testing.assert_allclose(outputs[0].numpy(), reference[0].numpy(), atol=1e-3)
