"""`mtopt-train-sim`: closed-loop multi-task QT-Opt on simulated cells, in rounds of
collect -> learn -> evaluate, with a learning curve.

    mtopt-train-sim --out runs/lift            # the lift-any recipe (defaults)
    mtopt-train-sim --out runs/lift            # resumes after a kill
    mtopt-train-sim --out runs/lift --episodes 24000 --rounds 2    # extends by one round

The defaults are the lift-any recipe of docs/results/learning.md: 12 000
episodes of the cells' mix and 12 000 steps, then one round of 6000 CEM episodes and 18 000
steps from scratch; 64 px of the wrist camera's 96 px frame, moves in the gripper's frame;
Monte Carlo targets (the discounted return) for the lift tasks, Bellman targets for the others
(`--learn 'mc_target_tasks=[]'`: Bellman targets for every task).

* **round 0** collects `--initial-episodes` with the cells' mix before any weights exist
  (noisy scripted and random episodes, `mtopt-sim-collect`), then trains `--initial-steps`;
* **round r >= 1** collects (episodes - initial-episodes) / rounds more with CEM on round
  r - 1's network (`--epsilon` per step, `--scripted-fraction` of the episodes scripted),
  then trains a new network from scratch over all bags to the round's step total
  (initial-steps + r x steps-per-round) with the learning-rate schedule over that total
  (`--round-start scratch`, the default; `learn/rNN/`); `--round-start warm` instead ingests
  the new bags into the same replay and trains `--steps-per-round` more steps on the same
  network, target networks and optimizer (`learn/`);
* **every round** ends with the paired evaluator (`mtopt-eval`) on the same fixed scenes
  (`--eval-seed`, never training scenes): the round's network against the noisy scripted
  policy, judged by the oracle.

Everything lives in OUT: `bags/` (episode bags), `learn/rNN/` (the round's checkpoints and
replay ledger; `learn/` with `--round-start warm`),
`rounds/rNN/` (the round's `qnet.ckpt` + `.sha256`, `eval/` report, `round.json`),
`curve.csv` + `curve.png` (success vs episodes collected, per task, with 95 % Wilson
intervals), `tensorboard/` (training scalars, `eval/<task>/*` per round), `config.json`.

Resumable: every stage is idempotent (collection tops the bag count up, training continues
from the newest checkpoint to the round's step target, a round with `round.json` is done), so
the same command after a kill goes on where it stopped; a larger --rounds/--episodes extends a
finished run. Other settings must match config.json (a mismatch is refused, naming the keys).
Wall time (`elapsed_s` in round.json and the curve) counts the time of every invocation,
also of one stopped in the middle of a round (`unfinished_round.json` carries its stage
times to the invocation that finishes the round).

Learner settings: the defaults below are the configuration measured in
docs/results/learning.md; `--learn KEY=VALUE` sets any `mtopt_learner.config.OfflineConfig`
field (e.g. `--learn net=small --learn batch_size=128`). As in mtopt-learn, the learning rate
decays over each round's step total (warm: over the whole run's) and the checkpoints act with
a moving average of the weights (`--learn lr_decay_steps=0 --learn average_tau=0` for a
constant rate and the online weights). Policy node parameters (`--policy-param`, as
mtopt-eval's; given, they replace the default list) apply to collection and evaluation alike;
`policy_roi`, `policy_camera` and `action_frame` are also given to the learner (and recorded
in its checkpoints), and `image_size` too unless `--learn image_size` is given.

Progress (stage lines, the collector's and trainer's bars) goes to stderr; the summary is ONE
JSON line on stdout. Exit status 2 for a bad option or a refused resume, 1 when a stage failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_experiments.evaluate import EvalConfig, evaluate, parse_policy_params
from mtopt_experiments.stats import wilson_interval
from mtopt_learner.config import OfflineConfig
from mtopt_policy.config import CollectorConfig

PROG = "mtopt-train-sim"
#: Learner settings of the closed loop unless --learn overrides them (OfflineConfig fields).
#: (The training values are the learner's own defaults, `mtopt_learner.config.DEFAULT_*`.)
DEFAULT_LEARN: dict[str, Any] = {
    "labels": "oracle",
    "checkpoint_every": 1000,
    "replay_gb": 6.0,
    "net_options": ("state_skip=false",),
    # The lift tasks regress their returns, the others keep the Bellman backup: on two sets of
    # 18 000 bags 204 and 194 of 300 lifts against 125 and 185 with Bellman targets for all
    # (docs/results/learning.md, "Monte Carlo targets for the lift skill").
    "mc_target_tasks": ("lift-*",),
}
#: The policy of the released lift network: 64 px of the wrist camera's frame, moves in the
#: gripper's frame (docs/results/learning.md).
DEFAULT_POLICY_PARAMS: tuple[tuple[str, Any], ...] = (
    ("image_size", 64), ("policy_camera", "wrist"), ("action_frame", "tool"),
)  # fmt: skip
#: Per-task fields of the evaluation in the summary line.
SUMMARY_KEYS = ("episodes", "learned", "learned_rate", "scripted", "scripted_rate", "mcnemar_p")
#: Settings a resumed run may change (everything else must match config.json).
EXTENSIBLE = ("episodes", "rounds", "workers", "threads", "progress")
#: How a round's training starts: from the previous round's network or from scratch.
ROUND_STARTS = ("warm", "scratch")
#: `mtopt_sim.guided.GUIDED_AIMS` (not imported here: mtopt_sim loads MuJoCo).
GUIDED_AIMS = ("commanded", "nearest")
#: The value a run started before a setting existed had (its config.json lacks the key).
LEGACY_DEFAULTS: dict[str, Any] = {"round_start": "warm"}


class TrainSimError(ValueError):
    """A bad option or a refused resume (exit status 2); the message says which and why."""


@dataclass(frozen=True)
class TrainSimConfig:
    """One closed-loop run (the command line's options; see the module docstring)."""

    out: Path
    tasks: tuple[str, ...] = ("lift-any",)
    #: Total episodes collected by the end of the last round.
    episodes: int = 18000
    rounds: int = 1
    initial_episodes: int = 12000
    initial_steps: int = 12000
    steps_per_round: int = 6000
    epsilon: float = 0.2
    scripted_fraction: float = 0.2
    #: P(guided pick) per lift episode in every round (`mtopt_sim.guided`; 0: none).
    guided_fraction: float = 0.0
    #: P(a guided pick is a decoy aimed at a random point of the bin; `mtopt_sim.guided`).
    guided_decoy_fraction: float = 0.0
    #: What a lift-X episode's guided pick aims at (`mtopt_sim.guided.GUIDED_AIMS`).
    guided_aim: str = "commanded"
    #: P(a lift draw becomes a privileged grasp + place episode) in every round (sim only).
    place_start_fraction: float = 0.0
    workers: int = 2
    camera_size: int = 96
    eval_episodes: int = 100
    eval_seed: int = 1000
    seed: int = 0
    #: Policy node parameters for collection and evaluation ((name, value), ...).
    policy_params: tuple[tuple[str, Any], ...] = DEFAULT_POLICY_PARAMS
    #: Collector node parameters for collection ((name, value), ...) over the simulated cell's
    #: (e.g. reset_every=1 with respawn_below=1000: every episode on a freshly spawned bin).
    collector_params: tuple[tuple[str, Any], ...] = ()
    #: OfflineConfig fields over DEFAULT_LEARN ((name, value), ...).
    learn: tuple[tuple[str, Any], ...] = ()
    #: "warm": every round continues one network; "scratch": each round trains a new one
    #: over all bags to steps_after(round) (learn/rNN/).
    round_start: str = "scratch"
    #: torch threads while training (0: torch's default).
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise TrainSimError(f"--rounds must be >= 0, got {self.rounds}")
        if not 1 <= self.initial_episodes <= self.episodes:
            raise TrainSimError(
                f"--initial-episodes must be in 1..--episodes ({self.episodes}), got "
                f"{self.initial_episodes}"
            )
        if self.rounds and self.episodes_per_round < 1:
            raise TrainSimError(
                f"--episodes {self.episodes} leaves no episodes for {self.rounds} rounds after "
                f"--initial-episodes {self.initial_episodes}"
            )
        for name in ("initial_steps", "steps_per_round", "eval_episodes", "workers"):
            if getattr(self, name) < 1:
                raise TrainSimError(f"--{name.replace('_', '-')} must be >= 1")
        for name in (
            "epsilon", "scripted_fraction", "guided_fraction", "guided_decoy_fraction",
            "place_start_fraction",
        ):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TrainSimError(f"--{name.replace('_', '-')} must be in [0, 1]")
        if self.guided_aim not in GUIDED_AIMS:
            raise TrainSimError(f"--guided-aim must be one of {', '.join(GUIDED_AIMS)}")
        if not self.tasks:
            raise TrainSimError("--tasks: give at least one task")
        if self.round_start not in ROUND_STARTS:
            raise TrainSimError(
                f"--round-start must be one of {', '.join(ROUND_STARTS)}, got {self.round_start!r}"
            )
        known = {f.name for f in dataclasses.fields(CollectorConfig)}
        for name, _ in self.collector_params:
            if name not in known:
                raise TrainSimError(
                    f"--collector-param {name}: not a collector parameter; known: {sorted(known)}"
                )

    @property
    def episodes_per_round(self) -> int:
        return (self.episodes - self.initial_episodes) // self.rounds if self.rounds else 0

    def episodes_after(self, round_index: int) -> int:
        """Episodes in bags/ once round `round_index` has collected."""
        if round_index == self.rounds:
            return self.episodes  # the last round takes the remainder
        return self.initial_episodes + round_index * self.episodes_per_round

    def steps_after(self, round_index: int) -> int:
        return self.initial_steps + round_index * self.steps_per_round

    @property
    def policy_roi(self) -> tuple[float, ...] | None:
        for name, value in self.policy_params:
            if name == "policy_roi":
                return tuple(float(v) for v in value)
        return None

    def policy_param(self, key: str) -> str | None:
        return next((str(v) for name, v in self.policy_params if name == key), None)

    def learn_dir(self, round_index: int) -> Path:
        """The learner's output directory for a round (one for all rounds when warm)."""
        if self.round_start == "scratch":
            return self.out / "learn" / f"r{round_index:02d}"
        return self.out / "learn"

    def offline_config(self, resume: bool, round_index: int | None = None) -> OfflineConfig:
        """The learner's settings: DEFAULT_LEARN, then --learn, then the loop's own paths. Warm
        rounds share one session to the last round's step total; from scratch, round
        `round_index` (default: the last) trains its own to its own total."""
        fields = {f.name: f for f in dataclasses.fields(OfflineConfig)}
        values = dict(DEFAULT_LEARN)
        if self.policy_param("image_size") is not None:  # what the policy sees; --learn wins
            values["image_size"] = int(self.policy_param("image_size"))
        for name, value in self.learn:
            if name not in fields or name in ("bags", "out", "steps", "resume"):
                settable = sorted(set(fields) - {"bags", "out", "steps", "resume"})
                raise TrainSimError(f"--learn {name}: not a learner setting; known: {settable}")
            values[name] = _coerce(name, value, values.get(name, fields[name].default))
        if self.policy_roi is not None:
            values["policy_roi"] = self.policy_roi
        for key in ("policy_camera", "action_frame"):
            if self.policy_param(key) is not None:
                values[key] = self.policy_param(key)
        r = self.rounds if round_index is None else round_index
        warm = self.round_start == "warm"
        log_dir = self.out / "tensorboard" if warm else self.out / "tensorboard" / f"r{r:02d}"
        values.update(
            bags=self.out / "bags", out=self.learn_dir(r),
            steps=self.steps_after(self.rounds if warm else r), resume=resume,
            log_dir=str(log_dir), threads=self.threads, progress=self.progress,
        )  # fmt: skip
        return OfflineConfig(**values)

    def identity(self) -> dict[str, Any]:
        """config.json: what a resumed run must agree on."""
        data = dataclasses.asdict(self)
        data["out"] = str(self.out)
        data["tasks"] = list(self.tasks)
        data["policy_params"] = [[k, v] for k, v in self.policy_params]
        data["learn"] = [[k, v] for k, v in self.learn]
        data["collector_params"] = [[k, v] for k, v in self.collector_params]
        return data


def _coerce(name: str, value: Any, default: Any) -> Any:
    """A --learn value (parsed YAML) as the type of the setting's default ("1e-3" -> 0.001)."""
    if isinstance(default, bool) or default is None or isinstance(value, type(default)):
        return value
    try:
        if isinstance(default, tuple):
            items = [value] if isinstance(value, str) else value  # "lift-*": one item
            return tuple(float(v) if isinstance(v, int | float) else v for v in items)
        return type(default)(value)
    except (TypeError, ValueError):
        raise TrainSimError(
            f"--learn {name}={value!r}: must be of type {type(default).__name__}"
        ) from None


@dataclass
class RoundRecord:
    """round.json: what one round did and measured."""

    round: int
    episodes: int  # bags in bags/ after this round's collection
    steps: int  # learner steps after this round's training
    checkpoint: str
    sha256: str
    collected: dict[str, Any]
    eval: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0  # wall time of the run up to the end of this round


# --------------------------------------------------------------------------------- stages
class ClosedLoop:
    """Runs (or resumes) the rounds of one TrainSimConfig."""

    def __init__(self, config: TrainSimConfig, log: Callable[[str], None] | None = None):
        self.config = config
        self.out = Path(config.out)
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.session = None  # mtopt_learner.offline.OfflineSession once bags exist
        self.tensorboard = None

    # -- setup ----------------------------------------------------------------------------
    def check_config(self) -> None:
        """Write config.json, or refuse a resume whose settings differ from it; refuse bad
        learner settings before any work."""
        self.config.offline_config(resume=False).validate()
        path = self.out / "config.json"
        mine = self.config.identity()
        if path.exists():
            theirs = json.loads(path.read_text())
            # A setting added after the run started counts as the value runs had before it.
            defaults = {
                f.name: f.default
                for f in dataclasses.fields(TrainSimConfig)
                if f.default is not dataclasses.MISSING and not isinstance(f.default, Path)
            }
            defaults.update(LEGACY_DEFAULTS)
            differ = sorted(
                k for k in set(mine) | set(theirs)
                if k not in EXTENSIBLE
                and json.dumps(mine.get(k)) != json.dumps(theirs.get(k, defaults.get(k)))
            )  # fmt: skip
            if differ:
                raise TrainSimError(
                    f"{path} was written with other settings ({', '.join(differ)}): resume with"
                    " the same options (only " + ", ".join(EXTENSIBLE) + " may change) or "
                    "choose another --out"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(mine, indent=1) + "\n").encode())
        params = {"/**/policy": {"ros__parameters": dict(self.config.policy_params)}}
        if self.config.collector_params:
            params["/**/collector"] = {"ros__parameters": dict(self.config.collector_params)}
        atomic_write_bytes(self.params_file, yaml.safe_dump(params).encode())

    @property
    def params_file(self) -> Path:
        return self.out / "node_params.yaml"

    def round_dir(self, round_index: int) -> Path:
        return self.out / "rounds" / f"r{round_index:02d}"

    def done_rounds(self) -> list[RoundRecord]:
        records = []
        for r in range(self.config.rounds + 1):
            path = self.round_dir(r) / "round.json"
            if not path.exists():
                break
            records.append(RoundRecord(**json.loads(path.read_text())))
        return records

    # -- the stages -----------------------------------------------------------------------
    def collect(self, round_index: int) -> dict[str, Any]:
        from mtopt_sim.bulk_collect import CollectConfig, collect

        cfg = self.config
        weights = ""
        if round_index > 0:
            weights = str(self.round_dir(round_index - 1) / "qnet.ckpt")
        target = cfg.episodes_after(round_index)
        self.log(
            f"{PROG}: round {round_index}/{cfg.rounds}: collect up to {target} episodes "
            + (f"(CEM on r{round_index - 1:02d}, epsilon {cfg.epsilon}, scripted fraction "
               f"{cfg.scripted_fraction})" if weights else "(no weights yet)")
        )  # fmt: skip
        result = collect(
            CollectConfig(
                episodes=target, out=self.out / "bags", workers=cfg.workers, seed=cfg.seed,
                weights=weights,
                epsilon=cfg.epsilon if weights else None,
                scripted_fraction=cfg.scripted_fraction if weights else None,
                guided_fraction=cfg.guided_fraction,
                guided_decoy_fraction=cfg.guided_decoy_fraction,
                guided_aim=cfg.guided_aim,
                place_start_fraction=cfg.place_start_fraction,
                tasks=cfg.tasks, camera_size=cfg.camera_size,
                params_files=(str(self.params_file),), progress=cfg.progress,
            )
        )  # fmt: skip
        return result.summary

    def learn(self, round_index: int) -> tuple[str, str]:
        """Ingest new bags and train to the round's step target; (checkpoint, sha256) of the
        round's network, copied to rounds/rNN/qnet.ckpt."""
        from mtopt_learner.checkpoints import latest_checkpoint
        from mtopt_learner.offline import OfflineSession

        cfg = self.config
        learn_dir = cfg.learn_dir(round_index)
        if cfg.round_start == "scratch" and self.session is not None:
            self.session.close()  # the previous round's network and replay
            self.session = None
        if self.session is None:
            resume = latest_checkpoint(learn_dir) is not None
            self.session = OfflineSession(cfg.offline_config(resume, round_index))
        else:
            self.session.ingest()
        steps = cfg.steps_after(round_index)
        start = "from scratch" if cfg.round_start == "scratch" else "warm"
        self.log(f"{PROG}: round {round_index}/{cfg.rounds}: train to step {steps} ({start})")
        source = self.session.train_to(steps)
        if source is None:  # a resumed session already at the target wrote nothing new
            source = str(latest_checkpoint(learn_dir))
        return self.keep_checkpoint(Path(source), self.round_dir(round_index))

    @staticmethod
    def keep_checkpoint(source: Path, round_dir: Path) -> tuple[str, str]:
        round_dir.mkdir(parents=True, exist_ok=True)
        target = round_dir / "qnet.ckpt"
        sha256 = source.with_name(source.name + ".sha256").read_text().split()[0]
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
        atomic_write_bytes(
            target.with_name("qnet.ckpt.sha256"), f"{sha256}  {target.name}\n".encode()
        )
        return str(target), sha256

    def evaluate(self, round_index: int, checkpoint: str) -> dict[str, Any]:
        cfg = self.config
        self.log(
            f"{PROG}: round {round_index}/{cfg.rounds}: evaluate on {cfg.eval_episodes} paired "
            f"scenes per task (seed {cfg.eval_seed})"
        )
        config = EvalConfig(
            checkpoint=checkpoint, tasks=cfg.tasks, episodes_per_task=cfg.eval_episodes,
            seed=cfg.eval_seed, workers=cfg.workers, camera_size=cfg.camera_size,
            policy_params=cfg.policy_params,
        )  # fmt: skip
        quiet = lambda message: None  # noqa: E731  (the stage line above says enough)
        return evaluate(config, self.round_dir(round_index) / "eval", quiet, cfg.progress)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.check_config()
        records = self.done_rounds()
        if records:
            self.log(f"{PROG}: {len(records)} rounds done in {self.out}; resuming")
        elapsed = records[-1].elapsed_s if records else 0.0
        try:
            for r in range(len(records), cfg.rounds + 1):
                seconds = self.unfinished_seconds(r)
                with self.timed(r, seconds, "collect"):
                    collected = self.collect(r)
                with self.timed(r, seconds, "learn"):
                    checkpoint, sha256 = self.learn(r)
                with self.timed(r, seconds, "eval"):
                    result = self.evaluate(r, checkpoint)
                elapsed += sum(seconds.values())
                record = RoundRecord(
                    round=r, episodes=collected["total"], steps=cfg.steps_after(r),
                    checkpoint=checkpoint, sha256=sha256, collected=collected, eval=result,
                    seconds={k: round(v, 1) for k, v in seconds.items()},
                    elapsed_s=round(elapsed, 1),
                )  # fmt: skip
                atomic_write_bytes(
                    self.round_dir(r) / "round.json",
                    (json.dumps(dataclasses.asdict(record)) + "\n").encode(),
                )
                records.append(record)
                self.write_curve(records)
                self.log_round(record)
        finally:
            if self.session is not None:
                self.session.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        return self.summary(records)

    @property
    def unfinished_path(self) -> Path:
        return self.out / "unfinished_round.json"

    def unfinished_seconds(self, round_index: int) -> dict[str, float]:
        """Stage times an earlier, stopped invocation spent on this round."""
        try:
            data = json.loads(self.unfinished_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return dict(data["seconds"]) if data.get("round") == round_index else {}

    @contextlib.contextmanager
    def timed(self, round_index: int, seconds: dict[str, float], stage: str):
        """Add the stage's wall time to `seconds` and keep it on disk, also when the stage is
        stopped (Ctrl-C, kill): a resumed run counts the time already spent."""
        started = time.monotonic()
        try:
            yield
        finally:
            seconds[stage] = seconds.get(stage, 0.0) + time.monotonic() - started
            data = {"round": round_index, "seconds": seconds}
            atomic_write_bytes(self.unfinished_path, (json.dumps(data) + "\n").encode())

    def log_round(self, record: RoundRecord) -> None:
        parts = []
        for task, e in record.eval["tasks"].items():
            parts.append(
                f"{task} learned {e['learned']}/{e['episodes']} vs scripted {e['scripted']}/"
                f"{e['episodes']} (p = {e['mcnemar_p']:.3g})"
            )
        self.log(
            f"{PROG}: round {record.round} done: {record.episodes} episodes, step "
            f"{record.steps}, {record.elapsed_s / 60:.1f} min so far; " + "; ".join(parts)
        )
        if self.tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.out / "tensorboard" / "eval"))
        for task, e in record.eval["tasks"].items():
            for policy in ("learned", "scripted"):
                self.tensorboard.add_scalar(
                    f"eval/{task}/{policy}", e[f"{policy}_rate"], record.episodes
                )
        self.tensorboard.flush()

    # -- outputs --------------------------------------------------------------------------
    def write_curve(self, records: Sequence[RoundRecord]) -> None:
        rows = curve_rows(records)
        atomic_write_bytes(self.out / "curve.csv", _csv_bytes(rows))
        plot_curve(rows, self.out / "curve.png", self.config.eval_episodes)

    def summary(self, records: Sequence[RoundRecord]) -> dict[str, Any]:
        last = records[-1]
        return {
            "command": PROG,
            "out": str(self.out),
            "rounds": last.round,
            "episodes": last.episodes,
            "steps": last.steps,
            "checkpoint": last.checkpoint,
            "sha256": last.sha256,
            "elapsed_s": last.elapsed_s,
            "tasks": {
                task: {k: e[k] for k in SUMMARY_KEYS} for task, e in last.eval["tasks"].items()
            },
            "curve": str(self.out / "curve.csv"),
        }


