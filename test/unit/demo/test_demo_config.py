"""The per-stage config copies of `python -m mtopt_demo`: `--lift-only` task weights and the
scripted fraction reach the collector and policy parameter files, and nothing else changes; the
policy settings (`--policy-camera`, `--action-frame`, or those an `--act-with` checkpoint
records) reach every stage and stage 2's training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import mtopt_learner.offline
from mtopt_core.checkpoint import (
    POLICY_SETTINGS_KEY,
    policy_settings_of,
    qnet_from_checkpoint,
    save_checkpoint,
)
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import load_task_registry
from mtopt_demo import cli
from mtopt_demo.bringup import POLICY_CONFIG, bringup_file, lift_only_weights, stage_config
from mtopt_demo.cli import run
from mtopt_demo.config import DemoConfig, DemoError, build_parser
from mtopt_demo.episodes import LIFT_TASK
from mtopt_learner.record_settings import record_settings
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


# ------------------------------------------------------------------------ policy settings
TOOL_SETTINGS = {"policy_camera": "wrist", "policy_roi": [0.0, 0.0, 1.0, 1.0],
                 "action_frame": "tool"}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny checkpoints: `plain` without a record of policy settings (as older ones), `tool`
    recording TOOL_SETTINGS (written by record_settings, as the released tool-frame network),
    `roi` recording a cropped region of interest."""
    out = tmp_path_factory.mktemp("ckpt")
    names = REGISTRY.names
    save_checkpoint(out / "plain.ckpt", QNet(QNetConfig.tiny(len(names), 64)), names, 3)
    record_settings(out / "plain.ckpt", out / "tool.ckpt", TOOL_SETTINGS)
    roi = {**TOOL_SETTINGS, "policy_roi": [0.1, 0.2, 0.9, 0.8]}
    record_settings(out / "plain.ckpt", out / "roi.ckpt", roi)
    return out


def _config(argv):
    return DemoConfig.from_args(build_parser().parse_args(argv))


def test_action_frame_is_parsed_validated_and_passed_only_when_given(capsys):
    assert _config([]).action_frame == "" and _config([]).policy_params == {}
    config = _config(["--action-frame", "tool", "--policy-camera", "wrist"])
    assert config.policy_params == {"policy_camera": "wrist", "action_frame": "tool"}
    assert _config(["--action-frame", "base"]).policy_params == {"action_frame": "base"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--action-frame", "gripper"])
    assert "argument --action-frame: invalid choice: 'gripper'" in capsys.readouterr().err
    with pytest.raises(DemoError, match="--action-frame must be one of base, tool"):
        DemoConfig(action_frame="gripper").validate()
    with pytest.raises(DemoError, match="policy_roi must be fractions of the frame"):
        DemoConfig(policy_roi=(0.5, 0.0, 0.4, 1.0)).validate()


def test_act_with_adopts_the_settings_the_checkpoint_records(checkpoints):
    tool = checkpoints / "tool.ckpt"
    config = _config(["--act-with", str(tool), "--camera-size", "64"])
    assert (config.policy_camera, config.action_frame) == ("wrist", "tool")
    assert config.policy_params == TOOL_SETTINGS
    # Options that agree with the record are fine, and adopting again changes nothing.
    agreeing = ["--act-with", str(tool), "--policy-camera", "wrist", "--action-frame", "tool",
                "--camera-size", "64"]  # fmt: skip
    assert _config(agreeing) == config == config.with_act_with_settings()
    # A cropped region of interest is passed on too (policy.yaml has policy_roi).
    cropped = _config(["--act-with", str(checkpoints / "roi.ckpt")])
    assert cropped.policy_params["policy_roi"] == [0.1, 0.2, 0.9, 0.8]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--action-frame", "base"], "--action-frame 'base' disagrees with --act-with {ckpt}, "
                                     "which records action_frame 'tool': leave it out"),
        (["--policy-camera", "overhead"], "--policy-camera 'overhead' disagrees with --act-with "
                                          "{ckpt}, which records policy_camera 'wrist'"),
    ],
)  # fmt: skip
def test_an_option_that_disagrees_with_the_record_is_refused(checkpoints, tmp_path, monkeypatch,
                                                             option, message):  # fmt: skip
    def started(say):
        raise AssertionError("the demo started")

    monkeypatch.setattr(cli, "ros_environment", started)
    tool = checkpoints / "tool.ckpt"
    args = build_parser().parse_args(["--act-with", str(tool), *option, "--out", str(tmp_path)])
    with pytest.raises(DemoError) as refused:
        run(args, print)
    assert message.format(ckpt=tool) in str(refused.value)
    assert not any(tmp_path.iterdir())  # refused before a run directory was made


