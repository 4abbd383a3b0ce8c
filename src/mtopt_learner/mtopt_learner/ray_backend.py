"""Ray backend of `mtopt-learn` (seed Fig. 11): the learner's stages as Ray actors.

    LogReplay + per-task buffers (ReplayActor)
        -> K Bellman updaters (BellmanUpdaterActor: lagged target networks, CEM targets)
        -> train queue -> trainer (the driver: `Trainer.apply_batch`, checkpoints)
        -> new target weights -> updaters

The stages are the single-process classes, unchanged: `ReplayActor` owns a `LogReplay` (its
`poll()` ingests the bags, `sample()` returns numpy batches); each `BellmanUpdaterActor` runs a
`mtopt_core.trainer.BellmanUpdater` whose replay is the ReplayActor; the driver runs the SGD
step and target-network update of `Trainer.step` (`Trainer.apply_batch`) on the labelled
batches. After every step the driver puts the new target weights in the object store once
(`ray.put`) and hands the reference to every updater, which loads it before its next batch.

Train queue: each updater has `prefetch` requests in flight and the driver consumes the results
in the order it asked for them (round robin over the updaters). An actor runs the calls of one
caller in order, so the batch requested after step s is labelled with the targets of step s:
a run is reproducible for a given seed, and its targets lag those of the single-process loop
by K * prefetch - 1 steps (reported per step as `target_lag`). With K = 1 and prefetch = 1 the
run is the single-process one step for step (updater 0 uses the trainer's seed; updater i > 0 a
seed derived from it). The initial weights come from `torch.manual_seed(--seed)`.

`address=None` starts a private local Ray instance (and stops it at the end); an address
(`ray.init(address=...)`, e.g. "auto" or "HOST:6379") joins a running cluster, where the
`mtopt_*` packages must be installed on every node. The ReplayActor is pinned to the driver's
node: the bag directory and LogReplay's state directory are the driver's paths.

`train_ray(OfflineConfig, num_updaters, address, prefetch)` is `offline.train(config)` on Ray
(same checkpoints, resume, progress bar and summary, plus the backend fields).
`add_ray_arguments(parser)` adds --ray / --ray-address / --updaters / --prefetch to
`mtopt-learn`'s parser, and `run_ray(args)` runs `train_ray` with those options.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtopt_core.cem import CEMConfig
from mtopt_core.episode_bag import list_episode_bags
from mtopt_core.impersonation import make_impersonation
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.replay import Batch
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_core.trainer import BellmanUpdater, Trainer, mc_target_task_mask
from mtopt_learner.checkpoints import CHECKPOINT_DIR, CheckpointWriter, resume_point
from mtopt_learner.config import OfflineConfig, check_mc_target_tasks, positive_int
from mtopt_learner.errors import LearnError, no_bags_message, no_usable_episodes_message
from mtopt_learner.log_replay import IngestReport, LogReplay, LogReplayConfig, describe_ingest
from mtopt_learner.nets import make_qnet_config, observation_size, resumed_qnet_config

DEFAULT_UPDATERS = 2
DEFAULT_PREFETCH = 2


# --- helpers shared by the actors and the driver ------------------------------------------------


def _writable(batch: Batch) -> Batch:
    """Arrays read from the object store are read-only views; torch wants writable memory."""
    return Batch(**{k: v if v.flags.writeable else v.copy() for k, v in vars(batch).items()})


def state_to_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """A module's state dict as numpy arrays (zero-copy in Ray's object store)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _load_numpy_state(module: torch.nn.Module, state: dict[str, np.ndarray]) -> None:
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def updater_seed(seed: int, index: int) -> int:
    """Seed of updater `index`: the trainer's own for updater 0 (so one updater reproduces the
    single-process run), independent streams derived from it for the others."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# --- actors (plain classes; `ray.remote` wraps them when a run starts) --------------------------


class ReplayActor:
    """Owns the LogReplay and its replay buffer (seed Fig. 11: LogReplay + per-task buffers)."""

    def __init__(self, config: LogReplayConfig, registry: TaskRegistry):
        self.log_replay = LogReplay(config, registry)

    def poll(self) -> tuple[IngestReport, dict[str, Any]]:
        """Ingest new bags (restore from the ledger on the first call): (report, stats)."""
        report = self.log_replay.poll()
        return report, self.stats()

    def stats(self) -> dict[str, Any]:
        """`LogReplay.stats()` plus the observation size and the ledger path."""
        stats = self.log_replay.stats()
        buffer = self.log_replay.buffer
        stats["image_size"] = (
            int(buffer.sample(1, np.random.default_rng(0)).image.shape[1])
            if buffer.num_episodes
            else None
        )
        stats["ledger"] = str(self.log_replay.ledger.path)
        return stats

    def sample(self, batch_size: int, rng_state: dict[str, Any]) -> tuple[Batch, dict[str, Any]]:
        """A numpy batch drawn with the caller's generator (passed as its bit-generator state,
        returned advanced), so the caller's sample stream is the one it would have locally."""
        rng = np.random.default_rng()
        rng.bit_generator.state = rng_state
        with self.log_replay.lock:
            batch = self.log_replay.buffer.sample(batch_size, rng)
        return batch, rng.bit_generator.state


