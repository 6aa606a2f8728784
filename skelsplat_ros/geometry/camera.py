"""Calibrated pinhole cameras with OpenCV lens distortion, and rigs of them.

Conventions (same as OpenCV, aniposelib and Pose2Sim):
- world to camera: ``X_cam = R @ X_world + t``; camera looks along +z, image x right, y down;
- pixel ``u = fx * x' + cx`` with ``x'`` the distorted normalised coordinate;
- distortion ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])``, the OpenCV radial-tangential model; with 8 terms its
  rational form (ROS ``rational_polynomial``): radial factor ``(1 + k1 r2 + k2 r4 + k3 r6) / (1 + k4 r2 + k5 r4 +
  k6 r6)``.

Numpy is used here (calibration, triangulation, I/O); the optimiser works on undistorted keypoints, so its torch code
needs only the pinhole part, exposed as stacked arrays by :class:`CameraRig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.polynomial.polynomial import polyadd, polyder, polymul, polyroots, polysub, polyval

UNDISTORT_TOLERANCE = 1e-12
"""Undistortion stops once every Newton step is below this, in normalised image units (1e-9 px at f = 1000 px)."""
UNDISTORT_MAX_ITERATIONS = 50
"""Newton iterations before a point that has not converged is given up (NaN); a handful suffice in practice."""


def rodrigues_to_matrix(rvec: np.ndarray) -> np.ndarray:
    """Rotation vector ``[3]`` (axis times angle, radians) to rotation matrix ``[3, 3]``."""
    rvec = np.asarray(rvec, dtype=np.float64).reshape(3)
    angle = float(np.linalg.norm(rvec))
    if angle < 1e-12:
        return np.eye(3)
    axis = rvec / angle
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


def matrix_to_rodrigues(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` to rotation vector ``[3]`` (angle in [0, pi]); exact near 0 and pi."""
    rotation = np.asarray(rotation, dtype=np.float64)
    # R - R^T = 2 sin(angle) [a]_x and trace R = 1 + 2 cos(angle): atan2 of both is accurate at every angle,
    # unlike arccos of the trace alone (which loses half the digits near 0 and pi).
    skew = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
    sin_angle = 0.5 * float(np.linalg.norm(skew))
    cos_angle = 0.5 * (float(np.trace(rotation)) - 1.0)
    angle = float(np.arctan2(sin_angle, cos_angle))
    if sin_angle == 0.0 and cos_angle > 0.0:
        return np.zeros(3)
    if cos_angle >= 0.0:
        # skew / (2 sin) is the axis; angle / sin stays accurate as both go to 0.
        return skew * (0.5 * angle / sin_angle)
    # Beyond 90 degrees sin -> 0 near pi: take the axis from the symmetric part, (R + R^T)/2 - cos I = (1 - cos) a a^T,
    # and its sign from the skew part.
    outer = 0.5 * (rotation + rotation.T) - cos_angle * np.eye(3)
    k = int(np.argmax(np.diag(outer)))
    axis = outer[k] / np.sqrt(max(outer[k, k], 1e-300))
    axis /= np.linalg.norm(axis)
    if float(axis @ skew) < 0.0:
        axis = -axis
    return axis * angle


