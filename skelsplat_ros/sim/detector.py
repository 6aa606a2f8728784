"""A simulated 2D keypoint detector: :class:`NoiseModel` and :func:`simulate_detections`."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.signal import lfilter

from ..geometry.camera import Camera, CameraRig
from ..skeleton.models import Skeleton
from .motion import _resolve_skeleton

NOISE_PRESETS: tuple[str, ...] = ("clean", "realistic", "hard", "heavy")
_STREAM_DETECT = 0x646574

# ----------------------------------------------------------------------------------------------------------------
# Detector noise
# ----------------------------------------------------------------------------------------------------------------

# Relative difficulty of each joint for a 2D detector (COCO keypoint sigmas: eyes easy, hips hard), by base name.
_JOINT_DIFFICULTY = {"nose": 0.7, "eye": 0.6, "ear": 0.8, "head": 1.4, "head_top": 1.4, "neck": 1.1,
                     "mid_shoulder": 1.1, "shoulder": 1.0, "elbow": 1.0, "wrist": 1.1, "hand": 1.3, "hip": 1.5,
                     "pelvis": 1.4, "mid_hip": 1.4, "body_center": 1.4, "root": 1.4, "spine": 1.6, "thorax": 1.3,
                     "knee": 1.0, "ankle": 1.0, "heel": 1.2, "big_toe": 1.2, "small_toe": 1.3}
# Limb segments that get occluded together, by base name; everything else forms the "trunk" group.
_OCCLUSION_GROUPS = {"arm": ("elbow", "wrist", "hand"),
                     "leg": ("knee", "ankle", "heel", "big_toe", "small_toe"),
                     "head": ("nose", "eye", "ear", "head", "head_top")}


def _base_name(name: str) -> tuple[str, str]:
    if name.startswith(("l_", "r_")):
        return name[:2], name[2:]
    return "", name


@dataclass
class NoiseModel:
    """A 2D keypoint detector in pixel space. Rates are per detection (view, frame, joint) unless stated.

    Attributes:
        pixel_sigma: scale (px, per coordinate) of the frame-to-frame jitter, for a person ``reference_height_px``
            tall in the image when that is set, else in plain pixels. With ``tail_dof`` infinite it is the std.
        tail_dof: degrees of freedom of the (bivariate) Student-t jitter; ``inf`` is Gaussian, 3-5 heavy-tailed.
        reference_height_px: if > 0, jitter and bias scale with the person's height in the image divided by this
            (clipped to 0.3-3): detectors work on resized crops, so small people get small pixel errors.
        per_joint_sigma: multiply the jitter by a per-joint difficulty (eyes 0.6 ... hips 1.5, spine 1.6).
        jitter_correlation_time: correlation time (s) of the jitter, an AR(1) process: consecutive frames share
            part of their error (exp(-dt/tau) correlation); 0 is white noise.
        bias_sigma: std (px, scaled like the jitter) of a constant per-(view, joint) offset: the systematic way a
            detector places a joint differently from the mocap joint centre. Not removed by temporal smoothing.
        self_occlusion: joints hidden behind the torso (a capsule) or the head (a sphere) from a camera get
            ``self_occlusion_sigma`` times the jitter and their confidence multiplied by 0.45-0.8.
        self_occlusion_sigma: jitter multiplier of self-occluded joints.
        confidence_noise: std of the noise added to the confidence of normal detections. Their confidence falls
            with the error: ``0.97 - 0.3 * (1 - exp(-err / (3 sigma)))`` (0.6-1.0).
        confident_outlier_rate: fraction of detections displaced by ``outlier_px`` (uniform magnitude, random
            direction) that keep a confidence in ``outlier_confidence`` (a detector latching on the wrong thing).
        outlier_px: ``(min, max)`` displacement of confident outliers, px.
        outlier_confidence: ``(min, max)`` confidence of confident outliers.
        outlier_duration: mean duration (s) of an outlier; 0 makes every frame independent.
        swap_rate: fraction of (view, frame) whose left/right labels are all swapped (x, y and confidence move
            with the detection, so confidences stay high). More likely when the person faces away from the camera.
        swap_duration: mean duration (s) of a swap.
        occlusion_rate: fraction of time a limb segment (arm, leg, head, trunk) is occluded in a view (by objects,
            other people); occlusions come in runs of ``occlusion_duration`` s on average.
        occlusion_duration: mean duration (s) of an occlusion.
        occlusion_missing_fraction: fraction of occlusions that make the joints missing (NaN, confidence 0); the
            others guess a wrong position (10-100 px away) with confidence in ``occluded_confidence``.
        occluded_confidence: ``(min, max)`` confidence of wrongly placed occluded joints.
        drop_view_rate: fraction of (view, frame) with no detection at all (person not detected).
        drop_duration: mean duration (s) of a dropped view.

    Joints whose true projection is behind the camera or outside ``[0, w) x [0, h)`` are always missing; noisy
    positions are clipped into the image.
    """

    pixel_sigma: float = 3.0
    tail_dof: float = math.inf
    reference_height_px: float = 0.0
    per_joint_sigma: bool = False
    jitter_correlation_time: float = 0.0
    bias_sigma: float = 0.0
    self_occlusion: bool = False
    self_occlusion_sigma: float = 2.5
    confidence_noise: float = 0.02
    confident_outlier_rate: float = 0.0
    outlier_px: tuple[float, float] = (30.0, 200.0)
    outlier_confidence: tuple[float, float] = (0.6, 0.95)
    outlier_duration: float = 0.0
    swap_rate: float = 0.0
    swap_duration: float = 0.1
    occlusion_rate: float = 0.0
    occlusion_duration: float = 0.5
    occlusion_missing_fraction: float = 0.5
    occluded_confidence: tuple[float, float] = (0.05, 0.3)
    drop_view_rate: float = 0.0
    drop_duration: float = 0.1

    def __post_init__(self) -> None:
        for name in ("confident_outlier_rate", "swap_rate", "occlusion_rate", "drop_view_rate",
                     "occlusion_missing_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0 and not (name == "occlusion_missing_fraction" and value == 1.0):
                raise ValueError(f"NoiseModel.{name} must be in [0, 1), got {value}")
        if self.pixel_sigma < 0 or self.bias_sigma < 0 or self.tail_dof <= 2.0:
            raise ValueError("NoiseModel: sigmas must be >= 0 and tail_dof > 2")

    @classmethod
    def preset(cls, name: str) -> "NoiseModel":
        """``clean`` (1 px Gaussian, nothing else), ``realistic`` (the benchmark default), ``hard`` or ``heavy``
        (``hard``'s Student-t jitter, swaps, occluded limbs and dropped views with 5 % confident outliers instead of
        8 %: the heavy-tailed detector of the portrait-rig speed scenario)."""
        if name == "clean":
            return cls(pixel_sigma=1.0)
        if name == "realistic":
            return cls(pixel_sigma=2.0, tail_dof=4.0, reference_height_px=450.0, per_joint_sigma=True,
                       jitter_correlation_time=0.05, bias_sigma=1.0, self_occlusion=True,
                       confident_outlier_rate=0.03, outlier_duration=0.05, swap_rate=0.01, swap_duration=0.1,
                       occlusion_rate=0.03, occlusion_duration=0.5, occlusion_missing_fraction=0.5,
                       drop_view_rate=0.02, drop_duration=0.1)
        if name == "hard":
            return cls(pixel_sigma=4.0, tail_dof=3.0, reference_height_px=450.0, per_joint_sigma=True,
                       jitter_correlation_time=0.08, bias_sigma=2.5, self_occlusion=True, self_occlusion_sigma=3.5,
                       confident_outlier_rate=0.08, outlier_duration=0.1, swap_rate=0.04, swap_duration=0.2,
                       occlusion_rate=0.08, occlusion_duration=0.8, occlusion_missing_fraction=0.5,
                       drop_view_rate=0.06, drop_duration=0.2)
        if name == "heavy":
            return cls.preset("hard").replace(confident_outlier_rate=0.05)
        raise ValueError(f"unknown noise preset {name!r}; choose one of {NOISE_PRESETS}")

    def replace(self, **changes) -> "NoiseModel":
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass
class DetectionInfo:
    """What :func:`simulate_detections` did, for evaluating outlier handling. Masks are per label before swaps.

    Attributes:
        projected: true (distorted) projection of the ground truth ``[V, F, J, 2]``; NaN behind the camera.
        in_image: ground truth projects inside the image (and in front of the camera) ``[V, F, J]``.
        sigma: jitter scale used ``[V, F, J]`` (px).
        self_occluded: hidden behind the torso or the head ``[V, F, J]``.
        outlier: confident outlier ``[V, F, J]``.
        occluded: limb-segment occlusion ``[V, F, J]`` (missing or wrong with low confidence).
        swapped: left/right labels swapped ``[V, F]``.
        dropped: whole view missing ``[V, F]``.
    """

    projected: np.ndarray
    in_image: np.ndarray
    sigma: np.ndarray
    self_occluded: np.ndarray
    outlier: np.ndarray
    occluded: np.ndarray
    swapped: np.ndarray
    dropped: np.ndarray


def _runs(rng: np.random.Generator, shape: tuple[int, ...], num_frames: int, rate: float, mean_frames: float,
          weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random on-runs along the last axis covering about ``rate`` of the frames: ``(mask, run_id)`` ``[*shape, F]``.

    Runs start as a Poisson process and last a geometric number of frames with mean ``mean_frames``; ``weights``
    ``[*shape, F]`` (mean ~1) modulate where they start. ``run_id`` is -1 outside runs, else a unique run index.
    """
    full = shape + (num_frames,)
    if rate <= 0.0 or num_frames == 0:
        return np.zeros(full, dtype=bool), np.full(full, -1, dtype=np.int64)
    mean_frames = max(float(mean_frames), 1.0)
    burn = int(min(4 * mean_frames, 200))
    total = num_frames + burn
    p_start = -math.log(1.0 - rate) / mean_frames if mean_frames > 1.0 else rate
    p = np.full(shape + (total,), p_start)
    if weights is not None:
        w = np.concatenate([np.ones(shape + (burn,)), weights], axis=-1)
        p = np.clip(p * w, 0.0, 1.0)
    starts = rng.random(p.shape) < p
    lengths = rng.geometric(1.0 / mean_frames, size=p.shape) if mean_frames > 1.0 else np.ones(p.shape, np.int64)
    idx = np.nonzero(starts)
    diff = np.zeros(shape + (total + 1,), dtype=np.int64)
    stops = np.minimum(idx[-1] + lengths[idx], total)
    np.add.at(diff, idx, 1)
    np.add.at(diff, idx[:-1] + (stops,), -1)
    mask = np.cumsum(diff, axis=-1)[..., :total] > 0
    ids = np.full(p.shape, -1, dtype=np.int64)
    ids[idx] = np.arange(len(idx[0]))
    run_id = np.maximum.accumulate(ids, axis=-1)
    run_id = np.where(mask, run_id, -1)
    return mask[..., burn:], run_id[..., burn:]


