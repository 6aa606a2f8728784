"""A replayed 3-person scene through the real fusion node over DDS on loopback (about 10 s).

A sender node publishes the scene frame by frame, in phases: normal; one camera listing 50 people (capped and
counted, the node keeps its pace and its ids); one person gone from every view (the track ends and its markers are
deleted).
"""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from skelsplat_ros.msg import Keypoints2DArray  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from skelsplat_ros.ros.conversions import skeleton_arrays, stamp_to_ns  # noqa: E402
from skelsplat_ros.ros.demo import match_people  # noqa: E402
from skelsplat_ros.ros.node import FusionNode  # noqa: E402
from skelsplat_ros.sim.scenes import make_multi_person_scenario  # noqa: E402

from node_harness import CAMERAS, Probe, Spinner, send_scene, wait_until  # noqa: E402  (test/ros is on sys.path: pytest prepend)




# --- a replayed scene: 50 people in one view, then a person leaves -------------------------------------------------


def _crowd(people: np.ndarray, total: int, rng: np.random.Generator, size: np.ndarray) -> np.ndarray:
    """``people [S, J, 3]`` plus person-like ghosts (copies shifted within the ``size`` (w, h) image, so that input
    validation keeps them) up to ``total``, shuffled."""
    ghosts = people[rng.integers(0, len(people), total - len(people))].copy()
    ghosts[..., :2] = np.clip(ghosts[..., :2] + rng.uniform(-400, 400, (len(ghosts), 1, 2)), 0, size - 1)
    ghosts[..., 2] *= 0.8
    crowd = np.concatenate([people, ghosts])
    return crowd[rng.permutation(len(crowd))]


@pytest.fixture(scope="module")
def replay_run(module_context, tmp_path_factory):
    """A sender replays a 3-person scene at 15 Hz: 3 s normal, 3 s with 50 people listed by cam0, then one person
    missing from every view for 2 s (track_delete_after 0.5 s)."""
    from skelsplat_ros.geometry.calibration import save_calibration

    scene = make_multi_person_scenario("lab", 3, num_frames=200, fps=15.0, noise="clean", seed=6, enter_leave=False)
    calibration = tmp_path_factory.mktemp("replay") / "calibration.toml"
    save_calibration(scene.rig, calibration)
    fusion = FusionNode(context=module_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)), Parameter("method", value="robust"),
        Parameter("track_delete_after", value=0.5), Parameter("diagnostics_period", value=0.3),
        Parameter("max_stamp_age", value=10.0),
    ])
    probe = Probe(module_context)
    sender = Node("sender", context=module_context)
    pubs = {c: sender.create_publisher(Keypoints2DArray, f"{c}/keypoints", qos_profile_sensor_data) for c in CAMERAS}
    spinner = Spinner(module_context, [fusion, probe.node, sender])
    rng = np.random.default_rng(0)
    leaving = 1
    phases: dict[str, tuple[int, int]] = {}
    frame_of_stamp: dict[int, int] = {}
    try:
        # The node's publishers exist from its start; its subscriptions once it is ready: send from that moment.
        assert wait_until(lambda: probe.node.count_publishers("skeletons") > 0, timeout=10.0)
        assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), timeout=30.0)
        frame = 0

        def send(seconds: float, phase: str) -> None:
            nonlocal frame

            def slots_of(view, slots, person):
                if phase == "leave":
                    return slots[person != leaving]
                if phase == "crowd" and view == 0:
                    return _crowd(slots, 50, rng, scene.rig.sizes[0])
                return slots

            frame, phases[phase] = send_scene(pubs, scene, frame, seconds, 15.0, frame_of_stamp, slots_of)

        send(3.0, "normal")
        send(3.0, "crowd")
        send(2.0, "leave")
        time.sleep(0.4)  # the last frames out, one more diagnostics period
        yield {"fusion": fusion, "probe": probe, "scene": scene, "phases": phases, "leaving": leaving,
               "frame_of_stamp": frame_of_stamp}
    finally:
        spinner.stop()
        for node in (fusion, probe.node, sender):
            node.destroy_node()


