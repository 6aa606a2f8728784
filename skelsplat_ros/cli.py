"""``skelsplat``: the command line. ``fuse`` runs the fusion core on recorded data, ``batch`` on a study of many,
``calibrate`` refines a calibration from people; ``bench`` and ``demo`` below."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline.settings import FuseSettings

FUSE_EPILOG = """\
keypoints (KP):
  an .npz with keypoints [V, F, J, 3] (x px, y px, confidence in [0, 1]; NaN or confidence 0 = missing),
  cameras [V] (names matching the calibration), optional fps and skeleton; or a folder holding one
  <camera>_json/ folder per camera (OpenPose/Pose2Sim JSON, one file per frame). Each camera's subject is
  followed from file to file: first the person with the highest mean keypoint confidence, then the person
  nearest it; a file where nobody is near the subject leaves that view missing for that frame (no bystander
  stands in), and after several such files in a row the most confident person becomes the subject.
  Several people: an .npz whose keypoints are [V, F, S, J, 3] (S detection slots per view-frame, any order,
  NaN-padded), or a JSON folder with --people all, is tracked and fused person by person.
  Camera names are matched to the calibration exactly, else ignoring case, separators and leading zeros.
  Or a ROS 2 bag (folder with metadata.yaml, MCAP or sqlite3, or a bare .mcap): Keypoints2DArray messages on
  /<camera>/keypoints (--topics to choose), grouped by stamp as the node does and placed on the recording's
  timeline (a frame the synchronizer could not fill is a missing frame); several people per message are tracked
  as from a 5-D .npz; cameras from --calibration, or else from /<camera>/camera_info + /tf + /tf_static in the
  bag, each view posed at its own stamp (moving cameras: --mode streaming). --skeleton is required.

output (OUT): .npz (joints [F, J, 3] in metres, confidence [F, J], covariance [F, J, 3, 3] = position
  uncertainty in m^2 (large along directions no view constrains), joint_names [J], num_views,
  reprojection_error), .trc (OpenSim/Pose2Sim, Y-up) or .csv.
  Joints nobody can estimate are NaN with confidence 0. Coordinates are metres: a calibration in centimetres or
  millimetres is detected from the people's size or the cameras' field (or give --calibration-units) and
  converted; when neither decides, fuse stops and asks for --calibration-units. With bag input, .mcap writes a
  rosbag2 bag (RUN.mcap -> folder RUN/) with /skeletons, /tf and /skeleton_markers stamped like the input; .npz
  then holds timestamps_ns.
  Several people: .npz joints [F, T, J, 3], confidence [F, T, J], covariance [F, T, J, 3, 3], track_ids [T],
  joint_names (NaN/0 where a track is absent); .trc one file per track, OUT_<id>.trc; .csv a track column.

refinement (skelsplat): --optimizer, --backend and --device are independent choices; auto keeps the
  preset's (default preset: Gauss-Newton, offline between robust smoothings of the trajectories;
  paper preset: Adam through raster). Gauss-Newton evaluates
  the analytic objective in closed form (no renderer) on the CPU; the renderer and the device
  apply to the Adam stages. A combination that cannot run (gauss_newton with raster or gsplat, gsplat on
  the CPU, cuda without CUDA, a choice no stage of the mode uses) is an error before any work starts.
"""


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _fuse(args: argparse.Namespace) -> int:
    from .io.recording import is_bag
    from .pipeline.fuse import FuseSettings, fuse_file

    settings = FuseSettings.from_namespace(args)
    if is_bag(args.keypoints):
        return _fuse_recording(args, settings)
    if not args.calibration:
        raise CliError("--calibration is required for NPZ/JSON keypoints (a ROS bag may carry camera_info + TF)")
    if args.output.endswith(".mcap"):
        raise CliError("--output .mcap needs a ROS bag as --keypoints (its stamps); use .npz, .trc or .csv")
    progress = _lazy_progress_bar(enabled=not args.quiet)
    try:
        report = fuse_file(args.calibration, args.keypoints, args.output, settings, progress=progress)
    finally:
        progress(close=True)
    rate = f"in {report.seconds:.2f} s ({report.frames / max(report.seconds, 1e-9):.0f} frames/s)"
    written = ", ".join(str(p) for p in report.outputs)
    if report.multi_person:
        print(f"tracked {report.people} people over {report.frames} frames from {report.views} views ({args.mode}) "
              f"{rate}; {report.people_per_frame:.2f} people per frame on average, median reprojection error "
              f"{report.reprojection_median_px:.2f} px -> {written}")
    else:
        print(f"fused {report.frames} frames x {report.joints} joints from {report.views} views ({args.method}, "
              f"{args.mode}, preset {args.preset}: {report.plan}) {rate}; {100 * report.estimated:.1f}% joints "
              f"estimated, median reprojection error {report.reprojection_median_px:.2f} px -> {written}")
    return 0


def _fuse_people(args, rig, skeleton, data, config, fps, output, recording) -> int:
    """``skelsplat fuse`` of several people from a bag: ``data [V, F, S, J, 3]`` on the ``recording``'s timeline,
    with its stamps and per-frame rigs (NPZ and JSON input: :func:`~skelsplat_ros.pipeline.fuse.fuse_file`)."""
    import numpy as np

    from .io.export import save_people_result
    from .io.timeline import spread_result
    from .tracking.recording import track_offline, track_streaming

    num_frames = data.shape[1]
    fps = fps or 30.0
    progress = _progress_bar(num_frames, enabled=not args.quiet)
    start = time.perf_counter()
    stamps = (recording.stamps_ns - recording.stamps_ns[0]) * 1e-9
    if args.mode == "offline":
        result = track_offline(rig, skeleton, data, config, fps, progress=progress, stamps=stamps)
    else:
        there, there_stamps, rigs = recording.filled()
        result = spread_result(track_streaming(rig, skeleton, data[:, there], config, fps, progress=progress,
                                               stamps=there_stamps, rigs=rigs, lag=args.lag), recording.timeline)
    elapsed = time.perf_counter() - start
    progress(num_frames, num_frames, close=True)
    written = save_people_result(
        output, result.joints, result.confidence, result.covariance, result.track_ids, result.joint_names, fps,
        extra=_recording_extra(recording),
    )
    present = np.isfinite(result.joints).all(-1).any(-1)
    print(
        f"tracked {result.num_tracks} people over {num_frames} frames from {len(rig)} views ({args.mode}) in "
        f"{elapsed:.2f} s ({num_frames / max(elapsed, 1e-9):.0f} frames/s); {present.sum(axis=1).mean():.2f} "
        f"people per frame on average{_recording_note(args, recording)} -> {', '.join(str(p) for p in written)}"
    )
    return 0


def _recording_extra(recording) -> dict:
    """What a bag's output .npz holds besides the joints: each frame's stamp and the cameras."""
    import numpy as np

    return {"timestamps_ns": recording.stamps_ns, "camera_names": np.array(recording.cameras)}


def _recording_note(args, recording) -> str:
    """The summary's words on a bag: where its cameras came from and what was left out."""
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(recording.counts.items())) or "nothing"
    return (f"; {'moving' if recording.moving else 'static'} cameras from "
            f"{'--calibration' if args.calibration else 'camera_info + TF'}; dropped/left out: {dropped}")


