"""The tracker's association costs: how well detections agree with each other across views (ray to ray) and with
a track's predicted joints (point to ray), as confidence-weighted means over joints of distances in world units,
each capped per joint (one wrong joint cannot veto a person).

:func:`pair_costs` compares every pair of a frame's unclaimed detections at once: a numba kernel, compiled at first
use, and the numpy reference, with one signature; tests hold them equal. The kernel is what keeps a frame in which
many people appear in many cameras fast (31 cameras x 10 people: 310 detections, 46,000 pairs of different views,
each as labelled and mirrored), where the reference's temporary arrays cost tens of milliseconds.
"""

from __future__ import annotations

import functools

import numpy as np

from ..fusion._numba import numba_available


def weighted_cost(distance: np.ndarray, weight: np.ndarray, clip: float, min_common: int) -> np.ndarray:
    """Weighted mean of ``distance [..., J]`` capped at ``clip`` over the joints with a finite distance and a
    positive ``weight [..., J]``; inf with fewer than ``min_common`` of them."""
    known = np.isfinite(distance) & (weight > 0)
    w = np.where(known, weight, 0.0)
    total = (w * np.where(known, np.minimum(distance, clip), 0.0)).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = total / w.sum(-1)
    return np.where(known.sum(-1) >= min_common, cost, np.inf)


def track_costs_numpy(points: np.ndarray, centre: np.ndarray, direction: np.ndarray, weight: np.ndarray,
                      clip: float, min_common: int) -> np.ndarray:
    """The reference: mean distance ``[T, N, K]`` of each track's joints to each detection's rays.

    Args:
        points: ``[T, J, 3]`` predicted joints (NaN = unknown).
        centre: ``[N, 3]`` centre of each detection's camera.
        direction: ``[N, K, J, 3]`` unit rays of the joints, ``K`` labellings of each detection (as labelled,
            mirrored); anything where ``weight`` is 0.
        weight: ``[N, K, J]`` confidence (0 = not used).
        clip, min_common: as in :func:`pair_costs_numpy`.
    """
    offset = points[:, None] - centre[None, :, None]  # [T, N, J, 3]
    ox, oy, oz = (offset[:, :, None, :, k] for k in range(3))
    dx, dy, dz = (direction[None, ..., k] for k in range(3))  # [1, N, K, J]
    # The distance of each joint to the ray: |offset x direction| (unit rays), written out because np.cross and
    # np.linalg.norm cost more than the arithmetic on arrays this small.
    cx, cy, cz = oy * dz - oz * dy, oz * dx - ox * dz, ox * dy - oy * dx
    return weighted_cost(np.sqrt(cx * cx + cy * cy + cz * cz), weight[None], clip, min_common)


def track_costs_numba(points: np.ndarray, centre: np.ndarray, direction: np.ndarray, weight: np.ndarray,
                      clip: float, min_common: int) -> np.ndarray:
    """:func:`track_costs_numpy` in one compiled loop (raises ``ImportError`` without numba)."""
    from ._association_kernel import track_cost_kernel

    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    return track_cost_kernel(f64(points), f64(centre), f64(direction), f64(weight), float(clip), int(min_common))


def track_costs(points: np.ndarray, centre: np.ndarray, direction: np.ndarray, weight: np.ndarray, clip: float,
                min_common: int) -> np.ndarray:
    """:func:`track_costs_numba` when numba is installed, else :func:`track_costs_numpy` (same arguments)."""
    implementation = track_costs_numba if numba_available() else track_costs_numpy
    return implementation(points, centre, direction, weight, clip, min_common)


def pair_costs_numpy(centre: np.ndarray, view: np.ndarray, direction: np.ndarray, weight: np.ndarray,
                     flip: np.ndarray, clip: float, min_common: int) -> np.ndarray:
    """The reference: mean ray-to-ray distance ``[2, N, N]`` between detections ``N``, as labelled (``[0]``) and with
    the second one's left and right exchanged (``[1]``; the same as mirroring the first).

    Args:
        centre: ``[N, 3]`` centre of each detection's camera (world units).
        view: ``[N]`` camera of each detection: pairs in one camera are inf, as is the diagonal.
        direction: ``[N, J, 3]`` unit rays of the joints in the world frame (anything where ``weight`` is 0).
        weight: ``[N, J]`` confidence (0 = not used); a pair of joints weighs the geometric mean of theirs.
        flip: ``[J]`` each joint's left/right counterpart.
        clip: per-joint cap of the distances; also the distance of two rays that meet behind a camera.
        min_common: joints a pair must share (both weighted) to be compared at all (inf otherwise).

    Only the upper triangle is computed and mirrored to the lower one: the cost is symmetric.
    """
    costs = np.full((2,) + view.shape * 2, np.inf)
    first, second = np.nonzero(np.triu(view[:, None] != view[None], 1))  # [P] pairs of different cameras
    baseline = (centre[second] - centre[first])[:, None]  # [P, 1, 3]
    for k, order in enumerate((np.arange(len(flip)), flip)):
        da, db = direction[first], direction[second][:, order]  # [P, J, 3]
        normal = np.cross(da, db)
        norm = np.linalg.norm(normal, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            distance = np.abs((normal * baseline).sum(-1)) / norm
            # Closest points c_a + s da and c_b + u db: both must lie in front of their cameras.
            s = (np.cross(baseline, db) * normal).sum(-1) / norm**2
            u = (np.cross(baseline, da) * normal).sum(-1) / norm**2
        distance = np.where((s > 0) & (u > 0), distance, clip)
        cost = weighted_cost(distance, np.sqrt(weight[first] * weight[second][:, order]), clip, min_common)
        costs[k, first, second] = costs[k, second, first] = cost
    return costs


def pair_costs_numba(centre: np.ndarray, view: np.ndarray, direction: np.ndarray, weight: np.ndarray,
                     flip: np.ndarray, clip: float, min_common: int) -> np.ndarray:
    """:func:`pair_costs_numpy` in one compiled loop (raises ``ImportError`` without numba)."""
    from ._association_kernel import pair_cost_kernel  # numba compiles (or loads its cache) here, once per process

    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)
    return pair_cost_kernel(f64(centre), np.ascontiguousarray(view, dtype=np.int64), f64(direction), f64(weight),
                            np.ascontiguousarray(flip, dtype=np.int64), float(clip), int(min_common))


def pair_costs(centre: np.ndarray, view: np.ndarray, direction: np.ndarray, weight: np.ndarray, flip: np.ndarray,
               clip: float, min_common: int) -> np.ndarray:
    """:func:`pair_costs_numba` when numba is installed, else :func:`pair_costs_numpy` (same arguments)."""
    implementation = pair_costs_numba if numba_available() else pair_costs_numpy
    return implementation(centre, view, direction, weight, flip, clip, min_common)
