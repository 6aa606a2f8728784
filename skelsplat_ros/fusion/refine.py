"""SkelSplat refinement: one Gaussian per joint, fitted to per-view heatmaps plus priors (see ``objective.py``).

One entry point for both optimisers: Gauss-Newton (numpy, ``gauss_newton.py``) never loads torch; Adam through a
renderer (``adam.py``) imports it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton
from .objective import BonePrior, RefineConfig, RefineResult, TemporalPrior

if TYPE_CHECKING:
    from .config import FusionConfig


def check_runtime(config: "FusionConfig", mode: str) -> None:
    """Fail fast when an Adam stage of ``mode`` asks for a device or renderer this machine cannot run.

    Loads torch only when ``mode`` has an Adam stage (Gauss-Newton runs in numpy).

    Raises:
        RuntimeError: one line, e.g. CUDA asked for without CUDA, or gsplat without CUDA or the gsplat package.
    """
    adam_stages = [stage for stage in config.stages(mode) if stage.optimizer == "adam"]
    if not adam_stages:
        return
    from .adam import resolve_device
    from .renderers import get_renderer

    for stage in adam_stages:
        get_renderer(stage.backend, resolve_device(stage.device))


def refine(
    rig: CameraRig,
    skeleton: Skeleton,
    config: RefineConfig,
    uv: np.ndarray,
    confidence: np.ndarray,
    init_means: np.ndarray,
    bone_prior: BonePrior | None = None,
    temporal: TemporalPrior | None = None,
    covariances: bool = True,
) -> RefineResult:
    """Refine an initial guess ``init_means [F, J, 3]`` (finite) against undistorted keypoints ``uv [V, F, J, 2]``.

    Args:
        confidence: ``[V, F, J]``; 0 or a NaN pixel masks the observation.
        bone_prior: per-subject bone lengths and tolerances for the bone-length term.
        temporal: the temporal prior (needs ``config.temporal_weight > 0``).
        covariances: ``False``: the caller has its own (the fixed lag's read-out): Gauss-Newton leaves
            ``RefineResult.covariances`` ``None``.
    """
    if config.optimizer == "gauss_newton":
        from .gauss_newton import refine_gauss_newton  # the image kernel: loaded at the first fit, not by check_runtime

        return refine_gauss_newton(rig, skeleton, config, uv, confidence, init_means, bone_prior, temporal, covariances)
    if temporal is not None and temporal.anchor is not None:
        raise ValueError("an anchored temporal prior (the depth filter's) needs optimizer gauss_newton")
    from .adam import refine_adam

    return refine_adam(rig, skeleton, config, uv, confidence, init_means, bone_prior, temporal)
