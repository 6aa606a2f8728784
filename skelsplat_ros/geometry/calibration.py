"""Camera calibration files: the Pose2Sim/Anipose TOML format, and Qualisys ``.qca.txt`` conversion.

TOML format (aniposelib ``CameraGroup.dump`` / Pose2Sim ``Calib*.toml``), one table per camera::

    [cam_01]
    name = "cam01"
    size = [1088, 1920]                                   # width, height in pixels
    matrix = [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
    distortions = [k1, k2, p1, p2]                        # or 5 values, k3 last, or 8 (k4..k6: rational model)
    rotation = [rx, ry, rz]                               # Rodrigues vector, world -> camera
    translation = [tx, ty, tz]                            # world -> camera, calibration units (metres)
    fisheye = false

    [metadata]                                            # skipped, as are capture_volume, charuco, checkerboard
    adjusted = false
    error = 0.0

Camera tables are ordered by a natural sort of their names (``cam_2`` before ``cam_10``; aniposelib sorts them as
plain strings, which puts ``cam_10`` first). The camera name is the ``name`` key, or the table name without one.
Fisheye cameras are not supported and are rejected.

Errors are :class:`CalibrationError` (a ``ValueError``) with a one-line message naming the file and the table, or
``FileNotFoundError`` for a missing file.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .camera import Camera, CameraRig, matrix_to_rodrigues, rodrigues_to_matrix
from .units import UNIT_SCALES, detect_units, scale_rig

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (ROS 2 Humble): the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "CalibrationError",
    "NON_CAMERA_SECTIONS",
    "load_calibration",
    "load_calibration_metres",
    "rig_in_metres",
    "CameraInfoIntrinsics",
    "intrinsics_from_camera_info",
    "camera_info_fields",
    "save_calibration",
    "load_qualisys_qca",
    "natural_sort_key",
]

NON_CAMERA_SECTIONS = frozenset({"metadata", "capture_volume", "charuco", "checkerboard"})
"""Top-level TOML tables that are not cameras (compared case-insensitively)."""


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and the offending table."""


def natural_sort_key(text: str) -> list[Any]:
    """Sort key that orders digit runs by value: ``cam_2`` < ``cam_10``."""
    return [
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.lower()) for chunk in re.split(r"(\d+)", text) if chunk
    ]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"calibration file not found: {path}")
    if not path.is_file():
        raise CalibrationError(f"{path}: is not a file")


