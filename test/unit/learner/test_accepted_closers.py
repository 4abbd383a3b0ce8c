"""Only bags closed by an accepted closer (EpisodeInfo.closed_by) are learned from: the decoder
skips the others, LogReplay reports them, and the setting reaches LogReplay from
config/learner.yaml, LearnerConfig and mtopt-learn's --accepted-closer."""

import logging
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from mtopt_bridge.params import config_from_params_files
from mtopt_core.episode_bag import EpisodeBagWriter, interface_definition_dirs
from mtopt_learner.config import LearnerConfig, LearnerConfigError, OfflineConfig
from mtopt_learner.episode_decoder import DEFAULT_ACCEPTED_CLOSERS, episode_from_bag
from mtopt_learner.errors import LearnError
from mtopt_learner.log_replay import LogReplay, LogReplayConfig, describe_ingest
from mtopt_learner.offline import build_parser

CONFIG = Path(__file__).resolve().parents[3] / "config"
NOT_ACCEPTED = "not closed by an accepted closer"


def _pre_closed_by_bag(directory: Path, episode_id: str) -> Path:
    """A bag recorded before EpisodeInfo had closed_by (its stored definition lacks it)."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(interface_definition_dirs()[0].glob("*.msg")):
        text = path.read_text()
        if path.stem == "EpisodeInfo":
            text = "\n".join(x for x in text.splitlines() if "closed_by" not in x)
        types.update(get_types_from_msg(text, f"mtopt_interfaces/msg/{path.stem}"))
    store.register(types)
    T = store.types
    stamp = T["builtin_interfaces/msg/Time"](sec=1, nanosec=0)
    info = T["mtopt_interfaces/msg/EpisodeInfo"](
        header=T["std_msgs/msg/Header"](stamp=stamp, frame_id=""), episode_id=episode_id,
        cell_id=0, task="lift-any", start_time=stamp, policy_kind="scripted_pick",
        weights_version=-1, weights_sha256="", epsilon=np.float32(1.0), steps=3,
        terminated=True, aborted=False, abort_reason="", task_names=["lift-any", "lift-carrot"],
        sd_probabilities=np.array([0.9, 0.9], np.float32), sd_model_version="sd",
        has_oracle=False, oracle_success=np.zeros(0, bool),
    )  # fmt: skip
    with EpisodeBagWriter(directory, episode_id, typestore=store) as bag:
        bag.write("/cell0/episode_info", "mtopt_interfaces/msg/EpisodeInfo", 1, info)
        return bag.finish()


def test_the_decoder_uses_only_bags_of_accepted_closers(tmp_path, write_bag, registry):
    for closer in ("/cell0/collector", "/cell12/collector", "mtopt-sim-collect"):
        decoded = episode_from_bag(write_bag(tmp_path, closer[1:6], closed_by=closer).path,
                                   registry)  # fmt: skip
        assert decoded.usable and decoded.info["closed_by"] == closer, decoded.skip_reason
    for name, closer in (("intruder", "intruder"), ("empty", ""), ("caps", "/cell0/COLLECTOR")):
        decoded = episode_from_bag(write_bag(tmp_path, name, closed_by=closer).path, registry)
        assert not decoded.usable and decoded.skip_reason.startswith(NOT_ACCEPTED), closer
        assert repr(closer) in decoded.skip_reason or "closed_by is empty" in decoded.skip_reason
    old = episode_from_bag(_pre_closed_by_bag(tmp_path, "old"), registry)
    assert not old.usable and old.skip_reason.startswith(NOT_ACCEPTED)
    assert "has no closed_by" in old.skip_reason
    # Other patterns: exactly what they match.
    custom = tmp_path / "intruder"
    assert episode_from_bag(custom, registry, accepted_closers=["intr*"]).usable
    assert not episode_from_bag(custom, registry, accepted_closers=["intr"]).usable
    with pytest.raises(ValueError, match="accepted_closers"):
        episode_from_bag(custom, registry, accepted_closers=[])


def test_log_replay_skips_and_reports_bags_of_other_closers(tmp_path, write_bag, caplog):
    bags = tmp_path / "bags"
    write_bag(bags, "a-good", closed_by="/cell0/collector")
    write_bag(bags, "b-intruder", closed_by="intruder")
    write_bag(bags, "c-empty", closed_by="")
    write_bag(bags, "d-sim", closed_by="mtopt-sim-collect")
    replay = LogReplay(LogReplayConfig(bag_dir=bags, state_dir=tmp_path / "state"))
    with caplog.at_level(logging.WARNING, logger="mtopt_learner.log_replay"):
        report = replay.poll()
    assert report.ingested == ["a-good", "d-sim"] and replay.buffer.num_episodes == 2
    assert [name for name, _ in report.skipped] == ["b-intruder", "c-empty"]
    assert all(reason.startswith(NOT_ACCEPTED) for _, reason in report.skipped)
    assert report.quarantined == [] and (bags / "b-intruder").is_dir()  # skipped, not moved
    text = describe_ingest(report, bags, tmp_path / "state" / "ledger.jsonl")
    assert f"skipped 2: {NOT_ACCEPTED}" in text
    assert "skipped b-intruder: " in text and "closed_by 'intruder'" in text
    assert "skipped c-empty: " in text and "closed_by is empty" in text
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("b-intruder" in w for w in warned) and any("c-empty" in w for w in warned)
    assert replay.skipped_total == 2
    # Another setting accepts the intruder (a new state directory: skips are never retried).
    other = LogReplay(LogReplayConfig(bag_dir=bags, state_dir=tmp_path / "state2",
                                      accepted_closers=("intruder",)))  # fmt: skip
    assert other.poll().ingested == ["b-intruder"]


def test_accepted_closers_from_the_yaml_the_learner_config_and_mtopt_learn():
    cfg = config_from_params_files(LearnerConfig(), [CONFIG / "learner.yaml"], "/learner")
    assert cfg.accepted_closers == DEFAULT_ACCEPTED_CLOSERS == LearnerConfig().accepted_closers
    assert (
        "*collector*" in DEFAULT_ACCEPTED_CLOSERS and "mtopt-sim-collect" in cfg.accepted_closers
    )
    with pytest.raises(LearnerConfigError, match="accepted_closers"):
        LearnerConfig(accepted_closers=()).validate()
    with pytest.raises(LearnerConfigError, match="accepted_closers"):
        LearnerConfig(accepted_closers=("",)).validate()
    base = ["--bags", "b", "--out", "o", "--steps", "1"]
    default = OfflineConfig.from_args(build_parser().parse_args(base)).validate()
    assert default.replay_config(Path("b"), Path("o")).accepted_closers == DEFAULT_ACCEPTED_CLOSERS
    argv = [*base, "--accepted-closer", "/lab/*", "--accepted-closer", "tool"]
    cfg = OfflineConfig.from_args(build_parser().parse_args(argv)).validate()
    assert cfg.replay_config(Path("b"), Path("o")).accepted_closers == ("/lab/*", "tool")
    with pytest.raises(LearnError, match="--accepted-closer"):
        OfflineConfig.from_args(build_parser().parse_args([*base, "--accepted-closer", " "])
                                ).validate()  # fmt: skip
