"""The SkelSplat objective's settings and priors, shared by both optimisers (Adam in ``adam.py``, Gauss-Newton in
``gauss_newton.py``); numpy only, so that the Gauss-Newton path never loads torch.

The objective, for Gaussians ``[F, J]`` seen by views ``[V]``:

``L = image term + symmetry term + bone-length term + temporal term``

- image term: the renderer's per (view, frame, joint) L2 between splat and heatmap, either the paper's masked mean
  per view averaged over views (``loss_normalisation="masked_mean"``) or each term divided by the heatmap's own
  energy and weighted by detection confidence (``"energy"``), summed;
- symmetry: ``|len(left limb) - len(right limb)|`` for forearms and lower legs (the paper's term);
- bone length: squared deviation of every bone from a per-subject length, in units of that bone's tolerance
  (:class:`BonePrior`);
- temporal: offline, squared second differences over frames (acceleration); streaming, squared deviation from a
  constant-velocity prediction, both in units of ``temporal_sigma``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

MAX_ALPHA = 0.99
"""Opacity clamp of the published rasteriser (the peak of a full-opacity splat)."""
EPS2D = 0.3
"""Screen-space dilation added to every projected covariance, px^2 (3DGS and gsplat default)."""


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the refinement. World units are the calibration's (metres in ROS).

    Attributes:
        optimizer: ``adam`` (the paper's: any renderer, shapes optionally fitted) or ``gauss_newton`` (the closed-form
            ``analytic`` objective with fixed isotropic splats, solved in numpy: ``gauss_newton.py``; needs
            ``energy`` normalisation, ``target_sigma_px``, no symmetry term, and neither a renderer other than
            ``analytic`` nor a CUDA device: it has no renderer and runs on the CPU).
        steps: Adam steps (the paper's 500 iterations with accumulation 4 are 125 steps), or Gauss-Newton iterations.
        step_tolerance: ``gauss_newton`` only: a frame whose step moves no joint this far (world units) has
            converged and takes no more iterations (0 = every frame takes all ``steps``).
        splat_sigma_start: ``gauss_newton`` only: splat size of the first iteration, shrinking geometrically to
            ``init_sigma`` at the last (``None`` = ``init_sigma`` throughout).
        backend: renderer of the Adam path (``raster``, ``analytic``, ``gsplat``, or ``auto``: gsplat on CUDA when
            it is usable, else ``analytic``).
        init_sigma: initial isotropic standard deviation of every Gaussian.
        distal_sigma: initial sigma of the distal joints (ankles, elbows, wrists); ``None`` = ``init_sigma``.
        optimise_shape: also fit log-scales and rotations (the paper does, with their own learning rates).
        position_lr: initial position learning rate, multiplied by the rig's spatial scale when
            ``position_lr_spatial`` (the 3DGS ``spatial_lr_scale``), else in world units per step.
        position_lr_final: final position learning rate (same scaling).
        lr_schedule_iterations: the log-linear decay reaches ``position_lr_final`` after this many iterations.
        iterations_per_step: iterations counted per Adam step for the schedule (the paper's accumulation of 4).
        scale_lr, rotation_lr: learning rates of log-scales and quaternions.
        adam_eps: Adam epsilon (1e-15 in the paper).
        target_sigma_px: heatmap sigma in px; ``None`` = the paper's: the projected initial Gaussian's eigenvalues.
        confidence_sigma_power: heatmap sigma grows as ``confidence ** -power`` (0 = ignore confidences there).
        subpixel_targets: heatmaps at the exact keypoint; ``False`` = the paper's truncation to the pixel.
        use_confidence: weight each (view, joint) by the detector's confidence; ``False`` = every detection 1.
        loss_normalisation: ``masked_mean`` (paper) or ``energy`` (see module docstring).
        symmetry_weight: weight of the forearm/lower-leg symmetry term (paper: 1e-5 per mm = 1e-2 per metre).
        bone_length_weight: weight of the per-subject bone-length term (0 = off).
        bone_length_sigma: smallest tolerance of the bone-length term (world units; see ``BonePrior``).
        bone_length_spread: each bone's tolerance widens to this many robust standard deviations of the length
            samples it was estimated from (0 = ``bone_length_sigma`` for every bone).
        temporal_weight: weight of the temporal term (0 = off).
        temporal_sigma: tolerance of the temporal term (world units per frame^2 offline, world units streaming).
        frame_chunk: frames optimised together (bounds memory; the temporal term only couples within a chunk).
        device: torch device of the Adam path: ``auto`` (CUDA when torch sees a device, else the CPU), ``cpu``,
            ``cuda`` or ``cuda:N``.
    """

    optimizer: str = "adam"
    steps: int = 125
    step_tolerance: float = 0.0
    splat_sigma_start: float | None = None
    backend: str = "raster"
    init_sigma: float = math.exp(3.0) / 1000.0
    distal_sigma: float | None = None
    optimise_shape: bool = True
    position_lr: float = 5e-4
    position_lr_final: float = 5e-6
    position_lr_spatial: bool = True
    lr_schedule_iterations: int = 4000
    iterations_per_step: int = 4
    scale_lr: float = 5e-3
    rotation_lr: float = 1e-3
    adam_eps: float = 1e-15
    target_sigma_px: float | None = None
    confidence_sigma_power: float = 0.0
    subpixel_targets: bool = False
    use_confidence: bool = False
    loss_normalisation: str = "masked_mean"
    symmetry_weight: float = 1e-2
    bone_length_weight: float = 0.0
    bone_length_sigma: float = 0.01
    bone_length_spread: float = 0.0
    temporal_weight: float = 0.0
    temporal_sigma: float = 0.01
    frame_chunk: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.loss_normalisation not in ("masked_mean", "energy"):
            raise ValueError(f"loss_normalisation must be masked_mean or energy, not {self.loss_normalisation!r}")
        if self.steps < 0 or self.step_tolerance < 0:
            raise ValueError("steps and step_tolerance must be >= 0")
        if self.optimizer not in ("adam", "gauss_newton"):
            raise ValueError(f"optimizer must be adam or gauss_newton, not {self.optimizer!r}")
        if self.optimizer == "gauss_newton" and (
            self.loss_normalisation != "energy" or self.target_sigma_px is None or self.symmetry_weight > 0
        ):
            raise ValueError("gauss_newton needs loss_normalisation='energy', a target_sigma_px and symmetry_weight=0")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.optimizer == "gauss_newton" and self.backend in ("raster", "gsplat"):
            raise ValueError(f"gauss_newton evaluates the analytic objective in closed form: no backend {self.backend}")
        if self.optimizer == "gauss_newton" and self.device.startswith("cuda"):
            raise ValueError(f"gauss_newton runs on the CPU (numpy, C): no device {self.device}")


