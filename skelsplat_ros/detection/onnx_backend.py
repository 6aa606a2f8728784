"""RTMO and RTMPose (OpenMMLab, the models Pose2Sim users run) on onnxruntime, with rtmlib's pre- and post-processing.

The model's kind is read from its outputs:

- **RTMO** (one stage, several people): input ``[1, 3, H, W]`` (640x640), outputs ``dets [1, N, 5]`` (box x1 y1 x2
  y2 and score, model pixels) and ``keypoints [1, N, 17, 3]`` (x, y, score). The image is letterboxed: scaled by
  ``r = min(H / h, W / w)`` into the top-left corner of a canvas filled with 114, raw 0-255 values in BGR order.
  Boxes and keypoints are divided by ``r``; overlapping boxes are suppressed (IoU > 0.45).
- **RTMPose** (top down, one person per box): input ``[1, 3, h, w]`` (256x192), outputs ``simcc_x [1, 17, 2w]``
  and ``simcc_y [1, 17, 2h]`` (SimCC, split ratio 2). People boxes come from a detector model (``det_model``: YOLOX
  with its NMS inside, input letterboxed as RTMO's, output ``dets [1, N, 5]``). Each box is enlarged 1.25 times,
  widened or heightened to the input's aspect ratio and warped to the input, normalised by the ImageNet mean
  ``(123.675, 116.28, 103.53)`` and std ``(58.395, 57.12, 57.375)``; a joint is the argmax of its two SimCC
  vectors, halved, mapped back through the box, scored by the lower of their maxima.

Models are local ``.onnx`` files, ``.zip`` archives holding one (OpenMMLab's ``onnx_sdk`` zips: ``end2end.onnx``), or
http(s)/file URLs downloaded once into the cache. Without ``model``: RTMO-m (body7, 640x640) from OpenMMLab.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from .base import DetectorConfig, DetectorError, cache_dir, finish_people

__all__ = ["DEFAULT_MODEL", "OnnxDetector", "resolve_model", "letterbox", "box_warp", "simcc_decode", "nms"]

DEFAULT_MODEL = ("https://download.openmmlab.com/mmpose/v1/projects/rtmo/onnx_sdk/"
                 "rtmo-m_16xb16-600e_body7-640x640-39e78cc4_20231211.zip")
PAD_VALUE = 114
BOX_PADDING = 1.25
SIMCC_SPLIT = 2.0
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53])
IMAGENET_STD = np.array([58.395, 57.12, 57.375])
NMS_IOU = 0.45


def _extract_onnx(archive: Path, folder: Path) -> Path:
    """The ``.onnx`` inside ``archive`` (``end2end.onnx`` when there are several), as ``folder/<zip stem>.onnx``."""
    target = folder / f"{archive.stem}.onnx"
    if target.is_file():
        return target
    with zipfile.ZipFile(archive) as zipped:
        members = [n for n in zipped.namelist() if n.endswith(".onnx")]
        if not members:
            raise DetectorError(f"{archive}: no .onnx file inside")
        member = next((n for n in members if n.endswith("end2end.onnx")), members[0])
        _write_atomically(target, zipped.read(member))
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(temporary, target)


def resolve_model(spec: str, folder: Path | None = None) -> Path:
    """A local ``.onnx`` path for ``spec`` (a path, a ``.zip`` or a URL), downloading and unpacking into ``folder``
    (default: the cache) once."""
    folder = Path(folder) if folder is not None else cache_dir() / "onnx"
    scheme = urllib.parse.urlparse(spec).scheme
    if scheme in ("http", "https", "file"):
        local = folder / Path(urllib.parse.urlparse(spec).path).name
        if not local.is_file() and not (local.suffix == ".zip" and (folder / f"{local.stem}.onnx").is_file()):
            try:
                with urllib.request.urlopen(spec, timeout=60) as response, tempfile.TemporaryFile() as buffer:
                    shutil.copyfileobj(response, buffer)
                    buffer.seek(0)
                    _write_atomically(local, buffer.read())
            except OSError as error:
                raise DetectorError(f"cannot download the model {spec}: {error} (give a local file with --model)") \
                    from None
        path = local
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DetectorError(f"model file not found: {spec}")
    if path.suffix == ".zip" or (path.is_file() and zipfile.is_zipfile(path)):
        return _extract_onnx(path, folder)
    return path


def letterbox(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float]:
    """``image [h, w, 3]`` scaled by ``r = min(height / h, width / w)`` into the top-left corner of a
    ``[height, width, 3]`` canvas of 114: ``(canvas, r)``; a model point ``p`` is the image point ``p / r``."""
    import cv2

    ratio = min(height / image.shape[0], width / image.shape[1])
    size = (int(image.shape[1] * ratio), int(image.shape[0] * ratio))
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[: size[1], : size[0]] = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return canvas, ratio


def box_warp(box: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The crop of a top-down model: box ``[x1, y1, x2, y2]`` (px) -> ``(centre [2], size [2])`` of the region that
    fills the ``width x height`` input: the box enlarged 1.25 times, then widened or heightened to the input's
    aspect ratio around its centre."""
    centre = np.array([box[0] + box[2], box[1] + box[3]]) * 0.5
    size = np.array([box[2] - box[0], box[3] - box[1]]) * BOX_PADDING
    aspect = width / height
    if size[0] > size[1] * aspect:
        size = np.array([size[0], size[0] / aspect])
    else:
        size = np.array([size[1] * aspect, size[1]])
    return centre, size


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> np.ndarray:
    """SimCC vectors ``[K, Wx]``, ``[K, Wy]`` -> joints ``[K, 3]`` in input pixels (argmax / 2) with the lower
    of the two maxima as score; a non-positive score marks the joint missing (NaN)."""
    x = np.argmax(simcc_x, axis=1) / SIMCC_SPLIT
    y = np.argmax(simcc_y, axis=1) / SIMCC_SPLIT
    score = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    joints = np.stack([x, y, score], axis=-1).astype(np.float64)
    joints[score <= 0, :2] = np.nan
    return joints


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices of ``boxes [N, 4]`` kept by greedy non-maximum suppression, highest ``scores [N]`` first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    kept: list[int] = []
    for index in order:
        if kept:
            low = np.maximum(boxes[kept, :2], boxes[index, :2])
            high = np.minimum(boxes[kept, 2:], boxes[index, 2:])
            overlap = np.prod(np.clip(high - low, 0, None), axis=1)
            if np.any(overlap / np.maximum(areas[kept] + areas[index] - overlap, 1e-9) > iou):
                continue
        kept.append(int(index))
    return np.array(kept, dtype=np.int64)


