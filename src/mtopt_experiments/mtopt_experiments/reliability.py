"""`mtopt-reliability`: fault injection and soak on simulated cells, then an audit of every bag.

    mtopt-reliability --out runs/reliability --cells 2 --duration 3600 --fault-every 120

mtopt_bringup's `sim_cell.launch.yaml` runs `--cells` full cell graphs (every node its own
process, real DDS) with `respawn:=true`, collecting until `--duration` seconds have passed.
Meanwhile this process

* **injects faults**: every `--fault-every` seconds (none in the last `--settle` s) it
  SIGKILLs the next node in `--kill` (round robin over the cells), as a crash or a pulled
  cable would; the launcher respawns it.
  A fault is *survived* when the node is back (a new process) within `--respawn-timeout` and
  the cell logs at least one more episode afterwards;
* **samples** the resident memory (VmRSS) of every node process every `--sample-every` s.
  With `--fault-cells N` only the first N cells get faults: the others are a pure soak, whose
  nodes live the whole run.

Afterwards it stops the graph (SIGINT, as Ctrl-C) and audits the episode directory: every
complete bag must be readable with exactly one EpisodeInfo whose id is the bag's name, no
episode twice (same cell and start time), and `<id>.part` directories (recordings cut by a
fault, which readers never take) are counted. Aborted episodes are counted by reason.

Memory growth per node: the slope of a least-squares line through its samples after the
warm-up (`--warmup` s after the process started), in % of its mean per hour.

Output in --out: `report.md`, `memory.csv` (time, node, pid, rss), `faults.csv`,
`result.json`; the same JSON as ONE line on stdout. Progress on stderr. Exit status 0 when
the audit is clean and every fault was survived, 1 otherwise, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.episode_bag import PART_SUFFIX, EpisodeBagError, read_bag_messages

#: Node names of a cell graph (cell.launch.yaml), in the default kill order.
CELL_NODES = ("policy", "logger", "iiwa_controller", "reset_bin", "collector", "sim_cell")
INFO_SUFFIX = "/episode_info"


@dataclass
class Fault:
    node: str  # /cellK/name
    killed_pid: int
    at_s: float  # seconds since the launch started
    episodes_before: int
    respawn_pid: int = 0
    respawned_after_s: float = float("nan")
    episodes_after: int = 0  # episodes of the cell logged after the kill

    @property
    def survived(self) -> bool:
        return self.respawn_pid > 0 and self.episodes_after > 0


@dataclass
class Audit:
    bags: int = 0
    unreadable: list[str] = field(default_factory=list)
    part_leftovers: int = 0
    duplicates: int = 0
    aborted: dict[str, int] = field(default_factory=dict)
    episodes_by_cell: dict[int, int] = field(default_factory=dict)


# -------------------------------------------------------------------------- processes
def node_processes() -> dict[str, int]:
    """`/ns/name` -> pid of every running ROS node process of this user (from /proc)."""
    found: dict[str, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        name = ns = None
        for a in args:
            if a.startswith("__node:="):
                name = a.split(":=", 1)[1]
            elif a.startswith("__ns:="):
                ns = a.split(":=", 1)[1]
        if name:
            found[f"{(ns or '').rstrip('/')}/{name}"] = int(entry.name)
    return found


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def descendants(pid: int) -> set[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, []))
    return out


# ------------------------------------------------------------------------------ audit
def audit_episodes(episode_dir: Path) -> Audit:
    """Read every bag of `episode_dir` (see the module docstring)."""
    audit = Audit()
    aborted: Counter[str] = Counter()
    seen: dict[tuple[int, int], str] = {}
    if not episode_dir.is_dir():
        return audit
    for path in sorted(episode_dir.iterdir()):
        if not path.is_dir():
            continue
        if path.name.endswith(PART_SUFFIX):
            audit.part_leftovers += 1
            continue
        audit.bags += 1
        try:
            infos = [m.message for m in read_bag_messages(path) if m.topic.endswith(INFO_SUFFIX)]
        except EpisodeBagError as exc:
            audit.unreadable.append(str(exc))
            continue
        if len(infos) != 1 or infos[0].episode_id != path.name:
            ids = [i.episode_id for i in infos]
            audit.unreadable.append(f"{path}: EpisodeInfo records {ids}, expected one of its own")
            continue
        info = infos[0]
        key = (int(info.cell_id), int(info.start_time.sec) * 10**9 + int(info.start_time.nanosec))
        if key in seen:
            audit.duplicates += 1
        seen[key] = path.name
        cell = int(info.cell_id)
        audit.episodes_by_cell[cell] = audit.episodes_by_cell.get(cell, 0) + 1
        if info.aborted:
            aborted[_reason(info.abort_reason)] += 1
    audit.aborted = dict(aborted.most_common())
    return audit


def _reason(text: str) -> str:
    """An abort reason without its numbers and ids, for counting."""
    words = [w for w in text.replace(":", " ").split() if not any(c.isdigit() for c in w)]
    return " ".join(words[:8]) or "(no reason)"


def count_episodes(episode_dir: Path) -> dict[int, int]:
    """Complete bags per cell, from the directory names (cheap; bags are read at the end)."""
    counts: dict[int, int] = {}
    if episode_dir.is_dir():
        for path in episode_dir.iterdir():
            if path.is_dir() and not path.name.endswith(PART_SUFFIX):
                cell = _cell_from_id(path.name)
                counts[cell] = counts.get(cell, 0) + 1
    return counts


def _cell_from_id(episode_id: str) -> int:
    """The collector's episode ids start with `cell<K>_`; -1 when not."""
    head = episode_id.split("_", 1)[0]
    return int(head[4:]) if head.startswith("cell") and head[4:].isdigit() else -1


