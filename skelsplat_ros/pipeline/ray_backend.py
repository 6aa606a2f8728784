"""``skelsplat batch --ray [ADDRESS]``: the takes as Ray tasks (imported only when chosen; ``pip install
.[cluster]``).

Each take is one task (one CPU). Its inputs are read by path on whichever node runs it, so STUDY_DIR must be
readable at the same path on every node (a shared file system); its output files come back as the task's return
value (through Ray's object store) and the machine running ``skelsplat batch`` writes OUT_DIR. A task whose worker
process dies is retried once by Ray (``max_retries=1``), then reported failed. Workers run with one thread
(:data:`~skelsplat_ros.pipeline.local.ONE_THREAD`), as local workers do.

Progress comes per finished take (its frames), not frame by frame: a channel from the tasks (an actor) costs a
process of its own, and tasks that report to it wait for it to start (measured: seconds per take on 2 cores).
"""

from __future__ import annotations

from typing import Iterator

import ray

from .local import MAX_ATTEMPTS, ONE_THREAD, Event
from .study import Take
from .take import StudySettings, TakeResult, TakeTask, execute


@ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS - 1)
def _take_task(task: TakeTask, take: Take, settings: StudySettings) -> TakeResult:
    """One take on a Ray worker (one CPU; retried once when the worker dies)."""
    return execute(task, take, settings, lambda name, done, total: None)


def connect(address: str | None, workers: int) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the one this machine belongs to; ``ray://host:10001``: through
    Ray Client), or start a local instance with ``workers`` CPUs when ``address`` is None. Returns whether this call
    started or joined it (and so should shut it down); an already initialised Ray is used as it is."""
    if ray.is_initialized():
        return False
    options = {"runtime_env": {"env_vars": ONE_THREAD}, "log_to_driver": False}
    if address is None:
        ray.init(num_cpus=workers, include_dashboard=False, **options)
    else:
        ray.init(address=address, **options)
    return True


def disconnect() -> None:
    """Leave the cluster (a local instance stops)."""
    ray.shutdown()


def run_ray(task: TakeTask, takes: list[Take], settings: StudySettings, address: str | None,
            workers: int) -> Iterator[Event]:
    """Run ``task`` on every take as Ray tasks; yields one result per take as they finish."""
    owned = connect(address, workers)
    try:
        running = {_take_task.remote(task, take, settings): take for take in takes}
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
