"""``skelsplat_node``: fuses per-camera 2D keypoints into a 3D skeleton, live.

Data flow::

    /<camera>/keypoints (Keypoints2DArray, one topic per camera)
        -> validation (io/validation.py: vectorised, before any other work; bad input is counted, never fatal)
        -> PartialViewSynchronizer (groups by capture stamp; a dead or lagging camera does not stall the others)
        -> bounded queue (latest frames win) -> fusion thread (MultiPersonTracker: every person of every view,
           associated across views and over time, one SkelSplat refinement per track)
        -> skeletons (Skeleton3DArray: one Skeleton3D per confirmed track, id = track id), /tf (one frame per joint
           and track, <joint>_<id>), skeleton_markers (MarkerArray: a colour per track, deleted when it is lost),
           the ROS4HRI bodies (hri: /humans/bodies/tracked, TF body_<id> and its links, each body's URDF;
           ros/hri.py), /diagnostics

One person is the special case of the same path: a single-person rig gets one track, whose id stays as long as
the person is seen (and a new one, never a reused one, after the person was lost for ``track_delete_after``).

Fusion runs in its own thread so that the executor keeps taking messages when fusion falls behind; when fusion is
slower than the cameras, the oldest waiting frames are dropped (counted) rather than queued without bound, which
keeps the latency bounded. A frame that finds the fusion thread idle goes out first: the executor stands aside until
it is published (io/frame_queue.py). Run: ``skelsplat_node --ros-args --params-file config/skelsplat.yaml``.

The node is ready when it subscribes: the fusion thread warms up first (while the executor serves CameraInfo, TF
and /diagnostics), and the keypoint subscriptions are made only then, so the first frame a detector sends on seeing
them is fused. The pure parts live in the core: the statistics and the report (io/health.py), the hand-off queue
(io/frame_queue.py), the warm-up (tracking/warmup.py); the messages of a frame come from ros/outputs.py.

Under load, work is shed in this order, each step counted in /diagnostics: malformed messages first (rejected by
the validator before they are parsed further, synchronized or fused: they never refresh a camera's liveness, never
move the clock-jump or staleness logic and never displace a valid message of the same stamp), then the oldest
input (each camera's DDS reader keeps only its newest messages), the oldest waiting frames (``max_pending``) and the
oldest frame waiting for fusion (``worker_queue``). Every queue is bounded, so the newest valid frames keep flowing.
"""

from __future__ import annotations

import collections
import gc
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from hri_msgs.msg import IdsList
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header, String
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from skelsplat_ros.geometry.calibration import CalibrationError, intrinsics_from_camera_info, load_calibration_metres
from skelsplat_ros.geometry.camera import CameraRig
from skelsplat_ros.geometry.rig_source import FrameRig, RigSource, StaticRigSource, TfRigSource, ViewRef
from skelsplat_ros.geometry.transforms import Transform, TransformBuffer, TransformError
from skelsplat_ros.io.frame_queue import FrameQueue
from skelsplat_ros.io.health import FrameSample, NodeStatistics, camera_states, diagnostic_report
from skelsplat_ros.io.sync import PartialViewSynchronizer, SyncedFrame
from skelsplat_ros.io.validation import KeypointValidator, ValidationConfig
from skelsplat_ros.msg import Keypoints2DArray, Skeleton3DArray
from skelsplat_ros.skeleton.human import check_hri_skeleton
from skelsplat_ros.skeleton.models import get_skeleton

from .conversions import JointFrames, delete_markers, ns_to_stamp, parse_keypoints, people_from_block, stamp_to_ns
from .hri import TRACKED_TOPIC, HriBodies, HriFrame, urdf_topic
from .outputs import OutputOptions, frame_messages
from .params import FUSION_NODE_PARAMS, TRACKER_PREFIX, StartupError, declare, spin_node
from .tf_listener import TfListener
from .wire import WireError, max_message_bytes, read_keypoints

if TYPE_CHECKING:
    from skelsplat_ros.fusion.config import FusionConfig
    from skelsplat_ros.tracking import MultiPersonTracker, TrackerConfig, TrackerStep

NODE_NAME = "skelsplat_node"
# The longest the executor's thread stands aside for a frame being fused (s): a frame takes some milliseconds; one that
# takes longer (the first ones, a crowd) has the executor back after this.
STAND_ASIDE_MAX = 0.1


