"""Paired comparison of two learned policies evaluated on the same scenes by `mtopt-eval`.

    python -m mtopt_experiments.compare_evals A_EVAL B_EVAL [A2_EVAL B2_EVAL ...]

Each argument is an `mtopt-eval --out` directory (or its `episodes.csv`); arguments pair up
as (A, B), (A2, B2), ...: the learned episodes of A and B are matched by task and episode,
and every matched pair must have run the same scene (seed) from the same start state, or the
comparison is refused. Several pairs (e.g. one per set of training bags) pool their matched
episodes into one exact McNemar test per task.

Prints one JSON line: per task the episodes, A's and B's successes, the episodes only A or
only B succeeded in and the exact two-sided McNemar p. Exit status 2 for bad input.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from mtopt_experiments.stats import paired_comparison

#: What must agree between the two runs of a matched episode.
SCENE_KEYS = ("scene_seed", "start_state")


class CompareError(ValueError):
    """Input that cannot be compared (missing file, other scenes); exit status 2."""


def learned_episodes(path: Path) -> dict[tuple[str, int], dict[str, str]]:
    """The learned policy's rows of an evaluation, keyed by (task, episode)."""
    csv_path = path / "episodes.csv" if path.is_dir() else path
    try:
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise CompareError(f"{csv_path}: cannot read ({exc.strerror or exc})") from None
    needed = {"task", "episode", "policy", "success", *SCENE_KEYS}
    if rows and not needed <= set(rows[0]):
        missing = sorted(needed - set(rows[0]))
        raise CompareError(f"{csv_path}: not an mtopt-eval episodes.csv (no {missing})")
    try:
        learned = {(r["task"], int(r["episode"])): r for r in rows if r["policy"] == "learned"}
    except ValueError as exc:
        raise CompareError(f"{csv_path}: an episode number is not an integer ({exc})") from None
    if not learned:
        raise CompareError(f"{csv_path}: no learned episodes")
    return learned


def compare(pairs: list[tuple[Path, Path]]) -> dict:
    """Pooled paired counts per task over the matched episodes of every (A, B) pair."""
    outcomes: dict[str, tuple[list[str], list[str]]] = {}  # task -> A's and B's "1"/"0"
    for path_a, path_b in pairs:
        a, b = learned_episodes(path_a), learned_episodes(path_b)
        matched = sorted(set(a) & set(b))
        if not matched:
            raise CompareError(f"{path_a} and {path_b} share no (task, episode)")
        for key in matched:
            for field in SCENE_KEYS:
                if a[key][field] != b[key][field]:
                    raise CompareError(
                        f"{path_a} and {path_b}: {key[0]} episode {key[1]} ran other scenes "
                        f"({field} {a[key][field]} vs {b[key][field]})"
                    )
            won_a, won_b = outcomes.setdefault(key[0], ([], []))
            won_a.append("1" if a[key]["success"] == "True" else "0")
            won_b.append("1" if b[key]["success"] == "True" else "0")
    tasks = {}
    for task, (won_a, won_b) in outcomes.items():
        paired = paired_comparison("".join(won_a), "".join(won_b))
        tasks[task] = {
            "episodes": len(won_a), "a": won_a.count("1"), "b": won_b.count("1"),
            "only_a": paired["only_learned"], "only_b": paired["only_scripted"],
            "mcnemar_p": paired["mcnemar_p"],
        }  # fmt: skip
    return {"pairs": len(pairs), "tasks": tasks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mtopt_experiments.compare_evals", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("evals", nargs="+", type=Path, help="A B [A2 B2 ...]: mtopt-eval outputs")
    args = parser.parse_args(argv)
    if len(args.evals) % 2:
        parser.error("evaluations pair up: give an even number (A B [A2 B2 ...])")
    pairs = list(zip(args.evals[::2], args.evals[1::2], strict=True))
    try:
        result = compare(pairs)
    except CompareError as exc:
        print(f"compare_evals: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
