"""Seeded fuzz of the real node over DDS: a misbehaving detector sends three malformed messages per valid one.

The hostile rig (skelsplat_ros/ros/hostile.py) publishes, on each camera's topic, the valid keypoints of a simulated
recording among malformed ones (wrong lengths, NaN/inf/1e38 pixels, confidences outside [0, 1], 0-50 people,
unknown or empty skeleton names, odd frame ids, stamps at 0 or far away), most of them with the valid message's
stamp. The node must keep fusing the valid frames, accurately, count every rejection by kind, and never call a
camera dead. The longer run with latency and memory is scripts/bench_reliability.py.
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
from skelsplat_ros.ros.node import FusionNode  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402
from skelsplat_ros.sim.hostile import MALFORMATIONS  # noqa: E402

from node_harness import Probe, Spinner, wait_until  # noqa: E402  (test/ros is on sys.path: pytest prepend)

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
    hostile = HostileRigNode(scenario, RATE, malformed_per_valid=3, seed=11, context=rclpy_context)
    # The rig publishes from a thread of its own, as a detector process would: listening never delays it.
    rig_spinner = Spinner(rclpy_context, [hostile])
    spinner = Spinner(rclpy_context, [fusion, probe.node])
    try:
        assert wait_until(lambda: probe.fused(), timeout=15.0), f"nothing fused: {fusion.counters()}"
        start_ns = time.time_ns()
        time.sleep(SECONDS)
        stop_ns = time.time_ns() - 300_000_000  # the last frames may still be on their way
        time.sleep(0.6)  # one more diagnostics period
        valid = [ns for ns in list(hostile.frame_of_stamp) if start_ns <= ns < stop_ns]
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
        diagnostics = probe.diagnostics[-1]
        assert diagnostics["dead_cameras"] == "" and diagnostics["lagging_cameras"] == ""
    finally:
        rig_spinner.stop()
        spinner.stop()
        for node in (fusion, probe.node, hostile):
            node.destroy_node()
