"""Bellman targets: known Q* of a small MDP by fitted Q iteration through the real target code
(CEM max, clipped double Q, cross-entropy loss); terminal and clipped-double-Q rules."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from mtopt_core.bellman import TorchBatch, bellman_loss, bellman_targets, q_logits
from mtopt_core.cem import CEMConfig

S, GOALS, GAMMA = 5, (0, 4), 0.9  # chain of 5 states, task k rewards terminating on GOALS[k]


class TabularQ(nn.Module):
    """A Q 'network' with one logit per (state, left/right, terminate, task); the state is
    read from a 1 x S image (the lit pixel). Same trunk/head interface as QNet."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(S, 2, 2, len(GOALS)))

    def trunk(self, images):
        return images[:, 0, :, 0].float() / 255.0  # (B, S) one-hot

    def head_logits(self, features, action, gripper_closed, height, task, object_detected=None):
        s = features.argmax(1)
        right = (action[:, 0] > 0).long()
        term = (action[:, 5] >= 0.5).long()
        return self.table[s, right, term, task.long()]


def state_images(states):
    img = torch.zeros(len(states), 1, S, 3, dtype=torch.uint8)
    img[torch.arange(len(states)), 0, torch.as_tensor(states)] = 255
    return img


def step(s, right):
    return min(max(s + (1 if right else -1), 0), S - 1)


def all_transitions():
    rows = list(itertools.product(range(S), (0, 1), (0, 1), range(len(GOALS))))
    s = [r[0] for r in rows]
    nxt = [step(r[0], r[1]) for r in rows]
    action = torch.zeros(len(rows), 6)
    action[:, 0] = torch.tensor([0.5 if r[1] else -0.5 for r in rows])
    action[:, 5] = torch.tensor([float(r[2]) for r in rows])
    reward = torch.tensor([float(r[2] and nxt[i] == GOALS[r[3]]) for i, r in enumerate(rows)])
    zeros = torch.zeros(len(rows))
    batch = TorchBatch(
        image=state_images(s), gripper_closed=zeros, height=zeros, action=action,
        task=torch.tensor([r[3] for r in rows]), reward=reward,
        done=torch.tensor([float(r[2]) for r in rows]), next_image=state_images(nxt),
        next_gripper_closed=zeros, next_height=zeros,
    )  # fmt: skip
    return rows, batch


def q_star():
    """Value iteration on the same MDP, independent of the code under test."""
    q = np.zeros((S, 2, 2, len(GOALS)))
    for _ in range(200):
        v = q.max(axis=(1, 2))  # (S, task)
        new = np.zeros_like(q)
        for s, r, t, k in itertools.product(range(S), (0, 1), (0, 1), range(len(GOALS))):
            n = step(s, r)
            new[s, r, t, k] = float(n == GOALS[k]) if t else GAMMA * v[n, k]
        q = new
    return q


def test_fitted_q_iteration_converges_to_known_q_star():
    rows, batch = all_transitions()
    online, target1, target2 = TabularQ(), TabularQ(), TabularQ()
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        target1.load_state_dict(online.state_dict())
        target2.load_state_dict(online.state_dict())
        targets = bellman_targets(target1, target2, batch, GAMMA, CEMConfig(), gen)
        opt = torch.optim.Adam(online.parameters(), lr=0.2)
        for _ in range(300):
            opt.zero_grad()
            bellman_loss(q_logits(online, batch), targets).backward()
            opt.step()
    learned = torch.sigmoid(online.table).detach().numpy()
    expected = q_star()
    assert expected[1, 0, 1, 0] == 1.0 and math.isclose(expected[3, 0, 0, 0], GAMMA**2)
    np.testing.assert_allclose(learned, expected, atol=0.02)


