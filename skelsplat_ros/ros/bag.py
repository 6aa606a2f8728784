"""rosbag2 recordings in and out, with the ``rosbags`` library (pure Python; ``ros2 bag`` is not on PyPI).

Reading (:func:`read_bag_frames`): a bag folder with ``metadata.yaml`` (MCAP or sqlite3 storage) or a bare ``.mcap``.
Keypoints come from ``/<camera>/keypoints`` topics (``Keypoints2DArray``), found by type and name or given; messages
are fed in recording order (log time = the ``now`` clock) to the node's :class:`PartialViewSynchronizer`, so a frame
with a lost message is grouped offline exactly as it was live. Every person of a message is kept: a recording with
several people in a message is tracked as a 5-D ``.npz`` is (``[V, F, S, J, 3]``). The synchronized frames are
placed on the recording's frame clock (``io/timeline.py``): a frame the synchronizer could not fill stays a missing
frame, so the frames on either side of a gap are not fused as neighbours.

The cameras come from a calibration file or, without one, from ``<camera>/camera_info`` + ``/tf`` + ``/tf_static``
in the same bag, each view posed at its own stamp (:class:`TfRigSource`). An uncalibrated or unusable CameraInfo is
skipped and counted (a driver may send ``K = 0`` before it is calibrated); the camera is used from its first good
one. Cameras whose poses never change in the recording are static: every frame gets that one rig, also a view
stamped before the first (or after the last) transform of its camera, counted as ``tf.static_pose_used``. Otherwise
(moving cameras) a view whose pose the bag does not give exactly is left out and counted.

Writing (:func:`write_result_bag`): a rosbag2 MCAP bag with ``/skeletons`` (``Skeleton3DArray``), ``/tf`` (a frame
per joint) and ``/skeleton_markers``, each message stamped and logged at its frame's capture stamp; message
definitions are embedded, so any rosbags or ros2 reader decodes it without our package.

Messages are (de)serialised by rclpy with the generated types, so the arrays go through the same conversion code
as the live node; ``rosbags`` handles the container and the embedded definitions.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from skelsplat_ros.geometry.calibration import CalibrationError, intrinsics_from_camera_info
from skelsplat_ros.geometry.camera import Camera, CameraRig
from skelsplat_ros.geometry.rig_source import StaticRigSource, TfRigSource, ViewRef
from skelsplat_ros.geometry.transforms import TransformBuffer
from skelsplat_ros.io.recording import is_bag
from skelsplat_ros.io.sync import PartialViewSynchronizer, SyncedFrame
from skelsplat_ros.io.timeline import Timeline, frame_timeline
from skelsplat_ros.io.validation import KeypointValidator, ValidationConfig
from skelsplat_ros.msg import Keypoints2DArray

from .conversions import ns_to_stamp, parse_keypoints
from .outputs import OutputOptions, frame_messages
from .tf_listener import add_tf_message

__all__ = ["BagError", "BagFrames", "SyncSettings", "is_bag", "read_bag_frames", "write_result_bag",
           "typestore_with_our_messages"]

KEYPOINTS_TYPE = "skelsplat_ros/msg/Keypoints2DArray"
PEOPLE_CHOICES = ("auto", "all", "subject")
"""How many people of each message are read: ``auto`` every person when any message holds several, else one;
``all`` every person; ``subject`` the most confident person of each message (one-person fusion)."""
MESSAGE_DIR_CANDIDATES = (Path(__file__).resolve().parents[2] / "msg",)


class BagError(ValueError):
    """A recording that cannot be used; the message says why in one line."""


def _message_dir() -> Path:
    """``msg/`` of the source tree, else the installed ``share/skelsplat_ros/msg`` (colcon or pip prefix)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    installed = tuple(Path(prefix) / "share" / "skelsplat_ros" / "msg" for prefix in prefixes)
    for candidate in MESSAGE_DIR_CANDIDATES + installed:
        if (candidate / "Keypoints2DArray.msg").is_file():
            return candidate
    raise BagError("cannot find the package's msg/*.msg definitions (neither in the source tree nor installed)")


