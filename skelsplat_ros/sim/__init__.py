"""Simulated ground truth: procedural human motion, synthetic camera rigs and detector-like 2D keypoints.

This package is the ground truth of the benchmark, the source of the simulated ROS camera rig and of many tests, so
it is pure numpy (no ROS, no torch), seeded (same arguments, same output) and vectorised over frames.

World frame: REP-103, Z up, metres. The person lives within about 2 m of the origin and stands on ``z = 0``.

Pieces:

* :func:`generate_motion` (``motion.py``) -- one person of seeded random anthropometry (1.55-1.95 m), animated by a kinematic tree
  with constant bone lengths: planted feet placed by a footstep planner, two-link leg IK, a rigid trunk (so that
  every "bone" of every built-in skeleton, shoulder-hip and neck-pelvis included, keeps its length), 4-DOF arms and
  a head on a neck pivot. Motions: ``walk``, ``reach``, ``crouch``, ``turn`` and ``mixed``.
* :func:`make_rig` (``rigs.py``) -- ``surround`` (8-camera mocap ring), ``lab`` (4 room corners) and ``robot`` (3 cameras with a
  narrow baseline on a robot facing the person), optionally with OpenCV lens distortion; :func:`make_ring_rig`, a
  ring of any number of cameras on three tiers; :func:`disturb_rig`, a rough calibration of a rig (cameras
  turned and moved by seeded amounts).
* :class:`NoiseModel` and :func:`simulate_detections` (``detector.py``) -- a detector in pixel space: heavy-tailed, temporally
  correlated jitter that scales with the person's size in the image, per-view systematic bias, self-occlusion by
  the torso and head, confident outliers, left/right swaps of whole views, occluded limb segments, dropped views,
  off-image joints and confidences that follow the error.
* :func:`make_moving_robot_scenario` (``moving.py``) -- a robot with a stereo head circling the person plus two wall
  cameras: per-frame camera poses, as ``/tf`` would carry them.
* :class:`Scenario` and :func:`make_scenario` (``scenarios.py``) -- all of it in one call.

It sits beside the runtime: the CLI's ``fuse`` and the fusion node never import it.
"""

from .detector import NOISE_PRESETS, DetectionInfo, NoiseModel, simulate_detections
from .moving import MovingRigScenario, make_moving_robot_scenario
from .motion import MOTION_KINDS, generate_motion, motion_joint_names
from .rigs import RIG_KINDS, disturb_rig, make_rig, make_ring_rig
from .scenarios import Scenario, make_scenario

__all__ = ["RIG_KINDS", "MOTION_KINDS", "NOISE_PRESETS", "generate_motion", "motion_joint_names", "make_rig",
           "make_ring_rig", "disturb_rig", "NoiseModel", "DetectionInfo", "simulate_detections", "Scenario",
           "make_scenario", "MovingRigScenario", "make_moving_robot_scenario"]
