"""The numba kernel of :func:`~skelsplat_ros.fusion.image_terms.image_terms_numba` (imported only by it: importing
this module imports numba). Compiled on first call and cached on disk, so later processes load it in milliseconds;
it releases the GIL, so that the ROS node's executor thread runs while it works."""

import numba
import numpy as np

from .objective import EPS2D, MAX_ALPHA


@numba.njit(cache=True, nogil=True)
def image_kernel(K, R, t, means, uv, weights, variance, sigma):  # pragma: no cover (compiled)
    """:func:`~skelsplat_ros.fusion.image_terms.image_terms_numpy`'s arguments (contiguous float64) and results."""
    num_views, num_frames, num_joints = K.shape[0], means.shape[0], means.shape[1]
    image = np.zeros((num_frames, num_joints))
    information = np.zeros((num_frames, num_joints, 3, 3))
    gradient = np.zeros((num_frames, num_joints, 3))
    distance = np.empty((num_views, num_frames, num_joints))
    overlap = np.empty((num_views, num_frames, num_joints))
    depth = np.empty((num_views, num_frames, num_joints))
    splat_variance = sigma * sigma
    ju, jv, au, av = np.empty(3), np.empty(3), np.empty(3), np.empty(3)
    for v in range(num_views):
        # Rows of K[:2] R: the Jacobian is (K[:2] R - uv R[2]) / z.
        kr = np.zeros((2, 3))
        for k in range(2):
            for a in range(3):
                kr[k, a] = K[v, k, 0] * R[v, 0, a] + K[v, k, 1] * R[v, 1, a] + K[v, k, 2] * R[v, 2, a]
        for f in range(num_frames):
            for j in range(num_joints):
                x, y, z = means[f, j, 0], means[f, j, 1], means[f, j, 2]
                cx = R[v, 0, 0] * x + R[v, 0, 1] * y + R[v, 0, 2] * z + t[v, 0]
                cy = R[v, 1, 0] * x + R[v, 1, 1] * y + R[v, 1, 2] * z + t[v, 1]
                cz = R[v, 2, 0] * x + R[v, 2, 1] * y + R[v, 2, 2] * z + t[v, 2]
                inv_z = 1.0 / max(cz, 1e-6)
                pu = (K[v, 0, 0] * cx + K[v, 0, 1] * cy + K[v, 0, 2] * cz) * inv_z
                pv = (K[v, 1, 0] * cx + K[v, 1, 1] * cy + K[v, 1, 2] * cz) * inv_z
                # Behind the camera: no Jacobian and no weight (see the reference).
                front = cz > 0
                for a in range(3):
                    ju[a] = (kr[0, a] - pu * R[v, 2, a]) * inv_z if front else 0.0
                    jv[a] = (kr[1, a] - pv * R[v, 2, a]) * inv_z if front else 0.0
                ra = splat_variance * (ju[0] * ju[0] + ju[1] * ju[1] + ju[2] * ju[2]) + EPS2D
                rb = splat_variance * (ju[0] * jv[0] + ju[1] * jv[1] + ju[2] * jv[2])
                rc = splat_variance * (jv[0] * jv[0] + jv[1] * jv[1] + jv[2] * jv[2]) + EPS2D
                det_r = ra * rc - rb * rb
                heatmap = variance[v, f, j]
                sa, sc = ra + heatmap, rc + heatmap
                det_s = sa * sc - rb * rb
                ia, ib, ic = sc / det_s, -rb / det_s, sa / det_s
                du, dv = pu - uv[v, f, j, 0], pv - uv[v, f, j, 1]
                agreement = np.exp(-0.5 * (ia * du * du + 2 * ib * du * dv + ic * dv * dv))
                coupling = 4.0 * MAX_ALPHA * np.sqrt(det_r / det_s)
                weight = weights[v, f, j] if front else 0.0
                image[f, j] += weight * (MAX_ALPHA * MAX_ALPHA * np.sqrt(det_r) / heatmap - coupling * agreement + 1.0)
                distance[v, f, j] = np.sqrt(du * du + dv * dv)
                overlap[v, f, j] = agreement
                depth[v, f, j] = cz
                omega = weight * coupling * agreement
                for a in range(3):
                    au[a] = omega * (ia * ju[a] + ib * jv[a])
                    av[a] = omega * (ib * ju[a] + ic * jv[a])
                for a in range(3):
                    for b in range(3):
                        information[f, j, a, b] += ju[a] * au[b] + jv[a] * av[b]
                    gradient[f, j, a] += au[a] * du + av[a] * dv
    return image, information, gradient, distance, overlap, depth
