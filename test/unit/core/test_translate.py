"""The sideways-translation relabelling of `augment_translate` (`mtopt_core.translate`): the
warp's geometry, which rows it relabels and how, the finger mask and fill. Against rendered
images of the simulated wrist camera: test/sim/test_wrist_translate.py; in the trainer:
test/unit/core/test_trainer.py."""

import math

import numpy as np
import pytest
import torch

from mtopt_core.action import GRIPPER, TERMINATE
from mtopt_core.trainer import TrainerConfig
from mtopt_core.translate import (
    TranslateSettings,
    WristCameraModel,
    fill_masked,
    finger_mask,
    source_pixels,
    translate_batch,
    translate_images,
)

SIZE = 32


def project(point_tool: np.ndarray, camera: WristCameraModel, size: int) -> np.ndarray:
    """(column, row) of a tool-frame point in the camera's image (pixel centres at +0.5)."""
    f = (size / 2) / math.tan(math.radians(camera.fovy_deg) / 2)
    c = (point_tool - np.asarray(camera.position_m)) @ camera.axes()
    return np.array([c[0] / -c[2] * f + size / 2 - 0.5, -c[1] / -c[2] * f + size / 2 - 0.5])


def test_no_shift_is_the_identity():
    src = source_pixels(SIZE, np.zeros((1, 2)), np.array([0.2]))[0]
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    np.testing.assert_allclose(src[..., 0], cols, atol=1e-9)
    np.testing.assert_allclose(src[..., 1], rows, atol=1e-9)


@pytest.mark.parametrize("shift", [(0.02, 0.0), (0.0, -0.03), (-0.015, 0.025)])
def test_a_floor_point_is_found_where_the_unmoved_camera_sees_it(shift):
    camera, depth = WristCameraModel(), 0.2
    src = source_pixels(SIZE, np.array([shift]), np.array([depth]))[0]
    # The floor point the moved camera sees at pixel (12, 20) ...
    col, row = 12, 20
    moved = WristCameraModel(
        position_m=tuple(np.asarray(camera.position_m) + [shift[0], shift[1], 0.0])
    )
    f = (SIZE / 2) / math.tan(math.radians(camera.fovy_deg) / 2)
    ray = camera.axes() @ np.array([(col + 0.5 - SIZE / 2) / f, -(row + 0.5 - SIZE / 2) / f, -1])
    origin = np.asarray(moved.position_m)
    point = origin + (depth - origin[2]) / ray[2] * ray
    # ... is where the unmoved camera sees that point.
    np.testing.assert_allclose(src[row, col], project(point, camera, SIZE), atol=1e-6)


def test_translating_an_image_moves_its_content_the_way_the_camera_moved():
    image = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    image[0, 14:18, 14:18] = 255  # a bright square on the floor
    # The camera moves toward the image's right (+y): the square goes left in the image.
    right = translate_images(image, np.array([[0.0, 0.04]]), np.array([0.2]))[0]
    cols = np.flatnonzero(right[..., 0].max(axis=0) > 128)
    assert cols.mean() < 15.5 - 1.5
    # Toward +x (image up, the tool axis): the square goes down the image.
    up = translate_images(image, np.array([[0.04, 0.0]]), np.array([0.2]))[0]
    rows = np.flatnonzero(up[..., 0].max(axis=1) > 128)
    assert rows.mean() > 15.5 + 1.5


def batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8)
    images[:, :4] = 40  # the palm: the same in every image
    actions = rng.uniform(-1, 1, (n, 6)).astype(np.float32)
    actions[:, GRIPPER] = (rng.random(n) < 0.2).astype(np.float32)
    actions[:, TERMINATE] = (rng.random(n) < 0.1).astype(np.float32)
    closed = (rng.random(n) < 0.2).astype(np.float32)
    height = rng.uniform(0.0, 0.25, n).astype(np.float32)
    return images, actions, closed, height


def test_only_open_moving_rows_high_enough_are_relabelled_and_moves_stay_in_bounds():
    images, actions, closed, height = batch()
    settings = TranslateSettings(probability=1.0)
    new_images, new_actions, changed = translate_batch(
        images, actions, closed, height, np.random.default_rng(1), settings
    )
    eligible = (
        (closed < 0.5)
        & (actions[:, GRIPPER] < 0.5)
        & (actions[:, TERMINATE] < 0.5)
        & (height >= settings.min_height_m)
    )
    assert changed.any() and np.array_equal(changed, eligible)
    assert np.array_equal(new_images[~changed], images[~changed])
    assert np.array_equal(new_actions[~changed], actions[~changed])
    assert np.array_equal(new_actions[:, 2:], actions[:, 2:])  # height, yaw, gripper, end
    added = (new_actions[:, :2] - actions[:, :2]) * settings.max_translation_m
    assert np.abs(added).max() <= settings.max_shift_m + 1e-6
    assert np.abs(new_actions[:, :2]).max() <= 1.0
    assert not np.array_equal(new_images[changed], images[changed])
    assert np.all(new_images[changed][:, :4] == 40)  # the fingers and palm stay


def test_about_the_probability_of_eligible_rows_is_relabelled():
    images, actions, closed, height = batch(n=400)
    _, _, changed = translate_batch(
        images, actions, closed, height, np.random.default_rng(2), TranslateSettings()
    )
    eligible = (closed < 0.5) & (actions[:, 4] < 0.5) & (actions[:, 5] < 0.5) & (height >= 0.08)
    assert 0.35 < changed.sum() / eligible.sum() < 0.65


def test_the_finger_mask_is_what_stays_still_and_the_fill_comes_from_around_it():
    images, *_ = batch(n=16)
    images[:, 10:14, 0:5] = 7  # a finger
    mask = finger_mask(images)
    assert mask[:4].all() and mask[10:14, 0:5].all() and mask.mean() < 0.5
    assert finger_mask(images[:3]) is None  # too few images to tell
    x = torch.full((1, 1, 8, 8), 100.0)
    hole = np.zeros((8, 8), bool)
    hole[2:5, 2:5] = True
    x[0, 0, 2:5, 2:5] = 0.0
    filled = fill_masked(x, hole)
    torch.testing.assert_close(filled, torch.full_like(x, 100.0))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="probability"):
        TranslateSettings(probability=1.5)
    with pytest.raises(ValueError, match="max_shift_m"):
        TranslateSettings(max_shift_m=0.08)
    with pytest.raises(ValueError, match="augment_translate"):
        TrainerConfig(augment_translate=-0.1)
