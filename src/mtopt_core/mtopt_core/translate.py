"""Sideways translations of the wrist camera: a data augmentation of Q-learning
(`augment_translate`).

A transition (s, a, s') whose gripper is at p moves it to p + m (m: the tool-frame sideways
move of a). The gripper at p - d would have reached the same s' with the move m + d. With a
camera fixed to the gripper, the image at p - d is the image at p seen from a camera moved by
-d: for the bin floor (a plane), a homography of the image at p. So (warp(s), a + d, s') is
another transition with the same Bellman target, for every d that keeps the move inside the
action bounds. The collected picks move sideways only by their noise; the relabelled moves
show the network, from the data's own successes and failures, which sideways move brings the
gripper over what it then grasped or missed (measured: no gain, `docs/results/learning.md`).

Approximations: the scene is taken as a plane `plane_height_m` above the bin floor (objects
and the bin walls are off it: against rendered images the warped start image differs from the
moved camera's by about a third of what the unwarped one does, test/sim); pixels the moved
camera sees outside the original image repeat the border; the gripper's own fingers and palm
(rigid with the camera) are kept, and filled around before the warp. Only rows with the
gripper open, not closing or terminating, and at least `min_height_m` above the floor are
translated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mtopt_core.action import GRIPPER, TERMINATE, ActionSpec


@dataclass(frozen=True)
class WristCameraModel:
    """A pinhole camera on the gripper, in the gripper's body frame moved to the TCP (z along
    the tool axis toward the fingers, fingers closing along y; the action's tool-frame x is
    this frame's -x, its y this y). Default: the simulated cell's wrist camera
    (`mtopt_sim.robot.RobotConfig.wrist_camera_*`: 5.5 cm behind the tool axis, 9.75 cm above
    the TCP). Its image's horizontal axis is +y; its view is tilted from the tool axis toward
    +x by `tilt_rad`."""

    position_m: tuple[float, float, float] = (-0.055, 0.0, -0.0975)
    tilt_rad: float = 0.40
    fovy_deg: float = 70.0

    def axes(self) -> np.ndarray:
        """(3, 3): the camera's x (image right), y (image up) and z (backward) axes as
        columns, in the tool frame."""
        s, c = math.sin(self.tilt_rad), math.cos(self.tilt_rad)
        x, y = np.array([0.0, 1.0, 0.0]), np.array([c, 0.0, -s])
        return np.stack([x, y, np.cross(x, y)], axis=1)


#: Tool-frame (action) xy to the camera model's frame: x is reversed.
ACTION_TO_CAMERA_FRAME = np.array([-1.0, 1.0])


def finger_mask(images: np.ndarray, min_images: int = 8, max_std: float = 15.0):
    """(H, W) bool: pixels that barely change across `images` (B, H, W, C) of an open gripper
    in different scenes, i.e. the gripper's own fingers and palm (camera noise aside: a few
    grey levels), grown by one pixel for their blurred edges; None with fewer than
    `min_images` images."""
    if len(images) < min_images:
        return None
    still = images.astype(np.float32).std(axis=0).max(axis=-1) < max_std
    grown = still.copy()
    grown[1:] |= still[:-1]
    grown[:-1] |= still[1:]
    grown[:, 1:] |= still[:, :-1]
    grown[:, :-1] |= still[:, 1:]
    return grown


def fill_masked(images: torch.Tensor, mask: np.ndarray, iterations: int = 12) -> torch.Tensor:
    """(B, C, H, W) float images with the pixels of `mask` (H, W) filled from their unmasked
    neighbours (repeated 3x3 averaging): what a moved camera would see where the unmoved one
    sees its own fingers is unknown; a smooth guess is better than a copy of the fingers."""
    known = torch.from_numpy(~mask).float()[None, None]
    filled = images * known
    kernel = torch.ones(1, 1, 3, 3)
    channels = images.shape[1]
    for _ in range(iterations):
        weight = F.conv2d(known, kernel, padding=1)
        total = F.conv2d(filled, kernel.repeat(channels, 1, 1, 1), padding=1, groups=channels)
        grown = (weight > 0).float()
        filled = torch.where(known.bool(), filled, total / weight.clamp(min=1e-6) * grown)
        known = torch.maximum(known, grown)
    return filled


def source_pixels(
    size: int,
    shift_m: np.ndarray,
    floor_depth_m: np.ndarray,
    camera: WristCameraModel = WristCameraModel(),
) -> np.ndarray:
    """Where each pixel of the image of a camera moved by `shift_m` (B, 2) tool-frame xy [m]
    finds its colour in the unmoved camera's image, for a plane `floor_depth_m` (B,) below the
    TCP along the tool axis: (B, size, size, 2) (column, row) in pixels."""
    f = (size / 2) / math.tan(math.radians(camera.fovy_deg) / 2)
    centres = np.arange(size) + 0.5 - size / 2
    cols, rows = np.meshgrid(centres, centres)  # (row, col) grids
    rays_cam = np.stack([cols / f, -rows / f, -np.ones_like(cols)], axis=-1)  # (H, W, 3)
    axes = camera.axes()
    rays = rays_cam @ axes.T  # tool frame
    if not (rays[..., 2] > 0).all():
        raise ValueError("the camera model sees above the horizon: no plane warp for it")
    origin = np.asarray(camera.position_m)
    b = len(shift_m)
    moved = np.zeros((b, 3))
    moved[:, :2] = shift_m
    moved += origin
    t = (floor_depth_m[:, None, None] - moved[:, None, None, 2]) / rays[None, ..., 2]
    points = moved[:, None, None, :] + t[..., None] * rays[None]  # (B, H, W, 3)
    in_cam = (points - origin) @ axes  # camera coordinates
    depth = -in_cam[..., 2]
    col = in_cam[..., 0] / depth * f + size / 2 - 0.5
    row = -in_cam[..., 1] / depth * f + size / 2 - 0.5
    return np.stack([col, row], axis=-1)


def translate_images(
    images: np.ndarray,
    shift_m: np.ndarray,
    floor_depth_m: np.ndarray,
    keep: np.ndarray | None = None,
    camera: WristCameraModel = WristCameraModel(),
) -> np.ndarray:
    """(B, H, W, C) uint8 images as the camera moved by `shift_m` (B, 2) would see them
    (bilinear, border repeated); pixels where `keep` (H, W) bool is set stay as they are."""
    b, h, w, _ = images.shape
    if h != w:
        raise ValueError(f"need square images, got {images.shape}")
    src = source_pixels(h, shift_m, floor_depth_m, camera)
    grid = torch.from_numpy((src + 0.5) / h * 2 - 1).float()  # align_corners=False
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    if keep is not None:
        x = fill_masked(x, keep)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if keep is not None:
        out[:, keep] = images[:, keep]
    return out


@dataclass(frozen=True)
class TranslateSettings:
    """The augmentation's settings (`TrainerConfig.augment_translate` sets `probability`)."""

    max_shift_m: float = 0.04  # largest |d| per axis
    max_translation_m: float = ActionSpec.max_translation_m  # the action scale
    plane_height_m: float = 0.03  # the plane above the floor the warp assumes
    min_height_m: float = 0.08  # rows below: not translated (parallax too large)
    probability: float = 0.5  # of translating an eligible row

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"translate probability must be in [0, 1], got {self.probability}")
        if not 0.0 < self.max_shift_m <= self.max_translation_m:
            raise ValueError(
                f"max_shift_m must be in (0, max_translation_m], got {self.max_shift_m}"
            )


