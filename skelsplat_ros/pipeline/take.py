"""The work of one take, wherever it runs (this process, a local worker process or a Ray worker): the same steps as
the single commands (detect, fuse, render), in a scratch folder, with the output files handed back as bytes so that
only the machine running ``skelsplat batch`` writes the output folder.

The process running ``skelsplat batch`` imports this module for the settings and results but never runs a take: the
steps' modules (the fusion, scipy) load in :func:`run_take`, on the workers, or in advance through :func:`preload` (the
local workers' fork server: ``_preload.py``; a Ray job's workers: ``ray_backend.warm_up``)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..detection import DetectorConfig
from .settings import FuseSettings, Progress
from .study import Take

if TYPE_CHECKING:
    from .render import RenderSettings

FUSED = "fused.npz"
DETECTED = "keypoints.npz"
"""A video take's detections (what ``skelsplat detect`` writes), kept beside its fused result."""
RENDERED = "render.mp4"
"""The render step's video (what ``skelsplat render`` writes); its contact sheet is ``render.png`` beside it."""
PROGRESS_PERIOD_S = 0.25
"""Shortest interval between two progress reports of a take (each is a message to the runner)."""


@dataclass(frozen=True)
class StudySettings:
    """What every take of a study goes through.

    Attributes:
        fuse: the ``skelsplat fuse`` options.
        detect: the ``skelsplat detect`` options, for takes of videos.
        render: the ``skelsplat render`` options, or None: no render step. Its calibration unit, when ``auto``, is
            the one the fuse step read the calibration in.
    """

    fuse: FuseSettings = FuseSettings()
    detect: DetectorConfig = DetectorConfig()
    render: RenderSettings | None = None


@dataclass
class TakeResult:
    """What a take gave.

    Attributes:
        name: the take's name.
        status: ``done``, ``skipped`` (outputs up to date) or ``failed``.
        reason: why it failed (one line), or a remark; empty when there is nothing to say.
        frames, people: the recording's frames; people fused (tracks, or 1 for one subject).
        reprojection_median_px: median reprojection error of the fused joints (px).
        seconds: wall time of the take's work on its worker (loading, fusing, writing).
        files: output file name -> contents, to be written into the take's output folder.
        notes: the lines the steps had for the user.
        transient: a failure that another run may not repeat (the worker died), unlike an error of the take's
            inputs or settings, which is remembered until they change.
    """

    name: str
    status: str
    reason: str = ""
    frames: int | None = None
    people: int | None = None
    reprojection_median_px: float | None = None
    seconds: float | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    transient: bool = False

    @classmethod
    def failed(cls, name: str, reason: str, seconds: float | None = None, transient: bool = False) -> "TakeResult":
        return cls(name, "failed", " ".join(reason.split()), seconds=seconds, transient=transient)


TakeTask = Callable[[Take, StudySettings, Progress], TakeResult]
"""The signature of :func:`run_take` (the runner takes another for tests)."""


def run_take(take: Take, settings: StudySettings, progress: Progress) -> TakeResult:
    """One take through the single commands' steps in a scratch folder: ``skelsplat detect`` for a take without
    keypoints, ``skelsplat fuse``, then ``skelsplat render`` over the take's videos when ``settings.render`` asks
    for it; returns the files they wrote. A failed render step fails the take but keeps the files made before it
    (detections cost far more than a render)."""
    if take.problem:
        return TakeResult.failed(take.name, take.problem)
    from .fuse import fuse_file

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"skelsplat_{take.name}_") as scratch:
        files: dict[str, Path] = {}
        keypoints = take.keypoints
        if keypoints is None:
            keypoints = Path(scratch) / DETECTED
            notes.append(detect_videos(take.videos, settings.detect, keypoints))
            files[DETECTED] = keypoints
        output = Path(scratch) / FUSED
        report = fuse_file(take.calibration, keypoints, output, settings.fuse, progress=progress, note=notes.append)
        files[FUSED] = output
        result = TakeResult(take.name, "done", frames=report.frames, people=report.people,
                            reprojection_median_px=report.reprojection_median_px, notes=notes)
        if settings.render is not None:
            _render_step(take, settings.render, report.calibration_units, output, Path(scratch), files, result)
        result.files = {name: path.read_bytes() for name, path in files.items()}
    return result