# ---------------------------------------------------------------------------- the curve
CURVE_HEADER = (
    "round", "episodes", "steps", "elapsed_s", "task", "eval_episodes", "learned",
    "learned_rate", "learned_ci_low", "learned_ci_high", "scripted", "scripted_rate",
    "mcnemar_p", "collected_cem", "collected_cem_successes",
)  # fmt: skip


def curve_rows(records: Sequence[RoundRecord]) -> list[dict[str, Any]]:
    """One row per round and task: evaluation success vs episodes collected."""
    rows = []
    for rec in records:
        kinds = rec.collected.get("episodes_by_kind", {})
        wins = rec.collected.get("successes_by_kind", {})
        for task, e in rec.eval["tasks"].items():
            low, high = wilson_interval(e["learned"], e["episodes"])
            rows.append({
                "round": rec.round, "episodes": rec.episodes, "steps": rec.steps,
                "elapsed_s": rec.elapsed_s, "task": task, "eval_episodes": e["episodes"],
                "learned": e["learned"], "learned_rate": e["learned_rate"],
                "learned_ci_low": round(low, 4), "learned_ci_high": round(high, 4),
                "scripted": e["scripted"], "scripted_rate": e["scripted_rate"],
                "mcnemar_p": e["mcnemar_p"], "collected_cem": kinds.get("cem", 0),
                "collected_cem_successes": wins.get("cem", 0),
            })  # fmt: skip
    return rows