def _fuse_recording(args: argparse.Namespace, settings: "FuseSettings") -> int:
    """``fuse`` of a rosbag2 recording: synchronized as the node does, cameras from --calibration or the bag."""
    from dataclasses import replace

    import numpy as np

    from .fusion import fuse_offline
    from .fusion.fixed_lag import fuse_live
    from .geometry.calibration import load_calibration
    from .io.export import check_result_path, save_result
    from .io.timeline import spread_result
    from .pipeline.fuse import in_metres
    from .ros.bag import SyncSettings, read_bag_frames, write_result_bag
    from .skeleton.models import get_skeleton

    config = settings.fusion_config()  # an impossible choice fails before the bag is read
    if not args.skeleton:
        raise CliError("a bag needs --skeleton NAME (the skeleton of its keypoint messages)")
    skeleton = get_skeleton(args.skeleton)
    rig = load_calibration(args.calibration) if args.calibration else None  # in the file's unit, as yet
    topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
    frames = read_bag_frames(args.keypoints, skeleton.name, skeleton.num_joints, topics=topics, rig=rig,
                             world_frame=args.world_frame, sync=SyncSettings(slop=args.sync_slop),
                             people=args.people or "auto")
    if rig is not None:  # one rig for every frame: the calibration of the bag's cameras
        frames = replace(frames, rigs=[in_metres(frames.rigs[0], args.calibration_units, frames.keypoints)]
                         * len(frames.rigs))
    writes_bag = args.output.endswith(".mcap")
    if args.mode == "offline" and frames.moving:
        raise CliError("the cameras move in this recording (TF): use --mode streaming, which poses each frame")
    if frames.multi_person:
        if writes_bag:
            raise CliError("several people per message: write .npz, .trc or .csv (an .mcap output holds one person;"
                           " --people subject fuses the most confident person of each message)")
        output = check_result_path(args.output, frames.fps)
        return _fuse_people(args, frames.rigs[0], skeleton, frames.keypoints, config, frames.fps, output, frames)
    if not writes_bag:
        check_result_path(args.output, frames.fps)
    start = time.perf_counter()
    if args.mode == "offline":  # the whole timeline: a frame the synchronizer could not fill is a missing frame
        result = fuse_offline(frames.rigs[0], skeleton, frames.keypoints, config, fps=frames.fps)
    else:
        there, stamps, rigs = frames.filled()
        result = spread_result(fuse_live(frames.rigs[0], skeleton, frames.keypoints[:, there], config, frames.fps,
                                         args.lag, stamps=stamps, rigs=rigs), frames.timeline)
    elapsed = time.perf_counter() - start
    if writes_bag:
        output = write_result_bag(args.output, frames.stamps_ns, skeleton.name, list(result.joint_names),
                                  result.joints, result.confidence, result.covariance, result.num_views,
                                  result.reprojection_error, skeleton.bone_array, world_frame=args.world_frame)
    else:
        output = save_result(args.output, result.joints, result.confidence, result.covariance, result.joint_names,
                             frames.fps, extra=_recording_extra(frames),
                             num_views=result.num_views, reprojection_error=result.reprojection_error)
    estimated = np.isfinite(result.joints).all(-1)
    print(f"fused {len(frames.stamps_ns)} frames from {len(frames.cameras)} cameras {frames.cameras} "
          f"({args.method}, {args.mode}: {config.describe(args.mode)}) in {elapsed:.2f} s; "
          f"{100 * estimated.mean():.1f}% joints estimated{_recording_note(args, frames)} -> {output}")
    return 0


CALIBRATE_EPILOG = """\
what stays fixed: people fix a rig only up to position, orientation and scale. The world frame (origin, "up")
  stays the rough calibration's: held by the --fixed cameras, or by the first --baseline camera, which must
  not have moved; with --height or --keep-size alone, by fitting the refined rig onto the rough camera
  positions as a whole (as right as the rough rig is on average; add --fixed CAM to hold it by one camera).
  The scale comes from exactly one anchor: two or more --fixed cameras, --baseline, --height (the standing
  height of the one person recorded; good to about 1-2 %) or --keep-size (the rough rig's size). Never from
  an average body. Intrinsics and lens distortion are trusted; focal lengths only with --refine-focal.

acceptance: the refined rig is written only when it converged: median reprojection error at most 1.5 x the
  detection noise (the median distance of a keypoint from the line through its positions in the frames
  before and after, measured on the keypoints alone; or --noise), and at least 85 % of every camera's
  keypoints within 4 x the noise. Refused too: too few frames, a camera that saw nobody the others saw,
  people who stayed in one spot, more than one camera beyond the basin (turned by 30 degrees or more), and a
  camera moved further than 0.2 x its distance to the people from its rough position (a wrong --baseline
  shows this way) unless it is the one camera located afresh (bumped).
  A refusal keeps the rough calibration, says why, writes nothing and exits with status 1.
"""


