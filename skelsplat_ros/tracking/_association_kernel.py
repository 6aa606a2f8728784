"""The numba kernels of :func:`~skelsplat_ros.tracking.association.track_costs_numba` and
:func:`~skelsplat_ros.tracking.association.pair_costs_numba` (imported only by them: importing this module imports
numba). Compiled on first call and cached on disk; they release the GIL."""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def pair_cost_kernel(centre, view, direction, weight, flip, clip, min_common):  # pragma: no cover (compiled)
    """:func:`~skelsplat_ros.tracking.association.pair_costs_numpy`'s arguments (contiguous) and result."""
    num, num_joints = weight.shape
    costs = np.full((2, num, num), np.inf)
    for a in range(num):
        for b in range(a + 1, num):
            if view[a] == view[b]:
                continue
            bx, by, bz = centre[b, 0] - centre[a, 0], centre[b, 1] - centre[a, 1], centre[b, 2] - centre[a, 2]
            for k in range(2):
                total, total_weight, count = 0.0, 0.0, 0
                for j in range(num_joints):
                    m = flip[j] if k == 1 else j
                    w = np.sqrt(weight[a, j] * weight[b, m])
                    if not w > 0:
                        continue
                    ax, ay, az = direction[a, j, 0], direction[a, j, 1], direction[a, j, 2]
                    dx, dy, dz = direction[b, m, 0], direction[b, m, 1], direction[b, m, 2]
                    nx, ny, nz = ay * dz - az * dy, az * dx - ax * dz, ax * dy - ay * dx  # the common normal
                    norm2 = nx * nx + ny * ny + nz * nz
                    distance = clip  # parallel rays, or rays that meet behind a camera
                    if norm2 > 0:
                        # Closest points c_a + s da and c_b + u db: both in front of their cameras.
                        s = (by * dz - bz * dy) * nx + (bz * dx - bx * dz) * ny + (bx * dy - by * dx) * nz
                        u = (by * az - bz * ay) * nx + (bz * ax - bx * az) * ny + (bx * ay - by * ax) * nz
                        if s / norm2 > 0 and u / norm2 > 0:
                            distance = min(abs(nx * bx + ny * by + nz * bz) / np.sqrt(norm2), clip)
                    total += w * distance
                    total_weight += w
                    count += 1
                if count >= min_common:
                    costs[k, a, b] = costs[k, b, a] = total / total_weight
    return costs


@numba.njit(cache=True, nogil=True)
def track_cost_kernel(points, centre, direction, weight, clip, min_common):  # pragma: no cover (compiled)
    """:func:`~skelsplat_ros.tracking.association.track_costs_numpy`'s arguments (contiguous) and result."""
    num_tracks, num_joints = points.shape[0], points.shape[1]
    num, labellings = weight.shape[0], weight.shape[1]
    costs = np.empty((num_tracks, num, labellings))
    for t in range(num_tracks):
        for n in range(num):
            for k in range(labellings):
                total, total_weight, count = 0.0, 0.0, 0
                for j in range(num_joints):
                    w = weight[n, k, j]
                    if not w > 0:
                        continue
                    ox = points[t, j, 0] - centre[n, 0]
                    oy = points[t, j, 1] - centre[n, 1]
                    oz = points[t, j, 2] - centre[n, 2]
                    dx, dy, dz = direction[n, k, j, 0], direction[n, k, j, 1], direction[n, k, j, 2]
                    cx, cy, cz = oy * dz - oz * dy, oz * dx - ox * dz, ox * dy - oy * dx
                    distance = np.sqrt(cx * cx + cy * cy + cz * cz)
                    if not np.isfinite(distance):  # an unknown joint
                        continue
                    total += w * min(distance, clip)
                    total_weight += w
                    count += 1
                costs[t, n, k] = total / total_weight if count >= min_common else np.inf
    return costs
