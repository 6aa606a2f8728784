"""Triangulation, batched over frames and joints: the initial guess and the baselines.

All functions take *undistorted* pixels (``CameraRig.undistort``) and work in normalised camera coordinates
internally, which keeps the linear systems well conditioned whatever the image size.

- :func:`triangulate_dlt`: DLT, optionally confidence-weighted (Pose2Sim/EasyMocap style); unweighted is the
  baseline SkelSplat itself starts from.
- :func:`triangulate_robust`: view subsets judged by reprojection error (Pose2Sim's ``triangulation_from_best_cameras``
  idea): the largest subset whose mean reprojection error is under a threshold wins, ties broken by error.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .camera import CameraRig


def _normalised(rig: CameraRig, uv: np.ndarray) -> np.ndarray:
    """Pixels ``[V, ..., 2]`` to normalised image coordinates ``[V, ..., 2]`` (``K^-1 [u v 1]``)."""
    K_inv = rig.K_inv  # [V, 3, 3]
    flat = uv.reshape(len(uv), -1, 2)
    # One matrix product per view (long inner loops), not one per point.
    xy = flat @ np.swapaxes(K_inv[:, :2, :2], 1, 2) + K_inv[:, None, :2, 2]
    w = flat @ K_inv[:, 2, :2, None] + K_inv[:, None, 2, 2:]
    return (xy / w).reshape(uv.shape)


def _dlt_rows(rig: CameraRig, uv: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """DLT rows ``[..., V, 2, 4]`` of pixels ``uv [V, ..., 2]`` in normalised coordinates, scaled by ``weights
    [V, ...]``: per point, the stacked ``A`` of ``A X = 0``.

    ``weights`` are >= 0, and 0 for the observations not to use (their pixels may be anything): zero rows.
    """
    xy = _normalised(rig, np.where((weights > 0)[..., None], uv, 0.0))
    # Views last but two, so that a point's rows are contiguous: its normal matrix is one product A^T A.
    xy, w = np.moveaxis(xy, 0, -2), np.moveaxis(weights, 0, -1)  # [..., V, 2], [..., V]
    extrinsic = rig.extrinsics  # [V, 3, 4]
    rows = xy[..., None] * extrinsic[:, None, 2] - extrinsic[:, :2]  # [..., V, 2, 4]: x P3 - P1, y P3 - P2
    return rows * w[..., None, None]


def _normal_matrices(rows: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
    """Normal matrices ``A^T A`` ``[..., 4, 4]`` of DLT rows ``[..., V, 2, 4]``, summed over all views or over the
    ``views [..., V]`` (0/1) alone."""
    if views is not None:
        rows = rows * views[..., None, None]
    A = rows.reshape(rows.shape[:-3] + (rows.shape[-3] * rows.shape[-2], 4))  # not -1: no points is no rows
    return np.swapaxes(A, -1, -2) @ A


def _solve_normal(normal: np.ndarray) -> np.ndarray:
    """Null vector of summed normal matrices ``[..., 4, 4]`` -> dehomogenised points ``[..., 3]`` (NaN if degenerate)."""
    # Rescale so eigh is well conditioned whatever the weights.
    scale = np.maximum(np.abs(normal.reshape(normal.shape[:-2] + (16,))).max(axis=-1), 1e-300)
    _, vectors = np.linalg.eigh(normal / scale[..., None, None])
    homo = vectors[..., :, 0]
    w = homo[..., 3:4]
    return homo[..., :3] / np.where(np.abs(w) < 1e-12, np.nan, w)


def project_pinhole(rig: CameraRig, points: np.ndarray) -> np.ndarray:
    """World points ``[..., 3]`` through every view's pinhole model (no distortion): ``[V, ..., 2]``."""
    return _project(rig.projection_matrices, points)


