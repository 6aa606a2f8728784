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

The command joins (or starts) Ray first thing (:func:`start`, before it reads its settings and scans the study), and
has a worker of the job load what a take needs at once (:func:`warm_up`): a new job's worker processes start only
when it submits its first task (Python, ``import ray``, this package: most of a second), so that start overlaps the
command's own start. One warm-up task, and no take submitted before it has run: the raylet answers a new job's first
lease request by starting a worker for it and prestarting as many more as the request's backlog asks (one), and a
lease asked for while the job's workers are still starting is refused for the startup limit (one per CPU), then
starts yet another process when the first of them registers. On a 2-CPU instance the job so gets its two workers,
where two warm-up tasks (or the takes) submitted at once got three, the third never running a task but competing
with the two for the cores as it starts (Ray 2.60's raylet log; ``test_batch_ray.py`` counts them).

A cluster joined by the ``skelsplat`` command is left by the command's process ending
(:attr:`Connection.leave_by_exit`): its connection closes and Ray ends the job as for any driver that exits, where
``ray.shutdown()`` would wait 0.25 s for the Ray threads' timers.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import ray

from .local import MAX_ATTEMPTS, ONE_THREAD, Event, temporary_environment
from .study import Take

if TYPE_CHECKING:  # the take's module (numpy with it) loads after the job's workers are asked for (warm_up)
    from .take import StudySettings, TakeResult, TakeTask


@ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS - 1)
def _take_task(work: tuple[TakeTask, StudySettings], take: Take) -> TakeResult:
    """One take on a Ray worker (one CPU; retried once when the worker dies); ``work`` comes from the object store."""
    from .take import execute

    task, settings = work
    return execute(task, take, settings, lambda name, done, total: None)


def _absolute(take: Take) -> Take:
    """``take`` with absolute paths: a Ray worker runs in a working directory of its own, not this process's."""
    def absolute(path):
        return None if path is None else path.absolute()

    return replace(take, folder=take.folder.absolute(), calibration=absolute(take.calibration),
                   keypoints=absolute(take.keypoints), videos=tuple(p.absolute() for p in take.videos))


@ray.remote(num_cpus=1)
def _warm_up() -> None:
    """What a take needs, loaded on a worker of this job before its first take comes."""
    from .take import preload

    preload()


@dataclass
class Connection:
    """This process's place in a Ray cluster.

    Attributes:
        address, workers: what it was asked for (see :func:`connect`).
        how: ``started a local instance``, ``joined`` or ``using`` (Ray was initialised before).
        seconds: how long joining or starting took (s).
        warming: the warm-up task submitted (the takes wait for it: see the module's docstring).
        leave_by_exit: leave a cluster joined by ending the process, not by ``ray.shutdown()`` (see the module's
            docstring); the caller then ends it (``os._exit``) once the batch is done.
    """

    address: str | None
    workers: int
    how: str
    seconds: float
    warming: list
    leave_by_exit: bool

    @property
    def owned(self) -> bool:
        """Whether this process started or joined the cluster (and so leaves it)."""
        return self.how != "using"


_early: Connection | Exception | None = None
"""What :func:`start` gave (a connection, or the error of joining), until :func:`run_ray` takes it."""


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
        check_reachable(address)
        ray.init(address=address, log_to_driver=False)
    return True


def client_environment() -> dict[str, str]:
    """This process's environment for another process that joins a Ray instance of this machine: Ray 2.59+ turns
    token authentication on for an instance started where ``~/.ray/auth_token`` exists, and its clients must then
    say ``RAY_AUTH_MODE=token``."""
    token = Path.home() / ".ray" / "auth_token"
    return {**os.environ, **({"RAY_AUTH_MODE": "token"} if token.exists() else {})}


REACH_TIMEOUT = 5.0
"""Seconds :func:`check_reachable` waits for a cluster's address to accept a connection."""


def check_reachable(address: str) -> None:
    """Raise a one-line ``RuntimeError`` when nothing accepts a TCP connection at a ``host:port`` or
    ``ray://host:port`` ``address`` within :data:`REACH_TIMEOUT`: ``ray.init`` would retry such an address for
    minutes (measured: over two, Ray 2.60). ``auto`` and addresses without a port are left to Ray."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT).close()
    except OSError as error:
        raise RuntimeError(f"no Ray cluster answers at {address} ({error.strerror or error}); start one there "
                           "(`ray start --head`) or give its head's address") from None


def warm_up(takes: int) -> list:
    """Submit one task that loads what a take needs, when there are ``takes`` (> 0): the job's first worker
    processes start, and one imports this package, while the caller goes on; :func:`run_ray` submits the takes once
    it has run (see the module's docstring). Returns its reference (none for no takes)."""
    return [_warm_up.remote()] if takes > 0 else []


def _open(address: str | None, workers: int, takes: int, leave_by_exit: bool) -> Connection:
    start = time.perf_counter()
    owned = connect(address, workers)
    how = "started a local instance" if owned and address is None else "joined" if owned else "using"
    seconds = time.perf_counter() - start
    return Connection(address, workers, how, seconds, warm_up(takes),
                      leave_by_exit and how == "joined" and not address.startswith("ray://"))


def start(address: str | None, workers: int, takes: int, leave_by_exit: bool = False) -> None:
    """Join (or start) the cluster now and warm up to ``takes`` workers (:func:`warm_up`), for :func:`run_ray` to
    use later with the same ``address`` and ``workers``; an error is kept and raised there, where the command
    reports errors. ``leave_by_exit``: see :class:`Connection`."""
    global _early
    try:
        _early = _open(address, workers, takes, leave_by_exit)
    except Exception as error:  # noqa: BLE001 - raised by run_ray, where the command reports it
        _early = error


def disconnect() -> None:
    """Leave the cluster (a local instance stops)."""
    ray.shutdown()


def _connection(address: str | None, workers: int) -> Connection:
    """The connection :func:`start` made for ``address`` and ``workers``, or a new one (its warm-up submitted now)."""
    global _early
    early, _early = _early, None
    if isinstance(early, Exception):
        raise early
    if early is not None and (early.address, early.workers) == (address, workers):
        return early
    return _open(address, workers, 1, False)


def run_ray(task: TakeTask, takes: list[Take], settings: StudySettings, address: str | None,
            workers: int) -> Iterator[Event]:
    """Run ``task`` on every take as Ray tasks: joins (or starts) the cluster now, so that failing to fails before
    anything is drawn, and returns an iterator of a note on the cluster, then one result per take as they finish."""
    return _run_tasks(_connection(address, workers), task, takes, settings)


def _run_tasks(connection: Connection, task: TakeTask, takes: list[Take], settings: StudySettings
               ) -> Iterator[Event]:
    from .take import TakeResult

    cpus = int(ray.cluster_resources().get("CPU", 0))
    yield "note", f"Ray: {connection.how} ({cpus} CPUs) in {connection.seconds:.1f} s"
    try:
        work = ray.put((task, settings))
        if connection.warming:  # the job's first workers have started: see the module's docstring
            ray.wait(connection.warming, num_returns=len(connection.warming))
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
        if connection.owned and not connection.leave_by_exit:
            disconnect()
