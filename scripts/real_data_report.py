#!/usr/bin/env python3
"""Figures of BENCHMARKS.md's real-data section: the Pose2Sim demo take through every fusion method.

There is no 3D ground truth for this take, so it reports what can be judged without one: the median
reprojection error over the views each method used, how steady the eight limb bones (upper arms, forearms,
thighs, shanks) stay over time (standard deviation of each length over the frames, median and max over the
bones), the share of joints estimated, and the time. Needs ``scripts/fetch_pose2sim_demo.py`` first.

    .venv/bin/python scripts/real_data_report.py [--data data/pose2sim_demo]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from skelsplat_ros.bench.limbs import LIMBS
from skelsplat_ros.fusion import fuse_offline, fuse_streaming, preset_config
from skelsplat_ros.geometry.calibration import load_calibration
from skelsplat_ros.io.keypoints import align_to_rig, load_keypoints
from skelsplat_ros.skeleton.models import get_skeleton

def limb_std_mm(joints: np.ndarray, names: list[str]) -> np.ndarray:
    """Standard deviation over frames of each limb bone's length ``[8]`` in mm (NaN frames skipped)."""
    index = {n: k for k, n in enumerate(names)}
    lengths = np.stack([np.linalg.norm(joints[:, index[a]] - joints[:, index[b]], axis=-1) for a, b in LIMBS], axis=1)
    return 1000.0 * np.nanstd(lengths, axis=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/pose2sim_demo", help="folder written by fetch_pose2sim_demo.py")
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "calib.toml").exists():
        print(f"no {data / 'calib.toml'}: run scripts/fetch_pose2sim_demo.py first", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    take, rig = align_to_rig(load_keypoints(data / "keypoints.npz"), load_calibration(data / "calib.toml"))
    skeleton = get_skeleton(take.skeleton or "body25b")
    keypoints = take.keypoints
    names = list(skeleton.joint_names)
    fps = take.fps or 30.0

    def offline(config):
        return lambda: fuse_offline(rig, skeleton, keypoints, config, fps=fps)

    def streaming(config):
        return lambda: fuse_streaming(rig, skeleton, keypoints, config, fps)

    methods = {
        "DLT": offline(preset_config("default", "dlt")),
        "robust triangulation": offline(preset_config("default", "robust")),
        "SkelSplat default offline": offline(preset_config("default")),
        "SkelSplat offline, Adam 2nd differences (before)": offline(replace(preset_config("default"), smoothing=None)),
        "SkelSplat default streaming": streaming(preset_config("default")),
    }
    print(f"{keypoints.shape[1]} frames, {len(rig)} views, {skeleton.name}")
    print("| method | median reprojection error (px) | limb-length std, median / max over 8 limb bones (mm) "
          "| joints estimated | ms/frame |")
    print("|---|---|---|---|---|")
    for name, run in methods.items():
        start = time.perf_counter()
        result = run()
        elapsed = (time.perf_counter() - start) / keypoints.shape[1]
        spread = limb_std_mm(result.joints, names)
        estimated = 100.0 * np.isfinite(result.joints).all(-1).mean()
        print(f"| {name} | {np.nanmedian(result.reprojection_error):.2f} | {np.median(spread):.1f} / "
              f"{np.max(spread):.1f} | {estimated:.1f} % | {1000 * elapsed:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