def typestore_with_our_messages():
    """The ROS 2 Kilted typestore of ``rosbags`` plus this package's messages, from ``msg/*.msg``."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(_message_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"skelsplat_ros/msg/{path.stem}"))
    typestore.register(types)
    return typestore


@dataclass(frozen=True)
class SyncSettings:
    """The node's synchronizer parameters (same defaults as FUSION_NODE_PARAMS)."""

    slop: float = 0.010
    max_wait: float = 0.060
    min_views: int = 2
    max_pending: int = 16
    camera_timeout: float = 1.0
    clock_jump_threshold: float = 1.0


@dataclass
class BagFrames:
    """Synchronized frames of a recording, on its timeline.

    Attributes:
        cameras: camera names ``[V]``.
        keypoints: ``[V, F, J, 3]``, or ``[V, F, S, J, 3]`` with several people (S slots, NaN-padded); NaN / 0 for
            views missing or left out and for the timeline frames the recording lacks.
        timeline: where the synchronized frames lie on the recording's frame clock (``F`` timeline frames).
        rigs: the cameras of each frame ``[F]``; one shared object for static cameras.
        moving: the camera poses differ between frames.
        counts: what was dropped or left out, by reason.
        skeleton: skeleton name of the keypoints.
    """

    cameras: list[str]
    keypoints: np.ndarray
    timeline: Timeline
    rigs: list[CameraRig]
    moving: bool
    counts: dict[str, int] = field(default_factory=dict)
    skeleton: str = ""

    @property
    def stamps_ns(self) -> np.ndarray:
        """Capture stamp of each timeline frame ``[F]`` (a frame's first message; interpolated where missing)."""
        return self.timeline.stamps_ns

    @property
    def present(self) -> np.ndarray:
        """``[F]`` bool: a synchronized frame is there."""
        return self.timeline.present

    @property
    def fps(self) -> float:
        """Frame rate of the timeline (the mean along the recording)."""
        return self.timeline.fps

    @property
    def multi_person(self) -> bool:
        return self.keypoints.ndim == 5

    def filled(self) -> tuple[np.ndarray, np.ndarray, list[CameraRig] | None]:
        """The frames the node would have had, those the synchronizer filled (what a streaming replay fuses): their
        mask ``[F]``, their stamps in seconds from the first frame, and their rigs (moving cameras; else None)."""
        there = self.present
        stamps = (self.stamps_ns[there] - self.stamps_ns[0]) * 1e-9
        rigs = [rig for rig, kept in zip(self.rigs, there) if kept] if self.moving else None
        return there, stamps, rigs


def _open(path: Path):
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise FileNotFoundError(f"no such recording: {path}")
    if not is_bag(path):
        raise BagError(f"{path}: not a rosbag2 folder (metadata.yaml) nor a .mcap/.db3 file")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # rosbags raises its own ReaderError family and sqlite/mcap errors
        raise BagError(f"{path}: cannot open the recording ({error})") from None
    return reader


def _messages(reader, connections, path: Path):
    """``reader.messages(connections=...)``, with what rosbags raises on damaged bytes met along the way (its
    ReaderError family, or an OverflowError for a corrupt length) as one :class:`BagError`."""
    stream = reader.messages(connections=connections)
    while True:
        try:
            item = next(stream)
        except StopIteration:
            return
        except Exception as error:  # the reader's errors on damaged chunks: not ours to tell apart
            raise BagError(f"{path}: the recording is damaged ({type(error).__name__}: {error})".replace("\n", " ")) \
                from None
        yield item


def _camera_of_topic(topic: str) -> str:
    """``/cam0/keypoints`` -> ``cam0``; ``/robot/head/keypoints`` -> ``robot/head``."""
    return topic.strip("/").rpartition("/keypoints")[0]


