"""``skelsplat_rig_publisher``: a calibration TOML as ROS sees cameras, ``/tf_static`` + ``<camera>/camera_info``.

With it the two calibration routes are interchangeable (the fusion node without ``calibration_file`` reads what
this node publishes) and a TOML rig shows in rviz (TF display: ``world_frame -> <prefix><camera>_optical``).

- ``/tf_static``: one transform per camera, ``world_frame -> <frame_prefix><camera>_optical``, the inverse of the
  calibration's world-to-camera ``(R, t)``; transient-local, so late subscribers get it.
- ``<camera>/camera_info``: ``plumb_bob`` (or ``rational_polynomial``) from the calibration, at ``rate`` Hz (camera
  drivers publish it with every image; subscribers, volatile ones included, get it within one period).
"""

from __future__ import annotations

import sys
from typing import Any

from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from skelsplat_ros.geometry.calibration import camera_info_fields, load_calibration_metres
from skelsplat_ros.geometry.camera import CameraRig
from skelsplat_ros.geometry.transforms import Transform as RigidTransform

from .params import RIG_PUBLISHER_PARAMS, StartupError, declare, spin_node

NODE_NAME = "skelsplat_rig_publisher"

STATIC_BROADCAST_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                                  durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
"""tf2_ros.StaticTransformBroadcaster's QoS."""


def optical_frame(prefix: str, camera: str) -> str:
    return f"{prefix}{camera}_optical"


def static_transforms(rig: CameraRig, world_frame: str, prefix: str, stamp) -> list[TransformStamped]:
    """``world_frame -> <prefix><camera>_optical`` for every camera (``world_T_camera`` = inverse of ``(R, t)``)."""
    transforms = []
    for camera in rig:
        world_T_camera = RigidTransform(camera.R, camera.t).inverse()
        x, y, z = world_T_camera.translation
        qx, qy, qz, qw = world_T_camera.quaternion
        transforms.append(TransformStamped(
            header=Header(stamp=stamp, frame_id=world_frame), child_frame_id=optical_frame(prefix, camera.name),
            transform=Transform(translation=Vector3(x=x, y=y, z=z), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw))))
    return transforms


def camera_info_msg(rig: CameraRig, index: int, frame_id: str, stamp) -> CameraInfo:
    return CameraInfo(header=Header(stamp=stamp, frame_id=frame_id), **camera_info_fields(rig[index]))


class RigPublisherNode(Node):
    """Publishes a calibration TOML rig. Raises :class:`StartupError` for an unusable configuration."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        p = declare(self, RIG_PUBLISHER_PARAMS)
        self.params = p
        if not p["calibration_file"]:
            raise StartupError("parameter calibration_file is not set (the calibration TOML to publish)")
        try:
            self.rig, units = load_calibration_metres(p["calibration_file"], p["calibration_units"])
        except FileNotFoundError:
            raise StartupError(f"calibration file not found: {p['calibration_file']}") from None
        except (ValueError, OSError) as error:
            raise StartupError(f"cannot read calibration {p['calibration_file']}: {error}") from None
        self.static_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_BROADCAST_QOS)
        self.static_pub.publish(TFMessage(transforms=static_transforms(
            self.rig, p["world_frame"], p["frame_prefix"], self.get_clock().now().to_msg())))
        self.info_pubs = [self.create_publisher(CameraInfo, f"{camera}/camera_info", QoSProfile(depth=1))
                          for camera in self.rig.names]
        self.create_timer(1.0 / p["rate"], self._publish_info)
        self.get_logger().info(f"publishing {len(self.rig)} cameras {self.rig.names} of {p['calibration_file']} "
                               f"(read in {units}) under {p['world_frame']!r}")

    def _publish_info(self) -> None:
        stamp = self.get_clock().now().to_msg()
        for index, (camera, publisher) in enumerate(zip(self.rig.names, self.info_pubs)):
            frame_id = optical_frame(self.params["frame_prefix"], camera)
            publisher.publish(camera_info_msg(self.rig, index, frame_id, stamp))


def main(args: list[str] | None = None) -> int:
    """Console script ``skelsplat_rig_publisher``; returns the exit status (1 for a bad configuration)."""
    return spin_node(RigPublisherNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
