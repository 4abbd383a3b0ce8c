"""The per-stage config copies of `python -m mtopt_demo`: `--lift-only` task weights and the
scripted fraction reach the collector and policy parameter files, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from mtopt_core.tasks import load_task_registry
from mtopt_demo.bringup import POLICY_CONFIG, bringup_file, lift_only_weights, stage_config
from mtopt_demo.cli import run
from mtopt_demo.config import DemoError, build_parser
from mtopt_demo.episodes import LIFT_TASK
from mtopt_policy.collector import TaskSequencer
from mtopt_policy.config import CollectorConfig

REGISTRY = load_task_registry()


def _params(path, node):
    return yaml.safe_load(path.read_text())[node]["ros__parameters"]


def test_lift_only_weights_leave_lift_any_and_the_place_tasks():
    weights = lift_only_weights(REGISTRY)
    zeroed = {item.split("=")[0] for item in weights}
    assert all(item.endswith("=0") for item in weights)
    assert zeroed == set(REGISTRY.tasks_of_skill("object_acquisition")) - {LIFT_TASK}


def test_stage_config_overrides_the_two_parameters_and_copies_the_rest(tmp_path):
    weights = lift_only_weights(REGISTRY)
    target = stage_config(tmp_path, "eval", 0.0, weights)
    assert _params(target / "policy.yaml", "/**/policy")["scripted_fraction"] == 0.0
    collector = _params(target / "collector.yaml", "/**/collector")
    assert collector["task_weights"] == weights
    source = bringup_file(POLICY_CONFIG).parent
    for name in ("sim_cell.yaml", "tasks.yaml", "fastdds.xml"):
        assert (target / name).read_bytes() == (source / name).read_bytes()
    # The collector accepts the written weights and then commands lift-any for every lift.
    config = CollectorConfig(task_weights=tuple(collector["task_weights"])).validate()
    sequencer = TaskSequencer(REGISTRY, config.lift_skill, config.place_skill,
                              config.parsed_task_weights(), np.random.default_rng(0))  # fmt: skip
    assert {sequencer.next_task() for _ in range(200)} == {LIFT_TASK}
    sequencer.observe(LIFT_TASK, held=True)
    assert REGISTRY.skill_of(sequencer.next_task()) == "object_manipulation"


def test_stage_config_policy_parameters_and_a_wrist_policy_camera(tmp_path):
    """Policy parameters reach policy.yaml; a policy camera outside the cell's three is also
    published by the sim cell and recorded by the logger; an unknown key is refused."""
    from mtopt_demo.bringup import BringupError

    target = stage_config(tmp_path, "w", None, (), {"policy_camera": "wrist", "epsilon": 0.0})
    policy = _params(target / "policy.yaml", "/**/policy")
    assert (policy["policy_camera"], policy["epsilon"]) == ("wrist", 0.0)
    cameras = ["overhead", "left_shoulder", "right_shoulder", "wrist"]
    assert _params(target / "logger.yaml", "/**/logger")["camera_names"] == cameras
    assert _params(target / "sim_cell.yaml", "/**/sim_cell")["cameras"] == cameras
    same = stage_config(tmp_path, "o", None, (), {"policy_camera": "overhead"})
    source = bringup_file(POLICY_CONFIG).parent
    assert (same / "logger.yaml").read_bytes() == (source / "logger.yaml").read_bytes()
    with pytest.raises(BringupError, match="no parameter no_such under /\\*\\*/policy"):
        stage_config(tmp_path, "bad", None, (), {"no_such": 1})


def test_stage_config_collector_parameters_replace_the_sim_cells_overrides_too(tmp_path):
    """respawn_below is set in collector.yaml and again in sim_cell.yaml (loaded later on the
    simulated cell): both get the value, or the sim cell's would win."""
    from mtopt_demo.bringup import BringupError

    target = stage_config(tmp_path, "e", None, (), None, {"respawn_below": 99, "reset_every": 1})
    for name in ("collector.yaml", "sim_cell.yaml"):
        assert _params(target / name, "/**/collector")["respawn_below"] == 99
    assert _params(target / "collector.yaml", "/**/collector")["reset_every"] == 1
    assert "reset_every" not in _params(target / "sim_cell.yaml", "/**/collector")
    with pytest.raises(BringupError, match="no collector parameter no_such"):
        stage_config(tmp_path, "bad", None, (), None, {"no_such": 1})


def test_stage_config_without_overrides_is_a_plain_copy(tmp_path):
    target = stage_config(tmp_path, "collect")
    source = bringup_file(POLICY_CONFIG).parent
    assert (target / "policy.yaml").read_bytes() == (source / "policy.yaml").read_bytes()
    assert (target / "collector.yaml").read_bytes() == (source / "collector.yaml").read_bytes()


def test_baseline_episodes_need_weights(tmp_path):
    args = build_parser().parse_args(["--baseline-episodes", "5", "--out", str(tmp_path)])
    with pytest.raises(DemoError, match="--baseline-episodes needs --weights"):
        run(args, print)
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


def test_negative_baseline_episodes_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--baseline-episodes", "-1"])
    assert "must be >= 0" in capsys.readouterr().err
