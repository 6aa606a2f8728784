"""Reading a serialized ``Keypoints2DArray`` straight from its CDR bytes, for validation before deserialising.

The node subscribes to keypoints raw (``raw=True``): rclpy's deserialisation builds a Python object per person and
costs about 0.4 ms for a message of 25 people, 8x the validation itself. Here the bytes become numpy views in a
few microseconds per person; only messages that pass validation are deserialised by rclpy afterwards. A message is
first checked against a size bound (a crowd far beyond any cap is rejected unread).

The layout is the plain (XCDR1) little-endian CDR that ROS 2's DDS layers use: a 4-byte encapsulation header, then
``header.stamp.sec`` (int32), ``header.stamp.nanosec`` (uint32), ``header.frame_id`` (uint32 length including its
NUL, then the bytes), ``skeleton`` (the same, aligned to 4), ``people`` (uint32 count), and per person ``id`` (int32)
and ``x``, ``y``, ``confidence`` (each a uint32 count then float32 values). Every field after a string is aligned
to 4 bytes from the end of the encapsulation header. Any other encapsulation, or bytes that do not fit the layout,
raise :class:`WireError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["WireError", "WireKeypoints", "read_keypoints", "max_message_bytes"]

_CDR_LE = b"\x00\x01"
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_FLOAT32 = np.dtype("<f4")
_UINT32 = np.dtype("<u4")


class WireError(ValueError):
    """Bytes that are not a little-endian CDR ``Keypoints2DArray``."""


@dataclass
class WireKeypoints:
    """The fields of a serialized ``Keypoints2DArray``.

    ``people``: one float32 ``[P, 3, L]`` array (x, y, confidence) when every array has the same length ``L`` (the
    common case), else ``(x, y, confidence)`` float32 views per person.
    """

    stamp_ns: int
    frame_id: str
    skeleton: str
    people: np.ndarray | list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def max_message_bytes(max_people: int, num_joints: int) -> int:
    """A generous bound on a message a receiver keeping ``max_people`` people of ``num_joints`` joints needs to read:
    16 times that many well-formed people, plus long strings. Beyond it, the message is rejected unread."""
    person = 4 + 3 * (4 + 4 * num_joints)
    return 4 + 8 + 2 * (4 + 1024) + 4 + 16 * max_people * person


def _string(data: memoryview, offset: int, end: int) -> tuple[str, int]:
    offset = (offset + 3) & ~3
    if offset + 4 > end:
        raise WireError("truncated string length")
    (length,) = _U32.unpack_from(data, offset)
    offset += 4
    if length == 0 or offset + length > end:
        raise WireError("string length out of range")
    raw = bytes(data[offset: offset + length - 1])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("string is not UTF-8") from None
    return text, offset + length


def read_keypoints(data: bytes) -> WireKeypoints:
    """Parse ``data`` (the serialized message, encapsulation header included); :class:`WireError` when it is not one."""
    view = memoryview(data)
    if len(view) < 4 + 8 or bytes(view[:2]) != _CDR_LE:
        raise WireError("not little-endian CDR")
    body = view[4:]  # alignment counts from here
    end = len(body)
    sec, nanosec = _STAMP.unpack_from(body, 0)
    frame_id, offset = _string(body, 8, end)
    skeleton, offset = _string(body, offset, end)
    offset = (offset + 3) & ~3
    if offset + 4 > end:
        raise WireError("truncated people count")
    # From here on every field is a 4-byte word: one uint32 and one float32 view of the rest, indexed by word.
    words = np.frombuffer(body, dtype=_UINT32, count=end // 4)
    floats = words.view(_FLOAT32)
    counts = words.tolist()  # Python ints: the loop below reads a few per person
    index = offset // 4
    last = end // 4
    count = counts[index]
    index += 1
    # Each person needs at least 4 words: a count beyond what is left is garbage, whatever it says.
    if count > (last - index) // 4:
        raise WireError("people count larger than the message")
    if count:
        # Fast path: every array of every person has the first one's length L, so the people are a regular
        # [P, 1 + 3 (1 + L)] block of words: one reshape instead of a loop.
        length = counts[index + 1] if index + 1 < last else -1
        stride = 1 + 3 * (1 + length)
        if length >= 0 and index + count * stride <= last:
            block = words[index: index + count * stride].reshape(count, stride)
            if (block[:, [1, 2 + length, 3 + 2 * length]] == length).all():
                values = floats[index: index + count * stride].reshape(count, stride)
                people_block = np.stack([values[:, 2 + k * (1 + length): 2 + k * (1 + length) + length]
                                         for k in range(3)], axis=1)
                return WireKeypoints(int(sec) * 1_000_000_000 + int(nanosec), frame_id, skeleton, people_block)
    people: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for _ in range(count):
        index += 1  # id
        arrays = []
        for _ in range(3):
            if index >= last:
                raise WireError("truncated person")
            length = counts[index]
            index += 1
            if index + length > last:
                raise WireError("array longer than the message")
            arrays.append(floats[index: index + length])
            index += length
        people.append((arrays[0], arrays[1], arrays[2]))
    return WireKeypoints(int(sec) * 1_000_000_000 + int(nanosec), frame_id, skeleton, people)
