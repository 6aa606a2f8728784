"""``skelsplat_detector``: camera images in, per-camera 2D keypoints out, for the fusion node.

Data flow::

    /<camera>/image_raw (sensor_msgs/Image; or CompressedImage on /<camera>/image_raw/compressed), one per camera
        -> the newest image per camera waits (detection/latest.py: an image arriving before its camera's previous
           one was taken replaces it, counted as skipped; nothing queues up)
        -> detection threads: the camera that waited longest first; our own buffer conversion (detection/images.py:
           step, is_bigendian, rgb8/bgr8/mono8), one detector per camera (detection/)
        -> /<camera>/keypoints (Keypoints2DArray, the image's stamp and frame_id), /diagnostics (images received,
           detected, skipped, and missed: sent but never delivered, from the publishers' sequence numbers)

One node serves every camera with ``workers`` detection threads (about one per core: the models release Python's
lock while they run); a camera is detected by one thread at a time, so its detector sees its images in order. Bad images (an unknown encoding, a short buffer, undecodable bytes) are counted and logged,
never fatal. The detectors are made and run once on a blank image before any subscription exists, so the first real
image does not pay the models' start-up. Run: ``skelsplat_detector --ros-args -p cameras:="[cam01, cam02]"``.
"""

from __future__ import annotations

import collections
import statistics
import sys
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from skelsplat_ros.detection import DetectorConfig, DetectorError, make_detector
from skelsplat_ros.detection.images import ImageError, decode_compressed, image_from_buffer
from skelsplat_ros.detection.latest import LatestPerCamera, MissedImages
from skelsplat_ros.msg import Keypoints2DArray

from .conversions import keypoints_msg, stamp_to_ns
from .params import DETECTOR_NODE_PARAMS, StartupError, declare, spin_node

NODE_NAME = "skelsplat_detector"


def image_array(msg: Image | CompressedImage) -> np.ndarray:
    """An Image or CompressedImage message as RGB ``[H, W, 3]`` uint8 (:class:`ImageError` when unreadable)."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.data, msg.format)
    return image_from_buffer(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


class _CameraStats:
    """One camera's figures: cumulative counts and the samples of the current diagnostics window."""

    def __init__(self) -> None:
        self.received = self.detected = 0
        self.window_received = self.window_detected = 0
        self.inference_ms: list[float] = []
        self.latency_ms: list[float] = []
        self.people: list[int] = []

    def take_window(self) -> dict[str, Any]:
        window = {"received": self.window_received, "detected": self.window_detected,
                  "inference_ms": self.inference_ms, "latency_ms": self.latency_ms, "people": self.people}
        self.window_received = self.window_detected = 0
        self.inference_ms, self.latency_ms, self.people = [], [], []
        return window


