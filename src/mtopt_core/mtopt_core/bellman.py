"""Bellman targets and loss of multi-task QT-Opt (seed Eq. 1-2).

    Q_target(s, a, T) = r + gamma * (1 - done) * V(s', T)
    V(s', T)          = min(Q1(s', a*, T), Q2(s', a*, T)),  a* = CEM argmax_a' Q1(s', a', T)

Q1 and Q2 are two lagged target networks (clipped double Q-learning as in QT-Opt: CEM runs on
the first, the value is the minimum of both at the chosen action). Terminal transitions get r
only. The loss is the cross-entropy between the sigmoid output and the target (both in [0, 1]).

With `mc_lower_bound`, a target is at least the transition's own discounted return,
success * gamma^(steps after it): a success reached from (s, a) shows that value is possible,
so the row's label does not wait for the bootstrap to carry the final reward back step by step
(the "Monte Carlo" label of Quillen et al. 2018, used as a lower bound on the Bellman target).
With `mc_targets`, the target *is* that return, with no bootstrap and no CEM: Q then estimates
the value of the policies that collected the data (Quillen et al.'s supervised "Monte Carlo"
baseline), and acting greedily on it is one step of policy improvement over them. `mc_rows`
does that for some rows only (e.g. the tasks of one skill), the others keep Bellman targets.

`done` marks the last transition of an episode. With `bootstrap_truncation`, the last
transition of an episode cut by the step limit (`truncated`) is not terminal: its target is
r + gamma * V(s') like any other (the time limit is not part of the task, so the value of the
state it stopped in still counts); only a policy's own terminate ends the bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtopt_core.cem import DEFAULT_CEM, CEMConfig, q_cem
from mtopt_core.qnet import QFunction


@dataclass
class TorchBatch:
    """A batch of transitions as tensors (see `mtopt_core.replay.Batch`)."""

    image: torch.Tensor  # (B, H, W, 3) uint8
    gripper_closed: torch.Tensor  # (B,) float 0/1
    height: torch.Tensor  # (B,) float [m]
    action: torch.Tensor  # (B, 6)
    task: torch.Tensor  # (B,) int64
    reward: torch.Tensor  # (B,) float
    done: torch.Tensor  # (B,) float 0/1: the episode's last transition
    next_image: torch.Tensor
    next_gripper_closed: torch.Tensor
    next_height: torch.Tensor
    episode_success: torch.Tensor | None = None  # (B,) relabelled outcome of the episode
    object_detected: torch.Tensor | None = None  # (B,) float 0/1, the gripper's flag
    next_object_detected: torch.Tensor | None = None
    truncated: torch.Tensor | None = None  # (B,) float 0/1: done by the step limit
    step: torch.Tensor | None = None  # (B,) int64 step index of the observation (next: + 1)
    steps_left: torch.Tensor | None = None  # (B,) int64 transitions after this one


def next_state_values(
    target1: QFunction,
    target2: QFunction | None,
    next_image: torch.Tensor,
    next_gripper_closed: torch.Tensor,
    next_height: torch.Tensor,
    task: torch.Tensor,
    cem: CEMConfig = DEFAULT_CEM,
    generator: torch.Generator | None = None,
    next_object_detected: torch.Tensor | None = None,
    next_step: torch.Tensor | None = None,
) -> torch.Tensor:
    """V(s', T) = min over the target networks of Q at the CEM argmax of `target1` (B,).
    `next_step`: step index of s' in its episode (for networks with a step input)."""
    with torch.no_grad():
        res = q_cem(
            target1, next_image, next_gripper_closed, next_height, task, cem, generator,
            object_detected=next_object_detected, step=next_step,
        )  # fmt: skip
        value = res.best_score
        if target2 is not None:
            step_kw = {} if next_step is None else {"step": next_step}
            q2 = torch.sigmoid(
                target2.head_logits(
                    target2.trunk(next_image),
                    res.best,
                    next_gripper_closed,
                    next_height,
                    task,
                    next_object_detected,
                    **step_kw,
                )
            )
            value = torch.minimum(value, q2)
        return value


def bellman_targets(
    target1: QFunction,
    target2: QFunction | None,
    batch: TorchBatch,
    gamma: float,
    cem: CEMConfig = DEFAULT_CEM,
    generator: torch.Generator | None = None,
    bootstrap_truncation: bool = False,
    mc_lower_bound: bool = False,
    mc_targets: bool = False,
    mc_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Q targets (B,) in [0, 1] for a batch; CEM runs only for the non-terminal rows. With
    `bootstrap_truncation`, rows done by the step limit (`batch.truncated`) bootstrap too; with
    `mc_lower_bound`, no target is below the row's discounted return; with `mc_targets`, the
    target is that return (no CEM; see the module docstring); `mc_rows` (B,) bool: the rows
    whose target is that return (the others as without it; CEM runs for none of them).

    Targets are clamped to [0, 1] (the range of the sigmoid Q); with the seed's sparse 0/1
    reward on terminal transitions and gamma <= 1 the clamp never changes a value (a truncated
    success row, r = 1 plus a bootstrap, is clamped to 1).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if mc_rows is not None and mc_rows.shape != batch.task.shape:
        raise ValueError(f"mc_rows has shape {tuple(mc_rows.shape)}, the batch {len(batch.task)}")
    any_mc_rows = mc_rows is not None and bool(mc_rows.any())
    needs_returns = mc_lower_bound or mc_targets or any_mc_rows
    if needs_returns and (batch.steps_left is None or batch.episode_success is None):
        raise ValueError("Monte Carlo targets need the batch's steps_left and episode_success")
    with torch.no_grad():
        if mc_targets:
            return discounted_returns(batch, gamma)
        reward = batch.reward.float()
        done = batch.done.float()
        if bootstrap_truncation:
            if batch.truncated is None:
                raise ValueError("bootstrap_truncation needs the batch's truncated flags")
            done = done * (1.0 - batch.truncated.float())
        value = torch.zeros_like(reward)
        bootstraps = done < 0.5
        if any_mc_rows:  # their targets are replaced below: no CEM for them
            bootstraps &= ~mc_rows
        live = torch.nonzero(bootstraps).squeeze(1)
        if live.numel() > 0:
            next_step = None if batch.step is None else batch.step[live] + 1
            value[live] = next_state_values(
                target1,
                target2,
                batch.next_image[live],
                batch.next_gripper_closed[live],
                batch.next_height[live],
                batch.task[live],
                cem,
                generator,
                None if batch.next_object_detected is None else batch.next_object_detected[live],
                next_step,
            )
        targets = reward + gamma * (1.0 - done) * value
        if mc_lower_bound or any_mc_rows:
            returns = discounted_returns(batch, gamma)
            if mc_lower_bound:
                targets = torch.maximum(targets, returns)
            if any_mc_rows:
                targets = torch.where(mc_rows, returns, targets)
        return torch.clamp(targets, 0.0, 1.0)


def discounted_returns(batch: TorchBatch, gamma: float) -> torch.Tensor:
    """Each row's own discounted return: success of its episode * gamma^(steps after it)."""
    return batch.episode_success.float() * gamma ** batch.steps_left.float()


def q_logits(
    qfn: QFunction, batch: TorchBatch, features: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits of Q(s, a, T) for the batch's transitions (B,); `features` = the trunk's output
    for `batch.image` when the caller already has it."""
    if features is None:
        features = qfn.trunk(batch.image)
    step_kw = {} if batch.step is None else {"step": batch.step}
    return qfn.head_logits(
        features, batch.action, batch.gripper_closed, batch.height, batch.task,
        batch.object_detected, **step_kw,
    )  # fmt: skip


def bellman_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (log loss) between sigmoid(logits) and soft targets in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, targets)
