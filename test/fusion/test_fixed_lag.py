"""The fixed-lag smoother (``fusion/jerk_filter.py``, ``fusion/fixed_lag.py``): Kalman filters of the offline jerk
prior on trajectories with known truth, and the fixed-lag output on simulated takes against streaming and offline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from skelsplat_ros.bench.engine import score
from skelsplat_ros.bench.lag import calibration
from skelsplat_ros.fusion import fuse_offline, fuse_streaming, preset_config
from skelsplat_ros.fusion import fixed_lag, streaming
from skelsplat_ros.fusion.config import DEPTH_FILTER
from skelsplat_ros.fusion.fixed_lag import check_lag, fuse_fixed_lag
from skelsplat_ros.fusion.jerk_filter import JerkFilterBank
from skelsplat_ros.fusion.objective import BonePrior
from skelsplat_ros.fusion.result import (
    DISSENT_PULL, DISSENT_VARIANCE, GROSS_SHARE, FusionResult, calibrate_covariance, dissent_pull, dissenting_views,
    widen_toward_dissent,
)
from skelsplat_ros.geometry.triangulation import project_pinhole
from skelsplat_ros.fusion.smoothing import SmoothingConfig
from skelsplat_ros.fusion.streaming import StreamingFuser, depth_filtered, uses_depth_filter
from skelsplat_ros.sim import make_scenario

FPS = 30.0


def _truth(num_frames: int) -> np.ndarray:
    """A smooth reaching-like trajectory ``[F, 1, 3]`` (m)."""
    t = np.arange(num_frames) / FPS
    return np.stack([0.3 * np.sin(2.0 * t), 0.2 * np.cos(1.3 * t), 1.0 + 0.1 * np.sin(3.0 * t)], -1)[:, None]


def _run_bank(truth: np.ndarray, noise: np.ndarray, lag_frames: int, hidden: slice = slice(0, 0)):
    """Filtered and ``lag_frames``-behind smoothed estimates ``[F, 3]`` of one joint measured with ``noise [F, 3]``
    (isotropic 1 cm information), nothing measured in ``hidden``."""
    bank = JerkFilterBank(1, SmoothingConfig())
    information = np.eye(3)[None] / 0.01**2
    filtered, smoothed = np.full(truth.shape[:1] + (3,), np.nan), np.full(truth.shape[:1] + (3,), np.nan)
    hidden_frames = set(range(len(truth))[hidden])
    for f in range(len(truth)):
        point = np.full((1, 3), np.nan) if f in hidden_frames else truth[f] + noise[f]
        bank.update(f / FPS, point, information)
        filtered[f] = bank.smoothed(f / FPS)[0][0]
        if f >= lag_frames:
            smoothed[f - lag_frames] = bank.smoothed((f - lag_frames) / FPS)[0][0]
            bank.forget((f - lag_frames) / FPS)
    return filtered, smoothed


def test_look_ahead_beats_the_filter_and_the_measurements():
    """1 cm noise on a smooth path: the causal filter averages it down, 10 frames of look-ahead more so."""
    truth = _truth(240)
    noise = np.random.default_rng(3).normal(scale=0.01, size=(240, 3))
    filtered, smoothed = _run_bank(truth, noise, lag_frames=10)
    frames = slice(30, 220)  # after the filters settled, with look-ahead
    raw = np.linalg.norm(noise[frames], axis=-1).mean()
    causal = np.linalg.norm(filtered[frames] - truth[frames, 0], axis=-1).mean()
    lagged = np.linalg.norm(smoothed[frames] - truth[frames, 0], axis=-1).mean()
    assert causal < 0.8 * raw
    assert lagged < 0.8 * causal


def test_a_gap_is_bridged_between_where_the_joint_went_in_and_came_out():
    """A joint unmeasured for 10 frames: with 15 frames of look-ahead its smoothed path through the gap stays
    within a few cm of the truth, closer than the causal filter's extrapolation."""
    truth = _truth(150)
    noise = np.random.default_rng(4).normal(scale=0.005, size=(150, 3))
    hidden = slice(80, 90)
    filtered, smoothed = _run_bank(truth, noise, lag_frames=15, hidden=hidden)
    lagged = np.linalg.norm(smoothed[hidden] - truth[hidden, 0], axis=-1)
    causal = np.linalg.norm(filtered[hidden] - truth[hidden, 0], axis=-1)
    assert np.isfinite(lagged).all() and lagged.max() < 0.03
    assert lagged.mean() < causal.mean()


def test_the_calibration_figure_of_gaussian_errors_is_90_percent():
    """Errors drawn from the stated covariance fall inside its 90 % ellipsoid 90 % of the time; a covariance half
    as wide (in standard deviation) holds far fewer. Errors beyond 150 mm with a 100 mm deviation count as flagged."""
    rng = np.random.default_rng(0)
    root = rng.normal(size=(4000, 3, 3)) * 0.02
    covariance = root @ root.swapaxes(-1, -2) + np.eye(3) * 1e-4  # [N, 3, 3] m^2
    errors = np.einsum("nab,nb->na", np.linalg.cholesky(covariance), rng.normal(size=(4000, 3)))
    truth = np.zeros((4000, 3))
    inside, _ = calibration(errors, covariance, truth)
    assert abs(inside - 90.0) < 1.5
    assert calibration(errors, covariance / 4, truth)[0] < 60.0
    far = np.array([[0.2, 0.0, 0.0], [0.0, 0.3, 0.0]])
    wide, narrow = np.eye(3) * 0.1**2, np.eye(3) * 0.05**2
    assert calibration(far, np.stack([wide, narrow]), np.zeros_like(far))[1] == 50.0


