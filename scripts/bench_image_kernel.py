#!/usr/bin/env python3
"""The Gauss-Newton image terms' implementations side by side in one process, CPU time (``time.thread_time``):

- one call on one frame and on a whole take (4 views x 17 joints x 1 or 300 frames, the scenario's rig and data);
- inside ``fuse_streaming`` and ``fuse_offline`` on the take: the time spent in the image terms per frame, the whole
  fuse per frame, and whether the fused joints are bit-identical to the first implementation's.

Implementations: ``C`` (``fusion/_image_kernel.c``, what the package runs), ``numpy`` (the reference, per call only:
a whole fuse with it takes minutes), and, with ``--numba-from DIR``, the numba kernel that the C one replaced, loaded
from an older source tree of this package (``git archive 2ad4a7a | tar -x -C DIR``). Implementations alternate
within each repeat; medians of ``--repeats``.

    .venv/bin/python scripts/bench_image_kernel.py --numba-from /tmp/numba_src
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import skelsplat_ros.fusion.gauss_newton as gauss_newton
import skelsplat_ros.fusion.output as output
from skelsplat_ros.fusion import fuse_offline, fuse_streaming, preset_config
from skelsplat_ros.fusion.image_terms import ImageTerms, image_terms, image_terms_numpy
from skelsplat_ros.sim import make_scenario


def numba_image_terms(source: Path):
    """The numba kernel's wrapper as it was, around ``_image_kernel.py`` of the tree at ``source``."""
    spec = importlib.util.spec_from_file_location("skelsplat_ros.fusion._numba_image_kernel",
                                                  source / "skelsplat_ros" / "fusion" / "_image_kernel.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its relative import (.objective) resolves in this package
    spec.loader.exec_module(module)
    f64 = functools.partial(np.ascontiguousarray, dtype=np.float64)

    def implementation(K, R, t, means, uv, weights, variance, sigma):
        return ImageTerms(*module.image_kernel(f64(K), f64(R), f64(t), f64(means), f64(uv), f64(weights),
                                               f64(variance), float(sigma)))
    return implementation


def cpu_us_per_call(implementation, arguments, calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        implementation(*arguments)
    return (time.thread_time() - start) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numba-from", type=Path, help="a source tree whose fusion/_image_kernel.py is numba's")
    parser.add_argument("--scenario", default="portrait:heavy", help="RIG:NOISE")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    implementations = {"C": image_terms}
    if args.numba_from:
        implementations["numba"] = numba_image_terms(args.numba_from)
    rig_kind, noise = args.scenario.split(":")
    scenario = make_scenario(rig_kind, num_frames=args.frames, noise=noise, seed=3)
    rig = scenario.rig
    uv = np.nan_to_num(rig.undistort(scenario.keypoints[..., :2]))
    confidence = np.nan_to_num(scenario.keypoints[..., 2])
    print(f"{args.scenario}, {args.frames} frames, {len(rig.K)} views; CPU time, medians of {args.repeats}")

    per_call = {**implementations, "numpy": image_terms_numpy}
    for frames in (1, args.frames):
        arguments = (rig.K, rig.R, rig.t, scenario.ground_truth[:frames], uv[:, :frames], confidence[:, :frames],
                     25.0 / np.clip(confidence[:, :frames], 0.05, None), 0.03)
        calls = max(20, 20000 // frames)
        for implementation in per_call.values():
            implementation(*arguments)  # first calls (numba loads its kernel) untimed
        times = {name: [] for name in per_call}
        for _ in range(args.repeats):
            for name, implementation in per_call.items():
                times[name].append(cpu_us_per_call(implementation, arguments, calls if name != "numpy" else 20))
        print(f"one call, {frames} frame(s) x {scenario.ground_truth.shape[1]} joints, us: "
              + ", ".join(f"{name} {statistics.median(t):.1f}" for name, t in times.items()))

    fuses = {"streaming": lambda: fuse_streaming(rig, scenario.skeleton, scenario.keypoints, config, scenario.fps),
             "offline": lambda: fuse_offline(rig, scenario.skeleton, scenario.keypoints, config)}
    config = preset_config("default")
    inside: dict[str, float] = {}

    def timed(name, implementation):
        def call(*arguments):
            start = time.thread_time()
            terms = implementation(*arguments)
            inside[name] += time.thread_time() - start
            return terms
        return call

    for mode, fuse in fuses.items():
        joints, whole, terms = {}, {name: [] for name in implementations}, {name: [] for name in implementations}
        for repeat in range(args.repeats + 1):  # the first round untimed
            for name, implementation in implementations.items():
                gauss_newton.image_terms = output.image_terms = timed(name, implementation)
                inside[name] = 0.0
                start = time.thread_time()
                joints[name] = fuse().joints
                if repeat:
                    whole[name].append(time.thread_time() - start)
                    terms[name].append(inside[name])
        gauss_newton.image_terms = output.image_terms = image_terms
        first = next(iter(implementations))
        identical = {name: np.array_equal(joints[first], j, equal_nan=True) for name, j in joints.items()}
        print(f"fuse_{mode}, ms per frame, whole / in the image terms: "
              + ", ".join(f"{name} {statistics.median(whole[name]) / args.frames * 1e3:.3f} / "
                          f"{statistics.median(terms[name]) / args.frames * 1e3:.3f}" for name in implementations)
              + "; joints bit-identical to C's: "
              + ", ".join(f"{name} {same}" for name, same in identical.items() if name != first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
