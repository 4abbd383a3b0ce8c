"""The demo's report: per-task oracle success tables (markdown), `demo.png`, `summary.md`.

Columns are who acted in which stage (`episodes.policy_group`): stage 1's scripted and random
episodes (before any weights), stage 3's CEM episodes on the learned weights. Cells count the
oracle's success of the commanded task; "lift-any achieved" counts any object lifted in an
episode of a lift task, whatever object it asked for. `--collect-only` runs report
`collection_table` instead: what was collected and how the SD and the oracle graded it.
When the cell ran a success detector, `sd_table` sets its verdicts beside the oracle's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtopt_demo.episodes import (
    LIFT_TASK,
    STAGE1_RANDOM,
    STAGE1_SCRIPTED,
    STAGE3_LEARNED,
    episode_order,
    oracle_success,
    policy_group,
)


@dataclass
class StageResult:
    """One row of the summary's stage table."""

    name: str
    seconds: float
    detail: str = ""


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


#: SD probability counted as a success (the collector's `success_threshold`).
SD_THRESHOLD = 0.5


def sd_agreement(info: Any) -> list[bool]:
    """Per task of an episode graded by both: does the SD's verdict match the oracle's."""
    return [
        (p >= SD_THRESHOLD) == bool(truth)
        for p, truth in zip(info.sd_probabilities, info.oracle_success, strict=True)
    ]


def sd_verdict(info: Any, task: str | None = None) -> bool | None:
    """The SD's verdict on `task` (default: the commanded one); None = not graded by an SD."""
    task = info.task if task is None else task
    names = list(info.task_names)
    probabilities = list(getattr(info, "sd_probabilities", ()))
    if task not in names or len(probabilities) != len(names):
        return None
    return probabilities[names.index(task)] >= SD_THRESHOLD


def sd_table(report: Report) -> str:
    """Markdown: per group, the SD's and the oracle's lift-any verdicts over lift episodes and
    how often the SD agrees with the oracle ('' when no episode was graded by an SD)."""
    rows = []
    for group in report.groups:
        graded = sd_lift = oracle_lift = same_task = same_all = compared = 0
        for _, g, info in report.episodes:
            if g != group or sd_verdict(info) is None or oracle_success(info) is None:
                continue
            graded += 1
            same_task += int(sd_verdict(info) == oracle_success(info))
            same = sd_agreement(info)
            same_all, compared = same_all + sum(same), compared + len(same)
            if info.task in report.lift_tasks:
                sd_lift += int(bool(sd_verdict(info, LIFT_TASK)))
                oracle_lift += int(bool(oracle_success(info, LIFT_TASK)))
        if graded:
            rows.append(
                f"| {group} | {graded} | {sd_lift} | {oracle_lift} | {same_task}/{graded} "
                f"| {same_all}/{compared} ({100.0 * same_all / compared:.1f}%) |"
            )
    if not rows:
        return ""
    head = [
        f"| policy | episodes graded by both | {LIFT_TASK} in lift episodes: SD | oracle "
        "| SD = oracle on the commanded task | SD = oracle over all tasks |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(head + rows)


def format_summary(
    report: Report,
    stages: Sequence[StageResult],
    total_s: float,
    notes: Sequence[str],
) -> str:
    """summary.md: stage times, the oracle success tables, notes, the plot."""
    lines = ["# MT-Opt demo: collect -> learn -> act with the learned Q-function", ""]
    lines += ["| stage | seconds | what |", "|---|---:|---|"]
    lines += [f"| {s.name} | {s.seconds:.0f} | {s.detail} |" for s in stages]
    lines += [f"| **total** | {total_s:.0f} | |", ""]
    lines += ["## Oracle success", "", format_tables(report), ""]
    sd = sd_table(report)
    if sd:
        lines += ["## Success detector", "", sd, ""]
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


def collection_table(infos: Sequence[Any]) -> str:
    """Markdown table per commanded task of a collection: episodes, aborts, who acted, SD and
    oracle outcomes, and how often the SD agrees with the oracle (`--collect-only`)."""
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    agree = compared = 0
    per_episode: list[float] = []  # fraction of tasks on which SD and oracle agree
    for info in infos:
        row = rows[info.task]
        row["episodes"] += 1
        row["aborted"] += int(info.aborted)
        row[f"policy:{info.policy_kind}"] += 1
        names = list(info.task_names)
        index = names.index(info.task) if info.task in names else None
        if len(info.sd_probabilities) and index is not None:
            row["sd_graded"] += 1
            row["sd_success"] += int(info.sd_probabilities[index] >= SD_THRESHOLD)
        if info.has_oracle and index is not None:
            row["oracle_success"] += int(info.oracle_success[index])
        if len(info.sd_probabilities) and info.has_oracle:
            same = sd_agreement(info)
            agree, compared = agree + sum(same), compared + len(same)
            per_episode.append(sum(same) / len(same))
    lines = [
        "| task | episodes | aborted | policies | SD success | oracle success |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for task in sorted(rows):
        row = rows[task]
        policies = ", ".join(
            f"{k.split(':', 1)[1]} {v}" for k, v in sorted(row.items()) if k.startswith("policy:")
        )
        sd = f"{row['sd_success']}/{row['sd_graded']}" if row["sd_graded"] else "not graded"
        lines.append(
            f"| {task} | {row['episodes']} | {row['aborted']} | {policies} | {sd} "
            f"| {row['oracle_success']}/{row['episodes']} |"
        )
    total = len(infos)
    lines.append(f"| **all** | {total} | {sum(r['aborted'] for r in rows.values())} | | | |")
    if compared:
        lines.append(
            f"\nSD vs. oracle agreement over all tasks of all episodes: {agree}/{compared} "
            f"({100.0 * agree / compared:.1f}%); episodes agreeing on >= 90% of tasks: "
            f"{sum(f >= 0.9 for f in per_episode)}/{len(per_episode)} (worst episode "
            f"{100.0 * min(per_episode):.0f}%)"
        )
    return "\n".join(lines)


def format_collection(infos: Sequence[Any], seconds: float, episode_dir: Path) -> str:
    """summary.md of a `--collect-only` run."""
    return (
        f"# MT-Opt demo: {len(infos)} episodes from one simulated cell in {seconds:.0f} s\n\n"
        f"Bags: `{episode_dir}`\n\n{collection_table(infos)}\n"
    )
