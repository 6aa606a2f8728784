"""Skeletons: built-in layouts (orders checked against their published definitions), user YAML files, symmetry."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.skeleton.models import (
    builtin_skeletons,
    get_skeleton,
    load_skeleton_file,
)

BUILTINS = ("coco17", "h36m17", "coco19", "body25", "body25b", "halpe26")

COCO17 = [
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
]
H36M17 = [
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax", "neck", "head",
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
]


def _mirror(name: str) -> str:
    if name.startswith("l_"):
        return "r_" + name[2:]
    if name.startswith("r_"):
        return "l_" + name[2:]
    return name


def test_every_builtin_is_listed():
    assert set(BUILTINS) <= set(builtin_skeletons())


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_with_valid_bones_and_metadata(name):
    skeleton = get_skeleton(name)
    assert skeleton.name == name
    J = skeleton.num_joints
    assert J == len(skeleton.joint_names) == len(set(skeleton.joint_names))
    bones = skeleton.bone_array
    assert bones.ndim == 2 and bones.shape[1] == 2 and len(bones) >= J - 2
    assert bones.min() >= 0 and bones.max() < J
    assert (bones[:, 0] != bones[:, 1]).all()
    assert len({tuple(sorted(b)) for b in bones.tolist()}) == len(bones)  # no duplicated bone
    assert skeleton.root and all(0 <= r < J for r in skeleton.root)
    distal = sorted(skeleton.joint_names[d] for d in skeleton.distal)
    assert distal == sorted(f"{s}_{p}" for s in "lr" for p in ("elbow", "wrist", "ankle"))
    for joint in skeleton.joint_names:
        assert skeleton.joint_names[skeleton.index(joint)] == joint
    with pytest.raises(KeyError, match="no joint"):
        skeleton.index("tail")


def test_coco17_face_is_its_own_group():
    # coco17 has no neck joint; ear-shoulder distances change as the head turns, so no bone ties the face to the
    # body (a bone-length prior on them would be wrong).
    skeleton = get_skeleton("coco17")
    face = {skeleton.index(n) for n in ("nose", "l_eye", "r_eye", "l_ear", "r_ear")}
    assert all((a in face) == (b in face) for a, b in skeleton.bones)


@pytest.mark.parametrize("name", [n for n in BUILTINS if n != "coco17"])
def test_builtin_bones_connect_every_joint(name):
    skeleton = get_skeleton(name)
    bones = skeleton.bone_array.tolist()
    reached, frontier = {0}, [0]
    while frontier:
        j = frontier.pop()
        for a, b in bones:
            for x, y in ((a, b), (b, a)):
                if x == j and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    missing = sorted(skeleton.joint_names[j] for j in set(range(skeleton.num_joints)) - reached)
    assert not missing, f"{name}: joints not connected to {skeleton.joint_names[0]!r}: {missing}"


def test_h36m17_order():
    assert list(get_skeleton("h36m17").joint_names) == H36M17
    assert [get_skeleton("h36m17").joint_names[r] for r in get_skeleton("h36m17").root] == ["pelvis"]


def test_coco17_order():
    assert list(get_skeleton("coco17").joint_names) == COCO17


def test_body25b_is_coco17_then_neck_head_and_feet():
    # OpenPose BODY_25B: ids 0-16 COCO, 17 UpperNeck, 18 HeadTop, 19 LBigToe, 20 LSmallToe, 21 LHeel,
    # 22 RBigToe, 23 RSmallToe, 24 RHeel.
    names = list(get_skeleton("body25b").joint_names)
    assert names[:17] == COCO17
    assert names[17:] == ["neck", "head", "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel"]


def test_body25_openpose_order():
    names = get_skeleton("body25").joint_names
    assert names[:9] == ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
                         "mid_hip")
    assert names[19:] == ("l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel")


def test_halpe26_extends_coco17():
    names = list(get_skeleton("halpe26").joint_names)
    assert names[:17] == COCO17 and names[17:20] == ["head", "neck", "hip"] and len(names) == 26


@pytest.mark.parametrize("name", BUILTINS)
def test_flip_permutation_is_an_involution_swapping_sides(name):
    skeleton = get_skeleton(name)
    perm = skeleton.flip_permutation
    names = skeleton.joint_names
    assert sorted(perm.tolist()) == list(range(skeleton.num_joints))  # a permutation
    np.testing.assert_array_equal(perm[perm], np.arange(skeleton.num_joints))
    for i, j in enumerate(perm):
        assert names[j] == _mirror(names[i])  # l_x <-> r_x, centre joints fixed
    assert (perm != np.arange(skeleton.num_joints)).sum() == 2 * len(skeleton.left_right_pairs)
    # Flipping the names, then bones mapped through the permutation, gives the same bone set.
    bones = {tuple(sorted(b)) for b in skeleton.bone_array.tolist()}
    assert {tuple(sorted((int(perm[a]), int(perm[b])))) for a, b in bones} == bones


@pytest.mark.parametrize("name", BUILTINS)
def test_left_right_pairs(name):
    skeleton = get_skeleton(name)
    pairs = skeleton.left_right_pairs
    names = skeleton.joint_names
    expected = sum(n.startswith("l_") for n in names)
    assert pairs.shape == (expected, 2)
    for left, right in pairs:
        assert names[left].startswith("l_") and names[right] == "r_" + names[left][2:]


def test_h36m_symmetric_and_limb_end_bones():
    skeleton = get_skeleton("h36m17")
    names = skeleton.joint_names

    def bone_names(k):
        return tuple(names[j] for j in skeleton.bones[k])

    sym = {(bone_names(a), bone_names(b)) for a, b in skeleton.symmetric_bones}
    assert sym == {
        (("pelvis", "l_hip"), ("pelvis", "r_hip")),
        (("l_hip", "l_knee"), ("r_hip", "r_knee")),
        (("l_knee", "l_ankle"), ("r_knee", "r_ankle")),
        (("thorax", "l_shoulder"), ("thorax", "r_shoulder")),
        (("l_shoulder", "l_elbow"), ("r_shoulder", "r_elbow")),
        (("l_elbow", "l_wrist"), ("r_elbow", "r_wrist")),
    }
    # The paper's 3D_length_consistency pairs: |X12-X13| vs |X15-X16| and |X5-X6| vs |X2-X3| (H36M indices).
    limb = {tuple(sorted(skeleton.bones[a])) + tuple(sorted(skeleton.bones[b]))
            for a, b in skeleton.limb_end_symmetric_bones}
    assert limb == {(12, 13, 15, 16), (5, 6, 2, 3)}


@pytest.mark.parametrize("name", BUILTINS)
def test_symmetric_bones_mirror_each_other_and_limb_ends_are_forearms_and_shins(name):
    skeleton = get_skeleton(name)
    names = skeleton.joint_names
    sym = skeleton.symmetric_bones
    assert len(sym) >= 4
    for a, b in sym:
        assert a != b  # a bone across the body (hip to hip) is its own mirror: not a pair
        left = {names[j] for j in skeleton.bones[a]}
        right = {names[j] for j in skeleton.bones[b]}
        assert {_mirror(n) for n in left} == right
        assert any(n.startswith("l_") for n in left)
    limb = skeleton.limb_end_symmetric_bones
    kinds = sorted(sorted(names[j][2:] for j in skeleton.bones[a]) for a, _ in limb)
    assert kinds == [["ankle", "knee"], ["elbow", "wrist"]]


# --- user YAML skeletons ----------------------------------------------------------------------------------------

USER_YAML = """\
arm:
  joints: [chest, l_hand, r_hand, l_elbow, r_elbow]
  bones: [[chest, l_elbow], [l_elbow, l_hand], [chest, r_elbow], [r_elbow, r_hand]]
  root: [chest]
  distal: [l_hand, r_hand]
