"""``skelsplat bench-multi``: the multi-person tracker on simulated scenes with ground truth.

Per scene (people x rig x seed) and mode (streaming, offline):

- recall and precision of people per frame: ground-truth people present and published skeletons matched one to one
  by the Hungarian algorithm on mean joint error, a match counting when that error is at most 300 mm;
- MPJPE of the matched skeletons, and the same for *oracle-association robust triangulation* (each person
  triangulated from their own true detections, every view subset), on the same joints (estimated by both, in the
  frames where the person was matched): the ratio is what the issue's targets are on;
- id switches per person (changes of the matched track id between consecutive matched frames, per 300 frames) and
  id consistency (share of a person's frames matched to their most frequent track);
- ms/frame: streaming, median over frames of the per-frame time and its p99; offline, the whole run over frames.
  Beside it, the single-person streaming engine (:class:`~skelsplat_ros.fusion.StreamingFuser`) on the first
  person's own detections, timed frame by frame interleaved with the tracker (the same frame through both, one
  after the other): the shared machine's load changes absolute times, the ratio much less. Both also as CPU time
  of this process (``time.process_time``), which waiting for a busy CPU does not inflate.

Seeds 0-2 were used to tune the tracker; the default report seeds are 10-12.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fusion import FusionConfig, StreamingFuser, preset_config
from ..fusion.result import split_keypoints, triangulate_baseline
from ..geometry.camera import CameraRig
from ..sim import make_rig, make_ring_rig
from ..sim.scenes import MultiPersonScenario, make_multi_person_scenario
from ..tracking import MultiPersonTracker
from ..tracking.recording import people_array, split_slots, track_offline
from ..tracking.tracker import gated_assignment

MATCH_GATE_M = 0.3
RIG_OF_VIEWS = {4: "lab", 8: "surround"}
"""The rig of a camera count: these two, and a ring of that many cameras (``make_ring_rig``) for any other."""


def rig_of_views(num_views: int, seed: int) -> CameraRig:
    """The simulated rig of ``num_views`` cameras (see :data:`RIG_OF_VIEWS`)."""
    if num_views in RIG_OF_VIEWS:
        return make_rig(RIG_OF_VIEWS[num_views], seed=seed)
    return make_ring_rig(num_views, seed=seed)


@dataclass
class PeopleScore:
    """How published skeletons ``[F, T, J, 3]`` match ground-truth people ``[F, P, J, 3]``."""

    recall: float
    precision: float
    mpjpe_mm: float
    oracle_mpjpe_mm: float
    id_switches: list[int]
    id_consistency: list[float]

    @property
    def ratio(self) -> float:
        return self.mpjpe_mm / self.oracle_mpjpe_mm


def oracle_triangulation(scenario: MultiPersonScenario, config: FusionConfig) -> np.ndarray:
    """Each person robustly triangulated from their own detections: ``[F, P, J, 3]``."""
    out = np.full(scenario.ground_truth.shape, np.nan)
    for p in range(scenario.num_people):
        uv, confidence = split_keypoints(scenario.rig, scenario.person_keypoints[:, :, p])
        out[:, p], _ = triangulate_baseline(scenario.rig, uv, confidence, config, "robust")
    return out


def match_frame(tracks: np.ndarray, truth: np.ndarray, gate: float = MATCH_GATE_M) -> list[tuple[int, int, float]]:
    """One frame's one-to-one (Hungarian) matching of fused people ``tracks [T, J, 3]`` to true people
    ``truth [P, J, 3]`` on the mean distance over the joints both have (NaN = unknown).

    Returns ``(track index, person index, mean distance)`` for the pairs within ``gate``; a pair with no joint in
    common never matches.
    """
    if not len(tracks) or not len(truth):
        return []
    distance = np.linalg.norm(tracks[:, None] - truth[None], axis=-1)  # [T, P, J]
    shared = np.isfinite(distance)
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = np.where(shared, distance, 0.0).sum(-1) / shared.sum(-1)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    return [(t, p, float(cost[t, p])) for t, p in gated_assignment(cost, gate)]


def score_people(joints: np.ndarray, truth: np.ndarray, oracle: np.ndarray, gate: float = MATCH_GATE_M) -> PeopleScore:
    """Per-frame Hungarian matching of ``joints [F, T, J, 3]`` to ``truth [F, P, J, 3]`` (see the module docstring)."""
    num_frames, num_people = truth.shape[:2]
    matched = published = present = 0
    track_of: list[list[int]] = [[] for _ in range(num_people)]
    errors, oracle_errors = [], []
    for f in range(num_frames):
        people = np.flatnonzero(np.isfinite(truth[f]).all(-1).all(-1))
        tracks = np.flatnonzero(np.isfinite(joints[f]).all(-1).any(-1))
        present, published = present + len(people), published + len(tracks)
        if not len(people) or not len(tracks):
            continue
        for k, i, _ in match_frame(joints[f][tracks], truth[f][people], gate):
            matched += 1
            person, track = people[i], tracks[k]
            track_of[person].append(int(track))
            both = np.isfinite(joints[f, track]).all(-1) & np.isfinite(oracle[f, person]).all(-1)
            errors.append(np.linalg.norm(joints[f, track] - truth[f, person], axis=-1)[both])
            oracle_errors.append(np.linalg.norm(oracle[f, person] - truth[f, person], axis=-1)[both])
    switches = [int(np.count_nonzero(np.diff(t))) for t in track_of]
    consistency = [float(np.max(np.unique(t, return_counts=True)[1]) / len(t)) if t else 0.0 for t in track_of]
    error = np.concatenate(errors) if errors else np.zeros(0)
    oracle_error = np.concatenate(oracle_errors) if oracle_errors else np.zeros(0)
    return PeopleScore(
        recall=matched / max(present, 1),
        precision=matched / max(published, 1),
        mpjpe_mm=float(error.mean() * 1000) if error.size else float("nan"),
        oracle_mpjpe_mm=float(oracle_error.mean() * 1000) if oracle_error.size else float("nan"),
        id_switches=switches,
        id_consistency=consistency,
    )


@dataclass
class MultiRow:
    people: int
    views: int
    mode: str
    seeds: str
    recall: float
    precision: float
    mpjpe_mm: float
    oracle_mm: float
    ratio: float
    switches_per_person_300: float
    max_switches: int
    id_consistency: float
    ms_per_frame: float
    ms_p99: float
    cpu_ms: float
    single_ms: float
    single_cpu_ms: float


def _run(scenario: MultiPersonScenario, config: FusionConfig, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Published joints ``[F, T, J, 3]``, the per-frame times ``[F, 2]`` (wall, CPU; s) and, streaming, the
    single-person engine's."""
    rig, skeleton, keypoints, fps = scenario.rig, scenario.skeleton, scenario.keypoints, scenario.fps
    if mode == "offline":
        start, cpu = time.perf_counter(), time.process_time()
        result = track_offline(rig, skeleton, keypoints, config, fps)
        spent = np.array([[time.perf_counter() - start, time.process_time() - cpu]]) / scenario.num_frames
        return result.joints, spent, np.zeros((0, 2))
    tracker = MultiPersonTracker(rig, skeleton, config)
    single = StreamingFuser(rig, skeleton, config)
    published, times, single_times = [], [], []
    for f in range(scenario.num_frames):
        detections, stamp = split_slots(keypoints, f), f / fps
        start = (time.perf_counter(), time.process_time())
        published.append(tracker.step(detections, stamp).people)
        middle = (time.perf_counter(), time.process_time())
        single.step(scenario.person_keypoints[:, f, 0], stamp)
        end = (time.perf_counter(), time.process_time())
        times.append(np.subtract(middle, start))
        single_times.append(np.subtract(end, middle))
    return people_array(published, scenario.num_frames, skeleton).joints, np.array(times), np.array(single_times)


