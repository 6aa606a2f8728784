"""A transform tree with a time-sorted buffer per edge: what tf2's ``BufferCore`` does, in numpy, without ROS.

- Each edge ``parent -> child`` is either static (valid at every time) or a time-sorted series of samples.
- A lookup at a stamp interpolates every dynamic edge on the path (linear in translation, slerp in rotation) and
  chains the edges through the tree via the nearest common ancestor of the two frames.
- No extrapolation: a stamp before the oldest or after the newest sample of a dynamic edge on the path fails with
  :class:`TransformError`, whose ``reason`` says which (``future``, ``past``, ``unknown_frame``, ``no_chain``). A
  caller that must not use a wrong pose can thus tell "not yet received" (wait) from "too old" (give up).
- Samples older than ``cache_time`` behind the newest sample of their edge are forgotten (tf2's 10 s default), and
  so are leaf frames silent for longer than that behind the newest sample of the buffer (a frame per joint and
  tracked person would otherwise pile up for ever). A lookup costs the same however many frames were received.
- Time that jumps (a bag played in a loop, a simulator reset, a wrong clock) is recognised from the stamps alone:
  a sample more than ``jump_time`` before the newest of its edge, or more than ``cache_time`` after it, is held
  until a second sample agrees with it (within ``cache_time``). An agreeing pair back in time is a backwards jump:
  every edge forgets what it holds from that time on (tf2's listener clears its buffer when its clock goes back;
  :meth:`TransformBuffer.clear` is that). A pair forward moves the edge on. One sample that nothing confirms (a
  late message, a stamp an hour ahead) changes nothing.

Stamps are integer nanoseconds (ROS stamps are exact; floats would lose the nanoseconds after 2**53 ns).
Conventions: a :class:`Transform` ``target_T_source`` maps points given in ``source`` into ``target``:
``p_target = R p_source + t``; quaternions are ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion``. A TF message
``header.frame_id = parent, child_frame_id = child`` carries ``parent_T_child``.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_CACHE_NS",
    "DEFAULT_JUMP_NS",
    "Transform",
    "TransformBuffer",
    "TransformError",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "slerp",
]

DEFAULT_CACHE_NS = 10_000_000_000
"""How long a dynamic edge keeps its samples behind its newest one (10 s, as tf2)."""
DEFAULT_JUMP_NS = 1_000_000_000
"""A sample this much older than the newest of its edge may mean that time jumped back (as the node's
``clock_jump_threshold``); smaller steps back are out-of-order arrivals, sorted in."""


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[4]`` (x, y, z, w; normalised here) to rotation matrix ``[3, 3]``."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` to unit quaternions ``[..., 4]`` (x, y, z, w), w >= 0."""
    m = np.asarray(rotation, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Largest of 4w^2, 4x^2, 4y^2, 4z^2 first: dividing by it is well conditioned at every angle.
    candidates = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    k = np.argmax(candidates, axis=-1)
    s = 2.0 * np.sqrt(np.maximum(np.take_along_axis(candidates, k[..., None], -1)[..., 0], 1e-300))
    a, b, c = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    d, e, f = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    options = np.stack([
        np.stack([a, b, c, s * s / 4], -1),
        np.stack([s * s / 4, d, e, a], -1),
        np.stack([d, s * s / 4, f, b], -1),
        np.stack([e, f, s * s / 4, c], -1),
    ], -2) / s[..., None, None]  # each row: (x, y, z, w) by the formula of candidate k
    q = np.take_along_axis(options, k[..., None, None], -2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:] < 0, -q, q)


def slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions ``[4]``, along the shorter arc; ``fraction`` in [0, 1]."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    dot = float(q0 @ q1)
    if dot < 0.0:  # q and -q are the same rotation: take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: the linear blend is exact to float precision and avoids sin(0) / 0
        q = q0 + fraction * (q1 - q0)
        return q / np.linalg.norm(q)
    angle = np.arccos(min(dot, 1.0))
    return (np.sin((1 - fraction) * angle) * q0 + np.sin(fraction * angle) * q1) / np.sin(angle)


