"""The experiments' command lines as a user runs them (separate processes, tiny budgets): each
exits 0 and prints its one JSON result line (fixture `run_json_cli`); bad options exit 2 with a
message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def test_evaluate_scripted(run_json_cli):
    result = run_json_cli(
        "mtopt_experiments.evaluate_scripted", "--episodes", "1", "--resets", "1"
    )
    assert {"cell_id", "seed", "pick_noise_off", "pick_default_noise",
            "pick_uniform_start_noise_off", "place_noise_off", "place_default_noise",
            "bin_resets", "wall_time_s"} <= set(result)  # fmt: skip
    for key in ("pick_noise_off", "pick_default_noise", "place_noise_off"):
        assert result[key]["episodes"] == 1 and 0.0 <= result[key]["rate"] <= 1.0
    assert result["bin_resets"]["resets"] == 1

    # The console script moved here with the module; it refuses a bad option with status 2.
    refused = subprocess.run(
        [str(VENV_BIN / "mtopt-sim-evaluate-scripted"), "--episodes", "-1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "must be >= 0" in refused.stderr


def test_gym_probe(run_json_cli):
    result = run_json_cli(
        "mtopt_experiments.gym_probe", "--episodes", "2", "--steps", "2", "--batch-size", "8",
        "--eval-episodes", "1", "--max-steps", "3", "--image-size", "32", "--eval-epsilon", "0",
    )  # fmt: skip
    assert {"round", "episodes", "collect_lift_rate", "final_loss", "train_s", "learned_lifts",
            "scripted_lifts", "learned_outcomes", "scripted_outcomes", "only_learned",
            "only_scripted", "mcnemar_p"} <= set(result)  # fmt: skip
    assert result["round"] == 0 and result["episodes"] == 2
    assert len(result["learned_outcomes"]) == len(result["scripted_outcomes"]) == 1

    refused = subprocess.run(
        [sys.executable, "-m", "mtopt_experiments.gym_probe", "--epsilon", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "epsilon must be in [0, 1]" in refused.stderr


def test_q_landscape(run_json_cli):
    released = Path(__file__).resolve().parents[3] / "models" / "lift_any_wrist_qnet.ckpt"
    result = run_json_cli(
        "mtopt_experiments.q_landscape", str(released), "--episodes", "2",
        "--descend-steps", "1", "--policy-param", "policy_camera=wrist",
    )  # fmt: skip
    assert result["scenes"] == len(result["rows"]) >= 1
    for row in result["rows"]:
        assert -1.0 <= row["corr"] <= 1.0 and row["q_range"] >= 0.0
        # One step down from the 0.20 m start; the best grid move ends no farther than any.
        assert row["height_m"] < 0.18
        assert row["dist_best_m"] <= min(row["dist_start_m"], row["dist_argmax_m"]) + 1e-4
    refused = subprocess.run(
        [sys.executable, "-m", "mtopt_experiments.q_landscape", str(released), "--dz", "0.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--dz" in refused.stderr


def test_aim_probe(run_json_cli, tmp_path):
    args = (
        "mtopt_experiments.aim_probe", "--out", str(tmp_path), "--train-states", "8",
        "--test-states", "4", "--steps", "4", "--workers", "1",
        "--policy-param", "policy_camera=wrist", "--net-option", "state_skip=false",
    )  # fmt: skip
    result = run_json_cli(*args)
    assert result["train_states"] == 8 and 1 <= result["test_states"] <= 4
    assert result["dist_best_m"] <= min(result["dist_start_m"], result["dist_argmax_m"]) + 1e-6
    for key in ("hit_argmax", "hit_straight", "hit_best"):
        assert 0.0 <= result[key] <= result["hit_best"] + (key == "hit_best")
    cached = sorted(tmp_path.glob("states_*.npz"))
    assert len(cached) == 2  # training and test states
    # A second probe (here the blank-image control) reuses the cached states.
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = run_json_cli(*args, "--blank-images")
    assert again["blank_images"] and again["test_states"] == result["test_states"]
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    refused = subprocess.run(
        [sys.executable, "-m", "mtopt_experiments.aim_probe", "--out", str(tmp_path),
         "--sigma", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--sigma" in refused.stderr
    base_frame_mirror = subprocess.run(
        [sys.executable, "-m", "mtopt_experiments.aim_probe", "--out", str(tmp_path),
         "--mirror", "--policy-param", "policy_camera=wrist"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert base_frame_mirror.returncode == 2
    assert "action_frame is 'base'" in base_frame_mirror.stderr


def test_task_contrast(run_json_cli, tmp_path):
    import torch

    from mtopt_core.checkpoint import save_checkpoint
    from mtopt_core.qnet import QNet, QNetConfig
    from mtopt_core.tasks import load_task_registry
    from mtopt_experiments.task_contrast import sibling_groups, tied_rank
    from mtopt_sim.bulk_cell import InProcessCell, WorkerSpec

    names = load_task_registry().names
    spec = WorkerSpec(
        cell_id=5, out_dir=str(tmp_path / "bags"), seed_entropy=(3, 5, 0),
        place_start_fraction=1.0,
    )  # fmt: skip
    cell = InProcessCell(spec)
    try:
        cell.collect(3)
    finally:
        cell.close()
    torch.manual_seed(0)
    ckpt = tmp_path / "q.ckpt"
    save_checkpoint(ckpt, QNet(QNetConfig.tiny(len(names), image_size=64)), names, step=1)
    result = run_json_cli(
        "mtopt_experiments.task_contrast", str(ckpt), str(tmp_path / "bags"), "--episodes", "5",
        "--control-steps", "2",
    )  # fmt: skip
    assert result["bags_read"] == 3
    control = result["control"]
    assert control["steps"] == 2 and control["train_episodes"] + control["test_episodes"] <= 5
    assert set(control["control_on_test"]) == set(result["skills"])
    groups = sibling_groups(load_task_registry(), names)
    assert set(result["skills"]) == set(groups) == {"object_acquisition", "object_manipulation"}
    for skill, row in result["skills"].items():
        k = len(groups[skill])
        assert row["siblings"] == groups[skill] and row["chance_rank"] == (k - 1) / 2
        assert row["episodes"] == 0 or 0 <= row["mean_rank"] <= k - 1
    assert tied_rank(torch.tensor([0.5, 0.9, 0.505]).numpy(), 0) == 1.5  # 0.9 above, a tie
    refused = subprocess.run(
        [sys.executable, "-m", "mtopt_experiments.task_contrast", str(ckpt), str(tmp_path),
         "--episodes", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--episodes must be >= 1" in refused.stderr


def test_trace_episodes(run_json_cli, tmp_path):
    from mtopt_experiments.trace_episodes import FIRST_CLOSE, first_close_kind

    released = Path(__file__).resolve().parents[3] / "models" / "lift_any_wrist_tool_qnet.ckpt"
    out = tmp_path / "traces.jsonl"
    result = run_json_cli(
        "mtopt_experiments.trace_episodes", str(released), "--out", str(out), "--episodes", "2",
        "--policy-param", "policy_camera=wrist", "--policy-param", "action_frame=tool",
    )  # fmt: skip
    episodes = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["episodes"] == len(episodes) == 2
    assert result["successes"] == sum(e["success"] for e in episodes)
    assert sum(v["episodes"] for v in result["first_close"].values()) == 2
    for episode in episodes:
        assert len(episode["trace"]) == episode["steps"]
        assert episode["first_close_kind"] == first_close_kind(episode["trace"])
        assert episode["first_close_kind"] in FIRST_CLOSE

    def step(closed: bool, holding: int) -> dict:
        return {"gripper_closed": closed, "holding": holding}

    assert first_close_kind([step(False, 0)]) == "none"
    assert first_close_kind([step(False, 0), step(True, 0), step(True, 1)]) == "empty"
    assert first_close_kind([step(True, 1), step(True, 1)]) == "held_kept"
    assert first_close_kind([step(True, 1), step(True, 0), step(True, 1)]) == "held_lost"
    assert first_close_kind([step(True, 1), step(False, 0)]) == "held_reopened"
    refused = subprocess.run(
        [sys.executable, "-m", "mtopt_experiments.trace_episodes", str(released), "--out",
         str(out), "--task", "fly", "--policy-param", "policy_camera=wrist",
         "--policy-param", "action_frame=tool"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "unknown task" in refused.stderr
