"""The human body model beside the skeletons: a rest pose to fill joints from, and the ROS4HRI (REP-155) body frames.

- :func:`rest_pose`: where each joint of a skeleton lies on a standing person of 1.70 m, arms down, in the body frame
  (x forward out of the body, y to the person's left, z up; origin between the hips), metres. A joint whose name
  this table does not know is NaN. Complete skeletons start from it when a person has no pose of their own yet.
- :func:`body_frames`: the poses of ``body`` and of the ``human_description`` links (``HRI_LINKS``) from one
  person's joints: ``body`` at the mid-point of the hips, x forward out of the body, z towards the head; each link
  oriented as ``human_description``'s URDF draws it at rest (a limb segment along its -z axis, its hinge on y).
- :func:`body_tf`: the same poses for several people at once, as TF sends them (each link in the body frame).
- :func:`body_urdf`: a URDF of those links sized by the person's own bone lengths.

No ROS here: ``ros/hri.py`` turns these poses into TF frames and messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models import Skeleton

__all__ = ["HRI_LINKS", "HRI_JOINTS", "REST_POSE", "rest_pose", "BodyFrames", "body_frames", "body_tf",
           "check_hri_skeleton", "body_dimensions", "body_urdf"]

# 1.70 m, standing, arms down (proportions after the usual fractions of stature: hips at 0.53, shoulders at 0.82,
# eyes at 0.94 of the height). x forward, y left, z up, origin between the hips; heels behind, toes ahead of the ankle.
REST_POSE: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.0, 0.0, 0.0), "mid_hip": (0.0, 0.0, 0.0), "hip": (0.0, 0.0, 0.0), "body_center": (0.0, 0.0, 0.0),
    "spine": (0.0, 0.0, 0.22), "thorax": (0.0, 0.0, 0.46), "neck": (0.0, 0.0, 0.50),
    "nose": (0.10, 0.0, 0.66), "head": (0.01, 0.0, 0.79),
    "l_eye": (0.08, 0.032, 0.69), "l_ear": (0.0, 0.075, 0.67),
    "l_shoulder": (0.0, 0.18, 0.47), "l_elbow": (0.0, 0.20, 0.18), "l_wrist": (0.02, 0.20, -0.07),
    "l_hip": (0.0, 0.09, 0.0), "l_knee": (0.01, 0.09, -0.42), "l_ankle": (0.0, 0.09, -0.82),
    "l_heel": (-0.05, 0.09, -0.87), "l_big_toe": (0.15, 0.08, -0.89), "l_small_toe": (0.13, 0.13, -0.89),
}
REST_POSE.update({"r_" + name[2:]: (x, -y, z) for name, (x, y, z) in list(REST_POSE.items())
                  if name.startswith("l_")})

HRI_JOINTS = ("l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee",
              "r_knee", "l_ankle", "r_ankle")
"""Joints a skeleton needs for the ROS4HRI body frames (every built-in skeleton has them)."""
HRI_LINKS = ("torso", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist", "l_hip",
             "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle")
"""The ``human_description`` links published under ``body``: the upper arm is ``*_shoulder``, the forearm ``*_elbow``,
the thigh ``*_hip``, the shank ``*_knee`` (each link's origin is the joint it starts at)."""

STRAIGHT_HINT = 0.2
"""Weight of the body's forward direction in a limb's bending direction: decides the hinge of a straight limb, and
yields to the limb's own bend from about 10 degrees on."""


def rest_pose(skeleton: Skeleton) -> np.ndarray:
    """``[J, 3]`` the skeleton's joints on the rest pose (body frame, metres); NaN for names the table lacks."""
    return np.array([REST_POSE.get(name, (np.nan,) * 3) for name in skeleton.joint_names], dtype=np.float64)


def check_hri_skeleton(skeleton: Skeleton) -> None:
    """Raise ``ValueError`` when ``skeleton`` lacks a joint the body frames need (``HRI_JOINTS``)."""
    missing = [name for name in HRI_JOINTS if name not in skeleton.joint_names]
    if missing:
        raise ValueError(f"skeleton {skeleton.name!r} has no {', '.join(missing)}: the ROS4HRI body frames need them")


@dataclass(frozen=True)
class BodyFrames:
    """One person's ROS4HRI frames.

    Attributes:
        body: ``(R [3, 3], origin [3])`` of ``body`` in the joints' frame (columns of R: its x, y, z axes).
        links: ``{link: (R [3, 3], origin [3])}`` for each of ``HRI_LINKS``, in the joints' frame too.
    """

    body: tuple[np.ndarray, np.ndarray]
    links: dict[str, tuple[np.ndarray, np.ndarray]]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1, keepdims=True)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a x b`` of ``[..., 3]`` vectors: ``np.cross``'s products, without its axis handling (most of its time on the
    few vectors of a frame, sent every frame)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _frame(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Right-handed ``[..., 3, 3]`` from y directions and z directions ``[..., 3]`` (z made orthogonal to y)."""
    y = _unit(y)
    z = _unit(z - _dot(z, y) * y)
    return np.stack([_cross(y, z), y, z], axis=-1)


def _limb(start: np.ndarray, middle: np.ndarray, end: np.ndarray, forward: np.ndarray, sign: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``[..., 3, 3]`` of limbs' two segments (``start -> middle``, ``middle -> end``, ``[..., 3]``): each
    hangs along its -z, the hinge at ``middle`` is their shared y, and x points where the lower segment bends to
    (``sign`` +1: forward, as an elbow; -1: backward, as a knee) or, for a straight limb, along ``forward``."""
    z_upper = _unit(start - middle)
    lower = _unit(end - middle)
    bend = lower - _dot(lower, z_upper) * z_upper  # |bend| = sine of the bend
    hint = forward - _dot(forward, z_upper) * z_upper
    x_upper = _unit(sign[..., None] * bend + STRAIGHT_HINT * _unit(hint))
    y = _cross(z_upper, x_upper)
    upper = np.stack([x_upper, y, z_upper], axis=-1)
    z_lower = -lower
    y_lower = _unit(y - _dot(y, z_lower) * z_lower)
    return upper, np.stack([_cross(y_lower, z_lower), y_lower, z_lower], axis=-1)


def body_frames(skeleton: Skeleton, joints: np.ndarray) -> BodyFrames | None:
    """The ROS4HRI frames of one person ``joints [J, 3]`` (metres, any frame); ``None`` when a joint they need is
    NaN (``HRI_JOINTS``; a complete skeleton has them all). :func:`body_tf` for several people, as TF sends them."""
    ok, rotations, origins = _poses(skeleton, joints[None])
    if not ok[0]:
        return None
    return BodyFrames((rotations[0, 0], origins[0, 0]),
                      {link: (rotations[0, k], origins[0, k]) for k, link in enumerate(HRI_LINKS, 1)})


def body_tf(skeleton: Skeleton, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What TF carries of people ``joints [N, J, 3]``, for all of them in one pass: rotations ``[N, 1 + L, 3, 3]``
    and origins ``[N, 1 + L, 3]`` of ``body`` in the joints' frame, then of each of ``HRI_LINKS`` in the body frame
    (``body_T_link``). A joint of ``HRI_JOINTS`` that is NaN makes the poses built from it NaN."""
    _, rotations, origins = _poses(skeleton, joints)
    body_r, body_p = rotations[:, :1], origins[:, :1]  # [N, 1, 3, 3], [N, 1, 3]
    links_r = body_r.swapaxes(-1, -2) @ rotations[:, 1:]
    links_p = ((origins[:, 1:] - body_p)[..., None, :] @ body_r)[..., 0, :]  # body^T (p - o), as rows
    return np.concatenate([body_r, links_r], axis=1), np.concatenate([body_p, links_p], axis=1)


def _poses(skeleton: Skeleton, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ok [N]``, rotations ``[N, 1 + L, 3, 3]`` and origins ``[N, 1 + L, 3]`` of ``body`` then ``HRI_LINKS``, all
    in the joints' frame (see :func:`body_frames`)."""
    index = {name: i for i, name in enumerate(skeleton.joint_names)}
    point = {name: joints[:, index[name]] for name in HRI_JOINTS}
    ok = np.all([np.isfinite(p).all(-1) for p in point.values()], axis=0)
    hips = 0.5 * (point["l_hip"] + point["r_hip"])
    shoulders = 0.5 * (point["l_shoulder"] + point["r_shoulder"])
    spine = shoulders - hips
    body = _frame(point["l_hip"] - point["r_hip"], spine)
    torso = _frame(point["l_shoulder"] - point["r_shoulder"], spine)
    # The four limbs at once: left and right arms (bending forward), then legs (backward).
    sides = ("l", "r")
    starts = np.stack([point[f"{s}_shoulder"] for s in sides] + [point[f"{s}_hip"] for s in sides], axis=1)
    middles = np.stack([point[f"{s}_elbow"] for s in sides] + [point[f"{s}_knee"] for s in sides], axis=1)
    ends = np.stack([point[f"{s}_wrist"] for s in sides] + [point[f"{s}_ankle"] for s in sides], axis=1)
    forward = np.stack([torso[..., 0], torso[..., 0], body[..., 0], body[..., 0]], axis=1)
    upper, lower = _limb(starts, middles, ends, forward, np.array([1.0, 1.0, -1.0, -1.0]))
    head_r, head_p = _head(index, joints, torso, shoulders)
    # Each limb k (l arm, r arm, l leg, r leg): its upper segment at the start, the lower one at the middle, and the
    # end link (wrist, ankle) oriented as the lower segment: the order of HRI_LINKS.
    limb_r = np.stack([upper, lower, lower], axis=2).reshape(len(joints), 12, 3, 3)
    limb_p = np.stack([starts, middles, ends], axis=2).reshape(len(joints), 12, 3)
    rotations = np.concatenate([body[:, None], torso[:, None], head_r[:, None], limb_r], axis=1)
    origins = np.concatenate([hips[:, None], shoulders[:, None], head_p[:, None], limb_p], axis=1)
    return ok, rotations, origins


def _head(index: dict[str, int], joints: np.ndarray, torso: np.ndarray, shoulders: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """The head link ``(R [N, 3, 3], origin [N, 3])``: between the ears' and the eyes' mid-points (human_description
    puts it ahead of the skull's centre, at the eyes' height), y from the right ear (eye) to the left, x towards the
    nose; what the skeleton lacks comes from the torso (without face joints: the torso's axes, 0.25 m above the
    shoulders)."""
    missing = np.full(joints.shape[::2], np.nan)  # [N, 3]

    def at(name: str) -> np.ndarray:
        return joints[:, index[name]] if name in index else missing

    def known(v: np.ndarray) -> np.ndarray:
        return np.isfinite(v).all(-1, keepdims=True)

    ears, eyes = 0.5 * (at("l_ear") + at("r_ear")), 0.5 * (at("l_eye") + at("r_eye"))
    pair = np.where(known(ears), ears, eyes)  # the first pair a face has
    centre = np.where(known(ears) & known(eyes), 0.5 * (ears + eyes), pair)
    for fallback in (at("nose"), at("head"), shoulders + 0.25 * torso[..., 2]):
        centre = np.where(known(centre), centre, fallback)
    across = np.where(known(ears), at("l_ear") - at("r_ear"), at("l_eye") - at("r_eye"))
    across = np.where(known(across), across, torso[..., 1])
    ahead = at("nose") - pair
    ahead = np.where(known(ahead), ahead, torso[..., 0])
    y = _unit(across)
    x = _unit(ahead - _dot(ahead, y) * y)
    return np.stack([x, y, _cross(x, y)], axis=-1), centre


def body_dimensions(frames: BodyFrames) -> dict[str, float]:
    """The lengths (m) a URDF of the person needs, from their frames: ``spine`` (hips to shoulders), ``neck`` (shoulders
    to the head link), ``shoulders`` and ``hips`` (widths), and per side ``{l,r}_upper_arm``, ``_forearm``, ``_thigh``,
    ``_shank``."""
    links, hips = frames.links, frames.body[1]
    out = {"spine": float(np.linalg.norm(links["torso"][1] - hips)),
           "neck": float(np.linalg.norm(links["head"][1] - links["torso"][1])),
           "shoulders": float(np.linalg.norm(links["l_shoulder"][1] - links["r_shoulder"][1])),
           "hips": float(np.linalg.norm(links["l_hip"][1] - links["r_hip"][1]))}
    for side in "lr":
        for name, (a, b) in {"upper_arm": ("shoulder", "elbow"), "forearm": ("elbow", "wrist"),
                             "thigh": ("hip", "knee"), "shank": ("knee", "ankle")}.items():
            out[f"{side}_{name}"] = float(np.linalg.norm(links[f"{side}_{a}"][1] - links[f"{side}_{b}"][1]))
    return out


LIMB_RADIUS = 0.03


def _visual(shape: str, xyz: tuple[float, float, float]) -> str:
    return (f'<visual><origin xyz="{xyz[0]:.4f} {xyz[1]:.4f} {xyz[2]:.4f}" rpy="0 0 0"/><geometry>{shape}</geometry>'
            '<material name="skin"/></visual>')


def _segment(length: float) -> str:
    """A limb segment hanging from its link's origin along -z (as human_description draws one)."""
    return _visual(f'<cylinder radius="{LIMB_RADIUS}" length="{length:.4f}"/>', (0.0, 0.0, -length / 2))


def body_urdf(suffix: str, size: dict[str, float]) -> str:
    """The URDF of one body: the links ``body`` and ``HRI_LINKS``, each named ``<link>_<suffix>``, joined as in
    ``human_description`` (torso and legs on the body, head and arms on the torso, each segment on the one before)
    with their rest offsets from ``size`` (:func:`body_dimensions`). The joints are ``floating``: every link's pose
    comes from TF (the publisher sends each link's frame), so a ``robot_state_publisher`` given this URDF publishes
    nothing that competes with it."""
    def link(name: str, visuals: str = "") -> str:
        return f'  <link name="{name}_{suffix}">{visuals}</link>\n'

    def joint(child: str, parent: str, xyz: tuple[float, float, float]) -> str:
        return (f'  <joint name="{child}_{suffix}" type="floating"><parent link="{parent}_{suffix}"/>'
                f'<child link="{child}_{suffix}"/><origin xyz="{xyz[0]:.4f} {xyz[1]:.4f} {xyz[2]:.4f}" rpy="0 0 0"/>'
                '</joint>\n')

    spine, neck = size["spine"], size["neck"]
    parts = [link("body"), link("torso", _visual(f'<cylinder radius="{LIMB_RADIUS}" length="{spine:.4f}"/>',
                                                 (0.0, 0.0, -spine / 2))
                                  + _visual(f'<sphere radius="{LIMB_RADIUS}"/>', (0.0, 0.0, 0.0))),
             joint("torso", "body", (0.0, 0.0, spine)),
             link("head", _visual(f'<sphere radius="{max(0.5 * neck, 0.05):.4f}"/>', (0.0, 0.0, 0.0))),
             joint("head", "torso", (0.0, 0.0, neck))]
    for side, sign in (("l", 1.0), ("r", -1.0)):
        arm, forearm = size[f"{side}_upper_arm"], size[f"{side}_forearm"]
        thigh, shank = size[f"{side}_thigh"], size[f"{side}_shank"]
        parts += [link(f"{side}_shoulder", _segment(arm)), joint(f"{side}_shoulder", "torso",
                                                                 (0.0, sign * size["shoulders"] / 2, 0.0)),
                  link(f"{side}_elbow", _segment(forearm)), joint(f"{side}_elbow", f"{side}_shoulder", (0.0, 0.0, -arm)),
                  link(f"{side}_wrist"), joint(f"{side}_wrist", f"{side}_elbow", (0.0, 0.0, -forearm)),
                  link(f"{side}_hip", _segment(thigh)), joint(f"{side}_hip", "body", (0.0, sign * size["hips"] / 2, 0.0)),
                  link(f"{side}_knee", _segment(shank)), joint(f"{side}_knee", f"{side}_hip", (0.0, 0.0, -thigh)),
                  link(f"{side}_ankle"), joint(f"{side}_ankle", f"{side}_knee", (0.0, 0.0, -shank))]
    return ('<?xml version="1.0"?>\n'
            f'<robot name="human_{suffix}">\n  <material name="skin"><color rgba="1 0.7 0 1"/></material>\n'
            + "".join(parts) + "</robot>\n")
