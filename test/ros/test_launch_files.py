"""Launch files and configs, as far as this environment can check them (launch/launch_ros are not installable here).

- each launch file's generate_launch_description() is executed with minimal stand-ins for launch/launch_ros and its
  node actions are built for several argument sets: every executable is one this package installs (or rviz2), every
  file exists, every parameter is declared by its node (rclpy ignores unknown names silently); the calibration
  argument applies only when given; the command lines they amount to start the real nodes (namespace, use_sim_time,
  calibration);
- parameter names in the YAML files are parameters the nodes declare;
- config/skelsplat.yaml loads into the real node through --params-file;
- the rviz config shows Grid, TF and the skeleton markers in the world frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def test_the_launch_files_exist():
    assert {p.name for p in LAUNCH_FILES} >= {"skelsplat.launch.py", "demo.launch.py", "detect.launch.py"}


class _Stub:
    """Records its constructor arguments: stands in for a launch/launch_ros class."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _run_launch_file(path: Path, monkeypatch, configuration: dict[str, str]) -> tuple[list[_Stub], list[dict]]:
    """Execute a launch file with minimal stand-ins for ``launch``/``launch_ros`` (not installable here): returns
    its declared arguments and the keyword arguments of the ``Node`` actions it builds for ``configuration``."""
    import types

    class FindPackageShare(_Stub):
        def perform(self, context):
            assert self.args == ("skelsplat_ros",)
            return str(REPO)  # the source tree has the share layout (config/, launch/)

    class LaunchDescription(_Stub):
        pass

    modules = {
        "launch": {"LaunchDescription": LaunchDescription},
        "launch.actions": {"DeclareLaunchArgument": type("DeclareLaunchArgument", (_Stub,), {}),
                           "OpaqueFunction": type("OpaqueFunction", (_Stub,), {})},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (_Stub,), {})},
        "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    namespace: dict = {"__name__": "launch_file_under_test"}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    description = namespace["generate_launch_description"]()
    entities = description.args[0]
    declared = [e for e in entities if type(e).__name__ == "DeclareLaunchArgument"]
    opaque = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    defaults = {d.args[0]: d.kwargs["default_value"] for d in declared}
    context = types.SimpleNamespace(launch_configurations={**defaults, **configuration})
    nodes = [node.kwargs for function in opaque for node in function.kwargs["function"](context)]
    return declared, nodes


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_nodes_start_installed_executables_with_declared_parameters_and_existing_files(path, monkeypatch):
    from skelsplat_ros.ros.params import (DETECTOR_NODE_PARAMS, FUSION_NODE_PARAMS, RIG_PUBLISHER_PARAMS,
                                          SIM_RIG_PARAMS)

    declared = {"skelsplat_node": {p.name for p in FUSION_NODE_PARAMS},
                "skelsplat_sim_rig": {p.name for p in SIM_RIG_PARAMS},
                "skelsplat_rig_publisher": {p.name for p in RIG_PUBLISHER_PARAMS},
                "skelsplat_detector": {p.name for p in DETECTOR_NODE_PARAMS}}
    setup = (REPO / "setup.py").read_text()
    cmake = (REPO / "CMakeLists.txt").read_text()
    configurations = [{}]
    if path.name == "skelsplat.launch.py":
        configurations.append({"publish_rig": "true", "calibration": str(REPO / "config" / "sim_rig_lab.toml")})
    for configuration in configurations:
        arguments, nodes = _run_launch_file(path, monkeypatch, configuration)
        assert nodes and arguments
        for node in nodes:
            if node["package"] == "rviz2":
                assert (REPO / node["arguments"][1]).is_file()
                continue
            executable = node["executable"]
            assert node["package"] == "skelsplat_ros"
            # Installed for `ros2 run` (CMake) and as a console script (pip).
            assert (REPO / "scripts" / executable).is_file() and f"scripts/{executable}" in cmake
            assert f"{executable}=" in setup
            for entry in node["parameters"]:
                if isinstance(entry, dict):
                    assert set(entry) - {"use_sim_time"} <= declared[executable], (path.name, entry)
                    for key, value in entry.items():
                        if key == "calibration_file" and value:
                            assert Path(value).is_file(), value
                else:
                    assert Path(entry).is_file(), entry


