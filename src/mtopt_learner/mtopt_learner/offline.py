"""`mtopt-learn`: train the multi-task Q-network offline from a directory of episode bags.

    mtopt-learn --bags /data/episodes --steps 20000 --out /data/run1
    mtopt-learn --bags /data/episodes --steps 40000 --out /data/run1 --resume

Ingests every complete bag of --bags once with LogReplay (state, i.e. ledger and quarantine,
under OUT/logreplay), then runs `mtopt_core.trainer.Trainer` (Bellman updates with CEM over
lagged target networks, re-balanced sampling) until the step counter reaches --steps.
Checkpoints (weights + target networks + optimizer: everything --resume needs) are written
atomically to OUT/checkpoints/qnet_<step>.ckpt every --checkpoint-every steps and at the end;
the newest 3 are kept, and OUT/checkpoints/latest (atomic) names the newest. --steps is the
total: `--resume` continues the step count of the latest checkpoint, so re-running the same
command after a crash finishes the run. Ctrl-C writes a checkpoint of the current step first.

`--ray` runs the same pipeline on a local Ray instance (`--ray-address ADDR`: an existing
cluster) with `--updaters K` Bellman-updater actors computing the CEM targets in parallel
(see `mtopt_learner.ray_backend`); nothing else changes.

Prints one JSON line on stdout at the end: steps, episodes ingested/skipped/quarantined, the
final loss and the checkpoint path and sha256. Errors exit with status 2 and a message.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from mtopt_core.cem import CEMConfig
from mtopt_core.checkpoint import CheckpointError
from mtopt_core.episode_bag import list_episode_bags
from mtopt_core.qnet import QNet
from mtopt_core.replay import SAMPLERS
from mtopt_core.tasks import TaskRegistryError, load_task_registry
from mtopt_core.trainer import Trainer, TrainerConfig
from mtopt_learner.episode_decoder import LABEL_SOURCES
from mtopt_learner.learner import (  # noqa: F401 - shared with the online learner, re-exported
    CHECKPOINT_DIR,
    KEEP_CHECKPOINTS,
    LATEST,
    NETS,
    STATE_DIR,
    CheckpointWriter,
    LearnError,
    checkpoint_steps,
    latest_checkpoint,
    make_qnet_config,
    parse_impersonation,
    replay_image_size,
    trainer_config_from_args,
)
from mtopt_learner.log_replay import IngestReport, LogReplay, LogReplayConfig
from mtopt_learner.ray_backend import add_ray_arguments, run_ray, wants_ray

PROG = "mtopt-learn"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bags", required=True, type=Path, help="directory of episode bags")
    p.add_argument(
        "--steps", required=True, type=int, help="total training steps (counting resumed ones)"
    )
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, state)")
    p.add_argument(
        "--impersonation",
        type=parse_impersonation,
        default="skill",
        help="orig | all | skill | skill_stochastic:PS,PF (default: skill)",
    )
    p.add_argument("--sampler", choices=SAMPLERS, default="rebalanced")
    p.add_argument(
        "--labels",
        choices=LABEL_SOURCES,
        default="sd",
        help="sd: EpisodeInfo SD probabilities; oracle: simulator ground truth (sim only)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.add_argument("--checkpoint-every", type=_positive, default=1000, metavar="K")
    p.add_argument("--batch-size", type=_positive, default=TrainerConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=TrainerConfig.learning_rate)
    p.add_argument("--gamma", type=float, default=TrainerConfig.gamma)
    p.add_argument(
        "--conservative-weight",
        type=float,
        default=TrainerConfig.conservative_weight,
        metavar="W",
        help="weight of the penalty pushing Q of random actions to 0 (0 = off; see"
        " TrainerConfig.conservative_weight)",
    )
    p.add_argument(
        "--net",
        choices=sorted(NETS),
        default="small",
        help="Q-network preset for a new run (the observation size comes from the data;"
        " --resume uses the checkpoint's architecture)",
    )
    p.add_argument("--cem-population", type=_positive, default=CEMConfig.population)
    p.add_argument("--cem-elites", type=_positive, default=CEMConfig.elites)
    p.add_argument("--cem-iterations", type=_positive, default=CEMConfig.iterations)
    p.add_argument(
        "--sd-threshold", type=float, default=0.5, help="P(success) that counts as success"
    )
    p.add_argument("--replay-gb", type=float, default=2.0, help="replay memory budget [GB]")
    p.add_argument("--tasks-file", default=None, help="task registry (default: config/tasks.yaml)")
    p.add_argument("--log-dir", default=None, help="TensorBoard directory (default: none)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log every skipped bag")
    add_ray_arguments(p)
    return p


# --- the run ------------------------------------------------------------------------------------


def _ingest_summary(replay: LogReplay, report: IngestReport) -> str:
    lines = [f"LogReplay over {replay.bag_dir}: {report.summary()}"]
    if report.restored:
        lines.append(f"  {report.restored} episodes restored from {replay.ledger.path}")
    reasons = Counter(reason.split(":")[0] for _, reason in report.skipped)
    for reason, n in reasons.most_common():
        lines.append(f"  skipped {n}: {reason}")
    for name, reason in report.quarantined:
        lines.append(f"  quarantined {name}: {reason}")
    for name, reason in report.restore_failures:
        lines.append(f"  not restored {name}: {reason}")
    for problem in report.ledger_problems:
        lines.append(f"  ledger: {problem}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Ingest, train, checkpoint; returns the summary (see the module docstring)."""
    started = time.perf_counter()
    if args.steps < 0:
        raise LearnError(f"--steps must be >= 0, got {args.steps}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    bags = Path(args.bags)
    if not bags.is_dir():
        raise LearnError(f"--bags {bags}: not a directory")
    if not list_episode_bags(bags):
        raise LearnError(f"no complete episode bags in {bags}")
    out = Path(args.out)
    ckpt_dir = out / CHECKPOINT_DIR
    resume_from = latest_checkpoint(out)
    if args.resume and resume_from is None:
        raise LearnError(f"--resume: no checkpoint to resume in {ckpt_dir} (no '{LATEST}' file)")
    if not args.resume and (resume_from is not None or checkpoint_steps(ckpt_dir)):
        raise LearnError(
            f"{ckpt_dir} already holds checkpoints; pass --resume to continue that run or choose"
            " another --out"
        )

    registry = load_task_registry(args.tasks_file)
    replay = LogReplay(
        LogReplayConfig(
            bag_dir=bags,
            state_dir=out / STATE_DIR,
            labels_source=args.labels,
            impersonation=args.impersonation,
            seed=args.seed,
            sampler=args.sampler,
            memory_budget_bytes=int(args.replay_gb * 1e9),
            sd_threshold=args.sd_threshold,
        ),
        registry,
    )
    report = replay.poll()
    print(_ingest_summary(replay, report), file=sys.stderr)
    if replay.buffer.num_episodes == 0:
        raise LearnError(
            f"no usable episodes in {bags}: {replay.skipped_total} skipped,"
            f" {replay.quarantined_total} quarantined (see above; --labels is {args.labels!r})"
        )
    image_size = replay_image_size(replay)

    qnet_config = make_qnet_config(resume_from, args.net, len(registry), image_size, str(bags))
    torch.manual_seed(args.seed)  # the initial weights (the Ray path seeds the same way)
    trainer = Trainer(
        QNet(qnet_config), replay.buffer, trainer_config_from_args(args), registry.names
    )
    writer = CheckpointWriter(ckpt_dir)
    if resume_from is not None:
        step = writer.resume(trainer, resume_from)
        print(f"resumed {resume_from} at step {step}", file=sys.stderr)
    first_step = trainer.step_count
    remaining = max(0, args.steps - first_step)
    if remaining == 0:
        print(f"step {first_step} already reaches --steps {args.steps}", file=sys.stderr)

    def on_step(metrics: dict[str, Any]) -> None:
        if trainer.step_count % args.checkpoint_every == 0:
            writer.save(trainer)

    metrics: dict[str, Any] = {}
    with writer.final_save(trainer):
        if remaining:
            metrics = trainer.train(remaining, on_step)
    return {
        "steps": trainer.step_count,
        "steps_this_run": trainer.step_count - first_step,
        "episodes_ingested": replay.ingested_total,
        "episodes_new": len(report.ingested),
        "episodes_restored": report.restored,
        "episodes_skipped": replay.skipped_total,
        "episodes_quarantined": replay.quarantined_total,
        "replay_episodes": replay.buffer.num_episodes,
        "replay_transitions": replay.buffer.num_transitions,
        "final_loss": metrics.get("loss"),
        "checkpoint": str(writer.last_path) if writer.last_path else None,
        "sha256": writer.last_sha256,
        "seconds": round(time.perf_counter() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format=f"{PROG}: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # the ingest summary lists skipped and quarantined bags once
        logging.getLogger("mtopt_learner.log_replay").setLevel(logging.ERROR)
    try:
        summary = run_ray(args) if wants_ray(args) else run(args)
    except (LearnError, CheckpointError, TaskRegistryError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
