"""The Pose2Sim peer of ``skelsplat bench``: its skeleton declaration, and a real run when Pose2Sim is installed."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.bench.pose2sim_peer import _pose2sim_tree, pose2sim_available, run_pose2sim
from skelsplat_ros.sim import make_scenario
from skelsplat_ros.skeleton.models import get_skeleton


def _nodes(tree: dict) -> list[dict]:
    return [tree] + [node for child in tree.get("children", []) for node in _nodes(child)]


@pytest.mark.parametrize("name", ["h36m17", "coco17", "halpe26"])
def test_every_joint_is_declared_once_with_its_json_index(name):
    skeleton = get_skeleton(name)
    nodes = _nodes(_pose2sim_tree(skeleton))
    assert sorted(node["id"] for node in nodes) == list(range(skeleton.num_joints))
    assert all(node["name"] == skeleton.joint_names[node["id"]] for node in nodes)


@pytest.mark.skipif(not pose2sim_available(), reason="Pose2Sim is not installed (optional bench peer: make bench)")
def test_pose2sim_runs_on_its_own_project_layout(tmp_path):
    take = make_scenario("lab", num_frames=30, noise="realistic", seed=4, distortion=True)
    triangulated, filtered, seconds = run_pose2sim(take.rig, take.skeleton, take.keypoints, take.fps, True, tmp_path)
    for joints in (triangulated, filtered):
        error = np.linalg.norm(joints - take.ground_truth, axis=-1)
        assert np.isfinite(error).mean() > 0.9 and np.nanmean(error) < 0.05
    assert seconds > 0 and not list(tmp_path.iterdir())  # its project folder is cleaned up
