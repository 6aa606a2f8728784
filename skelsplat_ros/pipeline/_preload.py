"""Imported by the fork server of the local workers (:func:`~skelsplat_ros.pipeline.local.start_server`), and by
nothing else: the modules every take needs and the numba image kernel, loaded once in the server, so that each
worker forked from it starts with them instead of paying for them itself (about 0.6 s of CPU per worker: Python,
numpy, scipy.linalg, this package, numba and its typing context).

Its import has that side effect on purpose: a fork server runs nothing but imports before it forks."""

import atexit
import os
import sys

# numba imports coverage whenever it is installed (to report coverage of compiled code; with its dependencies 0.03 s
# of the server's CPU, on every batch command's critical path). The workers never run under coverage unless it was
# started in this interpreter already (COVERAGE_PROCESS_START), and then it stays.
sys.modules.setdefault("coverage", None)

import numpy as np  # noqa: E402 - after the line above, which must precede numba's import
import scipy.linalg  # noqa: E402,F401 - the offline smoothing's solver; numba's first load imports it too

from ..fusion import gauss_newton  # noqa: E402,F401 - the refinement (imported at the first fit)
from ..fusion.image_terms import image_terms  # noqa: E402
from .fuse import fuse_file  # noqa: E402,F401 - the take's modules: fusion, io, numpy (imported by run_take)
from .take import execute  # noqa: E402,F401 - what a worker runs


def _load_kernel() -> None:
    """One call of the image kernel on one view, frame and joint, with the argument types of a take's calls: numba
    loads that overload from its disk cache (or compiles it) and builds its typing context. The camera arrays are
    read-only, as a ``CameraRig`` hands them (numba types those apart: a warm-up with writable ones loaded an overload
    no take calls, and each worker then loaded the right one at its first take)."""
    eye, translation = np.eye(3)[None], np.array([[0.0, 0.0, 2.0]])
    eye.flags.writeable = translation.flags.writeable = False
    image_terms(eye, eye, translation, np.zeros((1, 1, 3)), np.zeros((1, 1, 1, 2)), np.ones((1, 1, 1)),
                np.ones((1, 1, 1)), 0.01)


try:
    _load_kernel()
except Exception:  # noqa: BLE001 - a warm-up that fails leaves workers to load the kernel themselves
    pass

# The server ends when the runner's process does, and has nothing to flush or close: it skips the interpreter's
# teardown of numba, scipy and numpy (measured: 0.05 s instead of 0.7 to 1.8 s on a loaded 2-core machine), during
# which it would still hold the command's output open. Its workers never run this: they leave by os._exit.
atexit.register(os._exit, 0)
