"""The messages of one fused frame, built in one place for every producer: the live node and the bag writer.

:func:`frame_messages` turns the people of a frame (:class:`~skelsplat_ros.tracking.PersonEstimate`: a track id and
its one-frame :class:`~skelsplat_ros.fusion.result.FusionResult`) into what is published or recorded for it: one
``Skeleton3DArray``, the joints' TF frames, the rviz markers (with the deletion of the markers of people shown
before and gone now) and, given the producer's :class:`~skelsplat_ros.ros.hri.HriBodies`, the ROS4HRI bodies (whose
ids the skeletons carry too). A new output of a frame is one more field here, and both producers have it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from geometry_msgs.msg import TransformStamped
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from skelsplat_ros.msg import Skeleton3DArray

from .conversions import JointFrames, delete_markers, marker_array, skeleton_msg

if TYPE_CHECKING:
    from skelsplat_ros.geometry.transforms import Transform
    from skelsplat_ros.tracking import PersonEstimate

    from .hri import HriBodies, HriFrame

__all__ = ["OutputOptions", "FrameMessages", "frame_messages"]


@dataclass(frozen=True)
class OutputOptions:
    """What stays the same from frame to frame.

    Attributes:
        skeleton: skeleton name written into each ``Skeleton3D``.
        bones: ``[B, 2]`` joint index pairs drawn as marker lines.
        tf_prefix: prefix of the joint TF frames (``<prefix><joint>_<id>``).
    """

    skeleton: str
    bones: np.ndarray
    tf_prefix: str = ""


@dataclass
class FrameMessages:
    """The messages of one frame.

    Attributes:
        skeletons: one ``Skeleton3D`` per person with at least one joint estimated (empty array: nobody).
        transforms: one ``TransformStamped`` per estimated joint and person (empty unless asked for).
        markers: spheres and bones per person shown, then DELETEs of the people shown before and not now (empty
            unless asked for).
        shown: track ids with a skeleton in this frame.
        hri: the ROS4HRI messages (``None`` unless asked for).
    """

    skeletons: Skeleton3DArray
    transforms: list[TransformStamped] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    shown: set[int] = field(default_factory=set)
    hri: HriFrame | None = None


def frame_messages(header: Header, people: Sequence[PersonEstimate], options: OutputOptions, tf: bool = True,
                   markers: bool = True, shown_before: Collection[int] = (), bodies: HriBodies | None = None,
                   ended: Collection[int] = (), hri: bool = False, hri_parent: str = "",
                   parent_T_world: Transform | None = None, joint_tf: bool = True,
                   skeletons_done: Callable[[Skeleton3DArray], None] | None = None,
                   joint_frames: JointFrames | None = None) -> FrameMessages:
    """The messages of one frame stamped ``header`` (its capture stamp, in the world frame).

    ``tf`` / ``markers``: build those (they cost about as much as the skeletons: skip them when nobody reads them);
    ``joint_tf``: the joints' frames among the TF frames (else only the bodies').
    ``shown_before``: track ids whose markers are shown now; those not in this frame get DELETE markers.
    ``bodies``: the producer's ROS4HRI bodies: the skeletons carry their ids, and the tracks that ``ended`` at this
    frame end theirs; with ``hri``, the ROS4HRI messages too, ``body_<id>`` under ``hri_parent`` (default: the world
    frame) posed by ``parent_T_world`` (``None``: the parent is the world frame), the frames only with ``tf``.
    ``skeletons_done``: called with the skeletons as soon as they are built, before the rest (the node publishes
    them then: their latency does not wait for the frames and markers).
    ``joint_frames``: the producer's joint TF messages, updated in place (the tracks that ``ended`` are forgotten);
    ``None``: new messages.
    """
    if joint_frames is None:
        joint_frames = JointFrames(options.tf_prefix)
    joint_frames.end(ended)
    out = FrameMessages(Skeleton3DArray(header=header))
    shown = []  # (track id, joint names, joints, confidence) of each person with a skeleton
    for person in people:
        result = person.result
        names = list(result.joint_names)
        joints, confidence = result.joints[0], result.confidence[0]
        body_id = bodies.ids.of(person.track_id) if bodies is not None else ""
        skeleton = skeleton_msg(options.skeleton, names, joints, confidence, result.covariance[0],
                                result.num_views[0], result.reprojection_error[0], person.track_id, body_id)
        if skeleton is None:  # a track with no joint placed this frame: nothing to show
            continue
        out.skeletons.skeletons.append(skeleton)
        out.shown.add(person.track_id)
        shown.append((person.track_id, names, joints, confidence))
    if skeletons_done is not None:
        skeletons_done(out.skeletons)
    for track_id, names, joints, confidence in shown:
        if tf and joint_tf:
            out.transforms += joint_frames.transforms(header, names, joints, confidence, track_id)
        if markers:
            out.markers += marker_array(header, joints, confidence, options.bones, track_id).markers
    if markers:
        # A person who ended or was not estimated this frame: remove the markers now rather than at their lifetime,
        # so that rviz never shows a person who is gone.
        for track_id in sorted(set(shown_before) - out.shown):
            out.markers += delete_markers(header, track_id).markers
    if bodies is not None and hri:
        out.hri = bodies.frame(header, people, ended, hri_parent or header.frame_id, parent_T_world, tf)
    elif bodies is not None:
        bodies.end(ended)
    return out
