"""Fixed-lag fusion: each frame is output once the frames up to ``lag`` seconds after it are in, estimated from all of
them with the offline estimator's priors (``lag = 0``: at once, from the past alone: the causal output).

Per person and frame, as it arrives:

1. a fit-only :class:`~.streaming.StreamingFuser` fits the views (robust initial guess, Gauss-Newton on the splat
   objective with the person's bone lengths; no temporal term): :class:`~.streaming.FrameFit`;
2. its joints, with the information of the views that agree with them (``smoothing.view_information``), update the
   person's :class:`~.jerk_filter.JerkFilterBank`: the offline smoother's jerk prior, robust weights and per-joint
   tolerance, as Kalman filters.

When a frame is due (:meth:`LagSmoother.due`: ``lag`` seconds of later frames are in, or the caller says time has
passed), it is read out (:func:`read_out`): the filters' estimate at its stamp from every frame so far (a
Rauch-Tung-Striebel pass back over the look-ahead), then, as offline, Gauss-Newton on its views pulled to that
estimate (``smoothing_pull``) with the bone lengths of the person's smoothed trajectory, and the output rule
(``output.py``): joints the views agree with, held to the bone lengths; offered (confidence 0) where the views do not
agree but the estimate has evidence: a joint one view sees (its ray, the bone lengths and the motion fix its depth,
with ``single_view_joints``), or a gap of at most ``max_fill`` closed within the look-ahead; with ``complete``, every
other joint from the body model (rule 5, as streaming: :func:`~.streaming.complete_fill`). The covariance is the
filters' (module docstring of ``jerk_filter.py``), scaled by the noise the person's own data showed and by
``covariance_scale``, plus ``bias_share``, then calibrated per joint as streaming's (``lag_covariance``,
``result.calibrate_covariance``): wider where the views disagree and along the depth the views barely fix, and for a
person whose views often disagree, rounder (``result.LAG_GROSS``).

This is not a delay line: at lag 0 the output is already the filtered estimate, and every frame of look-ahead
improves it (BENCHMARKS.md, "Fixed lag").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig
from ..geometry.triangulation import linear_covariance
from ..skeleton.models import Skeleton
from .config import FusionConfig
from .jerk_filter import JerkFilterBank
from .objective import BonePrior, RefineConfig, TemporalPrior
from .output import (
    Fill, LengthMedian, Views, decide_output, length_medians, observed_lengths, seen_joints, slide, views_verdict,
)
from .refine import refine
from .result import (
    LAG_GROSS,
    SUPPORT_THRESHOLD,
    FusionResult,
    bone_lengths_of,
    calibrate_covariance,
    dissent_pull,
    widen_toward_dissent,
    dissenting_views,
    concatenate_results,
    estimate_bone_prior,
    fallback_position,
    frame_stamps,
    refine_output,
    refine_support,
)
from .streaming import (
    FIT_BONE_FRAMES, FrameFit, StreamingFuser, agreeing_information, complete_fill, fuse_streaming, step_together,
)

LAG_TOLERANCE = 0.005
"""A frame is due once a frame stamped at least ``lag - LAG_TOLERANCE`` after it is in (camera stamps jitter; without
it a frame of a 30 Hz rig would wait a whole period more for a look-ahead 1 ms short)."""


GROSS_ROBUST_SCALE = 1.5
"""Cauchy scale of the filters' robust weights (standard deviations of a frame's fit) at a lag, for a person whose
triangulations often jump far from their motion (``FrameFit.jumpy``; ``SmoothingConfig.robust_scale`` otherwise):
with the fit started from the motion there, what still disagrees with it is mostly a gross error. Chosen on seeds 0-2
of the robot rig with ``hard`` noise (150 frames; BENCHMARKS.md, "Fixed lag")."""
GROSS_SETTLE_UPDATES = 15
"""Updates of a joint's filters before :data:`GROSS_ROBUST_SCALE` applies to it (0.5 s at 30 Hz). Robot rig, ``hard``
noise, lag 1 s, seeds 0-2 (with a 25 % ``JUMP_SHARE``): 118.5 mm at once, 122.7 mm after 15 updates, 126.1 mm after
30; at once, a new person's joint came out 3.9 m off (seed 3, test_fixed_lag.py)."""