"""


def test_user_yaml_skeleton_file(tmp_path):
    path = tmp_path / "arm.yaml"
    path.write_text(USER_YAML, encoding="utf-8")
    for spec in (str(path), f"{path}:arm"):
        skeleton = get_skeleton(spec)
        assert skeleton.name == "arm"
        assert skeleton.joint_names == ("chest", "l_hand", "r_hand", "l_elbow", "r_elbow")
        assert skeleton.bones == ((0, 3), (3, 1), (0, 4), (4, 2))
        assert skeleton.root == (0,) and skeleton.distal == (1, 2)
        np.testing.assert_array_equal(skeleton.flip_permutation, [0, 2, 1, 4, 3])
        np.testing.assert_array_equal(skeleton.left_right_pairs, [[1, 2], [3, 4]])
        assert {tuple(p) for p in skeleton.symmetric_bones.tolist()} == {(0, 2), (1, 3)}
    assert set(load_skeleton_file(path)) == {"arm"}


def test_user_yaml_with_several_skeletons_needs_a_name(tmp_path):
    path = tmp_path / "two.yml"
    path.write_text(USER_YAML + "pair:\n  joints: [a, b]\n  bones: [[a, b]]\n", encoding="utf-8")
    assert get_skeleton(f"{path}:pair").joint_names == ("a", "b")
    assert get_skeleton(f"{path}:pair").root == (0,)  # default root: the first joint
    with pytest.raises(KeyError, match="pick one"):
        get_skeleton(str(path))
    with pytest.raises(KeyError, match="nope"):
        get_skeleton(f"{path}:nope")


def test_unknown_skeleton_name_lists_the_builtins():
    with pytest.raises(KeyError) as info:
        get_skeleton("coco18")
    message = str(info.value.args[0])
    assert "coco18" in message
    for name in BUILTINS:
        assert name in message


def test_missing_yaml_file_is_a_key_error_not_a_crash(tmp_path):
    with pytest.raises(KeyError, match="unknown skeleton"):
        get_skeleton(str(tmp_path / "absent.yaml"))


def test_yaml_with_unknown_joint_in_a_bone_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bad:\n  joints: [a, b]\n  bones: [[a, c]]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'c'"):
        get_skeleton(str(path))


@pytest.mark.parametrize(
    "text, match",
    [
        ("bad:\n  joints: [a, a]\n", "duplicate"),
        ("bad:\n  bones: [[a, b]]\n", "joints"),
        ("bad:\n  joints: [a, b]\n  root: [z]\n", "'z'"),
        ("bad:\n  joints: [a, b]\n  distal: [z]\n", "'z'"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_invalid_yaml_skeletons(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        get_skeleton(str(path))