class RemoteReplay:
    """The `ReplayBuffer.sample` interface of `BellmanUpdater`, served by a ReplayActor."""

    def __init__(self, handle: Any):
        self.handle = handle

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        import ray

        batch, state = ray.get(self.handle.sample.remote(batch_size, rng.bit_generator.state))
        rng.bit_generator.state = state
        return _writable(batch)


class BellmanUpdaterActor:
    """A Bellman updater (seed Fig. 11): lagged target networks, CEM targets for batches it
    samples from the ReplayActor."""

    def __init__(
        self,
        replay: Any,
        qnet_config: dict[str, Any],
        gamma: float,
        cem: CEMConfig,
        seed: int,
        threads: int = 0,
        augment_shift_px: int = 0,
        bootstrap_truncation: bool = False,
        mc_lower_bound: bool = False,
        mc_targets: bool = False,
        augment_mirror: bool = False,
        augment_translate: float = 0.0,
        mc_task_mask: list[bool] | None = None,
    ):
        if threads > 0:
            torch.set_num_threads(threads)
        config = QNetConfig.from_dict(qnet_config)
        self.target1, self.target2 = _frozen(QNet(config)), _frozen(QNet(config))
        self.updater = BellmanUpdater(
            RemoteReplay(replay), self.target1, self.target2, gamma, cem, seed,
            augment_shift_px=augment_shift_px, bootstrap_truncation=bootstrap_truncation,
            mc_lower_bound=mc_lower_bound, mc_targets=mc_targets, augment_mirror=augment_mirror,
            augment_translate=augment_translate, mc_task_mask=mc_task_mask,
        )  # fmt: skip
        self.version = -1

    def set_targets(
        self,
        version: int,
        target1: dict[str, np.ndarray],
        target2: dict[str, np.ndarray] | None = None,
    ) -> int:
        """Load new target weights (target2 only when it changed); returns `version`."""
        _load_numpy_state(self.target1, target1)
        if target2 is not None:
            _load_numpy_state(self.target2, target2)
        self.version = version
        return version

    def next_batch(self, batch_size: int) -> tuple[Batch, np.ndarray, int]:
        """(numpy batch, targets (B,), version of the target weights that labelled it)."""
        batch, targets = self.updater.next_batch(batch_size)
        arrays = {k: v.numpy() for k, v in vars(batch).items()}
        return Batch(**arrays), targets.numpy(), self.version


# --- Ray lifecycle ------------------------------------------------------------------------------


def init_ray(
    address: str | None = None, num_cpus: int | None = None, verbose: bool = False
) -> bool:
    """Start a private local Ray instance (address None) or join `address`. Returns True when
    this call started or joined Ray (the caller then calls `ray.shutdown()`), False when Ray
    was already initialized in this process (it is used as it is)."""
    import ray

    if ray.is_initialized():
        return False
    # Never phone home (Ray's usage statistics); the nodes started here inherit this.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,
        log_to_driver=verbose,
        logging_level=logging.INFO if verbose else logging.WARNING,
    )
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
    except ConnectionError as exc:
        raise LearnError(f"--ray-address {address}: cannot connect to Ray: {exc}") from None
    return True


# --- the distributed training loop --------------------------------------------------------------


class ReplayView:
    """Stands in for the ReplayBuffer in the driver's Trainer: the buffer lives in the
    ReplayActor; this mirrors its sizes (TensorBoard's replay/* scalars) as of `update`."""

    def __init__(self, task_names: Sequence[str], stats: dict[str, Any]):
        self.task_names = tuple(task_names)
        self.update(stats)

    def update(self, stats: dict[str, Any]) -> None:
        self._sizes = stats["buffer_sizes"]
        self.nbytes = stats["buffer_bytes"]
        self.num_episodes = stats["buffer_episodes"]
        self.num_transitions = stats["buffer_transitions"]

    def buffer_sizes(self) -> dict[str, dict[str, int]]:
        return self._sizes

    def sample(self, *args: Any, **kwargs: Any) -> Batch:
        raise RuntimeError("the Ray backend samples in the ReplayActor, not in the driver")


