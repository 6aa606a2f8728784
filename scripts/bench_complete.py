#!/usr/bin/env python3
"""Complete skeletons (`complete`, README "What is output" rule 5) against the true pose in simulation.

For each rig, noise and mode, the same takes are fused with and without `complete` (h36m17 or --skeleton, 300
frames, seeds --seeds: 3-5 by default, held out: the fill was tuned on 0-2). Prints, over the frames a person is
output in: the share of joints with a position (coverage) without and with `complete`; the error of the joints
output without it (observed; must not change), the same joints with it; the error of the filled joints (mean,
median, count); and the longest filled limb over the person's median observed length (both ends with confidence
> 0), with how many are over 1.2x (the arm and leg segments whose end is filled; must be <= 1.2; streaming and lag:
against the median of the frames so far, this one included, offline: of the take); streaming also against the length
estimate the fuser held the frame before to (`StreamingFuser.observed_lengths`; rule 5). The frames rule 4's warm-up
withholds without `complete` are in none of these figures.
Modes: streaming, offline, lag (fixed lag of 0.2 s: `--modes lag`).
Run: `.venv/bin/python scripts/bench_complete.py [--rigs lab,robot] [--noise realistic,hard] [--modes ...]`.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace

import numpy as np

from skelsplat_ros.fusion import StreamingFuser, fuse_offline, preset_config
from skelsplat_ros.fusion.fixed_lag import fuse_fixed_lag
from skelsplat_ros.fusion.result import FusionResult, bone_lengths_of, concatenate_results
from skelsplat_ros.sim import make_scenario

LIMBS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
LAG = 0.2
"""Look-ahead (s) of the ``lag`` mode (the fixed-lag smoother, the node's ``lag``)."""


def limb_bones(skeleton) -> np.ndarray:
    """Bones between two arm or leg joints (upper arm, forearm, thigh, shank) ``[L]``."""
    return np.array([b for b, (a, c) in enumerate(skeleton.bones)
                     if all(skeleton.joint_names[j][2:] in LIMBS for j in (a, c))
                     and skeleton.joint_names[a][:2] == skeleton.joint_names[c][:2]])


def streaming_held(take, config) -> tuple[FusionResult, np.ndarray]:
    """``fuse_streaming``'s output of ``take``, and the length estimate ``[F, B]`` the fuser held each frame's fills
    to (NaN before it has one)."""
    fuser = StreamingFuser(take.rig, take.skeleton, config)
    frames, held = [], []
    for f in range(take.keypoints.shape[1]):
        held.append(fuser.observed_lengths())
        frames.append(fuser.step(take.keypoints[:, f], f / take.fps))
    return concatenate_results(frames, list(take.skeleton.joint_names)), np.array(held)


def run(rig: str, noise: str, mode: str, seeds: list[int], skeleton: str) -> dict:
    config = preset_config("default")
    rows = {"observed": [], "observed_complete": [], "filled": [], "coverage": [], "coverage_complete": [], "ratio": [],
            "ratio_held": []}
    for seed in seeds:
        take = make_scenario(rig, skeleton_name=skeleton, noise=noise, seed=seed, num_frames=300)
        results, held = [], None
        for complete in (False, True):
            cfg = replace(config, complete=complete)
            if mode == "offline":
                results.append(fuse_offline(take.rig, take.skeleton, take.keypoints, cfg, fps=take.fps))
            elif mode == "lag":
                results.append(fuse_fixed_lag(take.rig, take.skeleton, take.keypoints, cfg, take.fps, LAG))
            else:
                result, held = streaming_held(take, cfg)
                results.append(result)
        plain, full = results
        out = np.isfinite(plain.joints).all(-1)
        frames = out.any(-1)
        error = [np.linalg.norm(r.joints - take.ground_truth, axis=-1) for r in results]
        filled = frames[:, None] & ~out & np.isfinite(full.joints).all(-1)
        rows["observed"].append(error[0][out])
        rows["observed_complete"].append(error[1][out])
        rows["filled"].append(error[1][filled])
        rows["coverage"].append(out[frames].ravel())
        rows["coverage_complete"].append(np.isfinite(full.joints).all(-1)[frames].ravel())
        bones = limb_bones(take.skeleton)
        # The person's observed lengths (both ends with confidence > 0: neither offered nor filled), as rule 5's own.
        seen_lengths = bone_lengths_of(np.where((plain.confidence > 0)[..., None], plain.joints, np.nan),
                                       take.skeleton)[:, bones]
        if mode == "offline":
            median = np.nanmedian(seen_lengths, axis=0)
        else:  # what the person's median was when the frame was output: over the frames before it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # bones not output yet
                median = np.stack([np.nanmedian(seen_lengths[:f + 1], axis=0) for f in range(len(seen_lengths))])
        lengths = bone_lengths_of(full.joints, take.skeleton)[:, bones]
        ends = take.skeleton.bone_array[bones]
        touched = filled[:, ends[:, 0]] | filled[:, ends[:, 1]]
        rows["ratio"].append((lengths / median)[touched])
        rows["ratio_held"].append((lengths / (median if held is None else held[:, bones]))[touched])
    return {k: np.concatenate(v) for k, v in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rigs", default="lab,robot,portrait,surround")
    parser.add_argument("--noise", default="realistic,hard")
    parser.add_argument("--modes", default="streaming,offline")
    parser.add_argument("--seeds", default="3,4,5")
    parser.add_argument("--skeleton", default="h36m17")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{args.skeleton}, seeds {seeds}, 300 frames each; errors in mm over the frames the person is output in")
    print("| rig | noise | mode | coverage % | with complete % | observed mm | observed, complete on | filled mm "
          "(mean / median) | filled joints | longest filled limb / median | filled limbs over 1.2x | against the lengths "
          "held to (estimate): longest, over 1.2x |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rig in args.rigs.split(","):
        for noise in args.noise.split(","):
            for mode in args.modes.split(","):
                r = run(rig, noise, mode, seeds, args.skeleton)
                filled = r["filled"]
                ratios = [r[k][np.isfinite(r[k])] for k in ("ratio", "ratio_held")]
                print(f"| {rig} | {noise} | {mode} | {100 * r['coverage'].mean():.2f} | "
                      f"{100 * r['coverage_complete'].mean():.2f} | {1e3 * r['observed'].mean():.1f} | "
                      f"{1e3 * r['observed_complete'].mean():.1f} | "
                      + (f"{1e3 * filled.mean():.1f} / {1e3 * np.median(filled):.1f}" if len(filled) else "-")
                      + f" | {len(filled)} | "
                      + " | ".join(f"{ratio.max():.3f} | {(ratio > 1.2).sum()} of {len(ratio)}" if len(ratio) else "- | -"
                                   for ratio in ratios) + " |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
