"""Streaming multi-person tracking: detections of every view, in any order and without ids, to 3D people with
stable track ids, each fused by SkelSplat.

One :meth:`MultiPersonTracker.step` per synchronized set of views:

1. **Predict** each live track's joints at the new stamp (constant velocity, the track's own
   :class:`~skelsplat_ros.fusion.streaming.StreamingFuser`); a track the extrapolation moved far (after a gap) is
   also matched as it was last seen, whichever fits better (a person who stopped while unseen).
2. **Match** every view's detections to the tracks: the cost of a (track, detection) pair is the confidence-weighted
   mean over joints of the distance from the predicted 3D joint to the detection's back-projected ray (metres, capped
   per joint so that one wrong joint cannot veto a person), gated, one detection per track per view (Hungarian per
   view). A detection whose left/right mirror fits much better is mirrored first (a detector's left/right swap);
   when most of a track's views are so, the track is what is mirrored (it started from views that disagreed).
3. **Refit** every track that got at least two views with its own fuser, warm-started from its prediction with its
   own bone lengths (nothing is shared between tracks). A track matched in one view only is not refitted: one view
   cannot fix depth, and its detection stays claimed so that it starts nobody else. A confirmed one is still output
   for ``single_view_for`` after its last refit, on that view's rays at the depth of its motion (confidence 0, a
   covariance wide along the rays), unless a refitted track is on the same person.
4. **Start** tentative tracks from what no track claimed: pairs of detections in different views scored by the mean
   ray-to-ray distance of their joints, clustered greedily with complete linkage (every pair inside a cluster agrees,
   at most one detection per view: cycle-consistent), clusters of at least two views fused and kept when the fit
   estimates enough joints. A detection seen by one view only never starts a track.
5. **Life cycle**: a tentative track is confirmed after ``confirm_frames`` refits by the views that should see it
   (at once when its first fit has ``confirm_views`` views agreeing, or views that agree closely on a body with
   matching left and right limbs, standing on the confirmed people's floor: ``confirm_tight_births``), or after ``partial_confirm_frames`` refits
   whose views agree closely when the others are blocked, and dropped when it misses ``tentative_timeout``; a
   confirmed track ends after ``delete_after`` seconds unseen. Two tracks that converge on the same person keep the
   older id. Ids are never reused.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..fusion.config import FusionConfig
from ..fusion.output import hold_bone_lengths
from ..fusion.result import FusionResult, bone_lengths_of, checked_stamp
from ..fusion.streaming import FrameFit, StreamingFuser, step_together
from ..geometry.camera import CameraRig, ray_directions
from ..geometry.triangulation import project_pinhole, valid_observations
from ..skeleton.models import Skeleton
from .association import pair_costs, track_costs


@dataclass(frozen=True)
class TrackerConfig:
    """Gates and life times of :class:`MultiPersonTracker`. Distances are in world units (metres), times in seconds.

    Attributes:
        match_gate: a detection joins a track only when the mean distance of the track's predicted joints to the
            detection's rays is at most this.
        joint_clip: per-joint cap of those distances (a mislabelled or occluded joint costs at most this).
        swap_ratio: a detection is mirrored left/right when its mirror's cost is below this fraction of its own.
        cluster_gate: two unclaimed detections in different views may be the same person when the mean distance
            between their joints' rays is at most this.
        min_common_joints: joints two things must share (both seen) to be compared at all.
        min_detection_joints: detections with fewer joints above ``min_confidence`` are ignored (counted unassigned).
        min_confidence: keypoints below this confidence are ignored by the association (the fit still weighs them).
        min_views: views a track needs in a frame to be refitted and published.
        min_fitted_joints: a new track must have at least this many joints estimated by its first fit.
        confirm_frames: refits that confirm a tentative track (it is published from then on).
        confirm_views: a new track whose first fit agrees across at least this many views is confirmed at once (a
            false person consistent in three views is far less likely than a ghost in one; every frame a real
            person waits unpublished is lost). A refit counts towards confirmation only when the track was seen by
            this many views, or by every view it projects into when fewer do (two ghosts in two views can agree by
            chance; a real person is usually seen by the other views too).
        partial_confirm_frames: a tentative track seen by fewer views than that (the other views that face it blocked:
            a shelf, a door frame, another person) is confirmed after this many refits in which its views agree as
            one person's do (every pair within ``partial_gate``, ``min_fitted_joints`` joints estimated). Two
            ghosts that agree by chance in one frame rarely go on agreeing, and moving as one body (each refit is
            matched to the track's prediction), for this many frames.
        partial_gate: the mean ray-to-ray distance every pair of views must keep for such a refit to count: tighter
            than ``cluster_gate``, because the views that do not see the person cannot vote (two views with cameras
            at similar heights hardly constrain a horizontal offset, so two different people can meet the start's
            gate).
        confirm_tight_births: a new track whose first fit would count towards ``partial_confirm_frames`` (every pair
            of its views within ``partial_gate``, ``min_fitted_joints`` joints estimated), whose left and right
            bones agree (within ``birth_symmetry``) and who stands on the floor the confirmed people stand on
            (``birth_floor_gate``) is confirmed at once, whatever the number of its views: a person whom two
            cameras see well is published from their first frame (the real Pose2Sim take: a man whose covered face
            two of the four cameras that face him do not detect at first). A start that only meets ``cluster_gate``
            (two people's detections crossing, a mismatched pair) waits as before, and so does one with nobody
            confirmed to compare with: two views alone cannot tell a person from two ghosts (say one view's
            reflection and another's poster) whose rays happen to meet, and such a pair meets as a body smaller or
            larger than the ghosts' and floating above the floor or sunk below it.
        birth_symmetry: the most a bone between two left joints may exceed its right twin (ratio, both estimated; at
            least two such pairs estimated) for ``confirm_tight_births``: a pair of views that mixes up joints or
            people rarely gives both arms and both legs the same lengths.
        birth_floor_gate: for ``confirm_tight_births``, the lower ankle of the new track must be within this
            distance of the confirmed people's lower ankles (median), measured along their hips-over-ankles
            direction (up). A stance foot is on the floor, so walking hardly moves it.
        tentative_timeout: a tentative track unseen for longer than this is dropped.
        delete_after: a confirmed track unseen for longer than this ends.
        single_view_for: a confirmed track that only one view sees (the others lost or never detected the person)
            is still output for this long after its last refit: each joint that view sees on its ray, at the
            depth the track's motion predicts, held to the person's bone lengths, with confidence 0 (0 = never).
            Such a frame never starts a track nor refits one: one view cannot fix depth, so it does not move the
            track's state beyond the held prediction the next frame is matched to.
        single_view_pixel_sigma: standard deviation (px) of such a joint across the ray: the detector's noise in
            one view, which no second view averages, and the bone lengths' pull off the ray.
        single_view_depth_sigma: standard deviation along the ray of such a joint at its last refit (the depth
            the prediction gives is that good at best).
        single_view_speed: how fast (m/s) that standard deviation grows while no second view fixes the depth (a
            person walking along the ray).
        max_extrapolation: the constant-velocity prediction extrapolates at most this long past the last refit.
        duplicate_distance: two tracks whose joints are closer than this (mean over shared joints) are one person.
        max_people_per_view: detections per view beyond this are dropped (the least confident first) and counted.
    """

    match_gate: float = 0.2
    joint_clip: float = 0.5
    swap_ratio: float = 0.6
    cluster_gate: float = 0.1
    min_common_joints: int = 4
    min_detection_joints: int = 4
    min_confidence: float = 0.1
    min_views: int = 2
    min_fitted_joints: int = 6
    confirm_frames: int = 3
    confirm_views: int = 3
    partial_confirm_frames: int = 6
    partial_gate: float = 0.05
    confirm_tight_births: bool = True
    birth_symmetry: float = 1.3
    birth_floor_gate: float = 0.2
    tentative_timeout: float = 0.2
    delete_after: float = 1.0
    single_view_for: float = 1.0
    single_view_pixel_sigma: float = 9.0
    single_view_depth_sigma: float = 0.1
    single_view_speed: float = 0.5
    max_extrapolation: float = 0.3
    duplicate_distance: float = 0.15
    max_people_per_view: int = 20

    def __post_init__(self) -> None:
        if self.min_views < 2:
            raise ValueError("TrackerConfig.min_views must be at least 2: one view cannot fix depth")
        if self.confirm_frames < 1 or self.max_people_per_view < 1:
            raise ValueError("TrackerConfig.confirm_frames and max_people_per_view must be at least 1")
        if self.partial_confirm_frames < self.confirm_frames:
            raise ValueError("TrackerConfig.partial_confirm_frames must be at least confirm_frames")
        for name in ("match_gate", "joint_clip", "cluster_gate", "partial_gate", "delete_after", "tentative_timeout",
                     "birth_floor_gate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrackerConfig.{name} must be positive")
        for name in ("min_confidence", "max_extrapolation", "duplicate_distance", "single_view_for",
                     "single_view_pixel_sigma", "single_view_depth_sigma", "single_view_speed"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TrackerConfig.{name} must be at least 0")
        if not self.birth_symmetry >= 1:
            raise ValueError("TrackerConfig.birth_symmetry must be at least 1 (a ratio of two bones' lengths)")
        if not 0 <= self.swap_ratio <= 1:
            raise ValueError("TrackerConfig.swap_ratio must be within [0, 1] (0: never mirror a detection)")


def gated_assignment(cost: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairs ``(row, column)`` of ``cost [R, C]`` (inf = impossible) among those within
    ``gate``.

    A pair beyond the gate costs what leaving its row and column unmatched does (the gate itself): were it any
    larger, the assignment would give up one good pair for two gated-out ones that fill the matrix (Shelf: a track
    0.06 m from a detection lost it that way to the other tracks' 0.5 m and impossible pairs).
    """
    if cost.shape == (1, 1):  # one track, one detection (the usual frame): what the solver would return, faster
        return [(0, 0)] if cost[0, 0] <= gate else []
    rows, cols = linear_sum_assignment(np.minimum(cost, gate))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] <= gate]


@dataclass
class PersonEstimate:
    """One confirmed person in one frame.

    Attributes:
        track_id: the track's id (never reused).
        result: the fused joints, one frame (frame axis of length 1), like :meth:`StreamingFuser.step`.
        views: ``[V]`` index of the detection this person took in each view (-1 = none), in the step's input order.
    """

    track_id: int
    result: FusionResult
    views: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class TrackerStep:
    """What one :meth:`MultiPersonTracker.step` did.

    Attributes:
        people: confirmed tracks refitted this frame with at least one joint to output, by id (what gets published).
        tentative: tentative tracks alive after the step.
        confirmed: confirmed tracks alive after the step.
        ended: ids of confirmed tracks that ended at this step (unseen too long, merged into an older track, or
            a clock jump).
        unassigned: detections that no track took and no new track used.
        capped: detections dropped by ``max_people_per_view``.
        assignments: ``{track_id: keypoints [V, J, 3]}``: what every track refitted this step (tentative ones
            included) was fitted to, mirrored where a view's left/right labels were swapped, NaN rows for views it
            did not take; the offline pass builds per-track recordings from it.
        fits: a fit-only tracker's (``fit_only``): ``{track_id: (fit, views)}`` for every track refitted this step,
            tentative ones included: the fuser's :class:`~skelsplat_ros.fusion.streaming.FrameFit` (the data of the
            fixed-lag smoother, ``lagged.py``) and ``views [V]`` as :attr:`PersonEstimate.views`.
        mirrored: ids of the tracks whose state was mirrored this step (left and right exchanged).
    """

    people: list[PersonEstimate]
    tentative: int
    confirmed: int
    ended: list[int]
    unassigned: int
    capped: int
    assignments: dict[int, np.ndarray] = field(default_factory=dict)
    fits: dict[int, tuple[FrameFit, np.ndarray]] = field(default_factory=dict)
    mirrored: list[int] = field(default_factory=list)


@dataclass
class _Track:
    track_id: int
    fuser: StreamingFuser
    born: float
    last_seen: float
    joints: np.ndarray  # [J, 3] last fused joints (NaN = not estimated)
    hits: int = 1  # refits by the views that should see it (a new track's first fit included)
    agreeing: int = 1  # refits whose views agree with each other (the first fit's cluster does)
    confirmed: bool = False
    placed: np.ndarray | None = None  # [J, 3] the last single-view output since the last refit (NaN: not seen)


@dataclass
class _ViewDetections:
    """The usable detections of one view: keypoints ``[S, J, 3]`` as given, their rays and which joints count."""

    index: np.ndarray  # [S] row in the step's input
    keypoints: np.ndarray  # [S, J, 3]
    weight: np.ndarray  # [S, J] association weight (confidence, 0 = ignored)
    direction: np.ndarray  # [S, J, 3] unit rays in the world frame (NaN where unusable)


@dataclass
class _FrameDetections:
    """The usable detections of every view of one frame, view after view (``N`` in all), for association costs
    computed across views at once; ``views[v]`` is view ``v``'s share (slices of the same arrays)."""

    view: np.ndarray  # [N] view of each detection
    weight: np.ndarray  # [N, 2, J] association weight as labelled and mirrored (left/right exchanged)
    direction: np.ndarray  # [N, 2, J, 3] unit rays as labelled and mirrored
    bounds: np.ndarray  # [V + 1] view v's detections are rows bounds[v]:bounds[v + 1]
    views: list[_ViewDetections]


class MultiPersonTracker:
    """Causal multi-person tracking and fusion (see the module docstring); the API the ROS node calls.

    Args:
        rig: the calibrated cameras, in the order of ``step``'s ``detections``.
        skeleton: the joint layout of every detection.
        fusion: how each person is fused (a :class:`StreamingFuser` per track).
        config: gates and life times.
        fit_only: every track's fuser is fit-only (``StreamingFuser``): the people's joints are what the views saw,
            as fitted, and :attr:`TrackerStep.fits` carries each refit for the fixed-lag smoother (``lagged.py``).
        look_ahead: with ``fit_only``, for a smoother with look-ahead (``StreamingFuser``'s ``look_ahead``).
    """

    def __init__(self, rig: CameraRig, skeleton: Skeleton, fusion: FusionConfig, config: TrackerConfig = TrackerConfig(),
                 fit_only: bool = False, look_ahead: bool = False):
        self.rig = rig
        self.skeleton = skeleton
        self.fusion = fusion
        self.config = config
        self.fit_only, self.look_ahead = fit_only, look_ahead
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._last_stamp: float | None = None
        self._flip = skeleton.flip_permutation
        # [S, 2] a bone between two left joints (upper arm, forearm, thigh, ...) and its right twin. A bone from a
        # middle joint (pelvis to hip, thorax to shoulder) is short, its length hangs on where the fit put the middle.
        lateral = np.array([all(skeleton.joint_names[j].startswith("l_") for j in skeleton.bones[a])
                            for a, _ in skeleton.symmetric_bones], dtype=bool)
        self._limb_pairs = skeleton.symmetric_bones[lateral]
        names = list(skeleton.joint_names)
        self._ankles = [names.index(n) for n in ("l_ankle", "r_ankle") if n in names]
        self._hips = [names.index(n) for n in ("l_hip", "r_hip") if n in names]
        self._use_rig(rig)

    def _use_rig(self, rig: CameraRig) -> None:
        """The cameras of the coming association and fits (a moving rig is posed anew every frame)."""
        self.rig = rig
        self._sizes = rig.sizes  # [V, 2] (built anew on each access, unlike the rig's other arrays)
        self._distorted = [v for v, camera in enumerate(rig) if camera.has_distortion]

    # ------------------------------------------------------------------------------------------------------------
    def step(self, detections: list[np.ndarray], stamp: float, rig: CameraRig | None = None) -> TrackerStep:
        """Track one frame.

        Args:
            detections: ``detections[v]`` is ``[S_v, J, 3]`` (x px, y px, confidence; NaN or 0 = missing) for view
                ``v``, people in any order, ``S_v >= 0``.
            stamp: time in seconds. A stamp going backwards (bag loop, clock jump) ends every track.
            rig: the cameras where they were at ``stamp`` (moving cameras; same names and order); ``None`` = as
                before. Tracks live in world coordinates, so they carry over from one pose of the rig to the next.

        Raises:
            ValueError: for a non-finite stamp, a wrong number of views or a wrong shape, or a rig with other cameras.
        """
        stamp = checked_stamp(stamp)
        if rig is not None and rig is not self.rig:
            if rig.names != self.rig.names:
                raise ValueError(f"the frame's rig has cameras {rig.names}, the tracker {self.rig.names}")
            self._use_rig(rig)
        views = self._check(detections)
        config = self.config
        ended: list[int] = []
        if self._last_stamp is not None and stamp < self._last_stamp:
            ended += [t.track_id for t in self._tracks if t.confirmed]
            self._tracks = []
        self._last_stamp = stamp

        frame, capped, unassigned = self._usable(views)
        usable = frame.views

        # 1-2. Predict every track, match each view's detections to the predictions.
        predictions = np.stack([self._predict(t, stamp) for t in self._tracks]) if self._tracks else None
        num_views = len(self.rig)
        taken = [np.zeros(len(u.index), dtype=bool) for u in usable]
        chosen = np.full((len(self._tracks), num_views), -1, dtype=np.int64)  # slot in usable[v]
        mirrored = np.zeros((len(self._tracks), num_views), dtype=bool)
        if predictions is not None and len(frame.view):
            costs, flips = self._match_costs(frame, predictions)
            for v, view in enumerate(usable):
                if not len(view.index):
                    continue
                columns = slice(frame.bounds[v], frame.bounds[v + 1])
                cost, flip = costs[:, columns], flips[:, columns]
                for r, c in gated_assignment(cost, config.match_gate):
                    chosen[r, v], mirrored[r, v] = c, flip[r, c]
                    taken[v][c] = True

        # A track that most of its views see mirrored is itself the mirror image (it started from views that
        # disagreed on left and right): the views are right, so the track's state is mirrored, not them.
        matched = chosen >= 0
        count = matched.sum(axis=1)
        flipped: list[int] = []
        for k in np.flatnonzero((count >= config.min_views) & (2 * (mirrored & matched).sum(axis=1) > count)):
            track = self._tracks[k]
            track.fuser.mirror()
            track.joints = track.joints[self._flip]
            flipped.append(track.track_id)
            mirrored[k] = ~mirrored[k] & matched[k]

        # 3. Refit every track seen in enough views, all in one batch.
        refitted: dict[int, FusionResult] = {}
        assignments: dict[int, np.ndarray] = {}
        taken_rows: dict[int, np.ndarray] = {}
        ready = [k for k in range(len(self._tracks)) if (chosen[k] >= 0).sum() >= config.min_views]
        gathered = [self._gather(usable, chosen[k], mirrored[k]) for k in ready]
        before = [self._tracks[k].fuser.snapshot() for k in ready]
        fits = step_together([self._tracks[k].fuser for k in ready], self._stack(gathered), stamp, self.rig)
        for k, keypoints, result, state in zip(ready, gathered, fits, before):
            track = self._tracks[k]
            # What the views saw, as fitted (also the joints not output until the bone lengths are known). Views
            # that agree on too few joints (a detection of someone else, or of two people merged, within the gate)
            # do not refit the track: its fuser is put back as it was, or its next prediction would hold only
            # those few joints and the track could not be matched again (the person re-born under a new id).
            joints = track.fuser.estimate.joints[0]
            if np.isfinite(joints).all(-1).sum() < config.min_common_joints:
                track.fuser.restore(state)
                continue
            track.joints, track.last_seen, track.placed = joints, stamp, None
            # Two views can agree by chance (two ghosts); a hit counts only when the views that should see the
            # person (those it projects into) mostly do. Projecting is needed only when fewer than confirm_views saw it.
            # Otherwise (the other views blocked?) the refit counts towards partial_confirm_frames when its views
            # agree as one person's do.
            seen = (chosen[k] >= 0).sum()
            if seen >= config.confirm_views or seen >= self._views_facing(joints):
                track.hits += 1
                track.agreeing += 1
            elif not track.confirmed and self._consistent(frame, chosen[k], mirrored[k], track.fuser.estimate):
                track.agreeing += 1
            track.confirmed |= track.hits >= config.confirm_frames or track.agreeing >= config.partial_confirm_frames
            refitted[track.track_id] = result
            taken_rows[track.track_id] = self._rows(usable, chosen[k])
            assignments[track.track_id] = keypoints

        # 3b. A confirmed track that one view alone sees, shortly after its last refit, is output on that view's rays.
        single = self._single_view(usable, chosen, mirrored, refitted, stamp)
        for track_id, (_, slots) in single.items():
            taken_rows[track_id] = self._rows(usable, slots)

        # 4. New tentative tracks from what nobody claimed, fitted in one batch.
        clusters = self._clusters(frame, taken)
        slots = np.full((len(clusters), num_views), -1, dtype=np.int64)
        flips = np.zeros((len(clusters), num_views), dtype=bool)
        for c, cluster in enumerate(clusters):
            for v, s, flip in cluster:
                slots[c, v], flips[c, v] = s, flip
        gathered = [self._gather(usable, row, flip) for row, flip in zip(slots, flips)]
        fusers = [StreamingFuser(self.rig, self.skeleton, self.fusion, fit_only=self.fit_only,
                                  look_ahead=self.look_ahead) for _ in clusters]
        fits = step_together(fusers, self._stack(gathered), stamp, self.rig)
        for cluster, row, mirror, keypoints, fuser, result in zip(clusters, slots, flips, gathered, fusers, fits):
            joints = fuser.estimate.joints[0]
            if np.isfinite(joints).all(-1).sum() < config.min_fitted_joints:
                continue
            for v, s, _ in cluster:
                taken[v][s] = True
            strong = (fuser.estimate.num_views[0] >= config.confirm_views).sum() >= config.min_fitted_joints or (
                config.confirm_tight_births and self._symmetric(joints) and self._on_the_floor(joints)
                and self._consistent(frame, row, mirror, fuser.estimate))
            track = _Track(self._next_id, fuser, born=stamp, last_seen=stamp, joints=joints,
                           confirmed=config.confirm_frames <= 1 or strong)
            self._next_id += 1
            self._tracks.append(track)
            refitted[track.track_id] = result
            taken_rows[track.track_id] = self._rows(usable, row)
            assignments[track.track_id] = keypoints
        unassigned += int(sum((~t).sum() for t in taken))

        # 5. Life cycle: duplicates, then the unseen.
        ended += self._merge_duplicates(refitted)
        assignments = {k: a for k, a in assignments.items() if k in refitted}
        alive = []
        for track in self._tracks:
            unseen = stamp - track.last_seen
            if track.confirmed and unseen > config.delete_after:
                ended.append(track.track_id)
            elif not track.confirmed and unseen > config.tentative_timeout:
                continue
            else:
                alive.append(track)
        self._tracks = alive
        # A person none of whose joints may be output yet (bone lengths still unknown: fusion/output.py) is
        # tracked but not published.
        output = {**self._unshadowed(single, refitted), **refitted}
        people = [
            PersonEstimate(t.track_id, output[t.track_id], taken_rows[t.track_id])
            for t in sorted(self._tracks, key=lambda t: t.track_id)
            if t.confirmed and t.track_id in output and np.isfinite(output[t.track_id].joints).any()
        ]
        return TrackerStep(
            people=people,
            tentative=sum(not t.confirmed for t in self._tracks),
            confirmed=sum(t.confirmed for t in self._tracks),
            ended=sorted(ended),
            unassigned=unassigned,
            capped=capped,
            assignments=assignments,
            fits={t.track_id: (t.fuser.fit, taken_rows[t.track_id]) for t in self._tracks
                  if self.fit_only and t.track_id in refitted},
            mirrored=flipped,
        )

    # ------------------------------------------------------------------------------------------------------------
    def _check(self, detections: list[np.ndarray]) -> list[np.ndarray]:
        if len(detections) != len(self.rig):
            raise ValueError(f"detections cover {len(detections)} views, the rig has {len(self.rig)}")
        views = []
        for v, det in enumerate(detections):
            det = np.asarray(det, dtype=np.float64)
            if det.size == 0:
                det = det.reshape(0, self.skeleton.num_joints, 3)
            if det.ndim != 3 or det.shape[1:] != (self.skeleton.num_joints, 3):
                raise ValueError(
                    f"view {v}: detections must be [S, {self.skeleton.num_joints}, 3] for skeleton "
                    f"{self.skeleton.name!r}, got {list(det.shape)}"
                )
            views.append(det)
        return views

    def _usable(self, views: list[np.ndarray]) -> tuple[_FrameDetections, int, int]:
        """The usable detections of every view (``views[v]`` is ``[S_v, J, 3]``), how many the cap dropped and how
        many had too few joints. All views in one batch: per-view numpy calls cost more than the arithmetic at these
        sizes."""
        config, cap = self.config, self.config.max_people_per_view
        sizes = [len(d) for d in views]
        det = np.concatenate(views)  # [sum S_v, J, 3]
        of_view = np.repeat(np.arange(len(views)), sizes)
        valid = valid_observations(det, config.min_confidence)
        counts = valid.sum(axis=1)
        too_small = int(((counts > 0) & (counts < config.min_detection_joints)).sum())
        keep = counts >= config.min_detection_joints
        per_view = np.bincount(of_view[keep], minlength=len(views))
        for v in np.flatnonzero(per_view > cap):  # the least confident beyond the cap go
            mine = np.flatnonzero(keep & (of_view == v))
            strength = np.where(valid[mine], det[mine, :, 2], 0.0).sum(axis=1)
            keep[mine[np.argsort(-strength, kind="stable")[cap:]]] = False
        capped = int(np.maximum(per_view - cap, 0).sum())
        rows = np.flatnonzero(keep)
        view = of_view[rows]
        index = rows - (np.cumsum(sizes) - sizes)[view]
        keypoints, valid = det[rows], valid[rows]
        weight = np.where(valid, keypoints[..., 2], 0.0)
        uv = np.where(valid[..., None], keypoints[..., :2], np.nan)
        for v in self._distorted:
            uv[view == v] = self.rig[v].undistort_pixels(uv[view == v])
        direction = ray_directions(self.rig.back_projections[view][:, None], uv)  # [N, J, 3]
        bounds = np.searchsorted(view, np.arange(len(views) + 1))
        parts = [
            _ViewDetections(index[a:b], keypoints[a:b], weight[a:b], direction[a:b])
            for a, b in itertools.pairwise(bounds)
        ]
        flip = self._flip
        return (
            _FrameDetections(view, np.stack([weight, weight[:, flip]], 1), np.stack([direction, direction[:, flip]], 1),
                             bounds, parts),
            capped,
            too_small,
        )

    def _predict(self, track: _Track, stamp: float) -> np.ndarray:
        """Predicted joints ``[J, 3]`` (NaN = unknown), extrapolating at most ``max_extrapolation``; where one view
        alone saw the track since its last refit, its joints as output then (held: one view has no velocity)."""
        predicted = self._motion(track, stamp)
        if track.placed is not None:
            predicted = np.where(np.isfinite(track.placed), track.placed, predicted)
        return predicted

    def _motion(self, track: _Track, stamp: float, filtered: bool = False) -> np.ndarray:
        """The track's joints ``[J, 3]`` at ``stamp`` by the constant velocity of its last refits, extrapolating at
        most ``max_extrapolation`` (its last refit where there is no velocity; NaN = unknown); ``filtered``: by the
        depth filter's velocity where it follows a joint (``StreamingFuser.motion``)."""
        horizon = min(stamp, track.last_seen + self.config.max_extrapolation)
        predicted = (track.fuser.motion if filtered else track.fuser.predict)(horizon)
        return track.joints if predicted is None else predicted

    def _single_view(self, usable: list[_ViewDetections], chosen: np.ndarray, mirrored: np.ndarray,
                     refitted: dict[int, FusionResult], stamp: float) -> dict[int, tuple[FusionResult, np.ndarray]]:
        """The output of every confirmed track that only one view took this frame (``chosen [T, V]`` slots, -1 =
        none; ``mirrored [T, V]``), within ``single_view_for`` of its last refit: ``{track_id: (result, slots [V])}``.

        Each joint that view sees is put on its ray at the depth the track's motion predicts (:meth:`_motion`: the
        point of the ray nearest to it), then the bones are held to the person's lengths. The covariance is
        honest about what one view knows: the pixel noise across the ray, along it ``single_view_depth_sigma`` plus
        ``single_view_speed`` times the time since the last refit. Where the fuser's depth filter follows a joint,
        the output takes its filters' depth and velocity instead (``StreamingFuser.motion``), while the placement at
        the fits' motion becomes the track's held prediction
        (:meth:`_predict`), also past ``single_view_for`` (not output then, until the track ends ``delete_after``
        unseen), so that the track follows the person across the view; the fuser's state (its velocity, bone
        lengths) is untouched, so one view never moves the track's depth beyond that of the motion.
        """
        config, out = self.config, {}
        one = (chosen >= 0).sum(axis=1) == 1
        for k in np.flatnonzero(one):
            track = self._tracks[k]
            age = stamp - track.last_seen
            if not track.confirmed or track.track_id in refitted:
                continue
            v = int(np.flatnonzero(chosen[k] >= 0)[0])
            rays = usable[v].direction[chosen[k, v]]  # [J, 3], NaN where the joint is not usable
            if mirrored[k, v]:
                rays = rays[self._flip]
            centre = self.rig.centres[v]
            # Held for the association (matched to next: the view follows the person across, even when not output):
            # the motion of the fits, as the track's own prediction is.
            held = self._on_rays(track, centre, rays, self._motion(track, stamp))
            if held is None:
                continue
            track.placed = held
            # Output: where the depth filter follows a joint, at its filters' depth and velocity (two fits' velocity
            # along a depth the views barely fix is noise).
            placed = held if track.fuser.filter is None else \
                self._on_rays(track, centre, rays, self._motion(track, stamp, filtered=True))
            if age > config.single_view_for or placed is None:
                continue
            known = np.isfinite(placed).all(-1)
            offset = placed - centre
            distance = np.linalg.norm(offset, axis=-1)
            focal = float(self.rig.K[v, 0, 0])
            across = config.single_view_pixel_sigma * distance / focal  # [J] m
            along = config.single_view_depth_sigma + config.single_view_speed * age
            direction = np.where(known[:, None], offset / distance[:, None], np.nan)
            outer = direction[:, :, None] * direction[:, None, :]  # [J, 3, 3]
            covariance = across[:, None, None] ** 2 * (np.eye(3) - outer) + along**2 * outer
            error = focal * np.linalg.norm(np.cross(direction, rays), axis=-1)  # px off the ray after the hold
            result = FusionResult(
                joints=placed[None], confidence=np.zeros((1, len(placed)), dtype=np.float32),
                covariance=covariance[None], num_views=known[None].astype(np.uint8),
                reprojection_error=error[None].astype(np.float32), joint_names=list(self.skeleton.joint_names),
            )
            out[track.track_id] = (result, chosen[k])
        return out

    def _on_rays(self, track: _Track, centre: np.ndarray, rays: np.ndarray, prior: np.ndarray) -> np.ndarray | None:
        """The track's joints ``[J, 3]`` on one view's ``rays [J, 3]`` (from ``centre``) at the depths of ``prior``
        ``[J, 3]``, held to the person's bone lengths; NaN where either is unknown; ``None`` when fewer than
        ``min_common_joints`` are known."""
        depth = ((prior - centre) * rays).sum(-1)  # [J] (NaN where either is unknown)
        with np.errstate(invalid="ignore"):
            placed = np.where((depth > 0)[:, None], centre + depth[:, None] * rays, np.nan)
        if np.isfinite(placed).all(-1).sum() < self.config.min_common_joints:
            return None
        bones = track.fuser.bone_prior()
        if bones is not None:
            placed = hold_bone_lengths(placed[None], np.ones((1, len(placed))), self.skeleton.bone_array,
                                       bones.lengths[None], self.fusion.bone_tolerance)[0]
        return placed

    def _track_costs(self, frame: _FrameDetections, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cost ``[T, N]`` of each track taking each detection of the frame (every view's), and whether it takes it
        mirrored."""
        config = self.config
        cost = track_costs(predictions, self.rig.centres[frame.view], frame.direction, frame.weight, config.joint_clip,
                           config.min_common_joints)  # [T, N, 2]
        direct, flipped = cost[..., 0], cost[..., 1]
        flip = flipped < config.swap_ratio * direct
        return np.where(flip, flipped, direct), flip

    def _match_costs(self, frame: _FrameDetections, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_track_costs` of the tracks at their ``predictions [T, J, 3]``, and of those the extrapolation
        moved more than half the match gate (a gap, a slow frame rate) also as they were last seen, whichever fits
        a detection better: a person who stopped while unseen is where they were, not where the velocity of their
        last frames would have taken them."""
        last = np.stack([t.joints for t in self._tracks])
        shift = np.linalg.norm(predictions - last, axis=-1)  # [T, J], NaN where either is unknown
        with np.errstate(invalid="ignore", divide="ignore"):
            moved = ~(np.nansum(shift, -1) / np.isfinite(shift).sum(-1) <= self.config.match_gate / 2)  # NaN: moved
        if not moved.any():
            return self._track_costs(frame, predictions)
        costs, flips = self._track_costs(frame, np.concatenate([predictions, last[moved]]))
        held, held_flips = costs[len(predictions):], flips[len(predictions):]
        costs, flips = costs[:len(predictions)], flips[:len(predictions)]
        closer = held < costs[moved]
        costs[moved] = np.where(closer, held, costs[moved])
        flips[moved] = np.where(closer, held_flips, flips[moved])
        return costs, flips

    def _stack(self, keypoints: list[np.ndarray]) -> np.ndarray:
        """Per-person keypoints ``[V, J, 3]`` stacked ``[N, V, J, 3]`` (also when there are none)."""
        if keypoints:
            return np.stack(keypoints)
        return np.zeros((0, len(self.rig), self.skeleton.num_joints, 3))

    def _views_facing(self, joints: np.ndarray) -> int:
        """Views into whose image most of the estimated ``joints [J, 3]`` project (in front of the camera)."""
        known = np.isfinite(joints).all(-1)
        uv = project_pinhole(self.rig, joints[known])  # [V, K, 2]
        with np.errstate(invalid="ignore"):
            inside = np.isfinite(uv).all(-1) & (uv >= 0).all(-1) & (uv < self._sizes[:, None]).all(-1)
        return int((inside.mean(axis=1) > 0.5).sum()) if known.any() else 0

    def _consistent(self, frame: _FrameDetections, slots: np.ndarray, mirrored: np.ndarray,
                    result: FusionResult) -> bool:
        """Whether a refit ``result`` from the detections a track took (``slots [V]``, -1 = none; ``mirrored [V]``)
        looks like one person: the fit estimates ``min_fitted_joints`` joints and every pair of the detections, as
        the track took them, meets within ``partial_gate``."""
        if (result.confidence[0] > 0).sum() < self.config.min_fitted_joints:
            return False
        view = np.flatnonzero(slots >= 0)
        rows, side = frame.bounds[view] + slots[view], mirrored[view].astype(np.int64)
        plain, _ = pair_costs(self.rig.centres[view], view, frame.direction[rows, side], frame.weight[rows, side],
                              self._flip, self.config.joint_clip, self.config.min_common_joints)
        return bool((plain[~np.eye(len(view), dtype=bool)] <= self.config.partial_gate).all())

    def _symmetric(self, joints: np.ndarray) -> bool:
        """Whether the left and right bones of ``joints [J, 3]`` (NaN = not estimated) agree: at least two
        left/right pairs of bones both estimated, each bone at most ``birth_symmetry`` times its mirror's length."""
        lengths = bone_lengths_of(joints, self.skeleton)[self._limb_pairs]  # [S, 2]
        lengths = lengths[np.isfinite(lengths).all(-1)]
        return len(lengths) >= 2 and bool((lengths.max(-1) <= self.config.birth_symmetry * lengths.min(-1)).all())

    def _on_the_floor(self, joints: np.ndarray) -> bool:
        """Whether the lower ankle of ``joints [J, 3]`` is within ``birth_floor_gate`` of the confirmed people's lower
        ankles (median), along their mean hips-over-ankles direction; ``False`` without ankles, hips or anyone
        confirmed with both."""
        if len(self._ankles) != 2 or len(self._hips) != 2:
            return False
        people = np.stack([t.joints for t in self._tracks if t.confirmed] or [np.full_like(joints, np.nan)])
        people = people[np.isfinite(people[:, self._ankles + self._hips]).all(axis=(1, 2))]  # [P, J, 3]
        if not len(people) or not np.isfinite(joints[self._ankles]).all(-1).any():
            return False
        up = (people[:, self._hips].mean(1) - people[:, self._ankles].mean(1)).sum(0)
        up /= np.linalg.norm(up)
        floor = np.median((people[:, self._ankles] @ up).min(axis=1))
        return bool(abs(np.nanmin(joints[self._ankles] @ up) - floor) <= self.config.birth_floor_gate)

    @staticmethod
    def _rows(usable: list[_ViewDetections], slots: np.ndarray) -> np.ndarray:
        """Input row per view ``[V]`` of the chosen slots (-1 = none)."""
        return np.array([usable[v].index[s] if s >= 0 else -1 for v, s in enumerate(slots)], dtype=np.int64)

    def _gather(self, usable: list[_ViewDetections], slots: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
        """Keypoints ``[V, J, 3]`` of one person from its chosen slot per view (-1 = NaN row)."""
        keypoints = np.full((len(self.rig), self.skeleton.num_joints, 3), np.nan)
        keypoints[..., 2] = 0.0
        for v, slot in enumerate(slots):
            if slot >= 0:
                row = usable[v].keypoints[slot]
                keypoints[v] = row[self._flip] if mirrored[v] else row
        return keypoints

    def _clusters(self, frame: _FrameDetections, taken: list[np.ndarray]) -> list[list[tuple[int, int, bool]]]:
        """Cycle-consistent groups of unclaimed detections across views, ``[(view, slot, mirrored), ...]``, best
        first. A detection whose left/right labels disagree with most of its group's is mirrored (the detector
        swapped them in that view)."""
        free = np.flatnonzero(~np.concatenate(taken))  # rows of the frame, view after view
        if len(free) < 2:  # the usual frame: every detection claimed
            return []
        config, view = self.config, frame.view[free]
        plain, crossed = pair_costs(self.rig.centres[view], view, frame.direction[free, 0], frame.weight[free, 0],
                                    self._flip, config.joint_clip, config.min_common_joints)  # [N, N] each
        affinity = np.where(crossed < config.swap_ratio * plain, crossed, plain)
        # Complete linkage: merge the closest pair of clusters whose every cross pair is within the gate and whose
        # views do not overlap. joinable[a, b] says so of clusters a and b (a cluster is known by the index of the
        # detection it started from): two detections of one view are never within the gate, so merging b into a
        # and keeping the pairs both allowed keeps it true.
        joinable = affinity <= config.cluster_gate
        first, second = np.nonzero(np.triu(joinable, 1))
        order = np.argsort(affinity[first, second], kind="stable")
        members = [[k] for k in range(len(free))]
        label = list(range(len(free)))
        for i, j in zip(first[order].tolist(), second[order].tolist()):
            a, b = label[i], label[j]
            if a == b or not joinable[a, b]:
                continue
            for k in members[b]:
                label[k] = a
            members[a].extend(members[b])
            members[b] = []
            joinable[a] &= joinable[b]
            joinable[:, a] = joinable[a]
        groups = [c for c in members if len(c) >= config.min_views]
        groups.sort(key=lambda c: (-len(c), float(affinity[np.ix_(c, c)][~np.eye(len(c), dtype=bool)].mean())))
        slot = free - frame.bounds[view]
        return [[(int(view[k]), int(slot[k]), bool(m)) for k, m in zip(group, self._orientation(plain, crossed, group))]
                for group in groups]

    @staticmethod
    def _orientation(direct: np.ndarray, crossed: np.ndarray, group: list[int]) -> np.ndarray:
        """Which members of ``group`` to mirror: a labelling whose pairs agree best (sum of pair costs, pairs
        ``direct`` when both or neither are mirrored, ``crossed`` otherwise), of the two mirror-image solutions the
        one that mirrors fewer detections (a detector's labels are usually right).

        Polynomial in the group's size ``n`` (trying every labelling would cost ``2^(n-1)``): a local search from
        ``n + 1`` starts at once, the labels as given and each member's view of the others (every other member on
        the side it pairs best with that one), where the member whose change of side lowers the sum most changes
        side while one does. The best end wins. Where most of a person's detections agree, as they do, this finds
        the best labelling; several starts keep one misleading pair from deciding.
        """
        index = np.asarray(group)
        same, other = (np.where(np.isfinite(c), c, 1.0) for c in (direct[np.ix_(index, index)],
                                                                   crossed[np.ix_(index, index)]))
        split = other - same  # [n, n]: what the sum gains when a pair is put on different sides (diagonal: 0)
        np.fill_diagonal(split, 0.0)
        size = len(group)
        starts = np.concatenate([np.zeros((1, size), dtype=bool), split < 0])  # [n + 1, n]
        rows = np.arange(len(starts))
        # Each change of side lowers its start's sum, so the search ends; n^2 rounds at most bound the cost.
        for _ in range(size * size):
            change = np.where(starts[:, :, None] != starts[:, None, :], -split, split).sum(axis=2)  # [n + 1, n]
            best = np.argmin(change, axis=1)
            moving = change[rows, best] < -1e-12
            if not moving.any():
                break
            starts[rows[moving], best[moving]] ^= True
        totals = np.where(starts[:, :, None] != starts[:, None, :], split, 0.0).sum(axis=(1, 2))
        mirror = starts[int(np.argmin(totals))]
        if mirror[0]:  # of the two mirror images, the one with member 0 as labelled on a tie
            mirror = ~mirror
        return ~mirror if mirror.sum() > size / 2 else mirror

    def _unshadowed(self, single: dict[int, tuple[FusionResult, np.ndarray]],
                    refitted: dict[int, FusionResult]) -> dict[int, FusionResult]:
        """The single-view outputs (:meth:`_single_view`) that no refitted track duplicates: where the views came
        back but the held track no longer matched them (the person moved along the ray), a new track is started on
        the same person, and the one-view guess of the old track is not published beside it (it ends unseen)."""
        if not single:
            return {}
        fitted = [t.joints for t in self._tracks if t.track_id in refitted]
        return {track_id: result for track_id, (result, _) in single.items()
                if not (fitted and self._same_person(np.stack(fitted), result.joints).any())}

    def _same_person(self, joints: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Whether ``joints [..., J, 3]`` and ``others [..., J, 3]`` (broadcast) are one person ``[...]``: at least
        ``min_common_joints`` joints both have, closer than ``duplicate_distance`` on average over those."""
        gap = np.linalg.norm(joints - others, axis=-1)  # [..., J]
        shared = np.isfinite(gap)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(shared, gap, 0.0).sum(-1) / shared.sum(-1)
        return (shared.sum(-1) >= self.config.min_common_joints) & (mean < self.config.duplicate_distance)

    def _merge_duplicates(self, refitted: dict[int, FusionResult]) -> list[int]:
        """Drop the younger of two refitted tracks on the same person; the confirmed ids that ended."""
        ended = []
        fresh = sorted((t for t in self._tracks if t.track_id in refitted), key=lambda t: (t.born, t.track_id))
        if len(fresh) < 2:
            return ended
        # Every pair's mean gap over the joints both have, at once ([T, T]); the pairs are then taken in order.
        joints = np.stack([t.joints for t in fresh])  # [T, J, 3]
        same = self._same_person(joints[:, None], joints[None]).tolist()  # [T, T]
        gone: set[int] = set()
        for i, older in enumerate(fresh):
            if older.track_id in gone:
                continue
            for younger, duplicate in zip(fresh[i + 1:], same[i][i + 1:]):
                if duplicate and younger.track_id not in gone:
                    gone.add(younger.track_id)
                    older.confirmed |= younger.confirmed
                    if younger.confirmed:
                        ended.append(younger.track_id)
        for track_id in gone:
            refitted.pop(track_id)
        self._tracks = [t for t in self._tracks if t.track_id not in gone]
        return ended
