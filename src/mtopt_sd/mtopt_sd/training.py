"""Supervised training of the multi-task success detector (plain class, no ROS).

Batches come from `BalancedSampler` (uniform over tasks, 50/50 success/failure inside a task),
are augmented on the fly (`augment_views`), and train every known label of every sampled
example with a masked binary cross-entropy (unknown outcomes after label sharing are masked).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from mtopt_core.sd_model import SDModelConfig, SuccessDetector
from mtopt_sd.augment import AugmentConfig, augment_views
from mtopt_sd.sd_data import (
    BalancedSampler,
    SDDataset,
    Table3Row,
    balanced_bce_loss,
    masked_bce_loss,
    mean_rate,
    table3,
)

LOSSES = {"balanced": balanced_bce_loss, "mean": masked_bce_loss}


@dataclass
class TrainConfig:
    """Optimisation settings.

    Fields:
        steps: gradient steps.
        batch_size: examples per step (each has one image per camera).
        learning_rate: peak AdamW learning rate (cosine decay to 5% of it over `steps`).
        weight_decay: AdamW weight decay.
        seed: seeds model initialisation, batch sampling and augmentation.
        eval_every: evaluate on the holdout every this many steps (0 = only at the end).
        eval_batch_size: examples per forward pass when evaluating.
        log_every: write training scalars every this many steps.
        threshold: P(success) at or above which an example is graded a success.
        loss: "balanced": per task, successes and failures weigh half each (`balanced_bce_loss`);
            "mean": plain mean over all known labels (`masked_bce_loss`).
        augment: train-time augmentation strengths.
    """

    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    eval_every: int = 0
    eval_batch_size: int = 256
    log_every: int = 25
    threshold: float = 0.5
    loss: str = "balanced"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_batch_size", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"TrainConfig.eval_every must be >= 0, got {self.eval_every}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"TrainConfig.threshold must be in (0, 1), got {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict(model: SuccessDetector, dataset: SDDataset, batch_size: int = 256) -> torch.Tensor:
    """P(success) (N, T) for every example of `dataset`, no augmentation."""
    out = []
    for start in range(0, len(dataset), batch_size):
        images = dataset.images[start : start + batch_size].to(torch.float32).div_(255.0)
        out.append(model.predict_proba(images))
    return torch.cat(out) if out else torch.zeros((0, len(dataset.task_names)))


def summarize(rows: list[Table3Row]) -> dict[str, float]:
    """Mean over tasks of each Table III rate (NaN where no task has the column)."""
    return {
        f"mean_{c}_rate": (mean_rate(rows, c) if mean_rate(rows, c) is not None else math.nan)
        for c in (
            "false_negative",
            "false_positive",
            "other_false_negative",
            "other_false_positive",
        )
    }


class SDTrainer:
    """Trains a `SuccessDetector` on an `SDDataset` and evaluates it on a holdout set."""

    def __init__(
        self,
        model_config: SDModelConfig,
        train_set: SDDataset,
        config: TrainConfig | None = None,
        eval_set: SDDataset | None = None,
        writer: Any = None,
    ):
        self.config = config or TrainConfig()
        if tuple(train_set.task_names) != model_config.task_names:
            raise ValueError(
                f"dataset tasks {train_set.task_names} differ from the model's "
                f"{model_config.task_names}"
            )
        if train_set.image_size != model_config.image_size:
            raise ValueError(
                f"dataset images are {train_set.image_size} px, the model takes "
                f"{model_config.image_size} px"
            )
        self.train_set, self.eval_set, self.writer = train_set, eval_set, writer
        torch.manual_seed(self.config.seed)
        self.model = SuccessDetector(model_config)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.sampler = BalancedSampler(train_set, self.generator)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )
        steps = self.config.steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps)),
        )
        self.step = 0
        self.train_seconds = 0.0

    def train_step(self) -> float:
        """One balanced, augmented batch; returns the loss."""
        cfg = self.config
        index = self.sampler.sample(cfg.batch_size)
        images = self.train_set.images[index].to(torch.float32).div_(255.0)
        # Augment the encoder's views (after the region-of-interest crop): cheaper, and a
        # random crop then jitters the region like camera mounts differ between cells.
        views = augment_views(self.model.select_views(images), cfg.augment, self.generator)
        self.model.train()
        logits = self.model.classify(views)
        loss_fn = LOSSES[cfg.loss]
        loss = loss_fn(logits, self.train_set.targets[index], self.train_set.known[index])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {self.step}")
        return value

    def evaluate(self, dataset: SDDataset | None = None) -> tuple[torch.Tensor, list[Table3Row]]:
        """(probabilities, Table III rows) on `dataset` (default: the eval set)."""
        dataset = dataset if dataset is not None else self.eval_set
        if dataset is None:
            raise ValueError("no evaluation set")
        probs = predict(self.model, dataset, self.config.eval_batch_size)
        return probs, table3(probs, dataset, self.config.threshold)

    def _log_eval(self) -> dict[str, float]:
        probs, rows = self.evaluate()
        known = self.eval_set.known
        loss = masked_bce_loss(
            torch.logit(probs.clamp(1e-6, 1 - 1e-6)), self.eval_set.targets, known
        )
        summary = {"loss": float(loss), **summarize(rows)}
        if self.writer is not None:
            for key, value in summary.items():
                if math.isfinite(value):
                    self.writer.add_scalar(f"eval/{key}", value, self.step)
            for row in rows:
                for column in ("false_negative", "false_positive"):
                    value = getattr(row, column).value
                    if value is not None:
                        self.writer.add_scalar(f"eval_{column}/{row.task}", value, self.step)
        return summary

    def train(self, progress: bool = True) -> dict[str, Any]:
        """Run all steps; returns the last training loss, speed and eval summary."""
        cfg = self.config
        bar = tqdm(total=cfg.steps, desc="SD training", unit="step", disable=not progress)
        running, eval_summary = None, {}
        try:
            while self.step < cfg.steps:
                start = time.perf_counter()
                loss = self.train_step()
                self.train_seconds += time.perf_counter() - start
                running = loss if running is None else 0.95 * running + 0.05 * loss
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    bar.set_postfix(loss=f"{running:.4f}")
                    if self.writer is not None:
                        self.writer.add_scalar("train/loss", loss, self.step)
                        self.writer.add_scalar("train/loss_smoothed", running, self.step)
                        self.writer.add_scalar(
                            "train/learning_rate", self.scheduler.get_last_lr()[0], self.step
                        )
                        self.writer.add_scalar(
                            "train/examples_per_s",
                            self.step * cfg.batch_size / max(self.train_seconds, 1e-9),
                            self.step,
                        )
                if self.eval_set is not None and (
                    (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps
                ):
                    eval_summary = self._log_eval()
        finally:
            bar.close()
        return {
            "steps": self.step,
            "final_loss": running,
            "train_seconds": self.train_seconds,
            "examples_per_s": self.step * cfg.batch_size / max(self.train_seconds, 1e-9),
            "eval": eval_summary,
        }
