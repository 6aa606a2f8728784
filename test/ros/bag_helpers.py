"""Writing test recordings with rosbags (the way ``ros2 bag record`` lays them out), shared by the bag tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from skelsplat_ros.geometry.calibration import camera_info_fields
from skelsplat_ros.geometry.camera import CameraRig
from skelsplat_ros.ros.bag import typestore_with_our_messages
from skelsplat_ros.ros.conversions import keypoints_msg, ns_to_stamp
from skelsplat_ros.ros.rig_publisher import optical_frame, static_transforms

START_NS = 1_700_000_000_000_000_000
REPO = Path(__file__).resolve().parents[2]


def play_process(path: Path, *options: str) -> subprocess.Popen:
    """``skelsplat play PATH OPTIONS`` started in a process of its own (as a user runs it), its output piped."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "skelsplat_ros.cli", "play", str(path), *options], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def play_bag(path: Path) -> subprocess.CompletedProcess:
    """``skelsplat play`` of the bag to its end (it waits for the node's subscriptions); fails the test on an
    error."""
    process = play_process(path)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def write_keypoints_bag(path: Path, cameras: list[str], keypoints: np.ndarray, fps: float, skeleton: str,
                        storage: str = "mcap", rig: CameraRig | None = None, skip: set[tuple[int, int]] = frozenset(),
                        static_tf: list | None = None, dynamic_tf=None, latency: float = 0.0,
                        stamps: np.ndarray | None = None, info_fields=None,
                        log_ns: np.ndarray | None = None) -> np.ndarray:
    """Write ``keypoints [V, F, J, 3]`` (or ``[V, F, P, J, 3]``, several people per message) on
    ``/<camera>/keypoints``; with ``rig`` also ``/<camera>/camera_info`` (``info_fields(f, camera)``: its fields,
    default the camera's) and ``/tf_static`` (``static_tf``, default the rig's cameras under ``world``);
    ``dynamic_tf(f, stamp)``: the TransformStamped list for ``/tf`` at frame ``f``.
    ``skip``: ``(view, frame)`` messages left out (lost). Messages are logged ``latency`` s after capture.
    ``stamps``: capture stamps ``[F]`` (ns), default ``START_NS + f / fps``; ``log_ns``: the recorder's clock at
    each frame ``[F]`` (ns; a clock of its own, e.g. one that does not jump back with the stamps), default the
    stamps. Returns the capture stamps."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    typestore = typestore_with_our_messages()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    num_frames = keypoints.shape[1]
    if stamps is None:
        stamps = START_NS + np.round(np.arange(num_frames) / fps * 1e9).astype(np.int64)
    stamps = np.asarray(stamps, dtype=np.int64)
    info_fields = info_fields or (lambda f, camera: camera_info_fields(camera))
    logged = stamps if log_ns is None else np.asarray(log_ns, dtype=np.int64)
    delay = int(latency * 1e9)
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        topics = {c: writer.add_connection(f"/{c}/keypoints", "skelsplat_ros/msg/Keypoints2DArray",
                                           typestore=typestore) for c in cameras}
        if rig is not None:
            static = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=typestore)
            if static_tf is None:
                static_tf = static_transforms(rig, "world", "", ns_to_stamp(int(stamps[0])))
            writer.write(static, int(logged[0]) - 1, serialize_message(TFMessage(transforms=static_tf)))
            infos = {c.name: writer.add_connection(f"/{c.name}/camera_info", "sensor_msgs/msg/CameraInfo",
                                                   typestore=typestore) for c in rig}
        if dynamic_tf is not None:
            tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=typestore)
        for f, (stamp, log) in enumerate(zip(stamps.tolist(), logged.tolist())):
            if dynamic_tf is not None:
                writer.write(tf, log, serialize_message(TFMessage(transforms=dynamic_tf(f, ns_to_stamp(stamp)))))
            if rig is not None:
                for camera in rig:
                    info = CameraInfo(header=Header(stamp=ns_to_stamp(stamp), frame_id=optical_frame("", camera.name)),
                                      **info_fields(f, camera))
                    writer.write(infos[camera.name], log, serialize_message(info))
            for v, camera in enumerate(cameras):
                if (v, f) in skip:
                    continue
                msg = keypoints_msg(keypoints[v, f], ns_to_stamp(stamp), optical_frame("", camera), skeleton)
                writer.write(topics[camera], log + delay + v * 1000, serialize_message(msg))
    return stamps
