"""Streaming (causal) fusion: :class:`StreamingFuser`, one synchronized set of views at a time (what the node
calls), and :func:`fuse_streaming`, a recording replayed through it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig, ray_directions
from ..geometry.triangulation import linear_covariance, project_pinhole
from ..skeleton.models import Skeleton
from .config import NOMINAL_RATE_HZ, FusionConfig
from .jerk_filter import INITIAL_STD, JerkFilterBank
from .objective import BonePrior, TemporalPrior, detection_weights, heatmap_variance_growth
from .output import (
    Fill, LengthMedian, Offer, complete_offer, decide_output, length_medians, observed_lengths, seen_joints, slide,
    views_verdict,
)
from .refine import refine
from .result import (
    STREAMING_GROSS,
    FusionResult,
    bone_lengths_of,
    calibrate_covariance,
    dissent_pull,
    widen_toward_dissent,
    dissenting_views,
    checked_stamp,
    concatenate_results,
    estimate_bone_prior,
    fallback_position,
    frame_stamps,
    refine_output,
    refine_support,
    split_keypoints,
    summarise,
    triangulate_baseline,
)
from .smoothing import view_information


FIT_BONE_FRAMES = 5
"""Frames in a person's window before their bone lengths pull the fit (the output is held to them from the first)."""


@dataclass
class FrameFit:
    """One frame's fit of one person by a fit-only :class:`StreamingFuser`: the data of the fixed-lag smoother
    (``fixed_lag.py``), which is the temporal prior instead of the constant-velocity prediction.

    Attributes:
        stamp: capture time (s).
        rig: the cameras of the frame.
        uv: ``[V, J, 2]`` undistorted keypoints (NaN missing); confidence ``[V, J]``.
        means: ``[J, 3]`` the fitted joints (NaN where there was no initial guess).
        agreement: ``[V, J]`` in [0, 1], how well each view agrees with the fitted splat.
        seen: ``[J]`` joints ``min_views`` views agree with (output rule 1).
        bone_prior: the person's bone lengths and tolerances ``[B]`` from the triangulated window (``None``: none
            yet), and warm ``[B]``: bones with ``bone_warmup`` samples (output rule 4).
        jumpy: the person's triangulations often jump far from their motion (:data:`JUMP_SHARE`): the fit started
            from the prediction where they did, and the smoother weighs outliers down sooner.
    """

    stamp: float
    rig: CameraRig
    uv: np.ndarray
    confidence: np.ndarray
    means: np.ndarray
    agreement: np.ndarray
    seen: np.ndarray
    bone_prior: BonePrior | None
    warm: np.ndarray
    jumpy: bool = False


def fuse_streaming(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    config: FusionConfig,
    fps: float,
    progress: Callable[[int, int], None] | None = None,
    stamps: np.ndarray | None = None,
    rigs: list[CameraRig] | None = None,
) -> FusionResult:
    """A recording ``[V, F, J, 3]`` through :class:`StreamingFuser`, frame by frame at ``fps``: what a live node
    would have published.

    Args:
        progress: called as ``progress(frames_done, total)`` after each frame.
        stamps: capture time of each frame ``[F]`` in seconds (a recording's stamps); default ``f / fps``.
        rigs: the cameras of each frame ``[F]`` (moving cameras); default ``rig`` for all.
    """
    num_frames = keypoints.shape[1]
    times = frame_stamps(num_frames, fps, stamps)
    fuser = StreamingFuser(rig, skeleton, config)
    frames = []
    for f in range(num_frames):
        frames.append(fuser.step(keypoints[:, f], float(times[f]), rig=rigs[f] if rigs is not None else None))
        if progress:
            progress(f + 1, num_frames)
    return concatenate_results(frames, list(skeleton.joint_names))


JUMP_SHARE = 0.3
"""A fit-only fuser with look-ahead gates its initial guess by the prediction, as streaming does, once more than this
share of its triangulated joints lay beyond the gate (``gate_distance``) from the prediction, forgetting over
``smoother_memory`` (:attr:`FrameFit.jumpy`): a detector so often grossly wrong that the triangulation is a worse
start than the motion. Robot rig after the first second, seeds 0-2: 38-45 % with ``hard`` noise, 9-16 % with
realistic noise (held-out seed 3: 19-22 %, and 26-29 % in its first 13 frames); at most 7 % on the 4-camera rigs
(BENCHMARKS.md, "Fixed lag"). Below it, no gate: on a narrow
baseline a prediction gone astray along the depth would replace good triangulations and the fit would follow it."""


