"""``skelsplat batch --ray [ADDRESS]``: the takes as Ray tasks (imported only when chosen; ``pip install
.[cluster]``).

Each take is one task (one CPU). Its inputs are read by path on whichever node runs it, so STUDY_DIR must be
readable at the same path on every node (a shared file system); its output files come back as the task's return
value (through Ray's object store) and the machine running ``skelsplat batch`` writes OUT_DIR. A task whose worker
process dies is retried once by Ray (``max_retries=1``), then reported failed.

Ray keeps a job's worker processes from task to task, so a worker imports this package (numpy, scipy.linalg and the
compiled image kernel; no numba) at its first take only; the take's work and the study's settings are put in the
object store once, not sent with every task. Threads: Ray starts the worker of a one-CPU task with
``OMP_NUM_THREADS=1`` (unless the cluster's environment sets it), which BLAS, OpenMP and torch follow; a local
instance started here has every variable of :data:`~skelsplat_ros.pipeline.local.ONE_THREAD` in the environment of
its processes. No ``runtime_env`` is asked for: a job with one cannot use the workers an instance starts in advance,
and waits for new ones (measured: 1.2 to 1.6 s more per run of a 2-CPU local instance).

Progress comes per finished take (its frames), not frame by frame: a channel from the tasks (an actor) costs a
process of its own, and tasks that report to it wait for it to start (measured: seconds per take on 2 cores).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterator

import ray

from .local import MAX_ATTEMPTS, ONE_THREAD, Event, temporary_environment
from .study import Take
from .take import StudySettings, TakeResult, TakeTask, execute


@ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS - 1)
def _take_task(work: tuple[TakeTask, StudySettings], take: Take) -> TakeResult:
    """One take on a Ray worker (one CPU; retried once when the worker dies); ``work`` comes from the object store."""
    task, settings = work
    return execute(task, take, settings, lambda name, done, total: None)


def _absolute(take: Take) -> Take:
    """``take`` with absolute paths: a Ray worker runs in a working directory of its own, not this process's."""
    def absolute(path):
        return None if path is None else path.absolute()

    return replace(take, folder=take.folder.absolute(), calibration=absolute(take.calibration),
                   keypoints=absolute(take.keypoints), videos=tuple(p.absolute() for p in take.videos))


def connect(address: str | None, workers: int) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the one this machine belongs to; ``ray://host:10001``: through
    Ray Client), or start a local instance with ``workers`` CPUs when ``address`` is None. Returns whether this call
    started or joined it (and so should shut it down); an already initialised Ray is used as it is."""
    if ray.is_initialized():
        return False
    if address is None:
        with temporary_environment(ONE_THREAD):  # inherited by the instance's processes and so by its workers
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def disconnect() -> None:
    """Leave the cluster (a local instance stops)."""
    ray.shutdown()


def run_ray(task: TakeTask, takes: list[Take], settings: StudySettings, address: str | None,
            workers: int) -> Iterator[Event]:
    """Run ``task`` on every take as Ray tasks; yields a note on the cluster, then one result per take as they
    finish."""
    start = time.perf_counter()
    owned = connect(address, workers)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    how = "started a local instance" if owned and address is None else "joined" if owned else "using"
    yield "note", f"Ray: {how} ({cpus} CPUs) in {time.perf_counter() - start:.1f} s"
    try:
        work = ray.put((task, settings))
        running = {_take_task.remote(work, _absolute(take)): take for take in takes}
        while running:
            finished, _ = ray.wait(list(running), num_returns=1)
            for ref in finished:
                take = running.pop(ref)
                try:
                    yield "result", ray.get(ref)
                except ray.exceptions.RayError as error:  # the worker died on every try, or its node went away
                    reason = " ".join(str(error).split())[:300]
                    yield "result", TakeResult.failed(take.name, f"{type(error).__name__} after {MAX_ATTEMPTS} tries: "
                                                      f"{reason}", transient=True)
    finally:
        if owned:
            disconnect()
