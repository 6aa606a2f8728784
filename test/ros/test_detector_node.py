"""The detector node over real DDS: images (padded rows, bgr8 / rgb8 / mono8, compressed) in, keypoints out with the
image's stamp and frame_id; bad images counted and survived; its own /diagnostics. The detector is the onnx backend
on a small RTMO-shaped model that finds a red dot (test/detection/onnx_models.py), so positions are known."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
cv2 = pytest.importorskip("cv2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detection"))

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from node_harness import Spinner, wait_until  # noqa: E402  (test/ros is on sys.path: pytest prepend)
from onnx_models import red_dot_image, rtmo_model  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from skelsplat_ros.msg import Keypoints2DArray  # noqa: E402

from skelsplat_ros.ros.conversions import ns_to_stamp, stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.detector_node import DetectorNode  # noqa: E402
from skelsplat_ros.ros.params import StartupError  # noqa: E402

DOT = (100, 60)
CAMERAS = ["c0", "c1"]


def image_msg(rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str, padding: int = 0) -> Image:
    """An Image of ``rgb [H, W, 3]`` in ``encoding``, each row padded with ``padding`` bytes of 0xAB."""
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1], "yuv422": rgb[..., :2]}[encoding]
    height, width, channels = pixels.shape
    step = width * channels + padding
    rows = np.full((height, step), 0xAB, dtype=np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    return Image(header=_header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                 is_bigendian=0, step=step, data=rows.tobytes())


def _header(stamp_ns: int, frame_id: str):
    from std_msgs.msg import Header

    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


class Camera:
    """A test node: publishes images of the cameras, records their keypoints and the detector's diagnostics."""

    def __init__(self, context, compressed: bool = False) -> None:
        self.node = Node("fake_cameras", context=context)
        kind, suffix = (CompressedImage, "image_raw/compressed") if compressed else (Image, "image_raw")
        self.pubs = {c: self.node.create_publisher(kind, f"{c}/{suffix}", QoSProfile(depth=5)) for c in CAMERAS}
        self.keypoints: dict[str, list[Keypoints2DArray]] = {c: [] for c in CAMERAS}
        for camera in CAMERAS:
            self.node.create_subscription(Keypoints2DArray, f"{camera}/keypoints",
                                          self.keypoints[camera].append, QoSProfile(depth=50))
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, QoSProfile(depth=10))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": detector"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values} | {"message": status.message})

    def send(self, camera: str, msg) -> Keypoints2DArray:
        """Publish one image and wait for its keypoints (matched by stamp)."""
        stamp = stamp_to_ns(msg.header.stamp)
        self.pubs[camera].publish(msg)
        assert wait_until(lambda: any(stamp_to_ns(k.header.stamp) == stamp for k in self.keypoints[camera]), 20.0)
        return next(k for k in self.keypoints[camera] if stamp_to_ns(k.header.stamp) == stamp)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return rtmo_model(tmp_path_factory.mktemp("onnx") / "rtmo.onnx")


def _start(context, model, compressed=False):
    detector = DetectorNode(context=context, parameter_overrides=_overrides(model, compressed))
    camera = Camera(context, compressed)
    spinner = Spinner(context, [detector, camera.node])
    assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in camera.pubs.values()), 10.0)
    return detector, camera, spinner


def _overrides(model, compressed=False, cameras=CAMERAS):
    from rclpy.parameter import Parameter

    return [Parameter("cameras", value=cameras), Parameter("backend", value="onnx"),
            Parameter("model", value=str(model)), Parameter("compressed", value=compressed),
            Parameter("diagnostics_period", value=0.2)]


def _check_dot(msg: Keypoints2DArray, stamp_ns: int, frame_id: str) -> None:
    assert stamp_to_ns(msg.header.stamp) == stamp_ns and msg.header.frame_id == frame_id
    assert msg.skeleton == "coco17" and len(msg.people) == 1
    person = msg.people[0]
    assert person.id == -1
    np.testing.assert_allclose([person.x[0], person.y[0]], DOT, atol=3.0)


