"""ROS 2 recordings as they come (issue 18), in real bags written with rosbags (MCAP and sqlite3), read by
``skelsplat fuse``:

- several people per keypoint message: tracked, through the same code as a 5-D .npz, to the same tracks;
- frames the synchronizer could not fill (one camera alone for a while), with and without stamp jitter: the
  recording's timeline is kept, those frames are missing frames, and the frames beside the gap are as accurate as
  the others; an .npz whose frame_numbers skip frames is read the same way;
- static cameras (camera_info + /tf) whose first keypoints precede the first /tf, or whose /tf stops before the
  last keypoints: static, fused offline, every view posed;
- an uncalibrated CameraInfo (K = 0) before the good ones: skipped and counted, the bag fused.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("skelsplat_ros.msg")

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import START_NS, write_keypoints_bag  # noqa: E402

from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.geometry.calibration import camera_info_fields, save_calibration  # noqa: E402
from skelsplat_ros.io.export import load_result  # noqa: E402
from skelsplat_ros.io.keypoints import KeypointSet, load_keypoints, save_keypoints_npz  # noqa: E402
from skelsplat_ros.ros.bag import BagError, read_bag_frames  # noqa: E402
from skelsplat_ros.ros.conversions import ns_to_stamp  # noqa: E402
from skelsplat_ros.ros.rig_publisher import static_transforms  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402
from skelsplat_ros.sim.scenes import make_multi_person_scenario  # noqa: E402

FPS = 30.0
STORAGES = ["mcap", "sqlite3"]


def _fuse(*argv: str) -> int:
    return main(["fuse", "--skeleton", "h36m17", "--quiet", *argv])


def _as_sent(keypoints: np.ndarray) -> np.ndarray:
    """What a message carries of ``keypoints``: float32 values, a missing joint NaN with confidence 0."""
    kp = keypoints.astype(np.float32).astype(np.float64)
    missing = ~(np.isfinite(kp).all(-1) & (kp[..., 2] > 0))
    kp[missing] = np.nan
    kp[..., 2][missing] = 0.0
    return kp


# --- several people per message ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("people")
    scenario = make_multi_person_scenario("lab", 2, num_frames=24, noise="realistic", seed=11, enter_leave=False)
    keypoints = scenario.person_keypoints.copy()  # [V, F, P, J, 3]
    keypoints[:2, :, 0, :, 2] *= 0.95  # person 1 the more confident in cameras 0, 1; person 0 in cameras 2, 3
    keypoints[:2, :, 1, :, 2] = np.minimum(keypoints[:2, :, 1, :, 2] * 1.5, 1.0)
    save_calibration(scenario.rig, tmp / "rig.toml")
    for storage in STORAGES:
        write_keypoints_bag(tmp / storage, scenario.rig.names, keypoints, FPS, "h36m17", storage=storage)
    return tmp, scenario


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("mode", ["offline", "streaming"])
def test_a_bag_with_several_people_per_message_is_tracked_like_the_npz_of_it(two_people, storage, mode):
    tmp, scenario = two_people
    frames = read_bag_frames(tmp / storage, "h36m17", 17, rig=scenario.rig)
    assert frames.multi_person and frames.keypoints.shape[:3] == (4, 24, 2)
    np.savez(tmp / f"{storage}_{mode}.npz", keypoints=frames.keypoints, cameras=np.array(frames.cameras), fps=FPS,
             skeleton="h36m17")  # the same detections as a 5-D .npz: the reference route
    common = ["--calibration", str(tmp / "rig.toml"), "--mode", mode]
    assert _fuse(*common, "--keypoints", str(tmp / storage), "--output", str(tmp / f"bag_{storage}_{mode}.npz")) == 0
    assert _fuse(*common, "--keypoints", str(tmp / f"{storage}_{mode}.npz"),
                 "--output", str(tmp / f"npz_{storage}_{mode}.npz")) == 0
    bag, npz = load_result(tmp / f"bag_{storage}_{mode}.npz"), load_result(tmp / f"npz_{storage}_{mode}.npz")
    np.testing.assert_array_equal(bag["track_ids"], npz["track_ids"])
    np.testing.assert_allclose(bag["joints"], npz["joints"], atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(bag["timestamps_ns"], START_NS + np.round(np.arange(24) / FPS * 1e9).astype(np.int64))
    joints = bag["joints"]  # [F, T, J, 3]
    errors = [min(np.nanmean(np.linalg.norm(joints[:, t] - scenario.ground_truth[:, p], axis=-1)) for p in range(2))
              for t in range(joints.shape[1])]
    assert len(errors) == 2 and max(errors) < 0.05, errors


def test_one_person_per_message_is_still_one_person_and_subject_takes_the_most_confident(two_people):
    tmp, scenario = two_people
    frames = read_bag_frames(tmp / "mcap", "h36m17", 17, rig=scenario.rig, people="subject")
    assert not frames.multi_person and frames.keypoints.shape == (4, 24, 17, 3)
    assert _fuse("--calibration", str(tmp / "rig.toml"), "--keypoints", str(tmp / "mcap"), "--people", "subject",
                 "--output", str(tmp / "subject.npz"), "--method", "robust") == 0
    assert load_result(tmp / "subject.npz")["joints"].shape == (24, 17, 3)


# --- frames the synchronizer could not fill: the timeline ------------------------------------------------------------


@pytest.fixture(scope="module")
def gap_recording(tmp_path_factory):
    """Cameras 1-3 silent for 0.8 s (frames 40-63): one camera alone cannot make a frame."""
    tmp = tmp_path_factory.mktemp("gap")
    scenario = make_scenario("lab", num_frames=100, noise="realistic", seed=3)
    gap = range(40, 64)
    skip = {(v, f) for v in (1, 2, 3) for f in gap}
    save_calibration(scenario.rig, tmp / "rig.toml")
    rng = np.random.default_rng(0)
    jittered = START_NS + np.round((np.arange(100) / FPS + rng.uniform(-0.006, 0.006, 100)) * 1e9).astype(np.int64)
    for storage in STORAGES:
        write_keypoints_bag(tmp / storage, scenario.rig.names, scenario.keypoints, FPS, "h36m17", storage=storage,
                            skip=skip)
    write_keypoints_bag(tmp / "jitter", scenario.rig.names, scenario.keypoints, FPS, "h36m17", skip=skip,
                        stamps=jittered)
    # The same recording as an .npz: the frames no camera pair filled are missing frames.
    keypoints = _as_sent(scenario.keypoints)
    keypoints[:, list(gap)] = np.nan
    keypoints[:, list(gap), :, 2] = 0.0
    save_keypoints_npz(KeypointSet(keypoints, scenario.rig.names, FPS, "h36m17"), tmp / "kp.npz")
    assert _fuse("--calibration", str(tmp / "rig.toml"), "--keypoints", str(tmp / "kp.npz"),
                 "--output", str(tmp / "npz_route.npz")) == 0
    return tmp, scenario, gap, jittered


def _error_mm(joints: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.nanmean(np.linalg.norm(joints - truth, axis=-1), axis=-1) * 1000  # per frame


@pytest.mark.parametrize("storage", STORAGES)
def test_frames_the_synchronizer_could_not_fill_stay_missing_frames_of_the_timeline(gap_recording, storage):
    tmp, scenario, gap, _ = gap_recording
    frames = read_bag_frames(tmp / storage, "h36m17", 17, rig=scenario.rig)
    assert frames.keypoints.shape[1] == 100 and frames.counts["missing_frames"] == len(gap)
    np.testing.assert_array_equal(np.flatnonzero(~frames.present), list(gap))
    expected = START_NS + np.round(np.arange(100) / FPS * 1e9).astype(np.int64)
    np.testing.assert_array_equal(frames.stamps_ns[frames.present], expected[frames.present])
    assert np.abs(frames.stamps_ns - expected).max() <= 1  # the missing frames' stamps, interpolated
    assert frames.fps == pytest.approx(FPS)
    out = tmp / f"{storage}.npz"
    assert _fuse("--calibration", str(tmp / "rig.toml"), "--keypoints", str(tmp / storage), "--output", str(out)) == 0
    fused = load_result(out)
    np.testing.assert_allclose(fused["joints"], load_result(tmp / "npz_route.npz")["joints"], atol=1e-9,
                               equal_nan=True)
    error = _error_mm(fused["joints"], scenario.ground_truth)
    beside = np.r_[gap.start - 6:gap.start, gap.stop:gap.stop + 6]
    far = np.r_[:gap.start - 6, gap.stop + 6:100]
    assert np.nanmean(error[beside]) < 1.5 * np.nanmean(error[far]), (np.nanmean(error[beside]), np.nanmean(error[far]))


def test_stamp_jitter_keeps_each_frame_on_its_slot_and_its_own_stamp(gap_recording):
    tmp, scenario, gap, jittered = gap_recording
    frames = read_bag_frames(tmp / "jitter", "h36m17", 17, rig=scenario.rig)
    assert frames.keypoints.shape[1] == 100
    np.testing.assert_array_equal(np.flatnonzero(~frames.present), list(gap))
    there = frames.present
    np.testing.assert_array_equal(frames.stamps_ns[there], jittered[there])  # a frame keeps its own stamp
    assert np.all(np.diff(frames.stamps_ns) > 0)
    assert _fuse("--calibration", str(tmp / "rig.toml"), "--keypoints", str(tmp / "jitter"), "--mode", "streaming",
                 "--output", str(tmp / "jitter.npz")) == 0
    fused = load_result(tmp / "jitter.npz")
    assert fused["joints"].shape[0] == 100 and np.isnan(fused["joints"][list(gap)]).all()
    np.testing.assert_array_equal(fused["timestamps_ns"], frames.stamps_ns)
    assert np.nanmean(_error_mm(fused["joints"], scenario.ground_truth)) < 30


def test_an_npz_whose_frame_numbers_skip_frames_is_read_on_its_timeline(gap_recording, tmp_path):
    tmp, scenario, gap, _ = gap_recording
    keep = np.setdiff1d(np.arange(100), list(gap))
    np.savez(tmp_path / "skipping.npz", keypoints=_as_sent(scenario.keypoints)[:, keep],
             cameras=np.array(scenario.rig.names), fps=FPS, skeleton="h36m17", frame_numbers=keep + 500)
    loaded = load_keypoints(tmp_path / "skipping.npz")
    assert loaded.num_frames == 100 and np.isnan(loaded.keypoints[:, list(gap), :, :2]).all()
    np.testing.assert_array_equal(loaded.frame_numbers, np.arange(500, 600))
    assert _fuse("--calibration", str(tmp / "rig.toml"), "--keypoints", str(tmp_path / "skipping.npz"),
                 "--output", str(tmp_path / "out.npz")) == 0
    fused = load_result(tmp_path / "out.npz")
    np.testing.assert_allclose(fused["joints"], load_result(tmp / "npz_route.npz")["joints"], atol=1e-9,
                               equal_nan=True)
    np.testing.assert_array_equal(fused["frame_numbers"], np.arange(500, 600))


# --- cameras from camera_info + /tf ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tfbags")
    scenario = make_scenario("lab", num_frames=30, noise="realistic", seed=5)
    save_calibration(scenario.rig, tmp / "rig.toml")
    save_keypoints_npz(KeypointSet(_as_sent(scenario.keypoints), scenario.rig.names, FPS, "h36m17"), tmp / "kp.npz")
    assert _fuse("--calibration", str(tmp / "rig.toml"), "--keypoints", str(tmp / "kp.npz"), "--method", "robust",
                 "--output", str(tmp / "toml_route.npz")) == 0
    return tmp, scenario


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("first_tf, last_tf", [(1, 29), (7, 29), (0, 24)])
def test_static_cameras_on_tf_are_static_whatever_frames_lie_outside_the_transforms(lab, storage, first_tf, last_tf):
    tmp, scenario = lab
    bag = tmp / f"tf_{storage}_{first_tf}_{last_tf}"
    write_keypoints_bag(bag, scenario.rig.names, scenario.keypoints, FPS, "h36m17", storage=storage, rig=scenario.rig,
                        static_tf=[], dynamic_tf=lambda f, stamp: static_transforms(scenario.rig, "world", "", stamp)
                        if first_tf <= f <= last_tf else [])
    frames = read_bag_frames(bag, "h36m17", 17)
    assert not frames.moving
    outside = first_tf + 29 - last_tf
    assert frames.counts.get("tf.static_pose_used", 0) == 4 * outside
    for rig in frames.rigs:
        np.testing.assert_allclose(rig.t, scenario.rig.t, atol=1e-9)
    out = tmp / f"{bag.name}.npz"
    assert _fuse("--keypoints", str(bag), "--method", "robust", "--output", str(out)) == 0  # offline: static
    np.testing.assert_allclose(load_result(out)["joints"], load_result(tmp / "toml_route.npz")["joints"], atol=1e-6,
                               equal_nan=True)


def test_moving_cameras_leave_out_the_views_before_their_first_transform(lab):
    tmp, scenario = lab
    offset = np.array([0.0, 0.0, 0.001])  # the cameras creep: moving, however little

    def creeping(f, stamp):
        transforms = static_transforms(scenario.rig, "world", "", stamp) if f >= 5 else []
        for transform in transforms:
            transform.transform.translation.z += f * offset[2]
        return transforms

    write_keypoints_bag(tmp / "creeping", scenario.rig.names, scenario.keypoints, FPS, "h36m17", rig=scenario.rig,
                        static_tf=[], dynamic_tf=creeping)
    frames = read_bag_frames(tmp / "creeping", "h36m17", 17)
    assert frames.moving and frames.counts["tf.past"] == 4 * 5 and "tf.static_pose_used" not in frames.counts
    assert np.isnan(frames.keypoints[:, :5, :, :2]).all()


@pytest.mark.parametrize("storage", STORAGES)
def test_an_uncalibrated_camera_info_is_skipped_and_counted_and_the_bag_fused(lab, storage, capsys):
    tmp, scenario = lab

    def fields(f, camera):
        info = camera_info_fields(camera)
        if f == 0 and camera.name == "cam0":
            info["k"] = [0.0] * 9  # a driver's first CameraInfo, before it is calibrated
        return info

    bag = tmp / f"info_{storage}"
    write_keypoints_bag(bag, scenario.rig.names, scenario.keypoints, FPS, "h36m17", storage=storage, rig=scenario.rig,
                        info_fields=fields)
    frames = read_bag_frames(bag, "h36m17", 17)
    assert frames.counts == {"rejected.camera_info": 1}
    assert _fuse("--keypoints", str(bag), "--method", "robust", "--output", str(tmp / f"{bag.name}.npz")) == 0
    assert "rejected.camera_info 1" in capsys.readouterr().out  # said in the summary line
    np.testing.assert_allclose(load_result(tmp / f"{bag.name}.npz")["joints"],
                               load_result(tmp / "toml_route.npz")["joints"], atol=1e-6, equal_nan=True)


def test_a_camera_without_a_usable_camera_info_is_left_out_and_none_at_all_is_refused(lab):
    tmp, scenario = lab

    def fisheye_cam3(f, camera):
        info = camera_info_fields(camera)
        if camera.name == "cam3":
            info["distortion_model"] = "equidistant"
            info["d"] = [0.0] * 4
        return info

    write_keypoints_bag(tmp / "fisheye", scenario.rig.names, scenario.keypoints, FPS, "h36m17", rig=scenario.rig,
                        info_fields=fisheye_cam3)
    frames = read_bag_frames(tmp / "fisheye", "h36m17", 17)
    assert frames.counts == {"rejected.camera_info": 30, "tf.no_camera_info": 30}
    assert np.isnan(frames.keypoints[3, :, :, :2]).all() and np.isfinite(frames.keypoints[:3, :, :, :2]).any()
    write_keypoints_bag(tmp / "uncalibrated", scenario.rig.names, scenario.keypoints, FPS, "h36m17", rig=scenario.rig,
                        info_fields=lambda f, camera: {**camera_info_fields(camera), "k": [0.0] * 9})
    with pytest.raises(BagError, match="no usable camera_info.*not calibrated"):
        read_bag_frames(tmp / "uncalibrated", "h36m17", 17)


def test_stamps_that_jump_back_are_refused_as_two_timelines(lab, tmp_path):
    """A simulator reset 1.5 s back in the middle of a recording: the recorder's clock goes on, the stamps go back."""
    _, scenario = lab
    logged = START_NS + np.round(np.arange(30) / FPS * 1e9).astype(np.int64)
    stamps = logged - np.where(np.arange(30) >= 15, 1_500_000_000, 0)
    write_keypoints_bag(tmp_path / "reset", scenario.rig.names, scenario.keypoints, FPS, "h36m17", stamps=stamps,
                        log_ns=logged)
    with pytest.raises(BagError, match="jumped back.*fuse each part on its own"):
        read_bag_frames(tmp_path / "reset", "h36m17", 17, rig=scenario.rig)
