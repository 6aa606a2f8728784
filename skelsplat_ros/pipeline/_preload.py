"""Imported by the fork server of the local workers (:func:`~skelsplat_ros.pipeline.local.start_server`), and by
nothing else: what every take needs (:func:`~skelsplat_ros.pipeline.take.preload`: numpy, scipy.linalg, this
package's take modules and the compiled image kernel), loaded once in the server, so that each worker forked from it
starts with them instead of paying for them itself.

Its import has that side effect on purpose: a fork server runs nothing but imports before it forks."""

import atexit
import os

from .take import execute, preload  # noqa: F401 - execute: what a worker runs

preload()

# The server ends when the runner's process does, and has nothing to flush or close: it skips the interpreter's
# teardown of scipy and numpy (measured with numba loaded too: 0.05 s instead of 0.7 to 1.8 s on a loaded 2-core
# machine), during which it would still hold the command's output open. Its workers never run this: they leave by
# os._exit.
atexit.register(os._exit, 0)
