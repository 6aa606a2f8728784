"""Which detections of which cameras are the same person, without trusting the cameras' poses.

A rough calibration can be ten degrees off: a ray then misses its person by most of a metre, and the tracker's gates
(tens of centimetres) cannot tell people apart. This association never uses the poses, only the intrinsics:

1. each camera's detections are linked over time into tracklets (:mod:`.tracklets`);
2. two tracklets of two cameras that are the same person give keypoint pairs that all obey one epipolar geometry,
   the cameras' relative pose, however the person moves: for every pair of cameras a linear epipolar matrix is fitted
   (eight-point algorithm, reweighted for outliers) to each pair of tracklets seen together, the one that the most
   tracklet pairs agree with is kept, and each pair is scored by the median distance of its keypoints from their
   epipolar lines under it (px). Two different people fit no single epipolar geometry over seconds of independent
   motion;
3. tracklets are grouped across cameras greedily, best pair first, a group never holding two tracklets of one camera
   at the same time nor a pair whose score says they differ (complete linkage).

Each group is one person over its frames; its keypoints seen in two cameras or more are the observations of the
bundle adjustment. Where this finds too little (a short take, a detector whose errors differ much from view to
view), :func:`associate_with_rig` is the tolerant fallback: the tracker through the rough rig, its gates widened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton

__all__ = ["AssociationConfig", "associate_tracklets", "associate_with_rig", "fit_epipolar", "epipolar_distance",
           "cross_view_noise"]


@dataclass(frozen=True)
class AssociationConfig:
    """Thresholds of :func:`associate_tracklets`.

    Attributes:
        min_confidence: keypoints below this confidence are not used.
        min_shared_frames: two tracklets are compared when seen together in at least this many frames.
        gate: two tracklets are the same person when their keypoints' median distance from their epipolar lines is
            at most this many times the detection noise.
        max_pairs: keypoint pairs per tracklet pair used for fitting (a random subset beyond this; the score uses
            all).
        seed: of that subset.
    """

    min_confidence: float = 0.3
    min_shared_frames: int = 15
    gate: float = 3.0
    max_pairs: int = 600
    seed: int = 0


def _sampson(E: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sampson distance ``[N]`` (normalised units) of pairs ``a, b [N, 3]`` (homogeneous normalised coordinates)
    from ``b^T E a = 0``, and the gradient norm ``[N]`` that turns the algebraic residual into it."""
    Ea, Eb = a @ E.T, b @ E
    algebraic = np.einsum("ni,ni->n", b, Ea)
    gradient = np.sqrt(Ea[:, 0] ** 2 + Ea[:, 1] ** 2 + Eb[:, 0] ** 2 + Eb[:, 1] ** 2 + 1e-300)
    return np.abs(algebraic) / gradient, gradient


def epipolar_distance(E: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sampson distance ``[N]`` (normalised units) of pairs ``a, b [N, 3]`` from ``b^T E a = 0``."""
    return _sampson(E, a, b)[0]


def _conditioning(points: np.ndarray) -> np.ndarray:
    """Hartley's conditioning ``[3, 3]``: centroid to the origin, mean distance sqrt(2)."""
    centre = points[:, :2].mean(axis=0)
    spread = np.sqrt(2.0) / max(float(np.mean(np.linalg.norm(points[:, :2] - centre, axis=1))), 1e-12)
    return np.array([[spread, 0.0, -spread * centre[0]], [0.0, spread, -spread * centre[1]], [0.0, 0.0, 1.0]])


def fit_epipolar(a: np.ndarray, b: np.ndarray, scale: float, iterations: int = 12) -> np.ndarray:
    """A matrix ``[3, 3]`` with ``b^T M a = 0`` for pairs ``a, b [N, 3]`` (N >= 8) of homogeneous normalised
    coordinates: Hartley's conditioned eight-point algorithm, reweighted to minimise a Cauchy loss of the Sampson
    distances (each row divided by its gradient norm, so that its algebraic residual becomes the Sampson distance),
    the loss's scale graduated from the first fit's median distance down to ``scale`` (normalised units).

    ``M`` is the essential matrix's linear relaxation (eight degrees of freedom, not five): projecting each estimate
    onto the essential matrices made the reweighting stall (at 15 px where the true matrix gives 2 px, for two
    cameras facing each other across a room). The extra freedom lets a short wrong pair of tracklets fit too, which
    is why pairs are judged under the matrix that most pairs agree with, never under their own.
    """
    Ta, Tb = _conditioning(a), _conditioning(b)
    ca, cb = a @ Ta.T, b @ Tb.T
    rows = (cb[:, :, None] * ca[:, None, :]).reshape(len(a), 9)
    weight = np.ones(len(a))
    M = np.eye(3)
    current = np.inf
    for _ in range(iterations):
        weighted = rows * weight[:, None]
        _, vectors = np.linalg.eigh(weighted.T @ weighted)  # [9, 9]: the null vector without an N x 9 SVD
        M = Tb.T @ vectors[:, 0].reshape(3, 3) @ Ta
        distance, gradient = _sampson(M, a, b)
        current = max(scale, min(current / 2.0, float(np.median(distance))))
        # Conditioning scales every row's gradient alike, so the normalised gradient is the one Sampson divides by.
        weight = 1.0 / (gradient * np.sqrt(1.0 + (distance / current) ** 2))
    return M


@dataclass
class _Tracklet:
    view: int
    label: int
    frames: np.ndarray  # [T] sorted
    slots: np.ndarray  # [T]


def _tracklets(labels: np.ndarray, min_frames: int) -> list[_Tracklet]:
    found = []
    for v in range(len(labels)):
        for label in np.unique(labels[v][labels[v] >= 0]):
            frames, slots = np.nonzero(labels[v] == label)
            if len(frames) >= min_frames:
                found.append(_Tracklet(v, int(label), frames, slots))
    return found


def _pairs(xy: np.ndarray, usable: np.ndarray, first: _Tracklet, second: _Tracklet) -> tuple[np.ndarray, np.ndarray, int]:
    """Keypoint pairs (homogeneous normalised) of two tracklets in their shared frames, and the shared frame count."""
    shared, ia, ib = np.intersect1d(first.frames, second.frames, return_indices=True)
    if not len(shared):
        return np.zeros((0, 3)), np.zeros((0, 3)), 0
    sa, sb = first.slots[ia], second.slots[ib]
    both = usable[first.view, shared, sa] & usable[second.view, shared, sb]  # [T, J]
    a = xy[first.view, shared, sa][both]
    b = xy[second.view, shared, sb][both]
    one = np.ones((len(a), 1))
    return np.hstack([a, one]), np.hstack([b, one]), len(shared)


def _normalised(rig: CameraRig, uv: np.ndarray) -> np.ndarray:
    """Normalised image coordinates ``[V, ..., 2]`` of pixels ``uv [V, ..., 2]`` (the intrinsics only)."""
    homo = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], axis=-1)
    xy = np.einsum("vij,v...j->v...i", rig.K_inv, np.nan_to_num(homo))
    return xy[..., :2] / xy[..., 2:]


