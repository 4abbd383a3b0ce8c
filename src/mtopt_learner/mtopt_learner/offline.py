"""`mtopt-learn`: train the multi-task Q-network offline from a directory of episode bags.

    mtopt-learn --bags /data/episodes --steps 20000 --out /data/run1
    mtopt-learn --bags /data/episodes --steps 40000 --out /data/run1 --resume

Ingests every complete bag of --bags once with LogReplay (state, i.e. ledger and quarantine,
under OUT/logreplay), then runs `mtopt_core.trainer.Trainer` (Bellman updates with CEM over
lagged target networks, re-balanced sampling) until the step counter reaches --steps. The
learning rate follows a cosine from --lr down to a tenth over --steps (--lr-decay-steps), and the
checkpoints act with a moving average of the weights (--average-tau): the combination measured
best in docs/results/learning.md. A --resume with a larger --steps stretches the schedule.
Checkpoints (weights + target networks + optimizer: everything --resume needs) are written
atomically to OUT/checkpoints/qnet_<step>.ckpt every --checkpoint-every steps and at the end;
the newest 3 are kept, and OUT/checkpoints/latest (atomic) names the newest. --steps is the
total: `--resume` continues the step count of the latest checkpoint, so re-running the same
command after a crash finishes the run. Ctrl-C writes a checkpoint of the current step first.

`--ray` runs the same pipeline on a local Ray instance (`--ray-address ADDR`: an existing
cluster) with `--updaters K` Bellman-updater actors computing the CEM targets in parallel
(see `mtopt_learner.ray_backend`); nothing else changes.

Only bags closed by an accepted closer are used (`EpisodeInfo.closed_by` matching an
--accepted-closer pattern; default: the collectors and bulk simulated collection); the others
are skipped and named in the report.

Prints one JSON line on stdout at the end: steps, episodes ingested/skipped/quarantined, the
final loss and the checkpoint path and sha256. Errors exit with status 2 and a message.

From Python, `train(OfflineConfig(bags=..., out=..., steps=...))` is the same run (without
Ray) and returns that summary as a dict.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mtopt_core.action import ACTION_FRAMES
from mtopt_core.checkpoint import CheckpointError
from mtopt_core.episode_bag import list_episode_bags
from mtopt_core.qnet import QNet
from mtopt_core.replay import SAMPLERS
from mtopt_core.tasks import TaskRegistryError, load_task_registry
from mtopt_core.trainer import CONSERVATIVE_MODES, Trainer, TrainerConfig
from mtopt_learner.checkpoints import CHECKPOINT_DIR, CheckpointWriter, resume_point
from mtopt_learner.config import (
    OfflineConfig,
    add_policy_roi_argument,
    check_mc_target_tasks,
    parse_impersonation,
    positive_int,
)
from mtopt_learner.episode_decoder import DEFAULT_ACCEPTED_CLOSERS, LABEL_SOURCES
from mtopt_learner.errors import LearnError, no_bags_message, no_usable_episodes_message
from mtopt_learner.log_replay import LogReplay, describe_ingest
from mtopt_learner.nets import (
    NETS,
    make_qnet_config,
    observation_size,
    replay_image_size,
    resumed_qnet_config,
)
from mtopt_learner.ray_backend import add_ray_arguments, run_ray, wants_ray

PROG = "mtopt-learn"


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
    p.add_argument("--checkpoint-every", type=positive_int, default=1000, metavar="K")
    p.add_argument("--batch-size", type=positive_int, default=OfflineConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=OfflineConfig.learning_rate)
    p.add_argument("--gamma", type=float, default=TrainerConfig.gamma)
    p.add_argument(
        "--lr-decay-steps",
        type=int,
        default=OfflineConfig.lr_decay_steps,
        metavar="N",
        help="cosine decay of the learning rate to --lr x --lr-final-fraction over N steps,"
        " resumed ones included (default: --steps; 0 = constant)",
    )
    p.add_argument(
        "--lr-final-fraction",
        type=float,
        default=OfflineConfig.lr_final_fraction,
        metavar="F",
        help="see --lr-decay-steps (default: %(default)s)",
    )
    p.add_argument(
        "--average-tau",
        type=float,
        default=OfflineConfig.average_tau,
        metavar="TAU",
        help="checkpoints give the policy a moving average of the online weights, following"
        " them at rate TAU per step (default: %(default)s; 0 = the online weights; the online"
        " ones stay in the checkpoint for --resume)",
    )
    p.add_argument(
        "--conservative-weight",
        type=float,
        default=OfflineConfig.conservative_weight,
        metavar="W",
        help="weight of the penalty pushing Q of random actions to 0 (0 = off; see"
        " TrainerConfig.conservative_weight)",
    )
    p.add_argument(
        "--conservative-mode",
        choices=CONSERVATIVE_MODES,
        default=TrainerConfig.conservative_mode,
        help="absolute: Q of random actions pushed to 0; relative: CQL(H) on Q"
        " (random actions down, the data action up)",
    )
    p.add_argument(
        "--conservative-anneal-steps",
        type=int,
        default=TrainerConfig.conservative_anneal_steps,
        metavar="N",
        help="the penalty's weight falls linearly to 0 over N steps (0 = constant)",
    )
    p.add_argument(
        "--augment-shift-px",
        type=int,
        default=TrainerConfig.augment_shift_px,
        metavar="K",
        help="DrQ random shift of the training images by up to K px (0 = off)",
    )
    p.add_argument(
        "--augment-mirror",
        action="store_true",
        help="reflect half the sampled transitions about the gripper's x-z plane (needs "
        "--policy-camera wrist --action-frame tool)",
    )
    p.add_argument(
        "--augment-translate",
        type=float,
        default=TrainerConfig.augment_translate,
        metavar="P",
        help="relabel each eligible transition with probability P as if the gripper had "
        "started a few cm to the side (needs --policy-camera wrist --action-frame tool; 0 = off)",
    )
    p.add_argument(
        "--bootstrap-truncation",
        action="store_true",
        help="episodes ended by the step limit bootstrap (done = terminated only)",
    )
    p.add_argument(
        "--mc-lower-bound",
        action="store_true",
        help="no Bellman target below the transition's own discounted return",
    )
    p.add_argument(
        "--mc-targets",
        action="store_true",
        help="the target is the transition's own discounted return (no bootstrap, no CEM)",
    )
    p.add_argument(
        "--mc-target-task",
        action="append",
        default=None,
        metavar="PATTERN",
        help="as --mc-targets, for the tasks matching this fnmatch pattern only (e.g. 'lift-*');"
        " the others keep Bellman targets; repeatable",
    )
    p.add_argument(
        "--grasp-weight",
        type=float,
        default=OfflineConfig.grasp_weight,
        metavar="W",
        help="weight of the auxiliary grasp loss (0 = off; a new network gets a grasp head)",
    )
    p.add_argument(
        "--step-input",
        action="store_true",
        help="a new network also gets the steps remaining (see --step-horizon) as an input",
    )
    p.add_argument(
        "--step-horizon",
        type=positive_int,
        default=OfflineConfig.step_horizon,
        metavar="N",
        help="the episodes' step limit (the policy's max_steps), for --step-input",
    )
    p.add_argument(
        "--policy-camera",
        default=OfflineConfig.policy_camera,
        help="the policy node's policy_camera: its last frame in a bag is the final observation"
        " (default: %(default)s)",
    )
    add_policy_roi_argument(
        p,
        "the policy's region of interest of the camera frame (fractions; the policy node's"
        " policy_roi): final frames are cropped alike (default: the whole frame)",
    )
    p.add_argument(
        "--action-frame",
        choices=ACTION_FRAMES,
        default=OfflineConfig.action_frame,
        help="the policy node's action_frame the bags' moves are in; recorded in the"
        " checkpoints, and a cell with another frame refuses them (default: %(default)s)",
    )
    p.add_argument(
        "--net",
        choices=sorted(NETS),
        default=OfflineConfig.net,
        help="Q-network preset for a new run (the observation size comes from the data;"
        " --resume uses the checkpoint's architecture)",
    )
    p.add_argument(
        "--net-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a QNetConfig field of the --net preset for a new run (e.g."
        " state_skip=false, channels=32); repeatable",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=OfflineConfig.image_size,
        metavar="PX",
        help="resize the recorded observations to PX x PX for a new network (0: as recorded;"
        " --resume takes the checkpoint's)",
    )
    p.add_argument("--cem-population", type=positive_int, default=OfflineConfig.cem_population)
    p.add_argument("--cem-elites", type=positive_int, default=OfflineConfig.cem_elites)
    p.add_argument("--cem-iterations", type=positive_int, default=OfflineConfig.cem_iterations)
    p.add_argument(
        "--sd-threshold", type=float, default=0.5, help="P(success) that counts as success"
    )
    p.add_argument(
        "--accepted-closer",
        action="append",
        default=None,
        metavar="PATTERN",
        help="use only bags whose EpisodeInfo.closed_by matches this fnmatch pattern;"
        f" repeatable (default: {' '.join(DEFAULT_ACCEPTED_CLOSERS)}); other bags are skipped"
        " and reported",
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


def check_bag_dir(bags: Path) -> None:
    """Refuse a --bags that is no directory or holds no complete episode bag."""
    if not bags.is_dir():
        raise LearnError(f"--bags {bags}: not a directory")
    if not list_episode_bags(bags):
        raise LearnError(no_bags_message(bags))


class OfflineSession:
    """The state of an offline run: LogReplay over the bag directory, the Trainer and the
    checkpoint writer, set up (and resumed) from an `OfflineConfig`.

    `train()` below runs one session to `config.steps`; a closed loop
    (`mtopt_experiments.train_sim`) keeps one session across rounds, calling `ingest()` after
    each collection and `train_to()` with a growing step target, so the replay and the
    optimizer stay warm. Raises LearnError, CheckpointError, TaskRegistryError or ValueError
    with a message for the user.
    """

    def __init__(self, config: OfflineConfig):
        self.started = time.perf_counter()
        self.config = config.validate()
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.bags, self.out = Path(config.bags), Path(config.out)
        check_bag_dir(self.bags)
        resume_from = resume_point(self.out, config.resume)

        registry = load_task_registry(config.tasks_file)
        check_mc_target_tasks(config, registry.names)
        resumed = resumed_qnet_config(resume_from, config.image_size)
        size = observation_size(resumed, config.image_size)
        self.replay = LogReplay(config.replay_config(self.bags, self.out, size), registry)
        self.report = self.ingest()
        if self.replay.buffer.num_episodes == 0:
            raise LearnError(
                no_usable_episodes_message(
                    self.bags, self.replay.skipped_total, self.replay.quarantined_total,
                    config.labels,
                )
            )  # fmt: skip
        image_size = replay_image_size(self.replay)
        qnet_config = make_qnet_config(
            resumed, config.net, len(registry), image_size, config.qnet_step_horizon(),
            config.qnet_options(),
        )  # fmt: skip
        torch.manual_seed(config.seed)  # the initial weights (the Ray path seeds the same way)
        self.trainer = Trainer(
            QNet(qnet_config), self.replay.buffer, config.trainer_config(), registry.names
        )
        self.writer = CheckpointWriter(self.out / CHECKPOINT_DIR)
        if resume_from is not None:
            step = self.writer.resume(self.trainer, resume_from)
            print(f"resumed {resume_from} at step {step}", file=sys.stderr)
        self.first_step = self.trainer.step_count
        self.metrics: dict[str, Any] = {}

    def ingest(self):
        """Ingest the bags not seen yet (all of them at first); prints a one-line summary."""
        report = self.replay.poll()
        print(
            describe_ingest(report, self.replay.bag_dir, self.replay.ledger.path), file=sys.stderr
        )
        return report

    def train_to(self, steps: int) -> str | None:
        """Train until the step counter reaches `steps` (checkpoints every checkpoint_every
        steps and at the end, also on an exception such as Ctrl-C); returns the newest
        checkpoint's path."""
        remaining = max(0, steps - self.trainer.step_count)
        if remaining == 0:
            print(f"step {self.trainer.step_count} already reaches {steps}", file=sys.stderr)

        def on_step(metrics: dict[str, Any]) -> None:
            if self.trainer.step_count % self.config.checkpoint_every == 0:
                self.writer.save(self.trainer)

        with self.writer.final_save(self.trainer):
            if remaining:
                self.metrics = self.trainer.train(remaining, on_step)
        return str(self.writer.last_path) if self.writer.last_path else None

    def summary(self) -> dict[str, Any]:
        """The JSON summary `mtopt-learn` prints."""
        replay, trainer, writer = self.replay, self.trainer, self.writer
        return {
            "steps": trainer.step_count,
            "steps_this_run": trainer.step_count - self.first_step,
            "episodes_ingested": replay.ingested_total,
            "episodes_new": len(self.report.ingested),
            "episodes_restored": self.report.restored,
            "episodes_skipped": replay.skipped_total,
            "episodes_quarantined": replay.quarantined_total,
            "replay_episodes": replay.buffer.num_episodes,
            "replay_transitions": replay.buffer.num_transitions,
            "final_loss": self.metrics.get("loss"),
            "checkpoint": str(writer.last_path) if writer.last_path else None,
            "sha256": writer.last_sha256,
            "seconds": round(time.perf_counter() - self.started, 3),
        }

    def close(self) -> None:
        self.trainer.close()


def train(config: OfflineConfig) -> dict[str, Any]:
    """Ingest, train, checkpoint (single process); returns the summary (see the module
    docstring). Raises LearnError, CheckpointError, TaskRegistryError or ValueError with a
    message for the user."""
    session = OfflineSession(config)
    try:
        session.train_to(config.steps)
        return session.summary()
    finally:
        session.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """`train` with `mtopt-learn`'s parsed options."""
    return train(OfflineConfig.from_args(args))


def trainer_config_from_args(args: argparse.Namespace) -> TrainerConfig:
    """The TrainerConfig `mtopt-learn`'s options give (single-process and Ray runs alike)."""
    return OfflineConfig.from_args(args).trainer_config()


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
