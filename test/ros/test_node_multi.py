"""Several people through the real nodes over DDS on loopback (domain id per run, see conftest.py).

One run of about 10 s: the sim rig with ``people: 3`` (shuffled detections, id -1, ghosts) -> the fusion node ->
a probe that matches the published tracks to the true people of the same capture stamp: ids are stable and belong
to one person each. (The replayed crowd and a track ending are in test_node_replay.py: a module of their own, so
that this module's nodes are gone before that run starts on the same topics.)
"""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from rclpy.parameter import Parameter  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from skelsplat_ros.ros.demo import Monitor  # noqa: E402
from skelsplat_ros.ros.node import NODE_NAME, FusionNode  # noqa: E402
from skelsplat_ros.ros.sim_rig import SimRigNode  # noqa: E402

from node_harness import Probe, Spinner, wait_until  # noqa: E402  (test/ros is on sys.path: pytest prepend)




# --- the sim rig with three people ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_people_run(module_context, tmp_path_factory):
    """Sim rig (lab, 4 cameras, 3 people, realistic noise, 15 Hz) -> fusion node (defaults) -> probe + monitor."""
    calibration = tmp_path_factory.mktemp("three_people") / "calibration.toml"
    sim = SimRigNode(context=module_context, parameter_overrides=[
        Parameter("rig", value="lab"), Parameter("people", value=3), Parameter("rate", value=15.0),
        Parameter("noise", value="realistic"), Parameter("motion_seconds", value=30.0), Parameter("seed", value=4),
        Parameter("calibration_out", value=str(calibration)), Parameter("wait_for_node", value=NODE_NAME),
    ])
    fusion = FusionNode(context=module_context, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)), Parameter("diagnostics_period", value=0.5)])
    probe = Probe(module_context)
    monitor = Monitor()
    monitor.attach(probe.node)
    spinner = Spinner(module_context, [sim, fusion, probe.node])
    try:
        started = wait_until(lambda: any(len(r.tracks) >= 2 for r in monitor.records), timeout=30.0)
        first = time.time()
        wait_until(lambda: time.time() - first > 8.0 and len(monitor.records) >= 40, timeout=20.0)
        yield {"sim": sim, "fusion": fusion, "probe": probe, "monitor": monitor, "started": started, "first": first}
    finally:
        spinner.stop()
        for node in (fusion, sim, probe.node):
            node.destroy_node()


def test_sim_rig_publishes_shuffled_untracked_people_and_truth_per_person(three_people_run):
    sim = three_people_run["sim"]
    assert sim.keypoints.ndim == 5 and sim.ground_truth.shape[1] == 3  # [V, F, S, J, 3], [F, P, J, 3]
    truth_ids = {p for people in three_people_run["monitor"].ground_truth.values() for p in people}
    assert truth_ids <= {0, 1, 2} and len(truth_ids) >= 2
    # The rig sent from the moment the node subscribed, and its first frame came out.
    assert next(iter(sim.frame_of_stamp)) in {r.stamp_ns for r in three_people_run["monitor"].records}


def test_three_people_get_stable_ids_that_each_follow_one_true_person(three_people_run):
    assert three_people_run["started"], "no frame with two or more tracks within 30 s"
    monitor = three_people_run["monitor"]
    # Frames after the tracks had time to be confirmed, with their ground truth received.
    records = [r for r in monitor.records if r.received >= three_people_run["first"] + 1.0 and r.present]
    assert len(records) >= 25, len(records)
    published = sum(len(r.tracks) for r in records)
    matched = sum(len(r.matches) for r in records)
    present = sum(len(r.present) for r in records)
    print(f"{len(records)} frames: {published} skeletons, {matched} matched to {present} true people")
    assert matched >= 0.95 * published, "skeletons that are nobody (300 mm gate)"
    assert matched >= 0.85 * present, "true people without a skeleton"
    # Every track follows one person; a person keeps their id while in the scene.
    people_of_track: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    switches: collections.Counter = collections.Counter()
    last_id: dict[int, int] = {}
    sequence: dict[int, list[int]] = collections.defaultdict(list)
    for record in records:
        for track, (person, _) in record.matches.items():
            people_of_track[track][person] += 1
            sequence[person].append(track)
            if last_id.get(person, track) != track:
                switches[person] += 1
            last_id[person] = track
        last_id = {p: t for p, t in last_id.items() if p in record.present}
    for track, people in people_of_track.items():
        assert people.most_common(1)[0][1] >= 0.98 * sum(people.values()), (track, people)
    # The target: at most one id switch per person per 300 frames (this window is shorter).
    assert max(switches.values(), default=0) <= 1, dict(sequence)
    errors = [error for r in records for _, error in r.matches.values()]
    assert np.mean(errors) < 0.060, f"MPJPE {1e3 * np.mean(errors):.1f} mm"
    # Ids are the message's track ids, and each is published once per frame.
    assert all(len(set(r.tracks)) == len(r.tracks) for r in records)


def test_tf_and_markers_per_track(three_people_run):
    probe, monitor = three_people_run["probe"], three_people_run["monitor"]
    ids = {t for r in monitor.records for t in r.tracks}
    assert len(ids) >= 2  # three people walk through the scene: the loops below must have something to check
    children = {t.child_frame_id for msg in probe.tf for t in msg.transforms}
    for track in ids:
        assert f"pelvis_{track}" in children or any(c.endswith(f"_{track}") for c in children), track
    spheres = [m for msg in probe.markers for m in msg.markers
               if m.type == Marker.SPHERE_LIST and m.action == Marker.ADD]
    colour_of = {m.id: (m.colors[0].r, m.colors[0].g, m.colors[0].b) for m in spheres if m.colors}
    assert set(colour_of) == ids
    assert len(set(colour_of.values())) == len(colour_of)  # one colour per id
    assert all((c.r, c.g, c.b) == colour_of[m.id] for m in spheres for c in m.colors)  # and it stays


def test_diagnostics_count_tracks_and_unassigned_detections(three_people_run):
    diag = three_people_run["probe"].diagnostics[-1]
    for key in ("tracks.confirmed", "tracks.tentative", "tracks.ended", "detections.unassigned", "capped.views",
                "capped.people"):
        assert key in diag, key
    assert int(diag["tracks.confirmed"]) >= 2
    # The scene has single-view ghosts: they create nobody and are counted as unassigned.
    assert int(diag["detections.unassigned"]) > 0
