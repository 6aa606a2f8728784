"""SkelSplat refinement: one Gaussian per joint, fitted to per-view heatmaps plus priors (see ``objective.py``).

One entry point for both optimisers: Gauss-Newton (numpy, ``gauss_newton.py``) never loads torch; Adam through a
renderer (``adam.py``) imports it on first use.
"""

from __future__ import annotations

import numpy as np

from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton
from .gauss_newton import refine_gauss_newton
from .objective import BonePrior, RefineConfig, RefineResult, TemporalPrior


def refine(
    rig: CameraRig,
    skeleton: Skeleton,
    config: RefineConfig,
    uv: np.ndarray,
    confidence: np.ndarray,
    init_means: np.ndarray,
    bone_prior: BonePrior | None = None,
    temporal: TemporalPrior | None = None,
) -> RefineResult:
    """Refine an initial guess ``init_means [F, J, 3]`` (finite) against undistorted keypoints ``uv [V, F, J, 2]``.

    Args:
        confidence: ``[V, F, J]``; 0 or a NaN pixel masks the observation.
        bone_prior: per-subject bone lengths and tolerances for the bone-length term.
        temporal: the temporal prior (needs ``config.temporal_weight > 0``).
    """
    if config.optimizer == "gauss_newton":
        return refine_gauss_newton(rig, skeleton, config, uv, confidence, init_means, bone_prior, temporal)
    from .adam import refine_adam

    return refine_adam(rig, skeleton, config, uv, confidence, init_means, bone_prior, temporal)
