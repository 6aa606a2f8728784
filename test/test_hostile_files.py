"""Property tests (hypothesis) of the file inputs: calibration TOML, keypoint .npz and OpenPose JSON folders.

Whatever the bytes, loading raises only the documented one-line errors, and ``skelsplat fuse`` answers exit 0 or
exit 2 with exactly one line on stderr, never a traceback. Examples are derived from valid files: truncated, with
bytes flipped, with fields of the wrong type, shape or value, or replaced by arbitrary data. ``derandomize``
keeps CI reproducible.

Bag files: test/ros/test_bag_hostile.py.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skelsplat_ros.geometry.calibration import CalibrationError, load_calibration, save_calibration
from skelsplat_ros.io.keypoints import KeypointsError, KeypointSet, load_keypoints, save_keypoints_npz
from skelsplat_ros.sim import make_scenario

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # main sets torch's thread count


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A small valid recording: calibration, .npz and their bytes."""
    folder = tmp_path_factory.mktemp("valid")
    scenario = make_scenario("lab", num_frames=3, fps=30, noise="clean", seed=2)
    calibration = folder / "calibration.toml"
    save_calibration(scenario.rig, calibration)
    keypoints = folder / "keypoints.npz"
    save_keypoints_npz(KeypointSet(scenario.keypoints, scenario.rig.names, fps=30.0, skeleton="h36m17"), keypoints)
    return {"folder": folder, "calibration": calibration, "keypoints": keypoints,
            "calibration_text": calibration.read_text(), "npz_bytes": keypoints.read_bytes(),
            "cameras": scenario.rig.names, "raw": scenario.keypoints}


def _fuse(calibration: Path, keypoints: Path, output: Path, capsys) -> tuple[int, str]:
    from skelsplat_ros.cli import main

    status = main(["fuse", "--calibration", str(calibration), "--keypoints", str(keypoints), "--output",
                   str(output), "--method", "triangulate", "--skeleton", "h36m17", "--quiet"])
    return status, capsys.readouterr().err


def _assert_clean_outcome(status: int, err: str) -> None:
    assert status in (0, 2), (status, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("skelsplat fuse: error:"), err
        assert "Traceback" not in err


def _mutate(data: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data if cut is None else data[: cut % (len(data) + 1)])
    for position, value in flips:
        if out:
            out[position % len(out)] = value
    return bytes(out)


mutations = st.tuples(st.none() | st.integers(0, 1 << 20),
                      st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8))


# --- calibration ---------------------------------------------------------------------------------------------------

toml_values = st.recursive(
    st.none().map(lambda _: "[]") | st.integers(-10**6, 10**6).map(str)
    | st.floats(allow_nan=True, allow_subnormal=False).map(
        lambda v: "nan" if v != v else ("inf" if v == float("inf") else ("-inf" if v == float("-inf") else repr(v))))
    | st.text(max_size=5).map(json.dumps) | st.booleans().map(lambda b: "true" if b else "false"),
    lambda inner: st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"), max_leaves=12)


@SETTINGS
@given(mutation=mutations)
def test_corrupted_calibration_bytes_give_one_line_errors(valid, tmp_path, capsys, mutation):
    path = tmp_path / "calibration.toml"
    path.write_bytes(_mutate(valid["calibration_text"].encode(), *mutation))
    try:
        load_calibration(path)
    except CalibrationError as error:
        assert "\n" not in str(error)
    _assert_clean_outcome(*_fuse(path, valid["keypoints"], tmp_path / "out.npz", capsys))


@SETTINGS
@given(key=st.sampled_from(["size", "matrix", "distortions", "rotation", "translation", "name", "fisheye"]),
       value=toml_values)
def test_calibration_fields_of_any_value(valid, tmp_path, capsys, key, value):
    lines = valid["calibration_text"].splitlines()
    replaced = [f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in lines]
    path = tmp_path / "calibration.toml"
    path.write_text("\n".join(replaced) + "\n")
    try:
        rig = load_calibration(path)
    except CalibrationError as error:
        assert "\n" not in str(error)
    else:
        assert np.isfinite(rig.projection_matrices).all()
    _assert_clean_outcome(*_fuse(path, valid["keypoints"], tmp_path / "out.npz", capsys))


# --- keypoint archives ---------------------------------------------------------------------------------------------

arrays = st.one_of(
    st.builds(lambda shape, fill: np.full(shape, fill), st.lists(st.integers(0, 5), max_size=5).map(tuple),
              st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False) | st.integers(-(2**40), 2**40)),
    st.lists(st.text(max_size=6), max_size=5).map(lambda items: np.array(items, dtype=str)),
    st.text(max_size=8).map(np.array),
    st.just(np.zeros((4, 3, 17, 3), dtype=np.float16)),
    st.just(np.zeros((4, 3, 17, 3), dtype=np.complex64)),
    st.just(np.array([b"\xff\xfe", b""], dtype=bytes)),
)


