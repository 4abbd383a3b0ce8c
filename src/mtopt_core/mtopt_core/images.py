"""Image helpers shared by the policy, the learner, the simulator and the success detector.

`policy_image(frame, size, roi)` is THE function that turns a camera frame into the Q-network's
image: the policy node applies it to camera frames, the gym env to rendered frames and the
episode decoder to a bag's final frame, so every path sees the same pixels. `roi` is a region
of interest (x0, y0, x1, y1) in fractions of the frame's width and height; the full frame
(0, 0, 1, 1) is the default and gives exactly `square_resize(frame, size)`.

`random_shift` is the DrQ image augmentation of Q-learning (Kostrikov et al. 2020): pad by k
pixels (edge pixels repeated) and crop back at a random offset, independently per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

#: The whole frame: (x0, y0, x1, y1) in fractions of width and height.
FULL_FRAME = (0.0, 0.0, 1.0, 1.0)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an (H, W, C) image to a square and resize it to size x size.

    Area filter when shrinking (no aliasing of small objects), bilinear when enlarging. The
    policy applies this to camera frames before acting, the learner to logged frames and the
    success detector to example video frames, so all three see the same pixels.
    """
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top : top + side, left : left + side]
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    return np.ascontiguousarray(image)


def check_roi(roi: Sequence[float], what: str = "roi") -> tuple[float, float, float, float]:
    """A region of interest as a validated (x0, y0, x1, y1) tuple of fractions of the frame:
    4 finite numbers with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1. Raises ValueError naming
    `what`."""
    values = tuple(float(v) for v in roi)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be 4 finite numbers [x0, y0, x1, y1], got {list(roi)}")
    x0, y0, x1, y1 = values
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ValueError(
            f"{what} must be fractions of the frame with 0 <= x0 < x1 <= 1 and "
            f"0 <= y0 < y1 <= 1, got {list(values)}"
        )
    return values


def roi_pixels(frame_shape: Sequence[int], roi: Sequence[float]) -> tuple[int, int, int, int]:
    """Pixel bounds (left, top, right, bottom), right/bottom exclusive, of `roi` in a frame of
    shape (H, W, ...); at least one pixel each way."""
    x0, y0, x1, y1 = check_roi(roi)
    h, w = int(frame_shape[0]), int(frame_shape[1])
    left, top = min(int(round(x0 * w)), w - 1), min(int(round(y0 * h)), h - 1)
    right, bottom = max(int(round(x1 * w)), left + 1), max(int(round(y1 * h)), top + 1)
    return left, top, right, bottom


def crop_roi(frame: np.ndarray, roi: Sequence[float]) -> np.ndarray:
    """The `roi` part of an (H, W, C) frame (a view; the full frame when roi is FULL_FRAME)."""
    left, top, right, bottom = roi_pixels(frame.shape, roi)
    return frame[top:bottom, left:right]


def roi_is_square(frame_shape: Sequence[int], roi: Sequence[float], tolerance: float = 0.02):
    """Whether `roi` spans a square of pixels in a frame of this shape (within `tolerance`
    relative difference): only then does `policy_image` keep all of it."""
    left, top, right, bottom = roi_pixels(frame_shape, roi)
    w, h = right - left, bottom - top
    return abs(w - h) <= tolerance * max(w, h)


def policy_image(frame: np.ndarray, size: int, roi: Sequence[float] = FULL_FRAME) -> np.ndarray:
    """The Q-network's size x size image of a camera frame: the `roi` crop, then
    `square_resize` (a non-square ROI loses its sides to the centre crop: pixels stay square).
    """
    return square_resize(crop_roi(frame, roi), size)


def random_shift(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """DrQ random shift of a batch of (B, H, W, C) images: each image is padded by `pad`
    pixels (edge pixels repeated) and cropped back to H x W at an offset drawn uniformly from
    {0..2 pad} x {0..2 pad}, independently per image. pad 0 returns the images unchanged."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, H, W, C), got {images.shape}")
    if pad == 0:
        return images
    b, h, w = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy = rng.integers(0, 2 * pad + 1, size=b)
    dx = rng.integers(0, 2 * pad + 1, size=b)
    rows = dy[:, None] + np.arange(h)  # (B, H)
    cols = dx[:, None] + np.arange(w)  # (B, W)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
