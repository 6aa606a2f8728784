"""Simulated scenes of several people: :class:`MultiPersonScenario`, :func:`make_multi_person_scenario` and
:func:`compose_people` (any set of 3D people through the detector, with mutual occlusion, single-view ghosts and
shuffled detection slots without ids)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton, get_skeleton
from .detector import NoiseModel, _runs, _segment_distance, simulate_detections
from .motion import _rot_z, generate_motion
from .rigs import make_rig

_STREAM_SCENE = 0x6d756c


@dataclass(frozen=True)
class SceneEffects:
    """What happens between people and around them in a scene.

    Attributes:
        occlusion: joints hidden behind another person's torso (a capsule from the hip centre to the shoulder
            centre, ``torso_radius`` wide) from a camera go missing; a person mostly hidden is not detected at all.
        torso_radius: radius of that capsule (m).
        hidden_fraction: a person with more of their detected joints hidden than this is not detected in that view.
        ghost_rate: fraction of view-frames holding a ghost: a person-like detection seen by that view only (a
            reflection, a poster, a person outside the capture volume), consistent with no other view.
        ghost_duration: mean duration (s) of a ghost.
    """

    occlusion: bool = True
    torso_radius: float = 0.16
    hidden_fraction: float = 0.6
    ghost_rate: float = 0.05
    ghost_duration: float = 1.0


@dataclass
class MultiPersonScenario:
    """A simulated multi-person recording.

    Attributes:
        rig: the cameras.
        skeleton: the joint layout.
        fps: frame rate.
        ground_truth: ``[F, P, J, 3]`` metres, NaN while a person is absent.
        keypoints: ``[V, F, S, J, 3]`` detection slots per view-frame in shuffled order, NaN-padded (confidence 0),
            ghosts included: what a detector without ids gives.
        slot_person: ``[V, F, S]`` true person index of each slot, -1 for ghosts and padding.
        person_keypoints: ``[V, F, P, J, 3]`` each person's own detections (the oracle association).
        min_separation: smallest distance (m) between two people's hip centres over the frames both are present.
    """

    rig: CameraRig
    skeleton: Skeleton
    fps: float
    ground_truth: np.ndarray
    keypoints: np.ndarray
    slot_person: np.ndarray
    person_keypoints: np.ndarray
    min_separation: float

    @property
    def num_frames(self) -> int:
        return int(self.ground_truth.shape[0])

    @property
    def num_people(self) -> int:
        return int(self.ground_truth.shape[1])

    @property
    def timestamps(self) -> np.ndarray:
        """Frame times ``[F]`` in seconds from 0."""
        return np.arange(self.num_frames) / self.fps

    def detections(self, frame: int) -> list[np.ndarray]:
        """The tracker's input for one frame: per view ``[S_v, J, 3]``, padding rows removed."""
        out = []
        for v in range(len(self.rig)):
            rows = self.keypoints[v, frame]
            out.append(rows[(np.nan_to_num(rows[..., 2]) > 0).any(-1)])
        return out


def _hip_centre(skeleton: Skeleton, points: np.ndarray) -> np.ndarray:
    hips = [j for j, n in enumerate(skeleton.joint_names) if n.endswith("_hip")]
    return points[..., hips, :].mean(axis=-2) if hips else points[..., list(skeleton.root), :].mean(axis=-2)


def _shoulder_centre(skeleton: Skeleton, points: np.ndarray) -> np.ndarray:
    shoulders = [j for j, n in enumerate(skeleton.joint_names) if n.endswith("_shoulder")]
    return points[..., shoulders, :].mean(axis=-2)


def _mutual_occlusion(rig: CameraRig, skeleton: Skeleton, truth: np.ndarray, radius: float) -> np.ndarray:
    """Joints hidden behind another person's torso: ``[V, F, P, J]`` bool."""
    hips, shoulders = _hip_centre(skeleton, truth), _shoulder_centre(skeleton, truth)  # [F, P, 3]
    num_people = truth.shape[1]
    hidden = np.zeros((len(rig),) + truth.shape[:3], dtype=bool)
    for v, centre in enumerate(rig.centres):
        camera = np.broadcast_to(centre, truth.shape)
        for blocker in range(num_people):
            others = [p for p in range(num_people) if p != blocker]
            if not others:
                continue
            # Segment camera -> joint against the blocker's torso segment; hidden when they pass within the radius
            # and the blocker is in front of the joint.
            distance, s, _ = _segment_distance(
                camera[:, others], truth[:, others],
                hips[:, blocker, None, None], shoulders[:, blocker, None, None],
            )
            in_front = s < 0.97
            hidden[v][:, others] |= (np.nan_to_num(distance, nan=np.inf) < radius) & in_front
    return hidden


