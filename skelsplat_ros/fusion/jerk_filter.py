"""The offline smoother's jerk prior as Kalman filters: causal filtering and fixed-lag smoothing in O(1) per frame.

``smoothing.py`` fits a whole recording at once: per joint, the curve that balances each frame's estimate ``x_f``
(weighted by its information ``H_f`` from the views that agree) against the squared jerk, with robust weights and a
jerk tolerance chosen per joint by the data's marginal likelihood. The same model, written as a state-space model,
can be solved one frame at a time:

- state of a joint: position, velocity and acceleration ``[9]`` (3 axes each); the jerk is white noise of spectral
  density ``q = 20/11 sigma^2 / 30 Hz`` (then, at 30 Hz, a third difference of the positions has the offline
  prior's variance ``(sigma dt^3)^2``: a triple integral of white noise over one frame has ``11/20 q dt^5``). The
  posterior mean over a whole recording is the quintic smoothing spline that the offline smoother approximates on
  its frame grid, and any spacing of the stamps (a dropped frame, jitter) is exact;
- a measurement is the per-frame estimate with information ``H_f`` (any rank: a joint one view sees constrains two
  directions, and the prior carries its depth; none: the prior bridges the gap);
- robust weights: the Cauchy weight of the offline smoother, ``1 / (1 + chi2 / c^2)``, judged on the innovation
  (the measurement against the prediction, in units of both their uncertainties): a confident outlier barely moves
  the state;
- the jerk tolerance: every joint is filtered with each of ``SmoothingConfig.candidates`` tolerances at once (a
  bank), and read out with the one whose restricted marginal likelihood is highest, the noise scale profiled out as
  offline (``smoothing._log_evidence``), accumulated over the innovations with a forgetting time;
- the noise scale ``alpha``: the same profile gives it (``n / sum chi2``); ``covariance / alpha`` is what the
  measurements' scatter says the uncertainty is, whatever pixel noise the information assumed.

:class:`JerkFilterBank` keeps, per update, what the Rauch-Tung-Striebel backward pass needs, until the caller
forgets it (:meth:`JerkFilterBank.forget`, once a frame is output): :meth:`JerkFilterBank.smoothed` gives the estimate of any kept stamp from every measurement up to the
newest, which is a fixed-lag smoother when asked for the stamp ``lag`` behind the newest (and the causal filter at
lag 0).

Cost: an update (:func:`advance`) and a backward step (:func:`rts_step`) are numba kernels when numba is installed,
numpy references otherwise; tests hold them equal. Each frame's read-out runs the backward pass afresh over the
look-ahead (the newest update changes every smoothed state in it), but a gain is worked out once per update and
chosen candidate, when a read-out first needs it.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import numpy as np

from ._numba import numba_available
from .smoothing import SmoothingConfig

SPLINE_CONSTANT = 11.0 / 20.0
"""``integral B_2(u)^2 du`` of the quadratic B-spline: the variance of a third difference of triple-integrated white
noise is ``SPLINE_CONSTANT q dt^5``."""
REFERENCE_RATE_HZ = 30.0
"""Frame rate at which the filter's prior equals the offline smoother's discrete one (the benchmark's)."""
INITIAL_STD = (1.0, 2.0, 20.0)
"""Standard deviation of a joint's first state, position (world units, along what its first views do not fix),
velocity (/s) and acceleration (/s^2): wide enough to be uninformative for a person. A joint starts only at a
point its measurement fixes at least that well in every direction (:meth:`JerkFilterBank.update`)."""
RESTRICTED_UPDATES = 3
"""Updates of a joint that fix its position, velocity and acceleration; the evidence counts only those after
(the restricted likelihood leaves out the prior's null space, as offline)."""
ROBUST_ITERATIONS = 2
"""Reweightings of a measurement after the first weight (from the innovation): see :func:`advance_numpy`."""
MIN_EVIDENCE_DIMS = 18
"""Measured dimensions a joint's evidence needs before it picks a tolerance (before: ``SmoothingConfig.sigma``)."""

_EYE3 = np.eye(3)
_F64 = functools.partial(np.ascontiguousarray, dtype=np.float64)  # the kernels' arguments (no copy when they are)
_FLAG = functools.partial(np.ascontiguousarray, dtype=np.bool_)


@dataclass
class _Entry:
    """What the backward pass needs of one update: its stamp, the filtered state ``[C, J, 9]`` / ``[C, J, 9, 9]``,
    and (once the next update came) the transition ``step [9, 9]`` to it and its prediction. The backward pass's
    gains ``[C, J, 9, 9]`` are worked out when it first asks for them (``has_gain [C, J]``): it reads out each joint
    with one candidate, mostly the same from frame to frame, so most of the bank's gains are never needed."""

    stamp: float
    mean: np.ndarray
    covariance: np.ndarray
    step: np.ndarray | None = None
    next_mean: np.ndarray | None = None
    next_covariance: np.ndarray | None = None
    gain: np.ndarray | None = None
    has_gain: np.ndarray | None = None


def transition(dt: float) -> np.ndarray:
    """State transition ``[9, 9]`` over ``dt`` seconds (constant acceleration, axes interleaved by block)."""
    return _by_axis(np.array([[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]]))


def process_noise(dt: float) -> np.ndarray:
    """Covariance ``[9, 9]`` of the state change over ``dt`` for white jerk of unit spectral density."""
    block = np.array([
        [dt**5 / 20.0, dt**4 / 8.0, dt**3 / 6.0],
        [dt**4 / 8.0, dt**3 / 3.0, dt**2 / 2.0],
        [dt**3 / 6.0, dt**2 / 2.0, dt],
    ])
    return _by_axis(block)


def _by_axis(block: np.ndarray) -> np.ndarray:
    """``np.kron(block, I_3)`` ``[9, 9]`` of a ``[3, 3]`` block (the same products; a fifth of kron's call cost,
    paid twice per frame and person)."""
    return (block[:, None, :, None] * _EYE3[None, :, None, :]).reshape(9, 9)


def jerk_density(sigma: np.ndarray) -> np.ndarray:
    """Spectral density ``q`` of the white jerk that matches the offline prior's tolerance ``sigma`` (world units
    per s^3) at :data:`REFERENCE_RATE_HZ`."""
    return np.asarray(sigma, dtype=np.float64) ** 2 / (SPLINE_CONSTANT * REFERENCE_RATE_HZ)


class JerkFilterBank:
    """Kalman filters of ``num_joints`` joints under the jerk prior, one per tolerance candidate (module docstring).

    Args:
        num_joints: ``J``.
        smoothing: the offline smoother's settings: ``sigma`` (the tolerance until a joint's evidence picks one),
            ``sigma_range`` and ``candidates`` (the bank; a single filter at ``sigma`` without ``adaptive``),
            ``robust_scale`` (0 = no robust weights).
        memory: forgetting time (s) of the evidence and the noise scale: a person's motion changes, so the
            tolerance follows the last few seconds.
    """

    def __init__(self, num_joints: int, smoothing: SmoothingConfig, memory: float = 10.0):
        if memory <= 0:
            raise ValueError("memory must be > 0 seconds")
        self.sigmas = (np.geomspace(*smoothing.sigma_range, smoothing.candidates) if smoothing.adaptive
                       else np.array([smoothing.sigma]))
        self.default = int(np.argmin(np.abs(np.log(self.sigmas / smoothing.sigma))))
        self.robust_scale = smoothing.robust_scale
        self.memory = float(memory)
        shape = (len(self.sigmas), num_joints)
        self.mean = np.full(shape + (9,), np.nan)
        self.covariance = np.broadcast_to(np.eye(9), shape + (9, 9)).copy()
        self.updates = np.zeros(num_joints, dtype=np.int64)
        # Discounted sums per candidate and joint: log-determinants, chi^2 and measured dimensions of the innovations.
        self.evidence = np.zeros(shape + (3,))
        self.entries: list[_Entry] = []
        self._density = jerk_density(self.sigmas)  # [C]
        self._initial = np.diag(np.repeat(np.square(INITIAL_STD), 3))
        self._model: tuple[float, tuple[np.ndarray, np.ndarray, float]] | None = None  # (dt, _motion_model(dt))

    @property
    def stamp(self) -> float | None:
        """Stamp of the newest update (``None`` before the first)."""
        return self.entries[-1].stamp if self.entries else None

    def update(self, stamp: float, points: np.ndarray, information: np.ndarray) -> None:
        """Take one frame's estimate ``points [J, 3]`` with its ``information [J, 3, 3]`` (NaN point or zero
        information: nothing measured) at ``stamp`` (s, after the previous update's)."""
        information = np.nan_to_num(information)
        measured = np.isfinite(points).all(-1) & (np.abs(information).sum(axis=(-1, -2)) > 0)
        information = np.where(measured[:, None, None], information, 0.0)
        # A joint's filters start at a measured point, at rest, with INITIAL_STD around it: only a point the
        # measurement fixes that well in every direction. Along a direction it barely fixes (the depth of a joint
        # one view sees, or two views of a narrow baseline), the point is arbitrary, metres off; a prior of 1 m
        # there would hold it and the robust weights would reject the good measurements that follow.
        unstarted = ~np.isfinite(self.mean[0, :, 0])
        eigen = np.linalg.eigvalsh(information)  # [J, 3] ascending
        measured &= ~unstarted | (eigen[:, 0] >= INITIAL_STD[0] ** -2)
        points = np.where(measured[:, None], points, 0.0)
        information = np.where(measured[:, None, None], information, 0.0)
        # The measured dimensions: np.linalg.matrix_rank(hermitian=True) of the information from its eigenvalues
        # (a measured joint's information is the one they were taken of).
        magnitude = np.abs(eigen)
        rank = (magnitude > magnitude.max(axis=-1, keepdims=True) * 3 * np.finfo(float).eps).sum(axis=-1)
        last = self.entries[-1] if self.entries else None
        if last is not None:
            dt = stamp - last.stamp
            if dt <= 0:
                raise ValueError(f"stamps must increase: {stamp} after {last.stamp}")
            step, noise, decay = self._motion_model(dt)
        else:
            step, noise, decay = np.eye(9), np.zeros((9, 9)), 1.0
        mean, covariance, next_mean, next_covariance = advance(
            self.mean, self.covariance, self.evidence, self.updates, last is not None, step, noise, self._density,
            decay, self._initial, points, information, measured, measured & unstarted, rank, self.robust_scale)
        if last is not None:
            last.step, last.next_mean, last.next_covariance = step, next_mean, next_covariance
            last.gain, last.has_gain = np.empty(covariance.shape), np.zeros(covariance.shape[:2], dtype=bool)
        # advance returns new arrays and nothing changes them after: the entry keeps the state itself, no copy.
        self.mean, self.covariance = mean, covariance
        self.entries.append(_Entry(stamp, mean, covariance))

    def _motion_model(self, dt: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Transition, process noise and evidence decay over ``dt`` (s), kept for the next update: a camera's period
        is mostly the same from frame to frame. Nothing changes them after (entries share them)."""
        if self._model is None or self._model[0] != dt:
            self._model = dt, (transition(dt), process_noise(dt), float(np.exp(-dt / self.memory)))
        return self._model[1]

    def copy(self) -> "JerkFilterBank":
        """An independent copy (what an update changes in place is copied; the states are replaced, not changed, by
        an update, and are shared)."""
        twin = copy.copy(self)
        twin.evidence, twin.updates, twin.entries = self.evidence.copy(), self.updates.copy(), list(self.entries)
        return twin

    def moving(self, stamp: float) -> np.ndarray:
        """Positions ``[J, 3]`` at ``stamp`` (s) at the newest filtered velocity, each joint with its :meth:`choice`
        of candidate (NaN: not started): a constant-velocity extrapolation (the acceleration left out: over a
        long gap it would run away)."""
        choice = self.choice()
        state = self.mean[choice, np.arange(len(choice))]  # [J, 9]: positions, velocities, accelerations by axis
        return state[:, 0:3] + (stamp - self.stamp) * state[:, 3:6]

    def forget(self, before: float) -> None:
        """Drop the kept updates stamped before ``before`` (s): no :meth:`smoothed` will ask for them (the newest
        stays)."""
        while len(self.entries) > 1 and self.entries[0].stamp < before - 1e-9:
            self.entries.pop(0)

    def choice(self) -> np.ndarray:
        """Index ``[J]`` of the candidate each joint is read out with: the highest profiled evidence once the joint
        has :data:`MIN_EVIDENCE_DIMS` measured dimensions, the default tolerance before."""
        logdet, chi2, dims = np.moveaxis(self.evidence, -1, 0)  # [C, J] each
        with np.errstate(divide="ignore", invalid="ignore"):
            evidence = -0.5 * (logdet + dims * np.log(np.maximum(chi2, 1e-300) / dims))
        ready = dims[self.default] >= MIN_EVIDENCE_DIMS
        return np.where(ready, np.argmax(np.where(np.isfinite(evidence), evidence, -np.inf), axis=0), self.default)

    def noise_scale(self, choice: np.ndarray) -> np.ndarray:
        """The profiled noise scale ``alpha [J]`` of each joint's chosen candidate: measured dimensions over the sum
        of the innovations' chi^2 (1 without evidence yet). ``covariance / alpha`` is the data's own uncertainty."""
        _, chi2, dims = np.take_along_axis(self.evidence, choice[None, :, None], axis=0)[0].T
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(dims >= MIN_EVIDENCE_DIMS, dims / np.maximum(chi2, 1e-300), 1.0)

    def smoothed(self, stamp: float, choice: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Position ``[J, 3]`` and its covariance ``[J, 3, 3]`` (world units^2, not scaled by the noise scale) at the
        kept update of ``stamp``, from every update up to the newest (Rauch-Tung-Striebel), each joint with its
        ``choice`` of candidate (default :meth:`choice`). NaN for joints not started by then.

        Raises:
            KeyError: no kept update has that stamp.
        """
        index = next((k for k, e in enumerate(self.entries) if abs(e.stamp - stamp) < 1e-9), None)
        if index is None:
            raise KeyError(f"no update at {stamp} (kept: {[e.stamp for e in self.entries[:1] + self.entries[-1:]]})")
        choice = self.choice() if choice is None else choice
        pick = (choice, np.arange(len(choice)))
        newest = self.entries[-1]
        mean, covariance = newest.mean[pick], newest.covariance[pick]
        for entry in reversed(self.entries[index:-1]):
            mean, covariance = rts_step(mean, covariance, entry.mean, entry.covariance, entry.step, entry.next_mean,
                                        entry.next_covariance, entry.gain, entry.has_gain, choice)
        started = np.isfinite(self.entries[index].mean[pick][:, 0])
        return (np.where(started[:, None], mean[:, :3], np.nan),
                np.where(started[:, None, None], covariance[:, :3, :3], np.nan))


def advance_numpy(
    mean: np.ndarray, covariance: np.ndarray, evidence: np.ndarray, updates: np.ndarray, predict: bool,
    step: np.ndarray, noise: np.ndarray, density: np.ndarray, decay: float, initial: np.ndarray, points: np.ndarray,
    information: np.ndarray, measured: np.ndarray, start: np.ndarray, rank: np.ndarray,
    robust_scale: float | np.ndarray, restricted: int = RESTRICTED_UPDATES,
) -> tuple[np.ndarray, ...]:
    """The reference of one bank update: with ``predict``, the filtered states ``mean [C, J, 9]`` and
    ``covariance [C, J, 9, 9]`` through ``step [9, 9]`` with ``density [C]`` times ``noise [9, 9]``, the
    ``evidence [C, J, 3]`` discounted by ``decay``; the joints to ``start [J]`` set at their point with
    ``initial [9, 9]``; then the ``measured [J]`` joints corrected with ``points [J, 3]``, ``information
    [J, 3, 3]`` (of ``rank [J]``) and the robust weights, their ``updates [J]`` counted and, after ``restricted``
    updates, their evidence accumulated (``evidence`` and ``updates`` in place).

    Returns:
        the new ``mean`` and ``covariance`` (new arrays), and with ``predict`` the prediction (mean and
        covariance, before the correction; else ``None`` for those two).
    """
    next_mean = next_covariance = None
    if predict:
        mean = np.einsum("ab,cjb->cja", step, mean)
        predicted = step @ covariance @ step.T + density[:, None, None, None] * noise
        # Joints not started have no state yet: identity keeps the gain's inverse finite (their means stay NaN).
        predicted = np.where(np.isfinite(mean[..., :1, None]), predicted, np.eye(9))
        next_mean, next_covariance = mean, predicted
        evidence *= decay
        covariance = predicted
    mean, covariance = mean.copy(), covariance.copy()  # corrected in place: the prediction is kept
    if start.any():
        mean[:, start] = np.concatenate([points[start], np.zeros((start.sum(), 6))], axis=-1)
        covariance[:, start] = initial
    if measured.any():
        joints = np.flatnonzero(measured)
        state, spread = mean[:, joints], covariance[:, joints]  # [C, K, 9], [C, K, 9, 9]
        info = np.broadcast_to(information[joints], state.shape[:2] + (3, 3))
        residual = points[joints] - state[..., :3]  # [C, K, 3]
        scale = np.broadcast_to(np.asarray(robust_scale, dtype=np.float64), measured.shape)[joints]  # [K]
        if (scale > 0).any():
            chi2, _, _ = _innovation(spread, info, residual)
            robust = scale > 0
            scale = np.where(robust, scale, 1.0)
            weight = np.where(robust, 1.0 / (1.0 + chi2 / scale**2), 1.0)
            for _ in range(ROBUST_ITERATIONS):
                # As offline, judged on the measurement's distance from the corrected position in units of its own
                # uncertainty: where the prediction is loose (a joint's first frames), the innovation's chi^2 is
                # diluted by it, and a measurement far more certain than the prediction (two views of a narrow
                # baseline agreeing on a swapped label, metres off) would still pull the state most of the way.
                _, _, solved = _innovation(spread, info * weight[..., None, None], residual)
                left = residual - np.einsum("ckab,ckb->cka", spread[..., :3, :3], solved(residual))
                weight = np.where(robust, 1.0 / (1.0 + np.einsum("cka,ckab,ckb->ck", left, info, left) / scale**2),
                                  1.0)
            info = info * weight[..., None, None]
        chi2, logdet, solved = _innovation(spread, info, residual)
        cross = spread[..., :, :3]  # P C^T [C, K, 9, 3]
        # Gain P C^T Lambda (I + P_yy Lambda)^-1 applied: the residual through solved = Lambda (I + P_yy Lambda)^-1.
        mean[:, joints] = state + np.einsum("ckab,ckb->cka", cross, solved(residual))
        updated = spread - cross @ solved(spread[..., :3, :])  # K C P
        covariance[:, joints] = 0.5 * (updated + updated.swapaxes(-1, -2))
        updates[joints] += 1
        counted = updates[joints] > restricted
        terms = np.stack([logdet, chi2, np.broadcast_to(rank[joints], chi2.shape).astype(float)], axis=-1)
        evidence[:, joints] += np.where(counted[None, :, None], terms, 0.0)
    return mean, covariance, next_mean, next_covariance


def advance_numba(
    mean: np.ndarray, covariance: np.ndarray, evidence: np.ndarray, updates: np.ndarray, predict: bool,
    step: np.ndarray, noise: np.ndarray, density: np.ndarray, decay: float, initial: np.ndarray, points: np.ndarray,
    information: np.ndarray, measured: np.ndarray, start: np.ndarray, rank: np.ndarray,
    robust_scale: float | np.ndarray, restricted: int = RESTRICTED_UPDATES,
) -> tuple[np.ndarray, ...]:
    """:func:`advance_numpy` in one compiled loop (raises ``ImportError`` without numba; ``evidence`` and
    ``updates`` contiguous, as they change in place). Why: per person and frame numpy's cost is the overhead of
    some hundred calls on 12 x 17 tiny matrices (~1 ms), the kernel's about 0.2 ms."""
    from ._jerk_kernel import advance_kernel  # numba compiles (or loads its cache) here, once per process

    f64, flag = _F64, _FLAG
    result = advance_kernel(f64(mean), f64(covariance), evidence, updates, bool(predict), f64(step), f64(noise),
                            f64(density), float(decay), f64(initial), f64(points), f64(information), flag(measured),
                            flag(start), np.ascontiguousarray(rank, dtype=np.int64),
                            f64(np.broadcast_to(np.asarray(robust_scale, dtype=np.float64), measured.shape)),
                            int(restricted), ROBUST_ITERATIONS)
    return result if predict else result[:2] + (None, None)


def advance(*arguments) -> tuple[np.ndarray, ...]:
    """:func:`advance_numba` when numba is installed, else :func:`advance_numpy` (same arguments)."""
    return (advance_numba if numba_available() else advance_numpy)(*arguments)


def rts_step_numpy(mean: np.ndarray, covariance: np.ndarray, entry_mean: np.ndarray, entry_covariance: np.ndarray,
                   step: np.ndarray, next_mean: np.ndarray, next_covariance: np.ndarray, gain: np.ndarray,
                   has_gain: np.ndarray, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference of one Rauch-Tung-Striebel step back: the smoothed state ``mean [J, 9]``, ``covariance
    [J, 9, 9]`` of the next update to the one kept in ``entry_*`` (``[C, J, ...]``, with the transition ``step``
    and the prediction ``next_*`` to the next), each joint with its ``choice [J]`` of candidate. The gains
    ``P_f F^T P_pred^-1`` of the chosen candidates not in ``gain [C, J, 9, 9]`` yet (``has_gain [C, J]``) are
    worked out and kept there (in place)."""
    joints = np.arange(len(choice))
    missing = ~has_gain[choice, joints]
    if missing.any():
        c, j = choice[missing], joints[missing]
        gain[c, j] = np.linalg.solve(next_covariance[c, j], step @ entry_covariance[c, j]).swapaxes(-1, -2)
        has_gain[c, j] = True
    pick = (choice, joints)
    chosen = gain[pick]
    mean = entry_mean[pick] + np.einsum("jab,jb->ja", chosen, mean - next_mean[pick])
    covariance = entry_covariance[pick] + chosen @ (covariance - next_covariance[pick]) @ chosen.swapaxes(-1, -2)
    return mean, covariance


def rts_step_numba(mean: np.ndarray, covariance: np.ndarray, entry_mean: np.ndarray, entry_covariance: np.ndarray,
                   step: np.ndarray, next_mean: np.ndarray, next_covariance: np.ndarray, gain: np.ndarray,
                   has_gain: np.ndarray, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rts_step_numpy` compiled (raises ``ImportError`` without numba; ``gain`` and ``has_gain``
    contiguous, as they change in place)."""
    from ._jerk_kernel import rts_kernel

    f64 = _F64
    return rts_kernel(f64(mean), f64(covariance), f64(entry_mean), f64(entry_covariance), f64(step), f64(next_mean),
                      f64(next_covariance), gain, has_gain, np.ascontiguousarray(choice, dtype=np.int64))


def rts_step(*arguments) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rts_step_numba` when numba is installed, else :func:`rts_step_numpy` (same arguments)."""
    return (rts_step_numba if numba_available() else rts_step_numpy)(*arguments)


def _innovation(covariance: np.ndarray, information: np.ndarray, residual: np.ndarray):
    """For predicted states ``covariance [..., 9, 9]``, measurement information ``[..., 3, 3]`` (any rank) and
    residuals ``[..., 3]``: the innovation's chi^2 ``r^T (Lambda^-1 + P_yy)^-1 r``, ``log det(I + P_yy Lambda)``
    and a function applying ``Lambda (I + P_yy Lambda)^-1`` (defined for a singular ``Lambda``)."""
    system = np.eye(3) + covariance[..., :3, :3] @ information  # I + P_yy Lambda
    _, logdet = np.linalg.slogdet(system)

    def solved(right: np.ndarray) -> np.ndarray:
        vector = right.ndim == information.ndim - 1
        result = information @ np.linalg.solve(system, right[..., None] if vector else right)
        return result[..., 0] if vector else result

    chi2 = np.einsum("...a,...a->...", residual, solved(residual))
    return chi2, logdet, solved
