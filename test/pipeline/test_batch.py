"""``skelsplat batch`` on local worker processes: a generated study (sim/) through real worker processes, outputs
bit-identical to ``skelsplat fuse`` on each take, a broken take reported while the others complete, resumability,
and a worker killed mid-take (its take retried once, then reported failed)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skelsplat_ros.cli import main
from skelsplat_ros.pipeline.fuse import FuseSettings
from skelsplat_ros.pipeline.local import run_local
from skelsplat_ros.pipeline.runner import RECORD, SUMMARY, BatchOptions, run_batch
from skelsplat_ros.pipeline.study import StudyError, find_takes
from skelsplat_ros.pipeline.take import FUSED, StudySettings, run_take
from study_helpers import (BROKEN, FRAMES, GOOD, counting_threads_task, dying_task, make_dying_study,
                           make_study, numba_task, quick_task, single_command_outputs, warm_start_task)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def reference(study, tmp_path_factory) -> dict[str, bytes]:
    return single_command_outputs(study, tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="module")
def first_run(study, tmp_path_factory):
    """``skelsplat batch STUDY --output OUT --workers 2`` once; its exit status and output folder."""
    out = tmp_path_factory.mktemp("out")
    status = main(["batch", str(study), "--output", str(out), "--workers", "2", "--quiet"])
    return status, out


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / SUMMARY, newline="", encoding="utf-8") as file:
        return {row["take"]: row for row in csv.DictReader(file)}


def _never_runs(take, settings, progress):
    raise AssertionError(f"{take.name} was run although it is up to date")


def test_takes_are_found_with_their_calibration_and_problems(tmp_path):
    study = make_study(tmp_path / "study")
    (study / "two_inputs").mkdir()
    for name in ("a.npz", "b.npz"):
        shutil.copy(study / "take_001" / "keypoints.npz", study / "two_inputs" / name)
    takes, ignored = find_takes(study)
    by_name = {take.name: take for take in takes}
    assert [t.name for t in takes] == ["take_000", "take_001", "take_002", "take_003", "take_004", "two_inputs",
                                       "video_take"]
    assert ignored == ["notes"]
    assert by_name["take_000"].calibration == study / "calib.toml"  # inherited from the study
    assert by_name["take_001"].calibration == study / "take_001" / "calib.toml"
    assert by_name["take_001"].keypoints == study / "take_001" / "keypoints.npz" and not by_name["take_001"].problem
    assert "2 keypoint inputs (a.npz, b.npz)" in by_name["two_inputs"].problem
    assert [v.name for v in by_name["video_take"].videos] == ["cam0.mp4", "cam1.mp4"]
    (study / "out" / "take_001").mkdir(parents=True)  # the output folder inside the study: passed over
    (study / "out" / "summary.csv").write_text("take\n")
    assert find_takes(study)[1] == ["notes", "out"]
    assert find_takes(study, exclude=study / "out") == (takes, ["notes"])
    (study / "calib.toml").unlink()
    takes, _ = find_takes(study, exclude=study / "out")
    assert "no calibration" in takes[0].problem
    with pytest.raises(StudyError, match="no study folder"):
        find_takes(tmp_path / "missing")


def test_two_workers_match_skelsplat_fuse_bit_for_bit_and_report_the_broken_take(first_run, reference):
    status, out = first_run
    assert status == 1  # a take failed
    rows = _summary(out)
    assert sorted(rows) == sorted(GOOD + [BROKEN, "video_take"])
    for name in GOOD:
        assert rows[name]["status"] == "done", rows[name]
        assert (out / name / FUSED).read_bytes() == reference[name], f"{name}: batch output differs from fuse's"
        assert int(rows[name]["frames"]) == FRAMES and float(rows[name]["reprojection_median_px"]) < 10
        assert float(rows[name]["seconds"]) > 0
    assert rows["take_003"]["people"] == "2" and rows["take_000"]["people"] == "1"
    assert rows[BROKEN]["status"] == "failed" and "not a valid .npz file" in rows[BROKEN]["reason"]
    assert not (out / BROKEN / FUSED).exists()
    # Its "videos" are not videos: reported by the detect step, the others go on.
    assert rows["video_take"]["status"] == "failed"
    assert rows["video_take"]["reason"].startswith("SourceError: ") and "not a video OpenCV can read" in \
        rows["video_take"]["reason"]
    assert not (out / "notes").exists()


def test_a_second_run_runs_nothing_and_reports_the_same(first_run, study):
    _, out = first_run
    before = {name: os.stat(out / name / FUSED).st_mtime_ns for name in GOOD}
    results = run_batch(study, out, options=BatchOptions(workers=2, progress=False), task=_never_runs,
                        echo=lambda line: None)
    statuses = {r.name: r.status for r in results}
    assert statuses == {**{n: "skipped" for n in GOOD}, BROKEN: "failed", "video_take": "failed"}
    assert "unchanged since" in {r.name: r for r in results}[BROKEN].reason
    assert {name: os.stat(out / name / FUSED).st_mtime_ns for name in GOOD} == before
    assert _summary(out)["take_003"]["people"] == "2"  # figures of the run that made the outputs


def test_changed_inputs_settings_or_force_run_again(study, first_run, tmp_path):
    study = shutil.copytree(study, tmp_path / "study")  # copies keep their modification times
    out = shutil.copytree(first_run[1], tmp_path / "out")

    def ran(settings=StudySettings(), force=False) -> list[str]:
        results = run_batch(study, out, settings, BatchOptions(force=force, progress=False), task=quick_task,
                            echo=lambda line: None)
        return sorted(r.name for r in results if r.status == "done" or "unchanged since" not in r.reason
                      and r.status == "failed")

    later = time.time() + 10
    os.utime(study / "take_001" / "calib.toml", (later, later))  # a newer input: that take alone
    assert ran() == ["take_001"]
    os.utime(study / "take_001" / "calib.toml", (later - 100, later - 100))  # older again, but not what it was
    assert ran() == ["take_001"]
    assert ran() == []
    everything = sorted(GOOD + [BROKEN, "video_take"])
    assert ran(StudySettings(FuseSettings(method="robust"))) == everything  # other settings
    assert ran(StudySettings(FuseSettings(method="robust"))) == []
    assert ran(StudySettings(FuseSettings(method="robust")), force=True) == everything


def test_a_killed_worker_has_its_take_retried_once_then_failed(tmp_path):
    study = make_dying_study(tmp_path / "study")
    takes, _ = find_takes(study)
    events = list(run_local(dying_task, takes, StudySettings(), workers=2))
    results = {e[1].name: e[1] for e in events if e[0] == "result"}
    assert sorted(results) == ["dies_always", "dies_once", "lives"]
    assert results["lives"].status == "done" and results["lives"].reason == ""
    assert results["dies_once"].status == "done"
    assert results["dies_once"].reason == "retried: its first worker died (exit code -9)"
    assert results["dies_always"].status == "failed" and results["dies_always"].transient
    assert results["dies_always"].reason == "its worker died 2 times (exit codes -9, -9)"
    # Progress came from the workers, in frames, ending at the take's frame count.
    finals = {e[1]: e[2:] for e in events if e[0] == "progress"}
    assert finals["lives"] == (FRAMES, FRAMES) and finals["dies_once"] == (FRAMES, FRAMES)


def test_workers_fuse_with_one_thread(study, reference):
    """BLAS, OpenMP and numba in a worker use one thread (2 workers on 2 cores; without the worker environment
    OpenBLAS starts one thread per core), and the output is still what ``fuse`` writes with its default threads."""
    take = {t.name: t for t in find_takes(study)[0]}["take_000"]
    events = list(run_local(counting_threads_task, [take], StudySettings(), workers=1))
    result = events[-1][1]
    assert result.status == "done" and result.notes[-1] == "threads 1"
    assert result.files[FUSED] == reference["take_000"]


def test_workers_start_warm_and_each_in_its_own_process(study):
    """A worker is forked with this package's fusion imported and numba's kernel loaded (by the fork server, once),
    instead of paying for them at its first take; two workers are two processes, neither of them this one."""
    takes = [t for t in find_takes(study)[0] if t.name in GOOD]
    events = list(run_local(warm_start_task, takes, StudySettings(), workers=2))
    notes = [e[1].notes for e in events if e[0] == "result"]
    assert [n[0] for n in notes] == ["warm True"] * len(GOOD)
    pids = {n[1] for n in notes}
    assert len(pids) == 2 and f"pid {os.getpid()}" not in pids


def test_neither_the_fork_server_nor_a_take_imports_numba(study, reference):
    """The image terms are compiled ahead of time (fusion/_image_kernel.c): numba's import and first kernel load
    (0.35 s of CPU, with scipy.linalg) are on no batch command's critical path, and no worker pays for them."""
    pytest.importorskip("skelsplat_ros.fusion._image_kernel")
    take = {t.name: t for t in find_takes(study)[0]}["take_000"]
    result = list(run_local(numba_task, [take], StudySettings(), workers=1))[-1][1]
    assert result.status == "done" and result.notes[-1] == "numba False"
    assert result.files[FUSED] == reference["take_000"]


