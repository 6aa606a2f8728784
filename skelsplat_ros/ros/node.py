"""``skelsplat_node``: fuses per-camera 2D keypoints into a 3D skeleton, live.

Data flow::

    /<camera>/keypoints (Keypoints2DArray, one topic per camera)
        -> validation (io/validation.py: vectorised, before any other work; bad input is counted, never fatal)
        -> PartialViewSynchronizer (groups by capture stamp; a dead or lagging camera does not stall the others)
        -> bounded queue (latest frames win) -> fusion thread (MultiPersonTracker: every person of every view,
           associated across views and over time, one SkelSplat refinement per track)
        -> skeletons (Skeleton3DArray: one Skeleton3D per confirmed track, id = track id), /tf (one frame per joint
           and track, <joint>_<id>), skeleton_markers (MarkerArray: a colour per track, deleted when it is lost),
           /diagnostics

One person is the special case of the same path: a single-person rig gets one track, whose id stays as long as
the person is seen (and a new one, never a reused one, after the person was lost for ``track_delete_after``).

Fusion runs in its own thread so that the executor keeps taking messages while a frame is being fused; when fusion
is slower than the cameras, the oldest waiting frames are dropped (counted) rather than queued without bound, which
keeps the latency bounded. Run: ``skelsplat_node --ros-args --params-file config/skelsplat.yaml``.

Under load, work is shed in this order, each step counted in /diagnostics: malformed messages first (rejected by
the validator before they are parsed further, synchronized or fused: they never refresh a camera's liveness, never
move the clock-jump or staleness logic and never displace a valid message of the same stamp), then the oldest
input (each camera's DDS reader keeps only its newest messages), the oldest waiting frames (``max_pending``) and the
oldest frame waiting for fusion (``worker_queue``). Every queue is bounded, so the newest valid frames keep flowing.
"""

from __future__ import annotations

import collections
import statistics
import sys
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from skelsplat_ros.geometry.calibration import CalibrationError, intrinsics_from_camera_info, load_calibration_metres
from skelsplat_ros.geometry.rig_source import FrameRig, RigSource, StaticRigSource, TfRigSource, ViewRef
from skelsplat_ros.geometry.transforms import TransformBuffer
from skelsplat_ros.io.sync import PartialViewSynchronizer, SyncedFrame
from skelsplat_ros.io.validation import KeypointValidator, ValidationConfig
from skelsplat_ros.msg import Keypoints2DArray, Skeleton3DArray
from skelsplat_ros.skeleton.models import get_skeleton

from .conversions import (
    delete_markers,
    marker_array,
    ns_to_stamp,
    parse_keypoints,
    people_from_block,
    skeleton_msg,
    stamp_to_ns,
    tf_transforms,
)
from .drift import DriftMonitor
from .params import FUSION_NODE_PARAMS, StartupError, declare, spin_node
from .tf_listener import TfListener
from .wire import WireError, max_message_bytes, read_keypoints

if TYPE_CHECKING:
    from skelsplat_ros.tracking import MultiPersonTracker, TrackerConfig

NODE_NAME = "skelsplat_node"


class _Stats:
    """Figures for /diagnostics: cumulative counters and a window of samples since the last report."""

    def __init__(self, cameras: list[str]) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.received = {camera: 0 for camera in cameras}
        self.window_received = {camera: 0 for camera in cameras}
        self.published = 0
        self.window_published = 0
        self.latency: list[float] = []
        # Where the latency goes: stamp to the synchronizer's emission (capture, transport, the last camera), and
        # emission to the fusion thread's start (queue and thread hand-off).
        self.input_wait: list[float] = []
        self.queue_wait: list[float] = []
        self.fusion_time: list[float] = []
        self.fusion_cpu: list[float] = []  # CPU time of the fusion thread: what fusion costs without contention
        self.views: list[int] = []
        self.window_start = time.monotonic()

    def take_window(self) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            window = {
                "seconds": max(now - self.window_start, 1e-9),
                "published": self.window_published,
                "received": dict(self.window_received),
                "latency": self.latency,
                "input_wait": self.input_wait,
                "queue_wait": self.queue_wait,
                "fusion_time": self.fusion_time,
                "fusion_cpu": self.fusion_cpu,
                "views": self.views,
            }
            self.window_start = now
            self.window_published = 0
            self.window_received = {camera: 0 for camera in self.window_received}
            self.latency, self.input_wait, self.queue_wait = [], [], []
            self.fusion_time, self.fusion_cpu, self.views = [], [], []
            return window


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def tracker_config(params: dict[str, Any]) -> TrackerConfig:
    """The tracker's gates and life times from the node's parameters (see FUSION_NODE_PARAMS)."""
    from skelsplat_ros.tracking import TrackerConfig

    return TrackerConfig(
        match_gate=float(params["track_match_gate"]),
        cluster_gate=float(params["track_cluster_gate"]),
        min_views=int(params["min_views"]),
        confirm_frames=int(params["track_confirm_frames"]),
        confirm_views=int(params["track_confirm_views"]),
        tentative_timeout=float(params["track_tentative_timeout"]),
        delete_after=float(params["track_delete_after"]),
        max_people_per_view=int(params["max_people_per_view"]),
    )


