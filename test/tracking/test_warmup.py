"""The live tracker's warm-up (tracking/warmup.py): it fuses synthetic people on any skeleton and rig, and leaves a
tracker built afterwards as fresh as one built before."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.fusion import preset_config
from skelsplat_ros.geometry.camera import Camera, CameraRig
from skelsplat_ros.skeleton.models import builtin_skeletons, get_skeleton
from skelsplat_ros.tracking import MultiPersonTracker, TrackerConfig
from skelsplat_ros.tracking.lagged import LaggedFrame
from skelsplat_ros.tracking.warmup import BONE_LENGTH, synthetic_person, warm_up


@pytest.mark.parametrize("name", sorted(builtin_skeletons()))
def test_the_synthetic_person_has_every_joint_apart_and_every_bone_its_length(name):
    skeleton = get_skeleton(name)
    person = synthetic_person(skeleton)
    assert person.shape == (skeleton.num_joints, 3) and np.isfinite(person).all()
    bones = skeleton.bone_array.reshape(-1, 2)
    lengths = np.linalg.norm(person[bones[:, 0]] - person[bones[:, 1]], axis=-1)
    tree = lengths[np.isclose(lengths, BONE_LENGTH)]
    assert len(tree) >= len(bones) - 2  # every bone at BONE_LENGTH but those closing a loop (h36m17, body25: none)
    gaps = np.linalg.norm(person[:, None] - person[None], axis=-1)[np.triu_indices(skeleton.num_joints, 1)]
    assert gaps.min() >= 0.05


def test_warm_up_fuses_people_on_the_given_rig_or_on_a_ring_when_the_rig_cannot_see(sim_lab_rig):
    skeleton = get_skeleton("h36m17")
    config = preset_config("default", "skelsplat", mode="streaming")
    report = warm_up(sim_lab_rig, skeleton, config, TrackerConfig())
    assert report.rig == "given" and report.people >= 3 and report.last is not None
    assert {p.track_id for p in report.last.people} >= {0}
    # Cameras not posed yet (placeholders at the origin, all looking the same way): a ring stands in.
    unposed = CameraRig([Camera(c.name, c.K, np.eye(3), np.zeros(3), tuple(c.size)) for c in sim_lab_rig])
    report = warm_up(unposed, skeleton, config, TrackerConfig())
    assert report.rig == "ring" and report.people >= 3
    # The live tracker is its own: its first person gets id 0 (published once its bone lengths are known).
    tracker = MultiPersonTracker(sim_lab_rig, skeleton, config, TrackerConfig(confirm_frames=1))
    people = synthetic_person(skeleton) + np.array([0.0, 0.0, 1.0])
    uv = sim_lab_rig.project(people)
    detections = [np.concatenate([view, np.full((len(view), 1), 0.9)], axis=-1)[None] for view in uv]
    steps = [tracker.step(detections, f / 30.0) for f in range(config.bone_warmup + 1)]
    assert [p.track_id for p in steps[-1].people] == [0]


def test_a_lag_warm_up_runs_the_fixed_lag_path_and_loads_its_kernels(sim_lab_rig):
    """With the node's lag, the warm-up's frames go through a LaggedTracker: people come out of the read-out, and the
    filter bank's numba kernels are compiled (or loaded from the disk cache) before the first real frame."""
    skeleton = get_skeleton("h36m17")
    config = preset_config("default", "skelsplat", mode="streaming")
    report = warm_up(sim_lab_rig, skeleton, config, TrackerConfig(), lag=0.2)
    assert report.rig == "given" and report.people >= 3 and report.last is not None
    assert isinstance(report.last, LaggedFrame)  # what the fixed-lag read-out published
    from skelsplat_ros.fusion._jerk_kernel import advance_kernel, rts_kernel  # numba: a requirement of the package

    assert advance_kernel.signatures and rts_kernel.signatures


def test_a_lag_0_warm_up_runs_the_depth_filters_refit_and_bone_gate(sim_lab_rig, monkeypatch):
    """On a rig whose cameras fix every joint of the exact synthetic people (the lab rig), the depth filter
    (``FusionConfig.depth_filter``, on by default) had nothing to follow: its refit and bone gate first ran in a live
    frame. The warm-up's frames where one view alone sees a joint run both (the real code, counted)."""
    from skelsplat_ros.fusion import streaming

    calls = {"refit": 0, "gate": 0}
    refine, breaks_bones = streaming.refine, streaming.breaks_bones

    def counted_refine(*args, **kwargs):
        temporal = args[7] if len(args) > 7 else kwargs.get("temporal")
        calls["refit"] += temporal is not None and temporal.anchor is not None
        return refine(*args, **kwargs)

    def counted_gate(*args):
        calls["gate"] += 1
        return breaks_bones(*args)

    monkeypatch.setattr(streaming, "refine", counted_refine)
    monkeypatch.setattr(streaming, "breaks_bones", counted_gate)
    config = preset_config("default", "skelsplat", mode="streaming")
    assert streaming.uses_depth_filter(config)
    report = warm_up(sim_lab_rig, get_skeleton("h36m17"), config, TrackerConfig())
    assert report.rig == "given" and report.people >= 3
    assert calls["refit"] >= 1 and calls["gate"] >= 1


@pytest.fixture
def sim_lab_rig():
    from skelsplat_ros.sim import make_rig

    return make_rig("lab")
