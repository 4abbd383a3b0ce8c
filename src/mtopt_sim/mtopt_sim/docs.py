"""Render the pictures of docs/sim/: the three camera views, the cell variations, GIFs of a
scripted pick, a scripted place and a bin reset, and the policy camera's region-of-interest view.

    python -m mtopt_sim.docs [--out docs/sim]     (from the repository root; also
    scripts/render_sim_docs.py)
    python -m mtopt_sim.docs --policy-views-only  (only the policy camera pictures)

Deterministic (fixed seeds). Every file is kept under `MAX_BYTES` (GIFs use a small palette and
are re-encoded smaller if needed).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mtopt_core.images import policy_image, roi_pixels
from mtopt_sim.camera_roi import bin_roi
from mtopt_sim.env import EnvConfig, MTOptCell
from mtopt_sim.scene import CAMERA_NAMES
from mtopt_sim.scripted import (
    ScriptedPick,
    ScriptedPlace,
    pick_config,
    place_config,
    run_episode,
)

MAX_BYTES = 300_000


def _save_png(image: np.ndarray, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    Image.fromarray(image).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)


def _save_gif(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """Animated GIF under MAX_BYTES: fewer colours, then every other frame, if needed."""
    for colours, stride in ((96, 1), (64, 1), (48, 2), (32, 2), (24, 3)):
        chosen = frames[::stride]
        images = [
            Image.fromarray(f).quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
            for f in chosen
        ]
        buffer = io.BytesIO()
        images[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            loop=0,
            duration=int(1000 * stride / fps),
            optimize=True,
            disposal=1,
        )
        if buffer.tell() <= MAX_BYTES:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, path)
            return
    raise RuntimeError(f"{path.name}: could not get the GIF under {MAX_BYTES} bytes")


class _Recorder:
    def __init__(self, camera: str, width: int, height: int):
        self.camera, self.width, self.height = camera, width, height
        self.frames: list[np.ndarray] = []

    def __call__(self, cell) -> None:
        self.frames.append(cell.render(self.camera, self.width, self.height))


def render_policy_views(out: Path, frame_size: int = 128, image_size: int = 64) -> list[Path]:
    """The policy camera's right-bin region of interest (`mtopt_sim.camera_roi.bin_roi`): the
    frame with the ROI outlined (`policy_roi_frame.png`) and the 64 px image cut from it
    (`policy_camera_roi_64px.png`, scaled up 4x like `policy_camera_64px.png`)."""
    out.mkdir(parents=True, exist_ok=True)
    env = MTOptCell(EnvConfig())
    env.reset(seed=3)
    cell = env.cell
    roi = bin_roi(cell, "right", env.config.policy_camera)
    frame = cell.render(env.config.policy_camera, frame_size, frame_size)
    env.close()
    small = policy_image(frame, image_size, roi)
    outlined = np.kron(frame, np.ones((2, 2, 1), dtype=np.uint8))
    left, top, right, bottom = (2 * v for v in roi_pixels(frame.shape, roi))
    green = np.array([40, 220, 40], dtype=np.uint8)
    outlined[top : top + 2, left:right] = outlined[bottom - 2 : bottom, left:right] = green
    outlined[top:bottom, left : left + 2] = outlined[top:bottom, right - 2 : right] = green
    written = [out / "policy_roi_frame.png", out / "policy_camera_roi_64px.png"]
    _save_png(outlined, written[0])
    _save_png(np.kron(small, np.ones((4, 4, 1), dtype=np.uint8)), written[1])
    written.append(render_wrist_descent(out / "policy_camera_wrist_64px.png", image_size))
    return written


def render_wrist_descent(path: Path, image_size: int = 64) -> Path:
    """The wrist camera's 64 px policy images (scaled up 4x) while the gripper descends from
    the start height by three full steps and closes, above the middle of the right bin."""
    env = MTOptCell(EnvConfig(policy_camera="wrist", image_size=image_size))
    obs, _ = env.reset(seed=5, options={"start": [0.56, -0.155, 0.21], "task": "lift-any"})
    images = [obs["image"]]
    for action in ([0, 0, -1, 0, 0, 0],) * 3 + ([0, 0, 0, 0, 1, 0],):
        obs, *_ = env.step(np.array(action, np.float32))
        images.append(obs["image"])
    env.close()
    strip = np.concatenate([np.kron(i, np.ones((4, 4, 1), dtype=np.uint8)) for i in images], 1)
    _save_png(strip, path)
    return path


def render_all(out: Path) -> list[Path]:
    """Render every picture into `out`; returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    env = MTOptCell(EnvConfig())
    env.reset(seed=3)
    cell = env.cell

    # The three camera views of cell 0, and the policy camera at 64 px (scaled up).
    views = [cell.render(name, 320, 240) for name in CAMERA_NAMES]
    path = out / "cameras.png"
    _save_png(np.concatenate(views, axis=1), path)
    written.append(path)
    for name, view in zip(CAMERA_NAMES, views, strict=True):
        path = out / f"camera_{name}.png"
        _save_png(view, path)
        written.append(path)
    small = cell.render(env.config.policy_camera, 64, 64)
    path = out / "policy_camera_64px.png"
    _save_png(np.kron(small, np.ones((4, 4, 1), dtype=np.uint8)), path)
    written.append(path)

    # Pick, then place (the collection order), then the bin reset.
    pick = ScriptedPick(pick_config(noisy=False), rng=np.random.default_rng(5))
    place = ScriptedPlace(place_config(noisy=False), rng=np.random.default_rng(6))
    recorder = _Recorder("right_shoulder", 200, 150)
    for _ in range(5):
        recorder.frames.clear()
        cell.watch(recorder, 0.08)
        record = run_episode(env, pick, "lift-any")
        cell.watch(None, 1.0)
        if record.oracle["lift-any"]:
            break
        cell.actuate_gripper(close=False)
    path = out / "pick.gif"
    _save_gif(recorder.frames, path, fps=12.5)
    written.append(path)

    recorder = _Recorder("left_shoulder", 200, 150)
    cell.watch(recorder, 0.08)
    run_episode(env, place, "place-any")
    cell.watch(None, 1.0)
    path = out / "place.gif"
    _save_gif(recorder.frames, path, fps=12.5)
    written.append(path)

    # Put a few more objects into the left bin so that the dump shows something.
    rng = np.random.default_rng(1)
    in_right = [i for i in cell.active_objects if cell.object_region(i) == "right_bin"]
    center = cell.scene_config.bin_center("left")
    for k, index in enumerate(rng.choice(in_right, size=3, replace=False)):
        xy = center + rng.uniform(-0.05, 0.05, 2)
        cell.place_object(int(index), [xy[0], xy[1], cell.floor_z + 0.08 + 0.07 * k])
    cell.advance(1.0)
    recorder = _Recorder("right_shoulder", 200, 150)
    cell.watch(recorder, 0.1)
    env.reset_bins()
    cell.watch(None, 1.0)
    path = out / "bin_reset.gif"
    _save_gif(recorder.frames, path, fps=10.0)
    written.append(path)
    env.close()

    # Cell variation: the left-shoulder view of cells 0..6 (same objects, different looks).
    tiles = []
    for cell_id in range(7):
        e = MTOptCell(EnvConfig(cell=EnvConfig().cell.__class__(cell_id=cell_id)))
        e.reset(seed=3)
        tiles.append(e.cell.render("left_shoulder", 160, 120))
        e.close()
    tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate(
        [np.concatenate(tiles[:4], axis=1), np.concatenate(tiles[4:], axis=1)], axis=0
    )
    path = out / "cells_0_to_6.png"
    _save_png(grid, path)
    written.append(path)
    written += render_policy_views(out)
    for p in written:
        if p.stat().st_size > MAX_BYTES:
            raise RuntimeError(f"{p} is {p.stat().st_size} bytes (> {MAX_BYTES})")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("docs/sim"), help="output directory (docs/sim)"
    )
    parser.add_argument(
        "--policy-views-only",
        action="store_true",
        help="only the policy camera's region-of-interest pictures",
    )
    args = parser.parse_args(argv)
    render = render_policy_views if args.policy_views_only else render_all
    for path in render(args.out):
        print(f"{path} {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
