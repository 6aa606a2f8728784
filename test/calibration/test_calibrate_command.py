"""``skelsplat calibrate`` end to end on files: the inputs ``fuse`` reads, what it prints, when it writes, exit codes."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.calibration.refine import rig_change
from skelsplat_ros.cli import main
from skelsplat_ros.geometry.calibration import load_calibration, save_calibration
from skelsplat_ros.io.keypoints import KeypointSet, save_openpose_folder

from skelsplat_ros.sim import disturb_rig

from calibration_helpers import scene  # noqa: E402  (test/calibration is on sys.path: pytest prepend)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The two-person scene as a 5-D NPZ and a JSON folder, its first person as a 4-D NPZ, a rough calibration."""
    folder = tmp_path_factory.mktemp("calibrate")
    sc = scene(2)
    rough = disturb_rig(sc.rig, [2, 3], seed=21)
    save_calibration(rough, folder / "rough.toml")
    np.savez(folder / "people.npz", keypoints=sc.keypoints, cameras=np.array(sc.rig.names), fps=30.0,
             skeleton="h36m17")
    np.savez(folder / "one.npz", keypoints=sc.person_keypoints[:, :, 0], cameras=np.array(sc.rig.names), fps=30.0,
             skeleton="h36m17")
    subject = KeypointSet(sc.person_keypoints[:, :, 0], sc.rig.names, 30.0, "h36m17")
    save_openpose_folder(subject, folder / "json", others=sc.person_keypoints[:, :, 1:])
    return folder, sc


def _run(files, capsys, keypoints: str, output: str, *extra: str) -> tuple[int, str]:
    folder, _ = files
    code = main(["calibrate", "--calibration", str(folder / "rough.toml"), "--keypoints", str(folder / keypoints),
                 "--output", str(folder / output), "--max-frames", "60", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("keypoints", ["people.npz", "one.npz", "json"])
def test_every_keypoints_input_gives_the_refined_rig(files, capsys, keypoints):
    folder, sc = files
    output = f"refined_{keypoints.replace('.', '_')}.toml"
    extra = ("--skeleton", "h36m17", "--fps", "30") if keypoints == "json" else ()
    code, text = _run(files, capsys, keypoints, output, "--fixed", "cam0,cam1", *extra)
    print(text)
    assert code == 0, text
    refined = load_calibration(folder / output)
    for truth, camera in zip(sc.rig, refined):
        rotation, translation = rig_change(truth, camera)
        assert rotation < 0.3 and translation < 0.02, (camera.name, rotation, translation)
    for words in ("rotation", "translation", "before -> after", "inliers", "detection noise", "converged",
                  "refined calibration written"):
        assert words in text
    assert "cam2         refined" in text


def test_an_existing_output_is_never_overwritten_without_being_asked(files, capsys):
    folder, _ = files
    (folder / "taken.toml").write_text("precious\n")
    code, text = _run(files, capsys, "one.npz", "taken.toml", "--fixed", "cam0,cam1")
    assert code == 2 and "--overwrite" in text
    assert (folder / "taken.toml").read_text() == "precious\n"
    code, text = _run(files, capsys, "one.npz", "taken.toml", "--fixed", "cam0,cam1", "--overwrite")
    assert code == 0 and "(replaced)" in text
    assert load_calibration(folder / "taken.toml").names == ["cam0", "cam1", "cam2", "cam3"]


def test_a_refusal_writes_nothing_explains_and_exits_1(files, capsys):
    folder, sc = files
    save_calibration(disturb_rig(sc.rig, [2, 3], seed=22, degrees=(35.0, 45.0)), folder / "far.toml")
    code = main(["calibrate", "--calibration", str(folder / "far.toml"), "--keypoints", str(folder / "one.npz"),
                 "--output", str(folder / "never.toml"), "--fixed", "cam0,cam1", "--max-frames", "60"])
    text = capsys.readouterr().out
    assert code == 1
    assert "refused:" in text and "beyond the refinement's basin" in text and "not written" in text
    assert not (folder / "never.toml").exists()


@pytest.mark.parametrize("args, words", [
    ((), "exactly one scale anchor"),
    (("--fixed", "cam0,nocam"), "unknown camera"),
    (("--baseline", "cam0", "cam1", "far"), "is not a distance"),
    (("--keep-size", "--height", "1.8"), "exactly one scale anchor"),
])
def test_bad_anchors_are_one_line_errors(files, capsys, args, words):
    code, text = _run(files, capsys, "one.npz", "bad.toml", *args)
    assert code == 2 and words in text and text.count("\n") == 1
