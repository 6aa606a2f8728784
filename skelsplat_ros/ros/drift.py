"""The fusion node's drift watch and opt-in recalibration: a thin adapter over
:mod:`skelsplat_ros.calibration.drift` (logging, counters, ``/diagnostics`` values, the background thread and the
published correction).

A correction is used at once (the node's rig source is wrapped in a :class:`CorrectedRigSource`) and published:
on the calibration-file route as the camera's static TF (``world_frame`` -> the camera's optical frame, as its
keypoints name it, on ``/tf_static``), and as a calibration TOML when ``recalibrate_output`` is set. On the
CameraInfo + TF route another node owns the camera's TF: the correction is logged (pose and offset) for the user to
apply there, and used by this node. Recalibration assumes static cameras: the latest frame's rig is the start.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from tf2_msgs.msg import TFMessage

from skelsplat_ros.calibration.drift import (
    CorrectedRigSource, Correction, DriftConfig, DriftWatch, RecalibrationConfig, Recalibrator,
)
from skelsplat_ros.calibration.refine import rig_change
from skelsplat_ros.geometry.calibration import save_calibration
from skelsplat_ros.geometry.camera import Camera, CameraRig
from skelsplat_ros.geometry.rig_source import RigSource
from skelsplat_ros.skeleton.models import Skeleton

__all__ = ["DriftMonitor"]


def _quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """``(x, y, z, w)`` of a rotation matrix (w >= 0)."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return (float(x), float(y), float(z), float(w)) if w >= 0 else (float(-x), float(-y), float(-z), float(-w))


