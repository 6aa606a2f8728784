"""``skelsplat``: the command line. ``fuse`` runs the fusion core on recorded data; ``bench`` and ``demo`` below."""

from __future__ import annotations

import argparse
import sys
import time

FUSE_EPILOG = """\
keypoints (KP):
  an .npz with keypoints [V, F, J, 3] (x px, y px, confidence in [0, 1]; NaN or confidence 0 = missing),
  cameras [V] (names matching the calibration), optional fps and skeleton; or a folder holding one
  <camera>_json/ folder per camera (OpenPose/Pose2Sim JSON, one file per frame). When a JSON file holds
  several people, the subject fused is the person with the highest mean keypoint confidence in that file.
  Camera names are matched to the calibration exactly, else ignoring case, separators and leading zeros.

output (OUT): .npz (joints [F, J, 3] in calibration units, confidence [F, J], covariance [F, J, 3, 3],
  joint_names [J], num_views, reprojection_error), .trc (OpenSim/Pose2Sim, Y-up) or .csv.
  Joints nobody can estimate are NaN with confidence 0.
"""


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _fuse(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .fusion import fuse_offline, fuse_streaming, preset_config
    from .fusion.renderers import get_renderer
    from .geometry.calibration import load_calibration
    from .io.export import check_result_path, save_result
    from .io.keypoints import align_to_rig, load_keypoints
    from .skeleton.models import get_skeleton

    torch.set_num_threads(max(1, args.threads))
    rig = load_calibration(args.calibration)
    keypoints = load_keypoints(args.keypoints, skeleton=args.skeleton, fps=args.fps)
    skeleton_name = args.skeleton or keypoints.skeleton
    if not skeleton_name:
        raise CliError("no skeleton given: pass --skeleton NAME (the keypoints do not name one)")
    skeleton = get_skeleton(skeleton_name)
    if keypoints.num_joints != skeleton.num_joints:
        raise CliError(f"keypoints have {keypoints.num_joints} joints, skeleton {skeleton.name!r} has {skeleton.num_joints}")
    keypoints, rig = align_to_rig(keypoints, rig)
    output = check_result_path(args.output, keypoints.fps)
    config = preset_config(args.preset, args.method, None if args.backend == "auto" else args.backend)
    if args.method == "skelsplat":
        get_renderer(config.refine.backend, config.refine.device)  # fail fast on an unusable backend

    data = keypoints.keypoints
    num_frames = data.shape[1]
    progress = _progress_bar(num_frames, enabled=not args.quiet)
    start = time.perf_counter()
    if args.mode == "offline":
        result = fuse_offline(rig, skeleton, data, config, progress=progress)
    else:
        result = fuse_streaming(rig, skeleton, data, config, keypoints.fps or 30.0, progress=progress)
    elapsed = time.perf_counter() - start
    progress(num_frames, num_frames, close=True)
    save_result(
        output, result.joints, result.confidence, result.covariance, result.joint_names, keypoints.fps,
        num_views=result.num_views, reprojection_error=result.reprojection_error,
    )
    estimated = np.isfinite(result.joints).all(-1)
    print(
        f"fused {num_frames} frames x {skeleton.num_joints} joints from {len(rig)} views "
        f"({args.method}, {args.mode}, preset {args.preset}) in {elapsed:.2f} s "
        f"({num_frames / max(elapsed, 1e-9):.0f} frames/s); "
        f"{100 * estimated.mean():.1f}% joints estimated, median reprojection error "
        f"{np.nanmedian(result.reprojection_error) if estimated.any() else float('nan'):.2f} px -> {output}"
    )
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


def _bench(args: argparse.Namespace) -> int:
    from .bench.engine import run_cli

    return run_cli(args)


def build_parser() -> argparse.ArgumentParser:
    from .fusion.config import BACKENDS, METHODS, MODES, PRESETS

    parser = argparse.ArgumentParser(prog="skelsplat", description="Multi-view 3D human skeletons by Gaussian-splat refinement.")
    sub = parser.add_subparsers(dest="command", required=True)

    fuse = sub.add_parser(
        "fuse", help="fuse recorded multi-view keypoints into 3D", epilog=FUSE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fuse.add_argument("--calibration", required=True, help="Pose2Sim/Anipose calibration TOML")
    fuse.add_argument("--keypoints", required=True, help="keypoints .npz or folder of <camera>_json/ folders")
    fuse.add_argument("--output", required=True, help="output .npz, .trc or .csv")
    fuse.add_argument("--skeleton", help="skeleton name (coco17, h36m17, coco19, body25, body25b, halpe26) or YAML file")
    fuse.add_argument("--mode", choices=MODES, default="offline", help="offline: whole recording; streaming: causal")
    fuse.add_argument("--method", choices=METHODS, default="skelsplat")
    fuse.add_argument("--preset", choices=PRESETS, default="default")
    fuse.add_argument("--backend", choices=("auto",) + BACKENDS, default="auto")
    fuse.add_argument("--fps", type=float, help="frame rate (JSON input has none; needed for .trc, default 30 for streaming)")
    fuse.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small tensors)")
    fuse.add_argument("--quiet", action="store_true", help="no progress bar")
    fuse.set_defaults(handler=_fuse)

    bench = sub.add_parser("bench", help="accuracy and speed benchmark on simulated rigs with ground truth")
    bench.add_argument("--rigs", default="all", help="comma-separated rig kinds ('all' = every simulated rig)")
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
    bench.set_defaults(handler=_bench)

    demo = sub.add_parser("demo", help="simulated camera rig -> ROS 2 fusion node, live accuracy and latency")
    from .ros.demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo)
    return parser


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
