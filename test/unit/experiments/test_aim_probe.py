"""The aim probe's geometry and scoring (`mtopt_experiments.aim_probe`); its command line is in
test_cli_smoke.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtopt_experiments.aim_probe import (
    MAX_GRASPS,
    ProbeStates,
    auc,
    grasp_distance,
    move_endpoints,
    turned,
    with_min_clearance,
)


def states(yaw: float, grasps) -> ProbeStates:
    padded = np.full((1, MAX_GRASPS, 2), np.nan, np.float32)
    clearance = np.full((1, MAX_GRASPS), np.nan, np.float32)
    if grasps:
        padded[0, : len(grasps)] = grasps
        clearance[0, : len(grasps)] = np.linspace(-0.01, 0.01, len(grasps))
    return ProbeStates(
        images=np.zeros((1, 8, 8, 3), np.uint8),
        gripper_closed=np.zeros(1, np.float32),
        height=np.full(1, 0.2, np.float32),
        object_detected=np.zeros(1, np.float32),
        tcp_xy=np.array([[0.5, 0.1]], np.float32),
        yaw=np.array([yaw], np.float32),
        grasps=padded,
        clearance=clearance,
    )


def test_move_endpoints_turn_tool_frame_moves_by_the_yaw():
    s = states(math.pi / 2, [(0.5, 0.1)])
    moves = np.array([[[1.0, 0.0], [0.0, -0.5]]], np.float32)
    base = move_endpoints(s.tcp_xy, s.yaw, moves, "base", 0.05)
    np.testing.assert_allclose(base[0], [[0.55, 0.1], [0.5, 0.075]], atol=1e-6)
    tool = move_endpoints(s.tcp_xy, s.yaw, moves, "tool", 0.05)  # tool x is base y at pi/2
    np.testing.assert_allclose(tool[0], [[0.5, 0.15], [0.525, 0.1]], atol=1e-6)
    # sign -1 turns base-frame moves into the tool frame: the inverse.
    back = turned(turned(moves, s.yaw, "tool", sign=-1.0), s.yaw, "tool")
    np.testing.assert_allclose(back, moves, atol=1e-6)


def test_grasp_distance_is_to_the_nearest_grasp_and_inf_without_one():
    s = states(0.0, [(0.5, 0.1), (0.6, 0.1)])
    points = np.array([[[0.58, 0.1], [0.5, 0.13]]], np.float32)
    np.testing.assert_allclose(grasp_distance(s.grasps, points)[0], [0.02, 0.03], atol=1e-6)
    empty = states(0.0, [])
    assert np.isinf(grasp_distance(empty.grasps, points)).all()


def test_min_clearance_drops_the_tight_grasps():
    s = states(0.0, [(0.5, 0.1), (0.6, 0.1), (0.7, 0.1)])  # clearance -0.01, 0, 0.01
    kept = with_min_clearance(s, 0.0)
    np.testing.assert_allclose(kept.grasps[0, :2], [(0.6, 0.1), (0.7, 0.1)], atol=1e-6)
    assert np.isnan(kept.grasps[0, 2:]).all() and np.isnan(kept.clearance[0, 2:]).all()
    assert not np.isnan(with_min_clearance(s, -1.0).grasps[0, :3]).any()


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([0.9, 0.8, 0.1, 0.2], [True, True, False, False], 1.0),
        ([0.1, 0.2, 0.9, 0.8], [True, True, False, False], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [True, False, True, False], 0.5),
        ([0.9, 0.3, 0.5, 0.1], [True, True, False, False], 0.75),
    ],
)
def test_auc(scores, labels, expected):
    assert auc(np.array(scores), np.array(labels)) == pytest.approx(expected)
