"""3D Gaussians and their EWA projection into pinhole cameras: small pure torch functions.

Shapes follow the optimiser: ``F`` frames, ``J`` joints (one Gaussian each), ``V`` views. Pixel coordinates are
continuous with pixel ``i`` covering ``[i, i + 1)`` (its centre at ``i + 0.5``), as in gsplat.
"""

from __future__ import annotations

import torch

from .objective import EPS2D


def quaternion_to_matrix(quats: torch.Tensor) -> torch.Tensor:
    """Quaternions ``[..., 4]`` (w, x, y, z; any norm) to rotation matrices ``[..., 3, 3]``."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(quats: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """``Sigma = R diag(exp(2 s)) R^T`` from quaternions ``[..., 4]`` and log-scales ``[..., 3]``: ``[..., 3, 3]``."""
    rot = quaternion_to_matrix(quats)
    scaled = rot * torch.exp(log_scales).unsqueeze(-2)
    return scaled @ scaled.transpose(-1, -2)


def project_gaussians(
    means: torch.Tensor,
    covariances: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    image_size: torch.Tensor,
    eps2d: float = EPS2D,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EWA splatting of Gaussians ``[F, J]`` into views ``[V]``.

    ``u = fx x/z + s y/z + cx``, ``v = fy y/z + cy`` with the skew ``s = K[0, 1]``, as the numpy projection.
    The Jacobian of the perspective projection is evaluated with x/z, y/z clamped to 1.3x the field of view (plus
    the principal-point offset) as gsplat does, so that Gaussians far off-image keep a bounded footprint.

    Args:
        means: ``[F, J, 3]`` world positions.
        covariances: ``[F, J, 3, 3]`` world covariances.
        K: ``[V, 3, 3]`` intrinsics; R: ``[V, 3, 3]``; t: ``[V, 3]`` (world to camera).
        image_size: ``[V, 2]`` (width, height) in px used for the clamp.

    Returns:
        means2d ``[V, F, J, 2]`` px, cov2d ``[V, F, J, 2, 2]`` px^2 (dilated by ``eps2d``), depth ``[V, F, J]``.
    """
    cam = torch.einsum("vab,fjb->vfja", R, means) + t[:, None, None, :]
    x, y, z = cam.unbind(-1)
    fx, fy = K[:, 0, 0].view(-1, 1, 1), K[:, 1, 1].view(-1, 1, 1)
    cx, cy = K[:, 0, 2].view(-1, 1, 1), K[:, 1, 2].view(-1, 1, 1)
    skew = K[:, 0, 1].view(-1, 1, 1)
    width, height = image_size[:, 0].view(-1, 1, 1), image_size[:, 1].view(-1, 1, 1)
    z_safe = z.clamp_min(1e-6)
    u = fx * x / z_safe + skew * y / z_safe + cx
    v = fy * y / z_safe + cy
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -(cx / fx + 0.3 * tan_x)), (width - cx) / fx + 0.3 * tan_x)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -(cy / fy + 0.3 * tan_y)), (height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(z_safe)
    jac = torch.stack(
        [fx / z_safe, skew / z_safe, -(fx * tx + skew * ty) / z_safe**2, zero, fy / z_safe, -fy * ty / z_safe**2],
        dim=-1,
    ).reshape(z.shape + (2, 3))
    jw = jac @ R[:, None, None]  # [V, F, J, 2, 3]
    cov2d = jw @ covariances.unsqueeze(0) @ jw.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    return torch.stack([u, v], dim=-1), cov2d, z


def invert_2x2(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse and determinant of symmetric ``[..., 2, 2]`` matrices."""
    a, b, c = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 1, 1]
    det = a * c - b * b
    inv = torch.stack([c, -b, -b, a], dim=-1).reshape(matrix.shape) / det[..., None, None]
    return inv, det