def _calibrate(args: argparse.Namespace) -> int:
    """``skelsplat calibrate``: refine a rough calibration from the people a recording shows."""
    from pathlib import Path

    from .calibration import CalibrationConfig, WorldAnchor, report_lines, self_calibrate
    from .geometry.calibration import save_calibration

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise CliError(f"{output} exists; pass --overwrite to replace it (it is never overwritten silently)")
    if output.suffix.lower() != ".toml":
        raise CliError(f"--output must be a .toml calibration, got {output}")
    fixed = tuple(n.strip() for n in args.fixed.split(",") if n.strip()) if args.fixed else ()
    baseline = None
    if args.baseline:
        try:
            baseline = (args.baseline[0], args.baseline[1], float(args.baseline[2]))
        except ValueError:
            raise CliError(f"--baseline CAM_A CAM_B METRES: {args.baseline[2]!r} is not a distance") from None
    anchor = WorldAnchor(fixed=fixed, baseline=baseline, height=args.height, keep_size=args.keep_size)
    whole, rough, skeleton, keypoints = _calibration_input(args)
    anchor.check(rough)  # before the work: a misspelt camera is an error, not a refusal
    config = CalibrationConfig(noise=args.noise, focal_sigma=args.refine_focal, max_frames=args.max_frames)
    start = time.perf_counter()
    result = self_calibrate(rough, skeleton, keypoints, anchor, config)
    elapsed = time.perf_counter() - start
    print("\n".join(report_lines(result, config)))
    if not result.accepted:
        print(f"kept the rough calibration {args.calibration}; {output} not written ({elapsed:.1f} s)")
        return 1
    refined = _whole_rig(whole, result.rig)
    save_calibration(refined, output, metadata={
        "adjusted": True, "error": round(result.after, 4), "refined_by": "skelsplat calibrate",
        "refined_from": str(args.calibration), "detection_noise_px": round(result.noise, 4),
        "inliers": round(result.inliers, 4)})
    replaced = " (replaced)" if args.overwrite else ""
    print(f"refined calibration written to {output}{replaced} in metres ({elapsed:.1f} s)")
    return 0


def _calibration_input(args: argparse.Namespace):
    """The whole rough calibration and its cameras with keypoints (both in metres), the skeleton and the keypoints
    ``[V, F, S, J, 3]`` in the second rig's camera order."""
    import numpy as np

    from .geometry.calibration import UNIT_SCALES, load_calibration, rig_in_metres, scale_rig
    from .io.keypoints import align_to_rig, mask_outside_image
    from .io.recording import is_bag
    from .pipeline.fuse import load_skeleton_keypoints
    from .skeleton.models import get_skeleton

    rig = load_calibration(args.calibration)  # in the file's unit until the keypoints can tell it
    if is_bag(args.keypoints):
        from .ros.bag import SyncSettings, read_bag_frames

        if not args.skeleton:
            raise CliError("a bag needs --skeleton NAME (the skeleton of its keypoint messages)")
        skeleton = get_skeleton(args.skeleton)
        topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
        frames = read_bag_frames(args.keypoints, skeleton.name, skeleton.num_joints, topics=topics, rig=rig,
                                 sync=SyncSettings(slop=args.sync_slop), people="all")
        keypoints = frames.keypoints if frames.keypoints.ndim == 5 else frames.keypoints[:, :, None]
        used = rig.subset(frames.cameras)
    else:
        data, skeleton = load_skeleton_keypoints(args.keypoints, args.skeleton, args.fps, "all")
        data, used = align_to_rig(data, rig)
        keypoints = data.keypoints
    used, units, evidence = rig_in_metres(used, args.calibration_units, keypoints)
    if units != "m":
        print(f"skelsplat calibrate: calibration read in {units} ({evidence}); converted to metres", file=sys.stderr)
        rig = scale_rig(rig, UNIT_SCALES[units])
    if not is_bag(args.keypoints):
        data, masked = mask_outside_image(data, used)
        if masked:
            print(f"skelsplat calibrate: {masked} keypoints far outside their camera's image treated as missing",
                  file=sys.stderr)
        keypoints = data.keypoints
    keypoints = np.asarray(keypoints if keypoints.ndim == 5 else keypoints[:, :, None])
    return rig, used, skeleton, keypoints


def _whole_rig(rough, refined):
    """Every camera of the rough calibration (metres), those with keypoints refined, the others as they were."""
    from .geometry.camera import CameraRig

    return CameraRig([refined[refined.index(c.name)] if c.name in refined.names else c for c in rough])


DETECT_EPILOG = """\
input: one video file or image folder per camera (the camera is its stem: cam01.mp4 -> cam01; or --cameras),
  or one rosbag2 recording (folder or .mcap) with sensor_msgs/Image or CompressedImage topics (--topics to choose;
  the camera is the topic's first part: /cam01/image_raw -> cam01).
  Videos must have the same frame rate and length; --offsets F1,F2,... (the frame of each that shows the same first
  instant) aligns videos that start at different times, and the shared span is detected.

output: .npz = the multi-person keypoints that `skelsplat fuse` reads (keypoints [V, F, S, J, 3] in pixels with
  confidence, S = --max-people slots NaN-padded, cameras, fps, skeleton); --format openpose = a folder of
  <camera>_json/ folders (one OpenPose JSON per frame; fuse it with --people all); from a bag, .mcap = a rosbag2
  bag of Keypoints2DArray on /<camera>/keypoints, each stamped and framed like its image.
"""


def _detect(args: argparse.Namespace) -> int:
    from .detection import DetectorConfig
    from .io.keypoints import save_keypoints_npz, save_openpose_folder
    from .io.recording import is_bag

    config = _detector_config(args)
    if args.skeleton != "coco17":
        raise CliError(f"--skeleton {args.skeleton}: the detectors here output coco17 only")
    if args.format == "openpose" and args.output.endswith((".npz", ".mcap")):
        raise CliError("--format openpose writes a folder: give --output a folder name")
    if len(args.inputs) == 1 and is_bag(args.inputs[0]):
        return _detect_bag(args, config)
    if args.output.endswith(".mcap"):
        raise CliError("--output .mcap needs a bag of images as input (their stamps and frames); use .npz")
    keypoints, report = _detect_sources(args, config)
    if args.format == "openpose":
        save_openpose_folder(keypoints, args.output, overwrite=True)
    elif args.output.endswith(".npz"):
        save_keypoints_npz(keypoints, args.output)
    else:
        raise CliError(f"--output {args.output}: give a .npz file (or --format openpose and a folder)")
    print(f"detected {report.num_frames} frames x {len(report.cameras)} cameras ({config.backend}): {report.summary()}"
          f" -> {args.output}")
    return 0


