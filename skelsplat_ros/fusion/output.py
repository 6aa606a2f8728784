"""What a fusion path outputs: the one place that decides which joints carry a position (README, Design decisions).

1. **Evidence.** A joint is *seen* in a frame when at least ``min_views`` views agree with its fitted position (the
   views counted in ``FusionResult.num_views``: detection confidence times the overlap of the view's heatmap with
   the fitted splat above 0.05). Only seen joints keep the fit's position and confidence.
2. **Bone lengths.** Every bone between two output joints keeps its person's length within ``bone_tolerance`` (a
   fraction of the length; wider where the length itself is known less well): :func:`hold_bone_lengths` moves the
   two ends along the bone, the less certain end more (by the trace of its covariance). Rule 1 is then asked again
   at the held position: a moved joint that fewer than ``min_views`` views agree with there is not seen after all
   (its views place it where the skeleton cannot be: a wrong detection that several views agree on, a person's
   joints mixed with another's), and its bones are held again without it, the joint moved furthest first.
3. **Offers.** A path may offer positions for joints that are not seen (offline: a short gap between frames where
   the joint is seen, filled from its smoothed trajectory; streaming with ``single_view_joints``: a point on one
   view's ray at the bone lengths). An offered joint is output with confidence 0, held to the bone lengths with the
   seen joints fixed; one that cannot be held stays NaN.
4. **Warm-up** (streaming, ``bone_warmup`` frames): a joint none of whose bones has that many samples in the
   person's window is not output: a person's first frames have no lengths to be held to, or lengths that one or two
   frames estimated. With ``bone_warmup=0`` a person is output from their first frame: rule 2 holds a frame to the
   lengths of the frames before it, and the very first frame is output as fitted. With rule 5 those joints are
   output as with ``bone_warmup=0``, with confidence 0 (unchecked).
5. **Complete** (``complete``): a person with any joint output gets every joint: the rest is filled from the body
   model (:func:`complete_offer`: each joint at its bone length from a placed neighbour, in the direction the
   person's recent pose, or else the rest pose, gives it, both turned as the person turned), with confidence 0 and a
   large covariance, and held as the offers of rule 3 (the output joints fixed) to the person's current length
   estimate (:func:`fill_lengths`): the median of the lengths their output itself has shown in every frame so far
   (:class:`LengthMedian`; within ``COMPLETE_TOLERANCE``, so no filled limb is over 1.2x it), not the prior's
   triangulated lengths that rule 2 holds to within a tolerance (on a narrow rig the two differ by 10 % and more).

Everything else is NaN with confidence 0. :func:`decide_output` applies the rules in that order; a new way of
offering positions for unseen joints is one more ``offer`` callback, not another rule. The
streaming fuser predicts from, and the tracker associates with, the joints of rule 1 alone (:func:`seen_joints`):
holding a fit to lengths that a few frames estimated would feed their error back into the prediction.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import replace
from collections.abc import Sequence
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig
from ..geometry.triangulation import linear_covariance
from ..skeleton.human import rest_pose
from ..skeleton.models import Skeleton
from .config import FusionConfig
from .image_terms import image_terms
from .objective import BonePrior, RefineConfig, detection_weights, heatmap_variance_growth
from .result import FusionResult, bone_lengths_of, column_nanmedian, summarise
from .smoothing import SmoothingConfig, smooth_trajectories

HOLD_ITERATIONS = 50
"""Sweeps over the bones of :func:`hold_bone_lengths` at most (a tree converges in a few)."""
RETRY_ITERATIONS = 400
"""Sweeps of rule 5's widened retry at most: its band differs from bone to bone (a placed joint keeps its own), and
projections that alternate between a stretched bone and a kept one converge slowly (robot rig, hard noise: 50 sweeps
left a shoulder 0.1 % outside, and unplaced)."""
HOLD_SLACK = 1e-3
"""Relative slack on ``bone_tolerance`` of the final check: a sweep that stops this close to the band has converged."""
GATE_ROUNDS = 3
"""Rounds of rule 2 that drop, per frame, the one joint moved furthest among those its views no longer agree with
(then hold again); after them, every such joint goes at once."""

Views = Callable[[np.ndarray], FusionResult]
"""What the views say of joints placed at ``[N, J, 3]`` (NaN = none): the fit's summary (views that agree,
confidence, covariance, reprojection error) at those positions."""

Offer = Callable[[FusionResult], FusionResult | None]
"""Given the output so far (seen joints only, NaN elsewhere), positions for joints that are not seen: a
``FusionResult`` of the same shape whose finite joints are offers (their covariance, views and reprojection error
are taken with them), or ``None``."""

Fill = Callable[[FusionResult, np.ndarray], FusionResult | None]
"""Rule 5's offer (:func:`complete_offer`): an ``Offer`` that also takes the bone lengths ``[N, B]`` to place at (the
person's length estimate, :func:`fill_lengths`; NaN = unknown)."""


def fill_mask(seen: np.ndarray, max_frames: int) -> np.ndarray:
    """Unseen entries of ``seen [F, J]`` in a run of at most ``max_frames`` frames with seen frames on both sides:
    the gaps a bounded interpolation may cross (never the ends of a recording or of a track)."""
    num_frames = seen.shape[0]
    fill = np.zeros_like(seen, dtype=bool)
    if max_frames <= 0 or num_frames < 3:
        return fill
    for joint in np.flatnonzero(seen.any(axis=0)):
        frames = np.flatnonzero(seen[:, joint])
        for before, after in zip(frames[:-1], frames[1:]):
            if 1 < after - before <= max_frames + 1:
                fill[before + 1:after, joint] = True
    return fill


