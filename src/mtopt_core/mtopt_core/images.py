"""Image helpers shared by the policy, the learner and the success detector."""

from __future__ import annotations

import cv2
import numpy as np


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
