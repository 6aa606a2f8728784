"""``skelsplat batch --ray`` on a local Ray instance started by this module (one for all its tests: starting Ray
costs seconds): the same generated study as the local tests, outputs bit-identical to ``skelsplat fuse``, the
broken take reported, and a worker killed mid-take (Ray retries its task once, then it is reported failed)."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the .[cluster] extra (make setup installs it)")

import study_helpers  # noqa: E402
from skelsplat_ros.cli import main  # noqa: E402
from skelsplat_ros.pipeline import ray_backend  # noqa: E402
from skelsplat_ros.pipeline.local import ONE_THREAD  # noqa: E402
from skelsplat_ros.pipeline.runner import SUMMARY, BatchOptions, run_batch  # noqa: E402
from skelsplat_ros.pipeline.take import FUSED  # noqa: E402
from skelsplat_ros.bench.batch import write_study  # noqa: E402
from study_helpers import (BROKEN, GOOD, dying_task, make_dying_study, make_study,  # noqa: E402
                           single_command_outputs)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs, started as ``skelsplat batch --ray`` starts one; the batch runs use it as
    found."""
    assert ray_backend.connect(None, 2)
    # The test's own task (dying_task) lives in a test module that Ray workers cannot import: send it by value.
    ray.cloudpickle.register_pickle_by_value(study_helpers)
    yield
    ray.cloudpickle.unregister_pickle_by_value(study_helpers)
    ray_backend.disconnect()


def test_ray_outputs_match_skelsplat_fuse_and_the_broken_take_is_reported(local_ray, tmp_path):
    study = make_study(tmp_path / "study")
    reference = single_command_outputs(study, tmp_path / "single")
    out = tmp_path / "out"
    assert main(["batch", str(study), "--output", str(out), "--ray", "--quiet"]) == 1
    with open(out / SUMMARY, newline="", encoding="utf-8") as file:
        rows = {row["take"]: row for row in csv.DictReader(file)}
    for name in GOOD:
        assert rows[name]["status"] == "done", rows[name]
        assert (out / name / FUSED).read_bytes() == reference[name], f"{name}: Ray output differs from fuse's"
    assert rows[BROKEN]["status"] == "failed" and "not a valid .npz file" in rows[BROKEN]["reason"]
    assert rows["video_take"]["status"] == "failed"
    assert ray.is_initialized()  # an instance it did not start is left running