def ray_directions(back_projection: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Unit world directions ``[..., 3]`` of the rays through ideal-pinhole pixels ``uv [..., 2]``, given their
    view's ``back_projection`` (``CameraRig.back_projections``; ``[3, 3]``, or ``[..., 3, 3]`` broadcast against
    ``uv``)."""
    homo = np.concatenate([uv, np.ones_like(uv[..., :1])], axis=-1)
    rays = np.einsum("...ij,...j->...i", back_projection, homo)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def look_at(camera_centre: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R [3, 3], t [3])`` for a camera at ``camera_centre`` looking at ``target``.

    The image y axis points along ``-up`` (down in the image), as for a camera mounted upright.
    """
    centre = np.asarray(camera_centre, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to 'up'")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return rotation, -rotation @ centre


@dataclass
class Camera:
    """One calibrated camera.

    Attributes:
        name: camera name, as in the calibration file and the ROS topics.
        K: intrinsics ``[3, 3]``.
        R: world-to-camera rotation ``[3, 3]``.
        t: world-to-camera translation ``[3]`` (calibration units, metres in ROS).
        dist: OpenCV distortion ``[5]`` ``(k1, k2, p1, p2, k3)``, or ``[8]`` with the rational terms
            ``k4, k5, k6``; zeros for none.
        size: image ``(width, height)`` in pixels.
    """

    name: str
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    size: tuple[int, int]
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        if dist.size > 8:
            raise ValueError(
                f"camera {self.name!r}: distortion has {dist.size} terms; supported: k1 k2 p1 p2 k3 (5, plumb_bob) or "
                "k1 k2 p1 p2 k3 k4 k5 k6 (8, rational_polynomial)")
        self.dist = np.concatenate([dist, np.zeros((5 if dist.size <= 5 else 8) - dist.size)])
        self.size = (int(self.size[0]), int(self.size[1]))
        if not all(np.all(np.isfinite(a)) for a in (self.K, self.R, self.t, self.dist)):
            raise ValueError(f"camera {self.name!r}: calibration has non-finite values")
        if abs(np.linalg.det(self.R) - 1.0) > 1e-3:
            raise ValueError(f"camera {self.name!r}: rotation is not a proper rotation (det={np.linalg.det(self.R):.4f})")
        orthogonality = float(np.abs(self.R @ self.R.T - np.eye(3)).max())
        if orthogonality > 1e-3:
            raise ValueError(
                f"camera {self.name!r}: rotation is not a proper rotation (R R^T differs from I by {orthogonality:.4f})"
            )

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates ``[3]``."""
        return -self.R.T @ self.t

    @property
    def projection_matrix(self) -> np.ndarray:
        """Pinhole ``P = K [R | t]`` ``[3, 4]`` (distortion not included)."""
        return self.K @ np.hstack([self.R, self.t[:, None]])

    @cached_property
    def has_distortion(self) -> bool:
        return bool(np.any(self.dist != 0.0))

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points ``[..., 3]`` to camera coordinates ``[..., 3]``."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def _radial(self, r2: np.ndarray) -> np.ndarray:
        """Radial distortion factor at squared radius ``r2`` ``[...]``."""
        k1, k2, k3 = self.dist[0], self.dist[1], self.dist[4]
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        if self.dist.size == 8:
            k4, k5, k6 = self.dist[5:]
            radial = radial / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        return radial

    def distort_normalised(self, xy: np.ndarray) -> np.ndarray:
        """Apply the lens model to normalised coordinates ``[..., 2]``."""
        p1, p2 = self.dist[2], self.dist[3]
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = self._radial(r2)
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        return np.stack([xd, yd], axis=-1)

    def _radial_polynomials(self) -> tuple[np.ndarray, np.ndarray]:
        """Numerator and denominator of the radial factor as polynomials in ``s = r^2`` (ascending coefficients)."""
        k1, k2, k3 = self.dist[0], self.dist[1], self.dist[4]
        k4, k5, k6 = self.dist[5:] if self.dist.size == 8 else (0.0, 0.0, 0.0)
        return np.array([1.0, k1, k2, k3]), np.array([1.0, k4, k5, k6])

    def _distortion_jacobian(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``d distort_normalised / d xy`` at normalised coordinates ``[..., 2]``, as its entries
        ``(dxd/dx, dxd/dy = dyd/dx, dyd/dy)``, each ``[...]`` (the matrix is symmetric)."""
        p1, p2 = self.dist[2], self.dist[3]
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        numerator, denominator = self._radial_polynomials()
        num, den = polyval(r2, numerator), polyval(r2, denominator)
        radial = num / den
        slope = (polyval(r2, polyder(numerator)) * den - num * polyval(r2, polyder(denominator))) / den**2  # d radial/d r2
        cross = 2.0 * x * y * slope + 2.0 * p1 * x + 2.0 * p2 * y
        return (
            radial + 2.0 * x * x * slope + 2.0 * p1 * y + 6.0 * p2 * x,
            cross,
            radial + 2.0 * y * y * slope + 6.0 * p1 * y + 2.0 * p2 * x,
        )

    @cached_property
    def monotonic_radius(self) -> float:
        """Normalised radius up to which the radial model ``r * radial(r^2)`` still grows (``inf`` when it grows
        everywhere). Beyond it the lens folds back (or its rational factor has a pole): a distorted point is
        ambiguous there."""
        numerator, denominator = self._radial_polynomials()
        # d/dr [r N(s) / D(s)] = (N D + 2 s (N' D - N D')) / D^2 with s = r^2: its first positive root, or D's.
        s = np.array([0.0, 1.0])
        growth = polyadd(
            polymul(numerator, denominator),
            2.0 * polymul(s, polysub(polymul(polyder(numerator), denominator), polymul(numerator, polyder(denominator)))),
        )
        roots = np.concatenate([polyroots(np.trim_zeros(growth, "b")), polyroots(np.trim_zeros(denominator, "b"))])
        positive = roots.real[(np.abs(roots.imag) < 1e-12) & (roots.real > 0)]
        return float(np.sqrt(positive.min())) if positive.size else np.inf

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points ``[..., 3]`` to distorted pixels ``[..., 2]``; points behind the camera, or beyond the
        lens model's monotonic range (where it folds back into the image), give NaN."""
        cam = self.world_to_camera(points)
        z = cam[..., 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = np.where(z > 1e-9, cam[..., :2] / z, np.nan)
            if self.has_distortion:
                xy = np.where((np.linalg.norm(xy, axis=-1) <= self.monotonic_radius)[..., None], xy, np.nan)
        xy = self.distort_normalised(xy)
        u = self.K[0, 0] * xy[..., 0] + self.K[0, 1] * xy[..., 1] + self.K[0, 2]
        v = self.K[1, 1] * xy[..., 1] + self.K[1, 2]
        return np.stack([u, v], axis=-1)

    def undistort_pixels(self, uv: np.ndarray, max_iterations: int = UNDISTORT_MAX_ITERATIONS) -> np.ndarray:
        """Distorted pixels ``[..., 2]`` to the pixels an ideal pinhole with the same ``K`` would see ``[..., 2]``.

        Newton's method on the lens model, per point, until every step is below ``UNDISTORT_TOLERANCE``
        (normalised units; a few iterations) or ``max_iterations``. NaN stays NaN; a point that does not converge,
        or whose solution lies beyond the model's :attr:`monotonic_radius` (no unique inverse: a detection there is
        outside what the calibration describes), comes out NaN.
        """
        uv = np.asarray(uv, dtype=np.float64)
        if not self.has_distortion:
            return uv.copy()
        y_n = (uv[..., 1] - self.K[1, 2]) / self.K[1, 1]
        x_n = (uv[..., 0] - self.K[0, 2] - self.K[0, 1] * y_n) / self.K[0, 0]
        distorted = np.stack([x_n, y_n], axis=-1)
        xy = np.nan_to_num(distorted)
        converged = ~np.isfinite(distorted).all(-1)  # NaN input: nothing to solve
        with np.errstate(all="ignore"):
            # Start inside the monotonic range (a strongly magnifying lens puts the distorted point past it).
            radius = np.linalg.norm(xy, axis=-1, keepdims=True)
            xy = xy * np.minimum(1.0, 0.9 * self.monotonic_radius / np.maximum(radius, 1e-300))
            for _ in range(max_iterations):
                residual = self.distort_normalised(xy) - distorted
                a, b, d = self._distortion_jacobian(xy)
                det = a * d - b * b
                # The 2x2 solve in closed form: numpy's batched solver costs more than the rest of the step.
                step = np.stack([d * residual[..., 0] - b * residual[..., 1],
                                 a * residual[..., 1] - b * residual[..., 0]], axis=-1) / det[..., None]
                step = np.where(converged[..., None] | ~np.isfinite(step), 0.0, step)
                xy = xy - step
                converged |= np.abs(step).max(-1) < UNDISTORT_TOLERANCE
                if converged.all():
                    break
            exact = np.abs(self.distort_normalised(xy) - distorted).max(-1) < 1e3 * UNDISTORT_TOLERANCE
            inside = np.linalg.norm(xy, axis=-1) <= self.monotonic_radius
        xy = np.where((converged & exact & inside)[..., None], xy, np.nan)
        u = self.K[0, 0] * xy[..., 0] + self.K[0, 1] * xy[..., 1] + self.K[0, 2]
        v = self.K[1, 1] * xy[..., 1] + self.K[1, 2]
        return np.stack([u, v], axis=-1)

    def in_image(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Boolean ``[...]``: finite pixel ``[..., 2]`` at least ``margin`` px inside the image."""
        w, h = self.size
        u, v = uv[..., 0], uv[..., 1]
        with np.errstate(invalid="ignore"):
            return np.isfinite(u) & np.isfinite(v) & (u >= margin) & (v >= margin) & (u <= w - 1 - margin) & (v <= h - 1 - margin)


@dataclass
class CameraRig:
    """An ordered set of cameras, with stacked arrays for batched maths.

    Attributes:
        cameras: the cameras, in view order ``V``.
    """

    cameras: list[Camera]

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("a camera rig needs at least one camera")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate camera names in rig: {names}")

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self):
        return iter(self.cameras)

    def __getitem__(self, index: int) -> Camera:
        return self.cameras[index]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def index(self, name: str) -> int:
        """View index of a camera name; ``KeyError`` naming the known cameras otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown camera {name!r}; the calibration has {self.names}") from None

    def subset(self, names: list[str]) -> "CameraRig":
        """The rig restricted to ``names``, in that order."""
        return CameraRig([self.cameras[self.index(n)] for n in names])

    # The stacked arrays below are built once per rig and shared (read-only): the per-frame paths read them many
    # times. A rig, like its cameras (see ``Camera.monotonic_radius``), is not changed after construction; moving
    # cameras come as a new rig per frame.

    @cached_property
    def K(self) -> np.ndarray:
        """Intrinsics ``[V, 3, 3]``."""
        return _frozen(np.stack([c.K for c in self.cameras]))

    @cached_property
    def K_inv(self) -> np.ndarray:
        """Inverse intrinsics ``[V, 3, 3]``: pixels ``[u v 1]`` to normalised image coordinates."""
        return _frozen(np.linalg.inv(self.K))

    @cached_property
    def R(self) -> np.ndarray:
        """World-to-camera rotations ``[V, 3, 3]``."""
        return _frozen(np.stack([c.R for c in self.cameras]))

    @cached_property
    def t(self) -> np.ndarray:
        """World-to-camera translations ``[V, 3]``."""
        return _frozen(np.stack([c.t for c in self.cameras]))

    @cached_property
    def extrinsics(self) -> np.ndarray:
        """World-to-camera ``[R | t]`` ``[V, 3, 4]``."""
        return _frozen(np.concatenate([self.R, self.t[:, :, None]], axis=2))

    @property
    def sizes(self) -> np.ndarray:
        """Image sizes ``[V, 2]`` as (width, height)."""
        return np.array([c.size for c in self.cameras], dtype=np.float64)

    @cached_property
    def projection_matrices(self) -> np.ndarray:
        """Pinhole projection matrices ``[V, 3, 4]``."""
        return _frozen(np.stack([c.projection_matrix for c in self.cameras]))

    @cached_property
    def centres(self) -> np.ndarray:
        """Camera centres ``[V, 3]``."""
        return _frozen(np.stack([c.centre for c in self.cameras]))

    @cached_property
    def back_projections(self) -> np.ndarray:
        """``R^T K^-1`` per view ``[V, 3, 3]``: homogeneous ideal-pinhole pixels to world ray directions."""
        return _frozen(np.swapaxes(self.R, 1, 2) @ self.K_inv)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points ``[..., 3]`` into every view, with distortion: ``[V, ..., 2]``."""
        return np.stack([c.project(points) for c in self.cameras])

    def undistort(self, keypoints: np.ndarray) -> np.ndarray:
        """Per-view distorted pixels ``[V, ..., 2]`` to ideal-pinhole pixels ``[V, ..., 2]``."""
        if not any(c.has_distortion for c in self.cameras):
            return np.array(keypoints, dtype=np.float64)  # one copy, not one per view
        return np.stack([c.undistort_pixels(kp) for c, kp in zip(self.cameras, keypoints)])

    def spatial_scale(self) -> float:
        """1.1 times the largest camera distance from the rig centroid (the 3DGS ``spatial_lr_scale``)."""
        return self._spatial_scale

    @cached_property
    def _spatial_scale(self) -> float:
        centres = self.centres
        return 1.1 * float(np.max(np.linalg.norm(centres - centres.mean(axis=0), axis=1)))


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array``, read-only: a cached array handed to every caller must not be changed by one of them."""
    array.flags.writeable = False
    return array