def read_bag_frames(path: str | Path, skeleton_name: str, num_joints: int, topics: list[str] | None = None,
                    rig: CameraRig | None = None, world_frame: str = "world",
                    sync: SyncSettings = SyncSettings(), people: str = "auto") -> BagFrames:
    """Read, validate and synchronize the keypoints of a recording, and pose its cameras.

    Args:
        path: bag folder or ``.mcap``/``.db3`` file.
        skeleton_name, num_joints: the skeleton the keypoints must have (others are rejected and counted).
        topics: keypoint topics; default every ``Keypoints2DArray`` topic named ``/<camera>/keypoints``.
        rig: a calibration (cameras named as the topics); ``None`` = ``camera_info`` + TF from the bag.
        world_frame: frame the TF route poses cameras in.
        sync: the node's synchronizer settings.
        people: one of :data:`PEOPLE_CHOICES`.

    Raises:
        BagError: no keypoint topic, a topic of another type, no usable camera_info, nothing synchronized, stamps
            that jump back (two timelines in one recording).
    """
    if people not in PEOPLE_CHOICES:
        raise BagError(f"people must be one of {PEOPLE_CHOICES}, got {people!r}")
    path = Path(path)
    reader = _open(path)
    try:
        by_topic = {c.topic: c for c in reader.connections}
        if topics:
            for topic in topics:
                if topic not in by_topic:
                    raise BagError(f"{path}: no topic {topic} (it has {sorted(by_topic)})")
                if by_topic[topic].msgtype != KEYPOINTS_TYPE:
                    raise BagError(f"{path}: {topic} is {by_topic[topic].msgtype}, not {KEYPOINTS_TYPE}")
            keypoint_topics = list(topics)
        else:
            keypoint_topics = sorted(t for t, c in by_topic.items()
                                     if c.msgtype == KEYPOINTS_TYPE and t.endswith("/keypoints"))
        if not keypoint_topics:
            raise BagError(f"{path}: no /<camera>/keypoints topic of type {KEYPOINTS_TYPE} "
                           f"(topics: {sorted(by_topic)}); name them with --topics")
        camera_of = {t: _camera_of_topic(t) for t in keypoint_topics}
        cameras = list(camera_of.values())
        if rig is not None:
            missing = [c for c in cameras if c not in rig.names]
            if missing:
                raise BagError(f"{path}: cameras {missing} of the keypoint topics are not in the calibration "
                               f"(it has {rig.names})")
            source = StaticRigSource(rig.subset(cameras))
        else:
            # The whole recording stays in the buffer (every frame is posed once all is read), so no sample is
            # ever far enough behind another to look like a jump of time.
            cache_ns = max(int(reader.duration), 1) + 1_000_000_000
            source = TfRigSource(cameras, world_frame, TransformBuffer(cache_ns=cache_ns, jump_ns=cache_ns))
        info_topic = {f"/{c}/camera_info": c for c in cameras}
        # The node's checks with its defaults (io/validation.py); the stamp is checked against the time the message
        # was logged, which is what the node's clock says when a message arrives.
        validator = KeypointValidator(ValidationConfig(
            skeleton_name, num_joints, image_sizes=rig.subset(cameras).sizes if rig is not None else None))
        wanted = [by_topic[t] for t in keypoint_topics]
        if rig is None:
            wanted += [c for t, c in by_topic.items() if t in info_topic or t in ("/tf", "/tf_static")]

        synchronizer: PartialViewSynchronizer = PartialViewSynchronizer(
            cameras, slop=sync.slop, max_wait=sync.max_wait, min_views=min(sync.min_views, len(cameras)),
            max_pending=sync.max_pending, dead_after=sync.camera_timeout,
            jump_threshold=max(sync.clock_jump_threshold, 2.0 * sync.slop + 1e-3))
        counts: dict[str, int] = {}
        frames: list[SyncedFrame] = []
        info_errors: dict[str, str] = {}  # camera -> why its CameraInfo was refused (the first time)

        def count(key: str, amount: int = 1) -> None:
            counts[key] = counts.get(key, 0) + amount

        for connection, log_ns, raw in _messages(reader, wanted, path):
            now = log_ns * 1e-9
            frames += synchronizer.poll(now)
            topic = connection.topic
            message_type = TFMessage if topic in ("/tf", "/tf_static") else (
                CameraInfo if topic in info_topic else Keypoints2DArray)
            try:
                msg = deserialize_message(raw, message_type)
            except Exception:  # rclpy raises RMWError (and others) on bytes that are not a valid CDR message
                count("rejected.undecodable")
                continue
            if topic in ("/tf", "/tf_static"):
                refused = add_tf_message(source.buffer, msg, topic == "/tf_static")
                if refused:
                    count("rejected.transform", refused)
                continue
            if topic in info_topic:
                camera = info_topic[topic]
                if source.intrinsics(camera) is None:
                    try:
                        intrinsics = intrinsics_from_camera_info(msg, f"{path} {topic}")
                    except CalibrationError as error:  # e.g. K = 0 from a driver not calibrated yet: the next one
                        count("rejected.camera_info")
                        info_errors.setdefault(camera, str(error))
                        continue
                    source.set_intrinsics(camera, intrinsics)
                    validator.set_image_size(cameras.index(camera), intrinsics.size)
                continue
            stamp_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            rejected = validator.check_header(stamp_ns, log_ns, msg.header.frame_id, msg.skeleton)
            if rejected is not None:
                count(f"rejected.{rejected}")
                continue
            check = validator.check_people([(p.x, p.y, p.confidence) for p in msg.people],
                                           cameras.index(camera_of[topic]))
            for reason, amount in check.person_rejections.items():
                count(f"rejected_people.{reason}", amount)
            if check.rejected is not None:
                count(f"rejected.{check.rejected}")
                continue
            if len(check.keep) != len(msg.people):
                msg.people = [msg.people[i] for i in check.keep]
            parsed = parse_keypoints(msg, skeleton_name, num_joints)
            if parsed.rejected:
                count(f"rejected.{parsed.rejected}")
                continue
            kept = parsed.people[:1] if people == "subject" else parsed.people
            frames += synchronizer.add(camera_of[topic], stamp_ns * 1e-9, (stamp_ns, kept, msg.header.frame_id), now,
                                       check.quality)
        frames += synchronizer.poll(math.inf)
    finally:
        reader.close()
    counts.update({f"dropped.{reason}": n for reason, n in synchronizer.drops.items() if n})
    if not frames:
        raise BagError(f"{path}: no frame with at least {synchronizer.min_views} views on {keypoint_topics}")
    if rig is None and all(source.intrinsics(c) is None for c in cameras):
        if info_errors:
            raise BagError(f"{path}: no usable camera_info for any camera ({'; '.join(info_errors.values())}); "
                           "pass --calibration")
        raise BagError(f"{path}: no calibration given and no /<camera>/camera_info in the recording "
                       f"(looked for {sorted(info_topic)}); pass --calibration")
    stamps = [next(ns for c, (ns, _, _) in frame.views.items() if frame.stamps[c] == frame.stamp) for frame in frames]
    try:
        timeline = frame_timeline(np.asarray(stamps, dtype=np.int64))
    except ValueError as error:
        raise BagError(f"{path}: {error}; fuse each part on its own") from None
    if timeline.missing:
        count("missing_frames", timeline.missing)
    frame_rigs = [source.rig_for({c: ViewRef(frame_id, ns) for c, (ns, _, frame_id) in frame.views.items()})
                  for frame in frames]
    rigs, moving, posed = _pose_frames(frame_rigs, count)

    slots = max((len(kp) for frame in frames for _, kp, _ in frame.views.values()), default=1)
    several = people == "all" or (people == "auto" and slots > 1)
    keypoints = np.full((len(cameras), len(frames), max(slots, 1), num_joints, 3), np.nan)
    keypoints[..., 2] = 0.0
    index = {c: i for i, c in enumerate(cameras)}
    for f, frame in enumerate(frames):
        for camera, (_, kp, _) in frame.views.items():
            if posed[f][camera]:
                keypoints[index[camera], f, :len(kp)] = kp
    if not several:
        keypoints = keypoints[:, :, 0]
    keypoints = timeline.spread(keypoints, np.nan, axis=1)
    keypoints[..., 2] = np.nan_to_num(keypoints[..., 2])
    owner = np.searchsorted(timeline.slots, np.arange(timeline.num_frames), side="right") - 1
    return BagFrames(cameras, keypoints, timeline, [rigs[i] for i in owner], moving, counts, skeleton_name)