def _detect_bag(args: argparse.Namespace, config) -> int:
    """``detect`` of a rosbag2 recording of images: a keypoint bag (.mcap), an NPZ or OpenPose folders."""
    import numpy as np

    from .io.keypoints import save_keypoints_npz, save_openpose_folder
    from .ros.detect_bag import detect_image_bag

    topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
    bars: list = []  # the bar is made at the first image, when the bag's image count is known

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(_progress_bar(total, enabled=not args.quiet, unit="image"))
        bars[0](done, total, close=done == total)

    started, cpu = time.perf_counter(), time.process_time()
    found = detect_image_bag(args.inputs[0], config, topics, progress)
    if args.output.endswith(".mcap"):
        output = found.write_bag(args.output)
    elif args.format == "openpose":
        output = save_openpose_folder(found.keypoint_set(config.max_people), args.output, overwrite=True)[0].parent
    elif args.output.endswith(".npz"):
        output = args.output
        save_keypoints_npz(found.keypoint_set(config.max_people), output)
    else:
        raise CliError(f"--output {args.output}: give a .mcap bag, a .npz file (or --format openpose and a folder)")
    counts = found.people_counts()
    images = sum(len(c) for c in counts.values())
    rates = ", ".join(f"{c} {100 * np.mean(np.array(n) > 0):.0f} % of {len(n)}" for c, n in counts.items())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"detected {images} images of {len(counts)} cameras ({config.backend}): images with people: {rates}; "
          f"{elapsed:.1f} s ({1e3 * elapsed / max(images, 1):.1f} ms/image, CPU {1e3 * cpu / max(images, 1):.1f} "
          f"ms/image) -> {output}")
    return 0


def _detect_sources(args: argparse.Namespace, config):
    """Videos or image folders through the detector: ``(KeypointSet, DetectionReport)``."""
    from .detection.recording import detect_recording
    from .detection.sources import open_source

    names = [n.strip() for n in args.cameras.split(",")] if args.cameras else [None] * len(args.inputs)
    if len(names) != len(args.inputs):
        raise CliError(f"--cameras names {len(names)} cameras for {len(args.inputs)} inputs")
    sources = [open_source(path, name, args.fps) for path, name in zip(args.inputs, names)]
    duplicates = {s.name for s in sources if [t.name for t in sources].count(s.name) > 1}
    if duplicates:
        raise CliError(f"several inputs are named {sorted(duplicates)}: give --cameras")
    offsets = _int_list(args.offsets, "--offsets") if args.offsets else None
    total = sum(s.num_frames for s in sources)
    progress = _progress_bar(total, enabled=not args.quiet, unit="image")
    try:
        result = detect_recording(sources, config, offsets, progress=lambda done, _: progress(done, total))
    finally:
        progress(total, total, close=True)
    return result


def _render(args: argparse.Namespace) -> int:
    from .pipeline.render import RenderSettings, render_file

    progress = _lazy_progress_bar(enabled=not args.quiet)
    try:
        report = render_file(args.result, args.videos, args.calibration, args.output,
                             RenderSettings.from_namespace(args), progress=progress)
    finally:
        progress(close=True)
    video, sheet = report.outputs
    print(f"rendered {report.frames} frames x {report.cameras} cameras + 3D view, {report.tracks} tracks, in "
          f"{report.seconds:.1f} s -> {video}, {sheet}")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise CliError(f"{flag} must be comma-separated integers, got {text!r}") from None


def _lazy_progress_bar(enabled: bool):
    """A ``progress(done=0, total=0, close=False)`` callback whose :func:`_progress_bar` is made at the first report,
    when the frame count is known (``close`` before any report draws nothing)."""
    bar: list = []  # [callback, done, total]

    def progress(done: int = 0, total: int = 0, close: bool = False) -> None:
        if close:
            if bar:
                bar[0](bar[1], bar[2], close=True)
            return
        if not bar:
            bar.append(_progress_bar(total, enabled=enabled))
        bar[1:] = [done, total]
        bar[0](done, total)

    return progress


def _progress_bar(total: int, enabled: bool, unit: str = "frame"):
    """A ``progress(done, total, close=False)`` callback drawing a tqdm bar on stderr for long runs."""
    if not enabled or total < 200:
        return lambda done, total_, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, file=sys.stderr, leave=False)

    def update(done: int, total_: int, close: bool = False) -> None:
        bar.update(done - bar.n)
        if close:
            bar.close()

    return update


