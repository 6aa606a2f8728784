#!/usr/bin/env python3
"""Offline MPJPE of the ``default`` preset against the same preset with a constant splat size in its offline fit
(``prefit.init_sigma``, no shrinking from ``splat_sigma_start``), on simulated one-person takes with ground truth:
the sim side of BENCHMARKS.md's "Images in" (the real take's side: ``bench_detect.py --splat``).

    .venv/bin/python scripts/bench_offline_splat.py --splats 0.03 [--rigs surround,lab,robot,portrait] [--seeds 0-5]

Per rig, the mean MPJPE (mm, over the joints output) on the tuning seeds 0-2 and the held-out seeds 3-5, then each
seed; coco17 (the real take's skeleton), realistic noise, 200 frames at 30 fps.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from skelsplat_ros.bench.engine import score
from skelsplat_ros.fusion import fuse_offline, preset_config
from skelsplat_ros.sim import make_scenario

TUNING, HELD_OUT = (0, 1, 2), (3, 4, 5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splats", default="0.03", help="constant offline splat sizes (m) to compare with the preset")
    parser.add_argument("--rigs", default="surround,lab,robot,portrait")
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--noise", default="realistic")
    args = parser.parse_args()
    preset = preset_config("default")
    fit = preset.prefit
    start = "" if fit.splat_sigma_start is None else f"{1000 * fit.splat_sigma_start:g} -> "
    configs = {f"preset ({start}{1000 * fit.init_sigma:g} mm)": preset}
    for size in (float(s) for s in args.splats.split(",") if s):
        configs[f"{1000 * size:g} mm"] = replace(preset, prefit=replace(fit, init_sigma=size, splat_sigma_start=None))
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| rig | offline splat | MPJPE mm, seeds 0-2 | MPJPE mm, seeds 3-5 | per seed |\n|---|---|---|---|---|")
    for rig in args.rigs.split(","):
        takes = {seed: make_scenario(rig, "coco17", args.frames, noise=args.noise, seed=seed) for seed in seeds}
        for name, config in configs.items():
            errors = {seed: score(fuse_offline(t.rig, t.skeleton, t.keypoints, config, fps=t.fps).joints,
                                  t.ground_truth)[0] for seed, t in takes.items()}
            means = [np.mean([errors[s] for s in group if s in errors]) if any(s in errors for s in group)
                     else np.nan for group in (TUNING, HELD_OUT)]
            per_seed = " ".join(f"{seed}: {error:.2f}" for seed, error in errors.items())
            print(f"| {rig} | {name} | {means[0]:.2f} | {means[1]:.2f} | {per_seed} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
