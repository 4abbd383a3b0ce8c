"""Scripted pick/place (seed Appendix B) and the pick -> place -> reset collection order.

The full 100-episode measurement is `mtopt-sim-evaluate-scripted`; here 20 seeded
episodes each, with the same 80 % bound for the noise-free policies.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtopt_experiments.evaluate_scripted import (
    NOISELESS_PICK,
    NOISELESS_PLACE,
    measure_pick,
    measure_place,
)
from mtopt_policy import scripted as policy_scripted
from mtopt_sim.scripted import (
    CollectorConfig,
    PickPlaceCollector,
    ScriptedConfig,
    ScriptedPick,
    ScriptedPlace,
    bin_geometry,
    pick_config,
    place_config,
)

EPISODES = 20


def test_noise_free_pick_lifts_an_object_in_80_percent(env):
    result = measure_pick(env, EPISODES, NOISELESS_PICK, seed=1)
    assert result["rate"] >= 0.8, result


def test_noise_free_place_puts_the_held_object_on_the_plate_in_80_percent(env):
    result = measure_place(env, EPISODES, NOISELESS_PLACE, seed=1)
    assert result["episodes"] == EPISODES
    assert result["rate"] >= 0.8, result


def test_scripted_policies_emit_valid_normalized_actions_and_noise_is_applied(env):
    env.respawn(seed=4)
    for config in (pick_config(noisy=False), pick_config(noisy=True)):
        policy = ScriptedPick(config, rng=np.random.default_rng(0))
        obs, _ = env.reset(options=policy.start_options(env))
        actions = []
        while True:
            a = policy.act(obs)
            assert env.action_space.contains(a), a
            actions.append(a)
            obs, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                break
        assert terminated  # the script ends its own episode
        moves = np.array(actions)[:, :4]
        if config.action_noise == 0:
            assert np.all(moves[:, :2] == 0) and np.all(moves[:, 3] == 0)  # straight down/up
        else:
            assert np.std(moves[:, :2]) > 0.1  # noisy x/y
        if env.cell.gripper_closed:
            env.cell.actuate_gripper(close=False)
    with pytest.raises(ValueError, match="aim"):
        ScriptedPlace(ScriptedConfig(aim="nowhere")).start_options(env)


def test_collector_runs_pick_then_place_then_reset(env):
    env.respawn(seed=21)
    collector = PickPlaceCollector(
        env,
        ScriptedPick(pick_config(noisy=False), rng=np.random.default_rng(1)),
        ScriptedPlace(place_config(noisy=False), rng=np.random.default_rng(2)),
        CollectorConfig(reset_every_places=1),
    )
    kinds = []
    for _ in range(3):
        records = collector.run_cycle()
        kinds.append([r.kind for r in records])
        assert records[0].kind == "scripted_pick" and records[0].task == "lift-any"
        if len(records) == 2:  # something was held: the place follows in the next episode
            assert records[0].held_after
            assert records[1].kind == "scripted_place" and records[1].task == "place-any"
    stats = collector.stats
    assert stats.picks == 3 and stats.places == sum(len(k) == 2 for k in kinds)
    assert stats.places >= 2  # noise-free picks mostly succeed
    assert stats.resets == stats.places  # one hinge dump after every place
    assert env.cell.count_objects()["left_bin"] == 0
    # A reset on request happens before the next cycle.
    resets = stats.resets
    collector.request_reset()
    collector.run_cycle()
    assert collector.stats.resets >= resets + 1


def test_uniform_aim_draws_what_the_cell_policy_draws_over_the_same_bins(env):
    """The sim's aim="uniform" is the policy's start draw over the scene's bins."""
    geometry = bin_geometry(env.cell)
    assert np.allclose(geometry.center("right"), env.cell.scene_config.bin_center("right"))
    assert np.allclose(geometry.half("left"), env.cell.scene_config.bin_half("left"))
    for sim_cls, policy_cls, config in (
        (ScriptedPick, policy_scripted.ScriptedPick, policy_scripted.pick_config()),
        (ScriptedPlace, policy_scripted.ScriptedPlace, policy_scripted.place_config()),
    ):
        sim = sim_cls(dataclasses.replace(config, aim="uniform"), rng=np.random.default_rng(7))
        cell = policy_cls(config, rng=np.random.default_rng(7))
        for _ in range(5):
            assert sim.start_options(env) == cell.start_options(geometry)
            obs = {"gripper_height": np.array([0.2])}
            assert np.array_equal(sim.act(obs), cell.act(obs))
    assert pick_config().aim == "object" and place_config().aim == "plate"