def run_multi_benchmark(people: list[int], views: list[int], seeds: list[int], frames: int, noise: str,
                        modes: list[str], log=print) -> list[MultiRow]:
    """One row per (people, views, mode), pooled over ``seeds``."""
    config = preset_config("default")
    rows = []
    for num_views in views:
        for num_people in people:
            scenarios = [
                make_multi_person_scenario(rig_of_views(num_views, seed), num_people, frames, noise=noise, seed=seed)
                for seed in seeds
            ]
            oracles = [oracle_triangulation(s, config) for s in scenarios]
            for mode in modes:
                scores, times, single = [], [], []
                for scenario, oracle in zip(scenarios, oracles):
                    joints, per_frame, single_per_frame = _run(scenario, config, mode)
                    scores.append(score_people(joints, scenario.ground_truth, oracle))
                    times.append(per_frame)
                    single.append(single_per_frame)
                times, single = np.concatenate(times), np.concatenate(single)
                switches = [s for score in scores for s in score.id_switches]
                row = MultiRow(
                    people=num_people, views=num_views, mode=mode, seeds=",".join(map(str, seeds)),
                    recall=float(np.mean([s.recall for s in scores])),
                    precision=float(np.mean([s.precision for s in scores])),
                    mpjpe_mm=float(np.mean([s.mpjpe_mm for s in scores])),
                    oracle_mm=float(np.mean([s.oracle_mpjpe_mm for s in scores])),
                    ratio=float(np.mean([s.ratio for s in scores])),
                    switches_per_person_300=float(np.mean(switches)) * 300.0 / frames,
                    max_switches=int(max(switches)),
                    id_consistency=float(np.mean([c for s in scores for c in s.id_consistency])),
                    ms_per_frame=float(np.median(times[:, 0])) * 1000.0,
                    ms_p99=float(np.percentile(times[:, 0], 99)) * 1000.0 if mode == "streaming" else float("nan"),
                    cpu_ms=float(np.median(times[:, 1])) * 1000.0,
                    single_ms=float(np.median(single[:, 0])) * 1000.0 if len(single) else float("nan"),
                    single_cpu_ms=float(np.median(single[:, 1])) * 1000.0 if len(single) else float("nan"),
                )
                log(_format(row))
                rows.append(row)
    return rows


HEADER = ("| people | views | mode | recall | precision | MPJPE mm | oracle robust mm | ratio | id switches / person / "
          "300 f (max) | id consistency | ms/frame (p99) | CPU ms/frame | single-person engine ms/frame, CPU |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _format(row: MultiRow) -> str:
    p99 = f" ({row.ms_p99:.1f})" if np.isfinite(row.ms_p99) else ""
    return (f"| {row.people} | {row.views} | {row.mode} | {row.recall:.3f} | {row.precision:.3f} | "
            f"{row.mpjpe_mm:.1f} | {row.oracle_mm:.1f} | {row.ratio:.2f} | {row.switches_per_person_300:.2f} "
            f"({row.max_switches}) | {row.id_consistency:.3f} | {row.ms_per_frame:.1f}{p99} | {row.cpu_ms:.1f} | "
            f"{row.single_ms:.1f}, {row.single_cpu_ms:.1f} |")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def run_cli(args: argparse.Namespace) -> int:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"seeds {args.seeds}, {args.frames} frames at 30 fps, noise {args.noise}")
    print(HEADER)
    rows = run_multi_benchmark(_ints(args.people), _ints(args.views), _ints(args.seeds), args.frames, args.noise,
                               [m for m in args.modes.split(",") if m])
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(HEADER + "\n" + "\n".join(_format(r) for r in rows) + "\n", encoding="utf-8")
    return 0

