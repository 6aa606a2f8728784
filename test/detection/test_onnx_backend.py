"""The onnx backend's real loading, pre- and post-processing, on small models with RTMO's, RTMPose's and YOLOX's
signatures that the tests build (``onnx_models.py``): a red dot in the image must come back where it was."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from skelsplat_ros.detection import DetectorConfig, DetectorError, make_detector  # noqa: E402
from skelsplat_ros.detection.onnx_backend import box_warp, nms, resolve_model, simcc_decode  # noqa: E402

from onnx_models import red_dot_image, rtmo_model, rtmpose_model, yolox_model  # noqa: E402  (test/detection is on sys.path)

DOT = (100, 60)  # x, y in a 256 x 200 image: RTMO's 128 x 128 letterbox scales it by 0.5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {"rtmo": rtmo_model(folder / "rtmo.onnx"), "yolox": yolox_model(folder / "yolox.onnx"),
            "rtmpose": rtmpose_model(folder / "rtmpose.onnx")}


def test_rtmo_keypoints_come_back_in_image_pixels_duplicates_and_weak_people_dropped(models):
    detector = make_detector(DetectorConfig(backend="onnx", model=str(models["rtmo"])))
    assert detector.kind == "rtmo"
    people = detector.detect(red_dot_image(200, 256, *DOT), 0)
    # Three people out of the model: the half-pixel copy is suppressed, the 0.3 one is under min_person_score.
    assert people.shape == (1, 17, 3)
    # Joint j sits at dot + (j, 2 j) model pixels, i.e. + (2 j, 4 j) image pixels at the letterbox's ratio 0.5.
    expected = np.array(DOT) + np.stack([2 * np.arange(17), 4 * np.arange(17)], axis=-1)
    np.testing.assert_allclose(people[0, :, :2], expected, atol=3.0)
    np.testing.assert_allclose(people[0, :, 2], 0.8, rtol=1e-6)


def test_rtmo_fed_rgb_instead_of_bgr_would_miss_the_dot(models):
    """The models see BGR: a blue dot (red in the model's channel 0) is not found where it is."""
    detector = make_detector(DetectorConfig(backend="onnx", model=str(models["rtmo"])))
    image = red_dot_image(200, 256, *DOT)[..., ::-1]  # the dot is now blue
    people = detector.detect(np.ascontiguousarray(image), 0)
    assert np.linalg.norm(people[0, 0, :2] - DOT) > 20


def test_rtmpose_with_a_person_detector_finds_the_dot_through_the_crop(models):
    detector = make_detector(DetectorConfig(backend="onnx", model=str(models["rtmpose"]),
                                            det_model=str(models["yolox"])))
    assert detector.kind == "rtmpose"
    people = detector.detect(red_dot_image(200, 256, *DOT), 0)
    assert people.shape == (1, 17, 3)
    np.testing.assert_allclose(people[0, :, :2], np.broadcast_to(DOT, (17, 2)), atol=4.0)
    assert np.all(people[0, :, 2] == 1.0)  # SimCC peaks above 1 are clipped to a confidence of 1


def test_rtmpose_without_a_person_detector_is_refused(models):
    with pytest.raises(DetectorError, match="person detector"):
        make_detector(DetectorConfig(backend="onnx", model=str(models["rtmpose"])))


def test_a_model_of_another_signature_is_refused_by_its_outputs(models):
    with pytest.raises(DetectorError, match="neither RTMO"):
        make_detector(DetectorConfig(backend="onnx", model=str(models["yolox"])))


def test_models_from_a_zip_and_from_a_url_are_unpacked_and_downloaded_once(models, tmp_path):
    archive = tmp_path / "rtmo-test.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(models["rtmo"], "rtmo-test/end2end.onnx")
    cache = tmp_path / "cache"
    local = resolve_model(archive.as_uri(), cache)  # a file:// URL: downloaded, then unpacked
    assert local == cache / "rtmo-test.onnx" and local.read_bytes() == models["rtmo"].read_bytes()
    archive.unlink()
    assert resolve_model(archive.as_uri(), cache) == local  # from the cache: the source is gone
    with pytest.raises(DetectorError, match="cannot download"):
        resolve_model((tmp_path / "missing.onnx").as_uri(), cache)
    with pytest.raises(DetectorError, match="not found"):
        resolve_model(str(tmp_path / "missing.onnx"), cache)


def test_box_warp_pads_the_box_and_keeps_the_input_aspect():
    centre, size = box_warp(np.array([10.0, 20.0, 50.0, 120.0]), width=192, height=256)
    np.testing.assert_allclose(centre, [30.0, 70.0])
    np.testing.assert_allclose(size, [125.0 * 0.75, 125.0])  # 100 px tall * 1.25, widened to 192:256


def test_simcc_decode_halves_the_argmax_and_marks_unscored_joints_missing():
    simcc_x = np.zeros((2, 20))
    simcc_y = np.zeros((2, 30))
    simcc_x[0, 7], simcc_y[0, 11] = 0.9, 0.6
    joints = simcc_decode(simcc_x, simcc_y)
    np.testing.assert_allclose(joints[0], [3.5, 5.5, 0.6])
    assert np.isnan(joints[1, :2]).all()


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=float)
    assert list(nms(boxes, np.array([0.5, 0.9, 0.4]))) == [1, 2]
