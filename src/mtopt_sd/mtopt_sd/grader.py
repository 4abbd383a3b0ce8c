"""Grading logic of the SD node (no rclpy): request validation, inference, checkpoint hot reload.

`Grader` owns the loaded success detector. `grade_images` checks the three final camera images
of a `GradeEpisode` request (present, rgb8/bgr8, the size the checkpoint was trained on) and
returns per-task probabilities; `poll` reloads the checkpoint when its file changes (mtime,
size or inode), keeping the current model when the new file is refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sensor_msgs.msg import Image

from mtopt_bridge.image import ImageConversionError, image_to_numpy
from mtopt_core.sd_model import LoadedCheckpoint, SDCheckpointError, load_checkpoint

ACCEPTED_ENCODINGS = ("rgb8", "bgr8")


class GradeRequestError(ValueError):
    """A grade request cannot be graded; the message says which view and why."""


@dataclass(frozen=True)
class ReloadEvent:
    """Outcome of a checkpoint change seen by `Grader.poll`.

    Fields:
        reloaded: True when the new checkpoint is now in use.
        version: the model version in use after the event.
        error: why the new file was refused (empty when reloaded).
    """

    reloaded: bool
    version: str
    error: str = ""


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Grader:
    """The success detector behind `sd/grade`, with hot reload of its checkpoint file."""

    def __init__(self, checkpoint: str | os.PathLike, expected_tasks: Sequence[str] | None = None):
        self.path = Path(checkpoint)
        self.expected_tasks = tuple(expected_tasks) if expected_tasks is not None else None
        self._key = _file_key(self.path)
        self.current: LoadedCheckpoint = load_checkpoint(self.path, self.expected_tasks)
        self._missing_reported = False

    @property
    def version(self) -> str:
        return self.current.version

    @property
    def task_names(self) -> tuple[str, ...]:
        return self.current.config.task_names

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.current.config.cameras

    @property
    def image_size(self) -> int:
        return self.current.config.image_size

    def poll(self) -> ReloadEvent | None:
        """Reload when the checkpoint file changed since the last look; None when unchanged.

        A refused file is not retried until it changes again. A vanished file keeps the model
        and is reported once.
        """
        key = _file_key(self.path)
        if key is None:
            if self._missing_reported:
                return None
            self._missing_reported = True
            return ReloadEvent(False, self.version, f"{self.path}: file disappeared")
        self._missing_reported = False
        if key == self._key:
            return None
        self._key = key
        try:
            loaded = load_checkpoint(self.path, self.expected_tasks)
        except SDCheckpointError as exc:
            return ReloadEvent(False, self.version, str(exc))
        self.current = loaded
        return ReloadEvent(True, self.version)

    def images_to_array(self, images: Sequence[Image]) -> np.ndarray:
        """Validate one Image per camera -> uint8 (V, S, S, 3) RGB; GradeRequestError if bad."""
        size = self.image_size
        problems, arrays = [], []
        for camera, msg in zip(self.cameras, images, strict=True):
            if msg.width == 0 or msg.height == 0 or len(msg.data) == 0:
                problems.append(f"view '{camera}' is missing (empty image)")
                continue
            if msg.encoding not in ACCEPTED_ENCODINGS:
                problems.append(
                    f"view '{camera}' has encoding {msg.encoding!r}; send "
                    f"{' or '.join(ACCEPTED_ENCODINGS)}"
                )
                continue
            if msg.width != size or msg.height != size:
                problems.append(
                    f"view '{camera}' is {msg.width}x{msg.height}; the success detector "
                    f"({self.version}) takes {size}x{size}"
                )
                continue
            try:
                arrays.append(image_to_numpy(msg, "rgb8"))
            except ImageConversionError as exc:
                problems.append(f"view '{camera}': {exc}")
        if problems:
            raise GradeRequestError("; ".join(problems))
        return np.stack(arrays)

    def grade_array(self, views: np.ndarray) -> np.ndarray:
        """uint8 (V, S, S, 3) RGB -> P(success) per task (T,) float32."""
        tensor = torch.from_numpy(np.ascontiguousarray(views)).permute(0, 3, 1, 2)
        tensor = tensor.unsqueeze(0).to(torch.float32).div_(255.0)
        return self.current.model.predict_proba(tensor)[0].numpy().astype(np.float32)

    def grade_images(self, images: Sequence[Image]) -> np.ndarray:
        """Validate and grade one episode's final images (one per camera, camera order)."""
        return self.grade_array(self.images_to_array(images))
