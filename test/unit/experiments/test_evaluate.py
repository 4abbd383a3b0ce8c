"""`mtopt-eval`: the paired evaluator at a tiny budget (a freshly initialized network written
here, real MuJoCo scenes), its scene seeds, its statistics and its refusals."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtopt_core import sd_model
from mtopt_core.checkpoint import save_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import load_task_registry
from mtopt_experiments import eval_report, evaluate

VENV_BIN = Path(sys.executable).parent
TASKS = ("lift-any", "place-any")
EPISODES = 2


def write_qnet(path: Path, task_names, image_size: int = 32) -> Path:
    torch.manual_seed(0)
    save_checkpoint(
        path, QNet(QNetConfig.tiny(len(task_names), image_size=image_size)), task_names
    )
    return path


def write_sd(path: Path, task_names) -> Path:
    torch.manual_seed(0)
    config = sd_model.SDModelConfig(
        task_names=task_names, image_size=32, channels=(8, 8), feature_dim=8, hidden_dim=8
    )
    sd_model.save_checkpoint(path, sd_model.SuccessDetector(config))
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def registry():
    return load_task_registry()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, registry):
    """One run of the command as a user runs it: 2 tasks x 2 scenes, 2 spawned workers, SD."""
    root = tmp_path_factory.mktemp("eval")
    ckpt = write_qnet(root / "qnet.ckpt", registry.names)
    sd = write_sd(root / "sd.ckpt", registry.names)
    out = root / "report"
    argv = [str(ckpt), "--tasks", *TASKS, "--episodes-per-task", str(EPISODES), "--workers",
            "2", "--seed", "3", "--out", str(out), "--sd-checkpoint", str(sd)]  # fmt: skip
    proc = subprocess.run(
        [str(VENV_BIN / "mtopt-eval"), *argv], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0]), out, ckpt, sd, proc.stderr


def test_cli_prints_one_json_line_and_writes_the_report(cli_run):
    result, out, ckpt, _, stderr = cli_run
    assert {"checkpoint", "sha256", "seed", "episodes_per_task", "epsilon", "tasks", "mean",
            "out", "wall_time_s"} <= set(result)  # fmt: skip
    assert result["checkpoint"] == str(ckpt) and result["seed"] == 3
    assert list(result["tasks"]) == list(TASKS)
    for entry in result["tasks"].values():
        assert entry["episodes"] == EPISODES
        for policy in ("learned", "scripted"):
            assert 0 <= entry[policy] <= EPISODES
            assert entry[f"{policy}_rate"] == entry[policy] / EPISODES
            lo, hi = entry[f"{policy}_ci"]
            assert 0 <= lo <= entry[f"{policy}_rate"] <= hi <= 1
        assert entry["only_learned"] + entry["only_scripted"] <= EPISODES
        assert 0 < entry["mcnemar_p"] <= 1
        assert 0 <= entry["learned_sd"] <= EPISODES and 0 <= entry["sd_agreement"] <= 1
    assert result["mean"]["episodes"] == EPISODES * len(TASKS)
    assert json.loads((out / "result.json").read_text()) == result
    assert (out / "results.png").stat().st_size > 5000
    table = (out / "results.md").read_text()
    assert "| lift-any | 2 |" in table and "mean over 2 tasks" in table and "SD = oracle" in table
    assert [r["task"] for r in read_csv(out / "tasks.csv")] == [*TASKS, "mean"]
    assert "mtopt-eval" in stderr  # progress goes to stderr


def test_scripted_baseline_ran_on_the_same_scenes_and_starts(cli_run):
    _, out, _, _, _ = cli_run
    rows = read_csv(out / "episodes.csv")
    assert len(rows) == 2 * EPISODES * len(TASKS)
    scenes: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        scenes.setdefault((row["task"], row["episode"]), {})[row["policy"]] = row
    assert len(scenes) == EPISODES * len(TASKS)
    seeds = set()
    for (task, _), pair in scenes.items():
        learned, scripted = pair["learned"], pair["scripted"]
        for key in ("scene_seed", "start_x", "start_y", "start_z", "start_yaw", "start_state"):
            assert learned[key] == scripted[key], (task, key)
        assert learned["kind"] == "cem"
        assert scripted["kind"] == ("scripted_place" if task == "place-any" else "scripted_pick")
        # evaluation scenes lie above every 32-bit (training) seed
        assert int(learned["scene_seed"]) >= 2**32
        seeds.add(learned["scene_seed"])
        for row in (learned, scripted):
            assert row["success"] in ("True", "False")
            assert (float(row["sd_probability"]) >= 0.5) == (row["sd_success"] == "True")
            # the oracle's other verdicts: a success is also the skill's, and is listed
            achieved = row["achieved"].split(";") if row["achieved"] else []
            assert (task in achieved) == (row["success"] == "True")
            if row["success"] == "True":
                assert row["skill_success"] == "True"
    assert len(seeds) == len(scenes)  # a fresh scene per episode


def test_outcomes_do_not_depend_on_the_number_of_workers(cli_run, tmp_path):
    result, out, ckpt, sd, _ = cli_run
    config = evaluate.EvalConfig(
        checkpoint=str(ckpt), tasks=TASKS, episodes_per_task=EPISODES, seed=3,
        sd_checkpoint=str(sd),
    )  # fmt: skip
    in_process = evaluate.evaluate(config, tmp_path / "one", log=lambda _m: None)
    assert in_process["tasks"] == result["tasks"]
    assert read_csv(tmp_path / "one" / "episodes.csv") == read_csv(out / "episodes.csv")


def test_refused_checkpoints_and_options_exit_2(tmp_path, registry, capsys):
    good = write_qnet(tmp_path / "qnet.ckpt", registry.names)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(good.read_bytes()[:1000])
    assert evaluate.main([str(broken), "--out", str(tmp_path / "r")]) == 2
    assert "broken.ckpt" in capsys.readouterr().err
    other_tasks = write_qnet(tmp_path / "other.ckpt", ["lift-any", "place-any"])
    assert evaluate.main([str(other_tasks), "--out", str(tmp_path / "r")]) == 2
    assert "task list mismatch" in capsys.readouterr().err
    assert evaluate.main([str(good), "--sd-checkpoint", str(broken)]) == 2
    assert "SD checkpoint" in capsys.readouterr().err
    assert evaluate.main([str(good), "--tasks", "lift-unicorn"]) == 2
    assert "unknown tasks ['lift-unicorn']" in capsys.readouterr().err
    assert evaluate.main([str(good), "--epsilon", "1.5"]) == 2
    assert "epsilon must be in [0, 1]" in capsys.readouterr().err
    assert evaluate.main([str(good), "--policy-param", "cem_populaton=8"]) == 2
    assert "unknown policy parameter 'cem_populaton'" in capsys.readouterr().err
    assert evaluate.main([str(good), "--policy-param", "image_size=64"]) == 2
    assert "32 px images" in capsys.readouterr().err  # the policy node's own refusal
    assert evaluate.main([str(good), "--ros"]) == 2
    assert "--ros needs --tasks" in capsys.readouterr().err
    assert evaluate.main([str(good), "--ros", "--tasks", "place-any"]) == 2
    assert "lift-type tasks only, not 'place-any'" in capsys.readouterr().err
    assert evaluate.main([str(good), "--compare", "r.json"]) == 2
    assert "--compare goes with --ros" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_policy_config_is_the_nodes_with_the_evaluations_settings():
    params = evaluate.parse_policy_params(["cem_population=32", "right_bin_half=[0.15, 0.14]"])
    config = evaluate.EvalConfig(checkpoint="x", epsilon=0.2, seed=4, policy_params=params)
    policy = evaluate.policy_config(config, image_size=48)
    assert (policy.cem_population, policy.cem_elites, policy.cem_iterations) == (32, 6, 2)
    assert policy.right_bin_half == (0.15, 0.14) and policy.image_size == 48
    assert (policy.epsilon, policy.seed) == (0.2, 4)
    # The env sees the cell through the same parameters: camera frame, ROI, steps, protocol.
    roi = evaluate.parse_policy_params(["policy_roi=[0.1, 0.2, 0.6, 0.9]"])
    policy = evaluate.policy_config(evaluate.EvalConfig(checkpoint="x", policy_params=roi), 32)
    env = evaluate.env_config(policy, camera_size=96)
    assert env.policy_roi == (0.1, 0.2, 0.6, 0.9) and env.policy_frame_size == 96
    assert (env.image_size, env.max_steps, env.policy_camera) == (32, 20, "overhead")
    assert env.place_skills == policy.place_skills and env.present_before_grading
    assert evaluate.env_config(policy, camera_size=0).policy_frame_size == 32
    with pytest.raises(ValueError, match="set by --epsilon"):
        evaluate.policy_config(
            evaluate.EvalConfig(checkpoint="x", policy_params=(("epsilon", 0.5),)), 32
        )
    with pytest.raises(ValueError, match="must be of type int"):
        evaluate.policy_config(
            evaluate.EvalConfig(checkpoint="x", policy_params=(("cem_elites", "six"),)), 32
        )


def test_scene_seeds_are_disjoint_per_task_episode_and_draw():
    seeds = {
        evaluate.scene_seed(seed, task, episode, draw)
        for seed in (0, 1)
        for task in range(12)
        for episode in (0, 1, evaluate.MAX_EPISODES_PER_TASK - 1)
        for draw in range(evaluate.MAX_SCENE_DRAWS)
    }
    assert len(seeds) == 2 * 12 * 3 * evaluate.MAX_SCENE_DRAWS
    assert min(seeds) == 2**32  # above every 32-bit seed a training path uses
    with pytest.raises(ValueError, match="out of range"):
        evaluate.scene_seed(0, 0, evaluate.MAX_EPISODES_PER_TASK, 0)
    with pytest.raises(ValueError, match="out of range"):
        evaluate.scene_seed(0, 0, 0, evaluate.MAX_SCENE_DRAWS)


def _rows(task: str, learned: str, scripted: str) -> list[dict]:
    rows = []
    for k, (a, b) in enumerate(zip(learned, scripted, strict=True)):
        for policy, outcome in (("learned", a), ("scripted", b)):
            rows.append({"task": task, "episode": k, "policy": policy, "success": outcome == "1",
                         "scene_draws": 1 + (k == 0)})  # fmt: skip
    return rows


def test_summary_pairs_scenes_and_tests_the_discordant_ones():
    rows = _rows("lift-any", "1111110000", "0000000011") + _rows("place-any", "10", "10")
    summary = eval_report.summarize(rows, ["lift-any", "place-any"])
    lift = summary["tasks"]["lift-any"]
    assert (lift["episodes"], lift["learned"], lift["scripted"]) == (10, 6, 2)
    assert (lift["only_learned"], lift["only_scripted"]) == (6, 2)
    assert lift["mcnemar_p"] == pytest.approx(0.2891, abs=1e-4)  # 2 * P(Bin(8, 1/2) <= 2)
    assert lift["learned_ci"][0] < 0.6 < lift["learned_ci"][1]
    assert lift["scenes_redrawn"] == 1
    mean = summary["mean"]
    assert mean["learned_rate"] == pytest.approx((0.6 + 0.5) / 2)
    assert (mean["episodes"], mean["only_learned"], mean["only_scripted"]) == (12, 6, 2)
    with pytest.raises(ValueError, match="lack one policy"):
        eval_report.summarize(rows[:-1], ["lift-any", "place-any"])


def test_grasp_outcomes_count_where_each_policys_first_close_went():
    rows = _rows("lift-any", "110000", "100000")
    closes = {  # (closes, first close) per episode: learned, scripted
        0: ((1, "held"), (1, "held")),
        1: ((2, "empty"), (1, "held")),
        2: ((1, "held"), (1, "empty")),
        3: ((0, "none"), (1, "empty")),
        4: ((2, "held"), (0, "none")),
        5: ((1, "empty"), (1, "held")),
    }
    for row in rows:
        row["closes"], row["first_close"] = closes[row["episode"]][row["policy"] != "learned"]
    lift = eval_report.summarize(rows, ["lift-any"])["tasks"]["lift-any"]
    assert lift["grasp_outcomes"]["learned"] == {
        "no_close": 1, "held": 3, "held_success": 1, "empty": 2, "closed_again": 2,
    }  # fmt: skip
    assert lift["grasp_outcomes"]["scripted"] == {
        "no_close": 1, "held": 3, "held_success": 1, "empty": 2, "closed_again": 0,
    }  # fmt: skip
    result = {**eval_report.summarize(rows, ["lift-any"]), "checkpoint": "q.ckpt",
              "sha256": "0" * 64, "episodes_per_task": 6, "seed": 1, "epsilon": 0.0,
              "wall_time_s": 1.0}  # fmt: skip
    settings = {"cem": "64/6/2", "image_size": 64, "policy_roi": [0, 0, 1, 1],
                "camera_size": 64, "max_steps": 12}  # fmt: skip
    text = eval_report.format_markdown(result, settings)
    assert "| lift-any | learned | 3 | 1 | 2 | 2 | 1 |" in text
    assert all("grasp" not in k for k in eval_report.task_records(result)[0])
    # Rows that do not say how the gripper closed (the ROS evaluator's): no such section.
    assert (
        "grasp_outcomes"
        not in eval_report.summarize(_rows("lift-any", "10", "01"), ["lift-any"])["tasks"][
            "lift-any"
        ]
    )


def test_skill_outcomes_count_episodes_that_did_the_skill_on_any_target():
    """A lift-banana episode that lifted a bottle did the skill, not the task: counted apart."""
    rows = _rows("lift-banana", "1000", "0000")
    skill = {0: (True, False), 1: (True, True), 2: (True, False), 3: (False, False)}
    for row in rows:
        row["skill_success"] = skill[row["episode"]][row["policy"] != "learned"]
    result = {**eval_report.summarize(rows, ["lift-banana"]), "checkpoint": "q.ckpt",
              "sha256": "0" * 64, "episodes_per_task": 4, "seed": 1, "epsilon": 0.0,
              "wall_time_s": 1.0}  # fmt: skip
    entry = result["tasks"]["lift-banana"]
    assert entry["skill_outcomes"] == {"learned": 3, "scripted": 1}
    settings = {"cem": "64/6/2", "image_size": 64, "policy_roi": [0, 0, 1, 1],
                "camera_size": 64, "max_steps": 20}  # fmt: skip
    assert "| lift-banana | 3 | 1 | 1 | 0 |" in eval_report.format_markdown(result, settings)
    assert all("skill" not in k for k in eval_report.task_records(result)[0])
    # Rows without the field (the ROS evaluator's): no such section.
    plain = eval_report.summarize(_rows("lift-any", "10", "01"), ["lift-any"])
    assert "skill_outcomes" not in plain["tasks"]["lift-any"]


@pytest.mark.ros
def test_ros_evaluation_runs_the_cell_graph_with_the_weights(tmp_path, registry):
    """--ros: the sim cell's nodes (real DDS) act with the announced checkpoint on lift-any
    until 2 CEM episodes on those weights are logged; compared with an in-process result."""
    ckpt = write_qnet(tmp_path / "qnet.ckpt", registry.names)
    reference = {"tasks": {"lift-any": {"learned": 1, "episodes": 4, "learned_rate": 0.25,
                                        "learned_ci": [0.05, 0.7]}}}  # fmt: skip
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    # The in-process episodes beside it: learned successes on the first scenes of seed 0.
    lift_any = registry.index("lift-any")
    in_process = {evaluate.scene_seed(0, lift_any, k): k % 2 == 0 for k in range(8)}
    (tmp_path / "episodes.csv").write_text(
        "task,episode,scene_seed,start_state,policy,success\n"
        + "".join(f"lift-any,{k},{seed},s{k},learned,{success}\n"
                  f"lift-any,{k},{seed},s{k},scripted,False\n"
                  for k, (seed, success) in enumerate(in_process.items()))
    )  # fmt: skip
    out = tmp_path / "ros"
    proc = subprocess.run(
        [str(VENV_BIN / "mtopt-eval"), str(ckpt), "--ros", "--tasks", "lift-any",
         "--episodes-per-task", "2", "--out", str(out),  # image size: the checkpoint's
         "--compare", str(tmp_path / "ref.json")],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # progress goes to stderr
    # progress counts toward the task's goal, not against a cell's cap
    assert re.search(r"stage 1: [0-2]/2 lift-any episodes on the weights, \d+ logged",
                     proc.stderr), proc.stderr[-2000:]  # fmt: skip
    result = json.loads(lines[0])
    entry = result["tasks"]["lift-any"]
    assert result["ros"] is True and entry["episodes"] == 2 and 0 <= entry["learned"] <= 2
    assert entry["in_process"]["learned_ci"] == [0.05, 0.7]
    assert isinstance(entry["in_process"]["ros_rate_in_interval"], bool)
    rows = read_csv(out / "episodes.csv")
    assert len(rows) == 2 and {r["policy_kind"] for r in rows} == {"cem"}
    assert {r["task"] for r in rows} == {"lift-any"}
    # On the evaluator's lift-any scenes of seed 0: cell 0's are scenes 0, 1, 2, ... (one
    # cell), and the episodes ran on the scenes its sim cell logged for them.
    logs = "".join(p.read_text(errors="replace") for p in out.rglob("*.log"))
    for row in rows:
        assert int(row["scene_seed"]) in in_process and row["cell"] == "0", row
        assert f"scene seed {row['scene_seed']}" in logs, logs[-3000:]
    paired = entry["in_process"]["paired"]
    assert paired["scenes"] == 2 and paired["ros"] == entry["learned"], paired
    assert paired["in_process"] == sum(in_process[int(r["scene_seed"])] for r in rows), paired
    # every episode starts on a freshly spawned bin, as the in-process scenes do
    assert "bin reset done (scheduled (every 1 episodes))" in logs, logs[-3000:]
    assert "after the reset: respawned objects" in logs, logs[-3000:]


def test_learned_start_cell_is_the_nodes_noise_free_draw(tmp_path, registry):
    """--learned-start cell: same scene, but the learned episode starts from the policy node's
    own uniform draw (inside the start margin), not from the scripted start."""
    ckpt = write_qnet(tmp_path / "qnet.ckpt", registry.names)
    sha = evaluate.hashlib.sha256(ckpt.read_bytes()).hexdigest()
    starts = {}
    for mode in evaluate.LEARNED_STARTS:
        config = evaluate.EvalConfig(checkpoint=str(ckpt), tasks=("lift-any",), learned_start=mode)
        policy = evaluate.policy_config(config, image_size=32)
        runner = evaluate.PairedSceneRunner(config, policy, sha)
        try:
            starts[mode] = [runner._scene("lift-any", k) for k in range(8)]
        finally:
            runner.close()
    center, half = policy.right_bin_center, policy.right_bin_half
    for (scene, scripted, learned, _), (scene_c, scripted_c, learned_c, _) in zip(
        starts["scripted"], starts["cell"], strict=True
    ):
        assert scene == scene_c and (scripted.start_position == scripted_c.start_position).all()
        assert (learned.start_position == scripted.start_position).all()
        assert learned.start_yaw == scripted.start_yaw
        assert not (learned_c.start_position == scripted_c.start_position).all()
        for axis in (0, 1):
            assert abs(learned_c.start_position[axis] - center[axis]) <= (
                half[axis] - policy.start_margin + 1e-9
            )
    with pytest.raises(ValueError, match="learned_start must be one of"):
        evaluate.EvalConfig(checkpoint="x", learned_start="anywhere")


def test_run_learned_is_run_scenes_learned_episode(tmp_path, registry):
    """`run_learned` (the step tracer's entry) replays exactly the learned episode that
    `run_scene` runs after the scripted one, and reports every step."""
    ckpt = write_qnet(tmp_path / "qnet.ckpt", registry.names)
    sha = evaluate.hashlib.sha256(ckpt.read_bytes()).hexdigest()
    config = evaluate.EvalConfig(checkpoint=str(ckpt), tasks=("lift-any",), learned_start="cell")
    runner = evaluate.PairedSceneRunner(config, evaluate.policy_config(config, 32), sha)
    try:
        for episode in range(2):
            _, paired = runner.run_scene("lift-any", episode)
            steps = []
            alone = runner.run_learned("lift-any", episode, lambda *args, s=steps: s.append(args))
            assert alone == paired
            assert len(steps) == alone["steps"]
            decision, obs, info = steps[-1]
            assert decision.action.shape == (6,) and "oracle" in info and "image" in obs
    finally:
        runner.close()
