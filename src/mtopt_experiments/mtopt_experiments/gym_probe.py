"""`python -m mtopt_experiments.gym_probe`: the lift-any learning loop in the gym env, no ROS.

    python -m mtopt_experiments.gym_probe [--episodes 600] [--steps 1500] [--rounds 0]
        [--round-episodes 300] [--epsilon 0.3] [--eval-episodes 60] [--seed 0] [--out DIR]

A fast diagnostic for the closed loop of `make demo` and mtopt_bringup's
`sim_learning.launch.yaml`: the same pieces (ReplayBuffer with impersonation and re-balancing,
QNet, Trainer with CEM targets, CEMPolicy), the same action space, policy camera and noisy scripted
pick (`aim="uniform"`, the policy node's), but episodes come straight from
`mtopt_sim.env.MTOptCell` (no DDS, no bags), so a data/training variant is measured in minutes.
Each round: collect (round 0: the scripted pick with probability `scripted_fraction`, else random;
later rounds: the current greedy CEM policy with a random step with probability `epsilon`), train
on everything collected (from scratch, or with `--warm-start` on from the previous round's
network, target networks and optimizer), then evaluate the greedy policy and the noisy scripted
pick from the same seeded starts and scenes. The learning options of `TrainerConfig` (image
augmentation, conservative penalty mode and anneal, truncation bootstrap), the step input, the
network's fusion layout, both CEMs and the policy camera's region of interest are flags, so an
ablation is one flag apart (`--help` lists them). Labels are the oracle's. Prints progress to
stderr and one JSON line per round to stdout; with `--out`, the run's settings (`config.json`),
the rounds' lines (`rounds.jsonl`), the last network (`qnet.ckpt`, loadable by the policy node)
and a plot (`probe.png`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.cem import CEMConfig, CEMPolicy
from mtopt_core.episode import Episode
from mtopt_core.images import FULL_FRAME, check_roi
from mtopt_core.impersonation import make_impersonation
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.replay import ReplayBuffer, ReplayConfig
from mtopt_core.trainer import CONSERVATIVE_MODES, Trainer, TrainerConfig
from mtopt_experiments.stats import paired_comparison, wilson_interval

TASK = "lift-any"


@dataclass(frozen=True)
class ProbeConfig:
    """One probe run.

    Fields:
        episodes: episodes collected before the first training (round 0).
        scripted_fraction: round 0: P(noisy scripted pick); else a random episode.
        random_terminate_prob: P(terminate bit) of a random action (the policy node's default).
        rounds: on-policy rounds after round 0 (collect with CEM + epsilon, retrain, evaluate).
        round_episodes: episodes collected per on-policy round.
        epsilon: on-policy rounds: P(random action) per step.
        steps: gradient steps per round's training.
        warm_start: round k trains on from round k-1's network, target networks and optimizer
            state (the cosine learning-rate decay then spans all rounds' steps); False trains a
            fresh network every round.
        batch_size: transitions per step.
        learning_rate: Adam learning rate.
        gamma: discount factor of the Bellman target.
        conservative_weight: `TrainerConfig.conservative_weight` (0 = no penalty).
        conservative_mode: `TrainerConfig.conservative_mode`: "absolute" (Q of random actions
            -> 0) or "relative" (CQL(H) on Q).
        conservative_anneal_steps: `TrainerConfig.conservative_anneal_steps` (0 = constant).
        augment_shift_px: `TrainerConfig.augment_shift_px`, DrQ random shift (0 = off).
        bootstrap_truncation: `TrainerConfig.bootstrap_truncation`: step-limit ends bootstrap.
        step_input: the network also gets the steps remaining, (max_steps - t) / max_steps.
        fuse_after_norm: the compact network adds the state after the first head GroupNorm
            (`QNetConfig.fuse_after_norm`); False = the original layout.
        target_cem_population, target_cem_elites, target_cem_iterations: the CEM of the
            Bellman targets (`TrainerConfig.cem`).
        policy_cem_population, policy_cem_elites, policy_cem_iterations: the CEM of the acting
            policy (collection and evaluation; the policy node's defaults).
        eval_episodes: evaluation episodes per round and policy.
        eval_epsilon: also evaluate CEM with this P(random action) per step (the policy node's
            `epsilon`, how learned episodes run on a cell); 0 = greedy only.
        eval_scene_seed: evaluation episode k respawns the scene from seed eval_scene_seed + k
            (another value = another evaluation set, e.g. to re-check a network on fresh
            scenes with `--weights`).
        max_steps: episode step limit (12, the policy node's default when
            docs/results/gym_probe.md was measured).
        image_size: policy camera image side [px].
        policy_roi: region of interest (x0, y0, x1, y1, fractions) of the policy camera frame
            (`EnvConfig.policy_roi`; the full frame by default).
        policy_frame_size: side of the camera frame the ROI is cut from [px]
            (`EnvConfig.policy_frame_size`; 0 = image_size).
        respawn_every: a fresh scene every this many episodes.
        impersonation: `make_impersonation` spec.
        sampler: "rebalanced" or "uniform".
        seed: seeds scenes, policies, network and sampling.
    """

    episodes: int = 600
    scripted_fraction: float = 0.8
    random_terminate_prob: float = 0.1
    rounds: int = 0
    round_episodes: int = 300
    epsilon: float = 0.3
    steps: int = 1500
    warm_start: bool = False
    batch_size: int = 64
    learning_rate: float = 1e-3
    gamma: float = 0.9
    conservative_weight: float = 0.0
    conservative_mode: str = "absolute"
    conservative_anneal_steps: int = 0
    augment_shift_px: int = 0
    bootstrap_truncation: bool = False
    step_input: bool = False
    fuse_after_norm: bool = True
    target_cem_population: int = 16
    target_cem_elites: int = 2
    target_cem_iterations: int = 2
    policy_cem_population: int = CEMConfig.population
    policy_cem_elites: int = CEMConfig.elites
    policy_cem_iterations: int = CEMConfig.iterations
    eval_episodes: int = 60
    eval_epsilon: float = 0.1
    eval_scene_seed: int = 90_000
    max_steps: int = 12
    image_size: int = 64
    policy_roi: tuple[float, ...] = FULL_FRAME
    policy_frame_size: int = 0
    respawn_every: int = 10
    impersonation: str = "orig"
    sampler: str = "rebalanced"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("episodes", "steps", "batch_size", "eval_episodes", "max_steps",
                     "respawn_every"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rounds", "round_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.conservative_weight < 0:
            raise ValueError(f"conservative_weight must be >= 0, got {self.conservative_weight}")
        if self.conservative_mode not in CONSERVATIVE_MODES:
            raise ValueError(
                f"conservative_mode must be one of {list(CONSERVATIVE_MODES)}, got "
                f"{self.conservative_mode!r}"
            )
        for name in ("conservative_anneal_steps", "augment_shift_px", "policy_frame_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        object.__setattr__(self, "policy_roi", check_roi(self.policy_roi, "policy_roi"))
        self.target_cem(), self.policy_cem()  # CEMConfig names a bad value
        for name in ("scripted_fraction", "random_terminate_prob", "epsilon", "gamma",
                     "eval_epsilon"):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def target_cem(self) -> CEMConfig:
        """The CEM of the Bellman targets."""
        return CEMConfig(
            self.target_cem_population, self.target_cem_elites, self.target_cem_iterations
        )

    def policy_cem(self) -> CEMConfig:
        """The CEM of the acting policy (collection and evaluation)."""
        return CEMConfig(
            self.policy_cem_population, self.policy_cem_elites, self.policy_cem_iterations
        )

    def trainer_config(self) -> TrainerConfig:
        """The Trainer's settings; with `warm_start` the learning rate decays over all rounds."""
        rounds = self.rounds + 1 if self.warm_start else 1
        return TrainerConfig(
            batch_size=self.batch_size, learning_rate=self.learning_rate,
            lr_decay_steps=self.steps * rounds, cem=self.target_cem(), seed=self.seed,
            progress=False, gamma=self.gamma, conservative_weight=self.conservative_weight,
            conservative_mode=self.conservative_mode,
            conservative_anneal_steps=self.conservative_anneal_steps,
            augment_shift_px=self.augment_shift_px,
            bootstrap_truncation=self.bootstrap_truncation,
        )  # fmt: skip

    def qnet_config(self, num_tasks: int) -> QNetConfig:
        """The compact network with this run's step input and fusion layout."""
        return QNetConfig.compact(
            num_tasks, image_size=self.image_size, fuse_after_norm=self.fuse_after_norm,
            step_horizon=self.max_steps if self.step_input else 0,
        )  # fmt: skip


def scripted_pick(rng: np.random.Generator):
    """The policy node's scripted pick: uniform start over the right bin, default noise."""
    from mtopt_sim.scripted import ScriptedPick, pick_config  # loads MuJoCo: only when used

    return ScriptedPick(dataclasses.replace(pick_config(noisy=True), aim="uniform"), rng=rng)


class Probe:
    """Collects episodes in one env, trains, evaluates (see the module docstring)."""

    def __init__(self, config: ProbeConfig, log=print):
        from mtopt_policy.policy import RandomActions
        from mtopt_sim.env import EnvConfig, MTOptCell  # loads MuJoCo: only when used

        self.config = config
        self.log = log
        self.env = MTOptCell(EnvConfig(
            image_size=config.image_size, max_steps=config.max_steps,
            policy_roi=config.policy_roi, policy_frame_size=config.policy_frame_size,
        ))  # fmt: skip
        self.registry = self.env.registry
        self.task_index = self.registry.index(TASK)
        self.rng = np.random.default_rng(config.seed)  # scenes, starts, episode kinds
        # Exploration draws have their own generator, so a greedy and a scripted evaluation
        # consume `rng` alike and see the same starts.
        self.explore_rng = np.random.default_rng(config.seed + 7)
        # The policy node's random actions (random episodes and epsilon exploration).
        self.random_actions = RandomActions(self.explore_rng, config.random_terminate_prob)
        self.scripted = scripted_pick(self.rng)
        self.episodes: list[Episode] = []
        self.net: QNet | None = None
        self.trainer: Trainer | None = None
        self.replay: ReplayBuffer | None = None
        self._in_replay = 0  # episodes already in `replay` (warm start adds the rest)
        self._relabel_rng = np.random.default_rng(config.seed)
        self._count = 0

    def close(self) -> None:
        self.env.close()

    # -- episodes ---------------------------------------------------------------------------
    def run_episode(self, kind: str, policy: CEMPolicy | None = None, epsilon: float = 0.0,
                    scene_seed: int | None = None) -> tuple[Episode, bool]:  # fmt: skip
        """One lift-any episode by `kind` ("scripted", "random" or "cem")."""
        env, cfg = self.env, self.config
        if scene_seed is not None:
            env.respawn(scene_seed)
        elif self._count % cfg.respawn_every == 0:
            env.respawn(int(self.rng.integers(2**31)))
        self._count += 1
        options = self.scripted.start_options(env)  # the same starts for every kind
        obs, _ = env.reset(options={**options, "task": TASK})
        images, closed, height, detected, actions = [], [], [], [], []

        def observe(obs) -> None:
            images.append(obs["image"])
            closed.append(bool(obs["gripper_closed"]))
            height.append(float(obs["gripper_height"][0]))
            detected.append(bool(obs["object_detected"]))

        while True:
            observe(obs)
            if kind == "scripted":
                action = self.scripted.act(obs)
            elif kind == "random" or (epsilon > 0 and self.explore_rng.random() < epsilon):
                action = self.random_actions.sample(closed[-1], height[-1])
            else:
                action, _ = policy.act(
                    obs["image"][None], [closed[-1]], [height[-1]], [self.task_index],
                    [detected[-1]], [len(actions)],
                )  # fmt: skip
                action = action[0]
            actions.append(np.asarray(action, np.float32))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        observe(obs)  # the final observation
        labels = dict(info["oracle"])
        episode = Episode(
            images=np.stack(images), gripper_closed=np.array(closed), height=np.array(height),
            actions=np.stack(actions), task=TASK, labels=labels,
            episode_id=f"probe{self._count}", object_detected=np.array(detected),
        )  # fmt: skip
        return episode, bool(labels[TASK])

    def collect(self, n: int, round_index: int) -> float:
        """Collect n episodes for this round; returns their lift-any rate."""
        cfg = self.config
        policy = None
        if round_index > 0:
            policy = CEMPolicy(self.net, cfg.policy_cem(), seed=cfg.seed + round_index)
        successes, start = 0, time.perf_counter()
        for i in range(n):
            if round_index == 0:
                kind = "scripted" if self.rng.random() < cfg.scripted_fraction else "random"
                episode, ok = self.run_episode(kind)
            else:
                episode, ok = self.run_episode("cem", policy, cfg.epsilon)
            self.episodes.append(episode)
            successes += ok
            if (i + 1) % 50 == 0 or i + 1 == n:
                self.log(f"round {round_index}: collected {i + 1}/{n} "
                         f"({successes} lifts, {time.perf_counter() - start:.0f} s)")  # fmt: skip
        return successes / max(1, n)

    # -- learning ---------------------------------------------------------------------------
    def train(self) -> dict:
        """Train on every episode collected so far: a fresh network, or (`warm_start`, after
        the first round) the previous round's trainer with the new episodes added."""
        cfg = self.config
        names = self.registry.names
        if not cfg.warm_start or self.trainer is None:
            self.replay = ReplayBuffer(names, ReplayConfig(
                memory_budget_bytes=2 * 1024**3, sampler=cfg.sampler, seed=cfg.seed,
            ))  # fmt: skip
            self._in_replay = 0
            self._relabel_rng = np.random.default_rng(cfg.seed)
            torch.manual_seed(cfg.seed)
            net = QNet(cfg.qnet_config(len(names)))
            self.trainer = Trainer(net, self.replay, cfg.trainer_config())
        impersonation = make_impersonation(cfg.impersonation, self.registry)
        for episode in self.episodes[self._in_replay :]:
            self.replay.add_episode(episode, impersonation, self._relabel_rng)
        self._in_replay = len(self.episodes)
        trainer, net = self.trainer, self.trainer.qnet
        start, losses = time.perf_counter(), []
        for step in range(cfg.steps):
            losses.append(float(trainer.step()["loss"]))
            if (step + 1) % 250 == 0 or step + 1 == cfg.steps:
                self.log(f"  step {step + 1}/{cfg.steps}: loss {np.mean(losses[-50:]):.4f} "
                         f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
        trainer.close()
        net.eval()
        self.net = net
        return {"final_loss": round(float(np.mean(losses[-50:])), 4),
                "train_s": round(time.perf_counter() - start, 1),
                "trainer_steps": trainer.step_count}  # fmt: skip

    def _seed(self, scene_seed: int, explore_seed: int) -> None:
        """Fresh generators for scenes/starts (scripted pick too) and for exploration."""
        self.rng = np.random.default_rng(scene_seed)
        self.scripted.rng = self.rng
        self.explore_rng = np.random.default_rng(explore_seed)
        self.random_actions.rng = self.explore_rng

    def evaluate(self, round_index: int) -> dict:
        """Greedy CEM, CEM with `eval_epsilon` exploration (as the policy node runs it) and the
        noisy scripted pick, each on the same seeded scenes and starts."""
        cfg = self.config
        runs = [("learned", "cem", 0.0), ("scripted", "scripted", 0.0)]
        if cfg.eval_epsilon > 0:
            runs.insert(1, ("learned_eps", "cem", cfg.eval_epsilon))
        result: dict = {"eval_episodes": cfg.eval_episodes, "eval_epsilon": cfg.eval_epsilon,
                        "eval_scene_seed": cfg.eval_scene_seed}  # fmt: skip
        for key, kind, epsilon in runs:
            self._seed(10_000 + cfg.seed, 20_000 + cfg.seed)  # same starts for every run
            policy = None
            if kind == "cem":
                policy = CEMPolicy(self.net, cfg.policy_cem(), seed=cfg.seed)
            scene_seeds = range(cfg.eval_scene_seed, cfg.eval_scene_seed + cfg.eval_episodes)
            outcomes = "".join(
                str(int(self.run_episode(kind, policy, epsilon, scene_seed=seed)[1]))
                for seed in scene_seeds
            )
            result[f"{key}_lifts"] = outcomes.count("1")
            # per evaluation episode, in order: 1 = lifted (same scene and start for every run)
            result[f"{key}_outcomes"] = outcomes
        self._seed(cfg.seed + 1 + round_index, cfg.seed + 7 + round_index)
        result.update(paired_comparison(result["learned_outcomes"], result["scripted_outcomes"]))
        n = cfg.eval_episodes
        eps = (f", CEM with epsilon {cfg.eval_epsilon} {result['learned_eps_lifts']}/{n}"
               if cfg.eval_epsilon > 0 else "")  # fmt: skip
        self.log(f"round {round_index}: greedy CEM lifted {result['learned_lifts']}/{n}{eps}, "
                 f"noisy scripted {result['scripted_lifts']}/{n} "
                 f"(paired McNemar p = {result['mcnemar_p']:.3g})")  # fmt: skip
        return result


def plot_rounds(results: list[dict], path: Path) -> Path:
    """probe.png: lift-any rate per round (greedy CEM, noisy scripted, while collecting; 95 %
    Wilson intervals) and the running rate over the last round's evaluation episodes."""
    import matplotlib  # only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    rounds = [r["round"] for r in results]
    series = [("learned", "greedy CEM (learned)", "tab:red"),
              ("scripted", "noisy scripted pick", "tab:blue")]  # fmt: skip
    if "learned_eps_lifts" in results[-1]:
        eps = results[-1]["eval_epsilon"]
        series.insert(1, ("learned_eps", f"CEM + epsilon {eps} (learned)", "tab:orange"))
    offsets = np.linspace(-0.15, 0.15, len(series))
    for (key, label, color), dx in zip(series, offsets, strict=True):
        rates, lows, highs = [], [], []
        for r in results:
            k, n = r[f"{key}_lifts"], r["eval_episodes"]
            lo, hi = wilson_interval(k, n)
            rates.append(k / n)
            lows.append(k / n - lo)
            highs.append(hi - k / n)
        left.errorbar([x + dx for x in rounds], rates, yerr=[lows, highs], fmt="o", capsize=4,
                      color=color, label=label)  # fmt: skip
    left.plot(rounds, [r["collect_lift_rate"] for r in results], "s--", color="tab:gray",
              label="while collecting")  # fmt: skip
    left.set_xticks(rounds)
    left.set_xlabel("round (0: offline data; later: on-policy data added, retrained)")
    left.set_ylabel("lift-any success (sim oracle)")
    left.set_ylim(0, 1)
    left.legend()
    left.set_title(f"Evaluation: {results[-1]['eval_episodes']} episodes per policy and round")
    last = results[-1]
    for key, label, color in series:
        outcomes = np.array([int(c) for c in last[f"{key}_outcomes"]])
        running = np.cumsum(outcomes) / np.arange(1, len(outcomes) + 1)
        right.plot(np.arange(1, len(outcomes) + 1), running, color=color,
                   label=f"{label}: {outcomes.sum()}/{len(outcomes)}")  # fmt: skip
    right.set_xlabel("evaluation episode (same scene and start for every policy)")
    right.set_ylabel("running lift-any success")
    right.set_ylim(0, 1)
    right.legend()
    right.set_title(f"Round {last['round']}: running success")
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(config: ProbeConfig, out: Path | None = None, log=print) -> list[dict]:
    probe = Probe(config, log)
    results = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        settings = json.dumps(dataclasses.asdict(config), indent=1) + "\n"
        atomic_write_bytes(out / "config.json", settings.encode())
    try:
        for round_index in range(config.rounds + 1):
            n = config.episodes if round_index == 0 else config.round_episodes
            collect_rate = probe.collect(n, round_index)
            summary = {"round": round_index, "episodes": len(probe.episodes),
                       "collect_lift_rate": round(collect_rate, 4)}  # fmt: skip
            summary.update(probe.train())
            summary.update(probe.evaluate(round_index))
            print(json.dumps(summary), flush=True)
            results.append(summary)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                lines = "".join(json.dumps(r) + "\n" for r in results)
                atomic_write_bytes(out / "rounds.jsonl", lines.encode())
                probe.trainer.save_checkpoint(out / "qnet.ckpt", training_state=False)
                plot_rounds(results, out / "probe.png")
    finally:
        probe.close()
    return results


def evaluate_checkpoint(config: ProbeConfig, weights: Path, log=print) -> dict:
    """Evaluate a saved Q-network (e.g. a probe's `qnet.ckpt`) against the noisy scripted pick
    on the evaluation set of `config` (no collection, no training)."""
    from mtopt_core.checkpoint import qnet_from_checkpoint

    probe = Probe(config, log)
    try:
        net, ckpt = qnet_from_checkpoint(weights, probe.registry.names)
        probe.net = net.eval()
        result = {"weights": str(weights), "weights_step": ckpt.step}
        result.update(probe.evaluate(0))
    finally:
        probe.close()
    print(json.dumps(result), flush=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtopt_experiments.gym_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    for field in dataclasses.fields(ProbeConfig):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):  # --warm-start / --no-warm-start
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        elif isinstance(field.default, tuple):
            p.add_argument(flag, type=float, nargs=len(field.default), default=field.default,
                           metavar=("X0", "Y0", "X1", "Y1"))  # fmt: skip
        elif field.name == "conservative_mode":
            p.add_argument(flag, choices=CONSERVATIVE_MODES, default=field.default)
        else:
            p.add_argument(flag, type=type(field.default), default=field.default)
    p.add_argument(
        "--out", type=Path, default=None,
        help="write config.json, rounds.jsonl, qnet.ckpt and probe.png here",
    )  # fmt: skip
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="CKPT",
        help="only evaluate this Q-network checkpoint (the eval_* options apply)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeConfig)}
    values["policy_roi"] = tuple(values["policy_roi"])
    try:
        config = ProbeConfig(**values)
        log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        if args.weights is not None:
            evaluate_checkpoint(config, args.weights, log)
        else:
            run(config, args.out, log)
    except ValueError as exc:  # CheckpointError is a ValueError too
        print(f"gym_probe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