def test_ray_reads_a_study_given_by_a_relative_path(local_ray, tmp_path):
    """``skelsplat batch study --ray ADDRESS`` run in another directory than the instance's: a new job, whose Ray
    workers run in a working directory of their own, gets the takes by absolute paths."""
    study = make_study(tmp_path / "study")
    reference = single_command_outputs(study, tmp_path / "single")
    environment = ray_backend.client_environment()
    address = ray.get_runtime_context().gcs_address
    with subprocess.Popen([sys.executable, "-m", "skelsplat_ros.cli", "batch", "study", "--output", "out", "--ray",
                           address, "--quiet"], cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as run:
        stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stdout + stderr  # the broken take
    with open(tmp_path / "out" / SUMMARY, newline="", encoding="utf-8") as file:
        rows = {row["take"]: row for row in csv.DictReader(file)}
    for name in GOOD:
        assert rows[name]["status"] == "done", rows[name]
        assert (tmp_path / "out" / name / FUSED).read_bytes() == reference[name]
    # The command left the cluster by ending its process (no ray.shutdown()): what it printed came out whole, and
    # Ray ended its job as it ends any driver's that exits (the GCS marks it dead once the raylet has seen the
    # driver's connection close: on a loaded machine, a moment after the process ended).
    assert "6 takes: 4 done, 0 up to date, 2 failed" in stdout, stdout
    deadline = time.monotonic() + 20
    while True:
        job = [j for j in ray._private.state.jobs() if j["DriverPid"] == run.pid]
        if len(job) != 1 or job[0]["IsDead"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(job) == 1 and job[0]["IsDead"], job


def test_ray_retries_a_take_whose_worker_was_killed_once_then_reports_it_failed(local_ray, tmp_path):
    study = make_dying_study(tmp_path / "study")
    results = {r.name: r for r in run_batch(study, tmp_path / "out", options=BatchOptions(ray=True, progress=False),
                                            task=dying_task, echo=lambda line: None)}
    assert results["lives"].status == "done"
    assert results["dies_once"].status == "done" and (study / "dies_once" / ".tried").exists()  # the second try
    assert results["dies_always"].status == "failed" and results["dies_always"].transient
    assert results["dies_always"].reason.startswith("WorkerCrashedError after 2 tries: The worker died")


def test_ray_workers_run_with_one_thread_for_blas_openmp_and_numba(local_ray, tmp_path):
    """The local instance's workers have the local workers' one-thread environment (no runtime_env asked for)."""
    study = make_study(tmp_path / "study")
    results = run_batch(study, tmp_path / "out", options=BatchOptions(ray=True, progress=False),
                        task=study_helpers.environment_task, echo=lambda line: None)
    expected = [f"{key}={value}" for key, value in sorted(ONE_THREAD.items())]
    assert all(r.notes == expected for r in results if r.status == "done") and len(results) == 6


def test_a_take_on_a_ray_worker_imports_no_numba(local_ray, tmp_path):
    """The image terms are compiled ahead of time (fusion/_image_kernel.c): a new job's Ray workers run its takes
    without loading numba (its import and first kernel load, 0.35 s of CPU, were on every job's critical path). A
    job of its own, as ``skelsplat batch --ray ADDRESS`` is: this module's job has run takes of two people, whose
    tracker does load numba, on its workers."""
    pytest.importorskip("skelsplat_ros.fusion._image_kernel")

    write_study(tmp_path / "study", takes=3, frames=40)  # one person each
    notes = _batch_as_a_new_job(tmp_path / "study", tmp_path / "out", "numba_task")
    assert [take[-1] for take in notes] == ["numba False"] * 3


def test_a_new_job_s_first_worker_loads_a_take_s_modules_before_the_takes_come(local_ray, tmp_path):
    """``ray_backend.start`` (called by ``skelsplat batch --ray`` first thing): the job's first worker process starts
    and loads what a take needs while the command reads its settings and scans the study, so that its takes, its
    first included, find them loaded; the job's other worker (started beside it by the raylet) loads them at its
    first take. A job of its own, as the command is (this module's job has loaded them on its workers long ago)."""
    write_study(tmp_path / "study", takes=4, frames=40)
    notes = _batch_as_a_new_job(tmp_path / "study", tmp_path / "start", "warm_start_task", start=True)
    by_worker: dict[str, list[str]] = {}
    for warm, pid in notes:
        by_worker.setdefault(pid, []).append(warm)
    assert any(set(warms) == {"warm True"} for warms in by_worker.values()), by_worker
    assert sum(warms.count("warm False") for warms in by_worker.values()) <= len(by_worker) - 1, by_worker


def test_a_new_job_starts_no_more_worker_processes_than_the_instance_has_cpus(local_ray, tmp_path):
    """``skelsplat batch --ray ADDRESS``, a new job on a running 2-CPU instance: two worker processes, not three.
    Submitting a warm-up task per CPU (or the takes) at once had the raylet start a third, which never ran a task
    but started Python, Ray and this package beside the two on the same cores (``ray_backend``'s docstring). The
    job's workers are counted by their log files, which the raylet names after the job. The old way started three
    in every job; this one two in most (one job in eight still got a third, when the second worker had not yet
    registered as the warm-up returned), so up to three jobs run until one starts two. A job that starts none ran
    on the instance's idle workers (its first job, when this test runs alone) and does not count."""
    write_study(tmp_path / "study", takes=4, frames=40)
    environment = ray_backend.client_environment()
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    counted: list[int] = []
    for attempt in range(4):
        with subprocess.Popen([sys.executable, "-m", "skelsplat_ros.cli", "batch", str(tmp_path / "study"),
                               "--output", str(tmp_path / f"out{attempt}"), "--ray",
                               ray.get_runtime_context().gcs_address, "--quiet"],
                              env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
            stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0 and "4 takes: 4 done" in stdout, stdout + stderr
        job = [j for j in ray._private.state.jobs() if j["DriverPid"] == run.pid]
        assert len(job) == 1, job
        started = len(list(logs.glob(f"worker-*-{job[0]['JobID']}-*.out")))
        counted += [started] if started else []
        if started == 2 or len(counted) == 3:
            break
    assert int(ray.cluster_resources()["CPU"]) == 2 and 2 in counted, counted


def _batch_as_a_new_job(study: Path, out: Path, task: str, start: bool = False) -> list[list[str]]:
    """``run_batch`` of ``study_helpers.<task>`` on the module's instance from a process of its own (a Ray job of
    its own, as ``skelsplat batch --ray ADDRESS`` is; ``start``: after ``ray_backend.start``, as the command calls
    it): the notes of each take done."""
    code = ("import sys\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import ray, study_helpers\n"
            "from skelsplat_ros.pipeline import ray_backend\n"
            "from skelsplat_ros.pipeline.runner import BatchOptions, run_batch\n"
            "ray.cloudpickle.register_pickle_by_value(study_helpers)\n"
            "if sys.argv[4] == 'start':\n"
            "    ray_backend.start(sys.argv[3], 1, 4)\n"
            "options = BatchOptions(ray=True, ray_address=sys.argv[3], progress=False)\n"
            f"results = run_batch(sys.argv[1], sys.argv[2], options=options, task=study_helpers.{task},\n"
            "                    echo=lambda line: None)\n"
            "print(';'.join('|'.join(r.notes) for r in results if r.status == 'done'))\n")
    environment = ray_backend.client_environment()
    run = subprocess.run([sys.executable, "-c", code, str(study), str(out), ray.get_runtime_context().gcs_address,
                          "start" if start else "plain"], env=environment, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    return [entry.split("|") for entry in run.stdout.strip().splitlines()[-1].split(";")]


def test_a_cluster_address_where_nothing_listens_is_a_one_line_error_at_once(tmp_path):
    """``--ray HOST:PORT`` with no cluster there: ``ray.init`` alone retries for minutes; the command says so at once
    (the subprocess's timeout turns such a hang into a failure)."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on: bound, then freed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_study(tmp_path / "study", takes=1, frames=5)
    run = subprocess.run([sys.executable, "-m", "skelsplat_ros.cli", "batch", str(tmp_path / "study"), "--output",
                          str(tmp_path / "out"), "--ray", f"127.0.0.1:{port}", "--quiet"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().startswith(f"skelsplat batch: error: no Ray cluster answers at 127.0.0.1:{port} ("), \
        run.stderr
    assert not (tmp_path / "out" / "take_000").exists()
