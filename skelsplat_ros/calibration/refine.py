"""Self-calibration from people: refine a rough rig's extrinsics from a recording of the people it watches.

:func:`self_calibrate` is what ``skelsplat calibrate`` runs:

1. link each camera's detections into tracklets and measure the detection noise on them (no poses needed);
2. associate tracklets across cameras by epipolar consistency (no poses needed; :mod:`.association`), or where
   that finds too little, through the rough rig (the tracker with wide gates);
3. bundle-adjust the cameras that may have moved and every selected (frame, person, joint) from the rough rig, with
   a robust loss graduated from the starting residuals (:mod:`.bundle`);
4. a camera the adjustment cannot explain (most of its keypoints outliers) was bumped: it is located afresh by PnP
   against the joints the other cameras give (:mod:`.pnp`) and the adjustment runs again. One camera at most;
5. associate again with the refined rig (each detection to the person it reprojects onto, left/right mirrored where
   that fits better) and adjust again;
6. place the result in the rough calibration's world frame with the user's scale anchor (:mod:`.world`);
7. accept only what converged and is consistent (see :class:`CalibrationConfig`: among others, no camera turned or
   moved further from its rough pose than a rough start can be off, except one bumped camera located afresh);
   otherwise say why, and keep the rough calibration.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..geometry.camera import Camera, CameraRig, matrix_to_rodrigues
from ..geometry.triangulation import triangulate_dlt
from ..skeleton.models import Skeleton
from ..tracking.tracker import gated_assignment
from .association import AssociationConfig, associate_tracklets, associate_with_rig, cross_view_noise
from .bundle import BundleResult, BundleSettings, Observations, ScaleAnchor, bundle_adjust, reprojection
from .pnp import locate_camera
from .tracklets import TrackletConfig, detection_noise, link_tracklets, median_over_joints
from .world import LEG_AND_TRUNK, WorldAnchor, leg_and_trunk, similarity_onto, transform_rig

__all__ = ["CalibrationConfig", "CameraReport", "CalibrationResult", "self_calibrate", "rig_change", "report_lines"]


@dataclass(frozen=True)
class CalibrationConfig:
    """What :func:`self_calibrate` uses and what it accepts.

    Attributes:
        min_confidence: keypoints below this confidence are not used.
        max_frames: frames given to the bundle adjustment, evenly spread over the recording (neighbouring frames
            add little and cost time).
        min_frames: frames in which two cameras or more see the same person, at least (else: too few frames).
        min_camera_frames: frames in which each camera sees a person another camera sees, at least.
        min_spread: the people's hip centres must spread over at least this (m, along their widest direction):
            joints in one small spot pin the cameras poorly far from it (a person standing still is refused).
        noise: detection noise (px); ``None`` measures it: the larger of the keypoints' jitter in time
            (:func:`~.tracklets.detection_noise`) and the views' misfit to their best two-view geometry
            (:func:`~.association.cross_view_noise`), neither of which uses the cameras' poses.
        residual_ratio: accepted only when the median reprojection error is at most this times the noise.
        min_inliers: ... and every camera has at least this fraction of its keypoints within ``inlier_factor``
            times the noise.
        inlier_factor: see ``min_inliers``.
        max_rotation: degrees; a camera whose refined orientation is further than this from its rough one is
            beyond the refinement's basin. One such camera is a bumped camera (located afresh, accepted when it
            fits); two or more mean the rough calibration does not describe this rig, and are refused.
        max_shift: a camera whose refined centre is further from its rough one than this fraction of its distance
            to the people (median, measured in the rough rig: the scene's scale in the user's own units) was moved
            by more than the start's error can explain: a wrong scale anchor (a baseline between other cameras, or
            in other units) or a second minimum of the residuals. Refused, unless it is the one camera located
            afresh by PnP (a bumped camera; see ``max_rotation``). The issue's basin is 30-50 cm at 3-5 m (at most
            0.15).
        lost_inliers: a camera with fewer inliers than this after the first adjustment is taken for bumped and
            located afresh.
        focal_sigma: relative prior std of the focal lengths when they are refined; ``None`` keeps them.
        loss_scale: scale of the robust loss, in units of the noise.
        rounds: most rounds of association with the refined rig and adjustment after the first (they stop once no
            camera moves by more than 0.01 degrees and 1 mm).
        first_iterations: iteration budget of the first adjustment, on the first association: enough to come
            close; its association's mistakes make the last steps slow, and the next association fixes them.
    """

    min_confidence: float = 0.3
    max_frames: int = 150
    min_frames: int = 60
    min_camera_frames: int = 30
    min_spread: float = 1.0
    noise: float | None = None
    residual_ratio: float = 1.5
    min_inliers: float = 0.85
    inlier_factor: float = 4.0
    max_rotation: float = 30.0
    max_shift: float = 0.2
    lost_inliers: float = 0.5
    focal_sigma: float | None = None
    loss_scale: float = 2.0
    rounds: int = 3
    first_iterations: int = 150


@dataclass
class CameraReport:
    """One camera's part of a :class:`CalibrationResult`.

    Attributes:
        name: the camera.
        role: ``held`` (holds the world frame), ``refined``, or ``relocated`` (bumped, located afresh).
        rotation_change: degrees between the rough and the refined orientation.
        translation_change: metres between the rough and the refined centre.
        distance: the camera's median distance to the people in the rough rig (metres): the scale of
            ``max_shift``.
        focal_change: relative change of the focal length (0 unless refined).
        before: median reprojection error with the rough rig (px).
        after: median reprojection error with the refined rig (px).
        inliers: fraction of the camera's keypoints within ``inlier_factor`` times the noise.
        keypoints: keypoints of the camera used.
        rotation_std: posterior std of the orientation (degrees), for a free camera.
        position_std: posterior std of the centre (metres), for a free camera.
    """

    name: str
    role: str
    rotation_change: float = 0.0
    translation_change: float = 0.0
    focal_change: float = 0.0
    before: float = float("nan")
    after: float = float("nan")
    inliers: float = float("nan")
    keypoints: int = 0
    distance: float = float("nan")
    rotation_std: float = 0.0
    position_std: float = 0.0


@dataclass
class CalibrationResult:
    """What :func:`self_calibrate` found.

    Attributes:
        accepted: the refined rig converged and passed every check.
        rig: the rig to use: the refined one when accepted, the rough one (unchanged) when refused.
        cameras: per-camera report, in rig order.
        noise: the detection noise (px).
        before: median reprojection error over all keypoints with the rough rig (px).
        after: ... with the refined rig (px).
        inliers: fraction of all keypoints within ``inlier_factor`` times the noise.
        frames: frames the adjustment used.
        reasons: why the result was refused (empty when accepted).
        notes: what else happened (a relocated camera, the scale's source).
        attempt: the refined rig that was judged, accepted or not (None when refused before any adjustment): for
            inspection, never to use when refused.
        observations: the final adjustment's observations (undistorted pixels, ``[P, V]``), None likewise.
    """

    accepted: bool
    rig: CameraRig
    cameras: list[CameraReport]
    noise: float = float("nan")
    before: float = float("nan")
    after: float = float("nan")
    inliers: float = float("nan")
    frames: int = 0
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attempt: CameraRig | None = None
    observations: Observations | None = None


def rig_change(a: Camera, b: Camera) -> tuple[float, float]:
    """Rotation (degrees) and centre distance (metres) between two poses of a camera."""
    angle = np.degrees(np.linalg.norm(matrix_to_rodrigues(b.R @ a.R.T)))
    return float(angle), float(np.linalg.norm(b.centre - a.centre))


@dataclass
class _Data:
    """The recording prepared once: undistorted pixels, confidences, tracklets, people."""

    uv: np.ndarray  # [V, F, S, J, 2] undistorted px (NaN = unusable)
    confidence: np.ndarray  # [V, F, S, J] (0 = unusable)
    people: np.ndarray  # [V, F, S] person label (-1 = none)
    noise: float  # px: the larger of the jitter and the two-view misfit
    jitter: float  # px: the keypoints' jitter in time alone


def _prepare(rig: CameraRig, skeleton: Skeleton, keypoints: np.ndarray, config: CalibrationConfig) -> _Data:
    num_views = len(rig)
    uv = rig.undistort(keypoints[..., :2].reshape(num_views, -1, 2)).reshape(keypoints.shape[:-1] + (2,))
    confidence = np.nan_to_num(keypoints[..., 2])
    usable = (confidence >= config.min_confidence) & np.isfinite(uv).all(-1)
    uv = np.where(usable[..., None], uv, np.nan)
    confidence = np.where(usable, confidence, 0.0)
    tracklet_config = TrackletConfig(min_confidence=config.min_confidence)
    labels = link_tracklets(uv, confidence, skeleton.flip_permutation, tracklet_config)
    jitter = config.noise if config.noise is not None else detection_noise(uv, confidence, labels,
                                                                           config.min_confidence)
    noise, people = jitter, np.full(labels.shape, -1, dtype=np.int64)
    if np.isfinite(noise) and noise > 0:
        association = AssociationConfig(min_confidence=config.min_confidence)
        people = associate_tracklets(rig, uv, confidence, labels, noise, association)
        if config.noise is None:
            # The jitter misses a detector's error that persists from frame to frame; the views' disagreement
            # does not (measured on Shelf's OpenPose: 1.1 px of jitter, 1.9 px of two-view misfit, and the true rig
            # leaves 3.0 px). The larger is the noise; the association is redone with it.
            cross = cross_view_noise(rig, uv, confidence, people, jitter, config.min_confidence)
            if cross > jitter:
                noise = cross
                people = associate_tracklets(rig, uv, confidence, labels, noise, association)
    return _Data(uv, confidence, people, float(noise), float(jitter))


@dataclass
class _Points:
    """The adjustment's points: one per (frame, person, joint) seen by two cameras or more."""

    frame: np.ndarray  # [P] index into the selected frames
    person: np.ndarray  # [P]
    joint: np.ndarray  # [P]
    observations: Observations


def _observations(data: _Data, frames: np.ndarray, assignment: np.ndarray, mirrored: np.ndarray,
                  flip: np.ndarray) -> _Points:
    """Points and observations of the selected ``frames`` from ``assignment [V, Fs, S]`` (person per detection of
    the selected frames) and ``mirrored [V, Fs, S]``."""
    num_views = data.uv.shape[0]
    num_people = int(assignment.max()) + 1 if (assignment >= 0).any() else 0
    num_joints = data.uv.shape[3]
    uv = np.full((len(frames), num_people, num_joints, num_views, 2), np.nan)
    weight = np.zeros((len(frames), num_people, num_joints, num_views))
    for v, f, s in zip(*np.nonzero(assignment >= 0)):
        order = flip if mirrored[v, f, s] else np.arange(num_joints)
        p = assignment[v, f, s]
        uv[f, p, :, v] = data.uv[v, frames[f], s][order]
        weight[f, p, :, v] = data.confidence[v, frames[f], s][order]
    seen = (weight > 0).sum(-1) >= 2  # [Fs, P, J]
    frame, person, joint = np.nonzero(seen)
    return _Points(frame, person, joint, Observations(np.nan_to_num(uv[seen]), weight[seen]))


def _points(rig: CameraRig, data: _Data, frames: np.ndarray, assignment: np.ndarray, mirrored: np.ndarray,
            flip: np.ndarray) -> tuple[_Points, np.ndarray]:
    """The adjustment's points from an association, and their positions triangulated with ``rig`` (points that
    do not triangulate are dropped)."""
    points = _observations(data, frames, assignment, mirrored, flip)
    X = _triangulate(rig, points.observations)
    good = np.isfinite(X).all(-1)
    return _Points(points.frame[good], points.person[good], points.joint[good],
                   points.observations.subset(good)), X[good]


def _select_frames(people: np.ndarray, max_frames: int) -> tuple[np.ndarray, int]:
    """Frames in which some person is seen by two cameras or more, at most ``max_frames`` evenly spread, and how
    many such frames there are."""
    shared = np.zeros(people.shape[1], dtype=bool)
    for p in np.unique(people[people >= 0]):
        shared |= (people == p).any(-1).sum(0) >= 2
    frames = np.flatnonzero(shared)
    if len(frames) > max_frames:
        return frames[np.round(np.linspace(0, len(frames) - 1, max_frames)).astype(int)], len(frames)
    return frames, len(frames)


def _triangulate(rig: CameraRig, observations: Observations) -> np.ndarray:
    uv = np.moveaxis(np.where(observations.observed[..., None], observations.uv, np.nan), 1, 0)
    return triangulate_dlt(rig, uv, observations.weight.T)


def _start_points(rig: CameraRig, observations: Observations) -> np.ndarray:
    """Points ``[P, 3]`` triangulated with ``rig`` to start an adjustment from; one that does not triangulate
    starts at the others' centroid (the points must stay those of the observations)."""
    X = _triangulate(rig, observations)
    good = np.isfinite(X).all(-1, keepdims=True)
    return np.where(good, X, np.nanmean(np.where(good, X, np.nan), axis=0))


def _people_joints(points: _Points, X: np.ndarray, num_frames: int, num_people: int, num_joints: int) -> np.ndarray:
    """The adjusted points as people ``[Fs, P, J, 3]`` (NaN where none)."""
    joints = np.full((num_frames, num_people, num_joints, 3), np.nan)
    joints[points.frame, points.person, points.joint] = X
    return joints


def _reassociate(rig: CameraRig, data: _Data, frames: np.ndarray, joints: np.ndarray, flip: np.ndarray,
                 gate: float) -> tuple[np.ndarray, np.ndarray]:
    """Each detection of the selected frames to the person whose joints ``[Fs, P, J, 3]`` reproject onto it
    (median over joints within ``gate`` px, one detection per person and camera), mirrored where that fits
    better: ``(assignment [V, Fs, S], mirrored [V, Fs, S])``."""
    num_views = len(rig)
    assignment = np.full((num_views, len(frames), data.uv.shape[2]), -1, dtype=np.int64)
    mirrored = np.zeros(assignment.shape, dtype=bool)
    homogeneous = np.concatenate([joints, np.ones(joints.shape[:-1] + (1,))], -1)
    projected = np.einsum("vij,fpkj->vfpki", rig.projection_matrices, homogeneous)  # [V, Fs, P, J, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted = np.where(projected[..., 2:] > 1e-9, projected[..., :2] / projected[..., 2:], np.nan)
    detections = data.uv[:, frames]  # [V, Fs, S, J, 2]
    direct = median_over_joints(np.linalg.norm(predicted[:, :, :, None] - detections[:, :, None], axis=-1))
    flipped = median_over_joints(np.linalg.norm(predicted[:, :, :, None] - detections[:, :, None][..., flip, :],
                                                axis=-1))  # [V, Fs, P, S]
    cost = np.fmin(direct, flipped)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    for v, f in zip(*np.nonzero(np.isfinite(cost).any(axis=(2, 3)))):
        for p, s in gated_assignment(cost[v, f], gate):
            assignment[v, f, s] = p
            mirrored[v, f, s] = flipped[v, f, p, s] < direct[v, f, p, s]
    return assignment, mirrored


def _refused(rig: CameraRig, data: _Data | None, reasons: list[str]) -> CalibrationResult:
    return CalibrationResult(False, rig, [CameraReport(c.name, "held") for c in rig],
                             noise=data.noise if data else float("nan"), reasons=reasons)


def _data_problems(rig: CameraRig, data: _Data, shared: int, config: CalibrationConfig) -> list[str]:
    """Refusals before any adjustment: the noise could not be measured, too few frames, a camera that saw
    nobody the others saw."""
    if not np.isfinite(data.noise) or data.noise <= 0:
        return ["no keypoint was followed over three consecutive frames: the detection noise cannot be measured "
                "(too few frames, or give it with noise)"]
    problems = []
    if shared < config.min_frames:
        problems.append(f"too few frames: {shared} frames in which two cameras see the same person (at least "
                        f"{config.min_frames} needed)")
    for v, camera in enumerate(rig):
        seen = int(((data.people[v] >= 0).any(-1)).sum())
        if seen < config.min_camera_frames:
            what = "saw nobody" if not np.isfinite(data.uv[v]).any() else "saw nobody the other cameras saw"
            problems.append(f"camera {camera.name} {what} ({seen} frames with a shared person, at least "
                            f"{config.min_camera_frames} needed): its pose cannot be checked")
    return problems


def _adjust(rig: CameraRig, observations: Observations, X: np.ndarray, free: np.ndarray, anchor: ScaleAnchor | None,
            data: _Data, config: CalibrationConfig, iterations: int = 1000) -> BundleResult:
    settings = BundleSettings(noise=data.noise, loss_scale=config.loss_scale, focal_sigma=config.focal_sigma,
                              max_iterations=iterations)
    return bundle_adjust(rig, observations, X, free, settings, anchor)


def _inliers(residuals: np.ndarray, noise: float, factor: float) -> np.ndarray:
    """Per-view inlier fraction ``[V]`` of residuals ``[P, V]`` (NaN = not observed)."""
    observed = np.isfinite(residuals)
    with np.errstate(invalid="ignore"):
        inside = (residuals <= factor * noise) & observed
    return inside.sum(0) / np.maximum(observed.sum(0), 1)


def self_calibrate(rig: CameraRig, skeleton: Skeleton, keypoints: np.ndarray, anchor: WorldAnchor,
                   config: CalibrationConfig = CalibrationConfig()) -> CalibrationResult:
    """Refine ``rig`` from people's keypoints (see the module docstring).

    Args:
        rig: the rough calibration, in metres; its intrinsics and lens models are trusted.
        skeleton: the keypoints' joint layout.
        keypoints: ``[V, F, S, J, 3]`` (x px, y px, confidence; NaN / 0 = missing) with ``S`` detections per
            camera and frame in any order, or ``[V, F, J, 3]`` for one person. Views in rig order.
        anchor: what holds the world frame and the scale.
        config: thresholds.

    Returns:
        The result; ``accepted`` only when it converged and passed every check.

    Raises:
        ValueError: a bad anchor or keypoints of the wrong shape.
    """
    anchor.check(rig)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim == 4:
        keypoints = keypoints[:, :, None]
    if keypoints.ndim != 5 or keypoints.shape[0] != len(rig) or keypoints.shape[3:] != (skeleton.num_joints, 3):
        raise ValueError(f"keypoints must be [{len(rig)}, F, S, {skeleton.num_joints}, 3] (or [V, F, J, 3]), got "
                         f"{list(keypoints.shape)}")
    data = _prepare(rig, skeleton, keypoints, config)
    result = _calibrate(rig, skeleton, data, anchor, config)
    if result.accepted or not np.isfinite(data.noise):
        return result
    # The tolerant fallback: people associated through the rough rig (a short take, or a detector whose errors
    # differ much between views, can defeat the epipolar association).
    data.people = associate_with_rig(rig, np.where(data.confidence[..., None] > 0, keypoints, np.nan), skeleton)
    fallback = _calibrate(rig, skeleton, data, anchor, config)
    if fallback.accepted or _closer(fallback, result):
        fallback.notes.insert(0, "people associated through the rough rig (the tracker with wide gates): with the "
                                 f"epipolar association it was refused ({'; '.join(result.reasons)})")
        return fallback
    result.notes.append(f"associated through the rough rig instead, it was refused too ({'; '.join(fallback.reasons)})")
    return result


def _closer(a: CalibrationResult, b: CalibrationResult) -> bool:
    """Whether refused ``a`` came closer to acceptance than refused ``b``: it got to an adjustment and its worst
    camera's inlier fraction is higher (the reasons reported are those of the closer one)."""
    if a.attempt is None or b.attempt is None:
        return a.attempt is not None
    worst = lambda r: min(np.nan_to_num(c.inliers) for c in r.cameras)  # noqa: E731
    return worst(a) > worst(b)


def _calibrate(rig: CameraRig, skeleton: Skeleton, data: _Data, anchor: WorldAnchor,
               config: CalibrationConfig) -> CalibrationResult:
    """Steps 3-7 of the module docstring, on the people ``data`` associates."""
    frames, shared = _select_frames(data.people, config.max_frames)
    problems = _data_problems(rig, data, shared, config)
    if problems:
        return _refused(rig, data, problems)
    notes: list[str] = []
    if data.noise > data.jitter:
        notes.append(f"detection noise from the views' disagreement ({data.noise:.2f} px); the keypoints' jitter in "
                     f"time is {data.jitter:.2f} px: the detector's error persists from frame to frame")
    flip = skeleton.flip_permutation
    selected = data.people[:, frames]
    points, X = _points(rig, data, frames, selected, np.zeros(selected.shape, dtype=bool), flip)
    anchored = anchor.held(rig)
    # Without cameras that hold the world frame, the best-seen camera holds it during the adjustment (the rig is
    # placed in the world afterwards).
    held = anchored or [int(np.argmax(points.observations.observed.sum(0)))]
    free = np.ones(len(rig), dtype=bool)
    free[held] = False
    scale = _scale_anchor(rig, anchor, held)

    # 1. From the rough rig, or where two held cameras' joints put each free camera.
    start, afresh = rig, []
    if len(held) >= 2:
        start, afresh = _locate_against_held(rig, held, free, points, data, frames, skeleton, config)
        if afresh:
            notes.append(f"started {', '.join(rig[v].name for v in afresh)} where the held cameras' joints put them")
            X = _start_points(start, points.observations)
    result = _adjust(start, points.observations, X, free, scale, data, config, config.first_iterations)
    # The first association's mistakes hold the first adjustment back (hence its short budget): associate once with
    # the rig it reached before judging the cameras.
    first = points
    points, result, _ = _round(result, points, data, frames, free, scale, skeleton, config)

    # 2. A camera that does not fit was bumped: locate it afresh against the others (one camera at most).
    inliers = _inliers(result.residuals, data.noise, config.inlier_factor)
    lost = sorted((v for v in np.flatnonzero(free) if inliers[v] < config.lost_inliers), key=lambda v: inliers[v])
    relocated = None
    for view in lost:  # one bumped camera can drag others along: try each, the worst first
        located = _relocate(start, first, data, frames, int(view), free, scale, skeleton, config)
        if located is not None and _inliers(located.residuals, data.noise, config.inlier_factor)[free].min() \
                >= config.lost_inliers:
            result, relocated, points = located, int(view), first
            notes.append(f"camera {rig[view].name} did not fit the others (inliers {inliers[view]:.2f}): located "
                         "afresh by PnP against their joints")
            break
    if lost and relocated is None:
        return _refused(rig, data, [
            f"camera(s) {[rig[v].name for v in lost]} do not fit the others from the rough calibration (inliers "
            f"{', '.join(f'{inliers[v]:.2f}' for v in lost)}) and no single one of them could be located afresh: "
            "beyond the refinement's basin; check that the calibration belongs to this rig and its camera names "
            "match the keypoints, or correct one camera at a time"])

    # 3. Associate again with the refined rig and adjust again, until the cameras settle.
    for _ in range(config.rounds):
        points, result, settled = _round(result, points, data, frames, free, scale, skeleton, config)
        if settled:
            break

    # 4. Into the rough calibration's world frame, at the anchor's scale; then judge.
    refined, placement = _place(result, rig, anchor, held, points, skeleton)
    if relocated is not None:
        afresh.append(relocated)
    return _judge(rig, refined, result, points, data, frames, anchored, relocated, afresh, skeleton, config,
                  notes + placement)


def _round(result: BundleResult, points: _Points, data: _Data, frames: np.ndarray, free: np.ndarray,
           scale: ScaleAnchor | None, skeleton: Skeleton, config: CalibrationConfig
           ) -> tuple[_Points, BundleResult, bool]:
    """Each detection associated to the person it reprojects onto with ``result``'s rig, then adjusted again;
    whether no camera moved by more than 0.01 degrees and 1 mm."""
    flip = skeleton.flip_permutation
    joints = _people_joints(points, result.points, len(frames), int(points.person.max()) + 1, skeleton.num_joints)
    assignment, mirrored = _reassociate(result.rig, data, frames, joints, flip, 6.0 * data.noise)
    points, X = _points(result.rig, data, frames, assignment, mirrored, flip)
    adjusted = _adjust(result.rig, points.observations, X, free, scale, data, config)
    change = np.array([rig_change(a, b) for a, b in zip(result.rig, adjusted.rig)])
    return points, adjusted, bool(change[:, 0].max() < 0.01 and change[:, 1].max() < 1e-3)


def _scale_anchor(rig: CameraRig, anchor: WorldAnchor, held: list[int]) -> ScaleAnchor | None:
    """The distance held during the adjustment: the baseline, or (one held camera, scale set afterwards) the held
    camera's distance to the farthest camera, at its rough value; none when two cameras or more are held."""
    if anchor.baseline is not None:
        a, b, metres = anchor.baseline
        return ScaleAnchor(rig.index(a), rig.index(b), float(metres))
    if len(held) >= 2:
        return None
    distances = np.linalg.norm(rig.centres - rig.centres[held[0]], axis=1)
    far = int(np.argmax(distances))
    return ScaleAnchor(held[0], far, float(distances[far]))


def _locate_against_held(rig: CameraRig, held: list[int], free: np.ndarray, points: _Points, data: _Data,
                         frames: np.ndarray, skeleton: Skeleton, config: CalibrationConfig
                         ) -> tuple[CameraRig, list[int]]:
    """The rig with each free camera located (PnP, no start needed) against the joints the held cameras
    triangulate; a camera that cannot be located keeps its rough pose. Returns the rig and the located views."""
    observations = points.observations
    weight = np.zeros_like(observations.weight)
    weight[:, held] = observations.weight[:, held]
    enough = (weight > 0).sum(1) >= 2
    if enough.sum() < 50:  # the held cameras hardly see anyone together: nothing to locate against
        return rig, []
    X = _triangulate(rig, Observations(observations.uv[enough], weight[enough]))
    joints = np.full((len(frames), int(points.person.max()) + 1, skeleton.num_joints, 3), np.nan)
    joints[points.frame[enough], points.person[enough], points.joint[enough]] = X
    cameras, moved = list(rig), []
    for view in np.flatnonzero(free):
        camera = rig[view]
        fit = locate_camera(camera.K, joints, data.uv[view, frames], data.confidence[view, frames],
                            skeleton.flip_permutation, config.inlier_factor * data.noise, guess=(camera.R, camera.t))
        if fit is not None and fit.inliers >= config.lost_inliers * fit.correspondences:
            cameras[view] = Camera(camera.name, camera.K, fit.R, fit.t, camera.size, camera.dist)
            moved.append(int(view))
    return CameraRig(cameras), moved


def _relocate(rig: CameraRig, points: _Points, data: _Data, frames: np.ndarray, view: int, free: np.ndarray, scale: ScaleAnchor | None, skeleton: Skeleton,
              config: CalibrationConfig) -> BundleResult | None:
    """Locate ``view`` afresh against the joints the other cameras give (adjusted without it from the start
    ``rig``: the first adjustment may have dragged them), then adjust everything from there."""
    without = points.observations.weight.copy()
    without[:, view] = 0.0
    enough = (without > 0).sum(1) >= 2
    others = Observations(points.observations.uv[enough], without[enough])
    held_too = free.copy()
    held_too[view] = False
    # The others alone (a scale anchor on the lost camera waits for the full adjustment).
    kept = scale if scale is None or view not in (scale.first, scale.second) else None
    X = _triangulate(rig, others)
    good = np.isfinite(X).all(-1)
    enough[enough] = good
    others = others.subset(good)
    base = _adjust(rig, others, X[good], held_too, kept, data, config)
    num_people = int(points.person.max()) + 1
    joints = np.full((len(frames), num_people, skeleton.num_joints, 3), np.nan)
    joints[points.frame[enough], points.person[enough], points.joint[enough]] = base.points
    camera = rig[view]
    # Every detection of the camera in the selected frames: the association is redone by the pose search.
    fit = locate_camera(camera.K, joints, data.uv[view, frames], data.confidence[view, frames],
                        skeleton.flip_permutation, config.inlier_factor * data.noise)
    if fit is None:
        return None
    moved = Camera(camera.name, camera.K, fit.R, fit.t, camera.size, camera.dist)
    start = CameraRig([moved if v == view else c for v, c in enumerate(base.rig)])
    return _adjust(start, points.observations, _start_points(start, points.observations), free, scale, data, config)


def _place(result: BundleResult, rough: CameraRig, anchor: WorldAnchor, held: list[int], points: _Points,
           skeleton: Skeleton) -> tuple[CameraRig, list[str]]:
    """The adjusted rig in the rough calibration's world frame, at the anchor's scale."""
    rig = result.rig
    if len(anchor.fixed) >= 2 or anchor.baseline is not None:
        return rig, []
    if anchor.fixed:  # one camera holds the frame: scale about it
        Q, p = np.eye(3), np.zeros(3)
        centre = rough.centres[held[0]]
    else:  # the rig as a whole onto the rough one (the held camera was only the adjustment's reference)
        Q, p = _robust_fit(rig, rough)
        centre = rough.centres.mean(axis=0)
    moved = transform_rig(rig, 1.0, Q, p)
    if anchor.keep_size:
        spread = lambda r: np.sqrt(np.mean(np.sum((r.centres - r.centres.mean(0)) ** 2, axis=1)))  # noqa: E731
        factor = float(spread(rough) / spread(moved))
        note = f"scale kept from the rough calibration (x{factor:.4f})"
    else:
        X = result.points @ Q.T + p
        joints = np.full((int(points.frame.max()) + 1, skeleton.num_joints, 3), np.nan)
        joints[points.frame, points.joint] = X
        measured = leg_and_trunk(skeleton, joints) / LEG_AND_TRUNK
        factor = float(anchor.height / measured)
        note = f"scale from the person's height: {measured:.3f} m before scaling (x{factor:.4f})"
    placed = transform_rig(moved, factor, np.eye(3), (1.0 - factor) * centre)
    return placed, [note]


def _robust_fit(rig: CameraRig, rough: CameraRig) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation taking the refined camera centres (and a point a metre along each optical axis)
    onto the rough ones, a camera that disagrees much more than the others left out (a bumped one)."""
    def anchors(r: CameraRig) -> np.ndarray:
        return np.concatenate([r.centres, r.centres + r.R[:, 2]])

    source, target = anchors(rig), anchors(rough)
    keep = np.ones(len(rig), dtype=bool)
    while True:
        weights = np.tile(keep, 2).astype(float)
        Q, p = similarity_onto(source, target, weights)
        error = np.linalg.norm(source @ Q.T + p - target, axis=1).reshape(2, -1).max(0)
        worst = int(np.argmax(np.where(keep, error, -1.0)))
        if keep.sum() <= 3 or error[worst] <= 3.0 * max(float(np.median(error[keep])), 0.05):
            return Q, p
        keep[worst] = False


def _spread(joints: np.ndarray, skeleton: Skeleton) -> float:
    """Extent (m) of the people's hip centres along their widest direction (5th to 95th percentile)."""
    names = list(skeleton.joint_names)
    hips = [names.index(n) for n in ("l_hip", "r_hip") if n in names] or list(skeleton.root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a person without hips in a frame: NaN, dropped below
        centres = np.nanmean(joints[..., hips, :], axis=-2).reshape(-1, 3)
    centres = centres[np.isfinite(centres).all(-1)]
    if len(centres) < 2:
        return 0.0
    centred = centres - centres.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    along = centred @ axis
    return float(np.percentile(along, 95) - np.percentile(along, 5))


def _judge(rough: CameraRig, refined: CameraRig, result: BundleResult, points: _Points, data: _Data,
           frames: np.ndarray, held: list[int], relocated: int | None, afresh: list[int], skeleton: Skeleton,
           config: CalibrationConfig, notes: list[str]) -> CalibrationResult:
    """The per-camera report and the acceptance checks (``afresh``: the views started from a PnP pose)."""
    observations = points.observations
    residuals = result.residuals  # [P, V]: the placement moves the world, not what the cameras see
    X_rough = _triangulate(rough, observations)
    before = reprojection(rough, X_rough, observations)
    inliers = _inliers(residuals, data.noise, config.inlier_factor)
    cameras, shifted = [], []
    for v, (a, b) in enumerate(zip(rough, refined)):
        rotation, translation = rig_change(a, b)
        seen = observations.observed[:, v] & np.isfinite(X_rough).all(-1)
        distance = _median(np.linalg.norm(X_rough[seen] - a.centre, axis=-1))
        if v not in held and translation > config.max_shift * distance:
            shifted.append(v)
        role = "held" if v in held else (
            "relocated" if v == relocated or rotation >= config.max_rotation or (v in shifted and v in afresh)
            else "refined")
        cameras.append(CameraReport(
            a.name, role, rotation, translation, float(b.K[0, 0] / a.K[0, 0] - 1.0), _median(before[:, v]),
            _median(residuals[:, v]), float(inliers[v]), int(np.isfinite(residuals[:, v]).sum()), distance,
            float(result.camera_std[v, 0]), float(result.camera_std[v, 1])))
    after = _median(residuals)
    reasons = []
    if not result.converged:
        reasons.append(f"the adjustment did not converge within its {result.iterations} iterations")
    if not after <= config.residual_ratio * data.noise:
        reasons.append(f"median reprojection error {after:.2f} px is above {config.residual_ratio:g} x the detection "
                       f"noise ({data.noise:.2f} px): not converged")
    low = [c for c in cameras if not c.inliers >= config.min_inliers]
    if low:
        reasons.append(f"too few inliers (at least {config.min_inliers:.2f} within {config.inlier_factor:g} x the "
                       "noise needed): " + ", ".join(f"{c.name} {c.inliers:.2f}" for c in low))
    moved = [cameras[v] for v in shifted if v not in afresh]
    if moved:
        reasons.append("the refinement moved " + ", ".join(
            f"{c.name} by {c.translation_change:.2f} m" for c in moved) + " from the rough calibration, more than "
            f"{config.max_shift:g} x the camera's distance to the people (" + ", ".join(
            f"{config.max_shift * c.distance:.2f} m" for c in moved) + "): more than a rough start is off; check the "
            "scale anchor (a --baseline between these two cameras' centres, in metres) and that the calibration "
            "belongs to this rig, or correct one camera at a time")
    beyond = [c for v, c in enumerate(cameras) if c.rotation_change >= config.max_rotation or v in shifted]
    if len(beyond) > 1 and any(c not in moved for c in beyond):
        reasons.append(f"cameras {[c.name for c in beyond]} turned by "
                       f"{', '.join(f'{c.rotation_change:.0f}' for c in beyond)} degrees and moved by "
                       f"{', '.join(f'{c.translation_change:.2f}' for c in beyond)} m: more than one camera beyond "
                       f"the refinement's basin ({config.max_rotation:g} degrees, or {config.max_shift:g} x the "
                       "distance to the people); check that the calibration belongs to this rig and its camera names "
                       "match the keypoints, or correct one camera at a time")
    joints = _people_joints(points, result.points, len(frames), int(points.person.max()) + 1, skeleton.num_joints)
    spread = _spread(joints, skeleton)
    if spread < config.min_spread:
        reasons.append(f"the people stayed within {spread:.2f} m (at least {config.min_spread:g} m needed): joints "
                       "in one spot pin the cameras poorly elsewhere; record people walking through the room")
    observed = np.isfinite(residuals)
    fraction = float((residuals[observed] <= config.inlier_factor * data.noise).mean()) if observed.any() else 0.0
    return CalibrationResult(not reasons, rough if reasons else refined, cameras, data.noise, _median(before), after,
                             fraction, len(frames), reasons, notes, refined, observations)


def _median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def report_lines(result: CalibrationResult, config: CalibrationConfig = CalibrationConfig()) -> list[str]:
    """A table of ``result`` per camera and a summary, as ``skelsplat calibrate`` prints them."""
    lines = [f"{'camera':<12} {'role':<9} {'rotation':>9} {'translation':>11} {'focal':>7}  "
             f"{'reprojection median (px)':>24}  {'inliers':>7}",
             f"{'':<12} {'':<9} {'change':>9} {'change':>11} {'change':>7}  {'before -> after':>24}  {'':>7}"]
    for c in result.cameras:
        lines.append(f"{c.name:<12} {c.role:<9} {c.rotation_change:>5.2f} deg {100 * c.translation_change:>8.1f} cm "
                     f"{100 * c.focal_change:>5.1f} %  {c.before:>12.2f} -> {c.after:>8.2f}  {c.inliers:>7.2f}")
    lines.append(f"detection noise {result.noise:.2f} px (measured on the keypoints, without the cameras' poses); "
                 f"all keypoints: median {result.before:.2f} -> {result.after:.2f} px, inliers {result.inliers:.2f} "
                 f"(within {config.inlier_factor:g} x the noise); {result.frames} frames")
    lines += [f"note: {note}" for note in result.notes]
    if result.accepted:
        lines.append(f"converged: median {result.after:.2f} px <= {config.residual_ratio:g} x noise "
                     f"({config.residual_ratio * result.noise:.2f} px), every camera's inliers >= "
                     f"{config.min_inliers:g}")
    else:
        lines += [f"refused: {reason}" for reason in result.reasons]
    return lines
