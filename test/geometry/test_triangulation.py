"""Triangulation: DLT (weighted), robust view-subset and greedy search, pinhole projection, reprojection errors."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at
from skelsplat_ros.geometry.triangulation import (
    linear_covariance,
    project_pinhole,
    reprojection_errors,
    triangulate_dlt,
    triangulate_greedy,
    triangulate_robust,
    triangulate_robust_numpy,
    valid_observations,
    view_subsets,
)


def _rig(num_views: int, radius: float = 4.0) -> CameraRig:
    """Cameras on a ring around a person-sized volume at the origin (metres), each a little different."""
    cameras = []
    for k in range(num_views):
        angle = 2 * np.pi * k / num_views + 0.2 * k
        centre = np.array([radius * np.cos(angle), radius * np.sin(angle), 1.4 + 0.3 * (k % 3)])
        R, t = look_at(centre, np.array([0.1 * k, -0.05 * k, 1.0]))
        K = np.array([[1000.0 + 25 * k, 0.0, 640.0 + 3 * k], [0.0, 1002.0 + 25 * k, 360.0 - 2 * k], [0.0, 0.0, 1.0]])
        cameras.append(Camera(f"cam{k}", K, R, t, (1280, 720)))
    return CameraRig(cameras)


def _points(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([-0.4, -0.4, 0.0], [0.4, 0.4, 1.9], shape + (3,))


def _unit_directions(shape: tuple[int, ...], seed: int) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=shape + (2,))
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


# --- projection -------------------------------------------------------------------------------------------------


def test_project_pinhole_matches_camera_project_and_shapes():
    rig = _rig(3)
    points = _points((4, 17))
    uv = project_pinhole(rig, points)
    assert uv.shape == (3, 4, 17, 2)
    np.testing.assert_allclose(uv, rig.project(points), atol=1e-9)  # no distortion in this rig
    errors = reprojection_errors(rig, points, uv + np.array([3.0, 4.0]))
    np.testing.assert_allclose(errors, 5.0, atol=1e-9)
    behind = project_pinhole(rig, rig.centres[0] + 2.0 * (rig.centres[0] - np.array([0.0, 0.0, 1.0])))
    assert np.isnan(behind[0]).all()


# --- DLT --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_views", range(2, 9))
def test_dlt_is_exact_on_clean_data(num_views):
    rig = _rig(num_views)
    points = _points((6, 17), seed=num_views)
    uv = project_pinhole(rig, points)
    out = triangulate_dlt(rig, uv)
    assert out.shape == (6, 17, 3)
    assert np.abs(out - points).max() < 1e-9
    robust = triangulate_robust(rig, uv, np.ones(uv.shape[:-1]))
    assert robust.points.shape == (6, 17, 3) and robust.views_used.shape == (num_views, 6, 17)
    assert np.abs(robust.points - points).max() < 1e-9
    assert robust.views_used.all()  # every view agrees, so the full set wins
    assert np.nanmax(robust.error) < 1e-6


def test_dlt_handles_arbitrary_batch_shapes():
    rig = _rig(4)
    for shape in [(), (17,), (2, 3, 5)]:
        points = _points(shape, seed=1)
        out = triangulate_dlt(rig, project_pinhole(rig, points))
        assert out.shape == shape + (3,)
        assert np.abs(out - points).max() < 1e-9


@pytest.mark.parametrize("shape", [(0,), (0, 17), (3, 0)])
def test_no_points_give_no_points(shape):
    """An empty batch (a recording of no frames) is an empty result, from every triangulation."""
    rig = _rig(4)
    uv, confidence = np.zeros((4,) + shape + (2,)), np.zeros((4,) + shape)
    assert triangulate_dlt(rig, uv, confidence).shape == shape + (3,)
    for search in (triangulate_robust, triangulate_greedy):
        result = search(rig, uv, confidence)
        assert result.points.shape == shape + (3,) and result.views_used.shape == (4,) + shape


def test_dlt_works_in_millimetres_too():
    rig = _rig(4)
    mm = CameraRig([Camera(c.name, c.K, c.R, 1000.0 * c.t, c.size) for c in rig])
    points = 1000.0 * _points((3, 17))
    out = triangulate_dlt(mm, project_pinhole(mm, points))
    assert np.abs(out - points).max() < 1e-4  # 0.1 micrometre


def test_weighted_dlt_downweighted_corrupted_view_matters_less():
    rig = _rig(4)
    points = _points((5, 17), seed=3)
    uv = project_pinhole(rig, points)
    uv[2] += 40.0 * _unit_directions((5, 17), seed=4)
    weights = np.ones(uv.shape[:-1])
    error_equal = np.linalg.norm(triangulate_dlt(rig, uv, weights) - points, axis=-1)
    errors = []
    for w in (0.5, 0.2, 0.05):
        weights[2] = w
        errors.append(np.linalg.norm(triangulate_dlt(rig, uv, weights) - points, axis=-1))
    assert error_equal.mean() > 0.01  # the corruption matters (> 1 cm) ...
    assert errors[0].mean() < 0.5 * error_equal.mean()  # ... less when the view is down-weighted ...
    assert errors[1].mean() < errors[0].mean() and errors[2].mean() < errors[1].mean()  # ... monotonically ...
    assert (errors[2] < error_equal).all()  # ... for every single point
    weights[2] = 0.0
    assert np.abs(triangulate_dlt(rig, uv, weights) - points).max() < 1e-9  # ... and not at all at weight 0


def test_weights_are_relative():
    rig = _rig(3)
    points = _points((17,), seed=5)
    uv = project_pinhole(rig, points) + np.random.default_rng(6).normal(0.0, 2.0, (3, 17, 2))
    weights = np.random.default_rng(7).uniform(0.3, 1.0, (3, 17))
    np.testing.assert_allclose(triangulate_dlt(rig, uv, weights), triangulate_dlt(rig, uv, 7.5 * weights), atol=1e-10)


def test_dlt_nan_inputs_and_min_views():
    rig = _rig(4)
    points = _points((3, 5), seed=8)
    uv = project_pinhole(rig, points)
    uv[0, 0, 0] = np.nan  # one view missing: still exact from the other three
    uv[:3, 0, 1] = np.nan  # only one view left: NaN
    uv[:, 0, 2] = np.nan  # no view: NaN
    uv[1, 1, 3, 0] = np.nan  # half a pixel NaN counts as missing
    uv[:2, 2, 4] = np.nan  # two views left
    out = triangulate_dlt(rig, uv)
    assert np.isnan(out[0, 1]).all() and np.isnan(out[0, 2]).all()
    finite = np.ones((3, 5), dtype=bool)
    finite[0, 1] = finite[0, 2] = False
    assert np.isfinite(out[finite]).all()
    assert np.abs(out[finite] - points[finite]).max() < 1e-9
    strict = triangulate_dlt(rig, uv, min_views=3)
    assert np.isnan(strict[2, 4]).all()  # two views < min_views
    assert np.abs(strict[0, 0] - points[0, 0]).max() < 1e-9  # three views pass
    weights = np.ones(uv.shape[:-1])
    weights[:, 1, 0] = [0.0, 0.0, 0.0, np.nan]  # zero and NaN weights are missing views
    assert np.isnan(triangulate_dlt(rig, uv, weights)[1, 0]).all()


# --- robust -----------------------------------------------------------------------------------------------------


# triangulate_robust is the compiled kernel where it was built (test_triangulation_kernel.py holds the two equal);
# each behaviour is asked of the numpy reference too.
ROBUST = [triangulate_robust, triangulate_robust_numpy]
SEARCHES = ROBUST + [triangulate_greedy]


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("num_views, bad_view", [(3, 1), (4, 2), (5, 0), (8, 6)])
def test_robust_rejects_a_view_off_by_100_px(num_views, bad_view, search):
    rig = _rig(num_views)
    points = _points((4, 17), seed=10 + num_views)
    uv = project_pinhole(rig, points)
    uv[bad_view] += 100.0 * _unit_directions((4, 17), seed=num_views)
    confidence = np.ones(uv.shape[:-1])
    assert np.linalg.norm(triangulate_dlt(rig, uv) - points, axis=-1).min() > 0.01  # plain DLT is pulled off
    result = search(rig, uv, confidence)
    assert np.abs(result.points - points).max() < 1e-9
    expected = np.ones(num_views, dtype=bool)
    expected[bad_view] = False
    assert (result.views_used == expected[:, None, None]).all()
    assert np.nanmax(result.error) < 1e-6


@pytest.mark.parametrize("robust", ROBUST)
def test_robust_picks_the_largest_consistent_subset_with_noise(robust):
    rig = _rig(5)
    points = _points((3, 17), seed=20)
    rng = np.random.default_rng(21)
    uv = project_pinhole(rig, points) + rng.normal(0.0, 1.0, (5, 3, 17, 2))
    uv[3] += 80.0 * _unit_directions((3, 17), seed=22)
    result = robust(rig, uv, np.ones((5, 3, 17)), threshold_px=10.0)
    assert not result.views_used[3].any() and result.views_used[[0, 1, 2, 4]].all()
    assert np.linalg.norm(result.points - points, axis=-1).max() < 0.01  # 1 px noise: mm-level error
    assert (result.error > 0).all() and (result.error < 10.0).all()


@pytest.mark.parametrize("search", SEARCHES)
def test_robust_confidence_threshold_nan_and_min_views(search):
    rig = _rig(4)
    points = _points((6,), seed=30)
    uv = project_pinhole(rig, points)
    confidence = np.ones((4, 6))
    confidence[0, 0] = 0.2  # under min_confidence: dropped even though it is right
    confidence[:3, 1] = [0.1, 0.1, np.nan]  # only one usable view: NaN
    uv[:, 2] = np.nan  # nothing: NaN
    uv[1, 3] += 100.0  # corrupted, and only two views usable: 2 -> 1 view left, NaN ...
    confidence[2:, 3] = 0.0
    uv[0, 4] += np.array([300.0, -200.0])  # off-image garbage with high confidence in one of 4 views
    result = search(rig, uv, confidence, min_confidence=0.3)
    assert np.abs(result.points[0] - points[0]).max() < 1e-9 and not result.views_used[0, 0]
    assert result.views_used[1:, 0].all()
    for j in (1, 2, 3):
        assert np.isnan(result.points[j]).all() and np.isnan(result.error[j]) and not result.views_used[:, j].any()
    assert np.abs(result.points[4] - points[4]).max() < 1e-9 and not result.views_used[0, 4]
    assert np.abs(result.points[5] - points[5]).max() < 1e-9 and result.views_used[:, 5].all()
    strict = search(rig, uv, confidence, min_views=4)
    assert np.isnan(strict.points[0]).all()  # 3 usable views < 4
    assert np.abs(strict.points[5] - points[5]).max() < 1e-9


@pytest.mark.parametrize("search", SEARCHES)
def test_robust_no_subset_passes_gives_nan(search):
    rig = _rig(2)
    points = _points((3,), seed=40)
    uv = project_pinhole(rig, points)
    uv[0] += 100.0 * _unit_directions((3,), seed=41)  # with two views the only subset is inconsistent
    # (part of the shift lies along the epipolar line, so the residual is smaller than 100 px, yet > 1 px)
    result = search(rig, uv, np.ones((2, 3)), threshold_px=1.0)
    assert np.isnan(result.points).all() and np.isnan(result.error).all() and not result.views_used.any()
    loose = search(rig, uv, np.ones((2, 3)), threshold_px=1000.0)
    assert np.isfinite(loose.points).all() and loose.views_used.all() and (loose.error > 1.0).all()


def test_greedy_drops_two_bad_views_of_eight_with_noise():
    rig = _rig(8)
    points = _points((5, 17), seed=50)
    rng = np.random.default_rng(51)
    uv = project_pinhole(rig, points) + rng.normal(0.0, 1.0, (8, 5, 17, 2))
    uv[[2, 5]] += 120.0 * _unit_directions((2, 5, 17), seed=52)
    result = triangulate_greedy(rig, uv, np.ones((8, 5, 17)), threshold_px=10.0)
    assert not result.views_used[[2, 5]].any() and result.views_used[[0, 1, 3, 4, 6, 7]].all()
    assert np.linalg.norm(result.points - points, axis=-1).max() < 0.01
    exhaustive = triangulate_robust(rig, uv, np.ones((8, 5, 17)), threshold_px=10.0)
    np.testing.assert_allclose(result.points, exhaustive.points, atol=1e-9)


@pytest.mark.parametrize("robust", ROBUST)
@pytest.mark.parametrize("num_views", [9, 12, 20])
def test_robust_many_cameras_searches_the_views_each_point_is_seen_in(num_views, robust):
    # With 9+ cameras the 256 largest subsets of *all* views are all bigger than a joint seen by 3 cameras, and
    # 2^20 subsets cannot even be listed: the search must run over each point's own views.
    rig = _rig(num_views, radius=5.0)
    points = _points((6,), seed=60 + num_views)
    rng = np.random.default_rng(61)
    uv = project_pinhole(rig, points) + rng.normal(0.0, 0.5, (num_views, 6, 2))
    confidence = np.ones((num_views, 6))
    confidence[3:, 0] = 0.0  # joint 0: seen by 3 cameras
    confidence[4:, 1] = 0.0  # joint 1: seen by 4, one of them wrong
    uv[2, 1] += 90.0 * _unit_directions((), seed=62)
    uv[5, 2] += 90.0 * _unit_directions((), seed=63)  # joints 2-5: seen by every camera, one of them wrong
    result = robust(rig, uv, confidence, threshold_px=3.0)  # 0.5 px noise: inliers reproject < 1 px
    assert np.linalg.norm(result.points - points, axis=-1).max() < 0.01
    np.testing.assert_array_equal(result.views_used[:, 0], np.arange(num_views) < 3)
    np.testing.assert_array_equal(result.views_used[:, 1], np.isin(np.arange(num_views), [0, 1, 3]))
    assert not result.views_used[5, 2] and result.views_used[:, 2].sum() == num_views - 1


@pytest.mark.parametrize("robust", ROBUST)
@pytest.mark.parametrize("max_subsets", [256, 3, 1])
def test_robust_matches_a_search_of_every_subset_point_by_point(max_subsets, robust):
    # Messy data: noise, outliers, dropped and NaN views, so that some points pass with all their views, some need
    # a smaller subset and some have none. Each point, on its own: the largest passing subset of its usable views
    # (of the first max_subsets), then the lowest mean error.
    rig = _rig(5)
    points = _points((40,), seed=70)
    rng = np.random.default_rng(71)
    uv = project_pinhole(rig, points) + rng.normal(0.0, 2.0, (5, 40, 2))
    uv += 60.0 * _unit_directions((5, 40), seed=72) * (rng.random((5, 40, 1)) < 0.25)
    confidence = rng.uniform(0.2, 1.0, (5, 40))
    uv[rng.random((5, 40)) < 0.1] = np.nan
    result = robust(rig, uv, confidence, threshold_px=6.0, min_confidence=0.3, max_subsets=max_subsets)
    usable = (confidence >= 0.3) & np.isfinite(uv).all(-1)
    outcomes = set()
    for n in range(40):
        views = np.flatnonzero(usable[:, n])
        best = None
        for local in view_subsets(len(views), 2, max_subsets):
            subset = views[local]
            point = triangulate_dlt(rig.subset([rig.names[v] for v in subset]), uv[subset, n], confidence[subset, n])
            error = reprojection_errors(rig, point, uv[:, n])[subset].mean()
            if error < 6.0 and (best is None or (len(subset), -error) > (len(best[0]), -best[2])):
                best = (subset, point, error)
        if best is None:
            assert np.isnan(result.points[n]).all() and not result.views_used[:, n].any()
            outcomes.add("none")
            continue
        subset, point, error = best
        np.testing.assert_allclose(result.points[n], point, atol=1e-9)
        np.testing.assert_allclose(result.error[n], error, rtol=1e-9)
        np.testing.assert_array_equal(np.flatnonzero(result.views_used[:, n]), subset)
        outcomes.add("all" if len(subset) == len(views) else "fewer")
    assert outcomes == ({"all", "fewer", "none"} if max_subsets > 1 else {"all", "none"})


def test_view_subsets_order_and_cap():
    subsets = view_subsets(4, 2)
    assert subsets.shape == (11, 4)  # 1 of size 4, 4 of size 3, 6 of size 2
    sizes = subsets.sum(axis=1)
    assert sizes[0] == 4 and (np.diff(sizes) <= 0).all() and sizes.min() == 2
    assert len({tuple(s) for s in subsets.tolist()}) == 11
    assert view_subsets(3, 3).tolist() == [[True, True, True]]
    np.testing.assert_array_equal(view_subsets(4, 2, limit=5), subsets[:5])
    assert view_subsets(30, 2, limit=40).shape == (40, 30)  # 2^30 subsets exist; only the first 40 are built


def test_valid_observations():
    keypoints = np.array(
        [[10.0, 20.0, 0.9], [np.nan, 20.0, 0.9], [10.0, 20.0, 0.0], [10.0, 20.0, np.nan], [1e200, 20.0, 0.9],
         [10.0, -np.inf, 0.9]]
    )
    np.testing.assert_array_equal(valid_observations(keypoints), [True] + [False] * 5)
    np.testing.assert_array_equal(valid_observations(keypoints, min_confidence=0.95), [False] * 6)


def test_linear_covariance_is_a_position_uncertainty_large_where_no_view_constrains():
    rig = _rig(4)
    points = _points((5,), seed=7)
    weights = np.ones((4, 5))
    weights[1:, 0] = 0.0  # point 0: seen by view 0 only
    weights[:, 1] = 0.0  # point 1: seen by nobody
    cov = linear_covariance(rig, points, weights, 2.0)
    # Seen by four views at ~4 m with f ~ 1000 px and 2 px noise: millimetres.
    assert np.sqrt(np.linalg.eigvalsh(cov[2:]).max()) < 0.01
    # Seen by one view: pinned across its ray, unknown along it (a pseudo-inverse gave ~0 there).
    values, vectors = np.linalg.eigh(cov[0])
    ray = (points[0] - rig[0].centre) / np.linalg.norm(points[0] - rig[0].centre)
    assert values[-1] > 100.0 and abs(vectors[:, -1] @ ray) > 0.999
    assert np.sqrt(values[:2]).max() < 0.01
    assert np.linalg.eigvalsh(cov[1]).min() > 100.0  # seen by nobody: unknown in every direction
    # Per-view pixel noise: the same as the scalar when equal, and a noisier view counts less.
    np.testing.assert_allclose(linear_covariance(rig, points, weights, np.full((4, 5), 2.0)), cov)
    noisier = linear_covariance(rig, points[2:], weights[:, 2:], np.array([[2.0], [2.0], [2.0], [20.0]]))
    assert (np.trace(noisier, axis1=-2, axis2=-1) > np.trace(cov[2:], axis1=-2, axis2=-1)).all()


def test_leave_one_out_triangulation_is_the_dlt_of_the_other_views():
    # Solved with the homogeneous coordinate held at 1 rather than as a unit null vector: the same points to a
    # fraction of a millimetre at 2 px noise.
    from skelsplat_ros.geometry.triangulation import triangulate_leave_one_out
    from skelsplat_ros.sim import make_rig

    rig = make_rig("lab", seed=3)
    rng = np.random.default_rng(0)
    points = rng.uniform([-1, -1, 0], [1, 1, 2], (5, 7, 3))
    uv = project_pinhole(rig, points) + rng.normal(0, 2.0, (len(rig), 5, 7, 2))
    weights = rng.uniform(0.3, 1.0, (len(rig), 5, 7))
    weights[1, 0] = 0.0  # view 1 does not see the first row
    weights[2:, 1] = 0.0  # only views 0 and 1 see the second
    left_out = triangulate_leave_one_out(rig, uv, weights)
    for v in range(len(rig)):
        others = weights.copy()
        others[v] = 0.0
        expected = triangulate_dlt(rig, uv, others)
        assert np.allclose(left_out[v], expected, atol=1e-3, equal_nan=True)
    assert np.isnan(left_out[0, 1]).all() and np.isnan(left_out[1, 1]).all()  # one other view: no point
