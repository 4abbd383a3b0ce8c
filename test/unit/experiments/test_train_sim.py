"""`mtopt-train-sim`: the closed loop at a tiny budget (real MuJoCo collection into bags, real
training, the paired evaluator), its resume and extension, and its refusals."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtopt_core.checkpoint import POLICY_SETTINGS_KEY, read_checkpoint
from mtopt_experiments import train_sim

VENV_BIN = Path(sys.executable).parent
TINY = [
    "--tasks", "lift-any", "--initial-episodes", "4", "--initial-steps", "3",
    "--steps-per-round", "2", "--eval-episodes", "2", "--workers", "1", "--camera-size", "64",
    "--policy-param", "policy_camera=wrist", "--learn", "net=tiny", "--learn", "batch_size=8",
    "--learn", "cem_population=4", "--learn", "cem_elites=1", "--learn", "cem_iterations=1",
    "--learn", "learning_rate=1e-3", "--no-progress",
]  # fmt: skip


#: Every episode on a freshly spawned bin (the one-round run; its resumes repeat it).
FRESH_BINS = ("--collector-param", "reset_every=1", "--collector-param", "respawn_below=99")


def run(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "mtopt-train-sim"), "--out", str(out), *TINY, *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def json_line(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def one_round_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("loop") / "run"
    return out, run(out, "--episodes", "6", "--rounds", "1", *FRESH_BINS)


@pytest.fixture(scope="module")
def one_round(one_round_run):
    out, proc = one_round_run
    return out, json_line(proc)


def test_rounds_collect_learn_and_evaluate(one_round):
    out, summary = one_round
    assert summary["rounds"] == 1 and summary["episodes"] == 6 and summary["steps"] == 5
    assert set(summary["tasks"]) == {"lift-any"}
    assert summary["tasks"]["lift-any"]["episodes"] == 2
    bags = [p for p in (out / "bags").iterdir() if not p.name.endswith(".part")]
    assert len(bags) == 6
    for r, (episodes, steps) in enumerate(((4, 3), (6, 5))):
        record = json.loads((out / "rounds" / f"r{r:02d}" / "round.json").read_text())
        assert (record["episodes"], record["steps"]) == (episodes, steps)
        ckpt = out / "rounds" / f"r{r:02d}" / "qnet.ckpt"
        assert read_checkpoint(ckpt).file_sha256 == record["sha256"]  # sidecar agrees
        trained_for = read_checkpoint(ckpt).metadata[POLICY_SETTINGS_KEY]
        assert (trained_for["policy_camera"], trained_for["action_frame"]) == ("wrist", "base")
        assert ckpt.with_name("qnet.ckpt.sha256").read_text().split()[1] == "qnet.ckpt"
        assert (out / "rounds" / f"r{r:02d}" / "eval" / "results.md").is_file()
        assert record["collected"]["collected"] == episodes - (4 if r else 0)
    # round 1 acted with round 0's network (CEM episodes unless scripted)
    kinds = json.loads((out / "rounds" / "r01" / "round.json").read_text())["collected"]
    assert set(kinds["episodes_by_kind"]) <= {"cem", "scripted_pick", "scripted_place"}
    with open(out / "curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["round"], r["episodes"], r["task"]) for r in rows] == [
        ("0", "4", "lift-any"),
        ("1", "6", "lift-any"),
    ]
    assert (out / "curve.png").stat().st_size > 0
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    # the collector parameters reach the bulk collector's parameter file
    params = yaml.safe_load((out / "node_params.yaml").read_text())
    assert params["/**/collector"]["ros__parameters"] == {"reset_every": 1, "respawn_below": 99}
    assert params["/**/policy"]["ros__parameters"]["policy_camera"] == "wrist"


def test_a_rerun_resumes_and_more_rounds_extend(one_round):
    out, first = one_round
    again = json_line(run(out, "--episodes", "6", "--rounds", "1", *FRESH_BINS))
    assert again["sha256"] == first["sha256"]  # nothing redone
    # threads is a resource setting: a resume may change it
    extended = json_line(
        run(out, "--episodes", "8", "--rounds", "2", "--threads", "1", *FRESH_BINS)
    )
    assert extended["rounds"] == 2 and extended["episodes"] == 8 and extended["steps"] == 7
    assert extended["sha256"] != first["sha256"]


def test_by_default_each_round_trains_a_new_network_over_all_bags(one_round_run):
    out, proc = one_round_run
    assert "round 1/1: train to step 5 (from scratch)" in proc.stderr
    assert "resumed" not in proc.stderr  # round 1 did not continue round 0's checkpoint
    for r, steps in ((0, 3), (1, 5)):
        names = [p.name for p in (out / "learn" / f"r{r:02d}" / "checkpoints").glob("*.ckpt")]
        assert len(names) == 1 and str(steps) in names[0], names  # its own run to its total


def test_round_start_warm_continues_one_network(tmp_path):
    out = tmp_path / "run"
    args = ("--episodes", "6", "--rounds", "1", "--eval-episodes", "1", *FRESH_BINS)
    proc = run(out, *args, "--round-start", "warm")
    summary = json_line(proc)
    assert summary["episodes"] == 6 and summary["steps"] == 5
    assert "round 1/1: train to step 5 (warm)" in proc.stderr
    names = sorted(p.name for p in (out / "learn" / "checkpoints").glob("*.ckpt"))
    assert names == ["qnet_3.ckpt", "qnet_5.ckpt"]  # one run through both rounds
    assert not (out / "learn" / "r00").exists()
    refused = run(out, *args)  # the default (scratch) over a warm run
    assert refused.returncode == 2 and "round_start" in refused.stderr


def test_the_learning_rate_schedule_spans_each_scratch_round(tmp_path):
    config = train_sim.TrainSimConfig(
        out=tmp_path, episodes=300, rounds=2, initial_episodes=100, initial_steps=1000,
        steps_per_round=500, round_start="scratch",
    )  # fmt: skip
    rounds = [config.offline_config(False, r) for r in range(3)]
    assert [c.steps for c in rounds] == [1000, 1500, 2000]
    assert [Path(c.out).name for c in rounds] == ["r00", "r01", "r02"]
    warm = dataclasses.replace(config, round_start="warm")
    assert {(warm.offline_config(False, r).steps, warm.offline_config(False, r).out)
            for r in range(3)} == {(2000, tmp_path / "learn")}  # fmt: skip


def check(out: Path, *args: str) -> None:
    """What the command checks before any work (options, then config.json), in-process."""
    parsed = train_sim.build_parser().parse_args(["--out", str(out), *TINY, *args])
    train_sim.ClosedLoop(train_sim.config_from_args(parsed)).check_config()


def test_a_resume_with_other_settings_is_refused(one_round):
    out, _ = one_round
    six = ("--episodes", "6", "--rounds", "1")
    with pytest.raises(train_sim.TrainSimError, match="config.json.*eval_seed"):
        check(out, *six, "--eval-seed", "5", *FRESH_BINS)
    with pytest.raises(train_sim.TrainSimError, match="collector_params"):
        check(out, *six)  # without the collector parameters
    # A run started before a setting existed resumes at that setting's default only.
    config = out / "config.json"
    original = config.read_text()
    written = json.loads(original)
    del written["guided_fraction"]
    config.write_text(json.dumps(written))
    with pytest.raises(train_sim.TrainSimError, match="guided_fraction"):
        check(out, *six, "--guided-fraction", "0.5", *FRESH_BINS)
    check(out, *six, *FRESH_BINS)
    # ... and the rounds of a run from before --round-start were warm, whatever the default
    written = json.loads(original)
    del written["round_start"]
    config.write_text(json.dumps(written))
    with pytest.raises(train_sim.TrainSimError, match="round_start"):
        check(out, *six, *FRESH_BINS)
    check(out, *six, "--round-start", "warm", *FRESH_BINS)
    config.write_text(original)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--episodes", "3", "--rounds", "1"], "--initial-episodes must be in 1..--episodes"),
        (["--episodes", "4", "--rounds", "1"], "leaves no episodes for 1 rounds"),
        (["--episodes", "6", "--rounds", "1", "--learn", "no_such=1"], "--learn no_such: not a"),
        (["--episodes", "6", "--rounds", "1", "--learn", "batch_size=x"], "must be of type int"),
        (["--episodes", "6", "--rounds", "1", "--collector-param", "respawn=1"], "respawn: not a"),
        (["--episodes", "6", "--rounds", "1", "--place-start-fraction", "2"], "--place-start-fra"),
    ],
)
def test_bad_options_are_refused_with_a_message(tmp_path, args, message):
    with pytest.raises(train_sim.TrainSimError, match=re.escape(message)):
        check(tmp_path / "run", *args)
    assert not (tmp_path / "run").exists()  # refused before any work


def test_guided_aims_are_the_guided_picks(tmp_path):
    from mtopt_sim.guided import GUIDED_AIMS  # loads MuJoCo, which train_sim does not

    assert train_sim.GUIDED_AIMS == GUIDED_AIMS
    parsed = train_sim.build_parser().parse_args(
        ["--out", str(tmp_path), "--guided-aim", "nearest"]
    )
    assert train_sim.config_from_args(parsed).guided_aim == "nearest"
    with pytest.raises(train_sim.TrainSimError, match="--guided-aim"):
        train_sim.TrainSimConfig(out=tmp_path, guided_aim="farthest")


def test_a_bad_option_exits_2_with_a_message(tmp_path):
    proc = run(tmp_path / "run", "--episodes", "4", "--rounds", "1")
    assert proc.returncode == 2 and "leaves no episodes for 1 rounds" in proc.stderr
    assert not (tmp_path / "run" / "bags").exists()


def test_round_budget_gives_the_last_round_the_remainder(tmp_path):
    config = train_sim.TrainSimConfig(
        out=tmp_path, episodes=1000, rounds=3, initial_episodes=100, initial_steps=10,
        steps_per_round=5,
    )  # fmt: skip
    assert [config.episodes_after(r) for r in range(4)] == [100, 400, 700, 1000]
    assert [config.steps_after(r) for r in range(4)] == [10, 15, 20, 25]
    learn = config.offline_config(resume=False)
    assert learn.steps == 25  # the last round's total (from scratch: its own)
    assert learn.bags == tmp_path / "bags" and learn.labels == "oracle"
    # one cosine over the whole run's steps, checkpoints acting with the weight average
    trainer = learn.trainer_config()
    assert (trainer.lr_decay_steps, trainer.average_tau) == (25, 0.001)
    constant = (
        train_sim.TrainSimConfig(out=tmp_path, learn=(("lr_decay_steps", 0), ("average_tau", 0)))
        .offline_config(resume=False)
        .trainer_config()
    )
    assert (constant.lr_decay_steps, constant.average_tau) == (0, 0.0)


def test_the_learner_gets_the_policys_camera_region_and_action_frame(tmp_path):
    params = (("policy_roi", [0.0, 0.0, 1.0, 1.0]), ("policy_camera", "wrist"),
              ("action_frame", "tool"))  # fmt: skip
    learn = train_sim.TrainSimConfig(out=tmp_path, policy_params=params).offline_config(False)
    assert (learn.policy_roi, learn.policy_camera, learn.action_frame) == (
        (0.0, 0.0, 1.0, 1.0),
        "wrist",
        "tool",
    )
    # the defaults: the released lift network's policy (64 px of the wrist camera, tool frame)
    default = train_sim.TrainSimConfig(out=tmp_path).offline_config(resume=False)
    assert (default.policy_camera, default.action_frame, default.image_size) == (
        "wrist",
        "tool",
        64,
    )
    assert default.net_options == ("state_skip=false",)
    assert default.mc_target_tasks == ("lift-*",)  # returns for the lift tasks
    bellman = train_sim.TrainSimConfig(out=tmp_path, learn=(("mc_target_tasks", []),))
    assert bellman.offline_config(resume=False).mc_target_tasks == ()
    mine = train_sim.TrainSimConfig(out=tmp_path, learn=(("image_size", 96),))
    assert mine.offline_config(resume=False).image_size == 96  # --learn wins
    for given in ("lift-*", ["lift-*"]):  # one pattern, or a YAML list of them
        mc = train_sim.TrainSimConfig(out=tmp_path, learn=(("mc_target_tasks", given),))
        assert mc.offline_config(resume=False).mc_target_tasks == ("lift-*",)


def test_sigterm_stops_cleanly_and_the_same_command_resumes(tmp_path):
    """`kill` during collection: exit 130 with a resume hint, no partial bag left; the same
    command then finishes the run, counting the stopped invocation's time."""
    import signal
    import time

    out = tmp_path / "run"
    args = ["--episodes", "10", "--rounds", "0", "--initial-episodes", "10"]
    command = [str(VENV_BIN / "mtopt-train-sim"), "--out", str(out), *TINY, *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        bags = out / "bags"
        if bags.is_dir() and any(not p.name.endswith(".part") for p in bags.iterdir()):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err
    assert not list((out / "bags").glob("*.part"))
    stopped = json.loads((out / "unfinished_round.json").read_text())
    assert stopped["round"] == 0 and stopped["seconds"]["collect"] > 0
    summary = json_line(run(out, *args))
    assert summary["episodes"] == 10 and summary["rounds"] == 0
    # the stopped invocation's collection time counts in the round's wall time
    record = json.loads((out / "rounds" / "r00" / "round.json").read_text())
    assert record["seconds"]["collect"] > stopped["seconds"]["collect"]
    assert record["elapsed_s"] >= round(sum(record["seconds"].values()), 1) - 0.2
