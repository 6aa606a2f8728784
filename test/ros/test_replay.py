"""A recording replayed with ``skelsplat play`` (a real process publishing the bag and /clock) through the live node
on sim time: the bag's stamps are years old, yet nothing is rejected as stale, and the node publishes what the
offline bag route fuses from the same messages. Played into a node started at the same moment, the replay waits
until the node subscribes (once it is ready), so the recording's first frame is fused; with nobody listening it says
so and plays nothing."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
pytest.importorskip("skelsplat_ros.msg")

sys.path.insert(0, str(Path(__file__).parent))
from bag_helpers import START_NS, play_bag, play_process, write_keypoints_bag  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from skelsplat_ros.msg import Skeleton3DArray  # noqa: E402

from skelsplat_ros.fusion import preset_config  # noqa: E402
from skelsplat_ros.ros.bag import read_bag_frames  # noqa: E402
from skelsplat_ros.ros.conversions import skeleton_arrays, stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.node import FusionNode  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402
from skelsplat_ros.tracking.recording import track_streaming  # noqa: E402

FPS = 20.0
FRAMES = 50


def test_replayed_bag_through_the_node_on_sim_time_matches_the_offline_route(ros_env, tmp_path):
    scenario = make_scenario("lab", num_frames=FRAMES, fps=FPS, seed=6)
    write_keypoints_bag(tmp_path / "rec", scenario.rig.names, scenario.keypoints, FPS, "h36m17", rig=scenario.rig,
                        latency=0.03)
    assert (time.time_ns() - START_NS) * 1e-9 > 2.0  # older than max_stamp_age: stale to a node on wall time
    frames = read_bag_frames(tmp_path / "rec", "h36m17", 17)
    # The node tracks people: its offline twin is the tracker over the same frames (one detection slot per view).
    offline = track_streaming(frames.rigs[0], scenario.skeleton, frames.keypoints[:, :, None],
                              preset_config("default", "robust"), frames.fps)
    expected = {stamp: dict(zip(offline.track_ids.tolist(), people))
                for stamp, people in zip(frames.stamps_ns.tolist(), offline.joints)}

    context = Context()
    rclpy.init(context=context, args=[])
    node = FusionNode(context=context, parameter_overrides=[
        Parameter("use_sim_time", value=True), Parameter("cameras", value=scenario.rig.names),
        Parameter("method", value="robust"), Parameter("threads", value=0),
        Parameter("worker_queue", value=FRAMES)])  # every frame fused, however loaded the machine: this is no latency test
    probe = Node("replay_probe", context=context)
    received: dict[int, tuple[int, np.ndarray]] = {}
    probe.create_subscription(Skeleton3DArray, "skeletons", lambda m: received.__setitem__(
        stamp_to_ns(m.header.stamp), (m.skeletons[0].id, skeleton_arrays(m.skeletons[0])[0])) if m.skeletons
        else None, QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=lambda: _spin(executor), daemon=True)
    thread.start()
    try:
        play_bag(tmp_path / "rec")
        deadline = time.monotonic() + 10.0
        while len(received) < FRAMES and time.monotonic() < deadline:
            time.sleep(0.05)
        counters = node.counters()
    finally:
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=5.0)
        node.destroy_node()
        probe.destroy_node()
        context.try_shutdown()
    assert counters.get("rejected.stale_stamp", 0) == 0 and counters.get("rejected.future_stamp", 0) == 0, counters
    assert len(received) >= 0.9 * FRAMES, (len(received), {k: v for k, v in counters.items() if v})
    assert int(frames.stamps_ns[0]) in received, "the recording's first frame was not fused"
    for stamp, (track_id, joints) in received.items():
        np.testing.assert_allclose(joints, expected[stamp][track_id], atol=1e-9)


def test_a_bag_played_into_a_node_started_at_the_same_moment_loses_no_frame(ros_env, tmp_path):
    """The node (a process of its own, the default SkelSplat method) and the replay start together: the replay
    waits while the node imports and warms up, and starts once the node subscribes."""
    from skelsplat_ros.geometry.calibration import save_calibration
    from skelsplat_ros.ros.demo import start_node_process, stop_processes

    fps, count = 30.0, 60
    scenario = make_scenario("lab", num_frames=count, fps=fps, seed=7)
    stamps = write_keypoints_bag(tmp_path / "rec", scenario.rig.names, scenario.keypoints, fps, "h36m17",
                                 latency=0.03)
    save_calibration(scenario.rig, tmp_path / "calibration.toml")
    context = Context()
    rclpy.init(context=context, args=[])
    probe = Node("replay_probe", context=context)
    received: set[int] = set()
    probe.create_subscription(Skeleton3DArray, "skeletons", lambda m: received.add(stamp_to_ns(m.header.stamp)),
                              QoSProfile(depth=100))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    thread = threading.Thread(target=lambda: _spin(executor), daemon=True)
    thread.start()
    node = start_node_process("skelsplat_ros.ros.node", {"use_sim_time": True,
                                                          "calibration_file": str(tmp_path / "calibration.toml")},
                              tmp_path / "node.log")
    try:
        player = play_process(tmp_path / "rec")
        out, err = player.communicate(timeout=120)
        assert player.returncode == 0, err
        deadline = time.monotonic() + 5.0
        while len(received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_processes([node])
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=5.0)
        probe.destroy_node()
        context.try_shutdown()
    fused = [int(s) for s in stamps if int(s) in received]
    print(f"{len(fused)}/{count} frames out; play: {out.strip()} {err.strip()}")
    assert int(stamps[0]) in received, "the first frame of the recording was not fused"
    assert len(fused) >= 0.9 * count, (tmp_path / "node.log").read_text()[-2000:]


def test_play_with_nobody_listening_says_so_and_plays_nothing(ros_env, tmp_path):
    scenario = make_scenario("lab", num_frames=5, fps=FPS, seed=1)
    write_keypoints_bag(tmp_path / "rec", scenario.rig.names, scenario.keypoints, FPS, "h36m17")
    player = play_process(tmp_path / "rec", "--wait", "1")
    out, err = player.communicate(timeout=60)
    assert player.returncode == 2, (out, err)
    assert "nobody subscribes to /cam0/keypoints, /cam1/keypoints" in err and "nothing played" in err
    assert "played" not in out


def _spin(executor) -> None:
    try:
        executor.spin()
    except Exception:  # the context shut down under it
        pass
