"""Self-calibration on Shelf (real OpenPose detections, the dataset's calibration as the reference), where the data
is at hand (``SKELSPLAT_SHELF`` or ``../shared/data/shelf``; skipped elsewhere: it is not redistributed)."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.bench.shelf import default_shelf_dir, shelf_available
from skelsplat_ros.calibration import WorldAnchor, report_lines, self_calibrate
from skelsplat_ros.calibration.refine import rig_change
from skelsplat_ros.geometry.calibration import load_calibration_metres
from skelsplat_ros.sim import disturb_rig
from skelsplat_ros.skeleton.models import get_skeleton

SHELF = default_shelf_dir()


@pytest.mark.skipif(not shelf_available(SHELF), reason=f"Shelf data not in {SHELF}")
def test_a_second_minimum_with_a_baseline_anchor_is_refused_for_its_moved_cameras():
    # cam_1-cam_4 turned by 5 degrees and moved 15 cm (seed 1), the true cam_0-cam_1 distance as the baseline: the
    # adjustment ends in a rig with cam_2-cam_4 about a metre from Shelf's calibration that reprojects as well as it
    # does and comes within 0.03 of the inlier rule; its cameras moved 0.85-1.2 m from a start 15 cm off.
    data = np.load(SHELF / "keypoints.npz")
    given = load_calibration_metres(SHELF / "calibration.toml")[0].subset([str(c) for c in data["cameras"]])
    rough = disturb_rig(given, [1, 2, 3, 4], seed=1, degrees=(5.0, 5.0), metres=(0.15, 0.15))
    baseline = float(np.linalg.norm(given.centres[0] - given.centres[1]))
    result = self_calibrate(rough, get_skeleton(str(data["skeleton"])), np.asarray(data["keypoints"], np.float64),
                            WorldAnchor(baseline=(given.names[0], given.names[1], baseline)))
    print("\n".join(report_lines(result)))
    assert not result.accepted and result.rig is rough
    assert max(rig_change(a, b)[1] for a, b in zip(given, result.attempt)) > 0.5  # it was a wrong rig
    assert any("more than a rough start is off" in reason for reason in result.reasons), result.reasons