def translate_batch(
    images: np.ndarray,
    actions: np.ndarray,
    gripper_closed: np.ndarray,
    height: np.ndarray,
    rng: np.random.Generator,
    settings: TranslateSettings = TranslateSettings(),
    camera: WristCameraModel = WristCameraModel(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel a batch: eligible rows get the image of a gripper moved by -d and the move
    m + d (normalized actions (B, 6), tool frame; d uniform per axis within the action
    bounds and `max_shift_m`); the fingers (`finger_mask` of the batch's open-gripper
    images) stay where they are. Returns new images, new actions and the (B,) mask of rows
    changed."""
    scale = settings.max_translation_m
    eligible = (
        (gripper_closed < 0.5)
        & (actions[:, GRIPPER] < 0.5)
        & (actions[:, TERMINATE] < 0.5)
        & (height >= settings.min_height_m)
    )
    mask = eligible & (rng.random(len(actions)) < settings.probability)
    move = actions[:, :2].astype(np.float64) * scale
    lo = np.maximum(-settings.max_shift_m, -scale - move)
    hi = np.minimum(settings.max_shift_m, scale - move)
    d = lo + (hi - lo) * rng.random(move.shape)
    new_actions = actions.copy()
    new_actions[mask, :2] = ((move[mask] + d[mask]) / scale).clip(-1, 1)
    new_images = images.copy()
    if mask.any():
        keep = finger_mask(images[gripper_closed < 0.5])
        depth = height[mask].astype(np.float64) - settings.plane_height_m
        shift = -d[mask] * ACTION_TO_CAMERA_FRAME
        new_images[mask] = translate_images(images[mask], shift, depth, keep, camera)
    return new_images, new_actions, mask
