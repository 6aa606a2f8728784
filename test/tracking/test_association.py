"""The tracker's association costs: the numba kernels (ray to ray between detections, point to ray between tracks
and detections) against their numpy references, and the references against geometry worked out by hand."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from skelsplat_ros.fusion.result import split_keypoints
from skelsplat_ros.geometry.camera import ray_directions
from skelsplat_ros.sim import make_ring_rig
from skelsplat_ros.sim.scenes import make_multi_person_scenario
from skelsplat_ros.skeleton.models import get_skeleton
from skelsplat_ros.tracking import association
from skelsplat_ros.tracking.association import pair_costs_numpy, track_costs_numpy

SKELETON = get_skeleton("h36m17")
CLIP, MIN_COMMON = 0.5, 4


def _frame(num_views: int, people: int, seed: int):
    """Every detection of one frame of a simulated scene: camera centres ``[N, 3]``, views ``[N]``, rays
    ``[N, J, 3]`` and weights ``[N, J]``, with swaps, outliers, missing joints and ghosts."""
    rig = make_ring_rig(num_views, seed=seed)
    scene = make_multi_person_scenario(rig, people, 3, noise="hard", seed=seed, enter_leave=False)
    keypoints = scene.keypoints[:, 1]  # [V, S, J, 3]
    uv, confidence = split_keypoints(rig, keypoints)
    view = np.repeat(np.arange(num_views), keypoints.shape[1])
    present = (confidence > 0).reshape(len(view), -1).any(-1)
    direction = ray_directions(rig.back_projections[:, None, None], uv).reshape(len(view), -1, 3)
    weight = np.where(confidence > 0.1, confidence, 0.0).reshape(len(view), -1)
    return rig.centres[view][present], view[present], direction[present], weight[present]


@pytest.mark.parametrize("num_views, people, seed", [(4, 3, 0), (12, 5, 1), (31, 4, 2)])
def test_the_kernel_equals_the_reference(num_views, people, seed):
    pytest.importorskip("numba")
    arguments = (*_frame(num_views, people, seed), SKELETON.flip_permutation, CLIP, MIN_COMMON)
    reference = pair_costs_numpy(*arguments)
    compiled = association.pair_costs_numba(*arguments)
    assert np.isfinite(reference).mean() > 0.3 and (reference < 0.1).any(), "the frame must hold matching pairs"
    np.testing.assert_array_equal(np.isinf(compiled), np.isinf(reference))
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("num_views, people, seed", [(4, 3, 0), (31, 4, 2)])
def test_the_track_cost_kernel_equals_the_reference(num_views, people, seed):
    pytest.importorskip("numba")
    centre, _, direction, weight = _frame(num_views, people, seed)
    flip = SKELETON.flip_permutation
    both = np.stack([direction, direction[:, flip]], 1), np.stack([weight, weight[:, flip]], 1)  # [N, 2, J, ...]
    rig = make_ring_rig(num_views, seed=seed)
    truth = make_multi_person_scenario(rig, people, 3, noise="hard", seed=seed, enter_leave=False).ground_truth[1]
    points = truth + np.random.default_rng(seed).normal(0.0, 0.05, truth.shape)  # predictions, a few unknown
    points[0, :3] = np.nan
    reference = track_costs_numpy(points, centre, *both, CLIP, MIN_COMMON)
    compiled = association.track_costs_numba(points, centre, *both, CLIP, MIN_COMMON)
    assert reference.shape == (people, len(centre), 2) and (reference < 0.1).any()
    np.testing.assert_array_equal(np.isinf(compiled), np.isinf(reference))
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-15)


def test_track_costs_by_hand():
    """A joint 0.2 m beside a ray costs 0.2, capped at the clip; unknown joints and unweighted ones do not count."""
    centre = np.zeros((1, 3))
    direction = np.tile([0.0, 1.0, 0.0], (1, 1, 5, 1))  # [N=1, K=1, J=5, 3]: every ray along +y
    points = np.array([[[0.2, 3.0, 0.0], [0.0, 2.0, 0.2], [0.0, 1.0, -0.2], [0.0, 5.0, 0.9], [np.nan] * 3]])
    weight = np.ones((1, 1, 5))
    np.testing.assert_allclose(track_costs_numpy(points, centre, direction, weight, CLIP, 3)[0, 0, 0],
                               (0.2 * 3 + CLIP) / 4)
    weight[0, 0, 3] = 0.0
    np.testing.assert_allclose(track_costs_numpy(points, centre, direction, weight, CLIP, 3)[0, 0, 0], 0.2)
    assert track_costs_numpy(points, centre, direction, weight, CLIP, 4)[0, 0, 0] == np.inf


def test_pair_costs_by_hand():
    """Two cameras 2 m apart looking along +y, one 0.1 m higher, seeing points at their own heights: level rays
    0.1 m apart in height cost 0.1 (also mirrored, where the detector exchanged left and right); rays that meet
    behind a camera cost the cap; pairs in one camera and pairs with too few shared joints are inf."""
    centres = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.1], [0.0, 0.0, 0.0]])
    points = np.array([[0.5, 3.0, 0.0], [1.5, 3.0, 0.0], [1.0, 4.0, 0.0], [1.0, 2.0, 0.0]])  # [J=4, 3]
    flip = np.array([1, 0, 2, 3])

    def rays(centre, targets):
        offset = targets - centre
        return offset / np.linalg.norm(offset, axis=-1, keepdims=True)

    direction = np.stack([rays(centres[0], points), rays(centres[1], points + [0.0, 0.0, 0.1]),
                          rays(centres[2], points)])
    weight = np.ones((3, 4))
    costs = pair_costs_numpy(centres, np.array([0, 1, 0]), direction, weight, flip, CLIP, 4)
    np.testing.assert_allclose(costs[0, 0, 1], 0.1, atol=1e-12)
    swapped = direction.copy()
    swapped[1] = direction[1, flip]  # camera 1's detector exchanged joints 0 and 1: mirroring undoes it
    mirrored = pair_costs_numpy(centres, np.array([0, 1, 0]), swapped, weight, flip, CLIP, 4)
    np.testing.assert_array_equal(mirrored[:, 0, 1], costs[::-1, 0, 1])
    np.testing.assert_array_equal(costs[:, 0, 2], np.inf)  # one camera
    np.testing.assert_array_equal(costs[:, [0, 1, 2], [0, 1, 2]], np.inf)
    np.testing.assert_array_equal(costs, costs.transpose(0, 2, 1))
    # Camera 1 looking away: its rays cross camera 0's behind camera 1.
    behind = direction.copy()
    behind[1] = -behind[1]
    assert pair_costs_numpy(centres, np.array([0, 1, 0]), behind, weight, flip, CLIP, 4)[0, 0, 1] == CLIP
    fewer = weight.copy()
    fewer[1, 0] = 0.0
    assert pair_costs_numpy(centres, np.array([0, 1, 0]), direction, fewer, flip, CLIP, 4)[0, 0, 1] == np.inf


def test_without_numba_the_references_run(monkeypatch):
    from skelsplat_ros.fusion import _numba

    centre, view, direction, weight = _frame(4, 2, 3)
    points = np.zeros((1, SKELETON.num_joints, 3))
    _numba.numba_available.cache_clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    try:
        calls = []
        monkeypatch.setattr(association, "pair_costs_numpy", lambda *a: calls.append(a) or pair_costs_numpy(*a))
        monkeypatch.setattr(association, "track_costs_numpy", lambda *a: calls.append(a) or track_costs_numpy(*a))
        pairs = association.pair_costs(centre, view, direction, weight, SKELETON.flip_permutation, CLIP, MIN_COMMON)
        tracks = association.track_costs(points, centre, direction[:, None], weight[:, None], CLIP, MIN_COMMON)
        assert len(calls) == 2 and np.isfinite(pairs).any() and tracks.shape == (1, len(centre), 1)
    finally:
        _numba.numba_available.cache_clear()