@dataclass(frozen=True)
class FusedFrame:
    """What a frame observer (:meth:`FusionNode.add_frame_observer`) is given after each fused frame.

    Attributes:
        stamp_ns: the frame's capture stamp (the output's), integer ns.
        rig: the cameras the frame was fused with, in the node's camera order.
        detections: ``[V]`` of ``[S_v, J, 3]``: what each camera gave (views left out of the frame: ``S_v = 0``).
        step: what the tracker did (people, assignments, ended tracks).
        frame_ids: camera -> the frame id its message was stamped in (its optical frame), for the views of the frame.
    """

    stamp_ns: int
    rig: CameraRig
    detections: list[np.ndarray]
    step: TrackerStep
    frame_ids: dict[str, str] = field(default_factory=dict)


def tracker_config(params: dict[str, Any]) -> TrackerConfig:
    """The tracker's gates and life times from the node's parameters: every ``track_<field>`` of FUSION_NODE_PARAMS
    is TrackerConfig's ``<field>``, plus ``min_views`` and ``max_people_per_view``. Raises ValueError for values
    TrackerConfig refuses together (partial confirmation faster than confirmation)."""
    from skelsplat_ros.tracking import TrackerConfig

    fields = {spec.name.removeprefix(TRACKER_PREFIX): params[spec.name] for spec in FUSION_NODE_PARAMS
              if spec.name.startswith(TRACKER_PREFIX)}
    return TrackerConfig(min_views=int(params["min_views"]), max_people_per_view=int(params["max_people_per_view"]),
                         **fields)


def fusion_config(params: dict[str, Any]) -> FusionConfig:
    """How the node fuses, from its parameters: the preset in streaming mode with the node's ``min_views``,
    ``single_view_joints`` and ``depth_filter``; complete skeletons with ``complete`` or ``hri`` (ROS4HRI needs every
    joint). Raises ValueError or KeyError for an unknown preset, method or backend."""
    from skelsplat_ros.fusion import preset_config
    from skelsplat_ros.fusion.config import DEPTH_FILTER

    config = preset_config(params["preset"], params["method"], backend=params["backend"],
                           optimizer=params["optimizer"], device=params["device"], mode="streaming")
    return replace(config, min_views=int(params["min_views"]), single_view_joints=bool(params["single_view_joints"]),
                   complete=bool(params["complete"] or params["hri"]),
                   depth_filter=DEPTH_FILTER if params["depth_filter"] else 0.0)


