"""Local worker processes for ``skelsplat batch --workers N``.

Each worker runs one take at a time, sent to it over its own pipe, so the runner always knows which take a worker
holds: when a worker dies (killed, out of memory, a crash in native code), its take is given to a new worker once
more, then reported failed.

Workers are forked from a fork server (``multiprocessing``'s ``forkserver``), a fresh interpreter started once per
process with one thread for BLAS, OpenMP, numba and torch (:data:`ONE_THREAD`), that has imported what a take needs
and loaded the compiled image kernel (``_preload.py``) before it forks. A worker then starts in milliseconds, with that
single thread (N workers on N cores share them without oversubscription) and no state of the runner's process
(its threads, locks, thread pools): what a spawned interpreter gives, without paying for its imports per worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # the take's modules load in the workers (the fork server), and here when the runner needs them;
    # the study's after the fork server's start (:func:`start_server`, which the command calls first)
    from .study import Take
    from .take import StudySettings, TakeTask

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
"""Environment of every worker (through the fork server): read by the libraries when they load, i.e. before any
worker code runs."""
PRELOAD = "skelsplat_ros.pipeline._preload"
"""What the fork server imports before it forks workers."""
MAX_ATTEMPTS = 2
"""A take whose worker dies is run once more; after a second death it is reported failed."""

Event = tuple  # ("progress", name, frames_done, frames), ("result", TakeResult) or ("note", line)


def _serve(connection: Connection, task: TakeTask, settings: StudySettings) -> None:
    """A worker: takes from ``connection`` until ``None``, each answered with progress messages and its result."""
    from .take import execute

    def report(name: str, done: int, total: int) -> None:
        connection.send(("progress", name, done, total))

    while (take := connection.recv()) is not None:
        connection.send(("result", execute(task, take, settings, report)))


@contextlib.contextmanager
def temporary_environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` while a process that inherits it is started."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Worker:
    """A worker process, its end of the pipe, and the take it holds (None: idle). A plain class: importing
    ``dataclasses`` (and ``inspect``) before the fork server starts would delay it."""

    def __init__(self, process: multiprocessing.process.BaseProcess, connection: Connection) -> None:
        self.process, self.connection = process, connection
        self.take: Take | None = None


def start_server() -> None:
    """Start the fork server of the workers, if this process has none yet, and return at once: it imports and loads
    while the caller goes on (its first worker waits for it). :func:`run_local` calls it; call it earlier when takes
    are sure to run, so that its start overlaps other work. Importing this module is light for that reason."""
    multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD])  # for a server not started yet
    with temporary_environment(ONE_THREAD):
        multiprocessing.forkserver.ensure_running()


def _start(task: TakeTask, settings: StudySettings) -> _Worker:
    context = multiprocessing.get_context("forkserver")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(theirs, task, settings), daemon=True, name="skelsplat-batch")
    process.start()
    theirs.close()
    return _Worker(process, ours)


def run_local(task: TakeTask, takes: list[Take], settings: StudySettings, workers: int) -> Iterator[Event]:
    """Run ``task`` on every take with ``workers`` processes; yields progress events and one result per take,
    in the order they finish."""
    from .take import TakeResult

    start_server()
    pending = deque(takes)
    deaths: dict[str, list[int | None]] = {}
    pool = [_start(task, settings) for _ in range(max(1, min(workers, len(takes))))]
    try:
        while True:
            for index, worker in enumerate(pool):
                if worker.take is None and pending:
                    if worker.process.exitcode is not None:  # it died: a fresh one takes its place
                        pool[index] = worker = _start(task, settings)
                    worker.take = pending.popleft()
                    with contextlib.suppress(OSError):  # dying just now: its sentinel tells, below
                        worker.connection.send(worker.take)
            busy = [w for w in pool if w.take is not None]
            if not busy:
                return
            ready = set(wait([w.connection for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                if worker.connection in ready or worker.process.sentinel in ready:
                    yield from _messages(worker, deaths)
                if worker.take is not None and not worker.process.is_alive():
                    yield from _messages(worker, deaths)  # a result sent just before it ended
                if worker.take is not None and not worker.process.is_alive():
                    worker.process.join()
                    take, worker.take = worker.take, None
                    codes = deaths.setdefault(take.name, [])
                    codes.append(worker.process.exitcode)
                    if len(codes) < MAX_ATTEMPTS:
                        pending.appendleft(take)
                    else:
                        yield "result", TakeResult.failed(take.name, f"its worker died {len(codes)} times (exit codes "
                                                          f"{', '.join(map(str, codes))})", transient=True)
    finally:
        _stop(pool)


def _messages(worker: _Worker, deaths: dict[str, list[int | None]]) -> Iterator[Event]:
    """Every message waiting on the worker's pipe; frees the worker when its result is among them (which says so
    when the take needed a second worker)."""
    try:
        while worker.connection.poll():
            message = worker.connection.recv()
            if message[0] == "result":
                worker.take = None
                result = message[1]
                if result.name in deaths and result.status == "done":
                    result.reason = f"retried: its first worker died (exit code {deaths[result.name][0]})"
            yield message
    except (EOFError, OSError):
        return  # the worker died: its sentinel says so


def _stop(pool: list[_Worker]) -> None:
    for worker in pool:
        with contextlib.suppress(OSError, ValueError):
            worker.connection.send(None)
    for worker in pool:
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.connection.close()