def cross_view_noise(rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, people: np.ndarray, noise: float,
                     min_confidence: float = 0.3, min_pairs: int = 200) -> float:
    """How far the keypoints of the same person in two cameras stay from the best two-view geometry they allow
    (px): for every pair of cameras sharing at least ``min_pairs`` keypoint pairs of associated people
    (``people [V, F, S]``), the linear epipolar matrix is fitted to all of them (:func:`fit_epipolar`, robust
    scale down to ``noise`` px) and the median of their Sampson distances (px at the pair's mean focal length) is
    taken; returned is the median over camera pairs, NaN when no pair qualifies.

    No rig's relative pose can do better than this fit (its essential matrix is one of the matrices the fit ranges
    over), and only the intrinsics are used, so a calibration cannot make it look good. It sees what the jitter in
    time (:func:`~.tracklets.detection_noise`) cannot: a detector's error that persists over consecutive frames
    (where a keypoint sits on a body part, a view-dependent hip) disagrees between views, but hardly moves from
    frame to frame.
    """
    xy = _normalised(rig, uv)
    usable = (confidence >= min_confidence) & np.isfinite(uv).all(-1)
    medians = []
    for a in range(len(rig)):
        for b in range(a + 1, len(rig)):
            # A person is one tracklet per camera (a group never holds two detections of a camera in a frame).
            pairs = [_pairs(xy, usable, _Tracklet(a, person, *np.nonzero(people[a] == person)),
                            _Tracklet(b, person, *np.nonzero(people[b] == person)))
                     for person in np.unique(people[people >= 0])]
            pa = np.concatenate([pair[0] for pair in pairs]) if pairs else np.zeros((0, 3))
            pb = np.concatenate([pair[1] for pair in pairs]) if pairs else np.zeros((0, 3))
            if len(pa) < min_pairs:
                continue
            focal = float(np.mean(rig.K[[a, b]][:, [0, 1], [0, 1]]))
            M = fit_epipolar(pa, pb, noise / focal)
            medians.append(float(np.median(epipolar_distance(M, pa, pb))) * focal)
    return float(np.median(medians)) if medians else float("nan")


