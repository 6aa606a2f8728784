"""KeypointValidator: each malformation of a keypoint message is caught, counted by kind, and nothing valid is lost."""

from __future__ import annotations

import array

import numpy as np
import pytest

from skelsplat_ros.io.validation import (
    PERSON_REJECTIONS,
    KeypointValidator,
    ValidationConfig,
    outside_image,
)

J = 17
SIZES = np.array([[640.0, 480.0], [1920.0, 1080.0]])
NOW = 1_700_000_000 * 10**9


def person(conf: float = 0.9, seed: int = 0, joints: int = J) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 640, joints).astype(np.float32), rng.uniform(0, 480, joints).astype(np.float32),
            np.full(joints, conf, dtype=np.float32))


@pytest.fixture
def validator() -> KeypointValidator:
    return KeypointValidator(ValidationConfig("h36m17", J, image_sizes=SIZES, image_margin=0.25, max_people=3))


def test_header_checks_stamp_skeleton_and_frame_id(validator):
    check = validator.check_header
    assert check(NOW, NOW, "cam0_optical", "h36m17") is None
    assert check(0, NOW, "cam0_optical", "h36m17") == "stale_stamp"
    assert check(NOW - 3 * 10**9, NOW, "cam0_optical", "h36m17") == "stale_stamp"
    assert check(NOW + 10**9, NOW, "cam0_optical", "h36m17") == "future_stamp"
    assert check(0, 0, "cam0_optical", "h36m17") is None  # a simulated clock not started yet: no stamp check
    for skeleton in ("", "coco17", "h36m17 ", "H36M17"):
        assert check(NOW, NOW, "cam0", skeleton) == "wrong_skeleton", skeleton
    for frame_id in ("", "/cam0", "cam 0", "cam0\n", "x" * 300, "kamera\u00e9", "\x00"):
        assert check(NOW, NOW, frame_id, "h36m17") == "bad_frame_id", repr(frame_id)
    assert check(NOW, NOW, "robot/head_camera.optical-1", "h36m17") is None


def test_each_person_malformation_is_named(validator):
    good = person()
    cases = {}
    x, y, c = person()
    cases["bad_shape"] = (x, y[:-1], c)
    cases["wrong_joint_count"] = person(joints=J - 2)
    for value in (-0.1, 1.5, np.nan, np.inf):
        bad_c = c.copy()
        bad_c[3] = value
        assert validator.check_people([(x, y, bad_c)], 0).rejected == "bad_confidence", value
    for value in (np.nan, np.inf, -np.inf):
        bad_x = x.copy()
        bad_x[5] = value
        assert validator.check_people([(bad_x, y, c)], 0).rejected == "nonfinite", value
    for value in (1e38, -1e6, 640 * 1.3):
        bad_y = y.copy()
        bad_y[2] = value if value != 640 * 1.3 else 480 * 1.3
        assert validator.check_people([(x, bad_y, c)], 0).rejected == "outside_image", value
    for reason, bad in cases.items():
        result = validator.check_people([bad, good], 0)
        assert result.rejected is None and list(result.keep) == [1]
        assert result.person_rejections == {reason: 1}
        assert validator.check_people([bad], 0).rejected == reason
    assert set(PERSON_REJECTIONS) >= {"bad_shape", "wrong_joint_count", "bad_confidence", "nonfinite",
                                      "outside_image"}


def test_missing_joints_may_hold_anything_and_the_margin_follows_each_camera(validator):
    x, y, c = person()
    x[0], y[0], c[0] = np.nan, 1e38, 0.0  # confidence 0: missing, whatever x/y hold
    x[1] = 640 * 1.2  # inside the 25 % margin of camera 0
    assert validator.check_people([(x, y, c)], 0).rejected is None
    x[1] = 1800.0  # outside camera 0's 640 px (plus margin), inside camera 1's 1920 px
    assert validator.check_people([(x, y, c)], 0).rejected == "outside_image"
    assert validator.check_people([(x, y, c)], 1).rejected is None
    assert validator.check_people([(x, y, c)], None).rejected is None  # no view: no image check


def test_crowds_are_capped_to_the_most_confident_and_counted(validator):
    people = [person(conf=0.1 * (k % 9 + 1), seed=k) for k in range(50)]
    result = validator.check_people(people, 0)
    assert result.rejected is None and result.capped == 47
    kept_conf = [people[i][2][0] for i in result.keep]
    assert kept_conf == pytest.approx([0.9, 0.9, 0.9])
    assert list(result.keep) == [8, 17, 26]  # equally confident people keep the message's order


def test_nobody_is_a_valid_empty_view_and_quality_ranks_messages(validator):
    empty = validator.check_people([], 0)
    assert empty.rejected is None and len(empty.keep) == 0
    clean = validator.check_people([person(0.8)], 0)
    x, y, c = person(0.95)
    x[0] = np.nan
    half = validator.check_people([(x, y, c), person(0.8)], 0)
    assert clean.quality > half.quality > empty.quality


def test_accepts_the_array_types_ros_messages_hold(validator):
    x, y, c = person()
    as_arrays = (array.array("f", x), array.array("f", y), array.array("f", c))
    assert validator.check_people([as_arrays, tuple(map(list, person(seed=1)))], 0).rejected is None


def test_outside_image_for_recorded_files():
    xy = np.array([[[10.0, 10.0], [700.0, 10.0], [np.nan, np.nan], [-400.0, 5.0]]])  # [V=1, J=4, 2]
    np.testing.assert_array_equal(outside_image(xy, SIZES[:1], 0.0), [[False, True, False, True]])
    np.testing.assert_array_equal(outside_image(xy, SIZES[:1], 0.5), [[False, False, False, True]])


def test_config_is_checked():
    with pytest.raises(ValueError):
        ValidationConfig("h36m17", 0)
    with pytest.raises(ValueError):
        ValidationConfig("h36m17", J, image_sizes=np.array([[640.0, 0.0]]))
    with pytest.raises(ValueError):
        ValidationConfig("h36m17", J, max_people=0)


def test_recorded_keypoints_far_outside_their_image_become_missing():
    from skelsplat_ros.io.keypoints import KeypointSet, mask_outside_image
    from skelsplat_ros.sim import make_scenario

    scenario = make_scenario("lab", num_frames=4, fps=30, noise="clean", seed=1)
    kp = scenario.keypoints.copy()
    kp[1, 2, 3, :2] = (1e38, 5.0)
    kp[2, 0, 0, :2] = (-1e6, -1e6)
    kp[0, 1, 4] = (np.nan, np.nan, 0.0)  # already missing: not counted
    keypoint_set = KeypointSet(kp, scenario.rig.names)
    masked, count = mask_outside_image(keypoint_set, scenario.rig)
    assert count == 2
    assert np.isnan(masked.keypoints[1, 2, 3, :2]).all() and masked.keypoints[1, 2, 3, 2] == 0
    assert np.isnan(masked.keypoints[2, 0, 0, :2]).all()
    untouched = np.ones(kp.shape[:3], bool)
    untouched[1, 2, 3] = untouched[2, 0, 0] = False
    np.testing.assert_array_equal(masked.keypoints[untouched], keypoint_set.keypoints[untouched])
    assert mask_outside_image(masked, scenario.rig) == (masked, 0)
