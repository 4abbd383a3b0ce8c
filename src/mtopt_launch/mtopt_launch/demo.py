"""`python -m mtopt_launch.demo [name:=value ...]` (what `make demo` runs): the demo graph.

Runs `launch/demo.launch.yaml` with mtopt-launch: a DEMO cell (scripted fake episodes, no
robot, no learning) and a collector that runs a few episodes through the RunEpisode action and
exits, which ends the launch. Every node's output is shown with its `[namespace/name]` prefix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mtopt_launch import cli

DEMO_LAUNCH_FILE = Path("launch") / "demo.launch.yaml"


def find_workspace_file(relative: Path) -> Path:
    """A file of the workspace (e.g. `launch/x.launch.yaml`): searched above this module, then
    above the cwd."""
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for directory in (start, *start.parents):
            candidate = directory / relative
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{relative} not found above {starts[0]} or {starts[1]}; run from the workspace"
    )


def find_demo_launch_file() -> Path:
    """`launch/demo.launch.yaml` of the workspace."""
    return find_workspace_file(DEMO_LAUNCH_FILE)


def main(argv: list[str] | None = None) -> int:
    """Run the demo launch file; extra `name:=value` arguments are passed to it."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        launch_file = find_demo_launch_file()
    except FileNotFoundError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    print(f"[demo] mtopt-launch {launch_file} {' '.join(argv)}".rstrip(), flush=True)
    print(
        f"[demo] ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0 (default)')}; "
        "the DEMO cell runs scripted fake episodes (no robot, no learning)",
        flush=True,
    )
    status = cli.main([str(launch_file), *argv])
    print(f"[demo] finished with exit status {status}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
