"""``skelsplat demo``: simulated rig -> fusion node on this machine, with live accuracy and latency.

Starts ``skelsplat_sim_rig`` and ``skelsplat_node`` as two subprocesses (as on a real robot, and each gets its own
interpreter, so fusion does not compete for one GIL with the simulation), listens to ``skeletons``,
``ground_truth`` and ``/diagnostics`` in this process, and prints once a second the accuracy (MPJPE against the
ground truth of the same capture stamp) and the latency (capture stamp -> skeletons received here). At the end: a
summary table and a plot. DDS stays on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) in a domain of its
own (``--domain-id``, default random), set before anything starts DDS.

Every frame counts, the first one included: the listener is up before the sim rig, and the sim rig publishes nothing
until the fusion node subscribes (which it does once warmed up), so the figures cover the run from the first frame
sent (:func:`start_rig_and_node`, shared with ``scripts/bench_node.py``).

The sim rig writes its calibration to a temporary folder, which the fusion node reads: the demo needs no file
of the repository and works wherever the package is installed. (``launch/demo.launch.py`` uses the committed
``config/sim_rig_lab.toml`` for both nodes instead, because launch starts the nodes in no guaranteed order.)

``Monitor``, ``start_rig_and_node``, ``start_node_process`` and ``stop_processes`` are reused by
``scripts/bench_node.py``.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "run_demo", "main", "Monitor", "start_node_process", "start_rig_and_node", "stop_processes",
           "ros_environment", "match_people", "track_summary", "TrackSummary"]


def ros_environment(domain_id: int | None = None) -> int:
    """Keep DDS on loopback and in a domain of our own (set in ``os.environ``: subprocesses inherit it)."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is None:
        domain_id = random.Random(os.getpid() ^ time.time_ns()).randint(1, 200)
    os.environ["ROS_DOMAIN_ID"] = str(int(domain_id))
    return int(domain_id)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (shared by ``skelsplat demo`` and ``python -m skelsplat_ros.ros.demo``)."""
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    parser.add_argument("--plot", default="out/demo.png", help="PNG of MPJPE and latency over time ('' = none)")
    parser.add_argument("--rig", default="lab", choices=("lab", "surround", "robot"), help="simulated rig")
    parser.add_argument("--people", type=int, default=1, choices=range(1, 6), metavar="{1..5}",
                        help="people in the scene (default 1); with more, the node tracks each one with its own id")
    parser.add_argument("--noise", default="realistic", choices=("clean", "realistic", "hard"), help="detector noise")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    parser.add_argument("--method", default="skelsplat", help="fusion method (skelsplat, robust, triangulate, dlt)")
    parser.add_argument("--preset", default="default", help="fusion preset (default, paper)")
    parser.add_argument("--drop-camera", default="", help="camera to silence mid-run, e.g. cam3")
    parser.add_argument("--drop-after", type=float, default=10.0,
                        help="seconds into the run (after the first fused frame) to silence it")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: random 1-200)")
    parser.add_argument("--quiet", action="store_true", help="no live lines, only the summary")
    parser.set_defaults(handler=run_demo)  # how the `skelsplat` CLI dispatches its subcommands


# --- processes -------------------------------------------------------------------------------------------------------


def start_node_process(module: str, params: dict[str, Any], log_path: Path, params_file: str | None = None,
                       env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m <module> --ros-args [-p k:=v ...]`` with stdout/stderr to ``log_path``, run in the log's folder
    (``python -m`` imports from its working folder first: the package comes from the installation or ``PYTHONPATH``,
    never from a source tree where the caller happens to be); ``env``: variables set on top of this process's."""
    args = [sys.executable, "-m", module, "--ros-args"]
    if params_file:
        args += ["--params-file", str(Path(params_file).resolve())]
    for key, value in params.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        args += ["-p", f"{key}:={text}"]
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            cwd=log_path.parent)


