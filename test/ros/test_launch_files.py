"""Launch files and configs, as far as this environment can check them (launch/launch_ros are not installable here).

- launch/*.launch.py parse as Python and define generate_launch_description();
- every config/rviz/calibration file they name exists in the package, and every executable they start is one
  this package installs (or rviz2);
- parameter names in the launch files and YAML files are parameters the nodes declare (rclpy ignores unknown
  names silently, so a typo would otherwise go unnoticed);
- config/skelsplat.yaml loads into the real node through --params-file;
- the rviz config shows Grid, TF and the skeleton markers in the world frame.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    def called(call: ast.Call) -> str:
        func = call.func
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and called(n) == name]


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_both_launch_files_exist():
    assert {p.name for p in LAUNCH_FILES} >= {"skelsplat.launch.py", "demo.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parses_and_defines_generate_launch_description(path):
    tree = _tree(path)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_files_named_by_launch_files_exist(path):
    tree = _tree(path)
    referenced = []
    # PathJoinSubstitution([share, "config", "x.yaml"]): the string parts form a path inside the package.
    for call in _calls(tree, "PathJoinSubstitution"):
        parts = [s.value for s in call.args[0].elts if isinstance(s, ast.Constant)] if call.args else []
        if parts:
            referenced.append("/".join(parts))
    # ... and any other string that looks like a file of ours.
    referenced += [s for s in _strings(tree) if re.search(r"\.(yaml|rviz|toml)$", s) and "/" in s]
    assert referenced, "expected the launch file to name its config files"
    for relative in referenced:
        assert (REPO / relative).is_file(), f"{path.name} references {relative}, which does not exist"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_executables_and_parameters_exist(path):
    from skelsplat_ros.ros.params import FUSION_NODE_PARAMS, SIM_RIG_PARAMS

    declared = {"skelsplat_node": {p.name for p in FUSION_NODE_PARAMS},
                "skelsplat_sim_rig": {p.name for p in SIM_RIG_PARAMS}}
    setup = (REPO / "setup.py").read_text()
    cmake = (REPO / "CMakeLists.txt").read_text()
    tree = _tree(path)
    nodes = _calls(tree, "Node")
    assert nodes
    for call in nodes:
        package = _keyword(call, "package").value
        executable = _keyword(call, "executable").value
        if package == "rviz2":
            continue
        assert package == "skelsplat_ros"
        # Installed for `ros2 run` (CMake) and as a console script (pip).
        assert (REPO / "scripts" / executable).is_file() and f"scripts/{executable}" in cmake
        assert f"{executable}=" in setup
        # Parameter dicts written in the launch file name declared parameters.
        parameters = _keyword(call, "parameters")
        names = []
        for node in ast.walk(parameters) if parameters is not None else []:
            if isinstance(node, ast.Dict):
                names += [k.value for k in node.keys if isinstance(k, ast.Constant)]
        for name in names:
            assert name in declared[executable], f"{path.name}: {executable} has no parameter {name!r}"
    # Dicts bound to variables and passed in (demo.launch.py's `calibration`) are checked here.
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant):
                    assert any(key.value in names for names in declared.values()), key.value


@pytest.mark.parametrize("name", ["skelsplat.yaml", "demo.yaml"])
def test_yaml_parameter_names_are_declared(name):
    from skelsplat_ros.ros.params import FUSION_NODE_PARAMS, SIM_RIG_PARAMS

    declared = {"skelsplat_node": {p.name for p in FUSION_NODE_PARAMS},
                "skelsplat_sim_rig": {p.name for p in SIM_RIG_PARAMS}}
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
