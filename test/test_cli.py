"""``skelsplat fuse`` end to end on a synthetic rig with known 3D joints, and its one-line errors.

Most runs call ``main(argv)`` in this process (starting Python + torch costs ~3 s a run on a small machine); two
runs go through the installed console script to check the real entry point, exit status and stderr.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skelsplat_ros.geometry.calibration import save_calibration
from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at
from skelsplat_ros.io.export import load_result, load_trc
from skelsplat_ros.io.keypoints import KeypointSet, save_keypoints_npz
from skelsplat_ros.skeleton.models import get_skeleton

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "skelsplat"
NUM_FRAMES = 4
CAMERAS = ["cam_front", "cam_left", "cam_back", "cam_right"]


def _command() -> list[str]:
    return [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "skelsplat_ros.cli"]


def _rig() -> CameraRig:
    cameras = []
    for k, name in enumerate(CAMERAS):
        angle = np.pi / 2 * k + 0.3
        centre = np.array([3.5 * np.cos(angle), 3.5 * np.sin(angle), 1.5 + 0.2 * k])
        R, t = look_at(centre, np.array([0.0, 0.0, 1.0]))
        K = np.array([[1100.0 + 30 * k, 0.0, 640.0 + k], [0.0, 1100.0 + 30 * k, 360.0 - k], [0.0, 0.0, 1.0]])
        # Two of the cameras have lens distortion: fuse must undistort before triangulating.
        dist = [[-0.12, 0.03, 0.0005, -0.0004, 0.0], [0.0] * 5, [-0.2, 0.08, 0.0, 0.001, -0.01], [0.0] * 5][k]
        cameras.append(Camera(name, K, R, t, (1280, 720), dist))
    return CameraRig(cameras)


def _ground_truth() -> np.ndarray:
    """A standing h36m17 body [F, J, 3] (metres, Z up) walking slowly along x."""
    names = get_skeleton("h36m17").joint_names
    pose = {
        "pelvis": (0.0, 0.0, 1.0), "r_hip": (0.0, -0.12, 0.97), "r_knee": (0.03, -0.13, 0.55),
        "r_ankle": (0.0, -0.13, 0.1), "l_hip": (0.0, 0.12, 0.97), "l_knee": (0.05, 0.13, 0.55),
        "l_ankle": (-0.02, 0.14, 0.1), "spine": (0.0, 0.0, 1.22), "thorax": (0.0, 0.0, 1.45),
        "neck": (0.02, 0.0, 1.55), "head": (0.04, 0.0, 1.68), "l_shoulder": (0.0, 0.19, 1.43),
        "l_elbow": (0.05, 0.24, 1.15), "l_wrist": (0.2, 0.25, 0.95), "r_shoulder": (0.0, -0.19, 1.43),
        "r_elbow": (-0.03, -0.25, 1.16), "r_wrist": (0.05, -0.3, 0.92),
    }
    base = np.array([pose[n] for n in names])
    return np.stack([base + [0.03 * f, 0.005 * f, 0.0] for f in range(NUM_FRAMES)])


pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # main sets torch's thread count


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Calibration TOML and keypoints .npz of the synthetic recording, and its ground truth."""
    folder = tmp_path_factory.mktemp("fuse")
    rig = _rig()
    truth = _ground_truth()
    uv = rig.project(truth)  # [V, F, J, 2], with distortion
    assert np.isfinite(uv).all() and all(rig[v].in_image(uv[v]).all() for v in range(len(rig)))
    keypoints = np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.95)], axis=-1)
    calibration = folder / "calib.toml"
    save_calibration(rig, calibration)
    keypoint_file = folder / "keypoints.npz"
    save_keypoints_npz(KeypointSet(keypoints, CAMERAS, fps=30.0, skeleton="h36m17"), keypoint_file)
    return {"folder": folder, "calibration": calibration, "keypoints": keypoint_file, "truth": truth,
            "raw": keypoints}


def _fuse_args(case, output, *extra) -> list[str]:
    return ["fuse", "--calibration", str(case["calibration"]), "--keypoints", str(case["keypoints"]),
            "--output", str(output), "--quiet", "--threads", "1", *extra]