def _csv_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def plot_curve(rows: Sequence[dict[str, Any]], path: Path, eval_episodes: int) -> Path:
    """curve.png: per task, learned success (95 % Wilson band) and the scripted baseline on
    the same scenes, against episodes collected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4.4), constrained_layout=True)
    colors = plt.get_cmap("tab10")
    for i, task in enumerate(tasks):
        mine = [r for r in rows if r["task"] == task]
        x = [r["episodes"] for r in mine]
        ax.plot(x, [r["learned_rate"] for r in mine], "o-", color=colors(i), label=task)
        ax.fill_between(
            x, [r["learned_ci_low"] for r in mine], [r["learned_ci_high"] for r in mine],
            color=colors(i), alpha=0.15,
        )  # fmt: skip
        ax.plot(x, [r["scripted_rate"] for r in mine], "--", color=colors(i), alpha=0.6,
                label=f"{task}: noisy scripted, same scenes")  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_xlabel("episodes collected")
    ax.set_ylabel("success (sim oracle)")
    ax.set_title(f"closed loop: greedy CEM policy, {eval_episodes} paired scenes per point")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------- the CLI
def build_parser() -> argparse.ArgumentParser:
    d = TrainSimConfig
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--tasks", nargs="+", default=list(d.tasks), metavar="TASK")
    p.add_argument("--episodes", type=int, default=d.episodes, help="total episodes collected")
    p.add_argument("--rounds", type=int, default=d.rounds, help="on-policy rounds after round 0")
    p.add_argument("--initial-episodes", type=int, default=d.initial_episodes)
    p.add_argument("--initial-steps", type=int, default=d.initial_steps)
    p.add_argument("--steps-per-round", type=int, default=d.steps_per_round)
    p.add_argument("--epsilon", type=float, default=d.epsilon, help="CEM: P(random action)")
    p.add_argument("--scripted-fraction", type=float, default=d.scripted_fraction)
    p.add_argument(
        "--guided-fraction", type=float, default=d.guided_fraction,
        help="P(guided pick) per lift episode: simulator-aimed exploration (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--guided-decoy-fraction", type=float, default=d.guided_decoy_fraction,
        help="P(a guided pick aims at a random point of the bin instead of a grasp) (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--guided-aim", choices=GUIDED_AIMS, default=d.guided_aim,
        help="a lift-X episode's guided pick aims at an object X (commanded) or at the nearest "
        f"object (default {d.guided_aim})",
    )  # fmt: skip
    p.add_argument(
        "--place-start-fraction", type=float, default=d.place_start_fraction,
        help="P(a lift draw becomes an unlogged noise-free grasp and a place episode) (default 0)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=d.workers, help="simulator processes")
    p.add_argument("--camera-size", type=int, default=d.camera_size, help="camera frame [px]")
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="per task")
    p.add_argument("--eval-seed", type=int, default=d.eval_seed)
    p.add_argument("--seed", type=int, default=d.seed, help="collection seed")
    p.add_argument(
        "--policy-param", action="append", default=None, metavar="NAME=VALUE",
        help="policy node parameter for collection and evaluation; repeatable; given, they "
        "replace the default list " + " ".join(f"{k}={v}" for k, v in DEFAULT_POLICY_PARAMS),
    )  # fmt: skip
    p.add_argument(
        "--collector-param", action="append", default=[], metavar="NAME=VALUE",
        help="collector node parameter for collection, e.g. reset_every=1 respawn_below=1000 "
        "(a fresh bin every episode); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--learn", action="append", default=[], metavar="KEY=VALUE",
        help="learner setting (OfflineConfig field) over the defaults; repeatable",
    )  # fmt: skip
    p.add_argument(
        "--round-start", choices=ROUND_STARTS, default=d.round_start,
        help="warm: rounds continue one network; scratch: each round trains a new network over "
        "all bags (default warm)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads for training")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> TrainSimConfig:
    try:
        policy_params = (
            TrainSimConfig.policy_params
            if args.policy_param is None
            else parse_policy_params(args.policy_param)
        )
        learn = parse_policy_params(args.learn)  # the same NAME=YAML syntax
        collector_params = parse_policy_params(args.collector_param)
    except ValueError as exc:
        raise TrainSimError(
            str(exc).replace("--policy-param", "--policy-param/--learn/--collector-param")
        ) from None
    return TrainSimConfig(
        out=args.out, tasks=tuple(args.tasks), episodes=args.episodes, rounds=args.rounds,
        initial_episodes=args.initial_episodes, initial_steps=args.initial_steps,
        steps_per_round=args.steps_per_round, epsilon=args.epsilon,
        scripted_fraction=args.scripted_fraction, guided_fraction=args.guided_fraction,
        guided_decoy_fraction=args.guided_decoy_fraction, guided_aim=args.guided_aim,
        place_start_fraction=args.place_start_fraction, workers=args.workers,
        camera_size=args.camera_size, eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed, seed=args.seed, policy_params=policy_params, learn=learn,
        collector_params=collector_params, round_start=args.round_start, threads=args.threads,
        progress=not args.no_progress,
    )  # fmt: skip


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from mtopt_core.checkpoint import CheckpointError
    from mtopt_core.tasks import TaskRegistryError
    from mtopt_learner.errors import LearnError
    from mtopt_policy.policy import WeightsRefused
    from mtopt_sim.bulk_cell import BulkCollectError
    from mtopt_sim.bulk_collect import CollectUsageError

    args = build_parser().parse_args(argv)
    # `kill` stops like Ctrl-C (a background job started by a script ignores SIGINT): the
    # stage in progress ends cleanly and the same command resumes.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        config = config_from_args(args)
        summary = ClosedLoop(config).run()
    except (BulkCollectError, CheckpointError, WeightsRefused, RuntimeError) as exc:
        print(f"{PROG}: failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except (CollectUsageError, LearnError, TaskRegistryError, ValueError) as exc:
        # TrainSimError and bad learner values (TrainerConfig) are ValueErrors too
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
