import os
import subprocess
import sys

import numpy as np

from skelsplat_ros.bench.process_stats import cpu_seconds, percentile, rss_mb


def test_memory_and_cpu_of_a_running_process_and_nan_once_it_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; x = b\"1\" * (64 << 20); t = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\nprint('done', flush=True); input()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
        assert rss_mb(child.pid) > 60.0  # the 64 MiB buffer is resident
        assert 0.25 <= cpu_seconds(child.pid) < 30.0
    finally:
        child.communicate("\n")
    assert np.isnan(rss_mb(child.pid)) and np.isnan(cpu_seconds(child.pid))
    assert rss_mb(os.getpid()) > 0


def test_percentile_ignores_non_finite_values():
    assert percentile([1.0, np.nan, 3.0, np.inf, 2.0], 50) == 2.0
    assert np.isnan(percentile([np.nan], 50))