def _segment_distance(p0, p1, q0, q1):
    """Closest points between segments p0-p1 and q0-q1 (broadcast): ``(distance, s on p, t on q)``."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a = np.sum(d1 * d1, -1)
    e = np.sum(d2 * d2, -1)
    f = np.sum(d2 * r, -1)
    c = np.sum(d1 * r, -1)
    b = np.sum(d1 * d2, -1)
    denom = a * e - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > 1e-12, np.clip((b * f - c * e) / denom, 0.0, 1.0), 0.0)
        tq = (b * s + f) / np.maximum(e, 1e-12)
        tq_c = np.clip(tq, 0.0, 1.0)
        s = np.where(tq != tq_c, np.clip((b * tq_c - c) / np.maximum(a, 1e-12), 0.0, 1.0), s)
    closest_p = p0 + s[..., None] * d1
    closest_q = q0 + tq_c[..., None] * d2
    return np.linalg.norm(closest_p - closest_q, axis=-1), s, tq_c


def _self_occlusion(rig: CameraRig, points: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Joints hidden behind the torso (capsule) or the head (sphere) from each camera: ``[V, F, J]`` bool."""
    names = skeleton.joint_names
    V, (F, J) = len(rig), points.shape[:2]
    hidden = np.zeros((V, F, J), dtype=bool)

    def mean_of(*candidates):
        for group in candidates:
            if all(n in names for n in group):
                return np.mean([points[:, names.index(n)] for n in group], axis=0)
        return None

    bottom = mean_of(("l_hip", "r_hip"), ("pelvis",), ("mid_hip",), ("hip",), ("body_center",))
    top = mean_of(("l_shoulder", "r_shoulder"), ("neck",), ("thorax",))
    centres = rig.centres[:, None, None, :]  # [V, 1, 1, 3]
    joint = points[None]  # [1, F, J, 3]
    length = np.linalg.norm(joint - centres, axis=-1)
    if bottom is not None and top is not None:
        if "l_shoulder" in names and "r_shoulder" in names:
            width = np.linalg.norm(points[:, names.index("l_shoulder")] - points[:, names.index("r_shoulder")], axis=-1)
            radius = np.clip(0.42 * np.nanmedian(width), 0.1, 0.2)
        else:
            radius = 0.14
        top_in = bottom + 0.92 * (top - bottom)  # stop just below the neck so the head is not inside the torso
        dist, s, _ = _segment_distance(centres, joint, bottom[None, :, None, :], top_in[None, :, None, :])
        in_front = (1.0 - s) * length > 0.55 * radius
        hidden |= (dist < radius) & in_front
    head = mean_of(("l_ear", "r_ear"))
    if head is not None:
        radius = 0.085
        ray = joint - centres
        s = np.clip(np.sum((head[None, :, None, :] - centres) * ray, -1) / np.maximum(length ** 2, 1e-12), 0.0, 1.0)
        dist = np.linalg.norm(centres + s[..., None] * ray - head[None, :, None, :], axis=-1)
        hidden |= (dist < radius) & ((1.0 - s) * length > 0.5 * radius)
    return hidden


