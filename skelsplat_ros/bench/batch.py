"""``skelsplat bench-batch``: a generated study through ``skelsplat batch`` on 1 and 2 local workers and on Ray.

The study (:func:`write_study`): takes of simulated 4-camera keypoints (``sim.make_scenario``, the ``lab`` rig, one
person; optionally some takes of several people from ``sim.scenes``), each with its own calibration except the
first, which inherits the study's, and broken takes whose keypoint file is cut short. Printed: the wall time of each
backend (median of repeats, each run from scratch with ``--force``) and its ratio to one local worker, whether every
output is bit-identical to ``skelsplat fuse`` on the same take, the broken takes' reported reasons, the time of a
second ``skelsplat batch`` command with nothing changed (a fresh interpreter, as a user runs it), and the fusion
cost per camera-frame (CPU time of one worker over the study's camera-frames).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..geometry.calibration import save_calibration
from ..io.keypoints import KeypointSet, save_keypoints_npz
from ..pipeline.runner import BatchOptions, run_batch
from ..pipeline.study import find_takes
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
