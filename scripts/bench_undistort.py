"""Per-frame cost of undistorting one frame of keypoints (4 views x 17 joints) and of its covariances.

Usage: ``python scripts/bench_undistort.py [TREE ...]``: each TREE is a checkout of this repository (default: this
one), so that two commits are timed side by side in the same run. Prints the median of 300 calls per figure.
"""
import subprocess
import sys
from pathlib import Path

CODE = """
import sys, time
import numpy as np
from skelsplat_ros.geometry.triangulation import linear_covariance
from skelsplat_ros.sim import make_rig

rig = make_rig("lab", seed=1, distortion=True)
rng = np.random.default_rng(0)
uv = np.stack([rng.uniform([200, 200], [1000, 700], (17, 2)) for _ in rig])  # [V, J, 2]: one frame
points = rng.uniform([-0.3, -0.3, 0.2], [0.3, 0.3, 1.8], (1, 17, 3))
weights = np.ones((len(rig), 1, 17))


def median_us(call, runs=300):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


print(f"{sys.argv[1]}: undistort 4x17 {median_us(lambda: rig.undistort(uv)):.0f} us, "
      f"linear_covariance 17 joints {median_us(lambda: linear_covariance(rig, points, weights, 3.0)):.0f} us")
"""

for tree in sys.argv[1:] or [str(Path(__file__).resolve().parents[1])]:
    subprocess.run([sys.executable, "-c", CODE, tree], env={"PYTHONPATH": tree}, check=True)
