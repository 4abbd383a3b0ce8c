"""numpy <-> sensor_msgs/Image conversion (the project's stand-in for cv_bridge).

cv_bridge is not installable on this platform, and the PyPI look-alike is broken with numpy 2,
so every node that touches images uses this module. `CvBridge` offers cv_bridge's method names
so code written for cv_bridge ports by changing one import.

Supported encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 / 16UC1 (depth in mm), 32FC1 (depth
in m). Reading is zero-copy where the message layout allows (the array is a view of msg.data);
writing copies once into the message, as it must.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header


class ImageConversionError(ValueError):
    """A message or array does not match its declared encoding (like cv_bridge's CvBridgeError)."""


class _Format(NamedTuple):
    dtype: np.dtype
    channels: int


ENCODINGS: dict[str, _Format] = {
    "rgb8": _Format(np.dtype(np.uint8), 3),
    "bgr8": _Format(np.dtype(np.uint8), 3),
    "rgba8": _Format(np.dtype(np.uint8), 4),
    "bgra8": _Format(np.dtype(np.uint8), 4),
    "mono8": _Format(np.dtype(np.uint8), 1),
    "mono16": _Format(np.dtype(np.uint16), 1),
    "16UC1": _Format(np.dtype(np.uint16), 1),
    "32FC1": _Format(np.dtype(np.float32), 1),
}

# Conversions between colour encodings that only reorder channels.
_CHANNEL_ORDER = {"rgb8": "rgb", "bgr8": "bgr", "rgba8": "rgba", "bgra8": "bgra"}

_HOST_BIG_ENDIAN = sys.byteorder == "big"


def _format_of(encoding: str) -> _Format:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def image_to_numpy(msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
    """sensor_msgs/Image -> numpy array (H, W, C) for colour, (H, W) for mono/depth.

    Validates encoding, size, step and buffer length. With `desired_encoding="passthrough"` (or
    equal to the message's encoding) and native byte order the result is a view of `msg.data`
    (no copy). Colour conversions between rgb8/bgr8/rgba8/bgra8 are supported.
    """
    fmt = _format_of(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels: {width}x{height}")
    pixel_bytes = fmt.dtype.itemsize * fmt.channels
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width {width} x {pixel_bytes} bytes per pixel "
            f"({row_bytes}) for {msg.encoding}"
        )
    if step % fmt.dtype.itemsize:
        raise ImageConversionError(f"step {step} is not a multiple of {fmt.dtype.itemsize}")
    buffer = msg.data
    size = len(buffer)
    expected = step * height
    if size != expected:
        raise ImageConversionError(
            f"data holds {size} bytes, expected step {step} x height {height} = {expected}"
        )
    dtype = fmt.dtype
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
        dtype = dtype.newbyteorder()
    shape = (height, width, fmt.channels) if fmt.channels > 1 else (height, width)
    strides = (step, pixel_bytes, dtype.itemsize) if fmt.channels > 1 else (step, dtype.itemsize)
    array = np.ndarray(shape=shape, dtype=dtype, buffer=memoryview(buffer), strides=strides)
    if dtype != fmt.dtype:  # foreign byte order: one copy into native order
        array = array.astype(fmt.dtype)
    return _convert(array, msg.encoding, desired_encoding)


def numpy_to_image(
    array: np.ndarray, encoding: str = "rgb8", header: Header | None = None
) -> Image:
    """numpy array -> sensor_msgs/Image with the given encoding (validated against the array)."""
    fmt = _format_of(encoding)
    array = np.asarray(array)
    if array.dtype != fmt.dtype:
        raise ImageConversionError(f"{encoding} needs dtype {fmt.dtype}, got {array.dtype}")
    if fmt.channels == 1:
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim != 2:
            raise ImageConversionError(f"{encoding} needs a (H, W) array, got {array.shape}")
    elif array.ndim != 3 or array.shape[2] != fmt.channels:
        raise ImageConversionError(
            f"{encoding} needs a (H, W, {fmt.channels}) array, got {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageConversionError(f"image has no pixels: {array.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_HOST_BIG_ENDIAN)
    msg.step = int(array.shape[1] * fmt.channels * fmt.dtype.itemsize)
    # tobytes() is one C-order copy; assigning bytes avoids rclpy's slow per-element path.
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def _convert(array: np.ndarray, source: str, target: str) -> np.ndarray:
    if target in ("passthrough", source):
        return array
    _format_of(target)
    if source in _CHANNEL_ORDER and target in _CHANNEL_ORDER:
        src, dst = _CHANNEL_ORDER[source], _CHANNEL_ORDER[target]
        index = [src.index(c) for c in dst if c in src]
        if len(index) == len(dst):
            return array[:, :, index]
        if dst.endswith("a"):  # add an opaque alpha channel
            alpha = np.full(array.shape[:2] + (1,), 255, dtype=np.uint8)
            return np.concatenate([array[:, :, index], alpha], axis=2)
    raise ImageConversionError(f"cannot convert {source} to {target}")


class CvBridge:
    """cv_bridge-compatible facade over `image_to_numpy` / `numpy_to_image`."""

    def imgmsg_to_cv2(self, img_msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
        return image_to_numpy(img_msg, desired_encoding)

    def cv2_to_imgmsg(
        self, cvim: np.ndarray, encoding: str = "passthrough", header: Header | None = None
    ) -> Image:
        if encoding == "passthrough":
            encoding = _guess_encoding(np.asarray(cvim))
        return numpy_to_image(cvim, encoding, header)


_CV_DEFAULTS = {  # cv_bridge's "passthrough" choice for OpenCV-style arrays
    (np.dtype(np.uint8), 1): "mono8",
    (np.dtype(np.uint8), 3): "bgr8",
    (np.dtype(np.uint8), 4): "bgra8",
    (np.dtype(np.uint16), 1): "16UC1",
    (np.dtype(np.float32), 1): "32FC1",
}


def _guess_encoding(array: np.ndarray) -> str:
    channels = 1 if array.ndim == 2 else array.shape[-1]
    try:
        return _CV_DEFAULTS[(array.dtype, channels)]
    except KeyError:
        raise ImageConversionError(
            f"no encoding for dtype {array.dtype} with {channels} channels; pass one explicitly"
        ) from None
