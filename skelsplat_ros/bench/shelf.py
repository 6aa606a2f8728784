"""``skelsplat bench-shelf``: the multi-person tracker on the real Shelf recording (5 cameras, OpenPose BODY_25
people already grouped per view, ground truth for 4 actors), scored by the dataset folder's own
``evaluate_pcp.py`` (standard Shelf PCP, mvpose head convention by default; identity per actor) and, where the folder
has it, its ``evaluate_protocols.py`` (the four protocols of the literature, beside the released outputs of the 4D
Association Graph on the same detections, ``peers/``).

The data stays where it is (``--data``, default ``$SKELSPLAT_SHELF`` or ``../shared/data/shelf`` beside the
repository); when it is absent the command says so and exits 0 without scoring anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..fusion import preset_config
from ..geometry.calibration import load_calibration
from ..geometry.camera import CameraRig
from ..skeleton.models import get_skeleton
from ..tracking.recording import MultiPersonResult, track_offline, track_streaming

SHELF_FILES = ("calibration.toml", "keypoints.npz", "ground_truth.npz", "evaluate_pcp.py")


def default_shelf_dir() -> Path:
    """``$SKELSPLAT_SHELF``, else ``../shared/data/shelf`` beside the repository."""
    env = os.environ.get("SKELSPLAT_SHELF")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "shelf"


def shelf_available(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SHELF_FILES)


def fuse_shelf(folder: Path, mode: str = "streaming", frames: int | None = None, single_view_joints: bool = False,
               complete: bool = False, rig: CameraRig | None = None
               ) -> tuple[MultiPersonResult, tuple[float, float]]:
    """Fuse the Shelf detections (``frames`` first frames, all by default): the result and the seconds it took
    (wall clock, CPU time of this process). ``single_view_joints``, ``complete``: those ``FusionConfig`` fields;
    ``rig``: the cameras (metres, Shelf's camera names) instead of the folder's calibration."""
    data = np.load(folder / "keypoints.npz")
    keypoints = np.asarray(data["keypoints"], dtype=np.float64)[:, :frames]
    cameras = [str(c) for c in data["cameras"]]
    rig = (rig if rig is not None else load_calibration(folder / "calibration.toml")).subset(cameras)
    fps = float(data["fps"])
    skeleton = get_skeleton(str(data["skeleton"]))
    config = replace(preset_config("default"), single_view_joints=single_view_joints, complete=complete)
    run = track_streaming if mode == "streaming" else track_offline
    start, cpu = time.perf_counter(), time.process_time()
    result = run(rig, skeleton, keypoints, config, fps)
    return result, (time.perf_counter() - start, time.process_time() - cpu)


def evaluate_shelf(folder: Path, result: MultiPersonResult, head: str = "mvpose") -> dict:
    """The dataset's ``evaluate_pcp.py --json`` on ``result`` (frames aligned by number)."""
    offset = int(np.load(folder / "keypoints.npz")["frame_offset"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pred.npz"
        np.savez(path, joints=result.joints, track_ids=result.track_ids,
                 frames=np.arange(len(result.joints)) + offset)
        out = subprocess.run(
            [sys.executable, str(folder / "evaluate_pcp.py"), str(path), "--json", "--head", head],
            capture_output=True, text=True, check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


PROTOCOLS = ("mvpose", "limbs8", "4dag", "xrmocap")
PEERS = {"4D Association Graph, 2020 release": "4dag_2020.npz", "4D Association Graph, 2021 release": "4dag_2021.npz"}


def protocol_scorer(folder: Path):
    """The folder's ``evaluate_protocols.scores`` (``joints [F, T, 25, 3]`` -> ``{protocol: (per actor, average)}``),
    or ``None`` when the folder has no such script."""
    path = folder / "evaluate_protocols.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("shelf_evaluate_protocols", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scores


def protocol_row(name: str, scores: dict) -> str:
    return f"| {name} | " + " | ".join(f"{scores[p][1]:.2f}" for p in PROTOCOLS) + " |"


PROTOCOL_HEADER = "| prediction | " + " | ".join(PROTOCOLS) + " |\n|---|" + "---|" * len(PROTOCOLS)


def format_report(mode: str, report: dict, seconds: tuple[float, float], frames: int, num_tracks: int) -> str:
    actors = report["actors"]
    cells = " | ".join(f"{100 * actors[a]['pcp']:.1f}" for a in sorted(actors))
    switches = "/".join(str(actors[a]["id_switches"]) for a in sorted(actors))
    consistency = "/".join(f"{actors[a]['id_consistency']:.3f}" for a in sorted(actors))
    return (f"| {mode} | {report['head_mode']} | {cells} | **{100 * report['average_pcp']:.1f}** | {switches} | "
            f"{consistency} | {num_tracks} | {1000 * seconds[0] / frames:.1f} ({frames / seconds[0]:.0f} frames/s) | "
            f"{1000 * seconds[1] / frames:.1f} ({frames / seconds[1]:.0f} frames/s) |")


HEADER = ("| mode | head | actor 0 | actor 1 | actor 2 | actor 3 | avg (0-2) | id switches (0/1/2/3) | "
          "id consistency | tracks | ms/frame | CPU ms/frame |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def run_cli(args: argparse.Namespace) -> int:
    folder = Path(args.data) if args.data else default_shelf_dir()
    if not shelf_available(folder):
        print(f"skelsplat bench-shelf: Shelf data not found in {folder} (needs {', '.join(SHELF_FILES)}); "
              "pass --data or set SKELSPLAT_SHELF. Nothing scored.")
        return 0
    print(f"Shelf from {folder}; PCP by its evaluate_pcp.py")
    print(HEADER)
    scorer = protocol_scorer(folder)
    protocols = []
    label = " complete" if args.complete else ""
    for mode in [m for m in args.modes.split(",") if m]:
        result, seconds = fuse_shelf(folder, mode, single_view_joints=args.single_view_joints, complete=args.complete)
        for head in [h for h in args.heads.split(",") if h]:
            report = evaluate_shelf(folder, result, head)
            print(format_report(mode + label, report, seconds, len(result.joints), result.num_tracks), flush=True)
        if scorer is not None:
            protocols.append(protocol_row(f"skelsplat {mode}{label}", scorer(result.joints)))
    if scorer is not None:
        print(f"\nAverage PCP of actors 0-2 under the four protocols of {folder / 'evaluate_protocols.py'}")
        print(PROTOCOL_HEADER)
        for name, file in PEERS.items():
            if (folder / "peers" / file).is_file():
                protocols.append(protocol_row(name, scorer(np.asarray(np.load(folder / "peers" / file)["joints"], float))))
        print("\n".join(protocols))
    return 0

