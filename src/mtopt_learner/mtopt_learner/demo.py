"""`python -m mtopt_learner.demo` (what `make demo` runs): the whole MT-Opt loop on one sim cell.

1. Collect: `launch/sim_cell.launch.yaml` (MuJoCo cell, arm controller, reset bin, policy,
   logger, collector; every node its own process, real DDS) logs `--episodes` episode bags with
   the policy's usual mix before any weights: scripted pick/place or random actions. Episodes
   are graded by the simulator's oracle (and by the SD too with `--sd-checkpoint`).
2. Learn: `mtopt-learn` (`mtopt_learner.offline.run`, in this process) trains a small
   multi-task Q-network on those bags with oracle labels, skill-level task impersonation,
   re-balanced sampling and the conservative penalty on random actions; checkpoints go to
   `<run>/learner/checkpoints/`.
3. Evaluate: the sim cell again, with a `policy.yaml` copy whose `scripted_fraction` is 0, while
   this process announces the final checkpoint as a `WeightsUpdate` (path, version, sha256) on
   `/policy/weights` (reliable + transient_local, like the learner node); the policy verifies
   and loads it, and runs CEM over the learned Q-function (with its epsilon exploration). Each
   episode's EpisodeInfo says who acted (`policy_kind`, `weights_version`).
4. Report: per-task oracle success of the scripted and random episodes of stage 1 and of the
   learned-CEM episodes of stage 3 (printed and in `summary.md`), and `demo.png` (lift success
   over the episodes of the whole run, per-task rates by policy).

Everything is written under `runs/demo/<time>/` (bags, learner run, node logs, report). Exit
status: 0 when every stage ran, 1 when a stage failed (the message names it), 2 for bad
arguments, 130 on Ctrl-C. The numbers are whatever the run gives: a few dozen episodes and a few
hundred training steps of a tiny network on two cores, not the paper's scale.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EPISODE_INFO_TYPE = "mtopt_interfaces/msg/EpisodeInfo"
SIM_CELL_LAUNCH = Path("launch") / "sim_cell.launch.yaml"
POLICY_CONFIG = Path("config") / "policy.yaml"
COLLECTOR_CONFIG = Path("config") / "collector.yaml"
#: Where stage 3's policy takes weights from (launch arg `weights_topic`) and we announce them.
WEIGHTS_TOPIC = "/policy/weights"
LIFT_TASK = "lift-any"

# Defaults sized for about 11 minutes on 2 cores (10.6 measured; src/mtopt_learner/README.md).
DEFAULT_EPISODES = 40
DEFAULT_EVAL_EPISODES = 24
DEFAULT_STEPS = 600
#: Stage 2: learning rate and conservative-penalty weight (what the gym probe found to work).
LEARNING_RATE = 1e-3
CONSERVATIVE_WEIGHT = 1.0

#: Column groups of the report, in order: (stage, label).
STAGE1_SCRIPTED = "stage 1 scripted"
STAGE1_RANDOM = "stage 1 random"
STAGE3_LEARNED = "stage 3 learned CEM"
PROGRESS_EVERY_S = 20.0


class DemoError(RuntimeError):
    """A stage failed; the message says which and why."""


class Progress:
    """Progress lines with the time since the demo started."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.started = clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def __call__(self, message: str) -> None:
        minutes, seconds = divmod(int(self.elapsed()), 60)
        print(f"[demo {minutes:02d}:{seconds:02d}] {message}", flush=True)


# ------------------------------------------------------------------------------ report
def policy_group(info: Any, stage: int) -> str:
    """The report column of an episode: who acted, in which stage."""
    kind = str(info.policy_kind)
    if kind.startswith("scripted"):
        return f"stage {stage} scripted"
    if kind == "cem" and int(info.weights_version) >= 0:
        return f"stage {stage} learned CEM"
    return f"stage {stage} {kind or 'unknown'}"


def oracle_success(info: Any, task: str | None = None) -> bool | None:
    """Oracle success of `task` (default: the commanded one) in an episode; None = ungraded."""
    task = info.task if task is None else task
    names = list(info.task_names)
    if not info.has_oracle or task not in names or len(info.oracle_success) != len(names):
        return None
    return bool(info.oracle_success[names.index(task)])


