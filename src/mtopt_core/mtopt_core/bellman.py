"""Bellman targets and loss of multi-task QT-Opt (seed Eq. 1-2).

    Q_target(s, a, T) = r + gamma * (1 - done) * V(s', T)
    V(s', T)          = min(Q1(s', a*, T), Q2(s', a*, T)),  a* = CEM argmax_a' Q1(s', a', T)

Q1 and Q2 are two lagged target networks (clipped double Q-learning as in QT-Opt: CEM runs on
the first, the value is the minimum of both at the chosen action). Terminal transitions get r
only. The loss is the cross-entropy between the sigmoid output and the target (both in [0, 1]).
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
    done: torch.Tensor  # (B,) float 0/1
    next_image: torch.Tensor
    next_gripper_closed: torch.Tensor
    next_height: torch.Tensor
    episode_success: torch.Tensor | None = None  # (B,) relabelled outcome of the episode
    object_detected: torch.Tensor | None = None  # (B,) float 0/1, the gripper's flag
    next_object_detected: torch.Tensor | None = None


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
) -> torch.Tensor:
    """V(s', T) = min over the target networks of Q at the CEM argmax of `target1` (B,)."""
    with torch.no_grad():
        res = q_cem(
            target1, next_image, next_gripper_closed, next_height, task, cem, generator,
            object_detected=next_object_detected,
        )  # fmt: skip
        value = res.best_score
        if target2 is not None:
            q2 = torch.sigmoid(
                target2.head_logits(
                    target2.trunk(next_image),
                    res.best,
                    next_gripper_closed,
                    next_height,
                    task,
                    next_object_detected,
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
) -> torch.Tensor:
    """Q targets (B,) in [0, 1] for a batch; CEM runs only for the non-terminal rows.

    Targets are clamped to [0, 1] (the range of the sigmoid Q); with the seed's sparse 0/1
    reward on terminal transitions and gamma <= 1 the clamp never changes a value.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    with torch.no_grad():
        reward = batch.reward.float()
        done = batch.done.float()
        value = torch.zeros_like(reward)
        live = torch.nonzero(done < 0.5).squeeze(1)
        if live.numel() > 0:
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
            )
        return torch.clamp(reward + gamma * (1.0 - done) * value, 0.0, 1.0)


def q_logits(
    qfn: QFunction, batch: TorchBatch, features: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits of Q(s, a, T) for the batch's transitions (B,); `features` = the trunk's output
    for `batch.image` when the caller already has it."""
    if features is None:
        features = qfn.trunk(batch.image)
    return qfn.head_logits(
        features, batch.action, batch.gripper_closed, batch.height, batch.task,
        batch.object_detected,
    )  # fmt: skip


def bellman_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (log loss) between sigmoid(logits) and soft targets in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, targets)
