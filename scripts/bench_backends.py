#!/usr/bin/env python3
"""Speed of the refinement per renderer backend and device: raster, analytic and gsplat, on CPU and CUDA.

For each backend, view count (4: the ``lab`` rig, 8: the ``surround`` rig) and batch of frames, on the same
simulated recording (``make_scenario``, realistic detector noise, h36m17 = 17 joints), with the ``paper`` preset:
- ``step``: one Adam iteration of ``refine()`` (learning-rate update, forward, backward, optimiser step), median
  over ``--repeats`` after ``--warmup`` iterations; CUDA is synchronised around every timed iteration;
- ``refine``: a whole ``refine()`` call (targets, ``--refine-steps`` Adam steps, final evaluation, copy back),
  median over up to ``--refine-repeats`` runs after one warm-up run. Rows where it would take longer than
  ``--refine-budget-s`` show the estimate ``~steps x step`` instead;
- ``P``: the patch size at the start (raster and gsplat render P x P pixels per view, frame and joint);
- ``MPJPE``: of the refined joints against the ground truth (a sanity check that all backends agree).

Rows are ordered CUDA first; once ``--budget-s`` is spent the remaining rows are listed as skipped. The table is
printed, and rewritten to ``--out`` after every row (a run cut short still leaves what it measured).

Usage: ``python scripts/bench_backends.py [--quick] [--out FILE]`` from the repository root (PYTHONPATH=.).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skelsplat_ros.fusion import preset_config, triangulate_baseline  # noqa: E402
from skelsplat_ros.fusion.adam import Objective, position_learning_rate  # noqa: E402
from skelsplat_ros.fusion.refine import refine  # noqa: E402
from skelsplat_ros.fusion.result import split_keypoints  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402

BACKENDS = ("gsplat-cuda", "raster-cuda", "analytic-cuda", "analytic-cpu", "raster-cpu")
RIGS = {4: "lab", 8: "surround"}


@dataclass
class Row:
    backend: str
    views: int
    frames: int
    patch: str = "-"
    step_ms: float = math.nan
    refine_ms: float = math.nan
    refine_estimated: bool = False
    refine_runs: int = 0
    mpjpe_mm: float = math.nan
    note: str = ""
    extra: dict = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def versions() -> dict[str, str]:
    info = {
        "torch": torch.__version__,
        "cuda (torch)": str(torch.version.cuda),
        "python": platform.python_version(),
        "cpu": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
    }
    try:
        from importlib.metadata import version

        info["gsplat"] = version("gsplat")
    except Exception:  # noqa: BLE001 - not installed
        info["gsplat"] = "not installed"
    info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return info


def backend_unavailable(backend: str) -> str | None:
    """Why a ``name-device`` backend cannot run here, or None."""
    name, device = backend.split("-")
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA"
    if name == "gsplat":
        from skelsplat_ros.fusion.renderers.gsplat_renderer import (
            gsplat_unavailable_reason,
        )

        reason = gsplat_unavailable_reason()
        if reason is not None:
            return reason[:120]
    return None


class Inputs:
    """One recording per view count, cut to the largest batch; the initial guess is the paper preset's DLT."""

    def __init__(self, views: int, max_frames: int, seed: int):
        self.scenario = make_scenario(RIGS[views], num_frames=max_frames, noise="realistic", seed=seed)
        assert len(self.scenario.rig) == views
        config = preset_config("paper")
        self.uv, self.confidence = split_keypoints(self.scenario.rig, self.scenario.keypoints)
        points, _ = triangulate_baseline(self.scenario.rig, self.uv, self.confidence, config, "dlt")
        # Joints nobody triangulated start at the ground truth (only timing matters for them).
        self.init = np.where(np.isfinite(points).all(-1, keepdims=True), points, self.scenario.ground_truth)

    def cut(self, frames: int):
        return self.uv[:, :frames], self.confidence[:, :frames], self.init[:frames], self.scenario.ground_truth[:frames]


