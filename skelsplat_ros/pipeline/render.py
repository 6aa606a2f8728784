"""A fused result drawn over its videos: the work of ``skelsplat render`` and of a study's render step (``skelsplat
batch`` with a ``[render]`` table), which both call :func:`render_file` with the same :class:`RenderSettings`.
OpenCV and matplotlib load when it draws (``detection/render.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fuse import Note, Progress, print_note, settings_from


@dataclass(frozen=True)
class RenderSettings:
    """The options of ``skelsplat render`` besides its paths (a study's ``[render]`` settings are the same keys).

    Attributes:
        skeleton: skeleton name or YAML file of the result; ``None`` = the built-in one with its joint names.
        calibration_units: ``auto`` (told by the cameras' field of view), ``m``, ``cm`` or ``mm``.
        frames: draw only the first N frames (0 = all).
        height: px of each camera's picture (and of the 3D view).
        sheet_frames: frames (rows) on the contact sheet.
    """

    skeleton: str | None = None
    calibration_units: str = "auto"
    frames: int = 0
    height: int = 480
    sheet_frames: int = 4

    @classmethod
    def from_namespace(cls, namespace: object) -> "RenderSettings":
        """The settings among the attributes of ``namespace`` (an ``argparse`` result: same names)."""
        return settings_from(cls, namespace)


@dataclass(frozen=True)
class RenderReport:
    """What :func:`render_file` drew: ``frames`` of ``cameras`` cameras and ``tracks`` people in ``seconds`` (wall),
    written to ``outputs`` (the MP4, then the contact sheet PNG)."""

    frames: int
    cameras: int
    tracks: int
    seconds: float
    outputs: tuple[Path, Path]


def render_file(result: str | Path, videos: list[str | Path] | tuple[Path, ...], calibration: str | Path,
                output: str | Path, settings: RenderSettings = RenderSettings(), progress: Progress | None = None,
                note: Note = print_note) -> RenderReport:
    """Draw the result ``.npz`` of ``skelsplat fuse`` (one person ``[F, J, 3]`` or several ``[F, T, J, 3]``) over the
    cameras' ``videos`` (or image folders; the camera is the stem, matched to ``calibration``) into ``output``
    (``.mp4``) and the contact sheet beside it (``.png``).

    Raises:
        ValueError, KeyError, FileNotFoundError, OSError: one-line messages naming what is wrong.
    """
    from ..detection.render import RenderConfig, render_result
    from ..detection.sources import open_source
    from ..geometry.calibration import load_calibration_metres
    from ..io.export import load_result
    from ..io.keypoints import match_cameras

    output = Path(output)
    if output.suffix.lower() != ".mp4":
        raise ValueError(f"--output {output}: give an .mp4 file (the contact sheet is written beside it as .png)")
    data = load_result(result)
    joints = data["joints"]
    if joints.ndim == 3:  # one person [F, J, 3]
        joints, track_ids = joints[:, None], np.zeros(1, dtype=np.int64)
    else:
        track_ids = data.get("track_ids", np.arange(joints.shape[1]))
    skeleton = _skeleton(settings.skeleton, [str(n) for n in data["joint_names"]], joints.shape[2])
    sources = [open_source(path) for path in videos]
    rig, units = load_calibration_metres(calibration, settings.calibration_units)
    if units != "m":
        note(f"note: calibration read in {units}; converted to metres")
    rig = match_cameras([s.name for s in sources], rig)
    short = [s.name for s in sources if s.num_frames < joints.shape[0]]
    if short:
        raise ValueError(f"videos {short} have fewer frames than the result ({joints.shape[0]})")
    frames = min(settings.frames, joints.shape[0]) if settings.frames else joints.shape[0]
    started = time.perf_counter()
    outputs = render_result(joints[:frames], np.asarray(track_ids), skeleton, rig, sources, output,
                            RenderConfig(height=settings.height, sheet_frames=settings.sheet_frames), progress)
    return RenderReport(frames, len(sources), joints.shape[1], time.perf_counter() - started, outputs)


def _skeleton(name: str | None, joint_names: list[str], num_joints: int):
    """The skeleton ``name``, or the built-in one whose joints are ``joint_names``; checked against the result."""
    from ..skeleton.models import builtin_skeletons, get_skeleton

    if name:
        skeleton = get_skeleton(name)
    else:
        skeleton = next((s for s in builtin_skeletons().values() if list(s.joint_names) == joint_names), None)
        if skeleton is None:
            raise ValueError(f"no built-in skeleton has the result's joints {joint_names}: give --skeleton")
    if len(skeleton.joint_names) != num_joints:
        raise ValueError(f"skeleton {skeleton.name!r} has {len(skeleton.joint_names)} joints, the result {num_joints}")
    return skeleton
