"""Settings of a learner run: `LearnerConfig` (the online learner and `learner_node`) and
`OfflineConfig` (one `mtopt-learn` run), plus the option parsers both use."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from mtopt_core.action import ACTION_FRAMES
from mtopt_core.cem import CEMConfig
from mtopt_core.checkpoint import policy_settings_of
from mtopt_core.images import FULL_FRAME, check_roi
from mtopt_core.mirror import mirror_settings_error
from mtopt_core.replay import SAMPLERS
from mtopt_core.trainer import CONSERVATIVE_MODES, TrainerConfig, mc_target_task_mask
from mtopt_learner.checkpoints import KEEP_CHECKPOINTS
from mtopt_learner.episode_decoder import (
    DEFAULT_ACCEPTED_CLOSERS,
    LABEL_SOURCES,
    accepted_closers_problem,
)
from mtopt_learner.errors import LearnError
from mtopt_learner.log_replay import LogReplayConfig
from mtopt_learner.nets import NETS, parse_net_options

STATE_DIR = "logreplay"
TENSORBOARD_DIR = "tensorboard"
_STOCHASTIC = re.compile(r"^skill_stochastic(?::|\()\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)?$")


#: The learning settings measured to work at a usable speed on 2 CPU cores
#: (docs/results/learning.md): the defaults of the learner node, mtopt-learn and
#: mtopt-train-sim. QT-Opt's own (small/paper net, batch 256+, CEM 64/6/2 targets) learned
#: nothing measurable at this data scale and ran at 0.4 steps/s here.
DEFAULT_NET = "compact"
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_CONSERVATIVE_WEIGHT = 1.0
DEFAULT_TARGET_CEM = CEMConfig(population=16, elites=2, iterations=2)
#: Offline runs (mtopt-learn, mtopt-train-sim) decay the learning rate over their --steps and act
#: with a moving average of the weights at this rate: 255 vs 207 of 600 lifts against a constant
#: rate and the online weights (docs/results/learning.md, "Calmer late weights"). The learner
#: node trains without an end, so it keeps a constant rate and the online weights.
OFFLINE_AVERAGE_TAU = 0.001


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


def check_learning_options(config, error) -> None:
    """The learning options LearnerConfig and OfflineConfig share; `error(field, problem)`
    builds the exception to raise."""
    if not config.conservative_weight >= 0:
        raise error("conservative_weight", f"must be >= 0, got {config.conservative_weight}")
    if config.conservative_mode not in CONSERVATIVE_MODES:
        raise error(
            "conservative_mode",
            f"must be one of {list(CONSERVATIVE_MODES)}, got {config.conservative_mode!r}",
        )
    for name in ("conservative_anneal_steps", "augment_shift_px", "lr_decay_steps"):
        value = getattr(config, name)
        if name == "lr_decay_steps" and value is None:
            continue  # an offline run's "over its --steps"
        if not isinstance(value, int) or value < 0:
            raise error(name, f"must be an integer >= 0, got {value!r}")
    for name in ("lr_final_fraction", "average_tau"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise error(name, f"must be in [0, 1], got {getattr(config, name)}")
    if config.augment_mirror:
        why = mirror_settings_error(policy_settings_of(config))
        if why:
            raise error("augment_mirror", why.removeprefix("augment_mirror "))
    if not 0.0 <= config.augment_translate <= 1.0:
        raise error("augment_translate", f"must be in [0, 1], got {config.augment_translate}")
    if config.augment_translate > 0:
        why = mirror_settings_error(
            policy_settings_of(config), "augment_translate", "the wrist camera's geometry"
        )
        if why:
            raise error("augment_translate", why.removeprefix("augment_translate "))
    if not config.grasp_weight >= 0:
        raise error("grasp_weight", f"must be >= 0, got {config.grasp_weight}")
    if not all(isinstance(p, str) and p.strip() for p in config.mc_target_tasks):
        raise error(
            "mc_target_tasks", f"must be fnmatch patterns of task names, got "
            f"{list(config.mc_target_tasks)!r}"
        )  # fmt: skip
    if config.step_horizon < 1:
        raise error("step_horizon", f"must be >= 1, got {config.step_horizon}")
    try:
        check_roi(config.policy_roi, "policy_roi")
    except ValueError as exc:
        raise error("policy_roi", str(exc).removeprefix("policy_roi ")) from None
    if not config.policy_camera:
        raise error("policy_camera", "must name a camera")
    if config.action_frame not in ACTION_FRAMES:
        raise error(
            "action_frame", f"must be one of {list(ACTION_FRAMES)}, got {config.action_frame!r}"
        )


def check_mc_target_tasks(settings, task_names) -> None:
    """Raise LearnError when a `mc_target_tasks` pattern matches none of the registry's
    tasks: checked before the (long) ingest, not when training starts."""
    try:
        mc_target_task_mask(settings.mc_target_tasks, task_names)
    except ValueError as exc:
        raise LearnError(str(exc)) from None


def add_policy_roi_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """`--policy-roi X0 Y0 X1 Y1` (fractions of the camera frame; default the whole frame)."""
    parser.add_argument(
        "--policy-roi",
        type=float,
        nargs=4,
        default=list(FULL_FRAME),
        metavar=("X0", "Y0", "X1", "Y1"),
        help=help,
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# --- the online learner ------------------------------------------------------------------------


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
    #: Replay sampling: rebalanced (MT-Opt), rebalanced_near_miss or uniform (ablation).
    sampler: str = "rebalanced"
    #: Labels: sd (EpisodeInfo SD probabilities) or oracle (simulator ground truth, sim only).
    labels: str = "sd"
    #: P(success) at or above which an SD probability counts as a success.
    sd_threshold: float = 0.5
    #: Bags are used only when their EpisodeInfo.closed_by (who recorded them: a collector's
    #: node name, "mtopt-sim-collect") matches one of these fnmatch patterns; other bags, and
    #: bags without closed_by, are skipped and reported.
    accepted_closers: tuple[str, ...] = DEFAULT_ACCEPTED_CLOSERS
    #: Replay memory budget [GB] (oldest episodes evicted beyond it).
    replay_gb: float = 2.0
    #: Seconds between scans of bag_dir for new bags.
    poll_every_s: float = 10.0
    #: At most this many new bags per scan (0 = all), so training is not stalled by a backlog.
    max_bags_per_poll: int = 20
    #: Training starts once the replay holds this many episodes.
    min_episodes: int = 10
    #: True: keep waiting while the replay holds fewer than min_episodes episodes (cells are
    #: still writing bags). False: bag_dir is complete (offline learning); when the first full
    #: scan leaves fewer than min_episodes usable episodes, stop with an error.
    wait_for_data: bool = True
    #: Training steps between checkpoints (each one is announced as new weights).
    checkpoint_every: int = 1000
    #: Checkpoints kept on disk (the newest ones).
    keep_checkpoints: int = KEEP_CHECKPOINTS
    #: Stop after this many steps in total, resumed ones included (0 = train forever).
    max_steps: int = 0
    #: Q-network preset of a new run: tiny, compact, small or paper (resumed runs keep theirs).
    net: str = DEFAULT_NET
    #: Observation side [px] the network takes (0 = the recorded policy images' size).
    image_size: int = 0
    #: Transitions per SGD step.
    batch_size: int = DEFAULT_BATCH_SIZE
    #: Adam learning rate and Bellman discount.
    learning_rate: float = DEFAULT_LEARNING_RATE
    gamma: float = TrainerConfig.gamma
    #: Cosine decay of the learning rate to learning_rate * lr_final_fraction over this many
    #: steps, resumed ones included (0 = constant).
    lr_decay_steps: int = TrainerConfig.lr_decay_steps
    lr_final_fraction: float = TrainerConfig.lr_final_fraction
    #: Checkpoints give the policy a moving average of the online weights, following them at
    #: this rate per step (TrainerConfig.average_tau; 0 = the online weights).
    average_tau: float = TrainerConfig.average_tau
    #: Weight of the conservative penalty on Q of random actions (TrainerConfig; 0 = off).
    conservative_weight: float = DEFAULT_CONSERVATIVE_WEIGHT
    #: absolute: Q of random actions pushed to 0; relative: CQL(H) on Q (random
    #: actions down, the data action up).
    conservative_mode: str = TrainerConfig.conservative_mode
    #: The penalty's weight falls linearly to 0 over this many steps (0 = constant).
    conservative_anneal_steps: int = TrainerConfig.conservative_anneal_steps
    #: DrQ random shift of the training images by up to this many pixels (0 = off).
    augment_shift_px: int = TrainerConfig.augment_shift_px
    #: Reflect half the sampled transitions about the gripper's x-z plane (mtopt_core.mirror;
    #: needs policy_camera wrist and action_frame tool).
    augment_mirror: bool = TrainerConfig.augment_mirror
    #: Probability of relabelling a transition as if the gripper had started a few cm to the
    #: side (mtopt_core.translate; needs policy_camera wrist and action_frame tool; 0 = off).
    augment_translate: float = TrainerConfig.augment_translate
    #: Episode ends by the step limit bootstrap (done = terminated only); False: terminal.
    bootstrap_truncation: bool = TrainerConfig.bootstrap_truncation
    #: No Bellman target below the transition's own discounted return.
    mc_lower_bound: bool = TrainerConfig.mc_lower_bound
    #: The target is the transition's own discounted return (no bootstrap, no CEM).
    mc_targets: bool = TrainerConfig.mc_targets
    #: The same for the tasks matching these fnmatch patterns only (e.g. ["lift-*"]: Monte
    #: Carlo targets for the lift skill, Bellman targets for the others).
    mc_target_tasks: tuple[str, ...] = TrainerConfig.mc_target_tasks
    #: Weight of the auxiliary grasp loss (TrainerConfig.grasp_weight; 0 = off); a new
    #: network gets the grasp head it trains (QNetConfig.grasp_head).
    grasp_weight: float = TrainerConfig.grasp_weight
    #: A new network also gets the steps remaining, (step_horizon - t) / step_horizon, as a
    #: state input (resumed runs keep their network's setting).
    step_input: bool = False
    #: The cells' episode step limit (the policy's max_steps), the horizon of step_input.
    step_horizon: int = 20
    #: The camera the policy acts on (the policy node's policy_camera): its last frame in a
    #: bag is the episode's final observation.
    policy_camera: str = "overhead"
    #: Region of interest (x0, y0, x1, y1, fractions of the frame) the policy crops its camera
    #: frames to (the policy node's policy_roi): the bags' final frames are cropped alike.
    policy_roi: tuple[float, ...] = FULL_FRAME
    #: Frame of the bags' x/y moves (the policy node's action_frame: base or tool). Recorded in
    #: every checkpoint; a cell with another frame refuses the weights.
    action_frame: str = "base"
    #: CEM of the Bellman targets' max over next actions (QT-Opt's 64 / 6 / 2), separate from
    #: the policy node's CEM (config/policy.yaml cem_*).
    cem_population: int = DEFAULT_TARGET_CEM.population
    cem_elites: int = DEFAULT_TARGET_CEM.elites
    cem_iterations: int = DEFAULT_TARGET_CEM.iterations
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
        problem = accepted_closers_problem(self.accepted_closers)
        if problem:
            raise LearnerConfigError("accepted_closers", problem)
        for name in ("replay_gb", "poll_every_s", "status_every_s", "learning_rate"):
            if not getattr(self, name) > 0:
                raise LearnerConfigError(name, f"must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0:
            raise LearnerConfigError("gamma", f"must be in [0, 1], got {self.gamma}")
        check_learning_options(self, LearnerConfigError)
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

    def trainer_config(self, log_dir: str | None) -> TrainerConfig:
        """The Trainer's settings (no progress bar: a node logs status lines instead)."""
        return _trainer_config(self, log_dir=log_dir, log_every=self.log_every, progress=False)

    def qnet_step_horizon(self) -> int:
        """`QNetConfig.step_horizon` of a new network (0 = no step input)."""
        return _qnet_step_horizon(self)

    def qnet_options(self) -> tuple[str, ...]:
        """QNetConfig overrides of a new network: the grasp head when the grasp loss is on."""
        return _qnet_options(self, ())


