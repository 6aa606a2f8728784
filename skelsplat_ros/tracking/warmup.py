"""Warm-up of a live tracker: throw-away frames that pay every first-call cost before real frames arrive.

The first :meth:`MultiPersonTracker.step` calls of a process are slow: the tracker's numba kernels are compiled or
loaded from their disk cache, numpy and scipy build their first plans, and every path of the tracker (a birth from an
unclaimed cluster, confirmation, a batched refit of several people, an empty frame, a track that ends) runs for the
first time; at lag 0 the depth filter's refit and bone gate (a joint one view alone sees), with a fixed lag the
filter bank's numba kernels and the read-out too. A node that takes real frames
before that drops or delays them. :func:`warm_up` runs those paths on a tracker of its own (a
:class:`~.lagged.LaggedTracker` with the node's lag), with synthetic people projected exactly into the rig, so that
the real tracker starts fresh (no track, no id used) and its first frame costs what its hundredth does.

Pure numpy (no simulation module: the runtime never loads ``sim/``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..fusion.config import FusionConfig
from ..geometry.camera import Camera, CameraRig, look_at
from ..skeleton.models import Skeleton
from .lagged import LaggedFrame, LaggedTracker
from .tracker import MultiPersonTracker, TrackerConfig, TrackerStep

__all__ = ["WarmUp", "synthetic_person", "warm_up"]

BONE_LENGTH = 0.25
"""m, every bone of the synthetic person (a body about 1.5 m across)."""


@dataclass
class WarmUp:
    """What :func:`warm_up` did.

    Attributes:
        seconds: wall time it took.
        frames: tracker steps run.
        people: confirmed people published over those steps (0: nothing was fused, see ``rig``).
        rig: ``"given"`` when the rig it was given served, ``"ring"`` when that rig could not see the synthetic people
            (e.g. cameras not posed yet) and a ring of as many cameras was used instead.
        last: the last step (with a lag: frame out) that published people (for warming the output conversion), or
            ``None``.
    """

    seconds: float
    frames: int
    people: int
    rig: str
    last: TrackerStep | LaggedFrame | None


def synthetic_person(skeleton: Skeleton) -> np.ndarray:
    """A rigid, deterministic 3D person ``[J, 3]`` (m) centred on the origin, for any skeleton: joints placed along
    the skeleton's bones (``BONE_LENGTH`` each), each bone in a direction of its own; of a few such layouts, the
    first whose joints are all at least 5 cm apart (else the one whose closest two joints are furthest apart)."""
    best, best_gap = None, -1.0
    for shift in range(16):
        joints = _layout(skeleton, shift)
        distance = np.linalg.norm(joints[:, None] - joints[None], axis=-1)  # [J, J]
        gap = float(distance[np.triu_indices(len(joints), 1)].min(initial=np.inf))
        if gap > best_gap:
            best, best_gap = joints, gap
        if gap >= 0.05:
            break
    return best


def _layout(skeleton: Skeleton, shift: int) -> np.ndarray:
    """One layout of :func:`synthetic_person`: joint ``j``'s bone points along the ``j + shift``-th of ``2 J``
    directions spread over the sphere (golden-angle spiral)."""
    count = skeleton.num_joints
    k = (np.arange(count) + shift) % (2 * count) + 0.5
    z = 1.0 - k / count
    azimuth = np.pi * (3.0 - np.sqrt(5.0)) * k
    directions = np.stack([np.sqrt(1.0 - z**2) * np.cos(azimuth), np.sqrt(1.0 - z**2) * np.sin(azimuth), z], axis=-1)
    joints = np.full((count, 3), np.nan)
    bones = skeleton.bone_array.reshape(-1, 2).tolist()
    for start in range(count):  # each part the bones connect (a head apart from a body, say) from its first joint
        if np.isfinite(joints[start, 0]):
            continue
        joints[start] = 2.0 * BONE_LENGTH * directions[start]
        placed = True
        while placed:
            placed = False
            for a, b in bones:
                for parent, child in ((a, b), (b, a)):
                    if np.isfinite(joints[parent, 0]) and not np.isfinite(joints[child, 0]):
                        joints[child] = joints[parent] + BONE_LENGTH * directions[child]
                        placed = True
    return joints - joints.mean(axis=0)


def _ring(rig: CameraRig) -> CameraRig:
    """As many cameras as ``rig`` (same names, intrinsics and image sizes) on a 4 m circle at 1.5 m height, each
    looking at the centre of the circle at 1 m height."""
    cameras = []
    for k, camera in enumerate(rig):
        angle = 2.0 * np.pi * k / len(rig)
        rotation, translation = look_at(np.array([4.0 * np.cos(angle), 4.0 * np.sin(angle), 1.5]),
                                        np.array([0.0, 0.0, 1.0]))
        cameras.append(Camera(camera.name, camera.K, rotation, translation, tuple(camera.size)))
    return CameraRig(cameras)


def _target(rig: CameraRig) -> np.ndarray:
    """The point nearest to every camera's optical axis (least squares): where the rig looks."""
    centres = rig.centres
    axes = rig.R[:, 2, :]  # [V, 3] optical axes in the world frame (third row of world-to-camera R)
    normal = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # [V, 3, 3] projectors orthogonal to the axes
    point, *_ = np.linalg.lstsq(normal.sum(axis=0), np.einsum("vij,vj->i", normal, centres), rcond=None)
    # A rig whose axes are parallel has no such point: in front of its first camera instead.
    if not np.isfinite(point).all() or np.linalg.norm(point - centres.mean(axis=0)) > 100.0:
        point = centres[0] + 3.0 * axes[0]
    return point


