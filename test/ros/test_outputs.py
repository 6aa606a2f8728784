"""The messages of one frame (ros/outputs.py), shared by the node and the bag writer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from skelsplat_ros.fusion.result import FusionResult  # noqa: E402
from skelsplat_ros.ros.conversions import ns_to_stamp, skeleton_arrays  # noqa: E402
from skelsplat_ros.ros.outputs import OutputOptions, frame_messages  # noqa: E402
from skelsplat_ros.skeleton.models import get_skeleton  # noqa: E402
from skelsplat_ros.tracking import PersonEstimate  # noqa: E402


def _person(track_id: int, joints: np.ndarray, confidence: np.ndarray) -> PersonEstimate:
    count = len(joints)
    return PersonEstimate(track_id, FusionResult(joints[None], confidence[None], np.zeros((1, count, 3, 3)),
                                                 np.full((1, count), 3), np.full((1, count), 1.5),
                                                 list(get_skeleton("h36m17").joint_names)))


def test_a_skeleton_tf_frames_and_markers_per_person_and_deletes_for_people_gone():
    skeleton = get_skeleton("h36m17")
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(17, 3))
    confidence = np.full(17, 0.8)
    confidence[3] = 0.0  # not estimated: no TF frame, no sphere
    nobody = np.full((17, 3), np.nan)
    people = [_person(4, joints, confidence), _person(7, nobody, np.zeros(17)), _person(9, joints + 1, np.ones(17))]
    header = Header(stamp=ns_to_stamp(1_700_000_000_123_456_789), frame_id="world")
    options = OutputOptions(skeleton.name, skeleton.bone_array, tf_prefix="p_")
    out = frame_messages(header, people, options, shown_before={2, 4, 7})
    assert [s.id for s in out.skeletons.skeletons] == [4, 9] and out.shown == {4, 9}  # 7: nothing estimated
    assert out.skeletons.header == header and out.skeletons.skeletons[0].skeleton == "h36m17"
    np.testing.assert_allclose(skeleton_arrays(out.skeletons.skeletons[1])[0], joints + 1)
    assert len(out.transforms) == 16 + 17 and out.transforms[0].child_frame_id == "p_pelvis_4"
    added = [m for m in out.markers if m.action == Marker.ADD]
    deleted = [(m.ns, m.id) for m in out.markers if m.action == Marker.DELETE]
    assert [(m.type, m.id) for m in added] == [(Marker.SPHERE_LIST, 4), (Marker.LINE_LIST, 4),
                                               (Marker.SPHERE_LIST, 9), (Marker.LINE_LIST, 9)]
    assert len(added[0].points) == 16 and sorted(deleted) == [("skelsplat_bones", 2), ("skelsplat_bones", 7),
                                                              ("skelsplat_joints", 2), ("skelsplat_joints", 7)]
    # What nobody reads is not built.
    bare = frame_messages(header, people, options, tf=False, markers=False, shown_before={2})
    assert bare.transforms == [] and bare.markers == [] and len(bare.skeletons.skeletons) == 2
    # The producer gets the skeletons as soon as they are built (the node publishes them before the rest).
    handed = []
    out = frame_messages(header, people, options, skeletons_done=handed.append)
    assert len(handed) == 1 and handed[0] is out.skeletons and len(out.transforms) == 16 + 17


def test_hri_bodies_start_with_a_urdf_stay_tracked_while_hidden_and_end_with_their_track():
    """ROS4HRI (ros/hri.py through frame_messages): a body per track with every limb joint, its id also in the
    Skeleton3D; a track not refitted in a frame keeps its body and frames (sent again at the new stamp); an ended
    track's body goes and its id is never given again; a frame of nobody has an empty list and no frames."""
    from skelsplat_ros.ros.hri import HriBodies
    from skelsplat_ros.skeleton.human import HRI_LINKS, rest_pose

    skeleton = get_skeleton("h36m17")
    options = OutputOptions(skeleton.name, skeleton.bone_array)
    bodies = HriBodies(skeleton)
    joints = rest_pose(skeleton) + [0.0, 0.0, 0.9]
    partial = joints.copy()
    partial[skeleton.index("l_wrist")] = np.nan  # complete off: not a body (yet)
    header = Header(stamp=ns_to_stamp(5), frame_id="world")

    def frame(people, ended=(), stamp=5):
        return frame_messages(Header(stamp=ns_to_stamp(stamp), frame_id="world"), people, options, markers=False,
                              bodies=bodies, ended=ended, hri=True)

    empty = frame([])
    assert empty.hri.tracked.ids == [] and empty.hri.transforms == [] and empty.hri.tracked.header.stamp == header.stamp
    first = frame([_person(1, joints, np.ones(17)), _person(2, partial, np.ones(17))])
    one, two = (s.body_id for s in first.skeletons.skeletons)
    assert first.hri.tracked.ids == [one] and list(first.hri.started) == [one] and one != two
    assert f'<link name="l_wrist_{one}">' in first.hri.started[one]
    frames = {t.child_frame_id: t for t in first.hri.transforms}
    assert set(frames) == {f"body_{one}"} | {f"{link}_{one}" for link in HRI_LINKS}
    assert frames[f"body_{one}"].header.frame_id == "world" and frames[f"head_{one}"].header.frame_id == f"body_{one}"
    assert frames[f"body_{one}"].transform.translation.z == pytest.approx(0.9)
    hidden = frame([], stamp=9)  # track 1 not refitted: still tracked, its frames at the new stamp
    assert hidden.hri.tracked.ids == [one] and len(hidden.hri.transforms) == 1 + len(HRI_LINKS)
    assert hidden.hri.transforms[0].header.stamp == ns_to_stamp(9) and not hidden.hri.started
    gone = frame([_person(3, joints + 1, np.ones(17))], ended=[1, 2], stamp=12)
    three = gone.skeletons.skeletons[0].body_id
    assert gone.hri.ended == [one] and gone.hri.tracked.ids == [three] and three not in (one, two)
    assert bodies.ids.of(1) not in (one, two, three)  # an ended track asked again: a new id, never an old one


