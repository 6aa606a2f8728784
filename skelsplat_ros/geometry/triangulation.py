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

import numpy as np

from .camera import CameraRig


def _normalised(rig: CameraRig, uv: np.ndarray) -> np.ndarray:
    """Pixels ``[V, ..., 2]`` to normalised image coordinates ``[V, ..., 2]`` (``K^-1 [u v 1]``)."""
    K_inv = np.linalg.inv(rig.K)  # [V, 3, 3]
    extra = uv.ndim - 2
    K_inv = K_inv.reshape(K_inv.shape[:1] + (1,) * extra + (3, 3))
    homo = np.concatenate([uv, np.ones_like(uv[..., :1])], axis=-1)
    xy = np.einsum("...ij,...j->...i", K_inv, homo)
    return xy[..., :2] / xy[..., 2:3]


def _view_normal_matrices(rig: CameraRig, uv: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-view DLT normal matrices ``A_v^T A_v`` ``[V, ..., 4, 4]`` in normalised coordinates, rows scaled by weight.

    Invalid observations (weight 0 or non-finite pixel) contribute zero.
    """
    valid = np.isfinite(uv).all(axis=-1) & (weights > 0)
    xy = np.where(valid[..., None], _normalised(rig, np.where(np.isfinite(uv), uv, 0.0)), 0.0)
    extrinsic = np.concatenate([rig.R, rig.t[:, :, None]], axis=2)  # [V, 3, 4]
    extra = uv.ndim - 2
    extrinsic = extrinsic.reshape(extrinsic.shape[:1] + (1,) * extra + (3, 4))
    row_x = xy[..., 0:1] * extrinsic[..., 2, :] - extrinsic[..., 0, :]
    row_y = xy[..., 1:2] * extrinsic[..., 2, :] - extrinsic[..., 1, :]
    w = np.where(valid, weights, 0.0)[..., None]
    rows = np.stack([row_x * w, row_y * w], axis=-2)  # [V, ..., 2, 4]
    return np.einsum("...ki,...kj->...ij", rows, rows)


def _solve_normal(normal: np.ndarray) -> np.ndarray:
    """Null vector of summed normal matrices ``[..., 4, 4]`` -> dehomogenised points ``[..., 3]`` (NaN if degenerate)."""
    # Rescale so eigh is well conditioned whatever the weights.
    scale = np.maximum(np.abs(normal).max(axis=(-2, -1), keepdims=True), 1e-300)
    _, vectors = np.linalg.eigh(normal / scale)
    homo = vectors[..., :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        points = homo[..., :3] / homo[..., 3:4]
    bad = np.abs(homo[..., 3]) < 1e-12
    return np.where(bad[..., None], np.nan, points)


def project_pinhole(rig: CameraRig, points: np.ndarray) -> np.ndarray:
    """World points ``[..., 3]`` through every view's pinhole model (no distortion): ``[V, ..., 2]``."""
    return _project(rig.projection_matrices, points)


def _project(P: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``[..., 3]`` through projection matrices ``P [V, 3, 4]``: ``[V, ..., 2]`` (NaN behind a camera)."""
    homo = np.concatenate([points, np.ones_like(points[..., :1])], axis=-1)
    proj = np.einsum("vij,...j->v...i", P, homo)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(proj[..., 2:3] > 1e-9, proj[..., :2] / proj[..., 2:3], np.nan)


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
        return sane & (np.nan_to_num(keypoints[..., 2]) > min_confidence)


def triangulate_dlt(rig: CameraRig, uv: np.ndarray, weights: np.ndarray | None = None, min_views: int = 2) -> np.ndarray:
    """(Weighted) DLT of undistorted pixels ``uv [V, ..., 2]`` -> points ``[..., 3]``.

    Args:
        weights: ``[V, ...]`` row weights (detector confidences); ``None`` means 1 for every finite pixel.
        min_views: points seen by fewer valid views are NaN.
    """
    if weights is None:
        weights = np.isfinite(uv).all(axis=-1).astype(np.float64)
    weights = np.where(np.isfinite(weights), weights, 0.0)
    normal = _view_normal_matrices(rig, uv, weights).sum(axis=0)
    points = _solve_normal(normal)
    enough = ((weights > 0) & np.isfinite(uv).all(axis=-1)).sum(axis=0) >= min_views
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
    their confidence-weighted DLT normal matrices ``[V, ..., 4, 4]`` (zero where unusable)."""
    weights = np.where(np.isfinite(confidence) & (confidence >= min_confidence), confidence, 0.0)
    usable = (weights > 0) & np.isfinite(uv).all(axis=-1)
    return usable, _view_normal_matrices(rig, uv, np.where(usable, weights, 0.0))


def _fit_views(normal: np.ndarray, used: np.ndarray, P: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[..., 3]`` solving summed normal matrices ``[..., 4, 4]``, and their mean reprojection error over the
    ``used [V, ...]`` views of ``uv [V, ..., 2]`` (``P [V, 3, 4]``); ``inf`` where the point or an error is not finite."""
    points = _solve_normal(normal)
    with np.errstate(invalid="ignore"):
        errors = np.where(used, np.linalg.norm(_project(P, points) - uv, axis=-1), 0.0)
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
    """
    num_views = uv.shape[0]
    batch_shape = uv.shape[1:-1]
    valid, per_view = _usable_views(rig, uv, confidence, min_confidence)
    valid = valid.reshape(num_views, -1)  # [V, N]
    num_points = valid.shape[1]
    points = np.full((num_points, 3), np.nan)
    error = np.full(num_points, np.nan)
    views_used = np.zeros((num_views, num_points), dtype=bool)

    # Candidate (subset, point) pairs: the subsets of the views each point is seen in, shared by the points seen by
    # the same views, in subset order (largest first) within each point.
    seen = np.flatnonzero(valid.sum(axis=0) >= min_views)
    masks, group = np.unique(np.packbits(valid[:, seen], axis=0).T, axis=0, return_inverse=True)
    pair_subsets, pair_points = [np.zeros((0, num_views), dtype=bool)], [np.zeros(0, dtype=np.int64)]
    for g in range(len(masks)):
        members = seen[group.ravel() == g]
        views = np.flatnonzero(valid[:, members[0]])
        local = _cached_subsets(len(views), min_views, max_subsets)  # [S, n] over `views`
        subsets = np.zeros((len(local), num_views), dtype=bool)
        subsets[:, views] = local
        pair_subsets.append(np.tile(subsets, (len(members), 1)))
        pair_points.append(np.repeat(members, len(local)))
    pair_subsets, pair_points = np.concatenate(pair_subsets), np.concatenate(pair_points)  # [M, V], [M]

    P = rig.projection_matrices
    per_view = per_view.reshape(num_views, -1, 4, 4)
    flat_uv = uv.reshape(num_views, -1, 2)
    candidates = np.full((len(pair_points), 3), np.nan)
    mean = np.full(len(pair_points), np.inf)  # inf: not tried

    def fit(pairs: np.ndarray) -> None:
        for start in range(0, len(pairs), SUBSET_BATCH):
            batch = pairs[start: start + SUBSET_BATCH]
            chosen, at = pair_subsets[batch], pair_points[batch]
            normal = np.einsum("mv,vmij->mij", chosen.astype(np.float64), per_view[:, at])
            candidates[batch], mean[batch] = _fit_views(normal, chosen.T, P, flat_uv[:, at])

    # Each point's first subset is all of its views, the only subset of the largest size: where it passes, it is
    # the answer, and the smaller subsets are tried only for the points where it fails (most points pass).
    whole = np.diff(pair_points, prepend=-1) != 0
    fit(np.flatnonzero(whole))
    failed = np.zeros(num_points, dtype=bool)
    failed[pair_points[whole]] = ~(mean[whole] < threshold_px)
    fit(np.flatnonzero(~whole & failed[pair_points]))
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
    return RobustTriangulation(
        points=points.reshape(batch_shape + (3,)),
        views_used=views_used.reshape((num_views,) + batch_shape),
        error=error.reshape(batch_shape),
    )


@functools.lru_cache(maxsize=64)
def _cached_subsets(num_views: int, min_views: int, limit: int | None) -> np.ndarray:
    subsets = view_subsets(num_views, min_views, limit)
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
    reprojection error most, until the views left agree.

    About ``V^2 / 2`` solves instead of every subset (35 instead of 247 for 8 cameras): the choice for many cameras,
    where the exhaustive search grows as ``2^V``. A point whose views never agree is NaN.
    """
    num_views = uv.shape[0]
    used, per_view = _usable_views(rig, uv, confidence, min_confidence)
    P = rig.projection_matrices
    view_axis = np.arange(num_views).reshape((-1,) + (1,) * (uv.ndim - 2))

    def solve(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _fit_views((per_view * mask[..., None, None]).sum(axis=0), mask, P, uv)

    points, mean_error = solve(used)
    for _ in range(num_views - min_views):
        pending = (mean_error >= threshold_px) & (used.sum(axis=0) > min_views)
        if not pending.any():
            break
        best_error = np.full(mean_error.shape, np.inf)
        best_points, best_view = points, np.full(mean_error.shape, -1)
        for view in range(num_views):
            candidate = pending & used[view]
            if not candidate.any():
                continue
            trial_points, trial_error = solve(used & (view_axis != view))
            better = candidate & (trial_error < best_error)
            best_error = np.where(better, trial_error, best_error)
            best_points = np.where(better[..., None], trial_points, best_points)
            best_view = np.where(better, view, best_view)
        dropped = pending & (best_view >= 0)
        used = used & ~(dropped[None] & (view_axis == best_view[None]))
        points = np.where(dropped[..., None], best_points, points)
        mean_error = np.where(dropped, best_error, mean_error)
    ok = (mean_error < threshold_px) & (used.sum(axis=0) >= min_views)
    return RobustTriangulation(
        points=np.where(ok[..., None], points, np.nan),
        views_used=used & ok[None],
        error=np.where(ok, mean_error, np.nan),
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
    _, jac, _ = project_with_jacobian(rig.K, rig.R, rig.t, np.nan_to_num(points))
    with np.errstate(all="ignore"):
        per_view = np.nan_to_num(weights / np.asarray(sigma_px, dtype=np.float64) ** 2)
    info = np.einsum("v...,v...ka,v...kb->...ab", per_view, jac, jac)
    rig_size = rig.spatial_scale() or float(np.abs(rig.t).max()) or 1.0
    info = info + np.eye(3) / (UNCONSTRAINED_RIG_SIZES * rig_size) ** 2
    with np.errstate(all="ignore"):
        cov = np.linalg.inv(info)
    return np.where(np.isfinite(points).all(-1)[..., None, None] & np.isfinite(cov), cov, np.nan)