def memory_growth(samples: list[tuple[float, str, int, float]], warmup_s: float) -> dict:
    """Per node: start/end RSS [MB] and the growth slope after warm-up [% of mean per hour]."""
    series: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for t, node, pid, mb in samples:
        series.setdefault((node, pid), []).append((t, mb))
    out: dict[str, dict] = {}
    for (node, pid), points in sorted(series.items()):
        t0 = points[0][0]
        steady = [(t, mb) for t, mb in points if t - t0 >= warmup_s]
        entry = {"pid": pid, "rss_mb_first": round(points[0][1], 1),
                 "rss_mb_last": round(points[-1][1], 1), "samples": len(steady),
                 "growth_pct_per_h": None}  # fmt: skip
        if len(steady) >= 3 and steady[-1][0] - steady[0][0] > 0:
            t = np.array([p[0] for p in steady]) / 3600.0
            mb = np.array([p[1] for p in steady])
            slope = float(np.polyfit(t, mb, 1)[0])
            entry["growth_pct_per_h"] = round(100.0 * slope / float(mb.mean()), 3)
        # the longest-lived process of a node represents it
        if node not in out or entry["samples"] > out[node]["samples"]:
            out[node] = entry
    return out


# ------------------------------------------------------------------------------ run
@dataclass
class CampaignConfig:
    out: Path
    cells: int = 1
    duration_s: float = 600.0
    fault_every_s: float = 60.0
    kill: tuple[str, ...] = CELL_NODES
    sample_every_s: float = 5.0
    warmup_s: float = 60.0
    respawn_timeout_s: float = 60.0
    #: Faults go to the first this many cells (None: all); the others are a pure soak.
    fault_cells: int | None = None
    #: No fault in the last this many seconds: each one gets time to show the cell goes on.
    settle_s: float = 30.0
    seed: int = 0
    #: The collector's `episode_silence_s` for the run (None: config/collector.yaml's).
    episode_silence_s: float | None = None

    def validate(self) -> None:
        if not 1 <= self.cells <= 4:
            raise ValueError("--cells must be 1..4")
        if self.duration_s <= 0 or self.sample_every_s <= 0:
            raise ValueError("--duration and --sample-every must be > 0")
        if min(self.fault_every_s, self.warmup_s, self.settle_s) < 0:
            raise ValueError("--fault-every, --warmup and --settle must be >= 0")
        if self.respawn_timeout_s <= 0:
            raise ValueError("--respawn-timeout must be > 0")
        unknown = sorted(set(self.kill) - set(CELL_NODES))
        if unknown:
            raise ValueError(f"--kill: unknown node(s) {unknown}; cell nodes: {CELL_NODES}")
        if self.fault_cells is not None and not 0 <= self.fault_cells <= self.cells:
            raise ValueError("--fault-cells must be in 0..--cells")
        if self.episode_silence_s is not None and not self.episode_silence_s > 0:
            raise ValueError("--episode-silence must be > 0")


