"""``skelsplat batch``: every take of a study through the same steps as the single commands, on local worker
processes or on Ray, resumable, with a progress bar and a summary table.

Outputs: ``OUT/<take>/fused.npz`` (what ``skelsplat fuse`` writes for the take; with a render step also
``render.mp4`` and ``render.png``, what ``skelsplat render`` writes), ``OUT/<take>/take.json`` (the take's record,
written last: its status, figures, settings, output files and the input time stamp it was made from) and
``OUT/summary.csv``. A take is skipped when its record says done with the same settings, its inputs are unchanged
(newest modification time as recorded) and its outputs exist and are newer than them; ``force`` runs it anyway.
A take that failed on its inputs or settings is not run again until they change (or ``force``): it would fail the
same way; one whose worker died is.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .study import StudyError, Take, find_takes
from .take import StudySettings, TakeResult, TakeTask, run_take

RECORD = "take.json"
SUMMARY = "summary.csv"
COLUMNS = ("take", "status", "frames", "people", "reprojection_median_px", "seconds", "reason")


@dataclass(frozen=True)
class BatchOptions:
    """How a study is run.

    Attributes:
        workers: local worker processes (with ``ray`` and no address: the local Ray instance's CPUs).
        ray: run the takes as Ray tasks.
        ray_address: the cluster to join (``auto``, ``ray://head:10001``, ``host:6379``); None = a local instance.
        force: run every take, even those whose outputs are up to date.
        progress: draw progress bars on stderr.
    """

    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


def settings_key(settings: StudySettings) -> str:
    """The settings as one canonical string: outputs made with other settings are not up to date."""
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)


def up_to_date(take: Take, folder: Path, key: str) -> TakeResult | None:
    """The take's recorded result when its outputs are complete and current, or its failure would repeat (see the
    module's docstring); else None."""
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        if record.get("settings") != key or record.get("transient") or record.get("status") not in ("done", "failed"):
            return None
        mtime = take.input_mtime()
        if record.get("input_mtime") != mtime:
            return None
        if any(os.stat(folder / name).st_mtime < mtime for name in record["outputs"] + [RECORD]):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record, an unreadable one, or a missing output: run the take
    if record["status"] == "failed":
        return TakeResult.failed(take.name, f"{record.get('reason')} (inputs and settings unchanged since; --force "
                                 "runs it again)", record.get("seconds"))
    return TakeResult(take.name, "skipped", "outputs up to date", record.get("frames"), record.get("people"),
                      record.get("reprojection_median_px"), record.get("seconds"))


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)  # a reader never sees half a file, a crash never leaves one under the real name


def store(result: TakeResult, take: Take, folder: Path, key: str, input_mtime: float) -> None:
    """Write the take's output files, then its record."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in result.files.items():
        _write_atomically(folder / name, data)
    record = {
        "status": result.status, "reason": result.reason, "frames": result.frames, "people": result.people,
        "reprojection_median_px": result.reprojection_median_px, "seconds": result.seconds,
        "outputs": sorted(result.files), "notes": result.notes, "transient": result.transient, "settings": key,
        "input_mtime": input_mtime, "calibration": str(take.calibration), "keypoints": str(take.keypoints),
        "videos": [str(p) for p in take.videos],
    }
    _write_atomically(folder / RECORD, json.dumps(record, indent=1).encode())


class _Bars:
    """Two bars on stderr: takes finished (of those to run) and frames fused (a count and its rate)."""

    def __init__(self, takes: int, enabled: bool) -> None:
        self.seen: dict[str, int] = {}
        self.takes = self.frames = None
        if enabled:
            from tqdm import tqdm

            self.takes = tqdm(total=takes, unit="take", desc="takes", file=sys.stderr, position=0)
            self.frames = tqdm(unit="frame", desc="frames", file=sys.stderr, position=1)

    def progress(self, name: str, done: int) -> None:
        step = max(0, done - self.seen.get(name, 0))  # a take run again after its worker died counts again
        self.seen[name] = done
        if self.frames is not None:
            self.frames.update(step)

    def finished(self, result: TakeResult) -> None:
        if result.frames is not None:  # what no progress event counted (Ray reports whole takes)
            self.progress(result.name, result.frames)
        if self.takes is not None:
            self.takes.update(1)
            self.takes.set_postfix_str(f"{result.name} {result.status}")

    def close(self) -> None:
        for bar in (self.frames, self.takes):
            if bar is not None:
                bar.close()


def _events(task: TakeTask, takes: list[Take], settings: StudySettings, options: BatchOptions) -> Iterator[tuple]:
    if options.ray:
        try:
            from .ray_backend import run_ray  # ray is imported only when chosen
        except ImportError as error:
            if error.name != "ray":
                raise
            raise RuntimeError("--ray needs Ray: pip install 'skelsplat_ros[cluster]' (or pip install ray)") from None

        return run_ray(task, takes, settings, options.ray_address, options.workers)
    from .local import run_local

    return run_local(task, takes, settings, options.workers)


def _run(todo: list[Take], output: Path, key: str, settings: StudySettings, options: BatchOptions,
         task: TakeTask, echo: Callable[[str], None]) -> dict[str, TakeResult]:
    """Run the takes ``todo`` on the chosen workers, storing each one's files and record as it finishes."""
    if not todo:
        return {}
    by_name = {take.name: take for take in todo}
    mtimes = {take.name: take.input_mtime() for take in todo}  # before the run: a later change runs it again
    # Largest inputs first, so that a long take does not start last and keep the other workers waiting.
    todo = sorted(todo, key=lambda take: -sum(os.stat(p).st_size for p in take.input_files()))
    events = _events(task, todo, settings, options)  # a missing Ray fails here, before any bar is drawn
    bars = _Bars(len(todo), options.progress)
    results = {}
    try:
        for event in events:
            if event[0] == "progress":
                bars.progress(event[1], event[2])
                continue
            if event[0] == "note":
                echo(event[1])
                continue
            result = event[1]
            store(result, by_name[result.name], output / result.name, key, mtimes[result.name])
            results[result.name] = result
            bars.finished(result)
    finally:
        bars.close()
    return results


def run_batch(study: str | Path, output: str | Path, settings: StudySettings = StudySettings(),
              options: BatchOptions = BatchOptions(), task: TakeTask = run_take,
              echo: Callable[[str], None] = print) -> list[TakeResult]:
    """Run every take of ``study`` into ``output``; returns one result per take in the study's order (also written
    to ``output/summary.csv`` and printed through ``echo``). ``task``: the work of one take (tests pass their own).

    Raises:
        StudyError: no such study, or no takes in it.
    """
    start = time.perf_counter()
    output = Path(output)
    takes, ignored = find_takes(study, exclude=output)
    if ignored:
        echo(f"not takes (no keypoints .npz, <camera>_json/ folders or videos): {', '.join(ignored)}")
    if not takes:
        raise StudyError(f"no takes in {study}: a take is a folder holding keypoints or videos")
    key = settings_key(settings)
    results = {take.name: up_to_date(take, output / take.name, key) for take in takes if not options.force}
    todo = [take for take in takes if results.get(take.name) is None]
    results.update(_run(todo, output, key, settings, options, task, echo))
    rows = [results[take.name] for take in takes]
    write_summary(output / SUMMARY, rows)
    echo(format_table(rows))
    counts = {status: sum(r.status == status for r in rows) for status in ("done", "skipped", "failed")}
    echo(f"{len(rows)} takes: {counts['done']} done, {counts['skipped']} up to date, {counts['failed']} failed in "
         f"{time.perf_counter() - start:.1f} s -> {output / SUMMARY}")
    return rows


def _cells(result: TakeResult) -> list[str]:
    def number(value: float | None, digits: int) -> str:
        return "" if value is None else ("nan" if math.isnan(value) else f"{value:.{digits}f}")

    return [result.name, result.status, "" if result.frames is None else str(result.frames),
            "" if result.people is None else str(result.people), number(result.reprojection_median_px, 2),
            number(result.seconds, 2), result.reason]


def write_summary(path: Path, rows: list[TakeResult]) -> None:
    """``summary.csv``: one row per take, :data:`COLUMNS`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(_cells(row) for row in rows)


def format_table(rows: list[TakeResult]) -> str:
    """The summary as aligned text columns (the reason last, unpadded)."""
    header = ["take", "status", "frames", "people", "reproj px", "time s", "reason"]
    table = [header] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    return "\n".join(("  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                                for i, (cell, width) in enumerate(zip(line, widths))) + "  " + line[-1]).rstrip()
                     for line in table)
