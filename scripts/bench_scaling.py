"""The multi-person tracker's cost per frame against the number of cameras and people, on one core.

Usage: ``.venv/bin/python scripts/bench_scaling.py [--views 4,8,16,24,31] [--people 1,3,5,10] [--frames 90]
[--seeds 10,11,12] [--baseline TREE [--baseline-max-views 16]] [--markdown FILE]``

Per cell: a ring of N cameras (``make_ring_rig``) and P simulated people (``make_multi_person_scenario``,
``realistic`` detector noise, ghosts and mutual occlusion, everyone present from the first frame, so that the first
frame starts every track at once), through ``MultiPersonTracker`` frame by frame at 30 fps after a warm-up on
another tracker (compilation and caches) and ``gc.freeze()`` (what a real-time process does after its start-up:
with numba and scipy loaded a full collection of Python's cyclic garbage collector scans some 70,000 objects,
20-50 ms, and one falls in a frame now and then; ``--no-gc-freeze`` leaves them in). Each frame is timed in
wall-clock time and in CPU time of this thread (``time.thread_time``, which waiting for a busy CPU does not
inflate). The process runs on one core (pinned, one thread for BLAS, OpenMP and numba).

Columns: the birth frame (frame 0, every person appearing), the steady frames' median (frames 1 on, pooled over
seeds), the worst frame (births included, over seeds), and recall and MPJPE of the published people against the
ground truth (a check that the work timed is the real one).

``--baseline TREE``: the same scenes also through the tracker of another checkout (``TREE``, e.g. a ``git
worktree`` of main), in a subprocess on the same core right after this one, for the cells up to
``--baseline-max-views`` cameras (an exponential birth would not finish above that): its birth frame and steady
median CPU times, and the largest difference between the two trackers' published joints.
"""
import os

# One thread everywhere, set before numpy and numba load their pools.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

# Only what a baseline checkout also has is imported at module level: the worker runs this file against it.
from skelsplat_ros.fusion import preset_config  # noqa: E402
from skelsplat_ros.geometry.camera import Camera, CameraRig  # noqa: E402
from skelsplat_ros.skeleton.models import get_skeleton  # noqa: E402
from skelsplat_ros.tracking import MultiPersonTracker  # noqa: E402
from skelsplat_ros.tracking.recording import people_array, split_slots  # noqa: E402

FPS = 30.0


