"""Writing success-detector example clips in the folder format `sd_data.load_example_videos`
reads: ``<root>/<task>/<success|failure>/cell<c>/clip<k>/<camera>.mp4`` plus a ``meta.json``.

A clip is written into ``clip<k>.part`` and renamed into place when complete, so a reader
(which skips ``.part`` folders) never sees half a clip and an interrupted recorder can resume.
The simulator's generator (`mtopt-sd-examples`, `mtopt_sim.sd_examples`) records its clips
through this; so can a recorder on a real cell.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_sd.sd_data import VIDEO_RATE_HZ

CLIP_LAYOUT = "<task>/<success|failure>/cell<c>/clip<k>/<camera>.mp4"


@dataclass
class Clip:
    """A recorded clip: frames per camera and the outcome of every frame."""

    frames: dict[str, list[np.ndarray]]  # camera -> uint8 RGB images, oldest first
    outcomes: list[bool]  # the clip's task outcome, per frame; the last one is the label
    oracle: dict[str, bool]  # every task's outcome at the final frame
    scenario: str  # what was staged to show the outcome
    objects: dict[str, Any]  # which objects were held / lifted / placed at the end


def clip_path(root: Path, task: str, success: bool, cell: int, clip: int) -> Path:
    """Where clip number `clip` of (task, outcome, cell) lives under `root`."""
    outcome = "success" if success else "failure"
    return Path(root) / task / outcome / f"cell{cell}" / f"clip{clip:03d}"


def write_clip(clip_dir: Path, clip: Clip, task: str) -> None:
    """Write one mp4 per camera (+ meta.json) into a temp folder, then rename it into place."""
    if not clip.outcomes or not clip.frames:
        raise ValueError(f"{clip_dir}: a clip needs at least one frame")
    tmp = clip_dir.with_name(clip_dir.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for camera, images in clip.frames.items():
        h, w = images[0].shape[:2]
        path = tmp / f"{camera}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_RATE_HZ, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {path}")
        for image in images:
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
    meta = {
        "task": task,
        "label": clip.outcomes[-1],
        "frames": len(clip.outcomes),
        "scenario": clip.scenario,
        "oracle_final": clip.oracle,
        "objects": clip.objects,
    }
    atomic_write_bytes(tmp / "meta.json", json.dumps(meta, indent=1).encode())
    os.replace(tmp, clip_dir)
