"""CameraInfo -> camera (plumb_bob, rational_polynomial, refusals), the rational lens model, calibration units."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from skelsplat_ros.geometry.calibration import (
    CalibrationError,
    camera_info_fields,
    intrinsics_from_camera_info,
    load_calibration,
    load_calibration_metres,
    save_calibration,
)
from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at
from skelsplat_ros.geometry.units import detect_units

K = np.array([[1400.0, 0.0, 955.3], [0.0, 1398.2, 541.7], [0.0, 0.0, 1.0]])
RATIONAL = np.array([0.9, 0.3, 0.001, -0.002, 0.01, 1.1, 0.4, 0.02])  # an Azure-Kinect-like rational lens


def _info(**changes) -> SimpleNamespace:
    info = SimpleNamespace(
        header=SimpleNamespace(frame_id="cam0_optical"), width=1920, height=1080, distortion_model="plumb_bob",
        d=[-0.2, 0.05, 0.001, 0.002, 0.0], k=K.reshape(-1).tolist(), binning_x=0, binning_y=0,
        roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False),
    )
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def test_plumb_bob_and_rational_infos_give_the_camera_they_describe():
    camera = Camera("cam0", K, *look_at(np.array([3.0, 0.0, 1.5]), np.zeros(3)), (1920, 1080), RATIONAL)
    fields = camera_info_fields(camera)
    assert fields["distortion_model"] == "rational_polynomial"
    intrinsics = intrinsics_from_camera_info(_info(**{k: fields[k] for k in ("width", "height", "distortion_model",
                                                                             "d", "k")}))
    rebuilt = intrinsics.camera("cam0", camera.R, camera.t)
    points = np.random.default_rng(0).normal(scale=0.5, size=(50, 3))
    np.testing.assert_allclose(rebuilt.project(points), camera.project(points), atol=1e-9)
    assert intrinsics.frame_id == "cam0_optical"
    plumb = intrinsics_from_camera_info(_info(d=[-0.2, 0.05, 0.001, 0.002]))  # 4 terms are zero-padded
    assert plumb.dist.tolist() == [-0.2, 0.05, 0.001, 0.002, 0.0] and plumb.size == (1920, 1080)


def test_rational_model_matches_opencv_and_inverts():
    cv2 = pytest.importorskip("cv2")
    camera = Camera("c", K, np.eye(3), np.zeros(3), (1920, 1080), RATIONAL)
    points = np.random.default_rng(1).uniform([-0.8, -0.5, 2.0], [0.8, 0.5, 4.0], size=(40, 3))
    expected, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, RATIONAL)
    np.testing.assert_allclose(camera.project(points), expected[:, 0], atol=1e-6)
    pinhole = Camera("p", K, np.eye(3), np.zeros(3), (1920, 1080)).project(points)
    np.testing.assert_allclose(camera.undistort_pixels(camera.project(points)), pinhole, atol=1e-6)


def test_binning_scales_the_image_and_k():
    intrinsics = intrinsics_from_camera_info(_info(binning_x=2, binning_y=2))
    assert intrinsics.size == (960, 540)
    np.testing.assert_allclose(intrinsics.K[:2], K[:2] / 2)


@pytest.mark.parametrize("changes, message", [
    ({"distortion_model": "equidistant", "d": [0.1, 0.0, 0.0, 0.0]}, "equidistant"),
    ({"distortion_model": "kannala"}, "unknown distortion model"),
    ({"k": [0.0] * 9}, "not calibrated"),
    ({"d": [0.1] * 6}, "at most 5"),
    ({"d": [np.nan, 0, 0, 0, 0]}, "finite"),
    ({"roi": SimpleNamespace(x_offset=10, y_offset=0, width=100, height=100)}, "region of interest"),
])
def test_unusable_camera_infos_are_refused_with_the_reason(changes, message):
    with pytest.raises(CalibrationError, match=message):
        intrinsics_from_camera_info(_info(**changes))


def test_millimetre_calibration_is_detected_and_converted(tmp_path):
    cameras = [Camera(f"cam{i}", K, *look_at(np.array([4.0 * np.cos(a), 4.0 * np.sin(a), 2.0]),
                                               np.array([0.0, 0.0, 1.0])), (1920, 1080))
               for i, a in enumerate(np.linspace(0, 2 * np.pi, 4, endpoint=False))]
    metres = CameraRig(cameras)
    millimetres = CameraRig([Camera(c.name, c.K, c.R, c.t * 1000.0, c.size) for c in cameras])
    assert detect_units(metres).units == "m" and detect_units(millimetres).units == "mm"
    save_calibration(millimetres, tmp_path / "mm.toml")
    rig, units = load_calibration_metres(tmp_path / "mm.toml")
    assert units == "mm"
    np.testing.assert_allclose(rig.t, metres.t, atol=1e-12)
    rig_m, units_m = load_calibration_metres(tmp_path / "mm.toml", units="m")  # said explicitly: not converted
    assert units_m == "m" and np.allclose(rig_m.t, millimetres.t)
    with pytest.raises(CalibrationError, match="units"):
        load_calibration_metres(tmp_path / "mm.toml", units="inch")
    assert np.allclose(load_calibration(tmp_path / "mm.toml").t, millimetres.t)