def _in_phase(run: dict, phase: str) -> list:
    start, stop = run["phases"][phase]
    return [m for _, m in run["probe"].skeletons if start <= stamp_to_ns(m.header.stamp) < stop]


def _track_of_person(run: dict, messages: list) -> dict[int, collections.Counter]:
    """``{person: Counter(track id)}`` over ``messages``, matched against the scene's ground truth."""
    scene, found = run["scene"], collections.defaultdict(collections.Counter)
    for msg in messages:
        frame = run["frame_of_stamp"].get(stamp_to_ns(msg.header.stamp))
        if frame is None:
            continue
        tracks = {s.id: skeleton_arrays(s)[0] for s in msg.skeletons}
        truth = {p: scene.ground_truth[frame, p] for p in range(scene.num_people)}
        for track, (person, _) in match_people(tracks, truth).items():
            found[person][track] += 1
    return found


def test_a_view_with_50_people_is_capped_counted_and_the_node_keeps_up(replay_run):
    fusion, phases = replay_run["fusion"], replay_run["phases"]
    counters = fusion.counters()
    crowd_frames = sum(1 for ns in replay_run["frame_of_stamp"] if phases["crowd"][0] <= ns < phases["crowd"][1])
    assert counters["capped.views"] >= 0.9 * crowd_frames, (counters, crowd_frames)  # best effort: a few may be lost
    assert counters["capped.people"] == counters["capped.views"] * (50 - 20)  # default max_people_per_view 20
    # Keeping up: the same share of the frames sent comes out as before the crowd (the node fuses the newest frame
    # when it falls behind, so a slower node would publish fewer), and the same three people are found.
    normal, crowd = _in_phase(replay_run, "normal"), _in_phase(replay_run, "crowd")
    sent = {phase: sum(1 for ns in replay_run["frame_of_stamp"] if phases[phase][0] <= ns < phases[phase][1])
            for phase in ("normal", "crowd")}
    print(f"frames out / sent: normal {len(normal)}/{sent['normal']}, 50 people in cam0 {len(crowd)}/{sent['crowd']}")
    assert len(crowd) / sent["crowd"] >= 0.8 * len(normal) / sent["normal"]
    before, during = _track_of_person(replay_run, normal), _track_of_person(replay_run, crowd)
    assert set(during) == {0, 1, 2}
    for person in during:  # the same id before and during
        assert during[person].most_common(1)[0][0] == before[person].most_common(1)[0][0], (before, during)
    assert fusion.counters().get("fusion_errors", 0) == 0
    assert int(replay_run["probe"].diagnostics[-1]["capped.views"]) >= 1


def test_a_track_that_ends_gets_its_markers_deleted(replay_run):
    probe, phases = replay_run["probe"], replay_run["phases"]
    before = _track_of_person(replay_run, _in_phase(replay_run, "crowd"))
    gone = before[replay_run["leaving"]].most_common(1)[0][0]
    stayed = {before[p].most_common(1)[0][0] for p in before if p != replay_run["leaving"]}
    late = [m for m in _in_phase(replay_run, "leave") if stamp_to_ns(m.header.stamp) > phases["leave"][0] + 1e9]
    assert late, f"no frame out more than 1 s after the person left: {replay_run['fusion'].counters()}"
    assert all(gone not in {s.id for s in m.skeletons} for m in late), (gone, [[s.id for s in m.skeletons] for m in late])
    assert all(stayed <= {s.id for s in m.skeletons} for m in late[-5:]), (
        stayed, [[s.id for s in m.skeletons] for m in late])
    deletes = [(msg, m) for msg in probe.markers for m in msg.markers if m.action == Marker.DELETE and m.id == gone]
    assert {m.ns for _, m in deletes} == {"skelsplat_joints", "skelsplat_bones"}, (gone, len(probe.markers))
    assert all(stamp_to_ns(m.header.stamp) >= phases["leave"][0] for _, m in deletes)
    assert not any(m.action == Marker.DELETE and m.id in stayed for msg in probe.markers for m in msg.markers
                   if stamp_to_ns(m.header.stamp) >= phases["leave"][0])
    assert replay_run["fusion"].counters()["tracks.ended"] >= 1