def associate_tracklets(rig: CameraRig, uv: np.ndarray, confidence: np.ndarray, labels: np.ndarray, noise: float,
                        config: AssociationConfig = AssociationConfig()) -> np.ndarray:
    """Person labels ``[V, F, S]`` (-1 = no person) of detections ``uv [V, F, S, J, 2]`` (undistorted pixels) with
    ``confidence [V, F, S, J]`` and per-camera tracklet ``labels [V, F, S]``; ``noise`` is the detection noise (px).
    Only the rig's intrinsics are used."""
    num_views = len(rig)
    xy = _normalised(rig, uv)
    usable = (confidence >= config.min_confidence) & np.isfinite(uv).all(-1)
    focal = float(np.mean(rig.K[:, [0, 1], [0, 1]]))
    gate = config.gate * noise / focal  # normalised units
    rng = np.random.default_rng(config.seed)
    tracklets = _tracklets(labels, config.min_shared_frames)
    count = len(tracklets)
    cost = np.full((count, count), np.nan)  # NaN: never seen together (no evidence either way)
    for a in range(num_views):
        for b in range(a + 1, num_views):
            ours = [k for k, t in enumerate(tracklets) if t.view == a]
            theirs = [k for k, t in enumerate(tracklets) if t.view == b]
            candidates = []
            for i in ours:
                for j in theirs:
                    pa, pb, shared = _pairs(xy, usable, tracklets[i], tracklets[j])
                    if shared >= config.min_shared_frames and len(pa) >= 8 * 5:
                        candidates.append((i, j, pa, pb, shared))
            if not candidates:
                continue
            fits = []
            for _, _, pa, pb, _ in candidates:
                keep = rng.permutation(len(pa))[: config.max_pairs]
                fits.append(fit_epipolar(pa[keep], pb[keep], gate))
            # The epipolar geometry most tracklet pairs agree with (weighted by the frames they share).
            scores = np.array([[np.median(epipolar_distance(E, pa, pb)) for (_, _, pa, pb, _) in candidates] for E in fits])
            support = ((scores <= gate) * np.array([c[4] for c in candidates])[None]).sum(axis=1)
            best = int(np.argmax(support))
            agreeing = [c for c, s in zip(candidates, scores[best]) if s <= gate]
            pa = np.concatenate([c[2] for c in agreeing]) if agreeing else candidates[best][2]
            pb = np.concatenate([c[3] for c in agreeing]) if agreeing else candidates[best][3]
            keep = rng.permutation(len(pa))[: 4 * config.max_pairs]
            E = fit_epipolar(pa[keep], pb[keep], gate)
            for i, j, pa, pb, _ in candidates:
                cost[i, j] = cost[j, i] = np.median(epipolar_distance(E, pa, pb)) / gate
    groups = _group(tracklets, cost)
    people = np.full(labels.shape, -1, dtype=np.int64)
    for person, group in enumerate(groups):
        for k in group:
            t = tracklets[k]
            people[t.view, t.frames, t.slots] = person
    return people


def _group(tracklets: list[_Tracklet], cost: np.ndarray) -> list[list[int]]:
    """Complete-linkage groups of tracklets (``cost`` in units of the gate: <= 1 agrees, > 1 differs, NaN unknown),
    best pair first; a group never has two tracklets of one view sharing a frame. Groups of a single tracklet are
    dropped (a person seen by one camera says nothing about the calibration)."""
    count = len(tracklets)
    conflict = np.nan_to_num(cost, nan=0.0) > 1.0
    for i in range(count):
        for j in range(i + 1, count):
            ti, tj = tracklets[i], tracklets[j]
            if ti.view == tj.view and len(np.intersect1d(ti.frames, tj.frames)):
                conflict[i, j] = conflict[j, i] = True
    group_of = list(range(count))
    members = {k: [k] for k in range(count)}
    order = np.argsort(np.where(np.isfinite(cost), cost, np.inf), axis=None)
    for flat in order:
        i, j = np.unravel_index(flat, cost.shape)
        if not cost[i, j] <= 1.0:
            break
        gi, gj = group_of[i], group_of[j]
        if gi == gj or conflict[np.ix_(members[gi], members[gj])].any():
            continue
        for k in members[gj]:
            group_of[k] = gi
        members[gi] += members.pop(gj)
    return [sorted(m) for m in members.values() if len({tracklets[k].view for k in m}) >= 2]


def associate_with_rig(rig: CameraRig, keypoints: np.ndarray, skeleton: Skeleton, match_gate: float = 0.4,
                       cluster_gate: float = 0.25, fps: float = 30.0) -> np.ndarray:
    """Person labels ``[V, F, S]`` (-1 = none) of ``keypoints [V, F, S, J, 3]`` from the tracker run through the
    (rough) ``rig`` with its gates widened (metres): the tolerant pass for a rig a few degrees off, where the
    epipolar association finds too little (short takes, detectors whose errors differ from view to view). Labels
    are track ids; every track counts from its first frame (no confirmation wait)."""
    from ..fusion.config import preset_config
    from ..tracking.tracker import MultiPersonTracker, TrackerConfig

    config = TrackerConfig(match_gate=match_gate, cluster_gate=cluster_gate, confirm_frames=1)
    tracker = MultiPersonTracker(rig, skeleton, preset_config("default"), config)
    people = np.full(keypoints.shape[:3], -1, dtype=np.int64)
    for f in range(keypoints.shape[1]):
        rows = [np.flatnonzero((np.nan_to_num(keypoints[v, f, ..., 2]) > 0).any(-1)) for v in range(len(rig))]
        step = tracker.step([keypoints[v, f, rows[v]] for v in range(len(rig))], f / fps)
        for person in step.people:
            for v, row in enumerate(person.views):
                if row >= 0:
                    people[v, f, rows[v][row]] = person.track_id
    return people
