"""The image term of the Gauss-Newton objective (``gauss_newton.py``) and its majorised normal equations, per
(frame, joint): a C kernel (``_image_kernel.c``, compiled when the package is installed) and the numpy reference,
with one signature; tests hold them equal. :func:`image_terms` takes the kernel, or the reference where the
extension was not built (no C compiler at install; a warning says so once per process).

Per (view, frame, joint) with detection weight ``w``, splat covariance ``S_r = sigma^2 J J^T + EPS2D I`` (``J``
the projection Jacobian), heatmap covariance ``t I`` and ``m = d^T A d`` for ``A = (S_r + t I)^-1`` and the offset
``d`` between projected mean and keypoint:

``image = w (a^2 sqrt|S_r| / t - 4 a sqrt(|S_r| / |S_r + t I|) exp(-m / 2) + 1)``,

summed over views. The majoriser of ``-exp(-m / 2)`` at the current means is quadratic with weight
``omega = w 4 a sqrt(|S_r| / |S_r + t I|) exp(-m / 2)``; linearising the projection gives each joint's information
``sum_v omega J^T A J`` ``[3, 3]`` and gradient ``sum_v omega J^T A d`` ``[3]``.

Why two: on the one-frame batches of the streaming fuser and the node, numpy's cost is the call overhead of some
fifty array operations per evaluation (~100 us for 4 views x 17 joints), the kernel's a few microseconds. Why C
compiled ahead of time rather than numba (which the filter bank's and the tracker's kernels use): no process that
fits a skeleton pays numba's import and first kernel load (0.35 s of CPU, which also imports scipy.linalg) for it,
as every ``skelsplat batch`` worker, ``skelsplat fuse`` and the node did; and its call costs less (CPU, side by side
in one process: 7.8 against 9.3 us for 4 views x 17 joints, 1.03 against 1.16 ms for 4 views x 300 frames x 17
joints; why an extension module rather than ctypes: ``_image_kernel.c``).
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple

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


def image_terms_c(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, means: np.ndarray, uv: np.ndarray, weights: np.ndarray,
    variance: np.ndarray, sigma: float,
) -> ImageTerms:
    """:func:`image_terms_numpy` in one compiled loop (raises ``ImportError`` where the extension was not built)."""
    from ._image_kernel import image_terms as kernel

    return _call(kernel, K, R, t, means, uv, weights, variance, sigma)


def _call(kernel: Callable, K: np.ndarray, R: np.ndarray, t: np.ndarray, means: np.ndarray, uv: np.ndarray,
          weights: np.ndarray, variance: np.ndarray, sigma: float) -> ImageTerms:
    """Run the C ``kernel`` on contiguous float64 copies (where the arrays are not already) into one output buffer,
    and give its six parts their shapes (plain slices: on one frame numpy's helpers would cost as much as the
    kernel)."""
    views, (frames, joints) = len(K), means.shape[:2]
    p, vp = frames * joints, views * frames * joints
    out = np.empty(13 * p + 3 * vp)
    f64 = np.float64
    kernel(np.ascontiguousarray(K, f64), np.ascontiguousarray(R, f64), np.ascontiguousarray(t, f64),
           np.ascontiguousarray(means, f64), np.ascontiguousarray(uv, f64), np.ascontiguousarray(weights, f64),
           np.ascontiguousarray(variance, f64), float(sigma), EPS2D, MAX_ALPHA, out)
    per_view = (views, frames, joints)
    return ImageTerms(out[:p].reshape(frames, joints), out[p:10 * p].reshape(frames, joints, 3, 3),
                      out[10 * p:13 * p].reshape(frames, joints, 3), out[13 * p:13 * p + vp].reshape(per_view),
                      out[13 * p + vp:13 * p + 2 * vp].reshape(per_view), out[13 * p + 2 * vp:].reshape(per_view))


@functools.cache
def _compiled_kernel() -> Callable | None:
    """The C kernel, or None where the extension was not built (said once, by a warning)."""
    try:
        from ._image_kernel import image_terms as kernel
    except ImportError as error:
        warnings.warn(f"skelsplat_ros: the compiled image kernel is missing ({error}); the fits use the numpy "
                      "reference, several times slower on one frame. Reinstall the package with a C compiler and "
                      "Python's headers to build it.", RuntimeWarning, stacklevel=3)
        return None
    return kernel


def image_terms(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, means: np.ndarray, uv: np.ndarray, weights: np.ndarray,
    variance: np.ndarray, sigma: float,
) -> ImageTerms:
    """:func:`image_terms_c` where the extension was built, else :func:`image_terms_numpy` (same arguments)."""
    kernel = _compiled_kernel()
    if kernel is None:
        return image_terms_numpy(K, R, t, means, uv, weights, variance, sigma)
    return _call(kernel, K, R, t, means, uv, weights, variance, sigma)
