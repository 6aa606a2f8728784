"""Takes with videos through ``skelsplat batch``: the detect step, then fuse, then render, give byte for byte what
``skelsplat detect``, ``skelsplat fuse`` and ``skelsplat render`` write for them (the onnx backend on the red-dot test
model of test/detection)."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
cv2 = pytest.importorskip("cv2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detection"))  # its video and model helpers

from onnx_models import rtmo_model  # noqa: E402
from test_detect_cli import write_dot_video  # noqa: E402

from skelsplat_ros.bench.batch import write_study  # noqa: E402
from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.geometry.calibration import load_calibration, save_calibration  # noqa: E402
from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at  # noqa: E402
from skelsplat_ros.pipeline.runner import SUMMARY  # noqa: E402
from skelsplat_ros.pipeline.take import DETECTED, FUSED, RENDERED  # noqa: E402
from skelsplat_ros.skeleton.models import track_rgb  # noqa: E402

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


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / SUMMARY, newline="", encoding="utf-8") as file:
        return {row["take"]: row for row in csv.DictReader(file)}


def _blank_video(path: Path, size: tuple[int, int], frames: int) -> Path:
    """A grey video of ``frames`` frames of ``size`` (width, height) px."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for _ in range(frames):
        writer.write(np.full((size[1], size[0], 3), 90, np.uint8))
    writer.release()
    return path


def test_the_render_step_draws_what_skelsplat_render_draws_and_resumes(tmp_path, capsys):
    """[render] draws each take's result over its videos: a take of generated keypoints beside its cameras' videos
    (fuse, render), a take of videos (detect, fuse, render), the keypoints without videos (done, not rendered) and a
    take whose video names a camera the calibration lacks (failed at the render step, its fused result kept).
    Rendered files are byte for byte what ``skelsplat render`` writes for the single commands' result, and they are
    outputs of the take for resumption."""
    study = tmp_path / "study"
    write_study(study, takes=1, frames=FRAMES)  # take_000: 4-camera lab keypoints, the study's calib.toml
    walk = (study / "take_000").rename(study / "walk")
    rig = load_calibration(study / "calib.toml")
    walk_videos = [_blank_video(walk / f"{camera.name}.avi", camera.size, FRAMES) for camera in rig.cameras]
    (study / "no_videos").mkdir()
    shutil.copy(walk / "keypoints.npz", study / "no_videos")
    (study / "bad_camera").mkdir()
    for file in (walk / "keypoints.npz", walk_videos[0]):
        shutil.copy(file, study / "bad_camera")
    shutil.copy(walk_videos[1], study / "bad_camera" / "cam9.avi")  # no camera cam9 in the calibration
    dots = study / "dots"
    dots.mkdir()
    dot_videos = [write_dot_video(dots / f"cam0{v + 1}.avi", v, FRAMES) for v in range(2)]
    save_calibration(_rig(), dots / "calib.toml")
    model = str(rtmo_model(tmp_path / "rtmo.onnx"))
    settings = tmp_path / "study.toml"
    settings.write_text(f'[detect]\nbackend = "onnx"\nmodel = "{model}"\nmax_people = 3\n'
                        "[render]\nheight = 120\nsheet-frames = 2\n")
    out = tmp_path / "out"
    batch = ["batch", str(study), "--output", str(out), "--settings", str(settings), "--workers", "2", "--quiet"]
    assert main(batch) == 1
    rows = _summary(out)
    assert {name: row["status"] for name, row in rows.items()} == {
        "bad_camera": "failed", "dots": "done", "no_videos": "done", "walk": "done"}

    single = tmp_path / "single"
    render = ["render", "--height", "120", "--sheet-frames", "2", "--quiet"]
    assert main(["fuse", "--calibration", str(study / "calib.toml"), "--keypoints", str(walk / "keypoints.npz"),
                 "--output", str(single / "walk.npz"), "--quiet"]) == 0
    assert main([*render, str(single / "walk.npz"), "--videos", *map(str, walk_videos), "--calibration",
                 str(study / "calib.toml"), "--output", str(single / "walk" / "render.mp4")]) == 0
    assert main(["detect", *map(str, dot_videos), "--backend", "onnx", "--model", model, "--max-people", "3",
                 "--quiet", "--output", str(single / "dots.npz")]) == 0
    assert main(["fuse", "--calibration", str(dots / "calib.toml"), "--keypoints", str(single / "dots.npz"),
                 "--output", str(single / "dots_fused.npz"), "--quiet"]) == 0
    assert main([*render, str(single / "dots_fused.npz"), "--videos", *map(str, dot_videos), "--calibration",
                 str(dots / "calib.toml"), "--output", str(single / "dots" / "render.mp4")]) == 0
    for take in ("walk", "dots"):
        for name in (RENDERED, "render.png"):
            assert (out / take / name).read_bytes() == (single / take / name).read_bytes(), f"{take}/{name} differs"
    sheet = cv2.imread(str(out / "walk" / "render.png"))
    colour = np.array([255 * c for c in track_rgb(0)][::-1])  # BGR
    assert (np.abs(sheet.astype(int) - colour).max(axis=-1) < 40).sum() > 100, "no skeleton drawn"
    assert (out / "dots" / DETECTED).read_bytes() == (single / "dots.npz").read_bytes()
    for take in ("walk", "no_videos", "bad_camera"):
        assert (out / take / FUSED).read_bytes() == (single / "walk.npz").read_bytes(), take
    assert rows["no_videos"]["reason"] == "not rendered: the take has no videos"
    assert not (out / "no_videos" / RENDERED).exists()
    assert rows["bad_camera"]["reason"].startswith("render: KeypointsError: no calibration for camera(s) ['cam9']")
    assert rows["bad_camera"]["reason"].endswith("(fused.npz kept)") and not (out / "bad_camera" / RENDERED).exists()

    capsys.readouterr()
    assert main(batch) == 1  # nothing changed: nothing runs, the failure is remembered
    assert "4 takes: 0 done, 3 up to date, 1 failed" in capsys.readouterr().out
    (out / "walk" / "render.png").unlink()  # an output missing: that take runs again
    assert main(batch) == 1
    assert "4 takes: 1 done, 2 up to date, 1 failed" in capsys.readouterr().out
    assert (out / "walk" / "render.png").read_bytes() == (single / "walk" / "render.png").read_bytes()
    settings.write_text(settings.read_text().replace("height = 120", "height = 96"))  # other render settings
    assert main(batch) == 1
    assert "4 takes: 3 done, 0 up to date, 1 failed" in capsys.readouterr().out
    assert cv2.imread(str(out / "walk" / "render.png")).shape[0] == 2 * 96
