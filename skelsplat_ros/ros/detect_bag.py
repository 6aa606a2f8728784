"""``skelsplat detect`` of a rosbag2 recording: Image / CompressedImage topics in, keypoints out.

Each image topic is a camera (its first name part: ``/cam01/image_raw`` and ``/cam01/image_raw/compressed`` are
``cam01``); images are detected in recording order with one detector per camera, each read by the node's own
conversion. Out: a bag of ``Keypoints2DArray`` on ``/<camera>/keypoints``, every message with its image's stamp and
frame_id and logged at the image's log time (``skelsplat fuse`` then groups it as the node would); or the 5-D NPZ,
images grouped into frames by stamp (stamps within ``slop`` of the frame's first are one frame) on the recording's
frame clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from skelsplat_ros.detection import DetectorConfig, make_detector
from skelsplat_ros.io.keypoints import KeypointSet
from skelsplat_ros.io.timeline import frame_timeline

from .bag import BagError, _messages, _open, typestore_with_our_messages
from .conversions import keypoints_msg, ns_to_stamp, stamp_to_ns
from .detector_node import image_array

__all__ = ["ImageBagDetections", "detect_image_bag", "IMAGE_TYPES"]

IMAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}


@dataclass
class ImageBagDetections:
    """Per camera, in recording order: ``(log time ns, stamp ns, frame_id, people [S, J, 3])``; the skeleton."""

    cameras: list[str]
    detections: dict[str, list[tuple[int, int, str, np.ndarray]]]
    skeleton: str

    def people_counts(self) -> dict[str, list[int]]:
        return {c: [len(p) for *_, p in self.detections[c]] for c in self.cameras}

    def keypoint_set(self, max_people: int, slop_s: float = 0.010) -> KeypointSet:
        """The 5-D keypoint set ``[V, F, max_people, J, 3]``: images whose stamps lie within ``slop_s`` of a frame's
        first are that frame, and the frames are placed on the recording's frame clock (``io/timeline.py``: a frame
        no camera has stays, missing); a camera without an image in a frame has no detection there."""
        stamps = sorted({stamp for c in self.cameras for _, stamp, _, _ in self.detections[c]})
        frames: list[int] = []
        for stamp in stamps:
            if not frames or stamp - frames[-1] > slop_s * 1e9:
                frames.append(stamp)
        starts = np.array(frames, dtype=np.int64)
        timeline = frame_timeline(starts)
        num_joints = next((p.shape[1] for c in self.cameras for *_, p in self.detections[c]), 17)
        data = np.full((len(self.cameras), len(timeline.stamps_ns), max_people, num_joints, 3), np.nan)
        data[..., 2] = 0.0
        for v, camera in enumerate(self.cameras):
            for _, stamp, _, people in self.detections[camera]:
                f = timeline.slots[int(np.searchsorted(starts, stamp, side="right") - 1)]
                data[v, f, : len(people)] = people[:max_people]
        return KeypointSet(data, self.cameras, fps=1e9 / timeline.period_ns, skeleton=self.skeleton)

    def write_bag(self, path: str | Path) -> Path:
        """The detections as a rosbag2 MCAP bag (``run.mcap`` -> folder ``run/``); returns the folder."""
        from rosbags.rosbag2 import StoragePlugin, Writer

        path = Path(path)
        folder = path.with_suffix("") if path.suffix == ".mcap" else path
        if folder.exists():
            raise BagError(f"{folder}: exists; rosbag2 bags are not overwritten")
        folder.parent.mkdir(parents=True, exist_ok=True)
        typestore = typestore_with_our_messages()
        messages = sorted((log, camera, stamp, frame_id, people) for camera in self.cameras
                          for log, stamp, frame_id, people in self.detections[camera])
        with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            topics = {c: writer.add_connection(f"/{c}/keypoints", "skelsplat_ros/msg/Keypoints2DArray",
                                               typestore=typestore) for c in self.cameras}
            for log, camera, stamp, frame_id, people in messages:
                msg = keypoints_msg(people if len(people) else None, ns_to_stamp(stamp), frame_id, self.skeleton, -1)
                writer.write(topics[camera], log, serialize_message(msg))
        return folder


def camera_of_image_topic(topic: str) -> str:
    """``/cam01/image_raw`` -> ``cam01`` (the first part of the name)."""
    return topic.strip("/").split("/")[0]


def detect_image_bag(path: str | Path, config: DetectorConfig, topics: list[str] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> ImageBagDetections:
    """Every image of the bag's image topics (or ``topics``) through one detector per camera."""
    reader = _open(Path(path))
    try:
        connections = [c for c in reader.connections if c.msgtype in IMAGE_TYPES
                       and (topics is None or c.topic in topics)]
        if not connections:
            found = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
            raise BagError(f"{path}: no sensor_msgs/Image or CompressedImage topic"
                           f"{' among ' + ', '.join(topics) if topics else ''} (it has {', '.join(found)})")
        cameras = sorted({camera_of_image_topic(c.topic) for c in connections})
        if len(cameras) != len({c.topic for c in connections}):
            raise BagError(f"{path}: several image topics per camera ({sorted(c.topic for c in connections)}): "
                           "choose one per camera with --topics")
        detectors = {camera: make_detector(config) for camera in cameras}
        detections: dict[str, list] = {camera: [] for camera in cameras}
        total = sum(c.msgcount for c in connections)
        for done, (connection, log_ns, raw) in enumerate(_messages(reader, connections, Path(path)), 1):
            camera = camera_of_image_topic(connection.topic)
            msg = deserialize_message(raw, IMAGE_TYPES[connection.msgtype])
            stamp = stamp_to_ns(msg.header.stamp)
            people = detectors[camera].detect(image_array(msg), stamp)
            detections[camera].append((log_ns, stamp, msg.header.frame_id, people))
            if progress is not None:
                progress(done, total)
        skeleton = next(iter(detectors.values())).skeleton
        for detector in detectors.values():
            detector.close()
    finally:
        reader.close()
    return ImageBagDetections(cameras, detections, skeleton)