def test_a_take_whose_worker_died_is_run_again_by_the_next_run(tmp_path):
    study = make_dying_study(tmp_path / "study")
    out = tmp_path / "out"
    (study / "dies_once" / ".tried").touch()
    first = {r.name: r for r in run_batch(study, out, options=BatchOptions(workers=2, progress=False),
                                          task=dying_task, echo=lambda line: None)}
    assert first["dies_always"].status == "failed" and first["dies_once"].status == "done"
    rerun = run_batch(study, out, options=BatchOptions(workers=1, progress=False), task=dying_task,
                      echo=lambda line: None)
    assert {r.name: r.status for r in rerun} == {"dies_always": "failed", "dies_once": "skipped", "lives": "skipped"}
    assert "died 2 times" in rerun[0].reason  # run again (transient), not remembered


def test_settings_file_takes_the_fuse_options(study, tmp_path, capsys):
    settings = tmp_path / "study.toml"
    settings.write_text('[fuse]\nmethod = "triangulate"\nsingle-view-joints = false\nfps = 30\n')
    out = tmp_path / "out"
    status = main(["batch", str(study), "--output", str(out), "--settings", str(settings), "--quiet"])
    assert status == 1
    record = (out / "take_001" / RECORD).read_text()
    assert '\\"method\\": \\"triangulate\\"' in record
    reference = tmp_path / "single.npz"
    assert main(["fuse", "--calibration", str(study / "take_001" / "calib.toml"), "--keypoints",
                 str(study / "take_001" / "keypoints.npz"), "--output", str(reference), "--method", "triangulate",
                 "--fps", "30", "--quiet"]) == 0
    assert (out / "take_001" / FUSED).read_bytes() == reference.read_bytes()
    printed = capsys.readouterr().out
    assert "6 takes: 4 done, 0 up to date, 2 failed" in printed
    assert any(line.split()[:2] == ["take_001", "done"] for line in printed.splitlines())


