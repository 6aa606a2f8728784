"""The ``analytic`` refinement objective minimised by Gauss-Newton on the CPU: the fast path of the refinement.

Same objective as :class:`~skelsplat_ros.fusion.adam.Objective` with the ``analytic`` renderer and ``energy``
normalisation, for splats of fixed isotropic size (their shape is not optimised): per (view, frame, joint) with
detection weight ``w``, splat covariance ``S_r`` (EWA projection of ``sigma^2 I``), heatmap covariance ``t I`` and
``m = d^T (S_r + t I)^-1 d`` for the offset ``d`` between projected mean and keypoint,

``image = w (a^2 sqrt|S_r| / t - 4 a sqrt(|S_r| / |S_r + t I|) exp(-m / 2) + 1)``,

plus the bone-length and ``predict`` temporal terms of ``objective.py`` (``symmetry_weight`` must be 0 and the
offline ``smooth`` term is not supported: both need frames or joints coupled in ways this solver does not handle).

Each iteration majorises the ``exp(-m / 2)`` terms by quadratics (half-quadratic / IRLS weights: a view whose
keypoint disagrees gets a weight that vanishes as ``exp(-m / 2)``, which is where the robustness to outliers comes
from), linearises the projection, adds the bone residuals linearised the same way, and solves the ``[3J, 3J]``
normal equations of every frame at once, with a backtracking line search on the true objective (per frame; in a
frame where the whole step fails, per joint, one class of joints that share no bone at a time). ``S_r`` is frozen
within an iteration (it depends on the mean only through depth). The splat size can start wide and shrink
geometrically to its final value over the iterations (graduated non-convexity: a wide kernel first pulls a poor
start into the basin, a narrow one then rejects disagreeing views).

The iterations run in a compiled loop, one frame at a time (:func:`minimise_c`: ``_image_kernel.c``, built when the
package is installed), or as numpy array operations over the frames where it was not built (:func:`minimise_numpy`,
the reference; tests hold them equal). On a live frame's fit of 1-3 people (17 joints, 4 views) the loop takes about
0.1 ms where the reference, bound by the cost of its numpy calls, takes about 1 ms (measured on the project machine,
``test_minimise_kernel.py`` for the equality; BENCHMARKS.md, "Fixed lag", for the node); 15 Adam steps through torch
autograd take about 30 ms.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig
from ..geometry.triangulation import linear_covariance
from ..skeleton.models import Skeleton
from .objective import (
    EPS2D,
    MAX_ALPHA,
    BonePrior,
    RefineConfig,
    RefineResult,
    TemporalPrior,
    detection_weights,
    heatmap_variance_growth,
)
from .image_terms import ImageTerms, image_terms

LINE_SEARCH_HALVINGS = 4
"""Backtracking steps tried before an iteration gives up on the whole frame's step (and then on each joint's)."""


class GaussNewtonObjective:
    """The objective for one batch of frames, with everything constant precomputed.

    Args:
        uv: ``[V, F, J, 2]`` undistorted keypoints (anything where ``weights`` is 0).
        weights: ``[V, F, J]`` detection weights (0 = no observation).
        target_variance: ``[V, F, J]`` heatmap variance ``t`` (px^2) per observation.
        bones: ``[B, 2]`` joint indices; bone_prior: lengths and tolerances ``[B]`` or ``[F, B]`` (NaN length =
            no prior).
        prediction: ``[F, J, 3]`` temporal prior (NaN = none for that joint) and its ``temporal_scale``: the term
            is ``temporal_weight * |x - prediction|^2 / temporal_scale^2``.
        anchor: ``[F, J, 3]`` a Gaussian prior with information ``anchor_information [F, J, 3, 3]`` (world
            units^-2; zero = none): the term ``(x - anchor)^T anchor_information (x - anchor)``.
        active: ``[F, J]`` joints being estimated; the others keep their position and contribute nothing.
    """

    def __init__(
        self,
        rig: CameraRig,
        uv: np.ndarray,
        weights: np.ndarray,
        target_variance: np.ndarray,
        active: np.ndarray,
        bones: np.ndarray,
        bone_prior: BonePrior | None,
        bone_weight: float,
        prediction: np.ndarray | None,
        temporal_weight: float,
        temporal_scale: float | np.ndarray,
        anchor: np.ndarray | None = None,
        anchor_information: np.ndarray | None = None,
    ):
        self.K, self.R, self.translation = rig.K, rig.R, rig.t
        self.uv = np.nan_to_num(uv)
        self.active = active
        self.weights = np.where(active[None], weights, 0.0)
        self.t = target_variance
        self.num_joints = active.shape[1]
        self.bones = bones
        bone_known = np.zeros(len(bones), dtype=bool) if bone_prior is None else np.isfinite(bone_prior.lengths)
        # [F, B]: a bone constrains a frame only where both of its joints are estimated (lengths [B] or [F, B]).
        self.bone_mask = bone_known & active[:, bones[:, 0]] & active[:, bones[:, 1]]
        self.bone_lengths = np.zeros(len(bones)) if bone_prior is None else np.nan_to_num(bone_prior.lengths)
        self.bone_factor = np.zeros(len(bones)) if bone_prior is None else bone_weight / bone_prior.sigmas**2  # [B]
        self.incidence, self.signed_incidence, self._hessian_entries = _bone_structure(
            self.num_joints, np.asarray(bones, dtype=np.int64).tobytes())
        self._last: _Evaluation | None = None
        self.prediction = None
        if prediction is not None and temporal_weight > 0:
            known = np.isfinite(prediction).all(-1) & active
            self.prediction = np.nan_to_num(prediction)
            self.temporal_factor = np.where(known, temporal_weight / temporal_scale**2, 0.0)  # [F, J]
        self.anchor = None
        if anchor is not None:
            held = np.isfinite(anchor).all(-1) & active
            self.anchor = np.nan_to_num(anchor)
            self.anchor_information = np.where(held[..., None, None], np.nan_to_num(anchor_information), 0.0)

    def frames(self, keep: np.ndarray) -> "GaussNewtonObjective":
        """The objective of the frames ``keep`` (``[F]`` bool or indices) alone: frames are independent."""
        part = copy.copy(self)
        part.uv, part.weights, part.t = self.uv[:, keep], self.weights[:, keep], self.t[:, keep]
        part.active, part.bone_mask = self.active[keep], self.bone_mask[keep]
        # Lengths and tolerances are [B], or [F, B] for a batch of different people.
        if self.bone_lengths.ndim == 2:
            part.bone_lengths = self.bone_lengths[keep]
        if np.ndim(self.bone_factor) == 2:
            part.bone_factor = self.bone_factor[keep]
        if self.prediction is not None:
            part.prediction, part.temporal_factor = self.prediction[keep], self.temporal_factor[keep]
        if self.anchor is not None:
            part.anchor, part.anchor_information = self.anchor[keep], self.anchor_information[keep]
        part._last = None
        return part

    def _at(self, means: np.ndarray, sigma: float) -> "_Evaluation":
        """Every term at ``means [F, J, 3]``, remembering the last one: the line search's accepted trial is where
        the next iteration starts."""
        last = self._last
        if last is not None and last.sigma == sigma and np.array_equal(last.means, means):
            return last
        image = image_terms(self.K, self.R, self.translation, means, self.uv, self.weights, self.t, sigma)
        vec = means[:, self.bones[:, 0]] - means[:, self.bones[:, 1]]  # [F, B, 3]
        length = np.sqrt((vec * vec).sum(-1))
        residual = np.where(self.bone_mask, length - self.bone_lengths, 0.0)
        per_joint = image.image
        if self.prediction is not None:
            per_joint = per_joint + self.temporal_factor * ((means - self.prediction) ** 2).sum(-1)
        if self.anchor is not None:
            offset = means - self.anchor
            per_joint = per_joint + np.einsum("fja,fjab,fjb->fj", offset, self.anchor_information, offset)
        self._last = _Evaluation(means.copy(), sigma, image, per_joint, self.bone_factor * residual**2,
                                 vec / np.maximum(length, 1e-9)[..., None], residual)
        return self._last

    def energy(self, means: np.ndarray, sigma: float) -> np.ndarray:
        """The objective per frame ``[F]`` at ``means [F, J, 3]`` for splats of standard deviation ``sigma``."""
        return self._at(means, sigma).energy

    def terms(self, means: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """The objective split into what depends on one joint (image and temporal terms) ``[F, J]`` and the bone
        terms ``[F, B]``, which depend on two."""
        at = self._at(means, sigma)
        return at.per_joint, at.per_bone

    def local_energy(self, per_joint: np.ndarray, per_bone: np.ndarray) -> np.ndarray:
        """Every term that involves each joint ``[F, J]``: its own terms and those of the bones it belongs to."""
        return per_joint + per_bone @ self.incidence

    def step(self, means: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """The objective ``[F]`` at ``means`` and one majorise-linearise-solve update ``[F, J, 3]`` from there."""
        energy, blocks, bone_blocks, grad = self.normal_equations(means, sigma)
        num_frames, num_joints = means.shape[:2]
        # The [3J, 3J] normal matrix of each frame: joint blocks on the diagonal, minus each bone's block where its
        # two joints meet, scattered in one assignment.
        rows, cols = self._hessian_entries
        hessian = np.zeros((num_frames, 3 * num_joints, 3 * num_joints))
        bone_entries = -bone_blocks.reshape(num_frames, -1)
        hessian[:, rows, cols] = np.concatenate([blocks.reshape(num_frames, -1), bone_entries, bone_entries], axis=1)
        diagonal = np.arange(3 * num_joints)
        hessian[:, diagonal, diagonal] += 1e-6 * hessian[:, diagonal, diagonal].max(axis=-1, keepdims=True) + 1e-9
        delta = np.linalg.solve(hessian, -grad.reshape(num_frames, -1, 1))
        return energy, delta.reshape(num_frames, num_joints, 3)

    @functools.cached_property
    def colour_classes(self) -> list[np.ndarray]:
        """Joints ``[J]`` split into classes with no bone inside a class (for the per-joint fallback, rarely needed)."""
        return _colour_classes(self.num_joints, self.bones)

    def joint_steps(self, means: np.ndarray, sigma: float) -> np.ndarray:
        """Each joint's own update ``[F, J, 3]`` with every other joint held where it is (the diagonal blocks of the
        normal equations)."""
        _, blocks, _, grad = self.normal_equations(means, sigma)
        damping = 1e-6 * np.einsum("fjii->fji", blocks).max(axis=-1) + 1e-9
        return np.linalg.solve(blocks + damping[..., None, None] * np.eye(3), -grad[..., None])[..., 0]

    def normal_equations(
        self, means: np.ndarray, sigma: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The objective ``[F]`` at ``means``, and the majorised, linearised form there: the Hessian's diagonal
        blocks ``[F, J, 3, 3]`` (a frozen joint's: the identity), each bone's block ``[F, B, 3, 3]`` (the Hessian
        holds minus it where the bone's two joints meet) and the gradient ``[F, J, 3]`` (0 at frozen joints)."""
        num_frames, num_joints = means.shape[:2]
        at = self._at(means, sigma)
        info, grad = at.image.information, at.image.gradient
        if self.prediction is not None:
            info = info + (2.0 * self.temporal_factor)[..., None, None] * np.eye(3)
            grad = grad + 2.0 * self.temporal_factor[..., None] * (means - self.prediction)
        if self.anchor is not None:
            info = info + 2.0 * self.anchor_information
            grad = grad + 2.0 * np.einsum("fjab,fjb->fja", self.anchor_information, means - self.anchor)
        # A bone touching a frozen joint is masked (bone_mask): frozen joints couple to nothing.
        unit, residual = at.unit, at.residual
        stiffness = 2.0 * self.bone_factor * self.bone_mask  # [F, B]
        bone_blocks = stiffness[..., None, None] * unit[..., :, None] * unit[..., None, :]  # [F, B, 3, 3]
        # Bone b adds its block to the diagonal blocks of both of its joints.
        info = info + (self.incidence.T @ bone_blocks.reshape(num_frames, -1, 9)).reshape(info.shape)
        grad = grad + self.signed_incidence.T @ ((stiffness * residual)[..., None] * unit)
        frozen = ~self.active
        info = np.where(frozen[..., None, None], np.eye(3), info)
        grad = np.where(frozen[..., None], 0.0, grad)
        return at.energy, info, bone_blocks, grad

    def evaluate(self, means: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The objective ``[F]``, reprojection distance ``[V, F, J]`` px, heatmap overlap ``exp(-m / 2)``
        ``[V, F, J]`` and depth ``[V, F, J]`` at ``means``, from one evaluation."""
        at = self._at(means, sigma)
        return at.energy, at.image.distance, at.image.overlap, at.image.depth


@functools.lru_cache(maxsize=16)
def _bone_structure(num_joints: int, bones: bytes) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """What every objective of a skeleton (``bones``: the bytes of its ``[B, 2]`` int64 array) shares, worked out
    once (each live frame builds an objective or two): the incidence ``[B, J]`` (1 where a bone ends at a joint), the
    signed one (+1 first joint, -1 second: the bone terms' gradient as a matrix product), and the row and column
    ``[E]`` in a frame's ``[3J, 3J]`` normal matrix of each entry of the joint blocks ``[J, 3, 3]``, then of each bone
    block ``[B, 3, 3]`` at (first, second), then at (second, first) (a bone block is symmetric: its transpose is
    itself). Read-only arrays."""
    pairs = np.frombuffer(bones, dtype=np.int64).reshape(-1, 2)
    first, second, rows = pairs[:, 0], pairs[:, 1], np.arange(len(pairs))
    incidence = np.zeros((len(pairs), num_joints))
    incidence[rows, first] = 1.0
    incidence[rows, second] = 1.0
    signed = incidence.copy()
    signed[rows, second] = -1.0
    entry_row, entry_col = np.divmod(np.arange(9), 3)  # (a, b) of a flattened 3x3 block

    def block(row_joints: np.ndarray, col_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (3 * row_joints[:, None] + entry_row).ravel(), (3 * col_joints[:, None] + entry_col).ravel()

    joints = np.arange(num_joints)
    parts = [block(joints, joints), block(first, second), block(second, first)]
    entries = np.concatenate([r for r, _ in parts]), np.concatenate([c for _, c in parts])
    for array in (incidence, signed, *entries):
        array.flags.writeable = False
    return incidence, signed, entries


@dataclass(frozen=True)
class _Evaluation:
    """The objective's terms at ``means [F, J, 3]`` for splats of size ``sigma``.

    Attributes:
        image: the image terms and their normal equations.
        per_joint: ``[F, J]`` image plus temporal term of each joint.
        per_bone: ``[F, B]`` bone-length term of each bone.
        unit: ``[F, B, 3]`` unit vector of each bone (first joint minus second).
        residual: ``[F, B]`` length minus prior length (0 where the bone has no prior).
    """

    means: np.ndarray
    sigma: float
    image: ImageTerms
    per_joint: np.ndarray
    per_bone: np.ndarray
    unit: np.ndarray
    residual: np.ndarray

    @property
    def energy(self) -> np.ndarray:
        """The objective per frame ``[F]``."""
        return self.per_joint.sum(-1) + self.per_bone.sum(-1)


def _colour_classes(num_joints: int, bones: np.ndarray) -> list[np.ndarray]:
    """Joints ``[J]`` split into classes with no bone inside a class (greedy graph colouring; a tree needs two)."""
    neighbours: list[set[int]] = [set() for _ in range(num_joints)]
    for first, second in bones.tolist():
        neighbours[first].add(second)
        neighbours[second].add(first)
    colour = np.zeros(num_joints, dtype=np.int64)
    for joint in range(num_joints):
        taken = {int(colour[other]) for other in neighbours[joint] if other < joint}
        colour[joint] = min(set(range(len(taken) + 1)) - taken)
    return [np.flatnonzero(colour == c) for c in range(colour.max() + 1)]


def _per_joint_descent(objective: GaussNewtonObjective, means: np.ndarray, sigma: float) -> np.ndarray:
    """Joint-by-joint updates of every frame of ``objective`` (those whose whole step failed): each joint takes its
    own step with its neighbours held (halved as needed), kept when the terms it takes part in go down.

    Bones couple joints, so the joints move one colour class at a time (block Gauss-Seidel): inside a class no two
    share a bone, every term involves at most one moving joint, and the accepted joints' decreases add up exactly:
    the frame's objective cannot go up.
    """
    means = means.copy()
    per_joint, per_bone = objective.terms(means, sigma)
    for joints in objective.colour_classes:
        delta = objective.joint_steps(means, sigma)
        now = objective.local_energy(per_joint, per_bone)[:, joints]
        scale = np.ones((len(means), len(joints)))
        pending = np.ones_like(scale, dtype=bool)
        for _ in range(LINE_SEARCH_HALVINGS + 1):
            trial = means.copy()
            trial[:, joints] += np.where(pending, scale, 0.0)[..., None] * delta[:, joints]
            local = objective.local_energy(*objective.terms(trial, sigma))[:, joints]
            improved = pending & np.isfinite(local) & (local <= now)
            means[:, joints] = np.where(improved[..., None], trial[:, joints], means[:, joints])
            pending &= ~improved
            if not pending.any():
                break
            scale = np.where(pending, 0.5 * scale, scale)
        per_joint, per_bone = objective.terms(means, sigma)
    return means


def minimise(
    objective: GaussNewtonObjective, init: np.ndarray, sigmas: list[float], tolerance: float = 0.0
) -> np.ndarray:
    """Gauss-Newton from ``init [F, J, 3]``, one iteration per splat size in ``sigmas``: the means ``[F, J, 3]``.

    A frame whose step moves no joint by ``tolerance`` (world units) or more has converged: it stays where it is
    for the remaining iterations (0: every frame takes every iteration). Warm-started frames get there in one or
    two iterations, and a converged frame's step otherwise fails by a hair and falls back to per-joint steps.

    :func:`minimise_c` where the extension was built, else :func:`minimise_numpy` (same arguments).
    """
    if _compiled_minimise() is None:
        return minimise_numpy(objective, init, sigmas, tolerance)
    return minimise_c(objective, init, sigmas, tolerance)


def minimise_numpy(
    objective: GaussNewtonObjective, init: np.ndarray, sigmas: list[float], tolerance: float = 0.0
) -> np.ndarray:
    """The reference of :func:`minimise`: every frame's step, line search and convergence test as array operations
    over the frames."""
    means = init.copy()
    frames, working = np.arange(len(means)), objective  # the frames still iterating, and their objective
    for sigma in sigmas:
        if len(frames) == 0:
            break
        current, delta = working.step(means[frames], sigma)
        if tolerance > 0:
            done = np.abs(delta).max(axis=(1, 2), initial=0.0) < tolerance
            if done.any():
                frames, working, current, delta = frames[~done], working.frames(~done), current[~done], delta[~done]
        means[frames] = _line_search(working, means[frames], delta, current, sigma)
    return means


def minimise_c(
    objective: GaussNewtonObjective, init: np.ndarray, sigmas: list[float], tolerance: float = 0.0
) -> np.ndarray:
    """:func:`minimise_numpy` with each frame's iterations in one compiled loop (``_image_kernel.c``; raises
    ``ImportError`` where the extension was not built).

    Why: a live frame's fit is one to three frames of 17 joints, where numpy's cost is that of its calls (about 1 ms a
    fit, of the node's 10 ms a frame at 3 people); the loop costs a few microseconds an iteration. The normal
    equations are solved by a Cholesky factorisation in an order that keeps the skeleton's zeros, where the
    reference takes numpy's LU: the results agree to rounding. The kernel hands back a frame whose whole step failed
    every halving (rare); its joints then take their own steps here (:func:`_per_joint_descent`), and the frame goes
    on in the kernel from the next iteration.
    """
    from ._image_kernel import minimise as kernel

    means = np.array(init, dtype=np.float64, order="C")  # the kernel works on it in place
    sigma_array = np.asarray(sigmas, dtype=np.float64)
    waiting = {0: np.arange(len(means))}  # the first iteration still to run -> the frames at it
    while waiting:
        start = min(waiting)
        frames = waiting.pop(start)
        if start >= len(sigmas) or len(frames) == 0:
            continue
        whole = len(frames) == len(means)  # the first call, as good as always the only one
        part = objective if whole else objective.frames(frames)
        block, stopped = (means if whole else means[frames]), np.empty(len(frames), dtype=np.int64)
        kernel(*_kernel_arguments(part), sigma_array[start:], float(tolerance), LINE_SEARCH_HALVINGS, EPS2D,
               MAX_ALPHA, block, stopped)
        if (stopped >= 0).any():
            for failed_at in np.unique(stopped[stopped >= 0]):
                rows = stopped == failed_at
                block[rows] = _per_joint_descent(part.frames(rows), block[rows], sigmas[start + failed_at])
                following = start + int(failed_at) + 1
                waiting[following] = np.concatenate([waiting.get(following, frames[:0]), frames[rows]])
        if not whole:
            means[frames] = block
    return means


@functools.cache
def _compiled_minimise() -> Callable | None:
    """The compiled minimiser, or None where the extension was not built (:func:`~.image_terms.image_terms` says so
    once, at the same fit's first evaluation)."""
    try:
        from ._image_kernel import minimise as kernel
    except ImportError:
        return None
    return kernel


def _kernel_arguments(objective: GaussNewtonObjective) -> tuple[np.ndarray, ...]:
    """The objective's arrays as the compiled minimiser reads them (``_image_kernel.c``: ``py_minimise``): float64
    and contiguous, bone terms per frame ``[F, B]``, an absent prior as empty arrays."""
    frames, joints = objective.active.shape
    bones = np.ascontiguousarray(objective.bones, dtype=np.int64)
    per_bone = (frames, len(bones))
    absent = np.empty(0)

    def f64(array) -> np.ndarray:
        return np.ascontiguousarray(array, dtype=np.float64)

    temporal, anchored = objective.prediction is not None, objective.anchor is not None
    return (
        f64(objective.K), f64(objective.R), f64(objective.translation), f64(objective.uv), f64(objective.weights),
        f64(objective.t), bones,
        f64(np.broadcast_to(objective.bone_mask, per_bone)), f64(np.broadcast_to(objective.bone_lengths, per_bone)),
        f64(np.broadcast_to(objective.bone_factor, per_bone)),
        f64(np.broadcast_to(objective.temporal_factor, (frames, joints))) if temporal else absent,
        f64(objective.prediction) if temporal else absent,
        f64(objective.anchor) if anchored else absent, f64(objective.anchor_information) if anchored else absent,
        f64(objective.active), _elimination_positions(joints, bones.tobytes()),
    )


@functools.lru_cache(maxsize=16)
def _elimination_positions(num_joints: int, bones: bytes) -> np.ndarray:
    """Each joint's place ``[J]`` in the order the compiled minimiser factors the normal matrix: greedy minimum
    degree on the bone graph (``bones``: the bytes of its ``[B, 2]`` int64 array), which for a tree eliminates leaves
    first and so adds no nonzero block. Read-only."""
    neighbours: list[set[int]] = [set() for _ in range(num_joints)]
    for first, second in np.frombuffer(bones, dtype=np.int64).reshape(-1, 2).tolist():
        neighbours[first].add(second)
        neighbours[second].add(first)
    remaining, order = set(range(num_joints)), []
    while remaining:
        joint = min(remaining, key=lambda k: (len(neighbours[k]), k))
        order.append(joint)
        remaining.remove(joint)
        for other in neighbours[joint]:  # eliminating a joint couples its neighbours
            neighbours[other] |= neighbours[joint] - {other}
            neighbours[other].discard(joint)
    positions = np.empty(num_joints, dtype=np.int64)
    positions[order] = np.arange(num_joints)
    positions.flags.writeable = False
    return positions


def _line_search(
    objective: GaussNewtonObjective, means: np.ndarray, delta: np.ndarray, current: np.ndarray, sigma: float
) -> np.ndarray:
    """Per frame of ``objective``: ``means + delta`` (``[F, J, 3]``), the step halved until the objective goes down
    from ``current [F]``; per joint where the whole step keeps failing."""
    means = means.copy()
    # Frames are independent: each retry evaluates only the frames still searching.
    searching, frames, scale = objective, np.arange(len(means)), 1.0
    for _ in range(LINE_SEARCH_HALVINGS + 1):
        trial = means[frames] + scale * delta[frames]
        energy = searching.energy(trial, sigma)
        failed = ~(np.isfinite(energy) & (energy <= current[frames]))
        means[frames[~failed]] = trial[~failed]
        if not failed.any():
            return means
        if not failed.all():
            frames, searching = frames[failed], searching.frames(failed)
        scale *= 0.5
    # One joint whose step goes uphill must not hold back the others of its frame.
    means[frames] = _per_joint_descent(searching, means[frames], sigma)
    return means


def sigma_schedule(start: float | None, end: float, iterations: int) -> list[float]:
    """Splat sizes per iteration: geometric from ``start`` to ``end`` (constant ``end`` when ``start`` is None)."""
    if iterations <= 0:
        return []
    if start is None or iterations == 1:
        return [end] * iterations
    ratio = math.log(end / start) / (iterations - 1)
    return [start * math.exp(ratio * k) for k in range(iterations)]


def refine_gauss_newton(
    rig: CameraRig,
    skeleton: Skeleton,
    config: RefineConfig,
    uv: np.ndarray,
    confidence: np.ndarray,
    init_means: np.ndarray,
    bone_prior: BonePrior | None,
    temporal: TemporalPrior | None,
    covariances: bool = True,
) -> RefineResult:
    """:func:`~skelsplat_ros.fusion.refine.refine` with ``optimizer="gauss_newton"``; covariances are the first-order
    ones of the agreeing views (``None`` without ``covariances``)."""
    prediction, temporal_scale = None, 1.0
    anchor = None if temporal is None else temporal.anchor
    if temporal is not None and config.temporal_weight > 0:
        if temporal.mode != "predict":
            raise ValueError("gauss_newton supports the streaming ('predict') temporal prior only")
        # A scale per frame ([F]: a batch of different people) broadcasts over joints.
        prediction = temporal.prediction
        temporal_scale = config.temporal_sigma * np.reshape(temporal.sigma_scale, (-1, 1))
    weights = detection_weights(uv, confidence, config)
    objective = GaussNewtonObjective(
        rig,
        uv,
        weights,
        config.target_sigma_px**2 * heatmap_variance_growth(confidence, config),
        active=np.isfinite(init_means).all(-1),
        bones=skeleton.bone_array,
        bone_prior=bone_prior if config.bone_length_weight > 0 else None,
        bone_weight=config.bone_length_weight,
        prediction=prediction,
        temporal_weight=config.temporal_weight,
        temporal_scale=temporal_scale,
        anchor=anchor,
        anchor_information=None if anchor is None else temporal.anchor_information,
    )
    sigmas = sigma_schedule(config.splat_sigma_start, config.init_sigma, config.steps)
    means = minimise(objective, np.nan_to_num(init_means), sigmas, config.step_tolerance)
    final, distance, overlap, depth = objective.evaluate(means, config.init_sigma)
    missing = (weights <= 0) | (depth <= 0)
    covariance = None
    if covariances:
        covariance = linear_covariance(rig, means, np.where(missing, 0.0, weights * overlap), config.target_sigma_px)
    return RefineResult(
        means=means,
        covariances=covariance,
        reprojection=np.where(missing, np.nan, distance),
        agreement=np.where(missing, 0.0, overlap),
        final_loss=final,
    )
