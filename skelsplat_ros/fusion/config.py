"""What the fuser does: the validated :class:`FusionConfig` and the named presets (``default``, ``paper``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .objective import RefineConfig
from .smoothing import SmoothingConfig

METHODS = ("skelsplat", "triangulate", "robust", "dlt")
PRESETS = ("default", "paper")
MODES = ("offline", "streaming")
INITS = ("dlt", "robust", "greedy", "auto")
EXHAUSTIVE_MAX_VIEWS = 5
"""``init="auto"`` searches every view subset up to this many views (26 subsets), then drops views greedily."""
NOMINAL_RATE_HZ = 30.0
"""Frame rate the streaming temporal prior's tolerance is expressed at."""
BACKENDS = ("raster", "analytic", "gsplat")
"""Renderers of the Adam path (``auto`` picks gsplat on CUDA when usable, else ``analytic``)."""


@dataclass(frozen=True)
class FusionConfig:
    """What the fuser does, besides the refinement settings.

    Attributes:
        method: ``skelsplat``, ``triangulate`` (confidence-weighted DLT), ``robust`` or ``dlt``.
        refine: refinement settings (``skelsplat`` only).
        streaming_refine: refinement settings for streaming, when they differ (fewer steps: it is warm-started).
        prefit: offline only: a first, cheap refinement (Gauss-Newton, no temporal term) that the main one starts
            from, so that it needs fewer steps; ``None`` = start from the triangulation.
        init: initial guess for ``skelsplat``: ``dlt`` (paper), ``robust`` (every view subset), ``greedy`` (drop
            the worst view until the rest agree: linear instead of exponential in the number of views) or ``auto``
            (``robust`` up to ``EXHAUSTIVE_MAX_VIEWS`` views, ``greedy`` above).
        min_views: joints seen by fewer views are not triangulated.
        min_confidence: detections below this confidence are ignored by the triangulation.
        robust_threshold_px: reprojection threshold of the robust subset search.
        hampel_window: half-window (frames) of the offline outlier filter on the initial guess; 0 = off.
        hampel_threshold: a frame is an outlier beyond this many scaled MADs (and ``hampel_min_distance``).
        hampel_min_distance: ... and at least this far from the median (world units).
        bone_lengths: estimate per-subject bone lengths for the bone-length term.
        bone_window: streaming: frames in the sliding window of bone-length medians.
        gate_distance: streaming: a triangulated joint farther than this from the prediction is replaced by it.
        reset_after: streaming: a gap longer than this (seconds) or a stamp going backwards resets the history.
        nominal_pixel_sigma: pixel noise assumed for the covariances of the triangulation baselines.
        smoothing: offline, with a ``prefit``: robust zero-phase smoothing of the trajectories between Gauss-Newton
            passes (``offline.py``); ``None`` = Adam with the second-difference term of ``refine`` instead.
        smoothing_rounds: offline: rounds of (smoothing, Gauss-Newton pulled to the smoothed trajectory).
        smoothing_pull: offline: tolerance (world units) of that pull.
        max_gap: offline: gaps in the (Hampel-cleaned) triangulation up to this long (seconds) are filled, longer
            ones and those at the ends beyond it stay NaN (the person left); ``None`` = fill every gap.
    """

    method: str = "skelsplat"
    refine: RefineConfig = field(default_factory=RefineConfig)
    streaming_refine: RefineConfig | None = None
    prefit: RefineConfig | None = None
    init: str = "robust"
    min_views: int = 2
    min_confidence: float = 0.3
    robust_threshold_px: float = 15.0
    hampel_window: int = 0
    hampel_threshold: float = 4.0
    hampel_min_distance: float = 0.05
    bone_lengths: bool = False
    bone_window: int = 150
    gate_distance: float = 0.3
    reset_after: float = 1.0
    nominal_pixel_sigma: float = 3.0
    smoothing: SmoothingConfig | None = None
    smoothing_rounds: int = 2
    smoothing_pull: float = 0.003
    max_gap: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        if self.min_views < 2:
            raise ValueError("min_views must be at least 2")
        if self.smoothing_rounds < 1 or self.smoothing_pull <= 0:
            raise ValueError("smoothing_rounds must be at least 1 and smoothing_pull positive")
        if self.max_gap is not None and self.max_gap < 0:
            raise ValueError("max_gap must be >= 0 seconds (or None)")

    @property
    def triangulation(self) -> str:
        """The triangulation run first: the method itself for the baselines, the initial guess for ``skelsplat``."""
        return self.init if self.method == "skelsplat" else self.method


