"""``skelsplat``: the command line. ``fuse`` runs the fusion core on recorded data, ``calibrate`` refines a calibration from people; ``bench`` and ``demo`` below."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fusion.config import FusionConfig

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
  /<camera>/keypoints (--topics to choose), grouped by stamp as the node does; cameras from --calibration, or
  else from /<camera>/camera_info + /tf + /tf_static in the bag, each view posed at its own stamp (moving
  cameras: --mode streaming). --skeleton is required.

output (OUT): .npz (joints [F, J, 3] in metres, confidence [F, J], covariance [F, J, 3, 3] = position
  uncertainty in m^2 (large along directions no view constrains), joint_names [J], num_views,
  reprojection_error), .trc (OpenSim/Pose2Sim, Y-up) or .csv.
  Joints nobody can estimate are NaN with confidence 0. Coordinates are metres: a calibration in millimetres is
  detected (or give --calibration-units) and converted. With bag input, .mcap writes a rosbag2 bag (RUN.mcap ->
  folder RUN/) with /skeletons, /tf and /skeleton_markers stamped like the input; .npz then holds timestamps_ns.
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
    from dataclasses import replace

    import numpy as np

    from .fusion import fuse_offline, fuse_streaming, preset_config
    from .fusion.config import NOMINAL_RATE_HZ
    from .fusion.refine import check_runtime
    from .io.export import check_result_path, save_result
    from .io.keypoints import align_to_rig, load_keypoints, mask_outside_image
    from .io.recording import is_bag
    from .skeleton.models import get_skeleton

    # The configuration first: an impossible choice fails before any file is read.
    config = preset_config(
        args.preset, args.method, backend=args.backend, optimizer=args.optimizer, device=args.device, mode=args.mode
    )
    config = replace(config, single_view_joints=args.single_view_joints)
    check_runtime(config, args.mode)  # fail fast: CUDA or gsplat asked for and not usable here
    if any(stage.optimizer == "adam" for stage in config.stages(args.mode)):
        import torch  # only the Adam stages use it; Gauss-Newton and the baselines run in numpy

        torch.set_num_threads(max(1, args.threads))
    if is_bag(args.keypoints):
        return _fuse_recording(args, config)
    if not args.calibration:
        raise CliError("--calibration is required for NPZ/JSON keypoints (a ROS bag may carry camera_info + TF)")
    if args.output.endswith(".mcap"):
        raise CliError("--output .mcap needs a ROS bag as --keypoints (its stamps); use .npz, .trc or .csv")
    rig = _load_rig(args)
    keypoints = load_keypoints(args.keypoints, skeleton=args.skeleton, fps=args.fps, people=args.people)
    skeleton_name = args.skeleton or keypoints.skeleton
    if not skeleton_name:
        raise CliError("no skeleton given: pass --skeleton NAME (the keypoints do not name one)")
    skeleton = get_skeleton(skeleton_name)
    if keypoints.num_joints != skeleton.num_joints:
        raise CliError(f"keypoints have {keypoints.num_joints} joints, skeleton {skeleton.name!r} has {skeleton.num_joints}")
    keypoints, rig = align_to_rig(keypoints, rig)
    keypoints, masked = mask_outside_image(keypoints, rig)
    if masked:
        print(f"note: {masked} keypoints lay more than 25 % of the image size outside their camera's calibrated "
              "image and were treated as missing")
    output = check_result_path(args.output, keypoints.fps)

    data = keypoints.keypoints
    num_frames = data.shape[1]
    if keypoints.multi_person:
        return _fuse_people(args, rig, skeleton, data, config, keypoints.fps, output)
    progress = _progress_bar(num_frames, enabled=not args.quiet)
    start = time.perf_counter()
    if keypoints.fps is None and args.method == "skelsplat":
        print(f"note: no frame rate known: the temporal prior assumes {NOMINAL_RATE_HZ:g} fps (pass --fps)", file=sys.stderr)
    if args.mode == "offline":
        result = fuse_offline(rig, skeleton, data, config, progress=progress, fps=keypoints.fps or NOMINAL_RATE_HZ)
    else:
        result = fuse_streaming(rig, skeleton, data, config, keypoints.fps or NOMINAL_RATE_HZ, progress=progress)
    elapsed = time.perf_counter() - start
    progress(num_frames, num_frames, close=True)
    save_result(
        output, result.joints, result.confidence, result.covariance, result.joint_names, keypoints.fps,
        num_views=result.num_views, reprojection_error=result.reprojection_error,
    )
    estimated = np.isfinite(result.joints).all(-1)
    print(
        f"fused {num_frames} frames x {skeleton.num_joints} joints from {len(rig)} views "
        f"({args.method}, {args.mode}, preset {args.preset}: {config.describe(args.mode)}) in {elapsed:.2f} s "
        f"({num_frames / max(elapsed, 1e-9):.0f} frames/s); "
        f"{100 * estimated.mean():.1f}% joints estimated, median reprojection error "
        f"{np.nanmedian(result.reprojection_error) if estimated.any() else float('nan'):.2f} px -> {output}"
    )
    return 0


def _fuse_people(args, rig, skeleton, data, config, fps, output) -> int:
    """``skelsplat fuse`` of several people: ``data [V, F, S, J, 3]``."""
    import numpy as np

    from .io.export import save_people_result
    from .tracking.recording import track_offline, track_streaming

    num_frames = data.shape[1]
    progress = _progress_bar(num_frames, enabled=not args.quiet)
    start = time.perf_counter()
    if args.mode == "offline":
        result = track_offline(rig, skeleton, data, config, fps or 30.0, progress=progress)
    else:
        result = track_streaming(rig, skeleton, data, config, fps or 30.0, progress=progress)
    elapsed = time.perf_counter() - start
    progress(num_frames, num_frames, close=True)
    written = save_people_result(
        output, result.joints, result.confidence, result.covariance, result.track_ids, result.joint_names, fps
    )
    present = np.isfinite(result.joints).all(-1).any(-1)
    print(
        f"tracked {result.num_tracks} people over {num_frames} frames from {len(rig)} views ({args.mode}) in "
        f"{elapsed:.2f} s ({num_frames / max(elapsed, 1e-9):.0f} frames/s); {present.sum(axis=1).mean():.2f} "
        f"people per frame on average -> {', '.join(str(p) for p in written)}"
    )
    return 0


def _load_rig(args: argparse.Namespace):
    """The calibration in metres; says so when it was read in other units (the output is always metres)."""
    from .geometry.calibration import load_calibration_metres

    rig, units = load_calibration_metres(args.calibration, args.calibration_units)
    if units != "m":
        print(f"skelsplat fuse: calibration read in {units} ({'detected' if args.calibration_units == 'auto' else 'as told'}); "
              "converted to metres", file=sys.stderr)
    return rig


def _fuse_recording(args: argparse.Namespace, config: "FusionConfig") -> int:
    """``fuse`` of a rosbag2 recording: synchronized as the node does, cameras from --calibration or the bag."""
    import numpy as np

    from .fusion import fuse_offline, fuse_streaming
    from .io.export import check_result_path, save_result
    from .ros.bag import SyncSettings, read_bag_frames, write_result_bag
    from .skeleton.models import get_skeleton

    if not args.skeleton:
        raise CliError("a bag needs --skeleton NAME (the skeleton of its keypoint messages)")
    skeleton = get_skeleton(args.skeleton)
    rig = _load_rig(args) if args.calibration else None
    topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
    frames = read_bag_frames(args.keypoints, skeleton.name, skeleton.num_joints, topics=topics, rig=rig,
                             world_frame=args.world_frame, sync=SyncSettings(slop=args.sync_slop))
    writes_bag = args.output.endswith(".mcap")
    if not writes_bag:
        check_result_path(args.output, frames.fps)
    stamps = (frames.stamps_ns - frames.stamps_ns[0]) * 1e-9
    start = time.perf_counter()
    if args.mode == "offline":
        if frames.moving:
            raise CliError("the cameras move in this recording (TF): use --mode streaming, which poses each frame")
        result = fuse_offline(frames.rigs[0], skeleton, frames.keypoints, config, fps=frames.fps)
    else:
        result = fuse_streaming(frames.rigs[0], skeleton, frames.keypoints, config, frames.fps, stamps=stamps,
                                rigs=frames.rigs if frames.moving else None)
    elapsed = time.perf_counter() - start
    if writes_bag:
        output = write_result_bag(args.output, frames.stamps_ns, skeleton.name, list(result.joint_names),
                                  result.joints, result.confidence, result.covariance, result.num_views,
                                  result.reprojection_error, skeleton.bone_array, world_frame=args.world_frame)
    else:
        output = save_result(args.output, result.joints, result.confidence, result.covariance, result.joint_names,
                             frames.fps, extra={"timestamps_ns": frames.stamps_ns,
                                                "camera_names": np.array(frames.cameras)},
                             num_views=result.num_views, reprojection_error=result.reprojection_error)
    estimated = np.isfinite(result.joints).all(-1)
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(frames.counts.items())) or "nothing"
    print(f"fused {len(frames.stamps_ns)} frames from {len(frames.cameras)} cameras {frames.cameras} "
          f"({'moving' if frames.moving else 'static'} cameras from {'--calibration' if rig else 'camera_info + TF'}; "
          f"{args.method}, {args.mode}: {config.describe(args.mode)}) in {elapsed:.2f} s; {100 * estimated.mean():.1f}% joints estimated; "
          f"dropped/left out: {dropped} -> {output}")
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
  people who stayed in one spot, and more than one camera beyond the basin (turned by 30 degrees or more).
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
    rough, skeleton, keypoints = _calibration_input(args)
    anchor.check(rough)  # before the work: a misspelt camera is an error, not a refusal
    config = CalibrationConfig(noise=args.noise, focal_sigma=args.refine_focal, max_frames=args.max_frames)
    start = time.perf_counter()
    result = self_calibrate(rough, skeleton, keypoints, anchor, config)
    elapsed = time.perf_counter() - start
    print("\n".join(report_lines(result, config)))
    if not result.accepted:
        print(f"kept the rough calibration {args.calibration}; {output} not written ({elapsed:.1f} s)")
        return 1
    refined = _whole_rig(args, result.rig)
    save_calibration(refined, output, metadata={
        "adjusted": True, "error": round(result.after, 4), "refined_by": "skelsplat calibrate",
        "refined_from": str(args.calibration), "detection_noise_px": round(result.noise, 4),
        "inliers": round(result.inliers, 4)})
    replaced = " (replaced)" if args.overwrite else ""
    print(f"refined calibration written to {output}{replaced} in metres ({elapsed:.1f} s)")
    return 0


def _calibration_input(args: argparse.Namespace):
    """The rough rig (metres), the skeleton and the keypoints ``[V, F, S, J, 3]`` in the rig's camera order."""
    import numpy as np

    from .io.keypoints import align_to_rig, load_keypoints, mask_outside_image
    from .io.recording import is_bag
    from .skeleton.models import get_skeleton

    rig = _load_rig(args)
    if is_bag(args.keypoints):
        from .ros.bag import SyncSettings, read_bag_frames

        if not args.skeleton:
            raise CliError("a bag needs --skeleton NAME (the skeleton of its keypoint messages)")
        skeleton = get_skeleton(args.skeleton)
        topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
        frames = read_bag_frames(args.keypoints, skeleton.name, skeleton.num_joints, topics=topics, rig=rig,
                                 sync=SyncSettings(slop=args.sync_slop))
        keypoints = frames.keypoints if frames.keypoints.ndim == 5 else frames.keypoints[:, :, None]
        return rig.subset(frames.cameras), skeleton, keypoints
    data = load_keypoints(args.keypoints, skeleton=args.skeleton, fps=args.fps, people="all")
    name = args.skeleton or data.skeleton
    if not name:
        raise CliError("no skeleton given: pass --skeleton NAME (the keypoints do not name one)")
    skeleton = get_skeleton(name)
    if data.num_joints != skeleton.num_joints:
        raise CliError(f"keypoints have {data.num_joints} joints, skeleton {skeleton.name!r} has {skeleton.num_joints}")
    data, rig = align_to_rig(data, rig)
    data, masked = mask_outside_image(data, rig)
    if masked:
        print(f"skelsplat calibrate: {masked} keypoints far outside their camera's image treated as missing",
              file=sys.stderr)
    keypoints = data.keypoints if data.keypoints.ndim == 5 else data.keypoints[:, :, None]
    return rig, skeleton, np.asarray(keypoints)