def _play(args: argparse.Namespace) -> int:
    from .ros.play import play

    topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
    count = play(args.bag, rate=args.rate, topics=topics, wait=args.wait, clock_rate=args.clock_rate)
    print(f"played {count} messages from {args.bag}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.engine import run_cli

    return run_cli(args)


def _bench_multi(args: argparse.Namespace) -> int:
    from .bench.multi import run_cli

    return run_cli(args)


def _bench_batch(args: argparse.Namespace) -> int:
    from .bench.batch import run_cli

    return run_cli(args)


def _bench_shelf(args: argparse.Namespace) -> int:
    from .bench.shelf import run_cli

    return run_cli(args)


def _add_fuse_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``fuse`` besides its paths (:class:`~skelsplat_ros.pipeline.fuse.FuseSettings`): also the keys
    of a study's ``[fuse]`` settings (``batch``)."""
    from .fusion.config import BACKENDS, DEVICES, METHODS, MODES, OPTIMIZERS, PRESETS

    parser.add_argument("--calibration-units", choices=("auto", "m", "cm", "mm"), default="auto",
                        help="length unit of the calibration (auto: told by the size of the people triangulated, or "
                             "of the cameras' field of view; refused when neither decides); output is always metres")
    parser.add_argument("--skeleton",
                        help="skeleton name (coco17, h36m17, coco19, body25, body25b, halpe26) or YAML file")
    parser.add_argument("--mode", choices=MODES, default="offline", help="offline: whole recording; streaming: causal")
    parser.add_argument("--method", choices=METHODS, default="skelsplat")
    parser.add_argument("--preset", choices=PRESETS, default="default")
    parser.add_argument(
        "--optimizer", choices=("auto",) + OPTIMIZERS, default="auto",
        help="refinement optimiser; auto = the preset's per stage (see refinement below)",
    )
    parser.add_argument(
        "--backend", choices=("auto",) + BACKENDS, default="auto",
        help="renderer of the Adam stages; auto = the preset's (gauss_newton has none: closed-form analytic)",
    )
    parser.add_argument(
        "--device", choices=DEVICES, default="auto",
        help="torch device of the Adam stages; auto = CUDA when torch sees it, else the CPU",
    )
    parser.add_argument("--fps", type=float,
                        help="frame rate (JSON input has none; needed for .trc; default 30 for the temporal priors)")
    parser.add_argument("--single-view-joints", action="store_true",
                        help="streaming: also output joints one view sees, placed on its ray by the bone lengths "
                        "(confidence 0)")
    parser.add_argument("--complete", action="store_true",
                        help="every joint of a person in every frame the person is output: the joints no two views "
                        "agree on filled from the body model (bone lengths, recent pose, one view's ray), confidence 0")
    parser.add_argument("--depth-filter", action=argparse.BooleanOptionalAction, default=True,
                        help="streaming at lag 0: along the depth a joint's views barely fix (a narrow baseline's), "
                             "refit the frame with the causal jerk filters' estimate of its motion as a prior there "
                             "(default; --no-depth-filter: each frame's fit alone)")
    parser.add_argument("--lag", type=float, default=0.0, metavar="SECONDS",
                        help="streaming: publish each frame this late, estimated from the frames up to SECONDS after "
                             "it by the fixed-lag smoother (offline's priors on a sliding window); 0 = causal")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for these small tensors)")
    parser.add_argument("--people", choices=("subject", "all"),
                        help="several people per JSON file or bag message: the subject (JSON: the followed subject, "
                             "default; bag: the most confident person of each message) or everyone (tracked, one "
                             "output track per person; default for a bag whose messages hold several people); a 5-D "
                             ".npz is always everyone")


class _SettingsParser(argparse.ArgumentParser):
    """Reads a study's ``[fuse]`` table as the ``fuse`` options; a bad key or value is a :class:`CliError`."""

    def error(self, message: str):
        message = message.replace("unrecognized arguments", "unknown settings (paths are per take)")
        raise CliError(f"{self.prog}: {message}")


def _study_fuse_settings(table: dict, source: str) -> "FuseSettings":
    """A study's ``[fuse]`` table (``{"preset": "paper", "single_view_joints": True, ...}``) read exactly as the
    same options of ``skelsplat fuse`` are: their names, choices, types and defaults."""
    from .pipeline.settings import FuseSettings

    parser = _SettingsParser(prog=source, add_help=False, allow_abbrev=False)
    _add_fuse_options(parser)
    return FuseSettings.from_namespace(parser.parse_args(_as_argv(table)))


def _as_argv(table: dict) -> list[str]:
    """A settings table as the command line options it stands for (``true``: the flag; ``false``: left out)."""
    argv: list[str] = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


DETECT_SETTINGS = ("backend", "max_people", "min_person_score", "min_keypoint_score", "duplicate_distance",
                   "no_tracking", "model", "det_model", "threads")
"""The options of ``detect`` a study's [detect] table takes (its inputs, output and camera names are per take)."""


def _study_detect_settings(table: dict, source: str):
    """A study's ``[detect]`` table read as the same options of ``skelsplat detect``."""
    unknown = sorted(set(table) - set(DETECT_SETTINGS))
    if unknown:
        raise CliError(f"{source}: unknown settings {unknown} (inputs, output and cameras are per take); "
                       f"the settings are {', '.join(DETECT_SETTINGS)}")
    parser = _SettingsParser(prog=source, add_help=False, allow_abbrev=False)
    _add_detect_arguments(parser)
    return _detector_config(parser.parse_args(["VIDEO", "--output", "keypoints.npz", *_as_argv(table)]))


def _study_render_settings(table: dict, source: str):
    """A study's ``[render]`` table read as the same options of ``skelsplat render`` (the videos are the take's, the
    result its fused.npz)."""
    from .pipeline.render import RenderSettings

    parser = _SettingsParser(prog=source, add_help=False, allow_abbrev=False)
    _add_render_options(parser)
    return RenderSettings.from_namespace(parser.parse_args(_as_argv(table)))


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="folder of takes (see below)")
    parser.add_argument("--output", required=True, help="output folder: <take>/fused.npz and summary.csv")
    parser.add_argument("--settings", help="the study's settings TOML (default: STUDY/skelsplat.toml when present)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (one thread each)")
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                        help="run the takes as Ray tasks: on the cluster at ADDRESS, or on a local instance")
    parser.add_argument("--force", action="store_true", help="run every take, even those whose outputs are up to date")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _start_batch_workers(argv: list[str], program: bool = False) -> None:
    """``batch`` whose takes will run (a new output folder, or ``--force``): start their workers before the whole
    command line is parsed, since :func:`build_parser` imports the fusion package for the choices of ``fuse`` (about
    0.4 s). Local workers: their fork server, whose preload then overlaps that, the settings and the study's scan.
    Ray: join (or start) it and have the job's workers load what a take needs (``ray_backend.start``), their start
    overlapping the same; ``program`` (this process is the ``skelsplat`` command, which :func:`_batch` may end): a
    cluster joined is left by the process's end. Arguments this cannot read are left to the real parser to report."""
    import os
    from pathlib import Path

    parser = _SettingsParser(prog="skelsplat batch", add_help=False)
    _add_batch_arguments(parser)
    try:
        args, _ = parser.parse_known_args(argv)
    except CliError:
        return
    if not (args.force or not Path(args.output).exists()):
        return  # maybe nothing to run: workers would only delay a second run
    if args.ray is None:
        from .pipeline.local import start_server

        start_server()
        return
    try:
        from .pipeline import ray_backend
    except ImportError as error:
        if error.name != "ray":
            raise
        return  # the runner reports it
    try:
        takes = sum(entry.is_dir() for entry in os.scandir(args.study))  # at most: a folder may be no take
    except OSError:
        takes = 0  # the runner reports it
    ray_backend.start(args.ray or None, args.workers, takes, leave_by_exit=program)


