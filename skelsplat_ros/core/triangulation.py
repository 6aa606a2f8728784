"""Triangulation, batched over frames and joints: the initial guess and the baselines.

All functions take *undistorted* pixels (``CameraRig.undistort``) and work in normalised camera coordinates
internally, which keeps the linear systems well conditioned whatever the image size.

- :func:`triangulate_dlt`: DLT, optionally confidence-weighted (Pose2Sim/EasyMocap style); unweighted is the
  baseline SkelSplat itself starts from.
- :func:`triangulate_robust`: view subsets judged by reprojection error (Pose2Sim's ``triangulation_from_best_cameras``
  idea): the largest subset whose mean reprojection error is under a threshold wins, ties broken by error.
"""

from __future__ import annotations

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
    P = rig.projection_matrices  # [V, 3, 4]
    homo = np.concatenate([points, np.ones_like(points[..., :1])], axis=-1)
    proj = np.einsum("vij,...j->v...i", P, homo)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(proj[..., 2:3] > 1e-9, proj[..., :2] / proj[..., 2:3], np.nan)


def reprojection_errors(rig: CameraRig, points: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Pixel distance between projected ``points [..., 3]`` and observations ``uv [V, ..., 2]``: ``[V, ...]``."""
    return np.linalg.norm(project_pinhole(rig, points) - uv, axis=-1)


def valid_observations(keypoints: np.ndarray, min_confidence: float = 0.0) -> np.ndarray:
    """Boolean ``[V, ...]``: finite pixel and confidence above ``min_confidence`` for ``keypoints [V, ..., 3]``."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(keypoints[..., :2]).all(axis=-1) & (np.nan_to_num(keypoints[..., 2]) > min_confidence)


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


def view_subsets(num_views: int, min_views: int) -> np.ndarray:
    """All view subsets of size ``>= min_views`` as a boolean ``[S, V]``, largest first."""
    subsets = [
        np.isin(np.arange(num_views), combo)
        for size in range(num_views, min_views - 1, -1)
        for combo in itertools.combinations(range(num_views), size)
    ]
    return np.array(subsets, dtype=bool).reshape(-1, num_views)


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

    Observations under ``min_confidence`` are dropped first (Pose2Sim's likelihood threshold). Among subsets of the
    same size the lowest mean reprojection error wins. Where no subset passes, the point is NaN (as Pose2Sim does).

    Args:
        uv: undistorted pixels ``[V, ..., 2]``.
        confidence: ``[V, ...]`` in [0, 1].
        max_subsets: cap on the subsets tried (largest sizes first), which bounds the cost for many cameras.
    """
    num_views = uv.shape[0]
    weights = np.where(np.isfinite(confidence) & (confidence >= min_confidence), confidence, 0.0)
    valid = (weights > 0) & np.isfinite(uv).all(axis=-1)
    weights = np.where(valid, weights, 0.0)
    per_view = _view_normal_matrices(rig, uv, weights)  # [V, ..., 4, 4]
    subsets = view_subsets(num_views, min_views)[:max_subsets]

    batch_shape = uv.shape[1:-1]
    best_points = np.full(batch_shape + (3,), np.nan)
    best_error = np.full(batch_shape, np.inf)
    best_size = np.zeros(batch_shape, dtype=np.int64)
    best_views = np.zeros((num_views,) + batch_shape, dtype=bool)
    for subset in subsets:
        used = valid & subset.reshape((num_views,) + (1,) * len(batch_shape))
        size = used.sum(axis=0)
        # A subset is only meaningful where all its views are valid; smaller ones are tried later anyway.
        complete = size == subset.sum()
        if not complete.any():
            continue
        points = _solve_normal(np.tensordot(subset.astype(np.float64), per_view, axes=(0, 0)))
        with np.errstate(invalid="ignore"):
            err = np.where(used, reprojection_errors(rig, points, uv), 0.0).sum(axis=0) / np.maximum(size, 1)
        err = np.where(np.isfinite(err) & np.isfinite(points).all(axis=-1), err, np.inf)
        better = complete & (err < threshold_px) & ((size > best_size) | ((size == best_size) & (err < best_error)))
        best_points = np.where(better[..., None], points, best_points)
        best_error = np.where(better, err, best_error)
        best_size = np.where(better, size, best_size)
        best_views = np.where(better[None], used, best_views)
    best_error = np.where(np.isfinite(best_error), best_error, np.nan)
    return RobustTriangulation(points=best_points, views_used=best_views, error=best_error)