def _array(value: Any, shape: tuple[int, ...] | None, what: str, where: str, sizes: tuple[int, ...] = ()) -> np.ndarray:
    """A finite float array from a TOML value, with a clear error on wrong shape or content."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}: '{what}' must be numbers, got {value!r}") from None
    if shape is not None and array.shape != shape:
        raise CalibrationError(f"{where}: '{what}' must have shape {list(shape)}, got {list(array.shape)}")
    if sizes and (array.ndim != 1 or array.size not in sizes):
        raise CalibrationError(
            f"{where}: '{what}' must be a list of {' or '.join(map(str, sizes))} numbers, got {list(array.shape)}"
        )
    if not np.all(np.isfinite(array)):
        raise CalibrationError(f"{where}: '{what}' has non-finite values")
    return array


def _camera_from_table(table: dict[str, Any], section: str, where: str, scale: float) -> Camera:
    for key in ("size", "matrix", "distortions", "rotation", "translation"):
        if key not in table:
            raise CalibrationError(f"{where}: missing key '{key}'")
    if bool(table.get("fisheye", False)):
        raise CalibrationError(
            f"{where}: fisheye cameras are not supported (fisheye = true); recalibrate with the pinhole (OpenCV) model"
        )
    name = str(table.get("name", section))
    size = _array(table["size"], (2,), "size", where)
    if np.any(size <= 0) or np.any(size != np.round(size)):
        raise CalibrationError(
            f"{where}: 'size' must be two positive whole numbers [width, height], got {table['size']!r}"
        )
    matrix = _array(table["matrix"], (3, 3), "matrix", where)
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise CalibrationError(
            f"{where}: 'matrix' must have positive focal lengths, got fx={matrix[0, 0]}, fy={matrix[1, 1]}"
        )
    dist = _array(table["distortions"], None, "distortions", where, sizes=(1, 2, 3, 4, 5, 8))
    raw_rotation = table["rotation"]
    if isinstance(raw_rotation, list) and raw_rotation and all(isinstance(row, list) for row in raw_rotation):
        # tolerate a full 3x3 matrix
        rotation = _array(table["rotation"], (3, 3), "rotation", where)
    else:
        rotation = rodrigues_to_matrix(_array(table["rotation"], (3,), "rotation", where))
    translation = _array(table["translation"], (3,), "translation", where) * scale
    try:
        return Camera(name=name, K=matrix, R=rotation, t=translation, size=(int(size[0]), int(size[1])), dist=dist)
    except ValueError as error:
        raise CalibrationError(f"{where}: {error}") from None


def load_calibration(path: str | Path, scale: float = 1.0) -> CameraRig:
    """Load a Pose2Sim/Anipose calibration TOML into a :class:`CameraRig`.

    Args:
        path: the ``.toml`` file.
        scale: factor applied to the translations (``0.001`` for a calibration in millimetres; Pose2Sim
            files are in metres).

    Returns:
        The rig, cameras in natural order of their table names; ``R``/``t`` world-to-camera.

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: unparsable TOML, no camera table, a missing key, a wrong shape, a fisheye camera,
            duplicate camera names.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise CalibrationError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not valid TOML (not UTF-8 text)") from None
    sections = [
        key for key, value in data.items() if isinstance(value, dict) and key.lower() not in NON_CAMERA_SECTIONS
    ]
    if not sections:
        raise CalibrationError(
            f"{path}: no camera table found (expected [cam_1], [cam_2], ... with name/size/matrix/...)"
        )
    sections.sort(key=natural_sort_key)
    cameras = [_camera_from_table(data[s], s, f"{path} [{s}]", scale) for s in sections]
    try:
        return CameraRig(cameras)
    except ValueError as error:
        raise CalibrationError(f"{path}: {error}") from None


def _toml_float(value: float) -> str:
    """Shortest exact text for a float (``repr`` round-trips bit for bit and is valid TOML)."""
    value = float(value)
    if not math.isfinite(value):
        raise CalibrationError(f"cannot write non-finite calibration value {value}")
    text = repr(value)
    return text if any(c in text for c in ".en") else text + ".0"


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def _toml_list(values: np.ndarray) -> str:
    return "[" + ", ".join(_toml_float(v) for v in np.asarray(values).reshape(-1)) + "]"