@pytest.mark.parametrize("text, needle", [
    ('[fuse]\nmethod = "best"\n', "invalid choice: 'best'"),
    ('[fuse]\ncalibration = "x.toml"\n', "[fuse]: unknown settings (paths are per take): --calibration x.toml"),
    ('[fuse]\nthreads = "many"\n', "invalid int value: 'many'"),
    ('[fuse]\noptimizer = "gauss_newton"\nbackend = "raster"\n', "raster"),
    ('[fuse]\npreset = "default"\n[smoothing]\n', "unknown section(s) ['smoothing']"),
    ('[render]\nvideos = "a.mp4"\n', "[render]: unknown settings (paths are per take): --videos a.mp4"),
    ('[render]\nheight = "tall"\n', "argument --height: invalid int value: 'tall'"),
    ('[detect]\ncameras = "a,b"\n', "[detect]: unknown settings ['cameras'] (inputs, output and cameras are per take)"),
    ('[detect]\nbackend = "yolo"\n', "argument --backend: invalid choice: 'yolo'"),
    ('[fuse\n', "unreadable settings"),
])
def test_bad_settings_fail_before_any_take_runs(study, tmp_path, capsys, text, needle):
    settings = tmp_path / "study.toml"
    settings.write_text(text)
    assert main(["batch", str(study), "--output", str(tmp_path / "out"), "--settings", str(settings)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_no_takes_and_bad_options_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    assert "no takes in" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "empty"), "--output", str(tmp_path / "out"), "--workers", "0"]) == 2
    assert "workers must be at least 1" in capsys.readouterr().err