def test_a_confident_outlier_in_a_joints_first_frames_barely_moves_it():
    """A narrow baseline: depth known to 13 cm, the sides to 7 mm. On the third frame two views agree on a swapped
    label 1.6 m deeper, their depth to 4 cm. The prediction is still loose (two frames in), so the innovation's
    chi^2 alone weighed it at 7 %: the state jumped 0.7 m and swung about 1 m for a third of a second (robot rig,
    seed 9). Judged as offline, on its distance from the corrected position in its own units, it stays near."""
    truth = _truth(20)
    bank = JerkFilterBank(1, SmoothingConfig(sigma=12.0, adaptive=True))
    depth = lambda std: np.diag([0.007**-2, 0.007**-2, std**-2])[None]
    errors = []
    for f in range(20):
        outlier = f == 2
        bank.update(f / FPS, truth[f] + ([0.0, 0.0, 1.6] if outlier else 0.0), depth(0.043 if outlier else 0.13))
        errors.append(np.linalg.norm(bank.smoothed(f / FPS)[0][0] - truth[f, 0]))
    assert max(errors) < 0.25, np.round(errors, 2)


def test_a_point_its_measurement_barely_fixes_does_not_start_a_joint():
    """A joint first measured by one ray (no depth: rank-2 information) at a point 100 m out along it, then
    triangulated at the truth by a narrow baseline (depth to 30 cm): the filters start at the truth and track it,
    not held out there by a 1 m start prior the robust weights then defend (it swung 100 m out and back)."""
    truth = _truth(40)
    bank = JerkFilterBank(1, SmoothingConfig())
    ray = np.diag([1.0, 1.0, 0.0]) / 0.01**2  # a view looking along z fixes x and y to 1 cm
    bank.update(0.0, truth[0] + [0.0, 0.0, 100.0], ray[None])
    narrow = np.diag([0.01**-2, 0.01**-2, 0.3**-2])
    for f in range(1, 40):
        bank.update(f / FPS, truth[f], narrow[None])
        assert np.linalg.norm(bank.smoothed(f / FPS)[0][0] - truth[f, 0]) < 0.05


@pytest.mark.parametrize("complete", [False, True])
def test_a_new_person_on_the_narrow_rig_is_not_output_metres_off(complete):
    """Hard noise on the robot rig (3 cameras within 0.4 m), held-out seed 3, the first 40 frames of the take: a
    joint's first views there fix its depth to metres at best. No joint of the lag output (observed, offered or, with
    ``complete``, filled) is over 2 m from the truth: the hard noise's worst observed joints are 1.6 m off here, in
    streaming as in lag; the filters started from such a point were 80 m off, and fills anchored there 120 m."""
    take = make_scenario("robot", skeleton_name="h36m17", noise="hard", seed=3, num_frames=300)
    config = replace(preset_config("default"), complete=complete)
    result = fuse_fixed_lag(take.rig, take.skeleton, take.keypoints[:, :40], config, take.fps, lag=0.2)
    error = np.linalg.norm(result.joints - take.ground_truth[:40], axis=-1)
    assert np.isfinite(error).sum() > 300  # the person is output
    assert np.nanmax(error) < 2.0


def test_the_read_out_asks_the_views_only_when_something_is_offered(monkeypatch):
    """Most frames offer no joint (rule 3) that is not output already, and the read-out then skips what the views
    say of the offered positions: the output is the same as when every frame asks them. Robot rig with hard noise
    (gaps closed within the look-ahead: some frames do offer)."""
    take = make_scenario("robot", skeleton_name="h36m17", noise="hard", seed=3, num_frames=60)
    config = preset_config("default")
    args = (take.rig, take.skeleton, take.keypoints, config, take.fps)
    offers = []

    def counted(fitted, offered, views):
        offer = original(fitted, offered, views)

        def recorded(output):
            result = offer(output)
            offers.append(result is not None)
            return result

        return recorded

    original = fixed_lag._offer
    monkeypatch.setattr(fixed_lag, "_offer", counted)
    fast = fuse_fixed_lag(*args, lag=0.2)
    assert any(offers) and not all(offers)

    def always(fitted, offered, views):  # the reference: every frame asks the views
        def offer(output):
            joints = np.where(offered[..., None], fitted.joints, np.nan)
            return replace(views(joints), joints=joints)

        return offer

    monkeypatch.setattr(fixed_lag, "_offer", always)
    reference = fuse_fixed_lag(*args, lag=0.2)
    for name in ("joints", "covariance", "confidence", "num_views", "reprojection_error"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(reference, name))


def test_stamps_must_increase():
    bank = JerkFilterBank(1, SmoothingConfig())
    bank.update(1.0, np.zeros((1, 3)), np.eye(3)[None])
    with pytest.raises(ValueError, match="increase"):
        bank.update(1.0, np.zeros((1, 3)), np.eye(3)[None])


