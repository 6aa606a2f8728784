"""``skelsplat detect`` end to end on small real files (videos, image folders, an image bag), with the onnx backend on
the RTMO-shaped test model (a red dot is the person: its joint 0 sits on the dot)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
cv2 = pytest.importorskip("cv2")

from onnx_models import red_dot_image, rtmo_model  # noqa: E402  (test/detection is on sys.path)

from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.io.keypoints import load_keypoints  # noqa: E402

HEIGHT, WIDTH = 200, 256
TOLERANCE = 6.0  # px: the model reports the first column and row of the 9 px dot, through a 0.5 letterbox


def _dot(frame: int, camera: int) -> tuple[int, int]:
    return 40 + 5 * frame + 30 * camera, 50 + 3 * frame


def write_dot_video(path, camera: int, frames: int, fps: float = 20.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for f in range(frames):
        writer.write(red_dot_image(HEIGHT, WIDTH, *_dot(f, camera), radius=4)[..., ::-1])
    writer.release()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(rtmo_model(tmp_path_factory.mktemp("onnx") / "rtmo.onnx"))


def _detect(*args: str) -> int:
    return main(["detect", "--backend", "onnx", "--quiet", *args])


def test_videos_to_the_five_dimensional_npz_that_fuse_reads(tmp_path, model, capsys):
    videos = [str(write_dot_video(tmp_path / f"cam0{v + 1}.avi", v, 6)) for v in range(2)]
    assert _detect(*videos, "--model", model, "--max-people", "3", "--output", str(tmp_path / "kp.npz")) == 0
    out = capsys.readouterr().out
    assert "cam01 100 % (1.00/image), cam02 100 % (1.00/image)" in out and "ms/image" in out and "CPU" in out
    keypoints = load_keypoints(tmp_path / "kp.npz")
    assert keypoints.cameras == ["cam01", "cam02"] and keypoints.fps == 20.0 and keypoints.skeleton == "coco17"
    assert keypoints.keypoints.shape == (2, 6, 3, 17, 3)
    for v in range(2):
        for f in range(6):
            np.testing.assert_allclose(keypoints.keypoints[v, f, 0, 0, :2], _dot(f, v), atol=TOLERANCE)
    assert np.isnan(keypoints.keypoints[:, :, 1:, :, :2]).all()  # the unused slots


def test_unequal_videos_are_refused_unless_offsets_align_them(tmp_path, model, capsys):
    a = str(write_dot_video(tmp_path / "a.avi", 0, 6))
    b = str(write_dot_video(tmp_path / "b.avi", 1, 8))
    assert _detect(a, b, "--model", model, "--output", str(tmp_path / "kp.npz")) == 2
    assert "different lengths (a 6 frames, b 8 frames)" in capsys.readouterr().err
    assert _detect(a, b, "--model", model, "--offsets", "0,2", "--output", str(tmp_path / "kp.npz")) == 0
    keypoints = load_keypoints(tmp_path / "kp.npz")
    assert keypoints.num_frames == 6
    np.testing.assert_allclose(keypoints.keypoints[1, 0, 0, 0, :2], _dot(2, 1), atol=TOLERANCE)  # b starts at its frame 2


def test_image_folders_and_openpose_json_output(tmp_path, model):
    folders = []
    for v in range(2):
        folder = tmp_path / f"cam{v}"
        folder.mkdir()
        for f in range(3):
            cv2.imwrite(str(folder / f"{f:04d}.png"), red_dot_image(HEIGHT, WIDTH, *_dot(f, v), radius=4)[..., ::-1])
        folders.append(str(folder))
    assert _detect(*folders, "--model", model, "--fps", "10", "--format", "openpose",
                   "--output", str(tmp_path / "json")) == 0
    files = sorted((tmp_path / "json" / "cam1_json").glob("*.json"))
    assert len(files) == 3
    person = json.loads(files[2].read_text())["people"][0]["pose_keypoints_2d"]
    np.testing.assert_allclose(person[:2], _dot(2, 1), atol=TOLERANCE)
    fused_input = load_keypoints(tmp_path / "json", skeleton="coco17", people="all")
    assert fused_input.keypoints.shape[:2] == (2, 3)


def test_an_image_bag_to_a_keypoint_bag_and_an_npz(tmp_path, model, capsys):
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import CompressedImage, Image
    from skelsplat_ros.msg import Keypoints2DArray

    from skelsplat_ros.ros.conversions import ns_to_stamp, stamp_to_ns

    typestore = get_typestore(Stores.ROS2_KILTED)
    start = 1_700_000_000_000_000_000
    with Writer(tmp_path / "images", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        raw = writer.add_connection("/cam01/image_raw", "sensor_msgs/msg/Image", typestore=typestore)
        packed = writer.add_connection("/cam02/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                                       typestore=typestore)
        for f in (0, 1, 2, 4):  # frame 3 was lost in every camera: it stays in the NPZ, missing
            stamp = start + f * 50_000_000
            bgr = red_dot_image(HEIGHT, WIDTH, *_dot(f, 0))[..., ::-1]
            padded = np.zeros((HEIGHT, 3 * WIDTH + 8), np.uint8)  # rows padded by 8 bytes
            padded[:, : 3 * WIDTH] = bgr.reshape(HEIGHT, -1)
            image = Image(height=HEIGHT, width=WIDTH, encoding="bgr8", step=3 * WIDTH + 8, data=padded.tobytes())
            image.header.stamp, image.header.frame_id = ns_to_stamp(stamp), "cam01_optical"
            writer.write(raw, stamp + 1_000_000, serialize_message(image))
            ok, png = cv2.imencode(".png", red_dot_image(HEIGHT, WIDTH, *_dot(f, 1))[..., ::-1])
            compressed = CompressedImage(format="png", data=png.tobytes())
            compressed.header.stamp, compressed.header.frame_id = ns_to_stamp(stamp + 2_000_000), "cam02_optical"
            writer.write(packed, stamp + 3_000_000, serialize_message(compressed))
    assert _detect(str(tmp_path / "images"), "--model", model, "--output", str(tmp_path / "kp.mcap")) == 0
    assert "cam01 100 % of 4, cam02 100 % of 4" in capsys.readouterr().out
    with Reader(tmp_path / "kp") as reader:
        messages = [(c.topic, deserialize_message(data, Keypoints2DArray)) for c, _, data in reader.messages()]
    assert sorted({topic for topic, _ in messages}) == ["/cam01/keypoints", "/cam02/keypoints"]
    first = next(m for topic, m in messages if topic == "/cam02/keypoints")
    assert stamp_to_ns(first.header.stamp) == start + 2_000_000 and first.header.frame_id == "cam02_optical"
    np.testing.assert_allclose([first.people[0].x[0], first.people[0].y[0]], _dot(0, 1), atol=TOLERANCE)
    # As an NPZ: the two cameras' images 2 ms apart are one frame; the lost frame 3 is a missing frame.
    assert _detect(str(tmp_path / "images"), "--model", model, "--output", str(tmp_path / "kp.npz")) == 0
    keypoints = load_keypoints(tmp_path / "kp.npz")
    assert keypoints.keypoints.shape[:2] == (2, 5) and keypoints.fps == pytest.approx(20.0)
    assert np.isnan(keypoints.keypoints[:, 3, :, :, :2]).all()
    np.testing.assert_allclose(keypoints.keypoints[1, 4, 0, 0, :2], _dot(4, 1), atol=TOLERANCE)