class ConstQ(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def trunk(self, images):
        return torch.zeros(images.shape[0], 1)

    def head_logits(self, features, action, gripper_closed, height, task, object_detected=None):
        q = self.fn(action).clamp(1e-6, 1 - 1e-6)
        return torch.log(q) - torch.log1p(-q)


def _batch(reward, done):
    b = len(reward)
    img = torch.zeros(b, 1, S, 3, dtype=torch.uint8)
    z = torch.zeros(b)
    return TorchBatch(img, z, z, torch.zeros(b, 6), torch.zeros(b, dtype=torch.long),
                      torch.tensor(reward), torch.tensor(done), img, z, z)  # fmt: skip


def test_terminal_transitions_get_reward_only():
    q = ConstQ(lambda a: torch.full((a.shape[0],), 0.7))
    batch = _batch([1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0])
    targets = bellman_targets(q, q, batch, 0.5)
    torch.testing.assert_close(targets, torch.tensor([1.0, 0.0, 0.35, 1.0]))


def test_clipped_double_q_takes_min_of_targets_at_target1_argmax():
    q1 = ConstQ(lambda a: torch.sigmoid(3 * a[:, 0]))  # argmax at a0 = 1
    q2 = ConstQ(lambda a: torch.sigmoid(-3 * a[:, 0]))  # lowest exactly there
    batch = _batch([0.0, 0.0], [0.0, 0.0])
    cfg = CEMConfig(population=64, elites=6, iterations=3)
    t = bellman_targets(q1, q2, batch, 1.0, cfg, torch.Generator().manual_seed(0))
    # min(Q1, Q2) at Q1's argmax, not max_a min(Q1, Q2) (which would be 0.5 at a0 = 0).
    assert torch.all(t < 0.06) and torch.all(t > torch.sigmoid(torch.tensor(-3.0)) - 1e-6)
    single = bellman_targets(q1, None, batch, 1.0, cfg, torch.Generator().manual_seed(0))
    assert torch.all(single > 0.94)


def test_loss_is_cross_entropy_on_sigmoid_output():
    logits = torch.tensor([0.0, 2.0, -1.0])
    targets = torch.tensor([0.3, 1.0, 0.0])
    p = torch.sigmoid(logits)
    expected = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    torch.testing.assert_close(bellman_loss(logits, targets), expected)


def test_truncated_transitions_bootstrap_only_when_asked():
    q = ConstQ(lambda a: torch.full((a.shape[0],), 0.7))
    # rows: terminated failure, truncated failure, truncated success, mid-episode
    batch = _batch([0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0])
    batch.truncated = torch.tensor([0.0, 1.0, 1.0, 0.0])
    # default: every episode end is terminal (reward only)
    torch.testing.assert_close(
        bellman_targets(q, q, batch, 0.5), torch.tensor([0.0, 0.0, 1.0, 0.35])
    )
    # bootstrap_truncation: a step-limit end gets r + gamma * V(s'), clamped to [0, 1]
    torch.testing.assert_close(
        bellman_targets(q, q, batch, 0.5, bootstrap_truncation=True),
        torch.tensor([0.0, 0.35, 1.0, 0.35]),
    )
    batch.truncated = None
    with pytest.raises(ValueError, match="truncated"):
        bellman_targets(q, q, batch, 0.5, bootstrap_truncation=True)


def test_the_mc_lower_bound_raises_targets_to_the_rows_discounted_return_only():
    q = ConstQ(lambda a: torch.full((a.shape[0],), 0.2))
    # rows: success 2 steps before its end, success at its end, failure 1 step before its end,
    # success 1 step before its end whose bootstrap is already above its return
    batch = _batch([0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0])
    batch.episode_success = torch.tensor([1.0, 1.0, 0.0, 1.0])
    batch.steps_left = torch.tensor([2, 0, 1, 1])
    plain = bellman_targets(q, q, batch, 0.5)
    torch.testing.assert_close(plain, torch.tensor([0.1, 1.0, 0.1, 0.1]))
    bounded = bellman_targets(q, q, batch, 0.5, mc_lower_bound=True)
    torch.testing.assert_close(bounded, torch.tensor([0.25, 1.0, 0.1, 0.5]))
    # A bootstrap above the return stays: the bound only raises.
    above = bellman_targets(ConstQ(lambda a: torch.full((a.shape[0],), 0.9)), None, batch, 0.5,
                            mc_lower_bound=True)  # fmt: skip
    torch.testing.assert_close(above, torch.tensor([0.45, 1.0, 0.45, 0.5]))
    batch.steps_left = None
    with pytest.raises(ValueError, match="steps_left"):
        bellman_targets(q, q, batch, 0.5, mc_lower_bound=True)


def test_mc_targets_are_the_rows_discounted_returns_without_a_bootstrap():
    calls = []

    def never(a):
        calls.append(a.shape[0])
        return torch.full((a.shape[0],), 0.9)

    q = ConstQ(never)
    batch = _batch([0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0])
    batch.episode_success = torch.tensor([1.0, 1.0, 0.0, 1.0])
    batch.steps_left = torch.tensor([2, 0, 1, 1])
    targets = bellman_targets(q, q, batch, 0.5, mc_targets=True)
    torch.testing.assert_close(targets, torch.tensor([0.25, 1.0, 0.0, 0.5]))
    assert calls == []  # no CEM, no target network
    batch.episode_success = None
    with pytest.raises(ValueError, match="episode_success"):
        bellman_targets(q, q, batch, 0.5, mc_targets=True)


def test_mc_rows_take_their_returns_and_the_other_rows_bootstrap():
    rows_seen = []

    class CountingQ(ConstQ):
        def trunk(self, images):
            rows_seen.append(images.shape[0])
            return super().trunk(images)

    q = CountingQ(lambda a: torch.full((a.shape[0],), 0.6))
    # rows: mid-episode (MC), mid-episode (Bellman), episode end (MC), mid-episode (MC)
    batch = _batch([0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0])
    batch.episode_success = torch.tensor([1.0, 1.0, 1.0, 0.0])
    batch.steps_left = torch.tensor([2, 2, 0, 1])
    mc_rows = torch.tensor([True, False, True, True])
    targets = bellman_targets(q, q, batch, 0.5, mc_rows=mc_rows)
    torch.testing.assert_close(targets, torch.tensor([0.25, 0.3, 1.0, 0.0]))
    assert rows_seen == [1, 1]  # CEM and target2 see only the one bootstrapped row
    # no MC row: the plain Bellman targets, and the returns are not needed
    none = torch.zeros(4, dtype=torch.bool)
    torch.testing.assert_close(
        bellman_targets(q, q, batch, 0.5, mc_rows=none), bellman_targets(q, q, batch, 0.5)
    )
    with pytest.raises(ValueError, match="mc_rows has shape"):
        bellman_targets(q, q, batch, 0.5, mc_rows=torch.tensor([True]))
    batch.steps_left = None
    with pytest.raises(ValueError, match="steps_left"):
        bellman_targets(q, q, batch, 0.5, mc_rows=mc_rows)