@SETTINGS
@given(mutation=mutations)
def test_corrupted_npz_bytes_give_one_line_errors(valid, tmp_path, capsys, mutation):
    path = tmp_path / "keypoints.npz"
    path.write_bytes(_mutate(valid["npz_bytes"], *mutation))
    try:
        load_keypoints(path)
    except KeypointsError as error:
        assert "\n" not in str(error)
    _assert_clean_outcome(*_fuse(valid["calibration"], path, tmp_path / "out.npz", capsys))


@SETTINGS
@given(replace=st.dictionaries(st.sampled_from(["keypoints", "cameras", "fps", "skeleton", "frame_numbers", "x"]),
                               arrays, max_size=3),
       drop=st.sets(st.sampled_from(["keypoints", "cameras", "fps", "skeleton"]), max_size=2))
def test_npz_fields_of_any_type_shape_or_value(valid, tmp_path, capsys, replace, drop):
    fields = {"keypoints": valid["raw"], "cameras": np.array(valid["cameras"]), "fps": np.array(30.0),
              "skeleton": np.array("h36m17")}
    for key in drop:
        fields.pop(key, None)
    fields.update(replace)
    path = tmp_path / "keypoints.npz"
    np.savez(path, **fields)
    try:
        load_keypoints(path)
    except KeypointsError as error:
        assert "\n" not in str(error)
    _assert_clean_outcome(*_fuse(valid["calibration"], path, tmp_path / "out.npz", capsys))


def test_pickled_object_arrays_are_refused_not_loaded(valid, tmp_path, capsys):
    path = tmp_path / "keypoints.npz"
    buffer = io.BytesIO()
    np.savez(buffer, keypoints=np.array([object()], dtype=object), cameras=np.array(["a"]))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(KeypointsError):
        load_keypoints(path)
    _assert_clean_outcome(*_fuse(valid["calibration"], path, tmp_path / "out.npz", capsys))


def test_zip_that_is_not_an_npz(valid, tmp_path, capsys):
    path = tmp_path / "keypoints.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("keypoints.npy", b"\x93NUMPY garbage")
    with pytest.raises(KeypointsError):
        load_keypoints(path)
    _assert_clean_outcome(*_fuse(valid["calibration"], path, tmp_path / "out.npz", capsys))


# --- OpenPose JSON folders -----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_subnormal=False) | st.integers(-(2**70), 2**70)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=20)
people = st.lists(st.one_of(
    st.fixed_dictionaries({"pose_keypoints_2d": st.lists(st.floats(allow_nan=True, allow_subnormal=False)
                                                         | st.integers(-5, 5000),
                                                         max_size=60)}),
    st.fixed_dictionaries({"pose_keypoints_2d": json_values}),
    json_values), max_size=4)
documents = st.one_of(st.fixed_dictionaries({"people": people}), json_values,
                      st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


@SETTINGS
@given(files=st.lists(documents, min_size=1, max_size=3), names=st.sampled_from(
    [["f_000000000000_keypoints.json", "f_000000000001_keypoints.json", "f_000000000002_keypoints.json"],
     ["a.json", "b.json", "c.json"], ["9" * 30 + ".json", "1.json", "2.json"]]))
def test_json_folders_of_any_content(valid, tmp_path_factory, capsys, files, names):
    root = tmp_path_factory.mktemp("json")
    for camera in valid["cameras"]:
        folder = root / f"{camera}_json"
        folder.mkdir()
        for name, document in zip(names, files):
            text = document if isinstance(document, str) and not document.startswith("{") else json.dumps(document)
            (folder / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_keypoints(root, skeleton="h36m17")
    except KeypointsError as error:
        assert "\n" not in str(error)
    _assert_clean_outcome(*_fuse(valid["calibration"], root, root / "out.npz", capsys))