@dataclass
class BonePrior:
    """What the bone-length term pulls towards.

    Attributes:
        lengths: ``[B]`` per-subject bone lengths (NaN = no prior on that bone), or ``[F, B]`` when the frames of a
            batch are different people (the multi-person tracker refits all its people at once).
        sigmas: ``[B]`` (or ``[F, B]``) tolerance of each bone (world units).
    """

    lengths: np.ndarray
    sigmas: np.ndarray


@dataclass
class TemporalPrior:
    """What the temporal term pulls towards.

    Attributes:
        mode: ``smooth`` (offline second differences) or ``predict`` (streaming, pull to ``prediction``).
        prediction: ``[F, J, 3]`` predicted positions for ``predict`` (NaN = no prediction for that joint).
        sigma_scale: multiplies ``temporal_sigma``: a prediction across a longer gap is less certain. A float, or
            ``[F]`` per frame (a batch of different people).
        anchor: ``[F, J, 3]`` a second ``predict`` pull, with its own ``anchor_information [F, J, 3, 3]`` (world
            units^-2; zero: none): the term ``(x - anchor)^T anchor_information (x - anchor)``, whatever
            ``temporal_weight`` (streaming's depth filter: the causal jerk filters' prediction along the directions
            the views barely fix). Gauss-Newton only.
    """

    mode: str
    prediction: np.ndarray | None = None
    sigma_scale: float | np.ndarray = 1.0
    anchor: np.ndarray | None = None
    anchor_information: np.ndarray | None = None


@dataclass
class RefineResult:
    """Per frame and joint.

    Attributes:
        means: ``[F, J, 3]``.
        covariances: ``[F, J, 3, 3]`` position uncertainty of the means (world units^2): first order, from the
            views that agree with them; directions no view constrains get a large variance. ``None``: not asked
            for (``refine(covariances=False)``).
        reprojection: ``[V, F, J]`` px distance between projected means and keypoints (NaN where missing).
        agreement: ``[V, F, J]`` in [0, 1], how well each view's heatmap and splat overlap at the end.
        final_loss: the objective after the last step, per frame ``[F]``.
        splat_covariances: ``[F, J, 3, 3]`` shapes of the fitted Gaussians (Adam only; ``None`` for Gauss-Newton,
            whose splats are fixed isotropic ones): the splat's extent, not an uncertainty.
    """

    means: np.ndarray
    covariances: np.ndarray | None
    reprojection: np.ndarray
    agreement: np.ndarray
    final_loss: np.ndarray
    splat_covariances: np.ndarray | None = None


def detection_weights(uv: np.ndarray, confidence: np.ndarray, config: RefineConfig) -> np.ndarray:
    """Weight ``[V, F, J]`` of each observation: its confidence (or 1 when confidences are ignored), 0 if missing."""
    valid = np.isfinite(uv).all(axis=-1) & (np.nan_to_num(confidence) > 0)
    return np.where(valid, confidence if config.use_confidence else 1.0, 0.0)


def heatmap_variance_growth(confidence: np.ndarray, config: RefineConfig) -> np.ndarray:
    """Factor ``[V, F, J]`` on each heatmap's variance: ``confidence ** (-2 power)`` (less sure = wider), or 1."""
    if config.confidence_sigma_power <= 0:
        return np.ones_like(confidence)
    return np.clip(np.nan_to_num(confidence), 0.05, None) ** (-2.0 * config.confidence_sigma_power)
