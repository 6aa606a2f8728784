"""Imported by the fork server of the local workers (:func:`~skelsplat_ros.pipeline.local.start_server`), and by
nothing else: the modules every take needs and the compiled image kernel, loaded once in the server, so that each
worker forked from it starts with them instead of paying for them itself (Python, numpy, scipy.linalg, this
package). No numba: a take's fit calls the image kernel compiled in C at install (``fusion/_image_kernel.c``); the
numba kernels are the fixed-lag filter bank's and the tracker's, which a take of one person in the default modes
does not call (``test/pipeline/test_batch.py`` checks).

Its import has that side effect on purpose: a fork server runs nothing but imports before it forks."""

import atexit
import os

import numpy as np
import scipy.linalg  # noqa: F401 - the offline smoothing's solver

from ..fusion import gauss_newton  # noqa: F401 - the refinement (imported at the first fit)
from ..fusion.image_terms import image_terms
from .fuse import fuse_file  # noqa: F401 - the take's modules: fusion, io, numpy (imported by run_take)
from .take import execute  # noqa: F401 - what a worker runs

# One call on one view, frame and joint: the extension module loads here (or, where it was not built, the warning
# that the numpy reference runs comes once, from the server, instead of once from every worker).
image_terms(np.eye(3)[None], np.eye(3)[None], np.array([[0.0, 0.0, 2.0]]), np.zeros((1, 1, 3)),
            np.zeros((1, 1, 1, 2)), np.ones((1, 1, 1)), np.ones((1, 1, 1)), 0.01)

# The server ends when the runner's process does, and has nothing to flush or close: it skips the interpreter's
# teardown of scipy and numpy (measured with numba loaded too: 0.05 s instead of 0.7 to 1.8 s on a loaded 2-core
# machine), during which it would still hold the command's output open. Its workers never run this: they leave by
# os._exit.
atexit.register(os._exit, 0)
