#!/usr/bin/env python3
"""Fetch the Pose2Sim demo (BSD-3-Clause) for offline tests: a real 4-camera rig and real OpenPose detections.

Downloads the ``pose2sim==0.7.2`` wheel with ``pip download --no-deps`` into a temporary folder (about 24 MB; it is
never installed), and extracts only:

- ``Pose2Sim/S00_Demo_Session/S00_Calibration/Calib.qca.txt``: the Qualisys calibration, kept as ``Calib.qca.txt``
  and converted to ``calib.toml`` (Pose2Sim/Anipose TOML, metres, Z-up world). The cameras are renamed from the
  Qualisys serials ``cam_01``.. to the JSON folder names ``cam01``.. so that names match exactly;
- ``.../S00_P00_SingleParticipant/S00_P00_T01_BalancingTrial/pose/cam0{1..4}_json/*.json``: OpenPose BODY_25B
  detections, 100 frames x 4 cameras, 2-3 people per frame, copied to ``pose/cam0N_json/``;
- the wheel's licence, as ``LICENSE_pose2sim``.

It also writes ``keypoints.npz`` (the subject followed file to file, ``fps = 60``, ``skeleton = body25b``; see
``skelsplat_ros.io.keypoints``). Running it again does nothing when everything is there.

``--check`` triangulates every keypoint with plain (unweighted) DLT from all views that detected it with confidence
above ``--threshold`` (0.3, Pose2Sim's default) and prints the median reprojection error, which validates the
calibration conversion: 12.5 px expected (13.8 px with every detection, ``--threshold 0``).

Usage: ``python scripts/fetch_pose2sim_demo.py [--dest data/pose2sim_demo] [--wheel FILE.whl] [--check]``
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skelsplat_ros.geometry.calibration import (  # noqa: E402
    load_calibration,
    load_qualisys_qca,
    save_calibration,
)
from skelsplat_ros.geometry.camera import CameraRig  # noqa: E402
from skelsplat_ros.io.keypoints import align_to_rig, load_keypoints, match_cameras, save_keypoints_npz  # noqa: E402

PACKAGE = "pose2sim==0.7.2"
SESSION = "Pose2Sim/S00_Demo_Session"
QCA_MEMBER = f"{SESSION}/S00_Calibration/Calib.qca.txt"
POSE_PREFIX = f"{SESSION}/S00_P00_SingleParticipant/S00_P00_T01_BalancingTrial/pose/"
CAMERAS = [f"cam0{i}" for i in range(1, 5)]
FRAMES_PER_CAMERA = 100
FPS = 60.0
SKELETON = "body25b"


def is_complete(dest: Path) -> bool:
    """Whether every output of a previous run is present."""
    if not all(
        (dest / name).is_file() for name in ("calib.toml", "Calib.qca.txt", "keypoints.npz", "LICENSE_pose2sim")
    ):
        return False
    return all(len(list((dest / "pose" / f"{cam}_json").glob("*.json"))) == FRAMES_PER_CAMERA for cam in CAMERAS)


def download_wheel(folder: Path, package: str = PACKAGE) -> Path:
    """``pip download --no-deps`` the Pose2Sim wheel ``package`` (``pose2sim==X``) into ``folder``; returns its path.

    The wheel is never installed: it pulls OpenSim, pose models and a GUI.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", package, "-d", str(folder)]
    print("running:", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    wheels = sorted(folder.glob("pose2sim-*.whl"))
    if not wheels:
        raise SystemExit(f"error: pip did not produce a pose2sim wheel in {folder}")
    return wheels[0]


def extract(wheel: Path, dest: Path) -> None:
    """Copy the calibration, the licence and the four JSON folders out of the wheel into ``dest``."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if QCA_MEMBER not in names:
            raise SystemExit(f"error: {wheel.name} has no {QCA_MEMBER}")
        (dest / "Calib.qca.txt").write_bytes(archive.read(QCA_MEMBER))
        copy_licence(archive, dest)
        for cam in CAMERAS:
            prefix = f"{POSE_PREFIX}{cam}_json/"
            members = [n for n in names if n.startswith(prefix) and n.endswith(".json")]
            if len(members) != FRAMES_PER_CAMERA:
                raise SystemExit(f"error: expected {FRAMES_PER_CAMERA} files under {prefix}, found {len(members)}")
            out = dest / "pose" / f"{cam}_json"
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            for member in members:
                (out / Path(member).name).write_bytes(archive.read(member))


def copy_licence(archive: zipfile.ZipFile, dest: Path) -> None:
    """The wheel's licence file (``*.dist-info/LICENSE``, or ``.../licenses/LICENSE`` in newer wheels) as
    ``dest/LICENSE_pose2sim``."""
    licence = [n for n in archive.namelist() if ".dist-info/" in n and Path(n).name.startswith("LICENSE")]
    if licence:
        (dest / "LICENSE_pose2sim").write_bytes(archive.read(sorted(licence)[0]))


def write_calibration(qca: Path, toml: Path, names: list[str], source: str) -> None:
    """Convert the Qualisys ``qca`` to a metre TOML at ``toml`` whose cameras are named ``names`` (matched to the
    Qualisys serials as ``fuse`` matches names: ``cam01`` <-> ``cam_01``)."""
    matched = match_cameras(names, load_qualisys_qca(qca))
    renamed = CameraRig([dataclasses.replace(camera, name=name) for camera, name in zip(matched, names)])
    save_calibration(renamed, toml, metadata={"source": source})


def convert(dest: Path) -> None:
    """``Calib.qca.txt`` -> ``calib.toml`` (cameras named like the JSON folders), and ``keypoints.npz``."""
    keypoints = load_keypoints(dest / "pose", skeleton=SKELETON, fps=FPS)
    write_calibration(dest / "Calib.qca.txt", dest / "calib.toml", keypoints.cameras,
                      "Pose2Sim 0.7.2 demo Calib.qca.txt (BSD-3-Clause)")
    save_keypoints_npz(keypoints, dest / "keypoints.npz")


def dlt_points(projections: np.ndarray, uv: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Plain DLT: ``projections [V, 3, 4]``, pixels ``uv [V, N, 2]``, weights ``used [V, N]`` -> points ``[N, 3]``.

    Points seen in fewer than 2 views are NaN.
    """
    rows_u = uv[..., 0:1] * projections[:, None, 2, :] - projections[:, None, 0, :]  # [V, N, 4]
    rows_v = uv[..., 1:2] * projections[:, None, 2, :] - projections[:, None, 1, :]
    rows = np.concatenate([rows_u, rows_v], axis=0) * np.concatenate([used, used], axis=0)[..., None]  # [2V, N, 4]
    rows = np.nan_to_num(rows.transpose(1, 0, 2))  # [N, 2V, 4]
    _, _, vt = np.linalg.svd(rows)
    homogeneous = vt[:, -1, :]
    points = homogeneous[:, :3] / homogeneous[:, 3:4]
    points[used.sum(axis=0) < 2] = np.nan
    return points


def check(dest: Path, threshold: float = 0.3) -> float:
    """Median reprojection error (px) of plain DLT over the keypoints detected with confidence > ``threshold``.

    0.3 is Pose2Sim's default ``likelihood_threshold_triangulation``; with it the demo gives about 12.5 px.
    """
    rig = load_calibration(dest / "calib.toml")
    keypoints = load_keypoints(dest / "keypoints.npz")
    _, rig = align_to_rig(keypoints, rig)
    views, frames, joints, _ = keypoints.keypoints.shape
    uv = keypoints.xy.reshape(views, frames * joints, 2)
    used = (keypoints.confidence.reshape(views, -1) > threshold) & np.all(np.isfinite(uv), axis=-1)
    points = dlt_points(rig.projection_matrices, uv, used.astype(np.float64))
    homogeneous = np.concatenate([points, np.ones((points.shape[0], 1))], axis=1)
    projected = np.einsum("vij,nj->vni", rig.projection_matrices, homogeneous)  # [V, N, 3]
    projected = projected[..., :2] / projected[..., 2:3]
    errors = np.linalg.norm(projected - uv, axis=-1)[used & np.isfinite(points[:, 0])[None]]
    median = float(np.median(errors))
    print(
        f"plain DLT, confidence > {threshold:g}, {frames} frames x {joints} joints x {views} views: "
        f"{errors.size} reprojections, median error {median:.2f} px (mean {errors.mean():.2f} px)"
    )
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest", type=Path, default=REPO / "data" / "pose2sim_demo", help="output folder (default: data/pose2sim_demo)"
    )
    parser.add_argument(
        "--wheel", type=Path, help="use this already downloaded pose2sim-0.7.2 wheel instead of pip download"
    )
    parser.add_argument("--check", action="store_true", help="print the median plain-DLT reprojection error")
    parser.add_argument(
        "--threshold", type=float, default=0.3, help="confidence threshold for --check (default 0.3, Pose2Sim's)"
    )
    args = parser.parse_args(argv)
    dest: Path = args.dest
    if is_complete(dest):
        print(f"{dest}: already complete, nothing to do")
    else:
        dest.mkdir(parents=True, exist_ok=True)
        if args.wheel is not None:
            extract(args.wheel, dest)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                extract(download_wheel(Path(tmp)), dest)
        convert(dest)
        print(f"wrote {dest}/calib.toml, {dest}/keypoints.npz and {dest}/pose/cam0[1-4]_json")
    if args.check:
        check(dest, args.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
