"""The bin reset (hinge dump): objects in the left bin go back into the right bin.

The full 50-reset measurement is `mtopt-sim-evaluate-scripted --resets 50`; here 20
consecutive resets with the same bounds (>= 95 % moved, none lost off the table).
"""

from __future__ import annotations

import numpy as np

from mtopt_experiments.evaluate_scripted import acquire_object, measure_resets


def test_consecutive_resets_move_the_left_bin_back(env):
    result = measure_resets(env, trials=20, seed=3)
    assert result["objects_in_left_bin"] >= 12
    assert result["moved_fraction"] >= 0.95, result
    assert result["lost_off_table"] == 0 and result["on_table"] == 0, result
    counts = env.cell.count_objects()
    assert counts["lost"] == 0 and counts["table"] == 0 and counts["left_bin"] == 0
    assert sum(counts.values()) == len(env.cell.active_objects)


def test_reset_releases_a_held_object_and_returns_everything_to_rest(env):
    env.respawn(seed=8)
    assert acquire_object(env, np.random.default_rng(1))
    held = env.cell.held_objects()
    counts = env.reset_bins()
    assert counts["held"] == 0 and counts["left_bin"] == 0 and counts["lost"] == 0
    for index in held:
        assert env.cell.object_region(index) == "right_bin"
    assert abs(env.cell.hinge_angle()) < 0.01
    assert not env.cell.gripper_closed
    np.testing.assert_allclose(env.cell.arm_qpos(), env.cell.home_qpos, atol=0.01)