def test_calibration_argument_applies_only_when_given(monkeypatch):
    path = REPO / "launch" / "skelsplat.launch.py"
    _, (node,) = _run_launch_file(path, monkeypatch, {})
    params_file, overrides = node["parameters"]
    assert params_file == str(REPO / "config" / "skelsplat.yaml")
    assert overrides == {"use_sim_time": False}  # the params file's calibration_file stands
    mine = "/data/my_rig.toml"
    _, (node,) = _run_launch_file(path, monkeypatch, {"calibration": mine, "params_file": "/data/p.yaml"})
    assert node["parameters"] == ["/data/p.yaml", {"use_sim_time": False, "calibration_file": mine}]
    _, (node,) = _run_launch_file(path, monkeypatch, {"calibration": mine, "calibration_from_ros": "true"})
    assert node["parameters"][1]["calibration_file"] == ""
    with pytest.raises(ValueError, match="publish_rig:=true needs calibration"):
        _run_launch_file(path, monkeypatch, {"publish_rig": "true"})
    with pytest.raises(ValueError, match="use_sim_time"):
        _run_launch_file(path, monkeypatch, {"use_sim_time": "yes please"})
    with pytest.raises(ValueError, match="log level"):
        _run_launch_file(path, monkeypatch, {"log_level": "loud"})


def test_launch_commands_start_the_real_nodes(rclpy_context, monkeypatch):
    """The command lines the launch actions amount to, given to the real nodes: namespace, sim time, calibration
    and the rig publisher + CameraInfo/TF route all take effect."""
    pytest.importorskip("skelsplat_ros.msg")
    from skelsplat_ros.ros.launch_actions import skelsplat_actions
    from skelsplat_ros.ros.node import FusionNode
    from skelsplat_ros.ros.rig_publisher import RigPublisherNode
    from skelsplat_ros.geometry.rig_source import TfRigSource

    monkeypatch.chdir(REPO)  # config/skelsplat.yaml names its calibration relative to the repository
    calibration = str(REPO / "config" / "sim_rig_lab.toml")
    (action,) = skelsplat_actions({"namespace": "robot", "use_sim_time": "true", "log_level": "debug",
                                   "calibration": calibration}, REPO)
    command = action.command()
    assert command[0] == "skelsplat_node" and command[-2:] == ["--log-level", "debug"]
    node = FusionNode(context=rclpy_context, cli_args=command[1:] + ["-p", "method:=robust"])
    try:
        assert node.get_namespace() == "/robot"
        assert node.get_parameter("use_sim_time").value is True
        assert node.get_parameter("calibration_file").value == calibration
    finally:
        node.destroy_node()
    fusion_action, rig_action = skelsplat_actions({"publish_rig": "true", "calibration": calibration}, REPO)
    publisher = RigPublisherNode(context=rclpy_context, cli_args=rig_action.command()[1:])
    node = FusionNode(context=rclpy_context, cli_args=fusion_action.command()[1:] + ["-p", "method:=robust"])
    try:
        assert isinstance(node.rig_source, TfRigSource) and node.cameras == ["cam0", "cam1", "cam2", "cam3"]
        assert publisher.rig.names == node.cameras
    finally:
        node.destroy_node()
        publisher.destroy_node()