@dataclass(frozen=True)
class Transform:
    """A rigid transform ``target_T_source``: ``p_target = rotation @ p_source + translation``.

    Attributes:
        rotation: ``[3, 3]``.
        translation: ``[3]``.
    """

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @classmethod
    def from_quaternion(cls, translation: np.ndarray, quaternion: np.ndarray) -> "Transform":
        """From ``translation [3]`` (metres) and ``quaternion [4]`` ``(x, y, z, w)`` (normalised here)."""
        return cls(quaternion_to_matrix(quaternion), np.asarray(translation, dtype=np.float64).reshape(3))

    @property
    def quaternion(self) -> np.ndarray:
        """Rotation as ``(x, y, z, w)`` ``[4]``."""
        return matrix_to_quaternion(self.rotation)

    def __matmul__(self, other: "Transform") -> "Transform":
        """``a_T_b @ b_T_c = a_T_c``."""
        return Transform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def inverse(self) -> "Transform":
        return Transform(self.rotation.T, -self.rotation.T @ self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points ``[..., 3]`` from source to target coordinates ``[..., 3]``."""
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation


class TransformError(LookupError):
    """A lookup that cannot be answered; ``reason`` is one of :attr:`REASONS`, the message says why in words."""

    REASONS = ("unknown_frame", "no_chain", "future", "past")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_Sample = tuple[int, np.ndarray, np.ndarray]  # stamp ns, translation [3], unit quaternion [4]


@dataclass
class _Edge:
    parent: str
    static: Transform | None = None
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quaternions: list[np.ndarray] = field(default_factory=list)

    def insert(self, sample: _Sample, cache_ns: int) -> None:
        """Add a sample in stamp order (a repeated stamp replaces the sample); forget what is older than the cache."""
        stamp, translation, quaternion = sample
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.translations[i], self.quaternions[i] = translation, quaternion
        else:
            self.stamps.insert(i, stamp)
            self.translations.insert(i, translation)
            self.quaternions.insert(i, quaternion)
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)
        if cut:
            del self.stamps[:cut], self.translations[:cut], self.quaternions[:cut]

    def drop_from(self, stamp: int) -> None:
        """Forget the samples stamped at or after ``stamp``."""
        i = bisect.bisect_left(self.stamps, stamp)
        del self.stamps[i:], self.translations[i:], self.quaternions[i:]

    def at(self, stamp: int, child: str) -> Transform:
        if self.static is not None:
            return self.static
        stamps = self.stamps
        if not stamps:  # emptied by a jump back in time: the new timeline's transforms have not come yet
            raise TransformError("future", f"{self.parent} -> {child}: no transform received since time jumped back")
        if stamp > stamps[-1]:
            raise TransformError(
                "future", f"{self.parent} -> {child}: stamp {stamp * 1e-9:.3f} s is {(stamp - stamps[-1]) * 1e-6:.1f} "
                f"ms after the newest transform (no extrapolation)")
        if stamp < stamps[0]:
            raise TransformError(
                "past", f"{self.parent} -> {child}: stamp {stamp * 1e-9:.3f} s is {(stamps[0] - stamp) * 1e-6:.1f} "
                f"ms before the oldest buffered transform (cache holds {(stamps[-1] - stamps[0]) * 1e-9:.1f} s)")
        i = bisect.bisect_left(stamps, stamp)
        if stamps[i] == stamp:
            return Transform.from_quaternion(self.translations[i], self.quaternions[i])
        fraction = (stamp - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        translation = (1 - fraction) * self.translations[i - 1] + fraction * self.translations[i]
        return Transform.from_quaternion(translation, slerp(self.quaternions[i - 1], self.quaternions[i], fraction))


class TransformBuffer:
    """The transform tree, fed by :meth:`set_transform` (thread-safe: a ROS callback feeds it, a worker reads it).

    Args:
        cache_ns: how long (ns) a dynamic edge keeps samples behind its newest one, and how long a leaf frame may
            stay silent behind the newest sample of the buffer before it is forgotten.
        jump_ns: a sample more than this before the newest of its edge may mean that time jumped back (module
            docstring).

    Attributes:
        jumps: backwards jumps of time recognised (each forgot the old timeline's samples).
    """

    def __init__(self, cache_ns: int = DEFAULT_CACHE_NS, jump_ns: int = DEFAULT_JUMP_NS) -> None:
        self.cache_ns = int(cache_ns)
        self.jump_ns = int(jump_ns)
        self.jumps = 0
        self._edges: dict[str, _Edge] = {}  # by child frame: a frame has one parent, as in tf2
        self._children: collections.Counter[str] = collections.Counter()  # parent frame -> edges under it
        # By child: a sample far from its edge's newest, awaiting a second that agrees, and whether it is behind.
        self._held: dict[str, tuple[_Sample, bool]] = {}
        self._present: int | None = None  # newest stamp taken in the current timeline
        self._swept: int | None = None  # ``_present`` when silent frames were last forgotten
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def set_transform(self, parent: str, child: str, stamp_ns: int, translation: np.ndarray,
                      quaternion: np.ndarray, static: bool = False) -> None:
        """Add ``parent_T_child`` at ``stamp_ns`` (ignored for a static edge): ``translation [3]`` (metres),
        ``quaternion [4]`` ``(x, y, z, w)`` (normalised here).

        A child that changes parent starts a new edge (its old samples would chain through the wrong frame).
        A non-finite or zero quaternion, an empty or equal frame name raise ``ValueError``.
        """
        translation = np.asarray(translation, dtype=np.float64).reshape(3)
        quaternion = np.asarray(quaternion, dtype=np.float64).reshape(4)
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} -> {child!r}: frames must be two different non-empty names")
        norm = float(np.linalg.norm(quaternion))
        if not (np.all(np.isfinite(translation)) and np.isfinite(norm) and norm > 1e-6):
            raise ValueError(f"transform {parent} -> {child}: non-finite translation or invalid quaternion")
        quaternion = quaternion / norm
        with self._changed:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or (edge.static is not None) != static:
                edge = self._new_edge(child, parent)
            if static:
                edge.static = Transform.from_quaternion(translation, quaternion)
            else:
                self._add_sample(child, edge, (int(stamp_ns), translation, quaternion))
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget every dynamic sample, keeping the static edges (tf2's ``clear``: what a listener does when its
        clock jumps back). Lookups through a dynamic edge then fail as ``future`` until it is received again."""
        with self._changed:
            for edge in self._edges.values():
                edge.drop_from(-(2**63))
            self._held.clear()
            self._present = self._swept = None
            self._changed.notify_all()

    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | set(self._children)

    # --- samples and time ----------------------------------------------------------------------------------------

    def _new_edge(self, child: str, parent: str) -> _Edge:
        if child in self._edges:
            self._remove_edge(child)
        edge = self._edges[child] = _Edge(parent)
        self._children[parent] += 1
        return edge

    def _remove_edge(self, child: str) -> None:
        parent = self._edges.pop(child).parent
        self._held.pop(child, None)
        self._children[parent] -= 1
        if not self._children[parent]:
            del self._children[parent]

    def _add_sample(self, child: str, edge: _Edge, sample: _Sample) -> None:
        stamp = sample[0]
        newest = edge.stamps[-1] if edge.stamps else None
        if newest is not None and stamp > newest + self.cache_ns:
            self._forward(child, edge, sample)
        elif newest is not None and stamp < newest - self.jump_ns:
            edge.insert(sample, self.cache_ns)  # a late sample is sorted in (the cache may forget it at once) ...
            self._backward(child, sample)  # ... but it may also be the first of a new timeline
        else:
            self._held.pop(child, None)  # a sample in the edge's window: what was held for it was an outlier
            edge.insert(sample, self.cache_ns)
            self._advance(stamp)

    def _forward(self, child: str, edge: _Edge, sample: _Sample) -> None:
        """A sample more than the cache time after its edge's newest: taken once a second one of the same edge agrees
        (one wrong stamp must not make the cache forget the present)."""
        previous, backwards = self._held.get(child, (None, True))
        if previous is None or backwards or abs(previous[0] - sample[0]) > self.cache_ns:
            self._held[child] = (sample, False)
            return
        del self._held[child]
        edge.insert(previous, self.cache_ns)
        edge.insert(sample, self.cache_ns)
        self._advance(edge.stamps[-1])

    def _backward(self, child: str, sample: _Sample) -> None:
        """A sample far behind its edge's newest: a jump back once a second one (of any edge) agrees with it."""
        stamp = sample[0]
        agreeing = {name: held for name, (held, backwards) in self._held.items()
                    if backwards and abs(held[0] - stamp) <= self.cache_ns}
        if not agreeing:
            self._held[child] = (sample, True)
            return
        agreeing[child] = sample
        start = min(held[0] for held in agreeing.values())
        for edge in self._edges.values():
            if edge.static is None and edge.stamps and edge.stamps[-1] > start + self.jump_ns:
                edge.drop_from(start)  # the old timeline, from the new time on
        for name, held in agreeing.items():
            self._held.pop(name, None)
            self._edges[name].insert(held, self.cache_ns)
        self.jumps += 1
        self._present = self._swept = None
        self._advance(max(held[0] for held in agreeing.values()))

    def _advance(self, stamp: int) -> None:
        """Note the newest stamp taken; every quarter of the cache time (of stamps), forget the leaf frames silent
        for longer than the cache time and the held samples nothing confirmed (amortised: one pass over the edges
        per quarter cache time)."""
        if self._present is None or stamp > self._present:
            self._present = stamp
        if self._swept is None:
            self._swept = self._present
        if self._present - self._swept < self.cache_ns // 4:
            return
        self._swept = self._present
        horizon = self._present - self.cache_ns
        self._held.clear()  # what nothing confirmed for a quarter of the cache time was an outlier
        silent = [child for child, edge in self._edges.items()
                  if edge.static is None and (not edge.stamps or edge.stamps[-1] < horizon)
                  and child not in self._children]
        for child in silent:
            self._remove_edge(child)

    # --- lookups -------------------------------------------------------------------------------------------------

    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while path[-1] in self._edges:
            path.append(self._edges[path[-1]].parent)
            if len(path) > len(self._edges) + 1:  # a loop can only come from inconsistent publishers
                raise TransformError("no_chain", f"the transform tree has a loop through {frame!r}")
        return path

    def lookup(self, target: str, source: str, stamp_ns: int) -> Transform:
        """``target_T_source`` at ``stamp_ns``; raises :class:`TransformError` when it cannot be known exactly."""
        with self._lock:
            return self._lookup(target, source, int(stamp_ns))

    def _lookup(self, target: str, source: str, stamp: int) -> Transform:
        if target == source:
            return Transform()
        for frame in (target, source):
            if frame not in self._edges and frame not in self._children:
                raise TransformError("unknown_frame", f"frame {frame!r} has not been received on /tf or /tf_static")
        up_source, up_target = self._path_to_root(source), self._path_to_root(target)
        common = next((f for f in up_source if f in set(up_target)), None)
        if common is None:
            raise TransformError(
                "no_chain", f"{target!r} and {source!r} are not connected (roots {up_target[-1]!r} and "
                f"{up_source[-1]!r})")
        # common_T_source = parent_T_child products walking down from the common ancestor.
        common_T_source = Transform()
        for child in up_source[: up_source.index(common)]:
            common_T_source = self._edges[child].at(stamp, child) @ common_T_source
        common_T_target = Transform()
        for child in up_target[: up_target.index(common)]:
            common_T_target = self._edges[child].at(stamp, child) @ common_T_target
        return common_T_target.inverse() @ common_T_source

    def lookup_latest(self, target: str, source: str) -> tuple[Transform, int | None]:
        """``target_T_source`` at the latest time every edge between them knows (tf2's lookup at time 0), and that
        stamp (``None`` when every edge on the way is static); raises :class:`TransformError` as :meth:`lookup`."""
        with self._lock:
            for frame in (target, source):
                if frame not in self._edges and frame not in self._children:
                    raise TransformError("unknown_frame", f"frame {frame!r} has not been received on /tf or /tf_static")
            up_source, up_target = self._path_to_root(source), self._path_to_root(target)
            common = next((f for f in up_source if f in set(up_target)), None)
            path = up_source[: up_source.index(common)] + up_target[: up_target.index(common)] if common else []
            newest = [self._edges[child].stamps[-1] for child in path
                      if self._edges[child].static is None and self._edges[child].stamps]
            stamp = min(newest) if newest else None
            return self._lookup(target, source, 0 if stamp is None else stamp), stamp

    def wait_for(self, target: str, source: str, stamp_ns: int, timeout: float) -> Transform:
        """:meth:`lookup`, waiting up to ``timeout`` seconds for transforms that have not arrived yet (a ``past``
        failure, which no later message can fix, is raised at once)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._changed:
            while True:
                try:
                    return self._lookup(target, source, int(stamp_ns))
                except TransformError as error:
                    left = deadline - time.monotonic()
                    if error.reason == "past" or left <= 0:
                        raise
                    self._changed.wait(left)