class DetectorNode(Node):
    """The detector node. Raises :class:`StartupError` for an unusable configuration."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare(self, DETECTOR_NODE_PARAMS)
        self.params = p
        cameras = list(p["cameras"] or [])
        if not cameras:
            raise StartupError("parameter cameras must list the cameras (their <camera>/image_raw topics are read)")
        if len(set(cameras)) != len(cameras):
            raise StartupError(f"parameter cameras lists a camera twice: {cameras}")
        try:
            self.config = DetectorConfig(
                backend=p["backend"], max_people=int(p["max_people"]), min_person_score=p["min_person_score"],
                min_keypoint_score=p["min_keypoint_score"], duplicate_distance=p["duplicate_distance"],
                tracking=bool(p["tracking"]), model=p["model"],
                det_model=p["det_model"], threads=int(p["threads"]))
            self.detectors = {camera: make_detector(self.config) for camera in cameras}
            blank = np.zeros((64, 64, 3), dtype=np.uint8)
            for detector in self.detectors.values():  # warm-up: the models' first run is slow
                detector.detect(blank, 0)
        except (ValueError, DetectorError) as error:
            raise StartupError(f"detector settings: {error}") from None
        self.cameras = cameras
        self.skeleton = next(iter(self.detectors.values())).skeleton
        self.slots: LatestPerCamera[Image | CompressedImage] = LatestPerCamera(cameras)
        self.missed = MissedImages(cameras)
        self.lock = threading.Lock()
        self.stats = {camera: _CameraStats() for camera in cameras}
        self.counts: collections.Counter[str] = collections.Counter()
        self._window_start = time.monotonic()

        reliable = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
        self._keypoint_pubs = {camera: self.create_publisher(Keypoints2DArray, f"{camera}/keypoints", reliable)
                            for camera in cameras}
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Camera images: only the newest one kept (depth 1), an image that waits is stale. Reliable by default: a
        # megabyte image travels in many fragments, and best effort drops the whole image when one is lost.
        image_qos = QoSProfile(history=qos_profile_sensor_data.history, depth=1,
                               reliability=QoSReliabilityPolicy.RELIABLE if p["reliable_images"]
                               else qos_profile_sensor_data.reliability,
                               durability=qos_profile_sensor_data.durability)
        kind, suffix = (CompressedImage, "image_raw/compressed") if p["compressed"] else (Image, "image_raw")
        for camera in cameras:
            try:
                self.create_subscription(kind, f"{camera}/{suffix}",
                                         lambda msg, info, camera=camera: self._on_image(camera, msg, info), image_qos)
            except Exception as error:  # an invalid topic name, e.g. a camera name with a space
                raise StartupError(f"cannot subscribe to camera {camera!r}: {error}") from None
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self._workers = [threading.Thread(target=self._work, name=f"skelsplat_detection_{k}", daemon=True)
                         for k in range(int(p["workers"]))]
        for worker in self._workers:
            worker.start()
        self.get_logger().info(f"detecting {self.skeleton} people ({self.config.backend}, at most "
                               f"{self.config.max_people} per image) in {len(cameras)} cameras {cameras} from "
                               f"<camera>/{suffix}")

    def _on_image(self, camera: str, msg: Image | CompressedImage, info: MessageInfo) -> None:
        publisher = info.get("publisher_gid")
        if self.missed.note(camera, bytes(publisher["data"]) if publisher else None,
                            info.get("publication_sequence_number")):
            self.get_logger().warning(
                f"{camera}: images sent to this node never arrived ({self.missed.missed[camera]} so far). Full-size "
                "images between processes on one machine need Fast DDS's shared memory to hold them: give the image "
                "publisher FASTDDS_DEFAULT_PROFILES_FILE=<share>/skelsplat_ros/config/fastdds_images.xml (README, "
                "Images in)", throttle_duration_sec=30.0)
        self.slots.put(camera, msg, stamp_to_ns(msg.header.stamp))
        with self.lock:
            self.stats[camera].received += 1
            self.stats[camera].window_received += 1

    # --- detection (worker thread) ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.slots.closed:
            taken = self.slots.take(timeout=0.5)
            if taken is None:
                continue
            camera, msg = taken
            try:
                self._detect(camera, msg)
            except ImageError as error:
                self._count("rejected.image")
                self.get_logger().error(f"{camera}: {error}", throttle_duration_sec=5.0)
            except Exception as error:  # the node must outlive any one bad image or backend hiccup
                if not self.context.ok():
                    return
                self._count("detection_errors")
                self.get_logger().error(f"{camera}: detection failed: {error!r}", throttle_duration_sec=5.0)
            finally:
                self.slots.done(camera)

    def _detect(self, camera: str, msg: Image | CompressedImage) -> None:
        image = image_array(msg)
        stamp_ns = stamp_to_ns(msg.header.stamp)
        started = time.perf_counter()
        people = self.detectors[camera].detect(image, stamp_ns)
        inference_ms = 1e3 * (time.perf_counter() - started)
        self._keypoint_pubs[camera].publish(
            keypoints_msg(people if len(people) else None, msg.header.stamp, msg.header.frame_id, self.skeleton, -1))
        latency_ms = 1e-6 * (self.get_clock().now().nanoseconds - stamp_ns)
        with self.lock:
            stats = self.stats[camera]
            stats.detected += 1
            stats.window_detected += 1
            stats.inference_ms.append(inference_ms)
            stats.latency_ms.append(latency_ms)
            stats.people.append(len(people))

    def _count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    # --- diagnostics (executor thread) -----------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        seconds = max(now - self._window_start, 1e-9)
        self._window_start = now
        with self.lock:
            windows = {camera: stats.take_window() for camera, stats in self.stats.items()}
            totals = {camera: (stats.received, stats.detected) for camera, stats in self.stats.items()}
            counts = dict(self.counts)
        values: dict[str, str] = {}
        for camera, window in windows.items():
            inference, latency = window["inference_ms"], window["latency_ms"]
            values.update({
                f"input_rate_hz.{camera}": f"{window['received'] / seconds:.2f}",
                f"output_rate_hz.{camera}": f"{window['detected'] / seconds:.2f}",
                f"inference_mean_ms.{camera}": f"{statistics.fmean(inference) if inference else float('nan'):.1f}",
                f"inference_max_ms.{camera}": f"{max(inference) if inference else float('nan'):.1f}",
                f"latency_median_ms.{camera}": f"{statistics.median(latency) if latency else float('nan'):.1f}",
                f"people_mean.{camera}": f"{statistics.fmean(window['people']) if window['people'] else 0.0:.2f}",
                f"received.{camera}": str(totals[camera][0]),
                f"detected.{camera}": str(totals[camera][1]),
                f"skipped.{camera}": str(self.slots.skipped[camera]),
                f"missed.{camera}": str(self.missed.missed[camera]),
            })
        values.update({key: str(count) for key, count in sorted(counts.items())})
        silent = [camera for camera, (received, _) in totals.items() if received == 0]
        received = sum(window["received"] for window in windows.values())
        detected = sum(window["detected"] for window in windows.values())
        if not received:
            level, message = DiagnosticStatus.WARN, "no images received"
        elif not detected:
            level, message = DiagnosticStatus.WARN, "receiving images but none detected"
        else:
            level = DiagnosticStatus.OK
            message = f"detecting {detected / seconds:.1f} images/s of {received / seconds:.1f} received"
            if silent:
                message += f" (never heard: {' '.join(silent)})"
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: detector", message=message,
                                  hardware_id=self.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def destroy_node(self) -> None:
        if hasattr(self, "_workers"):
            self.slots.close()
            for worker in self._workers:
                worker.join(timeout=5.0)
            for detector in self.detectors.values():
                detector.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``skelsplat_detector``; returns the exit status (1 for a bad configuration)."""
    return spin_node(DetectorNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
