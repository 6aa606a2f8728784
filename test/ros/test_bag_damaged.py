"""A bag that opens but whose chunk is damaged (found by test_bag_hostile's fuzzing, in some orders of the suite):
rosbags raises while the messages are read, and that must end as one BagError line, as a damaged header does."""

from __future__ import annotations

import struct

import pytest

pytest.importorskip("rosbags")
pytest.importorskip("skelsplat_ros.msg")

from bag_helpers import write_keypoints_bag  # noqa: E402  (test/ros is on sys.path: pytest prepend)

from skelsplat_ros.ros.bag import BagError, read_bag_frames  # noqa: E402
from skelsplat_ros.sim import make_scenario  # noqa: E402

MCAP_MAGIC = 8
CHUNK = 0x06


def _first_chunk_crc_offset(data: bytes) -> int:
    """Byte offset of the first MCAP Chunk record's ``uncompressed_crc`` (after its two times and its size)."""
    offset = MCAP_MAGIC
    while data[offset] != CHUNK:
        (length,) = struct.unpack_from("<Q", data, offset + 1)
        offset += 9 + length
    return offset + 9 + 3 * 8


def test_a_chunk_that_fails_its_checksum_is_one_bag_error(tmp_path):
    scenario = make_scenario("lab", num_frames=10, fps=30.0, seed=6)
    write_keypoints_bag(tmp_path / "clean", scenario.rig.names, scenario.keypoints, 30.0, "h36m17")
    data = bytearray((tmp_path / "clean" / "clean.mcap").read_bytes())
    at = _first_chunk_crc_offset(bytes(data))
    data[at: at + 4] = bytes(b ^ 0xFF for b in data[at: at + 4])
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(bytes(data))
    with pytest.raises(BagError, match=r"damaged\.mcap: the recording is damaged \(ReaderError") as error:
        read_bag_frames(damaged, "h36m17", 17, rig=scenario.rig)
    assert "\n" not in str(error.value)
