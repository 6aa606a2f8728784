"""Cheap, vectorised checks of incoming 2D keypoints, run before any expensive work.

A detector may send anything on a keypoint topic. Every message is checked here first, in order of cost: its stamp
(against the receiver's clock), its skeleton name and frame id (strings), then all of its people at once as
``[P, J]`` arrays: array lengths, confidences in [0, 1], finite pixels and pixels inside the calibrated image (with
a margin) for every joint the detector claims (confidence > 0). A joint with confidence 0 is missing: its x and y
may hold anything.

A person failing any check is dropped (its reason counted); a message whose people all fail is rejected with the
reason of its first person. A message with more than ``max_people`` valid people keeps the most confident ones (the
cap is counted). A message with nobody in it is a valid, empty view.

Pure numpy, no ROS import: the ROS node calls :meth:`KeypointValidator.check` for every message, and
:func:`outside_image` masks far-off keypoints of recorded files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MESSAGE_REJECTIONS",
    "PERSON_REJECTIONS",
    "ValidationConfig",
    "ViewCheck",
    "KeypointValidator",
    "outside_image",
    "person_rejections",
]

MESSAGE_REJECTIONS = (
    "stale_stamp",  # older than max_stamp_age against the receiver's clock (stamp 0 included)
    "future_stamp",  # ahead of the receiver's clock by more than max_future
    "wrong_skeleton",  # skeleton name missing or not the one fused
    "bad_frame_id",  # empty, too long, or characters a TF frame id cannot hold
)
PERSON_REJECTIONS = (
    "bad_shape",  # x, y and confidence of different lengths
    "wrong_joint_count",  # arrays not one entry per joint of the skeleton
    "bad_confidence",  # a confidence outside [0, 1] or not finite
    "nonfinite",  # a claimed joint (confidence > 0) with a NaN or infinite pixel
    "outside_image",  # a claimed joint beyond the calibrated image plus its margin
)

# A TF frame id: no leading slash (tf2 rejects it), no whitespace or control characters, bounded length.
_FRAME_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./\-]{0,255}")
# float32 rounding of a detector's 1.0.
_CONFIDENCE_SLACK = 1e-6


@dataclass(frozen=True)
class ValidationConfig:
    """What a valid keypoint message looks like.

    Attributes:
        skeleton: the skeleton name every message must carry.
        num_joints: joints per person (the skeleton's).
        image_sizes: ``[V, 2]`` (width, height) px of each view's calibrated image, or None to skip the image check.
        image_margin: a claimed joint may lie this fraction of the image width/height outside the image (detectors
            extrapolate limbs just out of view; 1e38 or 1e6 px is garbage).
        max_people: most people kept of one message (the most confident); more are capped (counted).
        max_stamp_age: seconds a stamp may lie behind the receiver's clock (0 = no check).
        max_future: seconds a stamp may lie ahead of the receiver's clock (0 = no check).
    """

    skeleton: str
    num_joints: int
    image_sizes: np.ndarray | None = None
    image_margin: float = 0.25
    max_people: int = 20
    max_stamp_age: float = 2.0
    max_future: float = 0.5

    def __post_init__(self) -> None:
        if self.num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {self.num_joints}")
        if self.max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {self.max_people}")
        if not np.isfinite(self.image_margin) or self.image_margin < 0:
            raise ValueError(f"image_margin must be >= 0, got {self.image_margin}")
        if self.image_sizes is not None:
            sizes = np.asarray(self.image_sizes, dtype=np.float64)
            if sizes.ndim != 2 or sizes.shape[1] != 2 or not np.all(sizes > 0):
                raise ValueError(f"image_sizes must be positive [V, 2] (width, height), got {sizes.tolist()}")
            object.__setattr__(self, "image_sizes", sizes)


@dataclass
class ViewCheck:
    """The verdict on one message.

    Attributes:
        rejected: why the whole message is unusable (a :data:`MESSAGE_REJECTIONS` or :data:`PERSON_REJECTIONS`
            name), else None.
        keep: indices of the people to use, most confident first (empty for a view of nobody).
        person_rejections: count by reason of the people dropped.
        capped: valid people beyond ``max_people`` (the least confident), dropped.
        quality: ``(share of people valid, mean confidence of the best person)``, ``(0, 0)`` for nobody: when one
            camera sends two messages for one stamp, the higher one is kept.
    """

    rejected: str | None = None
    keep: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    person_rejections: dict[str, int] = field(default_factory=dict)
    capped: int = 0
    quality: tuple[float, float] = (0.0, 0.0)


def outside_image(xy: np.ndarray, sizes: np.ndarray, margin: float) -> np.ndarray:
    """Boolean ``[..., J]``: pixel ``xy [..., J, 2]`` beyond the image ``sizes [..., 2]`` (broadcast against
    ``xy[..., 0, :]``) by more than ``margin`` times its width/height. NaN is not outside (it is missing)."""
    sizes = np.asarray(sizes, dtype=np.float64)[..., None, :]
    return np.any((xy < -margin * sizes) | (xy > (1.0 + margin) * sizes), axis=-1)


def person_rejections(people: np.ndarray, size: np.ndarray | None, margin: float) -> np.ndarray:
    """Index into :data:`PERSON_REJECTIONS` of the first value check each person fails, -1 when it passes.

    ``people``: ``[P, 3, J]`` (x, y, confidence); ``size``: (width, height) of the image or None. A dozen numpy
    operations whatever ``P`` (comparisons with NaN are False, so NaN fails every range check).
    """
    xy, conf = people[:, :2], people[:, 2]
    conf_ok = (conf >= 0.0) & (conf <= 1.0 + _CONFIDENCE_SLACK)
    claimed = conf_ok & (conf > 0.0)
    usable = np.isfinite(xy).all(axis=1)  # [P, J]
    if size is not None:
        usable &= ~outside_image(np.swapaxes(xy, 1, 2), size, margin)
    bad_xy = (claimed & ~usable).any(axis=1)
    reasons = np.full(people.shape[0], -1, dtype=np.int64)
    if bad_xy.any():  # rare: tell NaN/inf from merely far off, on the failing people only
        failing = np.flatnonzero(bad_xy)
        nonfinite = (claimed[failing] & ~np.isfinite(xy[failing]).all(axis=1)).any(axis=1)
        reasons[failing] = np.where(nonfinite, PERSON_REJECTIONS.index("nonfinite"),
                                    PERSON_REJECTIONS.index("outside_image"))
    reasons[~conf_ok.all(axis=1)] = PERSON_REJECTIONS.index("bad_confidence")
    return reasons


class KeypointValidator:
    """Checks keypoint messages of the views of one rig (see the module docstring)."""

    def __init__(self, config: ValidationConfig) -> None:
        self.config = config
        # (width, height) by view; a view whose size is not known yet (e.g. before its CameraInfo) is not checked.
        sizes = config.image_sizes if config.image_sizes is not None else np.empty((0, 2))
        self._sizes: dict[int, np.ndarray] = {view: size for view, size in enumerate(sizes)}

    def set_image_size(self, view: int, size: tuple[float, float]) -> None:
        """The calibrated image size (width, height) px of view ``view``, from now on (e.g. from a CameraInfo)."""
        size_array = np.asarray(size, dtype=np.float64)
        if size_array.shape != (2,) or not np.all(size_array > 0):
            raise ValueError(f"image size must be a positive (width, height), got {size!r}")
        self._sizes[view] = size_array

    def check_header(self, stamp_ns: int, clock_ns: int, frame_id: str, skeleton: str) -> str | None:
        """The :data:`MESSAGE_REJECTIONS` reason of a message header, or None. ``clock_ns`` 0 (a simulated clock
        that has not started) skips the stamp checks."""
        config = self.config
        if clock_ns > 0:
            age = (clock_ns - stamp_ns) * 1e-9
            if config.max_stamp_age > 0 and age > config.max_stamp_age:
                return "stale_stamp"
            if config.max_future > 0 and -age > config.max_future:
                return "future_stamp"
        if skeleton != config.skeleton:
            return "wrong_skeleton"
        if not _FRAME_ID.fullmatch(frame_id):
            return "bad_frame_id"
        return None

    def check_people(self, people: Sequence[tuple[Sequence[float], Sequence[float], Sequence[float]]] | np.ndarray,
                     view: int | None = None) -> ViewCheck:
        """Check ``people`` seen by view ``view`` (its index in ``image_sizes``; None skips the image check).

        ``people``: ``(x, y, confidence)`` per person (any array-likes, of any lengths), or one ``[P, 3, L]`` array
        when every array has the same length ``L`` (cheapest: no per-person work at all).
        """
        config = self.config
        count = len(people)
        if count == 0:  # nobody seen: valid, but any message with a valid person is better
            return ViewCheck(quality=(0.0, 0.0))
        reasons = np.full(count, -1, dtype=np.int64)
        if isinstance(people, np.ndarray):
            if people.shape[2] != config.num_joints:
                reasons[:] = PERSON_REJECTIONS.index("wrong_joint_count")
            shaped = np.flatnonzero(reasons < 0)
            arrays = people
        else:
            lengths = np.array([(len(x), len(y), len(c)) for x, y, c in people], dtype=np.int64).reshape(count, 3)
            same = (lengths[:, 0] == lengths[:, 1]) & (lengths[:, 1] == lengths[:, 2])
            reasons[~same] = PERSON_REJECTIONS.index("bad_shape")
            reasons[same & (lengths[:, 0] != config.num_joints)] = PERSON_REJECTIONS.index("wrong_joint_count")
            shaped = np.flatnonzero(reasons < 0)
            arrays = np.array([people[i] for i in shaped], dtype=np.float64).reshape(shaped.size, 3, config.num_joints)
        mean_confidence = np.zeros(count)
        if shaped.size:
            size = self._sizes.get(view) if view is not None else None
            reasons[shaped] = person_rejections(arrays, size, config.image_margin)
            mean_confidence[shaped] = arrays[:, 2].sum(axis=1) / config.num_joints
        valid = np.flatnonzero(reasons < 0)
        rejections = {}
        if valid.size < count:
            counted = np.bincount(reasons[reasons >= 0], minlength=len(PERSON_REJECTIONS))
            rejections = {PERSON_REJECTIONS[k]: int(n) for k, n in enumerate(counted) if n}
        if valid.size == 0:
            return ViewCheck(rejected=PERSON_REJECTIONS[int(reasons[0])], person_rejections=rejections)
        # Most confident first (stable: equally confident people keep the message's order).
        ranked = valid[np.argsort(-mean_confidence[valid], kind="stable")] if valid.size > 1 else valid
        keep = ranked[: config.max_people]
        quality = (valid.size / count, float(mean_confidence[keep[0]]))
        return ViewCheck(keep=keep, person_rejections=rejections, capped=int(ranked.size - keep.size), quality=quality)
