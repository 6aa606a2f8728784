"""A fresh node is ready when it subscribes (real nodes over DDS on loopback, a few seconds each).

The node warms up before its keypoint subscriptions exist, so a detector that starts sending the moment it sees
them (the sim rig's ``wait_for_node``) has its very first frame fused, for one person and for several; the CameraInfo
and TF of the CameraInfo + TF route arrive while it warms up; and a warm-up that fails is logged, not fatal.
"""

from __future__ import annotations

import gc
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from rclpy.parameter import Parameter  # noqa: E402

from skelsplat_ros.fusion import preset_config  # noqa: E402
from skelsplat_ros.ros.conversions import stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.node import NODE_NAME, FusionNode  # noqa: E402
from skelsplat_ros.ros.rig_publisher import RigPublisherNode  # noqa: E402
from skelsplat_ros.ros.sim_rig import SimRigNode  # noqa: E402

from node_harness import CAMERAS, Probe, Spinner, wait_drained, wait_until  # noqa: E402  (test/ros on sys.path)

FRAMES = 45  # 1.5 s at 30 Hz


def _sim_rig(context, calibration, people: int = 1, **params) -> SimRigNode:
    """The lab rig at 30 Hz, sending nothing until the fusion node subscribes (as a detector started first would
    once it sees the subscription)."""
    return SimRigNode(context=context, parameter_overrides=[
        Parameter("rig", value="lab"), Parameter("people", value=people), Parameter("rate", value=30.0),
        Parameter("noise", value="realistic"), Parameter("motion_seconds", value=10.0),
        Parameter("calibration_out", value=str(calibration)), Parameter("wait_for_node", value=NODE_NAME)]
        + [Parameter(name, value=value) for name, value in params.items()])


def _run(context, sim: SimRigNode, fusion: FusionNode, others=()) -> tuple[list[int], dict[int, object]]:
    """Spin until the rig sent ``FRAMES`` frames and they had time to come out; returns the stamps sent (ns, in
    order) and the outputs by stamp. The rig spins in its own thread, as a detector process would."""
    probe = Probe(context)
    rig_spinner = Spinner(context, [sim, *others])
    spinner = Spinner(context, [fusion, probe.node])
    try:
        assert wait_until(lambda: len(sim.frame_of_stamp) >= FRAMES, timeout=60.0), "the rig never started"
        rig_spinner.stop()
        assert wait_drained(fusion, probe)
    finally:
        rig_spinner.stop()
        spinner.stop()
        probe.node.destroy_node()
    sent = list(sim.frame_of_stamp)[:FRAMES]
    out = {stamp_to_ns(m.header.stamp): m for _, m in probe.skeletons}
    return sent, out


@pytest.mark.parametrize("people", [1, 3])
def test_the_first_frame_sent_once_the_node_subscribes_is_fused(rclpy_context, tmp_path, people):
    calibration = tmp_path / "calibration.toml"
    sim = _sim_rig(rclpy_context, calibration, people)
    fusion = FusionNode(context=rclpy_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)),  # the default method, SkelSplat
        # Frames are never dropped for a busy fusion thread here (this test process runs every node, on a loaded
        # machine): a frame missing is one the node was not ready for.
        Parameter("worker_queue", value=2 * FRAMES)])
    try:
        sent, out = _run(rclpy_context, sim, fusion)
        counters = fusion.counters()
        frozen = gc.get_freeze_count()
    finally:
        fusion.destroy_node()
        sim.destroy_node()
    # After its warm-up the node freezes what is alive (no full collection of it in a frame), and thaws it when closed.
    assert frozen > 10_000 and gc.get_freeze_count() == 0
    fused = [ns for ns in sent if ns in out]
    print(f"{people} people: {len(fused)}/{len(sent)} frames out from the first sent; {counters}")
    assert sent[0] in out, "the first frame sent after the subscription appeared was not fused"
    assert len(fused) >= 0.95 * len(sent), counters  # best effort: a lost message may cost a frame
    # A person is published once their bone lengths are known (fusion/output.py): from their bone_warmup-th frame.
    warm_up = preset_config("default").bone_warmup
    assert all(out[ns].skeletons for ns in sent[warm_up:warm_up + 5] if ns in out), "no skeleton in the first frames"


def test_no_keypoint_subscription_before_the_warm_up_and_camera_info_and_tf_arrive_meanwhile(rclpy_context, tmp_path,
                                                                                              monkeypatch):
    """CameraInfo + TF route, with a slow warm-up (held 1 s here): while it warms up the node has no keypoint
    subscription (a detector sees nobody to send to) and its executor keeps going (diagnostics say so, the rig's
    CameraInfo and /tf_static are taken in); the first frame sent afterwards is fused with all four views."""
    import skelsplat_ros.tracking.warmup as warmup

    real = warmup.warm_up

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(warmup, "warm_up", slow)
    calibration = tmp_path / "calibration.toml"
    sim = _sim_rig(rclpy_context, calibration)  # writes the calibration the rig publisher reads
    rig = RigPublisherNode(context=rclpy_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration))])
    fusion = FusionNode(context=rclpy_context, parameter_overrides=[
        Parameter("cameras", value=CAMERAS), Parameter("method", value="robust"),
        Parameter("diagnostics_period", value=0.2)])
    probe = Probe(rclpy_context)
    spinner = Spinner(rclpy_context, [rig, fusion, probe.node])
    try:
        def known() -> bool:
            return all(fusion.rig_source.intrinsics(c) is not None for c in CAMERAS) and len(
                fusion.rig_source.buffer.frames()) > len(CAMERAS) and bool(probe.diagnostics)

        assert wait_until(known, timeout=10.0)
        warming = not fusion.ready.is_set()
        subscribed_while_warming = [probe.node.count_subscribers(f"/{c}/keypoints") for c in CAMERAS]
    finally:
        spinner.stop()
        probe.node.destroy_node()
    try:
        sent, out = _run(rclpy_context, sim, fusion, others=[rig])
        counters = fusion.counters()
    finally:
        fusion.destroy_node()
        rig.destroy_node()
        sim.destroy_node()
    assert warming, "CameraInfo and TF came only after the node was ready"
    assert subscribed_while_warming == [0] * len(CAMERAS)
    assert sim.publishing_since is not None and fusion.ready.is_set()
    assert sent[0] in out and out[sent[0]].skeletons, counters
    assert max(out[sent[0]].skeletons[0].num_views) == 4, counters
    assert not any(key.startswith("tf.") and n for key, n in counters.items()), counters


def test_a_node_whose_warm_up_fails_still_starts_and_says_so(rclpy_context, tmp_path, monkeypatch, capfd):
    import skelsplat_ros.tracking.warmup as warmup

    def broken(*_args, **_kwargs):
        raise RuntimeError("injected warm-up failure")

    monkeypatch.setattr(warmup, "warm_up", broken)
    calibration = tmp_path / "calibration.toml"
    sim = _sim_rig(rclpy_context, calibration)
    fusion = FusionNode(context=rclpy_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)), Parameter("method", value="robust")])
    try:
        sent, out = _run(rclpy_context, sim, fusion)
    finally:
        fusion.destroy_node()
        sim.destroy_node()
    assert fusion.ready.is_set()
    log = capfd.readouterr()
    assert "warm-up failed" in log.err + log.out and "injected warm-up failure" in log.err + log.out
    assert sum(1 for ns in sent if ns in out) >= 0.9 * len(sent)
