"""The online learner as a plain class (no rclpy): LogReplay + Trainer + CheckpointWriter.

`Learner(LearnerConfig(bag_dir=..., out_dir=...))` watches the episode directory the loggers
write into and trains the multi-task Q-network while data keeps arriving (seed Fig. 11):

- every `poll_every_s` it ingests new complete bags with `LogReplay` (durable ledger,
  quarantine; at most `max_bags_per_poll` per poll, the rest at the next tick);
- once the replay holds `min_episodes` episodes, each `tick()` runs one `Trainer` step
  (Bellman targets with CEM over the lagged target networks, re-balanced sampling);
- every `checkpoint_every` steps (and at `max_steps`) it writes `qnet_<step>.ckpt` atomically
  (weights, target networks, optimizer: everything a restart needs), keeps the newest
  `keep_checkpoints`, and `tick()` returns a `WeightsPublished` event (what a WeightsUpdate
  message carries: path, version = step, sha256).

With `wait_for_data` False (a finished bag directory), the first scan that has looked at every
bag raises `LearnError` when it leaves fewer than `min_episodes` usable episodes, with the
message `mtopt-learn` prints for the same directory.

Restart: a new Learner over the same `out_dir` resumes from `checkpoints/latest` (weights,
targets, optimizer, step count: versions keep increasing) and from the LogReplay ledger (its
first poll re-adds the ingested bags without counting them again). Its first `tick()` announces
the resumed checkpoint again, so consumers that started meanwhile get the newest weights.

Run directory `out_dir`:

    checkpoints/qnet_<step>.ckpt(+.sha256), checkpoints/latest   (as `mtopt-learn` writes them)
    logreplay/ledger.jsonl, logreplay/quarantine/                (LogReplay state)
    tensorboard/                                                 (when `tensorboard` is on)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from mtopt_core.checkpoint import read_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_core.trainer import Trainer
from mtopt_learner.checkpoints import (
    CHECKPOINT_DIR,
    LATEST,
    CheckpointWriter,
    checkpoint_steps,
    latest_checkpoint,
)
from mtopt_learner.config import (
    STATE_DIR,
    TENSORBOARD_DIR,
    LearnerConfig,
    check_mc_target_tasks,
    parse_impersonation,
)
from mtopt_learner.errors import LearnError, no_bags_message, no_usable_episodes_message
from mtopt_learner.log_replay import IngestReport, LogReplay, LogReplayConfig
from mtopt_learner.nets import (
    check_resumed_image_size,
    preset_config,
    preset_name,
    replay_image_size,
)

#: Longest sleep of `Learner.run` while nothing is due (keeps a stop request responsive).
MAX_IDLE_SLEEP_S = 0.5


# --- the learner -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsPublished:
    """A checkpoint to announce (the content of a WeightsUpdate message)."""

    path: str  # absolute path of the checkpoint file
    version: int  # the training step it was written at
    sha256: str  # of the whole file (what receivers verify)
    model_preset: str  # NETS preset name, or "custom"
    task_names: tuple[str, ...] = ()
    written_unix_time: float = 0.0  # when the file was written (its mtime)


class _Log(Protocol):
    """What the learner logs through: logging.Logger and rclpy's node logger both fit."""

    def info(self, message: str) -> Any: ...

    def warning(self, message: str) -> Any: ...


