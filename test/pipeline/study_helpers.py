"""The small generated study of the batch tests (shared by the local and the Ray tests) and its reference outputs:
``skelsplat fuse`` run on each take, the single command the batch must match bit for bit."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from skelsplat_ros.bench.batch import write_study
from skelsplat_ros.cli import main
from skelsplat_ros.pipeline.take import TakeResult, run_take

FRAMES = 40
GOOD = ["take_000", "take_001", "take_003", "take_004"]  # take_003: two people (5-D keypoints)
BROKEN = "take_002"  # its keypoints.npz is cut short


def make_study(folder: Path) -> Path:
    """Five generated takes (one broken, one of two people, one inheriting the study's calibration), a video take
    and a folder that is not a take."""
    write_study(folder, takes=5, frames=FRAMES, broken=(2,), people_every=4)
    (folder / "video_take").mkdir()
    for camera in ("cam0", "cam1"):
        (folder / "video_take" / f"{camera}.mp4").write_bytes(b"not a video")
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("not a take\n")
    return folder


def single_command_outputs(study: Path, folder: Path) -> dict[str, bytes]:
    """``skelsplat fuse`` on every good take of ``study``: take name -> the bytes of its output .npz."""
    outputs = {}
    for name in GOOD:
        calibration = study / name / "calib.toml"
        if not calibration.exists():
            calibration = study / "calib.toml"
        output = folder / f"{name}.npz"
        assert main(["fuse", "--calibration", str(calibration), "--keypoints", str(study / name / "keypoints.npz"),
                     "--output", str(output), "--quiet"]) == 0
        outputs[name] = output.read_bytes()
    return outputs


def dying_task(take, settings, progress):
    """:func:`run_take`, except that the worker process running it is killed (SIGKILL, as the kernel's OOM killer
    does): always for a take named ``dies_always``, on the first try only for ``dies_once`` (a marker file in the
    take's folder remembers the try)."""
    marker = take.folder / ".tried"
    if take.name == "dies_always" or (take.name == "dies_once" and not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return run_take(take, settings, progress)


def make_dying_study(folder: Path) -> Path:
    """Three generated takes renamed ``dies_once``, ``dies_always`` and ``lives``."""
    write_study(folder, takes=3, frames=FRAMES)
    (folder / "calib.toml").rename(folder / "take_000" / "calib.toml")
    for old, new in (("take_000", "dies_once"), ("take_001", "dies_always"), ("take_002", "lives")):
        (folder / old).rename(folder / new)
    return folder


def quick_task(take, settings, progress):
    """A take's work without the fusion (for tests of what the runner runs): done, one small output file."""
    return TakeResult(take.name, "done", files={"fused.npz": b"quick"})


def counting_threads_task(take, settings, progress):
    """:func:`run_take`, then the number of threads of the worker process in the result's notes."""
    result = run_take(take, settings, progress)
    result.notes.append(f"threads {len(os.listdir('/proc/self/task'))}")
    return result


def warm_start_task(take, settings, progress):
    """What the worker process had loaded before its take: a result whose notes say whether this package's fusion
    and the compiled image kernel were there already."""
    loaded = all(name in sys.modules for name in ("skelsplat_ros.pipeline.fuse", "skelsplat_ros.fusion._image_kernel"))
    return TakeResult(take.name, "done", notes=[f"warm {loaded}", f"pid {os.getpid()}"])


def numba_task(take, settings, progress):
    """:func:`run_take`, with a note saying whether its worker had imported numba by the take's end."""
    result = run_take(take, settings, progress)
    result.notes.append(f"numba {'numba' in sys.modules}")
    return result


def environment_task(take, settings, progress):
    """A take that reports its worker's thread settings: notes ``NAME=value`` of the variables of ONE_THREAD."""
    from skelsplat_ros.pipeline.local import ONE_THREAD

    return TakeResult(take.name, "done", notes=[f"{key}={os.environ.get(key)}" for key in sorted(ONE_THREAD)])
