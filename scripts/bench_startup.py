#!/usr/bin/env python3
"""Start-up benchmark of the command line: `skelsplat --help`, and `skelsplat fuse` of a few frames, each as a fresh
process (what a user waits for), timed over several runs.

The fuse input is a simulated lab take (4 cameras, h36m17) written to a temporary folder as a calibration TOML and
a keypoints .npz. Reported per command: median, min and max wall time over --runs, after one untimed run that warms
the disk cache. Run from the repository: ``.venv/bin/python scripts/bench_startup.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_inputs(folder: Path, frames: int) -> tuple[Path, Path]:
    from skelsplat_ros.geometry.calibration import save_calibration
    from skelsplat_ros.io.keypoints import KeypointSet, save_keypoints_npz
    from skelsplat_ros.sim import make_scenario

    scenario = make_scenario("lab", num_frames=frames, noise="realistic", seed=3)
    calibration, keypoints = folder / "calibration.toml", folder / "keypoints.npz"
    save_calibration(scenario.rig, calibration)
    save_keypoints_npz(
        KeypointSet(keypoints=scenario.keypoints, cameras=scenario.rig.names, fps=scenario.fps,
                    skeleton=scenario.skeleton.name),
        keypoints,
    )
    return calibration, keypoints


def _time(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, check=True, capture_output=True)  # warm the disk cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument("--frames", type=int, default=20, help="frames of the fuse")
    args = parser.parse_args()
    skelsplat = [sys.executable, "-m", "skelsplat_ros.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calibration, keypoints = _write_inputs(folder, args.frames)
        fuse = [*skelsplat, "fuse", "--calibration", str(calibration), "--keypoints", str(keypoints), "--quiet"]
        commands = {
            "skelsplat --help": [*skelsplat, "--help"],
            f"skelsplat fuse --method robust ({args.frames} frames)":
                [*fuse, "--method", "robust", "--output", str(folder / "robust.npz")],
            f"skelsplat fuse --mode streaming ({args.frames} frames, Gauss-Newton)":
                [*fuse, "--mode", "streaming", "--output", str(folder / "streaming.npz")],
            f"skelsplat fuse ({args.frames} frames, default offline: Gauss-Newton and robust smoothing)":
                [*fuse, "--output", str(folder / "offline.npz")],
        }
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
              f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.runs} runs each")
        print("| command | median s | min s | max s |\n|---|---|---|---|")
        for name, command in commands.items():
            times = _time(command, args.runs)
            print(f"| `{name}` | {np.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
