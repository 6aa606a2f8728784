"""The package's layers: what each one may import, no import cycles, and heavy modules only where used.

Layers, bottom up: geometry, skeleton, fusion, io (the pure core: no ROS), tracking beside io, pipeline (one
recording's file to file, and whole studies) above them, then sim and bench (tools around the product), then ros
(adapters). The CLI and the node never load sim/ or bench/ for fusion, and torch loads only for
the Adam/renderer path. Checked by reading the import statements (static) and by importing in a fresh interpreter
(dynamic), so that lazy imports inside functions are allowed and module-level ones are not.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skelsplat_ros"
CORE = ("geometry", "skeleton", "fusion", "io")
# What each layer may import at module level (besides itself and the layers below it in CORE order).
ALLOWED = {
    "geometry": set(),
    "skeleton": set(),
    "fusion": {"geometry", "skeleton"},
    "io": {"geometry", "skeleton", "fusion"},
    "tracking": {"geometry", "skeleton", "fusion"},
    "calibration": {"geometry", "skeleton", "fusion", "tracking"},
    "detection": {"geometry", "skeleton", "io"},
    "pipeline": {"geometry", "skeleton", "fusion", "io", "tracking", "detection"},
    "sim": {"geometry", "skeleton"},
    "bench": {"geometry", "skeleton", "fusion", "io", "tracking", "calibration", "detection", "pipeline", "sim"},
}
RAY_BACKEND = "pipeline/ray_backend.py"
"""The one module that imports ray (an optional extra), loaded only for ``skelsplat batch --ray``."""
ROS_MODULES = ("rclpy", "rcl_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs", "visualization_msgs",
               "diagnostic_msgs", "tf2_ros", "tf2_msgs", "hri_msgs", "builtin_interfaces", "message_filters")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports at module level (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.Try, ast.If)) else [node]:
            if isinstance(sub, ast.Import):
                names.update(alias.name for alias in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                if sub.level:
                    base = package.split(".")
                    base = base[: len(base) - (sub.level - 1)]
                    names.add(".".join(base + ([sub.module] if sub.module else [])))
                else:
                    names.add(sub.module or "")
    return names


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "msg" not in p.relative_to(PACKAGE).parts[:1])


ADAPTERS = "ros"
"""The one sub-package that may import ROS and every layer."""


def test_every_sub_package_is_a_known_layer():
    """A new folder must be given its place in ALLOWED: one that is not would escape the import rules below."""
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")} - {"msg"}
    assert folders == set(ALLOWED) | {ADAPTERS}, (
        f"unknown: {sorted(folders - set(ALLOWED) - {ADAPTERS})}, gone: {sorted(set(ALLOWED) - folders)}")


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_the_layers_below(layer):
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _top_level_imports(path):
            if name.startswith("skelsplat_ros."):
                target = name.split(".")[1]
                assert target == layer or target in ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {name}"
            assert name.split(".")[0] not in ROS_MODULES, f"{path.relative_to(PACKAGE)} imports ROS module {name}"


def test_no_import_cycles_between_modules():
    graph = {}
    for path in _sources():
        name = _module_name(path)
        graph[name] = {n for n in _top_level_imports(path) if n.startswith("skelsplat_ros.") and n != name}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            # ``from pkg import mod`` names pkg; a package's __init__ importing its own children is not a cycle.
            if nxt not in graph or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True, cwd="/",
    ).stdout.split()
    return set(out)


def test_cli_help_and_gauss_newton_path_load_no_torch_sim_or_ros():
    loaded = _loaded_after(
        "import skelsplat_ros.cli as cli\n"
        "cli.build_parser()\n"
        "import skelsplat_ros.fusion, skelsplat_ros.fusion.gauss_newton, skelsplat_ros.io.keypoints, "
        "skelsplat_ros.io.export, skelsplat_ros.geometry.calibration\n"
    )
    for heavy in ("torch", "scipy.signal", "matplotlib", "rclpy", "skelsplat_ros.sim", "skelsplat_ros.bench"):
        assert heavy not in loaded, f"{heavy} is loaded by the CLI parser or the numpy fusion path"


def test_only_the_ray_backend_imports_ray_and_a_local_batch_loads_neither_it_nor_torch():
    for path in _sources():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # lazy imports inside functions too
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
        if "ray" in imported:
            assert path.relative_to(PACKAGE).as_posix() == RAY_BACKEND, f"{path.relative_to(PACKAGE)} imports ray"
    loaded = _loaded_after(
        "import skelsplat_ros.cli as cli\n"
        "from skelsplat_ros.pipeline import runner, local, take, study, fuse\n"
        "cli._study_fuse_settings({'preset': 'default'}, 'settings').fusion_config()\n"
    )
    for heavy in ("ray", "torch", "rclpy", "skelsplat_ros.sim", "skelsplat_ros.bench"):
        assert heavy not in loaded, f"{heavy} is loaded by the local batch path"


def test_detection_core_loads_no_backend_ros_or_torch_until_a_detector_is_made():
    loaded = _loaded_after(
        "import skelsplat_ros.detection, skelsplat_ros.detection.recording, skelsplat_ros.detection.sources, "
        "skelsplat_ros.detection.images\n"
    )
    for heavy in ("cv2", "mediapipe", "onnxruntime", "torch", "rclpy", "skelsplat_ros.fusion"):
        assert heavy not in loaded, f"{heavy} is loaded by importing the detection core"


def test_streaming_fusion_without_torch():
    loaded = _loaded_after(
        "import numpy as np\n"
        "from skelsplat_ros.fusion import StreamingFuser, preset_config\n"
        "from skelsplat_ros.geometry.camera import Camera, CameraRig, look_at\n"
        "from skelsplat_ros.skeleton.models import get_skeleton\n"
        "cams = []\n"
        "for i, centre in enumerate(([3, 0, 1.5], [0, 3, 1.5], [-3, 0, 1.5])):\n"
        "    R, t = look_at(np.array(centre, float), np.zeros(3))\n"
        "    cams.append(Camera(f'c{i}', np.array([[800, 0, 320], [0, 800, 240], [0, 0, 1.0]]), R=R, t=t, size=(640, 480)))\n"
        "fuser = StreamingFuser(CameraRig(cams), get_skeleton('h36m17'), preset_config('default'))\n"
        "fuser.step(np.full((3, 17, 3), np.nan), 0.0)\n"
    )
    assert "torch" not in loaded
