"""Keypoints from the detectors people already run, for the fusion node's ``input`` parameter.

- ``yolo``: yolo_ros's ``yolo_msgs/DetectionArray`` on ``<camera>/yolo/detections``. Each detection's
  ``keypoints.data[]`` holds ``KeyPoint2D`` (``id``: 1-based COCO-17 joint, ``point``: pixels, ``score``); a
  keypoint under yolo_ros's threshold is left out of the list (so it is missing here).
- ``hri``: ROS4HRI (REP-155) as ``hri_body_detect`` publishes it: ``hri_msgs/IdsList`` on
  ``<camera>/humans/bodies/tracked`` and, per body, ``hri_msgs/Skeleton2D`` on
  ``<camera>/humans/bodies/<id>/skeleton2d`` (18 points in OpenPose COCO-18 order, normalised to [0, 1] by the image
  size, which comes from the calibration or ``<camera>/camera_info``). A camera's frame is complete when the
  skeleton of every body its tracked list names at that stamp has arrived.

Both become ``coco17`` ``Keypoints2DArray`` messages handed, serialized, to the node's own input path, so they are
validated, counted and synchronized exactly as keypoints from ``skelsplat_detector`` are. Their message packages are
imported only when selected.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo

from .conversions import keypoints_msg, stamp_to_ns
from .params import StartupError

__all__ = ["INPUTS", "COCO18_TO_COCO17", "yolo_people", "hri_person", "HriFrames", "check_input", "subscribe_input"]

INPUTS = ("keypoints", "yolo", "hri")
SKELETON = "coco17"
# COCO-17 joint j is OpenPose COCO-18 point COCO18_TO_COCO17[j] (COCO-18: nose, neck, then right before left).
COCO18_TO_COCO17 = np.array([0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10])
HRI_PENDING_STAMPS = 8

Deliver = Callable[[str, bytes], None]


def yolo_people(msg: Any) -> np.ndarray:
    """A ``yolo_msgs/DetectionArray`` as people ``[S, 17, 3]`` (detections without keypoints are left out)."""
    people = []
    for detection in msg.detections:
        person = np.full((17, 3), np.nan)
        person[:, 2] = 0.0
        for keypoint in detection.keypoints.data:
            if 1 <= keypoint.id <= 17:
                person[keypoint.id - 1] = (keypoint.point.x, keypoint.point.y, keypoint.score)
        if (person[:, 2] > 0).any():
            people.append(person)
    return np.stack(people) if people else np.empty((0, 17, 3))


def hri_person(msg: Any, size: tuple[int, int]) -> np.ndarray | None:
    """An ``hri_msgs/Skeleton2D`` as one person ``[17, 3]`` in pixels of an image of ``size`` (width, height), or
    None when it does not have the 18 points of COCO-18."""
    if len(msg.skeleton) != 18:
        return None
    points = np.array([(p.x * size[0], p.y * size[1], p.c) for p in msg.skeleton], dtype=np.float64)
    return points[COCO18_TO_COCO17]


class HriFrames:
    """Groups one camera's per-body skeletons into frames (no ROS): a frame is emitted when its tracked list has
    arrived and every body it names has a skeleton at that stamp; the newest ``HRI_PENDING_STAMPS`` stamps wait."""

    def __init__(self) -> None:
        self._tracked: dict[int, list[str]] = {}
        self._skeletons: dict[int, dict[str, np.ndarray]] = {}
        self._done = -1

    def tracked(self, stamp_ns: int, ids: list[str]) -> np.ndarray | None:
        if stamp_ns > self._done:
            self._tracked[stamp_ns] = list(ids)
        return self._ready(stamp_ns)

    def skeleton(self, stamp_ns: int, body: str, person: np.ndarray) -> np.ndarray | None:
        if stamp_ns > self._done:
            self._skeletons.setdefault(stamp_ns, {})[body] = person
        return self._ready(stamp_ns)

    def _ready(self, stamp_ns: int) -> np.ndarray | None:
        ids = self._tracked.get(stamp_ns)
        have = self._skeletons.get(stamp_ns, {})
        if ids is None or not set(ids) <= set(have):
            self._trim()
            return None
        self._done = stamp_ns
        for stale in [s for s in list(self._tracked) + list(self._skeletons) if s <= stamp_ns]:
            self._tracked.pop(stale, None)
            self._skeletons.pop(stale, None)
        return np.stack([have[i] for i in ids]) if ids else np.empty((0, 17, 3))

    def _trim(self) -> None:
        for table in (self._tracked, self._skeletons):
            for stale in sorted(table)[:-HRI_PENDING_STAMPS]:
                del table[stale]


def _import(package: str, names: list[str], kind: str) -> list[Any]:
    try:
        module = importlib.import_module(f"{package}.msg")
        return [getattr(module, name) for name in names]
    except (ImportError, AttributeError) as error:
        raise StartupError(f"input {kind} needs the {package} message package ({error})") from None


def _deliver(deliver: Deliver, camera: str, people: np.ndarray, header: Any) -> None:
    msg = keypoints_msg(people if len(people) else None, header.stamp, header.frame_id, SKELETON, -1)
    deliver(camera, serialize_message(msg))


class _HriCamera:
    """One camera's ROS4HRI topics: the tracked list, a skeleton subscription per body, the image size."""

    def __init__(self, node: Any, camera: str, qos: Any, deliver: Deliver, size: tuple[int, int] | None,
                 types: tuple[Any, Any]) -> None:
        self.node, self.camera, self.qos, self.deliver, self.size = node, camera, qos, deliver, size
        self.ids_type, self.skeleton_type = types
        self.frames = HriFrames()
        self.bodies: dict[str, Any] = {}
        self.frame_id = ""
        node.create_subscription(self.ids_type, f"{camera}/humans/bodies/tracked", self._on_tracked, qos)
        if size is None:
            node.create_subscription(CameraInfo, f"{camera}/camera_info", self._on_camera_info, qos)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if msg.width and msg.height:
            self.size = (int(msg.width), int(msg.height))

    def _on_tracked(self, msg: Any) -> None:
        ids = list(msg.ids)
        for body in set(ids) - set(self.bodies):  # ids are never reused: a body's topic lives while it is tracked
            self.bodies[body] = self.node.create_subscription(
                self.skeleton_type, f"{self.camera}/humans/bodies/{body}/skeleton2d",
                lambda m, body=body: self._on_skeleton(body, m), self.qos)
        for body in set(self.bodies) - set(ids):
            self.node.destroy_subscription(self.bodies.pop(body))
        self._emit(msg.header, self.frames.tracked(stamp_to_ns(msg.header.stamp), ids))

    def _on_skeleton(self, body: str, msg: Any) -> None:
        if self.size is None:  # no camera_info yet: the pixel size is unknown
            return
        person = hri_person(msg, self.size)
        if person is not None:
            self._emit(msg.header, self.frames.skeleton(stamp_to_ns(msg.header.stamp), body, person))

    def _emit(self, header: Any, people: np.ndarray | None) -> None:
        if people is not None:
            _deliver(self.deliver, self.camera, people, header)