def test_bad_lags_and_configurations_are_refused():
    config = preset_config("default")
    for lag in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lag"):
            check_lag(config, lag)
    with pytest.raises(ValueError, match="fixed-lag smoother"):
        check_lag(preset_config("default", "robust"), 0.2)
    assert check_lag(config, 0.2) == 0.2


@pytest.fixture(scope="module")
def robot():
    """The 3-camera robot rig (narrow baseline, self-occlusion), held-out seed 3, 150 frames, every mode's result."""
    scenario = make_scenario("robot", num_frames=150, noise="realistic", seed=3)
    config = preset_config("default")
    alone = replace(config, depth_filter=0.0)  # streaming without the depth filter: each frame's fit alone
    run = {
        "streaming": lambda: fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints, alone, scenario.fps),
        "depth filter": lambda: fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints, config,
                                               scenario.fps),
        "offline": lambda: fuse_offline(scenario.rig, scenario.skeleton, scenario.keypoints, config, fps=scenario.fps),
    }
    results = {mode: f() for mode, f in run.items()}
    for lag in (0.0, 0.2, 1.0):
        results[lag] = fuse_fixed_lag(scenario.rig, scenario.skeleton, scenario.keypoints, config, scenario.fps,
                                      lag=lag)
    return scenario, results


def test_fixed_lag_sits_between_streaming_and_offline_on_the_robot_rig(robot):
    """Measured (seed 3, 150 frames): streaming (each frame's fit alone) 90.9 mm / 17.5 % beyond 150 mm, lag 0
    67.9 mm / 7.0 %, lag 0.2 s 51.2 mm, lag 1 s 47.9 mm, offline 45.1 mm (seeds 3-5: BENCHMARKS.md, "Fixed lag")."""
    scenario, results = robot
    figures = {mode: score(result.joints, scenario.ground_truth) for mode, result in results.items()}
    streaming, offline = figures["streaming"], figures["offline"]
    assert figures[0.0][1] <= 0.5 * streaming[1]  # the causal filter: at most half the gross errors
    assert figures[0.0][0] <= streaming[0]
    assert figures[0.2][0] <= 1.5 * offline[0]
    assert figures[1.0][0] <= 1.15 * offline[0]
    assert figures[1.0][0] <= figures[0.2][0] <= figures[0.0][0]
    assert figures[0.2][2] >= 99.0  # every frame out, gaps closed by the look-ahead


def test_streaming_depth_filter_halves_the_gross_errors_on_the_robot_rig(robot):
    """Issue 21 item 2, lag 0: streaming with the depth filter (``depth_filter``, the default: along the depth two
    views of the narrow baseline barely fix, the causal jerk filters' estimate) has at most half the joints beyond
    150 mm of each frame's fit alone, and no worse an MPJPE. Measured (seed 3, 150 frames): fit alone 90.9 mm /
    17.5 %, the depth filter 68.4 mm / 7.5 % (seeds 3-5 over 300 frames: 77.5 / 12.9 against 56.7 mm / 5.1 %;
    BENCHMARKS.md, "One camera at lag 0")."""
    scenario, results = robot
    before = score(results["streaming"].joints, scenario.ground_truth)
    now = score(results["depth filter"].joints, scenario.ground_truth)
    assert now[1] <= 0.5 * before[1], (now, before)
    assert now[0] <= before[0], (now, before)
    assert now[2] >= before[2] - 0.5  # as many joints out
    assert preset_config("default").depth_filter == DEPTH_FILTER  # the default since the bone gate (BONE_GATE)


def test_streaming_depth_filter_leaves_a_wide_rig_no_worse():
    """On the 4-camera lab rig (held-out seed 3, 150 frames) the views fix most joints in every direction: the
    filter moves few of them, and the output is no worse than each frame's fit alone (measured: 9.7 against
    10.0 mm)."""
    scenario = make_scenario("lab", num_frames=150, noise="realistic", seed=3)
    config = preset_config("default")
    now, before = (score(fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints, c, scenario.fps).joints,
                         scenario.ground_truth) for c in (config, replace(config, depth_filter=0.0)))
    assert now[0] <= before[0] + 0.05, (now, before)
    assert now[1] <= before[1] and now[2] >= before[2] - 0.5, (now, before)


def test_a_rejected_step_leaves_no_trace_in_the_depth_filter():
    """The tracker puts a fuser back when it rejects a refit (``snapshot``/``restore``): the depth filter too, so
    that the frames after give what they would have without the rejected one."""
    scenario = make_scenario("robot", num_frames=12, noise="realistic", seed=3)
    config = replace(preset_config("default"), depth_filter=DEPTH_FILTER)
    plain, undone = (StreamingFuser(scenario.rig, scenario.skeleton, config) for _ in range(2))
    for f in range(10):
        plain.step(scenario.keypoints[:, f], f / scenario.fps)
        undone.step(scenario.keypoints[:, f], f / scenario.fps)
    state = undone.snapshot()
    undone.step(scenario.keypoints[:, 11], 10.5 / scenario.fps)  # a step that is then rejected
    undone.restore(state)
    for f in (10, 11):
        expected = plain.step(scenario.keypoints[:, f], f / scenario.fps)
        np.testing.assert_array_equal(undone.step(scenario.keypoints[:, f], f / scenario.fps).joints, expected.joints)
    assert plain.filtered.any()  # the robot rig's depth was filtered: the test can fail


