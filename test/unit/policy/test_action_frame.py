"""Tool-frame actions: the translation's x/y turn with the gripper's yaw before the arm gets
them (`mtopt_core.action.to_base_frame`), on the policy's path (`EpisodeRunner`) with the yaw
each move reports; base-frame actions pass unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtopt_bridge.params import ConfigError
from mtopt_core.action import to_base_frame
from mtopt_policy.config import PolicyConfig
from mtopt_policy.policy import (
    MODE_DELTA,
    Decision,
    EpisodePlan,
    EpisodeRunner,
    MoveResult,
    Observation,
)


def test_tool_frame_translations_turn_by_the_yaw_and_base_frame_ones_do_not():
    t = [0.05, 0.0, -0.02]
    np.testing.assert_allclose(to_base_frame(t, 0.7, "base"), t)
    np.testing.assert_allclose(to_base_frame(t, 0.0, "tool"), t)
    np.testing.assert_allclose(
        to_base_frame(t, math.pi / 2, "tool"), [0.0, 0.05, -0.02], atol=1e-12
    )
    turned = to_base_frame([0.01, 0.02, 0.0], -1.1, "tool")
    assert np.linalg.norm(turned) == pytest.approx(math.hypot(0.01, 0.02))
    with pytest.raises(ValueError, match="action frame must be one of"):
        to_base_frame(t, 0.0, "camera")


def test_a_bad_action_frame_parameter_is_named():
    with pytest.raises(ConfigError, match="parameter action_frame must be one of"):
        PolicyConfig(action_frame="gripper").validate()


class Sideways:
    """+x at full scale, no yaw change, gripper open; terminates on the third step."""

    kind = "test"

    def __init__(self):
        self.steps = 0

    def act(self, obs):
        self.steps += 1
        return Decision(np.array([1, 0, 0, 0, 0, self.steps >= 3], np.float32), 0.5, False)


class TurningArm:
    """An arm whose yaw changes by 0.4 rad on every delta move (as if something turned it):
    the runner must use the yaw each result reports, not its own sum."""

    def __init__(self, start_yaw: float):
        self.yaw, self.deltas = start_yaw, []

    def wait_first_inputs(self, timeout):
        pass

    def observe(self, after):
        return Observation(np.zeros((8, 8, 3), np.uint8), None, False, 0.2)

    def gripper(self, close):
        return "REACHED"

    def move(self, mode, translation, yaw, duration):
        if mode == MODE_DELTA and translation[2] == 0.0:
            self.deltas.append((np.asarray(translation, float), self.yaw))
            self.yaw += 0.4
        return MoveResult(0, "", np.zeros(3), self.yaw)

    def publish_step(self, plan, step, decision, obs):
        pass

    def cancel_requested(self):
        return False


@pytest.mark.parametrize("frame", ["base", "tool"])
def test_the_runner_turns_tool_frame_moves_by_the_reported_yaw(frame):
    config = PolicyConfig(action_frame=frame, start_speed_mps=0.0).validate()
    arm = TurningArm(start_yaw=0.3)
    plan = EpisodePlan(
        "e1", "lift-any", 5, Sideways(), "right", np.array([0.5, -0.1, 0.2]), 0.3, True,
        -1, "", 1.0,
    )  # fmt: skip
    outcome = EpisodeRunner(arm, config).run(plan)
    assert outcome.steps == 3 and outcome.terminated and not outcome.aborted
    assert len(arm.deltas) == 3
    for translation, yaw in arm.deltas:
        want = [0.05 * math.cos(yaw), 0.05 * math.sin(yaw)] if frame == "tool" else [0.05, 0]
        np.testing.assert_allclose(translation[:2], want, atol=1e-12)
