"""`mtopt-reliability`: fault injection and soak on simulated cells, then an audit of every bag.

    mtopt-reliability --out runs/reliability --cells 2 --duration 3600 --fault-every 120

mtopt_bringup's `sim_cell.launch.yaml` runs `--cells` full cell graphs (every node its own
process, real DDS) with `respawn:=true`, collecting until `--duration` seconds have passed.
With `--learner`, `sim_learning.launch.yaml` instead: the same cells plus one learner node
(`/learner`, also respawning) that ingests the bags, trains and announces weights, made light
(`LEARNER_LIGHT`: tiny network and batch, one thread) in the run's copy of config/learner.yaml.
With `--sd` every cell also runs its success detector (`/cellK/sd`) on an untrained but valid
checkpoint the campaign writes to `--out`/sd.ckpt (or `--sd-checkpoint PATH`).
Meanwhile this process

* **injects faults**: every `--fault-every` seconds (none in the last `--settle` s) it
  SIGKILLs the next node in `--kill` (round robin over the cells; `learner` is one global
  node), as a crash or a pulled cable would; the launcher respawns it.
  A fault is *survived* when the node is back (a new process) within `--respawn-timeout` and
  then: a cell node's cell logs at least one more episode; the SD's cell logs an episode it
  graded; the learner announces the checkpoint it had before the kill again (same run id,
  version >= the kill's) and ingests more bags (its ledger grows). The learner is killed only
  once it has written a checkpoint;
* **samples** the resident memory (VmRSS) of every node process every `--sample-every` s;
* **counts camera frames**: its own node (`graph_monitor.GraphMonitor`) subscribes to every
  cell's `camera/<name>/image_raw` as the policy and the logger do (best effort) and finds
  frames missing from each stream's stamp sequence (the publishing period is config
  sim_cell.yaml's `camera_rate_hz`); the restarts of a killed sim_cell and the simulator's
  object respawns (nothing is published then) are counted apart, not as loss.
  With `--fault-cells N` only the first N cells get faults: the others are a pure soak, whose
  nodes live the whole run.

Afterwards it stops the graph (SIGINT, as Ctrl-C) and audits the episode directory: every
complete bag must be readable with exactly one EpisodeInfo whose id is the bag's name, no
episode twice (same cell and start time), and `<id>.part` directories (recordings cut by a
fault, which readers never take) are counted. Aborted episodes are counted by reason. With
the learner, its ledger must list no bag twice and it must have quarantined none (a complete bag
it could not read).

Memory growth per node: the slope of a least-squares line through its samples after the
warm-up (`--warmup` s after the process started), in % of its mean per hour.

Output in --out: `report.md`, `memory.csv` (time, node, pid, rss), `faults.csv`,
`camera_gaps.csv` (every gap of every camera stream), `monitor/` (the camera monitor's log and
raw frames), `result.json`; the same JSON as ONE line on stdout. Progress on stderr. Exit
status 0 when the audit is clean and every fault was survived, 1 otherwise, 2 for a bad option.
Camera loss is a measurement: it does not change the exit status.
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
from mtopt_core.episode_bag import (
    PART_SUFFIX,
    EpisodeBagError,
    list_episode_bags,
    make_typestore,
    read_bag_messages,
)
from mtopt_experiments.graph_monitor import DEEP_DEPTH, GraphMonitor, StreamLoss, sim_pauses

#: Node names of a cell graph (cell.launch.yaml), in the default kill order.
CELL_NODES = ("policy", "logger", "iiwa_controller", "reset_bin", "collector", "sim_cell")
#: The cell's success detector (with --sd / --sd-checkpoint) and the global learner
#: (--learner, sim_learning.launch.yaml): killed after the cell nodes by default.
SD_NODE = "sd"
LEARNER_NODE = "learner"
KILLABLE = (*CELL_NODES, SD_NODE, LEARNER_NODE)
INFO_SUFFIX = "/episode_info"
SIM_LEARNING_LAUNCH = Path("launch") / "sim_learning.launch.yaml"
WEIGHTS_TOPIC = "/policy/weights"
#: The learner's settings in a campaign (config/learner.yaml of the run): a step in
#: milliseconds on one thread, a checkpoint (= a weight update to every cell) now and then.
LEARNER_LIGHT = {
    "net": "tiny", "batch_size": 4, "cem_population": 6, "cem_elites": 2,
    "cem_iterations": 1, "torch_threads": 1, "min_episodes": 2, "checkpoint_every": 100,
    "poll_every_s": 2.0, "max_bags_per_poll": 0, "tensorboard": False, "status_every_s": 10.0,
}  # fmt: skip


@dataclass
class Fault:
    node: str  # /cellK/name or /learner
    killed_pid: int
    at_s: float  # seconds since the launch started
    episodes_before: int
    respawn_pid: int = 0
    respawned_after_s: float = float("nan")
    episodes_after: int = 0  # episodes of the cell (all cells: learner) logged after the kill
    #: The node does its work again (see the module docstring), and what showed it.
    recovered: bool = False
    evidence: str = ""
    recovered_after_s: float = float("nan")  # kill to the first sign of work (campaign clock)
    #: Learner: its newest checkpoint step, run id and ledger lines at the kill.
    checkpoint_step: int | None = None
    run_id: str | None = None
    ledger_lines: int = 0
    #: SD: the bags there were when the node came back (it cannot have graded them).
    sd_known: set[str] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["sd_known"]
        return {**out, "survived": self.survived}

    @property
    def name(self) -> str:
        return self.node.rsplit("/", 1)[1]

    @property
    def cell(self) -> int | None:
        head = self.node.split("/")[1]
        return int(head[4:]) if head.startswith("cell") else None

    @property
    def survived(self) -> bool:
        return self.respawn_pid > 0 and self.recovered


@dataclass
class Audit:
    bags: int = 0
    unreadable: list[str] = field(default_factory=list)
    part_leftovers: int = 0
    duplicates: int = 0
    aborted: dict[str, int] = field(default_factory=dict)
    episodes_by_cell: dict[int, int] = field(default_factory=dict)
    graded: int = 0  # episodes with SD probabilities


# -------------------------------------------------------------------------- processes
def node_processes(pids: set[int] | None = None) -> dict[str, int]:
    """`/ns/name` -> pid of every running ROS node process (from /proc), or only of `pids`
    (a graph's own: other graphs on the machine may run nodes of the same names)."""
    found: dict[str, int] = {}
    if pids is None:
        pids = {int(e.name) for e in os.scandir("/proc") if e.name.isdigit()}
    for pid in sorted(pids):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
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
            found[f"{(ns or '').rstrip('/')}/{name}"] = pid
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
        if len(info.sd_probabilities):
            audit.graded += 1
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


class GradedBags:
    """Which complete bags of a directory the SD graded (each bag read once, EpisodeInfo only)."""

    def __init__(self, episode_dir: Path):
        self.episode_dir = episode_dir
        self._graded: dict[str, bool] = {}
        self._store = None

    def of_cell(self, cell: int, skip: set[str] = frozenset()) -> list[str]:
        """Names of the cell's graded bags, except `skip`."""
        out = []
        for path in list_episode_bags(self.episode_dir):
            if path.name in skip or _cell_from_id(path.name) != cell:
                continue
            if path.name not in self._graded:
                self._graded[path.name] = self._read(path, cell)
            if self._graded[path.name]:
                out.append(path.name)
        return out

    def _read(self, path: Path, cell: int) -> bool:
        self._store = self._store or make_typestore()
        try:
            infos = [m.message for m in read_bag_messages(path, [f"/cell{cell}{INFO_SUFFIX}"],
                                                          self._store)]  # fmt: skip
        except EpisodeBagError:
            return False  # the audit reports it
        return any(len(info.sd_probabilities) for info in infos)


def learner_state(learner_dir: Path) -> tuple[int | None, str | None, int]:
    """(newest checkpoint step or None, run id or None, ledger lines) of a learner run."""
    from mtopt_learner.checkpoints import CHECKPOINT_DIR, checkpoint_steps, read_run_id

    steps = checkpoint_steps(learner_dir / CHECKPOINT_DIR)
    return (steps[-1][0] if steps else None, read_run_id(learner_dir),
            len(_ledger_lines(learner_dir)))  # fmt: skip


def _ledger_lines(learner_dir: Path) -> list[bytes]:
    from mtopt_learner.config import STATE_DIR
    from mtopt_learner.log_replay import LEDGER_NAME

    try:
        data = (learner_dir / STATE_DIR / LEDGER_NAME).read_bytes()
    except OSError:
        return []
    return [line for line in data.split(b"\n") if line.strip()]


def learner_audit(learner_dir: Path, episode_dir: Path, announced: int) -> dict[str, Any]:
    """The learner's ledger against the bags: each bag at most once, none quarantined."""
    from mtopt_learner.config import STATE_DIR

    names: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    torn = 0
    for line in _ledger_lines(learner_dir):
        try:
            record = json.loads(line)
            names[record["name"]] += 1
            outcomes[record["outcome"]] += 1
        except (ValueError, KeyError, TypeError):
            torn += 1  # a line cut by a kill: that bag counts as not seen, and comes again
    quarantine = learner_dir / STATE_DIR / "quarantine"
    bags = {p.name for p in list_episode_bags(episode_dir)}
    step, run_id, _ = learner_state(learner_dir)
    return {
        "ledger_bags": len(names),
        "ledger_outcomes": dict(outcomes.most_common()),
        "ledger_duplicates": sum(n - 1 for n in names.values() if n > 1),
        "ledger_torn_lines": torn,
        "quarantined": len(list(quarantine.iterdir())) if quarantine.is_dir() else 0,
        "bags_not_yet_seen": len(bags - set(names)),
        "last_checkpoint_step": step,
        "run_id": run_id,
        "weights_announced": announced,
    }


def make_sd_checkpoint(path: Path, seed: int = 0) -> str:
    """An untrained but valid success-detector checkpoint for the task registry; its sha256."""
    import torch

    from mtopt_core.sd_model import SDModelConfig, SuccessDetector, save_checkpoint
    from mtopt_core.tasks import load_task_registry

    torch.manual_seed(seed)
    model = SuccessDetector(SDModelConfig(task_names=tuple(load_task_registry().names)))
    return save_checkpoint(path, model, {"note": "untrained (mtopt-reliability)"})


def camera_summary(
    losses: dict[str, dict[str, StreamLoss]], period_s: float, deep_depth: int
) -> dict[str, Any]:
    """Per monitor queue (`sensor`, `deep`): per stream and in total, as result.json has it."""
    from mtopt_bridge.qos import SENSOR_QOS

    out: dict[str, Any] = {
        "period_s": period_s,
        "depth": {"sensor": SENSOR_QOS.depth, "deep": deep_depth},
    }
    for queue, streams in losses.items():
        total = StreamLoss()
        for loss in streams.values():
            total.add(loss)
        out[queue] = {
            "total": total.to_dict(),
            "per_stream": {topic: loss.to_dict() for topic, loss in sorted(streams.items())},
        }
    return out


# ------------------------------------------------------------------------------ run
@dataclass
class CampaignConfig:
    out: Path
    cells: int = 1
    duration_s: float = 600.0
    fault_every_s: float = 60.0
    #: Node names killed in turn; None: every node the run has (cell nodes, sd, learner).
    kill: tuple[str, ...] | None = None
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
    #: Run sim_learning.launch.yaml: the cells plus one (respawning) learner node.
    learner: bool = False
    #: Run each cell's SD node on an untrained checkpoint written to out/sd.ckpt ...
    sd: bool = False
    #: ... or on this one.
    sd_checkpoint: Path | None = None
    #: Depth of the camera monitor's deep queue (its other one is SENSOR_QOS's, the nodes').
    camera_deep_depth: int = DEEP_DEPTH

    @property
    def has_sd(self) -> bool:
        return self.sd or self.sd_checkpoint is not None

    def kill_order(self) -> tuple[str, ...]:
        if self.kill is not None:
            return tuple(self.kill)
        return (*CELL_NODES, *((SD_NODE,) if self.has_sd else ()),
                *((LEARNER_NODE,) if self.learner else ()))  # fmt: skip

    def validate(self) -> None:
        if not 1 <= self.cells <= 4:
            raise ValueError("--cells must be 1..4")
        if self.duration_s <= 0 or self.sample_every_s <= 0:
            raise ValueError("--duration and --sample-every must be > 0")
        if min(self.fault_every_s, self.warmup_s, self.settle_s) < 0:
            raise ValueError("--fault-every, --warmup and --settle must be >= 0")
        if self.respawn_timeout_s <= 0:
            raise ValueError("--respawn-timeout must be > 0")
        kill = self.kill_order()
        unknown = sorted(set(kill) - set(KILLABLE))
        if unknown:
            raise ValueError(f"--kill: unknown node(s) {unknown}; nodes: {KILLABLE}")
        if SD_NODE in kill and not self.has_sd:
            raise ValueError("--kill sd needs --sd or --sd-checkpoint")
        if LEARNER_NODE in kill and not self.learner:
            raise ValueError("--kill learner needs --learner")
        if self.sd and self.sd_checkpoint is not None:
            raise ValueError("--sd writes a checkpoint; --sd-checkpoint names one: not both")
        if self.camera_deep_depth < 1:
            raise ValueError("--camera-deep-depth must be >= 1")
        if self.sd_checkpoint is not None and not Path(self.sd_checkpoint).is_file():
            raise ValueError(f"--sd-checkpoint {self.sd_checkpoint}: no such file")
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
    learner_dir = out / "learner"
    config_dir = out / "config"
    if not config_dir.exists():
        shutil.copytree(bringup_file(CONFIG_DIR), config_dir)
    if config.episode_silence_s is not None:
        _set_params(config_dir / "collector.yaml", "collector",
                    {"episode_silence_s": config.episode_silence_s})  # fmt: skip
    launch_file = SIM_CELL_LAUNCH
    extra_args: list[str] = []
    if config.learner:
        _set_params(config_dir / "learner.yaml", "learner", LEARNER_LIGHT)
        launch_file = SIM_LEARNING_LAUNCH
        extra_args.append(f"out_dir:={learner_dir}")
    sd_checkpoint = config.sd_checkpoint
    if config.sd:
        sd_checkpoint = out / "sd.ckpt"
        make_sd_checkpoint(sd_checkpoint, config.seed)
        log(f"mtopt-reliability: untrained SD checkpoint {sd_checkpoint}")
    if sd_checkpoint is not None:
        extra_args.append(f"sd_checkpoint:={Path(sd_checkpoint).resolve()}")
    ros_environment(log)
    command = [
        sys.executable, "-m", "mtopt_launch.cli", "--log-dir", str(out / "logs"),
        str(bringup_file(launch_file)), f"cells:={config.cells}",
        "episodes:=0", f"episode_dir:={episode_dir}", f"seed:={config.seed}", "respawn:=true",
        f"config_dir:={config_dir}", *extra_args,
    ]  # fmt: skip
    log(f"mtopt-reliability: {' '.join(command[3:])}")
    sim_params = _params(config_dir / "sim_cell.yaml", "sim_cell")
    period_s = 1.0 / float(sim_params.get("camera_rate_hz", _sim_default("camera_rate_hz")))
    cameras = list(sim_params.get("cameras", _sim_default("cameras")))
    samples: list[tuple[float, str, int, float]] = []
    faults: list[Fault] = []
    faulty = config.cells if config.fault_cells is None else config.fault_cells
    victims = []
    for name in config.kill_order():
        if name == LEARNER_NODE:
            victims.append(f"/{LEARNER_NODE}")
        else:
            victims.extend(f"/cell{c}/{name}" for c in range(faulty))
    graded = GradedBags(episode_dir)
    kills: dict[str, list[float]] = {}  # sim_cell kills per cell namespace (campaign clock)
    started = time.monotonic()
    monitor = GraphMonitor(
        out / "monitor",
        [f"/cell{c}/camera/{name}/image_raw" for c in range(config.cells) for name in cameras],
        WEIGHTS_TOPIC if config.learner else None,
        started,
        config.camera_deep_depth,
    )
    monitor.start()
    launch_log = (out / "launch.log").open("w")
    proc = subprocess.Popen(command, stdout=launch_log, stderr=subprocess.STDOUT)
    next_sample = next_fault = 0.0
    order = KillOrder(victims)
    pending: list[Fault] = []
    try:
        # Faults start once every cell logged an episode (the graph is up).
        while proc.poll() is None:
            now = time.monotonic() - started
            if now >= config.duration_s:
                break
            nodes = node_processes(descendants(proc.pid))
            counts = count_episodes(episode_dir)
            if now >= next_sample:
                for node, pid in nodes.items():
                    mb = rss_mb(pid)
                    if mb is not None:
                        samples.append((now, node, pid, mb))
                next_sample = now + config.sample_every_s
            for fault in list(pending):
                pid = nodes.get(fault.node, 0)
                if not fault.respawn_pid and pid and pid != fault.killed_pid:
                    fault.respawn_pid, fault.respawned_after_s = pid, round(now - fault.at_s, 1)
                    log(f"mtopt-reliability: {fault.node} back as pid {pid} after "
                        f"{fault.respawned_after_s} s")  # fmt: skip
                _check_recovery(fault, counts, graded, learner_dir, monitor)
                if fault.survived:
                    fault.recovered_after_s = round(now - fault.at_s, 1)
                    log(f"mtopt-reliability: {fault.node} recovered: {fault.evidence}")
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
                up = {n for n in nodes if _ready(n, learner_dir)}
                node = order.next(up.__contains__)
                pid = nodes.get(node) if node else None
                if pid:
                    fault = Fault(node, pid, round(now, 1), 0)
                    if fault.name == LEARNER_NODE:  # what it must resume from
                        fault.checkpoint_step, fault.run_id, _ = learner_state(learner_dir)
                    os.kill(pid, signal.SIGKILL)
                    if fault.name == LEARNER_NODE:  # lines after this: the new process's
                        _wait_dead(pid)
                        fault.ledger_lines = len(_ledger_lines(learner_dir))
                    if fault.name == "sim_cell":
                        kills.setdefault(f"cell{fault.cell}", []).append(
                            time.monotonic() - started
                        )
                    cell = fault.cell
                    total = sum(counts.values())
                    fault.episodes_before = total if cell is None else counts.get(cell, 0)
                    faults.append(fault)
                    pending.append(fault)
                    log(f"mtopt-reliability: t={now:.0f} s: SIGKILL {node} (pid {pid}); "
                        f"{total} episodes so far")  # fmt: skip
                next_fault = now + config.fault_every_s
            time.sleep(1.0)
    finally:
        monitor.stop()
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
    losses = monitor.loss(period_s, kills, sim_pauses(text))
    cameras_lost = camera_summary(losses, period_s, config.camera_deep_depth)
    _write_gaps(out / "camera_gaps.csv", losses)
    sensor, deep = cameras_lost["sensor"]["total"], cameras_lost["deep"]["total"]
    episodes = sum(audit.episodes_by_cell.values())
    growth = [m["growth_pct_per_h"] for m in memory.values() if m["growth_pct_per_h"] is not None]
    result = {
        "command": "mtopt-reliability",
        "out": str(out),
        "cells": config.cells,
        "learner": config.learner,
        "sd_checkpoint": str(sd_checkpoint) if sd_checkpoint is not None else None,
        "wall_s": round(wall, 1),
        "launch_exit": launch_exit,
        "episodes": episodes,
        "episodes_per_hour": round(episodes / wall * 3600.0, 1),
        "graded_episodes": audit.graded,
        "bags": audit.bags,
        "unreadable_bags": len(audit.unreadable),
        "duplicate_episodes": audit.duplicates,
        "part_leftovers": audit.part_leftovers,
        "limit_violations_at_the_arm": arm_refusals,
        "plans_refused_by_the_controller": controller_refusals,
        "aborted": audit.aborted,
        "faults": len(faults),
        "faults_survived": sum(f.survived for f in faults),
        "faults_by_node": dict(Counter(f.name for f in faults)),
        "max_memory_growth_pct_per_h": max(growth) if growth else None,
        # Frames a subscriber with the nodes' QoS missed, and (deep queue) lost on the way.
        "camera_frames_received": sensor["received"],
        "camera_frames_lost": sensor["lost"],
        "camera_loss_pct": sensor["loss_pct"],
        "camera_frames_lost_in_transport": deep["lost"],
        "camera_transport_loss_pct": deep["loss_pct"],
        "camera_loss": cameras_lost,
    }
    if config.learner:
        result["learner_audit"] = learner_audit(learner_dir, episode_dir, len(monitor.weights))
    _write_outputs(out, result, audit, faults, samples, memory)
    return result


class KillOrder:
    """Round robin over the victims; one that is not up at its turn (not running, or the
    learner without a checkpoint yet) is owed a fault and gets the next one once it is."""

    def __init__(self, victims: list[str]):
        self.victims = list(victims)
        self.turn = 0
        self.owed: list[str] = []

    def next(self, ready) -> str | None:
        for node in self.owed:
            if ready(node):
                self.owed.remove(node)
                return node
        n = len(self.victims)
        for k in range(n):
            node = self.victims[(self.turn + k) % n]
            if ready(node):
                for j in range(k):
                    passed = self.victims[(self.turn + j) % n]
                    if passed not in self.owed:
                        self.owed.append(passed)
                self.turn += k + 1
                return node
        return None


def _wait_dead(pid: int, timeout_s: float = 2.0) -> None:
    """Until the killed process is gone or a zombie (it writes nothing any more)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)


def _ready(node: str, learner_dir: Path) -> bool:
    """A learner is worth killing once it has a checkpoint to resume from."""
    return node != f"/{LEARNER_NODE}" or learner_state(learner_dir)[0] is not None


def _check_recovery(fault: Fault, counts, graded: GradedBags, learner_dir, monitor) -> None:
    """Update `fault.recovered`/`evidence`: does the respawned node do its work again?"""
    cell = fault.cell
    fault.episodes_after = (
        sum(counts.values()) if cell is None else counts.get(cell, 0)
    ) - fault.episodes_before
    if fault.recovered or not fault.respawn_pid:
        return
    if fault.name == SD_NODE:
        if fault.sd_known is None:  # bags the respawned SD cannot have graded
            fault.sd_known = {p.name for p in list_episode_bags(graded.episode_dir)}
        new = graded.of_cell(cell, fault.sd_known)
        if new:
            fault.recovered, fault.evidence = True, f"graded episode {new[0]}"
    elif fault.name == LEARNER_NODE:
        _, _, lines = learner_state(learner_dir)
        resumed = [
            (run_id, version)
            for t, run_id, version in monitor.weights
            if t > fault.at_s and run_id == fault.run_id and version >= fault.checkpoint_step
        ]
        if resumed and lines > fault.ledger_lines:
            fault.recovered = True
            fault.evidence = (
                f"announced v{resumed[0][1]} of run {fault.run_id[:8]} (v{fault.checkpoint_step} "
                f"at the kill); ledger +{lines - fault.ledger_lines} bags"
            )
    elif fault.episodes_after > 0:
        fault.recovered, fault.evidence = True, f"{fault.episodes_after} episode(s) after"


def _write_gaps(path: Path, losses: dict[str, dict[str, StreamLoss]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["queue", "stream", "kind", "stamp_before", "stamp_after",
                     "received_before_s", "received_after_s", "frames_missing"])  # fmt: skip
    for queue, streams in losses.items():
        for topic, loss in sorted(streams.items()):
            for kind, a, b, ra, rb, missing in loss.events:
                writer.writerow([queue, topic, kind, f"{a:.4f}", f"{b:.4f}", f"{ra:.3f}",
                                 f"{rb:.3f}", missing])  # fmt: skip
    atomic_write_bytes(path, buf.getvalue().encode())


def _params(path: Path, node: str) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    return dict((data.get(f"/**/{node}") or {}).get("ros__parameters") or {})


def _set_params(path: Path, node: str, values: dict[str, Any]) -> None:
    data = yaml.safe_load(path.read_text())
    data[f"/**/{node}"]["ros__parameters"].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _sim_default(name: str) -> Any:
    from mtopt_sim.sim_cell_node import SimCellNodeConfig

    return getattr(SimCellNodeConfig(), name)


def _write_outputs(out, result, audit, faults, samples, memory) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["t_s", "node", "pid", "rss_mb"])
    writer.writerows((round(t, 1), n, p, round(mb, 2)) for t, n, p, mb in samples)
    atomic_write_bytes(out / "memory.csv", buf.getvalue().encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["node", "killed_pid", "at_s", "respawn_pid", "respawned_after_s",
                     "recovered_after_s", "episodes_after", "survived", "evidence"])  # fmt: skip
    for f in faults:
        writer.writerow([f.node, f.killed_pid, f.at_s, f.respawn_pid, f.respawned_after_s,
                         f.recovered_after_s, f.episodes_after, f.survived,
                         f.evidence])  # fmt: skip
    atomic_write_bytes(out / "faults.csv", buf.getvalue().encode())
    full = {**result, "memory": memory, "fault_list": [f.to_dict() for f in faults],
            "unreadable": audit.unreadable}  # fmt: skip
    atomic_write_bytes(out / "result.json", (json.dumps(full, indent=1) + "\n").encode())
    cams = result["camera_loss"]
    sensor, deep = cams["sensor"]["total"], cams["deep"]["total"]
    by_node = ", ".join(f"{name} {n}" for name, n in result["faults_by_node"].items())
    graph = "simulated cell(s)"
    if result["learner"]:
        graph += " and a learner"
    if result["sd_checkpoint"]:
        graph += f", SD {result['sd_checkpoint']}"
    lines = [
        "# Reliability campaign",
        "",
        f"{result['cells']} {graph}, {result['wall_s']} s, "
        f"{result['episodes']} episodes ({result['episodes_per_hour']}/h).",
        "",
        "| check | value |",
        "|---|---:|",
        f"| faults injected / survived | {result['faults']} / {result['faults_survived']} |",
        f"| faults per node | {by_node or '-'} |",
        f"| complete bags / unreadable | {result['bags']} / {result['unreadable_bags']} |",
        f"| episodes logged twice | {result['duplicate_episodes']} |",
        f"| episodes graded by the SD | {result['graded_episodes']} |",
        f"| recordings cut by a fault (`.part`, never read) | {result['part_leftovers']} |",
        f"| trajectories beyond the joint limits reaching the arm | "
        f"{result['limit_violations_at_the_arm']} |",
        f"| plans the arm controller refused (nothing sent) | "
        f"{result['plans_refused_by_the_controller']} |",
        f"| camera frames received / missed with the nodes' QoS (keep last "
        f"{cams['depth']['sensor']}) | "
        f"{sensor['received']} / {sensor['lost']} ({sensor['loss_pct']} %) |",
        f"| camera frames lost on the way (deep queue) | {deep['lost']} ({deep['loss_pct']} %) |",
        f"| largest memory growth after warm-up [%/h] | {result['max_memory_growth_pct_per_h']} |",
        "",
        "## Faults",
        "",
        "| node | killed at [s] | back after [s] | working after [s] | survived | evidence |",
        "|---|---:|---:|---:|---|---|",
        *[
            f"| {f.node} | {f.at_s} | {f.respawned_after_s} | {f.recovered_after_s} | "
            f"{'yes' if f.survived else '**no**'} | {f.evidence} |"
            for f in faults
        ],  # fmt: skip
        "",
        "## Camera frames",
        "",
        f"Publishing period {cams['period_s']:g} s of sim time. Two subscriptions per camera "
        f"in a monitor process: `sensor` (best effort, keep last {cams['depth']['sensor']}, as "
        f"the policy and the logger) and `deep` (keep last {cams['depth']['deep']}: what it "
        "misses was lost on the way). Lost: frames missing from a stream's stamps; not counted: "
        "the restarts of a killed sim_cell (outage: receive time without frames) and the "
        "simulator's object respawns (nothing published). DDS lost: the middleware's own count.",
        "",
        "| queue | stream | received | lost | loss [%] | gaps | longest gap | DDS lost | "
        "restarts (outage [s]) | respawn pauses |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {queue} | {topic} | {c['received']} | {c['lost']} | {c['loss_pct']} | "
            f"{c['gaps']} | {c['max_gap']} | {c['dds_lost']} | {c['restarts']} "
            f"({c['restart_outage_s']}) | {c['pauses']} |"
            for queue in ("sensor", "deep")
            for topic, c in [
                *cams[queue]["per_stream"].items(),
                ("**total**", cams[queue]["total"]),
            ]
        ],
        "",
    ]
    if "learner_audit" in result:
        la = result["learner_audit"]
        lines += [
            "## Learner",
            "",
            f"Ledger: {la['ledger_bags']} bags ({la['ledger_outcomes']}), "
            f"{la['ledger_duplicates']} listed twice, {la['ledger_torn_lines']} torn lines, "
            f"{la['quarantined']} quarantined, {la['bags_not_yet_seen']} complete bags not yet "
            f"seen at the stop; last checkpoint step {la['last_checkpoint_step']}, "
            f"{la['weights_announced']} weight announcements received.",
            "",
        ]
    lines += [
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
    p.add_argument(
        "--kill",
        nargs="+",
        default=None,
        help=f"node names, in turn, of {list(KILLABLE)} (default: every node the run has)",
    )
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
        "--learner",
        action="store_true",
        help="sim_learning.launch.yaml: also a (respawning, light) learner node",
    )
    sd = p.add_mutually_exclusive_group()
    sd.add_argument(
        "--sd", action="store_true", help="SD node per cell on an untrained checkpoint in --out"
    )
    sd.add_argument("--sd-checkpoint", type=Path, default=None, help="SD node per cell on this")
    p.add_argument(
        "--camera-deep-depth",
        type=int,
        default=DEEP_DEPTH,
        help="depth of the camera monitor's deep queue (its other one: the nodes' SENSOR_QOS)",
    )
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
        kill=tuple(args.kill) if args.kill else None, sample_every_s=args.sample_every,
        warmup_s=args.warmup, respawn_timeout_s=args.respawn_timeout, seed=args.seed,
        episode_silence_s=args.episode_silence, settle_s=args.settle, fault_cells=args.fault_cells,
        learner=args.learner, sd=args.sd, sd_checkpoint=args.sd_checkpoint,
        camera_deep_depth=args.camera_deep_depth,
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
    if "learner_audit" in result:
        learner = result["learner_audit"]
        clean = clean and learner["ledger_duplicates"] == 0 and learner["quarantined"] == 0
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