def preset_config(preset: str = "default", method: str = "skelsplat", backend: str | None = None) -> FusionConfig:
    """The named preset, for ``method``, with the renderer ``backend`` overriding the preset's when given.

    ``raster`` or ``gsplat`` named explicitly also replace the ``default`` preset's Gauss-Newton passes (which
    evaluate the image term in closed form, without a renderer) by Adam steps through that renderer.

    ``paper`` is the published method with its numbers converted to metres: 20 mm Gaussians, 125 Adam steps with
    the 3DGS position schedule, heatmaps from the projected initial Gaussians truncated to the pixel, masked-mean
    L2, forearm/lower-leg symmetry at 1e-5 per mm, unweighted DLT start, confidences ignored.
    ``default`` is ours, tuned on the benchmark (see BENCHMARKS.md).
    """
    if preset == "paper":
        config = FusionConfig(method=method, refine=RefineConfig(), init="dlt", min_confidence=0.0)
    elif preset == "default":
        config = FusionConfig(
            method=method,
            refine=RefineConfig(
                steps=30,
                backend="analytic",
                init_sigma=0.03,
                optimise_shape=True,
                position_lr=0.005,
                position_lr_final=0.0005,
                position_lr_spatial=False,
                lr_schedule_iterations=30,
                iterations_per_step=1,
                scale_lr=0.02,
                rotation_lr=0.01,
                adam_eps=1e-8,
                target_sigma_px=5.0,
                confidence_sigma_power=0.5,
                subpixel_targets=True,
                use_confidence=True,
                loss_normalisation="energy",
                symmetry_weight=0.0,
                bone_length_weight=1.0,
                bone_length_sigma=0.01,
                bone_length_spread=0.5,
                temporal_weight=1.0,
                temporal_sigma=0.01,
                frame_chunk=512,
            ),
            init="auto",
            hampel_window=7,
            bone_lengths=True,
            max_gap=1.0,
        )
        # Gauss-Newton on fixed-size splats: offline, a prefit that the smoothing refinement starts from; streaming,
        # the whole refinement. Its prior is a prediction from noisy past outputs, so a weak pull.
        gauss_newton = replace(config.refine, optimizer="gauss_newton", optimise_shape=False, temporal_weight=0.0)
        config = replace(
            config,
            prefit=replace(gauss_newton, steps=3),
            # Jerk tolerance per joint by marginal likelihood (the bench's smooth simulated motion picks 3-30 m/s^3,
            # the real Pose2Sim demo take 30-300), outliers found at 12 m/s^3 first, Cauchy scale 3 sigma: chosen on
            # seeds 20-21 of the bench and the demo take (BENCHMARKS.md).
            smoothing=SmoothingConfig(order=3, sigma=12.0, robust_scale=3.0, iterations=4, pixel_sigma=3.0, adaptive=True),
            # A sliding window of lengths is less sure than a whole recording's: looser where they scatter.
            streaming_refine=replace(gauss_newton, steps=5, temporal_weight=0.03, bone_length_spread=1.0),
        )
    else:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if backend is not None:
        config = replace(config, refine=replace(config.refine, backend=backend))
        if backend in ("raster", "gsplat") and config.streaming_refine is not None:
            # Gauss-Newton has the closed-form image term built in; a renderer asked for by name gets Adam instead,
            # warm-started, so fewer and smaller steps.
            config = replace(
                config,
                prefit=None,
                smoothing=None,
                streaming_refine=replace(
                    config.refine, steps=15, lr_schedule_iterations=15, position_lr=0.003, position_lr_final=0.0003,
                    temporal_weight=config.streaming_refine.temporal_weight,
                ),
            )
    return config