def test_detect_launch_commands_start_the_real_detector_and_fusion_nodes(rclpy_context, tmp_path):
    """detect.launch.py's command lines, given to the real nodes: both read the cameras, the fusion node the
    calibration and coco17, the detector its backend (the onnx test model instead of mediapipe, for speed)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    sys.path.insert(0, str(REPO / "test" / "detection"))
    from onnx_models import rtmo_model

    from skelsplat_ros.ros.detector_node import DetectorNode
    from skelsplat_ros.ros.launch_actions import detect_actions
    from skelsplat_ros.ros.node import FusionNode

    calibration = str(REPO / "config" / "sim_rig_lab.toml")
    detector_action, fusion_action = detect_actions(
        {"cameras": "cam0, cam2,cam3", "calibration": calibration, "backend": "onnx"}, REPO)
    model = rtmo_model(tmp_path / "rtmo.onnx")
    detector = DetectorNode(context=rclpy_context,
                            cli_args=detector_action.command()[1:] + ["-p", f"model:={model}"])
    fusion = FusionNode(context=rclpy_context, cli_args=fusion_action.command()[1:] + ["-p", "method:=robust"])
    try:
        assert detector.cameras == fusion.cameras == ["cam0", "cam2", "cam3"]
        assert detector.config.backend == "onnx"
        assert fusion.skeleton.name == "coco17" and fusion.get_parameter("calibration_file").value == calibration
        assert fusion.get_parameter("max_wait").value == pytest.approx(1.0)  # from config/detect.yaml
        topics = {name for name, _ in detector.get_publisher_names_and_types_by_node(detector.get_name(), "/")}
        assert "/cam2/keypoints" in topics
    finally:
        detector.destroy_node()
        fusion.destroy_node()
    with pytest.raises(ValueError, match="at least one camera"):
        detect_actions({"cameras": " , "}, REPO)


@pytest.mark.parametrize("name", ["skelsplat.yaml", "demo.yaml", "detect.yaml"])
def test_yaml_parameter_names_are_declared(name):
    from skelsplat_ros.ros.params import DETECTOR_NODE_PARAMS, FUSION_NODE_PARAMS, SIM_RIG_PARAMS

    declared = {"skelsplat_node": {p.name for p in FUSION_NODE_PARAMS},
                "skelsplat_sim_rig": {p.name for p in SIM_RIG_PARAMS},
                "skelsplat_detector": {p.name for p in DETECTOR_NODE_PARAMS}}
    data = yaml.safe_load((REPO / "config" / name).read_text())
    assert data and set(data) <= set(declared)
    for node_name, section in data.items():
        params = section["ros__parameters"]
        unknown = set(params) - declared[node_name]
        assert not unknown, f"{name}: {node_name} does not declare {sorted(unknown)}"


def test_calibration_file_loads_and_matches_the_configured_cameras():
    from skelsplat_ros.geometry.calibration import load_calibration

    rig = load_calibration(REPO / "config" / "sim_rig_lab.toml")
    for name in ("skelsplat.yaml", "demo.yaml"):
        cameras = yaml.safe_load((REPO / "config" / name).read_text())["skelsplat_node"]["ros__parameters"]["cameras"]
        assert set(cameras) <= set(rig.names), name


def test_rviz_config_shows_grid_tf_and_markers_in_world():
    config = yaml.safe_load((REPO / "config" / "skelsplat.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "world"
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert {"rviz_default_plugins/Grid", "rviz_default_plugins/TF", "rviz_default_plugins/MarkerArray"} <= set(displays)
    markers = displays["rviz_default_plugins/MarkerArray"]
    assert markers["Topic"]["Value"] == "skeleton_markers"
    # The node publishes the markers reliably; a reliable subscription matches.
    assert markers["Topic"]["Reliability Policy"] == "Reliable"


def test_skelsplat_yaml_loads_into_the_real_node(rclpy_context, monkeypatch):
    pytest.importorskip("skelsplat_ros.msg")
    from skelsplat_ros.ros.node import FusionNode

    monkeypatch.chdir(REPO)  # the file's calibration_file is relative to the repository
    expected = yaml.safe_load((REPO / "config" / "skelsplat.yaml").read_text())["skelsplat_node"]["ros__parameters"]
    node = FusionNode(context=rclpy_context,
                      cli_args=["--ros-args", "--params-file", str(REPO / "config" / "skelsplat.yaml"),
                                "-p", "method:=robust"])  # a -p after the file wins (and skips the torch warm-up)
    try:
        for name, value in expected.items():
            actual = node.get_parameter(name).value
            if name == "method":
                assert actual == "robust"
            elif isinstance(value, float):
                assert actual == pytest.approx(value), name
            else:
                assert actual == value, name
        assert node.cameras == expected["cameras"]
    finally:
        node.destroy_node()


def test_readme_documents_every_node_parameter_in_its_tables():
    from skelsplat_ros.ros.params import DETECTOR_NODE_PARAMS, FUSION_NODE_PARAMS, RIG_PUBLISHER_PARAMS

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for spec in FUSION_NODE_PARAMS + RIG_PUBLISHER_PARAMS + DETECTOR_NODE_PARAMS:
        assert f"| `{spec.name}` |" in readme, f"README has no table row for parameter {spec.name}"