# --- one offline run (mtopt-learn) ---------------------------------------------------------------


@dataclass(frozen=True)
class OfflineConfig:
    """One `mtopt-learn` run: ingest every complete bag of `bags` once, train to `steps`.

    Fields mirror the command-line options (`--batch-size` -> batch_size, `--lr` ->
    learning_rate, `--threads` -> threads, `--no-progress` -> progress=False).
    """

    #: Directory of episode bags.
    bags: Path
    #: Run directory (checkpoints/, logreplay/).
    out: Path
    #: Total training steps, resumed ones included.
    steps: int
    #: Continue from OUT/checkpoints/latest (without it an OUT holding checkpoints is refused).
    resume: bool = False
    impersonation: str = "skill"
    sampler: str = "rebalanced"
    #: sd: EpisodeInfo SD probabilities; oracle: simulator ground truth (sim only).
    labels: str = "sd"
    checkpoint_every: int = 1000
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    learning_rate: float = DEFAULT_LEARNING_RATE
    gamma: float = TrainerConfig.gamma
    #: Cosine decay of the learning rate over this many steps (None: over `steps`; 0: constant).
    lr_decay_steps: int | None = None
    lr_final_fraction: float = TrainerConfig.lr_final_fraction
    average_tau: float = OFFLINE_AVERAGE_TAU
    conservative_weight: float = DEFAULT_CONSERVATIVE_WEIGHT
    conservative_mode: str = TrainerConfig.conservative_mode
    conservative_anneal_steps: int = TrainerConfig.conservative_anneal_steps
    augment_shift_px: int = TrainerConfig.augment_shift_px
    augment_mirror: bool = TrainerConfig.augment_mirror
    augment_translate: float = TrainerConfig.augment_translate
    bootstrap_truncation: bool = TrainerConfig.bootstrap_truncation
    mc_lower_bound: bool = TrainerConfig.mc_lower_bound
    mc_targets: bool = TrainerConfig.mc_targets
    #: fnmatch patterns of the tasks with Monte Carlo targets (`--mc-target-task`).
    mc_target_tasks: tuple[str, ...] = TrainerConfig.mc_target_tasks
    grasp_weight: float = TrainerConfig.grasp_weight
    #: A new network gets the steps remaining of horizon `step_horizon` as an input.
    step_input: bool = False
    step_horizon: int = 20
    #: The policy's camera (its last frame in a bag is the final observation).
    policy_camera: str = "overhead"
    #: The policy's region of interest of the camera frame (the final frames are cropped so).
    policy_roi: tuple[float, ...] = FULL_FRAME
    #: The policy's action frame (recorded in the checkpoints; see LearnerConfig).
    action_frame: str = "base"
    #: Q-network preset of a new run (a resumed run keeps the checkpoint's architecture).
    net: str = DEFAULT_NET
    #: QNetConfig overrides of the preset for a new run, "KEY=VALUE" (e.g. "state_skip=false").
    net_options: tuple[str, ...] = ()
    #: Observation side [px] the recorded images are resized to (0: as recorded, the policy
    #: node's image_size; a resumed run takes its checkpoint's).
    image_size: int = 0
    cem_population: int = DEFAULT_TARGET_CEM.population
    cem_elites: int = DEFAULT_TARGET_CEM.elites
    cem_iterations: int = DEFAULT_TARGET_CEM.iterations
    sd_threshold: float = 0.5
    #: fnmatch patterns of EpisodeInfo.closed_by whose bags are used (`--accepted-closer`).
    accepted_closers: tuple[str, ...] = DEFAULT_ACCEPTED_CLOSERS
    #: Replay memory budget [GB].
    replay_gb: float = 2.0
    #: Task registry (None: config/tasks.yaml or $MTOPT_TASKS_FILE).
    tasks_file: str | None = None
    #: TensorBoard directory (None: no TensorBoard).
    log_dir: str | None = None
    #: torch CPU threads (0: torch's default).
    threads: int = 0
    #: tqdm progress bar while training.
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> OfflineConfig:
        """From `mtopt-learn`'s parsed options (`mtopt_learner.offline.build_parser`)."""
        return cls(
            bags=Path(args.bags),
            out=Path(args.out),
            steps=args.steps,
            resume=args.resume,
            impersonation=args.impersonation,
            sampler=args.sampler,
            labels=args.labels,
            checkpoint_every=args.checkpoint_every,
            batch_size=args.batch_size,
            seed=args.seed,
            learning_rate=args.lr,
            gamma=args.gamma,
            lr_decay_steps=args.lr_decay_steps,
            lr_final_fraction=args.lr_final_fraction,
            average_tau=args.average_tau,
            conservative_weight=args.conservative_weight,
            conservative_mode=args.conservative_mode,
            conservative_anneal_steps=args.conservative_anneal_steps,
            augment_shift_px=args.augment_shift_px,
            augment_mirror=args.augment_mirror,
            augment_translate=args.augment_translate,
            bootstrap_truncation=args.bootstrap_truncation,
            mc_lower_bound=args.mc_lower_bound,
            mc_targets=args.mc_targets,
            mc_target_tasks=tuple(args.mc_target_task or ()),
            grasp_weight=args.grasp_weight,
            step_input=args.step_input,
            step_horizon=args.step_horizon,
            policy_camera=args.policy_camera,
            policy_roi=tuple(args.policy_roi),
            action_frame=args.action_frame,
            net=args.net,
            net_options=tuple(args.net_option),
            image_size=args.image_size,
            cem_population=args.cem_population,
            cem_elites=args.cem_elites,
            cem_iterations=args.cem_iterations,
            sd_threshold=args.sd_threshold,
            accepted_closers=tuple(
                getattr(args, "accepted_closer", None) or DEFAULT_ACCEPTED_CLOSERS
            ),
            replay_gb=args.replay_gb,
            tasks_file=args.tasks_file,
            log_dir=args.log_dir,
            threads=args.threads,
            progress=not args.no_progress,
        )

    def validate(self) -> OfflineConfig:
        """Return self, or raise LearnError naming the bad setting."""
        if self.steps < 0:
            raise LearnError(f"--steps must be >= 0, got {self.steps}")
        if self.checkpoint_every < 1:
            raise LearnError(f"--checkpoint-every must be >= 1, got {self.checkpoint_every}")
        for name, allowed in (("sampler", SAMPLERS), ("labels", LABEL_SOURCES), ("net", NETS)):
            if getattr(self, name) not in allowed:
                raise LearnError(
                    f"--{name} must be one of {sorted(allowed)}, got {getattr(self, name)!r}"
                )
        try:
            parse_impersonation(self.impersonation)
        except argparse.ArgumentTypeError as exc:
            raise LearnError(f"--impersonation: {exc}") from None
        parse_net_options(self.net_options)  # raises LearnError naming a bad option
        if self.image_size != 0 and self.image_size < 8:
            raise LearnError(f"--image-size must be 0 or >= 8, got {self.image_size}")
        problem = accepted_closers_problem(self.accepted_closers)
        if problem:
            raise LearnError(f"--accepted-closer {problem}")
        check_learning_options(
            self, lambda name, problem: LearnError(f"--{name.replace('_', '-')} {problem}")
        )
        return self

    def trainer_config(self) -> TrainerConfig:
        """The Trainer's settings (TrainerConfig raises ValueError for bad values)."""
        return _trainer_config(
            self, log_dir=self.log_dir, progress=self.progress, lr_decay_steps=self.decay_steps
        )

    @property
    def decay_steps(self) -> int:
        """The steps the learning rate decays over: `lr_decay_steps`, or `steps` when None."""
        return self.steps if self.lr_decay_steps is None else self.lr_decay_steps

    def qnet_step_horizon(self) -> int:
        """`QNetConfig.step_horizon` of a new network (0 = no step input)."""
        return _qnet_step_horizon(self)

    def qnet_options(self) -> tuple[str, ...]:
        """QNetConfig overrides of a new network: `net_options`, and the grasp head when the
        grasp loss is on."""
        return _qnet_options(self, self.net_options)

    def replay_config(
        self, bag_dir: Path, out_dir: Path, image_size: int | None = None
    ) -> LogReplayConfig:
        """LogReplay over `bag_dir` with its state under `out_dir`/logreplay, observations
        resized to `image_size` px (None: as recorded)."""
        return LogReplayConfig(
            bag_dir=bag_dir,
            state_dir=out_dir / STATE_DIR,
            labels_source=self.labels,
            impersonation=parse_impersonation(self.impersonation),
            seed=self.seed,
            sampler=self.sampler,
            memory_budget_bytes=int(self.replay_gb * 1e9),
            sd_threshold=self.sd_threshold,
            image_size=image_size,
            policy_camera=self.policy_camera,
            policy_roi=self.policy_roi,
            accepted_closers=self.accepted_closers,
        )