def _ar1(x: np.ndarray, rho: float, axis: int) -> np.ndarray:
    """Stationary AR(1) along ``axis`` with unit-variance-preserving gain: ``y_t = rho y_{t-1} + sqrt(1-rho^2) x_t``."""
    if rho <= 0.0 or x.shape[axis] < 2:
        return x
    gain = math.sqrt(1.0 - rho * rho)
    first = np.take(x, [0], axis=axis)
    zi = (1.0 - gain) * first  # so that y_0 = x_0 (stationary start)
    y, _ = lfilter([gain], [1.0, -rho], x, axis=axis, zi=zi)
    return y


def _facing_weights(rig: CameraRig, points: np.ndarray, skeleton: Skeleton) -> np.ndarray | None:
    """Per (view, frame) swap-likelihood weights: higher when the person faces away from the camera."""
    names = skeleton.joint_names
    pair = None
    for base in ("shoulder", "hip", "ear", "eye"):
        if "l_" + base in names and "r_" + base in names:
            pair = (names.index("l_" + base), names.index("r_" + base))
            break
    if pair is None:
        return None
    across = points[:, pair[0]] - points[:, pair[1]]
    forward = np.cross(across, np.array([0.0, 0.0, 1.0]))
    forward[:, 2] = 0.0
    forward /= np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmean(points, axis=1)
    to_cam = rig.centres[:, None, :] - centre[None]
    to_cam[..., 2] = 0.0
    to_cam /= np.maximum(np.linalg.norm(to_cam, axis=-1, keepdims=True), 1e-9)
    cos = np.sum(forward[None] * to_cam, axis=-1)
    w = 0.5 + 1.5 * np.clip(-cos, 0.0, 1.0) + 0.3 * (1.0 - np.abs(cos))
    w = np.where(np.isfinite(w), w, 1.0)
    return w / np.mean(w)


