"""Seeded fuzz of the real node over DDS: a misbehaving detector sends three malformed messages per valid one.

The hostile rig (skelsplat_ros/ros/hostile.py) publishes, on each camera's topic, the valid keypoints of a simulated
recording among malformed ones (wrong lengths, NaN/inf/1e38 pixels, confidences outside [0, 1], 0-50 people,
unknown or empty skeleton names, odd frame ids, stamps at 0 or far away), most of them with the valid message's
stamp. The node must keep fusing the valid frames, accurately, from the first one sent (the rig starts once the node
subscribes), count every rejection by kind, and tell the truth about each camera: ``ok`` while valid messages come,
``invalid input`` when only malformed ones do, ``dead`` when nothing does. The longer run with latency and memory is
scripts/bench_reliability.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from rclpy.parameter import Parameter  # noqa: E402

from skelsplat_ros.ros.conversions import skeleton_arrays, stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.hostile import HostileRigNode  # noqa: E402
from skelsplat_ros.ros.node import NODE_NAME, FusionNode  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402
from skelsplat_ros.sim.hostile import MALFORMATIONS  # noqa: E402

from node_harness import Probe, Spinner, wait_drained, wait_until  # noqa: E402  (test/ros is on sys.path: pytest prepend)

RATE = 15.0
SECONDS = 4.0


def test_three_malformed_messages_per_valid_one_cost_no_valid_frame(rclpy_context, tmp_path):
    from skelsplat_ros.geometry.calibration import save_calibration

    scenario = make_scenario("lab", num_frames=200, fps=RATE, noise="realistic", seed=5)
    calibration = tmp_path / "calibration.toml"
    save_calibration(scenario.rig, calibration)
    fusion = FusionNode(context=rclpy_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)), Parameter("method", value="robust"),
        Parameter("diagnostics_period", value=0.5)])
    probe = Probe(rclpy_context)
    hostile = HostileRigNode(scenario, RATE, malformed_per_valid=3, seed=11, wait_for_node=NODE_NAME,
                             context=rclpy_context)
    # The rig publishes from a thread of its own, as a detector process would: listening never delays it.
    rig_spinner = Spinner(rclpy_context, [hostile])
    spinner = Spinner(rclpy_context, [fusion, probe.node])
    try:
        assert wait_until(lambda: hostile.frame_of_stamp, timeout=30.0), "the node never subscribed"
        start_ns = next(iter(hostile.frame_of_stamp))  # the rig's first frame: every frame counts
        time.sleep(SECONDS)
        diagnostics = probe.diagnostics[-1]  # while the rig still sends
        rig_spinner.stop()
        assert wait_drained(fusion, probe)
        valid = list(hostile.frame_of_stamp)
        fused = {stamp_to_ns(m.header.stamp): m for m in probe.fused(start_ns)}
        out = [ns for ns in valid if ns in fused]
        counters = fusion.counters()
        print(f"valid frames {len(valid)}, out {len(out)}; node {sorted(counters.items())}")
        assert len(valid) >= 0.6 * SECONDS * RATE
        assert len(out) >= 0.9 * len(valid), counters
        # Garbage never reached fusion: every output is a valid frame, and accurate.
        assert set(fused) <= set(hostile.frame_of_stamp)
        errors = [np.linalg.norm(skeleton_arrays(fused[ns].skeletons[0])[0]
                                 - scenario.ground_truth[hostile.frame_of_stamp[ns]], axis=-1) for ns in out]
        assert np.nanmean(errors) < 0.05
        # Every kind of malformation was sent and rejected, and counted by kind. Two thirds of the malformed messages
        # carry a valid frame's stamp: had one been accepted, the synchronizer would have counted a duplicate.
        assert set(hostile.sent) == {"valid", *MALFORMATIONS}
        assert counters["dropped.duplicate"] == 0
        assert counters["accepted"] <= hostile.sent["valid"]
        for kind in ("stale_stamp", "future_stamp", "wrong_skeleton", "bad_frame_id", "bad_shape",
                     "wrong_joint_count", "nonfinite", "outside_image", "bad_confidence"):
            assert counters.get(f"rejected.{kind}", 0) > 0, kind
        assert counters.get("fusion_errors", 0) == 0
        assert counters.get("dropped.clock_jump", 0) == 0
        assert start_ns in fused, "the first valid frame was not fused"
        assert diagnostics["dead_cameras"] == "" and diagnostics["lagging_cameras"] == ""
        assert diagnostics["invalid_input_cameras"] == ""
        assert {c: diagnostics[f"camera.{c}"] for c in scenario.rig.names} == dict.fromkeys(scenario.rig.names, "ok")
    finally:
        rig_spinner.stop()
        spinner.stop()
        for node in (fusion, probe.node, hostile):
            node.destroy_node()


def test_a_camera_sending_only_junk_is_invalid_input_and_a_silent_one_dead(rclpy_context, tmp_path):
    """cam0-cam2 send their valid keypoints among malformed messages, cam2 only malformed ones, cam3 nothing: the
    node fuses every valid frame (from cam0 and cam1) and its /diagnostics say cam0 and cam1 ok, cam2 "invalid
    input" (not dead, not alive; with its rejections counted) and cam3 dead."""
    from skelsplat_ros.geometry.calibration import save_calibration

    scenario = make_scenario("lab", num_frames=200, fps=RATE, noise="clean", seed=5)
    calibration = tmp_path / "calibration.toml"
    save_calibration(scenario.rig, calibration)
    fusion = FusionNode(context=rclpy_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)), Parameter("method", value="robust"),
        Parameter("diagnostics_period", value=0.3), Parameter("camera_timeout", value=0.5),
        Parameter("track_confirm_views", value=2)])  # two cameras see the person: published at once
    probe = Probe(rclpy_context)
    hostile = HostileRigNode(scenario, RATE, malformed_per_valid=3, seed=12, wait_for_node=NODE_NAME,
                             invalid_only=("cam2",), silent=("cam3",), context=rclpy_context)
    rig_spinner = Spinner(rclpy_context, [hostile])
    spinner = Spinner(rclpy_context, [fusion, probe.node])
    try:
        assert wait_until(lambda: hostile.frame_of_stamp, timeout=30.0), "the node never subscribed"
        time.sleep(2.0)
        states = fusion.camera_states()
        diagnostics, message = probe.diagnostics[-1], probe.messages[-1]
        rig_spinner.stop()
        assert wait_drained(fusion, probe)
        counters = fusion.counters()
        valid = list(hostile.frame_of_stamp)
        fused = {stamp_to_ns(m.header.stamp) for m in probe.fused()}
    finally:
        rig_spinner.stop()
        spinner.stop()
        for node in (fusion, probe.node, hostile):
            node.destroy_node()
    print(f"{len(fused & set(valid))}/{len(valid)} valid frames out; {message}")
    assert len(fused & set(valid)) >= 0.9 * len(valid), counters
    assert states == {"cam0": "ok", "cam1": "ok", "cam2": "invalid input", "cam3": "dead"}
    assert diagnostics["dead_cameras"] == "cam3" and diagnostics["invalid_input_cameras"] == "cam2"
    assert [diagnostics[f"camera.cam{k}"] for k in range(4)] == ["ok", "ok", "invalid input", "dead"]
    assert int(diagnostics["rejected_messages.cam2"]) >= hostile.sent["valid"]  # 3 malformed per frame, all rejected
    assert diagnostics["rejected_messages.cam3"] == "0" and float(diagnostics["valid_rate_hz.cam2"]) == 0.0
    assert float(diagnostics["valid_rate_hz.cam0"]) > 0.5 * RATE
    assert "no keypoints lately from: cam3" in message and "only invalid keypoints lately from: cam2" in message