class Learner:
    """Online training over a growing episode directory (see the module docstring)."""

    def __init__(
        self,
        config: LearnerConfig,
        registry: TaskRegistry | None = None,
        log: _Log | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = cfg = config.validate()
        self.log: _Log = log or logging.getLogger(__name__)
        self.clock = clock
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        self.registry = registry or load_task_registry(cfg.tasks_file or None)
        check_mc_target_tasks(cfg, self.registry.names)
        self.out_dir = Path(cfg.out_dir).expanduser().resolve()
        self.bag_dir = Path(cfg.bag_dir).expanduser().resolve()
        self.ckpt_dir = self.out_dir / CHECKPOINT_DIR
        self.checkpoints = CheckpointWriter(self.ckpt_dir, cfg.keep_checkpoints)

        self.resumed_from = latest_checkpoint(self.out_dir)
        self._resume_config: QNetConfig | None = None
        image_size = cfg.image_size or None
        if self.resumed_from is None:
            if checkpoint_steps(self.ckpt_dir):
                raise LearnError(
                    f"{self.ckpt_dir} holds checkpoints but no '{LATEST}' pointer; remove them"
                    " or choose another out_dir"
                )
        else:
            ckpt = read_checkpoint(self.resumed_from)
            if ckpt.task_names != self.registry.names:
                raise LearnError(
                    f"{self.resumed_from} was trained on tasks {list(ckpt.task_names)}, the"
                    f" registry has {list(self.registry.names)}"
                )
            check_resumed_image_size(
                self.resumed_from, ckpt.qnet_config, cfg.image_size, "image_size"
            )
            image_size = ckpt.qnet_config.image_size  # episodes are resized to the net's
            self._resume_config = ckpt.qnet_config

        self.replay = LogReplay(
            LogReplayConfig(
                bag_dir=self.bag_dir,
                state_dir=self.out_dir / STATE_DIR,
                labels_source=cfg.labels,
                impersonation=parse_impersonation(cfg.impersonation),
                seed=cfg.seed,
                sampler=cfg.sampler,
                memory_budget_bytes=int(cfg.replay_gb * 1e9),
                sd_threshold=cfg.sd_threshold,
                image_size=image_size,
                policy_camera=cfg.policy_camera,
                policy_roi=cfg.policy_roi,
                accepted_closers=tuple(cfg.accepted_closers),
                tasks_file=cfg.tasks_file or None,
                max_bags_per_poll=cfg.max_bags_per_poll,
            ),
            self.registry,
        )
        self.tb_dir = self.out_dir / TENSORBOARD_DIR if cfg.tensorboard else None
        self._tb = None
        if self.tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.tb_dir), flush_secs=10)

        self.trainer: Trainer | None = None
        self.done = False
        self.last_metrics: dict[str, Any] = {}
        self.last_report: IngestReport | None = None
        self.steps_this_run = 0
        self.idle = False  # the last tick neither polled nor trained
        self._announce: WeightsPublished | None = None
        self._next_poll = clock()
        self._next_status = clock() + cfg.status_every_s
        self._status_mark = (clock(), 0)  # (time, step) of the previous status line
        if self.resumed_from is not None:
            # The network comes up at once; the replay is restored by the first poll.
            self._start_trainer(self._resume_config)

    # --- state ---------------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return self.trainer.step_count if self.trainer is not None else 0

    @property
    def model_preset(self) -> str:
        return preset_name(self.trainer.qnet.config) if self.trainer is not None else ""

    def stats(self) -> dict[str, Any]:
        """Counters for logs and tests: steps, LogReplay counters, last loss and weights."""
        out = {"step": self.step, "steps_this_run": self.steps_this_run}
        out.update(self.replay.stats())
        out["loss"] = self.last_metrics.get("loss")
        out["weights_version"] = self.checkpoints.last_step
        out["weights_path"] = str(self.checkpoints.last_path or "")
        return out

    # --- the loop ------------------------------------------------------------------------------

    def tick(self) -> WeightsPublished | None:
        """One round: poll if due, train one step if the replay is big enough, checkpoint if
        due. Returns the checkpoint to announce, if one was written (or resumed)."""
        if self._announce is not None:
            event, self._announce = self._announce, None
            return event
        if self.done:
            return None
        cfg = self.config
        worked = False
        now = self.clock()
        if now >= self._next_poll:
            report = self._poll()
            self._next_poll = now if report.pending else now + cfg.poll_every_s
            worked = True
            if not report.pending and not cfg.wait_for_data:
                self._check_enough_data()
        event = None
        if self.trainer is None and self.replay.buffer.num_episodes >= cfg.min_episodes:
            self._start_trainer(None)
        if self.trainer is not None and self.config.max_steps and self.step >= cfg.max_steps:
            self.done = True  # a resumed run that is already complete
            event = self._checkpoint_if_new()
        elif self.trainer is not None and self.replay.buffer.num_episodes >= cfg.min_episodes:
            self._train_step()
            worked = True
            if self.step % cfg.checkpoint_every == 0:
                event = self._checkpoint()
            if cfg.max_steps and self.step >= cfg.max_steps:
                self.done = True
                event = self._checkpoint_if_new() or event
                self.log.info(f"max_steps {cfg.max_steps} reached: {self.status()}")
        self.idle = not worked
        return event

    def run(
        self,
        stop: threading.Event,
        on_weights: Callable[[WeightsPublished], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        """Tick until `done` or `stop` is set, sleeping while nothing is due; checkpoints go to
        `on_weights`, due status lines to `on_status`."""
        while not stop.is_set() and not (self.done and self._announce is None):
            event = self.tick()
            if event is not None and on_weights is not None:
                on_weights(event)
            line = self.status_if_due()
            if line is not None and on_status is not None:
                on_status(line)
            if self.idle:
                wait = min(max(self._next_poll - self.clock(), 0.0), MAX_IDLE_SLEEP_S)
                stop.wait(wait)

    def close(self) -> WeightsPublished | None:
        """Checkpoint the current step if it has none yet (a stop between checkpoints), close
        the TensorBoard writers. Returns that checkpoint, if one was written."""
        event = None
        if self.trainer is not None:
            event = self._checkpoint_if_new()
            self.trainer.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        return event

    # --- status --------------------------------------------------------------------------------

    def status(self) -> str:
        """One line: steps, rate, loss, replay size, bag counters, newest weights."""
        cfg = self.config
        r = self.replay
        if self.trainer is None or r.buffer.num_episodes < cfg.min_episodes:
            head = f"waiting for data: {r.buffer.num_episodes}/{cfg.min_episodes} episodes"
            if self.trainer is not None:
                head += f", step {self.step}"
        else:
            total = f"/{cfg.max_steps}" if cfg.max_steps else ""
            loss = self.last_metrics.get("loss")
            head = f"step {self.step}{total} ({self._steps_per_s():.1f} steps/s)"
            head += f", loss {loss:.4f}" if loss is not None else ""
        weights = self.checkpoints.last_step
        return (
            f"{head} | replay {r.buffer.num_episodes} episodes / {r.buffer.num_transitions}"
            f" transitions | bags {r.ingested_total} ingested ({r.new_this_run} new,"
            f" {r.restored} restored), {r.skipped_total} skipped, {r.quarantined_total}"
            f" quarantined | weights {'none' if weights is None else f'v{weights}'}"
        )

    def _steps_per_s(self) -> float:
        """Training rate since the previous status line."""
        then, step_then = self._status_mark
        now = self.clock()
        return (self.step - step_then) / (now - then) if now > then else 0.0

    def status_if_due(self) -> str | None:
        """The status line every `status_every_s` (None in between); logs steps/s too."""
        now = self.clock()
        if now < self._next_status:
            return None
        self._next_status = now + self.config.status_every_s
        line = self.status()
        if self._tb is not None:
            self._tb.add_scalar("learner/steps_per_s", self._steps_per_s(), self.step)
        self._status_mark = (now, self.step)
        return line

    # --- internals -----------------------------------------------------------------------------

    def _poll(self) -> IngestReport:
        report = self.replay.poll()
        self.last_report = report
        for problem in report.ledger_problems:
            self.log.warning(f"ledger: {problem}")
        for name, reason in report.quarantined:
            self.log.warning(f"quarantined {name}: {reason}")
        for name, reason in report.skipped:
            self.log.info(f"skipped {name}: {reason}")
        for name, reason in report.restore_failures:
            self.log.warning(f"not restored {name}: {reason}")
        if report.ingested or report.skipped or report.quarantined or report.restored:
            self.log.info(f"LogReplay over {self.bag_dir}: {report.summary()}")
        if self._tb is not None:
            s = self.step
            self._tb.add_scalar("learner/ingest_rate", self.replay.ingest_rate, s)
            self._tb.add_scalar("learner/bags_ingested", self.replay.ingested_total, s)
            self._tb.add_scalar("learner/bags_skipped", self.replay.skipped_total, s)
            self._tb.add_scalar("learner/bags_quarantined", self.replay.quarantined_total, s)
            for task, sizes in report.buffer_sizes.items():
                for outcome in ("success", "failure"):
                    self._tb.add_scalar(
                        f"replay/{task}/{outcome}_transitions", sizes[f"{outcome}_transitions"], s
                    )
        return report

    def _check_enough_data(self) -> None:
        """With `wait_for_data` off, every bag has been looked at: is there enough to train?"""
        r, cfg = self.replay, self.config
        episodes = r.buffer.num_episodes
        if episodes >= cfg.min_episodes:
            return
        if episodes == 0 and r.ingested_total + r.skipped_total + r.quarantined_total == 0:
            # Every complete bag gets a ledger line, so an empty ledger means no complete bag.
            raise LearnError(no_bags_message(self.bag_dir))
        if episodes == 0:
            raise LearnError(
                no_usable_episodes_message(
                    self.bag_dir, r.skipped_total, r.quarantined_total, cfg.labels
                )
            )
        raise LearnError(
            f"only {episodes} usable episodes in {self.bag_dir}, min_episodes is"
            f" {cfg.min_episodes} ({r.skipped_total} skipped, {r.quarantined_total} quarantined;"
            " wait_for_data is false)"
        )

    def _start_trainer(self, qnet_config: QNetConfig | None) -> None:
        cfg = self.config
        if qnet_config is None:
            qnet_config = preset_config(
                cfg.net, len(self.registry), replay_image_size(self.replay),
                cfg.qnet_step_horizon(), cfg.qnet_options(),
            )  # fmt: skip
        torch.manual_seed(cfg.seed)  # the initial weights of a new run
        self.trainer = Trainer(
            QNet(qnet_config),
            self.replay.buffer,
            cfg.trainer_config(str(self.tb_dir) if self.tb_dir is not None else None),
            self.registry.names,
        )
        if self.resumed_from is not None:
            step = self.checkpoints.resume(self.trainer, self.resumed_from)
            self._status_mark = (self.clock(), step)
            self._announce = self._event()
            self.log.info(f"resumed {self.resumed_from} at step {step}")
        else:
            self._status_mark = (self.clock(), 0)  # steps/s counts training time only
            self.log.info(
                f"training starts: {self.replay.buffer.num_episodes} episodes in the replay,"
                f" network {preset_name(qnet_config)} at {qnet_config.image_size} px"
            )

    def _train_step(self) -> None:
        with self.replay.lock:
            self.last_metrics = self.trainer.step()
        self.steps_this_run += 1

    def _event(self) -> WeightsPublished:
        c = self.checkpoints
        return WeightsPublished(
            path=str(c.last_path),
            version=int(c.last_step),
            sha256=c.last_sha256,
            model_preset=self.model_preset,
            task_names=tuple(self.registry.names),
            written_unix_time=c.last_path.stat().st_mtime,
        )

    def _checkpoint(self) -> WeightsPublished:
        self.checkpoints.save(self.trainer)
        return self._event()

    def _checkpoint_if_new(self) -> WeightsPublished | None:
        if self.trainer is None or self.checkpoints.last_step == self.step:
            return None
        return self._checkpoint()
