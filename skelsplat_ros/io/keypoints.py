"""Multi-view 2D keypoints on disk: ``.npz`` archives and OpenPose/Pose2Sim JSON folders.

In memory a recording is a :class:`KeypointSet`: ``keypoints [V, F, J, 3]`` holding (x px, y px, confidence) for
``V`` views, ``F`` frames and ``J`` joints; a missing keypoint is NaN x/y with confidence 0.

On disk:

- ``.npz``: ``keypoints [V, F, J, 3]``, ``cameras [V]`` (strings), optional ``fps`` (scalar), ``skeleton`` (string),
  ``frame_numbers [F]`` (increasing ints: the frames they skip are read as missing frames, so that frame ``f`` of
  the set is ``f / fps`` seconds in, as everything downstream assumes; see ``io/timeline.py``);
- a folder with one ``<camera>_json/`` subfolder per camera, as written by OpenPose (``--write_json``) and read by
  Pose2Sim: one file per frame, ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}, ...]}``.

Errors are :class:`KeypointsError` (a ``ValueError``) with a one-line message, or ``FileNotFoundError``.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.camera import CameraRig
from ..skeleton.models import get_skeleton
from .validation import outside_image

__all__ = [
    "KeypointsError",
    "KeypointSet",
    "JSON_SUBJECT_RULE",
    "SUBJECT_MAX_MISSED",
    "load_keypoints",
    "save_keypoints_npz",
    "save_openpose_folder",
    "align_to_rig",
    "match_cameras",
    "mask_outside_image",
]

SUBJECT_MAX_MISSED = 5
"""Files in a row without anybody near the followed subject before the most confident person becomes the new one."""
JSON_SUBJECT_RULE = (
    "In OpenPose/Pose2Sim JSON folders, each camera's subject is followed from file to file: in its first file with "
    "people it is the person with the highest mean keypoint confidence (missing keypoints count as 0); in each "
    "later file, the person nearest the subject last followed (median pixel distance over the keypoints both have), "
    "when that is under half the subject's size. A file where nobody is that near leaves the view missing for that "
    f"frame (no bystander stands in); after {SUBJECT_MAX_MISSED} such files in a row, the most confident person of "
    "the next file with people becomes the subject. The other people are ignored. A keypoint written as x = y = 0 "
    "with confidence 0 is missing."
)
"""One-paragraph description of how JSON people are reduced to one subject (quoted by the CLI's --help)."""



class KeypointsError(ValueError):
    """Keypoints that cannot be used; the message names the file or the field at fault."""


@dataclass
class KeypointSet:
    """2D keypoints of one subject (or of several people) seen by several cameras.

    Attributes:
        keypoints: ``[V, F, J, 3]`` float64: x px, y px, confidence in [0, 1]. Missing = NaN x/y, confidence 0.
            Multi-person: ``[V, F, S, J, 3]``, S detection slots per view-frame in any order, NaN-padded.
        cameras: ``[V]`` camera names, matching the calibration (see :func:`align_to_rig`).
        fps: frame rate in Hz, or None when unknown (JSON folders).
        skeleton: skeleton name (``body25b``, ``coco17``, ... or a YAML path) or None when unknown.
        frame_numbers: ``[F]`` int source frame numbers (file numbers for JSON folders), or None for ``0..F-1``.

    Construction sanitises a copy of ``keypoints``: non-finite x/y become NaN, non-finite confidences become 0,
    confidences are clipped to [0, 1], and NaN x/y force confidence 0. It raises :class:`KeypointsError` on a
    wrong shape, a camera count that does not match ``V``, duplicate cameras, a bad fps, or a joint count that
    does not match ``skeleton``.
    """

    keypoints: np.ndarray
    cameras: list[str]
    fps: float | None = None
    skeleton: str | None = None
    frame_numbers: np.ndarray | None = None

    def __post_init__(self) -> None:
        try:
            keypoints = np.array(self.keypoints, dtype=np.float64, copy=True)
        except (TypeError, ValueError):
            raise KeypointsError("keypoints must be a numeric array [V, F, J, 3]") from None
        if keypoints.ndim not in (4, 5) or keypoints.shape[-1] != 3:
            raise KeypointsError(
                f"keypoints must have shape [V, F, J, 3] (x, y, confidence), or [V, F, S, J, 3] for several people, "
                f"got {list(keypoints.shape)}"
            )
        if isinstance(self.cameras, str):
            raise KeypointsError("cameras must be a list of camera names, not one string")
        self.cameras = [str(c) for c in self.cameras]
        if len(self.cameras) != keypoints.shape[0]:
            raise KeypointsError(
                f"{len(self.cameras)} camera names for {keypoints.shape[0]} views in keypoints [V, F, J, 3]"
            )
        if len(set(self.cameras)) != len(self.cameras):
            raise KeypointsError(f"duplicate camera names: {self.cameras}")
        xy, conf = keypoints[..., :2], keypoints[..., 2]
        bad_xy = ~np.all(np.isfinite(xy), axis=-1)
        xy[bad_xy] = np.nan
        conf[~np.isfinite(conf)] = 0.0
        np.clip(conf, 0.0, 1.0, out=conf)
        conf[bad_xy] = 0.0
        self.keypoints = keypoints
        if self.fps is not None:
            try:
                fps = float(self.fps)
            except (TypeError, ValueError):
                raise KeypointsError(f"fps must be a number, got {self.fps!r}") from None
            if not np.isfinite(fps) or fps <= 0:
                raise KeypointsError(f"fps must be positive, got {self.fps!r}")
            self.fps = fps
        if self.frame_numbers is not None:
            frames = np.asarray(self.frame_numbers)
            if frames.shape != (keypoints.shape[1],) or (frames.size and not np.issubdtype(frames.dtype, np.integer)):
                raise KeypointsError(
                    f"frame_numbers must be {keypoints.shape[1]} integers [F], "
                    f"got shape {list(frames.shape)} {frames.dtype}"
                )
            self.frame_numbers = frames.astype(np.int64)
        if self.skeleton is not None:
            self.skeleton = str(self.skeleton)
            try:
                expected = get_skeleton(self.skeleton).num_joints
            except (KeyError, ValueError, OSError) as error:
                raise KeypointsError(str(error.args[0]) if error.args else str(error)) from None
            if expected != keypoints.shape[-2]:
                raise KeypointsError(
                    f"skeleton {self.skeleton!r} has {expected} joints but the keypoints have {keypoints.shape[-2]}"
                )

    @property
    def num_views(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[1])

    @property
    def num_joints(self) -> int:
        return int(self.keypoints.shape[-2])

    @property
    def multi_person(self) -> bool:
        """Several people per view-frame (``keypoints [V, F, S, J, 3]``)."""
        return self.keypoints.ndim == 5

    @property
    def xy(self) -> np.ndarray:
        """Pixel coordinates ``[V, F, J, 2]`` (``[V, F, S, J, 2]`` multi-person; a view)."""
        return self.keypoints[..., :2]

    @property
    def confidence(self) -> np.ndarray:
        """Confidences ``[V, F, J]`` (a view)."""
        return self.keypoints[..., 2]

    @property
    def frames(self) -> np.ndarray:
        """Source frame numbers ``[F]`` (``0..F-1`` when none were recorded)."""
        return self.frame_numbers if self.frame_numbers is not None else np.arange(self.num_frames)

    def select_cameras(self, names: list[str]) -> "KeypointSet":
        """The set restricted to ``names``, in that order; :class:`KeypointsError` for an unknown name."""
        unknown = [n for n in names if n not in self.cameras]
        if unknown:
            raise KeypointsError(f"unknown camera(s) {unknown}; the keypoints have {self.cameras}")
        index = [self.cameras.index(n) for n in names]
        return KeypointSet(self.keypoints[index], list(names), self.fps, self.skeleton, self.frame_numbers)


# --- loading --------------------------------------------------------------------------------------------------------


def load_keypoints(
    path: str | Path, skeleton: str | None = None, fps: float | None = None, people: str = "subject"
) -> KeypointSet:
    """Load multi-view keypoints from an ``.npz`` file or an OpenPose/Pose2Sim JSON folder.

    Args:
        path: an ``.npz`` file (keys ``keypoints [V, F, J, 3]``, or ``[V, F, S, J, 3]`` for several people per
            view-frame, ``cameras [V]``, optional ``fps``, ``skeleton``,
            ``frame_numbers [F]``), or a folder holding one ``<camera>_json/`` subfolder per camera (the camera
            name is the folder name without ``_json``; a single ``<camera>_json`` folder also works).
        skeleton: skeleton name to check the joint count against; overrides the one stored in an ``.npz``.
        fps: frame rate to record; overrides the one stored in an ``.npz`` (JSON folders store none).
        people: JSON folders: ``subject`` (the followed subject below, ``[V, F, J, 3]``) or ``all`` (every person
            of every file, ``[V, F, S, J, 3]`` with S the most people in one file, NaN-padded).

    JSON folders: one file per frame; files are ordered by the last run of digits in their name (the frame
    number). Each camera's subject is followed from file to file (:data:`JSON_SUBJECT_RULE`): the most
    confident person first, then the person nearest it; a file without people, or without anybody near the
    subject, gives a frame with every keypoint of that view missing; x = y = 0 with confidence 0 is a missing
    keypoint. Cameras whose files carry the same frame
    numbers are aligned on them. Cameras with equal file counts but shifted numbering (e.g. one starts at 1,
    another at 0, each without gaps) are aligned by file order. Otherwise cameras are aligned by frame number
    over every number from the smallest to the largest (gaps become missing frames), and a frame a camera
    lacks is missing in that camera.

    Returns:
        The :class:`KeypointSet` (``frame_numbers`` set for JSON folders).

    Raises:
        FileNotFoundError: no such file or folder.
        KeypointsError: unsupported input, missing keys, wrong shapes, unreadable JSON, inconsistent joint counts,
            or a joint count that does not match ``skeleton``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"keypoints not found: {path}")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise KeypointsError(
                f"{path}: unsupported keypoints file (expected .npz, or a folder of <camera>_json/ folders)"
            )
        return _load_npz(path, skeleton, fps)
    if people not in ("subject", "all"):
        raise KeypointsError(f"people must be 'subject' or 'all', got {people!r}")
    return _load_json_folder(path, skeleton, fps, everyone=people == "all")


# What numpy, zipfile and zlib raise on a truncated or corrupted archive (besides ValueError).
_CORRUPT_ARCHIVE = (OSError, EOFError, zipfile.BadZipFile, zlib.error, struct.error, NotImplementedError, MemoryError,
                    KeyError)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _load_npz(path: Path, skeleton: str | None, fps: float | None) -> KeypointSet:
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except ValueError as error:
        raise KeypointsError(f"{path}: cannot read .npz ({_one_line(error)})") from None
    except _CORRUPT_ARCHIVE as error:
        raise KeypointsError(f"{path}: not a valid .npz file ({type(error).__name__}: {_one_line(error)})") from None
    for key in ("keypoints", "cameras"):
        if key not in data:
            raise KeypointsError(f"{path}: missing key '{key}' (has {sorted(data)})")
    cameras = data["cameras"]
    if cameras.ndim != 1 or cameras.dtype.kind not in "US":
        raise KeypointsError(
            f"{path}: 'cameras' must be a 1-D array of strings, got {cameras.dtype} {list(cameras.shape)}"
        )
    stored_fps = None
    if "fps" in data and data["fps"].size == 1:
        try:
            stored_fps = float(data["fps"])
        except (TypeError, ValueError):
            raise KeypointsError(f"{path}: 'fps' must be a number, got {data['fps']!r}") from None
    stored_skeleton = str(data["skeleton"]) if "skeleton" in data and data["skeleton"].size == 1 else None
    if stored_skeleton == "":
        stored_skeleton = None
    try:
        keypoint_set = KeypointSet(
            keypoints=data["keypoints"],
            cameras=[str(c) for c in cameras],
            fps=fps if fps is not None else stored_fps,
            skeleton=skeleton if skeleton is not None else stored_skeleton,
            frame_numbers=data.get("frame_numbers"),
        )
    except KeypointsError as error:
        raise KeypointsError(f"{path}: {error}") from None
    return _with_skipped_frames(keypoint_set, path)


def _check_span(path: Path, first: int, last: int, count: int, what: str) -> None:
    """Frame numbers ``first..last`` for ``count`` frames: refused when they span far more frames than there are
    (they are not frame numbers, and a timeline of them would not fit in memory)."""
    if last - first + 1 > max(10 * count, 10_000):
        raise KeypointsError(f"{path}: frame numbers span {first}..{last} for only {count} {what}; are they frame "
                             "numbers?")


def _with_skipped_frames(keypoint_set: KeypointSet, path: Path) -> KeypointSet:
    """The set with the frames its ``frame_numbers`` skip put back, as missing frames (NaN, confidence 0)."""
    numbers = keypoint_set.frame_numbers
    if numbers is None or numbers.size < 2:
        return keypoint_set
    steps = np.diff(numbers)
    if np.any(steps <= 0):
        at = int(np.argmax(steps <= 0))
        raise KeypointsError(f"{path}: frame_numbers must increase (frame {at + 1} is number {numbers[at + 1]}, "
                             f"after {numbers[at]})")
    if np.all(steps == 1):
        return keypoint_set
    _check_span(path, int(numbers[0]), int(numbers[-1]), numbers.size, "frames")
    kp = keypoint_set.keypoints
    full = np.full((kp.shape[0], int(numbers[-1] - numbers[0]) + 1) + kp.shape[2:], np.nan)
    full[..., 2] = 0.0
    full[:, numbers - numbers[0]] = kp
    return KeypointSet(full, keypoint_set.cameras, keypoint_set.fps, keypoint_set.skeleton,
                       np.arange(numbers[0], numbers[-1] + 1))


_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _frame_number(file: Path) -> int:
    match = _LAST_NUMBER.search(file.stem)
    if match is None:
        raise KeypointsError(
            f"{file}: no frame number in the file name (expected digits, e.g. cam01_000012_keypoints.json)"
        )
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > 15:  # frame numbers are int64 arrays; a 30-digit run is not a frame number
        raise KeypointsError(f"{file}: frame number {digits[:20]}... in the file name is too large")
    return int(digits)


def _natural_key(text: str) -> list[Any]:
    return [(0, int(c), "") if c.isdigit() else (1, 0, c) for c in re.split(r"(\d+)", text) if c]


def _read_people(file: Path) -> list[np.ndarray]:
    """Every person of one OpenPose JSON file, each ``[J, 3]`` with missing keypoints (0, 0, 0) as NaN pixels."""
    try:
        with open(file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise KeypointsError(f"{file}: not valid JSON ({error})") from None
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise KeypointsError(f"{file}: no 'people' list (is this an OpenPose JSON file?)")
    found: list[np.ndarray] = []
    for index, person in enumerate(people):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if flat is None:
            raise KeypointsError(f"{file}: person {index} has no 'pose_keypoints_2d'")
        try:
            values = np.asarray(flat, dtype=np.float64)
        except (TypeError, ValueError):
            raise KeypointsError(f"{file}: person {index} 'pose_keypoints_2d' is not a list of numbers") from None
        if values.ndim != 1 or values.size == 0 or values.size % 3:
            raise KeypointsError(
                f"{file}: person {index} 'pose_keypoints_2d' has {values.size} values, not a multiple of 3 (x, y, c)"
            )
        person_kp = values.reshape(-1, 3).copy()
        if found and person_kp.shape != found[0].shape:
            raise KeypointsError(
                f"{file}: people have different joint counts ({found[0].shape[0]} and {person_kp.shape[0]})"
            )
        missing = (person_kp[:, 0] == 0) & (person_kp[:, 1] == 0) & (person_kp[:, 2] == 0)
        person_kp[missing, :2] = np.nan
        found.append(person_kp)
    return found


class _SubjectTracker:
    """Follows one camera's subject from file to file (see :data:`JSON_SUBJECT_RULE`)."""

    def __init__(self) -> None:
        self.reference: np.ndarray | None = None
        self.missed = 0

    def choose(self, people: list[np.ndarray]) -> np.ndarray | None:
        """The subject among ``people`` (each ``[J, 3]``), or None when it is not in this file."""
        if not people:
            return None
        nearest = self._nearest(people)
        if nearest is not None:
            self.reference, self.missed = nearest, 0
            return nearest
        # The subject may be hidden for a few files: the view is missing meanwhile (a bystander is not the subject),
        # and only once it has been gone for too long does the most confident person become the one followed.
        self.missed += 1
        if self.reference is not None and self.missed <= SUBJECT_MAX_MISSED:
            return None
        scores = [float(np.nan_to_num(p[:, 2], nan=0.0, posinf=0.0, neginf=0.0).clip(0.0, 1.0).mean()) for p in people]
        chosen = people[int(np.argmax(scores))]
        self.reference, self.missed = chosen, 0
        return chosen

    def _nearest(self, people: list[np.ndarray]) -> np.ndarray | None:
        previous = self.reference
        if previous is None or previous.shape != people[0].shape:
            return None
        seen = np.isfinite(previous[:, :2]).all(-1) & (np.nan_to_num(previous[:, 2]) > 0)
        if not seen.any():
            return None
        extent = np.nanmax(previous[seen, :2], axis=0) - np.nanmin(previous[seen, :2], axis=0)
        gate = 0.5 * max(float(np.linalg.norm(extent)), 1.0)
        distances = []
        for person in people:
            both = seen & np.isfinite(person[:, :2]).all(-1) & (np.nan_to_num(person[:, 2]) > 0)
            gap = np.linalg.norm(person[both, :2] - previous[both, :2], axis=-1)
            distances.append(float(np.median(gap)) if gap.size else np.inf)
        best = int(np.argmin(distances))
        return people[best] if distances[best] < gate else None


def _camera_folders(path: Path) -> list[Path]:
    folders = sorted(
        (p for p in path.iterdir() if p.is_dir() and p.name.endswith("_json")), key=lambda p: _natural_key(p.name)
    )
    if not folders and path.name.endswith("_json"):
        folders = [path]
    if not folders:
        raise KeypointsError(f"{path}: no <camera>_json/ subfolders (expected one OpenPose JSON folder per camera)")
    return folders


def _load_json_folder(path: Path, skeleton: str | None, fps: float | None, everyone: bool = False) -> KeypointSet:
    folders = _camera_folders(path)
    cameras = [folder.name[: -len("_json")] for folder in folders]
    per_camera: list[dict[int, list[np.ndarray]]] = []
    joints: int | None = None
    for folder in folders:
        files = sorted(folder.glob("*.json"), key=lambda p: _natural_key(p.name))
        if not files:
            raise KeypointsError(f"{folder}: no .json files")
        frames: dict[int, list[np.ndarray]] = {}
        tracker = _SubjectTracker()
        for file in files:
            number = _frame_number(file)
            if number in frames:
                raise KeypointsError(f"{folder}: two files carry frame number {number} (e.g. {file.name})")
            found = _read_people(file)  # one joint count per file, whoever is fused
            if found:
                if joints is None:
                    joints = found[0].shape[0]
                elif found[0].shape[0] != joints:
                    raise KeypointsError(
                        f"{file}: {found[0].shape[0]} keypoints per person, but earlier files have {joints}"
                    )
            if not everyone:
                subject = tracker.choose(found)
                found = [] if subject is None else [subject]
            frames[number] = found
        per_camera.append(frames)
    if joints is None:
        if skeleton is None:
            raise KeypointsError(f"{path}: no person in any JSON file, and no skeleton to tell the joint count")
        try:
            joints = get_skeleton(skeleton).num_joints
        except (KeyError, ValueError, OSError) as error:
            raise KeypointsError(str(error.args[0]) if error.args else str(error)) from None

    numbers = [sorted(frames) for frames in per_camera]
    same_numbers = all(n == numbers[0] for n in numbers)
    shifted = (
        not same_numbers
        and all(len(n) == len(numbers[0]) for n in numbers)
        and all(n[-1] - n[0] == len(n) - 1 for n in numbers)
    )
    if shifted:
        frame_numbers = np.asarray(numbers[0], dtype=np.int64)
        slots = [{number: k for k, number in enumerate(n)} for n in numbers]
    else:  # by frame number; gaps (in every camera) become missing frames so that F is evenly spaced in time
        first, last = min(n[0] for n in numbers), max(n[-1] for n in numbers)
        _check_span(path, first, last, max(len(n) for n in numbers), "files per camera")
        frame_numbers = np.arange(first, last + 1, dtype=np.int64)
        slots = [{number: number - int(frame_numbers[0]) for number in n} for n in numbers]

    slots_per_frame = max((len(found) for frames in per_camera for found in frames.values()), default=0)
    keypoints = np.full((len(cameras), frame_numbers.size, max(slots_per_frame, 1), joints, 3), np.nan)
    keypoints[..., 2] = 0.0
    for view, (frames, slot) in enumerate(zip(per_camera, slots)):
        for number, found in frames.items():
            for k, person in enumerate(found):
                keypoints[view, slot[number], k] = person
    if not everyone:
        keypoints = keypoints[:, :, 0]
    try:
        return KeypointSet(keypoints, cameras, fps, skeleton, frame_numbers)
    except KeypointsError as error:
        raise KeypointsError(f"{path}: {error}") from None


# --- saving ---------------------------------------------------------------------------------------------------------


def save_keypoints_npz(keypoint_set: KeypointSet, path: str | Path) -> None:
    """Write ``keypoint_set`` as a compressed ``.npz`` that :func:`load_keypoints` reads back equal.

    Keys: ``keypoints [V, F, J, 3]`` float64, ``cameras [V]`` str, and when set ``fps``, ``skeleton``,
    ``frame_numbers [F]``.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise KeypointsError(f"{path}: keypoints archives must end in .npz")
    arrays: dict[str, np.ndarray] = {
        "keypoints": keypoint_set.keypoints,
        "cameras": np.array(keypoint_set.cameras, dtype=str),
    }
    if keypoint_set.fps is not None:
        arrays["fps"] = np.array(float(keypoint_set.fps))
    if keypoint_set.skeleton is not None:
        arrays["skeleton"] = np.array(str(keypoint_set.skeleton))
    if keypoint_set.frame_numbers is not None:
        arrays["frame_numbers"] = np.asarray(keypoint_set.frame_numbers, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def _person_json(kp: np.ndarray) -> dict[str, Any]:
    """One OpenPose person from ``[J, 3]``; a missing keypoint is written 0, 0, 0."""
    flat = kp.copy()
    missing = ~np.all(np.isfinite(flat[:, :2]), axis=-1)
    flat[missing] = 0.0
    return {
        "person_id": [-1],
        "pose_keypoints_2d": [float(v) for v in flat.reshape(-1)],
        "face_keypoints_2d": [],
        "hand_left_keypoints_2d": [],
        "hand_right_keypoints_2d": [],
        "pose_keypoints_3d": [],
        "face_keypoints_3d": [],
        "hand_left_keypoints_3d": [],
        "hand_right_keypoints_3d": [],
    }


def save_openpose_folder(
    keypoint_set: KeypointSet,
    folder: str | Path,
    others: np.ndarray | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``keypoint_set`` as OpenPose JSON: ``folder/<camera>_json/<camera>_<frame:012d>_keypoints.json``.

    Frame numbers are ``keypoint_set.frames``. A frame where the subject has no keypoint at all gets an empty
    ``people`` list; missing keypoints are written ``0, 0, 0`` as OpenPose does.

    Args:
        keypoint_set: the subject's keypoints ``[V, F, J, 3]``, or several people's ``[V, F, S, J, 3]`` (each slot
            with a keypoint seen is a person of the file, in slot order).
        folder: output folder (created).
        others: optional extra people ``[V, F, P, J, 3]`` (NaN for absent), written before the subject in each
            file (to test or simulate the most-confident-person rule; give them lower confidences).
        overwrite: remove the ``.json`` files already in the ``<camera>_json`` folders first; without it, a
            camera folder that already holds ``.json`` files is an error.

    Returns:
        The camera folders written, in view order.
    """
    folder = Path(folder)
    kp = keypoint_set.keypoints
    if others is not None and keypoint_set.multi_person:
        raise KeypointsError("others is for a one-subject set [V, F, J, 3]; a [V, F, S, J, 3] set has its people")
    if others is not None:
        others = np.asarray(others, dtype=np.float64)
        if others.ndim != 5 or others.shape[:2] != kp.shape[:2] or others.shape[3:] != kp.shape[2:]:
            raise KeypointsError(
                f"others must have shape [V, F, P, J, 3] = [{kp.shape[0]}, {kp.shape[1]}, P, {kp.shape[2]}, 3], "
                f"got {list(others.shape)}"
            )
    written = []
    for view, camera in enumerate(keypoint_set.cameras):
        cam_folder = folder / f"{camera}_json"
        existing = sorted(cam_folder.glob("*.json")) if cam_folder.is_dir() else []
        if existing and not overwrite:
            raise KeypointsError(
                f"{cam_folder}: already holds {len(existing)} .json files (pass overwrite=True to replace them)"
            )
        for file in existing:
            file.unlink()
        cam_folder.mkdir(parents=True, exist_ok=True)
        for index, number in enumerate(keypoint_set.frames):
            people = []
            if others is not None:
                for person in others[view, index]:
                    if np.any(np.isfinite(person[:, :2]).all(axis=-1)):
                        people.append(_person_json(person))
            # Several people [S, J, 3] (slots in order), or the one subject [J, 3].
            for subject in kp[view, index] if keypoint_set.multi_person else kp[view, index][None]:
                if np.any(np.isfinite(subject[:, :2]).all(axis=-1)):
                    people.append(_person_json(subject))
            file = cam_folder / f"{camera}_{int(number):012d}_keypoints.json"
            file.write_text(json.dumps({"version": 1.3, "people": people}), encoding="utf-8")
        written.append(cam_folder)
    return written


# --- matching with a calibration ----------------------------------------------------------------------------------


def _loose_name(name: str) -> str:
    """``cam_01`` / ``Cam-1`` / ``cam01`` -> ``cam1``: lower case, separators dropped, leading zeros dropped."""
    compact = re.sub(r"[^0-9a-z]", "", name.lower())
    return re.sub(r"\d+", lambda m: str(int(m.group(0))), compact)


def match_cameras(names: list[str], rig: CameraRig) -> CameraRig:
    """The calibrated camera of each name in ``names``, in that order (the rig keeps its own names).

    Names match exactly first, then loosely (case, ``_``/``-`` separators and leading zeros ignored, so the
    Pose2Sim folder ``cam01_json`` meets the calibration's ``cam_01``).

    Raises:
        KeypointsError: a name has no calibration, matches several calibrated cameras, or two names match one.
    """
    chosen: list[str] = []
    unmatched: list[str] = []
    for camera in names:
        if camera in rig.names:
            chosen.append(camera)
            continue
        candidates = [n for n in rig.names if _loose_name(n) == _loose_name(camera)]
        if len(candidates) > 1:
            raise KeypointsError(f"camera {camera!r} matches several calibrated cameras {candidates}; rename them")
        if not candidates:
            unmatched.append(camera)
        else:
            chosen.append(candidates[0])
    if unmatched:
        raise KeypointsError(f"no calibration for camera(s) {unmatched}; the calibration has {rig.names}")
    if len(set(chosen)) != len(chosen):
        raise KeypointsError(f"several keypoint cameras {list(names)} map to the same calibrated camera ({chosen})")
    return rig.subset(chosen)


def align_to_rig(keypoint_set: KeypointSet, rig: CameraRig) -> tuple[KeypointSet, CameraRig]:
    """Pair each keypoint camera with its calibrated camera (:func:`match_cameras`); calibrated cameras without
    keypoints are dropped.

    Returns:
        ``(keypoint_set, rig_subset)`` with ``rig_subset[v]`` the calibration of view ``v`` of ``keypoint_set``
        (the keypoint set is returned unchanged; the rig keeps its own names).

    Raises:
        KeypointsError: a keypoint camera has no calibration, or matches several calibrated cameras.
    """
    return keypoint_set, match_cameras(keypoint_set.cameras, rig)


def mask_outside_image(keypoint_set: KeypointSet, rig: CameraRig, margin: float = 0.25) -> tuple[KeypointSet, int]:
    """Keypoints further outside their camera's calibrated image than ``margin`` times its width/height become
    missing: a detector's garbage (1e38 px, a wrong camera's coordinates), not a joint just out of view.

    ``rig[v]`` is the calibration of view ``v`` (as :func:`align_to_rig` returns it). Returns the set (a copy when
    anything changed) and how many keypoints were masked.
    """
    kp = keypoint_set.keypoints
    # Sizes per view against [V, F, J, 2], or [V, F, S, J, 2] for several people.
    sizes = rig.sizes.reshape((len(rig),) + (1,) * (kp.ndim - 3) + (2,))
    far = outside_image(kp[..., :2], sizes, margin) & (kp[..., 2] > 0)  # [V, F, (S,) J]
    count = int(np.count_nonzero(far))
    if not count:
        return keypoint_set, 0
    kp = kp.copy()
    kp[far, :2] = np.nan
    kp[far, 2] = 0.0
    return KeypointSet(kp, keypoint_set.cameras, keypoint_set.fps, keypoint_set.skeleton,
                       keypoint_set.frame_numbers), count
