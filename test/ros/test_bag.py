"""ROS 2 recordings: bags written with rosbags (MCAP folder, sqlite3 folder, bare .mcap) read back by
``skelsplat fuse``; camera_info + TF from the bag, static and moving; the output bag read back with rosbags."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("skelsplat_ros.msg")

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import write_keypoints_bag  # noqa: E402

from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.geometry.calibration import save_calibration  # noqa: E402
from skelsplat_ros.geometry.camera import CameraRig  # noqa: E402
from skelsplat_ros.io.export import load_result, load_trc  # noqa: E402
from skelsplat_ros.io.keypoints import KeypointSet, save_keypoints_npz  # noqa: E402
from skelsplat_ros.ros.bag import BagError, read_bag_frames  # noqa: E402
from skelsplat_ros.ros.moving_rig import BASE_FRAME, _transform_msg  # noqa: E402
from skelsplat_ros.ros.conversions import ns_to_stamp  # noqa: E402
from skelsplat_ros.geometry.transforms import Transform  # noqa: E402
from skelsplat_ros.sim import make_moving_robot_scenario, make_scenario  # noqa: E402

FRAMES = 30


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """One lab scenario as NPZ + TOML, and as bags in every layout (one message of cam2 lost at frame 7)."""
    tmp = tmp_path_factory.mktemp("bags")
    scenario = make_scenario("lab", num_frames=FRAMES, seed=4)
    keypoints = scenario.keypoints.astype(np.float32).astype(np.float64)  # what a message carries (float32)
    save_calibration(scenario.rig, tmp / "calibration.toml")
    lost = {(2, 7)}
    write_keypoints_bag(tmp / "mcap", scenario.rig.names, keypoints, 30.0, "h36m17", rig=scenario.rig, skip=lost)
    write_keypoints_bag(tmp / "sqlite", scenario.rig.names, keypoints, 30.0, "h36m17", storage="sqlite3", skip=lost)
    keypoints[2, 7] = np.nan  # what the NPZ of the same recording holds for the lost message
    keypoints[2, 7, :, 2] = 0.0
    save_keypoints_npz(KeypointSet(keypoints, scenario.rig.names, fps=30.0, skeleton="h36m17"), tmp / "kp.npz")
    _fuse("--keypoints", str(tmp / "kp.npz"), "--calibration", str(tmp / "calibration.toml"), "--method", "robust",
          "--output", str(tmp / "npz_route.npz"))  # the NPZ route, every bag route is compared with
    return tmp, scenario, keypoints


def _fuse(*argv: str) -> None:
    assert main(["fuse", "--skeleton", "h36m17", "--quiet", *argv]) == 0


@pytest.mark.parametrize("layout", ["mcap", "sqlite", "mcap/mcap.mcap", "sqlite/sqlite.db3"])
def test_every_bag_layout_fuses_exactly_like_the_npz(recording, layout):
    tmp, scenario, keypoints = recording
    frames = read_bag_frames(tmp / layout, "h36m17", 17, rig=scenario.rig)
    assert frames.cameras == scenario.rig.names and not frames.moving
    np.testing.assert_array_equal(frames.keypoints, keypoints)  # the lost message is a missing view, as in the NPZ
    np.testing.assert_allclose(np.diff(frames.stamps_ns), 1e9 / 30, atol=1)
    out = tmp / f"{layout.replace('/', '_')}.npz"
    _fuse("--keypoints", str(tmp / layout), "--calibration", str(tmp / "calibration.toml"), "--method", "robust",
          "--output", str(out))
    np.testing.assert_array_equal(load_result(out)["joints"], load_result(tmp / "npz_route.npz")["joints"])


def test_camera_info_and_tf_static_in_the_bag_replace_the_toml(recording):
    tmp, scenario, _ = recording
    frames = read_bag_frames(tmp / "mcap", "h36m17", 17)
    for rig in (frames.rigs[0], frames.rigs[-1]):
        np.testing.assert_allclose(rig.R, scenario.rig.R, atol=1e-12)
        np.testing.assert_allclose(rig.t, scenario.rig.t, atol=1e-12)
        np.testing.assert_allclose(rig.K, scenario.rig.K)
    _fuse("--keypoints", str(tmp / "mcap"), "--method", "robust", "--output", str(tmp / "tf_route.npz"))
    np.testing.assert_allclose(load_result(tmp / "tf_route.npz")["joints"],
                               load_result(tmp / "npz_route.npz")["joints"], atol=1e-9)
    with pytest.raises(BagError, match="no calibration given and no"):
        read_bag_frames(tmp / "sqlite", "h36m17", 17)  # that bag has no camera_info


def test_moving_cameras_from_tf_in_the_bag_are_posed_per_frame(tmp_path):
    scenario = make_moving_robot_scenario(num_frames=FRAMES, seed=5)
    first = ns_to_stamp(0)
    static = [_transform_msg(BASE_FRAME, f"{c.name}_optical", Transform(c.R, c.t).inverse(), first)
              for c in scenario.mounted]
    static += [_transform_msg("world", f"{c.name}_optical", Transform(c.R, c.t).inverse(), first)
               for c in scenario.wall]
    write_keypoints_bag(
        tmp_path / "robot", scenario.names, scenario.keypoints, 30.0, "h36m17", rig=scenario.rig_at(0),
        static_tf=static, latency=0.1,
        dynamic_tf=lambda f, stamp: [_transform_msg("world", BASE_FRAME, scenario.base_poses[f], stamp)])
    frames = read_bag_frames(tmp_path / "robot", "h36m17", 17)
    assert frames.moving and frames.cameras == scenario.names
    for f in (0, FRAMES // 2, FRAMES - 1):
        truth = scenario.rig_at(f)
        np.testing.assert_allclose(frames.rigs[f].R, truth.R, atol=1e-9)
        np.testing.assert_allclose(frames.rigs[f].t, truth.t, atol=1e-9)
    assert main(["fuse", "--skeleton", "h36m17", "--keypoints", str(tmp_path / "robot"), "--method", "robust",
                 "--output", str(tmp_path / "x.npz")]) == 2  # offline needs one rig: refused, with the reason
    _fuse("--keypoints", str(tmp_path / "robot"), "--method", "robust", "--mode", "streaming",
          "--output", str(tmp_path / "moving.npz"))
    error = np.linalg.norm(load_result(tmp_path / "moving.npz")["joints"] - scenario.ground_truth, axis=-1)
    assert np.nanmean(error) < 0.05


def test_output_bag_holds_one_skeleton_array_per_frame_readable_by_rosbags(recording):
    from rosbags.highlevel import AnyReader

    tmp, _, _ = recording
    _fuse("--keypoints", str(tmp / "mcap"), "--method", "robust", "--output", str(tmp / "fused.mcap"))
    _fuse("--keypoints", str(tmp / "mcap"), "--method", "robust", "--output", str(tmp / "fused_ref.npz"))
    reference = load_result(tmp / "fused_ref.npz")
    assert (tmp / "fused" / "fused.mcap").is_file() and (tmp / "fused" / "metadata.yaml").is_file()
    with AnyReader([tmp / "fused"]) as reader:  # no registration: the definitions are in the bag
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {"/skeletons": "skelsplat_ros/msg/Skeleton3DArray", "/tf": "tf2_msgs/msg/TFMessage",
                          "/skeleton_markers": "visualization_msgs/msg/MarkerArray"}
        skeletons = [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()
                     if c.topic == "/skeletons"]
    assert len(skeletons) == FRAMES
    for f, (log_time, msg) in enumerate(skeletons):
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert stamp == log_time == reference["timestamps_ns"][f] and msg.header.frame_id == "world"
        joints = np.array([[p.x, p.y, p.z] for p in msg.skeletons[0].positions])
        np.testing.assert_allclose(joints, reference["joints"][f], atol=1e-12)
    assert main(["fuse", "--skeleton", "h36m17", "--keypoints", str(tmp / "mcap"), "--method", "robust",
                 "--output", str(tmp / "fused.mcap")]) == 2  # an existing bag is not overwritten


def test_bad_recordings_are_refused_with_the_reason(recording, tmp_path):
    tmp, scenario, _ = recording
    with pytest.raises(BagError, match="no topic /nowhere"):
        read_bag_frames(tmp / "mcap", "h36m17", 17, topics=["/nowhere"], rig=scenario.rig)
    with pytest.raises(BagError, match="not Keypoints2DArray|skelsplat_ros/msg/Keypoints2DArray"):
        read_bag_frames(tmp / "mcap", "h36m17", 17, topics=["/cam0/camera_info"], rig=scenario.rig)
    (tmp_path / "empty.mcap").write_bytes(b"not an mcap file")
    with pytest.raises(BagError, match="cannot open"):
        read_bag_frames(tmp_path / "empty.mcap", "h36m17", 17, rig=scenario.rig)
    # Keypoints of another skeleton: every message rejected and counted, so no frame comes out.
    with pytest.raises(BagError, match="no frame"):
        read_bag_frames(tmp / "mcap", "coco17", 17, rig=scenario.rig)


def test_millimetre_calibration_gives_metres_and_the_trc_says_so(recording, tmp_path):
    tmp, scenario, _ = recording
    in_mm = CameraRig([type(c)(c.name, c.K, c.R, c.t * 1000.0, c.size) for c in scenario.rig])
    save_calibration(in_mm, tmp_path / "mm.toml")
    _fuse("--keypoints", str(tmp / "kp.npz"), "--calibration", str(tmp_path / "mm.toml"), "--method", "robust",
          "--output", str(tmp_path / "mm.trc"))
    joints, _, _ = load_trc(tmp_path / "mm.trc")
    error = np.linalg.norm(joints - scenario.ground_truth, axis=-1)
    assert np.nanmean(error) < 0.05  # metres, as the header says
    assert (tmp_path / "mm.trc").read_text().splitlines()[2].split("\t")[4] == "m"
