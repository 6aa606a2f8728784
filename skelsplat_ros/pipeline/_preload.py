"""Imported by the fork server of the local workers (:func:`~skelsplat_ros.pipeline.local.start_server`), and by
nothing else: the modules every take needs and the numba image kernel, loaded once in the server, so that each
worker forked from it starts with them instead of paying for them itself (about 0.65 s of CPU per worker: Python,
numpy, scipy, this package, numba and its typing context).

Its import has that side effect on purpose: a fork server runs nothing but imports before it forks."""

import atexit
import os

import numpy as np
import scipy.linalg  # noqa: F401 - the offline smoothing's solver (imported where it is used)

from ..fusion import gauss_newton  # noqa: F401 - the refinement (imported at the first fit)
from ..fusion.image_terms import image_terms
from .fuse import fuse_file  # noqa: F401 - the take's modules: fusion, io, numpy (imported by run_take)
from .take import execute  # noqa: F401 - what a worker runs


def _load_kernel() -> None:
    """One call of the image kernel on one view, frame and joint (contiguous float64, as every real call): numba
    loads it from its disk cache (or compiles it) and builds its typing context."""
    eye = np.eye(3)[None]
    image_terms(eye, eye, np.array([[0.0, 0.0, 2.0]]), np.zeros((1, 1, 3)), np.zeros((1, 1, 1, 2)),
                np.ones((1, 1, 1)), np.ones((1, 1, 1)), 0.01)


try:
    _load_kernel()
except Exception:  # noqa: BLE001 - a warm-up that fails leaves workers to load the kernel themselves
    pass

# The server ends when the runner's process does, and has nothing to flush or close: it skips the interpreter's
# teardown of numba, scipy and numpy (measured: 0.05 s instead of 0.7 to 1.8 s on a loaded 2-core machine), during
# which it would still hold the command's output open. Its workers never run this: they leave by os._exit.
atexit.register(os._exit, 0)
