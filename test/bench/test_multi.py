"""`skelsplat bench-multi` on any number of cameras, and the scaling script, on a few frames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from skelsplat_ros.bench.multi import rig_of_views, run_multi_benchmark

REPO = Path(__file__).resolve().parents[2]


def test_any_number_of_views_is_a_ring_besides_lab_and_surround():
    assert len(rig_of_views(4, seed=1)) == 4 and len(rig_of_views(8, seed=1)) == 8
    ring = rig_of_views(13, seed=1)
    assert ring.names == [f"cam{i}" for i in range(13)]
    radius = np.linalg.norm(ring.centres[:, :2], axis=1)
    assert np.all((radius > 4.2) & (radius < 4.8))


def test_bench_multi_rows_on_a_ring():
    lines = []
    # 20 frames: a person is published once their bone lengths are known (3 frames: fusion/output.py).
    rows = run_multi_benchmark([2], [6], [10], frames=20, noise="realistic", modes=["streaming"], log=lines.append)
    assert len(rows) == 1 and len(lines) == 1 and lines[0].startswith("| 2 | 6 | streaming |")
    row = rows[0]
    assert row.views == 6 and row.people == 2 and row.recall > 0.8 and row.precision == 1.0 and row.mpjpe_mm < 40.0


def test_scaling_script_prints_its_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_scaling.py"), "--views", "5", "--people", "2", "--frames", "10",
         "--seeds", "10", "--markdown", str(tmp_path / "scaling.md")],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "pinned to core" in out
    row = [line for line in out.splitlines() if line.startswith("| 5 | 2 |")]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert float(cells[5]) > 0.5  # recall: the timed tracker does track
    assert (tmp_path / "scaling.md").read_text().count("\n") == 3
