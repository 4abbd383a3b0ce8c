"""Damped-least-squares IK (mj_jacSite) and blocking Cartesian moves."""

from __future__ import annotations

import numpy as np
import pytest

from mtopt_sim.cell import SimCell
from mtopt_sim.ik import top_down_rotation, yaw_of


@pytest.fixture(scope="module")
def cell():
    c = SimCell(seed=0)
    yield c
    c.close()


def test_ik_reaches_top_down_poses_over_the_whole_workspace(cell):
    rng = np.random.default_rng(0)
    box = cell.config.workspace
    q = cell.home_qpos
    for _ in range(40):
        pos = np.array(
            [
                rng.uniform(*box.x),
                rng.uniform(*box.y),
                cell.floor_z + rng.uniform(*box.height),
            ]
        )
        yaw = rng.uniform(*box.yaw)
        result = cell.ik.solve(q, pos, top_down_rotation(yaw))
        assert result.position_error < 1e-3, (pos, yaw, result)
        assert result.rotation_error < 5e-3
        assert np.all(result.qpos >= cell.ik.lower) and np.all(result.qpos <= cell.ik.upper)
        fk_pos, fk_rot = cell.ik.forward(result.qpos)
        np.testing.assert_allclose(fk_pos, pos, atol=1e-3)
        assert yaw_of(fk_rot) == pytest.approx(yaw, abs=5e-3)
        q = result.qpos  # warm start like consecutive steps


def test_ik_clamps_to_joint_limits_for_unreachable_targets(cell):
    result = cell.ik.solve(cell.home_qpos, np.array([1.5, 0.0, 0.2]), top_down_rotation(0.0))
    assert result.position_error > 0.3  # out of reach: best effort, not a crash
    assert np.all(result.qpos >= cell.ik.lower) and np.all(result.qpos <= cell.ik.upper)


def test_blocking_tcp_moves_track_the_target(cell):
    cell.go_home(instant=True)
    start = np.array([0.56, -0.15, cell.floor_z + 0.25])
    cell.move_tcp(start, 0.0)
    for delta in ([0.05, 0, 0], [0, 0.05, 0], [0, 0, -0.05], [-0.03, -0.03, 0.03]):
        before, _ = cell.tcp_pose()
        target = before + np.array(delta)
        cell.move_tcp(target, 0.3)
        after, yaw = cell.tcp_pose()
        np.testing.assert_allclose(after, target, atol=2e-3)
        assert yaw == pytest.approx(0.3, abs=0.01)
