"""The policy camera's region of interest in the sim: the env's observation is the shared
`policy_image` of a rendered frame, the camera projection lands on the bin, the right-bin ROI
gives the bin more pixels, and its documentation pictures render."""

from __future__ import annotations

import json
import subprocess
import sys

import mujoco
import numpy as np
import pytest

import mtopt_sim  # noqa: F401  (headless rendering setup)
from mtopt_core.images import FULL_FRAME, policy_image, roi_pixels
from mtopt_sim import camera_roi
from mtopt_sim.cell import CellConfig, SimCell
from mtopt_sim.docs import MAX_BYTES
from mtopt_sim.env import EnvConfig, MTOptCell


@pytest.fixture(scope="module")
def cell():
    c = SimCell(CellConfig())
    yield c
    c.close()


def test_env_image_is_the_shared_policy_image_of_the_frame():
    roi = (0.026, 0.143, 0.56, 0.677)
    plain = MTOptCell(EnvConfig(image_size=32))
    framed = MTOptCell(EnvConfig(image_size=32, policy_roi=roi, policy_frame_size=96))
    try:
        obs, _ = plain.reset(seed=4)
        # default: today's observation, the camera rendered straight at the image size
        np.testing.assert_array_equal(obs["image"], plain.cell.render("overhead", 32, 32))
        obs, _ = framed.reset(seed=4)
        frame = framed.cell.render("overhead", 96, 96)
        np.testing.assert_array_equal(framed.policy_frame(), frame)
        np.testing.assert_array_equal(obs["image"], policy_image(frame, 32, roi))
        assert obs["image"].shape == (32, 32, 3)
        obs, *_ = framed.step(np.zeros(6, np.float32))
        np.testing.assert_array_equal(
            obs["image"], policy_image(framed.cell.render("overhead", 96, 96), 32, roi)
        )
    finally:
        plain.close()
        framed.close()
    with pytest.raises(ValueError, match="policy_roi"):
        EnvConfig(policy_roi=(0.6, 0.0, 0.5, 1.0))
    with pytest.raises(ValueError, match="policy_frame_size"):
        EnvConfig(policy_frame_size=4)


def test_projected_bin_floor_points_land_on_the_bin(cell):
    renderer = mujoco.Renderer(cell.model, 128, 128)
    try:
        renderer.enable_segmentation_rendering()
        mujoco.mj_forward(cell.model, cell.data)
        renderer.update_scene(cell.data, camera="overhead")
        seg = renderer.render()
    finally:
        renderer.close()
    for which in ("right", "left"):
        corners = camera_roi.bin_floor_points(cell, which)
        centre = corners.mean(axis=0)
        points = np.vstack([centre, centre + 0.8 * (corners - centre)])  # inside the floor
        pixels = camera_roi.project_points(cell, "overhead", points, 128, 128)
        for col, row in pixels.astype(int):
            geom, kind = seg[row, col]
            assert kind == mujoco.mjtObj.mjOBJ_GEOM
            body = cell.model.body(cell.model.geom_bodyid[geom]).name
            assert body in (f"{which}_bin", "plate"), (which, body)


def test_right_bin_roi_frames_the_bin_and_triples_its_pixels(cell):
    roi = camera_roi.bin_roi(cell, "right")
    left, top, right, bottom = roi_pixels((128, 128), roi)
    assert abs((right - left) - (bottom - top)) <= 1  # square: policy_image keeps all of it
    floor = camera_roi.project_points(
        cell, "overhead", camera_roi.bin_floor_points(cell, "right"), 128, 128
    )
    assert np.all((floor >= [left, top]) & (floor <= [right, bottom]))
    full = camera_roi.floor_pixels_in_image(cell, "overhead", "right", FULL_FRAME, 128, 64)
    framed = camera_roi.floor_pixels_in_image(cell, "overhead", "right", roi, 128, 64)
    assert framed["area_px"] > 3 * full["area_px"]
    both = camera_roi.bin_roi(cell, "both")
    left_floor = camera_roi.project_points(
        cell, "overhead", camera_roi.bin_floor_points(cell, "left"), 100, 100
    )
    assert np.all(
        (left_floor >= np.array(both[:2]) * 100) & (left_floor <= np.array(both[2:]) * 100)
    )


def test_camera_roi_cli_and_policy_view_pictures(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mtopt_sim.camera_roi"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert (
        out["right_bin_roi"]["right_bin_floor"]["area_px"]
        > 3 * (out["full_frame"]["right_bin_floor"]["area_px"])
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mtopt_sim.docs", "--out", str(tmp_path), "--policy-views-only"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "policy_camera_roi_64px.png",
        "policy_camera_wrist_64px.png",
        "policy_roi_frame.png",
    ]
    assert all(0 < p.stat().st_size <= MAX_BYTES for p in tmp_path.iterdir())
