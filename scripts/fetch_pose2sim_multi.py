#!/usr/bin/env python3
"""Fetch the Pose2Sim multi-person take (BSD-3-Clause): four real portrait videos and their Qualisys calibration.

Downloads the ``pose2sim==0.10.49`` wheel with ``pip download --no-deps`` into a temporary folder (about 51 MB; it
is never installed, and none of its files is committed), and extracts from ``Pose2Sim/Demo_MultiPerson/``:

- ``videos/cam0{1..4}.mp4``: 1088x1920 portrait, 60 fps, 100 frames, two people close to each other and a
  bystander, copied to ``videos/``;
- ``calibration/Calib.qca.txt``: the real 4-camera Qualisys calibration, kept as ``Calib.qca.txt`` and converted to
  ``calib.toml`` (Pose2Sim/Anipose TOML, metres, Z-up world; cameras named after the videos, ``cam01``..);
- the wheel's licence, as ``LICENSE_pose2sim``.

Running it again does nothing when everything is there. The 2D keypoints come from ``skelsplat detect`` (see
``make demo-video``).

Usage: ``python scripts/fetch_pose2sim_multi.py [--dest data/pose2sim_multi] [--wheel FILE.whl]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

from fetch_pose2sim_demo import REPO, copy_licence, download_wheel, write_calibration

PACKAGE = "pose2sim==0.10.49"
TAKE = "Pose2Sim/Demo_MultiPerson"
QCA_MEMBER = f"{TAKE}/calibration/Calib.qca.txt"
CAMERAS = [f"cam0{i}" for i in range(1, 5)]


def video_paths(dest: Path) -> list[Path]:
    """The take's four videos under ``dest``, camera order."""
    return [dest / "videos" / f"{camera}.mp4" for camera in CAMERAS]


def is_complete(dest: Path) -> bool:
    """Whether every output of a previous run is present."""
    files = [dest / name for name in ("calib.toml", "Calib.qca.txt", "LICENSE_pose2sim")] + video_paths(dest)
    return all(file.is_file() and file.stat().st_size > 0 for file in files)


def extract(wheel: Path, dest: Path) -> None:
    """Copy the calibration, the licence and the four videos out of the wheel into ``dest``."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        wanted = [QCA_MEMBER] + [f"{TAKE}/videos/{camera}.mp4" for camera in CAMERAS]
        missing = [member for member in wanted if member not in names]
        if missing:
            raise SystemExit(f"error: {wheel.name} has no {', '.join(missing)}")
        (dest / "videos").mkdir(parents=True, exist_ok=True)
        (dest / "Calib.qca.txt").write_bytes(archive.read(QCA_MEMBER))
        for camera, path in zip(CAMERAS, video_paths(dest)):
            path.write_bytes(archive.read(f"{TAKE}/videos/{camera}.mp4"))
        copy_licence(archive, dest)


def fetch(dest: Path, wheel: Path | None = None) -> Path:
    """Make ``dest`` complete (download, extract, convert) unless it already is; returns ``dest``."""
    if is_complete(dest):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        extract(wheel, dest)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            extract(download_wheel(Path(tmp), PACKAGE), dest)
    write_calibration(dest / "Calib.qca.txt", dest / "calib.toml", CAMERAS,
                      "Pose2Sim 0.10.49 Demo_MultiPerson Calib.qca.txt (BSD-3-Clause)")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=REPO / "data" / "pose2sim_multi",
                        help="output folder (default: data/pose2sim_multi)")
    parser.add_argument("--wheel", type=Path, help=f"use this already downloaded wheel ({PACKAGE}) instead of pip")
    args = parser.parse_args(argv)
    if is_complete(args.dest):
        print(f"{args.dest}: already complete, nothing to do")
    else:
        fetch(args.dest, args.wheel)
        print(f"wrote {args.dest}/calib.toml (metres) and {args.dest}/videos/cam0[1-4].mp4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
