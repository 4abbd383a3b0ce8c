"""The learner's command lines as a user runs them (separate processes, tiny budgets): each
exits 0 and prints its one JSON summary line (fixture `run_json_cli`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtopt_core.checkpoint import POLICY_SETTINGS_KEY, read_checkpoint, save_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import load_task_registry
from mtopt_policy.config import PolicyConfig
from mtopt_policy.policy import WeightsRefused, make_planner

VENV_BIN = Path(sys.executable).parent


def test_mtopt_learn(tmp_path, write_bag, run_json_cli):
    bags = tmp_path / "bags"
    write_bag(bags, "ep0", task="lift-any", seed=0, success={"lift-any": True})
    write_bag(bags, "ep1", task="lift-any", seed=1, success={"lift-any": False})
    summary = run_json_cli(
        "mtopt_learner.offline", "--bags", str(bags), "--out", str(tmp_path / "run"),
        "--steps", "2", "--net", "tiny", "--batch-size", "4", "--cem-population", "6",
        "--cem-elites", "2", "--cem-iterations", "1", "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert {"steps", "steps_this_run", "episodes_ingested", "episodes_skipped",
            "episodes_quarantined", "replay_episodes", "final_loss", "checkpoint", "sha256",
            "seconds"} <= set(summary)  # fmt: skip
    assert summary["steps"] == 2 and summary["episodes_ingested"] == 2
    assert Path(summary["checkpoint"]).is_file()

    # The console script is installed and refuses a bad option with status 2.
    refused = subprocess.run(
        [str(VENV_BIN / "mtopt-learn"), "--bags", str(bags), "--out", str(tmp_path / "o"),
         "--steps", "1", "--batch-size", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--batch-size: must be >= 1" in refused.stderr


def test_learner_bench_quick(run_json_cli):
    """`python -m mtopt_learner.bench --quick` writes synthetic bags the way the logger does
    (every PolicyStep field included), ingests them and times Ray and the trainer."""
    result = run_json_cli("mtopt_learner.bench", "--quick")
    assert result["bench"] == "mtopt_learner" and result["quick"] is True
    assert result["ingest_bags"] == 20 and result["ingest_bags_per_s"] > 0
    for key in ("bellman_targets_per_s_1_updater", "bellman_targets_per_s_2_updaters",
                "bare_torch_steps_per_s", "trainer_apply_steps_per_s",
                "ray_train_steps_per_s_2_updaters", "elapsed_s"):  # fmt: skip
        assert result[key] > 0, key


def test_record_settings(tmp_path, run_json_cli):
    """`python -m mtopt_learner.record_settings` stamps an old checkpoint with the policy
    settings it was trained for: the weights stay, a cell with other settings refuses the copy,
    and a checkpoint that records other values is never rewritten."""
    names = load_task_registry().names
    torch.manual_seed(0)
    net = QNet(QNetConfig.tiny(len(names), image_size=64))
    save_checkpoint(tmp_path / "old.ckpt", net, names, step=7, metadata={"note": "kept"})
    out = tmp_path / "tool.ckpt"
    summary = run_json_cli(
        "mtopt_learner.record_settings", str(tmp_path / "old.ckpt"), str(out),
        "--policy-camera", "wrist", "--action-frame", "tool",
    )  # fmt: skip
    ckpt = read_checkpoint(out, summary["sha256"])
    assert ckpt.metadata[POLICY_SETTINGS_KEY] == {
        "policy_camera": "wrist", "policy_roi": [0.0, 0.0, 1.0, 1.0], "action_frame": "tool"
    }  # fmt: skip
    assert ckpt.metadata["note"] == "kept" and ckpt.step == 7
    for k, v in net.state_dict().items():
        assert torch.equal(ckpt.state_dict[k], v)
    base = make_planner(PolicyConfig(policy_camera="wrist").validate(), load_task_registry())
    with pytest.raises(WeightsRefused, match="trained for action_frame 'tool'"):
        base.weights.offer(str(out), 7, summary["sha256"])
    # another record is refused (exit 2, nothing written); so is a bad region
    for extra, message in (
        (["--action-frame", "base"], "trained for action_frame 'tool' (asked to record 'base')"),
        (["--action-frame", "tool", "--policy-roi", "1", "0", "0.5", "1"], "--policy-roi"),
    ):
        refused = subprocess.run(
            [sys.executable, "-m", "mtopt_learner.record_settings", str(out),
             str(tmp_path / "again.ckpt"), "--policy-camera", "wrist", *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert not (tmp_path / "again.ckpt").exists()
