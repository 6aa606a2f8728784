"""A camera's pose from 3D points and their 2D detections (PnP), and relocation of a moved camera against people
whose joints the other cameras know.

:func:`locate_camera` needs no starting pose and no association: it links the camera's detections into tracklets,
makes pose hypotheses from each (tracklet, person) pair by RANSAC on the six-point DLT, scores each hypothesis over
every tracklet (each takes the person it reprojects best onto), and refines the best one with a robust loss. A
camera bumped by any angle is found this way, as long as it still sees the people the others see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ..geometry.camera import rodrigues_to_matrix, matrix_to_rodrigues
from .tracklets import TrackletConfig, link_tracklets

__all__ = ["pose_dlt", "refine_pose", "PoseFit", "locate_camera"]


def pose_dlt(points: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """World-to-camera ``(R [3, 3], t [3])`` from ``points [N, 3]`` and their normalised image coordinates
    ``xy [N, 2]`` (N >= 6, not coplanar) by the direct linear transform; ``None`` when degenerate or when the
    points would lie behind the camera."""
    centre = points.mean(axis=0)
    spread = max(float(np.mean(np.linalg.norm(points - centre, axis=1))), 1e-9)
    X = np.hstack([(points - centre) / spread, np.ones((len(points), 1))])  # conditioned
    zero = np.zeros_like(X)
    rows = np.concatenate([np.hstack([X, zero, -xy[:, :1] * X]), np.hstack([zero, X, -xy[:, 1:] * X])])
    _, singular, vt = np.linalg.svd(rows, full_matrices=False)
    if singular[-2] < 1e-9 * singular[0]:
        return None
    P = vt[-1].reshape(3, 4)
    u, s, v = np.linalg.svd(P[:, :3])
    R = u @ v
    scale = s.mean()
    if np.linalg.det(R) < 0:
        R, scale = -R, -scale
    t = P[:, 3] / scale
    # Undo the conditioning: X_cond = (X - centre) / spread, so R X_cond + t = (R X - R centre) / spread + t.
    t = t * spread - R @ centre
    if np.median(points @ R[2] + t[2]) <= 0:  # the sample's points behind the camera: not a pose
        return None
    return R, t


def _residuals(params: np.ndarray, points: np.ndarray, xy: np.ndarray, focal: float) -> np.ndarray:
    R = rodrigues_to_matrix(params[:3])
    cam = points @ R.T + params[3:]
    z = np.maximum(cam[:, 2:], 1e-6)
    return ((cam[:, :2] / z - xy) * focal).ravel()


def refine_pose(points: np.ndarray, xy: np.ndarray, R: np.ndarray, t: np.ndarray, focal: float,
                scale_px: float) -> tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` refined on ``points [N, 3]`` and normalised ``xy [N, 2]`` with a Cauchy loss of scale
    ``scale_px`` (pixels of a camera of focal length ``focal``)."""
    start = np.concatenate([matrix_to_rodrigues(R), t])
    solution = least_squares(_residuals, start, args=(points, xy, focal), loss="cauchy", f_scale=scale_px,
                             method="trf", x_scale="jac", max_nfev=100)
    return rodrigues_to_matrix(solution.x[:3]), solution.x[3:]


@dataclass
class PoseFit:
    """A located camera.

    Attributes:
        R, t: world to camera.
        person: ``[F, S]`` person each detection was matched to (-1 = none).
        inliers: correspondences within the threshold at the refined pose.
        correspondences: correspondences of the matched tracklets.
    """

    R: np.ndarray
    t: np.ndarray
    person: np.ndarray
    inliers: int
    correspondences: int


def _errors(R: np.ndarray, t: np.ndarray, points: np.ndarray, xy: np.ndarray, focal: float) -> np.ndarray:
    cam = points @ R.T + t
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.linalg.norm(cam[:, :2] / cam[:, 2:] - xy, axis=-1) * focal
    return np.where(cam[:, 2] > 1e-6, error, np.inf)


