"""Between ROS messages and numpy arrays: input keypoints (with validation), fused skeletons, TF, rviz markers.

Kept free of node state so the tests and the demo use the same code as the node.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, TransformStamped
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from skelsplat_ros.msg import (
    Keypoints2DArray,
    PersonKeypoints2D,
    Skeleton3D,
    Skeleton3DArray,
)
from skelsplat_ros.skeleton.models import track_rgb

__all__ = [
    "ParsedKeypoints",
    "parse_keypoints",
    "people_from_block",
    "keypoints_msg",
    "skeleton_array_msg",
    "skeleton_arrays",
    "tf_transforms",
    "JointFrames",
    "joint_frame",
    "marker_array",
    "delete_markers",
    "skeleton_msg",
    "track_colour",
    "stamp_to_seconds",
    "stamp_to_ns",
    "seconds_to_stamp",
]

# --- time ------------------------------------------------------------------------------------------------------------


def stamp_to_ns(stamp: Time) -> int:
    """Exact integer nanoseconds of a stamp (for matching stamps across messages)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_stamp(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns) // 1_000_000_000, nanosec=int(ns) % 1_000_000_000)


# --- input -----------------------------------------------------------------------------------------------------------


@dataclass
class ParsedKeypoints:
    """One validated Keypoints2DArray: every well-formed person of it, most confident first.

    Attributes:
        people: ``[S, J, 3]`` float64 (x px, y px, confidence) per person, x/y NaN and confidence 0 for missing
            joints; ``S = 0`` when the camera saw nobody (a valid view without data) or on rejection. Sorted by
            mean confidence (missing joints count 0), highest first.
        ids: ``[S]`` the people's ``id`` fields (-1 when the detector does not track).
        rejected: reason the whole message is unusable, else ``None``.
        ignored_people: people skipped because their arrays were malformed (another one was usable).
        nonfinite_joints: joints with confidence > 0 but a NaN/inf value, treated as missing.
    """

    people: np.ndarray
    ids: np.ndarray
    rejected: str | None = None
    ignored_people: int = 0
    nonfinite_joints: int = 0

    @property
    def keypoints(self) -> np.ndarray | None:
        """``[J, 3]`` of the most confident person, ``None`` when there is nobody."""
        return self.people[0] if len(self.people) else None

    @property
    def person_id(self) -> int:
        """Id of the most confident person (-1 when there is nobody)."""
        return int(self.ids[0]) if len(self.ids) else -1


def _nobody(num_joints: int, rejected: str | None = None, ignored: int = 0) -> ParsedKeypoints:
    return ParsedKeypoints(np.empty((0, num_joints, 3)), np.empty(0, dtype=np.int64), rejected, ignored)