def compose_people(
    rig: CameraRig,
    skeleton: Skeleton,
    truth: np.ndarray,
    fps: float = 30.0,
    noise: str | NoiseModel = "realistic",
    seed: int = 0,
    effects: SceneEffects = SceneEffects(),
) -> MultiPersonScenario:
    """People ``truth [F, P, J, 3]`` (NaN while absent) through the simulated detector of every view.

    Each person gets their own detector noise (:func:`simulate_detections`), then ``effects`` adds mutual occlusion
    and ghosts, and every view-frame's detections are shuffled into slots without ids. Seeded.
    """
    noise_model = NoiseModel.preset(noise) if isinstance(noise, str) else noise
    truth = np.asarray(truth, dtype=np.float64)
    num_frames, num_people = truth.shape[:2]
    num_views = len(rig)
    rng = np.random.default_rng([int(seed), _STREAM_SCENE])
    own = np.stack([
        simulate_detections(rig, truth[:, p], skeleton, noise_model, seed=int(seed) * 101 + p, fps=fps)
        for p in range(num_people)
    ], axis=2)  # [V, F, P, J, 3]
    if effects.occlusion and num_people > 1:
        hidden = _mutual_occlusion(rig, skeleton, truth, effects.torso_radius)
        seen = np.nan_to_num(own[..., 2]) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mostly = (hidden & seen).sum(-1) > effects.hidden_fraction * seen.sum(-1)
        own[hidden | mostly[..., None]] = (np.nan, np.nan, 0.0)

    # Ghosts: another pose of a random person, moved 1.5-3 m sideways, seen by one view only.
    ghost_on, ghost_run = _runs(rng, (num_views,), num_frames, effects.ghost_rate, effects.ghost_duration * fps)
    ghosts = np.full((num_views, num_frames, 1, skeleton.num_joints, 3), np.nan)
    ghosts[..., 2] = 0.0
    if ghost_on.any():
        runs = int(ghost_run.max()) + 1
        source = rng.integers(0, num_people, runs)
        lag = rng.integers(0, num_frames, runs)
        angle = rng.uniform(0, 2 * np.pi, runs)
        shift = rng.uniform(1.5, 3.0, runs)
        for v, f in zip(*np.nonzero(ghost_on)):
            run = ghost_run[v, f]
            pose = truth[(f + lag[run]) % num_frames, source[run]]
            if not np.isfinite(pose).all():
                continue
            pose = pose + shift[run] * np.array([np.cos(angle[run]), np.sin(angle[run]), 0.0])
            uv = rig[v].project(pose) + rng.normal(0.0, 2.0, (skeleton.num_joints, 2))
            inside = rig[v].in_image(uv)
            ghosts[v, f, 0, :, :2] = np.where(inside[:, None], uv, np.nan)
            ghosts[v, f, 0, :, 2] = np.where(inside, rng.uniform(0.5, 0.9, skeleton.num_joints), 0.0)

    # Shuffle people and ghosts into slots without ids.
    candidates = np.concatenate([own, ghosts], axis=2)  # [V, F, P + 1, J, 3]
    owner = np.array(list(range(num_people)) + [-1])
    present = (np.nan_to_num(candidates[..., 2]) > 0).any(-1)  # [V, F, P + 1]
    num_slots = max(1, int(present.sum(-1).max()))
    keypoints = np.full((num_views, num_frames, num_slots, skeleton.num_joints, 3), np.nan)
    keypoints[..., 2] = 0.0
    slot_person = np.full((num_views, num_frames, num_slots), -1, dtype=np.int64)
    for v in range(num_views):
        for f in range(num_frames):
            rows = np.flatnonzero(present[v, f])
            rows = rows[rng.permutation(len(rows))]
            keypoints[v, f, : len(rows)] = candidates[v, f, rows]
            slot_person[v, f, : len(rows)] = owner[rows]
    return MultiPersonScenario(
        rig=rig, skeleton=skeleton, fps=float(fps), ground_truth=truth, keypoints=keypoints,
        slot_person=slot_person, person_keypoints=own, min_separation=_min_separation(skeleton, truth),
    )


