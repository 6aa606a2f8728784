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