def _batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .pipeline.runner import BatchOptions, run_batch
    from .pipeline.study import SETTINGS_FILE, read_settings
    from .pipeline.take import StudySettings

    path = Path(args.settings) if args.settings else Path(args.study) / SETTINGS_FILE
    sections = read_settings(path) if args.settings or path.is_file() else {}
    fuse = _study_fuse_settings(sections.get("fuse", {}), f"{path} [fuse]")
    detect = _study_detect_settings(sections.get("detect", {}), f"{path} [detect]")
    render = _study_render_settings(sections["render"], f"{path} [render]") if "render" in sections else None
    fuse.fusion_config()  # an impossible combination fails before any take runs
    options = BatchOptions(workers=args.workers, ray=args.ray is not None, ray_address=args.ray or None,
                           force=args.force, progress=not args.quiet)
    results = run_batch(args.study, args.output, StudySettings(fuse, detect, render), options)
    status = 1 if any(result.status == "failed" for result in results) else 0
    if args.program:
        # The process ends here, its work done: a Ray cluster joined and left connected (ray_backend.start) is left
        # by that, and the interpreter's teardown of what the command loaded is skipped.
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


BATCH_EPILOG = """\
study: a folder of takes, one sub-folder each, holding a keypoints input that `fuse` reads (one .npz, or
  <camera>_json/ folders) or one video per camera (detected as `skelsplat detect` does; the camera is the file
  stem), and a calibration (calib*.toml in the take, else the study's own calib*.toml). Settings:
  STUDY/skelsplat.toml or --settings, a [fuse] table whose keys are the options of `skelsplat fuse` without their
  paths, a [detect] table of the options of `skelsplat detect` (backend, max-people, model, ...), and a [render]
  table of those of `skelsplat render` (frames, height, sheet-frames, skeleton, calibration-units), whose presence
  adds the render step (each take's result drawn over its videos), e.g.
      [fuse]
      preset = "default"
      fps = 50
      [detect]
      backend = "mediapipe"
      [render]
      frames = 300
outputs: OUT/<take>/fused.npz (what `skelsplat fuse` writes for the take), with [render] OUT/<take>/render.mp4
  and render.png (what `skelsplat render` writes; a take without videos is done and says "not rendered"),
  OUT/<take>/take.json (its record) and OUT/summary.csv (take, status, frames, people, reprojection_median_px,
  seconds, reason). A take is skipped when all its outputs are newer than its inputs and were made with the same
  settings (--force runs it anyway). A failed take is reported with its reason and the others go on; exit status 1
  when any failed.
workers: --workers N local processes (one thread each), or --ray [ADDRESS]: Ray tasks on the cluster at ADDRESS
  (auto = the cluster this machine belongs to, ray://HEAD:10001 through Ray Client), or on a local instance with N
  CPUs without an address; needs `pip install .[cluster]`. Workers read the inputs by path: STUDY must be at the
  same path on every node (shared file system); the outputs come back to this machine, which writes OUT. A take
  whose worker dies is run once more, then reported failed.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skelsplat", description="Multi-view 3D human skeletons by Gaussian-splat refinement.")
    sub = parser.add_subparsers(dest="command", required=True)

    fuse = sub.add_parser(
        "fuse", help="fuse recorded multi-view keypoints into 3D", epilog=FUSE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fuse.add_argument("--calibration", help="Pose2Sim/Anipose calibration TOML (optional for a bag with camera_info + TF)")
    fuse.add_argument("--keypoints", required=True,
                      help="keypoints .npz, folder of <camera>_json/ folders, or a ROS 2 bag (folder or .mcap)")
    fuse.add_argument("--output", required=True, help="output .npz, .trc, .csv, or .mcap (a rosbag2 bag; bag input)")
    fuse.add_argument("--topics", help="bag: comma-separated keypoint topics (default: every /<camera>/keypoints)")
    fuse.add_argument("--world-frame", default="world", help="bag without --calibration: the TF frame to fuse in")
    fuse.add_argument("--sync-slop", type=float, default=0.010,
                      help="bag: stamps within this many seconds form one frame (the node's sync_slop)")
    _add_fuse_options(fuse)
    fuse.add_argument("--quiet", action="store_true", help="no progress bar")
    fuse.set_defaults(handler=_fuse)

    batch = sub.add_parser("batch", help="fuse every take of a study folder (local workers or Ray), resumable",
                           epilog=BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_batch_arguments(batch)
    batch.set_defaults(handler=_batch)

    play = sub.add_parser("play", help="republish a ROS 2 bag with /clock (replay through the node, use_sim_time)")
    play.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    play.add_argument("--topics", help="comma-separated topics to play (default: all of known types)")
    play.add_argument("--wait", "--start-delay", dest="wait", type=float, default=60.0,
                      help="longest wait (s) for the keypoint topics to have a subscriber (the node, once ready) "
                           "before playing; nothing is played when nobody subscribes by then")
    play.add_argument("--clock-rate", type=float, default=100.0, help="/clock messages per second between messages")
    play.set_defaults(handler=_play)

    calibrate = sub.add_parser(
        "calibrate", help="refine a rough calibration's extrinsics from the people a recording shows (no board)",
        epilog=CALIBRATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    calibrate.add_argument("--calibration", required=True, help="the rough calibration (Pose2Sim/Anipose TOML)")
    calibrate.add_argument("--calibration-units", choices=("auto", "m", "cm", "mm"), default="auto",
                           help="length unit of the calibration (auto: millimetres detected); output is metres")
    calibrate.add_argument("--keypoints", required=True,
                           help="what fuse reads: .npz ([V, F, J, 3] or [V, F, S, J, 3]), a folder of <camera>_json/ "
                                "folders (every person of every file), or a ROS 2 bag")
    calibrate.add_argument("--output", required=True, help="the refined calibration (.toml), written only when "
                           "accepted")
    calibrate.add_argument("--skeleton", help="skeleton name or YAML file (default: the one the keypoints name)")
    calibrate.add_argument("--fixed", metavar="CAM,CAM",
                           help="cameras that did not move: held exactly; two or more also set the scale")
    calibrate.add_argument("--baseline", nargs=3, metavar=("CAM_A", "CAM_B", "METRES"),
                           help="measured distance between two cameras' centres; CAM_A did not move")
    calibrate.add_argument("--height", type=float, metavar="METRES",
                           help="standing height of the one person in the recording (scale to about 1-2 %%)")
    calibrate.add_argument("--keep-size", action="store_true", help="keep the rough calibration's scale")
    calibrate.add_argument("--refine-focal", type=float, nargs="?", const=0.05, default=None, metavar="SIGMA",
                           help="also refine focal lengths, pulled towards the given ones (relative std, default "
                                "0.05)")
    calibrate.add_argument("--noise", type=float, metavar="PX",
                           help="detection noise in px (default: measured on the keypoints)")
    calibrate.add_argument("--max-frames", type=int, default=150,
                           help="frames the bundle adjustment uses, evenly spread (default 150)")
    calibrate.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    calibrate.add_argument("--fps", type=float, help="frame rate of JSON input (it stores none)")
    calibrate.add_argument("--topics", help="bag: comma-separated keypoint topics (default: every /<camera>/keypoints)")
    calibrate.add_argument("--sync-slop", type=float, default=0.010,
                           help="bag: stamps within this many seconds form one frame (the node's sync_slop)")
    calibrate.set_defaults(handler=_calibrate)

    bench = sub.add_parser("bench", help="accuracy and speed benchmark on simulated rigs with ground truth")
    bench.add_argument("--rigs", default="all", help="comma-separated rig kinds ('all' = every simulated rig; 'lab-distorted' = with lens distortion)")
    bench.add_argument("--noise", default="realistic,clean,hard",
                       help="comma-separated noise presets (clean, realistic, hard, heavy), for every rig")
    bench.add_argument("--scenarios", default="", help="RIG:NOISE pairs instead of --rigs x --noise, e.g. portrait:heavy")
    bench.add_argument("--frames", type=int, default=300, help="frames per scenario (30 fps); 0 = no accuracy table")
    bench.add_argument("--seeds", default="3,4,5",
                       help="comma-separated scenario seeds (the default preset was tuned on 0, 1, 2)")
    bench.add_argument("--speed", default="",
                       help="RIG:NOISE pairs to time against frame count (e.g. portrait:heavy,lab:realistic)")
    bench.add_argument("--speed-frames", default="100,200,300", help="frame counts of the speed fit")
    bench.add_argument("--speed-repeats", type=int, default=3, help="runs per frame count (their median is fitted)")
    bench.add_argument("--paper-frames", type=int, default=2, help="frames for the (slow) paper preset; 0 = skip it")
    bench.add_argument("--repeats", type=int, default=3, help="timing repeats on the first seed")
    bench.add_argument("--plot", default="out/bench.png", help="PNG plot path ('' = none)")
    bench.add_argument("--markdown", default="", help="write the table to this markdown file")
    bench.add_argument("--methods", default="", help="comma-separated parts of method names to run (default: all)")
    bench.set_defaults(handler=_bench)

    bench_multi = sub.add_parser("bench-multi", help="multi-person tracking benchmark on simulated scenes")
    bench_shelf = sub.add_parser("bench-shelf", help="multi-person tracking on the real Shelf recording (PCP)")
    _add_bench_arguments(bench_multi, bench_shelf)
    bench_multi.set_defaults(handler=_bench_multi)
    bench_shelf.set_defaults(handler=_bench_shelf)

    detect = sub.add_parser("detect", help="2D keypoints of everybody in videos, image folders or an image bag",
                            epilog=DETECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_detect_arguments(detect)
    detect.set_defaults(handler=_detect)

    render = sub.add_parser("render", help="a result's skeletons drawn over its videos, with a 3D view (MP4 + PNG)")
    render.add_argument("result", help="result .npz of skelsplat fuse (several people or one)")
    render.add_argument("--videos", nargs="+", required=True, help="the cameras' videos or image folders "
                        "(camera = file stem, matched to the calibration)")
    render.add_argument("--calibration", required=True, help="the calibration TOML the result was fused with")
    render.add_argument("--output", required=True, help="output .mp4; the contact sheet goes beside it as .png")
    _add_render_options(render)
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.set_defaults(handler=_render)

    bench_batch = sub.add_parser("bench-batch", help="skelsplat batch on a generated study: scaling over workers "
                                 "and Ray, identity with fuse, resumption, cost per camera-frame")
    _add_bench_batch_arguments(bench_batch)
    bench_batch.set_defaults(handler=_bench_batch)

    demo = sub.add_parser("demo", help="simulated camera rig -> ROS 2 fusion node, live accuracy and latency")
    from .ros.demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo)
    return parser


def _detector_config(args: argparse.Namespace):
    """The :class:`~skelsplat_ros.detection.DetectorConfig` of ``detect``'s options (also a study's [detect])."""
    from .detection import DetectorConfig

    return DetectorConfig(backend=args.backend, max_people=args.max_people, min_person_score=args.min_person_score,
                          min_keypoint_score=args.min_keypoint_score, duplicate_distance=args.duplicate_distance,
                          tracking=not args.no_tracking, model=args.model, det_model=args.det_model,
                          threads=args.threads)


def _add_detect_arguments(detect: argparse.ArgumentParser) -> None:
    from .detection.base import BACKENDS, DetectorConfig

    defaults = DetectorConfig()
    detect.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or image folders (one per camera), "
                        "or one rosbag2 recording with image topics")
    detect.add_argument("--output", required=True, help="keypoints .npz, a folder (--format openpose), or .mcap (bag in)")
    detect.add_argument("--format", choices=("npz", "openpose"), default="npz", help="output format (default npz)")
    detect.add_argument("--backend", choices=BACKENDS, default=defaults.backend, help="2D pose model (default mediapipe)")
    detect.add_argument("--max-people", type=int, default=defaults.max_people, help="most people per image")
    detect.add_argument("--skeleton", default="coco17", help="output joint set (coco17, the one the backends give)")
    detect.add_argument("--cameras", help="comma-separated camera names, one per input (default: the file stems)")
    detect.add_argument("--offsets", help="comma-separated first frame of each input (aligns videos of unequal length)")
    detect.add_argument("--fps", type=float, help="frame rate of image folders (videos know theirs)")
    detect.add_argument("--topics", help="bag: comma-separated image topics (default: every Image/CompressedImage)")
    detect.add_argument("--min-person-score", type=float, default=defaults.min_person_score,
                        help="people detected with a lower score are left out")
    detect.add_argument("--min-keypoint-score", type=float, default=defaults.min_keypoint_score,
                        help="joints with a lower score are written missing")
    detect.add_argument("--duplicate-distance", type=float, default=defaults.duplicate_distance,
                        help="two people whose joints lie a median of at most this fraction of the larger one's size "
                             "apart are one person")
    detect.add_argument("--no-tracking", action="store_true",
                        help="mediapipe: detect every image afresh instead of following people from the last frame")
    detect.add_argument("--model", default="", help="onnx: RTMO or RTMPose model (.onnx, .zip or URL); mediapipe: a "
                        ".task bundle (default: built from the mediapipe wheel)")
    detect.add_argument("--det-model", default="", help="onnx with RTMPose: the person detector (YOLOX .onnx or URL)")
    detect.add_argument("--threads", type=int, default=1, help="inference threads (onnxruntime; 0 = its default)")
    detect.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_render_options(render: argparse.ArgumentParser) -> None:
    """The options of ``render`` besides its paths (:class:`~skelsplat_ros.pipeline.render.RenderSettings`): also
    the keys of a study's ``[render]`` settings (``batch``)."""
    render.add_argument("--calibration-units", choices=("auto", "m", "cm", "mm"), default="auto",
                        help="length unit of the calibration (auto: millimetres detected)")
    render.add_argument("--skeleton", help="skeleton of the result (default: the built-in one with its joint names)")
    render.add_argument("--frames", type=int, default=0, help="render only the first N frames (0 = all)")
    render.add_argument("--height", type=int, default=480, help="height (px) of each camera's picture")
    render.add_argument("--sheet-frames", type=int, default=4, help="frames on the contact sheet")


