"""Joints seen by one view only (or by views that disagree): placed on a view's ray by the bone-length prior
(``streaming.ray_bone_guess``) and published by the streaming fuser when ``FusionConfig.single_view_joints``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from skelsplat_ros.fusion import preset_config
from skelsplat_ros.fusion.result import bone_lengths_of
from skelsplat_ros.fusion.streaming import fuse_streaming, ray_bone_guess
from skelsplat_ros.geometry.triangulation import project_pinhole
from skelsplat_ros.sim import make_scenario

ELBOW, WRIST = 12, 13  # h36m17 l_elbow, l_wrist


@pytest.fixture(scope="module")
def take():
    return make_scenario("lab", num_frames=45, noise="realistic", seed=5)


def _one_frame(take, frame: int = 20):
    """Ground-truth joints ``[1, J, 3]``, their exact projections ``[V, 1, J, 2]``, unit confidences, true lengths."""
    truth = take.ground_truth[frame][None]
    uv = project_pinhole(take.rig, truth)
    lengths = bone_lengths_of(truth, take.skeleton)
    return truth, uv, np.ones(uv.shape[:-1]), lengths, np.full_like(lengths, 0.01)


def _guess(take, points, uv, confidence, lengths, sigmas, predictions=None):
    predictions = np.full_like(points, np.nan) if predictions is None else predictions
    return ray_bone_guess(take.rig, take.skeleton, uv, confidence, points, lengths, sigmas, predictions, 0.3, 3.0)


def test_a_joint_between_two_known_neighbours_is_placed_at_its_true_depth(take):
    truth, uv, confidence, lengths, sigmas = _one_frame(take)
    points = truth.copy()
    points[0, ELBOW] = np.nan
    confidence[1:, 0, ELBOW] = 0.0  # view 0 alone sees the elbow
    guesses, covariance, views = _guess(take, points, uv, confidence, lengths, sigmas)
    assert np.linalg.norm(guesses[0, ELBOW] - truth[0, ELBOW]) < 0.01
    assert views[0, ELBOW] == 0 and (views[0, np.arange(17) != ELBOW] == -1).all()
    # Certain across the ray, not along it.
    ray = truth[0, ELBOW] - take.rig.centres[0]
    ray /= np.linalg.norm(ray)
    variances = np.linalg.eigvalsh(covariance[0, ELBOW])
    assert ray @ covariance[0, ELBOW] @ ray == pytest.approx(variances.max(), rel=1e-6)
    assert variances.max() > 100 * variances.min()
    np.testing.assert_array_equal(guesses[0, np.arange(17) != ELBOW], truth[0, np.arange(17) != ELBOW])


def test_a_wrist_with_one_neighbour_is_on_its_ray_within_a_bone_length_and_the_prediction_settles_its_depth(take):
    truth, uv, confidence, lengths, sigmas = _one_frame(take)
    points = truth.copy()
    points[0, WRIST] = np.nan
    confidence[1:, 0, WRIST] = 0.0
    guesses, _, _ = _guess(take, points, uv, confidence, lengths, sigmas)
    forearm = np.linalg.norm(truth[0, WRIST] - truth[0, ELBOW])
    assert np.linalg.norm(guesses[0, WRIST] - truth[0, WRIST]) <= forearm
    assert np.linalg.norm(project_pinhole(take.rig, guesses)[0, 0, WRIST] - uv[0, 0, WRIST]) < 1e-6
    # A prediction 5 cm off picks the right one of the two depths at the forearm's length.
    predictions = np.full_like(points, np.nan)
    predictions[0, WRIST] = truth[0, WRIST] + np.array([0.05, 0.0, 0.0])
    guesses, _, _ = _guess(take, points, uv, confidence, lengths, sigmas, predictions)
    assert np.linalg.norm(guesses[0, WRIST] - truth[0, WRIST]) < 0.01


def test_of_two_disagreeing_views_the_one_that_fits_the_skeleton_wins_and_a_wrong_one_alone_is_refused(take):
    truth, uv, confidence, lengths, sigmas = _one_frame(take)
    points = truth.copy()
    points[0, ELBOW] = np.nan
    confidence[2:, 0, ELBOW] = 0.0
    uv[0, 0, ELBOW] += 150.0  # view 0 detected something else
    guesses, _, views = _guess(take, points, uv, confidence, lengths, sigmas)
    assert views[0, ELBOW] == 1 and np.linalg.norm(guesses[0, ELBOW] - truth[0, ELBOW]) < 0.01
    confidence[1, 0, ELBOW] = 0.0  # only the wrong view left: no depth fits both bones
    guesses, _, views = _guess(take, points, uv, confidence, lengths, sigmas)
    assert views[0, ELBOW] == -1 and not np.isfinite(guesses[0, ELBOW]).any()


def test_streaming_publishes_single_view_joints_without_changing_the_others(take):
    keypoints = take.keypoints.copy()
    keypoints[1:, 20:30, WRIST] = np.nan  # frames 20-29: only view 0 sees the left wrist
    keypoints[1:, 20:30, WRIST, 2] = 0.0
    config = preset_config("default")
    plain = fuse_streaming(take.rig, take.skeleton, keypoints, config, take.fps)
    single = fuse_streaming(take.rig, take.skeleton, keypoints, replace(config, single_view_joints=True), take.fps)
    lost = ~np.isfinite(plain.joints[20:30, WRIST]).all(-1)
    assert lost.sum() >= 5  # held one frame by the prediction, then gone
    found = np.isfinite(single.joints[20:30, WRIST]).all(-1)
    assert found.all()
    forearm = np.linalg.norm(take.ground_truth[20:30, WRIST] - take.ground_truth[20:30, ELBOW], axis=-1)
    error = np.linalg.norm(single.joints[20:30, WRIST] - take.ground_truth[20:30, WRIST], axis=-1)
    assert (error[lost] < forearm[lost]).all()
    assert (single.confidence[20:30, WRIST][lost] == 0).all() and (single.num_views[20:30, WRIST][lost] == 1).all()
    # Nothing else moves (the guesses are neither fitted nor remembered); what is new is a one-view guess.
    estimated = np.isfinite(plain.joints).all(-1)
    np.testing.assert_array_equal(single.joints[estimated], plain.joints[estimated])
    assert (single.num_views[~estimated & np.isfinite(single.joints).all(-1)] == 1).all()


def test_single_view_joints_of_one_person_fused_beside_someone_nobody_sees(take):
    """Several people in one batch, one of them not fitted this frame: the guesses use the fitted person's views
    only (the unfitted person's rows must not shift or broadcast into them)."""
    from skelsplat_ros.fusion.streaming import StreamingFuser, step_together

    config = replace(preset_config("default"), single_view_joints=True)
    fusers = [StreamingFuser(take.rig, take.skeleton, config) for _ in range(2)]
    for frame in range(30):
        seen = take.keypoints[:, frame].copy()
        if frame >= 20:  # from frame 20 (bone lengths known by then) only view 0 sees the left wrist
            seen[1:, WRIST] = np.nan
            seen[1:, WRIST, 2] = 0.0
        nobody = np.full_like(seen, np.nan)
        nobody[..., 2] = 0.0
        absent, person = step_together(fusers, np.stack([nobody, seen]), frame / take.fps)
    forearm = np.linalg.norm(take.ground_truth[29, WRIST] - take.ground_truth[29, ELBOW])
    assert np.linalg.norm(person.joints[0, WRIST] - take.ground_truth[29, WRIST]) < forearm
    assert person.num_views[0, WRIST] == 1 and person.confidence[0, WRIST] == 0
    assert not np.isfinite(absent.joints).any()
