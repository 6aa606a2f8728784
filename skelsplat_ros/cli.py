"""``skelsplat``: the command line. ``fuse`` runs the fusion core on recorded data, ``batch`` on a study of many;
``bench`` and ``demo`` below."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline.fuse import FuseSettings

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
    bar: list = []  # [callback, done, total]: made at the first report, when the frame count is known

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(_progress_bar(total, enabled=not args.quiet))
        bar[1:] = [done, total]
        bar[0](done, total)

    try:
        report = fuse_file(args.calibration, args.keypoints, args.output, settings, progress=progress)
    finally:
        if bar:
            bar[0](bar[1], bar[2], close=True)
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
                                               stamps=there_stamps, rigs=rigs), recording.timeline)
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

    from .fusion import fuse_offline, fuse_streaming
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
        result = spread_result(fuse_streaming(frames.rigs[0], skeleton, frames.keypoints[:, there], config,
                                              frames.fps, stamps=stamps, rigs=rigs), frames.timeline)
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
    from .pipeline.fuse import FuseSettings

    parser = _SettingsParser(prog=source, add_help=False, allow_abbrev=False)
    _add_fuse_options(parser)
    argv: list[str] = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return FuseSettings.from_namespace(parser.parse_args(argv))


def _batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .pipeline.runner import BatchOptions, run_batch
    from .pipeline.study import SETTINGS_FILE, read_settings
    from .pipeline.take import StudySettings

    path = Path(args.settings) if args.settings else Path(args.study) / SETTINGS_FILE
    sections = read_settings(path) if args.settings or path.is_file() else {}
    for step in ("detect", "render"):
        if step in sections:
            raise CliError(f"{path}: [{step}]: the {step} step is not available in this build")
    fuse = _study_fuse_settings(sections.get("fuse", {}), f"{path} [fuse]")
    fuse.fusion_config()  # an impossible combination fails before any take runs
    options = BatchOptions(workers=args.workers, ray=args.ray is not None, ray_address=args.ray or None,
                           force=args.force, progress=not args.quiet)
    results = run_batch(args.study, args.output, StudySettings(fuse), options)
    return 1 if any(result.status == "failed" for result in results) else 0


BATCH_EPILOG = """\
study: a folder of takes, one sub-folder each, holding a keypoints input that `fuse` reads (one .npz, or
  <camera>_json/ folders) or one video per camera (the detect step: not in this build yet), and a calibration
  (calib*.toml in the take, else the study's own calib*.toml). Settings: STUDY/skelsplat.toml or --settings, a
  [fuse] table whose keys are the options of `skelsplat fuse` without their paths, e.g.
      [fuse]
      skeleton = "coco17"
      preset = "default"
      fps = 50
outputs: OUT/<take>/fused.npz (what `skelsplat fuse` writes for the take), OUT/<take>/take.json (its record) and
  OUT/summary.csv (take, status, frames, people, reprojection_median_px, seconds, reason). A take is skipped when
  its outputs are newer than its inputs and were made with the same settings (--force runs it anyway). A failed
  take is reported with its reason and the others go on; exit status 1 when any failed.
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
    batch.add_argument("study", help="folder of takes (see below)")
    batch.add_argument("--output", required=True, help="output folder: <take>/fused.npz and summary.csv")
    batch.add_argument("--settings", help="the study's settings TOML (default: STUDY/skelsplat.toml when present)")
    batch.add_argument("--workers", type=int, default=1, help="local worker processes (one thread each)")
    batch.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run the takes as Ray tasks: on the cluster at ADDRESS, or on a local instance")
    batch.add_argument("--force", action="store_true", help="run every take, even those whose outputs are up to date")
    batch.add_argument("--quiet", action="store_true", help="no progress bars")
    batch.set_defaults(handler=_batch)

    play = sub.add_parser("play", help="republish a ROS 2 bag with /clock (replay through the node, use_sim_time)")
    play.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    play.add_argument("--topics", help="comma-separated topics to play (default: all of known types)")
    play.add_argument("--start-delay", type=float, default=5.0,
                      help="longest wait (s) for every topic to have a subscriber before playing")
    play.add_argument("--clock-rate", type=float, default=100.0, help="/clock messages per second between messages")
    play.set_defaults(handler=_play)

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

    bench_batch = sub.add_parser("bench-batch", help="skelsplat batch on a generated study: scaling over workers "
                                 "and Ray, identity with fuse, resumption, cost per camera-frame")
    _add_bench_batch_arguments(bench_batch)
    bench_batch.set_defaults(handler=_bench_batch)

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