def save_calibration(rig: CameraRig, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``rig`` as a Pose2Sim/Anipose calibration TOML; :func:`load_calibration` reads it back exactly.

    Tables are named ``cam_01``, ``cam_02``, ... (zero-padded, so aniposelib's plain sort and our natural sort
    both keep the rig order) and carry the camera ``name``. Distortion is written with 5 values when ``k3`` is
    non-zero, else with the 4 Pose2Sim writes. Floats are written with ``repr`` (exact round trip).

    Args:
        rig: the cameras.
        path: output file (parent folders are created).
        metadata: optional extra key/values for the ``[metadata]`` table (strings, bools, ints, floats);
            ``adjusted = false`` and ``error = 0.0`` are written by default, as Pose2Sim does.
    """
    path = Path(path)
    width = max(2, len(str(len(rig))))
    lines: list[str] = []
    for index, camera in enumerate(rig, start=1):
        dist = camera.dist if camera.dist.size == 8 or camera.dist[4] != 0.0 else camera.dist[:4]
        lines += [
            f"[cam_{index:0{width}d}]",
            f"name = {_toml_string(camera.name)}",
            f"size = [{int(camera.size[0])}, {int(camera.size[1])}]",
            "matrix = [" + ", ".join(_toml_list(row) for row in camera.K) + "]",
            f"distortions = {_toml_list(dist)}",
            f"rotation = {_toml_list(matrix_to_rodrigues(camera.R))}",
            f"translation = {_toml_list(camera.t)}",
            "fisheye = false",
            "",
        ]
    meta: dict[str, Any] = {"adjusted": False, "error": 0.0}
    meta.update(metadata or {})
    lines.append("[metadata]")
    for key, value in meta.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(key)):
            raise CalibrationError(f"metadata key {key!r} must be letters, digits, '_' or '-'")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, np.integer)):
            text = str(int(value))
        elif isinstance(value, (float, np.floating)):
            text = _toml_float(value)
        else:
            text = _toml_string(str(value))
        lines.append(f"{key} = {text}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- units -------------------------------------------------------------------------------------------------------


def rig_in_metres(rig: CameraRig, units: str = "auto",
                  keypoints: np.ndarray | None = None) -> tuple[CameraRig, str, str]:
    """``rig`` as read from its file, converted to metres: ``units`` is ``m``, ``cm``, ``mm`` or ``auto``
    (:func:`~skelsplat_ros.geometry.units.detect_units`, with the evidence of ``keypoints [V, F, J, 3]`` in ``rig``
    order when given). Returns ``(rig in metres, the unit it was read in, the evidence in words or "as told")``.

    Raises:
        CalibrationError: an unknown unit. UnitsError (a ``ValueError``): ``auto`` and the evidence does not decide.
    """
    if units != "auto" and units not in UNIT_SCALES:
        raise CalibrationError(f"calibration units must be auto, {', '.join(UNIT_SCALES)}; got {units!r}")
    evidence = "as told"
    if units == "auto":
        decision = detect_units(rig, keypoints)
        units, evidence = decision.units, decision.evidence
    return (rig if units == "m" else scale_rig(rig, UNIT_SCALES[units])), units, evidence


def load_calibration_metres(path: str | Path, units: str = "auto") -> tuple[CameraRig, str]:
    """:func:`load_calibration` in metres (:func:`rig_in_metres` from the rig alone). Returns the rig in metres and
    the units the file was read in."""
    rig, units, _ = rig_in_metres(load_calibration(path), units)
    return rig, units


# --- sensor_msgs/CameraInfo ---------------------------------------------------------------------------------------

_CAMERA_INFO_MODELS = {"plumb_bob": (5,), "rational_polynomial": (8,)}


@dataclass(frozen=True)
class CameraInfoIntrinsics:
    """What a ``sensor_msgs/CameraInfo`` says about one camera (its pose comes from TF).

    Attributes:
        K: ``[3, 3]`` of the raw (distorted) image, binning applied.
        dist: ``[5]`` or ``[8]`` OpenCV distortion.
        size: ``(width, height)`` in pixels, binning applied.
        frame_id: the optical frame the info was published in.
    """

    K: np.ndarray
    dist: np.ndarray
    size: tuple[int, int]
    frame_id: str

    def camera(self, name: str, rotation: np.ndarray, translation: np.ndarray) -> Camera:
        """The calibrated camera with world-to-camera ``rotation [3, 3]`` and ``translation [3]``."""
        return Camera(name=name, K=self.K, R=rotation, t=translation, size=self.size, dist=self.dist)


def intrinsics_from_camera_info(info: Any, where: str = "camera_info") -> CameraInfoIntrinsics:
    """Intrinsics from a ``sensor_msgs/CameraInfo`` (any object with its fields: an rclpy or a rosbags message).

    ``K`` and ``D`` describe the raw image, which is what a detector fed with ``image_raw`` sees; keypoints are
    undistorted with them. ``plumb_bob`` (5 terms; fewer are zero-padded) and ``rational_polynomial`` (8) are
    supported; ``equidistant`` (fisheye) is refused, as for a TOML with ``fisheye = true``. Binning divides the
    image and ``K``; a region of interest is refused (its keypoints would be in ROI pixels).

    Raises:
        CalibrationError: uncalibrated (``K[0] == 0``), an unsupported model, a wrong ``d`` length, ROI.
    """
    k = np.asarray(info.k, dtype=np.float64).reshape(-1)
    if k.size != 9 or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
        raise CalibrationError(f"{where}: camera is not calibrated (K = {k.tolist()}; K[0] == 0 means uncalibrated)")
    model = str(info.distortion_model)
    d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    if model == "equidistant":
        raise CalibrationError(f"{where}: distortion model 'equidistant' (fisheye) is not supported; publish "
                               "rectified keypoints with a plumb_bob CameraInfo, or calibrate with the pinhole model")
    if model not in _CAMERA_INFO_MODELS and not (model == "" and not np.any(d)):
        raise CalibrationError(f"{where}: unknown distortion model {model!r} (supported: plumb_bob, "
                               "rational_polynomial)")
    if d.size > max(_CAMERA_INFO_MODELS.get(model, (0,))) or not np.all(np.isfinite(d)):
        raise CalibrationError(f"{where}: {model} distortion must be at most "
                               f"{max(_CAMERA_INFO_MODELS.get(model, (0,)))} finite terms, got {d.tolist()}")
    roi = getattr(info, "roi", None)
    if roi is not None and (int(roi.width) or int(roi.height) or int(roi.x_offset) or int(roi.y_offset)):
        raise CalibrationError(f"{where}: a region of interest is set ({roi.width}x{roi.height} at "
                               f"{roi.x_offset},{roi.y_offset}); publish keypoints of the full image")
    binning_x, binning_y = max(int(info.binning_x), 1), max(int(info.binning_y), 1)
    width, height = int(info.width) // binning_x, int(info.height) // binning_y
    if width <= 0 or height <= 0:
        raise CalibrationError(f"{where}: image size {info.width}x{info.height} is not positive")
    K = k.reshape(3, 3) / np.array([[binning_x], [binning_y], [1.0]])
    dist = d if model == "rational_polynomial" else np.concatenate([d, np.zeros(5 - d.size)])
    return CameraInfoIntrinsics(K=K, dist=dist, size=(width, height), frame_id=str(info.header.frame_id))


def camera_info_fields(camera: Camera) -> dict[str, Any]:
    """The ``sensor_msgs/CameraInfo`` fields of ``camera`` (monocular: ``R = I``, ``P = [K | 0]``)."""
    return {
        "width": int(camera.size[0]),
        "height": int(camera.size[1]),
        "distortion_model": "rational_polynomial" if camera.dist.size == 8 else "plumb_bob",
        "d": [float(v) for v in camera.dist],
        "k": [float(v) for v in camera.K.reshape(-1)],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [float(v) for v in np.hstack([camera.K, np.zeros((3, 1))]).reshape(-1)],
    }


# --- Qualisys ----------------------------------------------------------------------------------------------------

_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def _qca_float(element: ElementTree.Element, key: str, where: str, default: float | None = None) -> float:
    raw = element.get(key)
    if raw is None:
        if default is not None:
            return default
        raise CalibrationError(f"{where}: <{element.tag}> has no '{key}' attribute")
    try:
        return float(raw)
    except ValueError:
        raise CalibrationError(f"{where}: <{element.tag}> attribute '{key}' is not a number: {raw!r}") from None


def load_qualisys_qca(path: str | Path, binning_factor: int = 1) -> CameraRig:
    """Convert a Qualisys ``.qca.txt`` calibration (XML) into a :class:`CameraRig` in metres.

    Conversion (as Pose2Sim's ``calib_qca_fun``; Qualisys stores sensor coordinates in 1/64 subpixels):

    - cameras: ``<cameras><camera>`` whose ``model`` contains "video" or is "none" (marker-only cameras have no
      video to detect keypoints in), named by their ``serial`` and sorted naturally;
    - size: ``(right - left + 1, bottom - top + 1) / binning`` of ``<fov_video>``;
    - intrinsics: ``fx = focalLengthU / 64 / binning``, ``cx = (centerPointU / 64 - fov_video.left) / binning``,
      same for V/top (Pose2Sim subtracts ``left`` after binning; both agree when ``left = 0`` or ``binning = 1``);
    - distortion: ``k1, k2 = radialDistortion1,2 / 64 / binning``, ``p1, p2 = tangentalDistortion1,2 / 64 / binning``,
      ``k3 = radialDistortion3 / 64 / binning``, as Pose2Sim converts them (missing attributes count as 0);
    - extrinsics: ``r11..r33`` of ``<transform>`` read column-wise give the camera-to-world rotation ``Rw``, and
      ``x, y, z`` (mm) the camera centre ``c``; Qualisys cameras look along -z with y up, so world-to-camera is
      ``R = diag(1, -1, -1) Rw^T`` and ``t = diag(1, -1, -1) (-Rw^T c / 1000)``.

    Args:
        path: the ``.qca.txt`` file.
        binning_factor: 2 when the video was recorded with 2x2 pixel binning (e.g. 540p on a 1080p sensor).

    Raises:
        FileNotFoundError: no such file.
        CalibrationError: not XML, no video camera, a missing element or attribute.
    """
    path = Path(path)
    _check_file(path)
    if binning_factor <= 0:
        raise CalibrationError(f"{path}: binning_factor must be positive, got {binning_factor}")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise CalibrationError(f"{path}: not a Qualisys .qca.txt XML file ({error})") from None
    elements = root.findall("cameras/camera")
    if not elements:
        raise CalibrationError(f"{path}: no <cameras><camera> element (is this a Qualisys .qca.txt file?)")
    video = [e for e in elements if any(m in e.get("model", "none").lower() for m in ("video", "none"))]
    if not video:
        raise CalibrationError(
            f"{path}: none of the {len(elements)} cameras is a video camera (model 'video' or 'none')"
        )
    cameras = []
    for index, element in enumerate(video):
        name = element.get("serial") or f"cam_{index + 1:02d}"
        where = f"{path} camera {name!r}"
        fov = element.find("fov_video")
        intrinsic = element.find("intrinsic")
        transform = element.find("transform")
        for tag, found in (("fov_video", fov), ("intrinsic", intrinsic), ("transform", transform)):
            if found is None:
                raise CalibrationError(f"{where}: missing <{tag}> element")
        left, top = _qca_float(fov, "left", where), _qca_float(fov, "top", where)
        width = (_qca_float(fov, "right", where) - left + 1.0) / binning_factor
        height = (_qca_float(fov, "bottom", where) - top + 1.0) / binning_factor

        sub = {
            key: _qca_float(intrinsic, key, where) / 64.0
            for key in ("focalLengthU", "focalLengthV", "centerPointU", "centerPointV")
        }
        fx, fy = sub["focalLengthU"] / binning_factor, sub["focalLengthV"] / binning_factor
        cx, cy = (sub["centerPointU"] - left) / binning_factor, (sub["centerPointV"] - top) / binning_factor
        dist = np.array(
            [
                _qca_float(intrinsic, key, where, default=0.0) / 64.0 / binning_factor
                for key in (
                    "radialDistortion1",
                    "radialDistortion2",
                    "tangentalDistortion1",
                    "tangentalDistortion2",
                    "radialDistortion3",
                )
            ]
        )
        values = [_qca_float(transform, f"r{i}{j}", where) for i in (1, 2, 3) for j in (1, 2, 3)]
        cam_to_world = np.array(values).reshape(3, 3).T  # r11, r12, r13 fill the first column
        centre = np.array([_qca_float(transform, k, where) for k in ("x", "y", "z")]) / 1000.0
        rotation = _FLIP_YZ @ cam_to_world.T
        translation = _FLIP_YZ @ (-cam_to_world.T @ centre)
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        try:
            cameras.append(
                Camera(name=name, K=K, R=rotation, t=translation, size=(round(width), round(height)), dist=dist)
            )
        except ValueError as error:
            raise CalibrationError(f"{where}: {error}") from None
    cameras.sort(key=lambda c: natural_sort_key(c.name))
    try:
        return CameraRig(cameras)
    except ValueError as error:
        raise CalibrationError(f"{path}: {error}") from None