def _min_separation(skeleton: Skeleton, truth: np.ndarray) -> float:
    centres = _hip_centre(skeleton, truth)[..., :2]  # [F, P, 2]
    gaps = np.linalg.norm(centres[:, :, None] - centres[:, None], axis=-1)
    gaps[:, np.arange(truth.shape[1]), np.arange(truth.shape[1])] = np.inf
    finite = np.isfinite(gaps)
    return float(gaps[finite].min()) if finite.any() else float("inf")


def make_multi_person_scenario(
    rig_kind: str | CameraRig,
    num_people: int,
    num_frames: int = 300,
    fps: float = 30.0,
    noise: str | NoiseModel = "realistic",
    seed: int = 0,
    skeleton_name: str = "h36m17",
    enter_leave: bool = True,
    min_separation: float = 0.45,
    effects: SceneEffects = SceneEffects(),
    image_size: tuple[int, int] | None = None,
    spread: float | None = None,
    walkers: int | None = None,
) -> MultiPersonScenario:
    """``num_people`` (1-5 or more) seeded people of different body sizes walking and moving among each other.

    Each person is :func:`generate_motion` of their own seed (height 1.55-1.95 m), walking (orbits of 0.8-1.5 m) or
    moving in place, turned and moved by up to ``spread`` metres along x and y so that paths cross while hip
    centres stay at least ``min_separation`` apart (bodies do not pass through each other; the closest pair comes
    to about that distance, or as near as 300 tries get). With ``enter_leave`` every person but the first enters
    late or leaves early (present at least half of the recording). Then :func:`compose_people`.

    Args:
        rig_kind: a :func:`make_rig` kind (built with ``image_size`` and ``seed``), or the cameras themselves.
        spread: half-width (m) of the square of the people's offsets; default 0.7, or 1.8 for a crowd of more
            than 5 people.
        walkers: how many people walk (the first ones); default every other person, or one in five in a crowd of
            more than 5 (more walking orbits than that leave no room to pass each other).
    """
    if num_people < 1:
        raise ValueError("make_multi_person_scenario: num_people must be at least 1")
    skeleton = get_skeleton(skeleton_name)
    rig = rig_kind if isinstance(rig_kind, CameraRig) else make_rig(rig_kind, image_size=image_size, seed=seed)
    rng = np.random.default_rng([int(seed), _STREAM_SCENE, num_people])
    crowd = num_people > 5
    spread = (1.8 if crowd else 0.7) if spread is None else spread
    index = np.arange(num_people)
    if walkers is None:
        walking = index < -(-num_people // 5) if crowd else index % 2 == 0
    else:
        walking = index < walkers
    motions = [
        generate_motion(skeleton, num_frames, fps=fps, seed=int(seed) * 1009 + 17 * p + 1,
                        motion="walk" if walking[p] else "mixed")
        for p in range(num_people)
    ]
    presence = np.ones((num_frames, num_people), dtype=bool)
    if enter_leave:
        for p in range(1, num_people):
            span = int(rng.integers(num_frames // 2, num_frames + 1))
            start = int(rng.integers(0, num_frames - span + 1))
            presence[:, p] = False
            presence[start:start + span, p] = True
    # Rejection sampling of each person's turn and offset: keep the layout whose closest approach is nearest above
    # ``min_separation`` (crossing paths, never inside each other).
    best, best_gap = None, -np.inf
    for _ in range(300):
        angle = rng.uniform(0, 2 * np.pi, num_people)
        offset = rng.uniform(-spread, spread, (num_people, 2))
        placed = np.stack([
            (_rot_z(angle[p]) @ motions[p][..., None])[..., 0] + np.array([*offset[p], 0.0])
            for p in range(num_people)
        ], axis=1)
        placed[~presence] = np.nan
        gap = _min_separation(skeleton, placed)
        better = best is None or (gap >= min_separation and (best_gap < min_separation or gap < best_gap)) or (
            best_gap < min_separation and gap > best_gap)
        if better:
            best, best_gap = placed, gap
        if min_separation <= best_gap <= min_separation + 0.1:
            break
    return compose_people(rig, skeleton, best, fps=fps, noise=noise, seed=seed, effects=effects)
