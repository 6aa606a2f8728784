"""Pictures of a multi-person result over its videos: each camera's frames with the fused skeletons reprojected,
coloured by track id, and a 3D view beside them, as an MP4 and as a contact-sheet PNG.

A frame of the output is the cameras side by side (each scaled to ``height`` pixels) and the 3D view (matplotlib,
the world's Z up, the same colours) on the right. The contact sheet holds ``sheet_frames`` frames spread over the
recording, one per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..geometry.camera import CameraRig
from ..skeleton.models import Skeleton, track_rgb
from .sources import FrameSource

__all__ = ["RenderConfig", "render_result"]


@dataclass(frozen=True)
class RenderConfig:
    """Size and content of the pictures: ``height`` px per camera tile, ``sheet_frames`` rows of the contact sheet,
    ``line`` px bone width at full resolution, ``fps`` of the MP4 (None: the videos' own)."""

    height: int = 480
    sheet_frames: int = 4
    line: int = 8
    fps: float | None = None


def _bgr(track_id: int) -> tuple[int, int, int]:
    r, g, b = track_rgb(track_id)
    return int(255 * b), int(255 * g), int(255 * r)


def _draw_camera(image: np.ndarray, uv: np.ndarray, bones: np.ndarray, track_ids: np.ndarray, line: int) -> None:
    """Skeletons ``uv [T, J, 2]`` (NaN = not drawn) onto the BGR ``image`` in place."""
    import cv2

    for track, points in zip(track_ids, uv):
        colour = _bgr(track)
        for a, b in bones:
            if np.isfinite(points[[a, b]]).all():
                cv2.line(image, tuple(np.round(points[a]).astype(int)), tuple(np.round(points[b]).astype(int)),
                         colour, line, cv2.LINE_AA)
        for point in points[np.isfinite(points).all(-1)]:
            cv2.circle(image, tuple(np.round(point).astype(int)), line, colour, -1, cv2.LINE_AA)


def _view_3d(joints: np.ndarray, bones: np.ndarray, track_ids: np.ndarray, limits: np.ndarray, size: int):
    """The people ``joints [T, J, 3]`` drawn in 3D: a ``[size, size, 3]`` BGR image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(4, 4), dpi=size / 4)
    axes = figure.add_subplot(projection="3d")
    for track, points in zip(track_ids, joints):
        if not np.isfinite(points).all(-1).any():  # the track is absent in this frame
            continue
        colour = track_rgb(track)
        for a, b in bones:
            if np.isfinite(points[[a, b]]).all():
                axes.plot(*points[[a, b]].T, color=colour, linewidth=2)
        axes.text(*np.nanmean(points, axis=0) + [0, 0, 0.4], str(track), color=colour)
    axes.set_xlim(*limits[:, 0])
    axes.set_ylim(*limits[:, 1])
    axes.set_zlim(*limits[:, 2])
    axes.set_box_aspect(np.ptp(limits, axis=0))
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    figure.tight_layout()
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    plt.close(figure)
    return np.ascontiguousarray(rgba[..., [2, 1, 0]])


def _tile(image: np.ndarray, height: int) -> np.ndarray:
    import cv2

    width = round(image.shape[1] * height / image.shape[0])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def render_result(
    joints: np.ndarray,
    track_ids: np.ndarray,
    skeleton: Skeleton,
    rig: CameraRig,
    sources: list[FrameSource],
    output: Path,
    config: RenderConfig = RenderConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, Path]:
    """Write ``output`` (MP4) and ``output`` with ``.png`` (contact sheet); returns both paths.

    Args:
        joints: ``[F, T, J, 3]`` fused people in metres (NaN where a track is absent), ``track_ids [T]``.
        rig: ``rig[v]`` is the camera of ``sources[v]``; the videos must have at least ``F`` frames.
    """
    import cv2

    num_frames = joints.shape[0]
    bones = skeleton.bone_array
    finite = joints[np.isfinite(joints).all(-1)]
    centre = finite.mean(axis=0) if len(finite) else np.zeros(3)
    reach = max(float(np.max(np.abs(finite - centre))) if len(finite) else 1.0, 0.5)
    limits = np.stack([centre - reach, centre + reach])
    fps = config.fps or next((s.fps for s in sources if s.fps), None) or 30.0
    sheet_rows = set(np.linspace(0, num_frames - 1, min(config.sheet_frames, num_frames)).round().astype(int))
    streams = [source.frames(0, num_frames) for source in sources]
    writer, sheet = None, []
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        for f in range(num_frames):
            tiles = []
            for v, stream in enumerate(streams):
                image = next(stream)[..., ::-1].copy()  # BGR for OpenCV's drawing and writing
                uv = rig[v].project(joints[f])  # [T, J, 2]
                _draw_camera(image, uv, bones, track_ids, config.line)
                tiles.append(_tile(image, config.height))
            tiles.append(_view_3d(joints[f], bones, track_ids, limits, config.height))
            frame = np.concatenate(tiles, axis=1)
            cv2.putText(frame, f"frame {f}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
            if writer is None:
                writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (frame.shape[1], frame.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"{output}: OpenCV cannot write an MP4 here")
            writer.write(frame)
            if f in sheet_rows:
                sheet.append(frame)
            if progress is not None:
                progress(f + 1, num_frames)
    finally:
        if writer is not None:
            writer.release()
    png = output.with_suffix(".png")
    cv2.imwrite(str(png), np.concatenate(sheet, axis=0))
    return output, png
