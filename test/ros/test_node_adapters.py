"""The fusion node's ``input`` adapters over real DDS: yolo_ros ``DetectionArray`` and ROS4HRI ``Skeleton2D`` per body
(yolo_msgs generated from minimal definitions, test/ros/message_packages.py; hri_msgs as scripts/setup.sh builds
it) fused like our own keypoints; plus the pure conversions (1-based ids and left-out keypoints; normalised COCO-18; per-body grouping)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from message_packages import ensure_package  # noqa: E402  (test/ros is on sys.path: pytest prepend)
from node_harness import Probe, Spinner, wait_until  # noqa: E402
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_msgs.msg import Header

from skelsplat_ros.geometry.calibration import load_calibration
from skelsplat_ros.ros.conversions import ns_to_stamp, skeleton_arrays
from skelsplat_ros.ros.inputs import COCO18_TO_COCO17, HriFrames, hri_person, yolo_people
from skelsplat_ros.ros.node import FusionNode
from skelsplat_ros.ros.params import StartupError
from skelsplat_ros.sim import generate_motion
from skelsplat_ros.skeleton.models import get_skeleton

CALIBRATION = Path(__file__).resolve().parents[2] / "config" / "sim_rig_lab.toml"


@pytest.fixture(scope="module")
def packages():
    ensure_package("yolo_msgs")


@pytest.fixture(scope="module")
def scene():
    """A coco17 person in the lab rig: ground truth ``[J, 3]``, pixels ``[V, J, 2]`` and image sizes ``[V, 2]``."""
    rig = load_calibration(CALIBRATION)
    joints = generate_motion(get_skeleton("coco17"), 1)[0]
    return rig, joints, rig.project(joints)


def _yolo_array(uv: np.ndarray, stamp_ns: int, frame_id: str, missing: tuple[int, ...] = ()):
    from yolo_msgs.msg import Detection, DetectionArray, KeyPoint2D

    detection = Detection(class_id=0, class_name="person", score=0.9)
    for joint, (x, y) in enumerate(uv):
        if joint not in missing:  # yolo_ros leaves a keypoint under its threshold out of the list
            keypoint = KeyPoint2D(id=joint + 1, score=0.8)
            keypoint.point.x, keypoint.point.y = float(x), float(y)
            detection.keypoints.data.append(keypoint)
    return DetectionArray(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id), detections=[detection])


def _skeleton2d(uv: np.ndarray, size, stamp_ns: int):
    from hri_msgs.msg import NormalizedPointOfInterest2D, Skeleton2D

    coco18 = np.zeros((18, 3))
    coco18[COCO18_TO_COCO17, :2] = uv / size
    coco18[COCO18_TO_COCO17, 2] = 0.8
    coco18[1] = (0.5, 0.5, 0.7)  # the neck, which coco17 has not
    return Skeleton2D(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id="cam"),
                      skeleton=[NormalizedPointOfInterest2D(x=float(x), y=float(y), c=float(c)) for x, y, c in coco18])


def test_yolo_people_reads_one_based_ids_and_leaves_missing_keypoints_missing(packages, scene):
    _, _, uv = scene
    people = yolo_people(_yolo_array(uv[0], 1, "cam0", missing=(0, 16)))
    assert people.shape == (1, 17, 3)
    np.testing.assert_allclose(people[0, 1:16, :2], uv[0, 1:16])
    assert np.isnan(people[0, [0, 16], :2]).all() and np.all(people[0, [0, 16], 2] == 0)


def test_hri_person_scales_normalised_coco18_to_coco17_pixels(packages, scene):
    rig, _, uv = scene
    person = hri_person(_skeleton2d(uv[1], rig.sizes[1], 1), tuple(rig.sizes[1]))
    np.testing.assert_allclose(person[:, :2], uv[1], atol=1e-3)
    np.testing.assert_allclose(person[:, 2], 0.8, rtol=1e-6)


def test_hri_frames_wait_for_every_tracked_body_and_drop_late_ones():
    frames = HriFrames()
    a, b = np.zeros((17, 3)), np.ones((17, 3))
    assert frames.skeleton(10, "a", a) is None
    assert frames.tracked(10, ["a", "b"]) is None  # b's skeleton of stamp 10 is still missing
    out = frames.skeleton(10, "b", b)
    np.testing.assert_array_equal(out, np.stack([a, b]))
    assert frames.skeleton(10, "b", b) is None  # stamp 10 is done: a late copy starts nothing
    assert frames.tracked(20, []).shape == (0, 17, 3)  # nobody tracked: an empty frame at once


def _node(context, kind: str, skeleton: str = "coco17") -> FusionNode:
    return FusionNode(context=context, parameter_overrides=[
        Parameter("calibration_file", value=str(CALIBRATION)), Parameter("skeleton", value=skeleton),
        Parameter("input", value=kind), Parameter("method", value="robust"), Parameter("max_wait", value=0.5),
        Parameter("max_stamp_age", value=0.0), Parameter("track_confirm_frames", value=1)])


def _fused_joints(probe: Probe) -> np.ndarray | None:
    fused = probe.fused()
    if not fused:
        return None
    joints, _ = skeleton_arrays(fused[-1].skeletons[0])
    return joints


@pytest.mark.parametrize("kind", ["yolo", "hri"])
def test_the_fusion_node_fuses_yolo_and_hri_messages_like_its_own(module_context, packages, scene, kind):
    from hri_msgs.msg import IdsList, Skeleton2D
    from yolo_msgs.msg import DetectionArray

    rig, truth, uv = scene
    node = _node(module_context, kind)
    probe = Probe(module_context)
    sender = Node("detectors", context=module_context)
    qos = QoSProfile(depth=10)
    if kind == "yolo":
        pubs = {c: sender.create_publisher(DetectionArray, f"{c}/yolo/detections", qos) for c in rig.names}
    else:
        pubs = {c: sender.create_publisher(IdsList, f"{c}/humans/bodies/tracked", qos) for c in rig.names}
        bodies = {c: sender.create_publisher(Skeleton2D, f"{c}/humans/bodies/b{c}/skeleton2d", qos)
                  for c in rig.names}
    spinner = Spinner(module_context, [node, probe.node, sender])
    try:
        assert wait_until(lambda: all(p.get_subscription_count() for p in pubs.values()), 10.0)

        def send(stamp_ns: int) -> None:
            for v, camera in enumerate(rig.names):
                if kind == "yolo":
                    pubs[camera].publish(_yolo_array(uv[v], stamp_ns, f"{camera}_optical"))
                else:
                    pubs[camera].publish(IdsList(header=Header(stamp=ns_to_stamp(stamp_ns)), ids=[f"b{camera}"]))
                    if bodies[camera].get_subscription_count():  # subscribed once the tracked list named it
                        bodies[camera].publish(_skeleton2d(uv[v], rig.sizes[v], stamp_ns))

        stamps = iter(range(1_000_000_000, 10**12, 33_000_000))
        assert wait_until(lambda: send(next(stamps)) or _fused_joints(probe) is not None, 20.0, step=0.1)
        np.testing.assert_allclose(_fused_joints(probe), truth, atol=1e-3)
        assert node.counters().get("rejected.skeleton", 0) == 0
    finally:
        spinner.stop()
        node.destroy_node()
        probe.node.destroy_node()
        sender.destroy_node()


def test_adapters_need_coco17_and_a_known_input(module_context, packages):
    with pytest.raises(StartupError, match="set skeleton to coco17"):
        _node(module_context, "yolo", skeleton="h36m17")
    with pytest.raises(StartupError, match="input must be one of keypoints, yolo, hri"):
        _node(module_context, "openpose")
