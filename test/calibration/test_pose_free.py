"""What needs no poses: tracklets, the detection noise, the association across cameras and locating a camera."""

from __future__ import annotations

import numpy as np

from skelsplat_ros.calibration.association import associate_tracklets
from skelsplat_ros.calibration.bundle import Observations, bundle_adjust, BundleSettings
from skelsplat_ros.calibration.pnp import locate_camera
from skelsplat_ros.calibration.refine import rig_change
from skelsplat_ros.calibration.tracklets import detection_noise, link_tracklets
from skelsplat_ros.geometry.camera import Camera, CameraRig
from skelsplat_ros.geometry.triangulation import triangulate_dlt

from skelsplat_ros.sim import disturb_rig

from calibration_helpers import scene  # noqa: E402  (test/calibration is on sys.path: pytest prepend)


def _prepared(people: int):
    sc = scene(people)
    V, F, S, J, _ = sc.keypoints.shape
    uv = sc.rig.undistort(sc.keypoints[..., :2].reshape(V, -1, 2)).reshape(V, F, S, J, 2)
    confidence = np.nan_to_num(sc.keypoints[..., 2])
    labels = link_tracklets(uv, confidence, sc.skeleton.flip_permutation)
    return sc, uv, confidence, labels


def _purity(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Fraction of labelled detections whose label's majority person is theirs, and fraction labelled."""
    right = 0
    for label in np.unique(labels[labels >= 0]):
        _, counts = np.unique(truth[labels == label], return_counts=True)
        right += counts.max()
    labelled = int((labels >= 0).sum())
    return right / max(labelled, 1), labelled / max(int((truth >= 0).sum()), 1)


def test_tracklets_follow_one_person_each():
    sc, _, _, labels = _prepared(3)
    for v in range(len(sc.rig)):
        purity, _ = _purity(labels[v], sc.slot_person[v])
        assert purity > 0.99, (v, purity)


def test_the_detection_noise_is_what_the_true_rig_leaves_as_reprojection_error():
    sc, uv, confidence, labels = _prepared(2)
    noise = detection_noise(uv, confidence, labels)
    # The true rig's reprojection error of the oracle association, each point triangulated and adjusted.
    own = sc.person_keypoints  # [V, F, P, J, 3]
    V = len(sc.rig)
    pts = sc.rig.undistort(own[..., :2].reshape(V, -1, 2)).reshape(own.shape[:-1] + (2,))
    weight = np.where(np.nan_to_num(own[..., 2]) >= 0.3, np.nan_to_num(own[..., 2]), 0.0)
    seen = (weight > 0).sum(0) >= 2
    observations = Observations(np.nan_to_num(np.moveaxis(pts, 0, -2)[seen]), np.moveaxis(weight, 0, -1)[seen])
    start = triangulate_dlt(sc.rig, np.moveaxis(np.where(observations.weight[..., None] > 0, observations.uv, np.nan),
                                                1, 0), observations.weight.T)
    result = bundle_adjust(sc.rig, observations, start, np.zeros(V, dtype=bool), BundleSettings(noise=noise))
    median = float(np.nanmedian(result.residuals))
    print(f"noise {noise:.2f} px, true rig's median reprojection error {median:.2f} px")
    assert 0.8 * noise < median < 1.2 * noise


def test_association_needs_no_poses():
    sc, uv, confidence, labels = _prepared(3)
    noise = detection_noise(uv, confidence, labels)
    people = associate_tracklets(sc.rig, uv, confidence, labels, noise)
    nowhere = CameraRig([Camera(c.name, c.K, np.eye(3), np.zeros(3), c.size, c.dist) for c in sc.rig])
    assert np.array_equal(associate_tracklets(nowhere, uv, confidence, labels, noise), people)
    purity, coverage = _purity(people, sc.slot_person)
    print(f"association: {purity:.3f} right, {coverage:.3f} of the detections")
    assert purity > 0.99 and coverage > 0.8
    assert not np.isin(people[sc.slot_person < 0], np.unique(people[people >= 0])).any()  # no ghost in a person


def test_a_camera_is_located_from_the_peoples_joints_without_a_start():
    sc = scene(2)
    v = 2
    uv = sc.rig[v].undistort_pixels(sc.keypoints[v, ..., :2])
    confidence = np.nan_to_num(sc.keypoints[v, ..., 2])
    nowhere = disturb_rig(sc.rig, [v], seed=9, degrees=(60.0, 90.0), metres=(1.0, 2.0))[v]
    fit = locate_camera(sc.rig.K[v], sc.ground_truth, uv, confidence, sc.skeleton.flip_permutation, 8.0,
                        guess=(nowhere.R, nowhere.t))
    rotation, translation = rig_change(sc.rig[v], Camera("c", sc.rig.K[v], fit.R, fit.t, sc.rig[v].size))
    assert rotation < 0.2 and translation < 0.01, (rotation, translation)
    assert fit.inliers > 0.8 * fit.correspondences
    # Each detection matched to the person it is.
    matched = fit.person >= 0
    assert (fit.person[matched] == sc.slot_person[v][matched]).mean() > 0.99
