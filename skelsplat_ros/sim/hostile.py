"""A misbehaving 2D detector: malformed keypoint messages, seeded, for fuzz tests and the reliability benchmark.

Each malformed message breaks one rule of ``Keypoints2DArray`` (see :data:`MALFORMATIONS`) and carries 0 to
``max_people`` people (at least one when the rule broken is a person's). A broken person rule is broken by every
person of the message; a broken header rule comes with people that would otherwise pass. Messages whose rule is not
the stamp carry the stamp of the valid message they come with, the hardest case for a receiver that must keep the
valid one.

Pure numpy: :class:`HostileMessage` holds plain fields that the ROS side turns into messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MALFORMATIONS", "PERSON_MALFORMATIONS", "HostileMessage", "HostileDetector"]

PERSON_MALFORMATIONS = (
    "wrong_lengths",  # x, y and confidence of other lengths than the skeleton's, or of different lengths
    "nonfinite",  # NaN or infinite pixels on joints claimed with confidence > 0
    "huge",  # pixels like 1e38 or -1e6 on claimed joints
    "bad_confidence",  # confidences below 0, above 1, or NaN
)
MALFORMATIONS = PERSON_MALFORMATIONS + (
    "unknown_skeleton",
    "empty_skeleton",
    "odd_frame_id",
    "stamp_zero",
    "stamp_past",  # 10 s to 12 days before the valid stamp
    "stamp_future",  # 10 s to 12 days after it
)

_UNKNOWN_SKELETONS = ("coco17", "body25", "h36m17x", "H36M17", "h36m17 ", "\u00e9t\u00e9", "x" * 200)
_ODD_FRAME_IDS = ("", "/cam0_optical", "cam 0", "cam0\n", "\x00", "k\u00e4mera", "a" * 300, "..", "-")
_SECOND_NS = 1_000_000_000


@dataclass
class HostileMessage:
    """One malformed message: its broken rule and the fields of a ``Keypoints2DArray``.

    Attributes:
        malformation: the rule broken (one of :data:`MALFORMATIONS`).
        stamp_offset_ns: its stamp minus the stamp of the valid message it comes with; None for a stamp of 0.
        frame_id, skeleton: header fields.
        people: ``(x, y, confidence)`` float32 arrays per person.
    """

    malformation: str
    stamp_offset_ns: int | None
    frame_id: str
    skeleton: str
    people: list[tuple[np.ndarray, np.ndarray, np.ndarray]]

    def stamp_ns(self, valid_stamp_ns: int) -> int:
        """Its stamp, coming with a valid message stamped ``valid_stamp_ns`` (never negative)."""
        return 0 if self.stamp_offset_ns is None else max(0, valid_stamp_ns + self.stamp_offset_ns)


class HostileDetector:
    """Makes malformed messages for the views of a rig.

    Args:
        image_sizes: ``[V, 2]`` (width, height) px of each view.
        num_joints: joints of the skeleton the receiver expects.
        skeleton: its name.
        seed: seed of everything random.
        max_people: most people in one message.
    """

    def __init__(self, image_sizes: np.ndarray, num_joints: int, skeleton: str, seed: int = 0,
                 max_people: int = 50) -> None:
        self.image_sizes = np.asarray(image_sizes, dtype=np.float64)
        self.num_joints = int(num_joints)
        self.skeleton = skeleton
        self.max_people = int(max_people)
        self.rng = np.random.default_rng(seed)

    def messages(self, view: int, frame_id: str, count: int) -> list[HostileMessage]:
        """``count`` malformed messages of view ``view`` (valid frame id ``frame_id``), malformations drawn evenly."""
        return [self.message(view, frame_id, str(self.rng.choice(MALFORMATIONS))) for _ in range(count)]

    def message(self, view: int, frame_id: str, malformation: str) -> HostileMessage:
        """One message of view ``view`` breaking ``malformation``."""
        rng = self.rng
        low = 1 if malformation in PERSON_MALFORMATIONS else 0
        people = self._plausible_people(view, int(rng.integers(low, self.max_people + 1)))
        skeleton = self.skeleton
        stamp_offset_ns: int | None = 0
        if malformation in PERSON_MALFORMATIONS:
            people = [self._break_person(person, malformation) for person in people]
        elif malformation == "unknown_skeleton":
            skeleton = str(rng.choice(_UNKNOWN_SKELETONS))
        elif malformation == "empty_skeleton":
            skeleton = ""
        elif malformation == "odd_frame_id":
            frame_id = str(rng.choice(_ODD_FRAME_IDS))
        elif malformation == "stamp_zero":
            stamp_offset_ns = None
        elif malformation in ("stamp_past", "stamp_future"):
            offset = int(10 ** rng.uniform(1.0, 6.0) * _SECOND_NS)
            stamp_offset_ns = -offset if malformation == "stamp_past" else offset
        else:
            raise ValueError(f"unknown malformation {malformation!r}; known: {MALFORMATIONS}")
        return HostileMessage(malformation, stamp_offset_ns, frame_id, skeleton, people)

    def _plausible_people(self, view: int, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """People a receiver could not tell from real ones: joints around a centre inside the image."""
        rng = self.rng
        width, height = self.image_sizes[view]
        joints = self.num_joints
        centre = rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height], (count, 1, 2))
        spread = rng.uniform(0.02, 0.15, (count, 1, 1)) * min(width, height)
        xy = np.clip(centre + spread * rng.normal(0.0, 1.0, (count, joints, 2)), 0.0, [width - 1, height - 1])
        conf = rng.uniform(0.0, 1.0, (count, joints))
        conf[rng.random((count, joints)) < 0.1] = 0.0
        xy, conf = xy.astype(np.float32), conf.astype(np.float32)
        return [(xy[k, :, 0].copy(), xy[k, :, 1].copy(), conf[k]) for k in range(count)]

    def _break_person(self, person: tuple[np.ndarray, np.ndarray, np.ndarray],
                      malformation: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.rng
        x, y, conf = (a.copy() for a in person)
        joints = self.num_joints
        if malformation == "wrong_lengths":
            which = rng.integers(0, 4)  # 0-2: one array of another length; 3: all of another joint count
            other = int(rng.choice([n for n in range(0, 2 * joints + 1) if n != joints]))
            if which == 3:
                return np.resize(x, other), np.resize(y, other), np.resize(conf, other)
            arrays = [x, y, conf]
            arrays[which] = np.resize(arrays[which], other)
            return arrays[0], arrays[1], arrays[2]
        # The other rules break a few joints, and make sure they are claimed (confidence > 0).
        broken = rng.choice(joints, size=int(rng.integers(1, joints + 1)), replace=False)
        if malformation == "bad_confidence":
            conf[broken] = rng.choice(np.array([-0.5, -1e-3, 1.01, 1.5, 100.0, np.nan], dtype=np.float32),
                                      size=broken.size)
            return x, y, conf
        conf[broken] = np.maximum(conf[broken], np.float32(0.05))
        if malformation == "nonfinite":
            values = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
        else:  # huge
            values = np.array([1e38, -1e38, 1e6, -1e6, 3e4], dtype=np.float32)
        target = x if rng.random() < 0.5 else y
        target[broken] = rng.choice(values, size=broken.size)
        return x, y, conf
