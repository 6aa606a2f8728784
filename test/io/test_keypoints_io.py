"""2D keypoint I/O: npz, OpenPose/Pose2Sim JSON folders (real and written), validation, matching to a rig."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skelsplat_ros.geometry.calibration import load_qualisys_qca
from skelsplat_ros.io.keypoints import (
    JSON_SUBJECT_RULE,
    SUBJECT_MAX_MISSED,
    KeypointsError,
    KeypointSet,
    align_to_rig,
    load_keypoints,
    save_keypoints_npz,
    save_openpose_folder,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def _random_set(views: int = 3, frames: int = 5, joints: int = 17, seed: int = 0) -> KeypointSet:
    rng = np.random.default_rng(seed)
    kp = np.concatenate(
        [rng.uniform(0, 1000, (views, frames, joints, 2)), rng.uniform(0.05, 1, (views, frames, joints, 1))], axis=-1
    )
    kp[0, 1, 3] = [np.nan, np.nan, 0.0]  # a missing keypoint
    kp[1, 2] = [np.nan, np.nan, 0.0]  # a whole missing frame in one view
    return KeypointSet(kp, [f"cam{v + 1}" for v in range(views)], fps=30.0, skeleton="coco17" if joints == 17 else None)


def _person(joints: int, conf: float, x0: float) -> list[float]:
    flat = []
    for j in range(joints):
        flat += [x0 + j, 100.0 + 2 * j, conf]
    return flat


def _write_json(path: Path, people: list[list[float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": p} for p in people]})
    )


# --- the dataclass ---------------------------------------------------------------------------------------------------


def test_keypointset_sanitises_a_copy():
    kp = np.zeros((2, 3, 17, 3))
    kp[..., 2] = 0.5
    kp[0, 0, 0] = [np.nan, 5.0, 0.9]  # NaN x -> both NaN, confidence 0
    kp[0, 0, 1] = [1.0, 2.0, 1.7]  # clipped to 1
    kp[0, 0, 2] = [1.0, 2.0, -0.2]  # clipped to 0
    kp[0, 0, 3] = [1.0, 2.0, np.nan]  # non-finite confidence -> 0
    kp[0, 0, 4] = [np.inf, 2.0, 0.8]  # infinite x -> missing
    original = kp.copy()
    ks = KeypointSet(kp, ["a", "b"], fps=25, skeleton="coco17")
    np.testing.assert_array_equal(kp, original)  # the caller's array is untouched
    assert np.isnan(ks.keypoints[0, 0, 0, :2]).all() and ks.keypoints[0, 0, 0, 2] == 0.0
    assert ks.keypoints[0, 0, 1, 2] == 1.0 and ks.keypoints[0, 0, 2, 2] == 0.0 and ks.keypoints[0, 0, 3, 2] == 0.0
    assert np.isnan(ks.keypoints[0, 0, 4, :2]).all() and ks.keypoints[0, 0, 4, 2] == 0.0
    assert (ks.num_views, ks.num_frames, ks.num_joints) == (2, 3, 17) and ks.fps == 25.0
    assert ks.xy.shape == (2, 3, 17, 2) and ks.confidence.shape == (2, 3, 17)
    np.testing.assert_array_equal(ks.frames, [0, 1, 2])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keypoints": np.zeros((2, 3, 17))}, "shape [V, F, J, 3]"),
        ({"keypoints": np.zeros((2, 3, 17, 2))}, "shape [V, F, J, 3]"),
        ({"cameras": ["a"]}, "1 camera names for 2 views"),
        ({"cameras": ["a", "a"]}, "duplicate camera names"),
        ({"cameras": "ab"}, "not one string"),
        ({"skeleton": "body25b"}, "skeleton 'body25b' has 25 joints but the keypoints have 17"),
        ({"skeleton": "no_such_skeleton"}, "unknown skeleton"),
        ({"fps": -3}, "fps must be positive"),
        ({"frame_numbers": np.arange(4)}, "frame_numbers must be 3 integers"),
    ],
)
def test_keypointset_rejects_bad_inputs(kwargs, message):
    args = {"keypoints": np.zeros((2, 3, 17, 3)), "cameras": ["a", "b"], "fps": None, "skeleton": "coco17"}
    args.update(kwargs)
    with pytest.raises(KeypointsError) as info:
        KeypointSet(**args)
    assert message in str(info.value)


def test_select_cameras():
    ks = _random_set()
    sub = ks.select_cameras(["cam3", "cam1"])
    assert sub.cameras == ["cam3", "cam1"]
    np.testing.assert_array_equal(sub.keypoints, ks.keypoints[[2, 0]])
    with pytest.raises(KeypointsError, match=r"unknown camera\(s\) \['cam9'\]"):
        ks.select_cameras(["cam9"])


# --- npz -------------------------------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    ks = _random_set()
    ks.frame_numbers = None
    save_keypoints_npz(ks, tmp_path / "kp.npz")
    back = load_keypoints(tmp_path / "kp.npz")
    np.testing.assert_array_equal(back.keypoints, ks.keypoints)
    assert back.cameras == ks.cameras and back.fps == 30.0 and back.skeleton == "coco17" and back.frame_numbers is None
    # the arguments override what is stored
    assert load_keypoints(tmp_path / "kp.npz", fps=50).fps == 50.0
    with pytest.raises(KeypointsError, match="skeleton 'halpe26' has 26 joints"):
        load_keypoints(tmp_path / "kp.npz", skeleton="halpe26")


def test_npz_minimal_and_bad(tmp_path):
    np.savez(tmp_path / "min.npz", keypoints=np.zeros((1, 2, 25, 3)), cameras=np.array(["x"]))
    ks = load_keypoints(tmp_path / "min.npz")
    assert ks.fps is None and ks.skeleton is None and np.all(ks.confidence == 0)
    np.savez(tmp_path / "nocams.npz", keypoints=np.zeros((1, 2, 25, 3)))
    with pytest.raises(KeypointsError, match=r"nocams.npz: missing key 'cameras'"):
        load_keypoints(tmp_path / "nocams.npz")
    np.savez(tmp_path / "shape.npz", keypoints=np.zeros((2, 25, 3)), cameras=np.array(["x", "y"]))
    with pytest.raises(KeypointsError, match=r"shape.npz: keypoints must have shape \[V, F, J, 3\]"):
        load_keypoints(tmp_path / "shape.npz")
    np.savez(tmp_path / "count.npz", keypoints=np.zeros((2, 1, 25, 3)), cameras=np.array(["x"]))
    with pytest.raises(KeypointsError, match="1 camera names for 2 views"):
        load_keypoints(tmp_path / "count.npz")
    np.savez(tmp_path / "obj.npz", keypoints=np.zeros((1, 1, 25, 3)), cameras=np.array(["x", 1], dtype=object))
    with pytest.raises(KeypointsError, match="obj.npz: cannot read"):
        load_keypoints(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(KeypointsError, match="junk.npz"):
        load_keypoints(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="keypoints not found"):
        load_keypoints(tmp_path / "missing.npz")
    (tmp_path / "kp.csv").write_text("x")
    with pytest.raises(KeypointsError, match="unsupported keypoints file"):
        load_keypoints(tmp_path / "kp.csv")


# --- OpenPose JSON ----------------------------------------------------------------------------------------------------


def test_openpose_folder_round_trip_with_distractors_and_missing(tmp_path):
    ks = _random_set(views=3, frames=6, joints=25)
    ks = KeypointSet(ks.keypoints, ks.cameras, None, "body25b", np.arange(10, 16))
    rng = np.random.default_rng(1)
    # two bystanders per file, away from the subject and less confident, written before the subject
    others = np.concatenate(
        [rng.uniform(4000, 4500, (3, 6, 2, 25, 2)), rng.uniform(0.0, 0.04, (3, 6, 2, 25, 1))], axis=-1
    )
    save_openpose_folder(ks, tmp_path / "pose", others=others)
    first = json.loads((tmp_path / "pose" / "cam1_json" / "cam1_000000000010_keypoints.json").read_text())
    assert len(first["people"]) == 3 and len(first["people"][0]["pose_keypoints_2d"]) == 75
    back = load_keypoints(tmp_path / "pose", skeleton="body25b")
    assert back.cameras == ["cam1", "cam2", "cam3"] and back.fps is None and back.skeleton == "body25b"
    np.testing.assert_array_equal(back.frame_numbers, np.arange(10, 16))
    keep = np.ones((3, 6), dtype=bool)
    keep[1, 2] = False
    np.testing.assert_allclose(back.keypoints[keep], ks.keypoints[keep])  # subject chosen, NaN/0 kept
    # view 1 frame 2 has no subject (only the bystanders were written), none near the last subject: that view is
    # missing in that frame (no bystander stands in), and the subject is back in frame 3
    assert np.isnan(back.keypoints[1, 2, :, :2]).all() and np.all(back.keypoints[1, 2, :, 2] == 0)
    # without bystanders the empty frame is written as "people": [] and reads back as missing
    save_openpose_folder(ks, tmp_path / "alone")
    assert (
        json.loads((tmp_path / "alone" / "cam2_json" / "cam2_000000000012_keypoints.json").read_text())["people"] == []
    )
    np.testing.assert_allclose(load_keypoints(tmp_path / "alone").keypoints, ks.keypoints)
    with pytest.raises(KeypointsError, match="already holds 6 .json files"):
        save_openpose_folder(ks, tmp_path / "pose")
    save_openpose_folder(ks, tmp_path / "pose", overwrite=True)
    assert len(list((tmp_path / "pose" / "cam1_json").glob("*.json"))) == 6


def test_json_most_confident_person_and_zero_means_missing(tmp_path):
    folder = tmp_path / "pose"
    subject = _person(17, 0.8, 300.0)
    subject[3 * 5 : 3 * 5 + 3] = [0.0, 0.0, 0.0]  # joint 5 missing, written OpenPose style
    for cam in ("a", "b"):
        _write_json(
            folder / f"{cam}_json" / f"{cam}_000000000000_keypoints.json",
            [_person(17, 0.3, 10.0), subject, _person(17, 0.5, 600.0)],
        )
        _write_json(folder / f"{cam}_json" / f"{cam}_000000000001_keypoints.json", [])  # nobody
    ks = load_keypoints(folder)
    assert ks.keypoints.shape == (2, 2, 17, 3) and ks.skeleton is None
    assert ks.keypoints[0, 0, 0, 0] == 300.0 and ks.keypoints[1, 0, 16, 0] == 316.0
    assert np.isnan(ks.keypoints[:, 0, 5, :2]).all() and np.all(ks.keypoints[:, 0, 5, 2] == 0)
    assert np.isnan(ks.keypoints[:, 1, :, :2]).all() and np.all(ks.confidence[:, 1] == 0)
    assert "highest mean keypoint confidence" in JSON_SUBJECT_RULE


def test_json_subject_is_followed_when_a_bystander_becomes_more_confident(tmp_path):
    folder = tmp_path / "pose"
    for frame in range(4):
        subject = _person(17, 0.8 if frame == 0 else 0.4, 300.0 + 5.0 * frame)  # walks right, fades
        bystander = _person(17, 0.6, 900.0)
        people = [bystander, subject] if frame != 2 else [bystander]  # frame 2: the subject is not detected
        _write_json(folder / "a_json" / f"a_{frame:06d}.json", people)
    ks = load_keypoints(folder)
    np.testing.assert_allclose(ks.keypoints[0, [0, 1, 3], 0, 0], [300.0, 305.0, 315.0])  # not the bystander
    assert np.isnan(ks.keypoints[0, 2, :, :2]).all() and np.all(ks.confidence[0, 2] == 0)  # subject absent: missing
    # gone for SUBJECT_MAX_MISSED files: still missing; one more, and the person shown becomes the one followed
    for frame in range(4, 4 + SUBJECT_MAX_MISSED + 1):
        _write_json(folder / "a_json" / f"a_{frame:06d}.json", [_person(17, 0.6, 900.0)])
    _write_json(folder / "a_json" / f"a_{5 + SUBJECT_MAX_MISSED:06d}.json",
                [_person(17, 0.9, 320.0), _person(17, 0.6, 902.0)])
    ks = load_keypoints(folder)
    assert np.isnan(ks.keypoints[0, 4 : 4 + SUBJECT_MAX_MISSED, :, :2]).all()
    assert ks.keypoints[0, 4 + SUBJECT_MAX_MISSED, 0, 0] == 900.0 and ks.keypoints[0, -1, 0, 0] == 902.0


def test_json_alignment_by_frame_number_and_shifted_numbering(tmp_path):
    # cam a has frames 0..4 except 2; cam b has 1..5; cam c has 0..5 with a gap at 3 only -> by number over 0..5
    folder = tmp_path / "by_number"
    for cam, numbers in {"a": [0, 1, 3, 4], "b": [1, 2, 3, 4, 5], "c": [0, 1, 2, 4, 5]}.items():
        for n in numbers:
            _write_json(folder / f"{cam}_json" / f"{cam}.{n:04d}.json", [_person(17, 0.9, 5.0 * n)])
    ks = load_keypoints(folder)
    np.testing.assert_array_equal(ks.frame_numbers, np.arange(6))
    present = ks.confidence[..., 0] > 0
    np.testing.assert_array_equal(present, [[1, 1, 0, 1, 1, 0], [0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1]])
    for v in range(3):
        for f in np.flatnonzero(present[v]):
            assert ks.keypoints[v, f, 0, 0] == 5.0 * f  # each file landed on its own frame number

    # equal counts, contiguous, numbering shifted by one: aligned by file order
    shifted = tmp_path / "shifted"
    for cam, start in {"a": 0, "b": 1}.items():
        for k in range(4):
            _write_json(shifted / f"{cam}_json" / f"{cam}_{start + k:06d}.json", [_person(17, 0.9, 10.0 * k)])
    ks = load_keypoints(shifted)
    assert ks.num_frames == 4
    np.testing.assert_array_equal(ks.keypoints[0], ks.keypoints[1])

    # a common gap (every camera lacks frame 2) stays a missing frame: F is evenly spaced in time
    gap = tmp_path / "gap"
    for cam in ("a", "b"):
        for n in (0, 1, 3):
            _write_json(gap / f"{cam}_json" / f"{cam}_{n}.json", [_person(17, 0.9, 0.0)])
    ks = load_keypoints(gap)
    assert ks.num_frames == 4 and np.all(ks.confidence[:, 2] == 0)


def test_real_pose2sim_json_files():
    ks = load_keypoints(DATA / "pose2sim_demo_json", skeleton="body25b")
    assert ks.cameras == ["cam01", "cam02", "cam03", "cam04"]
    assert ks.keypoints.shape == (4, 2, 25, 3)
    np.testing.assert_array_equal(ks.frame_numbers, [36, 37])
    raw = json.loads((DATA / "pose2sim_demo_json" / "cam01_json" / "cam01.0036.json").read_text())
    scores = [np.mean(p["pose_keypoints_2d"][2::3]) for p in raw["people"]]
    chosen = np.array(raw["people"][int(np.argmax(scores))]["pose_keypoints_2d"]).reshape(25, 3)
    valid = chosen[:, 2] > 0
    np.testing.assert_allclose(ks.keypoints[0, 0][valid], chosen[valid])
    assert np.isnan(ks.keypoints[0, 0][~valid, :2]).all()
    # in cam01 frame 37 OpenPose split the subject into two partial people, and the bystander at the left image
    # edge has the highest mean confidence: following the subject from frame 36 keeps the nearer partial person
    raw = json.loads((DATA / "pose2sim_demo_json" / "cam01_json" / "cam01.0037.json").read_text())
    people = [np.array(p["pose_keypoints_2d"]).reshape(25, 3) for p in raw["people"]]
    scores = [p[:, 2].mean() for p in people]
    assert np.nanmean(people[int(np.argmax(scores))][:, 0]) < 100  # the bystander: what confidence alone picks
    valid = people[1][:, 2] > 0
    assert np.nanmean(people[1][valid, 0]) > 300
    np.testing.assert_allclose(ks.keypoints[0, 1][valid], people[1][valid])


def test_json_errors(tmp_path):
    with pytest.raises(KeypointsError, match="no <camera>_json/ subfolders"):
        load_keypoints(tmp_path)
    (tmp_path / "a_json").mkdir()
    with pytest.raises(KeypointsError, match="a_json: no .json files"):
        load_keypoints(tmp_path)
    _write_json(tmp_path / "a_json" / "a_1.json", [_person(17, 0.9, 0.0)])
    _write_json(tmp_path / "a_json" / "a_01.json", [_person(17, 0.9, 0.0)])
    with pytest.raises(KeypointsError, match="two files carry frame number 1"):
        load_keypoints(tmp_path)
    (tmp_path / "a_json" / "a_01.json").unlink()
    _write_json(tmp_path / "a_json" / "a_2.json", [_person(18, 0.9, 0.0)])
    with pytest.raises(KeypointsError, match="a_2.json: 18 keypoints per person, but earlier files have 17"):
        load_keypoints(tmp_path)
    (tmp_path / "a_json" / "a_2.json").write_text("{broken")
    with pytest.raises(KeypointsError, match="a_2.json: not valid JSON"):
        load_keypoints(tmp_path)
    _write_json(tmp_path / "a_json" / "a_2.json", [[1.0, 2.0]])
    with pytest.raises(KeypointsError, match="not a multiple of 3"):
        load_keypoints(tmp_path)
    (tmp_path / "a_json" / "a_2.json").write_text('{"version": 1.3}')
    with pytest.raises(KeypointsError, match="no 'people' list"):
        load_keypoints(tmp_path)
    (tmp_path / "a_json" / "a_2.json").unlink()
    _write_json(tmp_path / "a_json" / "nonumber.json", [])
    with pytest.raises(KeypointsError, match="nonumber.json: no frame number"):
        load_keypoints(tmp_path)
    (tmp_path / "a_json" / "nonumber.json").unlink()
    with pytest.raises(KeypointsError, match="skeleton 'coco19' has 19 joints but the keypoints have 17"):
        load_keypoints(tmp_path, skeleton="coco19")
    # a single <camera>_json folder is accepted too
    assert load_keypoints(tmp_path / "a_json").cameras == ["a"]


# --- matching with the calibration ------------------------------------------------------------------------------------


def test_align_to_rig_exact_loose_and_unknown():
    rig = load_qualisys_qca(DATA / "pose2sim_demo_Calib.qca.txt")  # cam_01 .. cam_04
    kp = np.zeros((2, 1, 25, 3))
    ks, sub = align_to_rig(KeypointSet(kp, ["cam03", "cam01"]), rig)  # loose: cam03 <-> cam_03
    assert sub.names == ["cam_03", "cam_01"] and ks.cameras == ["cam03", "cam01"]
    _, sub = align_to_rig(KeypointSet(kp, ["cam_04", "CAM-2"]), rig)
    assert sub.names == ["cam_04", "cam_02"]
    with pytest.raises(
        KeypointsError, match=r"no calibration for camera\(s\) \['cam09'\]; the calibration has \['cam_01'"
    ):
        align_to_rig(KeypointSet(kp, ["cam01", "cam09"]), rig)
    with pytest.raises(KeypointsError, match="map to the same calibrated camera"):
        align_to_rig(KeypointSet(kp, ["cam01", "cam_01"]), rig)