def episode_order(infos: Iterable[Any]) -> list[Any]:
    """Episodes in the order they ran (start time, then id)."""
    return sorted(infos, key=lambda i: (i.start_time.sec, i.start_time.nanosec, str(i.episode_id)))


@dataclass
class Tally:
    """Oracle outcomes of a set of episodes."""

    episodes: int = 0
    graded: int = 0
    successes: int = 0
    aborted: int = 0
    steps: int = 0  # policy steps, summed

    def add(self, success: bool | None, aborted: bool, steps: int = 0) -> None:
        self.episodes += 1
        self.aborted += int(aborted)
        self.steps += int(steps)
        if success is not None:
            self.graded += 1
            self.successes += int(success)

    @property
    def rate(self) -> float | None:
        return self.successes / self.graded if self.graded else None

    def cell(self) -> str:
        if not self.episodes:
            return "-"
        if not self.graded:
            return f"ungraded ({self.episodes})"
        return f"{self.successes}/{self.graded} ({100.0 * self.successes / self.graded:.0f}%)"


@dataclass
class Report:
    """Per-group, per-task oracle tallies of a demo run (what the tables and plot show)."""

    groups: list[str]  # column order
    tasks: list[str]  # row order (registry order, tasks that ran)
    by_task: dict[str, dict[str, Tally]]  # group -> commanded task -> tally
    overall: dict[str, Tally]  # group -> all episodes (commanded task's success)
    lift: dict[str, Tally]  # group -> lift-skill episodes, success of LIFT_TASK
    lift_tasks: frozenset[str]
    episodes: list[tuple[int, str, Any]] = field(default_factory=list)  # (stage, group, info)


def build_report(stage1: Sequence[Any], stage3: Sequence[Any], registry: Any) -> Report:
    """Tally both stages' EpisodeInfos per policy group and commanded task."""
    lift_skill = registry.skill_of(LIFT_TASK)
    lift_tasks = frozenset(registry.tasks_of_skill(lift_skill))
    episodes = [(1, policy_group(i, 1), i) for i in episode_order(stage1)]
    episodes += [(3, policy_group(i, 3), i) for i in episode_order(stage3)]
    groups = [STAGE1_SCRIPTED, STAGE1_RANDOM, STAGE3_LEARNED]
    groups += sorted({g for _, g, _ in episodes} - set(groups))
    by_task: dict[str, dict[str, Tally]] = {g: {} for g in groups}
    overall = {g: Tally() for g in groups}
    lift = {g: Tally() for g in groups}
    for _, group, info in episodes:
        success = oracle_success(info)
        by_task[group].setdefault(info.task, Tally()).add(success, bool(info.aborted))
        overall[group].add(success, bool(info.aborted), int(info.steps))
        if info.task in lift_tasks:
            lift[group].add(oracle_success(info, LIFT_TASK), bool(info.aborted))
    ran = {info.task for _, _, info in episodes}
    order = [t for t in registry.names if t in ran] + sorted(ran - set(registry.names))
    return Report(groups, order, by_task, overall, lift, lift_tasks, episodes)


def format_tables(report: Report) -> str:
    """Markdown: per-task oracle success per group, then all episodes and lift-any in lifts."""
    groups = report.groups
    head = "| task | " + " | ".join(groups) + " |"
    rule = "|---|" + "---:|" * len(groups)
    lines = [head, rule]
    for task in report.tasks:
        cells = [report.by_task[g].get(task, Tally()).cell() for g in groups]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    overall = [report.overall[g].cell() for g in groups]
    lines.append("| **all tasks** | " + " | ".join(overall) + " |")
    lines.append(
        f"| **{LIFT_TASK} achieved in lift episodes** | "
        + " | ".join(report.lift[g].cell() for g in groups)
        + " |"
    )
    aborted = [str(report.overall[g].aborted) for g in groups]
    lines.append("| aborted episodes | " + " | ".join(aborted) + " |")
    steps = [
        f"{t.steps / t.episodes:.1f}" if t.episodes else "-"
        for t in (report.overall[g] for g in groups)
    ]
    lines.append("| mean policy steps per episode | " + " | ".join(steps) + " |")
    lines.append("")
    lines.append(
        "Cells: oracle successes of the commanded task / graded episodes (rate). "
        f"'{LIFT_TASK} achieved': any object lifted in an episode of a lift task, whichever "
        "object it asked for."
    )
    return "\n".join(lines)