def test_run_take_in_this_process_is_what_a_worker_returns(study, reference):
    take = {t.name: t for t in find_takes(study)[0]}["take_000"]
    seen = []
    result = run_take(take, StudySettings(), lambda done, total: seen.append((done, total)))
    assert result.status == "done" and result.files[FUSED] == reference["take_000"]
    assert seen[-1] == (FRAMES, FRAMES)


def test_ray_without_the_cluster_extra_is_a_one_line_error(study, tmp_path):
    """Everything but ``--ray`` works without Ray; ``--ray`` then says what to install (emulated: ray unimportable)."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "from skelsplat_ros.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    run = subprocess.run([sys.executable, "-c", code, "batch", str(study), "--output", str(tmp_path / "out"), "--ray"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == ("skelsplat batch: error: --ray needs Ray: pip install 'skelsplat_ros[cluster]' "
                                  "(or pip install ray)")


def test_fuse_defaults_are_one_set_of_settings():
    """`skelsplat fuse` without options, an empty [fuse] table and ``FuseSettings()`` are the same settings, so
    outputs made through the API are up to date for the command, and the other way round."""
    from skelsplat_ros.cli import _study_detect_settings, _study_fuse_settings, build_parser
    from skelsplat_ros.detection import DetectorConfig

    parsed = build_parser().parse_args(["fuse", "--keypoints", "k.npz", "--output", "o.npz"])
    assert FuseSettings.from_namespace(parsed) == _study_fuse_settings({}, "settings") == FuseSettings()
    assert _study_detect_settings({}, "settings") == DetectorConfig()



PARSER_PROBE = """
import sys
import multiprocessing.forkserver as forkserver
from skelsplat_ros import cli

build_parser = cli.build_parser

def probe():
    print("server before the parser:", forkserver._forkserver._forkserver_pid is not None, flush=True)
    return build_parser()

cli.build_parser = probe
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("extra, output_exists, started", [
    ([], False, True), (["--force"], True, True), ([], True, False), (["--ray"], False, False),
    (["--workers", "two"], False, False)])
def test_the_workers_server_starts_before_the_command_line_parser(tmp_path, extra, output_exists, started):
    """The parser imports the fusion package (about 0.4 s): a batch whose takes will run on local workers (a new
    output folder, or --force) starts their fork server first, so that its preload overlaps that; not for Ray, not
    for a second run (it may run nothing), nor for arguments it cannot read (the parser reports them)."""
    (tmp_path / "study").mkdir()
    if output_exists:
        (tmp_path / "out").mkdir()
    run = subprocess.run([sys.executable, "-c", PARSER_PROBE, "batch", str(tmp_path / "study"), "--output",
                          str(tmp_path / "out"), "--quiet", *extra], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr  # an empty study, or the bad --workers: a one-line error either way
    assert f"server before the parser: {started}" in run.stdout


def test_the_process_running_batch_never_loads_the_fusion_scipy_or_numba():
    """What the command's own process does besides waiting (parse the command line and a study's settings, check
    them, read the workers' results) loads none of the takes' modules: they load in the workers (the fork server,
    Ray's), and in this process they would cost their import and teardown on every command, before Ray's connect."""
    script = (
        "import pickle, sys\n"
        "from skelsplat_ros.cli import _study_detect_settings, _study_fuse_settings, build_parser\n"
        "from skelsplat_ros.pipeline import local, runner, take\n"
        "build_parser().parse_args(['batch', 'STUDY', '--output', 'OUT'])\n"
        "_study_fuse_settings({'preset': 'default', 'mode': 'streaming', 'lag': 0.2}, 'x').fusion_config()\n"
        "_study_detect_settings({}, 'x')\n"
        "pickle.loads(pickle.dumps(take.TakeResult('t', 'done', files={'fused.npz': b'1'})))\n"
        "heavy = ('scipy', 'numba', 'torch', 'skelsplat_ros.fusion.offline', 'skelsplat_ros.pipeline.fuse')\n"
        "print(' '.join(name for name in heavy if name in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == []
