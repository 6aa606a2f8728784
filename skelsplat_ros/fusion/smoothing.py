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
from scipy.linalg import cho_solve_banded, cholesky_banded

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
        iterations: solves per reweighting sequence.
        pixel_sigma: pixel noise of one view's keypoint at full weight, for the information matrices.
        adaptive: per joint, after reweighting at ``sigma``, pick the tolerance among ``candidates`` values
            geometrically spaced over ``sigma_range`` that maximises the data's marginal likelihood (restricted,
            noise scale profiled out: ``_log_evidence``), then reweight again at it. A joint that moves fast gets
            a wider band than one that barely moves, and a recording of quick motion a wider band than the
            smooth motion ``sigma`` was tuned on.
    """

    order: int = 3
    sigma: float = 12.0
    robust_scale: float = 3.0
    iterations: int = 4
    pixel_sigma: float = 3.0
    adaptive: bool = False
    sigma_range: tuple[float, float] = (2.0, 2000.0)
    candidates: int = 12

    def __post_init__(self) -> None:
        if self.order not in (1, 2, 3, 4):
            raise ValueError(f"smoothing order must be 1..4, got {self.order}")
        if self.sigma <= 0 or self.pixel_sigma <= 0 or min(self.sigma_range) <= 0:
            raise ValueError("smoothing sigma, sigma_range and pixel_sigma must be positive")
        if self.iterations < 1 or self.candidates < 1:
            raise ValueError("smoothing iterations and candidates must be at least 1")


def view_information(rig: CameraRig, points: np.ndarray, weights: np.ndarray, pixel_sigma: float) -> np.ndarray:
    """Information ``[F, J, 3, 3]`` of points ``[F, J, 3]`` from views with weights ``[V, F, J]`` (0 = unused):
    ``sum_v w J^T J / pixel_sigma^2`` for the projection Jacobians ``J``."""
    _, jac, depth = project_with_jacobian(rig.K, rig.R, rig.t, np.nan_to_num(points))
    used = np.where(depth > 0, np.nan_to_num(weights), 0.0)
    return np.einsum("vfj,vfjka,vfjkb->fjab", used, jac, jac) / pixel_sigma**2


def _difference_gram(num_frames: int, order: int) -> np.ndarray:
    """Bands of ``D^T D`` for the ``order``-th difference operator ``D``: ``[order + 1, F]``, row ``o`` holding
    ``(D^T D)[f, f + o]`` in its first ``F - o`` entries."""
    coefficients = np.diff(np.eye(order + 1), n=order, axis=0)[0]  # e.g. [-1, 3, -3, 1] for order 3
    rows = max(num_frames - order, 0)
    bands = np.zeros((order + 1, num_frames))
    for offset in range(order + 1):
        for i in range(order + 1 - offset):
            # Row r of D touches frames r..r+order; it adds c_i c_{i+offset} at (r + i, r + i + offset).
            bands[offset, i : i + rows] += coefficients[i] * coefficients[i + offset]
    return bands


def _roughness(y: np.ndarray, order: int) -> float:
    """``y^T (D^T D kron I3) y`` of a curve ``y [F, 3]``."""
    return float((np.diff(y, n=order, axis=0) ** 2).sum())


def _banded_normal(info: np.ndarray, gram: np.ndarray, bandwidth: int) -> np.ndarray:
    """Upper banded storage of ``blockdiag(info [F, 3, 3]) + G kron I3`` (axes interleaved), ``G`` given by its
    bands ``gram [bandwidth + 1, F]`` (see :func:`_difference_gram`)."""
    num_frames = len(info)
    upper = 3 * bandwidth + 2
    ab = np.zeros((upper + 1, 3 * num_frames))  # ab[upper + i - j, j] = A[i, j] for i <= j
    for row, col in zip(*np.triu_indices(3)):
        ab[upper + row - col, col::3] += info[:, row, col]
    for offset in range(bandwidth + 1):
        band = gram[offset, : num_frames - offset]  # gram[f, f + offset]
        for axis in range(3):
            ab[upper - 3 * offset, 3 * offset + axis :: 3] += band
    # Tiny ridge: keeps a joint with no view in the whole recording solvable.
    ab[upper] += 1e-12 * (1.0 + ab[upper].max())
    return ab


def _solve_joint(x: np.ndarray, info: np.ndarray, gram: np.ndarray, bandwidth: int) -> tuple[np.ndarray, float]:
    """Minimiser ``[F, 3]`` of ``sum (y - x)^T info (y - x) + y^T (G kron I3) y`` (``G`` by its bands ``gram``)
    and the log-determinant of the normal matrix, by a banded Cholesky factorisation."""
    factor = cholesky_banded(_banded_normal(info, gram, bandwidth), lower=False)
    rhs = np.einsum("fab,fb->fa", info, x).reshape(-1)
    y = cho_solve_banded((factor, False), rhs).reshape(len(x), 3)
    return y, 2.0 * float(np.log(factor[-1]).sum())


def _log_evidence(
    x: np.ndarray, info: np.ndarray, rank: int, gram: np.ndarray, precision: float, order: int
) -> tuple[float, np.ndarray]:
    """Restricted log marginal likelihood (up to a constant) of the data ``x [F, 3]`` with information ``info``
    under the prior ``precision * G`` (``G = D^T D`` by its bands ``gram``), with the overall noise scale
    profiled out; and the smoothed curve.

    The model: ``x_f ~ N(y_f, (alpha info_f)^-1)``, ``y`` with density ``exp(-alpha precision y^T R y / 2)``
    (``R = G kron I3``, null space of dimension ``3 order``). Maximising over ``alpha`` leaves
    ``(N - 3k) log(precision) - log|info + precision R| - (r - 3k) log S`` (halved), with ``S`` the fitted data
    misfit plus roughness and ``r = rank`` the rank of the data (the sum of the ranks of ``info``).
    """
    y, logdet = _solve_joint(x, info, precision * gram, order)
    residual = y - x
    fit = float(np.einsum("fa,fab,fb->", residual, info, residual))
    rough = precision * _roughness(y, order)
    free = rank - 3 * order
    if free <= 0:
        return -np.inf, y
    size = 3 * len(x)
    evidence = 0.5 * ((size - 3 * order) * np.log(precision) - logdet - free * np.log(max(fit + rough, 1e-300)))
    return evidence, y


def smooth_trajectories(
    points: np.ndarray, information: np.ndarray, fps: float, config: SmoothingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust zero-phase smoothing (module docstring) of ``points [F, J, 3]`` with ``information [F, J, 3, 3]``.

    Joints with no finite estimate in any frame stay NaN; a non-finite estimate counts as a gap.

    Returns:
        ``(smoothed [F, J, 3], weights [F, J], sigmas [J])``: the final robust weight of each frame's estimate in
        [0, 1] (0 in gaps) and the tolerance each joint was smoothed with (NaN: not smoothed).
    """
    num_frames, num_joints = points.shape[:2]
    smoothed = np.full_like(points, np.nan)
    weights = np.zeros((num_frames, num_joints))
    sigmas = np.full(num_joints, np.nan)
    order = min(config.order, max(num_frames - 1, 0))
    gram = _difference_gram(num_frames, order) * fps ** (2 * order)  # k-th derivative in world units / s^k
    candidates = np.geomspace(*config.sigma_range, config.candidates)
    for joint in range(num_joints):
        known = np.isfinite(points[:, joint]).all(-1)
        if not known.any():
            continue
        x = np.where(known[:, None], points[:, joint], 0.0)
        info = np.where(known[:, None, None], np.nan_to_num(information[:, joint]), 0.0)
        if order == 0:
            smoothed[:, joint] = np.where(known[:, None], x, np.nan)
            weights[:, joint] = known
            continue

        def reweighted(sigma: float, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Iteratively reweighted solves at tolerance ``sigma``, from robust weights ``w [F]``."""
            for iteration in range(config.iterations):
                y, _ = _solve_joint(x, w[:, None, None] * info, gram / sigma**2, order)
                if config.robust_scale <= 0 or iteration == config.iterations - 1:
                    break
                residual = y - x
                chi2 = np.einsum("fa,fab,fb->f", residual, info, residual)
                w = known / (1.0 + chi2 / config.robust_scale**2)
            return y, w

        sigma = config.sigma
        y, w = reweighted(sigma, known.astype(float))
        if config.adaptive:
            # The outliers found, pick the bandwidth the data support best, then reweight at it.
            rank = int((np.linalg.eigvalsh(info) > 1e-9 * max(float(np.abs(info).max()), 1e-30)).sum())
            weighted = w[:, None, None] * info
            evidence = [_log_evidence(x, weighted, rank, gram, 1.0 / c**2, order)[0] for c in candidates]
            if np.isfinite(np.max(evidence)):
                sigma = float(candidates[int(np.argmax(evidence))])
                y, w = reweighted(sigma, w)
        smoothed[:, joint] = y
        weights[:, joint] = w
        sigmas[joint] = sigma
    return smoothed, weights, sigmas