class FusionNode(Node):
    """The fusion node. Raises :class:`StartupError` for an unusable configuration.

    Start-up, in this order: configuration (a bad one fails here, before any heavy import), publishers, the CameraInfo
    and TF subscriptions of the TF route, then the fusion thread warms up (:func:`~skelsplat_ros.tracking.warmup.
    warm_up`) while the executor keeps spinning (CameraInfo and TF arrive meanwhile). Only then are the keypoint
    subscriptions made (``ready`` is set): a detector that sees them can count on its first frame being fused.
    """

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
        for camera in cameras:
            try:  # the subscriptions come after the warm-up: an invalid topic name must fail now
                self.resolve_topic_name(f"{camera}/keypoints")
            except Exception as error:  # e.g. a camera name with a space
                raise StartupError(f"cannot subscribe to camera {camera!r}: {error}") from None
        try:
            self.skeleton = get_skeleton(p["skeleton"])
            if p["hri"]:
                check_hri_skeleton(self.skeleton)
        except (KeyError, ValueError, OSError) as error:
            raise StartupError(f"parameter skeleton: {error.args[0] if error.args else error}") from None

        from skelsplat_ros.fusion.refine import check_runtime
        from skelsplat_ros.tracking import MultiPersonTracker
        from skelsplat_ros.tracking.lagged import LaggedTracker

        try:
            config = fusion_config(p)
            check_runtime(config, "streaming")  # CUDA or gsplat asked for and not usable here: fail now
            self.fusion_config = config
            self.tracker_config = tracker_config(p)
            rig = self.rig_source.rig_for({}).rig
            # lag > 0: the tracker's people come out of the fixed-lag smoother, lag seconds late.
            self.lagged: LaggedTracker | None = LaggedTracker(
                rig, self.skeleton, config, self.tracker_config, p["lag"]) if p["lag"] > 0 else None
            self.tracker: MultiPersonTracker = self.lagged.tracker if self.lagged is not None else MultiPersonTracker(
                rig, self.skeleton, self.fusion_config, self.tracker_config)
            self._lagged_anchors: collections.deque[tuple[float, int]] = collections.deque()  # (stamp s, ns) pending
        except (ValueError, KeyError, RuntimeError) as error:
            raise StartupError(f"fusion settings: {error.args[0] if error.args else error}") from None
        self._plan = config.describe("streaming")

        self.cameras = cameras
        self._camera_index = {c: i for i, c in enumerate(cameras)}
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
        self.stats = NodeStatistics(cameras, time.monotonic())
        self._listening_at = time.monotonic()  # the executor's latest poll or message (see camera_states)
        # Reported from the start, at 0, so that a monitor sees the keys before anything happened.
        self.stats.counts.update(dict.fromkeys(
            ("tracks.ended", "detections.unassigned", "capped.views", "capped.people", "dropped.worker_queue"), 0))
        self.outputs = OutputOptions(self.skeleton.name, self.skeleton.bone_array, p["tf_prefix"])
        self._joint_frames = JointFrames(p["tf_prefix"])  # the joints' TF messages, updated in place frame by frame
        self._markers_shown: set[int] = set()  # track ids whose markers rviz shows now
        self.bodies = HriBodies(self.skeleton)  # the ROS4HRI body ids (Skeleton3D.body_id), and the bodies tracked
        self._ended: list[int] = []  # tracks ended since the last frame out (with lag, steps may output nothing)
        self._observers: list[Callable[[FusedFrame], None]] = []
        # Drift watch and recalibration: a frame observer, and corrected poses through its rig source.
        from .drift import DriftMonitor

        self.drift = DriftMonitor(self, p, cameras, self.skeleton, self.rig_source)
        self.add_frame_observer(self.drift.observe)
        # Another detector's messages (input yolo or hri), converted to ours by ros/inputs.py: checked now, subscribed
        # with the keypoints.
        self._input_types = None
        if p["input"] != "keypoints":
            from .inputs import check_input

            self._input_types = check_input(p["input"], self.skeleton.name)

        # The TF route's cameras come before anything else: CameraInfo and TF arrive while the node warms up.
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
        if p["publish_tf"] or p["hri"]:
            # What tf2_ros.TransformBroadcaster does (a /tf publisher of depth 100, reliable, volatile, so tf
            # listeners match), with the publisher at hand to ask whether anyone listens.
            self._tf_pub = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        self._hri_pub = None
        self._urdf_pubs: dict[str, Any] = {}  # body id -> its /humans/bodies/<id>/urdf publisher, while tracked
        # Bodies started and ended by the fusion thread, whose URDF publishers the executor's thread creates and
        # destroys (a DDS endpoint takes milliseconds to make: the fusion thread would drop frames meanwhile).
        self._body_changes: collections.deque[tuple[dict[str, str], list[str]]] = collections.deque()
        self._body_guard = self.create_guard_condition(self._change_bodies)
        self._hri_parent = p["hri_reference_frame"] or p["world_frame"]
        if p["hri"]:
            self._hri_pub = self.create_publisher(IdsList, TRACKED_TOPIC, reliable)
            if self._hri_parent != p["world_frame"] and not isinstance(self.rig_source, TfRigSource):
                self.tf_listener = TfListener(self, TransformBuffer())  # the reference frame's pose comes from TF
        if self._tf_pub is not None and hasattr(self, "tf_listener"):
            self.tf_listener.ignore_own_publishers()  # the joints' and bodies' frames are no camera poses
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)

        self.queue: FrameQueue[SyncedFrame] = FrameQueue(int(p["worker_queue"]))
        self.ready = threading.Event()  # set once the keypoint subscriptions exist (after the warm-up)
        # The fusion thread says "warmed up" through a guard condition: the subscriptions are then made in the
        # executor's thread, which owns the node's entities.
        self._warmed_up = self.create_guard_condition(self._start_input)
        self._worker = threading.Thread(target=self._work, name="skelsplat_fusion", daemon=True)
        self._worker.start()
        self.marker_pub.publish(delete_markers(self._header(self.get_clock().now().to_msg()), None))
        self.get_logger().info(
            f"fusing {len(cameras)} cameras {cameras} ({p['method']}, preset {p['preset']}: {self._plan}) from "
            f"{source_text}; "
            f"skeleton {self.skeleton.name}, output frame {p['world_frame']!r}; warming up before subscribing"
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
            self.stats.count("rejected.camera_info")
            self.get_logger().error(str(error), throttle_duration_sec=5.0)
            return
        self.rig_source.set_intrinsics(camera, intrinsics)
        self.validator.set_image_size(self._camera_index[camera], intrinsics.size)

    def add_frame_observer(self, observer: Callable[[FusedFrame], None]) -> None:
        """Call ``observer`` in the fusion thread after each fused frame, once its messages are out (a drift watch,
        a recorder). It must be quick; an exception it raises is counted (``observer_errors``) and logged."""
        self._observers.append(observer)

    # --- start-up -----------------------------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """In the fusion thread, before any keypoint subscription: every first-call cost of the fusion path (imports,
        the tracker's numba kernels, the tracker's paths for one and several people, the output messages), on throw-away
        frames. A warm-up that fails is logged, and the node starts anyway."""
        started = time.perf_counter()
        try:
            threads = int(self.params["threads"])
            if threads > 0:
                import torch

                torch.set_num_threads(threads)
            from skelsplat_ros.tracking.warmup import warm_up

            report = warm_up(self.tracker.rig, self.skeleton, self.fusion_config, self.tracker_config,
                             lag=self.params["lag"])
            if report.last is not None:
                frame_messages(self._header(ns_to_stamp(0)), report.last.people, self.outputs,
                               shown_before={-1})
            self.get_logger().info(
                f"warmed up in {time.perf_counter() - started:.2f} s ({report.frames} throw-away frames on the "
                f"{'calibrated' if report.rig == 'given' else 'stand-in ring'} rig, {report.people} people fused)")
        except Exception as error:  # only a warm-up: the node runs without it, its first frames slower
            self.get_logger().error(f"warm-up failed after {time.perf_counter() - started:.2f} s: {error!r}; "
                                    "starting anyway (the first frames will be slow)")

    def _start_input(self) -> None:
        """In the executor's thread, once the fusion thread is warm: subscribe to the keypoints and start the
        synchronizer's clock."""
        if self.ready.is_set():
            return
        p = self.params
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
        if self._input_types is not None:
            from .inputs import subscribe_input

            sizes = dict(zip(self.cameras, self.tracker.rig.sizes)) if isinstance(self.rig_source, StaticRigSource) \
                else None
            self._inputs = subscribe_input(self, p["input"], self._input_types, self.cameras, input_qos,
                                           self._on_keypoints, sizes)
        self._keypoint_subs = [
            (camera, self.create_subscription(Keypoints2DArray, f"{camera}/keypoints",
                                              lambda data, camera=camera: self._on_camera_message(camera, data),
                                              input_qos, raw=True))
            for camera in (self.cameras if self._input_types is None else [])]
        # Partial frames are emitted on a timer (complete ones as soon as their last view arrives). The figures of
        # /diagnostics count from here: a camera is not dead for having been silent while nobody listened.
        self._listening_at = time.monotonic()
        self.stats.start(self._listening_at)
        self.create_timer(min(max(p["max_wait"] / 3.0, 0.005), 0.05), self._poll)
        self.ready.set()
        self.get_logger().info(f"subscribed to the keypoints of {len(self.cameras)} cameras: ready")

    # --- input (executor thread) -----------------------------------------------------------------------------------

    def _on_camera_message(self, camera: str, data: bytes) -> None:
        """A keypoint message taken by the executor; then the other cameras' messages already waiting, one each.

        A frame's views arrive together, and each one the executor hands over costs another wait (its wait set rebuilt
        in Python, ~0.3 ms): taken here, the frame is complete that much sooner. One message per camera keeps the
        cameras fair when one of them floods; what is left waits for the executor."""
        self._on_keypoints(camera, data)
        for other, subscription in self._keypoint_subs:
            if other == camera:
                continue
            try:
                with subscription.handle:
                    taken = subscription.handle.take_message(subscription.msg_type, subscription.raw)
            except InvalidHandle:  # destroyed (the node shuts down): as rclpy's executor, skip it
                continue
            if taken is not None:
                self._on_keypoints(other, taken[0])

    def _on_keypoints(self, camera: str, data: bytes) -> None:
        now = self._listening_at = time.monotonic()
        counts: collections.Counter[str] = collections.Counter()
        try:
            self._take_keypoints(camera, data, now, counts)
        finally:
            self.stats.message(camera, now, counts)

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
        now = self._listening_at = time.monotonic()
        self._enqueue(self.sync.poll(now))

    def _enqueue(self, frames: list[SyncedFrame]) -> None:
        dropped = self.queue.put(frames)
        if dropped:
            self.stats.count("dropped.worker_queue", dropped)
        if frames:
            # A frame an idle fusion thread took goes out first; this thread's work waits (io/frame_queue.py).
            self.queue.stand_aside(STAND_ASIDE_MAX)

    # --- fusion (worker thread) ------------------------------------------------------------------------------------

    def _work(self) -> None:
        self._warm_up()
        # What is alive now (modules, numba's and scipy's objects, the warm tracker) lives as long as the node: frozen,
        # the collector never walks it again. A full collection of it costs ~70 ms (scripts/bench_gc.py), which
        # would otherwise land in some frame.
        gc.collect()
        gc.freeze()
        try:
            self._warmed_up.trigger()
        except Exception:  # the node was destroyed while it warmed up
            return
        while (frame := self.queue.get()) is not None:
            try:
                self._fuse_and_publish(frame)
            except Exception as error:  # the node must outlive any one bad frame
                if not self.context.ok():  # shutting down: publishers are gone, nothing to report
                    return
                self.stats.count("fusion_errors")
                self.get_logger().error(f"fusion failed for frame {frame.stamp:.3f}: {error!r}",
                                        throttle_duration_sec=5.0)
            finally:
                self.queue.release()

    def _frame_rig(self, frame: SyncedFrame) -> FrameRig:
        """The cameras at the frame's stamps (each view at its own); views whose pose is unknown are counted as
        ``tf.<reason>`` and must be left out of the frame.

        The wait bound runs from the frame's emission by the synchronizer, not from now: frames queued behind one
        that waits have waited too, so a TF outage delays the output by tf_timeout instead of dividing its rate.
        """
        views = {camera: ViewRef(frame_id, ns) for camera, (ns, _, frame_id) in frame.views.items()}
        frame_rig = self.drift.source.rig_for(views)
        timeout = frame.emitted_at + self.params["tf_timeout"] - time.monotonic()
        if frame_rig.missing and timeout > 0 and not isinstance(self.rig_source, StaticRigSource):
            self.queue.release()  # the transforms waited for come through the executor's thread
            frame_rig = self.drift.source.rig_for(views, timeout=timeout)
        for camera, reason in frame_rig.missing.items():
            self.stats.count(f"tf.{reason}")
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
        # The output carries the exact stamp of the group's first message (float seconds would lose nanoseconds).
        anchor_ns = next((ns for c, (ns, _, _) in frame.views.items() if frame.stamps[c] == frame.stamp),
                         min(ns for ns, _, _ in frame.views.values()))
        stamp_age = self.get_clock().now().nanoseconds * 1e-9 - anchor_ns * 1e-9
        started, cpu_started = time.perf_counter(), time.thread_time()
        if self.lagged is None:
            step = self.tracker.step(detections, anchor_ns * 1e-9, rig=frame_rig.rig)
            due = [(anchor_ns, step.people)]
        else:  # the frames whose look-ahead is now in, with their own capture stamps
            self._lagged_anchors.append((anchor_ns * 1e-9, anchor_ns))
            step, frames = self.lagged.step(detections, anchor_ns * 1e-9, rig=frame_rig.rig)
            due = [(self._lagged_anchor(frame.stamp), frame.people) for frame in frames]
        fusion_time, fusion_cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        views = sum(1 for people in detections if len(people))
        if not due:  # nothing out yet (the look-ahead fills): what the tracker did still counts
            for key, amount in (("tracks.ended", len(step.ended)), ("detections.unassigned", step.unassigned),
                                ("capped.people", step.capped)):
                self.stats.count(key, amount)
        self._ended.extend(step.ended)
        latencies = []
        for k, (stamp_ns, people) in enumerate(due):
            last = k == len(due) - 1  # the ended tracks with the newest frame out (lag < track_delete_after)
            self._publish(stamp_ns, people, self._ended if last else ())
            if last:
                self._ended = []
            latencies.append(self.get_clock().now().nanoseconds * 1e-9 - stamp_ns * 1e-9)
        self.queue.release()  # the frames are out: the executor's turn
        if self.lagged is not None:  # the frames are out: the smoothers' work they did not need (counted as fusion)
            started, cpu_started = time.perf_counter(), time.thread_time()
            self.lagged.settle()
            fusion_time += time.perf_counter() - started
            fusion_cpu += time.thread_time() - cpu_started
        for k, latency in enumerate(latencies):  # the step's counts go with its first frame out
            self.stats.frame(FrameSample(latency, stamp_age - queue_wait, queue_wait, fusion_time, fusion_cpu, views),
                             0 if k else len(step.ended), 0 if k else step.unassigned, 0 if k else step.capped,
                             step.confirmed, step.tentative)
        if self._observers:
            fused = FusedFrame(anchor_ns, frame_rig.rig, detections, step,
                               {camera: frame_id for camera, (_, _, frame_id) in frame.views.items()})
            for observer in self._observers:
                try:
                    observer(fused)
                except Exception as error:  # an observer must not stop fusion
                    self.stats.count("observer_errors")
                    self.get_logger().error(f"frame observer {observer!r} failed: {error!r}",
                                            throttle_duration_sec=5.0)

    def _hri_reference(self, stamp_ns: int) -> Transform | None:
        """``reference_T_world`` of the bodies' parent at ``stamp_ns`` (else the latest known); ``None`` when the
        parent is the world frame, or when TF does not connect them yet (counted: ``hri.no_reference``; the bodies
        are then posed as if the parent were the world frame)."""
        world = self.params["world_frame"]
        if self._hri_parent == world:
            return None
        buffer = self.tf_listener.buffer
        try:
            return buffer.lookup(self._hri_parent, world, stamp_ns)
        except TransformError:
            try:
                return buffer.lookup_latest(self._hri_parent, world)[0]
            except TransformError as error:
                self.stats.count("hri.no_reference")
                self.get_logger().warning(f"hri_reference_frame: {error}", throttle_duration_sec=5.0)
                return Transform()

    def _publish_hri(self, hri: HriFrame) -> None:
        """In the fusion thread: the tracked ids (the bodies' frames go with the joints' on /tf); the bodies that
        started or ended go to the executor's thread, which makes or removes their URDF publishers."""
        if hri.started or hri.ended:
            self._body_changes.append((hri.started, hri.ended))
            self._body_guard.trigger()
        self._hri_pub.publish(hri.tracked)

    def _change_bodies(self) -> None:
        """In the executor's thread: each new body's URDF, latched (transient local: a client that subscribes when
        it sees the id gets it), and the publisher of each body that ended removed."""
        latched = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        while self._body_changes:
            started, ended = self._body_changes.popleft()
            for body, urdf in started.items():
                self._urdf_pubs[body] = self.create_publisher(String, urdf_topic(body), latched)
                self._urdf_pubs[body].publish(String(data=urdf))
            for body in ended:
                publisher = self._urdf_pubs.pop(body, None)
                if publisher is not None:
                    self.destroy_publisher(publisher)

    def _lagged_anchor(self, stamp: float) -> int:
        """The exact stamp (ns) of the pending frame stepped at ``stamp`` (s); older pending ones are gone."""
        while self._lagged_anchors[0][0] != stamp:
            self._lagged_anchors.popleft()
        return self._lagged_anchors.popleft()[1]

    def _publish(self, anchor_ns: int, people: list, ended: list[int] | tuple = ()) -> None:
        """One output frame: skeletons, the ROS4HRI bodies (``ended``: the tracks that ended since the last frame
        out), and TF frames and markers where someone listens."""
        # TF frames and markers only for someone: built and converted per joint, they cost more than the skeletons
        # (both topics are volatile: a reader that comes later would not get this frame anyway).
        send_tf = self._tf_pub is not None and self._tf_pub.get_subscription_count() > 0
        send_markers = self.params["publish_markers"] and self.marker_pub.get_subscription_count() > 0
        parent_T_world = self._hri_reference(anchor_ns) if self._hri_pub is not None else None
        out = frame_messages(self._header(ns_to_stamp(anchor_ns)), people, self.outputs, tf=send_tf,
                             markers=send_markers, shown_before=self._markers_shown, bodies=self.bodies,
                             ended=ended, hri=self._hri_pub is not None, hri_parent=self._hri_parent,
                             parent_T_world=parent_T_world, joint_tf=self.params["publish_tf"],
                             skeletons_done=self.skeleton_pub.publish, joint_frames=self._joint_frames)
        transforms = out.transforms
        if out.hri is not None:
            self._publish_hri(out.hri)
            transforms = transforms + out.hri.transforms
        if transforms:
            self._tf_pub.publish(TFMessage(transforms=transforms))
        if out.markers:
            self.marker_pub.publish(MarkerArray(markers=out.markers))
        self._markers_shown = out.shown if send_markers else set()  # nobody saw them: nothing to delete later

    # --- diagnostics (executor thread) -----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """All drop/reject/error counters by reason (cumulative), synchronizer included."""
        with self.stats.lock:
            counts = dict(self.stats.counts)
        counts.update({f"dropped.{reason}": n for reason, n in self.sync.drops.items()})
        return counts

    def camera_states(self) -> dict[str, str]:
        """Each camera's input state: ``ok``, ``invalid input`` or ``dead`` (see skelsplat_ros/io/health.py), as of
        the last moment the executor took input. After a stall of the executor (a loaded machine), messages that
        came meanwhile wait in the readers, unseen: judged at now, every camera would look dead although its
        messages are there (the timer that reports runs before them)."""
        with self.stats.lock:
            last_rejected = dict(self.stats.last_rejected)
        return camera_states(self.cameras, self._listening_at, self.params["camera_timeout"],
                             {c: self.sync.last_seen(c) for c in self.cameras}, last_rejected, self.stats.started)

    def _publish_diagnostics(self) -> None:
        if not self.ready.is_set():
            level, message, values = "WARN", "warming up: keypoints not subscribed yet", {}
        else:
            level, message, values = self._report()
        status = DiagnosticStatus(level=getattr(DiagnosticStatus, level), name=f"{self.get_name()}: fusion",
                                  message=message, hardware_id=self.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    def _report(self) -> tuple[str, str, dict[str, str]]:
        states = self.camera_states()
        window = self.stats.take_window(time.monotonic())
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
        with self.stats.lock:
            published, tracks = self.stats.published, dict(self.stats.tracks)
            rejected_by_camera = dict(self.stats.rejected_by_camera)
        extra = {
            "frames_published": str(published),
            "sync_pending": str(self.sync.pending),
            "worker_queue": str(len(self.queue)),
            "frames_synced": str(self.sync.emitted),
            "frames_partial": str(self.sync.emitted_partial),
            "tracks.confirmed": str(tracks["confirmed"]),
            "tracks.tentative": str(tracks["tentative"]),
            "duplicates_replaced": str(self.sync.replaced),
            "lag_s": f"{self.params['lag']:g}",  # stamp to publication is at least this (the look-ahead)
        }
        if slop_warning:
            extra["sync_slop_warning"] = slop_warning
        never_heard = [c for c in self.cameras if self.sync.last_seen(c) is None]
        extra.update(self.drift.values())
        level, message, values = diagnostic_report(window, states, lagging, self.counters(), rejected_by_camera,
                                                   never_heard, extra)
        moved = self.drift.warning()
        return ("WARN", moved, values) if moved and level == "OK" else (level, message, values)

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the fusion thread (frames still queued are dropped)."""
        if not hasattr(self, "_worker"):  # __init__ failed before the thread existed (StartupError)
            return
        self.queue.close()
        self._worker.join(timeout=5.0)
        self.drift.close()
        gc.unfreeze()  # a process that goes on (tests, a container of nodes) collects those objects again

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``skelsplat_node``; returns the exit status (1 for a bad configuration)."""
    return spin_node(FusionNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
