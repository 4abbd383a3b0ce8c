"""The reset defaults are the MuJoCo cell's bin reset (mtopt_sim.cell.CellConfig)."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from mtopt_reset_bin.config import ResetBinConfig
from mtopt_sim.cell import CellConfig


def test_defaults_match_the_sim_cell():
    sim, ours = CellConfig(), ResetBinConfig()
    assert ours.tilt_angle == pytest.approx(sim.dump_angle)
    assert ours.velocity == pytest.approx(sim.dump_speed)
    assert ours.hold_time == pytest.approx(sim.dump_hold_time)
    assert (ours.min_angle, ours.max_angle) == pytest.approx(sim.scene.hinge_range)
    assert ours.shakes == sim.dump_shakes
    assert ours.shake_amplitude == pytest.approx(sim.dump_shake_amplitude)
