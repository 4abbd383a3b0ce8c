#!/usr/bin/env python3
"""Render docs/results/learning/lift_curve.png: lift-any success of the networks of the
on-policy recipe against the episodes they were trained on, on the same 300 fresh seed-11
scenes (`mtopt-eval ... --episodes-per-task 300 --seed 11 --learned-start cell`), with the
noisy scripted pick on those scenes.

    .venv/bin/python scripts/render_lift_curve.py              # PNG from the committed CSV
    .venv/bin/python scripts/render_lift_curve.py --from-runs  # CSV first, from runs/*/result.json
    .venv/bin/python scripts/render_lift_curve.py --csv C --png P  # other files

`--from-runs` rebuilds docs/results/learning/lift_curve.csv from the evaluations listed in
POINTS (they live under the gitignored runs/ of the machine that measured them; the commands
are in docs/results/learning.md); a point whose evaluation is not on this machine keeps its
row of the CSV.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

from mtopt_experiments.stats import wilson_interval

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "results" / "learning"
CSV_PATH = DOCS / "lift_curve.csv"
PNG_PATH = DOCS / "lift_curve.png"

#: (series, episodes, on-policy episodes among them, learner steps, learner seed, evaluation).
#: Every network: wrist camera, tool-frame moves, 64 px policy image, cosine decay + weight
#: average; the 6000 and 12 000 episodes are the cells' scripted/random mix (round 0).
POINTS = [
    ("one round 0 per size", 6000, 0, 6000, 0, "runs/s42/eval_decay_s0"),
    ("one round 0 per size", 6000, 0, 6000, 2, "runs/s42/eval_decay_s2"),
    ("one round 0 per size", 12000, 0, 12000, 0, "runs/s43/eval_d12k_s0"),
    ("one round 0 per size", 12000, 0, 12000, 2, "runs/s43/eval_d12k_s2"),
    ("recipe (mtopt-train-sim --round-start scratch)", 12000, 0, 12000, 1,
     "runs/s45/eval_recipe_r00"),
    ("recipe (mtopt-train-sim --round-start scratch)", 18000, 6000, 18000, 1,
     "runs/s45/eval_recipe_r01"),
    ("recipe assembled by hand (released network)", 18000, 6000, 18000, 0,
     "runs/s44/eval_onpol18k_s0"),
    ("the same 18 000 bags, Monte Carlo targets for lift", 18000, 6000, 18000, 1,
     "runs/s47/eval300_recipe_mclift"),
    ("the same 18 000 bags, Monte Carlo targets for lift", 18000, 6000, 18000, 0,
     "runs/s47/eval300_mclift18k"),
    ("recipe, Monte Carlo targets for lift in both rounds", 12000, 0, 12000, 1,
     "runs/s47/eval300_mcrecipe_r00"),
    ("recipe, Monte Carlo targets for lift in both rounds", 18000, 6000, 18000, 1,
     "runs/s47/eval300_mcrecipe_r01"),
    ("recipe, Monte Carlo targets for lift in both rounds", 18000, 6000, 18000, 2,
     "runs/s48/eval300_fresh5_r01"),
]  # fmt: skip
HEADER = (
    "series", "episodes", "on_policy_episodes", "steps", "learner_seed", "eval_episodes",
    "learned", "scripted", "learned_ci_low", "learned_ci_high", "evaluation",
)  # fmt: skip


def rows_from_runs(committed: list[dict]) -> list[dict]:
    """The POINTS' rows, from their evaluations where this machine has them, else from
    `committed` (the CSV's rows)."""
    kept = {r["evaluation"]: r for r in committed}
    rows = []
    for series, episodes, on_policy, steps, seed, evaluation in POINTS:
        path = ROOT / evaluation / "result.json"
        if not path.is_file():
            if evaluation in kept:
                rows.append(kept[evaluation])
            else:
                print(f"skipped (no {path} and no row in the CSV)", file=sys.stderr)
            continue
        result = json.loads(path.read_text())["tasks"]["lift-any"]
        low, high = wilson_interval(result["learned"], result["episodes"])
        rows.append({
            "series": series, "episodes": episodes, "on_policy_episodes": on_policy,
            "steps": steps, "learner_seed": seed, "eval_episodes": result["episodes"],
            "learned": result["learned"], "scripted": result["scripted"],
            "learned_ci_low": round(low, 4), "learned_ci_high": round(high, 4),
            "evaluation": evaluation,
        })  # fmt: skip
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    colors = plt.get_cmap("tab10")
    for i, series in enumerate(dict.fromkeys(r["series"] for r in rows)):
        offset = (i - 1) * 250  # the series side by side, not on top of each other
        by_size: dict[int, list[float]] = {}
        for j, r in enumerate(r for r in rows if r["series"] == series):
            x, rate = int(r["episodes"]) + offset, int(r["learned"]) / int(r["eval_episodes"])
            low, high = float(r["learned_ci_low"]), float(r["learned_ci_high"])
            ax.errorbar(
                x, rate, yerr=[[rate - low], [high - rate]], fmt="osD^v"[i % 5],
                color=colors(i), capsize=3, label=series if j == 0 else None,
            )  # fmt: skip
            by_size.setdefault(x, []).append(rate)
        if len(by_size) > 1:  # the mean over learner seeds at each size
            xs = sorted(by_size)
            means = [sum(by_size[x]) / len(by_size[x]) for x in xs]
            ax.plot(xs, means, "-", color=colors(i), alpha=0.5)
    scripted = {int(r["scripted"]) / int(r["eval_episodes"]) for r in rows}
    for k, rate in enumerate(sorted(scripted)):
        ax.axhline(rate, ls="--", color="gray",
                   label="noisy scripted pick, same scenes" if k == 0 else None)  # fmt: skip
    ax.axhline(0.6, ls=":", color="black", label="issue target 60 %")
    ax.set_xlim(4500, 19500)
    ax.set_ylim(0, 1)
    ax.set_xlabel("episodes collected (all earlier episodes included)")
    ax.set_ylabel("lift-any success, 300 fresh scenes")
    ax.set_title("lift-any: wrist camera, CEM over the Q-network (95 % Wilson)")
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from-runs", action="store_true", help="rebuild the CSV from runs/")
    parser.add_argument("--csv", type=Path, default=CSV_PATH, help="the curve's points")
    parser.add_argument("--png", type=Path, default=PNG_PATH, help="the picture")
    args = parser.parse_args(argv)
    if args.from_runs:
        committed = []
        if args.csv.is_file():
            with open(args.csv, newline="") as f:
                committed = list(csv.DictReader(f))
        rows = rows_from_runs(committed)
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv} ({len(rows)} rows)")
    try:
        with open(args.csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise SystemExit(f"render_lift_curve: no {args.csv} (--from-runs writes it)") from None
    missing = set(HEADER) - set(rows[0] if rows else HEADER)
    if not rows or missing:
        raise SystemExit(f"render_lift_curve: {args.csv}: no points or missing {sorted(missing)}")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, args.png)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