def _add_bench_arguments(multi: argparse.ArgumentParser, shelf: argparse.ArgumentParser) -> None:
    # Plain argparse only: the benchmark modules (and scipy, torch) load when the command runs.
    multi.add_argument("--people", default="1,2,3,5", help="comma-separated people per scene (any number; more "
                       "than 5 is a crowd: one in five walks, the others move in place)")
    multi.add_argument("--views", default="4,8", help="comma-separated camera counts (4 = lab rig, 8 = surround, "
                       "any other N = a ring of N cameras on three tiers)")
    multi.add_argument("--seeds", default="10,11,12", help="scene seeds (0-2 were used for tuning)")
    multi.add_argument("--frames", type=int, default=300, help="frames per scene (30 fps)")
    multi.add_argument("--noise", default="realistic", help="detector noise preset (clean, realistic, hard)")
    multi.add_argument("--modes", default="streaming,offline", help="streaming, offline or both")
    multi.add_argument("--markdown", default="", help="also write the table to this markdown file")
    shelf.add_argument("--data", default="", help="Shelf folder (default $SKELSPLAT_SHELF or ../shared/data/shelf)")
    shelf.add_argument("--modes", default="streaming,offline", help="streaming, offline or both")
    shelf.add_argument("--heads", default="mvpose", help="head conventions of evaluate_pcp.py to report (mvpose = "
                       "the standard; also voxelpose, crossview, neck)")
    shelf.add_argument("--single-view-joints", action="store_true",
                       help="streaming: also publish joints one view sees, placed by the bone lengths")
    shelf.add_argument("--complete", action="store_true",
                       help="complete skeletons (every joint of every person output; what the ROS4HRI output uses)")


