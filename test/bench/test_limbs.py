"""The limb-length consistency figures (``bench/limbs.py``) on skeletons whose limb lengths are known."""

import numpy as np
import pytest

from skelsplat_ros.bench.limbs import LIMBS, limb_consistency, limb_table, people_limb_consistency, skeleton_limbs, worst
from skelsplat_ros.skeleton.models import get_skeleton

SKELETON = get_skeleton("coco17")
NAMES = list(SKELETON.joint_names)
ELBOW, WRIST = NAMES.index("l_elbow"), NAMES.index("l_wrist")


def _arm(forearms: list[float]) -> np.ndarray:
    """Frames ``[F, J, 3]`` whose left forearm has the given lengths along x; the other joints still, 0.1 m apart."""
    joints = np.zeros((len(forearms), len(NAMES), 3))
    joints[:, :, 1] = 0.1 * np.arange(len(NAMES))
    joints[:, WRIST] = joints[:, ELBOW]
    joints[:, WRIST, 0] = forearms
    return joints


def test_a_steady_limb_has_ratio_one_and_no_variation_and_a_stretched_one_shows():
    stats = {s.limb: s for s in limb_consistency(_arm([0.25] * 4), NAMES)}
    forearm = stats["l_elbow-l_wrist"]
    assert forearm.frames == 4 and forearm.median == pytest.approx(0.25)
    assert forearm.max_ratio == pytest.approx(1.0) and forearm.cv == pytest.approx(0.0)
    stretched = {s.limb: s for s in limb_consistency(_arm([0.2, 0.2, 0.2, 0.8]), NAMES)}["l_elbow-l_wrist"]
    lengths = np.array([0.2, 0.2, 0.2, 0.8])
    assert stretched.max_ratio == pytest.approx(4.0) and stretched.cv == pytest.approx(lengths.std() / lengths.mean())
    assert worst(limb_consistency(_arm([0.2, 0.2, 0.2, 0.8]), NAMES)) == pytest.approx((4.0, lengths.std() / lengths.mean()))


def test_frames_where_a_limb_is_not_output_do_not_count_and_a_limb_never_output_is_nan():
    joints = _arm([0.25, 0.9, 0.25])
    joints[1, WRIST] = np.nan  # not output: its 0.9 m must not count
    forearm = {s.limb: s for s in limb_consistency(joints, NAMES)}["l_elbow-l_wrist"]
    assert forearm.frames == 2 and forearm.max_ratio == pytest.approx(1.0)
    joints[:, ELBOW] = np.nan
    forearm = {s.limb: s for s in limb_consistency(joints, NAMES)}["l_elbow-l_wrist"]
    assert forearm.frames == 0 and np.isnan(forearm.cv)
    assert all(np.isnan(worst(limb_consistency(np.full((2, len(NAMES), 3), np.nan), NAMES))))


def test_per_person_figures_every_bone_and_the_table():
    people = np.stack([_arm([0.25, 0.25]), _arm([0.3, 0.6])], axis=1)  # [F, T, J, 3]
    figures = people_limb_consistency(people, [7, 9], NAMES)
    assert list(figures) == [7, 9] and len(figures[7]) == len(LIMBS)
    assert worst(figures[9])[0] == pytest.approx(0.6 / 0.45)
    assert len(skeleton_limbs(SKELETON)) == len(SKELETON.bones)
    assert len(limb_consistency(people[:, 0], NAMES, skeleton_limbs(SKELETON))) == len(SKELETON.bones)
    table = limb_table(figures)
    assert "| 9 | l_elbow-l_wrist | 2 | 450 | 1.33 |" in table
