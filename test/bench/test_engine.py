"""`skelsplat bench` on a few frames: scenario parsing, accuracy rows and the speed fit."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.bench.engine import TUNING_SEEDS, parse_scenarios, run_benchmark, run_speed, speed_table
from skelsplat_ros.fusion import preset_config


def test_parse_scenarios():
    assert parse_scenarios("lab:realistic, portrait:heavy") == [("lab", "realistic"), ("portrait", "heavy")]
    for bad in ("lab", "dome:clean", "lab:loud"):
        with pytest.raises(ValueError, match="RIG:NOISE"):
            parse_scenarios(bad)


def test_accuracy_rows_on_clean_keypoints():
    ours = {"DLT", "robust triangulation", "SkelSplat default offline", "SkelSplat default streaming"}
    # Our methods only: the optional aniposelib peer compiles with numba on first use (tens of seconds).
    frames = 6
    rows = run_benchmark([("robot", "clean")], frames=frames, seeds=[max(TUNING_SEEDS) + 1], paper_frames=0,
                         repeats=1, log=lambda line: None, only=sorted(ours))
    by_method = {row.method: row for row in rows}
    assert ours <= set(by_method) and not any("aniposelib" in name for name in by_method)
    # Streaming outputs a person once their bone lengths are known (fusion/output.py, rule 4).
    warm_up = preset_config("default").bone_warmup
    for row in rows:
        share = (frames - warm_up) / frames if "streaming" in row.method else 1.0
        assert row.coverage_pct > 90.0 * share and row.frames == frames and row.ms_per_frame > 0
    # Clean keypoints: every method within a few centimetres, SkelSplat no worse than the DLT it starts near.
    assert max(row.mpjpe_mm for row in rows) < 60.0
    assert by_method["SkelSplat default offline"].mpjpe_mm < by_method["DLT"].mpjpe_mm


def test_speed_fit_over_frame_counts():
    rows = run_speed([("robot", "clean")], frame_counts=[2, 4], seed=3, repeats=1, log=lambda line: None)
    assert [row.path for row in rows] == [
        "robust initialisation (per frame)", "SkelSplat default offline", "SkelSplat default streaming"
    ]
    for row in rows:
        assert row.frame_counts == [2, 4] and len(row.wall_medians_s) == 2 and all(t > 0 for t in row.wall_medians_s)
        # Two points: the line goes through both.
        assert np.isclose(row.wall_ms_per_frame, 1000 * (row.wall_medians_s[1] - row.wall_medians_s[0]) / 2)
    assert speed_table(rows).count("\n") == 1 + len(rows)
