#!/usr/bin/env python3
"""Fixed-lag benchmark: accuracy against lag, CPU per frame and covariance calibration (skelsplat_ros/bench/lag.py)."""

import sys

from skelsplat_ros.bench.lag import main

if __name__ == "__main__":
    sys.exit(main())
