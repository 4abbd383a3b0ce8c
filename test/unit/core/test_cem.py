"""CEM: known maximisers of concave functions, discrete (Bernoulli) dimensions, and the
trunk-broadcast Q-function CEM giving exactly what the naive per-sample version gives."""

import numpy as np
import pytest
import torch

from mtopt_core.action import DISCRETE, GRIPPER, TERMINATE
from mtopt_core.cem import ACTION_BOX, Box, CEMConfig, CEMPolicy, cem_maximize, q_cem
from mtopt_core.qnet import QNet, QNetConfig


def test_finds_maximiser_of_concave_function_within_one_percent_of_range():
    box = Box(low=np.array([-2.0, -1.0, 0.0]), high=np.array([3.0, 1.0, 5.0]))
    # One maximiser per state, some near the bounds.
    centres = torch.tensor([[0.5, 0.2, 2.5], [-1.7, -0.9, 4.6], [2.8, 0.95, 0.3]])
    weights = torch.tensor([1.0, 3.0, 0.5])

    def score(x):  # (B, N, 3) -> (B, N), concave with maximum at the state's centre
        return -((x - centres[:, None]) ** 2 * weights).sum(-1)

    cfg = CEMConfig(population=256, elites=16, iterations=20, min_std=0.0)
    res = cem_maximize(score, 3, box, cfg, torch.Generator().manual_seed(0))
    span = torch.as_tensor(box.high - box.low)
    assert torch.all((res.best - centres).abs() <= 0.01 * span), (res.best, centres)
    torch.testing.assert_close(res.best_score, score(res.best[:, None])[:, 0])


def test_concave_function_with_maximum_on_the_boundary():
    box = Box(low=np.array([-1.0, -1.0]), high=np.array([1.0, 1.0]))

    def score(x):  # unconstrained maximum at (2, 0) -> constrained maximiser (1, 0)
        return -((x[..., 0] - 2.0) ** 2) - 4 * x[..., 1] ** 2

    cfg = CEMConfig(population=128, elites=12, iterations=10)
    res = cem_maximize(score, 1, box, cfg, torch.Generator().manual_seed(3))
    assert abs(res.best[0, 0].item() - 1.0) <= 0.02 and abs(res.best[0, 1].item()) <= 0.02


def test_discrete_dimensions_take_only_bounds_and_find_best_combination():
    def score(x):
        # continuous part peaks at 0.3 / -0.4; gripper should be 1, terminate 0.
        return (
            -((x[..., 0] - 0.3) ** 2) - (x[..., 1] + 0.4) ** 2
            + 0.5 * x[..., GRIPPER] - 0.7 * x[..., TERMINATE]
        )  # fmt: skip

    cfg = CEMConfig(population=128, elites=10, iterations=8)
    seen = []

    def recording(x):
        seen.append(x.clone())
        return score(x)

    res = cem_maximize(recording, 4, ACTION_BOX, cfg, torch.Generator().manual_seed(1))
    samples = torch.cat(seen, dim=1)
    for d in DISCRETE:
        assert set(samples[..., d].unique().tolist()) <= {0.0, 1.0}
    assert samples[..., :4].min() >= -1 and samples[..., :4].max() <= 1
    assert torch.all(res.best[:, GRIPPER] == 1) and torch.all(res.best[:, TERMINATE] == 0)
    assert torch.all((res.best[:, 0] - 0.3).abs() < 0.05)
    assert torch.all((res.best[:, 1] + 0.4).abs() < 0.05)


def test_defaults_are_qtopt_values_and_validation():
    cfg = CEMConfig()
    assert (cfg.population, cfg.elites, cfg.iterations) == (64, 6, 2)
    with pytest.raises(ValueError, match="elites"):
        CEMConfig(population=4, elites=5)
    with pytest.raises(ValueError, match="iterations"):
        CEMConfig(iterations=0)
    with pytest.raises(ValueError, match="score_fn must return"):
        cem_maximize(lambda x: x.sum(-1).sum(-1), 2, ACTION_BOX)


def test_q_cem_broadcast_equals_naive_per_sample_trunk():
    cfg = QNetConfig.tiny(3)
    net = QNet(cfg).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8, generator=g)
    grip, height = torch.tensor([0.0, 1, 0, 1, 0]), torch.rand(5, generator=g) * 0.3
    task = torch.tensor([0, 1, 2, 0, 1])
    a = q_cem(net, images, grip, height, task, CEMConfig(), torch.Generator().manual_seed(7))
    b = q_cem(net, images, grip, height, task, CEMConfig(), torch.Generator().manual_seed(7),
              broadcast_trunk=False)  # fmt: skip
    torch.testing.assert_close(a.best, b.best)
    torch.testing.assert_close(a.best_score, b.best_score)
    # best_score is the network's Q at the returned action.
    with torch.no_grad():
        torch.testing.assert_close(a.best_score, net(images, a.best, grip, height, task))


def test_cem_result_beats_random_actions_on_the_q_function():
    net = QNet(QNetConfig.tiny(2)).eval()
    images = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8)
    zeros, task = torch.zeros(8), torch.zeros(8, dtype=torch.long)
    policy = CEMPolicy(net, CEMConfig(), seed=0)
    actions, q = policy.act(images.numpy(), zeros.numpy(), zeros.numpy(), task.numpy())
    assert actions.shape == (8, 6) and q.shape == (8,)
    with torch.no_grad():
        rand = torch.rand(8, 256, 6) * 2 - 1
        rand[..., 4:] = (rand[..., 4:] > 0).float()
        q_rand = net(
            images.repeat_interleave(256, 0), rand.reshape(-1, 6), zeros.repeat_interleave(256),
            zeros.repeat_interleave(256), task.repeat_interleave(256),
        ).reshape(8, 256)  # fmt: skip
    # 128 CEM evaluations should beat the median of 256 random ones for every state.
    assert np.all(q >= q_rand.median(dim=1).values.numpy())
