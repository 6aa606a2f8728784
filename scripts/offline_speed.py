#!/usr/bin/env python3
"""Time of the offline ``default`` refinement against the one it replaced (Adam with the second-difference term),
measured alternately in one process on the same take: medians of ``--repeats`` runs and their ratio.

    .venv/bin/python scripts/offline_speed.py --rig lab --frames 300 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from skelsplat_ros.fusion import fuse_offline, preset_config
from skelsplat_ros.sim import make_scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rig", default="lab")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    take = make_scenario(args.rig, num_frames=args.frames, seed=args.seed)
    default = preset_config("default")
    configs = {"now (jerk smoothing)": default, "before (Adam, 2nd differences)": replace(default, smoothing=None)}
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, config in configs.items():
            start = time.perf_counter()
            fuse_offline(take.rig, take.skeleton, take.keypoints, config, fps=take.fps)
            times[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name}: {1000 * median / args.frames:.2f} ms/frame (median of {args.repeats})")
    now, before = medians.values()
    print(f"ratio now / before: {now / before:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
