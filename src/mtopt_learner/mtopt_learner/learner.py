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

Restart: a new Learner over the same `out_dir` resumes from `checkpoints/latest` (weights,
targets, optimizer, step count: versions keep increasing) and from the LogReplay ledger (its
first poll re-adds the ingested bags without counting them again). Its first `tick()` announces
the resumed checkpoint again, so consumers that started meanwhile get the newest weights.

Run directory `out_dir`:

    checkpoints/qnet_<step>.ckpt(+.sha256), checkpoints/latest   (as `mtopt-learn` writes them)
    logreplay/ledger.jsonl, logreplay/quarantine/                (LogReplay state)
    tensorboard/                                                 (when `tensorboard` is on)

Also holds what `mtopt-learn` (offline.py) shares: checkpoint naming and writing, the network
presets, the impersonation option syntax.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mtopt_core.cem import CEMConfig
from mtopt_core.checkpoint import atomic_write_bytes, read_checkpoint
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.replay import SAMPLERS
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_core.trainer import Trainer, TrainerConfig
from mtopt_learner.episode_decoder import LABEL_SOURCES
from mtopt_learner.log_replay import IngestReport, LogReplay, LogReplayConfig

CHECKPOINT_DIR = "checkpoints"
STATE_DIR = "logreplay"
TENSORBOARD_DIR = "tensorboard"
LATEST = "latest"
KEEP_CHECKPOINTS = 3
NETS = {
    "tiny": QNetConfig.tiny,
    "compact": QNetConfig.compact,
    "small": QNetConfig.small,
    "paper": QNetConfig.paper,
}
_CKPT_NAME = re.compile(r"^qnet_(\d+)\.ckpt$")
_STOCHASTIC = re.compile(r"^skill_stochastic(?::|\()\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)?$")
#: Longest sleep of `Learner.run` while nothing is due (keeps a stop request responsive).
MAX_IDLE_SLEEP_S = 0.5


class LearnError(RuntimeError):
    """A problem the user has to fix (the message says what)."""


# --- shared with mtopt-learn -------------------------------------------------------------------


def parse_impersonation(text: str) -> str:
    """Impersonation option value -> the spec `make_impersonation` parses.

    Accepts orig, all, skill, skill_stochastic:PS,PF and skill_stochastic(PS,PF); raises
    argparse.ArgumentTypeError (so it works as an argparse `type=`).
    """
    text = text.strip()
    if text in ("orig", "all", "skill"):
        return text
    m = _STOCHASTIC.match(text)
    if m and text.count("(") == text.count(")"):
        try:
            ps, pf = float(m.group(1)), float(m.group(2))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: PS and PF of skill_stochastic:PS,PF must be numbers"
            ) from None
        for label, p in (("PS", ps), ("PF", pf)):
            if not 0.0 <= p <= 1.0:
                raise argparse.ArgumentTypeError(f"{text!r}: {label} must be in [0, 1], got {p:g}")
        return f"skill_stochastic({ps:g}, {pf:g})"
    raise argparse.ArgumentTypeError(
        f"unknown impersonation {text!r}; expected orig, all, skill or skill_stochastic:PS,PF"
    )


