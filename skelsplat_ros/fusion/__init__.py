"""Multi-view fusion: from per-view 2D keypoints to 3D joints, offline (whole recording) or streaming (causal).

Pipeline of ``method="skelsplat"``:
1. undistort keypoints (the calibration's OpenCV model);
2. initial guess: triangulation (unweighted DLT for the ``paper`` preset; for ``default`` every view subset up to
   ``EXHAUSTIVE_MAX_VIEWS`` cameras, leave-one-out view removal beyond);
3. offline only: outlier frames of the initial guess removed by a Hampel filter over time, gaps interpolated;
4. per-subject bone lengths and tolerances from the triangulated lengths (over the recording offline, over a
   sliding window when streaming);
5. SkelSplat refinement (``refine.py``: ``gauss_newton.py`` or ``adam.py``) with the preset's priors. ``default`` offline: a Gauss-Newton prefit
   per frame, then Adam with temporal smoothing over all frames; streaming: Gauss-Newton, warm-started from a
   constant-velocity prediction of the previous outputs that is also its temporal prior. The optimiser, the
   renderer of the Adam stages and their torch device are independent choices (``preset_config``; impossible
   combinations raise at start-up).

``triangulate`` (confidence-weighted DLT), ``dlt`` (unweighted) and ``robust`` stop after step 2 and are the
baselines. Joints nobody can estimate come out NaN with confidence 0.

Modules, bottom up: ``objective`` (settings and priors, numpy), ``gaussians`` and ``renderers/`` (torch, Adam only),
``gauss_newton`` and ``adam`` (the two optimisers), ``refine`` (one entry point), ``config`` (presets), ``result``
(shared steps), ``offline`` and ``streaming`` (the drivers). Importing this package does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Names -> the module that defines them, loaded at first use (PEP 562): importing ``fusion.config`` for its choices
# (the command line, ``skelsplat batch`` checking a study's settings) must not load the drivers, scipy and numba.
_EXPORTS = {
    "INITS": "config", "METHODS": "config", "MODES": "config", "PRESETS": "config", "FusionConfig": "config",
    "preset_config": "config", "fuse_offline": "offline", "FusionResult": "result",
    "triangulate_baseline": "result", "StreamingFuser": "streaming", "fuse_streaming": "streaming",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .config import INITS, METHODS, MODES, PRESETS, FusionConfig, preset_config
    from .offline import fuse_offline
    from .result import FusionResult, triangulate_baseline
    from .streaming import StreamingFuser, fuse_streaming


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value
