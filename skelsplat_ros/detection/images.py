"""Image buffers to RGB arrays ``[H, W, 3]`` uint8, the detectors' input.

:func:`image_from_buffer` reads the fields of a ``sensor_msgs/Image`` (cv_bridge is not on PyPI, and the PyPI
stand-ins either need numpy 1 or ignore ``step``): ``height`` rows of ``step`` bytes each, of which the first
``width * channels`` are pixels and the rest row padding. Encodings ``rgb8``, ``bgr8`` and ``mono8``; any other is
refused by name. Their channels are single bytes, so ``is_bigendian`` (the byte order of multi-byte channels) leaves
them as they are; it is still checked to be 0 or 1.

:func:`decode_compressed` reads a ``sensor_msgs/CompressedImage`` (JPEG or PNG bytes, through OpenCV).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ENCODINGS", "ImageError", "image_from_buffer", "decode_compressed", "bgr_to_rgb"]

ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
"""Supported ``sensor_msgs/Image`` encodings and their bytes per pixel."""


class ImageError(ValueError):
    """An image buffer that cannot be read; the message says which field is wrong."""


def image_from_buffer(height: int, width: int, encoding: str, is_bigendian: int, step: int,
                      data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The pixels of a ``sensor_msgs/Image`` as RGB ``[height, width, 3]`` uint8 (a copy: ``data`` may be reused).

    Raises:
        ImageError: an unsupported encoding, an empty image, ``step`` shorter than a row of pixels, fewer than
            ``height * step`` bytes (the last row may omit its padding), or ``is_bigendian`` not 0/1.
    """
    channels = ENCODINGS.get(encoding)
    if channels is None:
        raise ImageError(f"unsupported image encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
    if is_bigendian not in (0, 1):
        raise ImageError(f"is_bigendian must be 0 or 1, got {is_bigendian}")
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image: {width}x{height}")
    row = width * channels
    if step < row:
        raise ImageError(f"step {step} is shorter than a row of {width} {encoding} pixels ({row} bytes)")
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    needed = (height - 1) * step + row
    if buffer.size < needed:
        raise ImageError(f"{buffer.size} bytes for a {width}x{height} {encoding} image with step {step} "
                         f"(needs {needed})")
    # Rows start every `step` bytes; the padding after each row's pixels is skipped by the strides.
    pixels = np.lib.stride_tricks.as_strided(buffer, shape=(height, width, channels), strides=(step, channels, 1),
                                             writeable=False)
    if encoding == "rgb8":
        return np.array(pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    return np.repeat(pixels, 3, axis=2)


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` BGR (OpenCV's order) to a contiguous RGB copy."""
    return np.ascontiguousarray(image[..., ::-1])


def decode_compressed(data: bytes | bytearray | memoryview | np.ndarray, fmt: str = "") -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (``format`` such as ``jpeg`` or ``bgr8; jpeg compressed bgr8``, and its
    bytes) as RGB ``[H, W, 3]`` uint8. Raises :class:`ImageError` for bytes OpenCV cannot decode."""
    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ImageError(f"cannot decode {buffer.size} bytes of compressed image (format {fmt!r})")
    return bgr_to_rgb(image)