def test_the_depth_filter_needs_a_gauss_newton_streaming_fit():
    """Its prior is a term of the Gauss-Newton objective (``TemporalPrior.anchor``): with an Adam streaming fit (the
    ``paper`` preset's) the option is off, not an error at the first frame."""
    config = replace(preset_config("default"), depth_filter=DEPTH_FILTER)
    assert uses_depth_filter(config)
    adam = replace(config.streaming_refine, optimizer="adam", backend="analytic")
    assert not uses_depth_filter(replace(config, streaming_refine=adam))
    scenario = make_scenario("lab", num_frames=2, seed=3)
    assert StreamingFuser(scenario.rig, scenario.skeleton, replace(config, streaming_refine=adam)).filter is None

def test_a_frame_depends_on_the_frames_up_to_lag_after_it_only(robot):
    """The recording cut 6 frames (0.2 s) after frame 60 gives frame 60 the same estimate as the whole one: the
    output at a lag is what a live node with that lag would have published."""
    scenario, results = robot
    config = preset_config("default")
    cut = fuse_fixed_lag(scenario.rig, scenario.skeleton, scenario.keypoints[:, :67], config, scenario.fps, lag=0.2)
    np.testing.assert_array_equal(cut.joints[60], results[0.2].joints[60])
    np.testing.assert_array_equal(cut.covariance[60], results[0.2].covariance[60])
    assert not np.array_equal(cut.joints[66], results[0.2].joints[66])  # the last frames lacked their look-ahead


def test_covariance_is_calibrated_at_a_lag(robot):
    """A position covariance in m^2, world frame: its 90 % ellipsoid holds about 90 % of the true errors, at lag 0
    and 0.2 s, and every joint more than 150 mm off has a largest standard deviation of at least 75 mm
    (``covariance_scale``, ``bias_share`` and ``lag_covariance`` chosen on seeds 0-2; measured here, seed 3 over 150
    frames: 86.7 % and 79.4 %, every such joint flagged; seeds 3-5 over 300 frames: BENCHMARKS.md); not always wider,
    which would say little."""
    scenario, results = robot
    for lag in (0.0, 0.2):
        inside, flagged = calibration(results[lag].joints, results[lag].covariance, scenario.ground_truth)
        assert 75.0 <= inside <= 97.0, (lag, inside)
        assert flagged == 100.0, (lag, flagged)
    # Uncalibrated (no lasting detector error, no scale) it is far too sure of itself: the test can fail.
    raw = replace(preset_config("default"), covariance_scale=1.0, bias_share=0.0, lag_covariance=(1.0, 1.0))
    result = fuse_fixed_lag(scenario.rig, scenario.skeleton, scenario.keypoints, raw, scenario.fps, lag=0.2)
    assert calibration(result.joints, result.covariance, scenario.ground_truth)[0] < 60.0


@pytest.mark.parametrize("mode", ["streaming", "offline"])
def test_streaming_and_offline_covariances_are_calibrated_and_flag_gross_errors(robot, mode):
    """Streaming and offline too: the 90 % ellipsoid holds about 90 % of the true errors (scales chosen on seeds
    0-2; measured here, seed 3 over 150 frames: 87.6 % and 88.4 %; the fit's first-order covariance alone held
    99.9-100 %), and every joint more than 150 mm off has a largest standard deviation of at least 75 mm."""
    scenario, results = robot
    inside, flagged = calibration(results[mode].joints, results[mode].covariance, scenario.ground_truth)
    assert 80.0 <= inside <= 96.0, inside
    assert np.isnan(flagged) or flagged == 100.0, flagged


def test_a_joint_whose_views_disagree_gets_a_wider_covariance():
    """The residual factor: same geometry, a joint seen by 3 views 3 px off (as assumed) keeps the covariance's
    shape scaled, one 9 px off gets about 8 times the variance; the scales act along the eigenvectors."""
    covariance = np.diag([1e-4, 4e-4, 9e-2])[None, None]  # [F=1, J=1, 3, 3] m^2: the third axis is the loose one
    fitted = FusionResult(np.zeros((1, 1, 3)), np.ones((1, 1), np.float32), covariance, np.full((1, 1), 3, np.uint8),
                          np.full((1, 1), 3.0, np.float32), ["joint"])
    calibrated = calibrate_covariance(fitted, (0.25, 1.0), pixel_sigma=3.0).covariance[0, 0]
    np.testing.assert_allclose(np.diag(calibrated), [0.25e-4, 1e-4, 9e-2])
    far = replace(fitted, reprojection_error=np.full((1, 1), 9.0, np.float32))
    wider = calibrate_covariance(far, (0.25, 1.0), 3.0).covariance[0, 0]
    np.testing.assert_allclose(np.diag(wider) / np.diag(calibrated), (0.5 + 27.0) / (0.5 + 3.0))
    unknown = replace(fitted, covariance=np.full((1, 1, 3, 3), np.nan))
    assert np.isnan(calibrate_covariance(unknown, (0.25, 1.0), 3.0).covariance).all()


