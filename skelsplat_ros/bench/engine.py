"""``skelsplat bench``: accuracy and speed of every method on simulated rigs with ground truth.

Each rig sees the same seeded motion and detector-like noise; every method fuses the same keypoints. Reported per
method: MPJPE (mm, over the joints it estimated), the share of joints off by more than 150 mm, coverage (joints
estimated / joints in the ground truth) and time per frame (median over repeats; streaming: median and p99 of the
per-frame times). aniposelib rows appear when that optional package is installed (``pip install aniposelib``).

The default preset was tuned on seeds ``TUNING_SEEDS``; the benchmark reports other seeds by default.

Speed (``--speed``): run time of the fusion paths against frame count, fitted by a line over several frame counts,
so that the slope is the cost of one more frame and start-up costs (torch's first call, setup) go into the
intercept. Wall-clock and process CPU time are both fitted: on a shared machine the CPU time is the steadier one.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sim import NOISE_PRESETS, RIG_KINDS, Scenario, make_scenario
from ..fusion import FusionConfig, fuse_offline, fuse_streaming, preset_config
from ..fusion.result import split_keypoints, triangulate_baseline
from .pose2sim_peer import pose2sim_methods

OUTLIER_MM = 150.0
MM_PER_M = 1000.0
TUNING_SEEDS = (0, 1, 2)
"""Seeds the ``default`` preset's settings were tuned on (BENCHMARKS.md reports others)."""
DISTORTED = "-distorted"
"""Suffix of a rig kind on the command line that gives its cameras lens distortion (``lab-distorted``)."""


@dataclass
class Row:
    """One method on one scenario."""

    rig: str
    noise: str
    method: str
    mpjpe_mm: float
    outliers_pct: float
    coverage_pct: float
    ms_per_frame: float
    ms_p99: float = float("nan")
    frames: int = 0
    note: str = ""


@dataclass
class Method:
    """A named way to fuse a scenario: returns joints ``[F, J, 3]`` and per-frame times (s)."""

    name: str
    run: object
    max_frames: int | None = None
    extra: dict = field(default_factory=dict)


def score(joints: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """MPJPE mm over estimated joints, % of those beyond 150 mm, and coverage %."""
    estimated = np.isfinite(joints).all(-1)
    error = np.linalg.norm(joints - truth, axis=-1)[estimated] * 1000.0
    if error.size == 0:
        return float("nan"), float("nan"), 0.0
    return float(error.mean()), float(100.0 * (error > OUTLIER_MM).mean()), float(100.0 * estimated.mean())


def _offline(config: FusionConfig):
    def run(scenario: Scenario, frames: int) -> tuple[np.ndarray, list[float]]:
        start = time.perf_counter()
        result = fuse_offline(scenario.rig, scenario.skeleton, scenario.keypoints[:, :frames], config, fps=scenario.fps)
        return result.joints, [(time.perf_counter() - start) / frames]

    return run


def _streaming(config: FusionConfig):
    def run(scenario: Scenario, frames: int) -> tuple[np.ndarray, list[float]]:
        # Per-frame times from the progress callback, which runs right after each frame.
        clock = [time.perf_counter()]
        result = fuse_streaming(
            scenario.rig, scenario.skeleton, scenario.keypoints[:, :frames], config, scenario.fps,
            progress=lambda done, total: clock.append(time.perf_counter()),
        )
        return result.joints, np.diff(clock).tolist()

    return run


def _aniposelib_methods() -> list[Method]:
    """aniposelib's triangulate and triangulate_optim (bone constraints), when it is installed."""
    try:
        from aniposelib.cameras import Camera as AniCamera
        from aniposelib.cameras import CameraGroup
    except Exception:  # noqa: BLE001 - optional peer: any import failure just leaves it out
        return []
    from ..geometry.camera import matrix_to_rodrigues

    # aniposelib's optimiser weights (smoothness, bone lengths) assume millimetres, as its calibration produces:
    # the rig goes in and the points come out in millimetres, converted back to metres here.
    def group(scenario: Scenario) -> "CameraGroup":
        cams = [
            AniCamera(name=c.name, size=c.size, matrix=c.K, dist=c.dist, rvec=matrix_to_rodrigues(c.R),
                      tvec=MM_PER_M * c.t)
            for c in scenario.rig
        ]
        return CameraGroup(cams)

    def points_2d(scenario: Scenario, frames: int, threshold: float = 0.3) -> np.ndarray:
        kp = scenario.keypoints[:, :frames]
        return np.where((kp[..., 2:3] >= threshold) & np.isfinite(kp[..., :2]), kp[..., :2], np.nan)

    def triangulate(scenario: Scenario, frames: int):
        p2d = points_2d(scenario, frames)
        start = time.perf_counter()
        flat = group(scenario).triangulate(p2d.reshape(len(scenario.rig), -1, 2), undistort=True, progress=False)
        return flat.reshape(frames, -1, 3) / MM_PER_M, [(time.perf_counter() - start) / frames]

    def optim(scenario: Scenario, frames: int):
        p2d = points_2d(scenario, frames)
        bones = scenario.skeleton.bone_array.tolist()
        start = time.perf_counter()
        out = group(scenario).triangulate_optim(
            p2d, constraints=bones, scores=np.nan_to_num(scenario.keypoints[:, :frames, :, 2]), verbose=False
        )
        return out / MM_PER_M, [(time.perf_counter() - start) / frames]

    return [Method("aniposelib triangulate", triangulate), Method("aniposelib triangulate_optim", optim, max_frames=300)]


def methods(paper_frames: int, distorted: bool = False) -> list[Method]:
    """Every method of the comparison, baselines first (``distorted``: the rig has lens distortion)."""
    default, paper = preset_config("default"), preset_config("paper")
    return [
        Method("DLT", _offline(preset_config("default", "dlt"))),
        Method("weighted DLT", _offline(preset_config("default", "triangulate"))),
        Method("robust triangulation", _offline(preset_config("default", "robust"))),
        *([Method("SkelSplat paper (per frame)", _offline(paper), max_frames=paper_frames)] if paper_frames > 0 else []),
        Method("SkelSplat default offline", _offline(default)),
        Method("SkelSplat default streaming", _streaming(default)),
        *_aniposelib_methods(),
        *pose2sim_methods(Method, distorted),
    ]


def parse_scenarios(text: str) -> list[tuple[str, str]]:
    """``"lab:realistic,portrait:heavy"`` -> ``[("lab", "realistic"), ("portrait", "heavy")]`` (a rig may carry
    the ``-distorted`` suffix)."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        rig, _, noise = item.partition(":")
        if rig.removesuffix(DISTORTED) not in RIG_KINDS or noise not in NOISE_PRESETS:
            raise ValueError(f"scenario {item!r} is not RIG:NOISE with RIG in {RIG_KINDS} and NOISE in {NOISE_PRESETS}")
        pairs.append((rig, noise))
    return pairs


def run_benchmark(
    scenarios_to_run: list[tuple[str, str]], frames: int, seeds: list[int], paper_frames: int, repeats: int,
    log=print, only: list[str] | None = None,
) -> list[Row]:
    """Every method on every (rig, noise), errors pooled over seeds, times the median over repeats.

    Args:
        only: run just the methods whose name contains one of these (case-insensitive); robust triangulation,
            the reference of the ratios, always runs.
    """
    rows: list[Row] = []
    for rig, noise in scenarios_to_run:
        # "<kind>-distorted": the rig with OpenCV lens distortion.
        kind, distorted = rig.removesuffix(DISTORTED), rig.endswith(DISTORTED)
        scenarios = [
            make_scenario(kind, num_frames=frames, noise=noise, seed=seed, distortion=distorted) for seed in seeds
        ]
        for method in methods(paper_frames, distorted):
            wanted = [w.lower() for w in only or []]
            if wanted and method.name != "robust triangulation" and not any(w in method.name.lower() for w in wanted):
                continue
            used = min(frames, method.max_frames or frames)
            errors, times = [], []
            for scenario in scenarios:
                for repeat in range(repeats if scenario is scenarios[0] else 1):
                    joints, per_frame = method.run(scenario, used)
                    times.extend(per_frame)
                errors.append((joints, scenario.ground_truth[:used]))
            joints = np.concatenate([j for j, _ in errors])
            truth = np.concatenate([t for _, t in errors])
            mpjpe, outliers, coverage = score(joints, truth)
            row = Row(
                rig, noise, method.name, mpjpe, outliers, coverage, 1000 * float(np.median(times)),
                1000 * float(np.percentile(times, 99)) if len(times) > 20 else float("nan"), used * len(seeds),
            )
            rows.append(row)
            log(_format_row(row))
    return rows


@dataclass
class SpeedRow:
    """One fusion path's cost per frame on one scenario: slopes of a line fitted to (frames, median time)."""

    rig: str
    noise: str
    path: str
    frame_counts: list[int]
    wall_ms_per_frame: float
    cpu_ms_per_frame: float
    wall_intercept_ms: float
    wall_medians_s: list[float]


def _robust_init_per_frame(scenario: Scenario, frames: int) -> None:
    """The robust initialisation alone, one frame at a time as the streaming fuser calls it."""
    config = preset_config("default")
    for frame in range(frames):
        uv, confidence = split_keypoints(scenario.rig, scenario.keypoints[:, frame:frame + 1])
        triangulate_baseline(scenario.rig, uv, confidence, config, "robust")


def speed_paths() -> dict[str, object]:
    """The timed paths: ``(scenario, frames) -> None``."""
    default = preset_config("default")
    return {
        "robust initialisation (per frame)": _robust_init_per_frame,
        "SkelSplat default offline": lambda sc, n: fuse_offline(sc.rig, sc.skeleton, sc.keypoints[:, :n], default),
        "SkelSplat default streaming": lambda sc, n: fuse_streaming(sc.rig, sc.skeleton, sc.keypoints[:, :n], default, sc.fps),
    }


def run_speed(
    scenarios_to_run: list[tuple[str, str]], frame_counts: list[int], seed: int, repeats: int, log=print
) -> list[SpeedRow]:
    """Each path at each frame count ``repeats`` times (interleaved, so that a burst of load hits every count
    alike); the slope of a least-squares line through the median times is the time per frame."""
    rows = []
    for rig, noise in scenarios_to_run:
        scenario = make_scenario(rig, num_frames=max(frame_counts), noise=noise, seed=seed)
        for name, path in speed_paths().items():
            path(scenario, min(frame_counts))  # warm-up: imports, torch's first call
            wall: dict[int, list[float]] = {n: [] for n in frame_counts}
            cpu: dict[int, list[float]] = {n: [] for n in frame_counts}
            for _ in range(repeats):
                for n in frame_counts:
                    start_wall, start_cpu = time.perf_counter(), time.process_time()
                    path(scenario, n)
                    wall[n].append(time.perf_counter() - start_wall)
                    cpu[n].append(time.process_time() - start_cpu)
            wall_medians = [float(np.median(wall[n])) for n in frame_counts]
            wall_slope, wall_intercept = np.polyfit(frame_counts, wall_medians, 1)
            cpu_slope, _ = np.polyfit(frame_counts, [float(np.median(cpu[n])) for n in frame_counts], 1)
            row = SpeedRow(rig, noise, name, list(frame_counts), 1000 * float(wall_slope), 1000 * float(cpu_slope),
                           1000 * float(wall_intercept), wall_medians)
            rows.append(row)
            log(_format_speed_row(row))
    return rows


def _format_speed_row(row: SpeedRow) -> str:
    return (
        f"| {row.rig} | {row.noise} | {row.path} | {row.wall_ms_per_frame:.2f} | {1000 / row.wall_ms_per_frame:.0f} | "
        f"{row.cpu_ms_per_frame:.2f} | {row.wall_intercept_ms:.0f} | "
        f"{', '.join(f'{n}: {t:.2f}' for n, t in zip(row.frame_counts, row.wall_medians_s))} |"
    )


def speed_table(rows: list[SpeedRow]) -> str:
    """The speed rows as a markdown table."""
    header = (
        "| rig | noise | path | ms/frame (wall slope) | frames/s | ms/frame (CPU slope) | intercept ms | "
        "median wall s per frame count |\n|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header] + [_format_speed_row(row) for row in rows])


def _format_row(row: Row) -> str:
    p99 = f"{row.ms_p99:.1f}" if np.isfinite(row.ms_p99) else "-"
    return (
        f"| {row.rig} | {row.noise} | {row.method} | {row.mpjpe_mm:.1f} | {row.outliers_pct:.2f} | "
        f"{row.coverage_pct:.1f} | {row.ms_per_frame:.2f} | {p99} | {row.frames} |"
    )


def markdown_table(rows: list[Row]) -> str:
    """The rows as a markdown table, with ratios to robust triangulation of the same scenario."""
    header = (
        "| rig | noise | method | MPJPE mm | x robust | > 150 mm % | coverage % | ms/frame (median) | ms p99 | frames |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for row in rows:
        robust = next(r for r in rows if r.rig == row.rig and r.noise == row.noise and r.method == "robust triangulation")
        ratio = row.mpjpe_mm / robust.mpjpe_mm
        p99 = f"{row.ms_p99:.1f}" if np.isfinite(row.ms_p99) else "-"
        lines.append(
            f"| {row.rig} | {row.noise} | {row.method} | {row.mpjpe_mm:.1f} | {ratio:.2f} | {row.outliers_pct:.2f} | "
            f"{row.coverage_pct:.1f} | {row.ms_per_frame:.2f} | {p99} | {row.frames} |"
        )
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    """Bar chart of MPJPE per rig and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = sorted({(r.rig, r.noise) for r in rows}, key=lambda s: [r.rig for r in rows].index(s[0]))
    names = list(dict.fromkeys(r.method for r in rows))
    fig, ax = plt.subplots(figsize=(max(8, 2.2 * len(scenarios)), 4.5))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [next((r.mpjpe_mm for r in rows if (r.rig, r.noise) == s and r.method == name), np.nan) for s in scenarios]
        ax.bar(np.arange(len(scenarios)) + k * width, values, width, label=name)
    ax.set_xticks(np.arange(len(scenarios)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{rig}\n{noise}" for rig, noise in scenarios])
    ax.set_yscale("log")  # errors span 1 mm (clean) to hundreds (robot rig baselines)
    ax.set_ylabel("MPJPE (mm, log scale)")
    ax.set_title("skelsplat bench: 3D joint error against ground truth")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_cli(args: argparse.Namespace) -> int:
    """``skelsplat bench`` (arguments in ``cli.py``)."""
    import torch

    # One thread: with OpenMP's two, each small op here costs milliseconds of thread hand-off (measured).
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    seeds = [int(s) for s in args.seeds.split(",")]
    tuned = sorted(set(seeds) & set(TUNING_SEEDS))
    print(f"seeds {seeds}; the default preset was tuned on seeds {list(TUNING_SEEDS)}"
          + (f" (warning: {tuned} among them)" if tuned else ", none of them reported here"))
    tables = []
    if args.scenarios:
        scenarios_to_run = parse_scenarios(args.scenarios)
    else:
        rigs = list(RIG_KINDS) if args.rigs == "all" else args.rigs.split(",")
        scenarios_to_run = parse_scenarios(",".join(f"{rig}:{noise}" for rig in rigs for noise in args.noise.split(",")))
    if args.frames > 0:
        rows = run_benchmark(scenarios_to_run, args.frames, seeds, args.paper_frames, args.repeats,
                             only=[m for m in args.methods.split(",") if m] or None)
        tables.append(markdown_table(rows))
        if args.plot:
            plot(rows, Path(args.plot))
            print(f"plot: {args.plot}")
    if args.speed:
        counts = [int(n) for n in args.speed_frames.split(",")]
        if len(counts) < 2:
            raise ValueError("--speed-frames needs at least two frame counts to fit a slope")
        speed = run_speed(parse_scenarios(args.speed), counts, seeds[0], args.speed_repeats)
        tables.append(speed_table(speed))
    text = "\n\n".join(tables)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
    return 0
