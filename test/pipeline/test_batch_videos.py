"""A take of videos through ``skelsplat batch``: the detect step, then fuse, give byte for byte what ``skelsplat
detect`` and then ``skelsplat fuse`` write for it (the onnx backend on the red-dot test model of test/detection)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("cv2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detection"))  # its video and model helpers

from onnx_models import rtmo_model  # noqa: E402
from test_detect_cli import write_dot_video  # noqa: E402

from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.geometry.calibration import save_calibration  # noqa: E402
from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at  # noqa: E402
from skelsplat_ros.pipeline.take import DETECTED, FUSED  # noqa: E402

FRAMES = 6


def _rig() -> CameraRig:
    """Two cameras named like the videos (256 x 200 px), looking at the origin from 3 m."""
    cameras = []
    for k, name in enumerate(("cam01", "cam02")):
        centre = np.array([3.0 * np.cos(0.4 * k), 3.0 * np.sin(0.4 * k), 1.0])
        R, t = look_at(centre, np.zeros(3))
        cameras.append(Camera(name, np.array([[200.0, 0, 128], [0, 200.0, 100], [0, 0, 1]]), R, t, (256, 200)))
    return CameraRig(cameras)


def test_a_video_take_is_detected_then_fused_as_the_single_commands_do(tmp_path, capsys):
    study = tmp_path / "study"
    take = study / "dots"
    take.mkdir(parents=True)
    videos = [str(write_dot_video(take / f"cam0{v + 1}.avi", v, FRAMES)) for v in range(2)]
    save_calibration(_rig(), take / "calib.toml")
    model = str(rtmo_model(tmp_path / "rtmo.onnx"))
    settings = tmp_path / "study.toml"
    settings.write_text(f'[fuse]\nmethod = "triangulate"\n[detect]\nbackend = "onnx"\nmodel = "{model}"\n'
                        "max_people = 3\n")
    assert main(["batch", str(study), "--output", str(tmp_path / "out"), "--settings", str(settings),
                 "--quiet"]) == 0
    assert "1 takes: 1 done" in capsys.readouterr().out

    single = tmp_path / "single"
    assert main(["detect", *videos, "--backend", "onnx", "--model", model, "--max-people", "3", "--quiet",
                 "--output", str(single / "kp.npz")]) == 0
    assert main(["fuse", "--calibration", str(take / "calib.toml"), "--keypoints", str(single / "kp.npz"),
                 "--method", "triangulate", "--output", str(single / "fused.npz"), "--quiet"]) == 0
    assert (tmp_path / "out" / "dots" / DETECTED).read_bytes() == (single / "kp.npz").read_bytes()
    assert (tmp_path / "out" / "dots" / FUSED).read_bytes() == (single / "fused.npz").read_bytes()
