"""Cameras: OpenCV distortion and its inversion, Rodrigues vectors, look_at, rigs, calibration validation."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.geometry.camera import (
    Camera,
    CameraRig,
    look_at,
    matrix_to_rodrigues,
    rodrigues_to_matrix,
)

# A 1920x1080 camera with strong but realistic barrel distortion (wide-angle action/ machine-vision lens).
K_HD = np.array([[1400.0, 0.0, 955.3], [0.0, 1398.2, 541.7], [0.0, 0.0, 1.0]])
DISTORTIONS = {
    "barrel_k3": [-0.30, 0.12, 0.0010, -0.0015, -0.020],
    "barrel_4": [-0.28, 0.08, 0.0005, 0.0008, 0.0],
    "pincushion": [0.10, -0.05, 0.0010, 0.0010, 0.010],
}


def _axis(seed: int) -> np.ndarray:
    axis = np.random.default_rng(seed).normal(size=3)
    return axis / np.linalg.norm(axis)


def _pixel_grid(width: int, height: int, n: int = 41) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(0.0, width - 1.0, n), np.linspace(0.0, height - 1.0, n))
    return np.stack([u, v], axis=-1)


def _pinhole_pixels_to_world(camera: Camera, uv: np.ndarray, depth: float = 3.0) -> np.ndarray:
    """World points whose ideal-pinhole projection is ``uv`` (at camera depth ``depth``)."""
    y = (uv[..., 1] - camera.K[1, 2]) / camera.K[1, 1]
    x = (uv[..., 0] - camera.K[0, 2] - camera.K[0, 1] * y) / camera.K[0, 0]
    cam = np.stack([x, y, np.ones_like(x)], axis=-1) * depth
    return (cam - camera.t) @ camera.R  # R^T (X_cam - t)


# --- distortion -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_projection_then_undistortion_round_trip_over_the_image(name):
    R, t = look_at(np.array([2.0, -3.0, 1.6]), np.array([0.0, 0.0, 1.0]))
    camera = Camera("cam", K_HD, R, t, (1920, 1080), DISTORTIONS[name])
    ideal = _pixel_grid(1920, 1080)
    points = _pinhole_pixels_to_world(camera, ideal)
    distorted = camera.project(points)
    # The lens really moves the corners (tens to >100 px), so the round trip tests something.
    assert np.abs(distorted - ideal).max() > 40.0
    back = camera.undistort_pixels(distorted)
    assert np.abs(back - ideal).max() < 1e-6


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_undistortion_then_distortion_round_trip_over_the_image(name):
    camera = Camera("cam", K_HD, np.eye(3), np.zeros(3), (1920, 1080), DISTORTIONS[name])
    observed = _pixel_grid(1920, 1080)  # distorted pixels covering the whole sensor, corners included
    ideal = camera.undistort_pixels(observed)
    reprojected = camera.project(_pinhole_pixels_to_world(camera, ideal))
    assert np.abs(reprojected - observed).max() < 1e-6


def test_undistortion_converges_near_the_edge_of_a_strong_lens():
    # k1 = -0.4: r (1 - 0.4 r^2) grows up to r = 0.913 (distorted radius 0.609). Near there the old fixed-point
    # iteration contracts by ~0.8 per step and 20 steps left pixels of error; Newton stops when it has converged.
    camera = Camera("cam", K_HD, np.eye(3), np.zeros(3), (4000, 4000), [-0.4, 0.0, 0.0, 0.0, 0.0])
    assert camera.monotonic_radius == pytest.approx(np.sqrt(1.0 / 1.2))
    radius = np.linspace(0.0, 0.9, 46)
    angle = np.linspace(0.0, 2.0 * np.pi, 46)
    normalised = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    ideal = normalised @ K_HD[:2, :2].T + K_HD[:2, 2]
    distorted = camera.project(np.concatenate([normalised, np.ones_like(radius)[:, None]], axis=-1))
    assert np.abs(camera.undistort_pixels(distorted) - ideal).max() < 1e-6


def test_points_beyond_the_monotonic_range_are_rejected():
    camera = Camera("cam", K_HD, np.eye(3), np.zeros(3), (4000, 4000), [-0.4, 0.0, 0.0, 0.0, 0.0])
    fx, cx, cy = K_HD[0, 0], K_HD[0, 2], K_HD[1, 2]
    # A distorted radius the lens never produces (its largest is 0.609): no inverse, NaN, not a wrong pixel.
    beyond = np.array([[cx + 0.7 * fx, cy], [cx, cy - 0.65 * K_HD[1, 1]]])
    inside = np.array([[cx + 0.5 * fx, cy]])
    out = camera.undistort_pixels(np.concatenate([beyond, inside]))
    assert np.isnan(out[:2]).all() and np.isfinite(out[2]).all()
    # Projection: a point past the fold (r = 1.2 lands at distorted radius 0.51, inside the image) is rejected.
    assert np.isnan(camera.project(np.array([1.2, 0.0, 1.0]))).all()
    assert np.isfinite(camera.project(np.array([0.9, 0.0, 1.0]))).all()
    # Lenses that grow everywhere have no such limit.
    assert Camera("c", K_HD, np.eye(3), np.zeros(3), (1920, 1080), DISTORTIONS["barrel_4"]).monotonic_radius > 1.0
    assert Camera("c", K_HD, np.eye(3), np.zeros(3), (1920, 1080), [0.1, 0, 0, 0, 0]).monotonic_radius == np.inf


@pytest.mark.parametrize("dist", [[-0.4, 0, 0, 0, 0, 0, 0, 0], [0.2, 0.05, 0.001, 0.001, 0.01, 0.3, 0.02, 0.001],
                                  [-0.3, 0.1, 0, 0, 0, -0.5, 0, 0]])
def test_newton_undistortion_and_monotonic_range_of_the_rational_model(dist):
    # The last model has a pole at r = sqrt(2) and magnifies strongly before it: Newton starts inside the range.
    camera = Camera("cam", K_HD, np.eye(3), np.zeros(3), (4000, 4000), dist)
    radius = np.linspace(0.0, min(0.99 * camera.monotonic_radius, 1.2), 50)
    angle = np.linspace(0.0, 6.0, 50)
    normalised = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    distorted = camera.project(np.concatenate([normalised, np.ones((50, 1))], axis=-1))
    ideal = normalised @ K_HD[:2, :2].T + K_HD[:2, 2]
    assert np.abs(camera.undistort_pixels(distorted) - ideal).max() < 1e-6
    if np.isfinite(camera.monotonic_radius):
        beyond = 1.05 * camera.monotonic_radius
        assert np.isnan(camera.project(np.array([beyond, 0.0, 1.0]))).all()


def test_distortion_model_matches_opencv_formula_at_one_point():
    k1, k2, p1, p2, k3 = DISTORTIONS["barrel_k3"]
    camera = Camera("cam", K_HD, np.eye(3), np.zeros(3), (1920, 1080), [k1, k2, p1, p2, k3])
    x, y = 0.31, -0.22
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    expected = [K_HD[0, 0] * xd + K_HD[0, 2], K_HD[1, 1] * yd + K_HD[1, 2]]
    np.testing.assert_allclose(camera.project(np.array([x, y, 1.0]) * 2.5), expected, rtol=0, atol=1e-9)


def test_distortion_with_four_coefficients_is_padded_and_without_is_identity():
    four = Camera("cam", K_HD, np.eye(3), np.zeros(3), (1920, 1080), [-0.2, 0.05, 0.001, 0.002])
    assert four.dist.shape == (5,) and four.dist[4] == 0.0 and four.has_distortion
    plain = Camera("cam", K_HD, np.eye(3), np.zeros(3), (1920, 1080))
    assert not plain.has_distortion
    uv = _pixel_grid(1920, 1080, 5)
    np.testing.assert_array_equal(plain.undistort_pixels(uv), uv)
    with pytest.raises(ValueError, match="distortion"):
        Camera("cam", K_HD, np.eye(3), np.zeros(3), (1920, 1080), np.zeros(9))


def test_undistort_keeps_nan_and_rig_undistort_is_per_view():
    a = Camera("a", K_HD, np.eye(3), np.zeros(3), (1920, 1080), DISTORTIONS["barrel_k3"])
    b = Camera("b", K_HD, np.eye(3), np.zeros(3), (1920, 1080))
    uv = np.array([[100.0, 200.0], [np.nan, np.nan], [1800.0, 1000.0]])
    out = a.undistort_pixels(uv)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    rig = CameraRig([a, b])
    both = rig.undistort(np.stack([uv, uv]))
    np.testing.assert_array_equal(both[0], out)
    np.testing.assert_array_equal(both[1], uv)  # b has no distortion


# --- Rodrigues --------------------------------------------------------------------------------------------------

ANGLES = [0.0, 1e-14, 1e-10, 1e-8, 3e-8, 1e-6, 1e-3, 0.5, 1.0, np.pi / 2, 2.0, 3.0,
          np.pi - 1e-3, np.pi - 1e-5, np.pi - 1e-6, np.pi - 3e-7, np.pi - 1e-8, np.pi - 1e-12, np.pi]


@pytest.mark.parametrize("angle", ANGLES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rodrigues_round_trip_including_near_zero_and_pi(angle, seed):
    rvec = _axis(seed) * angle
    rotation = rodrigues_to_matrix(rvec)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-14)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-14)
    back = matrix_to_rodrigues(rotation)
    # At exactly pi, r and -r are the same rotation.
    if angle == np.pi:
        assert min(np.abs(back - rvec).max(), np.abs(back + rvec).max()) < 1e-12
    else:
        assert np.abs(back - rvec).max() < 1e-12
    np.testing.assert_allclose(rodrigues_to_matrix(back), rotation, atol=1e-12)
    assert np.linalg.norm(back) <= np.pi + 1e-12


def test_rodrigues_small_angle_is_relatively_exact():
    # A rotation of 1e-9 rad must not collapse to the identity vector.
    rvec = _axis(7) * 1e-9
    back = matrix_to_rodrigues(rodrigues_to_matrix(rvec))
    np.testing.assert_allclose(back, rvec, rtol=1e-6, atol=0)


def test_rodrigues_matches_known_rotations():
    np.testing.assert_allclose(
        rodrigues_to_matrix([0.0, 0.0, np.pi / 2]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15
    )
    np.testing.assert_allclose(rodrigues_to_matrix([np.pi, 0.0, 0.0]), np.diag([1.0, -1.0, -1.0]), atol=1e-15)
    back = matrix_to_rodrigues(np.diag([1.0, -1.0, -1.0]))
    np.testing.assert_allclose(np.abs(back), [np.pi, 0.0, 0.0], atol=1e-15)


# --- look_at ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "centre, target",
    [
        ([3.0, 0.5, 1.5], [0.0, 0.0, 1.0]),
        ([-2.0, 4.0, 3.0], [0.3, -0.2, 0.8]),  # above, looking down
        ([0.5, -5.0, 0.2], [0.0, 0.0, 1.2]),  # below, looking up
    ],
)
def test_look_at_centres_target_and_keeps_up_upwards(centre, target):
    centre, target = np.array(centre), np.array(target)
    R, t = look_at(centre, target)
    K = np.array([[900.0, 0.0, 640.5], [0.0, 905.0, 359.5], [0.0, 0.0, 1.0]])
    camera = Camera("cam", K, R, t, (1280, 720))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(camera.centre, centre, atol=1e-12)
    np.testing.assert_allclose(camera.project(target), [640.5, 359.5], atol=1e-9)
    assert camera.world_to_camera(target)[2] == pytest.approx(np.linalg.norm(target - centre))
    above = camera.project(target + np.array([0.0, 0.0, 0.2]))
    assert above[0] == pytest.approx(640.5, abs=1e-9)  # straight above in the image
    assert above[1] < 359.5 - 10.0  # and higher (smaller v)
    # Handedness: looking along +forward with z up, (forward x up) is image right.
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    assert camera.project(target + 0.2 * right / np.linalg.norm(right))[0] > 640.5 + 10.0


def test_look_at_rejects_looking_along_up():
    with pytest.raises(ValueError, match="parallel"):
        look_at(np.array([0.0, 0.0, 5.0]), np.zeros(3))


# --- projection edge cases, in_image, rig -----------------------------------------------------------------------


def test_points_behind_or_on_the_camera_plane_project_to_nan():
    R, t = look_at(np.array([0.0, -4.0, 1.0]), np.array([0.0, 0.0, 1.0]))
    camera = Camera("cam", K_HD, R, t, (1920, 1080), DISTORTIONS["barrel_k3"])
    points = np.array([[0.0, 0.0, 1.0], [0.0, -6.0, 1.0], [0.3, -4.0, 1.2], [0.0, -10.0, 1.0]])
    uv = camera.project(points)
    assert np.isfinite(uv[0]).all()
    assert np.isnan(uv[1:]).all()
    rig = CameraRig([camera])
    assert np.isnan(rig.project(points)[0, 1:]).all()
    assert not camera.in_image(uv[1:]).any()


def test_in_image_bounds_and_margin():
    camera = Camera("cam", K_HD, np.eye(3), np.zeros(3), (1920, 1080))
    uv = np.array([[0.0, 0.0], [1919.0, 1079.0], [-0.01, 5.0], [1919.01, 5.0], [5.0, 1079.5], [np.nan, 3.0]])
    np.testing.assert_array_equal(camera.in_image(uv), [True, True, False, False, False, False])
    np.testing.assert_array_equal(camera.in_image(uv[:2], margin=1.0), [False, False])
    assert camera.in_image(np.array([960.0, 540.0]), margin=500.0)


def test_rig_stacks_cameras_and_projection_matrix_matches_project():
    cameras = []
    for k in range(3):
        angle = 2 * np.pi * k / 3
        R, t = look_at(np.array([3 * np.cos(angle), 3 * np.sin(angle), 1.5]), np.array([0.0, 0.0, 1.0]))
        cameras.append(Camera(f"c{k}", K_HD, R, t, (1920, 1080)))
    rig = CameraRig(cameras)
    assert rig.K.shape == (3, 3, 3) and rig.R.shape == (3, 3, 3) and rig.t.shape == (3, 3)
    assert rig.projection_matrices.shape == (3, 3, 4)
    np.testing.assert_allclose(rig.sizes, [[1920, 1080]] * 3)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 5, 3)) + [0.0, 0.0, 1.0]
    uv = rig.project(points)
    assert uv.shape == (3, 4, 5, 2)
    homo = np.einsum("vij,fnj->vfni", rig.projection_matrices, np.concatenate([points, np.ones((4, 5, 1))], -1))
    np.testing.assert_allclose(uv, homo[..., :2] / homo[..., 2:], atol=1e-9)
    np.testing.assert_allclose(rig.centres[:, 2], 1.5)
    assert rig.spatial_scale() == pytest.approx(1.1 * 3.0)
    assert rig.index("c2") == 2
    assert rig.subset(["c2", "c0"]).names == ["c2", "c0"]
    with pytest.raises(KeyError, match="c0"):
        rig.index("nope")
    with pytest.raises(ValueError, match="duplicate"):
        CameraRig([cameras[0], cameras[0]])
    with pytest.raises(ValueError):
        CameraRig([])


def test_rig_arrays_are_built_once_and_read_only():
    cameras = [Camera(f"c{k}", K_HD, *look_at(np.array([3.0, k - 1.0, 1.5]), np.array([0.0, 0.0, 1.0])), (1920, 1080))
               for k in range(3)]
    rig = CameraRig(cameras)
    for name in ("K", "K_inv", "R", "t", "extrinsics", "projection_matrices", "centres", "back_projections"):
        array = getattr(rig, name)
        assert getattr(rig, name) is array  # cached, not rebuilt per access
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0.0  # shared by every caller: none may change it
    np.testing.assert_allclose(rig.K_inv @ rig.K, np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(rig.projection_matrices, rig.K @ rig.extrinsics)
    np.testing.assert_allclose(rig.back_projections, np.swapaxes(rig.R, 1, 2) @ np.linalg.inv(rig.K))
    # A rig of moved cameras (a new rig per frame) has its own arrays.
    moved = CameraRig([Camera(c.name, c.K, c.R, c.t + 1.0, c.size) for c in cameras])
    np.testing.assert_allclose(moved.t, rig.t + 1.0)
    np.testing.assert_allclose(moved.centres, [c.centre for c in moved.cameras])


def test_rig_undistort_of_ideal_pinholes_is_a_float_copy():
    rig = CameraRig([Camera(f"c{k}", K_HD, np.eye(3), [k, 0.0, 0.0], (1920, 1080)) for k in range(2)])
    uv = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    out = rig.undistort(uv)
    assert out.dtype == np.float64 and out.flags.writeable
    np.testing.assert_array_equal(out, uv)
    out[...] = -1.0
    assert uv.min() == 0.0


# --- invalid calibrations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rotation",
    [
        np.diag([1.0, 1.0, -1.0]),  # reflection
        2.0 * np.eye(3),  # scaled
        np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),  # shear with det 1
        np.diag([2.0, 0.5, 1.0]),  # anisotropic scale with det 1
        np.zeros((3, 3)),
    ],
    ids=["reflection", "scaled", "shear_det1", "stretch_det1", "zero"],
)
def test_non_rotation_is_rejected(rotation):
    with pytest.raises(ValueError, match="rotation"):
        Camera("bad", K_HD, rotation, np.zeros(3), (1920, 1080))


def test_slightly_imprecise_rotation_is_accepted():
    # Calibration files print rotations with a few decimals; that must still load.
    rotation = np.round(rodrigues_to_matrix([0.3, -1.2, 0.4]), 6)
    Camera("ok", K_HD, rotation, np.zeros(3), (1920, 1080))


@pytest.mark.parametrize("field", ["K", "R", "t", "dist"])
def test_non_finite_calibration_is_rejected(field):
    values = {"K": K_HD.copy(), "R": np.eye(3), "t": np.zeros(3), "dist": np.zeros(5)}
    values[field] = values[field].astype(np.float64)
    values[field].reshape(-1)[1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Camera("bad", values["K"], values["R"], values["t"], (1920, 1080), values["dist"])


def test_ray_directions_point_from_each_camera_centre_at_what_it_sees():
    from skelsplat_ros.geometry.camera import ray_directions
    from skelsplat_ros.geometry.triangulation import project_pinhole
    from skelsplat_ros.sim import make_rig

    rig = make_rig("lab")
    points = np.random.default_rng(0).uniform(-1.0, 1.0, (5, 3)) + [0.0, 0.0, 1.0]
    uv = project_pinhole(rig, points)  # [V, 5, 2]
    rays = ray_directions(rig.back_projections[:, None], uv)
    expected = points[None] - rig.centres[:, None]
    np.testing.assert_allclose(rays, expected / np.linalg.norm(expected, axis=-1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(ray_directions(rig.back_projections[2], uv[2]), rays[2], atol=1e-15)
