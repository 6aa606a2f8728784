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


def _roughness(y: np.ndarray, order: int) -> np.ndarray:
    """``y^T (D^T D kron I3) y`` of curves ``y [B, F, 3]``: ``[B]``."""
    return (np.diff(y, n=order, axis=1) ** 2).sum(axis=(1, 2))


_UPPER_3X3 = list(zip(*np.triu_indices(3)))
"""(row, column) of the upper triangle of a 3x3 block."""


def _banded_normal(info: np.ndarray, gram: np.ndarray, precision: np.ndarray, bandwidth: int) -> np.ndarray:
    """Upper banded storage ``[3 bandwidth + 3, B * 3F]`` of the block-diagonal matrix of the ``B`` joints'
    ``blockdiag(info [B, F, 3, 3]) + precision [B] * G kron I3`` (axes interleaved), ``G`` given by its bands
    ``gram [bandwidth + 1, F]`` (see :func:`_difference_gram`). Each joint's band leaves the entries that would
    reach into its neighbour's zero, so one banded factorisation solves them all."""
    num_joints, num_frames = info.shape[:2]
    upper = 3 * bandwidth + 2
    ab = np.zeros((upper + 1, num_joints, 3 * num_frames))  # ab[upper + i - j, b, j] = A_b[i, j] for i <= j
    for row, col in _UPPER_3X3:
        ab[upper + row - col, :, col::3] += info[:, :, row, col]
    for offset in range(bandwidth + 1):
        band = precision[:, None] * gram[offset, : num_frames - offset]  # gram[f, f + offset]
        for axis in range(3):
            ab[upper - 3 * offset, :, 3 * offset + axis :: 3] += band
    # Tiny ridge: keeps a joint with no view in the whole recording solvable.
    ab[upper] += 1e-12 * (1.0 + ab[upper].max(axis=-1, keepdims=True))
    return ab.reshape(upper + 1, -1)


