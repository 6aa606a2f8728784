"""The image term of the Gauss-Newton objective (``gauss_newton.py``) and its majorised normal equations, per
(frame, joint): a numba kernel, compiled at first use, and the numpy reference, with one signature; tests hold them
equal. :func:`image_terms` takes the kernel when numba is installed, else the reference.

Per (view, frame, joint) with detection weight ``w``, splat covariance ``S_r = sigma^2 J J^T + EPS2D I`` (``J``
the projection Jacobian), heatmap covariance ``t I`` and ``m = d^T A d`` for ``A = (S_r + t I)^-1`` and the offset
``d`` between projected mean and keypoint:

``image = w (a^2 sqrt|S_r| / t - 4 a sqrt(|S_r| / |S_r + t I|) exp(-m / 2) + 1)``,

summed over views. The majoriser of ``-exp(-m / 2)`` at the current means is quadratic with weight
``omega = w 4 a sqrt(|S_r| / |S_r + t I|) exp(-m / 2)``; linearising the projection gives each joint's information
``sum_v omega J^T A J`` ``[3, 3]`` and gradient ``sum_v omega J^T A d`` ``[3]``.

Why two: on the one-frame batches of the streaming fuser and the node, numpy's cost is the call overhead of some
fifty array operations per evaluation (~100 us for 4 views x 17 joints), the kernel's a few microseconds.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..geometry.triangulation import project_with_jacobian_rows
from .objective import EPS2D, MAX_ALPHA


class ImageTerms(NamedTuple):
    """What one evaluation gives.

    Attributes:
        image: ``[F, J]`` image term of each joint, summed over views.
        information: ``[F, J, 3, 3]`` majorised, linearised information of each joint.
        gradient: ``[F, J, 3]`` the matching gradient ``sum_v omega J^T A d``.
        distance: ``[V, F, J]`` px between projected mean and keypoint.
        overlap: ``[V, F, J]`` ``exp(-m / 2)``.
        depth: ``[V, F, J]`` of the mean in each camera (<= 0: behind it, where the view contributes nothing).
    """

    image: np.ndarray
    information: np.ndarray
    gradient: np.ndarray
    distance: np.ndarray
    overlap: np.ndarray
    depth: np.ndarray


def image_terms_numpy(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, means: np.ndarray, uv: np.ndarray, weights: np.ndarray,
    variance: np.ndarray, sigma: float,
) -> ImageTerms:
    """The reference: cameras ``K``, ``R`` ``[V, 3, 3]``, ``t`` ``[V, 3]``; means ``[F, J, 3]``; keypoints
    ``uv [V, F, J, 2]`` (finite everywhere; anything where ``weights`` is 0), ``weights`` and heatmap ``variance``
    ``[V, F, J]``; splat standard deviation ``sigma``."""
    projected, jac, depth = project_with_jacobian_rows(K, R, t, means)  # [2, V, F, J], [2, 3, V, F, J]
    # A view a joint is behind contributes nothing (as in the Adam path); its projection, with the depth clamped to
    # ~0, would overflow the splat covariance (a zero determinant by cancellation): give it the dilation only.
    front = depth > 0
    jac = np.where(front, jac, 0.0)
    # S_r, all [2, 2] entries at once (the sum runs over x, y, z).
    gram = sigma**2 * (jac[:, None] * jac[None, :]).sum(axis=2)  # [2, 2, V, F, J]
    ra, rb, rc = gram[0, 0] + EPS2D, gram[0, 1], gram[1, 1] + EPS2D
    det_r = ra * rc - rb * rb
    sa, sc = ra + variance, rc + variance
    det_s = sa * sc - rb * rb
    ia, ib, ic = sc / det_s, -rb / det_s, sa / det_s  # A
    d = projected - np.moveaxis(uv, -1, 0)  # [2, V, F, J]
    overlap = np.exp(-0.5 * (ia * d[0] ** 2 + 2 * ib * d[0] * d[1] + ic * d[1] ** 2))
    coupling = 4.0 * MAX_ALPHA * np.sqrt(det_r / det_s)
    w = np.where(front, weights, 0.0)
    image = (w * (MAX_ALPHA**2 * np.sqrt(det_r) / variance - coupling * overlap + 1.0)).sum(axis=0)
    omega = w * coupling * overlap
    weighted = np.stack([omega * (ia * jac[0] + ib * jac[1]), omega * (ib * jac[0] + ic * jac[1])])  # omega A J
    information = np.moveaxis((jac[:, :, None] * weighted[:, None, :]).sum(axis=(0, 3)), (0, 1), (-2, -1))
    gradient = np.moveaxis((weighted * d[:, None]).sum(axis=(0, 2)), 0, -1)
    return ImageTerms(image, information, gradient, np.sqrt(d[0] ** 2 + d[1] ** 2), overlap, depth)


def image_terms_numba(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, means: np.ndarray, uv: np.ndarray, weights: np.ndarray,
    variance: np.ndarray, sigma: float,
) -> ImageTerms:
    """:func:`image_terms_numpy` in one compiled loop (raises ``ImportError`` without numba)."""
    from ._image_kernel import image_kernel  # numba compiles (or loads its cache) here, once per process

    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    return ImageTerms(*image_kernel(f64(K), f64(R), f64(t), f64(means), f64(uv), f64(weights), f64(variance),
                                    float(sigma)))


@functools.cache
def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def image_terms(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, means: np.ndarray, uv: np.ndarray, weights: np.ndarray,
    variance: np.ndarray, sigma: float,
) -> ImageTerms:
    """:func:`image_terms_numba` when numba is installed, else :func:`image_terms_numpy` (same arguments)."""
    implementation = image_terms_numba if _numba_available() else image_terms_numpy
    return implementation(K, R, t, means, uv, weights, variance, sigma)