def _rolling(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for k, v in enumerate(values):
        total += v
        if k >= window:
            total -= values[k - window]
        out.append(total / min(k + 1, window))
    return out


def plot_report(report: Report, path: Path, window: int = 10) -> Path:
    """demo.png: lift success over the run's episodes (rolling mean per group) and per-task
    oracle success rates per group."""
    import matplotlib  # noqa: PLC0415 - only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    colors = {STAGE1_SCRIPTED: "tab:blue", STAGE1_RANDOM: "tab:gray", STAGE3_LEARNED: "tab:red"}
    spare = iter(["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan"])
    for group in report.groups:
        colors.setdefault(group, next(spare, "black"))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8.5), constrained_layout=True)
    stage1_count = sum(1 for stage, _, _ in report.episodes if stage == 1)
    for group in report.groups:
        xs, ys = [], []
        for index, (_, g, info) in enumerate(report.episodes):
            if g != group or info.task not in report.lift_tasks:
                continue
            success = oracle_success(info, LIFT_TASK)
            if success is not None:
                xs.append(index)
                ys.append(float(success))
        if not xs:
            continue
        color = colors.get(group)
        top.scatter(xs, ys, s=14, alpha=0.45, color=color)
        tally = report.lift[group]
        top.plot(
            xs,
            _rolling(ys, window),
            color=color,
            linewidth=2,
            label=f"{group}: {tally.successes}/{tally.graded}",
        )
    if 0 < stage1_count < len(report.episodes):
        top.axvline(stage1_count - 0.5, color="black", linestyle="--", linewidth=1)
        top.text(stage1_count - 0.5, 1.1, "learn ", ha="right", va="center", fontsize=9)
    top.set_xlim(-1, max(len(report.episodes), 1))
    top.set_ylim(-0.1, 1.15)
    top.set_xlabel("episode (stage 1, then stage 3, in the order they ran)")
    top.set_ylabel(f"{LIFT_TASK} achieved (oracle)")
    top.set_title(
        f"Lift episodes: any object lifted (dots: episodes; lines: rolling mean of {window})"
    )
    top.legend(loc="center left", fontsize=9, framealpha=0.8)

    width = 0.8 / max(1, len(report.groups))
    for k, group in enumerate(report.groups):
        rates, labels = [], []
        for task in report.tasks:
            tally = report.by_task[group].get(task, Tally())
            rates.append(tally.rate if tally.rate is not None else 0.0)
            labels.append(str(tally.graded) if tally.graded else "")
        xs = [t + (k - (len(report.groups) - 1) / 2) * width for t in range(len(report.tasks))]
        bars = bottom.bar(xs, rates, width, color=colors.get(group), label=group)
        bottom.bar_label(bars, labels=labels, fontsize=7, padding=1)
    bottom.set_xticks(range(len(report.tasks)), report.tasks, rotation=30, ha="right")
    bottom.set_ylim(0, 1.1)
    bottom.set_ylabel("oracle success rate")
    bottom.set_title("Commanded task success per task (bar labels: episodes)")
    bottom.legend(fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ bags
class InfoReader:
    """EpisodeInfo of every complete bag of a directory, read once each (only that record)."""

    def __init__(self, episode_dir: Path):
        from mtopt_core.episode_bag import make_typestore  # noqa: PLC0415

        self.episode_dir = Path(episode_dir)
        self.store = make_typestore()
        self.infos: dict[str, Any] = {}
        self.problems: dict[str, str] = {}

    def poll(self) -> list[Any]:
        """Read the bags not read yet; returns all infos so far (in name order)."""
        from mtopt_core.episode_bag import list_episode_bags  # noqa: PLC0415

        for bag in list_episode_bags(self.episode_dir):
            if bag.name in self.infos or bag.name in self.problems:
                continue
            try:
                self.infos[bag.name] = self._read(bag)
            except Exception as exc:  # noqa: BLE001 - rosbags raises many types for bad bags
                self.problems[bag.name] = f"{bag}: {exc}"
        return [self.infos[k] for k in sorted(self.infos)]

    def _read(self, bag: Path) -> Any:
        from rosbags.rosbag2 import Reader  # noqa: PLC0415

        with Reader(bag) as reader:
            wanted = [c for c in reader.connections if c.msgtype == EPISODE_INFO_TYPE]
            found = [
                self.store.deserialize_cdr(raw, c.msgtype)
                for c, _, raw in reader.messages(connections=wanted)
            ]
        if len(found) != 1:
            raise ValueError(f"{len(found)} EpisodeInfo records, expected 1")
        return found[0]


def _counts(infos: Sequence[Any], stage: int) -> str:
    groups: dict[str, list[bool | None]] = {}
    for info in infos:
        groups.setdefault(policy_group(info, stage).split(" ", 2)[2], []).append(
            oracle_success(info)
        )
    return ", ".join(
        f"{g} {len(v)} ({sum(1 for s in v if s)} ok)" for g, v in sorted(groups.items())
    )


# ------------------------------------------------------------------------------ stages
@dataclass
class StageResult:
    name: str
    seconds: float
    detail: str = ""


def workspace_file(relative: Path) -> Path:
    from mtopt_launch.demo import find_workspace_file  # noqa: PLC0415

    return find_workspace_file(relative)


def collect(
    stage: int,
    run_dir: Path,
    episodes: int,
    launch_args: Sequence[str],
    timeout_s: float,
    say: Progress,
) -> tuple[list[Any], float]:
    """Run the sim cell until `episodes` bags are logged; returns their EpisodeInfos."""
    episode_dir = run_dir / f"stage{stage}_episodes"
    log_path = run_dir / "logs" / f"stage{stage}_launch.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "mtopt_launch.cli",
        "--log-dir",
        str(run_dir / "logs" / f"stage{stage}"),
        str(workspace_file(SIM_CELL_LAUNCH)),
        f"episodes:={episodes}",
        f"episode_dir:={episode_dir}",
        *launch_args,
    ]
    say(f"stage {stage}: mtopt-launch {' '.join(command[5:])} (node output: {log_path})")
    reader = InfoReader(episode_dir)
    started = time.monotonic()
    last_line, last_count = started, -1
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                now = time.monotonic()
                if now - started > timeout_s:
                    _stop(proc)
                    raise DemoError(
                        f"stage {stage}: no {episodes} episodes after {timeout_s:.0f} s "
                        f"({len(reader.poll())} logged); stopped the cell. See {log_path}"
                    )
                infos = reader.poll()
                changed = len(infos) != last_count and now - last_line >= 5.0
                if changed or now - last_line >= PROGRESS_EVERY_S:
                    counts = _counts(infos, stage)
                    say(f"stage {stage}: {len(infos)}/{episodes} episodes [{counts}]")
                    last_line, last_count = now, len(infos)
        except BaseException:
            _stop(proc)
            raise
    seconds = time.monotonic() - started
    infos = reader.poll()
    for problem in reader.problems.values():
        say(f"stage {stage}: unreadable bag: {problem}")
    if proc.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-25:])
        raise DemoError(
            f"stage {stage}: the sim cell launch exited with status {proc.returncode} after "
            f"{seconds:.0f} s ({len(infos)} episodes logged). Last lines of {log_path}:\n{tail}"
        )
    if len(infos) < episodes:
        raise DemoError(
            f"stage {stage}: {len(infos)} readable episodes of {episodes} in {episode_dir}"
        )
    say(f"stage {stage}: {len(infos)} episodes in {seconds:.0f} s [{_counts(infos, stage)}]")
    return infos, seconds


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT the launch (it shuts its nodes down), then SIGTERM/SIGKILL if it hangs."""
    for sig, wait_s in ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


def learn(run_dir: Path, episode_dir: Path, args: argparse.Namespace, say: Progress) -> dict:
    """Train offline on stage 1's bags (mtopt-learn in this process); returns its summary."""
    from mtopt_core.checkpoint import CheckpointError  # noqa: PLC0415
    from mtopt_core.tasks import TaskRegistryError  # noqa: PLC0415
    from mtopt_learner import offline  # noqa: PLC0415
    from mtopt_learner.learner import CHECKPOINT_DIR, checkpoint_steps  # noqa: PLC0415

    out = run_dir / "learner"
    argv = [
        "--bags", str(episode_dir), "--out", str(out), "--steps", str(args.steps),
        "--labels", "oracle", "--net", args.net, "--batch-size", str(args.batch_size),
        "--cem-population", "16", "--cem-elites", "3", "--cem-iterations", "1",
        "--lr", str(LEARNING_RATE), "--conservative-weight", str(CONSERVATIVE_WEIGHT),
        "--checkpoint-every", str(max(1, args.steps // 4)), "--threads", str(args.threads),
        "--seed", str(args.seed), "--no-progress",
    ]  # fmt: skip
    say(f"stage 2: mtopt-learn {' '.join(argv)}")
    logging.getLogger("mtopt_learner.log_replay").setLevel(logging.ERROR)
    done = threading.Event()
    started = time.monotonic()

    def heartbeat() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            steps = checkpoint_steps(out / CHECKPOINT_DIR)
            at = f"checkpoint at step {steps[-1][0]}" if steps else "no checkpoint yet"
            say(f"stage 2: training {args.steps} steps, {at}")

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        summary = offline.run(offline.build_parser().parse_args(argv))
    except (offline.LearnError, CheckpointError, TaskRegistryError, ValueError) as exc:
        raise DemoError(f"stage 2: mtopt-learn failed: {exc}") from None
    finally:
        done.set()
        thread.join(timeout=2.0)
    if not summary.get("checkpoint"):
        raise DemoError("stage 2: mtopt-learn wrote no checkpoint")
    say(
        f"stage 2: {summary['steps']} steps in {time.monotonic() - started:.0f} s on "
        f"{summary['replay_episodes']} episodes / {summary['replay_transitions']} transitions "
        f"({summary['episodes_skipped']} skipped), final loss {_loss(summary)}; "
        f"{summary['checkpoint']}"
    )
    return summary


def _loss(summary: Mapping[str, Any]) -> str:
    loss = summary.get("final_loss")
    return "n/a" if loss is None else f"{loss:.4f}"


class WeightsAnnouncer:
    """Publishes one WeightsUpdate on a topic, reliable + transient_local (depth 1, the policy
    node's WEIGHTS_QOS, mirrored like learner_node does), so a policy that starts later gets it.
    A private rclpy context, spun in a thread, for as long as the `with` block runs."""

    def __init__(self, topic: str, checkpoint: Path):
        from mtopt_core.checkpoint import read_checkpoint  # noqa: PLC0415
        from mtopt_learner.learner import preset_name  # noqa: PLC0415

        ckpt = read_checkpoint(checkpoint)  # verifies the file before announcing it
        self.topic = topic
        self.path = str(Path(checkpoint).resolve())
        self.version = ckpt.step
        self.sha256 = ckpt.file_sha256
        self.preset = preset_name(ckpt.qnet_config)
        self.task_names = list(ckpt.task_names)

    def __enter__(self) -> WeightsAnnouncer:
        import rclpy  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

        from mtopt_interfaces.msg import WeightsUpdate  # noqa: PLC0415
        from mtopt_learner.learner_node import WEIGHTS_QOS  # noqa: PLC0415

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("demo_weights", context=self.context)
        publisher = self.node.create_publisher(WeightsUpdate, self.topic, WEIGHTS_QOS)
        msg = WeightsUpdate(
            path=self.path,
            version=self.version,
            sha256=self.sha256,
            model_preset=self.preset,
            task_names=self.task_names,
        )
        msg.header.stamp = self.node.get_clock().now().to_msg()
        publisher.publish(msg)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import rclpy  # noqa: PLC0415

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=2.0)


def lift_only_weights(registry: Any) -> list[str]:
    """Collector `task_weights` under which LIFT_TASK is the only lift task commanded (place
    tasks keep their weights: pick -> place sequencing still empties the gripper)."""
    lift_skill = registry.skill_of(LIFT_TASK)
    return [f"{name}=0" for name in registry.tasks_of_skill(lift_skill) if name != LIFT_TASK]


def stage_config(
    run_dir: Path,
    name: str,
    scripted_fraction: float | None = None,
    task_weights: Sequence[str] = (),
) -> Path:
    """A copy of the workspace's config/ for one stage: policy.yaml's `scripted_fraction` and
    collector.yaml's `task_weights` replaced when given."""
    import yaml  # noqa: PLC0415

    source = workspace_file(POLICY_CONFIG).parent
    target = run_dir / f"config_{name}"
    shutil.copytree(source, target)
    edits = []
    if scripted_fraction is not None:
        edits.append((POLICY_CONFIG.name, "/**/policy", "scripted_fraction", scripted_fraction))
    if task_weights:
        edits.append((COLLECTOR_CONFIG.name, "/**/collector", "task_weights", list(task_weights)))
    for file_name, node, key, value in edits:
        path = target / file_name
        data = yaml.safe_load(path.read_text())
        params = data[node]["ros__parameters"]
        if key not in params:
            raise DemoError(f"{path}: no parameter {key} under {node} to override")
        params[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def weights_log_lines(log_path: Path, version: int) -> list[str]:
    """The policy's lines about our weights version (verified / refused) in a launch log."""
    needle = f"weights version {version} "
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if needle in line]


# ------------------------------------------------------------------------------ summary
def format_summary(
    report: Report,
    stages: Sequence[StageResult],
    total_s: float,
    notes: Sequence[str],
) -> str:
    lines = ["# MT-Opt demo: collect -> learn -> act with the learned Q-function", ""]
    lines += ["| stage | seconds | what |", "|---|---:|---|"]
    lines += [f"| {s.name} | {s.seconds:.0f} | {s.detail} |" for s in stages]
    lines += [f"| **total** | {total_s:.0f} | |", ""]
    lines += ["## Oracle success", "", format_tables(report), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["![demo](demo.png)", ""]
    return "\n".join(lines)


def write_report(
    run_dir: Path,
    stage1: Sequence[Any],
    stage3: Sequence[Any],
    registry: Any,
    stages: Sequence[StageResult] = (),
    total_s: float = 0.0,
    notes: Sequence[str] = (),
) -> tuple[Report, str]:
    """Tables + demo.png + summary.md in run_dir; returns the report and the summary text."""
    report = build_report(stage1, stage3, registry)
    plot_report(report, Path(run_dir) / "demo.png")
    summary = format_summary(report, stages, total_s, notes)
    (Path(run_dir) / "summary.md").write_text(summary)
    return report, summary


# ------------------------------------------------------------------------------ main
def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= minimum."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtopt_learner.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--episodes",
        type=_positive,
        default=DEFAULT_EPISODES,
        help=f"stage 1: episodes to collect (default {DEFAULT_EPISODES})",
    )
    p.add_argument(
        "--eval-episodes",
        type=_positive,
        default=DEFAULT_EVAL_EPISODES,
        help=f"stage 3: episodes with the learned policy (default {DEFAULT_EVAL_EPISODES})",
    )
    p.add_argument(
        "--steps",
        type=_positive,
        default=DEFAULT_STEPS,
        help=f"stage 2: training steps (default {DEFAULT_STEPS})",
    )
    p.add_argument(
        "--net", choices=("tiny", "compact", "small"), default="compact", help="Q-network preset"
    )
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument(
        "--threads",
        type=_positive,
        default=1,
        help="torch threads for training (default 1: on a busy 2-core machine 2 threads ran"
        " 5x slower, spinning on each other)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    p.add_argument(
        "--sd-checkpoint",
        default="",
        help="success detector that also grades the episodes (training uses oracle labels)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="CKPT",
        help="skip stage 2 (and stage 1 unless --baseline-episodes): stage 3 acts with this"
        " Q-network checkpoint (e.g. the gym probe's qnet.ckpt)",
    )
    p.add_argument(
        "--baseline-episodes",
        type=_non_negative,
        default=0,
        metavar="N",
        help="with --weights: stage 1 collects N episodes with the noisy scripted policy alone"
        " (the baseline column; same seed as stage 3); default 0 = no stage 1",
    )
    p.add_argument(
        "--lift-only",
        action="store_true",
        help=f"lift episodes command {LIFT_TASK} only (other lift tasks weigh 0; place tasks"
        " still follow a successful lift): how the gym probe trains and evaluates",
    )
    p.add_argument("--seed", type=int, default=0, help="stage 1 seed; stage 3 uses seed + 1")
    p.add_argument(
        "--stage-timeout",
        type=float,
        default=0.0,
        help="seconds a collect stage may take (default: 60 per episode + 120)",
    )
    return p


def _ros_environment(say: Progress) -> None:
    """A private DDS domain unless the caller chose one; local discovery; the cells' profile."""
    if not os.environ.get("ROS_DOMAIN_ID"):
        os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = workspace_file(Path("config") / "fastdds.xml")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    say(
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}"
    )


