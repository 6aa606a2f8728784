"""Hostile recordings: a bag whose keypoint topics also carry a misbehaving detector's messages fuses exactly like
the clean bag (the node's validation, io/validation.py, runs on every message read); corrupted bag bytes end
``skelsplat fuse`` with exit 2 and one line (hypothesis), never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("rosbags")
pytest.importorskip("skelsplat_ros.msg")

from bag_helpers import START_NS, write_keypoints_bag  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402

from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.geometry.calibration import save_calibration  # noqa: E402
from skelsplat_ros.io.export import load_result  # noqa: E402
from skelsplat_ros.ros.bag import BagError, read_bag_frames, typestore_with_our_messages  # noqa: E402
from skelsplat_ros.ros.conversions import keypoints_msg, ns_to_stamp  # noqa: E402
from skelsplat_ros.ros.hostile import hostile_msg  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402
from skelsplat_ros.sim.hostile import HostileDetector  # noqa: E402

FRAMES = 20
FPS = 30.0


pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # main sets torch's thread count


def _write_hostile_bag(path: Path, scenario, keypoints: np.ndarray, seed: int) -> None:
    """Each valid message among three malformed ones, logged around it, most with its stamp."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    hostile = HostileDetector(scenario.rig.sizes, scenario.skeleton.num_joints, "h36m17", seed=seed)
    order = np.random.default_rng(seed)
    stamps = START_NS + np.round(np.arange(FRAMES) / FPS * 1e9).astype(np.int64)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        topics = {c: writer.add_connection(f"/{c}/keypoints", "skelsplat_ros/msg/Keypoints2DArray",
                                           typestore=typestore_with_our_messages()) for c in scenario.rig.names}
        for f, stamp in enumerate(stamps.tolist()):
            for v, camera in enumerate(scenario.rig.names):
                batch = [serialize_message(hostile_msg(m, stamp))
                         for m in hostile.messages(v, f"{camera}_optical", 3)]
                batch.insert(int(order.integers(0, 4)), serialize_message(
                    keypoints_msg(keypoints[v, f], ns_to_stamp(stamp), f"{camera}_optical", "h36m17")))
                for k, data in enumerate(batch):
                    writer.write(topics[camera], stamp + v * 1000 + k * 100, data)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile_bags")
    scenario = make_scenario("lab", num_frames=FRAMES, fps=FPS, seed=6)
    keypoints = scenario.keypoints.astype(np.float32).astype(np.float64)
    save_calibration(scenario.rig, tmp / "calibration.toml")
    write_keypoints_bag(tmp / "clean", scenario.rig.names, keypoints, FPS, "h36m17")
    _write_hostile_bag(tmp / "hostile", scenario, keypoints, seed=1)
    return tmp, scenario


def _fuse(keypoints: Path, calibration: Path, output: Path, capsys) -> tuple[int, str]:
    status = main(["fuse", "--keypoints", str(keypoints), "--calibration", str(calibration), "--skeleton", "h36m17",
                   "--method", "robust", "--quiet", "--output", str(output)])
    return status, capsys.readouterr().err


def test_a_bag_with_a_misbehaving_detector_fuses_like_the_clean_bag(bags, capsys):
    tmp, scenario = bags
    frames = read_bag_frames(tmp / "hostile", "h36m17", 17, rig=scenario.rig)
    rejected = sum(v for k, v in frames.counts.items() if k.startswith("rejected."))
    assert rejected == 3 * FRAMES * len(scenario.rig.names), frames.counts
    assert frames.counts.get("dropped.duplicate", 0) == 0
    for name in ("clean", "hostile"):
        assert _fuse(tmp / name, tmp / "calibration.toml", tmp / f"{name}.npz", capsys)[0] == 0
    clean, hostile = load_result(tmp / "clean.npz"), load_result(tmp / "hostile.npz")
    np.testing.assert_array_equal(hostile["joints"], clean["joints"])


def test_a_message_that_is_not_valid_cdr_is_counted_and_the_rest_fuses(bags, tmp_path):
    """Bytes that rclpy cannot deserialise (RMWError) are one counted rejection, not the end of the recording."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    tmp, scenario = bags
    clean = read_bag_frames(tmp / "clean", "h36m17", 17, rig=scenario.rig)
    path = tmp_path / "undecodable"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        topics = {c: writer.add_connection(f"/{c}/keypoints", "skelsplat_ros/msg/Keypoints2DArray",
                                           typestore=typestore_with_our_messages()) for c in scenario.rig.names}
        for f, stamp in enumerate(clean.stamps_ns.tolist()):
            for v, camera in enumerate(scenario.rig.names):
                if f == 5 and v == 1:
                    writer.write(topics[camera], stamp + v * 1000, b"\x00\x01\x00\x00" + b"\xff" * 64)
                    continue
                writer.write(topics[camera], stamp + v * 1000, serialize_message(
                    keypoints_msg(clean.keypoints[v, f], ns_to_stamp(stamp), f"{camera}_optical", "h36m17")))
    frames = read_bag_frames(path, "h36m17", 17, rig=scenario.rig)
    assert frames.counts.get("rejected.undecodable") == 1, frames.counts
    assert frames.keypoints.shape == clean.keypoints.shape
    others = np.ones(frames.keypoints.shape[:2], bool)
    others[1, 5] = False
    np.testing.assert_array_equal(frames.keypoints[others], clean.keypoints[others])
    assert np.isnan(frames.keypoints[1, 5, :, :2]).all()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cut=st.none() | st.integers(0, 1 << 20),
       flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8))
def test_corrupted_bag_bytes_give_one_line_errors(bags, tmp_path, capsys, cut, flips):
    tmp, scenario = bags
    data = bytearray((tmp / "clean" / "clean.mcap").read_bytes())
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    path = tmp_path / "corrupt.mcap"
    path.write_bytes(bytes(data))
    try:
        read_bag_frames(path, "h36m17", 17, rig=scenario.rig)
    except BagError as error:
        assert "\n" not in str(error)
    status, err = _fuse(path, tmp / "calibration.toml", tmp_path / "out.npz", capsys)
    assert status in (0, 2), err
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("skelsplat fuse: error:") and "Traceback" not in err, err