def _same_pose(a: Camera, b: Camera) -> bool:
    return bool(np.allclose(a.R, b.R, atol=1e-9) and np.allclose(a.t, b.t, atol=1e-9))


def _pose_frames(frame_rigs: list, count) -> tuple[list[CameraRig], bool, list[dict[str, bool]]]:
    """The rig of each synchronized frame, whether the cameras move, and which views are posed.

    Cameras are static when every view that got a pose got the same one (views without one say nothing about it:
    a recording's first keypoints may come before its first /tf). Static cameras give every frame one rig, also to
    the views stamped before the first (or after the last) transform of their camera. Otherwise a view without a
    pose of its own is left out. Returns ``(rigs [N], moving, posed[f][camera])``.
    """
    names = frame_rigs[0].rig.names
    first: dict[str, Camera] = {}
    moving = False
    for frame_rig in frame_rigs:
        for camera in frame_rig.rig:
            if camera.name in frame_rig.missing:
                continue
            known = first.setdefault(camera.name, camera)
            moving = moving or not _same_pose(known, camera)
    static_rig = None if moving else CameraRig([first.get(n, frame_rigs[0].rig[i]) for i, n in enumerate(names)])
    rigs, posed = [], []
    for frame_rig in frame_rigs:
        usable = {}
        for name in names:
            reason = frame_rig.missing.get(name)
            # A view stamped outside the camera's received transforms: the pose a static camera always has.
            usable[name] = reason is None or (static_rig is not None and reason in ("past", "future") and name in first)
            if reason is not None:
                count("tf.static_pose_used" if usable[name] else f"tf.{reason}")
        posed.append(usable)
        rigs.append(static_rig if static_rig is not None else frame_rig.rig)
    return rigs, moving, posed


