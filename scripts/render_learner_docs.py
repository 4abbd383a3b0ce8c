#!/usr/bin/env python3
"""Regenerate docs/learner/probe.png and probe.jsonl: the closed-loop lift-any measurement of the
README (`python -m mtopt_experiments.gym_probe` with the settings below; about an hour on 2 cores).

    .venv/bin/python scripts/render_learner_docs.py [--out runs/probe_docs]
"""

import argparse
import shutil
import sys
from pathlib import Path

from mtopt_experiments import gym_probe

#: The README's run: 800 offline episodes, one on-policy round of 400, 200 evaluation episodes.
PROBE_ARGS = [
    "--episodes", "800", "--steps", "2500", "--conservative-weight", "1.0", "--rounds", "1",
    "--round-episodes", "400", "--epsilon", "0.2", "--eval-episodes", "200",
]  # fmt: skip
DOCS = Path(__file__).resolve().parent.parent / "docs" / "learner"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/probe_docs"))
    args = parser.parse_args(argv)
    status = gym_probe.main([*PROBE_ARGS, "--out", str(args.out)])
    if status != 0:
        return status
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.out / "probe.png", DOCS / "probe.png")
    shutil.copyfile(args.out / "rounds.jsonl", DOCS / "probe.jsonl")
    print(f"wrote {DOCS / 'probe.png'} and {DOCS / 'probe.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
