"""Property tests (hypothesis): reading serialized keypoint messages (ros/wire.py) agrees with rclpy's own
deserialisation for any message, survives any bytes, and the keypoint message conversions round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from skelsplat_ros.msg import Keypoints2DArray, PersonKeypoints2D  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from skelsplat_ros.ros.conversions import keypoints_msg, parse_keypoints, people_from_block  # noqa: E402
from skelsplat_ros.ros.wire import WireError, read_keypoints  # noqa: E402

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)

float32s = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=False)
arrays = st.lists(float32s, max_size=20).map(lambda v: np.array(v, dtype=np.float32))
people = st.lists(st.tuples(st.integers(-(2**31), 2**31 - 1), arrays, arrays, arrays), max_size=6)
regular = st.integers(0, 20).flatmap(lambda n: st.lists(st.tuples(
    st.integers(-(2**31), 2**31 - 1), *(st.lists(float32s, min_size=n, max_size=n).map(
        lambda v: np.array(v, dtype=np.float32)) for _ in range(3))), max_size=6))
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


def _message(sec: int, nanosec: int, frame_id: str, skeleton: str, persons) -> Keypoints2DArray:
    msg = Keypoints2DArray(header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id), skeleton=skeleton)
    msg.people = [PersonKeypoints2D(id=pid, x=x, y=y, confidence=c) for pid, x, y, c in persons]
    return msg


@SETTINGS
@given(sec=st.integers(-(2**31), 2**31 - 1), nanosec=st.integers(0, 999_999_999), frame_id=texts, skeleton=texts,
       persons=people | regular)
def test_reading_the_bytes_agrees_with_rclpy(sec, nanosec, frame_id, skeleton, persons):
    wire = read_keypoints(serialize_message(_message(sec, nanosec, frame_id, skeleton, persons)))
    assert wire.stamp_ns == sec * 1_000_000_000 + nanosec
    assert wire.frame_id == frame_id and wire.skeleton == skeleton
    assert len(wire.people) == len(persons)
    for read, (_, x, y, c) in zip(wire.people, persons):
        for got, sent in zip(read, (x, y, c)):
            np.testing.assert_array_equal(np.asarray(got), sent)


@SETTINGS
@given(persons=regular)
def test_people_from_the_bytes_agree_with_the_parsed_message(persons):
    """The node's fast path (people straight from the wire block) gives what parsing the message gives."""
    data = serialize_message(_message(1, 2, "cam0", "h36m17", persons))
    wire = read_keypoints(data)
    if not isinstance(wire.people, np.ndarray):  # no people: nothing to read fast
        assert not persons
        return
    parsed = parse_keypoints(_message(1, 2, "cam0", "h36m17", persons), "h36m17", wire.people.shape[2])
    np.testing.assert_array_equal(people_from_block(wire.people), parsed.people)


@SETTINGS
@given(persons=people, cut=st.integers(0, 4096), flips=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)),
                                                                   max_size=6))
def test_any_bytes_give_a_message_or_a_wire_error(persons, cut, flips):
    data = bytearray(serialize_message(_message(1, 2, "cam0", "h36m17", persons)))
    data = data[: cut % (len(data) + 1)]
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    try:
        wire = read_keypoints(bytes(data))
    except WireError:
        return
    # Whatever was read lies within the bytes.
    assert sum(np.asarray(a).size for person in wire.people for a in person) * 4 <= len(data)


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    try:
        read_keypoints(data)
    except WireError:
        pass


joints = st.integers(1, 25)


@SETTINGS
@given(data=st.data(), count=joints)
def test_keypoints_message_round_trip(data, count):
    pixel = st.floats(0, 4000, width=32, allow_subnormal=False)
    xy = np.array(data.draw(st.lists(st.tuples(pixel, pixel), min_size=count, max_size=count)),
                  dtype=np.float64).reshape(count, 2)
    confidence = st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0.015625, 1.0, width=32, allow_subnormal=False)
    conf = np.array(data.draw(st.lists(confidence,
                                       min_size=count, max_size=count)), dtype=np.float64)
    kp = np.column_stack([xy, conf])
    kp[conf == 0, :2] = np.nan
    msg = keypoints_msg(kp, Time(sec=3, nanosec=4), "cam0", "sk")
    parsed = parse_keypoints(msg, "sk", count)
    if not (conf > 0).any():
        assert parsed.keypoints is None  # nobody seen
        return
    seen = conf > 0
    np.testing.assert_allclose(parsed.keypoints[seen], kp[seen].astype(np.float32), rtol=1e-6)
    assert np.isnan(parsed.keypoints[~seen, :2]).all() and (parsed.keypoints[~seen, 2] == 0).all()
    wire = read_keypoints(serialize_message(msg))
    assert isinstance(wire.people, np.ndarray) and wire.people.shape == (1, 3, count)