def write_result_bag(path: str | Path, stamps_ns: np.ndarray, skeleton_name: str, joint_names: list[str],
                     joints: np.ndarray, confidence: np.ndarray, covariance: np.ndarray, num_views: np.ndarray,
                     reprojection_error: np.ndarray, bones: np.ndarray, world_frame: str = "world",
                     storage: str = "mcap") -> Path:
    """Write fused frames as a rosbag2 bag; returns the bag folder.

    ``path`` ending in ``.mcap`` names the bag's storage file: ``run.mcap`` writes the folder ``run/`` holding
    ``run.mcap`` and ``metadata.yaml`` (what ``ros2 bag record -o run`` makes). Every frame gets one
    ``Skeleton3DArray`` (empty when nothing was estimated), its joints' TF and markers, at its capture stamp.

    Arrays: ``joints [F, J, 3]``, ``confidence [F, J]``, ``covariance [F, J, 3, 3]``, ``num_views [F, J]``,
    ``reprojection_error [F, J]``, ``stamps_ns [F]``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from skelsplat_ros.fusion.result import FusionResult
    from skelsplat_ros.tracking import PersonEstimate

    path = Path(path)
    folder = path.with_suffix("") if path.suffix == ".mcap" else path
    if folder.exists():
        raise BagError(f"{folder}: exists; rosbag2 bags are not overwritten")
    folder.parent.mkdir(parents=True, exist_ok=True)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    typestore = typestore_with_our_messages()
    with Writer(folder, version=9, storage_plugin=plugin) as writer:
        skeletons = writer.add_connection("/skeletons", "skelsplat_ros/msg/Skeleton3DArray", typestore=typestore)
        tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=typestore)
        markers = writer.add_connection("/skeleton_markers", "visualization_msgs/msg/MarkerArray",
                                        typestore=typestore)
        options = OutputOptions(skeleton_name, bones)
        result = FusionResult(joints, confidence, covariance, num_views, reprojection_error, list(joint_names))
        for f, stamp_ns in enumerate(np.asarray(stamps_ns, dtype=np.int64).tolist()):
            header = Header(stamp=ns_to_stamp(stamp_ns), frame_id=world_frame)
            # One person, id 0; no skeleton when nothing was estimated.
            out = frame_messages(header, [PersonEstimate(0, result.frame(f))], options)
            writer.write(skeletons, stamp_ns, serialize_message(out.skeletons))
            if out.transforms:
                writer.write(tf, stamp_ns, serialize_message(TFMessage(transforms=out.transforms)))
            if out.markers:
                writer.write(markers, stamp_ns, serialize_message(MarkerArray(markers=out.markers)))
    return folder