class StreamingFuser:
    """Causal fusion, one synchronized set of views at a time; the API the ROS node calls.

    Keeps the last two outputs (constant-velocity prediction, warm start and temporal prior) and a sliding window of
    bone lengths. A gap over ``reset_after`` forgets the outputs (their velocity says nothing of now) but not the
    bone lengths, the person's own; a stamp that goes backwards (bag loop, clock jump) forgets both.

    ``fit_only``: each step fits the views without the temporal term and returns the joints they saw, as fitted
    (rule 1 of ``output.py``), keeping the fit in :attr:`fit`: the per-frame data of the fixed-lag smoother
    (``fixed_lag.py``), which decides the output. The prediction still warm-starts the fit and serves the tracker.
    Their covariance is the fit's first-order one, not calibrated (``calibrate_covariance``), and NaN once every
    joint has a prediction: nothing reads it (the smoother's read-out has its own). ``look_ahead`` (fit-only, for a
    smoother that reads each frame out with later ones): a person whose triangulations often jump far from the
    prediction (:data:`JUMP_SHARE`) is fitted from the prediction where they do; at lag 0 that cost the smoother's
    causal filter coverage and held fewer of its errors in the 90 % ellipsoid (robot rig, ``hard`` noise).

    With ``FusionConfig.depth_filter`` (not fit-only; the default), each frame is refitted with the causal jerk
    filters' estimate of a joint as a prior along the directions its views barely fix (:func:`depth_filtered`), and
    those joints are fitted in the next frame as a fit-only fuser fits them (no pull to the prediction).
    """

    def __init__(self, rig: CameraRig, skeleton: Skeleton, config: FusionConfig, fit_only: bool = False,
                 look_ahead: bool = False):
        self.rig = rig
        self.skeleton = skeleton
        self.config = config
        self.fit_only, self.look_ahead = fit_only, look_ahead
        self.fit: FrameFit | None = None
        self.resets = 0
        self.reset()

    def reset(self) -> None:
        """Forget the history and the bone lengths (after a clock jump)."""
        self.forget_motion()
        # [n, B]: the bone lengths of the last n <= bone_window frames, one array (not a deque of rows) so that the
        # per-frame bone prior reads it without stacking.
        self._bone_window = np.empty((0, len(self.skeleton.bones)))
        # The median observed bone lengths of every output so far (complete: rule 5's estimate).
        self._observed = LengthMedian(len(self.skeleton.bones))
        # Fit-only: discounted counts of the triangulated joints beyond the gate and of all of them, and their stamp.
        self._jumps, self._jump_stamp = np.zeros(2), None

    def forget_motion(self) -> None:
        """Forget the last outputs, keeping the bone lengths (after a long gap: at a camera rate of 1 Hz or less,
        every frame is one, and a person whose lengths were forgotten each time would never be output)."""
        self._history: deque[tuple[float, np.ndarray]] = deque(maxlen=2)
        # The last step's joints that enough views saw, as fitted (output.py, rule 1), one frame: unlike the output,
        # neither held to bone lengths nor waiting for them; what the tracker associates with.
        self.estimate: FusionResult | None = None
        # [J, 3] the last output with complete (output.py, rule 5), the recent pose its next fill starts from.
        self.completed: np.ndarray | None = None
        # The causal jerk filters whose estimate the output takes along the directions the views barely fix
        # (depth_filter; depth_filtered): motion, like the history, says nothing of now after a long gap.
        self.filter = depth_filter_bank(self.config, self.skeleton.num_joints) \
            if uses_depth_filter(self.config) and not self.fit_only else None
        self.filtered = np.zeros(self.skeleton.num_joints, dtype=bool)  # [J] the filters followed the joint last frame

    def _add_bone_lengths(self, lengths: np.ndarray) -> None:
        """Append one frame's bone lengths ``[B]`` to the window, dropping the oldest beyond ``bone_window``."""
        self._bone_window = slide(self._bone_window, lengths, self.config.bone_window)

    def observed_lengths(self) -> np.ndarray:
        """``[B]``: the median of the observed lengths of every output so far (NaN: none), the length estimate that
        ``complete`` holds fills to (``output.py``, rule 5; a frame's own observed lengths count too)."""
        return self._observed.median()

    def bone_prior(self) -> BonePrior | None:
        """The person's bone lengths and tolerances ``[B]`` from the window of past frames (NaN: a bone never
        sampled); ``None`` without ``bone_lengths`` or before the first sample."""
        if not self.config.bone_lengths or not len(self._bone_window):
            return None
        settings = self.config.streaming_refine or self.config.refine
        return estimate_bone_prior(self._bone_window, settings.bone_length_sigma, settings.bone_length_spread)

    def mirror(self) -> None:
        """Exchange left and right in the kept state: the last outputs (so their velocities too) and the bone-length
        window. For a tracker whose views agree that this person's labels are the mirror image of the fuser's (a
        track started from a view that swapped left and right)."""
        flip = self.skeleton.flip_permutation
        self._history = deque(((stamp, joints[flip]) for stamp, joints in self._history), maxlen=2)
        if self.completed is not None:
            self.completed = self.completed[flip]
        bones = np.arange(len(self.skeleton.bones))
        left, right = self.skeleton.symmetric_bones.T
        bones[left], bones[right] = right, left
        self._bone_window = self._bone_window[:, bones]
        self._observed = self._observed.permuted(bones)
        if self.filter is not None:  # its states are in the old labels: it starts again from the next frame
            self.filter = depth_filter_bank(self.config, self.skeleton.num_joints)

    def snapshot(self) -> tuple:
        """The kept state (last outputs, estimate, completed pose, bone-length windows, fit-only fit) as it is now, for
        :meth:`restore`."""
        return (self._history.copy(), self.estimate, self.completed, self._bone_window, self._observed,
                self.resets, self.fit, None if self.filter is None else self.filter.copy(), self.filtered,
                self._jumps.copy(), self._jump_stamp)

    def restore(self, state: tuple) -> None:
        """Put back a :meth:`snapshot`: a step whose fit the caller rejects (the tracker, when the views it matched
        agree on too few joints) leaves no trace, neither a frame whose unseen joints would empty the prediction nor
        bone lengths triangulated from views that disagree."""
        (history, self.estimate, self.completed, self._bone_window, self._observed, self.resets,
         self.fit, self.filter, self.filtered, self._jumps, self._jump_stamp) = state
        self._history = history.copy()

    @property
    def jumpy(self) -> bool:
        """Fit-only with ``look_ahead``: whether more than :data:`JUMP_SHARE` of the triangulated joints lay beyond
        the gate from the prediction lately (:attr:`FrameFit.jumpy`)."""
        return self.look_ahead and bool(self._jumps[0] > JUMP_SHARE * self._jumps[1])

    def _count_jumps(self, stamp: float, beyond: np.ndarray, compared: np.ndarray) -> None:
        """Count this frame's triangulated joints ``compared [J]`` with the prediction, ``beyond [J]`` the gate."""
        if self._jump_stamp is not None:
            self._jumps *= np.exp(-max(stamp - self._jump_stamp, 0.0) / self.config.smoother_memory)
        self._jump_stamp = stamp
        self._jumps += [float((beyond & compared).sum()), float(compared.sum())]

    def predict(self, stamp: float) -> np.ndarray | None:
        """Constant-velocity prediction ``[J, 3]`` of the joints at ``stamp`` from the last two outputs (NaN for
        joints never seen); ``None`` before the first output."""
        if not self._history:
            return None
        last_stamp, last = self._history[-1]
        if len(self._history) == 1:
            return last
        prev_stamp, prev = self._history[0]
        dt_prev = last_stamp - prev_stamp
        if dt_prev <= 0:
            return last
        velocity = (last - prev) / dt_prev
        predicted = last + velocity * (stamp - last_stamp)
        # A joint lost in the previous frame has no velocity: hold its last position.
        return np.where(np.isfinite(predicted), predicted, last)

    def motion(self, stamp: float) -> np.ndarray | None:
        """Like :meth:`predict`, but where the depth filter follows a joint, its filters' position and velocity
        carried to ``stamp`` (``[J, 3]``): along a depth the views barely fix, the velocity of two fits there is noise
        (the tracker places a person one view alone sees at this depth)."""
        predicted = self.predict(stamp)
        if predicted is None or self.filter is None or self.filter.stamp is None:
            return predicted
        moving = self.filter.moving(stamp)
        return np.where((self.filtered & np.isfinite(moving).all(-1))[:, None], moving, predicted)

    def step(self, keypoints: np.ndarray, stamp: float, rig: CameraRig | None = None) -> FusionResult:
        """Fuse one frame: ``keypoints [V, J, 3]`` (NaN rows for views without data) at time ``stamp`` (seconds).

        ``rig``: the cameras where they were at ``stamp`` (moving cameras), same names and order as the fuser's
        rig; ``None`` = the fuser's rig (static cameras). The state kept between frames is in world coordinates,
        so it carries over from one rig to the next.

        Returns a result with a frame axis of length 1.

        Raises:
            ValueError: for a non-finite ``stamp`` or keypoints of the wrong shape.
        """
        return step_together([self], np.asarray(keypoints, dtype=np.float64)[None], stamp, rig)[0]


