"""Demo graph logic and the dataclass -> ROS parameter helper."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from demo_graph.demo_logic import (
    CollectionSummary,
    ConfigError,
    DemoCellConfig,
    DemoCollectorConfig,
    EpisodeTally,
    TaskChooser,
    scripted_action,
)
from rclpy.parameter import Parameter

from mtopt_core.action import ActionSpec
from mtopt_core.tasks import load_task_registry


def test_scripted_actions_are_valid_and_terminate_last():
    total = 7
    actions = np.stack([scripted_action(s, total) for s in range(total)])
    np.testing.assert_array_equal(ActionSpec().clip(actions), actions)
    assert actions[:, 5].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert actions[0, 2] < 0 < actions[-1, 2]  # descend first, lift after
    assert actions[0, 4] == 0 and actions[-1, 4] == 1  # gripper closes on the way up
    with pytest.raises(ValueError):
        scripted_action(7, total)


def test_task_chooser_is_seeded_and_uses_registry_names():
    names = load_task_registry().names
    a, b, c = (TaskChooser(names, seed=s) for s in (3, 3, 4))
    seq_a, seq_b, seq_c = ([x.next() for _ in range(20)] for x in (a, b, c))
    assert seq_a == seq_b and seq_a != seq_c
    assert set(seq_a) <= set(names) and len(set(seq_a)) > 1


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (DemoCellConfig(step_period_s=-1.0), "step_period_s"),
        (DemoCellConfig(default_max_steps=0), "default_max_steps"),
        (DemoCellConfig(cell_id=-2), "cell_id"),
        (DemoCollectorConfig(episodes=0), "episodes"),
        (DemoCollectorConfig(max_steps=-1), "max_steps"),
        (DemoCollectorConfig(server_timeout_s=0.0), "server_timeout_s"),
    ],
)
def test_config_validation_names_parameter(config, name):
    with pytest.raises(ConfigError, match=name):
        config.validate()


def test_summary_line_totals():
    summary = CollectionSummary(
        [
            EpisodeTally("a", "lift-any", 8, True, 8, 8, 7),
            EpisodeTally("b", "lift-can", 5, True, 4, 5, None),
        ]
    )
    assert summary.line() == (
        "summary: episodes=2 steps=13 policy_steps_received=13 feedback_received=12 "
        "episode_infos=1 cell_ids=7"
    )


@pytest.mark.ros
def test_declare_config_coerces_and_rejects_wrong_types():
    from rclpy.node import Node

    from mtopt_bridge.params import declare_config, describe_config

    rclpy.init()
    try:
        node = Node(
            "cfg_test",
            parameter_overrides=[
                Parameter("step_period_s", value=1),  # int for a float field: accepted
                Parameter("cell_id", value=4),
            ],
        )
        config = declare_config(node, DemoCellConfig)
        assert config.step_period_s == 1.0 and isinstance(config.step_period_s, float)
        assert config.cell_id == 4 and config.default_max_steps == 10
        assert "cell_id=4" in describe_config(config)
        node.destroy_node()
        node = Node("cfg_test2", parameter_overrides=[Parameter("cell_id", value="seven")])
        with pytest.raises(ConfigError, match="parameter cell_id must be of type int"):
            declare_config(node, DemoCellConfig)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