def run_campaign(config: CampaignConfig, log=print) -> dict[str, Any]:
    from mtopt_demo.bringup import CONFIG_DIR, SIM_CELL_LAUNCH, bringup_file, ros_environment
    from mtopt_demo.stages import stop_launch

    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    episode_dir = out / "episodes"
    config_dir = out / "config"
    if not config_dir.exists():
        shutil.copytree(bringup_file(CONFIG_DIR), config_dir)
    if config.episode_silence_s is not None:
        path = config_dir / "collector.yaml"
        data = yaml.safe_load(path.read_text())
        data["/**/collector"]["ros__parameters"]["episode_silence_s"] = config.episode_silence_s
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    ros_environment(log)
    command = [
        sys.executable, "-m", "mtopt_launch.cli", "--log-dir", str(out / "logs"),
        str(bringup_file(SIM_CELL_LAUNCH)), f"cells:={config.cells}",
        "episodes:=0", f"episode_dir:={episode_dir}", f"seed:={config.seed}", "respawn:=true",
        f"config_dir:={config_dir}",
    ]  # fmt: skip
    log(f"mtopt-reliability: {' '.join(command[3:])}")
    samples: list[tuple[float, str, int, float]] = []
    faults: list[Fault] = []
    faulty = config.cells if config.fault_cells is None else config.fault_cells
    victims = [f"/cell{c}/{name}" for name in config.kill for c in range(faulty)]
    started = time.monotonic()
    launch_log = (out / "launch.log").open("w")
    proc = subprocess.Popen(command, stdout=launch_log, stderr=subprocess.STDOUT)
    next_sample = next_fault = 0.0
    pending: list[Fault] = []
    try:
        # Faults start once every cell logged an episode (the graph is up).
        while proc.poll() is None:
            now = time.monotonic() - started
            if now >= config.duration_s:
                break
            ours = descendants(proc.pid)
            nodes = {k: v for k, v in node_processes().items() if v in ours}
            counts = count_episodes(episode_dir)
            if now >= next_sample:
                for node, pid in nodes.items():
                    mb = rss_mb(pid)
                    if mb is not None:
                        samples.append((now, node, pid, mb))
                next_sample = now + config.sample_every_s
            for fault in list(pending):
                cell = int(fault.node.split("/")[1][4:])
                pid = nodes.get(fault.node, 0)
                if not fault.respawn_pid and pid and pid != fault.killed_pid:
                    fault.respawn_pid, fault.respawned_after_s = pid, round(now - fault.at_s, 1)
                    log(f"mtopt-reliability: {fault.node} back as pid {pid} after "
                        f"{fault.respawned_after_s} s")  # fmt: skip
                fault.episodes_after = counts.get(cell, 0) - fault.episodes_before
                if fault.respawn_pid and fault.episodes_after > 0:
                    pending.remove(fault)
                elif now - fault.at_s > config.respawn_timeout_s + 120:
                    pending.remove(fault)  # counted as not survived
            graph_up = all(counts.get(c, 0) > 0 for c in range(config.cells))
            quiet = now > config.duration_s - config.settle_s
            if (
                config.fault_every_s
                and graph_up
                and victims
                and now >= next_fault
                and not pending
                and not quiet
            ):
                node = victims[len(faults) % len(victims)]
                pid = nodes.get(node)
                if pid:
                    cell = int(node.split("/")[1][4:])
                    os.kill(pid, signal.SIGKILL)
                    fault = Fault(node, pid, round(now, 1), counts.get(cell, 0))
                    faults.append(fault)
                    pending.append(fault)
                    log(f"mtopt-reliability: t={now:.0f} s: SIGKILL {node} (pid {pid}); "
                        f"{sum(counts.values())} episodes so far")  # fmt: skip
                next_fault = now + config.fault_every_s
            time.sleep(1.0)
    finally:
        stop_launch(proc)
        launch_log.close()
    wall = time.monotonic() - started
    launch_exit = proc.returncode
    audit = audit_episodes(episode_dir)
    memory = memory_growth(samples, config.warmup_s)
    node_log = out / "logs" / "launch.log"
    text = node_log.read_text(errors="replace") if node_log.exists() else ""
    # Limit violations that reached the (simulated) arm, and plans the controller itself
    # refused before sending (safe: nothing moved).
    arm_refusals = text.count("iiwa/joint_trajectory refused")
    controller_refusals = text.count("trajectory refused, nothing sent")
    episodes = sum(audit.episodes_by_cell.values())
    growth = [m["growth_pct_per_h"] for m in memory.values() if m["growth_pct_per_h"] is not None]
    result = {
        "command": "mtopt-reliability",
        "out": str(out),
        "cells": config.cells,
        "wall_s": round(wall, 1),
        "launch_exit": launch_exit,
        "episodes": episodes,
        "episodes_per_hour": round(episodes / wall * 3600.0, 1),
        "bags": audit.bags,
        "unreadable_bags": len(audit.unreadable),
        "duplicate_episodes": audit.duplicates,
        "part_leftovers": audit.part_leftovers,
        "limit_violations_at_the_arm": arm_refusals,
        "plans_refused_by_the_controller": controller_refusals,
        "aborted": audit.aborted,
        "faults": len(faults),
        "faults_survived": sum(f.survived for f in faults),
        "max_memory_growth_pct_per_h": max(growth) if growth else None,
    }
    _write_outputs(out, result, audit, faults, samples, memory)
    return result