def _whole_rig(args: argparse.Namespace, refined):
    """Every camera of the rough calibration, those with keypoints refined (the others as they were)."""
    from .geometry.camera import CameraRig

    rough = _load_rig(args)
    return CameraRig([refined[refined.index(c.name)] if c.name in refined.names else c for c in rough])


def _progress_bar(total: int, enabled: bool):
    """A ``progress(done, total, close=False)`` callback drawing a tqdm bar on stderr for long runs."""
    if not enabled or total < 200:
        return lambda done, total_, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", file=sys.stderr, leave=False)

    def update(done: int, total_: int, close: bool = False) -> None:
        bar.update(done - bar.n)
        if close:
            bar.close()

    return update


def _play(args: argparse.Namespace) -> int:
    from .ros.play import play

    topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
    count = play(args.bag, rate=args.rate, topics=topics, start_delay=args.start_delay, clock_rate=args.clock_rate)
    print(f"played {count} messages from {args.bag}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.engine import run_cli

    return run_cli(args)


def _bench_multi(args: argparse.Namespace) -> int:
    from .bench.multi import run_cli

    return run_cli(args)


def _bench_shelf(args: argparse.Namespace) -> int:
    from .bench.shelf import run_cli

    return run_cli(args)


def build_parser() -> argparse.ArgumentParser:
    from .fusion.config import BACKENDS, DEVICES, METHODS, MODES, OPTIMIZERS, PRESETS

    parser = argparse.ArgumentParser(prog="skelsplat", description="Multi-view 3D human skeletons by Gaussian-splat refinement.")
    sub = parser.add_subparsers(dest="command", required=True)

    fuse = sub.add_parser(
        "fuse", help="fuse recorded multi-view keypoints into 3D", epilog=FUSE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fuse.add_argument("--calibration", help="Pose2Sim/Anipose calibration TOML (optional for a bag with camera_info + TF)")
    fuse.add_argument("--calibration-units", choices=("auto", "m", "cm", "mm"), default="auto",
                      help="length unit of the calibration (auto: millimetres detected); output is always metres")
    fuse.add_argument("--keypoints", required=True,
                      help="keypoints .npz, folder of <camera>_json/ folders, or a ROS 2 bag (folder or .mcap)")
    fuse.add_argument("--output", required=True, help="output .npz, .trc, .csv, or .mcap (a rosbag2 bag; bag input)")
    fuse.add_argument("--topics", help="bag: comma-separated keypoint topics (default: every /<camera>/keypoints)")
    fuse.add_argument("--world-frame", default="world", help="bag without --calibration: the TF frame to fuse in")
    fuse.add_argument("--sync-slop", type=float, default=0.010,
                      help="bag: stamps within this many seconds form one frame (the node's sync_slop)")
    fuse.add_argument("--skeleton", help="skeleton name (coco17, h36m17, coco19, body25, body25b, halpe26) or YAML file")
    fuse.add_argument("--mode", choices=MODES, default="offline", help="offline: whole recording; streaming: causal")
    fuse.add_argument("--method", choices=METHODS, default="skelsplat")
    fuse.add_argument("--preset", choices=PRESETS, default="default")
    fuse.add_argument(
        "--optimizer", choices=("auto",) + OPTIMIZERS, default="auto",
        help="refinement optimiser; auto = the preset's per stage (see refinement below)",
    )
    fuse.add_argument(
        "--backend", choices=("auto",) + BACKENDS, default="auto",
        help="renderer of the Adam stages; auto = the preset's (gauss_newton has none: closed-form analytic)",
    )
    fuse.add_argument(
        "--device", choices=DEVICES, default="auto",
        help="torch device of the Adam stages; auto = CUDA when torch sees it, else the CPU",
    )
    fuse.add_argument("--fps", type=float, help="frame rate (JSON input has none; needed for .trc; default 30 for the temporal priors)")
    fuse.add_argument("--single-view-joints", action="store_true",
                      help="streaming: also output joints one view sees, placed on its ray by the bone lengths "
                      "(confidence 0)")
    fuse.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small tensors)")
    fuse.add_argument("--quiet", action="store_true", help="no progress bar")
    fuse.add_argument("--people", choices=("subject", "all"), default="subject",
                      help="JSON folders with several people per file: the followed subject (default) or everyone "
                           "(tracked, one output track per person); a 5-D .npz is always everyone")
    fuse.set_defaults(handler=_fuse)

    play = sub.add_parser("play", help="republish a ROS 2 bag with /clock (replay through the node, use_sim_time)")
    play.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    play.add_argument("--topics", help="comma-separated topics to play (default: all of known types)")
    play.add_argument("--start-delay", type=float, default=5.0,
                      help="longest wait (s) for every topic to have a subscriber before playing")
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

    demo = sub.add_parser("demo", help="simulated camera rig -> ROS 2 fusion node, live accuracy and latency")
    from .ros.demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo)
    return parser


def _add_bench_arguments(multi: argparse.ArgumentParser, shelf: argparse.ArgumentParser) -> None:
    # Plain argparse only: the benchmark modules (and scipy, torch) load when the command runs.
    multi.add_argument("--people", default="1,2,3,5", help="comma-separated people per scene")
    multi.add_argument("--views", default="4,8", help="comma-separated camera counts (4 = lab rig, 8 = surround)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
