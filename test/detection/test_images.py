"""Image buffers to arrays: every supported encoding, padded rows, byte order, compressed images, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.detection.images import ImageError, decode_compressed, image_from_buffer


def _rgb(height=5, width=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _buffer(pixels: np.ndarray, step: int) -> bytes:
    """Rows of ``pixels [H, W, C]`` written every ``step`` bytes, the padding filled with 0xAB."""
    height = pixels.shape[0]
    row = pixels.reshape(height, -1)
    padded = np.full((height, step), 0xAB, dtype=np.uint8)
    padded[:, : row.shape[1]] = row
    return padded.tobytes()


@pytest.mark.parametrize("padding", [0, 3, 64])
@pytest.mark.parametrize("big_endian", [0, 1])
def test_rgb8_bgr8_mono8_with_and_without_row_padding(padding, big_endian):
    rgb = _rgb()
    height, width = rgb.shape[:2]
    out = image_from_buffer(height, width, "rgb8", big_endian, 3 * width + padding, _buffer(rgb, 3 * width + padding))
    np.testing.assert_array_equal(out, rgb)
    bgr = rgb[..., ::-1]
    out = image_from_buffer(height, width, "bgr8", big_endian, 3 * width + padding, _buffer(bgr, 3 * width + padding))
    np.testing.assert_array_equal(out, rgb)
    mono = rgb[..., :1]
    out = image_from_buffer(height, width, "mono8", big_endian, width + padding, _buffer(mono, width + padding))
    np.testing.assert_array_equal(out, np.repeat(mono, 3, axis=2))


def test_padding_bytes_never_reach_the_image():
    rgb = np.zeros((4, 2, 3), dtype=np.uint8)
    out = image_from_buffer(4, 2, "rgb8", 0, 16, _buffer(rgb, 16))  # 10 padding bytes of 0xAB per row
    assert not (out == 0xAB).any()


def test_the_last_row_may_omit_its_padding_and_the_result_is_a_copy():
    rgb = _rgb(3, 4)
    data = bytearray(_buffer(rgb, 20)[: 2 * 20 + 12])
    out = image_from_buffer(3, 4, "rgb8", 0, 20, data)
    data[:] = b"\0" * len(data)
    np.testing.assert_array_equal(out, rgb)
    assert out.flags.c_contiguous and out.flags.writeable


def test_rosbags_style_numpy_data_is_read_too():
    rgb = _rgb()
    out = image_from_buffer(5, 7, "rgb8", 0, 21, np.frombuffer(_buffer(rgb, 21), dtype=np.uint8))
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize(("args", "match"), [
    ((5, 7, "16UC1", 0, 14), "unsupported image encoding '16UC1'"),
    ((5, 7, "yuv422", 0, 14), "unsupported image encoding 'yuv422'"),
    ((5, 7, "rgb8", 0, 20), "step 20 is shorter than a row"),
    ((5, 7, "rgb8", 2, 21), "is_bigendian must be 0 or 1"),
    ((0, 7, "rgb8", 0, 21), "empty image"),
    ((6, 7, "rgb8", 0, 21), "needs 126"),
])
def test_bad_fields_are_refused_by_name(args, match):
    with pytest.raises(ImageError, match=match):
        image_from_buffer(*args, _buffer(_rgb(), 21))


def test_compressed_png_and_jpeg_decode_to_rgb():
    cv2 = pytest.importorskip("cv2")
    rgb = _rgb(16, 24)
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    np.testing.assert_array_equal(decode_compressed(png.tobytes(), "png"), rgb)
    flat = np.zeros((16, 24, 3), dtype=np.uint8)
    flat[...] = (200, 30, 10)
    ok, jpeg = cv2.imencode(".jpg", flat[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert np.abs(decode_compressed(jpeg.tobytes(), "jpeg").astype(int) - flat).max() <= 4
    with pytest.raises(ImageError, match="cannot decode 4 bytes"):
        decode_compressed(b"junk", "jpeg")
