"""Result export: npz, TRC (OpenSim/Pose2Sim, Y-up) and CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from skelsplat_ros.io.export import (
    ExportError,
    check_result_path,
    load_result,
    load_trc,
    save_result,
)

NAMES = ["nose", "l_hip", "r_hip", "l_ankle"]


def _result(frames: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    joints = rng.normal(0, 1, (frames, len(NAMES), 3))
    joints[2, 1] = np.nan  # one joint not fused
    joints[4] = np.nan  # one whole frame lost
    confidence = rng.uniform(0, 1, (frames, len(NAMES)))
    a = rng.normal(0, 0.01, (frames, len(NAMES), 3, 3))
    covariance = a @ a.transpose(0, 1, 3, 2)
    return joints, confidence, covariance


def test_npz_round_trip(tmp_path):
    joints, confidence, covariance = _result()
    views = np.full(joints.shape[:2], 3)
    error = np.full(joints.shape[:2], 2.5)
    save_result(
        tmp_path / "r.npz",
        joints,
        confidence,
        covariance,
        NAMES,
        fps=60.0,
        extra={"camera_names": np.array(["a", "b", "c"]), "skeleton": "custom"},
        num_views=views,
        reprojection_error=error,
    )
    data = load_result(tmp_path / "r.npz")
    np.testing.assert_array_equal(data["joints"], joints)  # NaN stays NaN
    np.testing.assert_array_equal(data["confidence"], confidence)
    np.testing.assert_array_equal(data["covariance"], covariance)
    np.testing.assert_array_equal(data["num_views"], views)
    np.testing.assert_array_equal(data["reprojection_error"], error)
    assert list(data["joint_names"]) == NAMES and float(data["fps"]) == 60.0
    assert list(data["camera_names"]) == ["a", "b", "c"] and str(data["skeleton"]) == "custom"


def test_npz_optional_fields_and_fps_from_extra(tmp_path):
    joints, confidence, _ = _result()
    save_result(tmp_path / "r.npz", joints, confidence, None, NAMES, extra={"fps": 25})
    data = load_result(tmp_path / "r.npz")
    assert "covariance" not in data and "num_views" not in data and float(data["fps"]) == 25.0


def test_trc_written_then_read_back_equal(tmp_path):
    joints, confidence, covariance = _result()
    path = save_result(tmp_path / "out.trc", joints, confidence, covariance, NAMES, fps=60.0)
    back, names, rate = load_trc(path)
    assert names == NAMES and rate == 60.0
    np.testing.assert_array_equal(back, joints)  # exact, NaN included

    lines = path.read_text().split("\n")
    assert lines[0] == "PathFileType\t4\t(X/Y/Z)\tout.trc"
    assert lines[1].split("\t") == [
        "DataRate",
        "CameraRate",
        "NumFrames",
        "NumMarkers",
        "Units",
        "OrigDataRate",
        "OrigDataStartFrame",
        "OrigNumFrames",
    ]
    assert lines[2].split("\t") == ["60.0", "60.0", "6", "4", "m", "60.0", "1", "6"]
    assert lines[3].split("\t") == [
        "Frame#",
        "Time",
        "nose",
        "",
        "",
        "l_hip",
        "",
        "",
        "r_hip",
        "",
        "",
        "l_ankle",
        "",
        "",
    ]
    assert lines[4].split("\t") == ["", "", "X1", "Y1", "Z1", "X2", "Y2", "Z2", "X3", "Y3", "Z3", "X4", "Y4", "Z4"]
    row = lines[5].split("\t")
    assert row[:2] == ["1", "0.0"] and len(row) == 2 + 3 * len(NAMES)
    # Y-up: TRC (X, Y, Z) = world (Y, Z, X)
    np.testing.assert_array_equal([float(v) for v in row[2:5]], joints[0, 0, [1, 2, 0]])
    # a missing marker is three empty fields; a missing frame is all empty
    missing_joint = lines[5 + 2].split("\t")
    assert missing_joint[0] == "3" and missing_joint[5:8] == ["", "", ""] and missing_joint[2] != ""
    assert lines[5 + 4].split("\t")[2:] == [""] * 12
    assert float(lines[5 + 5].split("\t")[1]) == pytest.approx(5 / 60.0)


def test_trc_without_y_up_and_in_millimetres(tmp_path):
    joints, confidence, _ = _result()
    save_result(tmp_path / "z.trc", joints, confidence, None, NAMES, fps=30.0, trc_y_up=False)
    first = (tmp_path / "z.trc").read_text().split("\n")[5].split("\t")
    np.testing.assert_array_equal([float(v) for v in first[2:5]], joints[0, 0])
    back, _, _ = load_trc(tmp_path / "z.trc", trc_y_up=False)
    np.testing.assert_array_equal(back, joints)
    # a file in mm (as some mocap exports are) comes back in metres
    text = (tmp_path / "z.trc").read_text().split("\n")
    text[2] = text[2].replace("\tm\t", "\tmm\t")
    (tmp_path / "mm.trc").write_text("\n".join(text))
    np.testing.assert_allclose(load_trc(tmp_path / "mm.trc", trc_y_up=False)[0], joints / 1000)


def test_csv_header_and_values(tmp_path):
    joints, confidence, covariance = _result()
    save_result(tmp_path / "out.csv", joints, confidence, covariance, NAMES, fps=50.0)
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    expected = ["frame", "time"]
    for name in NAMES:
        expected += [f"{name}_x", f"{name}_y", f"{name}_z", f"{name}_conf"]
    assert rows[0] == expected and len(rows) == 1 + joints.shape[0]
    assert rows[3][:2] == ["2", "0.04"]
    values = np.array([[float(v) for v in row[2:]] for row in rows[1:]]).reshape(joints.shape[0], len(NAMES), 4)
    np.testing.assert_array_equal(values[..., :3], joints)  # NaN stays NaN ("nan")
    np.testing.assert_array_equal(values[..., 3], confidence)
    save_result(tmp_path / "nofps.csv", joints, confidence, None, NAMES)
    assert (tmp_path / "nofps.csv").read_text().split("\n")[1].startswith("0,,")


def test_bad_inputs(tmp_path):
    joints, confidence, covariance = _result()
    with pytest.raises(ExportError, match="unsupported output format '.json'"):
        save_result(tmp_path / "r.json", joints, confidence, covariance, NAMES)
    with pytest.raises(ExportError, match="needs the frame rate"):
        save_result(tmp_path / "r.trc", joints, confidence, covariance, NAMES)
    with pytest.raises(ExportError, match=r"joints must have shape \[F, J, 3\]"):
        save_result(tmp_path / "r.npz", joints[..., :2], confidence, covariance, NAMES)
    with pytest.raises(ExportError, match=r"confidence must have shape \[6, 4\]"):
        save_result(tmp_path / "r.npz", joints, confidence[:, :3], covariance, NAMES)
    with pytest.raises(ExportError, match=r"covariance must have shape \[6, 4, 3, 3\]"):
        save_result(tmp_path / "r.npz", joints, confidence, covariance[..., 0], NAMES)
    with pytest.raises(ExportError, match=r"num_views must have shape"):
        save_result(tmp_path / "r.npz", joints, confidence, covariance, NAMES, num_views=np.zeros(6))
    with pytest.raises(ExportError, match="3 joint names for 4 joints"):
        save_result(tmp_path / "r.npz", joints, confidence, covariance, NAMES[:3])
    with pytest.raises(ExportError, match="clashes"):
        save_result(tmp_path / "r.npz", joints, confidence, covariance, NAMES, extra={"joints": np.zeros(3)})
    with pytest.raises(ExportError, match="not a valid OpenSim marker name"):
        save_result(tmp_path / "r.trc", joints, confidence, covariance, ["left hip", "b", "c", "d"], fps=30)
    assert check_result_path(tmp_path / "x.csv") == tmp_path / "x.csv"
    with pytest.raises(ExportError, match="fps must be positive"):
        check_result_path(tmp_path / "x.trc", fps=0)
    with pytest.raises(FileNotFoundError):
        load_trc(tmp_path / "none.trc")
    (tmp_path / "not.trc").write_text("hello\n1\n2\n3\n4\n")
    with pytest.raises(ExportError, match="not a TRC file"):
        load_trc(tmp_path / "not.trc")


def test_real_pose2sim_trc_matches_our_conversion_and_dlt():
    """Pose2Sim 0.4.15's own TRC of the demo trial (frames 36-37) against plain DLT of the real detections.

    Checks ``load_trc`` on a file we did not write (Y-up, Frame# from 37) and, through it, the whole chain:
    Qualisys conversion, JSON loading and the TRC axis convention.
    """
    from skelsplat_ros.geometry.calibration import load_qualisys_qca
    from skelsplat_ros.io.keypoints import align_to_rig, load_keypoints
    from skelsplat_ros.skeleton.models import get_skeleton

    data = Path(__file__).resolve().parents[1] / "data"
    reference, names, rate = load_trc(data / "pose2sim_Balancing_for_IK_excerpt.trc")
    assert reference.shape == (2, 21, 3) and rate == 60.0 and names[:3] == ["RHip", "RKnee", "RAnkle"]
    keypoints = load_keypoints(data / "pose2sim_demo_json", skeleton="body25b")
    _, rig = align_to_rig(keypoints, load_qualisys_qca(data / "pose2sim_demo_Calib.qca.txt"))
    skeleton = get_skeleton("body25b")
    projections = rig.projection_matrices
    pairs = {
        "Nose": "nose",
        "Neck": "neck",
        "RAnkle": "r_ankle",
        "LAnkle": "l_ankle",
        "RWrist": "r_wrist",
        "LHeel": "l_heel",
    }
    for trc_name, joint in pairs.items():
        kp = keypoints.keypoints[:, 0, skeleton.index(joint)]  # frame 36
        used = kp[:, 2] > 0.3
        rows = np.concatenate(
            [
                kp[used, :1] * projections[used, 2] - projections[used, 0],
                kp[used, 1:2] * projections[used, 2] - projections[used, 1],
            ]
        )
        homogeneous = np.linalg.svd(rows)[2][-1]
        point = homogeneous[:3] / homogeneous[3]
        assert np.linalg.norm(point - reference[0, names.index(trc_name)]) < 0.05, trc_name  # metres
