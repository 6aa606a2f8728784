"""The numba kernels of :class:`~skelsplat_ros.fusion.jerk_filter.JerkFilterBank` (imported only by it: importing
this module imports numba): one filter-bank update (:func:`advance_kernel`) and one Rauch-Tung-Striebel step
(:func:`rts_kernel`), with the arguments and results of the numpy references in ``jerk_filter.py``. Compiled on
first call and cached on disk; they release the GIL, so that the ROS node's executor thread runs while they work.

The systems are 3x3 (the innovation) and 9x9 (the smoother's gain), solved by Gaussian elimination with partial
pivoting, as LAPACK's ``gesv`` does for matrices this small; the results agree with numpy's to rounding."""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _solve(a, x, n, m, logdet=True):  # pragma: no cover (compiled)
    """Overwrite ``x[:n, :m]`` with ``a[:n, :n]^-1 x[:n, :m]`` (``a`` is overwritten by its elimination) and return
    ``log |det a|`` (0 without ``logdet``: the logarithms are a good share of a 3x3 solve)."""
    total = 0.0
    for k in range(n):
        pivot = k
        for i in range(k + 1, n):
            if abs(a[i, k]) > abs(a[pivot, k]):
                pivot = i
        if pivot != k:
            for c in range(n):
                a[k, c], a[pivot, c] = a[pivot, c], a[k, c]
            for c in range(m):
                x[k, c], x[pivot, c] = x[pivot, c], x[k, c]
        if logdet:
            total += np.log(abs(a[k, k]))
        for i in range(k + 1, n):
            factor = a[i, k] / a[k, k]
            for c in range(k + 1, n):
                a[i, c] -= factor * a[k, c]
            for c in range(m):
                x[i, c] -= factor * x[k, c]
    for k in range(n - 1, -1, -1):
        for c in range(m):
            value = x[k, c]
            for i in range(k + 1, n):
                value -= a[k, i] * x[i, c]
            x[k, c] = value / a[k, k]
    return total


@numba.njit(cache=True, nogil=True)
def _innovation(p, info, weight, residual, system, right, rows):  # pragma: no cover (compiled)
    """``I + P_yy (weight Lambda)`` solved for the residual (and, with ``rows``, for ``P``'s first three rows):
    ``right[:, 0]`` becomes ``(I + P_yy w Lambda)^-1 r``, ``right[:, 1:]`` the same of ``P[:3]``; returns the
    log-determinant with ``rows`` (the update's evidence; the robust weights' solves need none), else 0."""
    for a in range(3):
        for b in range(3):
            value = 1.0 if a == b else 0.0
            for k in range(3):
                value += p[a, k] * info[k, b] * weight
            system[a, b] = value
        right[a, 0] = residual[a]
        if rows:
            for c in range(9):
                right[a, 1 + c] = p[a, c]
    return _solve(system, right, 3, 10 if rows else 1, rows)


@numba.njit(cache=True, nogil=True)
def _nonzeros(step):  # pragma: no cover (compiled)
    """Per row of the transition ``[9, 9]``: how many entries are not zero ``[9]`` and their columns ``[9, 9]``. It
    is sparse (18 of 81: axes apart, upper triangular in time); products over these only change no sum."""
    count = np.zeros(9, dtype=np.int64)
    columns = np.zeros((9, 9), dtype=np.int64)
    for a in range(9):
        for k in range(9):
            if step[a, k] != 0.0:
                columns[a, count[a]] = k
                count[a] += 1
    return count, columns