def time_steps(
    inputs: Inputs, config, frames: int, warmup: int, repeats: int, budget_s: float
) -> tuple[list[float], str]:
    """Seconds per Adam iteration of refine()'s loop (same code path), and the initial patch size.

    The first iteration is always a warm-up; when it is slow, fewer iterations are timed so that the row stays
    within ``budget_s`` (at least one).
    """
    uv, confidence, init, _ = inputs.cut(frames)
    rig, skeleton = inputs.scenario.rig, inputs.scenario.skeleton
    objective = Objective(rig, skeleton, config, uv, confidence, init, None, None)
    splats = objective.splats
    patch = "-"
    if config.backend in ("raster", "gsplat"):
        from skelsplat_ros.fusion.renderers.gsplat_renderer import patch_radius_for

        patch = str(2 * patch_radius_for(splats, objective.cameras, objective.targets) + 1)
    params = [splats.means, splats.log_scales, splats.quats]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(
        [{"params": [splats.means], "lr": 0.0}, {"params": [splats.log_scales], "lr": config.scale_lr},
         {"params": [splats.quats], "lr": config.rotation_lr}],
        eps=config.adam_eps,
    )
    spatial_scale = rig.spatial_scale()
    times, step, planned = [], 0, max(1, warmup) + repeats
    while step < planned:
        synchronise(config.device)
        start = time.perf_counter()
        optimizer.param_groups[0]["lr"] = position_learning_rate(step, config, spatial_scale)
        optimizer.zero_grad(set_to_none=True)
        image, _ = objective.image_term()
        (image + objective.prior_terms()).sum().backward()
        optimizer.step()
        synchronise(config.device)
        elapsed = time.perf_counter() - start
        if step == 0:
            # Shrink the row to its budget from the first (warm-up) iteration's time.
            affordable = int(budget_s // max(elapsed, 1e-6))
            warmup = min(max(1, warmup), max(1, affordable - repeats))
            planned = warmup + max(1, min(repeats, affordable - 1))
        elif step >= warmup:
            times.append(elapsed)
        step += 1
    return times, patch


def time_refine(inputs: Inputs, config, frames: int, runs: int) -> tuple[list[float], float]:
    """Seconds per whole refine() call and the MPJPE (mm) of the last; the step timing before it is the warm-up."""
    uv, confidence, init, truth = inputs.cut(frames)
    rig, skeleton = inputs.scenario.rig, inputs.scenario.skeleton
    times, result = [], None
    for _ in range(runs):
        synchronise(config.device)
        start = time.perf_counter()
        result = refine(rig, skeleton, config, uv, confidence, init)
        synchronise(config.device)
        times.append(time.perf_counter() - start)
    mpjpe = float(np.nanmean(np.linalg.norm(result.means - truth, axis=-1))) * 1000.0
    return times, mpjpe


def fmt(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}" if value >= 1 else f"{value:.3f}"


def table(rows: list[Row], info: dict[str, str], args) -> str:
    lines = [
        "# Refinement speed per backend",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        *(f"- {key}: {value}" for key, value in info.items()),
        f"- data: make_scenario(lab 4 views / surround 8 views, h36m17, realistic noise, seed {args.seed}); "
        f"paper preset; step = median of up to {args.repeats} Adam iterations after {args.warmup} warm-up (fewer "
        f"when one takes over {args.step_budget_s:g}/{args.repeats} s); refine = {args.refine_steps} steps, median "
        f"of up to {args.refine_repeats} calls (runs); ~ = estimated as steps x step when one call would take over "
        f"{args.refine_budget_s:g} s",
        "",
        "| backend | views | frames | P | ms/step | ms/step/frame | refine ms | refine ms/frame | runs | MPJPE mm "
        "| note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        tilde = "~" if r.refine_estimated else ""
        step_ms = r.step_ms
        refine_ms = r.refine_ms
        lines.append(
            f"| {r.backend} | {r.views} | {r.frames} | {r.patch} | {fmt(step_ms, 2)} | {fmt(step_ms / r.frames, 3)} | "
            f"{tilde}{fmt(refine_ms)} | {tilde}{fmt(refine_ms / r.frames, 2)} | {r.refine_runs or '-'} | "
            f"{fmt(r.mpjpe_mm)} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--views", nargs="+", type=int, default=[4, 8], choices=sorted(RIGS))
    parser.add_argument("--frames", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="timed Adam iterations per row")
    parser.add_argument("--refine-steps", type=int, default=None, help="default: the paper preset's (125)")
    parser.add_argument("--step-budget-s", type=float, default=10.0,
                        help="time fewer iterations when a row's step timing would take longer")
    parser.add_argument("--refine-repeats", type=int, default=3)
    parser.add_argument("--refine-budget-s", type=float, default=15.0,
                        help="estimate instead of running refine() when one call would take longer")
    parser.add_argument("--budget-s", type=float, default=math.inf, help="stop starting rows after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a check: 4 views, 1 and 2 frames, 10 refine steps, few repeats")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    if args.quick:
        args.views, args.frames = [4], [1, 2]
        args.warmup, args.repeats, args.refine_repeats = 1, 3, 2
        args.refine_steps = args.refine_steps or 10
    if args.threads:
        torch.set_num_threads(args.threads)
    base = preset_config("paper").refine
    args.refine_steps = args.refine_steps if args.refine_steps is not None else base.steps

    started = time.perf_counter()
    info = versions()
    log(f"bench_backends: {info}")
    inputs = {v: Inputs(v, max(args.frames), args.seed) for v in args.views}
    order = sorted(args.backends, key=lambda b: (not b.endswith("cuda"), BACKENDS.index(b)))
    rows: list[Row] = []
    unavailable = {b: backend_unavailable(b) for b in order}
    for backend in order:
        name, device = backend.split("-")
        for views in args.views:
            for frames in sorted(args.frames):
                row = Row(backend, views, frames)
                rows.append(row)
                if unavailable[backend]:
                    row.note = f"skipped: {unavailable[backend]}"
                    continue
                if time.perf_counter() - started > args.budget_s:
                    row.note = "skipped: time budget"
                    continue
                config = replace(base, backend=name, device=device, steps=args.refine_steps)
                try:
                    steps, row.patch = time_steps(inputs[views], config, frames, args.warmup, args.repeats,
                                                  args.step_budget_s)
                    row.step_ms = 1000.0 * statistics.median(steps)
                    estimate = row.step_ms / 1000.0 * args.refine_steps
                    left = args.budget_s - (time.perf_counter() - started)
                    budget = min(args.refine_budget_s, left / 2)
                    if estimate <= budget:
                        runs = max(1, min(args.refine_repeats, int(budget // max(estimate, 1e-3))))
                        times, row.mpjpe_mm = time_refine(inputs[views], config, frames, runs)
                        row.refine_ms, row.refine_runs = 1000.0 * statistics.median(times), len(times)
                    else:
                        row.refine_ms, row.refine_estimated = 1000.0 * estimate, True
                except Exception as error:  # noqa: BLE001 - one broken backend must not lose the table
                    first = (str(error).splitlines() or [""])[0][:100]
                    row.note = f"error: {type(error).__name__}: {first}"
                    if device == "cuda":
                        torch.cuda.empty_cache()
                log(f"{backend} {views}v {frames}f: P {row.patch}, {fmt(row.step_ms, 2)} ms/step, "
                    f"refine {'~' if row.refine_estimated else ''}{fmt(row.refine_ms)} ms {row.note}")
                if args.out:
                    args.out.write_text(table(rows, info, args))
    text = table(rows, info, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