def _project(P: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``[..., 3]`` through projection matrices ``P [V, 3, 4]``: ``[V, ..., 2]`` (NaN behind a camera)."""
    # Points along the last axis ([V, 3, N]), as in project_with_jacobian.
    proj = P[:, :, :3] @ points.reshape(-1, 3).T + P[:, :, 3:]  # [V, 3, N]
    depth = proj[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.where(depth > 1e-9, proj[:, :2] / depth, np.nan)
    return uv.transpose(0, 2, 1).reshape((len(P),) + points.shape[:-1] + (2,))


def reprojection_errors(rig: CameraRig, points: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Pixel distance between projected ``points [..., 3]`` and observations ``uv [V, ..., 2]``: ``[V, ...]``."""
    return np.linalg.norm(project_pinhole(rig, points) - uv, axis=-1)


MAX_PIXEL = 1e6
"""Keypoint coordinates beyond this (px, either sign) are garbage: no sensor is that large, and such values
overflow the triangulation's linear algebra."""


def valid_observations(keypoints: np.ndarray, min_confidence: float = 0.0) -> np.ndarray:
    """Boolean ``[V, ...]``: a pixel within ``MAX_PIXEL`` and a confidence above ``min_confidence`` for
    ``keypoints [V, ..., 3]``."""
    with np.errstate(invalid="ignore"):
        sane = (np.abs(keypoints[..., :2]) <= MAX_PIXEL).all(axis=-1)  # False for NaN and inf too
        confidence = keypoints[..., 2]
        # A NaN confidence counts as 0 (np.nan_to_num's rule, without its cost).
        return sane & (np.where(np.isnan(confidence), 0.0, confidence) > min_confidence)


def triangulate_dlt(rig: CameraRig, uv: np.ndarray, weights: np.ndarray | None = None, min_views: int = 2) -> np.ndarray:
    """(Weighted) DLT of undistorted pixels ``uv [V, ..., 2]`` -> points ``[..., 3]``.

    Args:
        weights: ``[V, ...]`` row weights (detector confidences); ``None`` means 1 for every finite pixel.
        min_views: points seen by fewer valid views are NaN.
    """
    if weights is None:
        weights = np.isfinite(uv).all(axis=-1).astype(np.float64)
    valid = np.isfinite(weights) & (weights > 0) & np.isfinite(uv).all(axis=-1)
    points = _solve_normal(_normal_matrices(_dlt_rows(rig, uv, np.where(valid, weights, 0.0))))
    return np.where((valid.sum(axis=0) >= min_views)[..., None], points, np.nan)


def triangulate_leave_one_out(rig: CameraRig, uv: np.ndarray, weights: np.ndarray, min_views: int = 2) -> np.ndarray:
    """For each view, the weighted DLT of undistorted pixels ``uv [V, ..., 2]`` from the *other* views:
    ``[V, ..., 3]`` (NaN where fewer than ``min_views`` other views are valid). One normal matrix per view, and the
    total less each, solved with the point's homogeneous coordinate held at 1 (a 3x3 system; within a fraction
    of a millimetre of :func:`triangulate_dlt`'s unit null vector at pixel noise), which costs a fraction of an
    eigen-decomposition per point and view.

    Args:
        weights: ``[V, ...]`` row weights (0 = not observed).
    """
    valid = np.isfinite(weights) & (weights > 0) & np.isfinite(uv).all(axis=-1)
    rows = _dlt_rows(rig, uv, np.where(valid, weights, 0.0))  # [..., V, 2, 4]
    per_view = np.swapaxes(rows, -1, -2) @ rows  # [..., V, 4, 4]
    others = per_view.sum(axis=-3, keepdims=True) - per_view
    A, b = others[..., :3, :3], -others[..., :3, 3]
    ridge = 1e-12 * np.trace(A, axis1=-2, axis2=-1)[..., None, None] * np.eye(3) + 1e-300 * np.eye(3)
    points = np.moveaxis(np.linalg.solve(A + ridge, b[..., None])[..., 0], -2, 0)  # [V, ..., 3]
    enough = valid.sum(axis=0) - valid >= min_views  # [V, ...]
    return np.where(enough[..., None], points, np.nan)


@dataclass
class RobustTriangulation:
    """Result of :func:`triangulate_robust`.

    Attributes:
        points: ``[..., 3]``, NaN where no subset passed.
        views_used: boolean ``[V, ...]``.
        error: mean reprojection error of the chosen subset, px ``[...]``.
    """

    points: np.ndarray
    views_used: np.ndarray
    error: np.ndarray


def view_subsets(num_views: int, min_views: int, limit: int | None = None) -> np.ndarray:
    """View subsets of size ``>= min_views`` as a boolean ``[S, V]``, largest first; only the first ``limit`` are
    generated (there are ``2^V`` in all)."""
    sizes = range(num_views, min_views - 1, -1)
    combos = itertools.islice(
        itertools.chain.from_iterable(itertools.combinations(range(num_views), size) for size in sizes), limit
    )
    subsets = np.zeros((0, num_views), dtype=bool)
    rows = list(combos)
    if rows:
        subsets = np.zeros((len(rows), num_views), dtype=bool)
        for row, combo in enumerate(rows):
            subsets[row, list(combo)] = True
    return subsets


def _usable_views(
    rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, min_confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Observations the subset searches may use ``[V, ...]`` (finite pixel, confidence >= ``min_confidence``) and
    their confidence-weighted DLT rows ``[..., V, 2, 4]`` (zero where unusable)."""
    weights = np.where(np.isfinite(confidence) & (confidence >= min_confidence), confidence, 0.0)
    usable = (weights > 0) & np.isfinite(uv).all(axis=-1)
    return usable, _dlt_rows(rig, uv, np.where(usable, weights, 0.0))


def _fit_views(normal: np.ndarray, used: np.ndarray, P: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[..., 3]`` solving summed normal matrices ``[..., 4, 4]``, and their mean reprojection error over the
    ``used [V, ...]`` views of ``uv [V, ..., 2]`` (``P [V, 3, 4]``); ``inf`` where the point or an error is not finite."""
    points = _solve_normal(normal)
    with np.errstate(invalid="ignore"):
        offset = _project(P, points) - uv
        errors = np.where(used, np.sqrt(offset[..., 0] ** 2 + offset[..., 1] ** 2), 0.0)
    mean = errors.sum(axis=0) / np.maximum(used.sum(axis=0), 1)
    return points, np.where(np.isfinite(mean) & np.isfinite(points).all(axis=-1), mean, np.inf)


SUBSET_BATCH = 1 << 15
"""(subset, point) pairs solved in one batch by :func:`triangulate_robust`: bounds its memory on long recordings."""


def triangulate_robust(
    rig: CameraRig,
    uv: np.ndarray,
    confidence: np.ndarray,
    threshold_px: float = 15.0,
    min_confidence: float = 0.3,
    min_views: int = 2,
    max_subsets: int = 256,
) -> RobustTriangulation:
    """Confidence-weighted DLT over view subsets, keeping the largest subset that reprojects under ``threshold_px``.

    Observations under ``min_confidence`` are dropped first (Pose2Sim's likelihood threshold). Each point tries the
    subsets of the views it is actually seen in, so its cost depends on those views, not on the rig's size. Among
    subsets of the same size the lowest mean reprojection error wins. Where no subset passes, the point is NaN (as
    Pose2Sim does).

    Args:
        uv: undistorted pixels ``[V, ..., 2]``.
        confidence: ``[V, ...]`` in [0, 1].
        max_subsets: cap on the subsets tried per point (largest sizes first), which bounds the cost for a point
            seen by many cameras (``2^n`` subsets for ``n`` views).

    :func:`triangulate_robust_c` where the extension was built (and the rig has at most 64 cameras), else
    :func:`triangulate_robust_numpy` (same arguments).
    """
    if len(rig) > MAX_KERNEL_VIEWS or _compiled_kernel() is None:
        return triangulate_robust_numpy(rig, uv, confidence, threshold_px, min_confidence, min_views, max_subsets)
    return triangulate_robust_c(rig, uv, confidence, threshold_px, min_confidence, min_views, max_subsets)


def triangulate_robust_numpy(
    rig: CameraRig,
    uv: np.ndarray,
    confidence: np.ndarray,
    threshold_px: float = 15.0,
    min_confidence: float = 0.3,
    min_views: int = 2,
    max_subsets: int = 256,
) -> RobustTriangulation:
    """The reference of :func:`triangulate_robust`: every point's whole view set in one batch of array operations,
    then the smaller subsets of the points that failed, in batches of ``SUBSET_BATCH``."""
    num_views = uv.shape[0]
    batch_shape = uv.shape[1:-1]
    flat_uv = uv.reshape(num_views, -1, 2)
    valid, rows = _usable_views(rig, flat_uv, confidence.reshape(num_views, -1), min_confidence)  # [V, N], [N, V, 2, 4]
    P = rig.projection_matrices

    # Each point's first subset is all of its views, the only subset of the largest size: where it passes, it is
    # the answer, and the smaller subsets are tried only for the points where it fails. All the points' whole sets
    # are one batch, whatever views each is seen in.
    count = valid.sum(axis=0)
    seen = (count >= min_views) & (max_subsets > 0)
    whole_points, whole_error = _fit_views(_normal_matrices(rows), valid, P, flat_uv)
    passed = seen & (whole_error < threshold_px)
    points = np.where(passed[:, None], whole_points, np.nan)
    error = np.where(passed, whole_error, np.nan)
    views_used = valid & passed
    retry = np.flatnonzero(seen & ~passed & (count > min_views))
    if len(retry):
        _search_subsets(rows, valid, flat_uv, P, retry, threshold_px, min_views, max_subsets, points, error, views_used)
    return RobustTriangulation(
        points=points.reshape(batch_shape + (3,)),
        views_used=views_used.reshape((num_views,) + batch_shape),
        error=error.reshape(batch_shape),
    )


def triangulate_robust_c(
    rig: CameraRig,
    uv: np.ndarray,
    confidence: np.ndarray,
    threshold_px: float = 15.0,
    min_confidence: float = 0.3,
    min_views: int = 2,
    max_subsets: int = 256,
) -> RobustTriangulation:
    """:func:`triangulate_robust_numpy` one point at a time in a compiled loop (``_triangulation_kernel.c``; raises
    ``ImportError`` where the extension was not built, ``ValueError`` for more than ``MAX_KERNEL_VIEWS`` cameras).
    Why: a live frame triangulates its people's joints, some fifty points, where the reference's cost is that of
    its array calls (about 0.5 ms a frame at 3 people on the project machine)."""
    from ._triangulation_kernel import triangulate_robust as kernel

    num_views, batch_shape = uv.shape[0], uv.shape[1:-1]
    count = int(np.prod(batch_shape, dtype=np.int64))
    points, error = np.empty((count, 3)), np.empty(count)
    views_used = np.zeros((num_views, count), dtype=bool)
    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    kernel(f64(rig.K_inv), f64(rig.extrinsics), f64(rig.projection_matrices), f64(uv.reshape(num_views, count, 2)),
           f64(confidence.reshape(num_views, count)), float(threshold_px), float(min_confidence), int(min_views),
           int(max_subsets), points, views_used, error)
    return RobustTriangulation(points.reshape(batch_shape + (3,)), views_used.reshape((num_views,) + batch_shape),
                               error.reshape(batch_shape))


MAX_KERNEL_VIEWS = 64
"""Cameras the compiled robust triangulation takes (a point's view subsets are bit masks of 64)."""


@functools.cache
def _compiled_kernel() -> Callable | None:
    """The compiled robust triangulation, or None where the extension was not built (the image kernel, built
    alike, warns of a missing build once: ``fusion/image_terms.py``)."""
    try:
        from ._triangulation_kernel import triangulate_robust as kernel
    except ImportError:
        return None
    return kernel


def _search_subsets(
    rows: np.ndarray,
    valid: np.ndarray,
    uv: np.ndarray,
    P: np.ndarray,
    retry: np.ndarray,
    threshold_px: float,
    min_views: int,
    max_subsets: int,
    points: np.ndarray,
    error: np.ndarray,
    views_used: np.ndarray,
) -> None:
    """:func:`triangulate_robust`'s search of the smaller view subsets for the points ``retry [R]`` (indices into
    ``N``) whose whole view set failed, writing the winners into ``points [N, 3]``, ``error [N]`` and ``views_used
    [V, N]``; ``rows [N, V, 2, 4]``, ``valid [V, N]``, ``uv [V, N, 2]`` as there."""
    # Candidate (subset, point) pairs: the smaller subsets of the views each point is seen in, in subset order
    # (largest first) within each point.
    subsets = [_smaller_subsets(views.tobytes(), min_views, max_subsets) for views in valid[:, retry].T]
    pair_subsets = np.concatenate(subsets)  # [M, V]
    pair_points = np.repeat(retry, [len(s) for s in subsets])  # [M]

    candidates = np.full((len(pair_points), 3), np.nan)
    mean = np.full(len(pair_points), np.inf)
    for start in range(0, len(pair_points), SUBSET_BATCH):
        batch = slice(start, start + SUBSET_BATCH)
        chosen, at = pair_subsets[batch], pair_points[batch]
        normal = _normal_matrices(rows[at], chosen)
        candidates[batch], mean[batch] = _fit_views(normal, chosen.T, P, uv[:, at])
    # Per point: the largest passing subset, then the lowest error (a stable sort keeps the first of equal ones).
    passes = mean < threshold_px
    size = np.where(passes, pair_subsets.sum(axis=1), 0)
    order = np.lexsort((np.where(passes, mean, np.inf), -size, pair_points))
    sorted_points = pair_points[order]
    first = order[np.diff(sorted_points, prepend=-1) != 0]
    best = first[size[first] > 0]
    chosen_points = pair_points[best]
    points[chosen_points] = candidates[best]
    error[chosen_points] = mean[best]
    views_used[:, chosen_points] = pair_subsets[best].T


@functools.lru_cache(maxsize=256)
def _smaller_subsets(views: bytes, min_views: int, limit: int) -> np.ndarray:
    """The subsets after the first (the whole set) of :func:`view_subsets` of the views of a boolean mask ``[V]``
    (its bytes, a hashable key), as a boolean ``[S, V]`` over the whole rig."""
    mask = np.frombuffer(views, dtype=bool)
    local = view_subsets(int(mask.sum()), min_views, limit)[1:]
    subsets = np.zeros((len(local), len(mask)), dtype=bool)
    subsets[:, mask] = local
    subsets.flags.writeable = False
    return subsets


def project_with_jacobian(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pinhole projection of ``points [..., 3]`` into views ``K [V, 3, 3]``, ``R [V, 3, 3]``, ``t [V, 3]``.

    Returns:
        uv ``[V, ..., 2]`` px, jacobian ``[V, ..., 2, 3]`` (px per world unit), depth ``[V, ...]``.
    """
    uv, jac, depth = project_with_jacobian_rows(K, R, t, points)
    return np.moveaxis(uv, 0, -1), np.moveaxis(jac, (0, 1), (-2, -1)), depth


def project_with_jacobian_rows(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`project_with_jacobian` with the small axes first: uv ``[2, V, ...]``, jacobian ``[2, 3, V, ...]``
    (``jacobian[k, a]`` = d uv_k / d x_a), depth ``[V, ...]``, so that code working entry by entry gets each entry
    as one ``[V, ...]`` array and sums over an entry axis by adding whole arrays."""
    # Points along the last axis ([V, 3, N]): long inner loops. numpy's batched matmul of many tiny matrices (the
    # obvious [V, ..., 3, 3] @ [..., 3, 1]) loops over them one by one, 3x slower at [4, 300, 17].
    batch, views = points.shape[:-1], len(R)
    cam = R @ points.reshape(-1, 3).T + t[:, :, None]  # [V, 3, N]
    depth = cam[:, 2]
    inv_z = 1.0 / np.maximum(depth, 1e-6)
    uv = (K[:, :2] @ cam) * inv_z[:, None]  # [V, 2, N]
    # d uv / d cam = (K[:2] - uv e3^T) / z, then chain through R: (K[:2] R - uv R[2]) / z.
    jac = ((K[:, :2] @ R)[..., None] - uv[:, :, None] * R[:, None, 2, :, None]) * inv_z[:, None, None]  # [V, 2, 3, N]
    return (uv.transpose(1, 0, 2).reshape((2, views, *batch)), jac.transpose(1, 2, 0, 3).reshape((2, 3, views, *batch)),
            depth.reshape((views, *batch)))


def triangulate_greedy(
    rig: CameraRig,
    uv: np.ndarray,
    confidence: np.ndarray,
    threshold_px: float = 15.0,
    min_confidence: float = 0.3,
    min_views: int = 2,
) -> RobustTriangulation:
    """Like :func:`triangulate_robust`, but leaving out one view at a time: the one whose removal lowers the mean
    reprojection error most (the first view of equal ones), until the views left agree.

    About ``V^2 / 2`` solves per point whose views disagree instead of every subset (35 instead of 247 for 8
    cameras): the choice for many cameras, where the exhaustive search grows as ``2^V``. Only those points search,
    every view they could leave out in one batch. A point whose views never agree is NaN.
    """
    num_views = uv.shape[0]
    batch_shape = uv.shape[1:-1]
    flat_uv = uv.reshape(num_views, -1, 2)
    used, rows = _usable_views(rig, flat_uv, confidence.reshape(num_views, -1), min_confidence)  # [V, N], [N, V, 2, 4]
    P = rig.projection_matrices
    points, mean_error = _fit_views(_normal_matrices(rows, used.T), used, P, flat_uv)
    searching = np.flatnonzero((mean_error >= threshold_px) & (used.sum(axis=0) > min_views))
    for _ in range(num_views - min_views):
        if not len(searching):
            break
        # Every (point, view it uses) pair: that point's views without that one.
        point, view = np.nonzero(used[:, searching].T)  # [M]: index into searching, and the view left out
        masks = used[:, searching[point]].T.copy()  # [M, V]
        masks[np.arange(len(point)), view] = False
        trial_points, trial_error = _fit_views(_normal_matrices(rows[searching[point]], masks), masks.T, P,
                                               flat_uv[:, searching[point]])
        error = np.full((len(searching), num_views), np.inf)
        error[point, view] = trial_error
        best_view = np.argmin(error, axis=1)  # the first of equal ones, as the views are tried in order
        best_error = error[np.arange(len(searching)), best_view]
        # A point none of whose drops gives a finite error keeps its views (and would not change again).
        dropped = np.isfinite(best_error)
        chosen = np.full((len(searching), num_views), -1)
        chosen[point, view] = np.arange(len(point))
        pick = chosen[np.arange(len(searching)), best_view][dropped]
        moved = searching[dropped]
        used[best_view[dropped], moved] = False
        points[moved], mean_error[moved] = trial_points[pick], best_error[dropped]
        searching = moved[(mean_error[moved] >= threshold_px) & (used[:, moved].sum(axis=0) > min_views)]
    ok = (mean_error < threshold_px) & (used.sum(axis=0) >= min_views)
    return RobustTriangulation(
        points=np.where(ok[:, None], points, np.nan).reshape(batch_shape + (3,)),
        views_used=(used & ok[None]).reshape((num_views,) + batch_shape),
        error=np.where(ok, mean_error, np.nan).reshape(batch_shape),
    )


UNCONSTRAINED_RIG_SIZES = 10.0
"""A direction no view constrains gets the variance of a point anywhere within this many rig sizes (its standard
deviation in units of ``CameraRig.spatial_scale``): large, finite, and in the calibration's units."""


def linear_covariance(
    rig: CameraRig, points: np.ndarray, weights: np.ndarray, sigma_px: float | np.ndarray
) -> np.ndarray:
    """First-order position covariance ``[..., 3, 3]`` (world units^2) of points ``[..., 3]`` seen with weights
    ``[V, ...]`` (0 = unused) and pixel noise ``sigma_px`` (a number or ``[V, ...]``).

    Directions that no view constrains (along the ray of a joint seen by one view; every direction for a joint
    seen by none) get a variance of ``(UNCONSTRAINED_RIG_SIZES * rig size)^2``, not ~0: a weak isotropic prior
    added to the information matrix, negligible wherever the views do constrain the point.
    """
    finite = np.isfinite(points)
    _, jac, _ = project_with_jacobian(rig.K, rig.R, rig.t, np.where(finite, points, 0.0))
    with np.errstate(all="ignore"):
        per_view = weights / np.asarray(sigma_px, dtype=np.float64) ** 2
    # Non-finite (NaN: no observation) counts as unused.
    per_view = np.where(np.isfinite(per_view), per_view, 0.0)
    info = np.einsum("v...,v...ka,v...kb->...ab", per_view, jac, jac)
    rig_size = rig.spatial_scale() or float(np.abs(rig.t).max()) or 1.0
    info = info + np.eye(3) / (UNCONSTRAINED_RIG_SIZES * rig_size) ** 2
    with np.errstate(all="ignore"):
        cov = np.linalg.inv(info)
    return np.where(finite.all(-1)[..., None, None] & np.isfinite(cov), cov, np.nan)
