"""ROS4HRI (REP-155) output: the people of each fused frame as HRI bodies.

What a ROS4HRI client (libhri / pyhri, hri_rviz, the person manager) reads:

- ``/humans/bodies/tracked`` (``hri_msgs/IdsList``): the bodies tracked now, every frame, empty included.
- TF ``body_<id>`` (parent: the world frame or ``hri_reference_frame``) at the mid-point of the hips, x forward out of
  the body, z towards the head; under it the ``human_description`` links ``<link>_<id>`` (``head``, ``torso``,
  ``l_shoulder`` ... ``r_ankle``), each oriented as that URDF draws it (``skeleton/human.py``).
- ``/humans/bodies/<id>/urdf`` (``std_msgs/String``, transient local): the body's URDF, sized by the person's own bone
  lengths, published once when the body starts (its publisher goes when the body ends).

A body is a track of the tracker: its id is a short random string (:class:`BodyIds`), never reused, also carried by
``Skeleton3D.body_id``. It is tracked from the first frame its frames can be built (every joint of
``HRI_JOINTS``: the node completes skeletons for this) until its track ends; in a frame where the tracker does not
refit it (hidden for a moment) its last frames are sent again at the new stamp, so that a client never sees a
tracked body without its frames.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from geometry_msgs.msg import TransformStamped
from hri_msgs.msg import IdsList
from std_msgs.msg import Header

from skelsplat_ros.geometry.transforms import Transform, matrix_to_quaternion
from skelsplat_ros.skeleton.human import HRI_JOINTS, HRI_LINKS, body_dimensions, body_frames, body_tf, body_urdf
from skelsplat_ros.skeleton.models import Skeleton

if TYPE_CHECKING:
    from skelsplat_ros.tracking import PersonEstimate

__all__ = ["BODY_ID_LENGTH", "TRACKED_TOPIC", "BodyIds", "HriFrame", "HriBodies", "urdf_topic", "body_frame"]

BODY_ID_LENGTH = 5
"""Letters of a body id (REP-155 suggests five characters): 26^5, about 12 million."""
TRACKED_TOPIC = "/humans/bodies/tracked"


def urdf_topic(body_id: str) -> str:
    return f"/humans/bodies/{body_id}/urdf"


def body_frame(body_id: str) -> str:
    return f"body_{body_id}"


class BodyIds:
    """Track id -> body id: short random lowercase strings (letters only: a ROS name token may not start with a
    digit), unique among every id this object ever gave, so never reused after a track ends."""

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._issued: set[str] = set()

    def of(self, track_id: int) -> str:
        """The body id of ``track_id`` (a new one the first time)."""
        body = self._ids.get(track_id)
        if body is None:
            while body is None or body in self._issued:
                body = "".join(secrets.choice(string.ascii_lowercase) for _ in range(BODY_ID_LENGTH))
            self._issued.add(body)
            self._ids[track_id] = body
        return body

    def end(self, track_id: int) -> str | None:
        """Forget ``track_id``; its body id, ``None`` when it had none."""
        return self._ids.pop(track_id, None)


@dataclass
class HriFrame:
    """The ROS4HRI messages of one frame.

    Attributes:
        tracked: the ids tracked after this frame.
        transforms: ``body_<id>`` and its link frames, for every tracked body (the same message objects from frame to
            frame, updated in place: publish them before the next frame is built).
        started: ``{body id: URDF}`` of the bodies tracked from this frame on.
        ended: body ids no longer tracked.
    """

    tracked: IdsList
    transforms: list[TransformStamped] = field(default_factory=list)
    started: dict[str, str] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)


class _BodyMessages:
    """One body's TF messages, built once and updated in place every frame (building a message costs tens of
    microseconds, setting its fields a few): ``body_<id>`` under the parent, then each link under ``body_<id>``."""

    def __init__(self, body: str, parent: str, links: Sequence[str]) -> None:
        self.parent_header = Header(frame_id=parent)
        self.body_header = Header(frame_id=body_frame(body))
        self.transforms = [TransformStamped(header=self.parent_header, child_frame_id=body_frame(body))]
        self.transforms += [TransformStamped(header=self.body_header, child_frame_id=f"{link}_{body}") for link in links]

    def update(self, stamp, origins: list, quaternions: list) -> list[TransformStamped]:
        """The messages at ``stamp``: origins ``[1 + L][3]`` and quaternions ``[1 + L][4]`` (x, y, z, w), body first,
        as lists of floats."""
        self.parent_header.stamp = self.body_header.stamp = stamp
        # Plain floats, one attribute at a time: the generated message classes check every value they are given.
        for t, (x, y, z), (qx, qy, qz, qw) in zip(self.transforms, origins, quaternions):
            translation, q = t.transform.translation, t.transform.rotation
            translation.x, translation.y, translation.z = x, y, z
            q.x, q.y, q.z, q.w = qx, qy, qz, qw
        return self.transforms


class HriBodies:
    """The output's people as ROS4HRI bodies, frame after frame (one per producer: it keeps the ids and the bodies
    tracked)."""

    def __init__(self, skeleton: Skeleton) -> None:
        self.skeleton = skeleton
        self.ids = BodyIds()
        self._joints: dict[int, np.ndarray] = {}  # track id -> the body's last complete joints [J, 3] (tracked only)
        self._messages: dict[int, _BodyMessages] = {}  # track id -> its TF messages
        self._needed = [skeleton.index(name) for name in HRI_JOINTS]

    @property
    def tracked(self) -> list[str]:
        """Body ids tracked now, in track order."""
        return [self.ids.of(track_id) for track_id in sorted(self._joints)]

    def end(self, ended: Collection[int]) -> list[str]:
        """Forget the tracks that ``ended``; the body ids that were tracked among them."""
        gone = []
        for track_id in ended:
            body = self.ids.end(track_id)
            self._messages.pop(track_id, None)
            if self._joints.pop(track_id, None) is not None and body is not None:
                gone.append(body)
        return gone

    def frame(self, header: Header, people: Sequence[PersonEstimate], ended: Collection[int], parent: str,
              parent_T_world: Transform | None = None, tf: bool = True) -> HriFrame:
        """The messages of one frame stamped ``header`` (the world frame): ``people`` refitted in it, the track ids
        that ``ended`` at it; ``body_<id>`` frames are children of ``parent``, posed by ``parent_T_world`` (``None``:
        the parent is the world frame). ``tf``: build the frames (skip them when nobody reads /tf)."""
        out = HriFrame(IdsList(header=Header(stamp=header.stamp, frame_id=parent)), ended=self.end(ended))
        started = []
        for person in people:
            joints = person.result.joints[0]
            if not np.isfinite(joints[self._needed]).all():  # complete off: its last frames stand, or not a body yet
                continue
            if person.track_id not in self._joints:
                started.append(person.track_id)
            self._joints[person.track_id] = joints
        out.tracked.ids = self.tracked
        tracks = sorted(self._joints)
        for track_id in started:
            body = self.ids.of(track_id)
            out.started[body] = body_urdf(body, body_dimensions(body_frames(self.skeleton, self._joints[track_id])))
        if tf and tracks:
            out.transforms = self._frames(tracks, header.stamp, parent, parent_T_world)
        return out

    def _frames(self, tracks: list[int], stamp, parent: str, parent_T_world: Transform | None
                ) -> list[TransformStamped]:
        """Each track's ``body_<id>`` under ``parent`` and its links under it (the messages of the track's body,
        updated), every body's poses computed in one pass."""
        rotations, origins = body_tf(self.skeleton, np.stack([self._joints[t] for t in tracks]))
        if parent_T_world is not None:  # body_<id> in the parent; its links stay in the body frame
            rotations[:, 0] = parent_T_world.rotation @ rotations[:, 0]
            origins[:, 0] = parent_T_world.apply(origins[:, 0])
        transforms = []
        for track_id, track_origins, track_quaternions in zip(tracks, origins.tolist(),
                                                              matrix_to_quaternion(rotations).tolist()):
            messages = self._messages.get(track_id)
            if messages is None or messages.parent_header.frame_id != parent:
                messages = self._messages[track_id] = _BodyMessages(self.ids.of(track_id), parent, HRI_LINKS)
            transforms += messages.update(stamp, track_origins, track_quaternions)
        return transforms
