"""The fusion node's ROS4HRI output read as an HRI client reads it, over real DDS on loopback (about 10 s).

A sender replays a 3-person scene at 15 Hz in phases: people 0 and 1; person 2 enters; person 0 leaves (its track
ends); person 0 comes back (a new body). The node runs with ``hri`` (its default) and ``hri_reference_frame:
base_link``, which a static transform places in the world. The client, like libhri: reads
``/humans/bodies/tracked``; subscribes each new body's ``/humans/bodies/<id>/urdf`` (transient local: subscribed
after it was sent) and parses it with a URDF library (yourdfpy); feeds ``/tf`` and ``/tf_static`` into the
project's own TF buffer and looks up ``base_link -> body_<id>`` at the latest time.
"""

from __future__ import annotations

import io
import string
import time
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("hri_msgs.msg")
yourdfpy = pytest.importorskip("yourdfpy")

from geometry_msgs.msg import TransformStamped  # noqa: E402
from hri_msgs.msg import IdsList  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from skelsplat_ros.msg import Keypoints2DArray  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from skelsplat_ros.geometry.transforms import TransformBuffer, TransformError  # noqa: E402
from skelsplat_ros.ros.conversions import skeleton_arrays, stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.hri import BODY_ID_LENGTH, TRACKED_TOPIC, urdf_topic  # noqa: E402
from skelsplat_ros.ros.node import FusionNode  # noqa: E402
from skelsplat_ros.ros.tf_listener import TfListener  # noqa: E402
from skelsplat_ros.sim.scenes import make_multi_person_scenario  # noqa: E402

from node_harness import CAMERAS, Probe, Spinner, send_scene, wait_until  # noqa: E402  (test/ros is on sys.path: pytest prepend)

RATE_HZ = 15.0
PHASES = (("nobody", set(), 0.5), ("two", {0, 1}, 2.5), ("enter", {0, 1, 2}, 2.0), ("leave", {1, 2}, 1.5), ("back", {0, 1, 2}, 2.0))
"""(name, people present, seconds)."""
BASE_LINK = "base_link"
WORLD_T_BASE = (np.array([1.0, -0.5, 0.0]), np.array([0.0, 0.0, np.sin(0.3), np.cos(0.3)]))  # 0.6 rad about z


class HriClient:
    """What an HRI client reads: the tracked ids, each body's URDF (subscribed when its id first shows), TF."""

    def __init__(self, context) -> None:
        self.node = Node("hri_client", context=context)
        self.buffer = TransformBuffer(cache_ns=60_000_000_000, jump_ns=60_000_000_000)  # the whole run
        self.listener = TfListener(self.node, self.buffer)
        self.tracked: list[tuple[int, list[str]]] = []  # (stamp ns, ids)
        self.urdf: dict[str, str] = {}
        self.latest: dict[str, np.ndarray] = {}  # body id -> base_link_T_body translation at the latest lookup
        self.lookup_failures: list[str] = []
        self._urdf_qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                                    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(IdsList, TRACKED_TOPIC, self._on_tracked, QoSProfile(depth=100))

    def _on_tracked(self, msg: IdsList) -> None:
        self.tracked.append((stamp_to_ns(msg.header.stamp), list(msg.ids)))
        for body in msg.ids:
            if body not in self.urdf:
                self.urdf[body] = ""
                self.node.create_subscription(String, urdf_topic(body),
                                              lambda m, body=body: self.urdf.__setitem__(body, m.data), self._urdf_qos)

    def look_up(self, body: str) -> None:
        """``base_link -> body_<id>`` at the latest time, as libhri's transformFromReference does."""
        try:
            self.latest[body] = self.buffer.lookup_latest(BASE_LINK, f"body_{body}")[0].translation
        except TransformError as error:
            self.lookup_failures.append(f"{body}: {error}")


@pytest.fixture(scope="module")
def hri_run(module_context, tmp_path_factory):
    from skelsplat_ros.geometry.calibration import save_calibration

    scene = make_multi_person_scenario("lab", 3, num_frames=200, fps=RATE_HZ, noise="realistic", seed=6,
                                       enter_leave=False)
    calibration = tmp_path_factory.mktemp("hri") / "calibration.toml"
    save_calibration(scene.rig, calibration)
    fusion = FusionNode(context=module_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)), Parameter("hri_reference_frame", value=BASE_LINK),
        Parameter("track_delete_after", value=0.4), Parameter("max_stamp_age", value=10.0),
    ])
    probe = Probe(module_context)
    client = HriClient(module_context)
    sender = Node("sender", context=module_context)
    pubs = {c: sender.create_publisher(Keypoints2DArray, f"{c}/keypoints", qos_profile_sensor_data) for c in CAMERAS}
    static = sender.create_publisher(TFMessage, "/tf_static", QoSProfile(
        depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL))
    placement = TransformStamped(header=Header(frame_id="world"), child_frame_id=BASE_LINK)
    placement.transform.translation.x, placement.transform.translation.y, placement.transform.translation.z = \
        WORLD_T_BASE[0].tolist()
    q = placement.transform.rotation
    q.x, q.y, q.z, q.w = WORLD_T_BASE[1].tolist()
    static.publish(TFMessage(transforms=[placement]))
    spinner = Spinner(module_context, [fusion, probe.node, client.node, sender])
    phases: dict[str, tuple[int, int]] = {}
    frame_of_stamp: dict[int, int] = {}
    try:
        assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), timeout=30.0)
        frame = 0

        def look_up_bodies() -> None:
            for body in client.tracked[-1][1] if client.tracked else []:
                client.look_up(body)

        for name, present, seconds in PHASES:
            frame, phases[name] = send_scene(
                pubs, scene, frame, seconds, RATE_HZ, frame_of_stamp,
                lambda view, slots, person, present=present: slots[np.isin(person, list(present))], look_up_bodies)
        wait_until(lambda: client.tracked and client.tracked[-1][0] >= max(frame_of_stamp) and all(client.urdf.values()),
                   timeout=5.0)
        yield {"fusion": fusion, "probe": probe, "client": client, "scene": scene, "phases": phases,
               "frame_of_stamp": frame_of_stamp}
    finally:
        spinner.stop()
        for node in (fusion, probe.node, client.node, sender):
            node.destroy_node()


