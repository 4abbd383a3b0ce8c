#!/usr/bin/env python3
"""Regenerate docs/demo/demo.png, the README's picture of `make demo`: runs `make demo` with its
defaults (about 13 min on 2 cores) into --out and copies the run's demo.png.

    .venv/bin/python scripts/render_demo_docs.py [--out runs/demo_docs] [--run RUN_DIR]

--run copies from an existing demo run directory instead of running the demo; --docs writes
elsewhere than docs/demo.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "demo"


def newest_run(out: Path) -> Path:
    runs = sorted(p for p in out.iterdir() if (p / "demo.png").is_file())
    if not runs:
        raise SystemExit(f"render_demo_docs: no demo run with a demo.png under {out}")
    return runs[-1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo_docs"))
    parser.add_argument("--run", type=Path, help="an existing demo run directory")
    parser.add_argument("--docs", type=Path, default=DOCS, help="where the picture goes")
    args = parser.parse_args(argv)
    if args.run is None:
        out = args.out.resolve()
        status = subprocess.call(["make", "-C", str(ROOT), "demo", f"DEMO_ARGS=--out {out}"])
        if status != 0:
            return status
        run = newest_run(out)
    else:
        run = args.run
        if not (run / "demo.png").is_file():
            raise SystemExit(f"render_demo_docs: {run} has no demo.png")
    args.docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "demo.png", args.docs / "demo.png")
    print(f"wrote {args.docs / 'demo.png'} from {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
