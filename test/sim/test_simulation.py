"""Tests of the simulated ground truth: motion, rigs, detector noise, scenarios."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at
from skelsplat_ros.sim import (
    MOTION_KINDS,
    NOISE_PRESETS,
    RIG_KINDS,
    DetectionInfo,
    NoiseModel,
    Scenario,
    generate_motion,
    make_rig,
    make_ring_rig,
    make_scenario,
    motion_joint_names,
    simulate_detections,
)
from skelsplat_ros.sim.rigs import RING_TIERS_M
from skelsplat_ros.skeleton.models import (
    builtin_skeletons,
    get_skeleton,
    skeleton_from_dict,
)

FPS = 30.0


def _speed(points: np.ndarray, fps: float = FPS) -> np.ndarray:
    return np.linalg.norm(np.diff(points, axis=0), axis=-1) * fps


@pytest.fixture(scope="module")
def body25_motions() -> dict[tuple[str, int], np.ndarray]:
    sk = get_skeleton("body25")
    return {(m, s): generate_motion(sk, 450, FPS, seed=s, motion=m) for m in MOTION_KINDS for s in (0, 1)}


# ------------------------------------------------------------------------------------------------------ motion


def test_motion_is_seeded_and_prefix_consistent():
    sk = get_skeleton("h36m17")
    a = generate_motion(sk, 200, FPS, seed=3)
    b = generate_motion(sk, 200, FPS, seed=3)
    c = generate_motion(sk, 200, FPS, seed=4)
    longer = generate_motion(sk, 320, FPS, seed=3)
    assert a.shape == (200, 17, 3) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.05
    np.testing.assert_allclose(longer[:200], a, atol=1e-12)  # a longer take starts with the shorter one
    # The motion is a function of time: 60 fps samples the same movement (to a few mm).
    fast = generate_motion(sk, 400, 60.0, seed=3)
    assert np.abs(fast[::2] - a).max() < 0.005


@pytest.mark.parametrize("name", sorted(builtin_skeletons()))
def test_bone_lengths_constant_for_every_builtin_skeleton(name):
    sk = get_skeleton(name)
    pts = generate_motion(sk, 300, FPS, seed=5, motion="mixed")
    bones = sk.bone_array
    lengths = np.linalg.norm(pts[:, bones[:, 0]] - pts[:, bones[:, 1]], axis=-1)
    assert lengths.std(axis=0).max() < 1e-3
    assert lengths.min() > 0.02
    # Left and right twins have the same length (the bone-symmetry prior's assumption).
    for a, b in sk.symmetric_bones:
        assert abs(lengths[0, a] - lengths[0, b]) < 1e-9


def test_motion_bounds_and_ground_contact(body25_motions):
    sk = get_skeleton("body25")
    feet = [sk.index(n) for n in sk.joint_names if n.endswith(("ankle", "heel", "toe"))]
    for (motion, seed), pts in body25_motions.items():
        pelvis = pts[:, sk.index("mid_hip")]
        assert np.linalg.norm(pelvis[:, :2], axis=-1).max() < 2.1, (motion, seed)
        assert pts[..., 2].min() > -0.005, (motion, seed)  # nothing under the floor
        assert pts[:, feet, 2].min(axis=1).max() < 0.05, (motion, seed)  # a foot on the ground in every frame
        assert pts[..., 2].max() < 2.4, (motion, seed)  # hands overhead of a tall person
        assert 0.45 < pelvis[:, 2].min() and pelvis[:, 2].max() < 1.1, (motion, seed)


def test_anthropometry_range():
    sk = get_skeleton("body25b")
    heights = []
    for seed in range(12):
        pts = generate_motion(sk, 1, FPS, seed=seed, motion="reach")
        heights.append(pts[0, sk.index("head"), 2])
    heights = np.array(heights)
    assert heights.min() > 1.5 and heights.max() < 1.96
    assert heights.std() > 0.05  # people differ


def test_velocities_are_human(body25_motions):
    sk = get_skeleton("body25")
    wrists = [sk.index("l_wrist"), sk.index("r_wrist")]
    for (motion, seed), pts in body25_motions.items():
        speed = _speed(pts)
        assert speed[:, wrists].max() < 4.0, (motion, seed)
        assert np.percentile(speed[:, wrists], 99) < 3.0, (motion, seed)
        assert speed.max() < 6.0, (motion, seed)  # swinging toes are the fastest points
        assert speed[:, sk.index("mid_hip")].max() < 1.8, (motion, seed)
        accel = np.linalg.norm(np.diff(pts, 2, axis=0), axis=-1) * FPS ** 2
        assert np.percentile(accel, 99.5) < 60.0, (motion, seed)


def test_motion_kinds_have_their_character(body25_motions):
    sk = get_skeleton("body25")
    pelvis = {k: v[:, sk.index("mid_hip")] for k, v in body25_motions.items()}
    for seed in (0, 1):
        walk = pelvis[("walk", seed)]
        path = np.linalg.norm(np.diff(walk[:, :2], axis=0), axis=-1).sum()
        assert path > 10.0  # ~1 m/s for 15 s
        heading = np.unwrap(np.arctan2(*np.diff(walk[::15, :2], axis=0).T[::-1]))
        assert np.ptp(heading) > 1.5  # a curved path that turns
        for kind in ("reach", "crouch", "turn"):
            assert np.linalg.norm(pelvis[(kind, seed)][:, :2] - pelvis[(kind, seed)][0, :2], axis=-1).max() < 0.45
        reach = body25_motions[("reach", seed)]
        wrist_z = reach[:, [sk.index("l_wrist"), sk.index("r_wrist")], 2].max(axis=1)
        assert wrist_z.max() - wrist_z.min() > 0.5  # arms go up
        crouch = pelvis[("crouch", seed)][:, 2]
        assert crouch.min() < 0.85 * crouch[0]
        turn = body25_motions[("turn", seed)]
        across = turn[:, sk.index("l_hip"), :2] - turn[:, sk.index("r_hip"), :2]
        facing = np.unwrap(np.arctan2(across[:, 0], -across[:, 1]))
        assert np.ptp(facing) > 1.5  # turns in place by more than 90 degrees


def test_motion_rejects_unknown_joints_and_motions():
    bad = skeleton_from_dict("bad", {"joints": ["nose", "l_tail_tip"], "bones": [["nose", "l_tail_tip"]]})
    with pytest.raises(ValueError, match="l_tail_tip"):
        generate_motion(bad, 10)
    with pytest.raises(ValueError, match="motion"):
        generate_motion(get_skeleton("coco17"), 10, motion="dance")
    names = motion_joint_names()
    for sk in builtin_skeletons().values():
        assert set(sk.joint_names) <= set(names)


def test_aliases_coincide():
    sk = skeleton_from_dict("aliases", {"joints": ["pelvis", "mid_hip", "hip", "body_center", "l_hip", "r_hip",
                                                   "neck", "l_shoulder", "r_shoulder"]})
    pts = generate_motion(sk, 30, seed=2)
    for k in (1, 2, 3):
        np.testing.assert_array_equal(pts[:, 0], pts[:, k])
    np.testing.assert_allclose(pts[:, 0], 0.5 * (pts[:, 4] + pts[:, 5]), atol=1e-12)
    mid_shoulder = 0.5 * (pts[:, 7] + pts[:, 8])
    assert np.linalg.norm(pts[:, 6] - mid_shoulder, axis=-1).max() < 0.05  # neck between the shoulders


# ------------------------------------------------------------------------------------------------------ rigs


@pytest.mark.parametrize("kind", RIG_KINDS)
def test_rig_layouts(kind):
    rig = make_rig(kind, seed=1)
    centres = rig.centres
    fx = rig.K[:, 0, 0]
    expected = {"surround": (8, (1920, 1080)), "lab": (4, (1920, 1080)), "robot": (3, (1280, 720)),
                "portrait": (4, (1080, 1920))}[kind]
    assert len(rig) == expected[0] and rig.names == [f"cam{i}" for i in range(expected[0])]
    assert all(c.size == expected[1] for c in rig)
    assert all(not c.has_distortion for c in rig)
    if kind == "surround":
        assert np.all(np.abs(np.linalg.norm(centres[:, :2], axis=1) - 4.0) < 0.25)
        assert np.all((centres[:, 2] >= 2.0) & (centres[:, 2] <= 2.5))
        assert np.all((fx > 1090) & (fx < 1510))
        azimuth = np.sort(np.arctan2(centres[:, 1], centres[:, 0]))
        assert np.diff(azimuth).min() > 0.5  # spread around the circle
    elif kind == "lab":
        assert np.all(np.abs(centres[:, :2]).min(axis=1) > 2.2)  # corners
        assert np.all((centres[:, 2] > 2.3) & (centres[:, 2] < 2.8))
    elif kind == "portrait":
        assert np.all((np.linalg.norm(centres[:, :2], axis=1) > 2.7) & (np.linalg.norm(centres[:, :2], axis=1) < 3.5))
        assert np.all((centres[:, 2] >= 1.2) & (centres[:, 2] <= 1.6))
        assert np.all((fx > 1240) & (fx < 1560))
        azimuth = np.sort(np.arctan2(centres[:, 1], centres[:, 0]))
        assert np.diff(azimuth).min() > 1.0  # about a quarter turn apart
    else:
        spread = np.linalg.norm(centres[:, None] - centres[None], axis=-1).max()
        assert spread <= 0.4
        assert np.all((centres[:, 2] >= 1.0) & (centres[:, 2] <= 1.6))
        assert np.all((fx > 690) & (fx < 910))
        assert 2.3 < np.linalg.norm(centres[:, :2], axis=1).mean() < 3.0
    # Every camera looks towards the person.
    for cam in rig:
        uv = cam.project(np.array([0.0, 0.0, 1.0]))
        assert cam.in_image(uv)
    # Seeded.
    again = make_rig(kind, seed=1)
    np.testing.assert_array_equal(again.projection_matrices, rig.projection_matrices)
    assert not np.allclose(make_rig(kind, seed=2).projection_matrices, rig.projection_matrices)


@pytest.mark.parametrize("num_views", [2, 5, 16, 31])
def test_ring_rig_of_any_size(num_views):
    rig = make_ring_rig(num_views, seed=3)
    centres = rig.centres
    assert len(rig) == num_views and rig.names == [f"cam{i}" for i in range(num_views)]
    assert np.all(np.abs(np.linalg.norm(centres[:, :2], axis=1) - 4.5) <= 0.2)
    tiers = np.array(RING_TIERS_M)[np.arange(num_views) % 3]
    assert np.all(np.abs(centres[:, 2] - tiers) <= 0.1)
    azimuth = np.sort(np.arctan2(centres[:, 1], centres[:, 0]))
    gaps = np.diff(np.append(azimuth, azimuth[0] + 2 * np.pi))
    assert gaps.min() > 0.7 * 2 * np.pi / num_views  # evenly spread around the circle
    for cam in rig:
        assert cam.in_image(cam.project(np.array([0.0, 0.0, 1.0])))
    np.testing.assert_array_equal(make_ring_rig(num_views, seed=3).projection_matrices, rig.projection_matrices)
    assert not np.allclose(make_ring_rig(num_views, seed=4).projection_matrices, rig.projection_matrices)
    with pytest.raises(ValueError, match="at least 2"):
        make_ring_rig(1)


def test_rig_options():
    small = make_rig("surround", image_size=(960, 540), seed=0)
    full = make_rig("surround", seed=0)
    assert all(c.size == (960, 540) for c in small)
    np.testing.assert_allclose(small.K[:, 0, 0] * 2.0, full.K[:, 0, 0])  # same field of view
    dist = make_rig("lab", distortion=True, seed=0)
    assert all(c.has_distortion for c in dist)
    assert all(abs(c.dist[0]) <= 0.12 for c in dist)
    with pytest.raises(ValueError):
        make_rig("dome")


@pytest.mark.parametrize("kind", RIG_KINDS)
def test_person_visible_in_every_camera(kind):
    sk = get_skeleton("h36m17")
    for seed in (0, 1):
        rig = make_rig(kind, seed=seed, distortion=seed == 1)
        pts = generate_motion(sk, 600, FPS, seed=seed)
        _, info = simulate_detections(rig, pts, sk, NoiseModel.preset("clean"), seed=seed, return_info=True)
        frac = info.in_image.mean(axis=-1)  # [V, F]
        assert (frac >= 0.5).mean(axis=1).min() > 0.85, kind
        assert (frac >= 0.8).mean(axis=1).min() > 0.6, kind
        assert frac.mean() > 0.9


# ------------------------------------------------------------------------------------------------------ noise


@pytest.fixture(scope="module")
def surround_take():
    sk = get_skeleton("coco17")
    rig = make_rig("surround", seed=7)
    pts = generate_motion(sk, 900, FPS, seed=7)
    return rig, sk, pts


def test_presets():
    for name in NOISE_PRESETS:
        assert isinstance(NoiseModel.preset(name), NoiseModel)
    clean = NoiseModel.preset("clean")
    assert clean.pixel_sigma == 1.0 and clean.confident_outlier_rate == clean.swap_rate == 0.0
    assert clean.occlusion_rate == clean.drop_view_rate == 0.0 and math.isinf(clean.tail_dof)
    realistic, hard = NoiseModel.preset("realistic"), NoiseModel.preset("hard")
    for attr in ("pixel_sigma", "confident_outlier_rate", "swap_rate", "occlusion_rate", "drop_view_rate"):
        assert getattr(hard, attr) > getattr(realistic, attr) > 0.0
    heavy = NoiseModel.preset("heavy")
    assert heavy.confident_outlier_rate == 0.05
    assert heavy.replace(confident_outlier_rate=hard.confident_outlier_rate) == hard
    with pytest.raises(ValueError):
        NoiseModel.preset("nope")
    with pytest.raises(ValueError):
        NoiseModel(swap_rate=1.5)


def test_detections_are_seeded(surround_take):
    rig, sk, pts = surround_take
    noise = NoiseModel.preset("realistic")
    a = simulate_detections(rig, pts[:100], sk, noise, seed=1)
    b = simulate_detections(rig, pts[:100], sk, noise, seed=1)
    c = simulate_detections(rig, pts[:100], sk, noise, seed=2)
    assert a.shape == (8, 100, 17, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(c))
    with pytest.raises(ValueError):
        simulate_detections(rig, pts[:, :5], sk, noise)


def test_clean_noise_is_one_pixel(surround_take):
    rig, sk, pts = surround_take
    kp, info = simulate_detections(rig, pts, sk, "clean", seed=3, return_info=True)
    ok = ~np.isnan(kp[..., 0])
    np.testing.assert_array_equal(ok, info.in_image)  # missing = off-image only
    diff = (kp[..., :2] - info.projected)[ok]
    assert 0.93 < diff.std() < 1.07 and abs(diff.mean()) < 0.05
    assert np.abs(diff).max() < 6.0
    conf = kp[..., 2][ok]
    assert conf.min() >= 0.6 and np.median(conf) > 0.8
    assert np.all(kp[..., 2][~ok] == 0.0)
    assert not info.swapped.any() and not info.dropped.any() and not info.outlier.any()


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_realistic_corruptions_at_configured_rates(surround_take):
    """Measure every corruption against the ground truth, not the bookkeeping, then check the bookkeeping."""
    rig, sk, pts = surround_take
    noise = NoiseModel.preset("realistic")
    kp, info = simulate_detections(rig, pts, sk, noise, seed=11, return_info=True)
    proj = info.projected
    present = ~np.isnan(kp[..., 0])
    in_image = info.in_image
    view_visible = in_image.sum(axis=-1) >= 8  # [V, F] the person is (mostly) in this view

    # Dropped views: nothing detected although the person is in view.
    dropped = ~present.any(axis=-1) & view_visible
    assert 0.01 < dropped.sum() / view_visible.sum() < 0.035

    # Swaps: the detections match the mirrored ground truth much better than the ground truth.
    perm = sk.flip_permutation
    lateral = perm != np.arange(sk.num_joints)
    err = np.linalg.norm(kp[..., :2] - proj, axis=-1)
    err_flip = np.linalg.norm(kp[..., :2] - proj[:, :, perm], axis=-1)
    med = np.nanmedian(np.where(present & lateral, err, np.nan), axis=-1)
    med_flip = np.nanmedian(np.where(present & lateral, err_flip, np.nan), axis=-1)
    considered = view_visible & ~dropped
    swapped = considered & (med_flip < 0.5 * med)
    assert 0.004 < swapped.sum() / considered.sum() < 0.02

    # Confident outliers: far off with a confidence of a good detection (swapped views excluded).
    normal = present & ~swapped[..., None]
    confident_far = normal & (err > 25.0) & (kp[..., 2] >= 0.6)
    assert 0.02 < confident_far.sum() / normal.sum() < 0.045

    # Occlusions: missing in-image joints of detected views, and wrong guesses with a low confidence.
    detected = present.any(axis=-1) & view_visible
    base = in_image & detected[..., None]
    missing = ~present & base
    low_wrong = present & base & (kp[..., 2] <= 0.3) & (err > 8.0)
    assert 0.005 < missing.sum() / base.sum() < 0.03
    assert 0.005 < low_wrong.sum() / base.sum() < 0.03
    assert 0.015 < (missing | low_wrong).sum() / base.sum() < 0.05

    # Good detections: a few pixels, confidences 0.6-1.0 that fall with the error.
    good = normal & ~info.outlier & ~info.occluded & ~info.self_occluded
    assert 1.5 < np.median(err[good]) < 5.0
    assert np.percentile(kp[..., 2][good], 2) > 0.6
    small, large = good & (err < np.percentile(err[good], 25)), good & (err > np.percentile(err[good], 90))
    assert kp[..., 2][small].mean() > kp[..., 2][large].mean() + 0.03
    # Self-occluded joints are less confident.
    assert kp[..., 2][normal & info.self_occluded & ~info.outlier & ~info.occluded].mean() < \
        kp[..., 2][good].mean() - 0.15

    # The bookkeeping agrees with the measurement.
    assert isinstance(info, DetectionInfo)
    assert np.array_equal(dropped, info.dropped & view_visible)
    assert (swapped & ~info.swapped).sum() <= 1
    assert abs(info.outlier.sum() / in_image.sum() - noise.confident_outlier_rate) < 0.01
    assert abs(info.occluded.sum() / in_image.sum() - noise.occlusion_rate) < 0.015


def test_jitter_is_temporally_correlated(surround_take):
    rig, sk, pts = surround_take
    noise = NoiseModel(pixel_sigma=2.0, jitter_correlation_time=0.1)
    kp, info = simulate_detections(rig, pts, sk, noise, seed=5, return_info=True)
    e = (kp[..., 0] - info.projected[..., 0])
    a, b = e[:, 1:], e[:, :-1]
    ok = np.isfinite(a) & np.isfinite(b)
    rho = np.corrcoef(a[ok], b[ok])[0, 1]
    assert abs(rho - math.exp(-1.0 / (FPS * 0.1))) < 0.05
    white = simulate_detections(rig, pts, sk, NoiseModel(pixel_sigma=2.0), seed=5)
    ew = white[..., 0] - info.projected[..., 0]
    ok = np.isfinite(ew[:, 1:]) & np.isfinite(ew[:, :-1])
    assert abs(np.corrcoef(ew[:, 1:][ok], ew[:, :-1][ok])[0, 1]) < 0.05


def test_off_image_and_behind_camera_joints_are_missing():
    sk = get_skeleton("body25")
    pts = generate_motion(sk, 120, FPS, seed=1, motion="reach")
    pelvis = pts[0, sk.index("mid_hip")]
    # A close, narrow camera that sees the upper body only, and one inside the person's torso looking forwards.
    R, _ = look_at(pelvis + [1.2, 0.0, 0.5], pelvis + [0.0, 0.0, 0.5])
    close = Camera("close", K=[[900, 0, 320], [0, 900, 240], [0, 0, 1]], R=R, t=-R @ (pelvis + [1.2, 0.0, 0.5]),
                   size=(640, 480))
    R2, _ = look_at(pelvis + [0.0, 0.0, 0.3], pelvis + [2.0, 0.0, 0.3])
    inside = Camera("inside", K=[[500, 0, 320], [0, 500, 240], [0, 0, 1]], R=R2, t=-R2 @ (pelvis + [0.0, 0.0, 0.3]),
                    size=(640, 480))
    rig = CameraRig([close, inside])
    kp = simulate_detections(rig, pts, sk, NoiseModel.preset("clean"), seed=0)
    for v, cam in enumerate(rig):
        uv = cam.project(pts)
        depth = cam.world_to_camera(pts)[..., 2]
        inside_image = (depth > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < 640) & (uv[..., 1] >= 0) & (uv[..., 1] < 480)
        missing = np.isnan(kp[v, ..., 0])
        np.testing.assert_array_equal(missing, ~inside_image)
        assert np.all(kp[v][missing][:, 2] == 0.0)
        present = kp[v][~missing]
        assert np.all((present[:, 0] >= 0) & (present[:, 0] < 640) & (present[:, 1] >= 0) & (present[:, 1] < 480))
    assert np.isnan(kp[0, :, sk.index("l_ankle"), 0]).all()  # feet below the close camera's view
    assert np.isnan(kp[1, :, sk.index("nose"), 0]).mean() > 0.5  # partly behind the camera inside the torso
    assert (~np.isnan(kp[1, ..., 0])).any()


def test_distortion_is_applied():
    sk = get_skeleton("h36m17")
    rig = make_rig("lab", distortion=True, seed=2)
    pts = generate_motion(sk, 60, FPS, seed=2)
    kp, info = simulate_detections(rig, pts, sk, NoiseModel(pixel_sigma=0.0), seed=0, return_info=True)
    ok = ~np.isnan(kp[..., 0])
    np.testing.assert_allclose(kp[..., :2][ok], rig.project(pts)[ok], atol=1e-6)
    pinhole = np.einsum("vij,fkj->vfki", rig.projection_matrices, np.concatenate([pts, np.ones(pts.shape[:2] + (1,))], -1))
    pinhole = pinhole[..., :2] / pinhole[..., 2:]
    assert np.abs(pinhole[ok] - kp[..., :2][ok]).max() > 0.5


def test_make_scenario():
    sc = make_scenario("robot", "coco17", num_frames=90, fps=30, noise="hard", seed=4)
    assert isinstance(sc, Scenario)
    assert sc.ground_truth.shape == (90, 17, 3) and sc.keypoints.shape == (3, 90, 17, 3)
    assert sc.fps == 30.0 and sc.num_frames == 90 and sc.timestamps[-1] == pytest.approx(89 / 30)
    assert sc.skeleton.name == "coco17" and len(sc.rig) == 3
    again = make_scenario("robot", "coco17", num_frames=90, fps=30, noise="hard", seed=4)
    np.testing.assert_array_equal(sc.keypoints, again.keypoints)
    clean = make_scenario("lab", num_frames=30, noise=NoiseModel.preset("clean"), seed=4, distortion=True)
    assert clean.skeleton.name == "h36m17" and all(c.has_distortion for c in clean.rig)
    assert np.nanmax(np.linalg.norm(clean.keypoints[..., :2] - clean.info.projected, axis=-1)) < 8.0


def test_moving_robot_scenario_detections_are_the_true_per_frame_cameras():
    from skelsplat_ros.sim import make_moving_robot_scenario

    scenario = make_moving_robot_scenario(num_frames=60, seed=2, noise="clean")
    assert scenario.keypoints.shape == (4, 60, 17, 3) and scenario.names[:2] == ["head_left", "head_right"]
    for f in (0, 30, 59):
        uv = scenario.rig_at(f).project(scenario.ground_truth[f])  # [V, J, 2]
        seen = scenario.keypoints[:, f, :, 2] > 0
        assert seen.mean() > 0.8
        error = np.linalg.norm(scenario.keypoints[:, f, :, :2] - uv, axis=-1)[seen]
        assert np.median(error) < 2.0  # clean detector: pixel-level agreement, in the moving and the wall views
    # The robot moves: its cameras' centres change between frames, the wall cameras' do not.
    first, last = scenario.rig_at(0).centres, scenario.rig_at(59).centres
    assert np.linalg.norm(first[:2] - last[:2], axis=-1).min() > 0.3
    np.testing.assert_allclose(first[2:], last[2:])