def _ids_in(run: dict, phase: str) -> list[list[str]]:
    start, stop = run["phases"][phase]
    return [ids for stamp, ids in run["client"].tracked if start <= stamp < stop]


def test_tracked_is_published_every_frame_with_short_random_unique_ids(hri_run):
    client, probe = hri_run["client"], hri_run["probe"]
    stamps = [stamp for stamp, _ in client.tracked]
    assert len(stamps) == len(set(stamps)) and stamps == sorted(stamps)
    # One IdsList per fused frame, the empty ones included (the cameras' first frames see nobody).
    assert set(stamps) == {stamp_to_ns(m.header.stamp) for _, m in probe.skeletons}
    assert _ids_in(hri_run, "nobody") and not any(_ids_in(hri_run, "nobody"))
    assert hri_run["fusion"].counters().get("fusion_errors", 0) == 0
    bodies = {body for _, ids in client.tracked for body in ids}
    assert all(len(b) == BODY_ID_LENGTH and set(b) <= set(string.ascii_lowercase) for b in bodies), bodies


def test_a_body_that_leaves_is_never_tracked_again_and_a_newcomer_gets_a_new_id(hri_run):
    two, enter, leave, back = (_ids_in(hri_run, phase) for phase, _, _ in PHASES[1:])
    settled = lambda frames: frames[len(frames) // 2:]  # noqa: E731  (after the tracker confirmed or ended them)
    assert all(len(ids) == 2 for ids in settled(two)) and all(len(ids) == 3 for ids in settled(enter))
    assert all(len(ids) == 2 for ids in settled(leave)) and all(len(ids) == 3 for ids in settled(back))
    first = set(settled(two)[-1])
    gone = set(settled(enter)[-1]) - set(settled(leave)[-1])
    assert len(gone) == 1 and gone <= first
    # Once a body has left the list it never comes back; the person who returns is a new body.
    left_at: dict[str, int] = {}
    for index, (_, ids) in enumerate(hri_run["client"].tracked):
        for body in ids:
            assert body not in left_at, f"body {body} tracked again after it left"
        previous = hri_run["client"].tracked[index - 1][1] if index else []
        left_at.update({body: index for body in set(previous) - set(ids)})
    assert len(set(settled(back)[-1]) - set(settled(leave)[-1])) == 1
    assert not (set(settled(back)[-1]) & gone)


def test_every_link_of_every_tracked_body_is_in_tf_in_every_frame(hri_run):
    client = hri_run["client"]
    assert client.urdf and all(client.urdf.values()), "a tracked body without its URDF"
    checked = 0
    for body, text in client.urdf.items():
        urdf = yourdfpy.URDF.load(io.StringIO(text), build_scene_graph=True, load_meshes=False)
        assert urdf.base_link == f"body_{body}"
        links = set(urdf.link_map)
        assert {f"{name}_{body}" for name in ("head", "torso", "l_wrist", "r_ankle")} <= links
        for stamp, ids in client.tracked:
            if body not in ids:
                continue
            for link in links:  # exactly at the frame's stamp: this frame's transforms, not an older one
                client.buffer.lookup(BASE_LINK, link, stamp)
                checked += 1
    assert checked > 1000


def test_body_frames_sit_on_the_hips_in_the_reference_frame_and_skeletons_carry_the_body_ids(hri_run):
    client, probe = hri_run["client"], hri_run["probe"]
    assert not client.lookup_failures[3:], client.lookup_failures[:5]  # the first lookup of a body may precede its TF
    world_T_base_rotation = np.array([[np.cos(0.6), -np.sin(0.6), 0], [np.sin(0.6), np.cos(0.6), 0], [0, 0, 1]])
    compared = 0
    for _, msg in probe.skeletons[-30:]:
        stamp = stamp_to_ns(msg.header.stamp)
        for skeleton in msg.skeletons:
            joints, confidence = skeleton_arrays(skeleton)
            names = list(skeleton.joint_names)
            # complete (on with hri): every joint has a position, the filled ones with confidence 0
            positions = np.array([[p.x, p.y, p.z] for p in skeleton.positions])
            assert np.isfinite(positions).all()
            hips = 0.5 * (positions[names.index("l_hip")] + positions[names.index("r_hip")])
            body = client.buffer.lookup(BASE_LINK, f"body_{skeleton.body_id}", stamp)
            expected = world_T_base_rotation.T @ (hips - WORLD_T_BASE[0])
            np.testing.assert_allclose(body.translation, expected, atol=1e-6)
            # z towards the head: the shoulders lie above the body frame's x-y plane.
            shoulders = 0.5 * (positions[names.index("l_shoulder")] + positions[names.index("r_shoulder")])
            up = world_T_base_rotation @ body.rotation[:, 2]
            assert up @ (shoulders - hips) > 0.9 * np.linalg.norm(shoulders - hips)
            compared += 1
    assert compared >= 30