def checkpoint_steps(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the `qnet_<step>.ckpt` files in a directory, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = []
    for path in ckpt_dir.iterdir():
        m = _CKPT_NAME.match(path.name)
        if m and path.is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint OUT/checkpoints/latest names, None when there is no pointer file."""
    pointer = Path(out_dir) / CHECKPOINT_DIR / LATEST
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    path = pointer.parent / name
    if not name or not path.is_file():
        raise LearnError(f"{pointer} names {name!r}, which does not exist")
    return path


class CheckpointWriter:
    """Writes `qnet_<step>.ckpt` + the `latest` pointer atomically; keeps the newest few.

    The pointer moves only after the new file is complete, and older files are deleted only
    after that, so a crash at any point leaves `latest` naming a complete checkpoint.
    """

    def __init__(self, ckpt_dir: Path, keep: int = KEEP_CHECKPOINTS):
        self.dir = ckpt_dir
        self.keep = keep
        self.last_step: int | None = None
        self.last_path: Path | None = None
        self.last_sha256 = ""

    def resume(self, trainer: Trainer, path: Path) -> int:
        """Load `path` (weights, targets, optimizer, step) into `trainer`; returns the step."""
        ckpt = trainer.load_checkpoint(path)
        self.last_step, self.last_path, self.last_sha256 = ckpt.step, path, ckpt.file_sha256
        return ckpt.step

    def save(self, trainer: Trainer) -> Path:
        step = trainer.step_count
        path = self.dir / f"qnet_{step}.ckpt"
        self.last_sha256 = trainer.save_checkpoint(path, training_state=True)
        atomic_write_bytes(self.dir / LATEST, f"{path.name}\n".encode())
        self.last_step, self.last_path = step, path
        for _, old in checkpoint_steps(self.dir)[: -self.keep]:
            old.unlink(missing_ok=True)
            Path(f"{old}.sha256").unlink(missing_ok=True)
        return path

    @contextlib.contextmanager
    def final_save(self, trainer: Trainer) -> Iterator[None]:
        """Wrap a training loop so no finished step is lost.

        Ctrl-C: the unsaved steps are written, then the interrupt goes on. Normal end: the last
        step is written unless it already was. Any end: the trainer is closed.
        """
        try:
            yield
        except KeyboardInterrupt:
            if trainer.step_count != self.last_step:
                path = self.save(trainer)
                print(f"interrupted: wrote {path} at step {trainer.step_count}", file=sys.stderr)
            raise
        finally:
            trainer.close()
        if self.last_step != trainer.step_count:
            self.save(trainer)


def replay_image_size(replay: LogReplay) -> int:
    """Observation side [px] of the episodes in a (non-empty) replay buffer."""
    return int(replay.buffer.sample(1, np.random.default_rng(0)).image.shape[1])


def make_qnet_config(
    resume_from: Path | None, net: str, num_tasks: int, image_size: int, source: str
) -> QNetConfig:
    """The network to train: the resumed checkpoint's (it must take `image_size` px images,
    the size of the episodes in `source`), else the `net` preset."""
    if resume_from is not None:
        qnet_config = read_checkpoint(resume_from).qnet_config
        if qnet_config.image_size != image_size:
            raise LearnError(
                f"{resume_from} takes {qnet_config.image_size} px images, the episodes in"
                f" {source} have {image_size} px observations"
            )
        return qnet_config
    try:
        return NETS[net](num_tasks, image_size=image_size)
    except ValueError as exc:
        raise LearnError(f"net {net} with {image_size} px observations: {exc}") from None


def trainer_config_from_args(args) -> TrainerConfig:
    """TrainerConfig from `mtopt-learn`'s options (shared by the single-process and Ray paths)."""
    return TrainerConfig(
        batch_size=args.batch_size,
        gamma=args.gamma,
        learning_rate=args.lr,
        cem=CEMConfig(args.cem_population, args.cem_elites, args.cem_iterations),
        conservative_weight=args.conservative_weight,
        seed=args.seed,
        log_dir=args.log_dir,
        progress=not args.no_progress,
    )


def preset_name(qnet_config: QNetConfig) -> str:
    """The NETS preset a network config is ('custom' when it matches none)."""
    for name, make in NETS.items():
        try:
            if make(qnet_config.num_tasks, image_size=qnet_config.image_size) == qnet_config:
                return name
        except ValueError:
            continue
    return "custom"


# --- configuration -----------------------------------------------------------------------------


class LearnerConfigError(ValueError):
    """A LearnerConfig field has a bad value: `field` names it, `problem` says why."""

    def __init__(self, field_name: str, problem: str):
        self.field, self.problem = field_name, problem
        super().__init__(f"LearnerConfig.{field_name} {problem}")


