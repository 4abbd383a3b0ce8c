"""The episode protocol's decisions, and that the node parameter files describe the same
protocol as its defaults (which the gym env uses)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from mtopt_policy.config import CollectorConfig, PolicyConfig
from mtopt_policy.protocol import TERMINATED, TRUNCATED, EpisodeProtocol

CONFIG = Path(__file__).resolve().parents[3] / "config"


def _config(cls, node: str, files: tuple[str, ...]):
    """A node's config as a launch file passes its parameter files (later files override)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict = {}
    for file in files:
        data = yaml.safe_load((CONFIG / file).read_text())
        values.update(data.get(f"/**/{node}", {}).get("ros__parameters", {}))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**values).validate()


@pytest.mark.parametrize(
    "files",
    [("policy.yaml", "collector.yaml"), ("policy.yaml", "collector.yaml", "sim_cell.yaml")],
    ids=["robot_cell", "sim_cell"],
)
def test_the_parameter_files_run_the_default_protocol(files):
    policy = _config(PolicyConfig, "policy", files)
    collector = _config(CollectorConfig, "collector", files)
    assert EpisodeProtocol.from_configs(policy, collector) == EpisodeProtocol()


def test_lift_type_episodes_open_the_gripper_first_and_place_episodes_keep_holding():
    protocol = EpisodeProtocol()
    assert protocol.opens_gripper_first("object_acquisition")
    assert not protocol.opens_gripper_first("object_manipulation")
    custom = EpisodeProtocol(place_skills=("stacking",))
    assert custom.opens_gripper_first("object_manipulation")
    assert not custom.opens_gripper_first("stacking")


def test_rise_to_the_safe_height_only_when_low():
    protocol = EpisodeProtocol(safe_height=0.22, min_rise_m=0.005)
    assert protocol.rise(0.05) == pytest.approx(0.17)
    assert protocol.rise(0.217) == 0.0  # within min_rise_m: no move
    assert protocol.rise(0.6) == 0.0  # e.g. at the present pose


def test_tiny_steps_do_not_move_the_arm():
    protocol = EpisodeProtocol(min_translation_m=0.001, min_yaw_rad=0.005)
    assert not protocol.moves_arm([0.0005, 0.0, 0.0005], 0.004)
    assert protocol.moves_arm([0.0, 0.0, 0.002], 0.0)
    assert protocol.moves_arm([0.0, 0.0, 0.0], -0.01)


def test_an_episode_ends_by_terminate_or_by_the_step_limit():
    protocol = EpisodeProtocol(max_steps=3)
    assert [protocol.ending(k, False) for k in (1, 2, 3)] == ["", "", TRUNCATED]
    assert protocol.ending(3, True) == TERMINATED  # the terminate bit wins at the limit
    assert protocol.ending(1, True) == TERMINATED
    assert protocol.ending(3, False, max_steps=5) == ""  # a goal's own step limit
    # The collector's max_steps (sent in each goal) overrides the policy's default.
    assert EpisodeProtocol.from_configs(collector=CollectorConfig(max_steps=5)).max_steps == 5
    assert EpisodeProtocol.from_configs(PolicyConfig(max_steps=7)).max_steps == 7


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        EpisodeProtocol(max_steps=0)
    with pytest.raises(ValueError, match="settle_s must be a finite number >= 0"):
        EpisodeProtocol(settle_s=-0.1)
    with pytest.raises(ValueError, match="safe_height"):
        EpisodeProtocol(safe_height=float("nan"))
