"""End to end: multi-task QT-Opt (real QNet, CEM, replay with impersonation and re-balancing,
trainer) learns every task of a small image-based grid world from a fixed offline dataset.

Four tasks, each rewarding TERMINATE on its own coloured cell of a 4 x 4 grid (16 px image).
The dataset is collected once by exploration policies (noisy scripted walkers + random), with
oracle labels for every task and `skill` impersonation. The greedy policy (CEM 64/6/2 over the
learned Q) must succeed in at least 90% of the episodes of every task, from every start cell
with four gripper/height starts (60 episodes per task).
"""

import numpy as np
import pytest
import torch

from mtopt_core.cem import CEMConfig, CEMPolicy
from mtopt_core.gridworld import GridWorld, GridWorldConfig, collect_episode, greedy_success_rates
from mtopt_core.impersonation import make_impersonation
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.replay import ReplayBuffer, ReplayConfig
from mtopt_core.tasks import parse_task_registry
from mtopt_core.trainer import Trainer, TrainerConfig

NAMES = ("reach-red", "reach-green", "reach-blue", "reach-yellow")
EPISODES = 4000
# Measured on seeds 0, 2, 3 and 4 of data and network: every task >= 0.95 greedy success with
# 1400 steps (2000 steps: >= 0.967; 1000 steps left one task at 0.867 on seed 2). Batch 64 with
# CEM 16/2/2 targets (the same compute) left one task at 0.75-0.83 on some seeds or CPUs:
# wider batches with a cheaper target maximisation learn more reliably.
STEPS = 1400


@pytest.mark.slow
def test_multitask_qtopt_learns_every_task_offline():
    registry = parse_task_registry(
        {
            "skills": {"reach": "move to a coloured cell and stop there"},
            "tasks": [{"name": n, "skill": "reach"} for n in NAMES],
            "rules": [{"mutually_exclusive": list(NAMES)}],
        }
    )
    env_cfg = GridWorldConfig()
    env, rng = GridWorld(env_cfg), np.random.default_rng(0)
    replay = ReplayBuffer(NAMES, ReplayConfig(memory_budget_bytes=256 * 1024**2, seed=0))
    impersonation = make_impersonation("skill", registry)
    for i in range(EPISODES):
        replay.add_episode(collect_episode(env, i % 4, rng, NAMES), impersonation, rng)
    sizes = replay.buffer_sizes()
    # Offline data is imbalanced: few successes per task, many (mostly impersonated) failures.
    for name in NAMES:
        assert 0 < sizes[name]["success_episodes"] < sizes[name]["failure_episodes"] / 3

    torch.manual_seed(0)
    # The grid world has no gripper to detect objects: the net of the measured runs, without
    # that input.
    net = QNet(QNetConfig.tiny(len(NAMES), image_size=env_cfg.image_size, fc_hidden=128,
                               object_detected_input=False))  # fmt: skip
    trainer = Trainer(
        net,
        replay,
        TrainerConfig(
            batch_size=128, gamma=0.9, learning_rate=1e-3, lr_decay_steps=STEPS,
            target_tau=0.02, target2_period=50,
            cem=CEMConfig(population=8, elites=2, iterations=2), progress=False,
        ),
    )  # fmt: skip
    trainer.train(STEPS)
    net.eval()
    policy = CEMPolicy(net, CEMConfig(), seed=0)  # greedy, QT-Opt's CEM 64/6/2
    rates = greedy_success_rates(lambda *obs: policy.act(*obs)[0], env_cfg)
    # Reference: a uniformly random policy rarely succeeds.
    random_rng = np.random.default_rng(1)

    def random_policy(images, *_):
        a = random_rng.uniform(-1, 1, (len(images), 6)).astype(np.float32)
        a[:, 4:] = random_rng.random((len(images), 2)) < 0.5
        return a

    assert np.all(greedy_success_rates(random_policy, env_cfg) < 0.25)
    assert np.all(rates >= 0.9), dict(zip(NAMES, rates.round(3).tolist(), strict=True))
