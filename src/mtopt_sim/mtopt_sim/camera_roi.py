"""Where the bins are in a camera image: pinhole projection of world points into a cell camera,
a square region of interest (ROI) that frames a bin, and how many pixels the bin gets.

    python -m mtopt_sim.camera_roi [--camera overhead] [--frame-size 128] [--image-size 64]

prints one JSON line: the ROI of the right bin (and of both bins) as fractions of the frame
(`EnvConfig.policy_roi` / the policy node's `policy_roi`), and the right bin's inner floor in
pixels of the policy image with the full frame and with each ROI.

The ROI is the bounding box of the bin's walls (floor to rim, outer edges) and of the space the
gripper works in above the bin's floor (up to `work_height` above it), widened by `margin_m`
on every side (it also covers the cells' camera jitter of up to 1.5 cm), then made square in
pixels around its centre and kept inside the frame.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import numpy as np

from mtopt_core.images import FULL_FRAME, roi_pixels

#: Height above the bin floor the ROI keeps in view: the start pose (0.20 m) plus the gripper.
WORK_HEIGHT_M = 0.21
MARGIN_M = 0.02


def project_points(cell, camera: str, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """World points (N, 3) -> pixel coordinates (N, 2) as (column, row) in a width x height
    image of `camera` (MuJoCo's pinhole camera: looks along its -z, y up, vertical fovy)."""
    import mujoco

    mujoco.mj_forward(cell.model, cell.data)
    cam = cell.model.camera(camera).id
    position = cell.data.cam_xpos[cam]
    axes = cell.data.cam_xmat[cam].reshape(3, 3)  # columns: camera x, y, z in world
    local = (np.asarray(points, float) - position) @ axes
    depth = -local[:, 2]
    if np.any(depth <= 0):
        raise ValueError(f"some points are behind camera {camera!r}")
    fovy = math.radians(float(cell.model.cam_fovy[cam]))
    focal = 0.5 * height / math.tan(fovy / 2)
    col = (width / 2) + focal * local[:, 0] / depth
    row = (height / 2) - focal * local[:, 1] / depth
    return np.stack([col, row], axis=1)


def bin_box_points(cell, which: str, work_height: float = WORK_HEIGHT_M) -> np.ndarray:
    """Corners (16, 3) of a bin's outer walls from its floor to its rim and of its inner area
    at `work_height` above the floor."""
    scene = cell.scene_config
    cx, cy = scene.bin_center(which)
    hx, hy = scene.bin_half(which)
    wall = scene.bin_wall
    points = []
    for z, (ex, ey) in (
        (0.0, (hx + wall, hy + wall)), (scene.rim_z, (hx + wall, hy + wall)),
        (scene.floor_z + work_height, (hx, hy)),
    ):  # fmt: skip
        points += [(cx + sx * ex, cy + sy * ey, z) for sx in (-1, 1) for sy in (-1, 1)]
    return np.asarray(points)


def bin_floor_points(cell, which: str) -> np.ndarray:
    """The 4 corners of a bin's inner floor (a quad, in order around it)."""
    scene = cell.scene_config
    cx, cy = scene.bin_center(which)
    hx, hy = scene.bin_half(which)
    z = scene.floor_z
    corners = ((-1, -1), (1, -1), (1, 1), (-1, 1))
    return np.array([(cx + sx * hx, cy + sy * hy, z) for sx, sy in corners])


def square_roi(
    cell,
    camera: str,
    points: np.ndarray,
    margin_m: float = MARGIN_M,
    frame_size: int = 512,
) -> tuple[float, float, float, float]:
    """The square (in pixels of a square frame) ROI around `points` widened by `margin_m`:
    (x0, y0, x1, y1) as fractions of the frame, inside [0, 1]."""
    grown = [
        p + np.array([dx, dy, dz])
        for p in np.asarray(points, float)
        for dx in (-margin_m, margin_m)
        for dy in (-margin_m, margin_m)
        for dz in (-margin_m, margin_m)
    ]
    pix = project_points(cell, camera, np.asarray(grown), frame_size, frame_size) / frame_size
    lo, hi = pix.min(axis=0), pix.max(axis=0)
    side = min(1.0, float(max(hi - lo)))
    centre = (lo + hi) / 2
    start = np.clip(centre - side / 2, 0.0, 1.0 - side)
    x0, y0 = (round(float(v), 3) for v in start)
    return x0, y0, round(min(1.0, x0 + side), 3), round(min(1.0, y0 + side), 3)


def bin_roi(cell, which: str = "right", camera: str = "overhead", margin_m: float = MARGIN_M):
    """The square ROI that frames a bin ('right', 'left' or 'both') and the gripper's work
    space above it (see the module docstring)."""
    sides = ("left", "right") if which == "both" else (which,)
    points = np.concatenate([bin_box_points(cell, s) for s in sides])
    return square_roi(cell, camera, points, margin_m)


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a polygon given by its vertices (N, 2) in order."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def floor_pixels_in_image(
    cell,
    camera: str,
    which: str,
    roi: Sequence[float],
    frame_size: int,
    image_size: int,
) -> dict[str, float]:
    """A bin's inner floor in the policy image made from a frame_size frame with `roi`
    (`mtopt_core.images.policy_image`): its area [px] and bounding box width/height [px]."""
    left, top, right, bottom = roi_pixels((frame_size, frame_size), roi)
    side = min(right - left, bottom - top)  # policy_image keeps the ROI's centre square
    left += (right - left - side) // 2
    top += (bottom - top - side) // 2
    pix = project_points(cell, camera, bin_floor_points(cell, which), frame_size, frame_size)
    pix = (pix - [left, top]) * (image_size / side)
    return {
        "area_px": round(polygon_area(pix), 1),
        "width_px": round(float(np.ptp(pix[:, 0])), 1),
        "height_px": round(float(np.ptp(pix[:, 1])), 1),
        "image_fraction": round(polygon_area(pix) / image_size**2, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camera", default="overhead")
    parser.add_argument("--frame-size", type=int, default=128, help="camera frame side [px]")
    parser.add_argument("--image-size", type=int, default=64, help="policy image side [px]")
    parser.add_argument("--margin", type=float, default=MARGIN_M, help="ROI margin [m]")
    parser.add_argument("--cell-id", type=int, default=0)
    args = parser.parse_args(argv)
    from mtopt_sim.cell import CellConfig, SimCell

    cell = SimCell(CellConfig(cell_id=args.cell_id))
    try:
        out: dict = {"camera": args.camera, "frame_size": args.frame_size,
                     "image_size": args.image_size, "cell_id": args.cell_id}  # fmt: skip
        for name, roi in (
            ("full_frame", FULL_FRAME),
            ("right_bin_roi", bin_roi(cell, "right", args.camera, args.margin)),
            ("both_bins_roi", bin_roi(cell, "both", args.camera, args.margin)),
        ):
            out[name] = {
                "roi": list(roi),
                "right_bin_floor": floor_pixels_in_image(
                    cell, args.camera, "right", roi, args.frame_size, args.image_size
                ),
            }
    finally:
        cell.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