def _solve_joints(
    x: np.ndarray, info: np.ndarray, gram: np.ndarray, precision: np.ndarray | float, bandwidth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Minimisers ``[B, F, 3]`` of ``sum (y - x)^T info (y - x) + precision y^T (G kron I3) y`` for ``B`` joints
    (``x [B, F, 3]``, ``info [B, F, 3, 3]``, ``precision`` a number or ``[B]``, ``G`` by its bands ``gram``) and
    the log-determinants ``[B]`` of their normal matrices: one banded Cholesky factorisation of all of them."""
    from scipy.linalg import cho_solve_banded, cholesky_banded  # here: this module's config is read without scipy

    num_joints = len(x)
    precision = np.broadcast_to(np.asarray(precision, dtype=np.float64), (num_joints,))
    factor = cholesky_banded(_banded_normal(info, gram, precision, bandwidth), lower=False, check_finite=False)
    rhs = np.einsum("bfac,bfc->bfa", info, x).reshape(-1)
    y = cho_solve_banded((factor, False), rhs, check_finite=False).reshape(x.shape)
    return y, 2.0 * np.log(factor[-1]).reshape(num_joints, -1).sum(axis=1)


def _log_evidence(
    x: np.ndarray, info: np.ndarray, rank: np.ndarray, gram: np.ndarray, precision: float, order: int
) -> np.ndarray:
    """Restricted log marginal likelihood ``[B]`` (up to a constant) of the data ``x [B, F, 3]`` of ``B`` joints
    with information ``info [B, F, 3, 3]`` under the prior ``precision * G`` (``G = D^T D`` by its bands ``gram``),
    with the overall noise scale profiled out.

    The model: ``x_f ~ N(y_f, (alpha info_f)^-1)``, ``y`` with density ``exp(-alpha precision y^T R y / 2)``
    (``R = G kron I3``, null space of dimension ``3 order``). Maximising over ``alpha`` leaves
    ``(N - 3k) log(precision) - log|info + precision R| - (r - 3k) log S`` (halved), with ``S`` the fitted data
    misfit plus roughness and ``r = rank [B]`` the rank of the data (the sum of the ranks of ``info``); -inf where
    ``r <= 3k``.
    """
    y, logdet = _solve_joints(x, info, gram, precision, order)
    residual = y - x
    fit = np.einsum("bfa,bfac,bfc->b", residual, info, residual)
    rough = precision * _roughness(y, order)
    free = rank - 3 * order
    size = 3 * x.shape[1]
    evidence = 0.5 * ((size - 3 * order) * np.log(precision) - logdet - free * np.log(np.maximum(fit + rough, 1e-300)))
    return np.where(free > 0, evidence, -np.inf)


def _reweighted(
    x: np.ndarray, info: np.ndarray, known: np.ndarray, gram: np.ndarray, sigma: np.ndarray, weights: np.ndarray,
    order: int, config: SmoothingConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Iteratively reweighted solves of joints ``x [B, F, 3]`` at tolerances ``sigma [B]``, from robust weights
    ``weights [B, F]``: the curves ``[B, F, 3]`` and the final weights."""
    for iteration in range(config.iterations):
        y, _ = _solve_joints(x, weights[..., None, None] * info, gram, sigma**-2.0, order)
        if config.robust_scale <= 0 or iteration == config.iterations - 1:
            break
        residual = y - x
        chi2 = np.einsum("bfa,bfac,bfc->bf", residual, info, residual)
        weights = known / (1.0 + chi2 / config.robust_scale**2)
    return y, weights


def smooth_trajectories(
    points: np.ndarray, information: np.ndarray, fps: float, config: SmoothingConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust zero-phase smoothing (module docstring) of ``points [F, J, 3]`` with ``information [F, J, 3, 3]``.

    Joints with no finite estimate in any frame stay NaN; a non-finite estimate counts as a gap. All joints are
    solved together (one banded factorisation per solve), each with its own weights and tolerance.

    Returns:
        ``(smoothed [F, J, 3], weights [F, J], sigmas [J])``: the final robust weight of each frame's estimate in
        [0, 1] (0 in gaps) and the tolerance each joint was smoothed with (NaN: not smoothed).
    """
    num_frames, num_joints = points.shape[:2]
    smoothed = np.full_like(points, np.nan)
    weights = np.zeros((num_frames, num_joints))
    sigmas = np.full(num_joints, np.nan)
    seen = np.isfinite(points).all(-1)  # [F, J]
    joints = np.flatnonzero(seen.any(axis=0))
    order = min(config.order, max(num_frames - 1, 0))
    if len(joints) == 0 or order == 0:
        smoothed[seen] = points[seen]
        weights[:] = seen
        return smoothed, weights, sigmas
    # Joint-major [B, F, ...] for the joints seen at least once.
    known = seen[:, joints].T
    x = np.where(known[..., None], points[:, joints].transpose(1, 0, 2), 0.0)
    info = np.where(known[..., None, None], np.nan_to_num(information[:, joints].transpose(1, 0, 2, 3)), 0.0)
    gram = _difference_gram(num_frames, order) * fps ** (2 * order)  # k-th derivative in world units / s^k
    sigma = np.full(len(joints), config.sigma)
    y, w = _reweighted(x, info, known, gram, sigma, known.astype(float), order, config)
    if config.adaptive:
        # The outliers found, pick the bandwidth the data support best, then reweight at it.
        tiny = 1e-9 * np.maximum(np.abs(info).max(axis=(1, 2, 3)), 1e-30)
        rank = (np.linalg.eigvalsh(info) > tiny[:, None, None]).sum(axis=(1, 2))
        weighted = w[..., None, None] * info
        candidates = np.geomspace(*config.sigma_range, config.candidates)
        evidence = np.stack([_log_evidence(x, weighted, rank, gram, 1.0 / c**2, order) for c in candidates], axis=1)
        chosen = np.isfinite(evidence.max(axis=1))
        if chosen.any():
            sigma[chosen] = candidates[np.argmax(evidence[chosen], axis=1)]
            y[chosen], w[chosen] = _reweighted(
                x[chosen], info[chosen], known[chosen], gram, sigma[chosen], w[chosen], order, config
            )
    smoothed[:, joints] = y.transpose(1, 0, 2)
    weights[:, joints] = w.T
    sigmas[joints] = sigma
    return smoothed, weights, sigmas