def _render_step(take: Take, settings: RenderSettings, units: str, fused: Path, scratch: Path,
                 files: dict[str, Path], result: TakeResult) -> None:
    """``skelsplat render`` of the fused result over the take's videos into ``files``; a take without videos, or a
    render that fails, is said in ``result``."""
    from .render import render_file

    if not take.videos:
        result.reason = "not rendered: the take has no videos"
        return
    if settings.calibration_units == "auto":  # draw with the rig the result was fused in
        settings = replace(settings, calibration_units=units)
    try:
        report = render_file(fused, take.videos, take.calibration, scratch / RENDERED, settings,
                             note=result.notes.append)
    except Exception as error:  # noqa: BLE001 - reported as the take's failure, its other outputs kept
        result.status, result.reason = "failed", f"render: {error_reason(error)} ({', '.join(files)} kept)"
        return
    files.update((path.name, path) for path in report.outputs)


def detect_videos(videos: tuple[Path, ...], config: DetectorConfig, output: Path) -> str:
    """The detect step: one video per camera (the camera is the file stem) to the keypoints ``.npz`` that ``fuse``
    reads, as ``skelsplat detect VIDEOS --output OUTPUT`` writes it; returns the detection's summary line."""
    from ..detection.recording import detect_recording
    from ..detection.sources import open_source
    from ..io.keypoints import save_keypoints_npz

    keypoints, report = detect_recording([open_source(video) for video in videos], config)
    save_keypoints_npz(keypoints, output)
    return f"detected {report.num_frames} frames x {len(report.cameras)} cameras: {report.summary()}"


def preload() -> None:
    """Load what every take needs, so that a worker's first take does not: numpy, scipy.linalg (the offline
    smoothing's solver), this package's take modules, and the compiled kernels (one call of the image terms on one
    view, frame and joint, which loads the extension module, or where it was not built says once that the numpy
    reference runs; the robust triangulation's module).
    No numba: a take of one person in the default modes calls none of its kernels (``test/pipeline/test_batch.py``
    checks)."""
    import numpy as np
    import scipy.linalg  # noqa: F401 - the offline smoothing's solver

    from ..fusion import gauss_newton  # noqa: F401 - the refinement (imported at the first fit)
    from ..fusion.image_terms import image_terms
    from ..geometry.triangulation import _compiled_kernel as triangulation_kernel
    from .fuse import fuse_file  # noqa: F401 - the take's modules: fusion, io (imported by run_take)

    triangulation_kernel()
    image_terms(np.eye(3)[None], np.eye(3)[None], np.array([[0.0, 0.0, 2.0]]), np.zeros((1, 1, 3)),
                np.zeros((1, 1, 1, 2)), np.ones((1, 1, 1)), np.ones((1, 1, 1)), 0.01)


def execute(task: TakeTask, take: Take, settings: StudySettings, report: Callable[[str, int, int], None]) -> TakeResult:
    """``task`` on ``take`` with its progress throttled into ``report(name, frames_done, frames)``; an exception
    becomes a failed result with its one-line reason (a crash of the whole process is the backend's to handle)."""
    start = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if done >= total or now - last[0] >= PROGRESS_PERIOD_S:
            last[0] = now
            report(take.name, done, total)

    try:
        result = task(take, settings, progress)
    except Exception as error:  # noqa: BLE001 - any error of one take is reported and the others go on
        return TakeResult.failed(take.name, error_reason(error), time.perf_counter() - start)
    result.seconds = time.perf_counter() - start
    return result


def error_reason(error: Exception) -> str:
    """An exception as one line: its type and message."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    return " ".join(f"{type(error).__name__}: {message}".split())
