"""Where the cameras are for one synchronized frame: the per-frame rig a fusion engine is given.

Two sources behind one small interface, :meth:`RigSource.rig_for`:

- :class:`StaticRigSource`: a calibration file; the same rig for every frame.
- :class:`TfRigSource`: intrinsics from each camera's ``CameraInfo`` and extrinsics from a
  :class:`~skelsplat_ros.geometry.transforms.TransformBuffer`, looked up at **each view's own capture stamp**
  (``world_frame <- frame_id`` of that view's keypoints message). Static and moving cameras alike: a camera on a
  moving robot gets the pose it had when its image was taken, not the newest one. A view whose pose is not known
  exactly (TF not received within the wait bound, older than the cache, no chain to the world, no CameraInfo) is
  dropped from the frame with its reason; its camera is never given a newer or older pose instead.

The rig always has every camera of the source, in its order (a fusion engine is built for a fixed view set); a
camera without a pose this frame keeps its last known pose (or a placeholder before the first) and is listed in
``FrameRig.missing``: the caller must blank its keypoints, so no computation uses that pose.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .calibration import CameraInfoIntrinsics
from .camera import Camera, CameraRig
from .transforms import TransformBuffer, TransformError

__all__ = ["FrameRig", "RigSource", "StaticRigSource", "TfRigSource", "ViewRef"]


@dataclass(frozen=True)
class ViewRef:
    """One view of a frame: the optical ``frame_id`` its keypoints were stamped in and the capture stamp (ns)."""

    frame_id: str
    stamp_ns: int


@dataclass
class FrameRig:
    """The rig of one frame.

    Attributes:
        rig: every camera of the source, in order.
        missing: camera -> reason (``no_camera_info``, ``no_frame_id``, or a :class:`TransformError` reason) for the
            views that must not be used this frame.
    """

    rig: CameraRig
    missing: dict[str, str] = field(default_factory=dict)


class RigSource(Protocol):
    """What the node (or an offline replay) asks once per synchronized frame."""

    cameras: list[str]

    def rig_for(self, views: dict[str, ViewRef], timeout: float = 0.0) -> FrameRig:
        """The rig for the views present in a frame, waiting up to ``timeout`` s for poses not received yet."""
        ...


class StaticRigSource:
    """A fixed rig (calibration file)."""

    def __init__(self, rig: CameraRig) -> None:
        self.rig = rig
        self.cameras = rig.names

    def rig_for(self, views: dict[str, ViewRef], timeout: float = 0.0) -> FrameRig:
        return FrameRig(self.rig)


_PLACEHOLDER_K = np.array([[1000.0, 0.0, 640.0], [0.0, 1000.0, 360.0], [0.0, 0.0, 1.0]])


class TfRigSource:
    """Cameras from CameraInfo + TF.

    Args:
        cameras: camera names, in view order.
        world_frame: the frame the skeletons are fused and published in.
        buffer: the transform tree (fed by a ``/tf`` + ``/tf_static`` listener, or from a recording).
    """

    def __init__(self, cameras: list[str], world_frame: str, buffer: TransformBuffer) -> None:
        self.cameras = list(cameras)
        self.world_frame = world_frame
        self.buffer = buffer
        self._intrinsics: dict[str, CameraInfoIntrinsics] = {}
        self._last: dict[str, Camera] = {}
        self._lock = threading.Lock()

    def set_intrinsics(self, camera: str, intrinsics: CameraInfoIntrinsics) -> None:
        with self._lock:
            self._intrinsics[camera] = intrinsics

    def intrinsics(self, camera: str) -> CameraInfoIntrinsics | None:
        with self._lock:
            return self._intrinsics.get(camera)

    def camera_at(self, camera: str, view: ViewRef, timeout: float = 0.0) -> Camera:
        """The camera posed at ``view.stamp_ns``; :class:`TransformError` (or ``LookupError`` for missing
        intrinsics / frame id) when it cannot be known exactly within ``timeout`` seconds."""
        intrinsics = self.intrinsics(camera)
        if intrinsics is None:
            raise LookupError("no_camera_info")
        frame_id = view.frame_id or intrinsics.frame_id
        if not frame_id:
            raise LookupError("no_frame_id")
        # camera_T_world maps world points into the optical frame: exactly the world-to-camera (R, t).
        pose = self.buffer.wait_for(frame_id, self.world_frame, view.stamp_ns, timeout)
        return intrinsics.camera(camera, pose.rotation, pose.translation)

    def rig_for(self, views: dict[str, ViewRef], timeout: float = 0.0) -> FrameRig:
        deadline = time.monotonic() + max(timeout, 0.0)
        missing: dict[str, str] = {}
        cameras: list[Camera] = []
        for name in self.cameras:
            view = views.get(name)
            camera = None
            if view is not None:
                try:
                    camera = self.camera_at(name, view, deadline - time.monotonic())
                except TransformError as error:
                    missing[name] = error.reason
                except LookupError as error:
                    missing[name] = str(error.args[0])
            if camera is not None:
                self._last[name] = camera
            else:
                camera = self._last.get(name) or self._placeholder(name)
            cameras.append(camera)
        return FrameRig(CameraRig(cameras), missing)

    def _placeholder(self, name: str) -> Camera:
        intrinsics = self.intrinsics(name)
        if intrinsics is not None:
            return intrinsics.camera(name, np.eye(3), np.zeros(3))
        return Camera(name, _PLACEHOLDER_K, np.eye(3), np.zeros(3), (1280, 720))