def _detections(rig: CameraRig, people: np.ndarray) -> list[np.ndarray]:
    """Exact keypoints of ``people [P, J, 3]`` in every view: ``[V]`` of ``[P, J, 3]`` (x px, y px, confidence 0.9;
    NaN and 0 where a joint is behind the camera or outside its image), float64 as the node's parser makes them."""
    uv = np.stack([rig.project(person) for person in people], axis=1)  # [V, P, J, 2]
    depth = np.einsum("vij,pkj->vpki", rig.R, people)[..., 2] + rig.t[:, None, None, 2]  # [V, P, J]
    size = rig.sizes[:, None, None, :]
    seen = (depth > 0.1) & np.isfinite(uv).all(-1) & (uv >= 0).all(-1) & (uv < size).all(-1)
    keypoints = np.concatenate([np.where(seen[..., None], uv, np.nan), np.where(seen, 0.9, 0.0)[..., None]], axis=-1)
    return [np.ascontiguousarray(view) for view in keypoints]


def _one_view_sees(detections: list[np.ndarray], skeleton: Skeleton) -> list[np.ndarray]:
    """``detections`` (``[V]`` of ``[P, J, 3]``) with every person's last joint left to the first view that sees it.
    Its depth then rests on the frames before: at lag 0 the depth filter's refit and bone gate (``streaming.py``)
    run, which exact views of every joint never start on a rig whose cameras fix every joint well (the lab rig)."""
    joint = skeleton.num_joints - 1
    seeing = [k for k, view in enumerate(detections) if np.isfinite(view[:, joint, 0]).any()]
    out = [view.copy() for view in detections]
    for view in out[seeing[0] + 1:] if seeing else []:
        view[:, joint] = (np.nan, np.nan, 0.0)
    return out


def _run(rig: CameraRig, skeleton: Skeleton, fusion: FusionConfig, config: TrackerConfig, people: int,
         lag: float) -> tuple[int, int, TrackerStep | LaggedFrame | None]:
    """The warm-up frames on ``rig``: one person until confirmed, then ``people`` at once (births beside a live
    track, a batched refit), two frames where one view alone sees a joint of theirs, a frame of nobody, and the same
    people after the tracks ended (with a lag, the jump outputs the pending frames). Returns (frames, people
    published, last step or frame out that published people)."""
    lagged = LaggedTracker(rig, skeleton, fusion, config, lag) if lag > 0 else None
    tracker = lagged.tracker if lagged is not None else MultiPersonTracker(rig, skeleton, fusion, config)
    body = synthetic_person(skeleton)
    centre = _target(rig)
    # Side by side, 0.8 m apart, across the rig's view.
    offsets = (np.arange(people) - (people - 1) / 2.0)[:, None] * np.array([0.8, 0.0, 0.0])
    crowd = centre + offsets[:, None, :] + body[None]  # [P, J, 3]
    one, several = _detections(rig, crowd[people // 2:people // 2 + 1]), _detections(rig, crowd)
    nobody = [np.empty((0, skeleton.num_joints, 3))] * len(rig)
    frames = ([one] * (config.confirm_frames + 1) + [several] * (config.confirm_frames + 1)
              + [_one_view_sees(several, skeleton)] * 2 + [nobody])
    published, last, stamp = 0, None, 0.0
    for index, detections in enumerate(frames + [several, several]):
        if index == len(frames):  # past every track's life: they end, and the same people are born again
            stamp += config.delete_after + config.tentative_timeout + 1.0
        outputs = [tracker.step(detections, stamp)] if lagged is None else lagged.step(detections, stamp)[1]
        for out in outputs + (lagged.flush() if lagged is not None and index == len(frames) + 1 else []):
            published += len(out.people)
            last = out if out.people else last
        stamp += 1.0 / 30.0
    return len(frames) + 2, published, last


def warm_up(rig: CameraRig, skeleton: Skeleton, fusion: FusionConfig, config: TrackerConfig = TrackerConfig(),
            people: int = 3, lag: float = 0.0) -> WarmUp:
    """Run throw-away frames through a tracker built like the live one (see the module docstring; ``lag`` (s) > 0:
    a :class:`~.lagged.LaggedTracker`'s).

    ``rig`` is the live rig when known (its cameras' caches are warmed too); a rig that sees none of the synthetic
    people (placeholder poses before CameraInfo and TF arrived) is replaced by a ring of as many cameras.
    """
    started = time.perf_counter()
    frames, published, last = _run(rig, skeleton, fusion, config, people, lag)
    used = "given"
    if not published:
        more, published, last = _run(_ring(rig), skeleton, fusion, config, people, lag)
        frames += more
        used = "ring"
    return WarmUp(time.perf_counter() - started, frames, published, used, last)
