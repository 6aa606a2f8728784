"""Calibration I/O: Pose2Sim/Anipose TOML and Qualisys .qca.txt conversion, on real and hand-written files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skelsplat_ros.geometry.calibration import (
    CalibrationError,
    load_calibration,
    load_qualisys_qca,
    natural_sort_key,
    save_calibration,
)
from skelsplat_ros.geometry.camera import (
    Camera,
    CameraRig,
    look_at,
    rodrigues_to_matrix,
)
from skelsplat_ros.io.keypoints import align_to_rig, load_keypoints

DATA = Path(__file__).resolve().parents[1] / "data"
QCA = DATA / "pose2sim_demo_Calib.qca.txt"
DEMO = Path(__file__).resolve().parents[2] / "data" / "pose2sim_demo"


def _rig(names: list[str]) -> CameraRig:
    rng = np.random.default_rng(3)
    cameras = []
    for k, name in enumerate(names):
        angle = 2 * np.pi * k / len(names)
        R, t = look_at(np.array([3 * np.cos(angle), 3 * np.sin(angle), 1.5]), np.array([0.0, 0.0, 1.0]))
        K = np.array(
            [[1000 + rng.uniform(-50, 50), 0.0, 640 + rng.uniform(-5, 5)], [0.0, 1001.3, 360.2], [0.0, 0.0, 1.0]]
        )
        dist = rng.normal(0, 0.01, 5) if k % 2 else np.r_[rng.normal(0, 0.01, 4), 0.0]
        cameras.append(Camera(name, K, R, t, (1280, 720), dist))
    return CameraRig(cameras)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


CAMERA_TABLE = """
[{section}]
name = "{name}"
size = [640, 480]
matrix = [[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]
distortions = [0.0, 0.0, 0.0, 0.0]
rotation = [0.0, 0.0, 0.0]
translation = [0.0, 0.0, {z}]
"""


# --- TOML ---------------------------------------------------------------------------------------------------------


def test_toml_round_trip_is_exact(tmp_path):
    rig = _rig(["cam_a", "left cam", 'quo"te', "cam_3"])
    save_calibration(rig, tmp_path / "calib.toml")
    loaded = load_calibration(tmp_path / "calib.toml")
    assert loaded.names == rig.names  # rig order kept (tables cam_01.. in order)
    for a, b in zip(rig, loaded):
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_array_equal(a.t, b.t)
        np.testing.assert_array_equal(a.dist, b.dist)
        np.testing.assert_allclose(a.R, b.R, atol=1e-14)  # through the Rodrigues vector
        assert a.size == b.size
    # saving the loaded rig again changes nothing beyond float rounding of the rotation
    save_calibration(loaded, tmp_path / "again.toml")
    again = load_calibration(tmp_path / "again.toml")
    np.testing.assert_allclose(again.projection_matrices, rig.projection_matrices, rtol=1e-13, atol=1e-10)


def test_saved_file_is_pose2sim_layout(tmp_path):
    save_calibration(_rig(["a", "b"]), tmp_path / "c.toml", metadata={"source": "unit test"})
    import tomllib

    data = tomllib.loads((tmp_path / "c.toml").read_text())
    assert list(data) == ["cam_01", "cam_02", "metadata"]
    assert set(data["cam_01"]) == {"name", "size", "matrix", "distortions", "rotation", "translation", "fisheye"}
    assert data["cam_01"]["fisheye"] is False and len(data["cam_01"]["distortions"]) == 4
    assert len(data["cam_02"]["distortions"]) == 5  # k3 != 0 kept
    assert data["metadata"] == {"adjusted": False, "error": 0.0, "source": "unit test"}


def test_cam_10_loads_after_cam_2(tmp_path):
    text = "".join(
        CAMERA_TABLE.format(section=f"cam_{i}", name=f"cam_{i}", z=float(i + 1)) for i in (10, 1, 2, 0, 11, 3)
    )
    rig = load_calibration(_write(tmp_path / "c.toml", text))
    assert rig.names == ["cam_0", "cam_1", "cam_2", "cam_3", "cam_10", "cam_11"]
    assert sorted(["cam_10", "cam_2", "cam_1"], key=natural_sort_key) == ["cam_1", "cam_2", "cam_10"]


def test_hand_written_anipose_file_loads():
    rig = load_calibration(DATA / "anipose_calibration.toml")
    assert rig.names == ["A", "B", "C"]  # sections cam_0, cam_2, cam_10; [metadata] skipped
    a, b, c = rig
    assert a.size == (1920, 1080) and c.size == (1280, 720)
    np.testing.assert_array_equal(a.K, [[1450.0, 0.0, 959.5], [0.0, 1452.0, 539.5], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(a.dist, [-0.12, 0.03, 0.001, -0.0005, 0.0])
    np.testing.assert_array_equal(b.dist, [-0.1, 0.02, 0.0, 0.0, -0.001])
    np.testing.assert_allclose(a.R, rodrigues_to_matrix(np.array([1.2, 0.3, -0.4])))
    np.testing.assert_array_equal(c.t, [-0.3, 1.1, 4.2])


def test_section_name_is_the_fallback_name_and_special_sections_are_skipped(tmp_path):
    table = CAMERA_TABLE.format(section="front", name="x", z=2.0).replace('name = "x"\n', "")
    text = (
        table + "\n[capture_volume]\ncube_size = 1.0\n[charuco]\nsquare_side_length = 0.02\n[checkerboard]\nrows = 4\n"
    )
    rig = load_calibration(_write(tmp_path / "c.toml", text))
    assert rig.names == ["front"]


def test_millimetre_scale(tmp_path):
    rig = load_calibration(
        _write(tmp_path / "c.toml", CAMERA_TABLE.format(section="c", name="c", z=2500.0)), scale=1e-3
    )
    np.testing.assert_allclose(rig[0].t, [0.0, 0.0, 2.5])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("size = [640, 480]\n", ""), "missing key 'size'"),
        (
            lambda t: t.replace(
                "[[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]]", "[[500.0, 0.0], [0.0, 500.0]]"
            ),
            "'matrix' must have shape [3, 3]",
        ),
        (
            lambda t: t.replace(
                "distortions = [0.0, 0.0, 0.0, 0.0]", "distortions = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]"
            ),
            "'distortions' must be a list of",
        ),
        (lambda t: t.replace("rotation = [0.0, 0.0, 0.0]", "rotation = [0.0, 0.0]"), "'rotation' must have shape [3]"),
        (
            lambda t: t.replace("translation = [0.0, 0.0, 2.0]", 'translation = ["a", 0.0, 2.0]'),
            "'translation' must be numbers",
        ),
        (lambda t: t + "fisheye = true\n", "fisheye cameras are not supported"),
        (lambda t: t.replace("size = [640, 480]", "size = [640.5, 480]"), "'size' must be two positive whole numbers"),
        (lambda t: t.replace("[[500.0,", "[[-500.0,"), "positive focal lengths"),
    ],
)
def test_bad_tables_name_file_and_section(tmp_path, edit, message):
    path = _write(tmp_path / "bad.toml", edit(CAMERA_TABLE.format(section="cam_7", name="seven", z=2.0)))
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    text = str(info.value)
    assert message in text and str(path) in text and "[cam_7]" in text and "\n" not in text


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="calibration file not found"):
        load_calibration(tmp_path / "nope.toml")
    with pytest.raises(CalibrationError, match="not valid TOML"):
        load_calibration(_write(tmp_path / "broken.toml", "[cam_1\nname = 3"))
    with pytest.raises(CalibrationError, match="no camera table"):
        load_calibration(_write(tmp_path / "meta.toml", "[metadata]\nadjusted = false\n"))
    duplicate = CAMERA_TABLE.format(section="a", name="same", z=1.0) + CAMERA_TABLE.format(
        section="b", name="same", z=2.0
    )
    with pytest.raises(CalibrationError, match="duplicate camera names"):
        load_calibration(_write(tmp_path / "dup.toml", duplicate))
    bad_rotation = CAMERA_TABLE.format(section="a", name="a", z=1.0).replace(
        "rotation = [0.0, 0.0, 0.0]", "rotation = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]"
    )
    with pytest.raises(CalibrationError, match=r"\[a\].*not a proper rotation"):
        load_calibration(_write(tmp_path / "rot.toml", bad_rotation))


# --- Qualisys -----------------------------------------------------------------------------------------------------


def test_qca_conversion_of_the_real_pose2sim_demo_file():
    rig = load_qualisys_qca(QCA)
    assert rig.names == ["cam_01", "cam_02", "cam_03", "cam_04"]
    cam = rig[0]
    assert cam.size == (1088, 1920)  # portrait video, fov_video right/bottom + 1
    np.testing.assert_allclose(
        cam.K,
        [[107599.671875 / 64, 0.0, 34110.316406 / 64], [0.0, 107588.828125 / 64, 60680.792969 / 64], [0.0, 0.0, 1.0]],
    )
    np.testing.assert_allclose(cam.dist, np.array([-0.046183, 0.139983, 0.000608, 0.00069, 0.0]) / 64)
    # the camera centre is the transform's x, y, z in mm
    np.testing.assert_allclose(cam.centre, [1.4602323709212087, -1.9091590482454608, 1.8965058524092062], atol=1e-12)
    # camera-to-world columns r11 r12 r13 (camera x axis in the world): the image x axis is the same direction,
    # image y and the optical axis are flipped (Qualisys cameras look along -z with y up)
    np.testing.assert_allclose(cam.R[0], [0.5536380477336265, 0.8046719867383512, 0.2144479094331626], atol=1e-12)
    np.testing.assert_allclose(
        cam.R[2], -np.array([0.7104002579937896, -0.5907342212870501, 0.3825762057979294]), atol=1e-12
    )
    for camera in rig:  # every camera sees the middle of the capture volume (Z-up world, person ~1 m up)
        uv = camera.project(np.array([0.0, 0.0, 1.0]))
        assert camera.in_image(uv), (camera.name, uv)
        assert 2.0 < np.linalg.norm(camera.centre) < 6.0


def test_qca_binning_and_toml_round_trip(tmp_path):
    full, binned = load_qualisys_qca(QCA), load_qualisys_qca(QCA, binning_factor=2)
    assert binned[0].size == (544, 960)
    np.testing.assert_allclose(binned[0].K[:2], full[0].K[:2] / 2)
    np.testing.assert_allclose(binned[0].R, full[0].R)
    save_calibration(full, tmp_path / "calib.toml")
    again = load_calibration(tmp_path / "calib.toml")
    np.testing.assert_allclose(again.projection_matrices, full.projection_matrices, rtol=1e-12, atol=1e-9)


def _dlt(projections: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Plain DLT of one point: projections [V, 3, 4], pixels [V, 2] -> [3]."""
    rows = np.concatenate(
        [uv[:, :1] * projections[:, 2] - projections[:, 0], uv[:, 1:] * projections[:, 2] - projections[:, 1]]
    )
    homogeneous = np.linalg.svd(rows)[2][-1]
    return homogeneous[:3] / homogeneous[3]


def _median_reprojection(rig: CameraRig, keypoints: np.ndarray, threshold: float) -> float:
    errors = []
    projections = rig.projection_matrices
    for frame in range(keypoints.shape[1]):
        for joint in range(keypoints.shape[2]):
            kp = keypoints[:, frame, joint]
            used = (kp[:, 2] > threshold) & np.isfinite(kp[:, 0])
            if used.sum() < 2:
                continue
            point = _dlt(projections[used], kp[used, :2])
            uv = np.stack([c.project(point) for c, u in zip(rig, used) if u])
            errors.extend(np.linalg.norm(uv - kp[used, :2], axis=1))
    return float(np.median(np.nan_to_num(errors, nan=np.inf)))  # behind a camera counts as infinitely wrong


def test_qca_calibration_triangulates_the_real_detections():
    """Plain DLT of real OpenPose detections (frame 36, 4 cameras) reprojects to a few pixels with this rig."""
    keypoints = load_keypoints(DATA / "pose2sim_demo_json", skeleton="body25b")
    _, rig = align_to_rig(keypoints, load_qualisys_qca(QCA))
    assert rig.names == ["cam_01", "cam_02", "cam_03", "cam_04"]
    median = _median_reprojection(rig, keypoints.keypoints[:, :1], threshold=0.3)
    assert median < 20.0, median
    # a wrong convention (the transform's rotation read row-wise, same camera centres) breaks it
    flip = np.diag([1.0, -1.0, -1.0])
    wrong_rotations = [flip @ c.R.T @ flip for c in rig]
    wrong = CameraRig([Camera(c.name, c.K, R, -R @ c.centre, c.size) for c, R in zip(rig, wrong_rotations)])
    assert _median_reprojection(wrong, keypoints.keypoints[:, :1], threshold=0.3) > 3 * median


@pytest.mark.skipif(not (DEMO / "calib.toml").exists(), reason="run scripts/fetch_pose2sim_demo.py first")
def test_full_demo_plain_dlt_matches_the_reference():
    """The whole fetched demo: median plain-DLT reprojection ~12.5 px at Pose2Sim's 0.3 confidence threshold."""
    rig = load_calibration(DEMO / "calib.toml")
    keypoints = load_keypoints(DEMO / "keypoints.npz")
    _, rig = align_to_rig(keypoints, rig)
    assert rig.names == keypoints.cameras == ["cam01", "cam02", "cam03", "cam04"]
    assert keypoints.keypoints.shape == (4, 100, 25, 3) and keypoints.fps == 60.0
    assert abs(_median_reprojection(rig, keypoints.keypoints, threshold=0.3) - 12.5) < 1.0


def test_qca_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_qualisys_qca(tmp_path / "missing.qca.txt")
    with pytest.raises(CalibrationError, match="not a Qualisys"):
        load_qualisys_qca(_write(tmp_path / "x.qca.txt", "this is not xml <"))
    with pytest.raises(CalibrationError, match="no <cameras><camera>"):
        load_qualisys_qca(_write(tmp_path / "y.qca.txt", "<calibration><cameras/></calibration>"))
    text = QCA.read_text()
    with pytest.raises(CalibrationError, match="cam_01.*no 'focalLengthU'"):
        load_qualisys_qca(_write(tmp_path / "z.qca.txt", text.replace('focalLengthU="107599.671875"', "", 1)))
    with pytest.raises(CalibrationError, match="none of the 4 cameras is a video camera"):
        load_qualisys_qca(_write(tmp_path / "m.qca.txt", text.replace('model="none"', 'model="Miqus M3"')))
    with pytest.raises(CalibrationError, match="binning_factor must be positive"):
        load_qualisys_qca(QCA, binning_factor=0)