def step_together(
    fusers: list[StreamingFuser], keypoints: np.ndarray, stamp: float, rig: CameraRig | None = None
) -> list[FusionResult]:
    """One :meth:`StreamingFuser.step` of several fusers of the same rig, skeleton and config (one per person) in a
    single batched triangulation and refinement: ``keypoints [N, V, J, 3]``, one frame per fuser; ``rig`` as in
    :meth:`StreamingFuser.step`.

    Each fuser keeps its own history, prediction and bone lengths; the batch only shares the solver calls, so the
    cost grows far slower than one call per person. The fusers are all fit-only or none is (the first one's).
    """
    stamp = checked_stamp(stamp)
    if not fusers:
        return []
    first = fusers[0]
    skeleton, config = first.skeleton, first.config
    if rig is None:
        rig = first.rig
    elif rig.names != first.rig.names:
        raise ValueError(f"the frame's rig has cameras {rig.names}, the fuser {first.rig.names}")
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 4 or keypoints.shape[2] != skeleton.num_joints or keypoints.shape[3] != 3:
        raise ValueError(
            f"keypoints must be [V, {skeleton.num_joints}, 3] for skeleton {skeleton.name!r}, "
            f"got {list(keypoints.shape[1:])}"
        )
    if len(keypoints) != len(fusers):
        raise ValueError(f"{len(keypoints)} keypoint sets for {len(fusers)} fusers")
    for fuser in fusers:
        last = fuser._history[-1][0] if fuser._history else stamp
        if stamp < last:
            fuser.resets += 1
            fuser.reset()
        elif stamp - last > config.reset_after:
            fuser.resets += 1
            fuser.forget_motion()
    uv, confidence = split_keypoints(rig, keypoints.transpose(1, 0, 2, 3))  # [V, N, J, 2], [V, N, J]
    names = list(skeleton.joint_names)
    points, support = triangulate_baseline(rig, uv, confidence, config, config.triangulation)  # [N, J, 3]
    if config.method != "skelsplat":
        cov = linear_covariance(rig, points, support, config.nominal_pixel_sigma)
        summary = summarise(rig, points, uv, support, cov, names)
        seen = seen_joints(summary, config.min_views)
        for k, fuser in enumerate(fusers):
            fuser.estimate = seen.frame(k)
        return [summary.frame(k) for k in range(len(fusers))]

    settings = config.streaming_refine or config.refine
    fit_only = first.fit_only
    # [N, J] joints fitted as a fit-only fuser fits: no pull to, nor gate by, the constant-velocity prediction. With
    # the depth filter, those its filters followed last frame: that prediction would drift along the
    # depth the views barely fix and feed the filters its drift.
    free = np.stack([fuser.filtered for fuser in fusers]) if first.filter is not None \
        else np.full((len(fusers), skeleton.num_joints), fit_only)
    num, num_joints, num_bones = len(fusers), skeleton.num_joints, len(skeleton.bones)
    init = points.copy()
    predictions = np.full((num, num_joints, 3), np.nan)
    gap_frames = np.ones(num)
    # The person's bone lengths from past frames: the output is held to them from the first sample (checked
    # against frames other than its own), the fit pulled to them once the window holds FIT_BONE_FRAMES frames (a
    # prior from a few noisy frames pulls the fit astray); with bone_warmup, the joints of bones with fewer samples
    # are withheld.
    held_lengths, bone_lengths = np.full((num, num_bones), np.nan), np.full((num, num_bones), np.nan)
    bone_sigmas = np.ones((num, num_bones))
    warm = np.zeros((num, num_bones), dtype=bool)
    for k, fuser in enumerate(fusers):
        prediction = fuser.predict(stamp)
        if prediction is not None:
            predictions[k] = prediction
            # Constant-velocity error grows about with the square of the gap (in 30 Hz frames).
            gap_frames[k] = max(1.0, (stamp - fuser._history[-1][0]) * NOMINAL_RATE_HZ)
            # The gate grows with the gap (gate_distance per frame elapsed): after frames without a fit, the person
            # may be far from the extrapolation, and views that agree on where they are must win over it. A fit-only
            # fuser has no gate unless its person is jumpy (JUMP_SHARE): where views hardly fix depth (a narrow
            # baseline), a prediction gone astray would replace the triangulation and the fit would follow it for
            # good; the smoother weighs outliers instead.
            with np.errstate(invalid="ignore"):
                distance = np.linalg.norm(init[k] - prediction, axis=-1)
                beyond = distance > config.gate_distance * gap_frames[k]
            if fuser.fit_only:
                fuser._count_jumps(stamp, beyond, np.isfinite(distance))
            far = (~free[k] | fuser.jumpy) & beyond
            init[k] = np.where((~np.isfinite(init[k]).all(-1) | far)[:, None], prediction, init[k])
        prior = fuser.bone_prior()
        if prior is not None:
            held_lengths[k], bone_sigmas[k] = prior.lengths, prior.sigmas
            if len(fuser._bone_window) >= FIT_BONE_FRAMES:
                bone_lengths[k] = prior.lengths
            warm[k] = np.isfinite(fuser._bone_window).sum(axis=0) >= config.bone_warmup
    known = np.isfinite(init).all(axis=-1)  # [N, J]
    fitted = known.any(axis=1)
    results: list[FusionResult | None] = [None] * num
    for k in np.flatnonzero(~fitted):
        results[k] = fusers[k].estimate = summarise(rig, points[k:k + 1], uv[:, k:k + 1], support[:, k:k + 1],
                                                    np.full((1, num_joints, 3, 3), np.nan), names)
        if fit_only:
            nothing = np.full((num_joints, 3), np.nan)
            fusers[k].fit = _frame_fit(stamp, rig, uv[:, k], confidence[:, k], nothing, np.zeros_like(confidence[:, k]),
                                       nothing, held_lengths[k], bone_sigmas[k], warm[k], fusers[k].jumpy)
    batch = np.flatnonzero(fitted)
    if len(batch):
        single = num == 1
        # The fitted people's rows, taken once: a view (no copy) when everyone is fitted, as nearly always.
        pick = slice(None) if len(batch) == num else batch
        uv_fit, confidence_fit = uv[:, pick], confidence[:, pick]
        lengths_fit, sigmas_fit, predictions_fit = bone_lengths[pick], bone_sigmas[pick], predictions[pick]
        bone_prior = None
        if np.isfinite(lengths_fit).any():
            bone_prior = BonePrior(
                lengths=lengths_fit[0] if single else lengths_fit, sigmas=sigmas_fit[0] if single else sigmas_fit
            )
        temporal = None
        pulled = np.where(free[pick][..., None], np.nan, predictions_fit)
        if np.isfinite(pulled).any() and settings.temporal_weight > 0:
            temporal = TemporalPrior(
                "predict", pulled, sigma_scale=float(gap_frames[0] ** 2) if single else gap_frames[pick] ** 2
            )
        init_full = np.stack([np.where(known[k][:, None], init[k], fallback_position(init[k])) for k in batch])
        # A fit-only fit's covariance is read only where a joint has no prediction (unfixed_starts_unseen).
        covariances = not fit_only or not np.isfinite(predictions_fit).all()
        result = refine(rig, skeleton, settings, uv_fit, confidence_fit, init_full, bone_prior, temporal, covariances)
        unread = None if covariances else np.full(result.means.shape + (3,), np.nan)
        fitted = unfixed_starts_unseen(refine_output(rig, uv_fit, confidence_fit, result, known[pick], names, unread),
                                       predictions_fit)
        if not fit_only:
            dissent = dissenting_views(uv_fit, confidence_fit, fitted.num_views, config.min_confidence)
            fitted = calibrate_covariance(fitted, config.streaming_covariance, config.nominal_pixel_sigma, dissent,
                                          STREAMING_GROSS)
            pull = dissent_pull(rig, fitted.joints, uv_fit, confidence_fit,
                                refine_support(uv_fit, confidence_fit, result), config.min_confidence)
        # The fuser predicts from (and the tracker associates with) what the views saw, as fitted.
        seen = seen_joints(fitted, config.min_views)
        if first.filter is not None:
            information = agreeing_information(config, rig, uv_fit, confidence_fit, result.agreement, fitted.joints)
            fitted, filtered, anchor, anchor_information = depth_filtered(
                [fusers[k] for k in batch], stamp, fitted, information, BonePrior(lengths_fit, sigmas_fit))
            for i, k in enumerate(batch):
                fusers[k].filtered = filtered[i]
            if filtered.any():
                # The output: the frame refitted with the filters' estimate as a prior along the weak directions,
                # from where the filters put it, so that the bones and the views place the joint with it.
                anchored = replace(temporal or TemporalPrior("predict"), anchor=anchor,
                                   anchor_information=anchor_information)
                refit = refine(rig, skeleton, replace(settings, steps=DEPTH_REFIT_STEPS, splat_sigma_start=None),
                               uv_fit, confidence_fit, np.where(filtered[..., None], anchor, result.means), bone_prior,
                               anchored, False)
                fitted = replace(fitted, joints=np.where(known[pick][..., None], refit.means, np.nan))
        if fit_only:  # the output is the fixed-lag smoother's (fixed_lag.py), from these fits
            fused = seen
            for i, k in enumerate(batch):
                fusers[k].fit = _frame_fit(stamp, rig, uv[:, k], confidence[:, k], np.where(
                    known[k][:, None], result.means[i], np.nan), result.agreement[:, i], seen.joints[i],
                    held_lengths[k], bone_sigmas[k], warm[k], fusers[k].jumpy)
        else:
            fitted = widen_toward_dissent(fitted, pull)  # after the depth filter, which sets the depth's covariance
            offer = complete = observed = None
            usable = np.where(confidence_fit >= config.min_confidence, confidence_fit, 0.0)
            if config.complete:
                complete = complete_fill(rig, skeleton, uv_fit, confidence_fit, [fusers[k].completed for k in batch],
                                         config)
                observed = length_medians([fusers[k]._observed for k in batch])
            if config.single_view_joints:
                offer = _single_view_offer(rig, skeleton, uv_fit, usable, lengths_fit, sigmas_fit, predictions_fit,
                                           config)
            # Only joints that enough views agree with, held to the person's bone lengths (output.py): never the
            # prediction alone, nor one view's ray outside single_view_joints (or complete).
            views = views_verdict(rig, uv_fit, confidence_fit, settings, names) if config.bone_lengths else None
            prior = BonePrior(held_lengths[pick], sigmas_fit) if views is not None else None
            known = warm[pick] if config.bone_warmup and config.bone_lengths else None
            fused = decide_output(fitted, skeleton, prior, config, views, offer, known, complete, observed)
        for i, k in enumerate(batch):
            fuser = fusers[k]
            fuser.estimate = seen.frame(i)
            results[k] = fuser.estimate if fit_only else fused.frame(i)
            fuser._history.append((stamp, seen.joints[i]))
            # Rule 5's state (the recent pose and the observed lengths of the fills): a fit-only fuser outputs no
            # fills (the smoother's read-out keeps its own), so it keeps none.
            if config.complete and not fit_only:
                if np.isfinite(fused.joints[i]).all() and (fused.confidence[i] > 0).any():
                    # The recent pose of the next fills: not a warm-up frame's, which nothing checked (rule 4).
                    fuser.completed = fused.joints[i]
                fuser._observed = fuser._observed.added(observed_lengths(skeleton, results[k])[0])
            if config.bone_lengths:
                # From the triangulation, not from our own output: lengths the prior has already pulled would feed back.
                fuser._add_bone_lengths(bone_lengths_of(points[k], skeleton))
    return results


