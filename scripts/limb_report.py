#!/usr/bin/env python3
"""How steady each person's limbs stay on a real take without ground truth (BENCHMARKS.md, issue 18).

Fuses a recording (a 5-D ``.npz`` of several people, or a 4-D one of one person) offline and streaming with the
``default`` preset, as ``skelsplat fuse`` does, and prints per person and limb the frames where the limb is output,
its median length, its longest length over the median and its coefficient of variation
(``skelsplat_ros/bench/limbs.py``). The issue's targets: max / median <= 1.5 and CV <= 0.05 for every limb output.

    .venv/bin/python scripts/limb_report.py --calibration calib.toml --keypoints keypoints_mediapipe.npz [--all-bones]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from skelsplat_ros.bench.limbs import LIMBS, limb_table, people_limb_consistency, skeleton_limbs, worst
from skelsplat_ros.fusion import fuse_offline, fuse_streaming, preset_config
from skelsplat_ros.geometry.calibration import load_calibration
from skelsplat_ros.io.keypoints import align_to_rig, load_keypoints, mask_outside_image
from skelsplat_ros.skeleton.models import get_skeleton
from skelsplat_ros.tracking.recording import track_offline, track_streaming


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", required=True, help="Pose2Sim/Anipose TOML")
    parser.add_argument("--keypoints", required=True, help=".npz keypoints (4-D: one person, 5-D: several)")
    parser.add_argument("--skeleton", default=None, help="skeleton name (default: the file's)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (default: the file's, else 30)")
    parser.add_argument("--all-bones", action="store_true", help="every bone of the skeleton, not the eight limbs")
    args = parser.parse_args()
    keypoints = load_keypoints(args.keypoints, skeleton=args.skeleton, fps=args.fps)
    keypoints, rig = align_to_rig(keypoints, load_calibration(args.calibration))
    keypoints, _ = mask_outside_image(keypoints, rig)
    skeleton = get_skeleton(args.skeleton or keypoints.skeleton)
    limbs = skeleton_limbs(skeleton) if args.all_bones else LIMBS
    fps = keypoints.fps or 30.0
    config = preset_config("default")
    for mode in ("offline", "streaming"):
        if keypoints.multi_person:
            run = track_offline if mode == "offline" else track_streaming
            result = run(rig, skeleton, keypoints.keypoints, config, fps)
            joints, ids = result.joints, result.track_ids
        else:
            fuse = fuse_offline if mode == "offline" else fuse_streaming
            single = fuse(rig, skeleton, keypoints.keypoints, config, fps=fps)
            joints, ids = single.joints[:, None], np.array([0])
        people = people_limb_consistency(joints, ids, list(skeleton.joint_names), limbs)
        present = np.isfinite(joints).all(-1).any(-1).sum(axis=0)
        print(f"\n## {mode}: {len(ids)} people, frames output per person {present.tolist()}, "
              f"{int(np.isfinite(joints).all(-1).sum())} joints output")
        for person, stats in people.items():
            ratio, cv = worst(stats)
            print(f"person {person}: worst max / median {ratio:.2f}, worst CV {cv:.3f}")
        print(limb_table(people))
    return 0


if __name__ == "__main__":
    sys.exit(main())