@dataclass
class RayTrainResult:
    """What a Ray run did: per-step metrics (if kept) and `mtopt-learn`'s summary."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _check_options(num_updaters: int, prefetch: int) -> None:
    if num_updaters < 1:
        raise LearnError(f"--updaters must be >= 1, got {num_updaters}")
    if prefetch < 1:
        raise LearnError(f"--prefetch must be >= 1, got {prefetch}")


def train_with_ray(
    args: argparse.Namespace,
    num_updaters: int = DEFAULT_UPDATERS,
    address: str | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """`mtopt-learn` on Ray: ingest with a ReplayActor, label with `num_updaters`
    BellmanUpdaterActors, train and checkpoint in this process (see the module docstring).

    `args` carries `mtopt-learn`'s options (`offline.build_parser()`). Uses the Ray instance
    of this process when there is one, else starts (address None) or joins one for the run.
    Returns every step's metrics: `Trainer.step`'s plus `updater` (which actor labelled the
    batch) and `target_lag` (steps its targets lag the single-process loop's).
    """
    config = OfflineConfig.from_args(args)
    verbose = bool(getattr(args, "verbose", False))
    return train_ray(config, num_updaters, address, prefetch, callback, True, verbose).metrics


def run_ray(args: argparse.Namespace) -> dict[str, Any]:
    """`offline.run` on Ray: the summary line of `mtopt-learn` (plus backend fields)."""
    config = OfflineConfig.from_args(args)
    return train_ray(
        config, args.updaters, args.ray_address, args.prefetch, verbose=args.verbose
    ).summary


def train_ray(
    config: OfflineConfig,
    num_updaters: int = DEFAULT_UPDATERS,
    address: str | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    callback: Callable[[dict[str, Any]], None] | None = None,
    keep_metrics: bool = False,
    verbose: bool = False,
) -> RayTrainResult:
    """`offline.train(config)` on Ray (see `train_with_ray`); `verbose` shows Ray's logs."""
    started = time.perf_counter()
    config.validate()
    _check_options(num_updaters, prefetch)
    bags = Path(config.bags).resolve()
    if not bags.is_dir():
        raise LearnError(f"--bags {bags}: not a directory")
    if not list_episode_bags(bags):
        raise LearnError(no_bags_message(bags))
    out = Path(config.out).resolve()
    resume_from = resume_point(out, config.resume)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    registry = load_task_registry(config.tasks_file)
    check_mc_target_tasks(config, registry.names)
    resumed = resumed_qnet_config(resume_from, config.image_size)
    replay_config = config.replay_config(
        bags, out, observation_size(resumed, config.image_size)
    ).validate()
    try:  # the actor would raise this too, but as an actor-died error
        make_impersonation(replay_config.impersonation, registry)
    except ValueError as exc:
        raise LearnError(f"--impersonation: {exc}") from None

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    owns_ray = init_ray(address, max(os.cpu_count() or 1, num_updaters), verbose)
    actors: list[Any] = []
    try:
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        replay = (
            ray.remote(ReplayActor)
            .options(num_cpus=0, scheduling_strategy=here)
            .remote(replay_config, registry)
        )
        actors.append(replay)
        report, stats = ray.get(replay.poll.remote())
        print(describe_ingest(report, bags, stats["ledger"], " (Ray actor)"), file=sys.stderr)
        if stats["buffer_episodes"] == 0:
            raise LearnError(
                no_usable_episodes_message(
                    bags, stats["skipped_total"], stats["quarantined_total"], config.labels
                )
            )
        qnet_config = make_qnet_config(
            resumed, config.net, len(registry), stats["image_size"], config.qnet_step_horizon(),
            config.qnet_options(),
        )  # fmt: skip
        torch.manual_seed(config.seed)  # the initial weights, which the updaters receive
        trainer_config = config.trainer_config()
        view = ReplayView(registry.names, stats)
        trainer = Trainer(QNet(qnet_config), view, trainer_config, registry.names)
        writer = CheckpointWriter(out / CHECKPOINT_DIR)
        if resume_from is not None:
            step = writer.resume(trainer, resume_from)
            print(f"resumed {resume_from} at step {step}", file=sys.stderr)
        first_step = trainer.step_count
        remaining = max(0, config.steps - first_step)
        if remaining == 0:
            print(f"step {first_step} already reaches --steps {config.steps}", file=sys.stderr)

        updater_cls = ray.remote(BellmanUpdaterActor).options(num_cpus=1)
        mc_task_mask = mc_target_task_mask(trainer_config.mc_target_tasks, trainer.task_names)
        updaters = [
            updater_cls.remote(
                replay,
                qnet_config.to_dict(),
                trainer_config.gamma,
                trainer_config.cem,
                updater_seed(config.seed, i),
                config.threads,
                trainer_config.augment_shift_px,
                trainer_config.bootstrap_truncation,
                trainer_config.mc_lower_bound,
                trainer_config.mc_targets,
                trainer_config.augment_mirror,
                trainer_config.augment_translate,
                mc_task_mask,
            )
            for i in range(num_updaters if remaining else 0)
        ]
        actors.extend(updaters)
        result = RayTrainResult()
        with writer.final_save(trainer):
            last = _train_loop(
                trainer, updaters, remaining, prefetch, writer, config.checkpoint_every,
                result.metrics if keep_metrics else None, callback,
            )  # fmt: skip
        result.summary = {
            "steps": trainer.step_count,
            "steps_this_run": trainer.step_count - first_step,
            "episodes_ingested": stats["ingested_total"],
            "episodes_new": len(report.ingested),
            "episodes_restored": report.restored,
            "episodes_skipped": stats["skipped_total"],
            "episodes_quarantined": stats["quarantined_total"],
            "replay_episodes": stats["buffer_episodes"],
            "replay_transitions": stats["buffer_transitions"],
            "final_loss": last.get("loss"),
            "checkpoint": str(writer.last_path) if writer.last_path else None,
            "sha256": writer.last_sha256,
            "seconds": round(time.perf_counter() - started, 3),
            "backend": "ray",
            "ray_address": address,
            "updaters": num_updaters,
            "prefetch": prefetch,
        }
        return result
    finally:
        if owns_ray:
            ray.shutdown()
        else:
            for actor in actors:
                ray.kill(actor)


def _train_loop(
    trainer: Trainer,
    updaters: list[Any],
    num_steps: int,
    prefetch: int,
    writer: CheckpointWriter,
    checkpoint_every: int,
    metrics_out: list[dict[str, Any]] | None,
    callback: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Consume labelled batches in request order, step, checkpoint, broadcast the targets."""
    import ray
    from tqdm import tqdm

    cfg = trainer.config
    pending: deque[tuple[int, Any]] = deque()
    requested = 0

    def broadcast(target2_changed: bool) -> None:
        version = trainer.step_count
        ref1 = ray.put(state_to_numpy(trainer.target1))
        ref2 = ray.put(state_to_numpy(trainer.target2)) if target2_changed else None
        for u in updaters:
            u.set_targets.remote(version, ref1, ref2)  # runs before the next request to u

    def request(index: int) -> None:
        nonlocal requested
        if requested < num_steps:
            pending.append((index, updaters[index].next_batch.remote(cfg.batch_size)))
            requested += 1

    metrics: dict[str, Any] = {}
    if num_steps == 0:
        return metrics
    broadcast(target2_changed=True)
    for _ in range(prefetch):
        for i in range(len(updaters)):
            request(i)
    with tqdm(total=num_steps, disable=not cfg.progress, desc="train (ray)") as bar:
        while pending:
            index, ref = pending.popleft()
            batch, targets, version = ray.get(ref)
            metrics = trainer.apply_batch(
                _writable(batch).to_torch(trainer.device),
                torch.from_numpy(np.array(targets)).to(trainer.device),
            )
            metrics["updater"] = index
            metrics["target_lag"] = trainer.step_count - 1 - version
            broadcast(trainer.step_count % cfg.target2_period == 0)
            request(index)
            if trainer.step_count % checkpoint_every == 0:
                writer.save(trainer)
            if metrics_out is not None:
                metrics_out.append(metrics)
            if callback is not None:
                callback(metrics)
            bar.update(1)
            if trainer.step_count % cfg.log_every == 0:
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
    return metrics


# --- mtopt-learn wiring -------------------------------------------------------------------------


def add_ray_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the Ray backend's options to `mtopt-learn`'s parser."""
    group = parser.add_argument_group("Ray backend (seed Fig. 11)")
    group.add_argument(
        "--ray",
        action="store_true",
        help="train with Ray actors: a LogReplay actor, --updaters Bellman updater actors, the"
        " trainer in this process (a private local Ray instance unless --ray-address)",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join this Ray cluster (e.g. auto or HOST:6379; implies --ray)",
    )
    group.add_argument(
        "--updaters",
        type=positive_int,
        default=DEFAULT_UPDATERS,
        metavar="K",
        help=f"Bellman updater actors (default {DEFAULT_UPDATERS})",
    )
    group.add_argument(
        "--prefetch",
        type=positive_int,
        default=DEFAULT_PREFETCH,
        metavar="N",
        help="labelled batches in flight per updater (the train queue; targets lag by"
        f" updaters * N - 1 extra steps; default {DEFAULT_PREFETCH})",
    )
    return parser


def wants_ray(args: argparse.Namespace) -> bool:
    """True when the options ask for the Ray backend."""
    return bool(getattr(args, "ray", False) or getattr(args, "ray_address", None))
