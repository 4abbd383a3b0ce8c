"""Exploration that does not waste data: random actions keep the gripper and close only where a
close can catch something; the noisy scripted pick/place act only near their target height."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtopt_core.action import GRIPPER, TERMINATE, ActionSpec
from mtopt_core.tasks import load_task_registry
from mtopt_policy.config import ConfigError, PolicyConfig
from mtopt_policy.policy import Observation, RandomActions, make_planner
from mtopt_policy.scripted import (
    BinGeometry,
    ScriptedPick,
    ScriptedPlace,
    pick_config,
    place_config,
)

SPEC = ActionSpec()
BINS = BinGeometry.from_policy_config(PolicyConfig())
N = 4000


def _gripper_bits(actions: RandomActions, closed: bool, height: float) -> np.ndarray:
    return np.array([actions.sample(closed, height)[GRIPPER] for _ in range(N)])


def test_random_actions_keep_the_gripper_and_close_only_low():
    cfg = PolicyConfig()
    actions = RandomActions.from_config(np.random.default_rng(0), cfg)
    # Open and high: never closes (a mid-air close catches nothing).
    assert not _gripper_bits(actions, False, cfg.random_close_below_m + 0.001).any()
    assert not _gripper_bits(actions, False, 0.20).any()
    # Open and low: closes with random_close_prob per step.
    closes = _gripper_bits(actions, False, cfg.random_close_below_m).mean()
    assert closes == pytest.approx(cfg.random_close_prob, abs=0.03)
    # Closed (anywhere): stays closed except with random_gripper_toggle_prob per step.
    for height in (0.03, 0.3):
        opens = 1.0 - _gripper_bits(actions, True, height).mean()
        assert opens == pytest.approx(cfg.random_gripper_toggle_prob, abs=0.02)
    batch = np.stack([actions.sample(False, 0.1) for _ in range(N)])
    assert batch[:, TERMINATE].mean() == pytest.approx(cfg.random_terminate_prob, abs=0.02)
    assert np.all(np.abs(batch[:, :4]) <= 1.0) and batch[:, :4].std() > 0.5  # uniform moves


def test_the_old_fair_coin_is_a_setting_and_bad_probabilities_are_refused():
    coin = RandomActions(np.random.default_rng(1), 0.1, 0.5, np.inf, 0.5)
    for closed in (False, True):
        assert _gripper_bits(coin, closed, 0.3).mean() == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="close_prob must be in"):
        RandomActions(np.random.default_rng(), 0.1, close_prob=1.5)
    with pytest.raises(ConfigError, match="random_gripper_toggle_prob"):
        PolicyConfig(random_gripper_toggle_prob=-0.1).validate()
    with pytest.raises(ConfigError, match="random_close_below_m"):
        PolicyConfig(random_close_below_m=-0.01).validate()


def _run(policy, start: float, floor: float, obstacle: float | None = None):
    """Run one episode on a kinematic gripper: each step moves by the commanded dz, stopped at
    `floor` (the workspace bottom) and, from above, at `obstacle` (e.g. a bin wall's rim).
    Returns the heights at which the gripper bit changed and the episode's actions."""
    height, closed, changes, actions = start, None, [], []
    for _ in range(12):
        action = policy.act({"gripper_height": np.array([height], np.float32)})
        actions.append(action)
        if closed is not None and bool(action[GRIPPER]) != closed:
            changes.append(height)
        closed = bool(action[GRIPPER])
        target = height + SPEC.to_physical(action)[0][2]
        if obstacle is not None and height >= obstacle:
            target = max(target, obstacle)
        height = max(target, floor)
        if action[TERMINATE]:
            break
    return changes, actions


def test_the_noisy_scripted_pick_closes_only_near_its_target_height():
    pick = ScriptedPick(pick_config(noisy=True), SPEC, np.random.default_rng(2))
    cfg = pick.config
    limit = cfg.target_height + cfg.act_window
    closed = 0
    for _ in range(500):
        pick.start_options(BINS)
        changes, actions = _run(pick, 0.20, floor=0.025)
        assert all(h <= limit + 1e-6 for h in changes), changes
        assert actions[-1][TERMINATE] == 1.0  # the script always ends its episode
        closed += bool(changes)
    assert closed > 450  # noise slows the descent, but nearly every pick still closes


def test_a_pick_resting_on_a_bin_wall_gives_up_without_closing():
    pick = ScriptedPick(pick_config(noisy=False), SPEC, np.random.default_rng(3))
    pick.start_options(BINS)
    changes, actions = _run(pick, 0.20, floor=0.025, obstacle=0.118)  # fingertips on the rim
    assert changes == [] and all(a[GRIPPER] == 0.0 for a in actions)
    assert actions[-1][TERMINATE] == 1.0
    # Blocked within the act window (an object under the fingers): it closes there.
    pick.start_options(BINS)
    changes, _ = _run(pick, 0.20, floor=0.025, obstacle=0.05)
    assert changes == [pytest.approx(0.05)]


def test_gripper_flips_happen_only_in_the_act_window():
    noisy = dataclasses.replace(pick_config(noisy=False), gripper_flip_prob=1.0)
    pick = ScriptedPick(noisy, SPEC, np.random.default_rng(5))
    pick.start_options(BINS)
    high = pick.act({"gripper_height": np.array([0.20])})
    assert high[GRIPPER] == 0.0  # a flip would close mid-air: suppressed
    low = pick.act({"gripper_height": np.array([0.055])})
    assert low[GRIPPER] == 1.0 and low[2] < 0  # in the window: flipped while descending
    place = ScriptedPlace(
        dataclasses.replace(place_config(noisy=False), gripper_flip_prob=1.0), SPEC
    )
    place.start_options(BINS)
    assert place.act({"gripper_height": np.array([0.20])})[GRIPPER] == 1.0  # keeps holding


def _observation(height: float) -> Observation:
    return Observation(np.zeros((8, 8, 3), np.uint8), None, gripper_closed=False, height=height)


def test_scripted_prefix_moves_at_random_then_hands_over_to_the_pick():
    registry = load_task_registry(None)
    config = PolicyConfig(
        seed=3, scripted_fraction=1.0, scripted_noise=False, scripted_prefix_steps=3
    ).validate()
    planner = make_planner(config, registry)
    prefixes = []
    for i in range(60):
        source = planner.plan(f"e{i}", "lift-any").source
        k = source.prefix_left
        prefixes.append(k)
        moves = [source.act(_observation(0.20)) for _ in range(k)]
        for decision in moves:  # random moves: gripper kept open, never terminating
            assert decision.exploratory
            assert decision.action[GRIPPER] == 0.0 and decision.action[TERMINATE] == 0.0
        if moves:
            assert np.std([d.action[:4] for d in moves]) > 0.1
        first = source.act(_observation(0.20)).action  # the noise-free pick descends
        assert first[2] == -1.0 and first[GRIPPER] == 0.0 and first[TERMINATE] == 0.0
    assert set(prefixes) == {0, 1, 2, 3}
    # Places keep their script; the default is the seed's script for both.
    assert all(planner.plan(f"p{i}", "place-any").source.prefix_left == 0 for i in range(20))
    plain = make_planner(PolicyConfig(seed=3, scripted_fraction=1.0).validate(), registry)
    assert all(plain.plan(f"e{i}", "lift-any").source.prefix_left == 0 for i in range(20))


def test_scripted_prefix_must_leave_steps_for_the_pick():
    for bad in (-1, PolicyConfig.max_steps):
        with pytest.raises(ConfigError, match="scripted_prefix_steps"):
            PolicyConfig(scripted_prefix_steps=bad).validate()
