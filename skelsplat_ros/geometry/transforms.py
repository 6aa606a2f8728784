"""A transform tree with a time-sorted buffer per edge: what tf2's ``BufferCore`` does, in numpy, without ROS.

- Each edge ``parent -> child`` is either static (valid at every time) or a time-sorted series of samples.
- A lookup at a stamp interpolates every dynamic edge on the path (linear in translation, slerp in rotation) and
  chains the edges through the tree via the nearest common ancestor of the two frames.
- No extrapolation: a stamp before the oldest or after the newest sample of a dynamic edge on the path fails with
  :class:`TransformError`, whose ``reason`` says which (``future``, ``past``, ``unknown_frame``, ``no_chain``). A
  caller that must not use a wrong pose can thus tell "not yet received" (wait) from "too old" (give up).
- Samples older than ``cache_time`` behind the newest sample of their edge are forgotten (tf2's 10 s default).

Stamps are integer nanoseconds (ROS stamps are exact; floats would lose the nanoseconds after 2**53 ns).
Conventions: a :class:`Transform` ``target_T_source`` maps points given in ``source`` into ``target``:
``p_target = R p_source + t``; quaternions are ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion``. A TF message
``header.frame_id = parent, child_frame_id = child`` carries ``parent_T_child``.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_CACHE_NS",
    "Transform",
    "TransformBuffer",
    "TransformError",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "slerp",
]

DEFAULT_CACHE_NS = 10_000_000_000
"""How long a dynamic edge keeps its samples behind its newest one (10 s, as tf2)."""


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[4]`` (x, y, z, w; normalised here) to rotation matrix ``[3, 3]``."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` to unit quaternion ``[4]`` (x, y, z, w), w >= 0."""
    m = np.asarray(rotation, dtype=np.float64)
    # Largest of 4w^2, 4x^2, 4y^2, 4z^2 first: dividing by it is well conditioned at every angle.
    candidates = np.array([1 + m[0, 0] + m[1, 1] + m[2, 2], 1 + m[0, 0] - m[1, 1] - m[2, 2],
                           1 - m[0, 0] + m[1, 1] - m[2, 2], 1 - m[0, 0] - m[1, 1] + m[2, 2]])
    k = int(np.argmax(candidates))
    s = 2.0 * np.sqrt(max(candidates[k], 1e-300))
    if k == 0:
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif k == 1:
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif k == 2:
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


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


@dataclass
class _Edge:
    parent: str
    static: Transform | None = None
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quaternions: list[np.ndarray] = field(default_factory=list)

    def at(self, stamp: int, child: str) -> Transform:
        if self.static is not None:
            return self.static
        stamps = self.stamps
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
        cache_ns: how long (ns) a dynamic edge keeps samples behind its newest one.
    """

    def __init__(self, cache_ns: int = DEFAULT_CACHE_NS) -> None:
        self.cache_ns = int(cache_ns)
        self._edges: dict[str, _Edge] = {}  # by child frame: a frame has one parent, as in tf2
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def set_transform(self, parent: str, child: str, stamp_ns: int, translation: np.ndarray,
                      quaternion: np.ndarray, static: bool = False) -> None:
        """Add ``parent_T_child`` at ``stamp_ns`` (ignored for a static edge).

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
                edge = self._edges[child] = _Edge(parent)
            if static:
                edge.static = Transform.from_quaternion(translation, quaternion)
            else:
                stamp = int(stamp_ns)
                i = bisect.bisect_left(edge.stamps, stamp)
                if i < len(edge.stamps) and edge.stamps[i] == stamp:  # a repeated stamp replaces the sample
                    edge.translations[i], edge.quaternions[i] = translation, quaternion
                else:
                    edge.stamps.insert(i, stamp)
                    edge.translations.insert(i, translation)
                    edge.quaternions.insert(i, quaternion)
                cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
                if cut:
                    del edge.stamps[:cut], edge.translations[:cut], edge.quaternions[:cut]
            self._changed.notify_all()

    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

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
        known = set(self._edges) | {e.parent for e in self._edges.values()}
        for frame in (target, source):
            if frame not in known:
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
