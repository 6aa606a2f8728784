"""The multi-person tracker's cost per frame against the number of cameras and people, on one core.

Usage: ``.venv/bin/python scripts/bench_scaling.py [--views 4,8,16,24,31] [--people 1,3,5,10] [--frames 90]
[--seeds 10,11,12] [--markdown FILE]``

Per cell: a ring of N cameras (``make_ring_rig``) and P simulated people (``make_multi_person_scenario``,
``realistic`` detector noise, ghosts and mutual occlusion, everyone present from the first frame, so that the first
frame starts every track at once), through :class:`MultiPersonTracker` frame by frame at 30 fps after a warm-up on
another tracker (compilation and caches). Each frame is timed in wall-clock time and in CPU time of this thread
(``time.thread_time``, which waiting for a busy CPU does not inflate). The process runs on one core (pinned, one
thread for BLAS, OpenMP and numba).

Columns: the birth frame (frame 0, every person appearing), the steady frames' median (frames 1 on, pooled over
seeds), the worst frame (births included, over seeds), and recall and MPJPE of the published people against the
ground truth (a check that the work timed is the real one).
"""
import os

# One thread everywhere, set before numpy and numba load their pools.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from skelsplat_ros.bench.multi import score_people  # noqa: E402
from skelsplat_ros.fusion import preset_config  # noqa: E402
from skelsplat_ros.sim import make_ring_rig  # noqa: E402
from skelsplat_ros.sim.scenes import make_multi_person_scenario  # noqa: E402
from skelsplat_ros.tracking import MultiPersonTracker  # noqa: E402
from skelsplat_ros.tracking.recording import people_array, split_slots  # noqa: E402

HEADER = ("| cameras | people | birth frame ms (CPU) | steady p50 ms (CPU) | worst frame ms (CPU) | recall | MPJPE mm |\n"
          "|---|---|---|---|---|---|---|")


def time_scene(num_views: int, num_people: int, frames: int, seed: int) -> tuple[np.ndarray, float, float]:
    """Per-frame ``[F, 2]`` wall and CPU seconds of one scene, and the published people's recall and MPJPE (mm)."""
    scene = make_multi_person_scenario(make_ring_rig(num_views, seed=seed), num_people, frames, seed=seed,
                                       enter_leave=False)
    config = preset_config("default")
    detections = [split_slots(scene.keypoints, f) for f in range(frames)]
    warm = MultiPersonTracker(scene.rig, scene.skeleton, config)
    for f in range(min(3, frames)):
        warm.step(detections[f], f / scene.fps)
    tracker = MultiPersonTracker(scene.rig, scene.skeleton, config)
    times, published = np.zeros((frames, 2)), []
    for f in range(frames):
        wall, cpu = time.perf_counter(), time.thread_time()
        step = tracker.step(detections[f], f / scene.fps)
        times[f] = time.perf_counter() - wall, time.thread_time() - cpu
        published.append(step.people)
    joints = people_array(published, frames, scene.skeleton).joints
    score = score_people(joints, scene.ground_truth, scene.ground_truth)
    return times, score.recall, score.mpjpe_mm


def cell(num_views: int, num_people: int, frames: int, seeds: list[int]) -> str:
    runs = [time_scene(num_views, num_people, frames, seed) for seed in seeds]
    births = np.array([t[0] for t, _, _ in runs]) * 1000.0  # [S, 2]
    steady = np.concatenate([t[1:] for t, _, _ in runs]) * 1000.0
    worst = np.concatenate([t for t, _, _ in runs]).max(axis=0) * 1000.0
    birth = np.median(births, axis=0)
    p50 = np.median(steady, axis=0) if len(steady) else np.full(2, np.nan)
    recall = np.mean([r for _, r, _ in runs])
    mpjpe = np.mean([m for _, _, m in runs])
    return (f"| {num_views} | {num_people} | {birth[0]:.1f} ({birth[1]:.1f}) | {p50[0]:.1f} ({p50[1]:.1f}) | "
            f"{worst[0]:.1f} ({worst[1]:.1f}) | {recall:.3f} | {mpjpe:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", default="4,8,16,24,31", help="comma-separated camera counts (rings)")
    parser.add_argument("--people", default="1,3,5,10", help="comma-separated people counts")
    parser.add_argument("--frames", type=int, default=90, help="frames per scene (30 fps)")
    parser.add_argument("--seeds", default="10,11,12", help="scene seeds (0-2 were used for tuning the tracker)")
    parser.add_argument("--cpu", type=int, default=-1, help="core to run on (default: the last this process may use)")
    parser.add_argument("--markdown", default="", help="also write the table to this markdown file")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1] if args.cpu < 0 else args.cpu
    os.sched_setaffinity(0, {core})
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to core {core}; "
          f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}; seeds {seeds}, {args.frames} frames; "
          "ms = median wall clock (CPU time of the thread in brackets)")
    print(HEADER, flush=True)
    rows = []
    for num_views in (int(v) for v in args.views.split(",")):
        for num_people in (int(p) for p in args.people.split(",")):
            rows.append(cell(num_views, num_people, args.frames, seeds))
            print(rows[-1], flush=True)
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