def test_the_residual_is_judged_against_each_persons_own_pixel_noise():
    """Two people, each joint's views 6 px apart: against a person whose detector shows 6 px (``[N, 1]`` noise) it
    is as usual and the covariance keeps its scale; against 3 px it counts as disagreement and widens."""
    covariance = np.broadcast_to(np.diag([1e-4, 4e-4, 9e-2]), (2, 1, 3, 3)).copy()  # [N=2, J=1, 3, 3] m^2
    fitted = FusionResult(np.zeros((2, 1, 3)), np.ones((2, 1), np.float32), covariance,
                          np.full((2, 1), 3, np.uint8), np.full((2, 1), 6.0, np.float32), ["joint"])
    calibrated = calibrate_covariance(fitted, (1.0, 1.0), np.array([[6.0], [3.0]])).covariance[:, 0]
    np.testing.assert_allclose(calibrated[0], covariance[0, 0] * (0.5 + 3.0) / (0.5 + 3.0))
    np.testing.assert_allclose(calibrated[1], covariance[1, 0] * (0.5 + 12.0) / (0.5 + 3.0))


def test_two_views_that_another_view_disputes_widen_the_covariance():
    """Two supporting views leave one degree of freedom of residual: a joint they agree on while a third view that
    detects it disagrees gets ``DISSENT_VARIANCE`` times the variance; undisputed, or with three supporting views,
    it does not."""
    covariance = np.broadcast_to(np.diag([1e-4, 4e-4, 9e-2]), (1, 3, 3, 3)).copy()  # [F=1, J=3, 3, 3] m^2
    fitted = FusionResult(np.zeros((1, 3, 3)), np.ones((1, 3), np.float32), covariance,
                          np.array([[2, 2, 3]], np.uint8), np.full((1, 3), 3.0, np.float32), ["a", "b", "c"])
    uv = np.zeros((4, 1, 3, 2))
    uv[3, 0, 1] = np.nan  # joint b: the fourth view has nothing
    confidence = np.full((4, 1, 3), 0.9)
    dissent = dissenting_views(uv, confidence, fitted.num_views, min_confidence=0.1)
    np.testing.assert_array_equal(dissent, [[2, 1, 1]])
    plain = calibrate_covariance(fitted, (1.0, 1.0), 3.0).covariance
    disputed = calibrate_covariance(fitted, (1.0, 1.0), 3.0, dissent).covariance
    np.testing.assert_allclose(disputed[0, :2], DISSENT_VARIANCE * plain[0, :2])
    np.testing.assert_allclose(disputed[0, 2], plain[0, 2])
    alone = calibrate_covariance(fitted, (1.0, 1.0), 3.0, np.zeros((1, 3), np.int64)).covariance
    np.testing.assert_allclose(alone, plain)


def test_a_person_whose_views_often_disagree_gets_a_wider_and_rounder_covariance():
    """Two people, four joints each seen by three supporting views: the first with no other view detecting its joints,
    the second with one dissenting view on two joints (2 of 14 detections, a share of 1/7, beyond ``GROSS_SHARE``).
    ``gross[0]`` widens the second person's every joint by ``1 + gross[0] x``, ``gross[1]`` floors its thin axes at
    ``gross[1] x`` times the long one (``x`` the share beyond ``GROSS_SHARE``); the first person keeps its
    covariance."""
    covariance = np.broadcast_to(np.diag([1e-4, 4e-4, 9e-2]), (2, 4, 3, 3)).copy()  # [N=2, J=4, 3, 3] m^2
    fitted = FusionResult(np.zeros((2, 4, 3)), np.ones((2, 4), np.float32), covariance, np.full((2, 4), 3, np.uint8),
                          np.full((2, 4), 3.0, np.float32), list("abcd"))
    dissent = np.array([[0, 0, 0, 0], [1, 1, 0, 0]])
    excess = 2.0 / 14.0 - GROSS_SHARE
    plain = calibrate_covariance(fitted, (1.0, 1.0), 3.0, dissent).covariance
    wider = calibrate_covariance(fitted, (1.0, 1.0), 3.0, dissent, (5.0, 0.0)).covariance
    np.testing.assert_allclose(wider[0], plain[0])
    np.testing.assert_allclose(wider[1], plain[1] * (1.0 + 5.0 * excess))
    rounder = calibrate_covariance(fitted, (1.0, 1.0), 3.0, dissent, (0.0, 0.05)).covariance
    np.testing.assert_allclose(rounder[0], plain[0])
    floor = 0.05 * excess * plain[1, 0, 2, 2]
    np.testing.assert_allclose(np.diag(rounder[1, 0]), [max(1e-4, floor), max(4e-4, floor), 9e-2])