def _joint_arrays(x: np.ndarray, y: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``[..., J, 3]`` of x, y, confidence arrays ``[..., J]`` (any float type), and how many joints
    ``[...]`` claimed a NaN/inf value."""
    # Confidence 0 (or less, or non-finite) marks a missing joint whatever x/y hold; a joint claimed with
    # confidence > 0 but NaN/inf coordinates is corrupt: missing too, and counted.
    x, y, conf = (np.asarray(a, dtype=np.float64) for a in (x, y, conf))
    conf_ok = np.isfinite(conf)
    claimed = conf_ok & (conf > 0.0)
    xy_ok = np.isfinite(x) & np.isfinite(y)
    nonfinite = np.count_nonzero(claimed & ~xy_ok, axis=-1) + np.count_nonzero(~conf_ok, axis=-1)
    keep = claimed & xy_ok
    kp = np.stack([np.where(keep, x, np.nan), np.where(keep, y, np.nan), np.where(keep, np.minimum(conf, 1.0), 0.0)],
                  axis=-1)
    return kp, nonfinite


def _person_arrays(person: PersonKeypoints2D, num_joints: int) -> tuple[np.ndarray | None, str | None, int]:
    """``([J, 3], None, nonfinite)`` for a well-formed person, else ``(None, reason, 0)``."""
    x, y, conf = person.x, person.y, person.confidence
    if not (len(x) == len(y) == len(conf)):
        return None, "bad_shape", 0
    if len(x) != num_joints:
        return None, "wrong_joint_count", 0
    kp, nonfinite = _joint_arrays(x, y, conf)
    return kp, None, int(nonfinite)


def people_from_block(block: np.ndarray) -> np.ndarray:
    """What :func:`parse_keypoints` makes of well-formed people given as one ``[P, 3, J]`` array (x, y, confidence;
    e.g. :func:`~skelsplat_ros.ros.wire.read_keypoints`' fast path): ``[P, J, 3]``, most confident first, without
    building a message object per person."""
    people, _ = _joint_arrays(block[:, 0], block[:, 1], block[:, 2])
    return people[_by_confidence(people)]


def _by_confidence(people: np.ndarray) -> np.ndarray:
    """Order of ``people [P, J, 3]`` by mean confidence, highest first (stable: equally confident people keep their
    order)."""
    return np.argsort(-people[:, :, 2].mean(axis=1), kind="stable")


def parse_keypoints(msg: Keypoints2DArray, skeleton_name: str, num_joints: int) -> ParsedKeypoints:
    """Validate one message and keep its people, most confident first.

    Malformed people are skipped and counted (the message is rejected only when none is usable). An empty
    ``skeleton`` string is accepted. The node caps absurd people counts before this, in the validator
    (``io/validation.py``), which sees the raw arrays.
    """
    if msg.skeleton and msg.skeleton != skeleton_name:
        return _nobody(num_joints, "wrong_skeleton")
    if not msg.people:
        return _nobody(num_joints)
    kept: list[np.ndarray] = []
    ids: list[int] = []
    first_reason = None
    ignored = nonfinite = 0
    for person in msg.people:
        kp, reason, bad_values = _person_arrays(person, num_joints)
        if kp is None:
            ignored += 1
            first_reason = first_reason or reason
            continue
        kept.append(kp)
        ids.append(int(person.id))
        nonfinite += bad_values
    if not kept:
        return _nobody(num_joints, first_reason, ignored)
    people = np.stack(kept)
    order = _by_confidence(people)
    return ParsedKeypoints(people[order], np.asarray(ids, dtype=np.int64)[order], None, ignored, nonfinite)


def keypoints_msg(keypoints: np.ndarray | None, stamp: Time, frame_id: str, skeleton_name: str,
                  person_id: int | list[int] = 0) -> Keypoints2DArray:
    """A Keypoints2DArray of one person ``[J, 3]`` or of several ``[S, J, 3]`` (NaN = missing: written as x = y = 0,
    confidence 0, as detectors do; a slot with no joint seen is left out), or of nobody (``None``).

    ``person_id``: the id of each person (one int for all of them, or one per slot; -1 = not tracked).
    """
    msg = Keypoints2DArray(header=Header(stamp=stamp, frame_id=frame_id), skeleton=skeleton_name)
    if keypoints is None:
        return msg
    kp = np.asarray(keypoints, dtype=np.float64)
    slots = kp[None] if kp.ndim == 2 else kp
    ids = np.broadcast_to(np.asarray(person_id, dtype=np.int64), (len(slots),))
    seen = np.isfinite(slots).all(axis=-1) & (np.nan_to_num(slots[..., 2]) > 0)  # [S, J]
    for slot, slot_seen, slot_id in zip(slots, seen, ids):
        if not slot_seen.any():
            continue
        person = PersonKeypoints2D(id=int(slot_id))
        person.x = np.where(slot_seen, slot[:, 0], 0.0).astype(np.float32)
        person.y = np.where(slot_seen, slot[:, 1], 0.0).astype(np.float32)
        person.confidence = np.where(slot_seen, slot[:, 2], 0.0).astype(np.float32)
        msg.people.append(person)
    return msg


# --- output ----------------------------------------------------------------------------------------------------------


def _estimated(joints: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """``[J]``: the joints ``[J, 3]`` a message shows: a finite position with confidence ``[J]`` > 0 (NaN = 0)."""
    return np.isfinite(joints).all(axis=-1) & (np.nan_to_num(confidence) > 0)


def skeleton_msg(
    skeleton_name: str,
    joint_names: list[str],
    joints: np.ndarray,
    confidence: np.ndarray,
    covariance: np.ndarray | None = None,
    num_views: np.ndarray | None = None,
    reprojection_error: np.ndarray | None = None,
    person_id: int = 0,
    body_id: str = "",
) -> Skeleton3D | None:
    """One Skeleton3D, or ``None`` when no joint has a position.

    ``joints [J, 3]`` NaN = not estimated (written as NaN with confidence 0, as the message documents); a joint with
    a position but confidence 0 keeps its position, with confidence 0: a filled joint (``complete``), or one placed
    on a single camera's ray (a person one camera alone sees: the tracker's ``single_view_for``), which may be all
    of a person's joints. ``body_id``: the ROS4HRI body id.
    """
    joints = np.asarray(joints, dtype=np.float64)
    confidence = np.nan_to_num(np.asarray(confidence, dtype=np.float32))
    estimated = _estimated(joints, confidence)
    if not np.isfinite(joints).all(axis=-1).any():
        return None
    count = len(joint_names)
    skel = Skeleton3D(id=int(person_id), body_id=body_id, skeleton=skeleton_name, joint_names=list(joint_names))
    skel.positions = [Point(x=x, y=y, z=z) for x, y, z in joints.tolist()]
    skel.confidence = np.where(estimated, confidence, 0.0).astype(np.float32)
    cov = np.full((count, 3, 3), np.nan) if covariance is None else np.asarray(covariance, dtype=np.float64)
    skel.covariance = cov.reshape(-1)
    views = np.zeros(count) if num_views is None else np.nan_to_num(np.asarray(num_views, dtype=np.float64))
    skel.num_views = np.clip(views, 0, 255).astype(np.uint8)
    reproj = np.full(count, np.nan) if reprojection_error is None else reprojection_error
    skel.reprojection_error = np.asarray(reproj, dtype=np.float32)
    return skel


def skeleton_array_msg(
    header: Header,
    skeleton_name: str,
    joint_names: list[str],
    joints: np.ndarray,
    confidence: np.ndarray,
    covariance: np.ndarray | None = None,
    num_views: np.ndarray | None = None,
    reprojection_error: np.ndarray | None = None,
    person_id: int = 0,
) -> Skeleton3DArray:
    """A Skeleton3DArray with one skeleton (see :func:`skeleton_msg`), or none when no joint is estimated."""
    skel = skeleton_msg(skeleton_name, joint_names, joints, confidence, covariance, num_views, reprojection_error,
                        person_id)
    return Skeleton3DArray(header=header, skeletons=[] if skel is None else [skel])


def skeleton_arrays(skeleton: Skeleton3D) -> tuple[np.ndarray, np.ndarray]:
    """``(joints [J, 3], confidence [J])`` of a Skeleton3D; joints with confidence 0 are NaN."""
    joints = np.array([[p.x, p.y, p.z] for p in skeleton.positions], dtype=np.float64).reshape(-1, 3)
    confidence = np.asarray(skeleton.confidence, dtype=np.float64)
    if len(confidence) == len(joints):
        joints[confidence <= 0] = np.nan
    return joints, confidence


def joint_frame(prefix: str, joint: str, person_id: int) -> str:
    """TF frame of a joint, REP-155 style: ``<prefix><joint>_<id>``."""
    return f"{prefix}{joint}_{person_id}"


def tf_transforms(header: Header, joint_names: list[str], joints: np.ndarray, confidence: np.ndarray,
                  prefix: str, person_id: int) -> list[TransformStamped]:
    """One TransformStamped per estimated joint: parent = ``header.frame_id``, identity rotation (the message's
    default)."""
    return JointFrames(prefix).transforms(header, joint_names, joints, confidence, person_id)


class JointFrames:
    """The joints' TF messages of a producer's people (``<prefix><joint>_<id>``), each built once and updated in place
    every frame (building a message costs tens of microseconds, setting its fields a few): send a frame's messages
    before the next frame's are asked for."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._messages: dict[int, list[TransformStamped]] = {}  # person id -> one message per joint

    def transforms(self, header: Header, joint_names: list[str], joints: np.ndarray, confidence: np.ndarray,
                   person_id: int) -> list[TransformStamped]:
        """The messages of person ``person_id``'s estimated joints ``[J, 3]`` (:func:`tf_transforms`)."""
        messages = self._messages.get(person_id)
        if messages is None or len(messages) != len(joint_names):
            messages = self._messages[person_id] = [
                TransformStamped(child_frame_id=joint_frame(self.prefix, name, person_id)) for name in joint_names]
        joints = np.asarray(joints, dtype=np.float64)
        estimated = _estimated(joints, np.asarray(confidence, dtype=np.float64))
        out = []
        # Plain floats and one attribute at a time: the generated message classes check every value they are given.
        for j, (x, y, z) in zip(np.flatnonzero(estimated).tolist(), joints[estimated].tolist()):
            t = messages[j]
            t.header = header
            translation = t.transform.translation
            translation.x, translation.y, translation.z = x, y, z
            out.append(t)
        return out

    def end(self, ended: Collection[int]) -> None:
        """Forget the people that ``ended``."""
        for person_id in ended:
            self._messages.pop(person_id, None)


def track_colour(person_id: int) -> ColorRGBA:
    """The track's colour (:func:`~skelsplat_ros.skeleton.models.track_rgb`) as a marker colour."""
    r, g, b = track_rgb(person_id)
    return ColorRGBA(r=r, g=g, b=b, a=1.0)


MARKER_NS_JOINTS = "skelsplat_joints"
MARKER_NS_BONES = "skelsplat_bones"


def marker_array(header: Header, joints: np.ndarray, confidence: np.ndarray, bones: np.ndarray, person_id: int,
                 lifetime_s: float = 1.0, joint_size: float = 0.05, bone_width: float = 0.02) -> MarkerArray:
    """SPHERE_LIST of the estimated joints and LINE_LIST of the bones between them, marker id = ``person_id``.

    Everything in the person's :func:`track_colour`; a joint's opacity follows its confidence (0.3 to 1).
    ``lifetime_s`` makes rviz drop the markers by itself when the node stops publishing (a crash included).
    """
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1.0) * 1e9))
    colour = track_colour(person_id)
    confidence = np.nan_to_num(np.asarray(confidence, dtype=np.float64))
    ok = _estimated(joints, confidence)
    spheres = Marker(header=header, ns=MARKER_NS_JOINTS, id=int(person_id), type=Marker.SPHERE_LIST,
                     action=Marker.ADD, lifetime=lifetime)
    spheres.pose.orientation.w = 1.0
    spheres.scale.x = spheres.scale.y = spheres.scale.z = joint_size
    lines = Marker(header=header, ns=MARKER_NS_BONES, id=int(person_id), type=Marker.LINE_LIST,
                   action=Marker.ADD, lifetime=lifetime, color=colour)
    lines.pose.orientation.w = 1.0
    lines.scale.x = bone_width

    points = [Point(x=x, y=y, z=z) for x, y, z in np.asarray(joints, dtype=np.float64).tolist()]
    alpha = (0.3 + 0.7 * np.minimum(confidence, 1.0)).tolist()
    for j in np.flatnonzero(ok).tolist():
        spheres.points.append(points[j])
        spheres.colors.append(ColorRGBA(r=colour.r, g=colour.g, b=colour.b, a=alpha[j]))
    for a, b in np.asarray(bones, dtype=np.int64).reshape(-1, 2).tolist():
        if ok[a] and ok[b]:
            lines.points += [points[a], points[b]]
    lines.colors = [colour] * len(lines.points)
    return MarkerArray(markers=[spheres, lines])


def delete_markers(header: Header, person_id: int | None) -> MarkerArray:
    """DELETE the markers of a lost person, or DELETEALL (``person_id=None``, e.g. at start-up)."""
    if person_id is None:
        return MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    return MarkerArray(markers=[
        Marker(header=header, ns=ns, id=int(person_id), action=Marker.DELETE)
        for ns in (MARKER_NS_JOINTS, MARKER_NS_BONES)
    ])
