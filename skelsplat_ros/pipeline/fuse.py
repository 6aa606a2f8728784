"""One recording's keypoint file to a fused result file: the work of ``skelsplat fuse`` and of each take of
``skelsplat batch``, which both call :func:`fuse_file` with the same :class:`FuseSettings`."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fusion import fuse_offline
from ..fusion.fixed_lag import fuse_live
from ..fusion.config import NOMINAL_RATE_HZ
from ..geometry.calibration import load_calibration, rig_in_metres
from ..geometry.camera import CameraRig
from ..io.export import check_result_path, save_people_result, save_result
from ..io.keypoints import KeypointSet, align_to_rig, load_keypoints, mask_outside_image
from ..skeleton.models import Skeleton, get_skeleton
from .settings import FuseSettings, Note, Progress, print_note, settings_from  # noqa: F401 - also this module's API

if TYPE_CHECKING:
    from ..fusion.config import FusionConfig


@dataclass(frozen=True)
class FuseReport:
    """What :func:`fuse_file` did.

    Attributes:
        frames, joints, views: the recording's size.
        people: tracks for several-people input; for one subject 1 when any joint was estimated, else 0.
        multi_person: whether the input had detection slots ``[V, F, S, J, 3]`` (tracked).
        people_per_frame: mean number of people with an estimated joint per frame.
        estimated: fraction of output joint-frames estimated (of present tracks' frames for several people).
        reprojection_median_px: median reprojection error of the estimated joints (px; NaN when none).
        seconds: wall time of the fusion (loading and writing excluded).
        outputs: the files written.
        plan: the refinement plan in a few words (``FusionConfig.describe``).
        calibration_units: the unit the calibration was read in (told or found; the output is metres).
    """

    frames: int
    joints: int
    views: int
    people: int
    multi_person: bool
    people_per_frame: float
    estimated: float
    reprojection_median_px: float
    seconds: float
    outputs: tuple[Path, ...]
    plan: str
    calibration_units: str = "m"


def in_metres(rig: CameraRig, units: str, keypoints: np.ndarray, note: Note = print_note) -> CameraRig:
    """``rig`` (as read from its file) in metres, its unit as told or told by ``keypoints`` (views in ``rig`` order,
    see :func:`~skelsplat_ros.geometry.calibration.rig_in_metres`); a note says when it was not metres (the output
    always is)."""
    return _in_metres(rig, units, keypoints, note)[0]


def _in_metres(rig: CameraRig, units: str, keypoints: np.ndarray, note: Note) -> tuple[CameraRig, str]:
    """:func:`in_metres`, and the unit the rig was read in."""
    rig, found, evidence = rig_in_metres(rig, units, keypoints)
    if found != "m":
        note(f"note: calibration read in {found} ({evidence}); converted to metres")
    return rig, found


def fuse_file(
    calibration: str | Path,
    keypoints: str | Path,
    output: str | Path,
    settings: FuseSettings = FuseSettings(),
    progress: Progress | None = None,
    note: Note = print_note,
) -> FuseReport:
    """Fuse an NPZ or OpenPose/Pose2Sim JSON keypoint input with its calibration and write ``output``
    (``.npz``, ``.trc`` or ``.csv``; several people: see :func:`~skelsplat_ros.io.export.save_people_result`).

    Raises:
        ValueError, KeyError, FileNotFoundError, RuntimeError, OSError: one-line messages naming what is wrong
            (unusable settings first, before any file is read).
    """
    config = settings.fusion_config()
    rig, skeleton, keypoint_set, units = load_recording(calibration, keypoints, settings, note)
    output = check_result_path(output, keypoint_set.fps)
    if keypoint_set.fps is None and settings.method == "skelsplat":
        note(f"note: no frame rate known: the temporal prior assumes {NOMINAL_RATE_HZ:g} fps (pass --fps)")
    fuse = _fuse_people if keypoint_set.multi_person else _fuse_subject
    report = fuse(rig, skeleton, keypoint_set, config, settings.mode, output, _in_frames(progress, keypoint_set),
                  settings.lag)
    return replace(report, calibration_units=units)


def load_skeleton_keypoints(path: str | Path, skeleton: str | None, fps: float | None,
                            people: str) -> tuple[KeypointSet, Skeleton]:
    """A keypoint file (NPZ or JSON folders) and the skeleton it holds: ``skeleton`` or, without one, the file's;
    ValueError when neither names one or the joint counts differ."""
    keypoint_set = load_keypoints(path, skeleton=skeleton, fps=fps, people=people)
    name = skeleton or keypoint_set.skeleton
    if not name:
        raise ValueError("no skeleton given: pass --skeleton NAME (the keypoints do not name one)")
    model = get_skeleton(name)
    if keypoint_set.num_joints != model.num_joints:
        raise ValueError(f"keypoints have {keypoint_set.num_joints} joints, skeleton {model.name!r} has "
                         f"{model.num_joints}")
    return keypoint_set, model


def load_recording(calibration: str | Path, keypoints: str | Path, settings: FuseSettings,
                   note: Note = print_note) -> tuple[CameraRig, Skeleton, KeypointSet, str]:
    """The rig (in metres, in the keypoints' camera order), the skeleton and the keypoints of one take, checked
    against each other, and the unit the calibration was read in; keypoints far outside their camera's image are
    made missing (with a note)."""
    rig = load_calibration(calibration)  # in the file's unit until the keypoints can tell it
    keypoint_set, skeleton = load_skeleton_keypoints(keypoints, settings.skeleton, settings.fps,
                                                     settings.people or "subject")
    if keypoint_set.num_frames == 0:
        raise ValueError(f"{keypoints}: the keypoints hold no frames: nothing to fuse")
    keypoint_set, rig = align_to_rig(keypoint_set, rig)
    rig, units = _in_metres(rig, settings.calibration_units, keypoint_set.keypoints, note)
    keypoint_set, masked = mask_outside_image(keypoint_set, rig)
    if masked:
        note(f"note: {masked} keypoints lay more than 25 % of the image size outside their camera's calibrated "
             "image and were treated as missing")
    return rig, skeleton, keypoint_set, units


def _in_frames(progress: Progress | None, keypoint_set: KeypointSet) -> Progress | None:
    """``progress`` in frames, whatever units the driver counts in (tracking offline counts two passes)."""
    if progress is None:
        return None
    frames = keypoint_set.num_frames
    return lambda done, total: progress(done * frames // max(total, 1), frames)


def _extra(keypoint_set: KeypointSet) -> dict[str, np.ndarray]:
    """Where each output frame was in the input (a JSON folder's file numbers; an .npz's frame_numbers)."""
    return {} if keypoint_set.frame_numbers is None else {"frame_numbers": keypoint_set.frame_numbers}


def _fuse_subject(rig: CameraRig, skeleton: Skeleton, keypoint_set: KeypointSet, config: FusionConfig, mode: str,
                  output: Path, progress: Progress | None, lag: float = 0.0) -> FuseReport:
    """One subject, ``[V, F, J, 3]``."""
    data, fps = keypoint_set.keypoints, keypoint_set.fps
    start = time.perf_counter()
    if mode == "offline":
        result = fuse_offline(rig, skeleton, data, config, progress=progress, fps=fps or NOMINAL_RATE_HZ)
    else:
        result = fuse_live(rig, skeleton, data, config, fps or NOMINAL_RATE_HZ, lag, progress=progress)
    seconds = time.perf_counter() - start
    save_result(output, result.joints, result.confidence, result.covariance, result.joint_names, fps,
                _extra(keypoint_set), num_views=result.num_views, reprojection_error=result.reprojection_error)
    estimated = np.isfinite(result.joints).all(-1)  # [F, J]
    median = float(np.nanmedian(result.reprojection_error)) if estimated.any() else float("nan")
    return FuseReport(keypoint_set.num_frames, skeleton.num_joints, len(rig), int(estimated.any()), False,
                      float(estimated.any(-1).mean()), float(estimated.mean()), median, seconds, (output,),
                      config.describe(mode))


def _fuse_people(rig: CameraRig, skeleton: Skeleton, keypoint_set: KeypointSet, config: FusionConfig, mode: str,
                 output: Path, progress: Progress | None, lag: float = 0.0) -> FuseReport:
    """Several people, ``[V, F, S, J, 3]``: tracked, then fused person by person."""
    # Only several people need the tracker (and scipy.optimize, half a second to import in every worker).
    from ..tracking.recording import track_offline, track_streaming

    data, fps = keypoint_set.keypoints, keypoint_set.fps
    start = time.perf_counter()
    if mode == "offline":
        people = track_offline(rig, skeleton, data, config, fps or NOMINAL_RATE_HZ, progress=progress)
    else:
        people = track_streaming(rig, skeleton, data, config, fps or NOMINAL_RATE_HZ, progress=progress, lag=lag)
    seconds = time.perf_counter() - start
    outputs = save_people_result(output, people.joints, people.confidence, people.covariance, people.track_ids,
                                 people.joint_names, fps, extra=_extra(keypoint_set))
    present = np.isfinite(people.joints).all(-1)  # [F, T, J]
    tracked = present.any(-1)  # [F, T]
    estimated = float(present[tracked].mean()) if tracked.any() else 0.0
    return FuseReport(keypoint_set.num_frames, skeleton.num_joints, len(rig), people.num_tracks, True,
                      float(tracked.sum(-1).mean()), estimated, people_reprojection_median(rig, data, people.joints),
                      seconds, tuple(outputs), config.describe(mode))


def people_reprojection_median(rig: CameraRig, keypoints: np.ndarray, joints: np.ndarray, chunk: int = 256) -> float:
    """Median reprojection error (px) of tracked people: each person's joints ``joints [F, T, J, 3]`` projected into
    each view and compared with that view's detection slot of ``keypoints [V, F, S, J, 3]`` nearest them on average
    (the slot the tracker matches). A person some view does not see is compared with its nearest other detection
    there: the median shrugs that off. NaN when nothing compares."""
    errors = []
    for first in range(0, joints.shape[0], chunk):
        frames = slice(first, first + chunk)
        projected = rig.project(joints[frames])  # [V, f, T, J, 2]
        seen = keypoints[:, frames, ..., 2:3] > 0
        detected = np.where(seen, keypoints[:, frames, ..., :2], np.nan)  # [V, f, S, J, 2]
        error = np.linalg.norm(projected[:, :, :, None] - detected[:, :, None], axis=-1)  # [V, f, T, S, J]
        compared = np.isfinite(error)
        total = np.where(compared, error, 0).sum(-1)
        mean = np.where(compared.any(-1), total / np.maximum(compared.sum(-1), 1), np.inf)  # [V, f, T, S]
        nearest = np.argmin(mean, axis=-1)  # [V, f, T]
        chosen = np.take_along_axis(error, nearest[..., None, None], axis=3)[:, :, :, 0]  # [V, f, T, J]
        errors.append(chosen[np.isfinite(chosen)])
    finite = np.concatenate(errors) if errors else np.empty(0)
    return float(np.median(finite)) if finite.size else float("nan")