@numba.njit(cache=True, nogil=True)
def advance_kernel(mean, covariance, evidence, updates, predict, step, noise, density, decay, initial, points,
                   information, measured, start, rank, robust_scale, restricted,
                   robust_iterations):  # pragma: no cover (compiled)
    """:func:`~skelsplat_ros.fusion.jerk_filter.advance_numpy`'s arguments (contiguous float64, boolean masks,
    integer ranks; ``robust_iterations``: its ``ROBUST_ITERATIONS``) and results (``next_mean``,
    ``next_covariance`` empty without ``predict``)."""
    num_candidates, num_joints = mean.shape[0], mean.shape[1]
    # With predict, the loop below writes every state: nothing to copy.
    new_mean = np.empty_like(mean) if predict else mean.copy()
    new_covariance = np.empty_like(covariance) if predict else covariance.copy()
    size = (num_candidates, num_joints) if predict else (0, 0)
    next_mean = np.empty(size + (9,))
    next_covariance = np.empty(size + (9, 9))
    moved = np.empty((9, 9))  # F P
    column = np.empty(9)  # a column of F P F^T
    count, columns = _nonzeros(step)
    if predict:
        evidence *= decay
        for c in range(num_candidates):
            for j in range(num_joints):
                previous, m, p = covariance[c, j], next_mean[c, j], next_covariance[c, j]
                # Each sum runs over the transition's nonzeros in order, as before; whole rows at a time (the
                # innermost loops over 9 contiguous entries are what the compiler vectorises).
                for a in range(9):
                    value = 0.0
                    for n in range(count[a]):
                        value += step[a, columns[a, n]] * mean[c, j, columns[a, n]]
                    m[a] = value
                    moved[a] = 0.0
                    for n in range(count[a]):
                        k, factor = columns[a, n], step[a, columns[a, n]]
                        for b in range(9):
                            moved[a, b] += factor * previous[k, b]
                if np.isfinite(m[0]):
                    for b in range(9):
                        column[:] = 0.0
                        for n in range(count[b]):
                            k, factor = columns[b, n], step[b, columns[b, n]]
                            for a in range(9):
                                column[a] += moved[a, k] * factor
                        for a in range(9):
                            p[a, b] = column[a] + density[c] * noise[a, b]
                else:  # not started: identity keeps the gain finite (the mean stays NaN)
                    for a in range(9):
                        for b in range(9):
                            p[a, b] = 1.0 if a == b else 0.0
                new_mean[c, j] = m
                new_covariance[c, j] = p
    for j in range(num_joints):
        if start[j]:
            for c in range(num_candidates):
                new_mean[c, j, :3] = points[j]
                new_mean[c, j, 3:] = 0.0
                new_covariance[c, j] = initial
    system = np.empty((3, 3))
    right = np.empty((3, 10))
    residual = np.empty(3)
    left = np.empty(3)
    solved = np.empty((3, 10))
    for j in range(num_joints):
        if not measured[j]:
            continue
        updates[j] += 1
        counted = updates[j] > restricted
        info = information[j]
        for c in range(num_candidates):
            m, p = new_mean[c, j], new_covariance[c, j]
            for a in range(3):
                residual[a] = points[j, a] - m[a]
            _innovation(p, info, 1.0, residual, system, right, False)
            chi2 = 0.0
            for a in range(3):
                for b in range(3):
                    chi2 += residual[a] * info[a, b] * right[b, 0]
            scale = robust_scale[j]
            weight = 1.0 if scale <= 0 else 1.0 / (1.0 + chi2 / scale**2)
            for _ in range(robust_iterations if scale > 0 else 0):
                # reweighted on the distance left after the correction (the reference says why)
                _innovation(p, info, weight, residual, system, right, False)
                for a in range(3):
                    value = 0.0
                    for b in range(3):
                        value += info[a, b] * weight * right[b, 0]
                    solved[a, 0] = value
                for a in range(3):
                    value = residual[a]
                    for b in range(3):
                        value -= p[a, b] * solved[b, 0]
                    left[a] = value
                distance = 0.0
                for a in range(3):
                    for b in range(3):
                        distance += left[a] * info[a, b] * left[b]
                weight = 1.0 / (1.0 + distance / scale**2)
            logdet = _innovation(p, info, weight, residual, system, right, True)
            # Lambda (I + P_yy Lambda)^-1 applied to the residual and to P's first rows
            for a in range(3):
                for c2 in range(10):
                    value = 0.0
                    for b in range(3):
                        value += info[a, b] * weight * right[b, c2]
                    solved[a, c2] = value
            chi2 = 0.0
            for a in range(3):
                chi2 += residual[a] * solved[a, 0]
            for a in range(9):
                value = 0.0
                for b in range(3):
                    value += p[a, b] * solved[b, 0]
                m[a] += value
            for a in range(9):  # P - P C^T solved(C P), symmetrised (computed from the old P: fill moved first)
                for b in range(9):
                    value = 0.0
                    for k in range(3):
                        value += p[a, k] * solved[k, 1 + b]
                    moved[a, b] = p[a, b] - value
            for a in range(9):
                for b in range(9):
                    p[a, b] = 0.5 * (moved[a, b] + moved[b, a])
            if counted:
                evidence[c, j, 0] += logdet
                evidence[c, j, 1] += chi2
                evidence[c, j, 2] += rank[j]
    return new_mean, new_covariance, next_mean, next_covariance


@numba.njit(cache=True, nogil=True)
def rts_kernel(mean, covariance, entry_mean, entry_covariance, step, next_mean, next_covariance, gain, has_gain,
               choice):  # pragma: no cover (compiled)
    """:func:`~skelsplat_ros.fusion.jerk_filter.rts_step_numpy`'s arguments (contiguous float64; ``choice`` int64)
    and results; the missing gains of the chosen candidates are worked out into ``gain`` (in place)."""
    num_joints = mean.shape[0]
    new_mean = np.empty_like(mean)
    new_covariance = np.empty_like(covariance)
    difference = np.empty((9, 9))
    product = np.empty((9, 9))
    system = np.empty((9, 9))
    count, columns = _nonzeros(step)
    for j in range(num_joints):
        c = choice[j]
        g = gain[c, j]
        if not has_gain[c, j]:  # P_f F^T P_pred^-1, as the solution of P_pred X = F P_f
            previous = entry_covariance[c, j]
            for a in range(9):
                for b in range(9):
                    value = 0.0
                    for n in range(count[a]):
                        value += step[a, columns[a, n]] * previous[columns[a, n], b]
                    product[a, b] = value
            system[:] = next_covariance[c, j]
            _solve(system, product, 9, 9, False)
            g[:] = product.T
            has_gain[c, j] = True
        for a in range(9):
            value = entry_mean[c, j, a]
            for b in range(9):
                value += g[a, b] * (mean[j, b] - next_mean[c, j, b])
            new_mean[j, a] = value
            for b in range(9):
                difference[a, b] = covariance[j, a, b] - next_covariance[c, j, a, b]
        for a in range(9):
            for b in range(9):
                value = 0.0
                for k in range(9):
                    value += g[a, k] * difference[k, b]
                product[a, b] = value
        for a in range(9):
            for b in range(9):
                value = entry_covariance[c, j, a, b]
                for k in range(9):
                    value += product[a, k] * g[b, k]
                new_covariance[j, a, b] = value
    return new_mean, new_covariance