def test_hard_noise_on_the_robot_rig_is_covered_streaming_and_at_a_lag():
    """The robot rig with ``hard`` noise (8 % confident outliers, 4 % swapped labels), seed 3, 150 frames: the 90 %
    ellipsoid holds about 90 % of the true errors, streaming and at lag 0.2 s (measured 86.1 % and 86.2 %; before
    the gross-error terms of ``calibrate_covariance``: 82.0 % and 70.6 %, the lag's thin axes too thin for the sideways
    part of its wrong depths; seeds 3-5 over 300 frames: BENCHMARKS.md)."""
    scenario = make_scenario("robot", num_frames=150, noise="hard", seed=3)
    config = preset_config("default")
    streaming = fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints, config, scenario.fps)
    lagged = fuse_fixed_lag(scenario.rig, scenario.skeleton, scenario.keypoints, config, scenario.fps, lag=0.2)
    for name, result in (("streaming", streaming), ("lag 0.2 s", lagged)):
        inside, flagged = calibration(result.joints, result.covariance, scenario.ground_truth)
        assert 84.0 <= inside <= 95.0, (name, inside)
        assert flagged == 100.0, (name, flagged)


@pytest.mark.parametrize("depth_filter", [0.0, DEPTH_FILTER])
def test_streaming_flags_the_gross_errors_of_a_disputed_pair_of_views(depth_filter):
    """The lab rig with ``hard`` noise, seed 3, 150 frames: of the joints more than 150 mm off, at least 90 % have a
    largest standard deviation of 75 mm or more (nearly all were two views agreeing on a wrong point while another
    view disagreed; 61 % were flagged on seeds 3-5 before). The 90 % ellipsoid still holds at most 95 % with each
    frame's fit alone; with the depth filter (the default) this seed holds 95.5 % (seeds 3-5 over 300 frames:
    94.1 %, BENCHMARKS.md "One camera at lag 0"), so its bound here is 96 %."""
    scenario = make_scenario("lab", num_frames=150, noise="hard", seed=3)
    result = fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints,
                            replace(preset_config("default"), depth_filter=depth_filter), scenario.fps)
    inside, flagged = calibration(result.joints, result.covariance, scenario.ground_truth)
    assert flagged >= 90.0, flagged
    assert inside <= (96.0 if depth_filter else 95.0), inside


def test_the_lag_covariance_is_calibrated_on_a_rig_it_was_not_tuned_on():
    """The portrait rig (never tuned on), seed 3, 150 frames, lag 0.2 s: the 90 % ellipsoid holds 85-95 % of the
    errors. Its residual was judged against the nominal 3 px though the person's own noise was already in the
    covariance: the portrait rig's larger pixel errors counted twice and it held 98.8 % (seeds 3-5)."""
    scenario = make_scenario("portrait", num_frames=150, noise="realistic", seed=3)
    result = fuse_fixed_lag(scenario.rig, scenario.skeleton, scenario.keypoints, preset_config("default"),
                            scenario.fps, lag=0.2)
    inside, _ = calibration(result.joints, result.covariance, scenario.ground_truth)
    assert 85.0 <= inside <= 95.0, inside


def test_a_view_that_detects_a_joint_but_disagrees_pulls_it_and_widens_its_covariance_that_way():
    """A joint three portrait views see where it is while the fourth's keypoint is 60 px off: ``dissent_pull`` is the
    Gauss-Newton step that would count the fourth view as much as each other (it brings the joint nearer that
    keypoint, to the least-squares point of the four views); ``widen_toward_dissent`` gives the covariance at
    least ``DISSENT_PULL`` times its squared length along it, and leaves a joint no view disputes as it was."""
    rig = make_scenario("portrait", num_frames=2, seed=0).rig
    points = np.array([[[0.0, 0.0, 1.2], [0.1, 0.2, 1.0]]])  # [F=1, J=2, 3] m
    uv = project_pinhole(rig, points)  # [V, 1, 2, 2] px
    uv[3, 0, 0, 0] += 60.0
    confidence = np.full((4, 1, 2), 0.9)
    support = confidence * np.array([1.0, 1.0, 1.0, 0.0])[:, None, None]
    pull = dissent_pull(rig, points, uv, confidence, support, min_confidence=0.1)  # [1, 2, 3] m
    np.testing.assert_array_equal(pull[0, 1], 0.0)

    def squared_error(step: float) -> float:  # of all four views, px^2
        return float(((project_pinhole(rig, points + step * pull)[:, 0, 0] - uv[:, 0, 0]) ** 2).sum())

    assert squared_error(1.0) < min(squared_error(0.0) * 0.9, squared_error(0.9), squared_error(1.1))
    covariance = np.broadcast_to(np.eye(3) * 1e-6, (1, 2, 3, 3)).copy()
    fitted = FusionResult(points, np.ones((1, 2), np.float32), covariance, np.array([[3, 4]], np.uint8),
                          np.ones((1, 2), np.float32), ["a", "b"])
    widened = widen_toward_dissent(fitted, pull).covariance
    direction = pull[0, 0] / np.linalg.norm(pull[0, 0])
    np.testing.assert_allclose(direction @ widened[0, 0] @ direction, DISSENT_PULL * (pull[0, 0] ** 2).sum())
    np.testing.assert_allclose(widened[0, 1], covariance[0, 1])
    # Across the pull nothing changes; a covariance already wide enough along it stays as it is.
    across = np.cross(direction, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    np.testing.assert_allclose(across @ widened[0, 0] @ across, 1e-6)
    wide = replace(fitted, covariance=np.broadcast_to(np.eye(3), (1, 2, 3, 3)).copy())
    np.testing.assert_allclose(widen_toward_dissent(wide, pull).covariance, wide.covariance)


def _flagged(result: FusionResult, truth: np.ndarray) -> tuple[int, float]:
    """Joints more than 150 mm off, and the share (%) of them with a largest standard deviation of 75 mm or more."""
    far = int((np.linalg.norm(result.joints - truth, axis=-1) > 0.15).sum())
    return far, calibration(result.joints, result.covariance, truth)[1]


def test_streaming_flags_the_joints_that_three_views_carry_with_one_of_them_wrong():
    """The portrait rig, realistic noise, seed 9 (a tuning seed), its first 90 frames: 8 joints are more than 150 mm
    off, most of them placed by three supporting views one of which is wrong while the view that was right dissents,
    at reprojection errors as ordinary as the rig's others. Every one has a largest standard deviation of at least
    75 mm (75 % before ``dissent_pull`` and before a joint held to its bones kept its calibrated covariance). That is
    each frame's fit alone; the depth filter (the default) leaves 1 of them, flagged too."""
    scenario = make_scenario("portrait", num_frames=300, noise="realistic", seed=9)
    config = preset_config("default")
    far = {}
    for depth_filter in (0.0, DEPTH_FILTER):
        result = fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints[:, :90],
                                replace(config, depth_filter=depth_filter), scenario.fps)
        far[depth_filter], flagged = _flagged(result, scenario.ground_truth[:90])
        assert far[depth_filter] == 0 or flagged == 100.0, (depth_filter, flagged)
    assert far[0.0] >= 5 and far[DEPTH_FILTER] <= far[0.0], far