def _trainer_config(settings: LearnerConfig | OfflineConfig, **overrides) -> TrainerConfig:
    """The TrainerConfig of the training fields LearnerConfig and OfflineConfig share."""
    fields = dict(
        batch_size=settings.batch_size,
        gamma=settings.gamma,
        learning_rate=settings.learning_rate,
        lr_decay_steps=settings.lr_decay_steps,
        lr_final_fraction=settings.lr_final_fraction,
        average_tau=settings.average_tau,
        cem=CEMConfig(settings.cem_population, settings.cem_elites, settings.cem_iterations),
        conservative_weight=settings.conservative_weight,
        conservative_mode=settings.conservative_mode,
        conservative_anneal_steps=settings.conservative_anneal_steps,
        augment_shift_px=settings.augment_shift_px,
        augment_mirror=settings.augment_mirror,
        augment_translate=settings.augment_translate,
        bootstrap_truncation=settings.bootstrap_truncation,
        mc_lower_bound=settings.mc_lower_bound,
        mc_targets=settings.mc_targets,
        mc_target_tasks=tuple(settings.mc_target_tasks),
        grasp_weight=settings.grasp_weight,
        seed=settings.seed,
        policy_settings=tuple(policy_settings_of(settings).items()),
    )
    return TrainerConfig(**{**fields, **overrides})


def _qnet_step_horizon(settings: LearnerConfig | OfflineConfig) -> int:
    return settings.step_horizon if settings.step_input else 0


def _qnet_options(settings: LearnerConfig | OfflineConfig, options) -> tuple[str, ...]:
    return (*options, "grasp_head=true") if settings.grasp_weight > 0 else tuple(options)