class _Model:
    """One onnxruntime session with its input size ``(height, width)``."""

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise DetectorError(f"the onnx backend needs the detect extra (pip install '.[detect]'): {error}") \
                from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            raise DetectorError(f"cannot load the ONNX model {path}: {error}") from None
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4 or not all(isinstance(v, int) for v in shape[2:]):
            raise DetectorError(f"{path}: expected one image input [1, 3, H, W] with a fixed size, got {shape}")
        self.path = path
        self.size = (int(shape[2]), int(shape[3]))
        self.outputs = [(o.name, o.shape) for o in self.session.get_outputs()]

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        """Outputs for one ``[H, W, 3]`` image (float values as the model expects them)."""
        tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
        return self.session.run(None, {self.session.get_inputs()[0].name: tensor})


class OnnxDetector:
    """One camera's RTMO or RTMPose detector (see the module docstring); output ``coco17``."""

    skeleton = "coco17"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.pose = _Model(resolve_model(config.model or DEFAULT_MODEL), config.threads)
        ranks = [len(shape) for _, shape in self.pose.outputs]
        if ranks == [3, 4]:
            self.kind, self.people_model = "rtmo", None
        elif ranks == [3, 3]:
            self.kind = "rtmpose"
            if not config.det_model:
                raise DetectorError(f"{self.pose.path} is a top-down (RTMPose) model: give the person detector "
                                    "(det_model / --det-model, a YOLOX .onnx)")
            self.people_model = _Model(resolve_model(config.det_model), config.threads)
        else:
            raise DetectorError(f"{self.pose.path}: outputs {self.pose.outputs} are neither RTMO's (dets [1, N, 5], "
                                "keypoints [1, N, K, 3]) nor RTMPose's (simcc_x [1, K, Wx], simcc_y [1, K, Wy])")

    def _boxes(self, model: _Model, bgr: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], float]:
        """Letterboxed inference: ``(dets [N, 5] in image px, all outputs, ratio)``, boxes under min_person_score
        and overlapping boxes left out."""
        canvas, ratio = letterbox(bgr, *model.size)
        outputs = model.run(canvas)
        dets = np.asarray(outputs[0], dtype=np.float64).reshape(-1, 5)
        dets[:, :4] /= ratio
        return dets, outputs, ratio

    def detect(self, image: np.ndarray, stamp_ns: int) -> np.ndarray:
        """People ``[S, 17, 3]`` in ``image [H, W, 3]`` (uint8 RGB); ``stamp_ns`` is not used."""
        bgr = np.ascontiguousarray(image[..., ::-1])  # rtmlib feeds OpenCV's BGR images to these models
        if self.kind == "rtmo":
            dets, outputs, ratio = self._boxes(self.pose, bgr)
            keypoints = np.asarray(outputs[1], dtype=np.float64)[0].copy()  # [N, K, 3]
            keypoints[..., :2] /= ratio
            keep = nms(dets[:, :4], dets[:, 4])
            return finish_people(keypoints[keep], dets[keep, 4], self.config)
        dets, _, _ = self._boxes(self.people_model, bgr)
        dets = dets[dets[:, 4] >= self.config.min_person_score]
        dets = dets[nms(dets[:, :4], dets[:, 4])][: self.config.max_people + 1]
        people = [self._top_down(bgr, box) for box in dets[:, :4]]
        if not people:
            return np.empty((0, 17, 3))
        return finish_people(np.stack(people), dets[:, 4], self.config)

    def _top_down(self, bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """One person's joints ``[K, 3]`` (image px) from the pose model on the crop of ``box``."""
        import cv2

        height, width = self.pose.size
        centre, size = box_warp(box, width, height)
        scale = width / size[0]  # the same on both axes: the crop has the input's aspect ratio
        warp = np.array([[scale, 0.0, width / 2 - scale * centre[0]], [0.0, scale, height / 2 - scale * centre[1]]])
        crop = cv2.warpAffine(bgr, warp, (width, height), flags=cv2.INTER_LINEAR)
        simcc_x, simcc_y = self.pose.run((crop - IMAGENET_MEAN) / IMAGENET_STD)
        joints = simcc_decode(simcc_x[0], simcc_y[0])
        joints[:, :2] = (joints[:, :2] - [width / 2, height / 2]) / scale + centre
        return joints

    def close(self) -> None:
        self.pose = self.people_model = None
