"""Point the CMake exports of the ROS 2 PyPI wheels at this interpreter's include directories.

The message wheels (ros-std-msgs, ros-geometry-msgs, ...) ship <prefix>/share/<pkg>/cmake/*Export.cmake
files whose imported targets name the include directories of the machine that built the wheels
(/opt/python/cp311-cp311/include/python3.11 and that interpreter's numpy include directory). Those do
not exist here, so CMake fails its generate step when an interface package depends on those messages.
This rewrites them to the Python and numpy include directories of the interpreter running this script.
Idempotent: files already rewritten are left alone.

Usage: <venv>/bin/python fix_cmake_exports.py [PREFIX]   (PREFIX defaults to sys.prefix)
"""
import re
import sys
import sysconfig
from pathlib import Path

import numpy

# Any wheel builder's interpreter under /opt/python/<tag>/; the numpy part may be numpy/core or
# numpy/_core depending on the numpy version the wheels were built with.
_BUILDER_NUMPY = re.compile(r"/opt/python/[^/;\"\s]+/lib/python3\.\d+/site-packages/numpy/_?core/include")
_BUILDER_PYTHON = re.compile(r"/opt/python/[^/;\"\s]+/include/python3\.\d+")


def fix_file(path: Path, python_include: str, numpy_include: str) -> bool:
    text = path.read_text()
    fixed = _BUILDER_PYTHON.sub(python_include, _BUILDER_NUMPY.sub(numpy_include, text))
    if fixed == text:
        return False
    path.write_text(fixed)
    return True


def main(argv: list[str]) -> int:
    prefix = Path(argv[1] if len(argv) > 1 else sys.prefix)
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = [p for p in sorted(prefix.glob("share/*/cmake/*Export.cmake"))
               if fix_file(p, python_include, numpy_include)]
    print(f"fix_cmake_exports: rewrote {len(changed)} file(s) under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
