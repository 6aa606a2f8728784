"""``skelsplat bench-batch``: a generated study through ``skelsplat batch`` on 1 and 2 local workers and on Ray.

The study (:func:`write_study`): takes of simulated 4-camera keypoints (``sim.make_scenario``, the ``lab`` rig, one
person; optionally some takes of several people from ``sim.scenes``), each with its own calibration except the
first, which inherits the study's, and broken takes whose keypoint file is cut short. Printed: the wall time of each
backend (median of repeats, each run into an empty output folder; the local runs interleaved, then Ray on a fresh
local instance per repeat, cold and once more warm) and its ratio to one local worker, the workers' CPU time and
what it predicts for free cores, whether every output is bit-identical to ``skelsplat fuse`` on the same take, the
broken takes' reported reasons, the time of a second ``skelsplat batch`` command with nothing changed (a fresh
interpreter, as a user runs it), and the fusion cost per camera-frame (CPU time of ``skelsplat fuse``'s work).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..geometry.calibration import save_calibration
from ..io.keypoints import KeypointSet, save_keypoints_npz
from ..pipeline.runner import BatchOptions, run_batch
from ..pipeline.take import FUSED, StudySettings
from ..sim.scenarios import make_scenario
from ..sim.scenes import make_multi_person_scenario

SKELETON = "h36m17"


def write_study(folder: str | Path, takes: int = 20, frames: int = 300, broken: tuple[int, ...] = (),
                people_every: int = 0, seed: int = 3) -> list[str]:
    """Write a study of ``takes`` generated takes into ``folder``; returns the take names.

    Take ``i`` is ``make_scenario("lab", seed=seed + i)`` (one person, 4 cameras, 30 fps), or, when
    ``people_every`` divides ``i + 1``, a scene of two people (5-D keypoints). Its ``calib.toml`` is in the take's
    folder, but take 0's is the study's (inherited). Takes in ``broken`` get a keypoint file cut to half its bytes.
    """
    folder = Path(folder)
    names = []
    for i in range(takes):
        name = f"take_{i:03d}"
        take = folder / name
        take.mkdir(parents=True, exist_ok=True)
        if people_every and (i + 1) % people_every == 0:
            scene = make_multi_person_scenario("lab", 2, num_frames=frames, seed=seed + i, skeleton_name=SKELETON)
            rig, keypoints, fps = scene.rig, scene.keypoints, scene.fps
        else:
            scenario = make_scenario("lab", SKELETON, num_frames=frames, seed=seed + i)
            rig, keypoints, fps = scenario.rig, scenario.keypoints, scenario.fps
        save_calibration(rig, (folder if i == 0 else take) / "calib.toml")
        path = take / "keypoints.npz"
        save_keypoints_npz(KeypointSet(keypoints, [c.name for c in rig.cameras], fps=fps, skeleton=SKELETON), path)
        if i in broken:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        names.append(name)
    return names


def _identical(out: Path, reference: dict[str, bytes]) -> bool:
    return all((out / name / FUSED).read_bytes() == data for name, data in reference.items())


def _single_command_outputs(study: Path, names: list[str], folder: Path) -> tuple[dict[str, bytes], float]:
    """``skelsplat fuse`` (its ``main``, in this process) on each take: take -> output bytes, and the CPU seconds
    all of it took (``time.process_time``: loading, fusing, writing)."""
    from ..cli import main  # the command itself, whose outputs the batch must reproduce

    outputs, cpu = {}, 0.0
    for name in names:
        calibration = study / name / "calib.toml"
        calibration = calibration if calibration.exists() else study / "calib.toml"
        output = folder / f"{name}.npz"
        start = time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(["fuse", "--calibration", str(calibration), "--keypoints",
                           str(study / name / "keypoints.npz"), "--output", str(output), "--quiet"])
        cpu += time.process_time() - start
        if status != 0:
            raise RuntimeError(f"skelsplat fuse failed on {name}")
        outputs[name] = output.read_bytes()
    return outputs, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_batch(study: Path, out: Path, options: BatchOptions) -> tuple[float, float, list]:
    """Wall seconds of a run from scratch, the CPU seconds of its local worker processes (ended and waited for by
    then; Ray's workers are not this process's children: NaN), and its results."""
    shutil.rmtree(out, ignore_errors=True)
    start, cpu = time.perf_counter(), _children_cpu()
    results = run_batch(study, out, StudySettings(), options, echo=lambda line: None)
    return time.perf_counter() - start, math.nan if options.ray else _children_cpu() - cpu, results


def _second_run_seconds(study: Path, out: Path, repeats: int) -> list[float]:
    """Wall time of the whole ``skelsplat batch`` command (a fresh interpreter) on a study whose outputs are current."""
    command = [str(Path(sys.executable).with_name("skelsplat")), "batch", str(study), "--output", str(out), "--quiet"]
    if not Path(command[0]).exists():
        command[:1] = [sys.executable, "-m", "skelsplat_ros.cli"]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if " 0 done" not in run.stdout:
            raise RuntimeError(f"the second run ran takes again:\n{run.stdout}{run.stderr}")
    return times


def _fusion_cost(rig_kind: str, people: int, frames: int, seed: int, folder: Path) -> float:
    """CPU ms per camera-frame of ``fuse_file`` on one generated take (``people`` > 1: a scene, tracked) of
    ``rig_kind``: loading, fusing and writing, after a first run that loads the numba kernel."""
    from ..pipeline.fuse import fuse_file

    if people > 1:
        scene = make_multi_person_scenario(rig_kind, people, num_frames=frames, seed=seed, skeleton_name=SKELETON)
        rig, keypoints, fps = scene.rig, scene.keypoints, scene.fps
    else:
        scenario = make_scenario(rig_kind, SKELETON, num_frames=frames, seed=seed)
        rig, keypoints, fps = scenario.rig, scenario.keypoints, scenario.fps
    calibration, path = folder / f"{rig_kind}_{people}.toml", folder / f"{rig_kind}_{people}.npz"
    save_calibration(rig, calibration)
    save_keypoints_npz(KeypointSet(keypoints, [c.name for c in rig.cameras], fps=fps, skeleton=SKELETON), path)
    fuse_file(calibration, path, folder / "warm.npz", note=lambda line: None)
    start = time.process_time()
    fuse_file(calibration, path, folder / "cost.npz", note=lambda line: None)
    return 1000 * (time.process_time() - start) / (frames * len(rig))


def machines_for(study_takes: int, cameras: int, minutes: float, fps: float, ms_per_camera_frame: float,
                 cores: int, hours: float = 24.0) -> tuple[float, int]:
    """Core-hours of a study, and machines of ``cores`` cores to do it in ``hours`` (perfect packing)."""
    camera_frames = study_takes * cameras * minutes * 60 * fps
    core_hours = camera_frames * ms_per_camera_frame / 1000 / 3600
    return core_hours, math.ceil(core_hours / (cores * hours))


def _print_cpu_model(one: float, two: float, takes: int) -> None:
    """What 1 and 2 workers would take on 2 free cores, from the CPU seconds of their workers (which waiting for a
    busy machine does not inflate much): each worker costs ``start`` (``two - one``: the second worker's start), then
    ``per_take`` per take; 2 workers run ceil(takes / 2) takes one after the other."""
    start = two - one
    per_take = (one - start) / takes
    expected_one, expected_two = one, start + math.ceil(takes / 2) * per_take
    print(f"\nfrom the workers' CPU times: a worker's start {start:.2f} s, a take {per_take:.3f} s; on 2 free cores "
          f"1 worker {expected_one:.2f} s, 2 workers {expected_two:.2f} s: {expected_one / expected_two:.2f}x "
          "(a model, not a measurement)")


def run_cli(args: argparse.Namespace) -> int:
    """``skelsplat bench-batch`` (arguments in ``cli.py``)."""
    workers = [int(w) for w in args.workers.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="skelsplat_bench_batch_") as scratch:
        root = Path(scratch)
        study = root / "study"
        broken = tuple(range(args.takes - args.broken, args.takes))  # take_000, the inheriting one, stays good
        names = write_study(study, args.takes, args.frames, broken=broken, seed=args.seed)
        good = [n for i, n in enumerate(names) if i not in broken]
        print(f"study: {args.takes} takes x {args.frames} frames of 4-camera keypoints (lab rig, one person), "
              f"{len(broken)} broken; runs of every take (--force), median of {args.repeats}")
        reference, reference_cpu = _single_command_outputs(study, good, (root / "single"))
        runs: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}
        identical: dict[str, bool] = {}
        reasons: set[str] = set()
        ray_init: list[float] = []

        def timed(label: str, options: BatchOptions) -> None:
            seconds, cpu, results = _timed_batch(study, root / "out", options)
            runs.setdefault(label, []).append(seconds)
            cpus.setdefault(label, []).append(cpu)
            done = sum(r.status == "done" for r in results)
            identical[label] = identical.get(label, True) and done == len(good) and _identical(root / "out",
                                                                                               reference)
            reasons.update(f"{r.name}: {r.reason}" for r in results if r.status == "failed")

        local = [(f"local, {w} worker{'s' if w > 1 else ''}", BatchOptions(workers=w, progress=False))
                 for w in workers]
        cold, warm = f"Ray, a fresh local instance ({args.ray_cpus} CPUs)", "Ray, the same instance again"
        for _ in range(args.repeats):  # interleaved: the machine's load falls on all alike
            for label, options in local:
                timed(label, options)
        # Ray after every local run: starting and stopping an instance is heavy on 2 cores, kept apart from them.
        for _ in range(args.repeats if args.ray else 0):
            from ..pipeline import ray_backend  # imports ray

            start = time.perf_counter()
            ray_backend.connect(None, args.ray_cpus)
            ray_init.append(time.perf_counter() - start)
            try:
                timed(cold, BatchOptions(ray=True, progress=False))  # its workers start and import, as local
                timed(warm, BatchOptions(ray=True, progress=False))  # its workers are ready
            finally:
                ray_backend.disconnect()
        base = statistics.median(runs[local[0][0]])
        pool = statistics.median(runs[local[-1][0]])
        print("\n| run | wall s (median) | runs | speed-up vs 1 worker | workers' CPU s (median) | "
              "bit-identical to `skelsplat fuse` |")
        print("|---|---|---|---|---|---|")
        for label in runs:
            median, cpu = statistics.median(runs[label]), statistics.median(cpus[label])
            extra = f"; {median / pool:.2f}x the time of {local[-1][0]}" if label.startswith("Ray") else ""
            print(f"| {label} | {median:.2f} | {', '.join(f'{t:.2f}' for t in runs[label])} | "
                  f"{base / median:.2f}x{extra} | {'n/a' if math.isnan(cpu) else f'{cpu:.2f}'} | "
                  f"{'yes' if identical[label] else 'NO'} |")
        if len(local) == 2 and local[1][1].workers == 2:
            _print_cpu_model(statistics.median(cpus[local[0][0]]), statistics.median(cpus[local[1][0]]), len(good))
        if ray_init:
            print(f"\nstarting a local Ray instance (not in the times above): median "
                  f"{statistics.median(ray_init):.1f} s")
        print(f"failed takes as reported: {'; '.join(sorted(reasons)) or 'none'}")
        _timed_batch(study, root / "out", BatchOptions(workers=max(workers), progress=False))
        second = _second_run_seconds(study, root / "out", args.repeats)
        print(f"second `skelsplat batch` with nothing changed (whole command): median "
              f"{statistics.median(second):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in second)})")
        camera_frames = len(good) * args.frames * 4
        costs = {"the study's takes (lab, 1 person)": 1000 * reference_cpu / camera_frames}
        for case in filter(None, args.cost_takes.split(",")):
            rig, people = case.split(":")
            costs[f"{rig}, {people} {'people' if int(people) > 1 else 'person'}"] = _fusion_cost(
                rig, int(people), args.frames, args.seed, root)
    print("\nfusion per camera-frame (`skelsplat fuse`: load, fuse, write; CPU time; "
          f"{args.frames}-frame takes):")
    for label, ms in costs.items():
        print(f"  {label}: {ms:.3f} ms")
    fusion_ms = max(costs.values())  # the dearest case measured, for the estimate
    if args.detect_ms is None:
        print("detection per image: pending (no figure given: --detect-ms MS); the study estimate needs it")
        return 0
    per_frame = args.detect_ms + fusion_ms
    core_hours, machines = machines_for(args.study_takes, args.study_cameras, args.study_minutes, 30.0, per_frame,
                                        args.machine_cores)
    print(f"per camera-frame: detection {args.detect_ms:.2f} ms + fusion {fusion_ms:.3f} ms (the dearest above): "
          f"{100 * args.detect_ms / per_frame:.1f} % detection; {args.study_takes} takes x {args.study_cameras} "
          f"cameras x {args.study_minutes:g} min at 30 fps = {core_hours:.0f} core-hours: {machines} machines of "
          f"{args.machine_cores} cores for one day")
    return 0
    per_frame = args.detect_ms + fusion_ms
    share = 100 * args.detect_ms / per_frame
    core_hours, machines = machines_for(args.study_takes, args.study_cameras, args.study_minutes, 30.0, per_frame,
                                        args.machine_cores)
    print(f"per camera-frame: detection {args.detect_ms:.2f} ms + fusion {fusion_ms:.3f} ms ({share:.1f} % detection); "
          f"{args.study_takes} takes x {args.study_cameras} cameras x {args.study_minutes:g} min at 30 fps = "
          f"{core_hours:.0f} core-hours: {machines} machines of {args.machine_cores} cores for one day")
    return 0
