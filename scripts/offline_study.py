#!/usr/bin/env python3
"""Figures of BENCHMARKS.md's offline-estimator study: where each method's error lies, on simulated takes with
ground truth.

For robust triangulation, the previous ``default`` offline refinement (Adam with the second-difference term), the
current one (robust jerk smoothing between Gauss-Newton passes), streaming and Pose2Sim's filtered triangulation
(when installed), pooled over the seeds given:

- frequency content: the share of each method's squared error (estimate - truth, per joint and axis, mean
  removed) below 2 Hz, 2-6 Hz and above 6 Hz, beside the same shares of the true motion's own power;
- MPJPE at the frames that matter: where the triangulation had a gap, where only one view saw the joint, where a
  view carried a confident outlier or a left/right swap, the 3 frames either side of those outlier frames (does
  an outlier drag its neighbours?), and everywhere else;
- bone lengths: mean absolute error of every bone's length against the true one.

    .venv/bin/python scripts/offline_study.py --rigs lab,robot --noise realistic --seeds 20,21
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from skelsplat_ros.bench.pose2sim_peer import pose2sim_available, run_pose2sim
from skelsplat_ros.fusion import fuse_offline, fuse_streaming, preset_config
from skelsplat_ros.fusion.result import bone_lengths_of
from skelsplat_ros.sim import make_scenario

BANDS_HZ = ((0.0, 2.0), (2.0, 6.0), (6.0, np.inf))
NEIGHBOURS = 3


def band_shares(signal: np.ndarray, fps: float) -> np.ndarray:
    """Share of the power of ``signal [F, ...]`` (mean removed, NaN frames as 0) in each of ``BANDS_HZ``."""
    centred = np.nan_to_num(signal - np.nanmean(signal, axis=0))
    power = np.abs(np.fft.rfft(centred, axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1.0 / fps)
    per_band = np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in BANDS_HZ])
    return per_band / max(per_band.sum(), 1e-30)


def frame_groups(scenario, robust: np.ndarray) -> dict[str, np.ndarray]:
    """Masks ``[F, J]`` of the frames that matter (module docstring)."""
    info = scenario.info
    seen = np.isfinite(scenario.keypoints[..., :2]).all(-1) & (scenario.keypoints[..., 2] > 0)
    gap = ~np.isfinite(robust).all(-1)
    single = seen.sum(0) == 1
    outlier = (info.outlier | info.swapped[..., None]).any(0)
    near = np.zeros_like(outlier)
    for shift in range(1, NEIGHBOURS + 1):
        near[shift:] |= outlier[:-shift]
        near[:-shift] |= outlier[shift:]
    near &= ~outlier
    rest = ~(gap | single | outlier | near)
    return {"gap": gap, "one view": single, "outlier": outlier, "near outlier": near, "rest": rest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rigs", default="lab,robot", help="rig kinds ('-distorted' suffix: lens distortion)")
    parser.add_argument("--noise", default="realistic")
    parser.add_argument("--seeds", default="20,21")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    default = preset_config("default")
    methods = {
        "robust triangulation": lambda s: fuse_offline(s.rig, s.skeleton, s.keypoints, preset_config("default", "robust")).joints,
        "offline, Adam 2nd differences (before)": lambda s: fuse_offline(
            s.rig, s.skeleton, s.keypoints, replace(default, smoothing=None), fps=s.fps
        ).joints,
        "offline, jerk smoothing (now)": lambda s: fuse_offline(s.rig, s.skeleton, s.keypoints, default, fps=s.fps).joints,
        "streaming": lambda s: fuse_streaming(s.rig, s.skeleton, s.keypoints, default, s.fps).joints,
    }
    if pose2sim_available():
        methods["Pose2Sim filtered"] = lambda s: run_pose2sim(
            s.rig, s.skeleton, s.keypoints, s.fps, any(np.any(c.dist != 0) for c in s.rig)
        )[1]
    for rig in args.rigs.split(","):
        kind, distorted = rig.removesuffix("-distorted"), rig.endswith("-distorted")
        scenarios = [
            make_scenario(kind, num_frames=args.frames, noise=args.noise, seed=int(seed), distortion=distorted)
            for seed in args.seeds.split(",")
        ]
        truth_shares = np.mean([band_shares(s.ground_truth, s.fps) for s in scenarios], axis=0)
        print(f"\n### {rig}, {args.noise} noise, seeds {args.seeds}")
        print("true motion power per band: " + ", ".join(f"{lo:g}-{hi:g} Hz {100 * v:.1f} %" for (lo, hi), v in zip(BANDS_HZ, truth_shares)))
        robust_runs = [methods["robust triangulation"](s) for s in scenarios]
        groups = [frame_groups(s, r) for s, r in zip(scenarios, robust_runs)]
        names = list(groups[0])
        share = {name: 100 * np.mean([g[name].mean() for g in groups]) for name in names}
        print("\n| method | MPJPE mm | error power <2 / 2-6 / >6 Hz % | " + " | ".join(f"{n} ({share[n]:.1f} %)" for n in names) + " | bone length error mm |")
        print("|---" * (4 + len(names)) + "|")
        for label, run in methods.items():
            errors, shares, bone_errors = [], [], []
            per_group = {name: [] for name in names}
            for scenario, group, robust in zip(scenarios, groups, robust_runs):
                joints = robust if label == "robust triangulation" else run(scenario)
                error = np.linalg.norm(joints - scenario.ground_truth, axis=-1) * 1000.0
                errors.append(error[np.isfinite(error)])
                shares.append(band_shares(joints - scenario.ground_truth, scenario.fps))
                for name in names:
                    picked = error[group[name]]
                    per_group[name].append(picked[np.isfinite(picked)])
                true_lengths = bone_lengths_of(scenario.ground_truth, scenario.skeleton)
                bone_error = np.abs(bone_lengths_of(joints, scenario.skeleton) - true_lengths) * 1000.0
                bone_errors.append(bone_error[np.isfinite(bone_error)])
            share_text = " / ".join(f"{100 * v:.0f}" for v in np.mean(shares, axis=0))
            group_text = " | ".join(
                f"{np.concatenate(per_group[n]).mean():.1f}" if np.concatenate(per_group[n]).size else "-" for n in names
            )
            print(f"| {label} | {np.concatenate(errors).mean():.1f} | {share_text} | {group_text} | {np.concatenate(bone_errors).mean():.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
