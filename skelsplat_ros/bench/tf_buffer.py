"""TF buffer benchmark: a camera lookup's cost against the number of unrelated frames the buffer ever received, and
what the buffer still holds once those frames fall silent.

A node that publishes or hears one frame per joint of every person it ever tracked receives new frame names all the
time. Run: ``python -m skelsplat_ros.bench.tf_buffer``. CPU time of the lookups (``time.thread_time``), median of
``--repeats`` runs, and the ratio to the lookup in a buffer holding the robot alone (measured in the same run).
"""

from __future__ import annotations

import argparse
import statistics
import time

from ..geometry.transforms import TransformBuffer

S = 1_000_000_000
Q = (0.0, 0.0, 0.0, 1.0)


def _robot(buffer: TransformBuffer, seconds: float) -> None:
    """A base moving in the world at 10 Hz for ``seconds`` from 100 s, four cameras fixed on it."""
    for c in range(4):
        buffer.set_transform("base_link", f"cam{c}_optical", 0, (0.1 * c, 0, 1.4), Q, static=True)
    for k in range(int(seconds * 10) + 1):
        buffer.set_transform("world", "base_link", 100 * S + k * S // 10, (0.01 * k, 0, 0), Q)


def lookup_ms(buffer: TransformBuffer, lookups: int = 400) -> float:
    """Mean CPU time (ms) of a camera lookup at 100.5 s."""
    start = time.thread_time()
    for i in range(lookups):
        buffer.lookup("world", f"cam{i % 4}_optical", 100 * S + S // 2)
    return (time.thread_time() - start) / lookups * 1000


def run(frame_counts: list[int], repeats: int) -> list[tuple[int, float, float, int]]:
    """``(unrelated frames, lookup ms, ratio to none, frames left after 15 s more of the robot)`` per count."""
    rows = []
    for count in frame_counts:
        times, left = [], 0
        for _ in range(repeats):
            buffer = TransformBuffer()
            _robot(buffer, 1.0)
            for k in range(count):  # people tracked earlier: one frame per joint and id, heard once
                buffer.set_transform("world", f"person_{k // 17}/joint_{k % 17}", 100 * S, (0, 0, 1.0), Q)
            times.append(lookup_ms(buffer))
            for k in range(11, 161):  # the robot goes on for 15 s; the people's frames fall silent
                buffer.set_transform("world", "base_link", 100 * S + k * S // 10, (0.01 * k, 0, 0), Q)
            left = len(buffer.frames())
        rows.append((count, statistics.median(times), 0.0, left))
    baseline = rows[0][1]
    return [(count, ms, ms / baseline, left) for count, ms, _, left in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="0,1000,10000,100000", help="unrelated frame counts (the first: baseline)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("| unrelated frames received | camera lookup, ms CPU (median) | x baseline | frames held 15 s later |")
    print("|---|---|---|---|")
    for count, ms, ratio, left in run([int(f) for f in args.frames.split(",")], args.repeats):
        print(f"| {count} | {ms:.3f} | {ratio:.2f} | {left} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
