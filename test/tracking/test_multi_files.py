"""Multi-person files and commands: 5-D keypoints NPZ, JSON folders with --people all, the people result formats,
``skelsplat fuse`` on several people, the benchmark's scoring, the simulated scenes and the Shelf command."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from skelsplat_ros.bench.multi import score_people
from skelsplat_ros.bench.shelf import default_shelf_dir, evaluate_shelf, fuse_shelf, shelf_available
from skelsplat_ros.cli import main
from skelsplat_ros.fusion import preset_config
from skelsplat_ros.geometry.calibration import save_calibration
from skelsplat_ros.io.export import load_trc, save_people_result
from skelsplat_ros.io.keypoints import (
    KeypointSet,
    load_keypoints,
    mask_outside_image,
    save_keypoints_npz,
    save_openpose_folder,
)
from skelsplat_ros.sim.scenes import make_multi_person_scenario

FPS = 30.0


@pytest.fixture(scope="module")
def scene():
    return make_multi_person_scenario("lab", 2, 40, seed=21)


def test_a_crowd_scene_keeps_people_apart():
    """More than 5 people are a crowd: one in five walks, the others move in place, spread wider, so that ten
    people still pass each other instead of walking through each other."""
    from skelsplat_ros.sim import make_ring_rig

    crowd = make_multi_person_scenario(make_ring_rig(12, seed=4), 10, 60, seed=4, enter_leave=False)
    assert crowd.ground_truth.shape[1] == 10 and np.isfinite(crowd.ground_truth).all()
    assert crowd.min_separation > 0.3
    hips = crowd.ground_truth[:, :, [0]].mean(axis=2)[..., :2]  # [F, P, 2] the pelvis
    travelled = np.linalg.norm(hips[-1] - hips[0], axis=-1)
    assert (travelled > 0.3).sum() == 2, "two walkers of ten"
    spread = make_multi_person_scenario("lab", 3, 60, seed=4, spread=0.2, walkers=0, enter_leave=False)
    assert np.abs(spread.ground_truth[..., :2]).max() < 1.0  # in place, near the middle


def test_scene_slots_people_and_bodies(scene):
    again = make_multi_person_scenario("lab", 2, 40, seed=21)
    np.testing.assert_array_equal(again.keypoints, scene.keypoints)
    num_views, num_frames, num_slots = scene.slot_person.shape
    assert scene.keypoints.shape == (num_views, num_frames, num_slots, 17, 3)
    for v, f, s in zip(*np.nonzero(scene.slot_person >= 0)):
        np.testing.assert_array_equal(scene.keypoints[v, f, s], scene.person_keypoints[v, f, scene.slot_person[v, f, s]])
    # A slot of nobody is padding (nothing in it) or a ghost (seen, but nobody's).
    seen = (np.nan_to_num(scene.keypoints[..., 2]) > 0).any(-1)
    padding = (scene.slot_person == -1) & ~seen
    assert padding.any() and np.isnan(scene.keypoints[padding][..., :2]).all()
    assert ((scene.slot_person >= 0) <= seen).all(), "every person's slot holds a detection"
    heights = np.nanmax(scene.ground_truth[..., 2], axis=(0, 2))
    assert abs(heights[0] - heights[1]) > 0.01, "people have different sizes"
    assert scene.min_separation >= 0.45
    # Order is shuffled: the first slot is not always the same person.
    first = scene.slot_person[:, :, 0]
    assert len(set(first[first >= 0].tolist())) == 2


def test_five_d_npz_and_people_result_formats(scene, tmp_path):
    path = tmp_path / "kp.npz"
    save_keypoints_npz(KeypointSet(scene.keypoints, scene.rig.names, FPS, "h36m17"), path)
    loaded = load_keypoints(path)
    assert loaded.multi_person and loaded.num_joints == 17
    np.testing.assert_array_equal(np.isnan(loaded.keypoints), np.isnan(scene.keypoints))
    # Garbage far outside a camera's image is masked per view, also with a slot axis.
    garbage = loaded.keypoints.copy()
    garbage[1, 5, 0, 3] = (1e7, 50.0, 0.9)
    masked, count = mask_outside_image(KeypointSet(garbage, loaded.cameras), scene.rig)
    assert count == 1 and np.isnan(masked.keypoints[1, 5, 0, 3, 0])

    joints = np.full((3, 2, 17, 3), np.nan)
    joints[0, 0] = 1.0
    joints[1:, 1] = 2.0
    confidence = np.isfinite(joints[..., 0]).astype(np.float32)
    covariance = np.zeros((3, 2, 17, 3, 3))
    names = list(scene.skeleton.joint_names)
    written = save_people_result(tmp_path / "out.npz", joints, confidence, covariance, np.array([4, 9]), names, FPS)
    data = np.load(written[0])
    assert data["joints"].shape == (3, 2, 17, 3) and list(data["track_ids"]) == [4, 9]
    trcs = save_people_result(tmp_path / "out.trc", joints, confidence, covariance, np.array([4, 9]), names, FPS)
    assert [p.name for p in trcs] == ["out_4.trc", "out_9.trc"]
    markers, _, _ = load_trc(trcs[1])
    assert np.isnan(markers[0]).all() and np.allclose(markers[1:], 2.0)
    save_people_result(tmp_path / "out.csv", joints, confidence, covariance, np.array([4, 9]), names, FPS)
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["frame"], r["track"]) for r in rows] == [("0", "4"), ("1", "9"), ("2", "9")]


def test_json_folder_people_all_and_default_subject(scene, tmp_path):
    people = scene.person_keypoints  # [V, F, P, J, 3]
    subject = KeypointSet(people[:, :, 0], scene.rig.names, None, "h36m17")
    save_openpose_folder(subject, tmp_path, others=people[:, :, 1:] * np.array([1, 1, 0.5]))
    everyone = load_keypoints(tmp_path, skeleton="h36m17", people="all")
    assert everyone.multi_person and everyone.keypoints.shape[:3] == (len(scene.rig), 40, 2)
    followed = load_keypoints(tmp_path, skeleton="h36m17")
    assert not followed.multi_person and followed.keypoints.shape == (len(scene.rig), 40, 17, 3)
    with pytest.raises(ValueError, match="people"):
        load_keypoints(tmp_path, skeleton="h36m17", people="some")


def test_fuse_command_on_several_people(scene, tmp_path, capsys):
    save_calibration(scene.rig, tmp_path / "calib.toml")
    save_keypoints_npz(KeypointSet(scene.keypoints, scene.rig.names, FPS, "h36m17"), tmp_path / "kp.npz")
    args = ["fuse", "--calibration", str(tmp_path / "calib.toml"), "--keypoints", str(tmp_path / "kp.npz"),
            "--mode", "streaming", "--quiet"]
    assert main(args + ["--output", str(tmp_path / "out.npz")]) == 0
    assert "tracked 2 people" in capsys.readouterr().out
    result = np.load(tmp_path / "out.npz")
    # From the frame the people's bone lengths are known (fusion/output.py): published from then on.
    warm_up = preset_config("default").bone_warmup
    score = score_people(result["joints"][warm_up:], scene.ground_truth[warm_up:], scene.ground_truth[warm_up:])
    assert score.recall > 0.95 and score.precision == 1.0
    assert main(args + ["--output", str(tmp_path / "out.trc")]) == 0
    assert sorted(p.name for p in tmp_path.glob("out_*.trc")) == [f"out_{i}.trc" for i in result["track_ids"]]


def test_score_people_counts_switches_and_misses():
    truth = np.zeros((4, 2, 3, 3))
    truth[:, 1] += 1.0
    joints = truth.copy()[:, [1, 0]]  # tracks in the other order: ids 0 <-> person 1
    joints[2] = joints[2, [1, 0]]  # the two tracks trade people at frame 2
    joints[3, 0] = np.nan  # and one is missing at frame 3
    score = score_people(joints, truth, truth)
    assert score.recall == 7 / 8 and score.precision == 1.0
    assert score.id_switches == [2, 1]


def test_bench_shelf_without_data_says_so(tmp_path, capsys):
    assert main(["bench-shelf", "--data", str(tmp_path)]) == 0
    assert "Shelf data not found" in capsys.readouterr().out


SHELF = Path(os.environ.get("SKELSPLAT_SHELF", "")) if os.environ.get("SKELSPLAT_SHELF") else default_shelf_dir()


@pytest.mark.skipif(not shelf_available(SHELF), reason=f"Shelf data not in {SHELF}")
def test_a_few_shelf_frames():
    # 25 frames after the people's first bone_warmup frames (not published until their bone lengths are known).
    frames = 25 + preset_config("default").bone_warmup
    result, _ = fuse_shelf(SHELF, "streaming", frames=frames)
    padded = np.full((301,) + result.joints.shape[1:], np.nan)
    padded[:frames] = result.joints
    result.joints = padded
    report = evaluate_shelf(SHELF, result)
    # Actors 0 and 2 are in these frames; every limb but the head convention is found.
    for actor in ("0", "2"):
        assert report["actors"][actor]["matched_frames"] >= 25
    assert result.num_tracks >= 2
