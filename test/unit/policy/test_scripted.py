"""The scripted pick/place a cell's policy runs: start draw over the bin geometry and phases."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mtopt_core.action import GRIPPER, TERMINATE, ActionSpec
from mtopt_policy.config import PolicyConfig
from mtopt_policy.scripted import (
    BinGeometry,
    ScriptedPick,
    ScriptedPlace,
    pick_config,
    place_config,
)

BINS = BinGeometry.from_policy_config(PolicyConfig())


@pytest.mark.parametrize("noisy", [False, True])
def test_pick_starts_above_the_right_bin_and_place_above_the_left(noisy):
    pick = ScriptedPick(pick_config(noisy), rng=np.random.default_rng(0))
    place = ScriptedPlace(place_config(noisy), rng=np.random.default_rng(0))
    slack = 0.0 if not noisy else 0.2  # start noise (std 4 cm) may leave the margin
    for policy, which in ((pick, "right"), (place, "left")):
        for _ in range(50):
            options = policy.start_options(BINS)
            x, y, z = options["start"]
            inner = BINS.half(which) - policy.config.margin + slack
            assert np.all(np.abs(np.array([x, y]) - BINS.center(which)) <= inner)
            assert z == pytest.approx(BINS.floor_z + policy.config.start_height)
            if policy is pick:
                assert -math.pi / 2 <= options["start_yaw"] <= math.pi / 2
            else:
                assert "start_yaw" not in options  # the place keeps any yaw


def test_noise_free_pick_descends_closes_lifts_and_terminates():
    spec = ActionSpec()
    pick = ScriptedPick(pick_config(noisy=False), spec, np.random.default_rng(1))
    pick.start_options(BINS)
    height, actions = 0.20, []
    while not actions or actions[-1][TERMINATE] < 0.5:
        action = pick.act({"gripper_height": np.array([height])})
        translation, _, _, _ = spec.to_physical(action)
        height += translation[2]
        actions.append(action)
    grips = [a[GRIPPER] for a in actions]
    closed_at = grips.index(1.0)
    assert all(g == 0.0 for g in grips[:closed_at]) and all(g == 1.0 for g in grips[closed_at:])
    assert len(actions) - closed_at - 1 == pick.config.lift_steps  # then up, terminating last
    assert all(a[2] < 0 for a in actions[:closed_at]) and all(a[2] > 0 for a in actions[-3:])
    with pytest.raises(RuntimeError, match="start_options"):
        pick.act({"gripper_height": np.array([height])})


def test_noise_free_place_opens_at_its_height_then_retracts():
    spec = ActionSpec()
    place = ScriptedPlace(place_config(noisy=False), spec, np.random.default_rng(2))
    place.start_options(BINS)
    height, actions = 0.20, []
    while not actions or actions[-1][TERMINATE] < 0.5:
        action = place.act({"gripper_height": np.array([height])})
        height += spec.to_physical(action)[0][2]
        actions.append(action)
    opened_at = [a[GRIPPER] for a in actions].index(0.0)
    assert height - (place.config.lift_steps * spec.max_translation_m) == pytest.approx(
        place.config.target_height, abs=0.005
    )
    assert len(actions) - opened_at - 1 == place.config.lift_steps


def test_privileged_aims_and_bad_bin_geometry_are_refused():
    with pytest.raises(ValueError, match="pick aim must be 'uniform'.*'object'"):
        ScriptedPick(dataclasses.replace(pick_config(), aim="object")).start_options(BINS)
    with pytest.raises(ValueError, match="place aim must be 'uniform'.*'plate'"):
        ScriptedPlace(dataclasses.replace(place_config(), aim="plate")).start_options(BINS)
    with pytest.raises(ValueError, match="bin must be one of"):
        BINS.center("middle")
    with pytest.raises(ValueError, match="right_half must be positive"):
        dataclasses.replace(BINS, right_half=(0.1, 0.0))
    with pytest.raises(ValueError, match=r"left_center must be \(x, y\)"):
        dataclasses.replace(BINS, left_center=(0.5, 0.1, 0.0))