def check_input(kind: str, skeleton: str) -> tuple[Any, ...]:
    """The message types of input ``kind`` (``yolo``: DetectionArray; ``hri``: IdsList, Skeleton2D), imported now;
    :class:`StartupError` for an unknown kind, a skeleton other than coco17 or a message package missing."""
    if kind not in INPUTS[1:]:
        raise StartupError(f"parameter input must be one of {', '.join(INPUTS)}, got {kind!r}")
    if skeleton != SKELETON:
        raise StartupError(f"input {kind} gives {SKELETON} keypoints: set skeleton to {SKELETON} (got {skeleton})")
    if kind == "yolo":
        return tuple(_import("yolo_msgs", ["DetectionArray"], kind))
    return tuple(_import("hri_msgs", ["IdsList", "Skeleton2D"], kind))


def subscribe_input(node: Any, kind: str, types: tuple[Any, ...], cameras: list[str], qos: Any, deliver: Deliver,
                    sizes: dict[str, tuple[int, int]] | None) -> list[Any]:
    """Subscribe ``node`` to the ``kind`` topics of every camera (message ``types`` from :func:`check_input`),
    handing each camera frame to ``deliver(camera, serialized Keypoints2DArray)``; returns what keeps the
    subscriptions. ``sizes``: image size per camera (hri), None to read it from ``<camera>/camera_info``."""
    if kind == "yolo":
        (detections,) = types
        return [node.create_subscription(
            detections, f"{camera}/yolo/detections",
            lambda msg, camera=camera: _deliver(deliver, camera, yolo_people(msg), msg.header), qos)
            for camera in cameras]
    return [_HriCamera(node, camera, qos, deliver, None if sizes is None else sizes[camera], types)
            for camera in cameras]
