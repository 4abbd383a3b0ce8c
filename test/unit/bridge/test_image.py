"""numpy <-> sensor_msgs/Image conversion: round trips, zero-copy, and every malformed input."""

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mtopt_bridge.image import CvBridge, ImageConversionError, image_to_numpy, numpy_to_image

RNG = np.random.default_rng(0)

CASES = {
    "rgb8": RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (6, 7), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (6, 7), dtype=np.uint16),
    "32FC1": RNG.random((6, 7), dtype=np.float32),
}


@pytest.mark.parametrize("encoding", sorted(CASES))
def test_round_trip_is_exact(encoding):
    array = CASES[encoding]
    msg = numpy_to_image(array, encoding, Header(frame_id="cam"))
    assert (msg.height, msg.width, msg.encoding) == (6, 7, encoding)
    assert msg.step == 7 * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    assert msg.header.frame_id == "cam"
    back = image_to_numpy(msg)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_read_is_zero_copy():
    msg = numpy_to_image(CASES["rgb8"], "rgb8")
    view = image_to_numpy(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))


def test_padded_rows_are_honoured():
    array = CASES["rgb8"]
    padded = np.zeros((6, 7 * 3 + 5), dtype=np.uint8)
    padded[:, : 7 * 3] = array.reshape(6, -1)
    msg = Image(height=6, width=7, encoding="rgb8", step=26, data=padded.tobytes())
    np.testing.assert_array_equal(image_to_numpy(msg), array)


def test_foreign_byte_order_is_swapped():
    depth = CASES["16UC1"]
    msg = Image(
        height=6,
        width=7,
        encoding="16UC1",
        step=14,
        is_bigendian=1,
        data=depth.astype(">u2").tobytes(),
    )
    np.testing.assert_array_equal(image_to_numpy(msg), depth)


def test_colour_conversions():
    rgb = CASES["rgb8"]
    msg = numpy_to_image(rgb, "rgb8")
    np.testing.assert_array_equal(image_to_numpy(msg, "bgr8"), rgb[:, :, ::-1])
    rgba = image_to_numpy(msg, "rgba8")
    np.testing.assert_array_equal(rgba[:, :, :3], rgb)
    assert (rgba[:, :, 3] == 255).all()
    with pytest.raises(ImageConversionError, match="cannot convert rgb8 to mono8"):
        image_to_numpy(msg, "mono8")


def test_cv_bridge_names():
    bridge = CvBridge()
    bgr = CASES["bgr8"]
    msg = bridge.cv2_to_imgmsg(bgr)  # passthrough picks bgr8 for uint8 x3, as cv_bridge
    assert msg.encoding == "bgr8"
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg, "rgb8"), bgr[:, :, ::-1])
    assert bridge.cv2_to_imgmsg(CASES["32FC1"]).encoding == "32FC1"
    with pytest.raises(ImageConversionError, match="no encoding for dtype int64"):
        bridge.cv2_to_imgmsg(np.zeros((2, 2), dtype=np.int64))


def _msg(**overrides):
    msg = numpy_to_image(CASES["rgb8"], "rgb8")
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding 'yuv422'"),
        ({"height": 0}, "image has no pixels"),
        ({"step": 20}, "step 20 is smaller than width 7 x 3 bytes per pixel"),
        ({"data": bytes(10)}, "data holds 10 bytes, expected step 21 x height 6 = 126"),
        ({"height": 7}, "data holds 126 bytes, expected step 21 x height 7 = 147"),
    ],
)
def test_malformed_messages_are_rejected(overrides, error):
    with pytest.raises(ImageConversionError, match=error):
        image_to_numpy(_msg(**overrides))


def test_odd_step_for_wide_pixels_is_rejected():
    msg = numpy_to_image(CASES["16UC1"], "16UC1")
    msg.step, msg.data = 15, bytes(15 * 6)
    with pytest.raises(ImageConversionError, match="step 15 is not a multiple of 2"):
        image_to_numpy(msg)


@pytest.mark.parametrize(
    ("array", "encoding", "error"),
    [
        (np.zeros((4, 4, 3), np.float32), "rgb8", "rgb8 needs dtype uint8, got float32"),
        (np.zeros((4, 4), np.uint8), "rgb8", r"rgb8 needs a \(H, W, 3\) array"),
        (np.zeros((4, 4, 3), np.uint8), "mono8", r"mono8 needs a \(H, W\) array"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", "image has no pixels"),
        (np.zeros((4, 4), np.uint8), "jpeg", "unsupported encoding 'jpeg'"),
    ],
)
def test_malformed_arrays_are_rejected(array, encoding, error):
    with pytest.raises(ImageConversionError, match=error):
        numpy_to_image(array, encoding)


def test_single_channel_array_with_trailing_axis_is_accepted():
    depth = CASES["32FC1"][:, :, None]
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(depth, "32FC1")), depth[:, :, 0])


def test_non_contiguous_input_is_written_correctly():
    array = CASES["rgb8"][:, ::2]
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(array, "rgb8")), array)
