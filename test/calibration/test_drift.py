"""The live drift watch and recalibration, on simulated recordings replayed through the tracker."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from skelsplat_ros.bench.shelf import default_shelf_dir, shelf_available
from skelsplat_ros.calibration.drift import CorrectedRigSource, DriftWatch, RecalibrationConfig, Recalibrator
from skelsplat_ros.calibration.refine import rig_change
from skelsplat_ros.fusion import preset_config
from skelsplat_ros.geometry.calibration import load_calibration
from skelsplat_ros.geometry.camera import Camera, CameraRig, rodrigues_to_matrix
from skelsplat_ros.geometry.rig_source import FrameRig, StaticRigSource
from skelsplat_ros.sim.scenes import compose_people, make_multi_person_scenario
from skelsplat_ros.skeleton.models import get_skeleton
from skelsplat_ros.tracking import MultiPersonTracker, TrackerConfig

FPS = 15.0
BUMP = 5.0  # s


def _bump(camera: Camera, degrees: float, metres: float = 0.0) -> Camera:
    """``camera`` turned about its vertical image axis and shifted sideways."""
    R = rodrigues_to_matrix(np.array([0.0, np.radians(degrees), 0.0])) @ camera.R
    centre = camera.centre + metres * camera.R[0]
    return Camera(camera.name, camera.K, R, -R @ centre, camera.size, camera.dist)


@functools.lru_cache(maxsize=4)
def _bumped_recording(degrees: float, metres: float = 0.0, view: int = 2):
    """Two people in the lab for 20 s at 15 Hz; camera ``view`` bumped at 5 s. Returns the scene, the bumped rig and
    the detections ``[V, F, S, J, 3]`` (the bumped camera's from then on as the bumped camera sees them)."""
    sc = make_multi_person_scenario("lab", 2, num_frames=int(20 * FPS), fps=FPS, seed=4, noise="realistic")
    bumped = CameraRig([_bump(c, degrees, metres) if v == view else c for v, c in enumerate(sc.rig)])
    after = compose_people(bumped, sc.skeleton, sc.ground_truth, fps=FPS, seed=4).keypoints
    slots = max(after.shape[2], sc.keypoints.shape[2])
    pad = lambda k: np.concatenate([k, np.full(k.shape[:2] + (slots - k.shape[2],) + k.shape[3:], np.nan)], 2)  # noqa
    keypoints = pad(sc.keypoints)
    keypoints[view, int(BUMP * FPS):] = pad(after)[view, int(BUMP * FPS):]
    return sc, bumped, keypoints


def _replay(sc, keypoints, until: float, on_frame=None, fps: float = FPS):
    """The tracker on the calibrated (pre-bump) rig ``sc.rig``, frame by frame, stamped ``fps`` apart;
    ``on_frame(stamp, rig, detections, step)``, True to stop."""
    tracker = MultiPersonTracker(sc.rig, sc.skeleton, preset_config("default"), TrackerConfig())
    for f in range(min(int(until * fps), keypoints.shape[1])):
        detections = [rows[(np.nan_to_num(rows[..., 2]) > 0).any(-1)] for rows in keypoints[:, f]]
        step = tracker.step(detections, f / fps)
        if on_frame is not None and on_frame(f / fps, tracker.rig, detections, step):
            break


SHELF = default_shelf_dir()


@pytest.mark.skipif(not shelf_available(SHELF), reason=f"Shelf data not in {SHELF}")
def test_no_camera_of_the_still_shelf_rig_is_named():
    """Shelf's five cameras never moved (OpenPose keypoints, real calibration). Replayed at 5 Hz (a slow detector's
    rate) the watch named cam_3 at 20.6 s and 22.2 s (its lone judged residuals: nearest free detections of other
    people) and cam_4 at 38 s."""
    data = np.load(SHELF / "keypoints.npz")
    keypoints = np.asarray(data["keypoints"], dtype=np.float64)[:, :150]
    cameras = [str(c) for c in data["cameras"]]
    take = SimpleNamespace(rig=load_calibration(SHELF / "calibration.toml").subset(cameras),
                           skeleton=get_skeleton(str(data["skeleton"])))
    watch = DriftWatch(cameras, take.skeleton)
    found = []
    _replay(take, keypoints, 30.0, lambda stamp, rig, detections, step: found.extend(
        (stamp, camera, watch.figures()) for camera in watch.observe(stamp, rig, detections, step)), fps=5.0)
    assert not found, found


@pytest.mark.parametrize("degrees, metres", [(5.0, 0.0), (40.0, 0.8)])
def test_a_bumped_camera_is_named_within_a_second_and_no_camera_before(degrees, metres):
    sc, _, keypoints = _bumped_recording(degrees, metres)
    watch = DriftWatch(sc.rig.names, sc.skeleton)
    found: list[tuple[float, str]] = []
    figures_before = []

    def on_frame(stamp, rig, detections, step):
        found.extend((stamp, camera) for camera in watch.observe(stamp, rig, detections, step))
        if BUMP - 1.0 < stamp < BUMP:
            figures_before.append(watch.figures())
        return stamp > BUMP + 3.0

    _replay(sc, keypoints, BUMP + 3.0, on_frame)
    print(f"{degrees} deg: found {found}; figures before the bump {figures_before[-1]}")
    assert found and found[0][1] == "cam2"
    assert BUMP <= found[0][0] <= BUMP + 1.0
    assert all(camera == "cam2" for _, camera in found)
    assert all(value < 15.0 for value in figures_before[-1].values())


def test_the_moved_camera_is_recalibrated_from_the_frames_after_it_was_named():
    sc, bumped, keypoints = _bumped_recording(5.0)
    watch = DriftWatch(sc.rig.names, sc.skeleton)
    recalibrator = Recalibrator(sc.skeleton, RecalibrationConfig(collect=8.0))
    outcome = []

    def on_frame(stamp, rig, detections, step):
        for camera in watch.observe(stamp, rig, detections, step):
            recalibrator.start(camera, stamp)
        if recalibrator.add(stamp, rig, detections):
            outcome.append(recalibrator.refine())
            return True
        return False

    _replay(sc, keypoints, 20.0, on_frame)
    correction = outcome[0]
    assert correction.camera == "cam2" and correction.accepted, correction.result.reasons
    rotation, translation = rig_change(bumped[2], correction.pose)
    assert rotation < 0.3 and translation < 0.02, (rotation, translation)
    held = correction.result.rig
    assert all(held[v] is sc.rig[v] for v in (0, 1, 3))


class _Moving:
    """A rig source whose cameras move a little every call (a robot's TF)."""

    def __init__(self, rig: CameraRig) -> None:
        self.rig, self.cameras, self.calls = rig, rig.names, 0

    def rig_for(self, views, timeout=0.0) -> FrameRig:
        self.calls += 1
        shift = np.array([0.01 * self.calls, 0.0, 0.0])
        return FrameRig(CameraRig([Camera(c.name, c.K, c.R, c.t - c.R @ shift, c.size, c.dist) for c in self.rig]))


def test_a_correction_is_an_offset_in_the_cameras_frame_on_top_of_the_sources_poses():
    sc = make_multi_person_scenario("lab", 1, num_frames=2, seed=1)
    old = sc.rig[1]
    new = _bump(old, 3.0, 0.2)
    static = CorrectedRigSource(StaticRigSource(sc.rig))
    assert static.rig_for({}).rig is sc.rig  # nothing corrected: the source's own rig
    static.correct(old, new)
    first, second = static.rig_for({}).rig, static.rig_for({}).rig
    assert first is second  # a static source's corrected rig is built once
    assert np.allclose(first[1].R, new.R) and np.allclose(first[1].t, new.t) and first[0] is sc.rig[0]
    moving = CorrectedRigSource(_Moving(sc.rig))
    moving.correct(old, new)
    for _ in range(3):  # the camera moves with its mount, the correction with it
        frame = moving.rig_for({}).rig
        source = moving.source.rig
        mount = moving.source.calls
        shift = np.array([0.01 * mount, 0.0, 0.0])
        assert np.allclose(frame[1].R, new.R)
        assert np.allclose(frame[1].centre, new.centre + shift)
        assert np.allclose(frame[0].centre, source[0].centre + shift)


def test_a_clock_going_back_starts_the_watch_afresh():
    sc, _, keypoints = _bumped_recording(40.0, 0.8)
    watch = DriftWatch(sc.rig.names, sc.skeleton)
    found = []

    def on_frame(stamp, rig, detections, step):
        found.extend(watch.observe(stamp, rig, detections, step))
        return False

    _replay(sc, keypoints, BUMP + 2.0, on_frame)  # cam2 is found moved...
    assert found == ["cam2"] and "cam2" in watch.moved()
    tracker = MultiPersonTracker(sc.rig, sc.skeleton, preset_config("default"), TrackerConfig())
    for f in range(int(FPS)):  # ... then the recording starts again (before the bump): its old figures go
        detections = [rows[(np.nan_to_num(rows[..., 2]) > 0).any(-1)] for rows in keypoints[:, f]]
        watch.observe(f / FPS, tracker.rig, detections, tracker.step(detections, f / FPS))
    assert watch.figures()["cam2"] < 15.0 and not watch.moved()
