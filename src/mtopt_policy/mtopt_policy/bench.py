"""Throughput of one simulated cell through ROS: `python -m mtopt_policy.bench [--episodes N]`.

Runs `mtopt-launch mtopt_bringup sim_cell.launch.yaml` (one cell: MuJoCo in fast mode, 64 px
images, arm controller, reset bin, policy, logger, collector; every node its own process, real DDS)
on a private ROS domain, publishes freshly initialized Q-network weights (the `small` 64 px preset)
so the policy runs its configured mix of scripted and CEM (epsilon-greedy) episodes, grades every
episode with a freshly initialized success detector (sd_node), and measures from the nodes' own
timing topics:

* episodes per hour per cell, over the steady state (first to last episode end) and including
  start-up;
* where an episode's time goes: the collector's phases (logger start, run_episode, present
  (the move to the grading pose), settle, grading, oracle, logger finish) and the policy's
  (start move, waiting for fresh observations, inference, move_ee round trips, gripper), and
  the bin resets (go_home + reset);
* CPU seconds per episode of every node process (from /proc).

Prints ONE JSON line. Target: >= 600 episodes/hour per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

TARGET_EPISODES_PER_HOUR = 600.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process and its reaped children [s]."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0


def _phase_sum(timing: dict) -> float:
    """Seconds an episode's timing record accounts for."""
    return sum(v for v in timing.values() if isinstance(v, float))


def _write_weights(directory: Path):
    """A freshly initialized `small` Q-network checkpoint: (path, sha256, task names)."""
    import torch

    from mtopt_core.checkpoint import save_checkpoint
    from mtopt_core.qnet import QNet, QNetConfig
    from mtopt_core.tasks import load_task_registry

    names = load_task_registry().names
    torch.manual_seed(0)
    path = directory / "bench_qnet.ckpt"
    sha = save_checkpoint(path, QNet(QNetConfig.small(len(names))), names, step=1)
    return path, sha, names


def _write_sd(directory: Path) -> Path:
    """A randomly initialized success detector (64 px): grading costs what a trained one does."""
    import torch

    from mtopt_core.sd_model import SDModelConfig, SuccessDetector, save_checkpoint
    from mtopt_core.tasks import load_task_registry

    torch.manual_seed(0)
    path = directory / "bench_sd.ckpt"
    save_checkpoint(path, SuccessDetector(SDModelConfig(task_names=load_task_registry().names)))
    return path


