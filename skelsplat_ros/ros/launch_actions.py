"""What the launch files start, as plain data: the launch files turn these into ``launch_ros`` ``Node`` actions, and
the tests (``launch`` is not on PyPI) turn them into the command lines ``ros2 launch`` would run.

``skelsplat.launch.py`` arguments (all strings, as launch passes them):

- ``params_file``: the node's YAML (default: the package's ``config/skelsplat.yaml``);
- ``calibration``: a calibration TOML; applied only when given, over the params file's ``calibration_file``;
- ``calibration_from_ros``: ``true`` = ignore any TOML and take the cameras from ``camera_info`` + TF;
- ``publish_rig``: ``true`` = also start ``skelsplat_rig_publisher`` with ``calibration`` (which is then required),
  and let the node read the rig back from ``camera_info`` + TF (both routes at once; the rig shows in rviz);
- ``namespace``, ``use_sim_time`` (``true`` for a bag replayed with ``skelsplat play``), ``log_level``.

``detect.launch.py`` (cameras to 3D skeletons: ``skelsplat_detector`` and ``skelsplat_node`` on ``coco17``):
``cameras`` (comma-separated; images on ``/<camera>/image_raw``), ``calibration`` (TOML; empty: ``camera_info`` +
TF), ``backend``, ``compressed``, ``params_file`` (both nodes' YAML, default ``config/detect.yaml``), ``namespace``,
``use_sim_time``, ``log_level``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NodeAction", "LaunchArgument", "SKELSPLAT_ARGUMENTS", "DEMO_ARGUMENTS", "DETECT_ARGUMENTS",
           "skelsplat_actions", "demo_actions", "detect_actions"]

PACKAGE = "skelsplat_ros"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


@dataclass
class NodeAction:
    """One node of a launch file: the keyword arguments of ``launch_ros.actions.Node``."""

    executable: str
    name: str
    parameters: list[Any] = field(default_factory=list)  # YAML file paths and dicts, later ones win
    namespace: str = ""
    ros_arguments: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    package: str = PACKAGE
    output: str = "screen"

    def launch_kwargs(self) -> dict[str, Any]:
        return {"package": self.package, "executable": self.executable, "name": self.name,
                "namespace": self.namespace, "parameters": self.parameters, "ros_arguments": self.ros_arguments,
                "arguments": self.arguments, "output": self.output}

    def command(self) -> list[str]:
        """The command line ``ros2 launch`` runs for this action (parameter dicts as ``-p name:=value``)."""
        ros_args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            ros_args += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for entry in self.parameters:
            if isinstance(entry, dict):
                for key, value in entry.items():
                    # The value is YAML on the command line: an empty string must be written as ''.
                    text = str(value).lower() if isinstance(value, bool) else (str(value) or "''")
                    ros_args += ["-p", f"{key}:={text}"]
            else:
                ros_args += ["--params-file", str(entry)]
        return [self.executable, *self.arguments, *ros_args, *self.ros_arguments]


SKELSPLAT_ARGUMENTS = (
    LaunchArgument("params_file", "", "skelsplat_node parameters (YAML); empty: the package's config/skelsplat.yaml"),
    LaunchArgument("calibration", "", "calibration TOML; applied only when given (else the params file's)"),
    LaunchArgument("calibration_from_ros", "false", "true: cameras from <camera>/camera_info + TF, no TOML"),
    LaunchArgument("publish_rig", "false", "true: also publish `calibration` as /tf_static + camera_info and fuse "
                                           "from those"),
    LaunchArgument("namespace", "", "namespace of the nodes (their relative topics follow it)"),
    LaunchArgument("use_sim_time", "false", "true: use /clock (a bag replayed with `skelsplat play`)"),
    LaunchArgument("log_level", "info", "log level: debug, info, warn, error or fatal"),
)

DEMO_ARGUMENTS = (
    LaunchArgument("rviz", "true", "start rviz2"),
    LaunchArgument("log_level", "info", "log level: debug, info, warn, error or fatal"),
)


DETECT_ARGUMENTS = (
    LaunchArgument("cameras", "cam01,cam02,cam03,cam04", "comma-separated camera names: images on "
                                                         "/<camera>/image_raw, keypoints on /<camera>/keypoints"),
    LaunchArgument("calibration", "", "calibration TOML of the cameras; empty: <camera>/camera_info + TF"),
    LaunchArgument("backend", "mediapipe", "2D pose model: mediapipe or onnx"),
    LaunchArgument("compressed", "false", "true: read <camera>/image_raw/compressed (CompressedImage)"),
    LaunchArgument("params_file", "", "parameters of both nodes (YAML); empty: the package's config/detect.yaml"),
    LaunchArgument("namespace", "", "namespace of the nodes (their relative topics follow it)"),
    LaunchArgument("use_sim_time", "false", "true: use /clock (a bag replayed with `skelsplat play`)"),
    LaunchArgument("log_level", "info", "log level: debug, info, warn, error or fatal"),
)


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError(f"launch argument {name}:={value!r} must be true or false")
    return lowered in ("true", "1")


def _values(config: dict[str, str], arguments: tuple[LaunchArgument, ...]) -> dict[str, str]:
    values = {a.name: config.get(a.name, a.default) for a in arguments}
    if values.get("log_level", "info").lower() not in ("debug", "info", "warn", "error", "fatal"):
        raise ValueError(f"launch argument log_level:={values['log_level']!r} is not a log level")
    return values


def skelsplat_actions(config: dict[str, str], share: str | Path) -> list[NodeAction]:
    """The nodes of ``skelsplat.launch.py`` for the launch arguments ``config`` (missing ones take defaults)."""
    v = _values(config, SKELSPLAT_ARGUMENTS)
    share = Path(share)
    sim_time = _flag(v["use_sim_time"], "use_sim_time")
    publish_rig = _flag(v["publish_rig"], "publish_rig")
    from_ros = _flag(v["calibration_from_ros"], "calibration_from_ros")
    overrides: dict[str, Any] = {"use_sim_time": sim_time}
    if publish_rig and not v["calibration"]:
        raise ValueError("publish_rig:=true needs calibration:=<the TOML to publish>")
    if from_ros or publish_rig:
        overrides["calibration_file"] = ""
    elif v["calibration"]:
        overrides["calibration_file"] = v["calibration"]
    common = {"namespace": v["namespace"], "ros_arguments": ["--log-level", v["log_level"]]}
    actions = [NodeAction("skelsplat_node", "skelsplat_node",
                          [v["params_file"] or str(share / "config" / "skelsplat.yaml"), overrides], **common)]
    if publish_rig:
        actions.append(NodeAction("skelsplat_rig_publisher", "skelsplat_rig_publisher",
                                  [{"calibration_file": v["calibration"], "use_sim_time": sim_time}], **common))
    return actions


def detect_actions(config: dict[str, str], share: str | Path) -> list[NodeAction]:
    """The nodes of ``detect.launch.py``: the detector on every camera's images and the fusion node on its keypoints
    (skeleton ``coco17``, the detectors' joint set)."""
    v = _values(config, DETECT_ARGUMENTS)
    cameras = [c.strip() for c in v["cameras"].split(",") if c.strip()]
    if not cameras:
        raise ValueError("launch argument cameras:= must name at least one camera")
    params = v["params_file"] or str(Path(share) / "config" / "detect.yaml")
    sim_time = _flag(v["use_sim_time"], "use_sim_time")
    common = {"namespace": v["namespace"], "ros_arguments": ["--log-level", v["log_level"]]}
    detector = {"cameras": cameras, "backend": v["backend"], "compressed": _flag(v["compressed"], "compressed"),
                "use_sim_time": sim_time}
    fusion = {"cameras": cameras, "calibration_file": v["calibration"], "skeleton": "coco17", "use_sim_time": sim_time}
    return [NodeAction("skelsplat_detector", "skelsplat_detector", [params, detector], **common),
            NodeAction("skelsplat_node", "skelsplat_node", [params, fusion], **common)]


def demo_actions(config: dict[str, str], share: str | Path) -> list[NodeAction]:
    """The nodes of ``demo.launch.py``: the simulated rig and the fusion node on one calibration, and rviz2."""
    v = _values(config, DEMO_ARGUMENTS)
    share = Path(share)
    params = str(share / "config" / "demo.yaml")
    calibration = {"calibration_file": str(share / "config" / "sim_rig_lab.toml")}
    log = ["--log-level", v["log_level"]]
    actions = [NodeAction("skelsplat_sim_rig", "skelsplat_sim_rig", [params, calibration], ros_arguments=log),
               NodeAction("skelsplat_node", "skelsplat_node", [params, calibration], ros_arguments=log)]
    if _flag(v["rviz"], "rviz"):
        actions.append(NodeAction("rviz2", "rviz2", package="rviz2", output="log",
                                  arguments=["-d", str(share / "config" / "skelsplat.rviz")]))
    return actions
