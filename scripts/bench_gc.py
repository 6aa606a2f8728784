#!/usr/bin/env python3
"""What Python's cyclic garbage collector costs the fusion node's frames, with and without ``gc.freeze()`` after the
warm-up (what ``skelsplat_node`` does).

Each mode runs in a fresh process that imports the node's modules (rclpy, the fusion and tracking core, the numba
kernels), warms the tracker up as the node does (``tracking.warmup.warm_up``), then, with ``--freeze``, collects
and freezes. It then times full collections (``gc.collect()``), and tracks a simulated take (``--people`` people,
lab rig, realistic noise) frame by frame, timing every collection the interpreter starts by itself during the
frames (``gc.callbacks``): how many, of which generation, and how long. CPU times of the thread
(``time.thread_time``), so that the load of a shared machine does not count.

    .venv/bin/python scripts/bench_gc.py [--frames 600] [--people 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def run(freeze: bool, frames: int, people: int) -> dict:
    import gc

    import numpy as np

    import skelsplat_ros.ros.node  # noqa: F401  (what the node process holds: rclpy, messages, the core)
    from skelsplat_ros.fusion import preset_config
    from skelsplat_ros.sim.scenes import make_multi_person_scenario
    from skelsplat_ros.tracking import MultiPersonTracker, TrackerConfig
    from skelsplat_ros.tracking.recording import split_slots
    from skelsplat_ros.tracking.warmup import warm_up

    scene = make_multi_person_scenario("lab", num_people=people, num_frames=frames, noise="realistic", seed=3)
    config = preset_config("default")
    warm_up(scene.rig, scene.skeleton, config, TrackerConfig())
    if freeze:
        gc.collect()
        gc.freeze()
    full = []
    for _ in range(5):
        started = time.thread_time()
        gc.collect()
        full.append(1e3 * (time.thread_time() - started))
    collections: list[tuple[int, float]] = []
    clock: dict[str, float] = {}

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            clock["start"] = time.thread_time()
        else:
            collections.append((info["generation"], 1e3 * (time.thread_time() - clock["start"])))

    tracker = MultiPersonTracker(scene.rig, scene.skeleton, config)
    step_ms = []
    gc.callbacks.append(note)
    for f in range(frames):
        started = time.thread_time()
        tracker.step(split_slots(scene.keypoints, f), f / scene.fps)
        step_ms.append(1e3 * (time.thread_time() - started))
    gc.callbacks.remove(note)
    oldest = [ms for generation, ms in collections if generation == 2]
    return {"freeze": freeze, "tracked_objects": len(gc.get_objects()), "frozen": gc.get_freeze_count(),
            "full_ms": float(np.median(full)), "collections": len(collections), "gen2": len(oldest),
            "gen2_ms_max": max(oldest, default=0.0), "gen2_ms_median": float(np.median(oldest)) if oldest else 0.0,
            "step_p50": float(np.percentile(step_ms, 50)), "step_p99": float(np.percentile(step_ms, 99)),
            "step_max": max(step_ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--child", choices=["plain", "freeze"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child == "freeze", args.frames, args.people)))
        return 0
    print(f"lab rig, {args.people} people, {args.frames} frames; CPU ms of the thread")
    print("| after the warm-up | objects tracked by gc | frozen | full gc.collect() ms | collections during the "
          "frames | of the oldest generation | their ms (median, max) | step p50 / p99 / max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("plain", "freeze"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--frames", str(args.frames),
                              "--people", str(args.people)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {'gc.freeze()' if r['freeze'] else 'nothing'} | {r['tracked_objects']} | {r['frozen']} | "
              f"{r['full_ms']:.1f} | {r['collections']} | {r['gen2']} | {r['gen2_ms_median']:.1f}, "
              f"{r['gen2_ms_max']:.1f} | {r['step_p50']:.1f} / {r['step_p99']:.1f} / {r['step_max']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