def _write_outputs(out, result, audit, faults, samples, memory) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["t_s", "node", "pid", "rss_mb"])
    writer.writerows((round(t, 1), n, p, round(mb, 2)) for t, n, p, mb in samples)
    atomic_write_bytes(out / "memory.csv", buf.getvalue().encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["node", "killed_pid", "at_s", "respawn_pid", "respawned_after_s",
                     "episodes_after", "survived"])  # fmt: skip
    for f in faults:
        writer.writerow([f.node, f.killed_pid, f.at_s, f.respawn_pid, f.respawned_after_s,
                         f.episodes_after, f.survived])  # fmt: skip
    atomic_write_bytes(out / "faults.csv", buf.getvalue().encode())
    full = {**result, "memory": memory, "fault_list": [asdict(f) for f in faults],
            "unreadable": audit.unreadable}  # fmt: skip
    atomic_write_bytes(out / "result.json", (json.dumps(full, indent=1) + "\n").encode())
    lines = [
        "# Reliability campaign",
        "",
        f"{result['cells']} simulated cell(s), {result['wall_s']} s, "
        f"{result['episodes']} episodes ({result['episodes_per_hour']}/h).",
        "",
        "| check | value |",
        "|---|---:|",
        f"| faults injected / survived | {result['faults']} / {result['faults_survived']} |",
        f"| complete bags / unreadable | {result['bags']} / {result['unreadable_bags']} |",
        f"| episodes logged twice | {result['duplicate_episodes']} |",
        f"| recordings cut by a fault (`.part`, never read) | {result['part_leftovers']} |",
        f"| trajectories beyond the joint limits reaching the arm | "
        f"{result['limit_violations_at_the_arm']} |",
        f"| plans the arm controller refused (nothing sent) | "
        f"{result['plans_refused_by_the_controller']} |",
        f"| largest memory growth after warm-up [%/h] | {result['max_memory_growth_pct_per_h']} |",
        "",
        "## Faults",
        "",
        "| node | killed at [s] | back after [s] | episodes after | survived |",
        "|---|---:|---:|---:|---|",
        *[
            f"| {f.node} | {f.at_s} | {f.respawned_after_s} | {f.episodes_after} | "
            f"{'yes' if f.survived else '**no**'} |"
            for f in faults
        ],  # fmt: skip
        "",
        "## Aborted episodes by reason",
        "",
        *([f"- {n} x {reason}" for reason, n in audit.aborted.items()] or ["- none"]),
        "",
        "## Memory per node (longest-lived process)",
        "",
        "| node | RSS first [MB] | RSS last [MB] | growth after warm-up [%/h] |",
        "|---|---:|---:|---:|",
        *[
            f"| {node} | {m['rss_mb_first']} | {m['rss_mb_last']} | {m['growth_pct_per_h']} |"
            for node, m in sorted(memory.items())
        ],  # fmt: skip
    ]
    atomic_write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtopt-reliability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of collection")
    p.add_argument("--fault-every", type=float, default=60.0, help="seconds; 0: no faults")
    p.add_argument("--kill", nargs="+", default=list(CELL_NODES), help="node names, in turn")
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--respawn-timeout", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=30.0, help="seconds without faults at the end")
    p.add_argument(
        "--fault-cells",
        type=int,
        default=None,
        help="faults only in the first N cells (default: all); the others are a pure soak",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--episode-silence",
        type=float,
        default=None,
        help="the collector's episode_silence_s (default: config/collector.yaml's)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = CampaignConfig(
        out=args.out, cells=args.cells, duration_s=args.duration, fault_every_s=args.fault_every,
        kill=tuple(args.kill), sample_every_s=args.sample_every, warmup_s=args.warmup,
        respawn_timeout_s=args.respawn_timeout, seed=args.seed,
        episode_silence_s=args.episode_silence, settle_s=args.settle, fault_cells=args.fault_cells,
    )  # fmt: skip
    try:
        config.validate()
    except ValueError as exc:
        print(f"mtopt-reliability: {exc}", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        result = run_campaign(config, log)
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result), flush=True)
    clean = (
        result["unreadable_bags"] == 0
        and result["limit_violations_at_the_arm"] == 0
        and result["duplicate_episodes"] == 0
        and result["faults_survived"] == result["faults"]
        and result["episodes"] > 0
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