def test_a_checkpoint_without_a_record_keeps_the_options_as_given(checkpoints):
    plain = str(checkpoints / "plain.ckpt")
    assert _config(["--act-with", plain]).policy_params == {}
    given = _config(["--act-with", plain, "--policy-camera", "wrist", "--action-frame", "tool"])
    assert given.policy_params == {"policy_camera": "wrist", "action_frame": "tool"}


def test_an_unreadable_or_malformed_act_with_checkpoint_is_refused(checkpoints, tmp_path):
    with pytest.raises(DemoError, match="--act-with .*missing.ckpt: checkpoint .* refused"):
        _config(["--act-with", str(tmp_path / "missing.ckpt")])
    qnet, ckpt = qnet_from_checkpoint(checkpoints / "plain.ckpt")
    for name, record in (("str", "tool"), ("empty", {**TOOL_SETTINGS, "policy_camera": ""})):
        path = tmp_path / f"{name}.ckpt"
        save_checkpoint(path, qnet, ckpt.task_names, 3, {POLICY_SETTINGS_KEY: record})
        with pytest.raises(DemoError, match=f"--act-with {path}: .*policy settings"):
            _config(["--act-with", str(path)])


class _StopAtStage3(Exception):
    """Ends a run_demo with fake stages once stage 3's cell would start."""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--action-frame", "tool", "--policy-camera", "wrist"],
         {"policy_camera": "wrist", "action_frame": "tool"}),
        (["--act-with", "tool.ckpt"], TOOL_SETTINGS),
        (["--act-with", "roi.ckpt"], {**TOOL_SETTINGS, "policy_roi": [0.1, 0.2, 0.9, 0.8]}),
    ],
)  # fmt: skip
def test_the_policy_settings_reach_every_stage_and_stage_2s_training(
    checkpoints, tmp_path, monkeypatch, argv, expected
):
    """run_demo with the sim cell and training faked: the config copy of stages 1 and 3 has the
    settings in policy.yaml, and stage 2's OfflineConfig (what the checkpoints record) has them
    too."""
    launched: dict[int, list[str]] = {}
    trained: list = []

    def fake_collect(stage, run_dir, episodes, launch_args, timeout_s, say):
        launched[stage] = list(launch_args)
        if stage == 3:
            raise _StopAtStage3
        return [], 1.0

    def fake_train(config):
        trained.append(config.validate())
        return {"steps": 1, "replay_episodes": 0, "replay_transitions": 0,
                "episodes_skipped": 0, "checkpoint": str(checkpoints / "plain.ckpt"),
                "final_loss": None}  # fmt: skip

    class FakeAnnouncer:
        def __init__(self, topic, checkpoint):
            self.version, self.sha256, self.preset = 3, "0" * 64, "tiny"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(cli, "collect", fake_collect)
    monkeypatch.setattr(cli, "ros_environment", lambda say: None)
    monkeypatch.setattr(cli, "WeightsAnnouncer", FakeAnnouncer)
    monkeypatch.setattr(mtopt_learner.offline, "train", fake_train)
    argv = [str(checkpoints / a) if a.endswith(".ckpt") else a for a in argv]
    args = build_parser().parse_args([*argv, "--steps", "1", "--out", str(tmp_path)])
    with pytest.raises(_StopAtStage3):
        run(args, print)

    for stage in (1, 3):
        (config_dir,) = [a.split(":=")[1] for a in launched[stage] if a.startswith("config_dir")]
        policy = _params(Path(config_dir) / "policy.yaml", "/**/policy")
        assert {name: policy[name] for name in expected} == expected, stage
    (learner,) = trained
    learned_for = policy_settings_of(learner)
    assert {name: learned_for[name] for name in expected} == expected
