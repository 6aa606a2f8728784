"""The node's receive path, message by message (serialized bytes into the raw-subscription callback; no DDS): invalid
messages never refresh liveness, never move the clock-jump or staleness logic, never displace a valid message."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rclpy.time import Time as RosTime  # noqa: E402

from skelsplat_ros.ros.conversions import keypoints_msg  # noqa: E402
from skelsplat_ros.ros.hostile import hostile_msg  # noqa: E402
from skelsplat_ros.sim.hostile import MALFORMATIONS, HostileDetector  # noqa: E402

from node_harness import CAMERAS, robust_node  # noqa: E402  (test/ros is on sys.path: pytest prepend)



def _node(rclpy_context, tmp_path, *parameters: Parameter):
    return robust_node(rclpy_context, tmp_path, 4, *parameters, num_frames=10)


@pytest.fixture
def node_and_frames(rclpy_context, tmp_path):
    # The stamps are fixed before the messages are sent, their age is judged when each is read: a loaded machine
    # that stalls the test for 2 s made valid messages stale (the hostile stamps are at least 10 s off).
    node, scenario = _node(rclpy_context, tmp_path, Parameter("max_wait", value=5.0),
                           Parameter("max_stamp_age", value=8.0))
    frames: list = []
    node._enqueue = frames.extend  # the synchronized frames, before fusion
    try:
        yield node, frames, scenario
    finally:
        node.destroy_node()


def _valid(scenario, view: int, frame: int, stamp_ns: int) -> bytes:
    return serialize_message(keypoints_msg(scenario.keypoints[view, frame], RosTime(nanoseconds=stamp_ns).to_msg(),
                                           f"{CAMERAS[view]}_optical", "h36m17"))


def test_garbage_never_displaces_the_valid_message_of_its_stamp_and_never_keeps_a_camera_alive(node_and_frames):
    node, frames, scenario = node_and_frames
    hostile = HostileDetector(scenario.rig.sizes, 17, "h36m17", seed=3)
    now_ns = node.get_clock().now().nanoseconds
    for k in range(3):
        stamp = now_ns - (3 - k) * 33_000_000
        for view in range(3):  # cam3 sends only garbage, of every kind, at the valid stamps
            garbage = [hostile.message(view, f"{CAMERAS[view]}_optical", kind) for kind in MALFORMATIONS]
            for message in garbage[:5]:
                node._on_keypoints(CAMERAS[view], serialize_message(hostile_msg(message, stamp)))
            node._on_keypoints(CAMERAS[view], _valid(scenario, view, k, stamp))
            for message in garbage[5:]:
                node._on_keypoints(CAMERAS[view], serialize_message(hostile_msg(message, stamp)))
        for kind in MALFORMATIONS:
            node._on_keypoints("cam3", serialize_message(hostile_msg(hostile.message(3, "cam3_optical", kind), stamp)))
    frames += node.sync.poll(float("inf"))
    assert len(frames) == 3
    for k, frame in enumerate(frames):
        assert set(frame.views) == {"cam0", "cam1", "cam2"}
        for view in range(3):
            np.testing.assert_allclose(frame.views[CAMERAS[view]][1], scenario.keypoints[view, k][None])  # [S, J, 3]
    counters = node.counters()
    assert node.sync.last_seen("cam3") is None  # garbage did not make it look alive
    assert counters["dropped.duplicate"] == 0 and counters["dropped.clock_jump"] == 0
    assert counters["accepted"] == 9
    assert sum(v for key, v in counters.items() if key.startswith("rejected.")) == 4 * 3 * len(MALFORMATIONS)


def test_of_two_valid_messages_for_one_stamp_the_better_one_is_kept(node_and_frames):
    node, frames, scenario = node_and_frames
    stamp = node.get_clock().now().nanoseconds
    weak = scenario.keypoints[0, 0].copy()
    weak[:, 2] *= 0.3
    nobody = serialize_message(keypoints_msg(None, RosTime(nanoseconds=stamp).to_msg(), "cam0_optical", "h36m17"))
    node._on_keypoints("cam0", nobody)  # a valid view of nobody first
    node._on_keypoints("cam0", serialize_message(keypoints_msg(weak, RosTime(nanoseconds=stamp).to_msg(),
                                                               "cam0_optical", "h36m17")))
    node._on_keypoints("cam0", _valid(scenario, 0, 0, stamp))  # the confident detection
    node._on_keypoints("cam0", nobody)  # and nobody again: not better
    node._on_keypoints("cam1", _valid(scenario, 1, 0, stamp))
    frames += node.sync.poll(float("inf"))
    assert len(frames) == 1
    np.testing.assert_allclose(frames[0].views["cam0"][1], scenario.keypoints[0, 0][None])  # [S, J, 3]
    assert node.sync.replaced == 2 and node.counters()["dropped.duplicate"] == 3


def test_oversize_and_undecodable_bytes_are_counted(node_and_frames):
    node, frames, _ = node_and_frames
    node._on_keypoints("cam0", b"\x00\x01\x00\x00" + b"\x00" * 10_000_000)
    node._on_keypoints("cam0", b"\x07\x07garbage")
    counters = node.counters()
    assert counters["rejected.oversize"] == 1 and counters["rejected.undecodable"] == 1
    assert node.sync.last_seen("cam0") is None and not frames


def test_after_a_stall_of_the_executor_no_camera_is_called_dead_for_messages_it_has_not_taken_yet(rclpy_context,
                                                                                                  tmp_path):
    """The executor takes nothing for longer than camera_timeout (a loaded machine); when it resumes, the diagnostics
    timer runs before the keypoints waiting in the readers. It must not call the cameras dead: as of the last time
    the node took input, they were sending. Once the node is back and nothing comes, they are dead."""
    node, scenario = _node(rclpy_context, tmp_path, Parameter("camera_timeout", value=0.5))
    reports: list = []
    try:
        node._start_input()  # what the end of the warm-up does in the executor
        node.diag_pub.publish = reports.append
        now_ns = node.get_clock().now().nanoseconds
        # Every message is built before any is taken: the four must arrive together, well inside camera_timeout,
        # also on a loaded machine (building the hostile one in between once took longer than the timeout in CI).
        messages = [(camera, _valid(scenario, view, 0, now_ns)) for view, camera in enumerate(CAMERAS[:3])]
        messages.append(("cam3", serialize_message(hostile_msg(
            HostileDetector(scenario.rig.sizes, 17, "h36m17", seed=1).message(3, "cam3_optical", "nonfinite"),
            now_ns))))
        for camera, data in messages:
            node._on_keypoints(camera, data)
        time.sleep(0.8)  # the stall: no message taken, no timer run
        node._publish_diagnostics()
        node._poll()  # the executor is back: it polls (and would take the waiting messages; there are none)
        time.sleep(0.7)
        node._poll()
        node._publish_diagnostics()
    finally:
        node.destroy_node()
    after_stall, later = ({kv.key: kv.value for kv in r.status[0].values} for r in reports)
    assert (after_stall["dead_cameras"], after_stall["invalid_input_cameras"]) == ("", "cam3")
    assert [after_stall[f"camera.{c}"] for c in CAMERAS] == ["ok", "ok", "ok", "invalid input"]
    assert later["dead_cameras"] == "cam0 cam1 cam2 cam3" and later["invalid_input_cameras"] == ""