def run(args: argparse.Namespace, say: Progress) -> int:
    from mtopt_core.checkpoint import CheckpointError  # noqa: PLC0415
    from mtopt_core.tasks import load_task_registry  # noqa: PLC0415

    if args.baseline_episodes and args.weights is None:
        raise DemoError("--baseline-episodes needs --weights (without it stage 1 is the baseline)")
    registry = load_task_registry()
    run_dir = args.out.resolve() / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=False)
    say(f"run directory {run_dir}")
    _ros_environment(say)
    cell_args = [f"sd_checkpoint:={args.sd_checkpoint}"]
    if args.sd_checkpoint:
        from mtopt_core.sd_model import CheckpointError, load_checkpoint  # noqa: PLC0415

        # The cameras publish at the size the SD was trained on (the policy resizes to its own).
        try:
            size = load_checkpoint(args.sd_checkpoint).config.image_size
        except CheckpointError as exc:
            raise DemoError(f"--sd-checkpoint: {exc}") from None
        cell_args.append(f"camera_size:={size}")
    else:
        say("no --sd-checkpoint: episodes are graded by the simulator's oracle only")

    def timeout(n: int) -> float:
        return args.stage_timeout or 60.0 * n + 120.0

    stages: list[StageResult] = []
    notes: list[str] = []
    # Stage 3 runs seed + 1; a --baseline-episodes stage 1 shares it (the same first objects).
    stage3_seed = args.seed + 1
    stage1_seed = stage3_seed if args.baseline_episodes else args.seed
    task_weights = lift_only_weights(registry) if args.lift_only else []
    if args.lift_only:
        say(f"--lift-only: collector task_weights {task_weights}")
    if args.weights is not None:
        checkpoint = args.weights.resolve()
        stage1 = []
        if args.baseline_episodes:
            n = args.baseline_episodes
            say(f"--weights {args.weights}: stage 2 skipped; stage 1/4: {n} scripted episodes")
            baseline_config = stage_config(run_dir, "baseline", 1.0, task_weights)
            stage1, seconds = collect(
                1, run_dir, n,
                [*cell_args, f"seed:={stage1_seed}", f"config_dir:={baseline_config}"],
                timeout(n), say,
            )  # fmt: skip
            stages.append(StageResult("1 collect", seconds, f"{len(stage1)} episodes: scripted"))
        else:
            say(f"--weights {args.weights}: stages 1 and 2 skipped")
    else:
        say(f"stage 1/4: collect {args.episodes} episodes (scripted/random mix, no weights)")
        stage1_args = [*cell_args, f"seed:={stage1_seed}"]
        if task_weights:
            config = stage_config(run_dir, "collect", None, task_weights)
            stage1_args.append(f"config_dir:={config}")
        stage1, seconds = collect(
            1, run_dir, args.episodes, stage1_args, timeout(args.episodes), say,
        )  # fmt: skip
        stages.append(
            StageResult("1 collect", seconds, f"{len(stage1)} episodes: scripted/random")
        )

        say(f"stage 2/4: learn ({args.steps} steps, net {args.net}, oracle labels)")
        started = time.monotonic()
        summary = learn(run_dir, run_dir / "stage1_episodes", args, say)
        stages.append(
            StageResult(
                "2 learn",
                time.monotonic() - started,
                f"{summary['steps']} steps, net {args.net}, batch {args.batch_size}, "
                f"{summary['replay_episodes']} episodes, final loss {_loss(summary)}",
            )
        )
        checkpoint = Path(summary["checkpoint"])

    say(f"stage 3/4: {args.eval_episodes} episodes with the learned Q-function (CEM)")
    # No scripted episodes: CEM once the weights are loaded, random before.
    config_dir = stage_config(run_dir, "eval", 0.0, task_weights)
    try:
        announcer = WeightsAnnouncer(WEIGHTS_TOPIC, checkpoint)
    except CheckpointError as exc:
        raise DemoError(f"stage 3: weights refused: {exc}") from None
    with announcer as weights:
        say(
            f"stage 3: announcing weights version {weights.version} (sha256 "
            f"{weights.sha256[:12]}..., {weights.preset}) on {WEIGHTS_TOPIC}"
        )
        eval_args = [
            *cell_args,
            f"seed:={stage3_seed}",
            f"config_dir:={config_dir}",
            f"weights_topic:={WEIGHTS_TOPIC}",
        ]
        stage3, seconds = collect(
            3, run_dir, args.eval_episodes, eval_args, timeout(args.eval_episodes), say
        )
    learned = [
        i for i in stage3 if i.policy_kind == "cem" and i.weights_version == weights.version
    ]
    policy_lines = weights_log_lines(run_dir / "logs" / "stage3_launch.log", weights.version)
    for line in policy_lines:
        say(f"stage 3: policy: {line[-200:]}")
    stages.append(
        StageResult(
            "3 act",
            seconds,
            f"{len(stage3)} episodes, {len(learned)} with CEM on weights v{weights.version}",
        )
    )
    others = len(stage3) - len(learned)
    if others:
        notes.append(
            f"{others} stage-3 episode(s) ran before the weights were installed (random policy)."
        )
    if args.weights is None:
        notes.append(
            "Labels: the simulator's oracle (training and this report); training used "
            "skill-level task impersonation, re-balanced sampling and the conservative penalty."
        )
    same = "the same first objects" if stage1_seed == stage3_seed else "other objects, tasks"
    if args.lift_only:
        notes.append(f"--lift-only: lift episodes command {LIFT_TASK} only.")
    notes += [
        f"Learned CEM episodes explore with the policy's epsilon "
        f"({f'{learned[0].epsilon:.2f}' if learned else 'n/a'}) per step; stage 3 uses seed "
        f"{stage3_seed}" + (f", stage 1 seed {stage1_seed} ({same})." if stage1 else "."),
        f"Weights: {checkpoint} (version {weights.version}, sha256 {weights.sha256}).",
        f"Bags: {run_dir / 'stage1_episodes'}, {run_dir / 'stage3_episodes'}; node logs in "
        f"{run_dir / 'logs'}.",
    ]
    if not learned:
        raise DemoError(
            f"stage 3: no episode ran with the learned weights (version {weights.version}); "
            f"policy log lines: {policy_lines or 'none'}. See {run_dir / 'logs'}"
        )

    say("stage 4/4: report")
    started = time.monotonic()
    report, text = write_report(run_dir, stage1, stage3, registry, stages, say.elapsed(), notes)
    stages.append(StageResult("4 report", time.monotonic() - started, "summary.md, demo.png"))
    text = format_summary(report, stages, say.elapsed(), notes)
    (run_dir / "summary.md").write_text(text)
    print(text, flush=True)
    say(f"done in {say.elapsed() / 60:.1f} min: {run_dir / 'summary.md'}, {run_dir / 'demo.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    say = Progress()
    try:
        return run(args, say)
    except DemoError as exc:
        say(f"FAILED: {exc}")
        return 1
    except FileNotFoundError as exc:  # no launch/ or config/ (not run from the workspace)
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
