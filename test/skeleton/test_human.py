"""The ROS4HRI body model (``skeleton/human.py``): the body and link frames that human_description's URDF expects
(REP-155: body at the hips' mid-point, x forward, z up; a limb segment along its link's -z, hinged on y), and a URDF
sized by the person that a URDF library parses."""

from __future__ import annotations

import io

import numpy as np
import pytest

from skelsplat_ros.skeleton.human import HRI_LINKS, body_dimensions, body_frames, body_tf, body_urdf, rest_pose
from skelsplat_ros.skeleton.models import builtin_skeletons, get_skeleton


def _turn(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("name", sorted(builtin_skeletons()))
def test_at_rest_every_frame_is_the_body_frame_and_the_body_sits_between_the_hips(name):
    skeleton = get_skeleton(name)
    frames = body_frames(skeleton, rest_pose(skeleton))
    rotation, origin = frames.body
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(origin, 0.0, atol=1e-9)
    assert set(frames.links) == set(HRI_LINKS)
    for link, (r, _) in frames.links.items():  # arms and legs hang nearly straight: within 15 degrees
        assert np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))) < 15, link


def test_limb_frames_follow_the_bones_and_bend_about_their_y_axis():
    skeleton = get_skeleton("coco17")
    joints = rest_pose(skeleton)
    index = skeleton.index
    joints[index("l_wrist")] = joints[index("l_elbow")] + [0.25, 0.0, 0.0]  # forearm raised forward: elbow at 90
    joints[index("r_ankle")] = joints[index("r_knee")] + [-0.28, 0.0, -0.28]  # knee bent backward
    turn = _turn(0.8)
    moved = joints @ turn.T + [1.0, 2.0, 0.0]
    frames = body_frames(skeleton, moved)
    for upper, lower, start, middle, end in (("l_shoulder", "l_elbow", "l_shoulder", "l_elbow", "l_wrist"),
                                              ("r_hip", "r_knee", "r_hip", "r_knee", "r_ankle")):
        r_upper, r_lower = frames.links[upper][0], frames.links[lower][0]
        for r in (r_upper, r_lower):
            np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
            assert np.linalg.det(r) == pytest.approx(1.0)
        bone = moved[index(middle)] - moved[index(start)]
        np.testing.assert_allclose(-r_upper[:, 2], bone / np.linalg.norm(bone), atol=1e-9)
        bone = moved[index(end)] - moved[index(middle)]
        np.testing.assert_allclose(-r_lower[:, 2], bone / np.linalg.norm(bone), atol=1e-9)
        assert abs(r_upper[:, 1] @ r_lower[:, 1]) > 0.99  # one hinge
    # The elbow bends forward (+x of the upper arm), the knee backward (-x of the thigh), as the URDF's joints do.
    assert frames.links["l_shoulder"][0][:, 0] @ (moved[index("l_wrist")] - moved[index("l_elbow")]) > 0.2
    assert frames.links["r_hip"][0][:, 0] @ (moved[index("r_ankle")] - moved[index("r_knee")]) < -0.2
    np.testing.assert_allclose(frames.body[0], turn, atol=1e-9)  # x forward, z up, turned with the person
    np.testing.assert_allclose(frames.links["head"][0][:, 0], turn @ [1.0, 0.0, 0.0], atol=0.15)


def test_tf_poses_of_several_people_are_each_persons_frames_with_the_links_in_the_body_frame():
    """body_tf (every person in one pass, as the node sends TF) against each person's frames, link by link."""
    skeleton = get_skeleton("h36m17")
    rng = np.random.default_rng(3)
    people = np.stack([(rest_pose(skeleton) + rng.normal(0.0, 0.05, (skeleton.num_joints, 3))) @ _turn(a).T + shift
                       for a, shift in ((0.3, [1.0, 2.0, 0.0]), (-2.0, [-0.5, 0.0, 0.1]), (1.2, [0.0, -3.0, 0.0]))])
    people[1, skeleton.index("l_knee")] = np.nan  # no left leg
    rotations, origins = body_tf(skeleton, people)
    assert rotations.shape == (3, 1 + len(HRI_LINKS), 3, 3) and origins.shape == (3, 1 + len(HRI_LINKS), 3)
    assert np.isnan(rotations[1, 1 + HRI_LINKS.index("l_hip")]).all() and np.isfinite(rotations[1, 0]).all()
    for n in (0, 2):
        frames = body_frames(skeleton, people[n])
        body_r, body_p = frames.body
        np.testing.assert_allclose(rotations[n, 0], body_r, atol=1e-12)
        np.testing.assert_allclose(origins[n, 0], body_p, atol=1e-12)
        for k, link in enumerate(HRI_LINKS, 1):
            r, p = frames.links[link]
            np.testing.assert_allclose(rotations[n, k], body_r.T @ r, atol=1e-12)
            np.testing.assert_allclose(origins[n, k], body_r.T @ (p - body_p), atol=1e-12)


def test_frames_need_the_limb_joints():
    skeleton = get_skeleton("h36m17")
    joints = rest_pose(skeleton)
    joints[skeleton.index("r_ankle")] = np.nan
    assert body_frames(skeleton, joints) is None


def test_the_urdf_parses_names_the_links_and_is_sized_by_the_person():
    yourdfpy = pytest.importorskip("yourdfpy")
    skeleton = get_skeleton("coco17")
    joints = rest_pose(skeleton) * 1.1  # a taller person
    size = body_dimensions(body_frames(skeleton, joints))
    urdf = yourdfpy.URDF.load(io.StringIO(body_urdf("qwert", size)), build_scene_graph=True, load_meshes=False)
    assert urdf.base_link == "body_qwert"
    assert set(urdf.link_map) == {f"{link}_qwert" for link in ("body",) + HRI_LINKS}
    assert {joint.type for joint in urdf.joint_map.values()} == {"floating"}
    elbow = urdf.joint_map["l_elbow_qwert"]
    assert elbow.parent == "l_shoulder_qwert"
    assert -elbow.origin[2, 3] == pytest.approx(size["l_upper_arm"], abs=1e-4)
    assert size["l_upper_arm"] == pytest.approx(1.1 * np.linalg.norm(np.subtract((0.0, 0.18, 0.47), (0.0, 0.20, 0.18))))
