#!/usr/bin/env python3
"""The compiled Gauss-Newton iterations (``fusion/_image_kernel.c``: ``minimise``) and robust triangulation
(``geometry/_triangulation_kernel.c``) against their numpy references, in one process:

- the live tracker's step of the node's fusion thread (``LaggedTracker.step`` at ``--lag`` > 0, else
  ``MultiPersonTracker.step`` with the node's default settings), ``--people`` on the lab rig at 30 Hz, paced at the
  frame rate as the node is (a loop without pauses keeps the processor's caches warm and reads about a quarter
  less): the four combinations of the two kernels alternate frame by frame; medians of the step's wall and thread
  CPU time per combination, the first 60 frames (start-up) left out;
- ``fuse_offline`` and ``fuse_streaming`` of a 300-frame take, both kernels against both references, alternating:
  CPU per frame (medians of ``--repeats``) and the largest difference of the fused joints.

    .venv/bin/python scripts/bench_compiled.py --lag 0.2 --people 3
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

import numpy as np

import skelsplat_ros.fusion.gauss_newton as gauss_newton
import skelsplat_ros.geometry.triangulation as triangulation
from skelsplat_ros.fusion import fuse_offline, fuse_streaming, preset_config
from skelsplat_ros.ros.node import fusion_config, tracker_config
from skelsplat_ros.ros.params import FUSION_NODE_PARAMS
from skelsplat_ros.sim import make_scenario
from skelsplat_ros.sim.scenes import make_multi_person_scenario
from skelsplat_ros.skeleton.models import get_skeleton
from skelsplat_ros.tracking import MultiPersonTracker
from skelsplat_ros.tracking.lagged import LaggedTracker

COMPILED = {"minimise": gauss_newton._compiled_minimise, "triangulation": triangulation._compiled_kernel}
COMBINATIONS = list(itertools.product((True, False), repeat=2))  # (minimise compiled, triangulation compiled)


def use(minimise: bool, triangulate: bool) -> None:
    """Switch each kernel on (compiled) or off (its numpy reference)."""
    gauss_newton._compiled_minimise = COMPILED["minimise"] if minimise else lambda: None
    triangulation._compiled_kernel = COMPILED["triangulation"] if triangulate else lambda: None


def label(minimise: bool, triangulate: bool) -> str:
    return f"minimise {'C' if minimise else 'numpy'}, triangulation {'C' if triangulate else 'numpy'}"


def live(lag: float, people: int, frames: int, rate: float = 30.0) -> None:
    params = {spec.name: spec.default for spec in FUSION_NODE_PARAMS} | {"lag": lag}
    skeleton = get_skeleton(params["skeleton"])
    scene = make_multi_person_scenario("lab", people, num_frames=frames, fps=rate, noise="realistic", seed=0,
                                       skeleton_name=skeleton.name)
    config, tracking = fusion_config(params), tracker_config(params)
    lagged = LaggedTracker(scene.rig, skeleton, config, tracking, lag) if lag > 0 else None
    tracker = lagged.tracker if lagged is not None else MultiPersonTracker(scene.rig, skeleton, config, tracking)
    keypoints = scene.keypoints  # [V, F, S, J, 3]
    wall: dict[tuple, list[float]] = {c: [] for c in COMBINATIONS}
    cpu: dict[tuple, list[float]] = {c: [] for c in COMBINATIONS}
    for f in range(frames):
        combination = COMBINATIONS[f % len(COMBINATIONS)]
        use(*combination)
        detections = [view[np.isfinite(view[..., 0]).any(-1)] for view in keypoints[:, f]]
        started, cpu_started = time.perf_counter(), time.thread_time()
        if lagged is None:
            tracker.step(detections, f / rate)
        else:
            lagged.step(detections, f / rate)
        if f >= 60:
            wall[combination].append(time.perf_counter() - started)
            cpu[combination].append(time.thread_time() - cpu_started)
        if lagged is not None:
            lagged.settle()  # after the frame is out, as the node does
        time.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - started)))
    print(f"live step, lab rig, {people} {'person' if people == 1 else 'people'}, lag {lag:g} s, {frames} frames at "
          f"{rate:g} Hz (paced), ms per frame, median wall / thread CPU:")
    for combination in COMBINATIONS:
        print(f"  {label(*combination)}: {1e3 * statistics.median(wall[combination]):.2f} / "
              f"{1e3 * statistics.median(cpu[combination]):.2f}")


def offline_and_streaming(repeats: int, frames: int = 300) -> None:
    scenario = make_scenario("lab", num_frames=frames, noise="realistic", seed=11)
    config = preset_config("default")
    fuses = {"offline": lambda: fuse_offline(scenario.rig, scenario.skeleton, scenario.keypoints, config),
             "streaming": lambda: fuse_streaming(scenario.rig, scenario.skeleton, scenario.keypoints, config,
                                                 scenario.fps)}
    both = [(True, True), (False, False)]
    for mode, fuse in fuses.items():
        times: dict[tuple, list[float]] = {c: [] for c in both}
        joints = {}
        for repeat in range(repeats + 1):  # the first round untimed
            for combination in both:
                use(*combination)
                started = time.process_time()
                joints[combination] = fuse().joints
                if repeat:
                    times[combination].append(time.process_time() - started)
        compiled, reference = (statistics.median(times[c]) / frames * 1e3 for c in both)
        print(f"fuse_{mode}, {frames} frames, lab realistic, CPU ms per frame (median of {repeats}): both kernels "
              f"{compiled:.3f}, both references {reference:.3f} ({compiled / reference:.2f}x); largest difference of "
              f"the joints {np.nanmax(np.abs(joints[both[0]] - joints[both[1]])):.1e} m")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lag", type=float, default=0.2)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--frames", type=int, default=540, help="live frames (the first 60 are not timed)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if any(kernel() is None for kernel in COMPILED.values()):
        print("a compiled kernel is missing (make setup builds them): nothing to compare", file=sys.stderr)
        return 1
    live(args.lag, args.people, args.frames)
    offline_and_streaming(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