def test_a_lag_flags_the_joints_that_the_views_which_see_them_dispute():
    """The lab rig with ``hard`` noise, seed 11 (a tuning seed), the first 45 frames at lag 0.2 s: a joint bridged
    from the frames around it while every view that detects it, or all but one, place it elsewhere is flagged (90.3 %
    of the 31 joints beyond 150 mm before)."""
    scenario = make_scenario("lab", num_frames=300, noise="hard", seed=11)
    result = fuse_fixed_lag(scenario.rig, scenario.skeleton, scenario.keypoints[:, :45], preset_config("default"),
                            scenario.fps, lag=0.2)
    far, flagged = _flagged(result, scenario.ground_truth[:45])
    assert far >= 20, far
    assert flagged == 100.0, flagged


def test_the_depth_filter_places_a_joint_with_its_bones_not_alone(monkeypatch):
    """Issue 21 item 2: along the depth two views of a narrow baseline barely fix, the filters' estimate enters the
    frame's refit as a prior, weighed with the views and the person's bone lengths. Output bones are nearer the
    person's lengths than where the filters alone would put their joints: the earlier output did put them there,
    and let the real take's limbs vary beyond issue 18's bound (BENCHMARKS.md, "One camera at lag 0")."""
    kept = []

    def keep(*arguments):
        answer = depth_filtered(*arguments)
        kept.append(answer[1:3])  # the joints the filters follow [1, J] and their estimate [1, J, 3]
        return answer

    monkeypatch.setattr(streaming, "depth_filtered", keep)
    scenario = make_scenario("robot", num_frames=60, noise="realistic", seed=3)
    fuser = StreamingFuser(scenario.rig, scenario.skeleton, replace(preset_config("default"), depth_filter=DEPTH_FILTER))
    bones = scenario.skeleton.bone_array
    output_miss, filters_miss = [], []
    for f in range(60):
        prior = fuser.bone_prior()
        joints = fuser.step(scenario.keypoints[:, f], f / scenario.fps).joints[0]
        followed, estimate = kept[-1][0][0], kept[-1][1][0]
        if prior is None or not followed.any():
            continue
        alone = np.where(followed[:, None], estimate, joints)
        near = followed[bones].any(-1) & np.isfinite(joints[bones]).all((-1, -2)) & np.isfinite(prior.lengths)
        for pose, miss in ((joints, output_miss), (alone, filters_miss)):
            lengths = np.linalg.norm(pose[bones[:, 0]] - pose[bones[:, 1]], axis=-1)
            miss.extend(np.abs(lengths - prior.lengths)[near])
    # Measured: 28.5 against 39.0 mm over 889 bones.
    assert len(output_miss) > 100  # the filters followed joints of many bones: the test can fail
    assert np.mean(output_miss) < 0.85 * np.mean(filters_miss), (np.mean(output_miss), np.mean(filters_miss))


def _jumpy_frames(noise: str, lag: float, num_frames: int = 45) -> np.ndarray:
    """Per frame ``[F]``: whether the fixed-lag fuser's fit-only fuser counted the person jumpy (robot rig, seed 1)."""
    scenario = make_scenario("robot", num_frames=num_frames, noise=noise, seed=1)
    fuser = fixed_lag.FixedLagFuser(scenario.rig, scenario.skeleton, preset_config("default"), lag)
    jumpy = []
    for f in range(num_frames):
        fuser.step(scenario.keypoints[:, f], f / scenario.fps)
        jumpy.append(fuser.fuser.jumpy and fuser.smoother.newest.jumpy)
    return np.array(jumpy)


