"""The gym probe at a tiny budget: real MuJoCo episodes, real training, greedy evaluation."""

import dataclasses
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
    settings = json.loads((tmp_path / "out" / "config.json").read_text())
    assert settings == json.loads(json.dumps(dataclasses.asdict(config)))

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


def test_probe_config_names_the_bad_field():
    with pytest.raises(ValueError, match="epsilon must be in"):
        gym_probe.ProbeConfig(epsilon=1.5)
    assert gym_probe.main(["--steps", "0"]) == 2


def test_warm_start_continues_the_previous_rounds_network_and_optimizer():
    torch.set_num_threads(1)
    config = gym_probe.ProbeConfig(
        episodes=3, round_episodes=2, steps=3, batch_size=8, eval_episodes=1, max_steps=3,
        image_size=32, warm_start=True, rounds=1, augment_shift_px=2,
        conservative_weight=0.5, conservative_mode="relative", conservative_anneal_steps=10,
        bootstrap_truncation=True, step_input=True, target_cem_population=8,
        target_cem_elites=2, target_cem_iterations=1, policy_cem_population=8,
        policy_cem_elites=2, policy_cem_iterations=1,
    )  # fmt: skip
    probe = gym_probe.Probe(config, log=lambda _m: None)
    try:
        probe.collect(3, 0)
        first = probe.train()
        trainer = probe.trainer
        weights = {k: v.clone() for k, v in trainer.qnet.state_dict().items()}
        assert first["trainer_steps"] == 3
        assert trainer.config.lr_decay_steps == 6  # one cosine over both rounds
        assert trainer.qnet.config.step_horizon == 3 and trainer.config.augment_shift_px == 2
        probe.collect(2, 1)
        assert probe.episodes[-1].num_steps <= 3
        second = probe.train()
        # the same trainer went on: its step count, optimizer state and replay continue
        assert probe.trainer is trainer and second["trainer_steps"] == 6
        adam_steps = [float(s["step"]) for s in trainer.optimizer.state.values()]
        assert adam_steps and set(adam_steps) == {6.0}
        assert trainer.replay.num_episodes == 5
        assert any(not torch.equal(weights[k], v) for k, v in trainer.qnet.state_dict().items())
    finally:
        probe.close()

    # without warm start every round starts over: a fresh trainer, 3 steps
    cold = gym_probe.Probe(dataclasses.replace(config, warm_start=False), log=lambda _m: None)
    try:
        cold.collect(3, 0)
        cold.train()
        first_trainer = cold.trainer
        assert first_trainer.config.lr_decay_steps == 3
        cold.collect(2, 1)
        assert cold.train()["trainer_steps"] == 3 and cold.trainer is not first_trainer
        assert cold.trainer.replay.num_episodes == 5
    finally:
        cold.close()


def test_learning_flags_parse_into_the_probe_config(tmp_path):
    args = gym_probe.build_parser().parse_args([
        "--warm-start", "--augment-shift-px", "4", "--conservative-mode", "relative",
        "--conservative-anneal-steps", "500", "--bootstrap-truncation", "--step-input",
        "--no-fuse-after-norm", "--target-cem-population", "32", "--policy-cem-elites", "4",
        "--policy-roi", "0.026", "0.143", "0.56", "0.677", "--policy-frame-size", "128",
    ])  # fmt: skip
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(gym_probe.ProbeConfig)}
    values["policy_roi"] = tuple(values["policy_roi"])
    config = gym_probe.ProbeConfig(**values)
    assert config.warm_start and config.bootstrap_truncation and config.step_input
    assert not config.fuse_after_norm and config.policy_roi == (0.026, 0.143, 0.56, 0.677)
    trainer = config.trainer_config()
    assert trainer.augment_shift_px == 4 and trainer.conservative_mode == "relative"
    assert trainer.conservative_anneal_steps == 500 and trainer.cem.population == 32
    assert config.policy_cem().elites == 4 and config.policy_frame_size == 128
    net = config.qnet_config(12)
    assert net.step_horizon == config.max_steps and not net.fuse_after_norm
    default = gym_probe.ProbeConfig()
    assert not default.warm_start and default.augment_shift_px == 0
    assert default.target_cem() == gym_probe.CEMConfig(16, 2, 2)  # the probe's targets' CEM
    assert default.policy_cem() == gym_probe.CEMConfig()  # the policy node's 64 / 6 / 2
    with pytest.raises(ValueError, match="policy_roi"):
        gym_probe.ProbeConfig(policy_roi=(0.5, 0.5, 0.4, 1.0))
    with pytest.raises(ValueError, match="conservative_mode"):
        gym_probe.ProbeConfig(conservative_mode="soft")
    with pytest.raises(ValueError, match="elites"):
        gym_probe.ProbeConfig(policy_cem_elites=100)