def _run_main(argv, capsys) -> tuple[int, str, str]:
    from skelsplat_ros.cli import main

    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _assert_one_line_error(status: int, err: str, *needles: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("skelsplat fuse: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- successful runs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, tolerance", [("triangulate", 1e-6), ("skelsplat", 2e-3)])
def test_fuse_npz_matches_ground_truth(case, method, tolerance, capsys, tmp_path):
    output = tmp_path / f"{method}.npz"
    status, out, err = _run_main(_fuse_args(case, output, "--method", method), capsys)
    assert status == 0, err
    assert f"fused {NUM_FRAMES} frames x 17 joints from 4 views" in out
    result = load_result(output)
    assert list(result["joint_names"]) == list(get_skeleton("h36m17").joint_names)
    joints = result["joints"]
    assert joints.shape == (NUM_FRAMES, 17, 3)
    error = np.linalg.norm(joints - case["truth"], axis=-1)
    assert error.max() < tolerance, error.max()  # triangulate: exact; skelsplat: refined (~0.7 mm off), within 2 mm
    assert (result["num_views"] == 4).all()
    assert (result["confidence"] > 0.5).all()
    assert result["covariance"].shape == (NUM_FRAMES, 17, 3, 3)
    assert float(result["fps"]) == 30.0
    if method == "triangulate":
        assert np.nanmax(result["reprojection_error"]) < 1e-4


def test_fuse_streaming_mode(case, capsys, tmp_path):
    output = tmp_path / "stream.npz"
    status, _, err = _run_main(_fuse_args(case, output, "--method", "triangulate", "--mode", "streaming"), capsys)
    assert status == 0, err
    assert np.abs(load_result(output)["joints"] - case["truth"]).max() < 1e-6


def test_fuse_streaming_with_a_lag_is_the_core_fixed_lag_output(case, capsys, tmp_path):
    """--lag 0.2: what fusion.fixed_lag.fuse_fixed_lag gives (the node's API), every frame out, near the truth."""
    from skelsplat_ros.fusion import preset_config
    from skelsplat_ros.fusion.fixed_lag import fuse_fixed_lag
    from skelsplat_ros.geometry.calibration import load_calibration

    output = tmp_path / "lag.npz"
    status, out, err = _run_main(_fuse_args(case, output, "--mode", "streaming", "--lag", "0.2"), capsys)
    assert status == 0, err
    joints = load_result(output)["joints"]
    expected = fuse_fixed_lag(load_calibration(case["calibration"]), get_skeleton("h36m17"), case["raw"],
                              preset_config("default", mode="streaming"), 30.0, lag=0.2)
    np.testing.assert_allclose(joints, expected.joints, atol=1e-9)
    late = slice(3, None)  # once the bone lengths are known (fusion/output.py, rule 4)
    assert np.isfinite(joints[late]).all()
    assert np.linalg.norm(joints[late] - case["truth"][late], axis=-1).max() < 0.005


def test_fuse_streaming_depth_filter_is_the_core_streaming_output(case, capsys, tmp_path):
    """--mode streaming is fusion.streaming.fuse_streaming with the depth filter (the node's API; the default);
    with --no-depth-filter each frame's fit alone."""
    from dataclasses import replace

    from skelsplat_ros.fusion import fuse_streaming, preset_config
    from skelsplat_ros.fusion.config import DEPTH_FILTER
    from skelsplat_ros.geometry.calibration import load_calibration

    config = preset_config("default", mode="streaming")
    for flags, depth_filter in (((), DEPTH_FILTER), (("--no-depth-filter",), 0.0)):
        output = tmp_path / f"stream{len(flags)}.npz"
        status, _, err = _run_main(_fuse_args(case, output, "--mode", "streaming", *flags), capsys)
        assert status == 0, err
        expected = fuse_streaming(load_calibration(case["calibration"]), get_skeleton("h36m17"), case["raw"],
                                  replace(config, depth_filter=depth_filter), 30.0)
        np.testing.assert_allclose(load_result(output)["joints"], expected.joints, atol=1e-9)
    assert config.depth_filter == DEPTH_FILTER
    # The flag's reach, on the settings it makes (this take's four views may leave no depth to filter).
    from skelsplat_ros.pipeline.settings import FuseSettings

    assert FuseSettings(mode="streaming", depth_filter=False).fusion_config().depth_filter == 0.0
    assert FuseSettings(mode="streaming").fusion_config().depth_filter == DEPTH_FILTER


def test_fuse_streaming_single_view_joints(case, capsys, tmp_path):
    """--single-view-joints: a wrist only one camera sees comes out, near the truth, with confidence 0."""
    keypoints = case["raw"].copy()
    keypoints[1:, 5:, 13] = np.nan  # from frame 5 on, only the first camera sees the left wrist
    keypoints[1:, 5:, 13, 2] = 0.0
    keypoint_file = tmp_path / "one_view.npz"
    save_keypoints_npz(KeypointSet(keypoints, CAMERAS, fps=30.0, skeleton="h36m17"), keypoint_file)
    outputs = {}
    for flags in ((), ("--single-view-joints",)):
        output = tmp_path / f"stream{len(flags)}.npz"
        args = ["fuse", "--calibration", str(case["calibration"]), "--keypoints", str(keypoint_file), "--output",
                str(output), "--quiet", "--mode", "streaming", *flags]
        status, _, err = _run_main(args, capsys)
        assert status == 0, err
        outputs[flags] = load_result(output)
    plain, single = outputs[()], outputs[("--single-view-joints",)]
    late = slice(8, None)  # past the frames the prediction holds it
    assert not np.isfinite(plain["joints"][late, 13]).all(-1).any()
    assert np.isfinite(single["joints"][late, 13]).all()
    forearm = np.linalg.norm(case["truth"][late, 13] - case["truth"][late, 12], axis=-1)
    assert (np.linalg.norm(single["joints"][late, 13] - case["truth"][late, 13], axis=-1) < forearm).all()
    assert (single["confidence"][late, 13] == 0).all()


def test_fuse_csv_output(case, capsys, tmp_path):
    output = tmp_path / "out.csv"
    status, _, err = _run_main(_fuse_args(case, output, "--method", "triangulate"), capsys)
    assert status == 0, err
    with open(output, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    names = get_skeleton("h36m17").joint_names
    assert rows[0][:6] == ["frame", "time", "pelvis_x", "pelvis_y", "pelvis_z", "pelvis_conf"]
    assert len(rows) == 1 + NUM_FRAMES
    for f, row in enumerate(rows[1:]):
        assert int(row[0]) == f and float(row[1]) == pytest.approx(f / 30.0)
        values = np.array(row[2:], dtype=float).reshape(len(names), 4)
        np.testing.assert_allclose(values[:, :3], case["truth"][f], atol=1e-6)


def test_fuse_trc_output(case, capsys, tmp_path):
    output = tmp_path / "out.trc"
    status, _, err = _run_main(_fuse_args(case, output, "--method", "triangulate"), capsys)
    assert status == 0, err
    joints, names, rate = load_trc(output)  # converted back from OpenSim's Y-up frame
    assert names == list(get_skeleton("h36m17").joint_names) and rate == 30.0
    np.testing.assert_allclose(joints, case["truth"], atol=1e-6)
    # The file itself is Y-up: its Y column is the world Z (height), pelvis at 1 m.
    first = output.read_text(encoding="utf-8").splitlines()[5].split("\t")
    assert float(first[3]) == pytest.approx(case["truth"][0, 0, 2], abs=1e-6)


def test_fuse_console_script_end_to_end(case, tmp_path):
    output = tmp_path / "script.npz"
    run = subprocess.run(
        _command() + _fuse_args(case, output, "--method", "triangulate"),
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    assert np.abs(load_result(output)["joints"] - case["truth"]).max() < 1e-6


# --- errors -----------------------------------------------------------------------------------------------------


def test_missing_calibration_file(case, capsys, tmp_path):
    argv = _fuse_args(case, tmp_path / "out.npz")
    argv[argv.index("--calibration") + 1] = str(tmp_path / "nope.toml")
    status, _, err = _run_main(argv, capsys)
    _assert_one_line_error(status, err, "nope.toml")
    assert not (tmp_path / "out.npz").exists()


def test_camera_name_mismatch(case, capsys, tmp_path):
    renamed = tmp_path / "renamed.npz"
    save_keypoints_npz(KeypointSet(case["raw"], ["cam_front", "cam_left", "cam_back", "cam_top"], fps=30.0), renamed)
    argv = _fuse_args(case, tmp_path / "out.npz", "--skeleton", "h36m17")
    argv[argv.index("--keypoints") + 1] = str(renamed)
    status, _, err = _run_main(argv, capsys)
    _assert_one_line_error(status, err, "cam_top")


def test_unknown_skeleton(case, capsys, tmp_path):
    status, _, err = _run_main(_fuse_args(case, tmp_path / "out.npz", "--skeleton", "h36m18"), capsys)
    _assert_one_line_error(status, err, "h36m18", "h36m17")


def test_wrong_joint_count(case, capsys, tmp_path):
    status, _, err = _run_main(_fuse_args(case, tmp_path / "out.npz", "--skeleton", "body25b"), capsys)
    _assert_one_line_error(status, err, "17", "25")


def test_wrong_joint_count_without_stored_skeleton(case, capsys, tmp_path):
    # Same check when the keypoints name no skeleton: the count is compared in the CLI itself.
    bare = tmp_path / "bare.npz"
    save_keypoints_npz(KeypointSet(case["raw"][:, :, :16], CAMERAS, fps=30.0), bare)
    argv = _fuse_args(case, tmp_path / "out.npz", "--skeleton", "h36m17")
    argv[argv.index("--keypoints") + 1] = str(bare)
    status, _, err = _run_main(argv, capsys)
    _assert_one_line_error(status, err, "16", "17")


def test_unsupported_output_suffix(case, capsys, tmp_path):
    status, _, err = _run_main(_fuse_args(case, tmp_path / "out.json"), capsys)
    _assert_one_line_error(status, err, ".json")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("shape", [(4, 0, 17, 3), (4, 0, 2, 17, 3)], ids=["one person", "several people"])
def test_keypoints_without_frames(case, capsys, tmp_path, shape):
    empty = tmp_path / "empty.npz"
    save_keypoints_npz(KeypointSet(np.zeros(shape), CAMERAS, fps=30.0, skeleton="h36m17"), empty)
    for output in ("out.npz", "out.csv"):
        argv = _fuse_args(case, tmp_path / output)
        argv[argv.index("--keypoints") + 1] = str(empty)
        status, _, err = _run_main(argv, capsys)
        _assert_one_line_error(status, err, "no frames")
        assert not (tmp_path / output).exists()


def test_trc_without_frame_rate(case, capsys, tmp_path):
    no_fps = tmp_path / "nofps.npz"
    save_keypoints_npz(KeypointSet(case["raw"], CAMERAS, skeleton="h36m17"), no_fps)
    argv = _fuse_args(case, tmp_path / "out.trc")
    argv[argv.index("--keypoints") + 1] = str(no_fps)
    status, _, err = _run_main(argv, capsys)
    _assert_one_line_error(status, err, "fps")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only behaviour")
def test_gsplat_backend_on_cpu(case, capsys, tmp_path):
    status, _, err = _run_main(_fuse_args(case, tmp_path / "out.npz", "--optimizer", "adam", "--backend", "gsplat"), capsys)
    _assert_one_line_error(status, err, "CUDA")
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only behaviour")
def test_device_cuda_without_cuda_fails_fast_naming_cuda(case, capsys, tmp_path):
    status, _, err = _run_main(_fuse_args(case, tmp_path / "out.npz", "--optimizer", "adam", "--device", "cuda"), capsys)
    _assert_one_line_error(status, err, "device cuda: CUDA is not available")
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize(
    "flags, needle",
    [
        (("--optimizer", "gauss_newton", "--backend", "raster"), "gauss_newton evaluates the analytic objective"),
        (("--backend", "gsplat", "--device", "cpu"), "gsplat renders on CUDA only"),
        (("--mode", "streaming", "--backend", "raster"), "streaming refinement is Gauss-Newton"),
        (("--preset", "paper", "--optimizer", "gauss_newton"), "paper preset"),
        (("--lag", "0.2"), "look-ahead of the streaming mode"),
        (("--mode", "streaming", "--lag", "-1"), "lag must be a finite number"),
        (("--mode", "streaming", "--lag", "0.2", "--method", "triangulate"), "needs the fixed-lag smoother"),
    ],
)
def test_impossible_combinations_fail_before_reading_anything(case, capsys, tmp_path, flags, needle):
    argv = _fuse_args(case, tmp_path / "out.npz", *flags)
    argv[argv.index("--keypoints") + 1] = str(tmp_path / "not_read.npz")  # the configuration fails first
    status, _, err = _run_main(argv, capsys)
    _assert_one_line_error(status, err, needle)


def test_optimizer_backend_device_are_independent(case, capsys, tmp_path):
    # Adam through the raster renderer while streaming (the default preset streams with Gauss-Newton).
    output = tmp_path / "adam.npz"
    status, out, err = _run_main(_fuse_args(case, output, "--mode", "streaming", "--optimizer", "adam",
                                            "--backend", "raster", "--device", "cpu"), capsys)
    assert status == 0, err
    assert "adam/raster x15 on cpu" in out
    # Output once the bone lengths are known (fusion/output.py, rule 4): from the fourth frame on.
    joints = load_result(output)["joints"]
    assert np.isnan(joints[:3]).all()
    assert np.linalg.norm(joints[3:] - case["truth"][3:], axis=-1).max() < 5e-3
    # Gauss-Newton offline, and the preset's mix, say what they ran.
    status, out, err = _run_main(_fuse_args(case, tmp_path / "gn.npz", "--optimizer", "gauss_newton"), capsys)
    assert status == 0 and "gauss_newton x3 with 2 smoothing rounds)" in out, err
    status, out, err = _run_main(_fuse_args(case, tmp_path / "adam.npz", "--optimizer", "adam", "--device", "cpu"),
                                 capsys)
    assert status == 0 and "adam/analytic x30 on cpu)" in out, err


def test_error_through_the_console_script(case, tmp_path):
    argv = _fuse_args(case, tmp_path / "out.npz")
    argv[argv.index("--calibration") + 1] = str(tmp_path / "missing.toml")
    run = subprocess.run(_command() + argv, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skelsplat fuse: error:") and "missing.toml" in lines[0]


def test_usage_errors_exit_2(capsys):
    from skelsplat_ros.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fuse", "--calibration", "x.toml"])  # missing required options: argparse's usage error
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err
