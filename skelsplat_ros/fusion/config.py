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
OPTIMIZERS = ("adam", "gauss_newton")
"""Optimisers of the refinement (``auto`` on the CLI and the node: the preset's choice per stage)."""
BACKENDS = ("raster", "analytic", "gsplat")
"""Renderers of the Adam path (``auto`` on the CLI and the node: the preset's choice)."""
DEVICES = ("auto", "cpu", "cuda")
"""Torch devices of the Adam path (``auto`` = CUDA when torch sees a device, else the CPU)."""
DEPTH_FILTER = 0.02
"""``FusionConfig.depth_filter`` (m), the default (node parameter ``depth_filter``, ``skelsplat fuse
--no-depth-filter`` to turn it off): chosen on seeds 0-2 of the robot, lab and portrait rigs (BENCHMARKS.md, "One
camera at lag 0"). The default since its prior leaves out the joints it would pull off the person's bone lengths
(``streaming.BONE_GATE``): before that, on the real Pose2Sim take, it let limb lengths vary beyond issue 18's bound
(test_real_take.py)."""


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
        bone_warmup: streaming: a joint is output only once one of its bones has this many triangulated samples in
            the person's window (``output.py``, rule 4: a person's first frames are withheld until their bone
            lengths are known); 0 = from the person's first frame (held to the lengths of the frames before it; the
            first one as fitted).
        gate_distance: streaming: a triangulated joint farther than this from the prediction is replaced by it; the
            gate grows with the gap, this much per 30 Hz frame since the last output (a stale prediction yields).
        single_view_joints: streaming: a joint that no two views triangulate and the prediction does not cover, but
            that some view sees, is placed on that view's ray at the bone lengths to its estimated neighbours
            (``streaming.ray_bone_guess``), fitted and published (confidence 0: one view, depth from the bone prior).
        complete: every joint of a person who is output at all is output (``output.py``, rule 5): a joint without
            enough agreeing views is filled from the body model (the person's bone lengths, their recent pose, one
            view's ray where one sees it), with confidence 0 and a large covariance.
        depth_filter: streaming (lag 0): along the directions the views fix a joint worse than this standard deviation
            (world units; the depth of two views of a narrow baseline), the causal estimate of the fixed-lag
            smoother's filter bank (``jerk_filter.py``: the offline jerk prior, robust weights) on the fits so far
            is a prior there in a refit of the frame, with the views and the bone lengths (``streaming.
            depth_filtered``). Default :data:`DEPTH_FILTER`; 0 = each frame's fit alone; off without ``smoothing`` or
            a Gauss-Newton streaming fit.
        reset_after: streaming: a gap longer than this (seconds) forgets the motion history (the bone lengths
            stay: the person's own); a stamp going backwards forgets both.
        nominal_pixel_sigma: pixel noise assumed for the covariances of the triangulation baselines.
        smoothing: offline, with a ``prefit``: robust zero-phase smoothing of the trajectories between Gauss-Newton
            passes (``offline.py``); ``None`` = Adam with the second-difference term of ``refine`` instead.
        smoothing_rounds: offline: rounds of (smoothing, Gauss-Newton pulled to the smoothed trajectory).
        smoothing_pull: offline: tolerance (world units) of that pull.
        max_gap: offline: gaps in the (Hampel-cleaned) triangulation up to this long (seconds) are filled for the
            initial guess, longer ones and those at the ends beyond it stay NaN (the person left); ``None`` = fill
            every gap. What is output is decided by ``max_fill`` (``output.py``).
        max_fill: offline: a joint not seen by ``min_views`` agreeing views for at most this long (seconds) between
            frames where it is, is output from its fitted trajectory with confidence 0; longer, or at the ends,
            it is NaN (``output.py``, rule 3).
        bone_tolerance: every bone between two output joints stays within this fraction of the person's length
            (or within the length's own tolerance where that is wider; ``output.py``, rule 2; with
            ``bone_lengths`` only).
        smoother_memory: fixed lag (``fixed_lag.py``, streaming with ``lag > 0``): forgetting time (s) of the
            smoother's choice of jerk tolerance and noise scale.
        covariance_scale: the smoother's covariance (already scaled by the noise the data showed) is multiplied by
            this, and ``bias_share`` adds the part of the detector's error that lasts: with ``lag_covariance``,
            what makes the 90 % ellipsoid hold about 90 % of the errors (BENCHMARKS.md, "Fixed lag").
        streaming_covariance: streaming (lag 0): the fit's first-order covariance (the agreeing views at the heatmap
            sigma), scaled per joint by how much its views disagree (``result.calibrate_covariance``), is then
            scaled along its eigenvectors, ``(fixed, loose)``: the two directions the views fix best by ``fixed``,
            the one they fix least (depth on a narrow baseline) by ``loose``. The fit's errors are heavy-tailed
            along the loose one (a wrong depth), so it keeps its whole variance: the 90 % ellipsoid holds about
            90 % of the errors and a gross error still shows as a large standard deviation (BENCHMARKS.md, "Fixed
            lag"). A person whose views often disagree is widened further (``result.STREAMING_GROSS``).
        offline_covariance: the same for offline.
        lag_covariance: the same for the fixed-lag output, after ``covariance_scale`` and ``bias_share``; its views'
            disagreement is judged against the person's own pixel noise (already in that covariance), not the nominal;
            a person whose views often disagree gets rounder ellipsoids (``result.LAG_GROSS``).
        bias_share: the share of a person's pixel noise (their recent reprojection error) that does not average out
            over frames; the views' geometry at that noise is added to the covariance of the joints they agree on.
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
    bone_warmup: int = 3
    gate_distance: float = 0.3
    single_view_joints: bool = False
    complete: bool = False
    depth_filter: float = DEPTH_FILTER
    reset_after: float = 1.0
    nominal_pixel_sigma: float = 3.0
    smoothing: SmoothingConfig | None = None
    smoothing_rounds: int = 2
    smoothing_pull: float = 0.003
    max_gap: float | None = None
    max_fill: float = 0.5
    bone_tolerance: float = 0.05
    smoother_memory: float = 10.0
    covariance_scale: float = 1.0
    bias_share: float = 0.0
    streaming_covariance: tuple[float, float] = (1.0, 1.0)
    offline_covariance: tuple[float, float] = (1.0, 1.0)
    lag_covariance: tuple[float, float] = (1.0, 1.0)

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
        if not self.depth_filter >= 0:
            raise ValueError("depth_filter must be >= 0 world units")
        if self.bone_warmup < 0:
            raise ValueError("bone_warmup must be >= 0 frames")
        if self.max_fill < 0 or not 0 <= self.bone_tolerance < 1:
            raise ValueError("max_fill must be >= 0 seconds and bone_tolerance in [0, 1)")
        if self.smoother_memory <= 0 or self.covariance_scale <= 0 or self.bias_share < 0:
            raise ValueError("smoother_memory and covariance_scale must be positive, bias_share >= 0")
        if min(self.streaming_covariance + self.offline_covariance + self.lag_covariance) <= 0:
            raise ValueError("streaming_covariance, offline_covariance and lag_covariance scales must be positive")

    def stages(self, mode: str) -> list[RefineConfig]:
        """The refinements that run in ``mode``, in order (none for the baselines)."""
        if self.method != "skelsplat":
            return []
        if mode == "streaming":
            return [self.streaming_refine or self.refine]
        if self.smoothing is not None and self.prefit is not None:
            return [self.prefit]  # Gauss-Newton passes between robust smoothings (offline.py); no Adam stage
        return [stage for stage in (self.prefit, self.refine) if stage is not None]

    def describe(self, mode: str) -> str:
        """The refinement plan of ``mode`` in a few words, e.g. ``gauss_newton x3, then adam/analytic x30 on auto``."""
        parts = [
            f"gauss_newton x{s.steps}" if s.optimizer == "gauss_newton" else f"adam/{s.backend} x{s.steps} on {s.device}"
            for s in self.stages(mode)
        ]
        plan = ", then ".join(parts) or "no refinement"
        if mode == "offline" and self.stages(mode) == [self.prefit] and self.smoothing is not None:
            plan += f" with {self.smoothing_rounds} smoothing rounds"
        return plan

    @property
    def triangulation(self) -> str:
        """The triangulation run first: the method itself for the baselines, the initial guess for ``skelsplat``."""
        return self.init if self.method == "skelsplat" else self.method


def preset_config(
    preset: str = "default",
    method: str = "skelsplat",
    backend: str | None = None,
    optimizer: str | None = None,
    device: str | None = None,
    mode: str | None = None,
) -> FusionConfig:
    """The named preset for ``method``, with the optimiser, renderer and device chosen independently.

    Args:
        optimizer: ``adam``, ``gauss_newton``, or ``None``/``"auto"`` for the preset's choice per stage
            (``default``: Gauss-Newton passes between robust smoothings offline, Gauss-Newton streaming; ``paper``:
            Adam).
            ``adam`` runs every stage with Adam (no Gauss-Newton prefit or smoothing rounds: Adam's second-difference
            term smooths offline); ``gauss_newton`` every stage with Gauss-Newton (the ``default`` preset already is,
            offline and streaming).
        backend: renderer of the Adam stages (``raster``, ``analytic``, ``gsplat``); ``None``/``"auto"`` = the
            preset's. Gauss-Newton stages have no renderer: they evaluate the ``analytic`` objective in closed form.
        device: torch device of the Adam stages (``auto`` = CUDA when torch sees it, ``cpu``, ``cuda``); Gauss-Newton
            runs on the CPU (numpy, C). ``None`` = ``auto``.
        mode: ``offline`` or ``streaming``, the mode the configuration will run in: a choice named explicitly that
            no stage of that mode would use is an error too. ``None`` = not checked.

    Raises:
        ValueError: an unknown name or an impossible combination (one line; never a silent switch), e.g.
            ``gauss_newton`` with a renderer other than ``analytic``, ``gsplat`` on the CPU, ``cuda`` with only
            Gauss-Newton stages, the ``paper`` preset with ``gauss_newton``.

    ``paper`` is the published method with its numbers converted to metres: 20 mm Gaussians, 125 Adam steps with
    the 3DGS position schedule, heatmaps from the projected initial Gaussians truncated to the pixel, masked-mean
    L2, forearm/lower-leg symmetry at 1e-5 per mm, unweighted DLT start, confidences ignored.
    ``default`` is ours, tuned on the benchmark (see BENCHMARKS.md).
    Whether CUDA and gsplat are actually usable is checked by :func:`~skelsplat_ros.fusion.refine.check_runtime`.
    """
    optimizer = None if optimizer in (None, "auto") else optimizer
    backend = None if backend in (None, "auto") else backend
    device = device or "auto"
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("backend", backend, BACKENDS)
    _check_choice("device", device, DEVICES)
    if mode is not None:
        _check_choice("mode", mode, MODES)
    named = [f"{k} {v}" for k, v in (("optimizer", optimizer), ("backend", backend)) if v]
    named += ["device cuda"] if device == "cuda" else []
    if method != "skelsplat" and named:
        raise ValueError(f"{named[0]}: method {method} has no refinement (optimizer, backend and device are skelsplat's)")
    if optimizer == "gauss_newton" and backend not in (None, "analytic"):
        raise ValueError(
            f"optimizer gauss_newton evaluates the analytic objective in closed form and cannot use backend {backend}; "
            "choose optimizer adam for it"
        )
    if optimizer == "gauss_newton" and device == "cuda":
        raise ValueError("optimizer gauss_newton runs on the CPU (numpy, C); device cuda needs optimizer adam")
    if backend == "gsplat" and device == "cpu":
        raise ValueError("backend gsplat renders on CUDA only; choose device cuda (or auto), or another backend")

    if preset == "paper":
        if optimizer == "gauss_newton":
            raise ValueError(
                "the paper preset is the published Adam method (masked-mean loss, symmetry term), which has no "
                "Gauss-Newton form; use preset default for gauss_newton"
            )
        config = FusionConfig(method=method, refine=RefineConfig(), init="dlt", min_confidence=0.0)
    elif preset == "default":
        config = _default_preset(method, optimizer)
    else:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")

    def choose(stage: RefineConfig | None) -> RefineConfig | None:
        if stage is None or stage.optimizer == "gauss_newton":
            return stage  # no renderer, numpy on the CPU
        return replace(stage, backend=backend or stage.backend, device=device)

    config = replace(
        config, refine=choose(config.refine), prefit=choose(config.prefit), streaming_refine=choose(config.streaming_refine)
    )
    if mode is not None and method == "skelsplat" and not any(s.optimizer == "adam" for s in config.stages(mode)):
        unused = [f"backend {backend}"] if backend not in (None, "analytic") else []
        unused += ["device cuda"] if device == "cuda" else []
        if unused:
            raise ValueError(
                f"{' and '.join(unused)}: the {preset} preset's {mode} refinement is Gauss-Newton, which has no "
                "renderer and runs on the CPU (numpy, C); add optimizer adam to use them"
            )
    return config


def _check_choice(what: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def _default_preset(method: str, optimizer: str | None) -> FusionConfig:
    """Our preset, with every stage on ``optimizer`` (``None`` = the tuned mix of Gauss-Newton and Adam)."""
    adam = RefineConfig(
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
    )
    # Gauss-Newton on fixed-size splats: offline, a prefit that the smoothing refinement starts from; streaming,
    # the whole refinement. Its prior is a prediction from noisy past outputs, so a weak pull.
    gauss_newton = replace(adam, optimizer="gauss_newton", optimise_shape=False, temporal_weight=0.0)
    # A sliding window of lengths is less sure than a whole recording's: looser where they scatter.
    streaming_gauss_newton = replace(gauss_newton, steps=5, temporal_weight=0.03, bone_length_spread=1.0,
                                     step_tolerance=5e-4)
    # Adam streaming is warm-started: fewer and smaller steps than offline.
    streaming_adam = replace(
        adam, steps=15, lr_schedule_iterations=15, position_lr=0.003, position_lr_final=0.0003,
        temporal_weight=streaming_gauss_newton.temporal_weight,
    )
    # Jerk tolerance per joint by marginal likelihood (the bench's smooth simulated motion picks 3-30 m/s^3, the real
    # Pose2Sim demo take 30-300), outliers found at 12 m/s^3 first, Cauchy scale 3 sigma: chosen on seeds 20-21 of
    # the bench and the demo take (BENCHMARKS.md). Offline it runs between Gauss-Newton passes.
    smoothing = SmoothingConfig(order=3, sigma=12.0, robust_scale=3.0, iterations=4, pixel_sigma=3.0, adaptive=True)
    # Offline the splat shrinks over each fit's iterations from the streaming size to 15 mm (the fixed lag's read-out
    # keeps the streaming size: fixed_lag.pull_settings): the wide start keeps a poor initial guess in the basin, the
    # narrow end lets a view that disagrees by a few kernel widths pull less, so the fit follows the views that
    # agree. Chosen on seeds 0-2 of every rig
    # (BENCHMARKS.md, "Images in"); 15 mm throughout lost 3-7 % on the robot rig under hard noise; heatmaps widening
    # faster with falling confidence scored better on the simulator (whose confidences are made from its own
    # errors) but let two confident views that agree on a wrong wrist be output (test_output.py).
    prefit = replace(gauss_newton, steps=3, step_tolerance=1e-5, splat_sigma_start=gauss_newton.init_sigma,
                     init_sigma=0.015)
    if optimizer == "adam":
        # Adam everywhere: offline the second-difference term of ``refine`` smooths instead of the Gauss-Newton rounds.
        prefit, smoothing, streaming = None, None, streaming_adam
    else:
        streaming = streaming_gauss_newton
    return FusionConfig(
        method=method, refine=adam, prefit=prefit, smoothing=smoothing, streaming_refine=streaming, init="auto",
        hampel_window=7, bone_lengths=True, max_gap=1.0, covariance_scale=3.0, bias_share=0.3,
        # Chosen on seeds 0-2 of the robot and lab rigs, realistic noise (BENCHMARKS.md, "Fixed lag").
        streaming_covariance=(0.18, 1.0), offline_covariance=(0.065, 1.0),
        lag_covariance=(1.2, 9.0),
    )
