"""Throughput of bulk simulated collection against the ROS graph (prints ONE JSON line).

    python -m mtopt_sim.bench_collect [--episodes 200] [--workers 2]
                                      [--ros-baseline-per-hour R | --ros-episodes 6]

Runs `mtopt-sim-collect` (`mtopt_sim.bulk_collect.collect`) into a temporary directory with W
spawn workers and the same episode mix as `python -m mtopt_policy.bench`: freshly initialized
`small` Q-network weights (so the policy's configured mix of scripted and CEM episodes with
epsilon runs), no success detector. Then measures the ROS graph's episodes/hour on this machine
by running `python -m mtopt_policy.bench --episodes N --no-sd` (one simulated cell through
real DDS, every node its own process) as a subprocess, unless `--ros-baseline-per-hour` gives
that figure (e.g. from an earlier run of it).

Both rates are steady-state figures: per cell, episodes after the first one over the time from
the first to the last episode end (start-up excluded; the bulk figure sums its cells).
`episodes_per_hour_incl_startup` counts process start and model loading too. Target: the bulk
rate is at least 20 times the ROS graph's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 20.0


def steady_per_hour(arrivals: dict[int, list[float]]) -> float:
    """Sum over cells of (episodes - 1) / (last end - first end), per hour."""
    total = 0.0
    for times in arrivals.values():
        if len(times) >= 2 and times[-1] > times[0]:
            total += (len(times) - 1) / (times[-1] - times[0]) * 3600
    return total


def write_fresh_weights(directory: Path) -> Path:
    """A freshly initialized `small` Q-network checkpoint (with its .sha256 sidecar)."""
    import torch

    from mtopt_core.checkpoint import save_checkpoint
    from mtopt_core.qnet import QNet, QNetConfig
    from mtopt_core.tasks import load_task_registry

    names = load_task_registry().names
    torch.manual_seed(0)
    path = directory / "bench_qnet.ckpt"
    save_checkpoint(path, QNet(QNetConfig.small(len(names))), names, step=1)
    return path


def ros_baseline(episodes: int, timeout_s: float) -> dict:
    """`python -m mtopt_policy.bench --episodes N --no-sd` in a subprocess: its JSON line."""
    command = [sys.executable, "-m", "mtopt_policy.bench", "--episodes", str(episodes), "--no-sd"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} exited {proc.returncode}:\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def run(
    episodes: int,
    workers: int,
    use_weights: bool,
    ros_per_hour: float | None,
    ros_episodes: int,
    timeout_s: float,
) -> dict:
    from mtopt_sim.bulk_collect import CollectConfig, collect

    tmp = Path(tempfile.mkdtemp(prefix="mtopt-bench-collect-"))
    try:
        weights = str(write_fresh_weights(tmp)) if use_weights else ""
        config = CollectConfig(
            episodes=episodes, out=tmp / "episodes", workers=workers, weights=weights,
            progress=False,
        )  # fmt: skip
        started = time.monotonic()
        result = collect(config)
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bulk = steady_per_hour(result.arrivals)
    summary = result.summary
    if ros_per_hour is None:
        ros = ros_baseline(ros_episodes, timeout_s)
        ros_per_hour = float(ros["episodes_per_hour"])
        source = f"measured: python -m mtopt_policy.bench --episodes {ros_episodes} --no-sd"
    else:
        source = "given (--ros-baseline-per-hour)"
    ratio = bulk / ros_per_hour if ros_per_hour > 0 else 0.0
    return {
        "bench": "mtopt_sim.bulk_collect",
        "episodes": summary["collected"],
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "q_network": "small (64 px), random init" if use_weights else None,
        "episodes_by_kind": summary["episodes_by_kind"],
        "episodes_per_hour": round(bulk, 1),
        "episodes_per_hour_incl_startup": round(summary["collected"] / wall * 3600, 1),
        "wall_s": round(wall, 2),
        "ros_episodes_per_hour": round(ros_per_hour, 1),
        "ros_baseline": source,
        "ratio": round(ratio, 2),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--episodes", type=int, default=200, help="bulk episodes (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="bulk workers (default 2)")
    parser.add_argument(
        "--no-weights", action="store_true", help="no Q-network: scripted/random episodes only"
    )
    parser.add_argument(
        "--ros-baseline-per-hour", type=float, help="the ROS graph's episodes/hour (skip its run)"
    )
    parser.add_argument(
        "--ros-episodes", type=int, default=6, help="episodes of the ROS graph run (default 6)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="ROS run limit [s]")
    args = parser.parse_args(argv)
    if args.episodes < 2 * args.workers:
        parser.error("--episodes must be at least 2 per worker (a steady-state rate needs 2)")
    if args.ros_episodes < 2:
        parser.error("--ros-episodes must be >= 2")
    result = run(
        args.episodes,
        args.workers,
        not args.no_weights,
        args.ros_baseline_per_hour,
        args.ros_episodes,
        args.timeout,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