def check_lag(config: FusionConfig, lag: float) -> float:
    """``lag`` (s) as a float; a ``ValueError`` for a negative or non-finite one, or a configuration without the
    fixed-lag smoother (baselines, the ``paper`` preset, Adam)."""
    value = float(lag)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"lag must be a finite number of seconds >= 0, got {lag!r}")
    if not uses_smoother(config):
        raise ValueError("the fixed lag needs the fixed-lag smoother: method skelsplat, preset default, Gauss-Newton "
                         f"(this configuration fuses each frame alone: {config.method}, smoothing "
                         f"{'off' if config.smoothing is None else 'on'})")
    return value


def uses_smoother(config: FusionConfig) -> bool:
    """Whether ``config`` can run the fixed-lag smoother: the ``skelsplat`` method with the offline smoothing prior
    and the Gauss-Newton fit it reads out with."""
    return (config.method == "skelsplat" and config.smoothing is not None
            and config.prefit is not None and (config.streaming_refine or config.refine).optimizer == "gauss_newton")


class LagSmoother:
    """One person's fixed-lag state: the filter bank over their frame fits, the fits not yet output, and the bone
    lengths of their smoothed trajectory where the views saw both ends.

    Args:
        skeleton: the person's joints and bones.
        config: ``smoothing`` (the prior), ``bone_window`` (frames of bone lengths kept), the data fit's settings.
        lag: seconds of look-ahead before a frame is output.
    """

    def __init__(self, skeleton: Skeleton, config: FusionConfig, lag: float):
        self.skeleton, self.config, self.lag = skeleton, config, check_lag(config, lag)
        self.bank = JerkFilterBank(skeleton.num_joints, config.smoothing, memory=config.smoother_memory)
        self.pending: deque[FrameFit] = deque()
        self.newest: FrameFit | None = None
        # [W, B] the bone lengths of the last frames out (seen joints; NaN otherwise): their bone prior (_bone_priors).
        self.lengths = np.empty((0, len(skeleton.bones)))
        self.completed: np.ndarray | None = None  # [J, 3] the last complete output (rule 5): the next fills' recent pose
        # The median observed lengths of every frame out: rule 5's length estimate.
        self.observed = LengthMedian(len(skeleton.bones))
        self._last_seen = np.full(skeleton.num_joints, -np.inf)  # stamp each joint was last output as seen
        # Discounted sums of the squared reprojection errors of the seen joints, and their count (one pseudo-sample
        # at the nominal pixel noise before the first).
        self._residual = np.array([config.nominal_pixel_sigma**2, 1.0])
        self._residual_stamp: float | None = None
        # The last frame read out, its bookkeeping (remember, the fills' state) not done yet: settle().
        self._unsettled: tuple | None = None
        self._window_prior: BonePrior | None = None  # [B] the bone prior of ``lengths`` as it is (_bone_priors)
        self._smoothed: tuple[float, tuple] | None = None  # (stamp, smoothed(stamp)) worked out ahead (prefetch)

    def add(self, fit: FrameFit, information: np.ndarray | None = None) -> None:
        """Take the newest frame's fit (stamps increasing), with its :func:`fit_information` if the caller has it."""
        if information is None:
            information = fit_information(self.config, [fit])[0]
        # A jumpy person's joints are judged tighter once their filters have settled: a joint's first state may be
        # a poor point, and tight weights would refuse the good measurements that follow (metres off, seed 3).
        tight = fit.jumpy & (self.bank.updates >= GROSS_SETTLE_UPDATES)
        self.bank.robust_scale = np.where(tight, GROSS_ROBUST_SCALE, self.config.smoothing.robust_scale)
        self.bank.update(fit.stamp, fit.means, information)
        self._smoothed = None
        self.pending.append(fit)
        self.newest = fit

    def due(self, until: float | None = None) -> list[FrameFit]:
        """Take the pending fits that are due: ``lag`` behind the newest frame, or (``until``, s) stamped at most
        ``until - lag``: their look-ahead has passed without frames (every pending fit with ``until = inf``)."""
        newest = -np.inf if self.newest is None else self.newest.stamp
        limit = max(newest, -np.inf if until is None else until) - self.lag + LAG_TOLERANCE
        taken = []
        while self.pending and self.pending[0].stamp <= limit:
            taken.append(self.pending.popleft())
        return taken

    def remember(self, stamp: float, joints: np.ndarray, seen: np.ndarray, reprojection: np.ndarray) -> None:
        """After frame ``stamp`` was output: its smoothed ``joints [J, 3]``, which were ``seen [J]`` and their mean
        reprojection errors ``[J]`` (px)."""
        lengths = bone_lengths_of(np.where(seen[:, None], joints, np.nan), self.skeleton)
        self.lengths = slide(self.lengths, lengths, self.config.bone_window)
        self._window_prior = None
        self._last_seen[seen] = stamp
        self.bank.forget(stamp)  # frames are output in order: nothing before this one is asked for again
        if self._residual_stamp is not None:
            self._residual *= np.exp(-max(stamp - self._residual_stamp, 0.0) / self.config.smoother_memory)
        self._residual_stamp = stamp
        errors = reprojection[seen & np.isfinite(reprojection)]
        self._residual += [float((errors**2).sum()), len(errors)]

    def settle(self) -> bool:
        """Do the bookkeeping of the last frame :func:`read_out` output (:meth:`remember`, rule 5's recent pose and
        observed lengths), if not done yet: whether there was any. The read-out leaves it for later so that a
        caller may publish first (:func:`settle`); the next read-out does it first in any case."""
        if self._unsettled is None:
            return False
        (stamp, joints, seen, reprojection, output), self._unsettled = self._unsettled, None
        self.remember(stamp, joints, seen, reprojection)
        if self.config.complete:
            if np.isfinite(output.joints[0]).all() and (output.confidence[0] > 0).any():
                self.completed = output.joints[0]  # the next fills' recent pose (not an unchecked warm-up frame's)
            self.observed = self.observed.added(observed_lengths(self.skeleton, output)[0])
        return True

    def prefetch(self, stamp: float) -> None:
        """Work out :meth:`smoothed` at the pending ``stamp`` now, for the read-out that follows: right after an
        update its states are still in the processor's cache (the read-out comes after everyone's updates, and each
        person's bank writes some 400 kB; a few percent of a 3-person frame's CPU)."""
        self._smoothed = stamp, self.smoothed(stamp)

    def smoothed(self, stamp: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The candidate each joint is read out with ``[J]`` (``JerkFilterBank.choice``) and the filters' position
        ``[J, 3]`` and covariance ``[J, 3, 3]`` at the pending ``stamp`` from every update so far (:meth:`prefetch`'s
        if it was asked for, since when nothing was added)."""
        cached, self._smoothed = self._smoothed, None
        if cached is not None and cached[0] == stamp:
            return cached[1]
        choice = self.bank.choice()
        return choice, self.bank.smoothed(stamp, choice)

    def pixel_noise(self) -> float:
        """The person's recent reprojection error (px, root mean square over the seen joints, forgetting over
        ``smoother_memory``): the scale of what the detector gets wrong."""
        return float(np.sqrt(self._residual[0] / self._residual[1]))

    def gap_closed(self, stamp: float) -> np.ndarray:
        """Joints ``[J]`` not seen at ``stamp`` that were within ``max_fill`` before it and are seen again by a
        pending (look-ahead) fit within ``max_fill`` of that: a short gap whose both ends are known."""
        closed = np.zeros(self.skeleton.num_joints, dtype=bool)
        for fit in self.pending:
            if fit.stamp - stamp > self.config.max_fill + LAG_TOLERANCE:
                break
            closed |= fit.seen & (fit.stamp - self._last_seen <= self.config.max_fill + LAG_TOLERANCE)
        return closed


def settle(config: FusionConfig, smoothers: list[LagSmoother]) -> None:
    """The bookkeeping of the frames :func:`read_out` output last (:meth:`LagSmoother.settle`) and, ahead of their
    next read-out, the bone priors of their new windows (one median call for all): the work of a frame out that its
    output does not need, for a caller to do after publishing it (the node). Outputs are the same without it."""
    _window_priors(config, [smoother for smoother in smoothers if smoother.settle()])


def fit_information(config: FusionConfig, fits: list[FrameFit]) -> np.ndarray:
    """Information ``[N, J, 3, 3]`` of the joints of ``fits`` (one frame's people: the same rig) from the views that
    agree with them: what the filter bank weighs each frame's estimate by. One batched call for everyone."""
    return agreeing_information(config, fits[0].rig, np.stack([fit.uv for fit in fits], axis=1),
                                np.stack([fit.confidence for fit in fits], axis=1),
                                np.stack([fit.agreement for fit in fits], axis=1), np.stack([fit.means for fit in fits]))


def pull_settings(config: FusionConfig) -> RefineConfig:
    """The settings of the Gauss-Newton pass that reads a frame out: the offline one, pulled to the smoothed
    estimate within ``smoothing_pull``, with the streaming fit's splat: a new person's filters know little yet, and
    the offline fit's narrowing splat let a joint of theirs out 2 m off on the narrow rig (test_fixed_lag.py)."""
    live = config.streaming_refine or config.refine
    return replace(config.prefit, temporal_weight=1.0, temporal_sigma=config.smoothing_pull,
                   init_sigma=live.init_sigma, splat_sigma_start=None)


def read_out(skeleton: Skeleton, config: FusionConfig, people: list[tuple[LagSmoother, FrameFit]]) -> list[FusionResult]:
    """The output of one frame of several people (module docstring), all with the frame's stamp and rig: one
    :class:`FusionResult` with a frame axis of length 1 per ``(smoother, fit)``."""
    if not people:
        return []
    for smoother, _ in people:
        smoother.settle()  # the last frame's bookkeeping, if the caller left it
    names = list(skeleton.joint_names)
    rig, stamp = people[0][1].rig, people[0][1].stamp
    uv = np.stack([fit.uv for _, fit in people], axis=1)  # [V, N, J, 2]
    confidence = np.stack([fit.confidence for _, fit in people], axis=1)
    means, covariance, scale = [], [], []
    for smoother, fit in people:
        choice, (mean, cov) = smoother.smoothed(fit.stamp)
        means.append(mean)
        covariance.append(cov / smoother.bank.noise_scale(choice)[:, None, None])
    means, covariance = np.stack(means), np.stack(covariance)  # [N, J, 3], [N, J, 3, 3]
    known = np.isfinite(means).all(-1)
    pulled = pull_settings(config)
    prior = _bone_priors(config, people, len(skeleton.bones))
    start = np.stack([np.where(k[:, None], m, fallback_position(m)) for k, m in zip(known, means)])
    result = refine(rig, skeleton, pulled, uv, confidence, start, prior, TemporalPrior("predict", prediction=means),
                    covariances=False)  # the output's covariance is the smoother's
    person_noise = np.array([smoother.pixel_noise() for smoother, _ in people])[:, None]  # [N, 1] px
    # The filters' uncertainty assumes errors that average out over frames; a share of the detector's error
    # (its bias for a joint in a view, errors that last) does not: the views' geometry at that share of the
    # person's pixel noise, where enough views agree (elsewhere the filters' own uncertainty dominates).
    covariance = config.covariance_scale * covariance
    if config.bias_share > 0:
        agreeing = refine_support(uv, confidence, result) > SUPPORT_THRESHOLD  # [V, N, J]
        noise = config.bias_share * person_noise[:, 0]
        bias = linear_covariance(rig, result.means, agreeing.astype(float), noise[None, :, None])
        covariance = covariance + np.where((agreeing.sum(axis=0) >= config.min_views)[..., None, None], bias, 0.0)
    # Joints whose views disagree more than the person's usual widen, and the depth a narrow baseline barely fixes
    # keeps a wide variance. The person's own pixel noise is already in the covariance (the filters' noise scale,
    # the bias share): judged against the nominal noise, a detector noisier than that would count twice.
    fitted = refine_output(rig, uv, confidence, result, known, names, covariance)
    fitted = calibrate_covariance(fitted, config.lag_covariance, person_noise,
                                  dissenting_views(uv, confidence, fitted.num_views, config.min_confidence), LAG_GROSS)
    fitted = widen_toward_dissent(fitted, dissent_pull(rig, fitted.joints, uv, confidence,
                                                       refine_support(uv, confidence, result), config.min_confidence))
    views = views_verdict(rig, uv, confidence, pulled, names) if config.bone_lengths else None
    offered = np.stack([
        smoother.gap_closed(stamp) | (config.single_view_joints & (fit_one > 0))
        for (smoother, _), fit_one in zip(people, fitted.num_views)
    ]) & known
    # Bones known up to the newest frame: the look-ahead counts.
    warm = np.stack([smoother.newest.warm for smoother, _ in people]) \
        if config.bone_warmup and config.bone_lengths else None
    complete = filled = observed = None
    if config.complete:
        complete, filled = _recording(complete_fill(rig, skeleton, uv, confidence,
                                                    [smoother.completed for smoother, _ in people], config),
                                      known.shape)
        observed = length_medians([smoother.observed for smoother, _ in people])
    fused = decide_output(fitted, skeleton, prior if views is not None else None, config, views,
                          _offer(fitted, offered, views), warm, complete, observed)
    # Whatever moved a joint (bone lengths held), its uncertainty is the smoother's, calibrated; a joint the body
    # model filled (rule 5) keeps the fill's.
    mine = np.isfinite(fused.joints).all(-1) & (True if filled is None else ~filled)
    fused = replace(fused, covariance=np.where(mine[..., None, None], fitted.covariance, fused.covariance))
    seen = np.isfinite(seen_joints(fitted, config.min_views).joints).all(-1)
    frames = [fused.frame(i) for i in range(len(people))]
    # Done by settle() (the caller's, after publishing) or by the next read-out.
    for i, (smoother, fit) in enumerate(people):
        smoother._unsettled = (fit.stamp, means[i], seen[i], fitted.reprojection_error[i], frames[i])
    return frames


def _offer(fitted: FusionResult, offered: np.ndarray, views: Views | None) -> Callable[[FusionResult], FusionResult]:
    """Rule 3 of ``output.py``: the read-out positions of the ``offered [N, J]`` joints, with what the views say
    there (the fit's figures without ``views``)."""

    def offer(output: FusionResult) -> FusionResult | None:
        if not (offered & ~np.isfinite(output.joints).all(-1)).any():
            return None  # the usual frame: nothing offered that is not output already (what the views say is not asked)
        joints = np.where(offered[..., None], fitted.joints, np.nan)
        return replace(views(joints) if views is not None else fitted, joints=joints)

    return offer


def _recording(offer: Fill, shape: tuple[int, int]) -> tuple[Fill, np.ndarray]:
    """``offer`` as it is, and ``[N, J]`` (``shape``; filled in as it is called): every joint it offered. A joint it
    offered that is output at the end is its fill: nothing places a joint after rule 5 asked for it."""
    offered = np.zeros(shape, dtype=bool)

    def recorded(output: FusionResult, lengths: np.ndarray) -> FusionResult | None:
        result = offer(output, lengths)
        if result is not None:
            offered[...] |= np.isfinite(result.joints).all(-1)
        return result

    return recorded, offered


def _bone_priors(config: FusionConfig, people: list[tuple[LagSmoother, FrameFit]],
                 num_bones: int) -> BonePrior | None:
    """Each person's bone lengths and tolerances for their frame, as one ``[N, B]`` prior (NaN lengths where a
    person has none; ``None`` if nobody has or without ``bone_lengths``): of the smoothed trajectory once it has
    ``FIT_BONE_FRAMES`` frames of them (:func:`_window_priors`, mostly worked out by :func:`settle` already), the
    data fit's window of triangulated lengths before."""
    if not config.bone_lengths:
        return None
    lengths, sigmas = np.full((len(people), num_bones), np.nan), np.ones((len(people), num_bones))
    smoothers = [smoother for smoother, _ in people]
    _window_priors(config, smoothers)  # those settle() did not work out ahead
    ready = [k for k, smoother in enumerate(smoothers) if smoother._window_prior is not None]
    for k, (smoother, fit) in enumerate(people):
        window = smoother._window_prior
        if window is not None:
            lengths[k], sigmas[k] = window.lengths, window.sigmas
        elif fit.bone_prior is not None:
            lengths[k], sigmas[k] = fit.bone_prior.lengths, fit.bone_prior.sigmas
    if not ready and all(fit.bone_prior is None for _, fit in people):
        return None
    return BonePrior(lengths, sigmas)


def _window_priors(config: FusionConfig, smoothers: list[LagSmoother]) -> None:
    """Work out :attr:`LagSmoother._window_prior` where it is missing and the window holds ``FIT_BONE_FRAMES``
    frames: the medians of everyone's windows in one call, side by side as columns, the shorter ones padded with NaN
    (unknown samples, which the medians leave out). Each column's figures are its own, so they do not depend on
    which windows share the call."""
    if not config.bone_lengths:
        return
    missing = [s for s in smoothers if s._window_prior is None and len(s.lengths) >= FIT_BONE_FRAMES]
    if not missing:
        return
    num_bones = missing[0].lengths.shape[1]
    samples = np.full((max(len(s.lengths) for s in missing), len(missing), num_bones), np.nan)
    for column, smoother in enumerate(missing):
        samples[:len(smoother.lengths), column] = smoother.lengths
    settings = config.prefit
    smoothed = estimate_bone_prior(samples.reshape(len(samples), -1), settings.bone_length_sigma,
                                   settings.bone_length_spread)
    for column, smoother in enumerate(missing):
        part = slice(column * num_bones, (column + 1) * num_bones)
        smoother._window_prior = BonePrior(smoothed.lengths[part], smoothed.sigmas[part])


class FixedLagFuser:
    """One person, fixed lag: :meth:`step` takes a frame and returns the frames that became due.

    Args:
        rig, skeleton, config: as :class:`~.streaming.StreamingFuser` (``config`` with the smoother:
            :func:`uses_smoother`).
        lag: look-ahead in seconds (0: each frame at once).
    """

    def __init__(self, rig: CameraRig, skeleton: Skeleton, config: FusionConfig, lag: float = 0.0):
        self.rig, self.skeleton, self.config, self.lag = rig, skeleton, config, check_lag(config, lag)
        self.fuser = StreamingFuser(rig, skeleton, config, fit_only=True, look_ahead=self.lag > 0)
        self.smoother = LagSmoother(skeleton, config, self.lag)
        self.resets = 0

    def step(self, keypoints: np.ndarray, stamp: float, rig: CameraRig | None = None) -> list[tuple[float, FusionResult]]:
        """Fuse one frame ``keypoints [V, J, 3]`` at ``stamp`` (s); ``rig`` as in :meth:`StreamingFuser.step`.

        Returns the frames now due, oldest first: ``(stamp, result)`` with a frame axis of length 1. A stamp that
        does not follow the last one, or a gap over ``reset_after``, first outputs every pending frame and starts
        afresh (as the streaming fuser forgets its history).
        """
        out: list[tuple[float, FusionResult]] = []
        last = self.smoother.newest
        if last is not None and not 0 < stamp - last.stamp <= self.config.reset_after:
            out = self.flush()
            self.smoother = LagSmoother(self.skeleton, self.config, self.lag)
            self.resets += 1
        step_together([self.fuser], np.asarray(keypoints, dtype=np.float64)[None], stamp, rig)
        self.smoother.add(self.fuser.fit)
        return out + self._read(self.smoother.due())

    def release(self, until: float) -> list[tuple[float, FusionResult]]:
        """The pending frames stamped at most ``until - lag`` (s): their look-ahead has passed without frames."""
        return self._read(self.smoother.due(until))

    def flush(self) -> list[tuple[float, FusionResult]]:
        """Every pending frame, with the look-ahead there is (the end of a recording)."""
        return self._read(self.smoother.due(np.inf))

    def _read(self, fits: list[FrameFit]) -> list[tuple[float, FusionResult]]:
        return [(fit.stamp, read_out(self.skeleton, self.config, [(self.smoother, fit)])[0]) for fit in fits]


def fuse_fixed_lag(
    rig: CameraRig,
    skeleton: Skeleton,
    keypoints: np.ndarray,
    config: FusionConfig,
    fps: float,
    lag: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    stamps: np.ndarray | None = None,
    rigs: list[CameraRig] | None = None,
) -> FusionResult:
    """A recording ``[V, F, J, 3]`` through :class:`FixedLagFuser`: what a live node with ``lag`` would have
    published, each frame at its own index (the last ``lag`` seconds with the look-ahead the recording has).
    Arguments as :func:`~.streaming.fuse_streaming`."""
    num_frames = keypoints.shape[1]
    times = frame_stamps(num_frames, fps, stamps)
    fuser = FixedLagFuser(rig, skeleton, config, lag)
    names = list(skeleton.joint_names)
    empty = concatenate_results([], names)
    frames: list[FusionResult | None] = [None] * num_frames
    index: dict[float, list[int]] = {}
    for f in range(num_frames):
        index.setdefault(float(times[f]), []).append(f)
        frame_rig = rigs[f] if rigs is not None else None
        for stamp, result in fuser.step(keypoints[:, f], float(times[f]), rig=frame_rig):
            frames[index[stamp].pop(0)] = result
        if progress:
            progress(f + 1, num_frames)
    for stamp, result in fuser.flush():
        frames[index[stamp].pop(0)] = result
    blank = _blank(len(names), names)
    return concatenate_results([frame if frame is not None else blank for frame in frames], names) if num_frames \
        else empty


def fuse_live(rig: CameraRig, skeleton: Skeleton, keypoints: np.ndarray, config: FusionConfig, fps: float,
              lag: float = 0.0, **options) -> FusionResult:
    """What the node publishes with the parameter ``lag`` (``skelsplat fuse --mode streaming --lag``): today's causal
    :func:`~.streaming.fuse_streaming` at 0, :func:`fuse_fixed_lag` above; ``options``: their ``progress``,
    ``stamps`` and ``rigs``."""
    if lag != 0:  # fuse_fixed_lag refuses a negative or non-finite one
        return fuse_fixed_lag(rig, skeleton, keypoints, config, fps, lag, **options)
    return fuse_streaming(rig, skeleton, keypoints, config, fps, **options)


def _blank(num_joints: int, names: list[str]) -> FusionResult:
    """One frame with nothing output."""
    return FusionResult(np.full((1, num_joints, 3), np.nan), np.zeros((1, num_joints), np.float32),
                        np.full((1, num_joints, 3, 3), np.nan), np.zeros((1, num_joints), np.uint8),
                        np.full((1, num_joints), np.nan, np.float32), names)
