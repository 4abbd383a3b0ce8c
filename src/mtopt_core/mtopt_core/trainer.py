"""Multi-task QT-Opt training loop: Bellman updater + SGD trainer, in one process.

Per step: sample a batch from the replay buffer (re-balanced or uniform), compute Bellman
targets with CEM over the lagged target networks (`BellmanUpdater`, the seed's Bellman Update
job), take one Adam step on the cross-entropy loss with gradient-norm clipping, and move the
target networks:

- target1 follows the online network by Polyak averaging every step
  (theta1 <- (1 - tau) * theta1 + tau * theta), i.e. it lags by about 1/tau steps;
- target2 is a copy of target1 refreshed every `target2_period` steps, so it lags target1 by
  between 0 and `target2_period` steps more (QT-Opt's second, older target).

The value of the next state is min(target1, target2) at target1's CEM argmax (clipped double Q).

Options (`TrainerConfig`; every default reproduces the original QT-Opt-style update):

- `augment_shift_px` k > 0: DrQ random shift of the images of every sampled batch (pad k px,
  random crop; s and s' shifted independently, per transition), done by the Bellman updater so
  the targets see the shifted s' (Kostrikov et al. 2020; QT-Opt trained with random crops).
- `augment_translate` p > 0: each sampled transition with the gripper open, not closing or
  terminating, is relabelled with probability p as if the gripper had started a few cm to the
  side: its image s warped to that camera pose and its sideways move lengthened to reach the
  same s' (`mtopt_core.translate`; the wrist camera's geometry); s' and the target unchanged.
- `augment_mirror`: each sampled transition is reflected about the gripper's x-z plane with
  probability 1/2 (s, s' and the action alike; `mtopt_core.mirror`), the wrist camera's symmetry
  in the tool frame.
- `conservative_weight` > 0 with `conservative_mode` "absolute" (Q of random actions pushed to
  0) or "relative" (CQL(H): logsumexp of Q over random actions minus Q of the data action),
  optionally annealed linearly to 0 over `conservative_anneal_steps`. The relative term acts
  on Q = sigmoid(logit), not on the logits: against the cross-entropy's bounded gradient
  (sigmoid(l) - target) a push of w on a data action's logit has no minimum when
  target + w >= 1, so every success row's logit grows without bound (measured: the loss
  reached -3e11 within 400 gridworld steps at w = 0.5). On Q the push fades as Q nears 0 or 1,
  and the data actions' fixed points at 0 and 1 stay where the targets put them (w <= 1).
- `bootstrap_truncation`: a transition that ended its episode by the step limit bootstraps
  (done = terminated only; see `mtopt_core.bellman`).
- `mc_lower_bound`: no target below the transition's own discounted return (see
  `mtopt_core.bellman`); `mc_targets`: the target is that return (no bootstrap, no CEM);
  `mc_target_tasks`: the same for the tasks matching these fnmatch patterns only (e.g.
  `lift-*`: Monte Carlo targets for one skill, Bellman targets for the others).
- `grasp_weight` w > 0: adds w x the cross-entropy of the network's grasp output (`QNetConfig.
  grasp_head`) against the next observation's object-detected flag, over the batch's
  transitions that end with the gripper closed (a close, or a move while closed): whether a
  close caught something and whether a move kept it, known one step later in every episode.
- `cem`: the CEM of the Bellman targets, set apart from the acting policy's CEM.
- `average_tau` > 0: checkpoints give an exponential moving average of the online weights as
  the weights to act with (the online ones ride along in the training state for a resume);
  `lr_decay_steps` > 0: a cosine decay of the learning rate. Both calm the late iterates.

TensorBoard scalars (when `log_dir` is set): train/loss (the conservative penalty included),
train/conservative_penalty and train/conservative_weight (when on), train/grasp_loss (when
on), train/grad_norm,
train/target_mean,
q/<task> (mean online Q over the batch's transitions of that task), replay/<task>/success and
replay/<task>/failure (episodes), replay/bytes, replay/episodes.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtopt_core.action import ACTION_DIM, DISCRETE, HIGH, LOW
from mtopt_core.bellman import TorchBatch, bellman_loss, bellman_targets, q_logits
from mtopt_core.cem import DEFAULT_CEM, CEMConfig
from mtopt_core.checkpoint import (
    POLICY_SETTINGS_KEY,
    Checkpoint,
    CheckpointError,
    check_compatible,
    describe_mismatch,
    policy_settings_mismatch,
    read_checkpoint,
)
from mtopt_core.checkpoint import save_checkpoint as _save_checkpoint
from mtopt_core.images import random_shift
from mtopt_core.mirror import mirror_actions, mirror_images
from mtopt_core.qnet import QNet, expand_features
from mtopt_core.replay import Batch, ReplayBuffer
from mtopt_core.translate import TranslateSettings, translate_batch

CONSERVATIVE_MODES = ("absolute", "relative")
#: Training-state key of the online weights in a checkpoint that acts with their average.
ONLINE_KEY = "online"


@dataclass(frozen=True)
class TrainerConfig:
    """Training settings.

    Fields:
        batch_size: transitions per SGD step (and per Bellman target batch).
        gamma: discount factor of the Bellman target.
        learning_rate: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        lr_decay_steps: if > 0, the learning rate follows a cosine from `learning_rate` down to
            `learning_rate * lr_final_fraction` over this many steps, then stays there.
        lr_final_fraction: see `lr_decay_steps`.
        grad_clip_norm: gradients are rescaled to at most this global L2 norm (0 = off).
        target_tau: Polyak rate at which target1 follows the online net each step.
        average_tau: if > 0, an exponential moving average of the online weights follows them
            at this rate each step (at 1/t at step t while that is larger: the plain mean of
            the first 1/tau iterates), and checkpoints give it as the weights to act with (the
            online weights go into the training state, for a resume). A late iterate of
            Q-learning with a constant learning rate moves from step to step; the average
            moves less (cf. Polyak averaging, SWA).
        target2_period: steps between refreshes of target2 from target1.
        cem: CEM settings for the max over next actions in the Bellman target (the targets'
            own CEM, independent of the acting policy's; default QT-Opt's 64 / 6 / 2).
        conservative_weight: weight of a conservative penalty added to the Bellman loss (0 =
            off). Offline data covers few of the actions CEM can pick (e.g. terminate from the
            start pose); without a penalty the network's guesses there are often high, and
            CEM, which maximizes, finds them (cf. CQL, Kumar et al. 2020).
        conservative_mode: "absolute": the cross-entropy of Q(s, a) against 0 for
            `conservative_samples` uniformly random actions per batch state (pushes those
            down, data actions untouched); "relative": CQL(H) on Q (see the module
            docstring), logsumexp_j Q(s, a_j) - log N - Q(s, a_data) over the N random
            actions a_j (pushes them down and the data action up; 0 when all are equal).
        conservative_samples: random actions per state for the conservative penalty.
        conservative_anneal_steps: if > 0, the penalty's weight falls linearly from
            `conservative_weight` to 0 over this many steps (as on-policy data grows).
        augment_shift_px: DrQ random shift of batch images by up to this many pixels (0 =
            off): see the module docstring.
        augment_mirror: reflect half the sampled transitions (`mtopt_core.mirror`); valid
            only for the wrist camera and tool-frame moves (the learner checks).
        augment_translate: probability of relabelling an eligible transition with a sideways
            translation (`mtopt_core.translate`; 0 = off); the wrist camera and tool-frame
            moves only (the learner checks).
        bootstrap_truncation: transitions ended by the step limit bootstrap (done =
            terminated only); False treats every episode end as terminal.
        mc_lower_bound: targets are at least the transition's discounted return.
        mc_targets: targets are the transition's discounted return (Monte Carlo regression,
            no bootstrap); overrides `mc_lower_bound` and `bootstrap_truncation`.
        mc_target_tasks: fnmatch patterns of task names whose transitions get Monte Carlo
            targets as with `mc_targets` (the other tasks keep the Bellman targets); each
            pattern must match a task of the trainer.
        grasp_weight: weight of the auxiliary grasp loss (0 = off; see the module docstring);
            > 0 needs a network with `grasp_head`.
        seed: seeds the replay sampling and CEM generators of this trainer.
        policy_settings: (name, value) pairs of the policy settings the network is trained
            for (`mtopt_core.checkpoint.POLICY_SETTINGS`): written into every checkpoint, and
            a checkpoint recorded with other values is refused by `load_checkpoint`.
        log_dir: TensorBoard directory (None = no logging).
        log_every: steps between TensorBoard writes.
        progress: show a tqdm progress bar in `train`.
        device: torch device of the networks and batches.
    """

    batch_size: int = 256
    gamma: float = 0.9
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    lr_decay_steps: int = 0
    lr_final_fraction: float = 0.1
    grad_clip_norm: float = 10.0
    target_tau: float = 0.01
    average_tau: float = 0.0
    target2_period: int = 200
    cem: CEMConfig = field(default_factory=CEMConfig)
    conservative_weight: float = 0.0
    conservative_mode: str = "absolute"
    conservative_samples: int = 4
    conservative_anneal_steps: int = 0
    augment_shift_px: int = 0
    augment_mirror: bool = False
    augment_translate: float = 0.0
    bootstrap_truncation: bool = False
    mc_lower_bound: bool = False
    mc_targets: bool = False
    mc_target_tasks: tuple[str, ...] = ()
    grasp_weight: float = 0.0
    seed: int = 0
    policy_settings: tuple[tuple[str, Any], ...] = ()
    log_dir: str | None = None
    log_every: int = 50
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"TrainerConfig.batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"TrainerConfig.gamma must be in [0, 1], got {self.gamma}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainerConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainerConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.lr_decay_steps < 0:
            raise ValueError(
                f"TrainerConfig.lr_decay_steps must be >= 0, got {self.lr_decay_steps}"
            )
        if not 0.0 <= self.lr_final_fraction <= 1.0:
            raise ValueError(
                f"TrainerConfig.lr_final_fraction must be in [0, 1], got {self.lr_final_fraction}"
            )
        if self.grad_clip_norm < 0:
            raise ValueError(
                f"TrainerConfig.grad_clip_norm must be >= 0, got {self.grad_clip_norm}"
            )
        if not 0.0 < self.target_tau <= 1.0:
            raise ValueError(f"TrainerConfig.target_tau must be in (0, 1], got {self.target_tau}")
        if not 0.0 <= self.average_tau <= 1.0:
            raise ValueError(
                f"TrainerConfig.average_tau must be in [0, 1], got {self.average_tau}"
            )
        if self.target2_period < 1:
            raise ValueError(
                f"TrainerConfig.target2_period must be >= 1, got {self.target2_period}"
            )
        if not self.conservative_weight >= 0:
            raise ValueError(
                f"TrainerConfig.conservative_weight must be >= 0, got {self.conservative_weight}"
            )
        if self.conservative_samples < 1:
            raise ValueError(
                f"TrainerConfig.conservative_samples must be >= 1, got {self.conservative_samples}"
            )
        if self.conservative_mode not in CONSERVATIVE_MODES:
            raise ValueError(
                f"TrainerConfig.conservative_mode must be one of {CONSERVATIVE_MODES}, got "
                f"{self.conservative_mode!r}"
            )
        if self.conservative_anneal_steps < 0:
            raise ValueError(
                "TrainerConfig.conservative_anneal_steps must be >= 0, got "
                f"{self.conservative_anneal_steps}"
            )
        if self.augment_shift_px < 0:
            raise ValueError(
                f"TrainerConfig.augment_shift_px must be >= 0, got {self.augment_shift_px}"
            )
        if not 0.0 <= self.augment_translate <= 1.0:
            raise ValueError(
                f"TrainerConfig.augment_translate must be in [0, 1], got {self.augment_translate}"
            )
        if not self.grasp_weight >= 0:
            raise ValueError(f"TrainerConfig.grasp_weight must be >= 0, got {self.grasp_weight}")
        if not all(isinstance(p, str) and p for p in self.mc_target_tasks):
            raise ValueError(
                "TrainerConfig.mc_target_tasks must be non-empty fnmatch patterns of task names,"
                f" got {self.mc_target_tasks!r}"
            )
        if self.log_every < 1:
            raise ValueError(f"TrainerConfig.log_every must be >= 1, got {self.log_every}")


class BellmanUpdater:
    """Samples transitions from the replay, augments them (`augment_shift_px`,
    `augment_mirror`) and labels them with Bellman targets."""

    def __init__(
        self,
        replay: ReplayBuffer,
        target1: nn.Module,
        target2: nn.Module | None,
        gamma: float,
        cem: CEMConfig = DEFAULT_CEM,
        seed: int = 0,
        device: str | torch.device = "cpu",
        augment_shift_px: int = 0,
        bootstrap_truncation: bool = False,
        mc_lower_bound: bool = False,
        mc_targets: bool = False,
        augment_mirror: bool = False,
        augment_translate: float = 0.0,
        mc_task_mask: Sequence[bool] | None = None,
    ):
        """`mc_task_mask`: per task index, whether its transitions get Monte Carlo targets
        (`mc_target_task_mask`; None = none of them, unless `mc_targets`)."""
        if augment_shift_px < 0:
            raise ValueError(f"augment_shift_px must be >= 0, got {augment_shift_px}")
        self.replay = replay
        self.target1, self.target2 = target1, target2
        self.gamma, self.cem = gamma, cem
        self.augment_shift_px = augment_shift_px
        self.augment_mirror = augment_mirror
        self.bootstrap_truncation = bootstrap_truncation
        self.mc_lower_bound = mc_lower_bound
        self.mc_targets = mc_targets
        self.device = torch.device(device)
        self.mc_task_mask = (
            None if mc_task_mask is None or not any(mc_task_mask)
            else torch.tensor([bool(m) for m in mc_task_mask], device=self.device)
        )  # fmt: skip
        self.rng = np.random.default_rng(seed)
        # Shifts draw from their own generator: switching augmentation on or off leaves the
        # sampled transitions and CEM draws of a seed unchanged.
        self.augment_rng = np.random.default_rng([seed, 1])
        self.mirror_rng = np.random.default_rng([seed, 2])
        self.translate = (
            TranslateSettings(probability=augment_translate) if augment_translate > 0 else None
        )
        self.translate_rng = np.random.default_rng([seed, 3])
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def augment(self, batch: Batch) -> Batch:
        """The sideways translation (s and the action), the mirror (s, s' and the action of a
        transition together) and the DrQ random shift of s and s', each image with its own
        offset (in place)."""
        if self.translate is not None:
            batch.image, batch.action, _ = translate_batch(
                batch.image, batch.action, batch.gripper_closed, batch.height,
                self.translate_rng, self.translate,
            )  # fmt: skip
        if self.augment_mirror:
            flip = self.mirror_rng.random(len(batch)) < 0.5
            batch.image = mirror_images(batch.image, flip)
            batch.next_image = mirror_images(batch.next_image, flip)
            batch.action = mirror_actions(batch.action, flip)
        k = self.augment_shift_px
        if k > 0:
            batch.image = random_shift(batch.image, k, self.augment_rng)
            batch.next_image = random_shift(batch.next_image, k, self.augment_rng)
        return batch

    def next_batch(self, batch_size: int) -> tuple[TorchBatch, torch.Tensor]:
        """(batch, targets (B,)) for one training step."""
        batch = self.augment(self.replay.sample(batch_size, self.rng)).to_torch(self.device)
        mc_rows = None if self.mc_task_mask is None else self.mc_task_mask[batch.task]
        targets = bellman_targets(
            self.target1, self.target2, batch, self.gamma, self.cem, self.generator,
            self.bootstrap_truncation, self.mc_lower_bound, self.mc_targets, mc_rows,
        )  # fmt: skip
        return batch, targets


def mc_target_task_mask(patterns: Sequence[str], task_names: Sequence[str]) -> list[bool]:
    """Per task, whether its name matches one of the fnmatch `patterns`; raises ValueError
    for a pattern that matches no task (a typo would otherwise silently change nothing)."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in task_names):
            raise ValueError(
                f"mc_target_tasks pattern {pattern!r} matches no task; tasks: "
                f"{', '.join(task_names)}"
            )
    return [any(fnmatch.fnmatchcase(name, p) for p in patterns) for name in task_names]