def test_a_producers_joint_frames_are_its_messages_updated_in_place_with_the_same_content():
    """The node's joint TF messages (``JointFrames``) are built once per track and joint and updated in place: each
    frame's content is that of new messages (``tf_transforms``), the same objects the next frame; an ended track's
    messages are forgotten (a new track gets new ones)."""
    from rclpy.serialization import serialize_message
    from tf2_msgs.msg import TFMessage

    from skelsplat_ros.ros.conversions import JointFrames, tf_transforms

    skeleton = get_skeleton("h36m17")
    names = list(skeleton.joint_names)
    options = OutputOptions(skeleton.name, skeleton.bone_array, tf_prefix="p_")
    kept = JointFrames("p_")
    rng = np.random.default_rng(1)
    previous = None
    for stamp in (1, 2):
        joints, confidence = rng.normal(size=(17, 3)), np.ones(17)
        confidence[stamp] = 0.0  # a joint not estimated in this frame only
        header = Header(stamp=ns_to_stamp(stamp), frame_id="world")
        out = frame_messages(header, [_person(4, joints, confidence)], options, markers=False, joint_frames=kept)
        fresh = tf_transforms(header, names, joints, confidence, "p_", 4)
        assert serialize_message(TFMessage(transforms=out.transforms)) == serialize_message(TFMessage(transforms=fresh))
        if previous is not None:
            assert out.transforms[0] is previous
        previous = out.transforms[0]
    header = Header(stamp=ns_to_stamp(3), frame_id="world")
    out = frame_messages(header, [_person(4, joints, np.ones(17))], options, markers=False, ended=[4],
                         joint_frames=kept)
    assert out.transforms[0] is not previous and len(out.transforms) == 17


def test_a_person_one_camera_alone_sees_is_in_the_skeletons_with_confidence_0_and_no_joint_frames():
    """The tracker publishes a person whom one camera alone sees on that camera's rays, every joint at confidence 0
    (``single_view_for``): the skeleton message carries them (a person with no joint placed does not), while the
    joint TF frames and markers show only fused joints."""
    skeleton = get_skeleton("h36m17")
    joints = np.random.default_rng(2).normal(size=(17, 3))
    joints[5] = np.nan  # this joint is not seen by the one camera either
    header = Header(stamp=ns_to_stamp(1), frame_id="world")
    options = OutputOptions(skeleton.name, skeleton.bone_array, tf_prefix="p_")
    nowhere = np.full((17, 3), np.nan)
    out = frame_messages(header, [_person(7, joints, np.zeros(17)), _person(8, nowhere, np.zeros(17))], options)
    assert [s.id for s in out.skeletons.skeletons] == [7]
    placed = np.array([[p.x, p.y, p.z] for p in out.skeletons.skeletons[0].positions])
    assert np.allclose(placed[np.arange(17) != 5], joints[np.arange(17) != 5]) and np.isnan(placed[5]).all()
    assert not np.any(np.array(out.skeletons.skeletons[0].confidence))
    assert out.transforms == []
    assert all(len(m.points) == 0 for m in out.markers if m.action == Marker.ADD)