class FusionNode(Node):
    """The fusion node. Raises :class:`StartupError` for an unusable configuration."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare(self, FUSION_NODE_PARAMS)
        self.params = p

        # Configuration first, before importing the fusion core (torch): a bad file fails fast.
        self.rig_source, cameras, source_text = self._rig_source(p)
        if len(set(cameras)) != len(cameras):
            raise StartupError(f"parameter cameras lists a camera twice: {cameras}")
        if len(cameras) < p["min_views"]:
            raise StartupError(f"min_views={p['min_views']} but only {len(cameras)} cameras: {cameras}")
        try:
            self.skeleton = get_skeleton(p["skeleton"])
        except (KeyError, ValueError, OSError) as error:
            raise StartupError(f"parameter skeleton: {error.args[0] if error.args else error}") from None

        from skelsplat_ros.fusion import preset_config
        from skelsplat_ros.fusion.refine import check_runtime
        from skelsplat_ros.tracking import MultiPersonTracker

        try:
            config = preset_config(
                p["preset"], p["method"], backend=p["backend"], optimizer=p["optimizer"], device=p["device"],
                mode="streaming",
            )
            config = replace(config, min_views=int(p["min_views"]), single_view_joints=bool(p["single_view_joints"]))
            check_runtime(config, "streaming")  # CUDA or gsplat asked for and not usable here: fail now
            self.fusion_config = config
            self.tracker_config = tracker_config(p)
            self.tracker: MultiPersonTracker = MultiPersonTracker(
                self.rig_source.rig_for({}).rig, self.skeleton, self.fusion_config, self.tracker_config)
        except (ValueError, KeyError, RuntimeError) as error:
            raise StartupError(f"fusion settings: {error.args[0] if error.args else error}") from None
        self._plan = config.describe("streaming")

        self.cameras = cameras
        self._camera_index = {c: i for i, c in enumerate(cameras)}
        self.drift = DriftMonitor(self, p, cameras, self.skeleton, self.rig_source)  # its rig source: corrected poses
        # Per camera: (stamp ns, people [S, J, 3] (S = 0: the camera saw nobody), frame_id of the message: the
        # camera's optical frame in TF).
        self.sync: PartialViewSynchronizer[tuple[int, np.ndarray, str]] = PartialViewSynchronizer(
            cameras,
            slop=p["sync_slop"],
            max_wait=p["max_wait"],
            min_views=int(p["min_views"]),
            max_pending=int(p["max_pending"]),
            dead_after=p["camera_timeout"],
            jump_threshold=max(p["clock_jump_threshold"], 2.0 * p["sync_slop"] + 1e-3),
            late_limit=int(p["lagging_after"]),
        )
        self.validator = KeypointValidator(ValidationConfig(
            skeleton=self.skeleton.name, num_joints=self.skeleton.num_joints,
            # Image sizes from the calibration file; on the CameraInfo + TF route, from each camera's CameraInfo.
            image_sizes=self.tracker.rig.sizes if isinstance(self.rig_source, StaticRigSource) else None,
            image_margin=p["image_margin"], max_people=int(p["max_people_per_view"]),
            max_stamp_age=p["max_stamp_age"], max_future=p["max_future"],
        ))
        self._max_message_bytes = max_message_bytes(int(p["max_people_per_view"]), self.skeleton.num_joints)
        self._reported_lagging: set[str] = set()
        self._slop_warned = False
        self.stats = _Stats(cameras)
        # Reported from the start, at 0, so that a monitor sees the keys before anything happened.
        self.stats.counts.update(dict.fromkeys(
            ("tracks.ended", "detections.unassigned", "capped.views", "capped.people", "dropped.worker_queue"), 0))
        self._bones = self.skeleton.bone_array
        self._markers_shown: set[int] = set()  # track ids whose markers rviz shows now
        self._tracks = {"confirmed": 0, "tentative": 0}  # after the last frame, for /diagnostics

        # Keypoints come from detectors at camera rate: best effort (qos_profile_sensor_data). A lost message costs
        # one view of one frame, while reliable delivery would retransmit stale frames and add latency. Detectors
        # publishing either BEST_EFFORT or RELIABLE (the rclpy default) match a BEST_EFFORT subscription. The reader
        # keeps input_queue_depth messages: a detector that also sends junk must not push its valid message out of
        # the queue while the executor is busy for a moment (validation then sheds the junk cheaply).
        input_qos = QoSProfile(history=qos_profile_sensor_data.history, depth=int(p["input_queue_depth"]),
                               reliability=qos_profile_sensor_data.reliability,
                               durability=qos_profile_sensor_data.durability)
        # Raw (serialized) delivery: a message is read and validated from its bytes (ros/wire.py) and deserialised
        # only when it passes, so a flood of malformed messages costs a fraction of what deserialising it would.
        for camera in cameras:
            try:
                self.create_subscription(
                    Keypoints2DArray, f"{camera}/keypoints",
                    lambda data, camera=camera: self._on_keypoints(camera, data), input_qos, raw=True,
                )
            except Exception as error:  # an invalid topic name, e.g. a camera name with a space
                raise StartupError(f"cannot subscribe to camera {camera!r}: {error}") from None

        if isinstance(self.rig_source, TfRigSource):
            self.tf_listener = TfListener(self, self.rig_source.buffer)
            for camera in cameras:
                self.create_subscription(CameraInfo, f"{camera}/camera_info",
                                         lambda msg, camera=camera: self._on_camera_info(camera, msg),
                                         qos_profile_sensor_data)

        # Outputs are consumed by planners, loggers and rviz: reliable, so nothing is silently lost downstream.
        reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE,
                              durability=QoSDurabilityPolicy.VOLATILE)
        self.skeleton_pub = self.create_publisher(Skeleton3DArray, "skeletons", reliable)
        self.marker_pub = self.create_publisher(MarkerArray, "skeleton_markers", reliable)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf_pub = None
        if p["publish_tf"]:
            # What tf2_ros.TransformBroadcaster does (a /tf publisher of depth 100, reliable, volatile, so tf
            # listeners match), with the publisher at hand to ask whether anyone listens.
            self._tf_pub = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
            if isinstance(self.rig_source, TfRigSource):
                self.tf_listener.ignore_own_publishers()  # the joints' frames are no camera poses

        # Partial frames are emitted on a timer (complete ones as soon as their last view arrives).
        poll_period = min(max(p["max_wait"] / 3.0, 0.005), 0.05)
        self.create_timer(poll_period, self._poll)
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)

        self._queue: collections.deque[SyncedFrame] = collections.deque()
        self._queue_size = int(p["worker_queue"])
        # The fusion thread waits for a frame: the next one queued is its own already, not one waiting behind it.
        # It can take a few ms to get the GIL and claim it, while a burst of frames (a detector's batch, or
        # keypoints that arrive late) is synchronized: without this, the burst's next frame would push it out.
        self._worker_idle = False
        self._cv = threading.Condition()
        self._stop = False
        self.warmed_up = threading.Event()  # set once the fusion thread is ready for its first frame
        self._worker = threading.Thread(target=self._work, name="skelsplat_fusion", daemon=True)
        self._worker.start()
        self.marker_pub.publish(delete_markers(self._header(self.get_clock().now().to_msg()), None))
        self.get_logger().info(
            f"fusing {len(cameras)} cameras {cameras} ({p['method']}, preset {p['preset']}: {self._plan}) from "
            f"{source_text}; "
            f"skeleton {self.skeleton.name}, output frame {p['world_frame']!r}"
        )

    def _rig_source(self, p: dict[str, Any]) -> tuple[RigSource, list[str], str]:
        """The cameras' source (calibration file, or CameraInfo + TF), the cameras fused, and a description."""
        path = p["calibration_file"]
        if not path:
            cameras = list(p["cameras"] or [])
            if not cameras:
                raise StartupError("without calibration_file the parameter cameras must list the cameras (their "
                                   "<camera>/camera_info and <camera>/keypoints topics are read)")
            source = TfRigSource(cameras, p["world_frame"], TransformBuffer())
            return source, cameras, f"<camera>/camera_info + TF into {p['world_frame']!r}"
        try:
            rig, units = load_calibration_metres(path, p["calibration_units"])
        except FileNotFoundError:
            raise StartupError(f"calibration file not found: {path}") from None
        except (ValueError, OSError) as error:
            raise StartupError(f"cannot read calibration {path}: {error}") from None
        if units != "m":
            self.get_logger().warning(f"calibration {path} read in {units} (calibration_units="
                                      f"{p['calibration_units']}); converted to metres")
        cameras = list(p["cameras"] or rig.names)
        missing = [c for c in cameras if c not in rig.names]
        if missing:
            raise StartupError(f"cameras {missing} are not in the calibration {path} (it has {rig.names})")
        return StaticRigSource(rig.subset(cameras)), cameras, path

    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        try:
            intrinsics = intrinsics_from_camera_info(msg, f"{camera}/camera_info")
        except CalibrationError as error:
            self._count("rejected.camera_info")
            self.get_logger().error(str(error), throttle_duration_sec=5.0)
            return
        self.rig_source.set_intrinsics(camera, intrinsics)
        self.validator.set_image_size(self._camera_index[camera], intrinsics.size)

    # --- input (executor thread) -----------------------------------------------------------------------------------

    def _count(self, key: str, amount: int = 1) -> None:
        with self.stats.lock:
            self.stats.counts[key] += amount

    def _on_keypoints(self, camera: str, data: bytes) -> None:
        now = time.monotonic()
        counts: collections.Counter[str] = collections.Counter()
        try:
            self._take_keypoints(camera, data, now, counts)
        finally:
            with self.stats.lock:
                self.stats.received[camera] += 1
                self.stats.window_received[camera] += 1
                self.stats.counts.update(counts)

    def _take_keypoints(self, camera: str, data: bytes, now: float, counts: collections.Counter[str]) -> None:
        """Validate (cheapest checks first), then deserialise and synchronize; ``counts`` collects what was rejected
        and why."""
        if len(data) > self._max_message_bytes:  # a crowd far beyond max_people_per_view: not even read
            counts["rejected.oversize"] += 1
            return
        msg: Keypoints2DArray | None = None
        try:
            wire = read_keypoints(data)
            stamp_ns, frame_id, skeleton, people = wire.stamp_ns, wire.frame_id, wire.skeleton, wire.people
        except WireError:  # not plain little-endian CDR: let rclpy try
            try:
                msg = deserialize_message(data, Keypoints2DArray)
            except Exception:  # rclpy raises assorted types for bytes it cannot read
                counts["rejected.undecodable"] += 1
                return
            stamp_ns, frame_id, skeleton = stamp_to_ns(msg.header.stamp), msg.header.frame_id, msg.skeleton
            people = [(p.x, p.y, p.confidence) for p in msg.people]
        rejected = self.validator.check_header(stamp_ns, self.get_clock().now().nanoseconds, frame_id, skeleton)
        if rejected:
            counts[f"rejected.{rejected}"] += 1
            return
        check = self.validator.check_people(people, self._camera_index[camera])
        for reason, count in check.person_rejections.items():
            counts[f"rejected_people.{reason}"] += count
        if check.capped:
            counts["capped.views"] += 1
            counts["capped.people"] += check.capped
        if check.rejected:
            counts[f"rejected.{check.rejected}"] += 1
            return
        if isinstance(people, np.ndarray):  # the common case: every person in one block, no message object needed
            kept = people if len(check.keep) == len(people) else people[check.keep]
            parsed_people = people_from_block(kept)
        else:
            if msg is None:
                msg = deserialize_message(data, Keypoints2DArray)
            if len(check.keep) != len(msg.people):
                msg.people = [msg.people[i] for i in check.keep]
            parsed = parse_keypoints(msg, self.skeleton.name, self.skeleton.num_joints)
            if parsed.rejected:  # the validator's checks cover the parser's: reaching here is a bug, counted
                counts[f"rejected.{parsed.rejected}"] += 1
                return
            parsed_people = parsed.people
        counts["accepted"] += 1
        self._enqueue(self.sync.add(camera, stamp_ns * 1e-9, (stamp_ns, parsed_people, frame_id), now,
                                   check.quality))

    def _poll(self) -> None:
        self._enqueue(self.sync.poll(time.monotonic()))

    def _enqueue(self, frames: list[SyncedFrame]) -> None:
        if not frames:
            return
        with self._cv:
            for frame in frames:
                if len(self._queue) >= self._queue_size + self._worker_idle:
                    self._queue.popleft()
                    self._count("dropped.worker_queue")
                self._queue.append(frame)
            self._cv.notify()

    # --- fusion (worker thread) ------------------------------------------------------------------------------------

    def _work(self) -> None:
        threads = int(self.params["threads"])
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self._warm_up()
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._worker_idle = True
                    self._cv.wait(timeout=0.5)
                self._worker_idle = False
                if self._stop:
                    return
                frame = self._queue.popleft()
            try:
                self._fuse_and_publish(frame)
            except Exception as error:  # the node must outlive any one bad frame
                if not self.context.ok():  # shutting down: publishers are gone, nothing to report
                    return
                self._count("fusion_errors")
                self.get_logger().error(f"fusion failed for frame {frame.stamp:.3f}: {error!r}",
                                        throttle_duration_sec=5.0)

    def _warm_up(self) -> None:
        """Throw-away fusions of a synthetic pose on a tracker of its own: the SkelSplat refinement's first call is
        slow (about a second on a CPU). The other methods start at once (the synthetic pose costs a second of imports
        that they would not save)."""
        try:
            if self.params["method"] != "skelsplat":
                return
            from skelsplat_ros.sim import generate_motion
            from skelsplat_ros.tracking import MultiPersonTracker

            tracker = MultiPersonTracker(self.tracker.rig, self.skeleton, self.fusion_config, self.tracker_config)
            points = generate_motion(self.skeleton, 1)[0]
            uv = tracker.rig.project(points)  # [V, J, 2]
            person = np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.9)], axis=-1)[:, None]  # [V, 1, J, 3]
            for frame in range(self.tracker_config.confirm_frames + 1):
                tracker.step(list(person), frame / 30.0)
        except Exception as error:  # only a warm-up: never fatal
            self.get_logger().debug(f"warm-up skipped: {error!r}")
        finally:
            self.warmed_up.set()

    def _frame_rig(self, frame: SyncedFrame) -> FrameRig:
        """The cameras at the frame's stamps (each view at its own); views whose pose is unknown are counted as
        ``tf.<reason>`` and must be left out of the frame.

        The wait bound runs from the frame's emission by the synchronizer, not from now: frames queued behind one
        that waits have waited too, so a TF outage delays the output by tf_timeout instead of dividing its rate.
        """
        views = {camera: ViewRef(frame_id, ns) for camera, (ns, _, frame_id) in frame.views.items()}
        timeout = frame.emitted_at + self.params["tf_timeout"] - time.monotonic()
        frame_rig = self.drift.source.rig_for(views, timeout=timeout)
        for camera, reason in frame_rig.missing.items():
            self._count(f"tf.{reason}")
            self.get_logger().warning(f"view {camera} at {views[camera].stamp_ns * 1e-9:.3f} left out: {reason}",
                                      throttle_duration_sec=5.0)
        return frame_rig

    def _header(self, stamp) -> Header:
        return Header(stamp=stamp, frame_id=self.params["world_frame"])

    def _fuse_and_publish(self, frame: SyncedFrame) -> None:
        queue_wait = time.monotonic() - frame.emitted_at
        frame_rig = self._frame_rig(frame)
        empty = np.empty((0, self.skeleton.num_joints, 3))
        detections = [empty] * len(self.cameras)  # [V] of [S_v, J, 3]
        for camera, (_, people, _) in frame.views.items():
            if people is not None and camera not in frame_rig.missing:
                detections[self._camera_index[camera]] = people
        with_data = sum(1 for people in detections if len(people))
        # The output carries the exact stamp of the group's first message (float seconds would lose nanoseconds).
        anchor_ns = next((ns for c, (ns, _, _) in frame.views.items() if frame.stamps[c] == frame.stamp),
                         min(ns for ns, _, _ in frame.views.values()))
        stamp_age = self.get_clock().now().nanoseconds * 1e-9 - anchor_ns * 1e-9
        started, cpu_started = time.perf_counter(), time.thread_time()
        step = self.tracker.step(detections, anchor_ns * 1e-9, rig=frame_rig.rig)
        fusion_time, fusion_cpu = time.perf_counter() - started, time.thread_time() - cpu_started

        header = self._header(ns_to_stamp(anchor_ns))
        skeletons, transforms, markers = [], [], []
        shown: set[int] = set()
        # TF frames and markers only for someone: built and converted per joint, they cost more than the skeletons
        # (both topics are volatile: a reader that comes later would not get this frame anyway).
        send_tf = self._tf_pub is not None and self._tf_pub.get_subscription_count() > 0
        send_markers = self.params["publish_markers"] and self.marker_pub.get_subscription_count() > 0
        for person in step.people:
            result = person.result
            joints, confidence = result.joints[0], result.confidence[0]
            skeleton = skeleton_msg(self.skeleton.name, list(result.joint_names), joints, confidence,
                                    result.covariance[0], result.num_views[0], result.reprojection_error[0],
                                    person.track_id)
            if skeleton is None:  # a confirmed track with no joint estimated this frame: nothing to show
                continue
            skeletons.append(skeleton)
            shown.add(person.track_id)
            if send_tf:
                transforms += tf_transforms(header, list(result.joint_names), joints, confidence,
                                            self.params["tf_prefix"], person.track_id)
            if send_markers:
                markers += marker_array(header, joints, confidence, self._bones, person.track_id).markers
        self.skeleton_pub.publish(Skeleton3DArray(header=header, skeletons=skeletons))
        if transforms:
            self._tf_pub.publish(TFMessage(transforms=transforms))
        if send_markers:
            # A track that ended or was not estimated this frame: remove its markers now rather than at their
            # lifetime, so that rviz never shows a person who is gone.
            for track_id in sorted(self._markers_shown - shown):
                markers += delete_markers(header, track_id).markers
            if markers:
                self.marker_pub.publish(MarkerArray(markers=markers))
        self._markers_shown = shown if send_markers else set()  # nobody saw them: nothing to delete later
        latency = self.get_clock().now().nanoseconds * 1e-9 - anchor_ns * 1e-9
        with self.stats.lock:
            self.stats.published += 1
            self.stats.window_published += 1
            self.stats.latency.append(latency)
            self.stats.input_wait.append(stamp_age - queue_wait)
            self.stats.queue_wait.append(queue_wait)
            self.stats.fusion_time.append(fusion_time)
            self.stats.fusion_cpu.append(fusion_cpu)
            self.stats.views.append(with_data)
            self.stats.counts["tracks.ended"] += len(step.ended)
            self.stats.counts["detections.unassigned"] += step.unassigned
            if step.capped:
                self.stats.counts["capped.people"] += step.capped
            self._tracks = {"confirmed": step.confirmed, "tentative": step.tentative}
        self.drift.observe(frame, frame_rig.rig, detections, step, anchor_ns * 1e-9)

    # --- diagnostics (executor thread) -----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """All drop/reject/error counters by reason (cumulative), synchronizer included."""
        with self.stats.lock:
            counts = dict(self.stats.counts)
        counts.update({f"dropped.{reason}": n for reason, n in self.sync.drops.items()})
        return counts

    def _publish_diagnostics(self) -> None:
        window = self.stats.take_window()
        seconds = window["seconds"]
        now = time.monotonic()
        alive = set(self.sync.alive(now))
        dead = [c for c in self.cameras if c not in alive]
        silent = [c for c in self.cameras if self.sync.last_seen(c) is None]
        lagging = self.sync.lagging()
        for camera in sorted(set(lagging) - self._reported_lagging):
            self.get_logger().warning(
                f"camera {camera} lags: its keypoints arrive {lagging[camera] * 1e3:.0f} ms after the first camera's, "
                f"beyond max_wait ({self.params['max_wait'] * 1e3:.0f} ms); it is no longer waited for (raise "
                "max_wait to use it)")
        self._reported_lagging = set(lagging)
        slop_warning = self.sync.slop_warning()
        if slop_warning and not self._slop_warned:
            self.get_logger().warning(slop_warning)
            self._slop_warned = True
        latency_ms = [1e3 * v for v in window["latency"]]
        fusion_ms = [1e3 * v for v in window["fusion_time"]]
        input_ms, queue_ms = [1e3 * v for v in window["input_wait"]], [1e3 * v for v in window["queue_wait"]]
        cpu_ms = [1e3 * v for v in window["fusion_cpu"]]
        values: dict[str, str] = {
            "output_rate_hz": f"{window['published'] / seconds:.2f}",
            "latency_median_ms": f"{_percentile(latency_ms, 50):.1f}",
            "latency_p95_ms": f"{_percentile(latency_ms, 95):.1f}",
            "latency_max_ms": f"{max(latency_ms) if latency_ms else float('nan'):.1f}",
            "input_wait_median_ms": f"{_percentile(input_ms, 50):.1f}",
            "queue_wait_median_ms": f"{_percentile(queue_ms, 50):.1f}",
            "fusion_time_mean_ms": f"{statistics.fmean(fusion_ms) if fusion_ms else float('nan'):.1f}",
            "fusion_time_max_ms": f"{max(fusion_ms) if fusion_ms else float('nan'):.1f}",
            "fusion_cpu_mean_ms": f"{statistics.fmean(cpu_ms) if cpu_ms else float('nan'):.1f}",
            "views_per_frame_mean": f"{statistics.fmean(window['views']) if window['views'] else float('nan'):.2f}",
            "frames_published": str(self.stats.published),
            "sync_pending": str(self.sync.pending),
            "worker_queue": str(len(self._queue)),
            "frames_synced": str(self.sync.emitted),
            "frames_partial": str(self.sync.emitted_partial),
            "dead_cameras": " ".join(dead),
            "tracks.confirmed": str(self._tracks["confirmed"]),
            "tracks.tentative": str(self._tracks["tentative"]),
            "lagging_cameras": " ".join(f"{c}:{lag * 1e3:.0f}ms" for c, lag in lagging.items()),
            "duplicates_replaced": str(self.sync.replaced),
        }
        if slop_warning:
            values["sync_slop_warning"] = slop_warning
        for camera in self.cameras:
            values[f"input_rate_hz.{camera}"] = f"{window['received'][camera] / seconds:.2f}"
        for key, count in sorted(self.counters().items()):
            values[key] = str(count)
        if not any(window["received"].values()):
            level, message = DiagnosticStatus.WARN, "no keypoints received"
        elif dead:
            level, message = DiagnosticStatus.WARN, f"no valid keypoints lately from: {' '.join(dead)}"
        elif lagging:
            level, message = DiagnosticStatus.WARN, f"cameras lagging beyond max_wait: {' '.join(lagging)}"
        elif window["published"] == 0:
            level, message = DiagnosticStatus.WARN, "receiving keypoints but no frame fused"
        else:
            level, message = DiagnosticStatus.OK, f"fusing {window['published'] / seconds:.1f} Hz"
        if silent and level == DiagnosticStatus.OK:
            message += f" (never heard: {' '.join(silent)})"
        values.update(self.drift.values())
        if self.drift.warning() and level == DiagnosticStatus.OK:
            level, message = DiagnosticStatus.WARN, self.drift.warning()
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: fusion", message=message,
                                  hardware_id=self.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the fusion thread (frames still queued are dropped)."""
        if not hasattr(self, "_worker"):  # __init__ failed before the thread existed (StartupError)
            return
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._worker.join(timeout=5.0)
        self.drift.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``skelsplat_node``; returns the exit status (1 for a bad configuration)."""
    return spin_node(FusionNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
