"""Pose2Sim as a peer of ``skelsplat bench``, run the way its authors intend: a project folder with its own
``Config.toml`` (the package's demo configuration, with only the project-specific fields set), the calibration as
a ``calibration/*.toml`` and the keypoints as OpenPose JSON folders under ``pose/``; then its own
``triangulation()`` and ``filtering()`` entry points, and its ``.trc`` outputs read back.

Optional, like aniposelib: ``pip install pose2sim --no-deps`` plus the packages its triangulation and filtering
modules import (see the Makefile ``bench`` target). When it does not import, its rows are left out.

Two rows per setting of ``undistort_points``: the triangulation (its own linear gap filling included) and the
filtered output (its default: Hampel outlier rejection, then a 4th-order 6 Hz zero-phase Butterworth).
On rigs without lens distortion the two settings give the same result, so only its default (off) runs there.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

from ..geometry.calibration import save_calibration
from ..io.keypoints import KeypointSet, save_openpose_folder
from ..skeleton.models import Skeleton

CUSTOM_MODEL = "SKELSPAT_CUSTOM"
"""Name of the skeleton written into ``Config.toml`` (Pose2Sim's way to declare a keypoint layout of one's own)."""


def _pose2sim_tree(skeleton: Skeleton) -> dict:
    """The skeleton as Pose2Sim's ``[pose.<model>]`` anytree dict: a spanning tree of the bones from the first
    joint (joints no bone reaches hang from the root); ``id`` is the keypoint's index in the JSON files."""
    children: dict[int, list[int]] = {j: [] for j in range(skeleton.num_joints)}
    neighbours: dict[int, list[int]] = {j: [] for j in range(skeleton.num_joints)}
    for a, b in skeleton.bone_array.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    seen, queue = {0}, deque([0])
    while queue:
        joint = queue.popleft()
        for other in neighbours[joint]:
            if other not in seen:
                seen.add(other)
                children[joint].append(other)
                queue.append(other)
    children[0].extend(j for j in range(skeleton.num_joints) if j not in seen)

    def node(joint: int) -> dict:
        entry = {"name": skeleton.joint_names[joint], "id": joint}
        if children[joint]:
            entry["children"] = [node(c) for c in children[joint]]
        return entry

    return node(0)


def _read_output(trc: Path, skeleton: Skeleton, num_frames: int) -> np.ndarray:
    """Joints ``[F, J, 3]`` (world, metres) of a Pose2Sim ``.trc``, placed by its frame numbers (it may trim
    frames; its filtered file of 0.10.49 lacks the last one), NaN where it gave nothing."""
    from Pose2Sim.common import read_trc

    coords, frame_numbers, _, markers, _ = read_trc(trc)
    values = coords.to_numpy(dtype=np.float64).reshape(len(coords), len(markers), 3)
    order = [markers.index(name) for name in skeleton.joint_names]
    out = np.full((num_frames, skeleton.num_joints, 3), np.nan)
    frames = frame_numbers.to_numpy().astype(int)
    inside = (frames >= 0) & (frames < num_frames)
    # Its files are Y-up (OpenSim): world (X, Y, Z) = TRC (Z, X, Y).
    out[frames[inside]] = values[inside][:, order][..., [2, 0, 1]]
    return out


def run_pose2sim(
    rig, skeleton: Skeleton, keypoints: np.ndarray, fps: float, undistort: bool, workdir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Pose2Sim's triangulation then filtering of keypoints ``[V, F, J, 3]`` (raw, distorted pixels).

    Returns:
        ``(triangulated [F, J, 3], filtered [F, J, 3], seconds)``, world metres, NaN where it gave nothing.
    """
    import rtoml
    from Pose2Sim import Pose2Sim

    num_frames = keypoints.shape[1]
    with tempfile.TemporaryDirectory(prefix="pose2sim_", dir=workdir) as tmp:
        project = Path(tmp) / "trial"
        (project / "calibration").mkdir(parents=True)
        save_calibration(rig, project / "calibration" / "Calib_bench.toml")
        # Folder names with their camera number last: Pose2Sim sorts camera folders by their last number.
        cameras = [f"cam{index + 1:02d}" for index in range(len(rig))]
        save_openpose_folder(KeypointSet(keypoints, cameras, fps=fps), project / "pose")
        config = rtoml.load(Path(Pose2Sim.__file__).parent / "Demo_SinglePerson" / "Config.toml")
        config["project"].update(project_dir=str(project), frame_rate=int(round(fps)), frame_range="all")
        config["pose"]["pose_model"] = CUSTOM_MODEL
        config["pose"][CUSTOM_MODEL] = _pose2sim_tree(skeleton)
        config["triangulation"].update(undistort_points=bool(undistort), make_c3d=False)
        config["filtering"].update(display_figures=False, save_filt_plots=False, make_c3d=False)
        config["logging"] = {"use_custom_logging": True}  # its own handlers would write into our working folder
        (project / "Config.toml").write_text(rtoml.dumps(config), encoding="utf-8")
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)  # it logs every step at INFO
        try:
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # and draws a progress bar over the frames
                Pose2Sim.triangulation(str(project / "Config.toml"))
                Pose2Sim.filtering(str(project / "Config.toml"))
            seconds = time.perf_counter() - start
        finally:
            logging.getLogger().setLevel(level)
        outputs = sorted((project / "pose-3d").glob("*.trc"))
        raw = [p for p in outputs if "filt" not in p.name]
        filtered = [p for p in outputs if "filt" in p.name]
        if len(raw) != 1 or len(filtered) != 1:
            raise RuntimeError(f"Pose2Sim wrote {[p.name for p in outputs]}, expected one raw and one filtered .trc")
        return (
            _read_output(raw[0], skeleton, num_frames),
            _read_output(filtered[0], skeleton, num_frames),
            seconds,
        )


def pose2sim_available() -> bool:
    """Pose2Sim's triangulation and filtering modules import (the optional install is there)."""
    try:
        import Pose2Sim.filtering  # noqa: F401
        import Pose2Sim.triangulation  # noqa: F401
    except Exception:  # noqa: BLE001 - optional peer: any import failure just leaves it out
        return False
    return True


def pose2sim_methods(method_type, distorted: bool) -> list:
    """The bench's Pose2Sim rows (``method_type`` is the bench's ``Method``): triangulated and filtered, with
    ``undistort_points`` off (its default) and, when the rig has lens distortion (``distorted``), on. Empty when
    Pose2Sim is not installed.

    Both rows of one setting come from one run (triangulation then filtering), cached per scenario; the time of
    each row is that run's, per frame.
    """
    if not pose2sim_available():
        return []
    cache: dict[tuple[int, int, bool], tuple[np.ndarray, np.ndarray, float]] = {}

    def method(undistort: bool, filtered: bool):
        def run(scenario, frames: int):
            key = (id(scenario), frames, undistort)
            if key not in cache:
                cache[key] = run_pose2sim(
                    scenario.rig, scenario.skeleton, scenario.keypoints[:, :frames], scenario.fps, undistort
                )
            triangulated, smoothed, seconds = cache[key]
            return (smoothed if filtered else triangulated), [seconds / frames]

        return run

    names = {False: "Pose2Sim", True: "Pose2Sim undistort_points"}
    return [
        method_type(f"{names[undistort]} {'filtered' if filtered else 'triangulation'}", method(undistort, filtered))
        for undistort in ((False, True) if distorted else (False,))
        for filtered in (False, True)
    ]
