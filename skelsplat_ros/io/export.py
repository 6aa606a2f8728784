"""Writing fused 3D skeletons: ``.npz`` (everything), ``.trc`` (OpenSim/Pose2Sim markers), ``.csv`` (spreadsheets).

World frame: the calibration's (Z-up, metres for Pose2Sim calibrations). The TRC writer converts to OpenSim's
Y-up frame as Pose2Sim does: TRC ``(X, Y, Z) = world (Y, Z, X)`` (a cyclic permutation, so still right-handed);
:func:`load_trc` undoes it.

Errors are :class:`ExportError` (a ``ValueError``) with a one-line message, or ``FileNotFoundError``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "ExportError", "SUPPORTED_SUFFIXES", "check_result_path", "save_result", "save_people_result", "load_result",
    "load_trc",
]

SUPPORTED_SUFFIXES = (".npz", ".trc", ".csv")

# Characters OpenSim refuses in component (marker) names.
_TRC_BAD_NAME_CHARS = set("\\*+ \t\n\r/")


class ExportError(ValueError):
    """Results that cannot be written (bad shapes, unsupported suffix, missing frame rate for TRC, ...)."""


def check_result_path(path: str | Path, fps: float | None = None) -> Path:
    """Validate an output path before a long run: supported suffix, and a frame rate when writing TRC.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        ExportError: unsupported suffix, or ``.trc`` without ``fps``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ExportError(
            f"{path}: unsupported output format {suffix or '(none)'!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if suffix == ".trc" and fps is None:
        raise ExportError(f"{path}: a .trc file needs the frame rate (fps)")
    if fps is not None and (not math.isfinite(float(fps)) or float(fps) <= 0):
        raise ExportError(f"fps must be positive, got {fps!r}")
    return path


def _checked(name: str, value: Any, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ExportError(f"{name} must be numeric") from None
    if array.shape != shape:
        raise ExportError(f"{name} must have shape {list(shape)}, got {list(array.shape)}")
    return array


def save_result(
    path: str | Path,
    joints: np.ndarray,
    confidence: np.ndarray,
    covariance: np.ndarray | None,
    joint_names: Sequence[str],
    fps: float | None = None,
    extra: dict[str, Any] | None = None,
    *,
    num_views: np.ndarray | None = None,
    reprojection_error: np.ndarray | None = None,
    trc_y_up: bool = True,
) -> Path:
    """Write fused 3D joints; the format follows the suffix of ``path``.

    Args:
        path: ``.npz``, ``.trc`` or ``.csv`` (parent folders are created).
        joints: ``[F, J, 3]`` world positions (metres); NaN for a joint not fused.
        confidence: ``[F, J]`` fused confidence.
        covariance: ``[F, J, 3, 3]`` position covariance, or None (then not written).
        joint_names: ``J`` names.
        fps: frame rate in Hz (required for ``.trc``; gives the ``time`` column of ``.csv``). May also be given
            as ``extra["fps"]``.
        extra: more arrays for ``.npz`` (e.g. ``camera_names``, ``skeleton``, ``timestamps``); ignored by
            ``.trc``/``.csv``. Keys must not clash with the standard keys; object arrays are refused.
        num_views: ``[F, J]`` number of views used per joint (``.npz`` only).
        reprojection_error: ``[F, J]`` mean reprojection error in px (``.npz`` only).
        trc_y_up: write TRC in OpenSim's Y-up frame, TRC ``(X, Y, Z) = world (Y, Z, X)`` as Pose2Sim does for a
            Z-up world; False writes world coordinates unchanged.

    Formats:
        - ``.npz``: ``joints``, ``confidence``, ``joint_names``, and when given ``covariance``, ``num_views``,
          ``reprojection_error``, ``fps``, plus ``extra``. NaN stays NaN.
        - ``.trc``: OpenSim marker file (``PathFileType 4``), tab-separated, metres, ``Frame#`` from 1 and
          ``Time = (Frame# - 1) / fps``; a NaN joint is written as three empty fields, which OpenSim reads as
          NaN (missing marker).
        - ``.csv``: header ``frame,time,<joint>_x,<joint>_y,<joint>_z,<joint>_conf,...``; ``frame`` from 0,
          ``time = frame / fps`` (empty without fps); NaN written as ``nan``.

    Returns:
        The path written.

    Raises:
        ExportError: unsupported suffix, wrong shapes, bad names, ``.trc`` without fps, clashing ``extra`` keys.
    """
    extra = dict(extra or {})
    if fps is None and "fps" in extra:
        fps = float(np.asarray(extra.pop("fps")))
    extra.pop("fps", None)
    path = check_result_path(path, fps)
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise ExportError(f"joints must have shape [F, J, 3], got {list(joints.shape)}")
    frames, count = joints.shape[:2]
    names = [str(n) for n in joint_names]
    if len(names) != count:
        raise ExportError(f"{len(names)} joint names for {count} joints")
    if len(set(names)) != len(names):
        raise ExportError(f"duplicate joint names: {names}")
    confidence = _checked("confidence", confidence, (frames, count))
    if covariance is not None:
        covariance = _checked("covariance", covariance, (frames, count, 3, 3))
    if num_views is not None:
        num_views = _checked("num_views", num_views, (frames, count), dtype=np.int64)
    if reprojection_error is not None:
        reprojection_error = _checked("reprojection_error", reprojection_error, (frames, count))
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays: dict[str, np.ndarray] = {
            "joints": joints,
            "confidence": confidence,
            "joint_names": np.array(names, dtype=str),
        }
        optional = {"covariance": covariance, "num_views": num_views, "reprojection_error": reprojection_error}
        arrays.update({k: v for k, v in optional.items() if v is not None})
        if fps is not None:
            arrays["fps"] = np.array(float(fps))
        _add_extra(arrays, extra, reserved=optional)
        np.savez_compressed(path, **arrays)
    elif suffix == ".trc":
        _write_trc(path, joints, names, float(fps), trc_y_up)
    else:
        _write_csv(path, joints, confidence, names, fps)
    return path


def _add_extra(arrays: dict[str, np.ndarray], extra: dict[str, Any], reserved: Iterable[str] = ()) -> None:
    """Put ``extra`` into the ``.npz`` ``arrays``: plain arrays only, under names that are not the result's own."""
    for key, value in extra.items():
        if key in arrays or key in reserved:
            raise ExportError(f"extra key {key!r} clashes with a standard result key")
        array = np.asarray(value)
        if array.dtype == object:
            raise ExportError(f"extra[{key!r}] is not a plain numeric or string array")
        arrays[key] = array


def save_people_result(
    path: str | Path,
    joints: np.ndarray,
    confidence: np.ndarray,
    covariance: np.ndarray,
    track_ids: np.ndarray,
    joint_names: Sequence[str],
    fps: float | None = None,
    trc_y_up: bool = True,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write several people's fused joints; the format follows the suffix of ``path``.

    Args:
        joints: ``[F, T, J, 3]``, one slice per track, NaN where the track is absent or the joint not fused.
        confidence: ``[F, T, J]`` (0 where absent); covariance: ``[F, T, J, 3, 3]``.
        track_ids: ``[T]`` integer ids.
        extra: more arrays for ``.npz`` (e.g. ``timestamps_ns``), as :func:`save_result`'s.

    Formats:
        - ``.npz``: ``joints``, ``confidence``, ``covariance``, ``track_ids``, ``joint_names`` (and ``fps``), plus
          ``extra``.
        - ``.trc``: one file per track, ``<stem>_<id>.trc`` beside ``path`` (each as :func:`save_result` writes it).
        - ``.csv``: :func:`save_result`'s columns with ``track`` after ``time``, one row per frame and track present.

    Returns:
        The paths written.
    """
    path = check_result_path(path, fps)
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 4 or joints.shape[-1] != 3:
        raise ExportError(f"joints must have shape [F, T, J, 3], got {list(joints.shape)}")
    frames, tracks, count = joints.shape[:3]
    confidence = _checked("confidence", confidence, (frames, tracks, count))
    covariance = _checked("covariance", covariance, (frames, tracks, count, 3, 3))
    ids = _checked("track_ids", track_ids, (tracks,), dtype=np.int64)
    names = [str(n) for n in joint_names]
    if len(names) != count:
        raise ExportError(f"{len(names)} joint names for {count} joints")
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".trc":
        return [
            save_result(path.with_name(f"{path.stem}_{int(ids[k])}.trc"), joints[:, k], confidence[:, k], None,
                        names, fps, trc_y_up=trc_y_up)
            for k in range(tracks)
        ]
    if suffix == ".npz":
        arrays = {"joints": joints, "confidence": confidence, "covariance": covariance, "track_ids": ids,
                  "joint_names": np.array(names, dtype=str)}
        if fps is not None:
            arrays["fps"] = np.array(float(fps))
        _add_extra(arrays, dict(extra or {}))
        np.savez_compressed(path, **arrays)
        return [path]
    header = ["frame", "time", "track"]
    for name in names:
        header += [f"{name}_x", f"{name}_y", f"{name}_z", f"{name}_conf"]
    per_joint = np.concatenate([joints, confidence[..., None]], axis=-1).reshape(frames, tracks, -1)
    present = np.isfinite(joints).all(-1).any(-1)  # [F, T]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for frame, track in zip(*np.nonzero(present)):
            time = _num(frame / float(fps)) if fps is not None else ""
            writer.writerow([str(frame), time, str(int(ids[track]))] + [_num(v) for v in per_joint[frame, track]])
    return [path]


def _num(value: float) -> str:
    """Exact shortest text of a float; NaN as ``nan``."""
    return "nan" if math.isnan(value) else repr(float(value))


def _write_csv(path: Path, joints: np.ndarray, confidence: np.ndarray, names: list[str], fps: float | None) -> None:
    header = ["frame", "time"]
    for name in names:
        header += [f"{name}_x", f"{name}_y", f"{name}_z", f"{name}_conf"]
    per_joint = np.concatenate([joints, confidence[..., None]], axis=-1).reshape(joints.shape[0], -1)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for frame, row in enumerate(per_joint.tolist()):
            time = _num(frame / float(fps)) if fps is not None else ""
            writer.writerow([str(frame), time] + [_num(v) for v in row])


def _write_trc(path: Path, joints: np.ndarray, names: list[str], fps: float, y_up: bool) -> None:
    for name in names:
        if not name or set(name) & _TRC_BAD_NAME_CHARS:
            raise ExportError(
                f"joint name {name!r} is not a valid OpenSim marker name (no spaces, tabs, '/', '\\', '*', '+')"
            )
    frames, count = joints.shape[:2]
    coords = joints[..., [1, 2, 0]] if y_up else joints
    rate = repr(float(fps))
    lines = [
        f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        "\t".join([rate, rate, str(frames), str(count), "m", rate, "1", str(frames)]),
        "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t",
        "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, count + 1)),
    ]
    flat = coords.reshape(frames, -1).tolist()
    for frame, row in enumerate(flat):
        fields = [str(frame + 1), repr(frame / float(fps))]
        fields += ["" if math.isnan(v) else repr(v) for v in row]
        lines.append("\t".join(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_result(path: str | Path) -> dict[str, np.ndarray]:
    """Read a result ``.npz`` written by :func:`save_result` into a dict of arrays (``joint_names`` as str array)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"result file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError) as error:
        raise ExportError(f"{path}: cannot read .npz ({error})") from None
    for key in ("joints", "confidence", "joint_names"):
        if key not in data:
            raise ExportError(f"{path}: missing key '{key}'")
    return data


def load_trc(path: str | Path, trc_y_up: bool = True) -> tuple[np.ndarray, list[str], float]:
    """Read a TRC marker file.

    Args:
        path: the ``.trc`` file (ours, Pose2Sim's, or OpenSim's).
        trc_y_up: the file is in OpenSim's Y-up frame and is converted back to the Z-up world,
            world ``(X, Y, Z) = TRC (Z, X, Y)`` (the inverse of :func:`save_result`'s conversion).

    Returns:
        ``(joints [F, J, 3] in metres (mm and cm files are scaled), marker names [J], data rate in Hz)``; empty
        fields (missing markers) are NaN.

    Raises:
        FileNotFoundError: no such file.
        ExportError: not a TRC file, or an inconsistent header.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"TRC file not found: {path}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(lines) < 5 or not lines[0].startswith("PathFileType"):
        raise ExportError(f"{path}: not a TRC file (first line should start with 'PathFileType')")
    keys = [k for k in lines[1].split("\t") if k.strip()]
    values = lines[2].split("\t")
    header = {k.strip(): v.strip() for k, v in zip(keys, values)}
    try:
        rate = float(header["DataRate"])
        count = int(header["NumMarkers"])
        frames_expected = int(header["NumFrames"])
    except (KeyError, ValueError):
        raise ExportError(f"{path}: TRC header lacks a valid DataRate, NumMarkers or NumFrames") from None
    units = header.get("Units", "m").lower()
    scale = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}.get(units)
    if scale is None:
        raise ExportError(f"{path}: unknown TRC units {units!r} (expected m, mm or cm)")
    names = [n.strip() for n in lines[3].split("\t")[2:] if n.strip()]
    if len(names) != count:
        raise ExportError(f"{path}: NumMarkers is {count} but the header names {len(names)} markers")
    rows = []
    for number, line in enumerate(lines[5:], start=6):
        if not line.strip():
            continue
        fields = line.split("\t")[2 : 2 + 3 * count]
        fields += [""] * (3 * count - len(fields))
        try:
            rows.append([float(f) if f.strip() else np.nan for f in fields])
        except ValueError:
            raise ExportError(f"{path}: line {number} has a non-numeric coordinate") from None
    coords = np.array(rows, dtype=np.float64).reshape(len(rows), count, 3) * scale
    if len(rows) != frames_expected:
        raise ExportError(f"{path}: NumFrames is {frames_expected} but the file has {len(rows)} data rows")
    joints = coords[..., [2, 0, 1]] if trc_y_up else coords
    return joints, names, rate
