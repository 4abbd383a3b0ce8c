"""Fixtures for the success-detector tests: a small task registry and synthetic example videos.

The synthetic world: each cell has its own background colour (its "lighting"); a success of
lift-red / lift-blue shows a red / blue block high up in the image (held by the gripper),
a lift-any failure shows the blocks lying in the bin at the bottom. Each camera sees the scene
shifted differently, as three cameras would.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mtopt_core.sd_model import CAMERAS
from mtopt_core.tasks import load_task_registry

SMALL_TASKS_YAML = """
skills:
  object_acquisition: Pick up an object.
tasks:
  - {name: lift-any,  skill: object_acquisition}
  - {name: lift-red,  skill: object_acquisition, object: red}
  - {name: lift-blue, skill: object_acquisition, object: blue}
rules:
  - generalizes: {general: lift-any, specific: [lift-red, lift-blue]}
  - mutually_exclusive: [lift-red, lift-blue]
"""

COLOURS = {"red": (220, 30, 30), "blue": (30, 40, 220)}
CAMERA_SHIFT = {"overhead": (0, 0), "left_shoulder": (-5, 3), "right_shoulder": (5, 3)}


@pytest.fixture
def small_tasks_file(tmp_path) -> Path:
    path = tmp_path / "tasks.yaml"
    path.write_text(SMALL_TASKS_YAML)
    return path


@pytest.fixture
def small_registry(small_tasks_file):
    return load_task_registry(small_tasks_file)


def scene(rng: np.random.Generator, cell: int, lifted: str | None, camera: str, size: int = 48):
    """One synthetic RGB camera image."""
    base = np.array([60 + 25 * cell, 90 + 10 * (cell % 3), 120 - 15 * cell], dtype=np.float64)
    img = np.clip(base + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    dx, dy = CAMERA_SHIFT[camera]
    cv2.rectangle(img, (0, 34 + dy), (size - 1, size - 1), (90, 70, 50), -1)  # the bin
    for name in COLOURS:  # objects still in the bin
        if name != lifted:
            x = int(rng.integers(4, size - 12)) + dx
            cv2.rectangle(img, (x, 38 + dy), (x + 7, 44 + dy), COLOURS[name], -1)
    if lifted is not None:  # the held object, high up
        x = 20 + dx + int(rng.integers(-3, 4))
        y = 8 + dy + int(rng.integers(-2, 3))
        cv2.rectangle(img, (x, y), (x + 8, y + 7), COLOURS[lifted], -1)
    return img


def write_clip_files(
    clip_dir: Path, frames: dict[str, list[np.ndarray]], fps: float = 5.0
) -> None:
    """Write one mp4 per camera (RGB frames) into clip_dir."""
    clip_dir.mkdir(parents=True, exist_ok=True)
    for camera, images in frames.items():
        h, w = images[0].shape[:2]
        writer = cv2.VideoWriter(
            str(clip_dir / f"{camera}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
        )
        assert writer.isOpened()
        for image in images:
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()


# (task folder, outcome folder) -> what the clip shows
CLIP_KINDS = {
    ("lift-red", "success"): "red",
    ("lift-blue", "success"): "blue",
    ("lift-any", "failure"): None,
    ("lift-red", "failure"): "blue",  # wrong object lifted: a lift-red failure
}


def make_example_folder(root: Path, cells, clips: int = 2, frames: int = 5, seed: int = 0):
    """Synthetic example videos for the small registry; returns the root."""
    rng = np.random.default_rng(seed)
    for cell in cells:
        for (task, outcome), lifted in CLIP_KINDS.items():
            for clip in range(clips):
                views = {
                    camera: [scene(rng, cell, lifted, camera) for _ in range(frames)]
                    for camera in CAMERAS
                }
                write_clip_files(root / task / outcome / f"cell{cell}" / f"clip{clip:03d}", views)
    return root


@pytest.fixture
def example_folder_factory():
    return make_example_folder


@pytest.fixture
def write_clip():
    return write_clip_files
