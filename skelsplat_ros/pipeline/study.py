"""A study on disk: its takes (one folder each, with keypoints or videos and a calibration) and its settings file.

Layout (``README.md``, "Many recordings")::

    STUDY/
      skelsplat.toml        optional: the study's settings, [fuse] = the options of ``skelsplat fuse``
      calib.toml            optional: the study's calibration, for takes without their own
      take_a/
        calib*.toml         optional: this take's calibration
        *.npz               keypoints that ``fuse`` reads (4-D one subject, 5-D several people) ...
        <camera>_json/      ... or OpenPose/Pose2Sim JSON folders ...
        *.mp4 (.avi ...)    ... or one video per camera (the detect step; the camera is the file stem), also
                            what the render step draws over

Everything here is cheap (names and ``stat`` only): a study whose outputs are up to date is checked in well under
a second."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (ROS 2 Humble): the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

SETTINGS_FILE = "skelsplat.toml"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
SETTINGS_SECTIONS = ("fuse", "detect", "render")


class StudyError(ValueError):
    """A study that cannot be run as a whole (no such folder, unreadable settings); one line."""


@dataclass(frozen=True)
class Take:
    """One recording of a study.

    Attributes:
        name: the folder's name (also its output folder's).
        folder: the take's folder.
        calibration: its calibration TOML (its own, else the study's), or None.
        keypoints: an ``.npz`` file, or the take folder when it holds ``<camera>_json/`` folders; None when the
            take's videos are to be detected.
        videos: one video per camera (the detect step's input without keypoints; the render step's with them).
        problem: why the take cannot run as found (two keypoint files, no calibration, ...), or None.
    """

    name: str
    folder: Path
    calibration: Path | None
    keypoints: Path | None
    videos: tuple[Path, ...] = ()
    problem: str | None = None

    def input_files(self) -> list[Path]:
        """Every file the take's outputs depend on (its calibration, keypoint files and videos)."""
        files = [p for p in (self.calibration,) if p is not None] + list(self.videos)
        if self.keypoints is not None and self.keypoints.is_file():
            files.append(self.keypoints)
        elif self.keypoints is not None:
            files += [Path(entry) for folder in _json_folders(self.keypoints) for entry in _files(folder)]
        return files

    def input_mtime(self) -> float:
        """The newest modification time of :meth:`input_files` (0 when there are none)."""
        return max((os.stat(p).st_mtime for p in self.input_files()), default=0.0)


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _files(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return [entry.path for entry in entries if entry.is_file()]


def _json_folders(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and e.name.lower().endswith("_json"))


def _calibrations(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.is_file() and e.name.lower().startswith("calib") and e.name.lower().endswith(".toml"))


def _one_or_problem(found: list[Path], what: str, folder: Path) -> tuple[Path | None, str | None]:
    if len(found) > 1:
        return None, f"{len(found)} {what} in {folder.name}/ ({', '.join(p.name for p in found)}): keep one"
    return (found[0] if found else None), None


def find_takes(study: str | Path, exclude: str | Path | None = None) -> tuple[list[Take], list[str]]:
    """The takes of ``study`` in natural order, and the names of its sub-folders that are not takes (no keypoints or
    videos). ``exclude``: a folder inside the study to pass over (the output folder)."""
    study = Path(study)
    if not study.is_dir():
        raise StudyError(f"no study folder {study}")
    study_calibration, study_problem = _one_or_problem(_calibrations(study), "calibration files", study)
    excluded = Path(exclude).resolve() if exclude is not None else None
    takes: list[Take] = []
    ignored: list[str] = []
    with os.scandir(study) as entries:
        folders = sorted((Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")),
                         key=lambda p: _natural_key(p.name))
    for folder in folders:
        if excluded is not None and folder.resolve() == excluded:
            continue
        take = _read_take(folder, study_calibration, study_problem)
        if take is None:
            ignored.append(folder.name)
        else:
            takes.append(take)
    return takes, ignored


def _read_take(folder: Path, study_calibration: Path | None, study_problem: str | None) -> Take | None:
    files = [Path(f) for f in _files(folder)]
    npz = sorted(p for p in files if p.suffix.lower() == ".npz")
    videos = tuple(sorted((p for p in files if p.suffix.lower() in VIDEO_SUFFIXES), key=lambda p: _natural_key(p.name)))
    has_json = bool(_json_folders(folder))
    if not npz and not videos and not has_json:
        return None
    own, problem = _one_or_problem(_calibrations(folder), "calibration files", folder)
    calibration = own or (None if problem else study_calibration)
    if problem is None and calibration is None:
        problem = study_problem or "no calibration: put a calib*.toml in the take's folder or in the study's"
    keypoint_inputs: list[Path] = npz + ([folder] if has_json else [])
    if len(keypoint_inputs) > 1:
        names = [p.name for p in npz] + (["<camera>_json/ folders"] if has_json else [])
        problem = problem or f"{len(names)} keypoint inputs ({', '.join(names)}): keep one"
    # Keypoints already made win over videos: detection has been done for this take (its videos can be rendered).
    keypoints = keypoint_inputs[0] if keypoint_inputs else None
    return Take(folder.name, folder, calibration, keypoints, videos, problem)


def read_settings(path: str | Path) -> dict[str, dict[str, Any]]:
    """The sections of a study's settings TOML (``[fuse]``, ``[detect]``, ``[render]``), each a dict of option name
    (the command's long option without dashes: ``single-view-joints`` or ``single_view_joints``) to value."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise StudyError(f"no settings file {path}") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise StudyError(f"{path}: unreadable settings ({' '.join(str(error).split())})") from None
    unknown = [key for key in data if key not in SETTINGS_SECTIONS]
    if unknown:
        raise StudyError(f"{path}: unknown section(s) {unknown}; the sections are {', '.join(SETTINGS_SECTIONS)}")
    sections: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise StudyError(f"{path}: {name} must be a [{name}] table of options")
        sections[name] = {key.replace("-", "_"): value for key, value in table.items()}
    return sections