def bone_violation(
    joints: np.ndarray, bones: np.ndarray, lengths: np.ndarray, tolerance: float | np.ndarray
) -> np.ndarray:
    """How far each bone of ``joints [..., J, 3]`` lies outside ``lengths [..., B] * (1 +- tolerance)`` (tolerance a
    number or per bone), as a fraction of its length ``[..., B]`` (0 inside; NaN where a joint or the length is
    unknown)."""
    offset = joints[..., bones[:, 0], :] - joints[..., bones[:, 1], :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.maximum(np.abs(np.sqrt((offset * offset).sum(-1)) / lengths - 1.0) - tolerance, 0.0)


def hold_bone_lengths(
    joints: np.ndarray, mobility: np.ndarray, bones: np.ndarray, lengths: np.ndarray, tolerance: float | np.ndarray,
    iterations: int = HOLD_ITERATIONS,
) -> np.ndarray:
    """``joints [N, J, 3]`` moved so that every bone ``bones [B, 2]`` between two finite joints is within
    ``lengths [N, B]`` (or ``[B]``; NaN = unconstrained) times ``1 +- tolerance`` (a number, ``[B]`` or ``[N, B]``).

    Each sweep visits the bones in turn and moves a bone that is too long or too short along itself onto the band,
    its ends sharing the correction in proportion to their ``mobility [N, J]`` (``inf``: free, takes the whole
    correction from a finite one; 0: fixed). Sweeps (at most ``iterations``) stop when every bone is within the band
    (position-based projection; on a tree of bones it is exact after one sweep from the root unless a bone's both
    ends move).
    A bone whose two ends are both fixed is left as it is. Frames with nothing outside the band cost one check.
    """
    joints = joints.copy()
    lengths = np.broadcast_to(lengths, joints.shape[:-2] + (len(bones),))
    tolerance = np.broadcast_to(tolerance, lengths.shape)
    rows = np.flatnonzero((bone_violation(joints, bones, lengths, tolerance) > 0).any(axis=-1))  # NaN: not outside
    if not len(rows):
        return joints
    held, target = joints[rows], lengths[rows]
    low, high = target * (1.0 - tolerance[rows]), target * (1.0 + tolerance[rows])
    # Close enough: within the band widened by half the final check's slack (a sweep moves shared ends again).
    slack = np.maximum(0.5 * HOLD_SLACK * tolerance[rows], 1e-9) * np.nan_to_num(target, nan=1.0)
    first, second = bones[:, 0], bones[:, 1]
    share_first = _share(mobility[rows][:, first], mobility[rows][:, second])  # [R, B]
    share_second = _share(mobility[rows][:, second], mobility[rows][:, first])
    movable = (share_first + share_second) > 0
    groups = _bone_groups(tuple(map(tuple, bones.tolist())))  # bones of a group share no joint: moved at once
    live = np.arange(len(rows))  # rows that a sweep still changed
    for _ in range(iterations):
        changed = np.zeros(len(live), dtype=bool)
        points = held[live]
        for group in groups:
            a, c = first[group], second[group]
            offset = points[:, c] - points[:, a]  # [L, G, 3]
            length = np.sqrt((offset * offset).sum(-1))
            with np.errstate(invalid="ignore"):
                excess = length - np.clip(length, low[live][:, group], high[live][:, group])  # > 0: too long
                active = (np.abs(excess) > slack[live][:, group]) & (length > 0) & movable[live][:, group]
            if not active.any():
                continue
            changed |= active.any(axis=1)
            step = np.where(active[..., None], (excess / np.where(length > 0, length, 1.0))[..., None] * offset, 0.0)
            points[:, a] += share_first[live][:, group, None] * step
            points[:, c] -= share_second[live][:, group, None] * step
        held[live] = points
        live = live[changed]
        if not len(live):
            break
    joints[rows] = held
    return joints


@functools.lru_cache(maxsize=16)
def _bone_groups(bones: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    """The bones split into groups of which no two share a joint (greedy colouring, in order), so that a group is
    projected at once."""
    groups: list[list[int]] = []
    used: list[set[int]] = []
    for b, (first, second) in enumerate(bones):
        for group, joints in zip(groups, used):
            if first not in joints and second not in joints:
                group.append(b)
                joints.update((first, second))
                break
        else:
            groups.append([b])
            used.append({first, second})
    return [np.array(group) for group in groups]


def _share(mine: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The part of a bone's correction that one end takes, from the two ends' mobilities (inf = free)."""
    free, other_free = np.isinf(mine), np.isinf(other)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = mine / (mine + other)
    return np.where(free & other_free, 0.5, np.where(free, 1.0, np.where(other_free, 0.0, np.nan_to_num(ratio))))


def _mobility(covariance: np.ndarray) -> np.ndarray:
    """Scalar uncertainty ``[..., J]`` (m^2) of each joint from its covariance ``[..., J, 3, 3]`` (inf: unknown)."""
    return np.nan_to_num(np.trace(covariance, axis1=-2, axis2=-1), nan=np.inf)


def views_verdict(
    rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, settings: RefineConfig, names: list[str]
) -> Views | None:
    """What the views ``uv [V, N, J, 2]`` (undistorted px; ``confidence [V, N, J]``) say of joint positions: the
    agreement of each view with a splat there, as the Gauss-Newton fit with ``settings`` measures it at its end
    (its ``target_sigma_px``, confidence scaling and ``init_sigma``), summarised as the fit's output is. ``None``
    for settings without a heatmap size of their own (the ``paper`` preset's, sized from the initial splats)."""
    if settings.target_sigma_px is None:
        return None

    @functools.cache
    def constants() -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # most frames never ask: computed at the first
        weights = detection_weights(uv, confidence, settings)
        variance = settings.target_sigma_px**2 * heatmap_variance_growth(confidence, settings)
        return weights, variance, np.where(np.isfinite(uv).all(-1), confidence, 0.0)

    def at(points: np.ndarray) -> FusionResult:
        weights, variance, observed = constants()
        terms = image_terms(rig.K, rig.R, rig.t, np.nan_to_num(points), np.nan_to_num(uv), weights, variance,
                            settings.init_sigma)
        agreement = np.where((weights > 0) & (terms.depth > 0), terms.overlap, 0.0)
        covariance = linear_covariance(rig, points, weights * agreement, settings.target_sigma_px)
        return summarise(rig, points, uv, observed * agreement, covariance, names)

    return at


def _hold_seen(
    fused: FusionResult, seen: np.ndarray, bones: np.ndarray, lengths: np.ndarray, tolerance: np.ndarray,
    min_views: int, views: Views,
) -> FusionResult:
    """Rule 2 on the seen joints ``[N, J]`` of ``fused``: the output of the joints that stay seen."""
    fitted = np.where(seen[..., None], fused.joints, np.nan)
    if not (bone_violation(fitted, bones, lengths, tolerance) > 0).any():  # the usual frame: nothing to hold
        return _masked(fused, fitted, seen)
    seen = seen.copy()
    mobility = _mobility(fused.covariance)
    for round_index in range(GATE_ROUNDS + 1):
        fitted = np.where(seen[..., None], fused.joints, np.nan)
        held = hold_bone_lengths(fitted, mobility, bones, lengths, tolerance)
        moved = seen & (held != fitted).any(-1)
        if not moved.any():
            return _masked(fused, fused.joints, seen)
        verdict = views(held)
        lost = moved & (verdict.num_views < min_views)
        if not lost.any():
            break
        if round_index == GATE_ROUNDS:
            seen &= ~lost  # dropping a joint leaves every other bone in its band
            break
        # The joint moved furthest is the likeliest culprit; its bones are held again without it.
        shift = np.where(lost, np.linalg.norm(np.nan_to_num(held - fitted), axis=-1), -1.0)
        rows = np.flatnonzero(lost.any(axis=-1))
        seen[rows, shift[rows].argmax(axis=-1)] = False
    # What the sweeps could not bring into the band (rare: a loop of bones pulled several ways) loses its less
    # certain end, so that no output bone is outside it.
    broken = np.nan_to_num(bone_violation(held, bones, lengths, tolerance * (1 + HOLD_SLACK))) > 0  # [N, B]
    for b in np.flatnonzero(broken.any(axis=0)):
        first, second = bones[b]
        drop_first = broken[:, b] & (mobility[:, first] >= mobility[:, second])
        seen[drop_first, first] = False
        seen[broken[:, b] & ~drop_first, second] = False
    # A moved joint is described by what its views say at its new place; the others keep the fit's figures. Its
    # covariance is that of its views at the new place plus the fit's, which the path calibrated (the views' own
    # first-order one knows nothing of the fit's residuals or dissent: held gross errors went unflagged without it).
    return _masked(_where(moved, replace(verdict, covariance=verdict.covariance + fused.covariance), fused), held, seen)


def gap_offer(max_frames: int, fps: float, smoothing: SmoothingConfig, views: Views | None,
              fitted: FusionResult) -> Offer:
    """Offline offers: a joint in a gap of at most ``max_frames`` frames between frames where it is output
    (:func:`fill_mask`), on the smoothed trajectory of its output frames alone (``smoothing`` at ``fps``, each
    frame weighted by the information of its covariance; in the gap the jerk prior interpolates: a bounded
    interpolation, never the fit of views that rule 1 or 2 refused). Its figures are what ``views`` say there
    (``fitted``'s without them)."""

    # The output frames are already clean (rules 1-2): one plain solve at the configured tolerance, no outlier
    # rounds or bandwidth search.
    interpolation = replace(smoothing, robust_scale=0.0, iterations=1, adaptive=False)

    def offer(output: FusionResult) -> FusionResult | None:
        seen = np.isfinite(output.joints).all(-1)
        fill = fill_mask(seen, max_frames)
        joints = np.flatnonzero(fill.any(axis=0))
        if not len(joints):
            return None
        covariance = np.where(seen[..., None, None], output.covariance, np.eye(3))[:, joints]
        information = np.where(seen[:, joints, None, None], np.linalg.inv(covariance), 0.0)
        curve = np.full_like(output.joints, np.nan)
        curve[:, joints], _, _ = smooth_trajectories(np.where(seen[:, joints, None], output.joints[:, joints], np.nan),
                                                     information, fps, interpolation)
        figures = views(curve) if views is not None else fitted
        return _masked(figures, curve, fill)

    return offer


def decide_output(
    fused: FusionResult,
    skeleton: Skeleton,
    prior: BonePrior | None,
    config: FusionConfig,
    views: Views | None = None,
    offer: Offer | Sequence[Offer] | None = None,
    known: np.ndarray | None = None,
    complete: Fill | None = None,
    observed: np.ndarray | None = None,
) -> FusionResult:
    """The output of a fit ``fused`` (``[N, J]``: frames of one person, or people of one frame) by the rules of the
    module docstring, with ``config``'s ``min_views`` and ``bone_tolerance``.

    Args:
        prior: the person's bone lengths and their tolerances ``[B]`` or ``[N, B]`` (NaN length = unknown: that
            bone is not held); ``None`` = no bone lengths (rules 1 and 3 only). A bone is held within
            ``bone_tolerance`` of its length, or within its tolerance where that is wider (lengths estimated from
            views that scatter are known less well).
        views: what the views say of other positions of the same joints (:func:`views_verdict`); without it
            (``None``) nothing is held, as a held joint could not be checked against its views.
        offer: positions for joints that are not seen (rule 3), one or several in turn (each sees the joints the
            ones before it placed).
        known: rule 4's bones with enough samples ``[N, B]`` or ``[B]`` (:func:`withhold_unchecked`); ``None``:
            no warm-up.
        complete: rule 5's fill (:func:`complete_offer`), last.
        observed: rule 5's length estimate: given the frame's own observed lengths ``[N, B]``
            (:func:`observed_lengths`), their median with those of each person's earlier frames ``[N, B]`` (NaN =
            none; :class:`LengthMedian`, :func:`length_medians`); ``None``: the rows are the frames of one person
            (offline) and it is the median over them (:func:`fill_lengths`).
    """
    bones = skeleton.bone_array
    output = seen_joints(fused, config.min_views)
    seen = np.isfinite(output.joints).all(-1)
    lengths = tolerance = None
    if prior is not None and views is not None:
        lengths = np.broadcast_to(prior.lengths, fused.joints.shape[:-2] + (len(bones),))
        with np.errstate(invalid="ignore", divide="ignore"):
            tolerance = np.fmax(config.bone_tolerance, prior.sigmas / lengths)  # fmax: NaN (unknown) -> the first
        output = _hold_seen(fused, seen, bones, lengths, tolerance, config.min_views, views)
    offers = [] if offer is None else [offer] if callable(offer) else list(offer)
    for each in offers:
        output = _take_offer(output, each(output), bones, lengths, tolerance)
    if known is not None:
        # With rule 5 a tracked person is output from their first frame: the joints rule 4 would withhold keep their
        # position (held to the lengths of the frames before), unchecked, so with confidence 0.
        output = withhold_unchecked(output, skeleton, known, keep_unchecked=complete is not None)
    present = np.isfinite(output.joints).all(-1)
    if complete is not None and (present.any(-1) & ~present.all(-1)).any():  # nothing to fill: the usual frame
        estimate = fill_lengths(skeleton, output, lengths, observed)
        # The estimate is the output's own: a fill is held within bone_tolerance of it, as tightly as an observed
        # bone of a well known length, however loosely the prior knows it.
        band = np.full(estimate.shape, config.bone_tolerance)

        def fill(output: FusionResult) -> FusionResult:
            return _take_offer(output, complete(output, estimate), bones, estimate, band, COMPLETE_TOLERANCE)

        output = fill(output)
        for _ in range(DEMOTE_ROUNDS):
            # A joint still missing lies between output joints further apart than its bones reach: the least
            # certain of them is wrong (views agreed on a wrong detection) and is filled as well.
            missing = ~np.isfinite(output.joints).all(-1) & np.isfinite(output.joints).all(-1).any(-1, keepdims=True)
            if not missing.any():
                break
            output = fill(_demote_neighbours(output, missing, skeleton))
    return output


def observed_lengths(skeleton: Skeleton, output: FusionResult) -> np.ndarray:
    """``[N, B]``: the lengths of the bones of ``output [N, J]`` whose two ends are observed (confidence > 0: neither
    offered nor filled; NaN elsewhere), the samples of rule 5's length estimate."""
    return bone_lengths_of(np.where((output.confidence > 0)[..., None], output.joints, np.nan), skeleton)


def fill_lengths(skeleton: Skeleton, output: FusionResult, held: np.ndarray | None,
                 observed: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """Rule 5's length estimate ``[N, B]`` for the rows of ``output [N, J]`` (rules 1-4 applied): the person's median
    observed length, this frame's included (``observed``, as :func:`decide_output` takes it; ``None``: the rows are
    the frames of one person, and the median is over them), where a body could have it (:func:`plausible_lengths`);
    elsewhere the ``held`` length (``[N, B]``, the prior's) where plausible, but never longer than the observed
    median, so that no fill is longer than 1.2x the person's median by construction; NaN where neither is known
    (the fill takes the scaled rest pose's, unheld).

    Why not the prior's: rule 2 holds observed bones within a tolerance of it that is wide where the length scatters,
    so the output's lengths may sit well inside that band (a narrow rig's triangulations run long), and a fill held
    to the prior would be longer than every observed one. Why every frame's and not a recent window's: the bound is
    on the person's median; on a narrow rig a window's median drifts with the person's distance, 6 % off it. Why
    not an implausible median where a plausible prior is shorter: a new person's first frames on a narrow rig may
    have observed a hip 1.2 m wide, and a fill held to it cannot be placed between its observed neighbours."""
    now = observed_lengths(skeleton, output)
    median = np.broadcast_to(column_nanmedian(now), now.shape) if observed is None else observed(now)
    plausible = plausible_lengths(skeleton, median)
    if plausible.all() or held is None:  # the usual frame
        return median
    body = np.where(plausible_lengths(skeleton, held), held, np.nan)
    return np.where(plausible, median, np.fmin(median, body))  # fmin: NaN (none) -> the other


MEDIAN_BIN = 0.01
"""Relative width of the bins of :class:`LengthMedian` (its median is at most this fraction above the exact one)."""
MEDIAN_RANGE = (0.02, 5.0)
"""Lengths (m) the bins of :class:`LengthMedian` span; a length outside counts in the nearest end bin."""
_EDGES = np.exp(np.arange(np.log(MEDIAN_RANGE[0]), np.log(MEDIAN_RANGE[1]) + np.log1p(MEDIAN_BIN),
                          np.log1p(MEDIAN_BIN)))
"""Upper edges of the bins (m)."""


class LengthMedian:
    """The median of each of a person's ``B`` observed bone lengths over every frame so far: rule 5's length estimate,
    the person's median that no filled limb may exceed by more than ``COMPLETE_TOLERANCE`` (issue 20: 1.2x).

    Kept as counts in bins of relative width ``MEDIAN_BIN``, so its memory does not grow however long a person is
    tracked; :meth:`median` returns the upper edge of the bin of the lower middle sample: never below it, never more
    than ``MEDIAN_BIN`` above the exact median. Immutable (:meth:`added` returns a new one): a fuser's snapshot keeps
    it as it was without a copy.
    """

    def __init__(self, num_bones: int, counts: np.ndarray | None = None):
        self.counts = np.zeros((num_bones, len(_EDGES)), dtype=np.int32) if counts is None else counts  # [B, bins]

    @staticmethod
    def _bins(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The bones with a sample in ``lengths [B]`` (finite, > 0) and the bin of each."""
        bones = np.flatnonzero(np.isfinite(lengths) & (lengths > 0))
        return bones, np.minimum(np.searchsorted(_EDGES, lengths[bones]), len(_EDGES) - 1)

    def added(self, lengths: np.ndarray) -> LengthMedian:
        """A new estimate with one frame's observed ``lengths [B]`` (NaN: not observed) counted as well."""
        bones, bins = self._bins(lengths)
        if not len(bones):
            return self
        counts = self.counts.copy()
        counts[bones, bins] += 1
        return LengthMedian(len(counts), counts)

    def permuted(self, order: np.ndarray) -> LengthMedian:
        """The estimate with its bones in ``order [B]`` (left and right exchanged)."""
        return LengthMedian(len(order), self.counts[order])

    def median(self, extra: np.ndarray | None = None) -> np.ndarray:
        """``[B]`` the median length (m) of each bone over the frames counted and ``extra [B]`` (this frame's
        observed lengths, NaN: none); NaN for a bone with no sample."""
        counts = self.counts
        if extra is not None:
            bones, bins = self._bins(extra)
            if len(bones):
                counts = counts.copy()
                counts[bones, bins] += 1
        cumulative = np.cumsum(counts, axis=1)
        total = cumulative[:, -1]
        lower_middle = np.argmax(cumulative > ((total - 1) // 2)[:, None], axis=1)
        return np.where(total > 0, _EDGES[lower_middle], np.nan)


def length_medians(medians: Sequence[LengthMedian]) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`decide_output`'s ``observed`` for people whose estimates are ``medians`` (one per row)."""
    return lambda now: np.stack([median.median(row) for median, row in zip(medians, now)])


def slide(window: np.ndarray, row: np.ndarray, size: int) -> np.ndarray:
    """``window [n, B]`` with ``row [B]`` appended and only its last ``size`` rows kept."""
    window = np.concatenate([window, row[None]])
    return window[max(len(window) - size, 0):]


DEMOTE_ROUNDS = 3
"""Rounds of rule 5 that give up, for each joint it could not place, the least certain output joint next to it."""


def _demote_neighbours(output: FusionResult, missing: np.ndarray, skeleton: Skeleton) -> FusionResult:
    """``output [N, J]`` without, for each ``missing [N, J]`` joint, its seen bone neighbour (confidence > 0: the
    filled ones move in rule 5's retry anyway) of largest variance."""
    keep = np.isfinite(output.joints).all(-1)
    seen = keep & (output.confidence > 0)
    spread = np.nan_to_num(np.trace(output.covariance, axis1=-2, axis2=-1), nan=np.inf)
    neighbours = _neighbours(skeleton.bones, skeleton.num_joints)
    for n, j in zip(*np.nonzero(missing)):
        around = [other for other, _ in neighbours[j] if seen[n, other]]
        if around:
            keep[n, max(around, key=lambda other: spread[n, other])] = False
    return _masked(output, output.joints, keep)


def _take_offer(output: FusionResult, offered: FusionResult | None, bones: np.ndarray, lengths: np.ndarray | None,
                tolerance: np.ndarray | None, widen: float | None = None) -> FusionResult:
    """``output`` with the ``offered`` joints it lacks (confidence 0), held to ``lengths`` (``None``: not held) with
    its own joints fixed; an offered joint that cannot be brought into the band is withdrawn (rule 3), or, with
    ``widen``, tried once more within that wider band (a fraction of the length) before it is. In that retry the
    joints earlier offers placed (confidence 0) may move, each keeping every bone of theirs in the band it is in (the
    wider one only for a bone of a retried joint)."""
    if offered is None:
        return output
    new = ~np.isfinite(output.joints).all(-1) & np.isfinite(offered.joints).all(-1)
    if not new.any():
        return output
    merged = np.where(new[..., None], offered.joints, output.joints)
    if lengths is not None:
        wanted = new
        merged, new = _hold_offered(merged, new, bones, lengths, tolerance)
        retry = wanted & ~new
        if widen is not None and retry.any():
            # The joints taken stay as held; the withdrawn ones start again from where they were offered, and the
            # joints that earlier offers placed (confidence 0: not seen) may move with them.
            placed = np.isfinite(output.joints).all(-1) & (output.confidence <= 0)
            again = np.where(retry[..., None], offered.joints, merged)
            band = _retry_band(again, retry, bones, lengths, tolerance, widen)
            held, taken = _hold_offered(again, retry | placed, bones, lengths, band, RETRY_ITERATIONS)
            # A row where a placed joint would end outside its band (the retried ones pull it further than its
            # other bones allow) tries again with it fixed.
            stuck = (placed & ~taken).any(-1)
            if stuck.any():
                fixed, kept = _hold_offered(again, retry, bones, lengths, band, RETRY_ITERATIONS)
                held = np.where(stuck[:, None, None], fixed, held)
                taken = np.where(stuck[:, None], kept, taken)
            taken &= retry
            merged = np.where((taken | placed)[..., None], held, merged)
            new = new | taken
            output = replace(output, joints=np.where(placed[..., None], held, output.joints))
    offered = _masked(offered, merged, new)
    return _where(new, replace(offered, confidence=np.zeros_like(offered.confidence)), output)


def _retry_band(joints: np.ndarray, retry: np.ndarray, bones: np.ndarray, lengths: np.ndarray,
                tolerance: np.ndarray, widen: float) -> np.ndarray:
    """The band ``[N, B]`` of :func:`_take_offer`'s widened retry: ``widen`` (at least ``tolerance``) for a bone with a
    ``retry [N, J]`` end; for any other bone of ``joints [N, J, 3]``, the band it is in now (``tolerance``, or up to
    ``widen`` for one an earlier retry stretched), so that no joint placed earlier leaves its own."""
    tolerance = np.broadcast_to(tolerance, lengths.shape)
    offset = joints[..., bones[:, 0], :] - joints[..., bones[:, 1], :]
    with np.errstate(invalid="ignore", divide="ignore"):
        now = np.abs(np.sqrt((offset * offset).sum(-1)) / lengths - 1.0)  # NaN: a missing end
    kept = np.fmax(tolerance, np.fmin(now, widen))  # fmax: NaN -> tolerance
    return np.where(retry[:, bones[:, 0]] | retry[:, bones[:, 1]], np.fmax(tolerance, widen), kept)


def _hold_offered(joints: np.ndarray, offered: np.ndarray, bones: np.ndarray, lengths: np.ndarray,
                  tolerance: np.ndarray, iterations: int = HOLD_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """``joints [N, J, 3]`` held to the band with only the ``offered [N, J]`` ones free, and which of those are kept:
    none that ends a bone still outside the band."""
    held = hold_bone_lengths(joints, np.where(offered, np.inf, 0.0), bones, lengths, tolerance, iterations)
    broken = np.nan_to_num(bone_violation(held, bones, lengths, tolerance * (1 + HOLD_SLACK))) > 0  # [N, B]
    kept = offered.copy()
    for b, (first, second) in enumerate(bones):
        kept[:, first] &= ~broken[:, b]
        kept[:, second] &= ~broken[:, b]
    return held, kept


PLAUSIBLE_FACTOR = 1.6
"""A bone length more than this factor from the rest pose's, scaled to the person (:func:`person_scale`), is not one
a body has: a fill does not use it (:func:`plausible_lengths`). Nor is a person scale more than this factor from the
rest pose's own (an adult's, in metres)."""


def person_scale(skeleton: Skeleton, lengths: np.ndarray) -> np.ndarray:
    """``[...]``: the person's size over the rest pose's from their bone ``lengths [..., B]`` (m; NaN = unknown): the
    median ratio over the bones whose ratio a body can have (within ``PLAUSIBLE_FACTOR`` of 1); 1 where none has.

    Not the median over all bones: a new person's window may hold more wrong triangulations than right ones (on
    the narrow robot rig, 3 of 5 bones at 5-7x), and a fill scaled by them would place limbs metres out."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = lengths / _rest_lengths(skeleton)
        body = np.abs(np.log(ratio)) <= np.log(PLAUSIBLE_FACTOR)  # NaN, 0 and negative ratios: not
    rows = np.where(body, ratio, np.nan).reshape(-1, ratio.shape[-1])
    return np.nan_to_num(column_nanmedian(rows.T), nan=1.0).reshape(ratio.shape[:-1])


def plausible_lengths(skeleton: Skeleton, lengths: np.ndarray) -> np.ndarray:
    """``[..., B]``: which of the person's bone ``lengths [..., B]`` are within ``PLAUSIBLE_FACTOR`` of the rest pose's
    lengths scaled to them (:func:`person_scale`; a bone the rest pose does not know, or NaN, is not)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = lengths / (_rest_lengths(skeleton) * person_scale(skeleton, lengths)[..., None])
        return np.abs(np.log(ratio)) <= np.log(PLAUSIBLE_FACTOR)


@functools.lru_cache(maxsize=16)
def _rest_lengths(skeleton: Skeleton) -> np.ndarray:
    """The rest pose's bone lengths ``[B]`` (NaN for a bone with a joint it does not know)."""
    rest = rest_pose(skeleton)
    bones = skeleton.bone_array
    return np.linalg.norm(rest[bones[:, 0]] - rest[bones[:, 1]], axis=-1)


COMPLETE_TOLERANCE = 0.15
"""A filled joint that the bone band cannot hold (its placed neighbours further apart than the bones between them
allow: a wrong detection that views agreed on) may stretch its bones this far (a fraction of the person's length
estimate, their median: with ``MEDIAN_BIN`` and ``HOLD_SLACK``, under the 1.2x of issue 20's bound)."""
UNANCHORED_SIGMA = 0.3
"""Standard deviation (m) given to a filled joint that no bone ties to a placed joint (placed by the whole pose)."""


Snap = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""Given placed joints ``[N, J, 3]``, which of them to try ``[N, J]`` and their variances ``[N, J]`` (m^2), the joints
moved onto a view's ray where one passes close enough (what :func:`complete_offer` asks the views)."""


def complete_offer(skeleton: Skeleton, recent: np.ndarray | None = None, sequential: bool = False,
                   snap: Snap | None = None) -> Fill:
    """Rule 5's offer: every joint of ``[N, J]`` that the output lacks, in rows with some joint output, placed by
    :func:`complete_pose` with the bone lengths it is given ``[N, B]`` (NaN = unknown) and the person's
    recent pose ``recent [N, J, 3]`` (NaN = none), then, where ``snap`` is given, onto the ray of a view that sees it
    near there. Its variance is that of a joint anywhere at its bone's length from its anchor (the anchor's variance
    added), isotropic.

    ``sequential``: the rows are the frames of one person in order (offline): each frame's recent pose is the frame
    before it, once completed; a joint unseen from the start of a run of frames is placed from the first frame that
    has it, backwards (a later frame knows it better than the rest pose)."""
    def offer(output: FusionResult, lengths: np.ndarray) -> FusionResult | None:
        joints = output.joints
        present = np.isfinite(joints).all(-1)
        rows = present.any(-1) & ~present.all(-1)
        if not rows.any():
            return None
        bone_lengths = np.broadcast_to(lengths, joints.shape[:-2] + (len(skeleton.bones),))
        filled = joints.copy()
        variance = np.full(present.shape, np.nan)
        if sequential:
            _complete_sequence(skeleton, joints, present, bone_lengths, filled, variance)
        else:
            for n in np.flatnonzero(rows):
                reference = None if recent is None else recent[n]
                filled[n], variance[n] = complete_pose(skeleton, joints[n], bone_lengths[n], reference)
        new = ~present & np.isfinite(filled).all(-1) & present.any(-1, keepdims=True)
        if snap is not None:
            filled = snap(filled, new, variance)
        return FusionResult(
            joints=np.where(new[..., None], filled, np.nan), confidence=np.zeros(new.shape, dtype=np.float32),
            covariance=np.where(new[..., None, None], variance[..., None, None] * np.eye(3), np.nan),
            num_views=np.zeros(new.shape, dtype=np.uint8),
            reprojection_error=np.full(new.shape, np.nan, dtype=np.float32), joint_names=output.joint_names)

    return offer


def _complete_sequence(skeleton: Skeleton, joints: np.ndarray, present: np.ndarray, lengths: np.ndarray,
                       filled: np.ndarray, variance: np.ndarray) -> None:
    """:func:`complete_offer`'s ``sequential`` fill of ``joints [F, J, 3]`` into ``filled`` and ``variance``."""
    alive = present.any(-1)
    # Unseen since the start of the frame's run of frames (a frame with no joint, or the first, starts a run).
    since_start = np.zeros_like(present)
    for f in np.flatnonzero(alive):
        previous = filled[f - 1] if f > 0 and alive[f - 1] else None
        filled[f], variance[f] = complete_pose(skeleton, joints[f], lengths[f], previous)
        since_start[f] = ~present[f] & (since_start[f - 1] if previous is not None else True)
    for f in np.flatnonzero(alive)[::-1]:
        if f + 1 < len(alive) and alive[f + 1] and since_start[f].any():
            redo = since_start[f]
            again, spread = complete_pose(skeleton, np.where(redo[:, None], np.nan, filled[f]), lengths[f],
                                          filled[f + 1])
            filled[f, redo], variance[f, redo] = again[redo], spread[redo]


def _aligned(reference: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The rigid motion ``(R [3, 3], t [3])`` taking ``reference [J, 3]`` onto ``joints [J, 3]`` over the joints both
    have (least squares; fewer than three, or in a line: a translation alone); ``None`` when they share none."""
    common = np.isfinite(reference).all(-1) & np.isfinite(joints).all(-1)
    if not common.any():
        return None
    source, target = reference[common], joints[common]
    source_mean, target_mean = source.mean(0), target.mean(0)
    rotation = np.eye(3)
    if len(source) >= 3:
        u, singular, vt = np.linalg.svd((source - source_mean).T @ (target - target_mean))
        if singular[1] > 1e-6 * max(singular[0], 1e-12):
            d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
            rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, target_mean - rotation @ source_mean


@functools.lru_cache(maxsize=16)
def _neighbours(bones: tuple[tuple[int, int], ...], num_joints: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per joint, its ``(neighbour, bone)`` pairs."""
    pairs: list[list[tuple[int, int]]] = [[] for _ in range(num_joints)]
    for b, (first, second) in enumerate(bones):
        pairs[first].append((second, b))
        pairs[second].append((first, b))
    return tuple(tuple(p) for p in pairs)


def complete_pose(skeleton: Skeleton, joints: np.ndarray, lengths: np.ndarray, recent: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One person's ``joints [J, 3]`` (NaN = missing) with every missing joint placed, and each placed joint's
    variance ``[J]`` (m^2, 0 for the given ones).

    References: the person's ``recent [J, 3]`` pose (NaN = unknown), then the rest pose (``skeleton/human.py``)
    scaled to the person's ``lengths [B]``, each turned and moved onto the given joints (least squares). Missing
    joints are placed outwards from the given ones, layer by layer: at its bone's length (the reference's where the
    person's is unknown) from each placed neighbour, along the reference's direction of that bone; the mean of those
    places. A joint no bone ties to a placed one (coco17's face with no face joint seen) takes the aligned
    reference's position; one no reference knows, the mean of its placed neighbours (or of the person)."""
    present = np.isfinite(joints).all(-1)
    out = joints.copy()
    variance = np.zeros(len(joints))
    if present.all() or not present.any():
        return out, variance
    references = [rest_pose(skeleton) * float(person_scale(skeleton, lengths))]
    # A length far from what the scaled rest pose has is not trusted (a new person's window of a few wrong
    # triangulations): the reference's length is used instead.
    lengths = np.where(plausible_lengths(skeleton, lengths), lengths, np.nan)
    if recent is not None:
        references.insert(0, recent)
    moves = [(reference, _aligned(reference, joints)) for reference in references]
    moves = [(reference, move) for reference, move in moves if move is not None]
    neighbours = _neighbours(skeleton.bones, skeleton.num_joints)
    placed = present.copy()
    while True:
        layer: dict[int, tuple[np.ndarray, float]] = {}
        for j in np.flatnonzero(~placed):
            places, spreads = [], []
            for other, b in neighbours[j]:
                if not placed[other]:
                    continue
                for reference, (rotation, _) in moves:
                    offset = rotation @ (reference[j] - reference[other])
                    norm = float(np.linalg.norm(offset))
                    if np.isfinite(norm) and norm > 1e-9:
                        length = float(lengths[b]) if np.isfinite(lengths[b]) else norm
                        places.append(out[other] + offset * (length / norm))
                        spreads.append(length**2 + variance[other])
                        break
            if places:
                layer[j] = (np.mean(places, axis=0), float(np.mean(spreads)))
        if not layer:
            break
        for j, (position, spread) in layer.items():
            out[j], variance[j], placed[j] = position, spread, True
    for j in np.flatnonzero(~placed):
        known = [rotation @ reference[j] + translation for reference, (rotation, translation) in moves
                 if np.isfinite(reference[j]).all()]
        anchors = [other for other, _ in neighbours[j] if placed[other]]
        out[j] = known[0] if known else out[anchors if anchors else placed].mean(axis=0)
        variance[j] = UNANCHORED_SIGMA**2
    return out, variance


def seen_joints(fused: FusionResult, min_views: int) -> FusionResult:
    """Rule 1: ``fused [N, J]`` with only the joints that at least ``min_views`` views agree with (NaN, confidence 0
    elsewhere), as fitted: what the streaming fuser predicts from and the tracker associates with."""
    return _masked(fused, fused.joints, np.isfinite(fused.joints).all(-1) & (fused.num_views >= min_views))


def withhold_unchecked(output: FusionResult, skeleton: Skeleton, known: np.ndarray,
                       keep_unchecked: bool = False) -> FusionResult:
    """Rule 4: ``output [N, J]`` without the joints none of whose bones has a known length (``known [N, B]`` or
    ``[B]``: enough samples yet); a joint of no bone at all stays. ``keep_unchecked`` (rule 5): those joints keep
    their position with confidence 0 instead."""
    if known.all():  # the usual frame
        return output
    bones = skeleton.bone_array
    incidence = np.zeros((len(bones), skeleton.num_joints))
    incidence[np.arange(len(bones)), bones[:, 0]] = 1.0
    incidence[np.arange(len(bones)), bones[:, 1]] = 1.0
    known = np.broadcast_to(known, output.joints.shape[:-2] + (len(bones),))
    keep = (known @ incidence > 0) | (incidence.sum(axis=0) == 0)
    if keep.all():
        return output
    if keep_unchecked:
        return replace(output, confidence=np.where(keep, output.confidence, 0.0).astype(np.float32))
    return _masked(output, output.joints, keep & np.isfinite(output.joints).all(-1))


def _where(pick: np.ndarray, chosen: FusionResult, other: FusionResult) -> FusionResult:
    """Per joint ``pick [N, J]``, every field from ``chosen``, else from ``other``."""
    return FusionResult(
        joints=np.where(pick[..., None], chosen.joints, other.joints),
        confidence=np.where(pick, chosen.confidence, other.confidence).astype(np.float32),
        covariance=np.where(pick[..., None, None], chosen.covariance, other.covariance),
        num_views=np.where(pick, chosen.num_views, other.num_views).astype(np.uint8),
        reprojection_error=np.where(pick, chosen.reprojection_error, other.reprojection_error).astype(np.float32),
        joint_names=other.joint_names,
    )


def _masked(fused: FusionResult, joints: np.ndarray, keep: np.ndarray) -> FusionResult:
    """``fused`` with ``joints`` where ``keep [N, J]``, NaN and confidence 0 elsewhere."""
    if keep.all() and joints is fused.joints:
        return fused
    return FusionResult(
        joints=np.where(keep[..., None], joints, np.nan),
        confidence=np.where(keep, fused.confidence, 0.0).astype(np.float32),
        covariance=np.where(keep[..., None, None], fused.covariance, np.nan),
        num_views=np.where(keep, fused.num_views, 0).astype(np.uint8),
        reprojection_error=np.where(keep, fused.reprojection_error, np.nan).astype(np.float32),
        joint_names=fused.joint_names,
    )
