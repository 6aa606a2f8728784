"""Frames of one camera from a video file or an image folder, as RGB arrays ``[H, W, 3]`` uint8.

A source knows its camera name (the file or folder stem: ``cam01.mp4`` -> ``cam01``), its frame count and its frame
rate (a video's own; an image folder has none unless given). :func:`aligned_span` checks that several sources can be
detected frame by frame together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .images import bgr_to_rgb

__all__ = ["SourceError", "FrameSource", "open_source", "aligned_span", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class SourceError(ValueError):
    """A video or image folder that cannot be read, or sources that do not line up; one line for the user."""


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass
class FrameSource:
    """One camera's frames: a video file or a folder of images (sorted naturally: ``img2`` before ``img10``).

    Attributes:
        path: the video file or the image folder.
        name: the camera name.
        num_frames: frames in the source.
        fps: frame rate in Hz, or None when unknown (an image folder).
    """

    path: Path
    name: str
    num_frames: int
    fps: float | None
    _images: list[Path] | None = None

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """The frames ``start, start + 1, ...`` (``count`` of them, or to the end) as RGB ``[H, W, 3]`` uint8."""
        import cv2

        stop = self.num_frames if count is None else min(self.num_frames, start + count)
        if self._images is not None:
            for file in self._images[start:stop]:
                image = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if image is None:
                    raise SourceError(f"{file}: not an image OpenCV can read")
                yield bgr_to_rgb(image)
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            # Decoding from the start is exact where seeking in a compressed stream may land on a nearby key frame.
            for _ in range(start):
                if not capture.grab():
                    raise SourceError(f"{self.path}: ends before frame {start}")
            for index in range(start, stop):
                ok, image = capture.read()
                if not ok:
                    raise SourceError(f"{self.path}: ends at frame {index} of {self.num_frames}")
                yield bgr_to_rgb(image)
        finally:
            capture.release()


def open_source(path: str | Path, name: str | None = None, fps: float | None = None) -> FrameSource:
    """A video file or an image folder as a :class:`FrameSource` (``fps`` overrides a video's own rate)."""
    import cv2

    path = Path(path)
    name = name or path.stem
    if path.is_dir():
        images = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                        key=lambda p: _natural_key(p.name))
        if not images:
            raise SourceError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return FrameSource(path, name, len(images), fps, images)
    if not path.is_file():
        raise FileNotFoundError(f"no such video or image folder: {path}")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise SourceError(f"{path}: not a video OpenCV can read")
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        rate = float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    if frames <= 0:
        raise SourceError(f"{path}: no frames")
    return FrameSource(path, name, frames, fps or (rate if rate > 0 else None))


def aligned_span(sources: list[FrameSource], offsets: list[int] | None = None) -> tuple[list[int], int]:
    """Where each source starts and how many frames they share: ``(starts [V], count)``.

    Without ``offsets`` every source must have the same frame count and rate. ``offsets[v]`` (frames, >= 0) is the
    frame of source ``v`` that shows the first common instant; the sources then share the frames that all of them
    have from there. Frame rates must agree either way (frame ``k`` of every source is one instant).

    Raises:
        SourceError: unequal rates, unequal lengths without offsets, a wrong number of offsets, or no common frame.
    """
    rates = {s.name: s.fps for s in sources}
    known = {round(r, 3) for r in rates.values() if r is not None}
    if len(known) > 1:
        raise SourceError(
            "the sources have different frame rates (" + ", ".join(f"{n} {r:g} fps" for n, r in rates.items() if r)
            + "): frame k would not be one instant in all of them; resample them to one rate first")
    if offsets is None:
        lengths = {s.name: s.num_frames for s in sources}
        if len(set(lengths.values())) > 1:
            raise SourceError(
                "the sources have different lengths (" + ", ".join(f"{n} {k} frames" for n, k in lengths.items())
                + "): give --offsets (the frame of each that shows the same first instant) to align them")
        return [0] * len(sources), sources[0].num_frames
    if len(offsets) != len(sources):
        raise SourceError(f"{len(offsets)} offsets for {len(sources)} sources")
    if any(offset < 0 for offset in offsets):
        raise SourceError(f"offsets are frame numbers, >= 0: {offsets}")
    count = min(s.num_frames - offset for s, offset in zip(sources, offsets))
    if count <= 0:
        raise SourceError(f"no frame common to all sources with offsets {offsets}")
    return list(offsets), count