def time_tracker(rig: CameraRig, skeleton_name: str, keypoints: np.ndarray, freeze: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ``[F, 2]`` wall and CPU seconds of the tracker on ``keypoints [V, F, S, J, 3]``, and the published
    joints ``[F, T, J, 3]``; ``freeze``: the objects alive after the warm-up are left out of garbage collection
    while it runs."""
    skeleton, config = get_skeleton(skeleton_name), preset_config("default")
    frames = keypoints.shape[1]
    detections = [split_slots(keypoints, f) for f in range(frames)]
    warm = MultiPersonTracker(rig, skeleton, config)
    for f in range(min(3, frames)):
        warm.step(detections[f], f / FPS)
    tracker = MultiPersonTracker(rig, skeleton, config)
    times, published = np.zeros((frames, 2)), []
    if freeze:
        gc.collect()
        gc.freeze()
    try:
        for f in range(frames):
            wall, cpu = time.perf_counter(), time.thread_time()
            step = tracker.step(detections[f], f / FPS)
            times[f] = time.perf_counter() - wall, time.thread_time() - cpu
            published.append(step.people)
    finally:
        gc.unfreeze()
    return times, people_array(published, frames, skeleton).joints


def _save_scene(path: Path, rig: CameraRig, skeleton_name: str, keypoints: np.ndarray) -> None:
    np.savez(path, keypoints=keypoints, K=rig.K, R=rig.R, t=rig.t, dist=np.stack([c.dist for c in rig]),
             sizes=np.array([c.size for c in rig]), skeleton=skeleton_name)


def _worker(scene: str, out: str, freeze: bool) -> None:
    """Time a saved scene with whatever ``skelsplat_ros`` this interpreter imports (the baseline's)."""
    data = np.load(scene)
    rig = CameraRig([Camera(f"cam{v}", data["K"][v], data["R"][v], data["t"][v], tuple(int(s) for s in size),
                            data["dist"][v]) for v, size in enumerate(data["sizes"])])
    times, joints = time_tracker(rig, str(data["skeleton"]), data["keypoints"], freeze)
    np.savez(out, times=times, joints=joints)


def _baseline(tree: str, core: int, freeze: bool, rig: CameraRig, skeleton_name: str, keypoints: np.ndarray):
    with tempfile.TemporaryDirectory() as folder:
        scene, out = Path(folder, "scene.npz"), Path(folder, "out.npz")
        _save_scene(scene, rig, skeleton_name, keypoints)
        env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
        subprocess.run([sys.executable, __file__, "--worker", str(scene), str(out), str(core), str(int(freeze))],
                       env=env, check=True, cwd=folder)
        result = np.load(out)
        return result["times"], result["joints"]


def cell(num_views: int, num_people: int, frames: int, seeds: list[int], baseline: str, core: int, freeze: bool
         ) -> str:
    from skelsplat_ros.bench.multi import score_people
    from skelsplat_ros.sim import make_ring_rig
    from skelsplat_ros.sim.scenes import make_multi_person_scenario

    times, base_times, recall, mpjpe, differences = [], [], [], [], []
    for seed in seeds:
        scene = make_multi_person_scenario(make_ring_rig(num_views, seed=seed), num_people, frames, fps=FPS,
                                           seed=seed, enter_leave=False)
        spent, joints = time_tracker(scene.rig, scene.skeleton.name, scene.keypoints, freeze)
        score = score_people(joints, scene.ground_truth, scene.ground_truth)
        times.append(spent * 1000.0)
        recall.append(score.recall)
        mpjpe.append(score.mpjpe_mm)
        if baseline:
            spent, base_joints = _baseline(baseline, core, freeze, scene.rig, scene.skeleton.name, scene.keypoints)
            base_times.append(spent * 1000.0)
            same_shape = base_joints.shape == joints.shape
            differences.append(float(np.nanmax(np.abs(base_joints - joints), initial=0.0)) if same_shape else np.inf)
    birth = np.median([t[0] for t in times], axis=0)
    steady = np.median(np.concatenate([t[1:] for t in times]), axis=0)
    worst = np.concatenate(times).max(axis=0)
    row = (f"| {num_views} | {num_people} | {birth[0]:.1f} ({birth[1]:.1f}) | {steady[0]:.1f} ({steady[1]:.1f}) | "
           f"{worst[0]:.1f} ({worst[1]:.1f}) | {np.mean(recall):.3f} | {np.mean(mpjpe):.1f} |")
    if baseline:
        if base_times:
            base_birth = np.median([t[0, 1] for t in base_times])
            base_steady = np.median(np.concatenate([t[1:, 1] for t in base_times]))
            row += f" {base_birth:.1f} | {base_steady:.1f} | {max(differences):.1e} |"
        else:
            row += " | | |"
    return row


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        os.sched_setaffinity(0, {int(sys.argv[4])})
        _worker(sys.argv[2], sys.argv[3], sys.argv[5] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", default="4,8,16,24,31", help="comma-separated camera counts (rings)")
    parser.add_argument("--people", default="1,3,5,10", help="comma-separated people counts")
    parser.add_argument("--frames", type=int, default=90, help="frames per scene (30 fps)")
    parser.add_argument("--seeds", default="10,11,12", help="scene seeds (0-2 were used for tuning the tracker)")
    parser.add_argument("--cpu", type=int, default=-1, help="core to run on (default: the last this process may use)")
    parser.add_argument("--baseline", default="", help="another checkout to time on the same scenes")
    parser.add_argument("--baseline-max-views", type=int, default=16, help="cameras up to which the baseline runs")
    parser.add_argument("--no-gc-freeze", action="store_true", help="leave garbage collection as it is")
    parser.add_argument("--markdown", default="", help="also write the table to this markdown file")
    args = parser.parse_args()
    core = sorted(os.sched_getaffinity(0))[-1] if args.cpu < 0 else args.cpu
    os.sched_setaffinity(0, {core})
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to core {core}; "
          f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}; seeds {seeds}, {args.frames} frames; "
          f"gc.freeze() after the warm-up: {'no' if args.no_gc_freeze else 'yes'}; "
          "ms = median wall clock (CPU time of the thread in brackets)")
    header = ("| cameras | people | birth frame ms (CPU) | steady p50 ms (CPU) | worst frame ms (CPU) | recall | "
              "MPJPE mm |")
    rule = "|---|---|---|---|---|---|---|"
    if args.baseline:
        header += " baseline birth CPU ms | baseline steady p50 CPU ms | max joint difference m |"
        rule += "---|---|---|"
    print(header + "\n" + rule, flush=True)
    rows = []
    for num_views in (int(v) for v in args.views.split(",")):
        for num_people in (int(p) for p in args.people.split(",")):
            baseline = args.baseline if num_views <= args.baseline_max_views else ""
            rows.append(cell(num_views, num_people, args.frames, seeds, baseline, core, not args.no_gc_freeze))
            print(rows[-1], flush=True)
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(header + "\n" + rule + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
