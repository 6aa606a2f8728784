"""``skelsplat bench-batch``: a generated study through ``skelsplat batch`` on 1 and 2 local workers and on Ray.

The study (:func:`write_study`): takes of simulated 4-camera keypoints (``sim.make_scenario``, the ``lab`` rig, one
person; optionally some takes of several people from ``sim.scenes``), each with its own calibration except the
first, which inherits the study's, and broken takes whose keypoint file is cut short.

Every timed run is a whole ``skelsplat batch`` command in a fresh interpreter into an empty output folder, what a
user runs: its start (Python, imports, the workers' start) is in the time. The variants run interleaved in each
repeat (the machine's load falls on all alike) and medians are reported: local workers (``--workers N``), Ray on a
local instance that the command starts (``--ray``; the instance's start, which the command prints, is shown apart),
and Ray on an instance already running (``--ray ADDRESS``, started once by the benchmark, its start shown apart): a
new job, as each command of a user with a cluster is. Also printed: whether every output is bit-identical to
``skelsplat fuse`` on the same take, the broken takes' reported reasons, the time of a second command with nothing
changed, and the fusion cost per camera-frame (CPU time of ``skelsplat fuse``'s work).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import platform
import re
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
from ..pipeline.take import FUSED
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


def _command() -> list[str]:
    """The ``skelsplat`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("skelsplat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "skelsplat_ros.cli"]


def _timed_command(arguments: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall seconds of ``skelsplat ARGUMENTS`` and what it printed (it must exit 0 or 1: a take may fail)."""
    start = time.perf_counter()
    run = subprocess.run(_command() + arguments, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if run.returncode not in (0, 1):
        raise RuntimeError(f"skelsplat {' '.join(arguments)} failed:\n{run.stdout}{run.stderr}")
    return seconds, run.stdout


def _second_run_seconds(study: Path, out: Path, repeats: int) -> list[float]:
    """Wall time of the whole ``skelsplat batch`` command (a fresh interpreter) on a study whose outputs are current."""
    times = []
    for _ in range(repeats):
        seconds, printed = _timed_command(["batch", str(study), "--output", str(out), "--quiet"])
        if " 0 done" not in printed:
            raise RuntimeError(f"the second run ran takes again:\n{printed}")
        times.append(seconds)
    return times


class _RayInstance:
    """A local Ray instance of ``cpus`` CPUs kept running by a process of its own (as ``ray start --head`` keeps a
    cluster's head), started as ``skelsplat batch --ray`` starts one; ``address`` joins it, ``environment`` is what a
    command that joins it needs (``ray_backend.client_environment``); ``logs`` is its log folder,
    where the raylet opens one ``worker-*.out`` for each worker process it starts (:meth:`worker_logs`)."""

    SCRIPT = ("import sys, time\n"
              "from skelsplat_ros.pipeline import ray_backend\n"
              "import ray\n"
              "start = time.perf_counter()\n"
              "ray_backend.connect(None, int(sys.argv[1]))\n"
              "print(ray.get_runtime_context().gcs_address, time.perf_counter() - start,\n"
              "      ray._private.worker._global_node.get_session_dir_path(), flush=True)\n"
              "sys.stdin.read()\n"
              "ray_backend.disconnect()\n")

    def __init__(self, cpus: int) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(cpus)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline().split()
        if len(line) != 3:
            self.close()
            raise RuntimeError("the local Ray instance did not start")
        self.address, self.start_seconds, self.logs = line[0], float(line[1]), Path(line[2]) / "logs"
        from ..pipeline.ray_backend import client_environment

        self.environment = client_environment()

    def worker_logs(self) -> set[Path]:
        """The instance's worker log files so far (one per worker process it started)."""
        return set(self.logs.glob("worker-*.out"))

    def close(self) -> None:
        self.process.stdin.close()  # it leaves Ray (the instance stops) when its input ends
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _fusion_cost(rig_kind: str, people: int, frames: int, seed: int, folder: Path) -> float:
    """CPU ms per camera-frame of ``fuse_file`` on one generated take (``people`` > 1: a scene, tracked) of
    ``rig_kind``: loading, fusing and writing, after a first run (that loads the kernels: numba's, for the tracker)."""
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


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as file:
        return {row["take"]: row for row in csv.DictReader(file)}


RAY_STARTED = re.compile(r"Ray: started a local instance \((\d+) CPUs\) in ([0-9.]+) s")


def _timing_table(study: Path, root: Path, args: argparse.Namespace, reference: dict[str, bytes]) -> set[str]:
    """Run the interleaved whole commands and print the table; returns the failed takes' reported reasons."""
    workers = [int(w) for w in args.workers.split(",")]
    variants = {f"local, {w} worker{'s' if w > 1 else ''} (`--workers {w}`)": ["--workers", str(w)] for w in workers}
    fresh = f"Ray, a local instance started by the command (`--ray --workers {args.ray_cpus}`)"
    running = f"Ray, an instance already running, a new job (`--ray ADDRESS`, {args.ray_cpus} CPUs)"
    instance = None
    if args.ray:
        variants[fresh] = ["--ray", "--workers", str(args.ray_cpus)]
        instance = _RayInstance(args.ray_cpus)
        variants[running] = ["--ray", instance.address]
    runs: dict[str, list[float]] = {label: [] for label in variants}
    take_seconds: dict[str, list[float]] = {label: [] for label in variants}
    identical = {label: True for label in variants}
    ray_start: list[float] = []
    job_workers: list[int] = []  # worker processes each new job on the running instance started
    reasons: set[str] = set()
    try:
        for _ in range(args.repeats):
            for label, options in variants.items():
                out = root / "out"
                shutil.rmtree(out, ignore_errors=True)
                logs = instance.worker_logs() if label == running else set()
                seconds, printed = _timed_command(["batch", str(study), "--output", str(out), "--quiet", *options],
                                                  instance.environment if label == running else None)
                runs[label].append(seconds)
                if label == running:
                    job_workers.append(len(instance.worker_logs() - logs))
                if label == fresh:
                    ray_start.append(float(RAY_STARTED.search(printed).group(2)))
                rows = _summary(out)
                take_seconds[label] += [float(r["seconds"]) for r in rows.values() if r["status"] == "done"]
                identical[label] &= all(rows[name]["status"] == "done" and (out / name / FUSED).read_bytes() == data
                                        for name, data in reference.items())
                reasons.update(f"{name}: {r['reason']}" for name, r in rows.items() if r["status"] == "failed")
    finally:
        if instance is not None:
            instance.close()
    base = statistics.median(runs[next(iter(runs))])
    pool = statistics.median(runs[f"local, {workers[-1]} worker{'s' if workers[-1] > 1 else ''} "
                                  f"(`--workers {workers[-1]}`)"])
    print(f"\n| whole `skelsplat batch` command | wall s (median) | runs | speed-up vs the first row | time / "
          f"{workers[-1]} local workers' | a take on its worker, s (median) | bit-identical to `skelsplat fuse` |")
    print("|---|---|---|---|---|---|---|")
    for label, times in runs.items():
        median = statistics.median(times)
        print(f"| {label} | {median:.2f} | {', '.join(f'{t:.2f}' for t in times)} | {base / median:.2f}x | "
              f"{median / pool:.2f} | {statistics.median(take_seconds[label]):.3f} | "
              f"{'yes' if identical[label] else 'NO'} |")
    if ray_start:
        without = statistics.median([t - s for t, s in zip(runs[fresh], ray_start)])
        print(f"| {fresh}, less the instance's start (median {statistics.median(ray_start):.2f} s, printed by the "
              f"command) | {without:.2f} | {', '.join(f'{t - s:.2f}' for t, s in zip(runs[fresh], ray_start))} | "
              f"{base / without:.2f}x | {without / pool:.2f} | | |")
    if instance is not None:
        print(f"\nthe instance already running was started once, before the runs, in {instance.start_seconds:.2f} s; "
              f"worker processes each new job on it started: {', '.join(map(str, job_workers))} "
              f"({args.ray_cpus} CPUs; the first job may use the instance's idle workers)")
    return reasons


_TWO_TAKES = """
import sys, time
import skelsplat_ros.pipeline._preload
from skelsplat_ros.pipeline.study import find_takes
from skelsplat_ros.pipeline.take import StudySettings, run_take
takes = {take.name: take for take in find_takes(sys.argv[1])[0]}
for name in sys.argv[2:]:
    start = time.process_time()
    run_take(takes[name], StudySettings(), lambda done, total: None)
    print(time.process_time() - start, flush=True)  # the preload ends the process without flushing
"""
_UNTIL_SERVER = """
import sys, time
import multiprocessing.forkserver
from skelsplat_ros import cli
multiprocessing.forkserver.ensure_running = lambda: print(time.process_time())  # the process's CPU since its start
cli._start_batch_workers(sys.argv[1:])
"""


def _fixed_cost_cpu(study: Path, names: list[str], out: Path, repeats: int) -> dict[str, float]:
    """CPU seconds (median of ``repeats``, each in a fresh interpreter) of the parts of a local batch command's
    critical path besides its takes' work: the fork server's process (interpreter and preload, in the workers'
    environment), a worker's first take and its second (the difference: what the preload left to every worker's
    first take), and the command's own process until it asks for the fork server (the interpreter's start, imports,
    reading the command line)."""
    from ..pipeline.local import ONE_THREAD

    def child_cpu(arguments: list[str], env: dict[str, str]) -> tuple[float, str]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, run.stdout

    workers = {**os.environ, **ONE_THREAD}
    parts: dict[str, list[float]] = {}
    for _ in range(repeats):
        server, _ = child_cpu(["-c", "import skelsplat_ros.pipeline._preload"], workers)
        first, second = map(float, child_cpu(["-c", _TWO_TAKES, str(study), *names[1:3]], workers)[1].split())
        command = float(child_cpu(["-c", _UNTIL_SERVER, str(study), "--output", str(out), "--quiet"],
                                  dict(os.environ))[1])
        for label, seconds in (("the fork server's process: interpreter and preload", server),
                               ("a worker's first take", first), ("its second take", second),
                               ("first take less second: left to every worker's first take", first - second),
                               ("the command's process until it asks for the fork server", command)):
            parts.setdefault(label, []).append(seconds)
    return {label: statistics.median(values) for label, values in parts.items()}


def _compile_package() -> str:
    """Write this package's bytecode, as ``pip install`` does: where ``PYTHONDONTWRITEBYTECODE`` is set and the
    package is an editable checkout, every timed command (and each of its worker processes) would otherwise compile
    the package's modules from source at its start (measured: about 0.07 s of CPU on a worker's start). Returns a
    line saying what was done."""
    import compileall

    package = Path(__file__).resolve().parents[1]
    done = compileall.compile_dir(package, quiet=1)
    return f"package bytecode: {'written' if done else 'NOT written (read-only?)'} under {package}"


def run_cli(args: argparse.Namespace) -> int:
    """``skelsplat bench-batch`` (arguments in ``cli.py``)."""
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(_compile_package())
    with tempfile.TemporaryDirectory(prefix="skelsplat_bench_batch_") as scratch:
        root = Path(scratch)
        study = root / "study"
        broken = tuple(range(args.takes - args.broken, args.takes))  # take_000, the inheriting one, stays good
        names = write_study(study, args.takes, args.frames, broken=broken, seed=args.seed)
        good = [n for i, n in enumerate(names) if i not in broken]
        print(f"study: {args.takes} takes x {args.frames} frames of 4-camera keypoints (lab rig, one person), "
              f"{len(broken)} broken; whole commands, interleaved, median of {args.repeats}")
        reference, reference_cpu = _single_command_outputs(study, good, (root / "single"))
        reasons = _timing_table(study, root, args, reference)
        print(f"load average after the runs: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"failed takes as reported: {'; '.join(sorted(reasons)) or 'none'}")
        _timed_command(["batch", str(study), "--output", str(root / "out"), "--quiet", "--force"])
        second = _second_run_seconds(study, root / "out", args.repeats)
        print(f"second `skelsplat batch` with nothing changed (whole command): median "
              f"{statistics.median(second):.2f} s "
              f"({', '.join(f'{t:.2f}' for t in second)})")
        print(f"\nfixed cost of a local batch command, CPU s (median of {args.repeats}, each part in a fresh "
              "interpreter):")
        for label, seconds in _fixed_cost_cpu(study, good, root / "absent", args.repeats).items():
            print(f"  {label}: {seconds:.3f}")
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