def test_images_of_every_encoding_with_padded_rows_come_out_as_keypoints_with_their_stamp(module_context, model):
    detector, camera, spinner = _start(module_context, model)
    try:
        red = red_dot_image(200, 256, *DOT)
        white = red.copy()
        white[red[..., 0] == 255] = 255  # a white dot for mono8 (the model looks at one channel)
        stamp = 1_700_000_000_123_456_789
        for index, (encoding, image, padding) in enumerate(
                [("bgr8", red, 0), ("bgr8", red, 37), ("rgb8", red, 5), ("mono8", white, 3)]):
            msg = camera.send(CAMERAS[index % 2], image_msg(image, encoding, stamp + index, f"optical{index}", padding))
            _check_dot(msg, stamp + index, f"optical{index}")
        # A bad image is counted and logged; the next good one still comes out.
        camera.pubs["c0"].publish(image_msg(red, "yuv422", stamp + 10, "optical"))
        assert wait_until(lambda: camera.diagnostics and camera.diagnostics[-1].get("rejected.image") == "1", 10.0)
        _check_dot(camera.send("c0", image_msg(red, "bgr8", stamp + 11, "optical")), stamp + 11, "optical")
        assert wait_until(lambda: camera.diagnostics[-1].get("detected.c0") == "3", 10.0)
        last = camera.diagnostics[-1]
        for key in ("input_rate_hz.c0", "output_rate_hz.c1", "inference_mean_ms.c0", "skipped.c0", "skipped.c1",
                    "latency_median_ms.c0", "received.c1"):
            assert key in last, key
        assert int(last["received.c0"]) == 4 and int(last["skipped.c0"]) == 0
    finally:
        spinner.stop()
        detector.destroy_node()
        camera.node.destroy_node()


def test_images_that_never_reach_the_node_are_counted_as_missed(module_context, model):
    """Three images sent while the node takes none (its executor stopped): its subscription keeps the newest, so two
    never reach it. They are counted as missed (from the publisher's sequence numbers), apart from the images it
    received and the ones it skipped itself; before, nothing told them from images never sent."""
    detector, camera, spinner = _start(module_context, model)
    try:
        red = red_dot_image(200, 256, *DOT)
        stamp = 1_700_000_000_000_000_000
        camera.send("c0", image_msg(red, "bgr8", stamp, "optical"))
        spinner.stop()
        for k in range(1, 4):
            camera.pubs["c0"].publish(image_msg(red, "bgr8", stamp + k, "optical"))
        time.sleep(1.0)  # delivered by DDS into the subscription's queue meanwhile
        spinner = Spinner(module_context, [detector, camera.node])
        assert wait_until(lambda: camera.diagnostics and camera.diagnostics[-1].get("detected.c0") == "2", 10.0)
        assert [stamp_to_ns(k.header.stamp) for k in camera.keypoints["c0"]] == [stamp, stamp + 3]
        last = camera.diagnostics[-1]
        assert (last["received.c0"], last["missed.c0"], last["skipped.c0"], last["missed.c1"]) == ("2", "2", "0", "0")
    finally:
        spinner.stop()
        detector.destroy_node()
        camera.node.destroy_node()


def test_compressed_images_on_image_raw_compressed(module_context, model):
    detector, camera, spinner = _start(module_context, model, compressed=True)
    try:
        ok, png = cv2.imencode(".png", red_dot_image(200, 256, *DOT)[..., ::-1])
        msg = CompressedImage(header=_header(42_000_000_000, "c1_optical"), format="png", data=png.tobytes())
        _check_dot(camera.send("c1", msg), 42_000_000_000, "c1_optical")
    finally:
        spinner.stop()
        detector.destroy_node()
        camera.node.destroy_node()


def test_unusable_settings_stop_the_node_with_one_line(module_context, model):
    from rclpy.parameter import Parameter

    with pytest.raises(StartupError, match="cameras must list"):
        DetectorNode(context=module_context, parameter_overrides=_overrides(model, cameras=[""])[1:])
    with pytest.raises(StartupError, match="lists a camera twice"):
        DetectorNode(context=module_context, parameter_overrides=_overrides(model, cameras=["a", "a"]))
    with pytest.raises(StartupError, match="model file not found"):
        DetectorNode(context=module_context, parameter_overrides=_overrides(model)[:2] + [
            Parameter("model", value="/nonexistent.onnx")])


def test_node_parameters_and_cli_flags_default_to_the_detector_config():
    """DetectorConfig is the one source of the detector's settings: the node's parameters and detect's flags agree."""
    from dataclasses import fields

    from skelsplat_ros.cli import build_parser
    from skelsplat_ros.detection import DetectorConfig
    from skelsplat_ros.ros.params import DETECTOR_NODE_PARAMS

    defaults = {f.name: f.default for f in fields(DetectorConfig)}
    specs = {spec.name: spec.default for spec in DETECTOR_NODE_PARAMS}
    assert set(defaults) <= set(specs)
    for name, value in defaults.items():
        assert specs[name] == value, name
    args = build_parser().parse_args(["detect", "x.mp4", "--output", "kp.npz"])
    for name in ("backend", "max_people", "min_person_score", "min_keypoint_score", "duplicate_distance", "model",
                 "det_model", "threads"):
        assert getattr(args, name) == defaults[name], name
    assert args.no_tracking is not defaults["tracking"]
