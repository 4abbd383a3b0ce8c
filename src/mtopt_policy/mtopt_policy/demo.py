"""`python -m mtopt_policy.demo` (what `make demo` runs): a simulated cell collects episodes.

Launches `launch/sim_cell.launch.yaml` through mtopt-launch (MuJoCo cell, arm controller, reset
bin, policy with the scripted/epsilon mix, logger, collector; the SD too when a checkpoint is
given), waits until the collector has logged the episodes, then reads every episode bag back
and prints a per-task table of what was collected and how it was graded (SD and sim oracle).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from mtopt_core.episode_bag import EpisodeBagError, list_episode_bags, read_bag_messages
from mtopt_core.sd_model import CheckpointError, load_checkpoint
from mtopt_launch import cli
from mtopt_launch.demo import find_workspace_file

SIM_CELL_LAUNCH = Path("launch") / "sim_cell.launch.yaml"
EPISODE_INFO_TYPE = "mtopt_interfaces/msg/EpisodeInfo"


def read_episode_infos(episode_dir: Path) -> tuple[list, list[str]]:
    """The EpisodeInfo of every complete bag, and the problems of unreadable ones."""
    infos, problems = [], []
    for bag in list_episode_bags(episode_dir):
        try:
            found = [m.message for m in read_bag_messages(bag) if m.msgtype == EPISODE_INFO_TYPE]
        except EpisodeBagError as exc:
            problems.append(str(exc))
            continue
        if len(found) != 1:
            problems.append(f"{bag}: {len(found)} EpisodeInfo records, expected 1")
            continue
        infos.append(found[0])
    return infos, problems


def summarize(infos: list) -> str:
    """Markdown table per commanded task: episodes, aborts, SD and oracle outcomes."""
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
            row["sd_success"] += int(info.sd_probabilities[index] >= 0.5)
        if info.has_oracle and index is not None:
            row["oracle_success"] += int(info.oracle_success[index])
        if len(info.sd_probabilities) and info.has_oracle:
            same = [
                (p >= 0.5) == bool(truth)
                for p, truth in zip(info.sd_probabilities, info.oracle_success, strict=True)
            ]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8, help="episodes to collect (default 8)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    parser.add_argument("--sd-checkpoint", default="", help="success-detector checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")

    launch_file = find_workspace_file(SIM_CELL_LAUNCH)
    run_dir = args.out.resolve() / time.strftime("%Y%m%d-%H%M%S")
    episode_dir = run_dir / "episodes"
    launch_args = [
        str(launch_file),
        f"episodes:={args.episodes}",
        f"episode_dir:={episode_dir}",
        f"sd_checkpoint:={args.sd_checkpoint}",
        f"seed:={args.seed}",
    ]
    if args.sd_checkpoint:
        # The cameras publish at the size the SD was trained on (the policy resizes to its own).
        try:
            sd_size = load_checkpoint(args.sd_checkpoint).config.image_size
        except CheckpointError as exc:
            print(f"[demo] error: {exc}", file=sys.stderr)
            return 2
        launch_args.append(f"camera_size:={sd_size}")
    print(f"[demo] mtopt-launch {' '.join(launch_args)}", flush=True)
    if not args.sd_checkpoint:
        print("[demo] no --sd-checkpoint: episodes are graded by the sim oracle only", flush=True)
    started = time.monotonic()
    status = cli.main(launch_args)
    wall = time.monotonic() - started
    print(f"[demo] launch finished with exit status {status} after {wall:.1f} s", flush=True)

    infos, problems = read_episode_infos(episode_dir)
    for problem in problems:
        print(f"[demo] unreadable bag: {problem}", flush=True)
    table = summarize(infos)
    summary = (
        f"# Demo: {len(infos)} episodes from one simulated cell in {wall:.0f} s\n\n"
        f"Bags: `{episode_dir}`\n\n{table}\n"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.md").write_text(summary)
    print(summary, flush=True)
    print(f"[demo] summary written to {run_dir / 'summary.md'}", flush=True)
    if status != 0 or problems or len(infos) < args.episodes:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