FILTERED_FIXED_SCALE = 1.4
"""A joint the depth filter's prior placed keeps the fit's calibrated covariance across the filtered directions, times
this: that calibration (``streaming_covariance``) was chosen with the fit's wide depth beside it, and the filters'
narrower one leaves less room in the 90 % ellipsoid (chosen on seeds 0-2 of the robot rig: 85.9 % inside at 1,
91.3 % at 1.4)."""


def uses_depth_filter(config: FusionConfig) -> bool:
    """Whether the streaming output of ``config`` is refitted with the causal jerk filters' estimate as a prior along
    the directions the views barely fix (``FusionConfig.depth_filter``; it needs the smoother's ``smoothing`` and a Gauss-Newton
    streaming fit, whose objective takes the filters' prior)."""
    return (config.method == "skelsplat" and config.smoothing is not None and config.depth_filter > 0
            and (config.streaming_refine or config.refine).optimizer == "gauss_newton")


def depth_filter_bank(config: FusionConfig, num_joints: int) -> JerkFilterBank:
    """A person's filters for :func:`depth_filtered`: the fixed-lag smoother's (``smoothing``, ``smoother_memory``).
    Fewer jerk tolerances than its 12 save no measurable time (6 on the robot rig, seeds 0-2), and 3 lose accuracy."""
    return JerkFilterBank(num_joints, config.smoothing, config.smoother_memory)