class Trainer:
    """Trains a QNet from a replay buffer (see the module docstring)."""

    def __init__(
        self,
        qnet: QNet,
        replay: ReplayBuffer,
        config: TrainerConfig = TrainerConfig(),
        task_names: Sequence[str] | None = None,
    ):
        self.config = config
        self.task_names = tuple(task_names if task_names is not None else replay.task_names)
        if len(self.task_names) != qnet.config.num_tasks:
            raise ValueError(
                f"{len(self.task_names)} tasks but the network has {qnet.config.num_tasks}"
            )
        if tuple(replay.task_names) != self.task_names:
            raise ValueError("the replay buffer's task list differs from the trainer's")
        if config.grasp_weight > 0 and not qnet.config.grasp_head:
            raise ValueError(
                "TrainerConfig.grasp_weight > 0 needs a network with a grasp head (net option "
                "grasp_head=true)"
            )
        self.device = torch.device(config.device)
        self.qnet = qnet.to(self.device)
        self.target1 = self._frozen_copy(qnet)
        self.target2 = self._frozen_copy(qnet)
        # The weights checkpoints give the policy (None: the online weights themselves).
        self.average = self._frozen_copy(qnet) if config.average_tau > 0 else None
        self.replay = replay
        self.updater = BellmanUpdater(
            replay, self.target1, self.target2, config.gamma, config.cem, config.seed,
            self.device, config.augment_shift_px, config.bootstrap_truncation,
            config.mc_lower_bound, config.mc_targets, config.augment_mirror,
            config.augment_translate,
            mc_target_task_mask(config.mc_target_tasks, self.task_names),
        )  # fmt: skip
        self.optimizer = torch.optim.Adam(
            self.qnet.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.step_count = 0
        # Random actions of the conservative penalty; seeded apart from the updater's CEM.
        self._penalty_generator = torch.Generator(device=self.device)
        self._penalty_generator.manual_seed(config.seed + 1)
        self._writer = None  # TensorBoard, opened at the first log (again after close())

    @staticmethod
    def _frozen_copy(module: nn.Module) -> nn.Module:
        target = copy.deepcopy(module)
        for p in target.parameters():
            p.requires_grad_(False)
        return target.eval()

    # --- training ----------------------------------------------------------------------------

    def step(self) -> dict[str, Any]:
        """One Bellman update + SGD step; returns its metrics."""
        batch, targets = self.updater.next_batch(self.config.batch_size)
        return self.apply_batch(batch, targets)

    def apply_batch(self, batch: TorchBatch, targets: torch.Tensor) -> dict[str, Any]:
        """The SGD step and target-network update of `step` on a batch already labelled with
        Bellman targets (by this trainer's updater or by a remote one, e.g. a Ray actor);
        returns the step's metrics."""
        cfg = self.config
        self.qnet.train()
        features = self.qnet.trunk(batch.image)  # shared with the conservative penalty
        grasp_loss = None
        if cfg.grasp_weight > 0:  # Q and the grasp output in one pass of the head
            logits, grasp_logits = self.qnet.head_outputs(
                features, batch.action, batch.gripper_closed, batch.height, batch.task,
                batch.object_detected, batch.step,
            )  # fmt: skip
            grasp_loss = self._grasp_loss(grasp_logits, batch)
        else:
            logits = q_logits(self.qnet, batch, features)
        loss = bellman_loss(logits, targets)
        if grasp_loss is not None:
            loss = loss + cfg.grasp_weight * grasp_loss
        penalty = None
        weight = self.conservative_weight()
        if weight > 0:
            penalty = self._conservative_penalty(features, batch, logits)
            loss = loss + weight * penalty
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step_count}")
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip_norm > 0:
            grad_norm = float(nn.utils.clip_grad_norm_(self.qnet.parameters(), cfg.grad_clip_norm))
        else:
            grad_norm = float(
                torch.norm(torch.stack([p.grad.norm() for p in self.qnet.parameters()
                                        if p.grad is not None]))
            )  # fmt: skip
        self.optimizer.step()
        self.step_count += 1
        self._update_targets()

        with torch.no_grad():
            q = torch.sigmoid(logits)
            q_per_task = {}
            for t, name in enumerate(self.task_names):
                mask = batch.task == t
                if bool(mask.any()):
                    q_per_task[name] = float(q[mask].mean())
        metrics = {
            "step": self.step_count,
            "loss": float(loss.detach()),
            "grad_norm": grad_norm,
            "target_mean": float(targets.mean()),
            "conservative_penalty": None if penalty is None else float(penalty.detach()),
            "conservative_weight": weight,
            "grasp_loss": None if grasp_loss is None else float(grasp_loss.detach()),
            "learning_rate": lr,
            "q_per_task": q_per_task,
        }
        if cfg.log_dir and self.step_count % cfg.log_every == 0:
            self._log(metrics)
        return metrics

    @staticmethod
    def _grasp_loss(grasp_logits: torch.Tensor, batch: TorchBatch) -> torch.Tensor:
        """Cross-entropy of the grasp output against the next object-detected flag, over the
        rows whose next observation has the gripper closed (0 when the batch has none)."""
        closed = batch.next_gripper_closed > 0.5
        if not bool(closed.any()):
            return grasp_logits.sum() * 0.0
        return F.binary_cross_entropy_with_logits(
            grasp_logits[closed], batch.next_object_detected[closed].float()
        )

    def conservative_weight(self) -> float:
        """Weight of the conservative penalty at the next step (linear anneal if configured)."""
        cfg = self.config
        if cfg.conservative_anneal_steps == 0:
            return cfg.conservative_weight
        return cfg.conservative_weight * max(
            0.0, 1.0 - self.step_count / cfg.conservative_anneal_steps
        )

    def _conservative_penalty(
        self, features: torch.Tensor, batch: TorchBatch, data_logits: torch.Tensor
    ) -> torch.Tensor:
        """The penalty of `conservative_mode` for the batch (see `conservative_weight`)."""
        n = self.config.conservative_samples
        rows = features.shape[0] * n
        gen = self._penalty_generator
        actions = torch.rand(rows, ACTION_DIM, generator=gen, device=self.device)
        low = torch.as_tensor(LOW, device=self.device)
        high = torch.as_tensor(HIGH, device=self.device)
        actions = low + (high - low) * actions
        for d in DISCRETE:  # CEM and the policy only ever pick the ends of a discrete dim
            actions[:, d] = torch.where(actions[:, d] >= 0.5, high[d], low[d])

        def repeat(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.repeat_interleave(n, dim=0)

        logits = self.qnet.head_logits(
            expand_features(features, n), actions, repeat(batch.gripper_closed),
            repeat(batch.height), repeat(batch.task), repeat(batch.object_detected),
            repeat(batch.step),
        )  # fmt: skip
        if self.config.conservative_mode == "absolute":
            return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
        sampled = torch.sigmoid(logits).reshape(features.shape[0], n)
        soft_max = torch.logsumexp(sampled, dim=1) - math.log(n)
        return (soft_max - torch.sigmoid(data_logits)).mean()

    def learning_rate(self) -> float:
        """Learning rate of the next step (cosine decay if configured)."""
        cfg = self.config
        if cfg.lr_decay_steps == 0:
            return cfg.learning_rate
        progress = min(self.step_count / cfg.lr_decay_steps, 1.0)
        f = cfg.lr_final_fraction
        return cfg.learning_rate * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _update_targets(self) -> None:
        cfg = self.config
        with torch.no_grad():
            self._follow(self.target1, cfg.target_tau)
            if self.step_count % cfg.target2_period == 0:
                self.target2.load_state_dict(self.target1.state_dict())
            if self.average is not None:
                # The mean of all iterates until 1/t falls below tau: a short run's average is
                # not mostly its initial weights.
                self._follow(self.average, max(cfg.average_tau, 1.0 / self.step_count))

    def _follow(self, module: nn.Module, tau: float) -> None:
        """Polyak step of `module`'s parameters toward the online net's; buffers copied."""
        for p_t, p in zip(module.parameters(), self.qnet.parameters(), strict=True):
            p_t.lerp_(p, tau)
        for b_t, b in zip(module.buffers(), self.qnet.buffers(), strict=True):
            b_t.copy_(b)

    @property
    def acting_net(self) -> nn.Module:
        """The weights a policy acts with: the average when `average_tau` > 0, else online."""
        return self.average if self.average is not None else self.qnet

    def _log(self, metrics: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.config.log_dir)
        w, s = self._writer, self.step_count
        w.add_scalar("train/loss", metrics["loss"], s)
        w.add_scalar("train/grad_norm", metrics["grad_norm"], s)
        w.add_scalar("train/target_mean", metrics["target_mean"], s)
        w.add_scalar("train/learning_rate", metrics["learning_rate"], s)
        if metrics["conservative_penalty"] is not None:
            w.add_scalar("train/conservative_penalty", metrics["conservative_penalty"], s)
            w.add_scalar("train/conservative_weight", metrics["conservative_weight"], s)
        if metrics["grasp_loss"] is not None:
            w.add_scalar("train/grasp_loss", metrics["grasp_loss"], s)
        for name, q in metrics["q_per_task"].items():
            w.add_scalar(f"q/{name}", q, s)
        for name, sizes in self.replay.buffer_sizes().items():
            w.add_scalar(f"replay/{name}/success", sizes["success_episodes"], s)
            w.add_scalar(f"replay/{name}/failure", sizes["failure_episodes"], s)
        w.add_scalar("replay/bytes", self.replay.nbytes, s)
        w.add_scalar("replay/episodes", self.replay.num_episodes, s)

    def train(
        self, num_steps: int, callback: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Run `num_steps` steps (tqdm progress if enabled); returns the last step's metrics."""
        from tqdm import tqdm

        metrics: dict[str, Any] = {}
        with tqdm(total=num_steps, disable=not self.config.progress, desc="train") as bar:
            for _ in range(num_steps):
                metrics = self.step()
                if callback is not None:
                    callback(metrics)
                bar.update(1)
                if self.step_count % self.config.log_every == 0:
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if self._writer is not None:
            self._writer.flush()
        return metrics

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike, training_state: bool = True) -> str:
        """Write the weights to act with (`acting_net`), plus targets, optimizer state and,
        with averaging, the online weights when `training_state`, atomically with a sha256;
        returns the file's sha256."""
        extra = {}
        if training_state:
            extra = {
                "target1": _cpu_state(self.target1),
                "target2": _cpu_state(self.target2),
                "optimizer": self.optimizer.state_dict(),
            }
            if self.average is not None:
                extra[ONLINE_KEY] = _cpu_state(self.qnet)
        metadata: dict[str, Any] = {"kind": "mtopt_qnet"}
        if self.average is not None:
            metadata["average_tau"] = self.config.average_tau
        if self.config.policy_settings:
            metadata[POLICY_SETTINGS_KEY] = dict(self.config.policy_settings)
        return _save_checkpoint(
            path, self.acting_net, self.task_names, self.step_count, metadata, extra
        )

    def load_checkpoint(
        self, path: str | os.PathLike, expected_sha256: str | None = None
    ) -> Checkpoint:
        """Load weights (and training state if present). Raises CheckpointError and keeps the
        current weights when the file is refused."""
        ckpt = read_checkpoint(path, expected_sha256)
        check_compatible(ckpt, self.qnet, self.qnet.config, self.task_names)
        mismatch = policy_settings_mismatch(ckpt.metadata, dict(self.config.policy_settings))
        if mismatch:
            raise CheckpointError(path, describe_mismatch(mismatch, "this run trains for"))
        own = self.qnet.state_dict()
        for name in ("target1", "target2", ONLINE_KEY):
            if name in ckpt.extra:
                sd = ckpt.extra[name]
                if set(sd) != set(own) or any(sd[k].shape != own[k].shape for k in own):
                    raise CheckpointError(path, f"architecture mismatch in {name}")
        opt_state = ckpt.extra.get("optimizer")
        if opt_state is not None:
            groups = opt_state.get("param_groups", [])
            n_own = [len(g["params"]) for g in self.optimizer.state_dict()["param_groups"]]
            if [len(g.get("params", [])) for g in groups] != n_own:
                raise CheckpointError(path, "optimizer state does not match the network")
        # Everything verified: from here on nothing can refuse the file. A checkpoint of an
        # averaging run acts with the average; training goes on from its online weights.
        self.qnet.load_state_dict(ckpt.extra.get(ONLINE_KEY, ckpt.state_dict))
        if self.average is not None:
            self.average.load_state_dict(ckpt.state_dict)
        self.target1.load_state_dict(ckpt.extra.get("target1", ckpt.state_dict))
        self.target2.load_state_dict(ckpt.extra.get("target2", ckpt.state_dict))
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)
        self.step_count = ckpt.step
        return ckpt


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in module.state_dict().items()}