def locate_camera(K: np.ndarray, people: np.ndarray, uv: np.ndarray, confidence: np.ndarray, flip: np.ndarray,
                  threshold_px: float, min_frames: int = 10, hypotheses: int = 25, sample: int = 12,
                  seed: int = 0, guess: tuple[np.ndarray, np.ndarray] | None = None) -> PoseFit | None:
    """Locate a camera against known people, without a starting pose or an association.

    Args:
        K: the camera's intrinsics ``[3, 3]``.
        people: ``[F, P, J, 3]`` world joints of ``P`` people (NaN = unknown), from the other cameras.
        uv: ``[F, S, J, 2]`` the camera's detections, undistorted pixels (NaN = missing).
        confidence: ``[F, S, J]``.
        flip: the skeleton's left/right permutation ``[J]``.
        threshold_px: a correspondence within this reprojection error (px) is an inlier.
        min_frames: a (tracklet, person) pair seen together in fewer frames makes no hypothesis.
        hypotheses: RANSAC samples per (tracklet, person) pair.
        guess: a pose ``(R, t)`` to compete with the samples (where the camera is believed to be).
        sample: correspondences per sample (six is the DLT's minimum, but noisy keypoints on a person-sized object
            make six-point poses too rough to count inliers by; twelve are still mostly outlier-free).

    Returns:
        The best pose with its matches, or ``None`` when no hypothesis explains anything.
    """
    rng = np.random.default_rng(seed)
    config = TrackletConfig()
    labels = link_tracklets(uv[None], confidence[None], flip, config)[0]  # [F, S]
    K_inv = np.linalg.inv(K)
    focal = float(np.sqrt(K[0, 0] * K[1, 1]))
    xy_all = (np.nan_to_num(uv) @ K_inv[:2, :2].T + K_inv[:2, 2])
    usable = (confidence >= config.min_confidence) & np.isfinite(uv).all(-1)
    known = np.isfinite(people).all(-1)  # [F, P, J]
    # Correspondences of every (tracklet, person) pair: (points, xy) over their shared frames and joints.
    pairs = {}
    for label in np.unique(labels[labels >= 0]):
        frames, slots = np.nonzero(labels == label)
        for p in range(people.shape[1]):
            both = usable[frames, slots] & known[frames, p]  # [T, J]
            if (both.any(-1)).sum() >= min_frames:
                fi, ji = np.nonzero(both)
                pairs[(int(label), p)] = (people[frames[fi], p, ji], xy_all[frames[fi], slots[fi], ji])
    best: tuple[int, np.ndarray, np.ndarray] | None = None
    if guess is not None:
        best = (_score(*guess, pairs, focal, threshold_px, require_median=False)[0], *guess)
    for (label, p), (points, xy) in pairs.items():
        for _ in range(hypotheses):
            chosen = rng.choice(len(points), min(sample, len(points)), replace=False)
            pose = pose_dlt(points[chosen], xy[chosen])
            if pose is None:
                continue
            count = _score(pose[0], pose[1], pairs, focal, threshold_px, require_median=False)[0]
            if best is None or count > best[0]:
                best = (count, *pose)
    if best is None or best[0] == 0:
        return None
    R, t = best[1], best[2]
    for _ in range(3):  # refine on the inliers of the matched pairs, then re-match
        count, chosen = _score(R, t, pairs, focal, threshold_px, require_median=False)
        points = np.concatenate([pairs[key][0] for key in chosen])
        xy = np.concatenate([pairs[key][1] for key in chosen])
        inlier = _errors(R, t, points, xy, focal) <= 3.0 * threshold_px
        if inlier.sum() < 6:
            return None
        R, t = refine_pose(points[inlier], xy[inlier], R, t, focal, threshold_px / 3.0)
    count, chosen = _score(R, t, pairs, focal, threshold_px)
    person = np.full(labels.shape, -1, dtype=np.int64)
    for label, p in chosen:
        person[labels == label] = p
    return PoseFit(R, t, person, count, int(sum(len(pairs[key][0]) for key in chosen)))


def _score(R: np.ndarray, t: np.ndarray, pairs: dict, focal: float, threshold_px: float,
           require_median: bool = True) -> tuple[int, list]:
    """Inliers of a pose when each tracklet takes the person with the most inliers, and the chosen (tracklet,
    person) pairs; with ``require_median`` a tracklet takes a person only when most of its keypoints are inliers
    (the final match; a rough hypothesis is ranked by its inliers alone)."""
    by_tracklet: dict[int, tuple[int, tuple]] = {}
    for key, (points, xy) in pairs.items():
        inside = _errors(R, t, points, xy, focal) <= threshold_px
        inliers = int(inside.sum())
        if inliers and (not require_median or inliers > len(inside) / 2):
            if key[0] not in by_tracklet or inliers > by_tracklet[key[0]][0]:
                by_tracklet[key[0]] = (inliers, key)
    return sum(v[0] for v in by_tracklet.values()), [v[1] for v in by_tracklet.values()]
