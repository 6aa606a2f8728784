#!/usr/bin/env python3
"""Figures of BENCHMARKS.md's "Images in" section: the Pose2Sim multi-person take from video to 3D tracks.

1. Detection: the four videos through ``skelsplat_ros.detection`` (mediapipe by default): people per image, wall
   and CPU time per image (CPU time of the whole process: mediapipe runs its graph in threads of its own), for the
   whole run (decoding included) and for the detection calls alone. "On one core": run it under
   ``taskset -c 1`` (``--detect-only`` skips the fusion table).
2. Fusion of those detections, offline and streaming, by SkelSplat and by the plain-DLT and robust baselines (the
   same tracker): tracks and their frames, id switches (a track's hip centre jumping more than 0.25 m between two
   frames), the median reprojection error over the views (each fused person projected into each camera and
   compared with the detection nearest to it, joints with confidence > 0), and the limb-length coefficient of
   variation (upper arm, forearm, thigh, shank, both sides) with the longest limb over its own median.

There is no 3D ground truth for this take; these are the figures that can be judged without one.

    .venv/bin/python scripts/fetch_pose2sim_multi.py
    .venv/bin/python scripts/bench_detect.py [--keypoints KP.npz] [--repeats 3]
    taskset -c 1 .venv/bin/python scripts/bench_detect.py --detect-only --repeats 3     # detection on one core
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from real_data_report import LIMBS

from skelsplat_ros.bench.reprojection import nearest_detection_errors
from skelsplat_ros.detection import DetectorConfig
from skelsplat_ros.detection.recording import detect_recording
from skelsplat_ros.detection.sources import open_source
from skelsplat_ros.fusion import preset_config
from skelsplat_ros.geometry.calibration import load_calibration
from skelsplat_ros.io.keypoints import align_to_rig, load_keypoints, save_keypoints_npz
from skelsplat_ros.skeleton.models import get_skeleton
from skelsplat_ros.tracking.recording import track_offline, track_streaming

REPO = Path(__file__).resolve().parents[1]
SWITCH_JUMP_M = 0.25


def detect(data: Path, config: DetectorConfig, repeats: int) -> tuple[object, list[str]]:
    """Detect the take ``repeats`` times; returns the last keypoint set and one line per run."""
    sources = [open_source(path) for path in sorted((data / "videos").glob("cam0*.mp4"))]
    lines = []
    for _ in range(repeats):
        keypoints, report = detect_recording(sources, config)
        lines.append(report.summary())
    return keypoints, lines


def limb_figures(joints: np.ndarray, names: list[str]) -> tuple[float, float]:
    """Worst limb coefficient of variation and worst (longest / median) ratio over the tracks ``[F, T, J, 3]``."""
    index = {n: k for k, n in enumerate(names)}
    worst_cv, worst_ratio = 0.0, 0.0
    for t in range(joints.shape[1]):
        for a, b in LIMBS:
            lengths = np.linalg.norm(joints[:, t, index[a]] - joints[:, t, index[b]], axis=-1)
            lengths = lengths[np.isfinite(lengths)]
            if len(lengths) < 2:
                continue
            worst_cv = max(worst_cv, float(np.std(lengths) / np.mean(lengths)))
            worst_ratio = max(worst_ratio, float(lengths.max() / np.median(lengths)))
    return worst_cv, worst_ratio


def id_switches(joints: np.ndarray, names: list[str]) -> int:
    hips = [names.index("l_hip"), names.index("r_hip")]
    root = joints[:, :, hips].mean(axis=2)  # [F, T, 3]
    jumps = np.linalg.norm(np.diff(root, axis=0), axis=-1)
    return int(np.sum(jumps[np.isfinite(jumps)] > SWITCH_JUMP_M))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "pose2sim_multi",
                        help="folder written by fetch_pose2sim_multi.py")
    parser.add_argument("--keypoints", type=Path, help="use these detections (5-D NPZ) instead of detecting")
    parser.add_argument("--save-keypoints", type=Path, help="write the detections here")
    parser.add_argument("--backend", default="mediapipe")
    parser.add_argument("--repeats", type=int, default=1, help="detection runs (their times are printed each)")
    parser.add_argument("--detect-only", action="store_true", help="only the detection figures")
    parser.add_argument("--modes", default="offline,streaming")
    parser.add_argument("--methods", default="skelsplat,dlt,robust")
    parser.add_argument("--smoothing-pull", type=float, help="the offline smoothing_pull (m) instead of the preset's")
    parser.add_argument("--splat", type=float, help="a constant offline splat size (m)")
    args = parser.parse_args()
    if not (args.data / "calib.toml").is_file():
        print(f"no {args.data / 'calib.toml'}: run scripts/fetch_pose2sim_multi.py first", file=sys.stderr)
        return 2
    if args.keypoints:
        keypoints = load_keypoints(args.keypoints)
    else:
        keypoints, lines = detect(args.data, DetectorConfig(backend=args.backend), args.repeats)
        for line in lines:
            print(f"detection ({args.backend}): {line}")
        if args.save_keypoints:
            save_keypoints_npz(keypoints, args.save_keypoints)
        if args.detect_only:
            return 0
    keypoints, rig = align_to_rig(keypoints, load_calibration(args.data / "calib.toml"))
    skeleton = get_skeleton(keypoints.skeleton)
    names = list(skeleton.joint_names)
    data = keypoints.keypoints
    print("| mode | method | tracks (frames each) | id switches | median reprojection px | worst limb CV | "
          "longest limb / its median | fusion CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for method in args.methods.split(","):
            fuse = track_offline if mode == "offline" else track_streaming
            cpu = time.process_time()
            config = preset_config("default", method)
            if args.smoothing_pull is not None:
                config = replace(config, smoothing_pull=args.smoothing_pull)
            if args.splat is not None and config.prefit is not None:
                config = replace(config, prefit=replace(config.prefit, init_sigma=args.splat, splat_sigma_start=None))
            result = fuse(rig, skeleton, data, config, keypoints.fps)
            cpu = time.process_time() - cpu
            present = np.isfinite(result.joints).all(-1).any(-1).sum(axis=0)
            errors = nearest_detection_errors(rig, result.joints, data)
            cv, ratio = limb_figures(result.joints, names)
            print(f"| {mode} | {method} | {result.num_tracks} ({', '.join(str(int(n)) for n in present)}) | "
                  f"{id_switches(result.joints, names)} | {np.median(errors):.1f} | {cv:.3f} | {ratio:.2f} | "
                  f"{cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
