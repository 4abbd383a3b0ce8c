"""The gym probe at a tiny budget: real MuJoCo episodes, real training, greedy evaluation."""

import json

import numpy as np
import pytest
import torch

from mtopt_core.checkpoint import qnet_from_checkpoint
from mtopt_core.qnet import QNet
from mtopt_experiments import gym_probe


def test_probe_rounds_collect_train_and_evaluate(tmp_path, capsys):
    torch.set_num_threads(1)
    config = gym_probe.ProbeConfig(
        episodes=3, rounds=1, round_episodes=2, steps=3, batch_size=8, eval_episodes=2,
        max_steps=4, image_size=32,
    )  # fmt: skip
    results = gym_probe.run(config, tmp_path / "out", log=lambda _m: None)
    assert [r["round"] for r in results] == [0, 1]
    assert [r["episodes"] for r in results] == [3, 5]  # round 1 adds its CEM episodes
    for r in results:
        assert 0 <= r["learned_lifts"] <= 2 and 0 <= r["scripted_lifts"] <= 2
        assert len(r["learned_outcomes"]) == len(r["scripted_outcomes"]) == 2
        assert len(r["learned_eps_outcomes"]) == 2 and r["eval_epsilon"] == 0.1
        assert r["learned_outcomes"].count("1") == r["learned_lifts"]
        assert r["scripted_outcomes"].count("1") == r["scripted_lifts"]
        assert np.isfinite(r["final_loss"])
        assert r["only_learned"] + r["only_scripted"] <= 2 and 0 < r["mcnemar_p"] <= 1
    # The scripted baseline runs the same seeded scenes and starts every round.
    assert results[0]["scripted_lifts"] == results[1]["scripted_lifts"]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == results
    lines = (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == results
    net, _ = qnet_from_checkpoint(tmp_path / "out" / "qnet.ckpt")
    assert isinstance(net, QNet) and net.config.image_size == 32
    assert (tmp_path / "out" / "probe.png").stat().st_size > 1000

    # --weights: the saved network alone, on another evaluation set (no collection, no training).
    capsys.readouterr()
    ckpt = tmp_path / "out" / "qnet.ckpt"
    argv = ["--weights", str(ckpt), "--eval-episodes", "3", "--eval-scene-seed", "5000",
            "--eval-epsilon", "0", "--max-steps", "4", "--image-size", "32"]  # fmt: skip
    assert gym_probe.main(argv) == 0
    (evaluated,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert evaluated["weights"] == str(ckpt) and evaluated["weights_step"] == 3
    assert evaluated["eval_scene_seed"] == 5000 and "learned_eps_outcomes" not in evaluated
    assert len(evaluated["learned_outcomes"]) == len(evaluated["scripted_outcomes"]) == 3

    # A truncated checkpoint is refused with a message, exit 2.
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(ckpt.read_bytes()[:1000])
    assert gym_probe.main(["--weights", str(broken), "--image-size", "32"]) == 2
    assert "broken.ckpt" in capsys.readouterr().err


def test_wilson_interval_brackets_the_rate():
    lo, hi = gym_probe.wilson_interval(20, 100)
    assert lo < 0.2 < hi and hi - lo < 0.17
    assert gym_probe.wilson_interval(0, 50)[0] == 0.0
    assert gym_probe.wilson_interval(0, 0) == (0.0, 1.0)


def test_probe_config_names_the_bad_field():
    with pytest.raises(ValueError, match="epsilon must be in"):
        gym_probe.ProbeConfig(epsilon=1.5)
    assert gym_probe.main(["--steps", "0"]) == 2


def test_paired_comparison_counts_discordant_episodes_and_tests_them():
    result = gym_probe.paired_comparison("1100101", "1011000")
    assert (result["only_learned"], result["only_scripted"]) == (3, 2)
    assert result["mcnemar_p"] == 1.0  # 3 vs 2 of 5 discordant pairs: no evidence either way
    # 50 vs 34 discordant pairs (the README's first 200-scene set): p = 0.10
    learned, scripted = "1" * 50 + "0" * 34 + "1" * 10, "0" * 50 + "1" * 34 + "1" * 10
    assert gym_probe.paired_comparison(learned, scripted)["mcnemar_p"] == pytest.approx(0.1011)
    assert gym_probe.paired_comparison(scripted, learned)["mcnemar_p"] == pytest.approx(0.1011)
    assert gym_probe.paired_comparison("", "")["mcnemar_p"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        gym_probe.paired_comparison("10", "1")