def test_a_person_whose_triangulations_often_jump_is_gated_at_a_lag_only():
    """``JUMP_SHARE``: with ``hard`` noise on the robot rig (8 % confident outliers, 4 % swapped labels) 38-45 % of the
    triangulated joints lie beyond the gate from the person's motion, with realistic noise at most 22 % (seeds 0-5):
    the first is jumpy within a second at a lag, the second never; at lag 0 nobody is (the causal filter's coverage)."""
    assert _jumpy_frames("hard", 0.2)[30:].all()
    assert not _jumpy_frames("realistic", 0.2).any()
    assert not _jumpy_frames("hard", 0.0).any()


def test_lag_1s_is_near_offline_on_the_robot_rig_with_hard_noise():
    """Issue 21's lag 1 s target, MPJPE <= 1.15x offline, with ``hard`` noise on the robot rig (seed 1, 90 frames).
    Measured: offline 109.4 mm, lag 1 s 115.1 mm (1.05x); before the jumpy person's gate and tight robust weights
    (each frame's fit started from its triangulation, 1.4 m off on average) 134.3 mm (1.23x). Seeds 3-5 over 300 frames:
    BENCHMARKS.md, "Fixed lag"."""
    scenario = make_scenario("robot", num_frames=90, noise="hard", seed=1)
    config = preset_config("default")
    offline = score(fuse_offline(scenario.rig, scenario.skeleton, scenario.keypoints, config, fps=scenario.fps).joints,
                    scenario.ground_truth)
    lagged = score(fuse_fixed_lag(scenario.rig, scenario.skeleton, scenario.keypoints, config, scenario.fps,
                                  lag=1.0).joints, scenario.ground_truth)
    assert lagged[0] <= 1.15 * offline[0], (lagged, offline)
    assert lagged[2] >= 90.0  # not by leaving joints out


def test_a_frame_out_leaves_its_bookkeeping_for_after_and_the_output_is_the_same():
    """The node publishes a frame before the smoother's bookkeeping of it (``settle``: what the next frames need of
    it, and the bone priors of the next read-out); a caller that never settles has it done by the next read-out.
    Robot rig, ``hard`` noise, complete skeletons, lag 0.2 s: every frame bit for bit the same either way, nearer the
    truth than streaming."""
    scenario = make_scenario("robot", num_frames=60, noise="hard", seed=3)
    config = replace(preset_config("default"), complete=True)
    lazy, settled = (fixed_lag.FixedLagFuser(scenario.rig, scenario.skeleton, config, lag=0.2) for _ in range(2))
    out_lazy, out_settled, left = [], [], 0
    for f in range(scenario.keypoints.shape[1]):
        out_lazy += lazy.step(scenario.keypoints[:, f], f / FPS)
        frames = settled.step(scenario.keypoints[:, f], f / FPS)
        out_settled += frames
        if frames:
            left += settled.smoother.settle()  # the frame out left it
            assert not settled.smoother.settle()  # done once
    out_lazy, out_settled = out_lazy + lazy.flush(), out_settled + settled.flush()
    assert left == len(out_settled) - 6 and len(out_lazy) == len(out_settled) == 60  # 6 frames flushed at the end
    for (stamp, a), (other, b) in zip(out_lazy, out_settled):
        assert stamp == other
        for name in ("joints", "covariance", "confidence", "num_views", "reprojection_error"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    joints = np.concatenate([result.joints for _, result in out_settled])
    truth = scenario.ground_truth
    streamed = fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints, config, FPS).joints
    error = np.nanmean(np.linalg.norm(joints - truth, axis=-1))
    assert error < np.nanmean(np.linalg.norm(streamed - truth, axis=-1))


def test_the_depth_filter_s_prior_leaves_out_a_joint_it_would_pull_off_its_bones():
    """``breaks_bones``: a joint whose move to the filters' estimate lengthens one of its bones by more than
    ``BONE_GATE`` of the bone's standard deviations beyond what the fit has is left to the fit (the real take's elbow,
    pulled 150-260 mm along its depth by a lagging estimate); a move of a whole limb that keeps its bones is not (lab,
    a frame whose fit is off everywhere and whose estimate is right), nor a bone of unknown length."""
    bones = np.array([[0, 1], [1, 2]])
    fitted = np.array([[[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.6, 0.0, 0.0]]])  # [1, 3, 3], bones of 0.3 m
    prior = BonePrior(lengths=np.array([[0.3, 0.3]]), sigmas=np.array([[0.01, 0.01]]))
    elbow = fitted.copy()
    elbow[0, 1, 1] = 0.1  # the middle joint moved 0.1 m across its bones: both 16 mm (1.6 sigma) longer
    assert not streaming.breaks_bones(elbow, fitted, bones, prior).any()
    elbow[0, 1, 1] = 0.15  # 35 mm (3.5 sigma) longer
    np.testing.assert_array_equal(streaming.breaks_bones(elbow, fitted, bones, prior), [[False, True, False]])
    limb = fitted + [0.0, 0.5, 0.0]  # all three moved together: every bone as long as it was
    assert not streaming.breaks_bones(limb, fitted, bones, prior).any()
    unknown = BonePrior(lengths=np.full((1, 2), np.nan), sigmas=np.ones((1, 2)))
    assert not streaming.breaks_bones(elbow, fitted, bones, unknown).any()
