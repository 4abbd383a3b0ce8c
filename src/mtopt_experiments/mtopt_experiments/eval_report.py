"""The evaluator's statistics and report files (`mtopt-eval`, `mtopt_experiments.evaluate`).

`summarize` turns the per-episode rows (one per scene and policy) into per-task counts, rates
with 95 % Wilson intervals and the paired comparison (discordant scenes, exact McNemar p), plus
the mean over tasks; when the rows say how each episode closed the gripper (`closes`,
`first_close`: the in-process evaluator's), also where the grasps went (`grasp_outcomes`), and
when they say whether the skill succeeded on any target (`skill_success`), how often
(`skill_outcomes`).
`write_report` writes `results.md`, `tasks.csv`, `episodes.csv`,
`results.png` and `result.json`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_experiments.stats import mcnemar_exact_p, paired_comparison, wilson_interval

POLICIES = ("learned", "scripted")


def _rate(successes: int, n: int) -> dict:
    lo, hi = wilson_interval(successes, n)
    return {"rate": round(successes / n, 4) if n else 0.0, "ci": [round(lo, 4), round(hi, 4)]}


def grasp_outcomes(rows: Sequence[dict]) -> dict:
    """Where one policy's episodes of a task went, from their gripper closes: no close at
    all; the first close stopped on something (`held`: the fingers' object-detected flag) and
    of those how many lifted; the first close on nothing (`empty`); closed more than once."""
    held = [r for r in rows if r["first_close"] == "held"]
    return {
        "no_close": sum(r["first_close"] == "none" for r in rows),
        "held": len(held),
        "held_success": sum(bool(r["success"]) for r in held),
        "empty": sum(r["first_close"] == "empty" for r in rows),
        "closed_again": sum(int(r["closes"]) >= 2 for r in rows),
    }


def summarize(rows: Sequence[dict], tasks: Sequence[str], with_sd: bool = False) -> dict:
    """{"tasks": {task: counts, rates, intervals, paired test}, "mean": over tasks}.

    Rows of one scene (same task and episode) are the pair; a scene without both policies'
    rows is an error.
    """
    per_task: dict[str, dict] = {}
    pooled = {"episodes": 0, "learned": 0, "scripted": 0, "only_learned": 0, "only_scripted": 0}
    for task in tasks:
        scenes: dict[int, dict[str, dict]] = {}
        for row in rows:
            if row["task"] == task:
                scenes.setdefault(row["episode"], {})[row["policy"]] = row
        incomplete = [k for k, pair in scenes.items() if set(pair) != set(POLICIES)]
        if incomplete:
            raise ValueError(f"{task}: scenes {sorted(incomplete)} lack one policy's episode")
        order = sorted(scenes)
        outcomes = {
            p: "".join("1" if scenes[k][p]["success"] else "0" for k in order) for p in POLICIES
        }
        n = len(order)
        entry: dict[str, Any] = {"episodes": n}
        for p in POLICIES:
            rate = _rate(outcomes[p].count("1"), n)
            entry[p] = outcomes[p].count("1")
            entry[f"{p}_rate"], entry[f"{p}_ci"] = rate["rate"], rate["ci"]
        entry.update(paired_comparison(outcomes["learned"], outcomes["scripted"]))
        entry["scenes_redrawn"] = sum(scenes[k]["learned"]["scene_draws"] - 1 for k in order)
        if all("first_close" in scenes[k][p] for k in order for p in POLICIES):
            entry["grasp_outcomes"] = {
                p: grasp_outcomes([scenes[k][p] for k in order]) for p in POLICIES
            }
        if all("skill_success" in scenes[k][p] for k in order for p in POLICIES):
            entry["skill_outcomes"] = {
                p: sum(bool(scenes[k][p]["skill_success"]) for k in order) for p in POLICIES
            }
        if with_sd:
            graded = [scenes[k][p] for k in order for p in POLICIES]
            for p in POLICIES:
                entry[f"{p}_sd"] = sum(bool(scenes[k][p]["sd_success"]) for k in order)
            agree = sum(bool(r["sd_success"]) == bool(r["success"]) for r in graded)
            entry["sd_agreement"] = round(agree / len(graded), 4) if graded else 0.0
        per_task[task] = entry
        for key in pooled:
            pooled[key] += entry[key]
    count = len(per_task)
    mean = {
        "tasks": count,
        "learned_rate": round(sum(e["learned_rate"] for e in per_task.values()) / count, 4),
        "scripted_rate": round(sum(e["scripted_rate"] for e in per_task.values()) / count, 4),
        **pooled,
        # every scene of every task as one paired sample
        "mcnemar_p": round(mcnemar_exact_p(pooled["only_learned"], pooled["only_scripted"]), 4),
    }
    return {"tasks": per_task, "mean": mean}


# ------------------------------------------------------------------------------------ files
def _percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def _count_cell(entry: dict, policy: str) -> str:
    lo, hi = entry[f"{policy}_ci"]
    return (
        f"{entry[policy]}/{entry['episodes']} ({_percent(entry[f'{policy}_rate'])}, "
        f"{100 * lo:.0f}-{100 * hi:.0f} %)"
    )


def _captioned_table(
    caption: str, header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int
) -> list[str]:
    """A second table of results.md: a blank line, the caption, a blank line, then the table
    with its first `text_columns` columns left-aligned and the counts right-aligned."""
    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    return [
        "",
        caption,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def format_markdown(result: dict, settings: dict) -> str:
    """results.md: what was run, then the per-task table and the mean over tasks."""
    with_sd = bool(result.get("sd_checkpoint"))
    judges = "the simulator's oracle" + (
        f" and the success detector `{result['sd_checkpoint']}`" if with_sd else ""
    )
    epsilon = result["epsilon"]
    lines = [
        f"# mtopt-eval: `{result['checkpoint']}`",
        "",
        f"- checkpoint sha256 `{result['sha256']}`",
        f"- {result['episodes_per_task']} paired scenes per task, seed {result['seed']} "
        f"(both policies on every scene, same scene state and start pose)",
        f"- learned: CEM {settings['cem']} over the Q-network, "
        + (f"epsilon {epsilon}" if epsilon > 0 else "greedy")
        + f", {settings['image_size']} px image of the ROI {settings['policy_roi']} of a "
        f"{settings['camera_size']} px frame, at most {settings['max_steps']} steps",
        "- scripted: the policy node's noisy scripted pick / place",
        f"- judged by {judges}; intervals: 95 % Wilson; p: exact McNemar on the discordant scenes",
        f"- wall time {result['wall_time_s']} s",
        "",
    ]
    header = ["task", "scenes", "learned", "scripted", "only learned", "only scripted", "p"]
    if with_sd:
        header += ["learned (SD)", "scripted (SD)", "SD = oracle"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, e in result["tasks"].items():
        cells = [
            task,
            str(e["episodes"]),
            _count_cell(e, "learned"),
            _count_cell(e, "scripted"),
            str(e["only_learned"]),
            str(e["only_scripted"]),
            f"{e['mcnemar_p']:.3g}",
        ]
        if with_sd:
            cells += [str(e["learned_sd"]), str(e["scripted_sd"]), _percent(e["sd_agreement"])]
        lines.append("| " + " | ".join(cells) + " |")
    m = result["mean"]
    cells = [
        f"mean over {m['tasks']} tasks",
        str(m["episodes"]),
        _percent(m["learned_rate"]),
        _percent(m["scripted_rate"]),
        str(m["only_learned"]),
        str(m["only_scripted"]),
        f"{m['mcnemar_p']:.3g} (pooled)",
    ]
    if with_sd:
        cells += ["", "", ""]
    lines.append("| " + " | ".join(cells) + " |")
    grasps = {t: e["grasp_outcomes"] for t, e in result["tasks"].items() if "grasp_outcomes" in e}
    if grasps:
        lines += _captioned_table(
            "Grasps: the first close of the episode stopped on something (the fingers' "
            "object-detected flag; how many of those episodes succeeded) or on nothing; "
            "episodes that closed more than once (tried again) or never.",
            ["task", "policy", "first close held", "of those, success", "first close empty",
             "closed again", "never closed"],
            [[task, p, g["held"], g["held_success"], g["empty"], g["closed_again"], g["no_close"]]
             for task, by_policy in grasps.items() for p, g in by_policy.items()],
            text_columns=2,
        )  # fmt: skip
    skills = {t: e["skill_outcomes"] for t, e in result["tasks"].items() if "skill_outcomes" in e}
    if skills:
        lines += _captioned_table(
            "Skill: episodes in which the oracle judged some task of the commanded task's skill "
            "a success (a lift-banana episode that lifted a bottle counts here, not as a "
            "success).",
            ["task", "learned: skill", "learned: task", "scripted: skill", "scripted: task"],
            [[task, by_policy["learned"], result["tasks"][task]["learned"],
              by_policy["scripted"], result["tasks"][task]["scripted"]]
             for task, by_policy in skills.items()],
            text_columns=1,
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def _csv_bytes(header: Sequence[str], records: Sequence[dict]) -> bytes:

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: record.get(k, "") for k in header})
    return buffer.getvalue().encode()


def task_records(result: dict) -> list[dict]:
    """tasks.csv: one record per task, then the mean."""
    records = []
    for task, e in result["tasks"].items():
        record = {
            "task": task,
            **{k: v for k, v in e.items() if not k.endswith(("_ci", "_outcomes"))},
        }
        for p in POLICIES:
            record[f"{p}_ci_low"], record[f"{p}_ci_high"] = e[f"{p}_ci"]
        records.append(record)
    records.append({"task": "mean", **result["mean"]})
    return records


def plot_results(result: dict, path: Path) -> Path:
    """results.png: per task, learned vs scripted success with 95 % Wilson intervals."""
    import matplotlib  # only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(result["tasks"])
    x = np.arange(len(tasks) + 1)
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(x) + 2), 4.4), constrained_layout=True)
    for offset, policy, color, label in (
        (-width / 2, "learned", "tab:red", "learned (CEM over Q)"),
        (width / 2, "scripted", "tab:blue", "noisy scripted"),
    ):
        rates = [result["tasks"][t][f"{policy}_rate"] for t in tasks]
        lows = [
            r - result["tasks"][t][f"{policy}_ci"][0] for t, r in zip(tasks, rates, strict=True)
        ]
        highs = [
            result["tasks"][t][f"{policy}_ci"][1] - r for t, r in zip(tasks, rates, strict=True)
        ]
        counts = [f"{result['tasks'][t][policy]}" for t in tasks]
        bars = ax.bar(
            x[:-1] + offset, rates, width, yerr=[lows, highs], capsize=3, color=color, label=label
        )
        ax.bar_label(bars, counts, padding=2, fontsize=7)  # successes above each bar
        ax.bar(x[-1] + offset, result["mean"][f"{policy}_rate"], width, color=color, alpha=0.6)
    ax.set_xticks(x, [*tasks, "mean"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("success (sim oracle)")
    ax.set_title(
        f"{Path(result['checkpoint']).name}: {result['episodes_per_task']} paired scenes per "
        f"task, 95 % Wilson intervals"
    )
    ax.legend()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(out: Path, rows: Sequence[dict], result: dict, settings: dict) -> None:
    """Write results.md, tasks.csv, episodes.csv, results.png and result.json into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "results.md", format_markdown(result, settings).encode())
    records = task_records(result)
    header = list(dict.fromkeys(k for r in records for k in r))
    atomic_write_bytes(out / "tasks.csv", _csv_bytes(header, records))
    header = list(dict.fromkeys(k for r in rows for k in r))
    atomic_write_bytes(out / "episodes.csv", _csv_bytes(header, rows))
    plot_results(result, out / "results.png")
    atomic_write_bytes(out / "result.json", (json.dumps(result) + "\n").encode())