def agreeing_information(config: FusionConfig, rig: CameraRig, uv: np.ndarray, confidence: np.ndarray,
                         agreement: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Information ``[N, J, 3, 3]`` of fitted joints ``means [N, J, 3]`` from the views ``uv [V, N, J, 2]``
    (``confidence``, ``agreement`` ``[V, N, J]``) as far as they agree with them, at the smoother's pixel noise:
    what the jerk filters weigh a frame's fit by."""
    settings = config.streaming_refine or config.refine
    weights = detection_weights(uv, confidence, settings) / heatmap_variance_growth(confidence, settings)
    return view_information(rig, means, weights * agreement, config.smoothing.pixel_sigma)


DEPTH_REFIT_STEPS = 3
"""Gauss-Newton iterations of the depth filter's refit (:func:`depth_filtered`), at the final splat size: it starts
where the filters put the joints, near its optimum."""


CHI2_3DOF_99 = 11.344866730144373
"""99 % point of the chi-square distribution with 3 degrees of freedom (:func:`depth_filtered`'s test of the filters'
estimate against the fit across the weak directions)."""

BONE_GATE = 2.0
"""The depth filter's prior is left out for a joint whose move to the filters' estimate would put one of its bones
more than this many of the bone's standard deviations (the person's, ``BonePrior``) further from the person's length
than the fit has it (:func:`breaks_bones`). Chosen on seeds 0-2 of the robot rig (1: 61.3 mm, 6.27 % beyond 150 mm;
2: 56.3 mm, 4.24 %; 3: 55.4 mm, 3.94 %; none: 54.6 mm, 3.63 %) with the real Pose2Sim take's limbs in view (track
1's CV 0.043 / 0.045 / 0.051 at 1 / 2 / 3; BENCHMARKS.md, "One camera at lag 0")."""


def breaks_bones(moved: np.ndarray, fitted: np.ndarray, bones: np.ndarray, prior: BonePrior) -> np.ndarray:
    """``[N, J]``: the joints whose position ``moved [N, J, 3]`` (the fit is ``fitted [N, J, 3]``) puts one of their
    ``bones [B, 2]`` more than :data:`BONE_GATE` of its ``prior.sigmas [N, B]`` further from its length
    ``prior.lengths [N, B]`` than the fit does (NaN: a bone that is not judged). The bone's other end is taken as
    fitted or as moved, whichever is nearer the length: a whole limb moved together keeps its bones (a frame whose fit
    is off everywhere and whose estimate is right, lab rig, held-out seed 3)."""
    first, second = bones.T
    fit = np.abs(np.linalg.norm(fitted[:, first] - fitted[:, second], axis=-1) - prior.lengths)  # [N, B]
    excess = np.zeros(moved.shape[:2])  # [N, J] the largest, over a joint's bones, in standard deviations
    with np.errstate(invalid="ignore"):
        for own, other in ((first, second), (second, first)):
            gap = np.fmin(*(np.abs(np.linalg.norm(moved[:, own] - end[:, other], axis=-1) - prior.lengths)
                            for end in (fitted, moved)))
            np.fmax.at(excess.T, own, ((gap - fit) / prior.sigmas).T)  # fmax: a NaN bone judges nothing
    return excess > BONE_GATE


def depth_filtered(fusers: list[StreamingFuser], stamp: float, fitted: FusionResult, information: np.ndarray,
                   bones: BonePrior) -> tuple[FusionResult, np.ndarray, np.ndarray, np.ndarray]:
    """The causal jerk filters of ``fusers`` (``FusionConfig.depth_filter``) take one frame's fit ``fitted [N, J]``
    (of their people, calibrated) with its ``information [N, J, 3, 3]``. Returns ``fitted`` with the covariance of
    each joint, along the directions it gives a standard deviation over ``depth_filter``, the filters' (scaled by
    the noise their innovations showed, by ``covariance_scale`` and by the loose scale of ``lag_covariance``) and
    elsewhere the fit's times :data:`FILTERED_FIXED_SCALE`; ``[N, J]`` the joints with such directions; and the
    prior of the refit that places them: the fit moved along those directions to the filters' estimate ``[N, J, 3]``
    and that estimate's information there ``[N, J, 3, 3]`` (world units^-2; zero elsewhere). A joint that estimate
    would pull off the person's bone lengths ``bones`` (``[N, B]``, :func:`breaks_bones`) keeps the fit's position
    and no prior, while still counted as followed. Such a joint, and one the filters place across its weak
    directions beyond chance from the fit, gets the square of that disagreement added to its covariance: fits that
    two or three views agreed on, 0.2-0.6 m off with a largest deviation of 38-58 mm, were not flagged (lab rig,
    ``hard`` noise, tuning seed 1 and held-out seed 5).

    Why there: two views of a narrow baseline barely fix a joint's depth, and a frame's fit may sit far out along
    it (an eighth of the robot rig's joints 150 mm off), where the motion of the frames before fixes it well.
    Across it the views fix the joint to 2 cm or better; the filters' estimate there too (the fixed-lag smoother's
    causal filter, ``lag = 0``) gained a little more on one person, but not through the tracker on the rings, at
    about twice this cost. Why a prior refitted with the bones rather than the filters' estimate as output: that
    places each joint alone along its depth, and the real take's limb lengths varied twice as much (BENCHMARKS.md,
    "One camera at lag 0"). The filters take the fit without the prior: fed a fit already pulled to their own
    prediction, they would see no innovation along the depth and drift off with the person. Why not where it
    breaks the bones: the filters' estimate lags a limb that moves fast along the depth (the real take's forearm,
    30-70 mm too long for 10 frames, an elbow pulled 150-260 mm along it), and its covariance there says so too little
    for a test of its innovation to catch (below the 99 % point); the bones, held by the views, do."""
    config = fusers[0].config
    # Scaled as the fixed-lag output is along the direction its views fix least (its loose lag_covariance).
    scale = config.covariance_scale * config.lag_covariance[1]
    means, spread = [], []
    for fuser, joints, joint_information in zip(fusers, fitted.joints, information):
        bank = fuser.filter
        if bank.stamp is not None and not stamp > bank.stamp:  # a repeated stamp: the filters start again
            bank = fuser.filter = depth_filter_bank(config, len(joints))
        bank.update(stamp, joints, joint_information)
        bank.forget(stamp)  # causal: no later frame asks for an earlier state
        choice = bank.choice()
        mean, covariance = bank.smoothed(stamp, choice)
        means.append(mean)
        spread.append(covariance / bank.noise_scale(choice)[:, None, None])
    means, spread = np.stack(means), np.stack(spread)  # [N, J, 3], [N, J, 3, 3]
    usable = (np.isfinite(fitted.joints).all(-1) & np.isfinite(means).all(-1)
              & np.isfinite(fitted.covariance).all((-1, -2)) & np.isfinite(spread).all((-1, -2)))
    eigen, vectors = np.linalg.eigh(np.where(usable[..., None, None], fitted.covariance, np.eye(3)))
    weak = (eigen > config.depth_filter**2) & usable[..., None]  # [N, J, 3]
    filtered = weak.any(-1)
    if not filtered.any():
        return fitted, filtered, fitted.joints, np.zeros(fitted.covariance.shape)
    loose = (vectors * weak[..., None, :]) @ vectors.swapaxes(-1, -2)  # projector onto the weak directions
    fixed = np.eye(3) - loose
    spread = np.where(usable[..., None, None], spread, np.eye(3))
    offset = np.where(usable[..., None], means - fitted.joints, 0.0)  # [N, J, 3] the filters' estimate - the fit
    anchor = fitted.joints + np.einsum("njab,njb->nja", loose, offset)
    held = filtered & ~breaks_bones(anchor, fitted.joints, fusers[0].skeleton.bone_array, bones)
    anchor = np.where(held[..., None], anchor, fitted.joints)
    # The estimate's information on the weak directions: the inverse of its covariance there, with the fixed
    # directions given unit variance and taken out again.
    information = np.where(held[..., None, None], np.linalg.inv(loose @ spread @ loose + fixed) - fixed, 0.0)
    covariance = np.where(held[..., None, None], FILTERED_FIXED_SCALE * fixed @ fitted.covariance @ fixed
                          + scale * loose @ spread @ loose,
                          fitted.covariance)
    # Where the filters and the views disagree beyond chance, the output is as uncertain as that disagreement: a
    # joint the bone gate left to the fit, or one the filters place across its weak directions, where the views fix
    # it, beyond the chi-square 99 % point of their two covariances there.
    across = np.einsum("njab,njb->nja", fixed, offset)
    both = fixed @ (fitted.covariance + spread) @ fixed + loose  # loose: unit variance where across is zero
    distance = np.einsum("nja,nja->nj", across, np.linalg.solve(both, across[..., None])[..., 0])
    disputed = filtered & (~held | (distance > CHI2_3DOF_99))
    covariance = covariance + np.where(disputed[..., None, None], offset[..., :, None] * offset[..., None, :], 0.0)
    return replace(fitted, covariance=covariance), filtered, anchor, information


def unfixed_starts_unseen(fitted: FusionResult, predictions: np.ndarray) -> FusionResult:
    """``fitted [N, J]`` (the fit's own first-order covariance, before calibration) with no view agreeing with a joint
    that has no prediction ``predictions [N, J, 3]`` (NaN) and whose position its views fix to worse than
    ``INITIAL_STD[0]`` in some direction: rule 1 does not see it.

    A joint starts its history (prediction, temporal prior, output, the anchor of rule 5's fills) only at a point its
    views fix, as a joint's fixed-lag filters start (``jerk_filter.py``): along a depth two views of a narrow baseline
    barely fix, the fit may sit metres out (18 m on the robot rig), and the prediction would then hold it there."""
    new = ~np.isfinite(predictions).all(-1) & (fitted.num_views > 0)
    if not new.any():  # the usual frame: every seen joint has a history
        return fitted
    loose = np.zeros_like(new)
    loose[new] = np.linalg.eigvalsh(np.nan_to_num(fitted.covariance[new]))[:, -1] > INITIAL_STD[0] ** 2
    if not loose.any():
        return fitted
    return replace(fitted, num_views=np.where(loose, 0, fitted.num_views).astype(np.uint8))


SNAP_SIGMAS = 0.5
"""A filled joint (``complete``) moves onto a seeing view's ray when that ray passes within this many of its standard
deviations (its bone's length) of it: the view fixes the direction, the body model the depth."""

SWAP_RATIO = 0.5
"""A view's detection of a joint to be filled that is at most this fraction as far (px) from where the view sees the
joint's placed left-right twin as from the fill is the twin's (the detector swapped the sides); one nearer the middle
is left to the snap's distance. Chosen on seeds 0-2 (BENCHMARKS.md, "Complete skeletons"): where the fill itself is
far off (the robot rig under hard noise), a detection merely nearer the twin, or nearer any other joint of the person
(a hip's, beside the pelvis), is as often the joint's own."""


def complete_fill(rig: CameraRig, skeleton: Skeleton, uv: np.ndarray, confidence: np.ndarray,
                  recent: list[np.ndarray | None], config: FusionConfig) -> Fill:
    """Rule 5's offer (``output.py``) for the people of one frame, live (streaming and fixed lag): the body model with
    their ``recent`` poses (``[J, 3]`` each, ``None`` = none yet), each filled joint moved onto the ray of a view of
    ``uv [V, N, J, 2]`` (``confidence [V, N, J]``) that passes near it."""
    usable = np.where(confidence >= config.min_confidence, confidence, 0.0)
    poses = np.stack([np.full((skeleton.num_joints, 3), np.nan) if pose is None else pose for pose in recent])
    return complete_offer(skeleton, poses, snap=_ray_snap(rig, uv, usable, SNAP_SIGMAS, skeleton.flip_permutation))


def _ray_snap(rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, sigmas: float, mirror: np.ndarray):
    """A ``Snap`` (``output.py``) onto the rays of ``uv [V, N, J, 2]`` (undistorted px; ``confidence [V, N, J]``, 0 =
    unusable): each joint to the nearest point of the ray that passes closest to it, if within ``sigmas`` standard
    deviations. A view whose detection lies ``SWAP_RATIO`` times nearer (px) to where it sees the joint's placed twin
    of the other side (``mirror [J]``, ``Skeleton.flip_permutation``) than to the joint's own fill has swapped left and
    right there: its ray is the twin's, and is not snapped to."""

    def snap(points: np.ndarray, wanted: np.ndarray, variance: np.ndarray) -> np.ndarray:
        seen = wanted & (confidence > 0).any(axis=0)
        if not seen.any():
            return points
        n, j = np.nonzero(seen)
        rays = ray_directions(rig.back_projections[:, None], uv[:, n, j])  # [V, K, 3]
        offset = points[n, j][None] - rig.centres[:, None]  # [V, K, 3]
        along = (offset * rays).sum(-1, keepdims=True)
        nearest = rig.centres[:, None] + along * rays
        twin = mirror[j]  # [K]; a joint of the middle is its own (being filled, it is no placed twin)
        with np.errstate(invalid="ignore"):
            own = np.linalg.norm(project_pinhole(rig, points[n, j]) - uv[:, n, j], axis=-1)  # [V, K]
            other = np.linalg.norm(project_pinhole(rig, points[n, twin]) - uv[:, n, j], axis=-1)
            swapped = ~wanted[n, twin] & (other < SWAP_RATIO * own)  # NaN (twin not placed): not
        distance = np.where((confidence[:, n, j] > 0) & (along[..., 0] > 0) & ~swapped,
                            np.linalg.norm(nearest - points[n, j][None], axis=-1), np.inf)  # [V, K]
        best = np.argmin(np.nan_to_num(distance, nan=np.inf), axis=0)
        k = np.arange(len(n))
        close = distance[best, k] <= sigmas * np.sqrt(variance[n, j])
        out = points.copy()
        out[n[close], j[close]] = nearest[best[close], k[close]]
        return out

    return snap


def _frame_fit(
    stamp: float, rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, means: np.ndarray, agreement: np.ndarray,
    seen: np.ndarray, lengths: np.ndarray, sigmas: np.ndarray, warm: np.ndarray, jumpy: bool,
) -> FrameFit:
    """One person's :class:`FrameFit` (``seen [J, 3]``: the rule-1 joints, NaN elsewhere; ``lengths`` and ``sigmas``
    ``[B]``: the bone prior, NaN lengths unknown)."""
    prior = BonePrior(lengths, sigmas) if np.isfinite(lengths).any() else None
    return FrameFit(stamp, rig, uv, confidence, means, agreement, np.isfinite(seen).all(-1), prior, warm, jumpy)


def _single_view_offer(
    rig: CameraRig, skeleton: Skeleton, uv: np.ndarray, confidence: np.ndarray, lengths: np.ndarray,
    sigmas: np.ndarray, predictions: np.ndarray, config: FusionConfig,
) -> Offer:
    """Offers (``output.py``, rule 3) of :func:`ray_bone_guess` for the joints no two views agree on, anchored on
    the output ones: one view, its reprojection error, a variance of one bone length along its ray."""

    def offer(output: FusionResult) -> FusionResult:
        guesses, covariance, views = ray_bone_guess(rig, skeleton, uv, confidence, output.joints, lengths, sigmas,
                                                    predictions, config.gate_distance, config.nominal_pixel_sigma)
        new = views >= 0
        frames, joints = np.nonzero(new)
        error = np.full(new.shape, np.nan)
        error[new] = np.linalg.norm(project_pinhole(rig, guesses)[views[new], frames, joints]
                                    - uv[views[new], frames, joints], axis=-1)
        return FusionResult(
            joints=np.where(new[..., None], guesses, np.nan), confidence=np.zeros(new.shape, dtype=np.float32),
            covariance=covariance, num_views=new.astype(np.uint8), reprojection_error=error.astype(np.float32),
            joint_names=output.joint_names,
        )

    return offer


def ray_bone_guess(
    rig: CameraRig,
    skeleton: Skeleton,
    uv: np.ndarray,
    confidence: np.ndarray,
    points: np.ndarray,
    lengths: np.ndarray,
    sigmas: np.ndarray,
    predictions: np.ndarray,
    prediction_sigma: float,
    pixel_sigma: float,
    max_cost: float = 9.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joints of ``points [N, J, 3]`` that have no estimate (NaN) but are seen by some view, placed on one view's ray
    ``uv [V, N, J, 2]`` (undistorted px; confidence ``[V, N, J]``, 0 = unusable) where the bone-length prior
    (``lengths``, ``sigmas`` ``[N, B]``, NaN = unknown) to their estimated neighbours holds.

    One view fixes a joint up to its depth along the ray; each estimated neighbour at a known bone length leaves two
    depths (the sphere around the neighbour cuts the ray twice). With a second neighbour or a constant-velocity
    ``predictions [N, J, 3]`` (NaN = none), the candidates are these depths and the ray's point nearest the
    prediction, scored by their squared bone-length residuals over the tolerances plus the squared distance to the
    prediction over ``prediction_sigma``; with one neighbour alone the two depths fit equally, and the point of the
    ray closest to the neighbour is taken (the depth error is then at most the bone length). Every seeing view is
    tried and the best candidate kept, so of two views that disagree (no triangulation) the one that fits the
    skeleton and the motion wins. A joint whose best candidate costs more than ``max_cost`` per constraint (no depth
    on any seeing ray fits the skeleton: a wrong detection) or that has no estimated neighbour stays NaN. Only the
    joints of ``points`` anchor others (a guess built on a guess compounds their errors).

    Returns:
        points ``[N, J, 3]`` with the guesses; their covariance ``[N, J, 3, 3]`` (``pixel_sigma`` across the ray,
        the shortest neighbour's bone length along it; NaN elsewhere); the view each guess lies on ``[N, J]`` (-1
        elsewhere).
    """
    guesses = points.copy()
    covariance = np.full(points.shape + (3,), np.nan)
    chosen = np.full(points.shape[:2], -1, dtype=np.int64)
    anchored = np.isfinite(points).all(-1)  # [N, J]
    missing = ~anchored & (confidence > 0).any(axis=0)
    if not missing.any():
        return guesses, covariance, chosen
    bones = skeleton.bone_array
    centres = rig.centres
    rays = ray_directions(rig.back_projections[:, None, None], uv)  # [V, N, J, 3]
    for n, j in zip(*np.nonzero(missing)):
        ends = [(b, a if c == j else c) for b, (a, c) in enumerate(bones) if j in (a, c)]
        ends = [(b, o) for b, o in ends if anchored[n, o] and np.isfinite(lengths[n, b])]
        if not ends:
            continue
        anchors = points[n, [o for _, o in ends]]  # [K, 3]
        length, sigma = lengths[n, [b for b, _ in ends]], sigmas[n, [b for b, _ in ends]]
        prediction = predictions[n, j]
        predicted = bool(np.isfinite(prediction).all())
        ambiguous = len(ends) == 1 and not predicted
        best, best_view, best_cost = None, -1, max_cost * (len(ends) + predicted)
        for v in np.flatnonzero(confidence[:, n, j] > 0):
            direction = rays[v, n, j]
            along = (anchors - centres[v]) @ direction  # depth of each neighbour's closest point on the ray
            across = np.linalg.norm(np.cross(anchors - centres[v], direction), axis=-1)
            if ambiguous:
                depths = along
            else:
                half = np.sqrt(np.maximum(length**2 - across**2, 0.0))
                depths = np.concatenate([along - half, along + half])
                if predicted:
                    depths = np.append(depths, (prediction - centres[v]) @ direction)
            candidates = centres[v] + depths[depths > 0, None] * direction  # [C, 3]
            distance = np.linalg.norm(candidates[:, None] - anchors[None], axis=-1)
            # A bone may look shorter than it is (foreshortened), never longer.
            residual = (np.maximum(distance - length, 0.0) if ambiguous else distance - length) / sigma
            cost = (residual**2).sum(-1)
            if predicted:
                cost += (np.linalg.norm(candidates - prediction, axis=-1) / prediction_sigma) ** 2
            if len(cost) and cost.min() < best_cost:
                best, best_view, best_cost = candidates[int(np.argmin(cost))], v, float(cost.min())
        if best is None:
            continue
        guesses[n, j], chosen[n, j] = best, best_view
        direction = rays[best_view, n, j]
        across_sigma = pixel_sigma * np.linalg.norm(best - centres[best_view]) / rig.K[best_view, 0, 0]
        outer = np.outer(direction, direction)
        covariance[n, j] = across_sigma**2 * (np.eye(3) - outer) + float(length.min()) ** 2 * outer
    return guesses, covariance, chosen
