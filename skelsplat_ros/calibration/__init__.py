"""Self-calibration from people (no ROS): refine a rig's extrinsics from the people it watches, offline
(:func:`self_calibrate`, ``skelsplat calibrate``) and live (:class:`DriftWatch`, :class:`Recalibrator`, the node's
drift watch). It sits above ``tracking/``: live, its evidence is the tracker's assignments, and corrected poses
enter the fusion through a :class:`~skelsplat_ros.geometry.rig_source.RigSource`."""

from .refine import CalibrationConfig, CalibrationResult, CameraReport, report_lines, self_calibrate
from .world import WorldAnchor

__all__ = ["CalibrationConfig", "CalibrationResult", "CameraReport", "WorldAnchor", "report_lines", "self_calibrate"]
