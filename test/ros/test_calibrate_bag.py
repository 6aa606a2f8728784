"""``skelsplat calibrate`` reads a ROS 2 bag of keypoints, as ``fuse`` does (the node's synchronizer and checks)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from skelsplat_ros.calibration.refine import rig_change  # noqa: E402
from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.geometry.calibration import load_calibration, save_calibration  # noqa: E402
from skelsplat_ros.sim import disturb_rig  # noqa: E402
from skelsplat_ros.sim.scenes import make_multi_person_scenario  # noqa: E402

from bag_helpers import write_keypoints_bag  # noqa: E402  (test/ros is on sys.path: pytest prepend)


def test_a_bag_of_keypoints_calibrates(tmp_path, capsys):
    sc = make_multi_person_scenario("lab", 1, num_frames=300, seed=0, noise="realistic")
    rough = disturb_rig(sc.rig, [2, 3], seed=23)
    save_calibration(rough, tmp_path / "rough.toml")
    write_keypoints_bag(tmp_path / "rec", sc.rig.names, sc.person_keypoints[:, :, 0], 30.0, "h36m17")
    code = main(["calibrate", "--calibration", str(tmp_path / "rough.toml"), "--keypoints", str(tmp_path / "rec"),
                 "--skeleton", "h36m17", "--output", str(tmp_path / "refined.toml"), "--fixed", "cam0,cam1",
                 "--max-frames", "60"])
    text = capsys.readouterr().out
    assert code == 0, text
    for truth, camera in zip(sc.rig, load_calibration(tmp_path / "refined.toml")):
        rotation, translation = rig_change(truth, camera)
        assert rotation < 0.3 and translation < 0.02, (camera.name, rotation, translation)