def _visible_region(camera: Camera, cam_points: np.ndarray) -> np.ndarray:
    """In front of the camera and inside the lens model's valid (monotonic) field, for camera-frame points."""
    z = cam_points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = (cam_points[..., 0] ** 2 + cam_points[..., 1] ** 2) / np.where(z > 0, z * z, np.nan)
    front = z > 1e-3
    if not camera.has_distortion:
        return front
    w, h = camera.size
    corners = np.array([[0.0, 0.0], [w - 1.0, 0.0], [0.0, h - 1.0], [w - 1.0, h - 1.0]])
    ideal = camera.undistort_pixels(corners)
    norm = (ideal - camera.K[:2, 2]) / np.diag(camera.K)[:2]
    corner_r2 = np.sum(norm ** 2, axis=-1)
    # A corner beyond the lens model's fold has no inverse (NaN): the image then reaches the fold itself.
    fold_r2 = camera.monotonic_radius ** 2
    r2_max = fold_r2 if np.isnan(corner_r2).any() else min(1.1 * float(np.max(corner_r2)), fold_r2)
    with np.errstate(invalid="ignore"):
        return front & (r2 <= r2_max)


def simulate_detections(rig: CameraRig, points: np.ndarray, skeleton: Skeleton | str, noise: NoiseModel | str,
                        seed: int = 0, fps: float = 30.0, return_info: bool = False):
    """Detector-like 2D keypoints of ``points [F, J, 3]`` in every camera: ``[V, F, J, 3]`` (x px, y px, confidence).

    Projects with :meth:`Camera.project` (distortion included), then corrupts in pixel space following ``noise``
    (see :class:`NoiseModel`). Missing detections are NaN x/y with confidence 0. Seeded: same inputs, same output.
    ``fps`` converts the model's durations to frames. With ``return_info`` returns ``(keypoints, DetectionInfo)``.
    """
    skeleton = _resolve_skeleton(skeleton)
    if isinstance(noise, str):
        noise = NoiseModel.preset(noise)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (skeleton.num_joints, 3):
        raise ValueError(f"points must be [F, {skeleton.num_joints}, 3] for skeleton {skeleton.name!r}, "
                         f"got {points.shape}")
    V, (F, J) = len(rig), points.shape[:2]
    rng = np.random.default_rng([int(seed), _STREAM_DETECT])
    names = skeleton.joint_names
    sizes = rig.sizes  # [V, 2]

    # Geometry: true projection, validity, person size in the image.
    projected = rig.project(points)  # [V, F, J, 2]
    cam_pts = np.stack([c.world_to_camera(points) for c in rig])
    valid = np.stack([_visible_region(c, p) for c, p in zip(rig, cam_pts)])
    with np.errstate(invalid="ignore"):
        in_image = (valid & np.all(np.isfinite(projected), axis=-1)
                    & (projected[..., 0] >= 0) & (projected[..., 0] < sizes[:, None, None, 0])
                    & (projected[..., 1] >= 0) & (projected[..., 1] < sizes[:, None, None, 1]))
    finite = np.all(np.isfinite(points), axis=-1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without any finite joint
        extent = np.nanmax(np.where(finite[..., None], points, -np.inf), axis=1) - \
            np.nanmin(np.where(finite[..., None], points, np.inf), axis=1)
        centroid = np.nanmean(points, axis=1)
    extent = np.where(np.isfinite(extent), extent, 0.0).max(axis=-1)  # [F]
    depth = np.stack([c.world_to_camera(centroid)[:, 2] for c in rig])  # [V, F]
    if noise.reference_height_px > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            height_px = rig.K[:, 1, 1][:, None] * extent[None] / np.where(depth > 0.1, depth, np.nan)
        scale = np.clip(np.nan_to_num(height_px / noise.reference_height_px, nan=1.0), 0.3, 3.0)
    else:
        scale = np.ones((V, F))
    difficulty = np.ones(J)
    if noise.per_joint_sigma:
        difficulty = np.array([_JOINT_DIFFICULTY.get(_base_name(n)[1], 1.2) for n in names])
    sigma = noise.pixel_sigma * scale[..., None] * difficulty  # [V, F, J]
    hidden = _self_occlusion(rig, points, skeleton) if noise.self_occlusion else np.zeros((V, F, J), bool)
    sigma_eff = np.where(hidden, sigma * noise.self_occlusion_sigma, sigma)

    # Jitter: bivariate Student-t, AR(1) in time, plus a per-(view, joint) bias.
    gauss = rng.standard_normal((V, F, J, 2))
    if math.isfinite(noise.tail_dof):
        gauss *= np.sqrt(noise.tail_dof / rng.chisquare(noise.tail_dof, (V, F, J, 1)))
    tau = noise.jitter_correlation_time
    gauss = _ar1(gauss, math.exp(-1.0 / (fps * tau)) if tau > 0 else 0.0, axis=1)
    bias = rng.standard_normal((V, 1, J, 2)) * noise.bias_sigma * scale[:, :, None, None]
    uv = projected + gauss * sigma_eff[..., None] + bias
    err = np.linalg.norm(uv - projected, axis=-1)
    conf = 0.97 - 0.3 * (1.0 - np.exp(-err / np.maximum(3.0 * sigma, 1e-6)))
    conf += rng.normal(0.0, noise.confidence_noise, conf.shape)
    conf = np.where(hidden, conf * rng.uniform(0.45, 0.8, conf.shape), conf)
    conf = np.clip(conf, 0.02, 0.99)

    # Confident outliers.
    out_mask, out_id = _runs(rng, (V, J), F, noise.confident_outlier_rate, noise.outlier_duration * fps)
    out_mask, out_id = np.moveaxis(out_mask, -1, 1), np.moveaxis(out_id, -1, 1)  # [V, F, J]
    if out_mask.any():
        n_runs = int(out_id.max()) + 1
        mag = rng.uniform(*noise.outlier_px, n_runs)
        ang = rng.uniform(0.0, 2.0 * np.pi, n_runs)
        disp = np.stack([mag * np.cos(ang), mag * np.sin(ang)], axis=-1)
        uv = np.where(out_mask[..., None], projected + disp[np.maximum(out_id, 0)] + gauss * sigma[..., None], uv)
        conf = np.where(out_mask, rng.uniform(*noise.outlier_confidence, conf.shape), conf)

    # Occluded limb segments: missing, or a wrong guess with low confidence.
    group_names = ["trunk"] + [f"{side}{g}" for g in _OCCLUSION_GROUPS for side in ("l_", "r_", "")]
    groups = np.zeros(J, dtype=np.int64)
    for j, name in enumerate(names):
        side, base = _base_name(name)
        for g, members in _OCCLUSION_GROUPS.items():
            if base in members:
                groups[j] = group_names.index(f"{side}{g}")
    occ_g, occ_gid = _runs(rng, (V, len(group_names)), F, noise.occlusion_rate, noise.occlusion_duration * fps)
    occluded = np.moveaxis(occ_g[:, groups], -1, 1)  # [V, F, J]
    occ_id = np.moveaxis(occ_gid[:, groups], -1, 1)
    missing_occ = np.zeros_like(occluded)
    if occluded.any():
        n_runs = int(occ_gid.max()) + 1
        gone = rng.random(n_runs) < noise.occlusion_missing_fraction
        mag = rng.uniform(10.0, 100.0, (n_runs, J))
        ang = rng.uniform(0.0, 2.0 * np.pi, (n_runs, J))
        disp = np.stack([mag * np.cos(ang), mag * np.sin(ang)], axis=-1)  # [runs, J, 2]
        rid = np.maximum(occ_id, 0)
        missing_occ = occluded & gone[rid]
        wrong = occluded & ~gone[rid]
        guess = projected + disp[rid, np.arange(J)[None, None, :]] + gauss * sigma[..., None]
        uv = np.where(wrong[..., None], guess, uv)
        conf = np.where(wrong, rng.uniform(*noise.occluded_confidence, conf.shape), conf)

    # Off-image and behind-camera joints are missing; detections stay inside the image.
    missing = ~in_image | missing_occ
    uv[..., 0] = np.clip(uv[..., 0], 0.0, sizes[:, None, None, 0] - 1e-3)
    uv[..., 1] = np.clip(uv[..., 1], 0.0, sizes[:, None, None, 1] - 1e-3)
    kp = np.concatenate([uv, conf[..., None]], axis=-1)
    kp[missing] = (np.nan, np.nan, 0.0)

    # Whole-view left/right swaps, then dropped views.
    weights = _facing_weights(rig, points, skeleton) if noise.swap_rate > 0 else None
    swapped, _ = _runs(rng, (V,), F, noise.swap_rate, noise.swap_duration * fps, weights)
    if swapped.any():
        perm = skeleton.flip_permutation
        kp = np.where(swapped[..., None, None], kp[:, :, perm], kp)
    dropped, _ = _runs(rng, (V,), F, noise.drop_view_rate, noise.drop_duration * fps)
    kp[dropped] = (np.nan, np.nan, 0.0)

    if not return_info:
        return kp
    info = DetectionInfo(projected=projected, in_image=in_image, sigma=sigma_eff, self_occluded=hidden & in_image,
                         outlier=out_mask & ~occluded & in_image, occluded=occluded & in_image,
                         swapped=swapped, dropped=dropped)
    return kp, info
