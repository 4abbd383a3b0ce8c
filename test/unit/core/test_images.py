"""mtopt_core.images: the policy image of a camera frame (region of interest, crop, resize) and
the DrQ random shift."""

import numpy as np
import pytest

from mtopt_core.images import (
    FULL_FRAME,
    check_roi,
    crop_roi,
    policy_image,
    random_shift,
    roi_is_square,
    roi_pixels,
    square_resize,
)


def quadrants(h: int, w: int) -> np.ndarray:
    """A frame whose four quadrants have four colours (top-left red, top-right green,
    bottom-left blue, bottom-right white)."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[: h // 2, : w // 2] = (255, 0, 0)
    frame[: h // 2, w // 2 :] = (0, 255, 0)
    frame[h // 2 :, : w // 2] = (0, 0, 255)
    frame[h // 2 :, w // 2 :] = (255, 255, 255)
    return frame


def test_full_frame_is_todays_centre_crop_and_resize():
    frame = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(policy_image(frame, 32), square_resize(frame, 32))
    np.testing.assert_array_equal(policy_image(frame, 32, FULL_FRAME), square_resize(frame, 32))


def test_roi_selects_the_region_in_fractions_of_width_and_height():
    frame = quadrants(120, 160)
    top_right = policy_image(frame, 16, (0.5, 0.0, 1.0, 0.5))
    assert top_right.shape == (16, 16, 3)
    assert (top_right == (0, 255, 0)).all()
    bottom_left = policy_image(frame, 16, (0.0, 0.5, 0.5, 1.0))
    assert (bottom_left == (0, 0, 255)).all()
    # 80 x 60 px ROI: only its centre 60 x 60 square is kept, so no red from the left edge
    assert roi_pixels(frame.shape, (0.0, 0.0, 0.5, 0.5)) == (0, 0, 80, 60)
    assert crop_roi(frame, (0.0, 0.0, 0.5, 0.5)).shape == (60, 80, 3)
    assert not roi_is_square(frame.shape, (0.0, 0.0, 0.5, 0.5))
    assert roi_is_square(frame.shape, (0.0, 0.0, 0.375, 0.5))  # 60 x 60 px
    # a ROI straddling the centre of the frame sees all four colours
    centre = policy_image(frame, 20, (0.375, 0.25, 0.625, 0.75))
    colours = {tuple(c) for c in centre.reshape(-1, 3)}
    assert {(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)} <= colours


@pytest.mark.parametrize(
    "roi",
    [(0.0, 0.0, 1.0), (0.5, 0.0, 0.4, 1.0), (0.0, 0.0, 1.0, 1.2), (-0.1, 0, 1, 1),
     (0.0, 0.0, float("nan"), 1.0)],
)  # fmt: skip
def test_bad_roi_is_refused_with_its_name(roi):
    with pytest.raises(ValueError, match="policy_roi"):
        check_roi(roi, "policy_roi")
    with pytest.raises(ValueError):
        policy_image(np.zeros((8, 8, 3), np.uint8), 8, roi)


def offset_of(shifted: np.ndarray, original: np.ndarray, pad: int) -> tuple[int, int]:
    """The (dy, dx) at which `shifted` is the edge-padded original's crop (exactly one)."""
    padded = np.pad(original, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = original.shape[:2]
    hits = [
        (dy, dx)
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        if np.array_equal(padded[dy : dy + h, dx : dx + w], shifted)
    ]
    assert len(hits) == 1, hits
    return hits[0]


def test_random_shift_crops_the_padded_image_at_a_random_offset_per_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 12, 12, 3), dtype=np.uint8)
    assert random_shift(images, 0, rng) is images  # pad 0 = off
    shifted = random_shift(images, 4, np.random.default_rng(1))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    offsets = [offset_of(s, im, 4) for s, im in zip(shifted, images, strict=True)]
    # every image has its own offset, drawn from {0..8} x {0..8} (81 values for 64 images)
    assert len(set(offsets)) > 30
    assert (
        2 < np.mean([dy for dy, _ in offsets]) < 6 and 2 < np.mean([dx for _, dx in offsets]) < 6
    )
    # same generator state, same shifts (reproducible); another seed, other shifts
    np.testing.assert_array_equal(shifted, random_shift(images, 4, np.random.default_rng(1)))
    assert not np.array_equal(shifted, random_shift(images, 4, np.random.default_rng(2)))
    with pytest.raises(ValueError, match="pad"):
        random_shift(images, -1, rng)