class DriftMonitor:
    """Drift watch and recalibration of one fusion node (parameters ``drift_*`` and ``recalibrate*``)."""

    def __init__(self, node: Node, params: dict[str, Any], cameras: list[str], skeleton: Skeleton,
                 source: RigSource) -> None:
        self._node = node
        self._world = params["world_frame"]
        self.enabled = bool(params["drift_watch"])
        self.watch = DriftWatch(cameras, skeleton, DriftConfig(threshold_px=float(params["drift_threshold"])))
        self.source = CorrectedRigSource(source)
        self.recalibrator = Recalibrator(skeleton, RecalibrationConfig(collect=float(params["recalibrate_window"]))) \
            if params["recalibrate"] else None
        self._output = params["recalibrate_output"]
        self._publish_tf = bool(params["calibration_file"])  # the TF route's camera frames belong to another node
        self._lock = threading.Lock()  # the counters: fusion, recalibration and executor threads
        self._counts: collections.Counter[str] = collections.Counter(
            dict.fromkeys(("drift.found", "recalibration.corrections", "recalibration.refused"), 0))
        self._frame_ids: dict[str, str] = {}
        self._published: dict[str, TransformStamped] = {}
        self._busy = threading.Event()
        self._thread: threading.Thread | None = None
        self._tf_pub = None
        if self.recalibrator is not None and self._publish_tf:
            static = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                                durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
            self._tf_pub = node.create_publisher(TFMessage, "/tf_static", static)

    # --- fusion thread ---------------------------------------------------------------------------------------------

    def observe(self, frame) -> None:
        """A frame observer (``FusionNode.add_frame_observer``): measure, name moved cameras, collect for and start
        a recalibration. ``frame`` is the node's ``FusedFrame``."""
        if not self.enabled:
            return
        self._frame_ids.update(frame.frame_ids)
        stamp, rig, detections = frame.stamp_ns * 1e-9, frame.rig, frame.detections
        for camera in self.watch.observe(stamp, rig, detections, frame.step):
            self._count("drift.found")
            figure = self.watch.figures()[camera]
            self._node.get_logger().warning(
                f"camera {camera} moved: its keypoints are {figure:.0f} px (median) from where the other cameras "
                f"put the people{'; recalibrating it' if self.recalibrator else ' (recalibrate is off)'}")
        recalibrator = self.recalibrator
        if recalibrator is None or self._busy.is_set():
            return
        if recalibrator.camera is None:
            moved = self.watch.moved()
            if moved:
                camera = min(moved, key=moved.get)
                recalibrator.start(camera, max(stamp, moved[camera]))
        if recalibrator.add(stamp, rig, detections):
            self._busy.set()
            self._thread = threading.Thread(target=self._refine, name="skelsplat_recalibrate", daemon=True)
            self._thread.start()

    def _count(self, key: str) -> int:
        with self._lock:
            self._counts[key] += 1
            return self._counts[key]

    # --- background thread -----------------------------------------------------------------------------------------

    def _refine(self) -> None:
        try:
            correction = self.recalibrator.refine()
            if correction is not None:
                self._apply(correction)
        except Exception as error:  # a refinement must never take the node down
            self._count("recalibration.refused")
            self._node.get_logger().error(f"recalibration failed: {error!r}")
        finally:
            self._busy.clear()

    def _apply(self, correction: Correction) -> None:
        logger = self._node.get_logger()
        camera = correction.camera
        report = next(c for c in correction.result.cameras if c.name == camera)
        if not correction.accepted:
            self._count("recalibration.refused")
            logger.warning(f"recalibration of {camera} refused, its pose is unchanged (trying again with new "
                           f"frames while it stays moved): {'; '.join(correction.result.reasons)}")
            return
        old = self.source.source.rig_for({}).rig[self.source.cameras.index(camera)]
        self.source.correct(old, correction.pose)
        self.watch.reset(camera)
        count = self._count("recalibration.corrections")
        rotation, translation = rig_change(old, correction.pose)
        centre = correction.pose.centre
        logger.info(
            f"camera {camera} recalibrated (correction {count}): turned "
            f"{rotation:.2f} deg and moved {100 * translation:.1f} cm from its calibrated pose; reprojection median "
            f"{report.before:.1f} -> {report.after:.1f} px, inliers {report.inliers:.2f}; centre in "
            f"{self._world!r} ({centre[0]:.3f}, {centre[1]:.3f}, {centre[2]:.3f}) m, quaternion (x y z w) "
            f"{' '.join(f'{q:.5f}' for q in _quaternion(correction.pose.R.T))}")
        self._publish(correction.pose)
        if self._output:
            self._write()

    def _publish(self, camera: Camera) -> None:
        frame_id = self._frame_ids.get(camera.name)
        if self._tf_pub is None or not frame_id:
            return
        transform = TransformStamped()
        transform.header.stamp = self._node.get_clock().now().to_msg()
        transform.header.frame_id = self._world
        transform.child_frame_id = frame_id
        centre = camera.centre  # world_T_camera: the camera's centre and its axes in the world
        transform.transform.translation.x, transform.transform.translation.y, transform.transform.translation.z = (
            float(centre[0]), float(centre[1]), float(centre[2]))
        q = transform.transform.rotation
        q.x, q.y, q.z, q.w = _quaternion(camera.R.T)
        self._published[camera.name] = transform
        self._tf_pub.publish(TFMessage(transforms=list(self._published.values())))  # latched: all corrections

    def _write(self) -> None:
        """The corrected rig as a calibration TOML, replaced atomically (a reader never sees half a file)."""
        rig = self.source.rig_for({}).rig
        partial = f"{self._output}.partial"
        with self._lock:
            count = self._counts["recalibration.corrections"]
        save_calibration(rig, partial, metadata={"adjusted": True, "refined_by": "skelsplat_node recalibrate",
                                                 "corrections": count})
        os.replace(partial, self._output)
        self._node.get_logger().info(f"corrected rig written to {self._output}")

    # --- executor thread -------------------------------------------------------------------------------------------

    def values(self) -> dict[str, str]:
        """The ``/diagnostics`` key/values."""
        if not self.enabled:
            return {}
        values = {f"drift.{camera}_px": f"{figure:.1f}" for camera, figure in self.watch.figures().items()}
        values["drift.moved"] = " ".join(sorted(self.watch.moved()))
        with self._lock:
            values.update({key: str(count) for key, count in sorted(self._counts.items())})
        if self.recalibrator is not None:
            camera = self.recalibrator.camera
            values["recalibration.state"] = ("refining" if self._busy.is_set() else
                                             f"collecting {camera}" if camera else "idle")
        return values

    def warning(self) -> str:
        """A one-line warning while a camera is found moved, else ''."""
        moved = self.watch.moved() if self.enabled else {}
        if not moved:
            return ""
        figures = self.watch.figures()
        return "camera moved: " + ", ".join(f"{c} ({figures[c]:.0f} px from the others)" for c in sorted(moved))

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=10.0)
