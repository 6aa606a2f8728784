"""Robust zero-phase smoothing of joint trajectories, weighted by what the views say about each joint.

Per joint, the trajectory ``y [F, 3]`` minimises

``sum_f w_f (y_f - x_f)^T H_f (y_f - x_f) + sum_f |D^k y|_f^2 / (sigma_k dt^k)^2``

- ``x_f``: the per-frame estimate (the splat objective's minimiser), ``H_f`` its information matrix ``[3, 3]`` from
  the views that agree with it (rank 2 for a joint one view sees: the prior then fixes its depth; 0 in a gap: the
  prior interpolates, a spline of degree ``2k - 1``);
- ``D^k``: ``k``-th differences over frames (``k = 3``: jerk, the quantity human movement keeps small), with a
  tolerance ``sigma_k`` in world units per second^k, so the same setting holds at any frame rate. The filter is a
  zero-phase low-pass of order ``k`` whose cut-off follows the data: where ``H`` is small (few, noisy views) it
  smooths more, where views agree it follows them;
- ``w_f``: robust (Cauchy) weights by iterative reweighting: a frame whose estimate is far from the smooth curve
  in units of its own uncertainty loses its weight instead of dragging its neighbours.

The normal equations of one joint are banded (bandwidth ``3k + 2`` with the 3 axes interleaved); they are solved
by a banded Cholesky factorisation, so a recording costs O(F) per joint and iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solveh_banded

from ..geometry.camera import CameraRig
from ..geometry.triangulation import project_with_jacobian


@dataclass(frozen=True)
class SmoothingConfig:
    """Settings of :func:`smooth_trajectories`.

    Attributes:
        order: order ``k`` of the differences penalised (2 = acceleration, 3 = jerk).
        sigma: tolerance of the ``k``-th derivative, world units per second^k.
        robust_scale: Cauchy scale of the weights, in standard deviations of the per-frame estimate (0 = no
            reweighting: plain least squares).
        iterations: reweighting iterations.
        pixel_sigma: pixel noise of one view's keypoint at full weight, for the information matrices.
    """

    order: int = 3
    sigma: float = 12.0
    robust_scale: float = 3.0
    iterations: int = 4
    pixel_sigma: float = 3.0

    def __post_init__(self) -> None:
        if self.order not in (1, 2, 3, 4):
            raise ValueError(f"smoothing order must be 1..4, got {self.order}")
        if self.sigma <= 0 or self.pixel_sigma <= 0:
            raise ValueError("smoothing sigma and pixel_sigma must be positive")


def view_information(rig: CameraRig, points: np.ndarray, weights: np.ndarray, pixel_sigma: float) -> np.ndarray:
    """Information ``[F, J, 3, 3]`` of points ``[F, J, 3]`` from views with weights ``[V, F, J]`` (0 = unused):
    ``sum_v w J^T J / pixel_sigma^2`` for the projection Jacobians ``J``."""
    _, jac, depth = project_with_jacobian(rig.K, rig.R, rig.t, np.nan_to_num(points))
    used = np.where(depth > 0, np.nan_to_num(weights), 0.0)
    return np.einsum("vfj,vfjka,vfjkb->fjab", used, jac, jac) / pixel_sigma**2


def _difference_gram(num_frames: int, order: int) -> np.ndarray:
    """``D^T D`` ``[F, F]`` of the ``order``-th difference operator (dense: only its bands are used)."""
    difference = np.diff(np.eye(num_frames), n=order, axis=0)
    return difference.T @ difference


def _solve_joint(x: np.ndarray, info: np.ndarray, prior: np.ndarray, bandwidth: int) -> np.ndarray:
    """Minimiser ``[F, 3]`` of ``sum (y - x)^T info (y - x) + y^T (prior kron I3) y`` by a banded solve."""
    num_frames = len(x)
    size = 3 * num_frames
    upper = 3 * bandwidth + 2
    # Upper banded storage: ab[upper + i - j, j] = A[i, j] for i <= j.
    ab = np.zeros((upper + 1, size))
    for row, col in zip(*np.triu_indices(3)):
        ab[upper + row - col, col::3] += info[:, row, col]
    for offset in range(bandwidth + 1):
        band = np.diagonal(prior, offset)  # prior[f, f + offset], [F - offset]
        for axis in range(3):
            ab[upper - 3 * offset, 3 * offset + axis :: 3] += band
    rhs = np.einsum("fab,fb->fa", info, x).reshape(-1)
    # Tiny ridge towards the data keeps a joint with no view in the whole recording solvable.
    ab[upper] += 1e-12 * (1.0 + ab[upper].max())
    return solveh_banded(ab, rhs, lower=False).reshape(num_frames, 3)


def smooth_trajectories(
    points: np.ndarray, information: np.ndarray, fps: float, config: SmoothingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Robust zero-phase smoothing (module docstring) of ``points [F, J, 3]`` with ``information [F, J, 3, 3]``.

    Joints with no finite estimate in any frame stay NaN; a non-finite estimate counts as a gap.

    Returns:
        ``(smoothed [F, J, 3], weights [F, J])``: the final robust weight of each frame's estimate in [0, 1]
        (0 in gaps).
    """
    num_frames, num_joints = points.shape[:2]
    smoothed = np.full_like(points, np.nan)
    weights = np.zeros((num_frames, num_joints))
    if num_frames == 0:
        return smoothed, weights
    order = min(config.order, max(num_frames - 1, 0))
    dt = 1.0 / fps
    prior = _difference_gram(num_frames, order) / (config.sigma * dt**order) ** 2 if order > 0 else None
    for joint in range(num_joints):
        known = np.isfinite(points[:, joint]).all(-1)
        if not known.any():
            continue
        x = np.where(known[:, None], points[:, joint], 0.0)
        info = np.where(known[:, None, None], np.nan_to_num(information[:, joint]), 0.0)
        if prior is None:
            smoothed[:, joint] = np.where(known[:, None], x, np.nan)
            weights[:, joint] = known
            continue
        w = known.astype(float)
        for iteration in range(max(1, config.iterations)):
            y = _solve_joint(x, w[:, None, None] * info, prior, order)
            if config.robust_scale <= 0 or iteration == config.iterations - 1:
                break
            residual = y - x
            chi2 = np.einsum("fa,fab,fb->f", residual, info, residual)
            w = known / (1.0 + chi2 / config.robust_scale**2)
        smoothed[:, joint] = y
        weights[:, joint] = w
    return smoothed, weights
