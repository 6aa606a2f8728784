"""The unit of a calibration file: read from evidence (the people's size, the cameras' field), refused when the
evidence cannot decide, never guessed. Checked on every simulated rig in m, cm and mm, and through `skelsplat fuse`
with real TOML files (issue 18: a centimetre calibration used to be read as millimetres)."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.cli import main
from skelsplat_ros.geometry.calibration import load_calibration_metres, save_calibration
from skelsplat_ros.geometry.camera import Camera, CameraRig
from skelsplat_ros.geometry.units import UNIT_SCALES, UnitsError, detect_units, scale_rig
from skelsplat_ros.io.export import load_result
from skelsplat_ros.io.keypoints import KeypointSet, save_keypoints_npz
from skelsplat_ros.sim import make_scenario
from skelsplat_ros.sim.scenes import make_multi_person_scenario

RIGS = ("lab", "portrait", "surround", "robot")


def _zoomed(rig: CameraRig, factor: float) -> CameraRig:
    """The rig with ``factor`` times longer lenses: a field of view ``factor`` times narrower."""
    return CameraRig([Camera(c.name, c.K * np.array([[factor], [factor], [1.0]]), c.R, c.t, c.size, c.dist)
                      for c in rig])


@pytest.mark.parametrize("kind", RIGS)
@pytest.mark.parametrize("units", ["m", "cm", "mm"])
def test_the_unit_is_read_right_or_refused_never_guessed(kind, units):
    scenario = make_scenario(kind, num_frames=40, noise="realistic", seed=3)
    written = scale_rig(scenario.rig, 1.0 / UNIT_SCALES[units])  # the rig as a file in that unit holds it
    assert detect_units(written, scenario.keypoints).units == units  # the people decide, on every rig
    try:
        decided = detect_units(written).units  # the rig alone: right, or refused
    except UnitsError as error:
        assert "--calibration-units" in str(error) and "calibration_units" in str(error)
    else:
        assert decided == units


def test_a_field_that_fits_two_units_is_refused_unless_the_people_tell():
    """Long lenses in mm: a 1.9 m field, which would be a 19 m field in cm; both are rooms people are filmed in."""
    scenario = make_scenario("lab", num_frames=40, noise="clean", seed=4)
    rig = _zoomed(scenario.rig, 4.0)
    keypoints = np.concatenate([rig.project(scenario.ground_truth), np.ones(scenario.keypoints.shape[:-1] + (1,))],
                               axis=-1)
    in_mm = scale_rig(rig, 1000.0)
    with pytest.raises(UnitsError, match="calibration-units") as error:
        detect_units(in_mm)
    assert "1.9" in str(error.value) and "19" in str(error.value)  # what was measured, in both units
    assert detect_units(in_mm, keypoints).units == "mm"


@pytest.fixture(scope="module")
def centimetre_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("units")
    scenario = make_scenario("lab", num_frames=30, noise="clean", seed=4)
    save_calibration(scale_rig(scenario.rig, 100.0), tmp / "lab_cm.toml")
    save_calibration(scenario.rig, tmp / "lab_m.toml")
    save_keypoints_npz(KeypointSet(scenario.keypoints, scenario.rig.names, 30.0, "h36m17"), tmp / "kp.npz")
    return tmp, scenario


def _fuse(*argv: str) -> int:
    return main(["fuse", "--quiet", "--method", "robust", *argv])


def test_fuse_reads_a_centimetre_toml_in_centimetres(centimetre_files, capsys):
    tmp, scenario = centimetre_files
    assert _fuse("--calibration", str(tmp / "lab_cm.toml"), "--keypoints", str(tmp / "kp.npz"),
                 "--output", str(tmp / "cm.npz")) == 0
    assert "calibration read in cm" in capsys.readouterr().err
    assert _fuse("--calibration", str(tmp / "lab_m.toml"), "--keypoints", str(tmp / "kp.npz"),
                 "--output", str(tmp / "m.npz")) == 0
    np.testing.assert_allclose(load_result(tmp / "cm.npz")["joints"], load_result(tmp / "m.npz")["joints"], atol=1e-6)


def test_fuse_refuses_a_calibration_whose_unit_nothing_tells_and_takes_the_option(tmp_path, capsys):
    """Several people per frame (their slots say nothing of who is who: no people evidence) and a rig whose field
    fits cm and mm: refused with the option named; given the option, fused in metres."""
    scenario = make_multi_person_scenario("lab", 2, num_frames=15, noise="clean", enter_leave=False)
    rig = _zoomed(scenario.rig, 4.0)
    save_calibration(scale_rig(rig, 1000.0), tmp_path / "mm.toml")
    people = np.moveaxis(rig.project(np.moveaxis(scenario.ground_truth, 1, 0)), 1, 2)  # [V, F, P, J, 2]
    keypoints = np.concatenate([people, np.ones(people.shape[:-1] + (1,))], axis=-1)
    np.savez(tmp_path / "kp.npz", keypoints=keypoints, cameras=np.array(rig.names), fps=30.0, skeleton="h36m17")
    argv = ["--calibration", str(tmp_path / "mm.toml"), "--keypoints", str(tmp_path / "kp.npz"),
            "--output", str(tmp_path / "out.npz")]
    assert _fuse(*argv) == 2
    assert "--calibration-units" in capsys.readouterr().err
    assert _fuse(*argv, "--calibration-units", "mm") == 0
    with pytest.raises(UnitsError, match="calibration_units"):  # the node and the rig publisher: the same refusal
        load_calibration_metres(tmp_path / "mm.toml")