def run(episodes: int, use_weights: bool, use_sd: bool, timeout_s: float) -> dict:
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from mtopt_bridge.qos import WEIGHTS_QOS
    from mtopt_interfaces.msg import WeightsUpdate

    tmp = Path(tempfile.mkdtemp(prefix="mtopt-policy-bench-"))
    rclpy.init()
    node = rclpy.create_node("policy_bench", namespace="/cell0")
    collector_times: list[tuple[float, dict]] = []
    policy_timing: list[dict] = []
    resets: list[dict] = []
    lock = threading.Lock()

    def on_collector(msg: String) -> None:
        data = json.loads(msg.data)
        with lock:
            (resets if "reset" in data else collector_times).append((time.monotonic(), data))

    def on_policy(msg: String) -> None:
        with lock:
            policy_timing.append(json.loads(msg.data))

    node.create_subscription(String, "collector/episode_timing", on_collector, 100)
    node.create_subscription(String, "policy/episode_timing", on_policy, 100)
    if use_weights:
        path, sha, names = _write_weights(tmp)
        pub = node.create_publisher(WeightsUpdate, "policy/weights", WEIGHTS_QOS)
        pub.publish(
            WeightsUpdate(
                path=str(path),
                run_id=uuid.uuid4().hex,  # a run of its own
                version=1,  # the step _write_weights records (a policy refuses a higher one)
                sha256=sha,
                model_preset="small",
                task_names=names,
            )
        )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    episode_dir = tmp / "episodes"
    args = [
        str(Path(sys.executable).parent / "mtopt-launch"),
        "--log-dir",
        str(tmp / "log"),
        "mtopt_bringup",
        "sim_cell.launch.yaml",
        f"episodes:={episodes}",
        f"episode_dir:={episode_dir}",
        "seed:=1",
    ]
    if use_sd:
        args.append(f"sd_checkpoint:={_write_sd(tmp)}")
    started = time.monotonic()
    launch = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    pids: dict[str, int] = {}
    cpu: dict[str, float] = {}

    def read() -> None:
        for line in launch.stdout:
            output.append(line.rstrip("\n"))
            found = re.search(r"process started: (\S+) \[pid (\d+)\]", line)
            if found:
                pids[found.group(1)] = int(found.group(2))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while launch.poll() is None:
            if time.monotonic() - started > timeout_s:
                launch.terminate()
                raise RuntimeError(f"bench did not finish in {timeout_s} s")
            for label, pid in list(pids.items()):
                value = _cpu_seconds(pid)
                if value is not None:
                    cpu[label] = value  # the last reading before the process exits
            time.sleep(0.2)
        code = launch.wait()
        wall = time.monotonic() - started
    finally:
        if launch.poll() is None:
            launch.kill()
        reader.join(timeout=5)
        # The spin thread must be out of rclpy before the interpreter exits: a thread still in
        # its wait set then aborts the process ("terminate called without an active exception").
        executor.shutdown(timeout_sec=10.0)
        spinner.join(timeout=10.0)
        node.destroy_node()
        rclpy.try_shutdown()
    if code != 0:
        tail = "\n".join(output[-40:])
        raise RuntimeError(f"mtopt-launch exited {code} (logs kept in {tmp}):\n{tail}")

    with lock:
        ends = [t for t, _ in collector_times]
        phases = [d for _, d in collector_times]
    n = len(phases)
    steady = (n - 1) / (ends[-1] - ends[0]) * 3600 if n >= 2 else 0.0
    phase_keys = sorted({k for d in phases for k, v in d.items() if isinstance(v, float)})
    policy_keys = sorted(
        {k for d in policy_timing for k, v in d.items() if isinstance(v, float)} - {"steps"}
    )
    moves = sum(sum(d.get("move_outcomes", {}).values()) for d in policy_timing)
    outcomes = Counter()
    for d in policy_timing:
        outcomes.update(d.get("move_outcomes", {}))
    grippers = sum(sum(d.get("gripper_outcomes", {}).values()) for d in policy_timing)
    per_kind = defaultdict(list)
    for d in policy_timing:
        per_kind[d["kind"]].append(d["total"])
    reset_data = [d for _, d in resets]
    result = {
        "bench": "mtopt_policy",
        "episodes": n,
        "q_network": "small (64 px), random init" if use_weights else None,
        "sd": "64 px, random init" if use_sd else None,
        "episodes_per_hour": round(steady, 1),
        "episodes_per_hour_incl_startup": round(n / wall * 3600, 1),
        "target_episodes_per_hour": TARGET_EPISODES_PER_HOUR,
        "meets_target": steady >= TARGET_EPISODES_PER_HOUR,
        "wall_s": round(wall, 2),
        "startup_s": round(ends[0] - started - _phase_sum(phases[0]), 2) if n else None,
        "episode_cycle_s": round((ends[-1] - ends[0]) / (n - 1), 3) if n >= 2 else None,
        "collector_phase_mean_s": {k: _mean(d.get(k, 0.0) for d in phases) for k in phase_keys},
        "policy_phase_mean_s": {k: _mean(d.get(k, 0.0) for d in policy_timing)
                                for k in policy_keys},
        "steps_per_episode": _mean(d["steps"] for d in policy_timing),
        "move_ee_round_trip_s": round(sum(d.get("move", 0.0) for d in policy_timing)
                                      / max(1, moves), 4),
        "move_outcomes": dict(outcomes),
        "gripper_round_trip_s": round(sum(d.get("gripper", 0.0) for d in policy_timing)
                                      / max(1, grippers), 4),
        "inference_per_step_s": {
            kind: _mean(d["inference"] / max(1, d["steps"]) for d in policy_timing
                        if d["kind"] == kind and "inference" in d)
            for kind in sorted(per_kind)
        },
        "episode_s_by_kind": {k: _mean(v) for k, v in sorted(per_kind.items())},
        "episodes_by_kind": {k: len(v) for k, v in sorted(per_kind.items())},
        "aborted": sum(1 for d in phases if d.get("aborted")),
        "bin_resets": len(reset_data),
        "bin_reset_mean_s": {k: _mean(d.get(k, 0.0) for d in reset_data)
                             for k in ("go_home", "reset_bin")},
        "cpu_s_per_episode": {k: round(v / max(1, n), 3) for k, v in sorted(cpu.items())},
        "cpu_cores_busy": round(sum(cpu.values()) / wall, 2),
        "bags": len([p for p in episode_dir.iterdir() if not p.name.endswith(".part")])
        if episode_dir.is_dir() else 0,
    }  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--episodes", type=int, default=30, help="episodes to run (default 30)")
    parser.add_argument("--quick", action="store_true", help="10 episodes")
    parser.add_argument(
        "--no-weights", action="store_true", help="no Q-network: scripted/random episodes only"
    )
    parser.add_argument(
        "--no-sd", action="store_true", help="no success detector: episodes are not graded"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after [s]")
    args = parser.parse_args(argv)
    episodes = 10 if args.quick else args.episodes
    if episodes < 2:
        parser.error("--episodes must be >= 2")
    print(json.dumps(run(episodes, not args.no_weights, not args.no_sd, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
