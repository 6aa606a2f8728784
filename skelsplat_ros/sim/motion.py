"""Procedural human motion: :func:`generate_motion`, one person of seeded random anthropometry animated by a
kinematic tree."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..skeleton.models import Skeleton, get_skeleton

MOTION_KINDS: tuple[str, ...] = ("walk", "reach", "crouch", "turn", "mixed")

# Independent random streams per function (here, rigs.py, detector.py): the same user seed gives unrelated draws.
_STREAM_MOTION = 0x6D6F74

_FINE_DT = 0.01  # s, grid of the root trajectory and of the footstep planner (independent of the frame rate)
_OUT_TOE = 0.12  # rad, feet point slightly outwards
_ORBIT_CENTRE_X = -0.25  # m, walking orbits are centred a little behind the origin, away from the robot rig (+x)

# ----------------------------------------------------------------------------------------------------------------
# Small vectorised helpers
# ----------------------------------------------------------------------------------------------------------------


def _wrap(angle):
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _minjerk(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


def _rot_x(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    out[..., 0, 0] = 1.0
    out[..., 1, 1], out[..., 1, 2], out[..., 2, 1], out[..., 2, 2] = c, -s, s, c
    return out


def _rot_y(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    out[..., 1, 1] = 1.0
    out[..., 0, 0], out[..., 0, 2], out[..., 2, 0], out[..., 2, 2] = c, s, -s, c
    return out


def _rot_z(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    out[..., 2, 2] = 1.0
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1] = c, -s, s, c
    return out


def _apply(rot, vec):
    """``rot [..., 3, 3]`` times ``vec [..., 3]`` (broadcast)."""
    return np.einsum("...ij,...j->...i", rot, vec)


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, fmin: float, fmax: float, n: int = 5) -> np.ndarray:
    """A smooth random signal of unit RMS: a sum of ``n`` sinusoids with random frequencies in [fmin, fmax] Hz.

    A continuous function of time, so it does not depend on the frame rate or on the sequence length.
    """
    freq = rng.uniform(fmin, fmax, n)
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    amp = rng.normal(size=n)
    amp /= math.sqrt(float(np.sum(amp ** 2)) / 2.0) + 1e-12
    return np.sin(2.0 * np.pi * np.asarray(t)[..., None] * freq + phase) @ amp


def _track(times: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Keyframe track with minimum-jerk transitions: ``values [K, ...]`` at ``times [K]`` evaluated at ``t [F]``.

    Holds the first value before the first key and the last value after the last key; zero velocity at every key.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    k = len(times)
    idx = np.searchsorted(times, t, side="right") - 1
    i0 = np.clip(idx, 0, k - 1)
    i1 = np.clip(idx + 1, 0, k - 1)
    span = times[i1] - times[i0]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(span > 0, (t - times[i0]) / np.where(span > 0, span, 1.0), 0.0)
    w = _minjerk(s).reshape(t.shape + (1,) * (values.ndim - 1))
    return values[i0] + (values[i1] - values[i0]) * w


# ----------------------------------------------------------------------------------------------------------------
# Anthropometry
# ----------------------------------------------------------------------------------------------------------------

# Body-frame conventions (REP-103 body frame): x forward, y left, z up. Offsets are in units of body height and come
# from standard segment-length ratios (Drillis & Contini, Winter): ankle 0.039 H, knee 0.285 H, hip 0.530 H,
# shoulder 0.818 H, eyes 0.936 H.
_TRUNK_POINTS = {  # relative to the pelvis centre (mid-point of the hip joint centres), in the trunk frame
    "l_hip": (0.0, 0.052, 0.0),
    "r_hip": (0.0, -0.052, 0.0),
    "spine": (-0.012, 0.0, 0.115),
    "thorax": (0.004, 0.0, 0.225),
    "neck": (-0.008, 0.0, 0.292),
    "l_shoulder": (-0.012, 0.098, 0.283),
    "r_shoulder": (-0.012, -0.098, 0.283),
}
_HEAD_POINTS = {  # relative to the neck, in the head frame
    "head": (-0.012, 0.0, 0.178),  # top of the head
    "nose": (0.058, 0.0, 0.088),
    "l_eye": (0.048, 0.018, 0.110),
    "r_eye": (0.048, -0.018, 0.110),
    "l_ear": (-0.008, 0.043, 0.098),
    "r_ear": (-0.008, -0.043, 0.098),
}
# Foot points relative to the ankle, in the foot frame; the second coordinate is multiplied by the side sign
# (+1 left, -1 right), so positive means lateral.
_FOOT_POINTS = {
    "heel": (-0.042, 0.0, -0.026),
    "big_toe": (0.105, -0.010, -0.030),
    "small_toe": (0.085, 0.024, -0.031),
}
_BALL_PIVOT = (0.100, 0.0, -0.039)  # rolls over the toes at heel-off
_HEEL_PIVOT = (-0.040, 0.0, -0.039)  # and over the heel after heel strike
_REST_ARM = np.array([0.08, 0.10, 0.0, 0.25])  # flexion, abduction, internal rotation, elbow flexion (rad)


class _Body:
    """Seeded anthropometry of one person: a height and consistent segment lengths (metres)."""

    def __init__(self, rng: np.random.Generator):
        height = float(rng.uniform(1.55, 1.95))

        def jit(sd: float = 0.025) -> float:
            return 1.0 + float(np.clip(rng.normal(0.0, sd), -2.5 * sd, 2.5 * sd))

        ankle, shank, thigh = 0.039 * jit(), 0.246 * jit(), 0.245 * jit()
        trunk_scale, head_scale = jit(), jit(0.02)
        width_scale, shoulder_scale = jit(0.04), jit(0.04)
        # Normalise the vertical chain so that the standing height is exactly ``height``.
        chain = ankle + shank + thigh + (_TRUNK_POINTS["neck"][2] * trunk_scale) + _HEAD_POINTS["head"][2] * head_scale
        unit = height / chain
        self.height = height
        self.ankle_height = ankle * unit
        self.shank = shank * unit
        self.thigh = thigh * unit
        self.trunk = {}
        for name, (x, y, z) in _TRUNK_POINTS.items():
            lateral = width_scale if name.endswith("hip") else shoulder_scale
            self.trunk[name] = np.array([x * trunk_scale, y * lateral, z * trunk_scale]) * unit
        self.head = {name: np.array(p) * head_scale * unit for name, p in _HEAD_POINTS.items()}
        arm_scale = jit(0.03)
        self.upper_arm = 0.180 * arm_scale * unit * jit(0.015)
        self.forearm = 0.146 * arm_scale * unit * jit(0.015)
        self.hand = 0.055 * arm_scale * unit
        foot_scale = jit(0.03) * unit
        self.foot = {name: np.array(p) * foot_scale for name, p in _FOOT_POINTS.items()}
        self.ball_pivot = np.array(_BALL_PIVOT) * foot_scale
        self.heel_pivot = np.array(_HEEL_PIVOT) * foot_scale
        self.ball_pivot[2] = self.heel_pivot[2] = -self.ankle_height  # on the ground when the foot is flat
        self.leg = self.thigh + self.shank
        self.stance_half_width = float(self.trunk["l_hip"][1] + rng.uniform(0.015, 0.04))  # ankle |y| standing
        self.walk_half_width = float(rng.uniform(0.045, 0.065))
        self.speed = float(rng.uniform(0.95, 1.3)) * math.sqrt(height / 1.75)  # preferred walking speed, m/s


# ----------------------------------------------------------------------------------------------------------------
# Motion schedule: segments of activity, and the root (pelvis ground point + heading) on a fine time grid
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Segment:
    kind: str
    t0: float
    t1: float
    tracks: dict = field(default_factory=dict)  # channel -> (times [K], values [K, ...]) deltas, zero at both ends
    extras: list = field(default_factory=list)  # callables t -> {channel: delta}


def _arm_fk_local(body: _Body, angles: np.ndarray, side: int) -> np.ndarray:
    """Wrist position relative to the shoulder in the trunk frame, for arm angles ``[..., 4]``; side +1 left."""
    flex, abd, rot, elbow = (angles[..., i] for i in range(4))
    r_up = _rot_y(-flex) @ _rot_x(side * abd) @ _rot_z(-side * rot)
    down = np.array([0.0, 0.0, -1.0])
    elbow_pos = _apply(r_up, down * body.upper_arm)
    return elbow_pos + _apply(r_up @ _rot_y(-elbow), down * body.forearm)


def _reach_segment(rng: np.random.Generator, body: _Body, t0: float, t1: float) -> _Segment:
    seg = _Segment("reach", t0, t1)
    times, arms, trunk, head = [t0], [np.zeros((2, 4))], [np.zeros(3)], [np.zeros(3)]
    t = t0 + rng.uniform(0.2, 0.6)
    rest = True
    while True:
        kind = rng.choice(["one", "both", "wave"], p=[0.6, 0.15, 0.25])
        move = rng.uniform(0.8, 1.4)
        hold = rng.uniform(1.5, 3.0) if kind == "wave" else rng.uniform(0.3, 1.1)
        if t + move + hold + 1.3 > t1:
            break
        side_idx = int(rng.integers(2))
        side = 1 - 2 * side_idx  # +1 left, -1 right
        pose = np.tile(_REST_ARM, (2, 1))
        if kind == "wave":
            pose[side_idx] = [rng.uniform(0.3, 0.8), rng.uniform(1.0, 1.45), -rng.uniform(1.1, 1.5),
                              rng.uniform(1.2, 1.6)]
        else:
            flex = rng.uniform(0.5, 2.7)
            abd = rng.uniform(-0.3, 1.2) if flex > 1.2 else rng.uniform(0.1, 1.3)
            elbow = rng.uniform(0.05, 0.6) if rng.random() < 0.7 else rng.uniform(0.6, 1.5)
            pose[side_idx] = [flex, abd, rng.uniform(-0.5, 0.8), elbow]
            if kind == "both":
                pose[1 - side_idx] = pose[side_idx] + rng.normal(0.0, 0.1, 4)
            else:
                pose[1 - side_idx] += rng.normal(0.0, 0.08, 4)
        f, a = pose[side_idx, 0], pose[side_idx, 1]
        body_pose = np.array([
            0.12 * max(0.0, 1.6 - f) * rng.uniform(0.5, 1.5),  # lean forward for low/forward reaches
            -side * 0.10 * a * (kind != "both"),  # lean towards the reaching side
            -side * 0.25 * math.sin(min(f, 1.6)) * (kind == "one") * rng.uniform(0.3, 1.0),  # twist
        ])
        wrist = _arm_fk_local(body, pose[side_idx], side) + body.trunk["l_shoulder" if side > 0 else "r_shoulder"]
        rel = wrist - body.trunk["neck"] - np.array([0.0, 0.0, 0.1 * body.height])
        look = np.array([
            np.clip(math.atan2(rel[1], max(rel[0], 0.05)), -1.0, 1.0),
            np.clip(math.atan2(-rel[2], math.hypot(rel[0], rel[1])), -0.5, 0.6),
            0.0,
        ])
        delta = pose - _REST_ARM
        times += [t + move, t + move + hold]
        arms += [delta, delta]
        trunk += [body_pose, body_pose]
        head += [look, look]
        if kind == "wave":
            start, stop = t + move, t + move + hold
            freq, amp = rng.uniform(1.6, 2.6), rng.uniform(0.25, 0.4)

            def wave(tt, start=start, stop=stop, freq=freq, amp=amp, side_idx=side_idx):
                env = _smoothstep((tt - start) / 0.3) * _smoothstep((stop - tt) / 0.3)
                out = np.zeros(np.shape(tt) + (2, 4))
                out[..., side_idx, 3] = env * amp * np.sin(2.0 * np.pi * freq * (tt - start))
                return {"arm": out}

            seg.extras.append(wave)
        t += move + hold
        rest = False
        if kind == "wave" or rng.random() < 0.5:
            back = rng.uniform(0.7, 1.2)
            times.append(t + back)
            arms.append(np.zeros((2, 4)))
            trunk.append(np.zeros(3))
            head.append(np.zeros(3))
            t += back + rng.uniform(0.2, 0.8)
            rest = True
    if not rest:
        times.append(min(t1 - 0.05, max(times[-1] + 0.8, t + 1.0)))
        arms.append(np.zeros((2, 4)))
        trunk.append(np.zeros(3))
        head.append(np.zeros(3))
    seg.tracks = {"arm": (times, arms), "trunk": (times, trunk), "head": (times, head)}
    return seg


def _crouch_segment(rng: np.random.Generator, body: _Body, t0: float, t1: float) -> _Segment:
    seg = _Segment("crouch", t0, t1)
    H = body.height
    extra = rng.uniform(0.04, 0.08)
    seg.tracks["stance"] = ([t0, t0 + 0.5, t1 - 0.5, t1], [0.0, extra, extra, 0.0])
    times, pelvis, trunk, arms, head = [t0], [np.zeros(2)], [np.zeros(3)], [np.zeros((2, 4))], [np.zeros(3)]
    t = t0 + rng.uniform(0.9, 1.2)
    while True:
        down, hold, up = rng.uniform(0.8, 1.5), rng.uniform(0.2, 1.2), rng.uniform(0.7, 1.3)
        if t + down + hold + up + 0.6 > t1:
            break
        arm = np.zeros((2, 4))
        if rng.random() < 0.6:  # squat: hips back and down, trunk forward, arms forward for balance
            c = rng.uniform(0.4, 1.0)
            pitch = c * rng.uniform(0.45, 0.7)
            pel = np.array([c * 0.21 * H, c * 0.09 * H])
            arm[:, 0] = c * rng.uniform(0.6, 1.3)
            arm[:, 3] = 0.3 * c
            look = -0.6 * pitch
        else:  # stoop: bend at the hips with nearly straight knees, hands towards the floor
            b = rng.uniform(0.6, 1.0)
            pitch = b * rng.uniform(1.0, 1.35)
            pel = np.array([b * 0.03 * H, b * 0.07 * H])
            arm[:, 0] = 0.9 * pitch + rng.uniform(0.0, 0.3)
            arm[:, 3] = rng.uniform(-0.1, 0.2)
            look = -0.35 * pitch
        body_pose = np.array([pitch, rng.normal(0.0, 0.03), rng.normal(0.0, 0.08)])
        look_v = np.array([rng.normal(0.0, 0.2), look, 0.0])
        times += [t + down, t + down + hold, t + down + hold + up]
        pelvis += [pel, pel, np.zeros(2)]
        trunk += [body_pose, body_pose, np.zeros(3)]
        arms += [arm, arm, np.zeros((2, 4))]
        head += [look_v, look_v, np.zeros(3)]
        t += down + hold + up + rng.uniform(0.3, 1.0)
    seg.tracks.update({"pelvis": (times, pelvis), "trunk": (times, trunk), "arm": (times, arms),
                       "head": (times, head)})
    return seg


def _turn_plan(rng: np.random.Generator, psi: float, target: float | None) -> tuple[list[float], list[float], float]:
    """Heading keyframes (relative times, absolute headings) and the duration of a turning segment."""
    times, heads = [0.0], [psi]
    t = rng.uniform(0.2, 0.4)
    if target is None:
        amounts = [rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 3.1) for _ in range(int(rng.integers(1, 3)))]
    else:
        amounts = [float(_wrap(target - psi))]
    for amount in amounts:
        duration = 0.7 + 0.6 * abs(amount)
        times += [t, t + duration]
        heads += [heads[-1], heads[-1] + amount]
        t += duration + rng.uniform(0.3, 0.8)
    return times, heads, t + 0.2


class _Root:
    """The root of the person on a fine time grid: ground point of the pelvis, heading (unwrapped), walking speed."""

    def __init__(self, rng: np.random.Generator, body: _Body, motion: str, duration: float, face: float):
        n = int(math.ceil((duration + 4.0) / _FINE_DT)) + 1
        self.t = np.arange(n) * _FINE_DT
        self.xy = np.zeros((n, 2))
        self.heading = np.zeros(n)
        self.speed = np.zeros(n)
        self.segments: list[_Segment] = []
        radius, angle = 0.6 * math.sqrt(rng.random()), rng.uniform(0.0, 2.0 * np.pi)
        pos = np.array([radius * math.cos(angle), radius * math.sin(angle)])
        if motion == "walk":  # start roughly along the orbit
            psi = angle + rng.choice([-1.0, 1.0]) * 0.5 * np.pi + rng.uniform(-0.5, 0.5)
        else:
            psi = face + rng.uniform(-0.5, 0.5)
        cycle_index = 2
        i = 0
        while i < n:
            if motion == "mixed":
                if cycle_index % 5 == 2:
                    order = ["reach", "crouch"] if rng.random() < 0.5 else ["crouch", "reach"]
                kind = ["walk", "turn_face", order[0], order[1], "turn"][cycle_index % 5]
                cycle_index += 1
            else:
                kind = motion
            t0 = i * _FINE_DT
            if kind in ("turn", "turn_face"):
                rel_t, heads, dur = _turn_plan(rng, psi, face + rng.uniform(-0.4, 0.4) if kind == "turn_face" else None)
            elif kind == "walk":
                dur = math.inf if motion == "walk" else rng.uniform(4.0, 7.0)
            else:
                dur = rng.uniform(4.0, 7.0)
            steps = n - i if math.isinf(dur) else max(1, int(round(dur / _FINE_DT)))
            i1 = min(n, i + steps)
            t1 = t0 + steps * _FINE_DT
            sl = slice(i, i1)
            if kind == "walk":
                pos, psi = self._walk(rng, body, sl, pos, psi, t0, t1 if not math.isinf(dur) else math.inf)
            else:
                self.xy[sl] = pos
                if kind in ("turn", "turn_face"):
                    self.heading[sl] = _track(np.array(rel_t) + t0, np.array(heads), self.t[sl])
                    psi = heads[-1]
                else:
                    self.heading[sl] = psi
                if kind == "reach":
                    self.segments.append(_reach_segment(rng, body, t0, t1))
                elif kind == "crouch":
                    self.segments.append(_crouch_segment(rng, body, t0, t1))
            i = i1

    def _walk(self, rng, body, sl, pos, psi, t0, t1):
        """Integrate a unicycle that steers onto a wobbly circular orbit (radius 0.72-1.28 m, centre (-0.25, 0))."""
        t = self.t[sl]
        r_target = 1.0 + 0.28 * np.clip(_smooth_noise(rng, t, 0.03, 0.12, 3) / 1.4, -1.0, 1.0)
        v_nominal = body.speed * (1.0 + 0.07 * _smooth_noise(rng, t, 0.05, 0.3, 3))
        ramp_in = _smoothstep((t - t0) / 1.2)
        ramp = ramp_in * (_smoothstep((t1 - t) / 1.2) if not math.isinf(t1) else 1.0)
        rel = pos - np.array([_ORBIT_CENTRE_X, 0.0])
        cross = rel[0] * math.sin(psi) - rel[1] * math.cos(psi)
        direction = (1.0 if cross >= 0 else -1.0) if np.hypot(*rel) > 0.2 else float(rng.choice([-1.0, 1.0]))
        x, y, heading, omega = float(pos[0]), float(pos[1]), float(psi), 0.0
        cx = _ORBIT_CENTRE_X
        xs, ys, hs, vs = np.empty(len(t)), np.empty(len(t)), np.empty(len(t)), np.empty(len(t))
        for k in range(len(t)):
            r = math.hypot(x - cx, y)
            theta = math.atan2(y, x - cx)
            desired = theta + direction * (0.5 * math.pi + math.atan(2.5 * (r - r_target[k])))
            err = (desired - heading + math.pi) % (2.0 * math.pi) - math.pi
            start = 1.0 - ramp_in[k]  # turn towards the path while setting off
            omega_max = 1.2 * v_nominal[k] * ramp[k] + 1.5 * start
            omega_cmd = max(-omega_max, min(omega_max, (2.0 * v_nominal[k] * ramp[k] + 2.0 * start) * err))
            omega += (omega_cmd - omega) * _FINE_DT / 0.25
            v = v_nominal[k] * ramp[k] / (1.0 + 0.5 * abs(omega) / v_nominal[k])
            heading += omega * _FINE_DT
            xs[k], ys[k], hs[k], vs[k] = x, y, heading, v
            x += v * math.cos(heading) * _FINE_DT
            y += v * math.sin(heading) * _FINE_DT
        self.xy[sl, 0], self.xy[sl, 1], self.heading[sl], self.speed[sl] = xs, ys, hs, vs
        return np.array([x, y]), heading

    def at(self, t):
        """Root ``(xy [..., 2], heading [...], speed [...])`` at times ``t`` (linear interpolation of the grid)."""
        xy = np.stack([np.interp(t, self.t, self.xy[:, 0]), np.interp(t, self.t, self.xy[:, 1])], axis=-1)
        return xy, np.interp(t, self.t, self.heading), np.interp(t, self.t, self.speed)

    def at_scalar(self, t: float) -> tuple[float, float, float, float]:
        """Fast scalar version of :meth:`at` on the uniform grid: ``(x, y, heading, speed)``."""
        u = min(max(t / _FINE_DT, 0.0), len(self.t) - 1.000001)
        i = int(u)
        w = u - i
        xy, hd, sp = self.xy, self.heading, self.speed
        return (xy[i, 0] + w * (xy[i + 1, 0] - xy[i, 0]), xy[i, 1] + w * (xy[i + 1, 1] - xy[i, 1]),
                hd[i] + w * (hd[i + 1] - hd[i]), sp[i] + w * (sp[i + 1] - sp[i]))

    def channel(self, name: str, t: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Sum of the segments' contributions to a channel at times ``t``: ``[len(t), *shape]``."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros(t.shape + shape)
        for seg in self.segments:
            if name in seg.tracks:
                times, values = seg.tracks[name]
                out += _track(np.asarray(times), np.asarray(values, dtype=np.float64).reshape((-1,) + shape), t)
            for extra in seg.extras:
                contribution = extra(t)
                if name in contribution:
                    out += contribution[name]
        return out


# ----------------------------------------------------------------------------------------------------------------
# Footstep planner and foot trajectories
# ----------------------------------------------------------------------------------------------------------------


def _plan_steps(body: _Body, root: _Root, t_end: float):
    """Event-driven footsteps: a foot steps when its planted footprint is far from where the body wants it.

    While walking the footprint is placed where the pelvis will be at mid-stance, so steps alternate at a cadence
    set by the speed; standing still produces no steps; turning in place produces small re-orienting steps.
    Returns the initial footprints and, per side (0 left, 1 right), a dict of step arrays.
    """
    scale = math.sqrt(body.height / 1.75)
    stance = root.channel("stance", root.t, ())

    def desired(side: int, t: float):
        x, y, psi, v = root.at_scalar(t)
        walk = min(1.0, v / 0.5)
        u = min(max(t / _FINE_DT, 0.0), len(stance) - 1.000001)
        half = body.stance_half_width + stance[int(u)] + (u - int(u)) * (stance[int(u) + 1] - stance[int(u)])
        half += (body.walk_half_width - half) * walk
        sign = 1.0 - 2.0 * side
        p = np.array([x - sign * half * math.sin(psi), y + sign * half * math.cos(psi)])
        return p, float(psi + sign * _OUT_TOE)

    def cadence(t: float):
        v = root.at_scalar(t)[3]
        walk = min(1.0, max(0.0, (float(v) - 0.1) / 0.4))
        t_step = (0.62 + (min(max(0.8 - 0.23 * v, 0.45), 0.8) - 0.62) * walk) * scale
        t_swing = 0.45 + (0.8 * t_step - 0.45) * walk
        return walk, t_step, t_swing

    pos, yaw = {}, {}
    for side in (0, 1):
        pos[side], yaw[side] = desired(side, 0.0)
    init = {side: (pos[side].copy(), yaw[side]) for side in (0, 1)}
    steps = {0: [], 1: []}
    max_behind = 0.42 * body.leg  # horizontal hip-to-stance-foot distance that forces the next step
    t, last = 0.0, None
    while t < t_end:
        walk, t_step, t_swing = cadence(t)
        walk_l, t_step_l, _ = cadence(t + t_swing)  # conditions at landing
        lead = 0.6 * t_step_l * walk_l
        options = []
        for side in (0, 1):
            p, y = desired(side, t + t_swing + lead)
            turn = abs((y - yaw[side] + math.pi) % (2.0 * math.pi) - math.pi)
            need = max(math.hypot(p[0] - pos[side][0], p[1] - pos[side][1]) / 0.035, turn / 0.25)
            if need > 1.0:
                options.append((side == last, -need, side, p, y))
        if not options:
            t += 0.05
            continue
        _, _, side, p, y = min(options, key=lambda o: (o[0], o[1]))
        dist = float(np.linalg.norm(p - pos[side]))
        rel = min(dist / (1.2 * scale), 1.2)
        steps[side].append((t, t + t_swing, *pos[side], yaw[side], *p, y,
                            0.55 * rel,  # heel-off plantar flexion (rad)
                            0.30 * rel,  # heel-strike dorsiflexion (rad)
                            0.08 + 0.4 * t_step * walk,  # heel-off duration (s)
                            0.06 + 0.3 * t_step * walk,  # foot-flat duration (s)
                            0.03 + 0.06 * rel))  # swing lift of the ankle (m)
        pos[side], yaw[side], last = p, y, side
        # Next opportunity: one step period later, or earlier if the stance foot is being left behind.
        t_next = t + t_step
        other = 1 - side
        for tc in np.arange(t + t_swing + 0.03, t_next, 0.03):
            _, _, t_sw_c = cadence(tc)
            x_c, y_c, _, _ = root.at_scalar(tc + t_sw_c)
            if math.hypot(x_c - pos[other][0], y_c - pos[other][1]) > max_behind:
                t_next = float(tc)
                break
        t = t_next
    keys = ("lift", "land", "fx", "fy", "fyaw", "tx", "ty", "tyaw", "p1", "p2", "ho", "ff", "lift_h")
    out = {}
    for side in (0, 1):
        arr = np.array(steps[side], dtype=np.float64).reshape(-1, len(keys))
        out[side] = {k: arr[:, i] for i, k in enumerate(keys)}
    return init, out


def _foot_track(body: _Body, init, steps: dict, side: int, t: np.ndarray):
    """Foot pose at times ``t``: ankle ``[F, 3]``, foot rotation ``[F, 3, 3]``, in-swing flag ``[F]``."""
    f = len(t)
    k_total = len(steps["lift"])
    k = np.searchsorted(steps["lift"], t, side="right") - 1
    kc = np.clip(k, 0, max(k_total - 1, 0))
    has = (k >= 0) & (k_total > 0)

    def get(name, idx, default):
        if k_total == 0:
            return np.full(f, default, dtype=np.float64)
        return np.where(has, steps[name][idx], default)

    init_xy, init_yaw = init
    # Planted footprint (after landing of step k, or the initial one).
    px, py, pyaw = get("tx", kc, init_xy[0]), get("ty", kc, init_xy[1]), get("tyaw", kc, init_yaw)
    land = get("land", kc, -np.inf)
    in_swing = has & (t < land)
    pitch = np.zeros(f)
    pivot = np.zeros((f, 3))
    if k_total:
        # Foot-flat after heel strike: roll over the heel from -p2 to 0.
        ff = steps["ff"][kc]
        s_ff = np.where(has, (t - land) / ff, 2.0)
        m_ff = has & ~in_swing & (s_ff < 1.0)
        pitch = np.where(m_ff, -steps["p2"][kc] * (1.0 - _smoothstep(s_ff)), pitch)
        pivot[m_ff] = body.heel_pivot
        # Heel-off before the next lift: roll over the ball from 0 to p1.
        kn = np.clip(k + 1, 0, k_total - 1)
        nxt = (k + 1 < k_total)
        s_ho = np.where(nxt, 1.0 - (steps["lift"][kn] - t) / steps["ho"][kn], -1.0)
        m_ho = nxt & ~in_swing & (s_ho > 0.0)
        pitch = np.where(m_ho, steps["p1"][kn] * _smoothstep(s_ho), pitch)
        pivot[m_ho] = body.ball_pivot
    ankle = _pivot_ankle(body, px, py, pyaw, pitch, pivot)
    yaw = pyaw.copy()
    if k_total and np.any(in_swing):
        ks = kc[in_swing]
        s = (t[in_swing] - steps["lift"][ks]) / (steps["land"][ks] - steps["lift"][ks])
        m = _minjerk(s)
        p1, p2 = steps["p1"][ks], steps["p2"][ks]
        a_off = _pivot_ankle(body, steps["fx"][ks], steps["fy"][ks], steps["fyaw"][ks], p1,
                             np.broadcast_to(body.ball_pivot, (len(ks), 3)))
        a_on = _pivot_ankle(body, steps["tx"][ks], steps["ty"][ks], steps["tyaw"][ks], -p2,
                            np.broadcast_to(body.heel_pivot, (len(ks), 3)))
        sw = a_off + (a_on - a_off) * m[:, None]
        sw[:, 2] += steps["lift_h"][ks] * 16.0 * (s * (1.0 - s)) ** 2
        ankle[in_swing] = sw
        yaw[in_swing] = steps["fyaw"][ks] + _wrap(steps["tyaw"][ks] - steps["fyaw"][ks]) * m
        pitch[in_swing] = p1 + (-p2 - p1) * m
    rot = _rot_z(yaw) @ _rot_y(pitch)
    return ankle, rot, in_swing


def _pivot_ankle(body: _Body, x, y, yaw, pitch, pivot):
    """Ankle of a foot whose flat footprint is (x, y, yaw), rotated by ``pitch`` about a ground ``pivot`` point."""
    flat = np.stack([x, y, np.full(np.shape(x), body.ankle_height)], axis=-1)
    rz = _rot_z(yaw)
    pivot_world = flat + _apply(rz, pivot)
    return pivot_world - _apply(rz @ _rot_y(pitch), pivot)


# ----------------------------------------------------------------------------------------------------------------
# The kinematic tree
# ----------------------------------------------------------------------------------------------------------------

_ALIASES = {"pelvis": "pelvis", "mid_hip": "pelvis", "hip": "pelvis", "body_center": "pelvis", "root": "pelvis",
            "head_top": "head"}


def _leg_ik(hip, ankle, thigh, shank, pole):
    """Two-link IK: knee ``[F, 3]`` and the reachable ankle ``[F, 3]`` (bone lengths exact)."""
    d_vec = ankle - hip
    d = np.linalg.norm(d_vec, axis=-1, keepdims=True)
    u = d_vec / np.maximum(d, 1e-9)
    d_c = np.clip(d, abs(thigh - shank) + 1e-3, (thigh + shank) * 0.9999)
    cos_a = np.clip((thigh ** 2 + d_c ** 2 - shank ** 2) / (2.0 * thigh * d_c), -1.0, 1.0)
    perp = pole - np.sum(pole * u, axis=-1, keepdims=True) * u
    perp /= np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), 1e-9)
    knee = hip + thigh * (cos_a * u + np.sqrt(1.0 - cos_a ** 2) * perp)
    return knee, hip + d_c * u


def _softmin(values: list[np.ndarray], tau: float) -> np.ndarray:
    stack = np.stack(values)
    low = stack.min(axis=0)
    return low - tau * np.log(np.sum(np.exp(-(stack - low) / tau), axis=0))


def _animate(seed: int, motion: str, num_frames: int, fps: float, face: float) -> dict[str, np.ndarray]:
    """All named points ``{name: [F, 3]}`` of one seeded person."""
    root_seq = np.random.SeedSequence([int(seed), _STREAM_MOTION])
    rng_body, rng_plan, rng_noise = (np.random.default_rng(s) for s in root_seq.spawn(3))
    body = _Body(rng_body)
    # Evaluate one extra second so that the smoothing filters have no edge inside the requested frames: a longer
    # sequence then starts with exactly the shorter one.
    padded = num_frames + int(math.ceil(fps))
    duration = padded / fps
    root = _Root(rng_plan, body, motion, duration, face)
    t = np.arange(padded) / fps
    init, steps = _plan_steps(body, root, duration + 1.0)

    xy, heading, speed = root.at(t)
    walk = np.clip((speed - 0.1) / 0.4, 0.0, 1.0)
    fwd = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    left = np.stack([-np.sin(heading), np.cos(heading)], axis=-1)

    feet = [_foot_track(body, init[s], steps[s], s, t) for s in (0, 1)]
    ankles = [feet[0][0], feet[1][0]]
    swing = np.stack([feet[0][2], feet[1][2]]).astype(np.float64)

    # Gait-coupled features, derived from where the feet actually are (zero when standing with feet side by side).
    ahead = np.sum((ankles[0][:, :2] - ankles[1][:, :2]) * fwd, axis=-1)  # left foot ahead of the right (m)
    support = gaussian_filter1d(1.0 - swing, sigma=max(0.1 * fps, 0.5), axis=1, mode="nearest")
    planted_y = [np.sum((a[:, :2] - xy) * left, axis=-1) for a in ankles]
    weight = support / np.maximum(support.sum(axis=0), 1e-6)
    sway = 0.35 * (weight[0] * planted_y[0] + weight[1] * planted_y[1])
    sway = gaussian_filter1d(sway, sigma=max(0.08 * fps, 0.5), mode="nearest")

    # Channels: segment contributions plus low-amplitude idle noise everywhere.
    arm = root.channel("arm", t, (2, 4)) + _REST_ARM
    trunk = root.channel("trunk", t, (3,))
    head = root.channel("head", t, (3,))
    pelvis_ch = root.channel("pelvis", t, (2,))
    for k, amp in enumerate((0.025, 0.02, 0.04)):
        trunk[:, k] += amp * _smooth_noise(rng_noise, t, 0.05, 0.3)
    for k, amp in enumerate((0.15, 0.08, 0.04)):
        head[:, k] += amp * _smooth_noise(rng_noise, t, 0.05, 0.4)
    for s in (0, 1):
        for k, amp in enumerate((0.05, 0.04, 0.08, 0.06)):
            arm[:, s, k] += amp * _smooth_noise(rng_noise, t, 0.05, 0.35)
    omega = np.gradient(heading, t)
    head[:, 0] += np.clip(0.35 * omega, -0.6, 0.6)  # look into turns
    trunk[:, 0] += (0.03 + 0.03 * speed) * walk  # slight forward lean when walking
    trunk[:, 2] += -0.06 * ahead  # pelvis follows the forward leg
    arm[:, 0, 0] += -0.55 * ahead * (0.4 + 0.6 * walk)  # arm swing opposite to the leg
    arm[:, 1, 0] += 0.55 * ahead * (0.4 + 0.6 * walk)
    arm[:, :, 3] += 0.25 * np.clip(arm[:, :, 0] - _REST_ARM[0], 0.0, None) * walk[:, None]
    # Keep the arms out of the torso and the joints in range.
    arm[:, :, 1] = np.maximum(arm[:, :, 1], 0.06 - 0.46 * np.clip((arm[:, :, 0] - 0.5) / 0.8, 0.0, 1.0))
    arm[:, :, 3] = np.clip(arm[:, :, 3], 0.02, 2.5)
    head[:, 0] = np.clip(head[:, 0], -1.2, 1.2)
    head[:, 1] = np.clip(head[:, 1], -0.6, 0.7)

    r_trunk = _rot_z(heading + trunk[:, 2]) @ _rot_y(trunk[:, 0]) @ _rot_x(trunk[:, 1])
    pelvis_xy = xy + fwd * (-pelvis_ch[:, 1:2]) + left * sway[:, None]
    hip_off = [_apply(r_trunk, body.trunk[n]) for n in ("l_hip", "r_hip")]
    # Pelvis height: as tall as the legs allow (soft minimum over both feet), minus the crouch drop.
    reach = body.leg * 0.997
    limits = [body.ankle_height + body.leg * 0.995 - pelvis_ch[:, 0] - 0.012 * walk]
    for s in (0, 1):
        d_xy = np.linalg.norm(pelvis_xy + hip_off[s][:, :2] - ankles[s][:, :2], axis=-1)
        limits.append(ankles[s][:, 2] + np.sqrt(np.maximum(reach ** 2 - d_xy ** 2, 1e-4)) - hip_off[s][:, 2])
    height = np.maximum(_softmin(limits, 0.006), limits[0] - 0.08 * body.leg)
    pelvis = np.concatenate([pelvis_xy, height[:, None]], axis=-1)

    pts: dict[str, np.ndarray] = {"pelvis": pelvis}
    for name, off in body.trunk.items():
        pts[name] = pelvis + _apply(r_trunk, off)
    # Legs and feet.
    for s, prefix in ((0, "l_"), (1, "r_")):
        sign = 1.0 - 2.0 * s
        ankle, foot_rot, _ = feet[s]
        foot_fwd = foot_rot[:, :, 0].copy()
        foot_fwd[:, 2] = 0.0
        crouch = np.clip(pelvis_ch[:, 0] / (0.2 * body.height), 0.0, 1.0)
        pole = foot_fwd + 0.25 * crouch[:, None] * sign * _apply(foot_rot, np.array([0.0, 1.0, 0.0]))
        knee, ankle_ok = _leg_ik(pts[prefix + "hip"], ankle, body.thigh, body.shank, pole)
        pts[prefix + "knee"] = knee
        pts[prefix + "ankle"] = ankle_ok
        for name, off in body.foot.items():
            pts[prefix + name] = ankle_ok + _apply(foot_rot, off * np.array([1.0, sign, 1.0]))
    # Head on the neck pivot.
    r_head = r_trunk @ _rot_z(head[:, 0]) @ _rot_y(head[:, 1]) @ _rot_x(head[:, 2])
    for name, off in body.head.items():
        pts[name] = pts["neck"] + _apply(r_head, off)
    # Arms.
    down = np.array([0.0, 0.0, -1.0])
    for s, prefix in ((0, "l_"), (1, "r_")):
        sign = 1.0 - 2.0 * s
        flex, abd, rot, elbow = (arm[:, s, k] for k in range(4))
        r_up = r_trunk @ _rot_y(-flex) @ _rot_x(sign * abd) @ _rot_z(-sign * rot)
        pts[prefix + "elbow"] = pts[prefix + "shoulder"] + _apply(r_up, down * body.upper_arm)
        r_fore = r_up @ _rot_y(-elbow)
        pts[prefix + "wrist"] = pts[prefix + "elbow"] + _apply(r_fore, down * body.forearm)
        pts[prefix + "hand"] = pts[prefix + "wrist"] + _apply(r_fore, down * body.hand)
    pts["mid_shoulder"] = 0.5 * (pts["l_shoulder"] + pts["r_shoulder"])
    for alias, target in _ALIASES.items():
        pts[alias] = pts[target]
    return {name: p[:num_frames] for name, p in pts.items()}


def motion_joint_names() -> tuple[str, ...]:
    """Every joint name :func:`generate_motion` can produce (a superset of the built-in skeletons' joints)."""
    base = ["pelvis", "spine", "thorax", "neck", "mid_shoulder", *_HEAD_POINTS]
    for prefix in ("l_", "r_"):
        base += [prefix + n for n in ("shoulder", "elbow", "wrist", "hand", "hip", "knee", "ankle", *_FOOT_POINTS)]
    return tuple(base + [a for a in _ALIASES if a not in base])


def _resolve_skeleton(skeleton: Skeleton | str) -> Skeleton:
    return get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton


def generate_motion(skeleton: Skeleton | str, num_frames: int, fps: float = 30.0, seed: int = 0,
                    motion: str = "mixed", face_heading: float = 0.0) -> np.ndarray:
    """Procedural, human-like motion of one seeded person, as the joints of ``skeleton``: ``[F, J, 3]`` metres.

    Args:
        skeleton: a :class:`Skeleton` (or a built-in name); its joints are taken by name from
            :func:`motion_joint_names` (``pelvis``/``mid_hip``/``hip``/``body_center``/``root`` are the mid-point of
            the hip joint centres, ``neck`` the base of the neck between the shoulders, ``thorax`` the upper chest,
            ``spine`` the mid-back, ``head``/``head_top`` the top of the head, ``*_hand`` the centre of the hand).
        num_frames: number of frames ``F``.
        fps: frame rate; the motion is a function of time, so other rates sample the same movement.
        seed: person (height 1.55-1.95 m, proportions) and motion; same seed, same output. A longer sequence
            starts with the shorter one.
        motion: ``walk`` (walking a curved, turning path around the origin), ``reach`` (standing, reaching and
            waving), ``crouch`` (squats and stoops), ``turn`` (turning in place with small steps) or ``mixed``
            (all of them in sequence, blended smoothly).
        face_heading: heading (rad, 0 = facing +x, where :func:`make_rig` puts the robot) that standing
            activities roughly face.

    The person stays within about 2 m of the origin (walking orbits at 0.8-1.5 m), feet on ``z = 0``, bone lengths
    constant over time (the trunk is rigid; bending happens at the hips), speeds human (wrists at most ~3 m/s).

    Raises:
        ValueError: for an unknown motion, or for a skeleton with joint names this generator cannot produce.
    """
    skeleton = _resolve_skeleton(skeleton)
    if motion not in MOTION_KINDS:
        raise ValueError(f"unknown motion {motion!r}; choose one of {MOTION_KINDS}")
    if num_frames < 1 or fps <= 0:
        raise ValueError("generate_motion: num_frames must be >= 1 and fps > 0")
    available = set(motion_joint_names())
    unknown = [n for n in skeleton.joint_names if n not in available]
    if unknown:
        raise ValueError(f"skeleton {skeleton.name!r}: generate_motion cannot produce joints {unknown}; "
                         f"it knows {sorted(available)}")
    pts = _animate(seed, motion, int(num_frames), float(fps), float(face_heading))
    return np.stack([pts[n] for n in skeleton.joint_names], axis=1)
