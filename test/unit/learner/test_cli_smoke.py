"""The learner's command lines as a user runs them (separate processes, tiny budgets): each
exits 0 and prints its one JSON summary line (fixture `run_json_cli`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