def _add_bench_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--takes", type=int, default=20, help="takes in the generated study")
    parser.add_argument("--frames", type=int, default=300, help="frames per take (30 fps, 4 cameras)")
    parser.add_argument("--broken", type=int, default=1, help="takes whose keypoint file is cut short")
    parser.add_argument("--workers", default="1,2", help="comma-separated local worker counts (the first is the base)")
    parser.add_argument("--ray", action=argparse.BooleanOptionalAction, default=True,
                        help="also on a local Ray instance (needs the .[cluster] extra)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (interleaved); medians are reported")
    parser.add_argument("--seed", type=int, default=3, help="seed of the first take (0-2 were used for tuning)")
    parser.add_argument("--cost-takes", default="surround:1,lab:2,surround:3",
                        help="RIG:PEOPLE takes whose fusion cost per camera-frame is also measured (surround = 8 "
                        "cameras, lab = 4)")
    parser.add_argument("--detect-ms", type=float, help="2D detection time per image (ms), for the study estimate")
    parser.add_argument("--study-takes", type=int, default=1000, help="the study estimated: takes")
    parser.add_argument("--study-cameras", type=int, default=8, help="... cameras per take")
    parser.add_argument("--study-minutes", type=float, default=3.0, help="... minutes per take (30 fps)")
    parser.add_argument("--machine-cores", type=int, default=2, help="cores per machine of the estimate")


def main(argv: list[str] | None = None) -> int:
    """The ``skelsplat`` command on ``argv``; None: this process's command line (the program itself, which ``batch``
    ends by ``os._exit`` once its summary is out: see :func:`_batch`)."""
    program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["batch"]:
        _start_batch_workers(argv[1:], program)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.program = program
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (CliError, ValueError, KeyError, FileNotFoundError, RuntimeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"skelsplat {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