def start_rig_and_node(workdir: Path, sim_params: dict[str, Any], node_params: dict[str, Any], listener,
                       timeout: float = 60.0, node_env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Start the sim rig, then the fusion node on the rig's calibration, so that every frame the rig sends counts.

    The rig publishes nothing until the fusion node subscribes (``wait_for_node``), and the node is started only
    once ``listener`` (an rclpy node of the caller, subscribed to ``ground_truth`` already) sees the rig's ground
    truth publisher: the first frame sent is received, its ground truth included. Returns ``[rig, node]`` (logs
    ``sim_rig.log`` and ``node.log`` in ``workdir``); raises ``RuntimeError`` with the log's tail when one of them
    does not start. ``node_env``: environment variables of the node's process only.
    """
    from .node import NODE_NAME

    calibration = workdir / "calibration.toml"
    sim = start_node_process("skelsplat_ros.ros.sim_rig", {**sim_params, "calibration_out": str(calibration),
                                                            "wait_for_node": NODE_NAME}, workdir / "sim_rig.log")
    processes = [sim]
    deadline = time.monotonic() + timeout
    while not calibration.exists() or not listener.count_publishers("ground_truth"):
        if sim.poll() is not None or time.monotonic() > deadline:
            stop_processes(processes)
            raise RuntimeError("the sim rig did not start:\n" + _tail(workdir / "sim_rig.log"))
        time.sleep(0.05)
    time.sleep(0.2)  # the calibration file is written in one go, but let the writer finish
    processes.append(start_node_process("skelsplat_ros.ros.node", {**node_params, "calibration_file": str(calibration)},
                                        workdir / "node.log", env=node_env))
    return processes


def stop_processes(processes: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """SIGINT (rclpy shuts down cleanly), then SIGKILL after ``timeout``."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- monitoring ------------------------------------------------------------------------------------------------------


def match_people(tracks: dict[int, np.ndarray], truth: dict[int, np.ndarray]) -> dict[int, tuple[int, float]]:
    """Which true person each fused track is in one frame: ``{track id: (person, MPJPE m)}``.

    One-to-one (Hungarian) on the mean distance over the joints both have (``[J, 3]`` each, NaN = unknown); a pair
    further apart than the benchmark's gate (``bench.multi.MATCH_GATE_M``) is no match, so a track on nobody stays
    unmatched.
    """
    from skelsplat_ros.bench.multi import match_frame  # here: the CLI imports this module for its parser

    track_ids, person_ids = list(tracks), list(truth)
    if not track_ids or not person_ids:
        return {}
    pairs = match_frame(np.stack([tracks[t] for t in track_ids]), np.stack([truth[p] for p in person_ids]))
    return {track_ids[t]: (person_ids[p], cost) for t, p, cost in pairs}


@dataclass
class FrameRecord:
    """One fused frame as received: capture stamp (s, and exact ns), receipt time (s), error (m, NaN = no truth).

    ``mpjpe`` is the mean over the tracks matched to a true person (:func:`match_people`); ``matches`` maps each
    matched track id to ``(person, MPJPE m)``; ``tracks`` lists every published id and ``present`` the true people
    of that stamp (empty when its ground truth was not received). ``joints`` is the first skeleton's ``[J, 3]``.
    """

    stamp: float
    received: float
    mpjpe: float
    views: float
    stamp_ns: int = 0
    joints: np.ndarray | None = None
    tracks: list[int] = field(default_factory=list)
    present: list[int] = field(default_factory=list)
    matches: dict[int, tuple[int, float]] = field(default_factory=dict)


@dataclass
class Monitor:
    """Listens to skeletons, ground_truth and /diagnostics; matches fused frames to ground truth by stamp.

    ``ground_truth`` maps a stamp (ns) to ``{person: [J, 3]}``. ``keep_joints`` stores the first fused skeleton of
    every frame (for offline comparisons in the benchmark).
    """

    keep_joints: bool = False
    records: list[FrameRecord] = field(default_factory=list)
    ground_truth: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    diagnostics: dict[str, str] = field(default_factory=dict)
    diagnostics_message: str = ""
    diagnostics_history: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    first_stamp: float | None = None  # capture stamp (s) of the earliest frame received (ground truth or output)

    def attach(self, node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile

        from skelsplat_ros.msg import Skeleton3DArray

        node.create_subscription(Skeleton3DArray, "skeletons", self.on_skeletons, QoSProfile(depth=50))
        node.create_subscription(Skeleton3DArray, "ground_truth", self.on_ground_truth, QoSProfile(depth=50))
        node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, QoSProfile(depth=10))
        # The matching's imports (scipy) now, not at the first frame: they would delay its receipt here.
        match_people({0: np.zeros((2, 3))}, {0: np.zeros((2, 3))})

    def _seen(self, stamp: float) -> None:
        self.first_stamp = stamp if self.first_stamp is None else min(self.first_stamp, stamp)

    def on_ground_truth(self, msg) -> None:
        from .conversions import skeleton_arrays, stamp_to_ns

        self._seen(stamp_to_ns(msg.header.stamp) * 1e-9)
        self.ground_truth[stamp_to_ns(msg.header.stamp)] = {
            int(skeleton.id): skeleton_arrays(skeleton)[0] for skeleton in msg.skeletons}
        while len(self.ground_truth) > 5000:
            self.ground_truth.popitem(last=False)

    def on_skeletons(self, msg) -> None:
        from .conversions import skeleton_arrays, stamp_to_ns

        received = time.time()
        ns = stamp_to_ns(msg.header.stamp)
        tracks = {int(skeleton.id): skeleton_arrays(skeleton)[0] for skeleton in msg.skeletons}
        views = max((float(np.max(np.asarray(s.num_views, dtype=np.float64), initial=0.0)) for s in msg.skeletons),
                    default=float("nan"))
        truth = self.ground_truth.get(ns, {})
        matches = match_people(tracks, truth)
        mpjpe = float(np.mean([error for _, error in matches.values()])) if matches else float("nan")
        first = skeleton_arrays(msg.skeletons[0])[0] if msg.skeletons and self.keep_joints else None
        self.records.append(FrameRecord(ns * 1e-9, received, mpjpe, views, ns, first, list(tracks), list(truth),
                                        matches))
        self._seen(ns * 1e-9)

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith(": fusion"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostics_message = status.message
                self.diagnostics_history.append((time.time(), dict(self.diagnostics)))

    def frame_counts(self, start: float, stop: float) -> tuple[int, int]:
        """Frames captured with a stamp in ``[start, stop)`` (wall-clock seconds) and how many of them came out fused.

        Captured = every stamp seen on ``ground_truth`` or ``skeletons``: a ground-truth message lost on the way
        must not make the node look as if it fused more frames than were captured.
        """
        captured, fused = self._captured(start, stop)
        return len(captured), len(fused)

    def _captured(self, start: float, stop: float) -> tuple[set[int], set[int]]:
        """Stamps (ns) captured in ``[start, stop)`` (seen on ``ground_truth`` or ``skeletons``) and those fused."""
        fused = {r.stamp_ns for r in self.records if start <= r.stamp < stop}
        return fused | {ns for ns in self.ground_truth if start <= ns * 1e-9 < stop}, fused

    def first_fused(self, start: float, stop: float) -> tuple[int, float] | None:
        """The first frame captured in ``[start, stop)`` that came out fused: its index among the captures and its
        capture stamp's delay after the first capture (s); ``None`` when none did. A node that is not ready when it
        subscribes loses the start of the run, which the frame count alone can hide among later losses."""
        captured, fused = self._captured(start, stop)
        ordered = sorted(captured)
        index = next((i for i, ns in enumerate(ordered) if ns in fused), None)
        return None if index is None else (index, (ordered[index] - ordered[0]) * 1e-9)

    def latencies(self, since: float = 0.0) -> np.ndarray:
        return np.array([r.received - r.stamp for r in self.records if r.received >= since])

    def errors(self, since: float = 0.0) -> np.ndarray:
        return np.array([r.mpjpe for r in self.records if r.received >= since])


def _fmt(value: float, digits: int = 1) -> str:
    return "   -" if not np.isfinite(value) else f"{value:.{digits}f}"


def _percentile(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if values.size else float("nan")


@dataclass
class TrackSummary:
    """Per-track accuracy and id consistency over a run (see :func:`track_summary`)."""

    frames: int  # frames with ground truth
    recall: float  # share of true person-frames with a matched track
    precision: float  # share of published skeletons matched to a true person
    mpjpe: float  # m, mean over matched skeletons
    person_frames: dict[int, int]
    person_found: dict[int, int]
    switches: dict[int, int]  # person -> id switches while they stayed in the scene
    track_frames: dict[int, int]
    track_person: dict[int, tuple[int | None, int]]  # track -> (person it matched most, in how many frames)
    track_mpjpe: dict[int, float]


def track_summary(records: list[FrameRecord]) -> TrackSummary:
    """Tracks against the true people, frame by frame (:func:`match_people`, 300 mm gate), over ``records``.

    An id switch is a change of a person's matched id while the person stayed in the scene; a person who left and
    came back gets a new id by design, which is not counted.
    """
    records = [r for r in records if r.present]
    person_frames: collections.Counter[int] = collections.Counter()
    person_found: collections.Counter[int] = collections.Counter()
    switches: collections.Counter[int] = collections.Counter()
    last_id: dict[int, int] = {}
    track_people: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    track_errors: dict[int, list[float]] = collections.defaultdict(list)
    track_frames: collections.Counter[int] = collections.Counter()
    published = 0
    for record in records:
        published += len(record.tracks)
        track_frames.update(record.tracks)
        by_person = {person: track for track, (person, _) in record.matches.items()}
        for person in record.present:
            person_frames[person] += 1
            if person not in by_person:
                continue
            person_found[person] += 1
            if last_id.get(person, by_person[person]) != by_person[person]:
                switches[person] += 1
            last_id[person] = by_person[person]
        last_id = {person: track for person, track in last_id.items() if person in record.present}
        for track, (person, error) in record.matches.items():
            track_people[track][person] += 1
            track_errors[track].append(error)
    errors = [e for values in track_errors.values() for e in values]
    return TrackSummary(
        frames=len(records),
        recall=sum(person_found.values()) / max(sum(person_frames.values()), 1),
        precision=len(errors) / max(published, 1),
        mpjpe=float(np.mean(errors)) if errors else float("nan"),
        person_frames=dict(person_frames), person_found=dict(person_found),
        switches={person: switches[person] for person in person_frames},
        track_frames=dict(track_frames),
        track_person={t: (track_people[t].most_common(1)[0] if track_people[t] else (None, 0)) for t in track_frames},
        track_mpjpe={t: float(np.mean(track_errors[t])) if track_errors[t] else float("nan") for t in track_frames},
    )


def track_lines(monitor: Monitor, start: float, stop: float) -> list[str]:
    """The summary's per-person and per-track table over the frames captured in ``[start, stop)``."""
    from skelsplat_ros.bench.multi import MATCH_GATE_M

    summary = track_summary([r for r in monitor.records if start <= r.stamp < stop])
    if not summary.frames:
        return []
    lines = [f"  people: recall {100.0 * summary.recall:.1f} %, precision {100.0 * summary.precision:.1f} % "
             f"(per frame, {MATCH_GATE_M * 1e3:.0f} mm gate)",
             "    person  frames  recall %  id switches"]
    for person in sorted(summary.person_frames):
        frames = summary.person_frames[person]
        lines.append(f"    P{person:<5} {frames:7d} {100.0 * summary.person_found.get(person, 0) / frames:9.1f} "
                     f"{summary.switches[person]:12d}")
    lines.append("    track   person  matched/frames  MPJPE mm")
    for track in sorted(summary.track_frames):
        person, count = summary.track_person[track]
        lines.append(f"    {track:<7} {'P%d' % person if person is not None else '-':>6} "
                     f"{count:7d}/{summary.track_frames[track]:<7d} {_fmt(1e3 * summary.track_mpjpe[track]):>8}")
    return lines


def summary_lines(monitor: Monitor, started: float, stopped: float) -> list[str]:
    lat = monitor.latencies(started) * 1e3
    err = monitor.errors(started) * 1e3
    # The last half second of captures may still be in flight when the run stops.
    captured, out = monitor.frame_counts(started, stopped - 0.5)
    first = monitor.first_fused(started, stopped - 0.5)
    lines = [
        "",
        "summary",
        f"  frames captured                  {captured}",
        f"  frames fused and received        {out}  ({100.0 * out / max(captured, 1):.1f} %)",
        "  first frame out                  " + (f"capture #{first[0] + 1}, {first[1] * 1e3:.0f} ms after the first"
                                                if first else "none"),
        f"  MPJPE mm  mean / median / p95    {_fmt(np.nanmean(err) if np.isfinite(err).any() else np.nan)} / "
        f"{_fmt(_percentile(err, 50))} / {_fmt(_percentile(err, 95))}",
        f"  latency ms  median / p95 / p99   {_fmt(_percentile(lat, 50))} / {_fmt(_percentile(lat, 95))} / "
        f"{_fmt(_percentile(lat, 99))}  (max {_fmt(np.max(lat) if lat.size else np.nan)})",
    ]
    lines += track_lines(monitor, started, stopped - 0.5)
    diag = monitor.diagnostics
    if diag:
        lines.append(f"  tracks now / ended / unassigned detections   {diag.get('tracks.confirmed', '-')} / "
                     f"{diag.get('tracks.ended', '-')} / {diag.get('detections.unassigned', '-')}")
        lines.append(f"  fusion time ms (last window)     mean {diag.get('fusion_time_mean_ms', '-')}, "
                     f"max {diag.get('fusion_time_max_ms', '-')}")
        drops = {k: v for k, v in diag.items()
                 if k.startswith(("dropped.", "rejected.", "fusion_errors", "nonfinite")) and v != "0"}
        lines.append("  drops since the node started     " + (", ".join(f"{k}={v}" for k, v in sorted(drops.items()))
                                                             or "none"))
        lines.append(f"  node status                      {monitor.diagnostics_message}")
    return lines


def save_plot(monitor: Monitor, started: float, path: str, title: str, events: list[tuple[float, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in monitor.records if r.received >= started]
    t = np.array([r.stamp - started for r in records])
    err = np.array([r.mpjpe for r in records]) * 1e3
    lat = np.array([r.received - r.stamp for r in records]) * 1e3
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot(t, err, ".", ms=3, label="per frame")
    if len(t) > 5:
        kernel = np.ones(min(15, len(t))) / min(15, len(t))
        ax1.plot(t, np.convolve(np.nan_to_num(err, nan=np.nanmean(err)), kernel, mode="same"), "-", lw=1.5,
                 label="moving mean")
    ax1.set_ylabel("MPJPE (mm)")
    ax1.legend(loc="upper right")
    ax2.plot(t, lat, ".", ms=3, color="tab:orange")
    ax2.set_ylabel("latency (ms)\ncapture -> received")
    ax2.set_xlabel("time (s)")
    for when, label in events:
        for ax in (ax1, ax2):
            ax.axvline(when, color="grey", ls="--", lw=1)
        ax1.text(when, ax1.get_ylim()[1], f" {label}", va="top", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the demo --------------------------------------------------------------------------------------------------------


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status (0 = fused skeletons were received)."""
    duration = float(getattr(args, "duration", 20.0))
    quiet = bool(getattr(args, "quiet", False))
    drop_camera = getattr(args, "drop_camera", "") or ""
    drop_after = float(getattr(args, "drop_after", 10.0))
    domain_id = ros_environment(getattr(args, "domain_id", None))

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    workdir = Path(tempfile.mkdtemp(prefix="skelsplat_demo_"))
    sim_params: dict[str, Any] = {
        "rig": getattr(args, "rig", "lab"), "noise": getattr(args, "noise", "realistic"),
        "rate": float(getattr(args, "rate", 30.0)), "seed": int(getattr(args, "seed", 0)),
        "people": int(getattr(args, "people", 1)),
    }
    node_params: dict[str, Any] = {
        "method": getattr(args, "method", "skelsplat"), "preset": getattr(args, "preset", "default"),
        "diagnostics_period": 1.0,
    }
    print(f"skelsplat demo: {sim_params['rig']} rig, {sim_params['people']} "
          f"{'person' if sim_params['people'] == 1 else 'people'}, {sim_params['noise']} noise, "
          f"{sim_params['rate']:g} Hz, "
          f"method {node_params['method']}; ROS_DOMAIN_ID={domain_id} (loopback only); logs in {workdir}")
    processes: list[subprocess.Popen] = []
    context = Context()
    rclpy.init(context=context, args=[])
    try:
        # The listener first, so that it receives the rig's first frame.
        node = Node("skelsplat_demo_monitor", context=context)
        monitor = Monitor()
        monitor.attach(node)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            processes = start_rig_and_node(workdir, sim_params, node_params, node)
        except RuntimeError as error:
            print(f"skelsplat demo: error: {error}", file=sys.stderr)
            return 1
        sim, fusion = processes

        # The rig sends its first frame once the node subscribes (imports, warm-up and DDS discovery take a few
        # seconds); the run and its figures start with that frame.
        deadline = time.monotonic() + 90.0
        while monitor.first_stamp is None:
            executor.spin_once(timeout_sec=0.05)
            for proc, name in ((sim, "sim_rig"), (fusion, "node")):
                if proc.poll() is not None:
                    print(f"skelsplat demo: error: {name} exited ({proc.returncode}):\n"
                          + _tail(workdir / f"{name}.log"), file=sys.stderr)
                    return 1
            if time.monotonic() > deadline:
                print("skelsplat demo: error: the fusion node did not subscribe within 90 s:\n"
                      + _tail(workdir / "node.log"), file=sys.stderr)
                return 1
        started = monitor.first_stamp
        if not quiet:
            print(f"{'t (s)':>6} {'fused/s':>8} {'MPJPE mm':>9} {'lat med':>8} {'lat p95':>8} {'views':>6} "
                  f"{'people':>7}  tracks (id=person)")
        next_print = started + 1.0
        end = started + duration
        drop_time = None
        # The camera is silenced through the sim rig's runtime parameters, so that "after N s" counts from here
        # and not from the sim's start (which is several seconds of imports and warm-up earlier).
        params_client = AsyncParameterClient(node, "skelsplat_sim_rig") if drop_camera else None
        while time.time() < end:
            executor.spin_once(timeout_sec=0.05)
            now = time.time()
            if params_client is not None and drop_time is None and now - started >= drop_after:
                params_client.set_parameters([Parameter("drop_after", value=0.0),
                                              Parameter("drop_camera", value=drop_camera)])
                drop_time = now - started
            if now >= next_print:
                window = [r for r in monitor.records if r.received >= next_print - 1.0]
                lat = np.array([r.received - r.stamp for r in window]) * 1e3
                err = np.array([r.mpjpe for r in window]) * 1e3
                views = np.array([r.views for r in window])
                if not quiet:
                    last = window[-1] if window else None
                    people = f"{len(last.tracks)}/{len(last.present)}" if last else "-"
                    ids = " ".join(f"{t}={'P%d' % last.matches[t][0] if t in last.matches else '?'}"
                                   for t in last.tracks) if last else ""
                    print(f"{now - started:6.1f} {len(window):8d} "
                          f"{_fmt(np.nanmean(err) if np.isfinite(err).any() else np.nan):>9} "
                          f"{_fmt(_percentile(lat, 50)):>8} {_fmt(_percentile(lat, 95)):>8} "
                          f"{_fmt(np.nanmean(views) if np.isfinite(views).any() else np.nan):>6} "
                          f"{people:>7}  {ids}", flush=True)
                next_print += 1.0
            for proc, name in ((sim, "sim_rig"), (fusion, "node")):
                if proc.poll() is not None:
                    print(f"skelsplat demo: error: {name} exited ({proc.returncode}):\n"
                          + _tail(workdir / f"{name}.log"), file=sys.stderr)
                    return 1
        for line in summary_lines(monitor, started, time.time()):
            print(line)
        plot = getattr(args, "plot", "out/demo.png")
        if plot:
            events = [(drop_time, f"{drop_camera} silent")] if drop_time is not None else []
            save_plot(monitor, started, plot,
                      f"skelsplat demo: {sim_params['rig']} rig, {sim_params['noise']} noise, {node_params['method']}",
                      events)
            print(f"  plot                             {plot}")
        return 0 if monitor.records else 1
    finally:
        stop_processes(processes)
        context.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skelsplat-demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_demo(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
