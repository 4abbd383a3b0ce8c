"""`mtopt-demo` as a user runs it: `--help`, refused option combinations, and tiny real runs
through the ROS sim cell (every node its own process): the whole loop (about 60 s) and
`--collect-only` (about 15 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtopt_core.checkpoint import POLICY_SETTINGS_KEY, read_checkpoint

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
DEMO = [sys.executable, "-m", "mtopt_demo"]
#: The released network `make demo DEMO_RELEASED=1` acts with; it records the policy settings it
#: was trained for (policy_camera wrist, action_frame tool).
TOOL_NETWORK = REPO / "models" / "lift_any_wrist_tool_qnet.ckpt"


def run(args: list[str], timeout_s: float, command: list[str] = DEMO):
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout_s)


def test_help_names_every_stage_and_option():
    done = run(["--help"], 60, [str(VENV_BIN / "mtopt-demo")])
    assert done.returncode == 0, done.stderr
    for text in ("1. Collect", "2. Learn", "3. Act", "4. Report", "--collect-only",
                 "--weights", "--baseline-episodes", "--lift-only", "mtopt_bringup",
                 "--act-with", "--policy-camera", "--action-frame", "--camera-size"):  # fmt: skip
        assert text in done.stdout, text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline-episodes", "3"], "--baseline-episodes needs --weights"),
        (["--collect-only", "--weights", "w.ckpt"], "--collect-only runs stage 1 alone"),
        (["--episodes", "0"], "argument --episodes: must be >= 1"),
        (["--steps", "x"], "argument --steps: expected an integer"),
        (["--net", "huge"], "argument --net: invalid choice"),
        (["--act-with", "w.ckpt", "--weights", "w.ckpt"], "--act-with runs stages 1 and 2"),
        (["--camera-size", "4"], "--camera-size must be in 8..640"),
        (["--action-frame", "gripper"], "argument --action-frame: invalid choice: 'gripper'"),
        (["--act-with", "missing.ckpt"], "--act-with missing.ckpt: checkpoint missing.ckpt"),
        (
            ["--act-with", str(TOOL_NETWORK), "--action-frame", "base"],
            f"--action-frame 'base' disagrees with --act-with {TOOL_NETWORK}, which records "
            "action_frame 'tool'",
        ),
    ],
)
def test_bad_options_exit_2_before_anything_is_written(tmp_path, args, message):
    done = run([*args, "--out", str(tmp_path / "runs")], 60)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.ros
@pytest.mark.slow
def test_tiny_whole_loop_acting_with_the_released_network(tmp_path):
    """What `make demo DEMO_RELEASED=1` runs, tiny: collect 2 episodes through the wrist camera
    at 64 px with tool-frame moves (the settings the released network records), train 4 steps
    for them, act 2 episodes with the released network announced as weights, report."""
    recorded = read_checkpoint(TOOL_NETWORK)
    step, trained_for = recorded.step, recorded.metadata[POLICY_SETTINGS_KEY]
    args = ["--episodes", "2", "--steps", "4", "--eval-episodes", "2", "--net", "tiny",
            "--batch-size", "8", "--out", str(tmp_path), "--act-with", str(TOOL_NETWORK),
            "--camera-size", "64", "--lift-only"]  # fmt: skip
    done = run(args, 300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    summary = (run_dir / "summary.md").read_text()
    assert "| 1 collect |" in summary and "2 episodes: scripted/random" in summary
    assert "| 2 learn |" in summary and "4 steps, net tiny" in summary
    assert f"with CEM on weights v{step} |" in summary and "| 4 report |" in summary
    assert "| stage 3 learned CEM |" in summary  # the learned column of the table
    assert "acted with" in summary and "not with stage 2's network" in summary
    assert (run_dir / "demo.png").read_bytes()[:4] == b"\x89PNG"
    stage2 = read_checkpoint(run_dir / "learner" / "checkpoints" / "qnet_4.ckpt")
    assert stage2.metadata[POLICY_SETTINGS_KEY] == trained_for  # trained for stage 3's settings
    stage3 = run_dir / "stage3_episodes"
    assert len(list(stage3.iterdir())) == 2
    for stage in ("collect", "eval"):
        policy = yaml.safe_load((run_dir / f"config_{stage}" / "policy.yaml").read_text())
        params = policy["/**/policy"]["ros__parameters"]
        assert (params["policy_camera"], params["action_frame"]) == ("wrist", "tool"), stage
    assert params["epsilon"] == 0.0  # stage 3 is greedy


@pytest.mark.ros
@pytest.mark.slow
def test_tiny_collect_only(tmp_path):
    done = run(["--collect-only", "--episodes", "1", "--out", str(tmp_path)], 180)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    summary = (run_dir / "summary.md").read_text()
    assert "1 episodes from one simulated cell" in summary
    assert "| task | episodes | aborted | policies | SD success | oracle success |" in summary
    assert "| **all** | 1 |" in summary
    assert not (run_dir / "learner").exists()  # no training, no stage 3
    assert not (run_dir / "stage3_episodes").exists()
