"""Trainer: one Bellman update + SGD step per call, target-network lag, gradient clipping,
TensorBoard scalars, checkpoint resume."""

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtopt_core.cem import CEMConfig
from mtopt_core.gridworld import GridWorld, GridWorldConfig, collect_episode
from mtopt_core.impersonation import AllImpersonation
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.replay import ReplayBuffer
from mtopt_core.tasks import parse_task_registry
from mtopt_core.trainer import Trainer, TrainerConfig

NAMES = ("reach-red", "reach-green", "reach-blue", "reach-yellow")


@pytest.fixture(scope="module")
def replay():
    registry = parse_task_registry(
        {
            "skills": {"reach": "reach a cell"},
            "tasks": [{"name": n, "skill": "reach"} for n in NAMES],
        }  # fmt: skip
    )
    buf = ReplayBuffer(NAMES)
    env, rng = GridWorld(GridWorldConfig()), np.random.default_rng(0)
    for i in range(40):
        buf.add_episode(collect_episode(env, i % 4, rng, NAMES), AllImpersonation(registry))
    return buf


def make_trainer(replay, **kw):
    cfg = dict(batch_size=16, cem=CEMConfig(population=8, elites=2, iterations=2),
               progress=False, learning_rate=1e-3)  # fmt: skip
    cfg.update(kw)
    return Trainer(QNet(QNetConfig.tiny(4)), replay, TrainerConfig(**cfg))


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_targets_lag_the_online_network(replay):
    tr = make_trainer(replay, target_tau=0.25, target2_period=3)
    start = flat(tr.qnet)
    m = tr.step()
    assert m["step"] == 1 and np.isfinite(m["loss"]) and 0 <= m["target_mean"] <= 1
    online, t1 = flat(tr.qnet), flat(tr.target1)
    # target1 = 0.75 * old + 0.25 * new (Polyak); target2 not refreshed yet
    torch.testing.assert_close(t1, 0.75 * start + 0.25 * online)
    torch.testing.assert_close(flat(tr.target2), start)
    tr.step()
    tr.step()  # step 3: target2 <- target1
    torch.testing.assert_close(flat(tr.target2), flat(tr.target1))
    assert not torch.allclose(flat(tr.target1), flat(tr.qnet))
    tr.step()
    assert not torch.allclose(flat(tr.target2), flat(tr.target1))


def test_gradient_clipping(replay):
    tr = make_trainer(replay, grad_clip_norm=1e-3)
    m = tr.step()
    norm = torch.norm(torch.stack([p.grad.norm() for p in tr.qnet.parameters()]))
    assert m["grad_norm"] > 1e-3 and norm <= 1e-3 * 1.001


def test_tensorboard_scalars_and_resume(replay, tmp_path):
    tr = make_trainer(replay, log_dir=str(tmp_path / "tb"), log_every=2)
    tr.train(4)
    tr.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "replay/bytes", "replay/episodes"} <= tags
    assert {f"q/{n}" for n in NAMES} & tags
    assert {f"replay/{n}/success" for n in NAMES} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    # resume: weights, targets, optimizer state and step counter come back
    tr.save_checkpoint(tmp_path / "c.ckpt")
    other = make_trainer(replay)
    other.load_checkpoint(tmp_path / "c.ckpt")
    assert other.step_count == 4
    for a, b in ((other.qnet, tr.qnet), (other.target1, tr.target1), (other.target2, tr.target2)):
        torch.testing.assert_close(flat(a), flat(b))
    assert other.optimizer.state_dict()["state"][0]["step"] == 4


def test_config_validation():
    with pytest.raises(ValueError, match="gamma"):
        TrainerConfig(gamma=1.5)
    with pytest.raises(ValueError, match="target_tau"):
        TrainerConfig(target_tau=0)


def test_cosine_learning_rate_decay(replay):
    tr = make_trainer(replay, learning_rate=1e-3, lr_decay_steps=100, lr_final_fraction=0.1)
    assert tr.learning_rate() == pytest.approx(1e-3)
    tr.step_count = 50
    assert tr.learning_rate() == pytest.approx(0.55e-3)
    tr.step_count = 100
    assert tr.learning_rate() == pytest.approx(1e-4)
    tr.step_count = 1000
    assert tr.learning_rate() == pytest.approx(1e-4)
    m = tr.step()
    assert m["learning_rate"] == pytest.approx(1e-4)
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def mean_q_of_random_actions(tr, replay, n=256):
    """Mean Q over n random actions at sampled replay states (in eval mode)."""
    batch = replay.sample(64, np.random.default_rng(5)).to_torch()
    gen = torch.Generator().manual_seed(3)
    tr.qnet.eval()
    with torch.no_grad():
        features = tr.qnet.trunk(batch.image)
        qs = []
        for _ in range(n // 64):
            actions = torch.rand(64, 6, generator=gen) * 2 - 1
            actions[:, 4:] = (actions[:, 4:] > 0).float()
            qs.append(torch.sigmoid(tr.qnet.head_logits(
                features, actions, batch.gripper_closed, batch.height, batch.task,
                batch.object_detected,
            )))  # fmt: skip
    return float(torch.cat(qs).mean())


def test_conservative_penalty_pushes_down_q_of_random_actions(replay):
    torch.manual_seed(0)
    plain = make_trainer(replay, seed=1)
    torch.manual_seed(0)
    conservative = make_trainer(replay, seed=1, conservative_weight=1.0, conservative_samples=4)
    for _ in range(60):
        m_plain, m_cons = plain.step(), conservative.step()
    assert m_plain["conservative_penalty"] is None
    assert m_cons["conservative_penalty"] > 0 and np.isfinite(m_cons["loss"])
    assert (
        mean_q_of_random_actions(conservative, replay)
        < mean_q_of_random_actions(plain, replay) - 0.05
    )


def test_conservative_config_validation():
    with pytest.raises(ValueError, match="conservative_weight"):
        TrainerConfig(conservative_weight=-0.1)
    with pytest.raises(ValueError, match="conservative_samples"):
        TrainerConfig(conservative_samples=0)