@dataclass(frozen=True)
class LearnerConfig:
    """Learner settings (also the parameters of `learner_node`: ROS name = field name)."""

    #: Directory the loggers write episode bags into (only complete bags are read; it may not
    #: exist yet).
    bag_dir: str = "episodes"
    #: Run directory: checkpoints/, logreplay/ (ledger, quarantine), tensorboard/. Reusing it
    #: resumes the run (latest checkpoint + ledger).
    out_dir: str = "learner"
    #: Task registry ("" = config/tasks.yaml or $MTOPT_TASKS_FILE): the one-hot task order.
    tasks_file: str = ""
    #: Impersonation function: orig, all, skill (the seed's default), skill_stochastic:PS,PF.
    impersonation: str = "skill"
    #: Replay sampling: rebalanced (MT-Opt) or uniform (ablation).
    sampler: str = "rebalanced"
    #: Labels: sd (EpisodeInfo SD probabilities) or oracle (simulator ground truth, sim only).
    labels: str = "sd"
    #: P(success) at or above which an SD probability counts as a success.
    sd_threshold: float = 0.5
    #: Replay memory budget [GB] (oldest episodes evicted beyond it).
    replay_gb: float = 2.0
    #: Seconds between scans of bag_dir for new bags.
    poll_every_s: float = 10.0
    #: At most this many new bags per scan (0 = all), so training is not stalled by a backlog.
    max_bags_per_poll: int = 20
    #: Training starts once the replay holds this many episodes.
    min_episodes: int = 10
    #: Training steps between checkpoints (each one is announced as new weights).
    checkpoint_every: int = 1000
    #: Checkpoints kept on disk (the newest ones).
    keep_checkpoints: int = KEEP_CHECKPOINTS
    #: Stop after this many steps in total, resumed ones included (0 = train forever).
    max_steps: int = 0
    #: Q-network preset of a new run: tiny, compact, small or paper (resumed runs keep theirs).
    net: str = "small"
    #: Observation side [px] the network takes (0 = the recorded policy images' size).
    image_size: int = 0
    #: Transitions per SGD step.
    batch_size: int = TrainerConfig.batch_size
    #: Adam learning rate and Bellman discount.
    learning_rate: float = TrainerConfig.learning_rate
    gamma: float = TrainerConfig.gamma
    #: Weight of the penalty that pushes Q of random actions to 0 (TrainerConfig; 0 = off).
    conservative_weight: float = TrainerConfig.conservative_weight
    #: CEM of the Bellman targets' max over next actions (QT-Opt's 64 / 6 / 2).
    cem_population: int = CEMConfig.population
    cem_elites: int = CEMConfig.elites
    cem_iterations: int = CEMConfig.iterations
    #: Seeds sampling, CEM, relabelling draws and the initial weights.
    seed: int = 0
    #: Write TensorBoard scalars to out_dir/tensorboard.
    tensorboard: bool = True
    #: Training steps between TensorBoard writes.
    log_every: int = 50
    #: Seconds between status lines.
    status_every_s: float = 30.0
    #: torch CPU threads (0 = torch's default).
    torch_threads: int = 0

    def validate(self) -> LearnerConfig:
        """Return self, or raise LearnerConfigError naming the first bad field."""
        if not self.bag_dir.strip():
            raise LearnerConfigError("bag_dir", "must not be empty")
        if not self.out_dir.strip():
            raise LearnerConfigError("out_dir", "must not be empty")
        try:
            parse_impersonation(self.impersonation)
        except argparse.ArgumentTypeError as exc:
            raise LearnerConfigError("impersonation", f"is bad: {exc}") from None
        for name, allowed in (("sampler", SAMPLERS), ("labels", LABEL_SOURCES), ("net", NETS)):
            if getattr(self, name) not in allowed:
                raise LearnerConfigError(
                    name, f"must be one of {sorted(allowed)}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.sd_threshold <= 1.0:
            raise LearnerConfigError("sd_threshold", f"must be in [0, 1], got {self.sd_threshold}")
        for name in ("replay_gb", "poll_every_s", "status_every_s", "learning_rate"):
            if not getattr(self, name) > 0:
                raise LearnerConfigError(name, f"must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0:
            raise LearnerConfigError("gamma", f"must be in [0, 1], got {self.gamma}")
        if not self.conservative_weight >= 0:
            raise LearnerConfigError(
                "conservative_weight", f"must be >= 0, got {self.conservative_weight}"
            )
        for name in (
            "min_episodes",
            "checkpoint_every",
            "keep_checkpoints",
            "batch_size",
            "cem_population",
            "cem_elites",
            "cem_iterations",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise LearnerConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.cem_elites > self.cem_population:
            raise LearnerConfigError(
                "cem_elites", f"({self.cem_elites}) must not exceed cem_population "
                f"({self.cem_population})"
            )  # fmt: skip
        for name in ("max_bags_per_poll", "max_steps", "torch_threads"):
            if getattr(self, name) < 0:
                raise LearnerConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.image_size != 0 and self.image_size < 8:
            raise LearnerConfigError("image_size", f"must be 0 or >= 8, got {self.image_size}")
        return self


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
            size = ckpt.qnet_config.image_size
            if image_size is not None and image_size != size:
                raise LearnError(
                    f"{self.resumed_from} takes {size} px images, image_size is {image_size}"
                )
            image_size = size  # episodes recorded at another size are resized to the net's
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

    def _start_trainer(self, qnet_config: QNetConfig | None) -> None:
        cfg = self.config
        if qnet_config is None:
            image_size = replay_image_size(self.replay)
            try:
                qnet_config = NETS[cfg.net](len(self.registry), image_size=image_size)
            except ValueError as exc:
                raise LearnError(
                    f"net {cfg.net} with {image_size} px observations: {exc}"
                ) from None
        torch.manual_seed(cfg.seed)  # the initial weights of a new run
        self.trainer = Trainer(
            QNet(qnet_config),
            self.replay.buffer,
            TrainerConfig(
                batch_size=cfg.batch_size,
                gamma=cfg.gamma,
                learning_rate=cfg.learning_rate,
                cem=CEMConfig(cfg.cem_population, cfg.cem_elites, cfg.cem_iterations),
                conservative_weight=cfg.conservative_weight,
                seed=cfg.seed,
                log_dir=str(self.tb_dir) if self.tb_dir is not None else None,
                log_every=cfg.log_every,
                progress=False,
            ),
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


__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointWriter",
    "KEEP_CHECKPOINTS",
    "LATEST",
    "LearnError",
    "Learner",
    "LearnerConfig",
    "LearnerConfigError",
    "NETS",
    "STATE_DIR",
    "WeightsPublished",
    "checkpoint_steps",
    "latest_checkpoint",
    "parse_impersonation",
    "preset_name",
    "replay_image_size",
]
