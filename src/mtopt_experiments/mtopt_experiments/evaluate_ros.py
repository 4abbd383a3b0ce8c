"""`mtopt-eval --ros`: the learned policy's success measured through the ROS graph of the
simulated cell, to check the in-process figure.

    mtopt-eval CKPT --ros --tasks lift-any --episodes-per-task 100 --workers 2 \\
        --policy-param policy_camera=wrist --camera-size 64 --compare runs/eval/x/result.json

mtopt_bringup's `sim_cell.launch.yaml` (`--workers` cells, every node its own process, real
DDS) runs with a copy of the cell's parameter files: `scripted_fraction` 0, the policy's
`epsilon` = `--epsilon` (0: greedy), the `--policy-param` values, and the collector commanding
only the evaluated task among the lift tasks (place tasks keep their weights, so a held object
is placed after a successful lift, as on a cell). This process announces the checkpoint as a
WeightsUpdate on `/policy/weights` (what the learner node does); the policy verifies and loads
it. An episode counts when its EpisodeInfo says it ran the task with CEM on these weights;
the cells stop once every task has `--episodes-per-task` of them. Judge: the simulator's
oracle labels in EpisodeInfo (and the SD's, when `--sd-checkpoint` is given, through the
cell's sd_node).

Lift-type tasks only (a place task needs the held object a lift leaves; through ROS that is
the collector's sequencing, not a controlled scene). Every episode starts on a freshly
spawned bin (`FRESH_SCENES`) of the in-process evaluator's scene set for `--seed`: cell c of W
runs its lift episodes on the evaluator's lift scenes c, c + W, c + 2W, ... of the task (its
sim cell's `scene_seeds`: the start-up scene, then one per bin reset; each lift, with the place
after it when it lifted, is followed by one reset). The start pose is the policy node's own
draw, as with the in-process `--learned-start cell`. `--compare RESULT_JSON` (an in-process
`mtopt-eval` result) reports per task whether the ROS rate lies in the in-process 95 % Wilson
interval and the two-proportion test's p; with the same `--seed` and the result's
`episodes.csv` beside it, also the paired comparison on the scenes both ran (exact McNemar).

Output in --out: `result.json` (the stdout line), `episodes.csv` (with each episode's cell and
scene seed), the run directory of the cells (bags, parameter files, node logs: the sim cells
log every scene's seed).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.checkpoint import read_checkpoint
from mtopt_core.tasks import load_task_registry
from mtopt_experiments.compare_evals import learned_episodes
from mtopt_experiments.evaluate import scene_seed
from mtopt_experiments.stats import paired_comparison, two_proportion_p, wilson_interval
from mtopt_policy.config import CollectorConfig

WEIGHTS_TOPIC = "/policy/weights"
#: Sim-cell seconds allowed per episode before the run is given up.
SECONDS_PER_EPISODE = 30.0
#: Collector parameters that start every episode on a freshly spawned right bin (reset after
#: every episode, respawn whatever the bin still holds), as the in-process scenes are. A cell's
#: ongoing bin holds fewer objects (down to `respawn_below` 5 of 7-9), and both the learned
#: and the scripted pick lift less often from a sparser bin.
FRESH_SCENES = {"reset_every": 1, "respawn_below": 1000}


def _names(tasks) -> list[str]:
    return [t if isinstance(t, str) else t.name for t in tasks]


def cell_scene_seeds(seed: int, task_index: int, cell: int, cells: int, count: int) -> list[int]:
    """The evaluator's lift scenes of one cell: episodes cell, cell + cells, ... (draw 0)."""
    return [scene_seed(seed, task_index, cell + cells * j) for j in range(count)]


def set_scene_seeds(config_dir: Path, seeds_by_cell: list[list[int]]) -> None:
    """Give each cell's sim_cell its scene seeds (a `/cell<c>/sim_cell` block in the copied
    sim_cell.yaml; the `/**/sim_cell` block still applies to every cell)."""
    path = Path(config_dir) / "sim_cell.yaml"
    data = yaml.safe_load(path.read_text())
    for cell, seeds in enumerate(seeds_by_cell):
        data[f"/cell{cell}/sim_cell"] = {"ros__parameters": {"scene_seeds": seeds}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def scenes_of_episodes(infos, lift_tasks, seeds_by_cell) -> dict[str, tuple[int, int | None]]:
    """episode_id -> (cell, scene seed or None) of every lift episode: a cell's lift episodes
    in start order ran on its scene seeds in order (past the list: the cell's own draws)."""
    by_cell: dict[int, list] = {}
    for info in infos:
        if info.task in lift_tasks:
            by_cell.setdefault(int(info.cell_id), []).append(info)
    scenes = {}
    for cell, episodes in by_cell.items():
        episodes.sort(key=lambda i: (i.start_time.sec, i.start_time.nanosec))
        seeds = seeds_by_cell[cell] if cell < len(seeds_by_cell) else []
        for j, info in enumerate(episodes):
            scenes[str(info.episode_id)] = (cell, seeds[j] if j < len(seeds) else None)
    return scenes


def in_process_outcomes(result_json: str) -> dict[tuple[str, int], bool]:
    """(task, scene seed) -> success of the learned episodes of the in-process evaluation whose
    `episodes.csv` lies beside `result_json` ({} without that file). Read before the cells run,
    so a malformed file (CompareError) costs no ROS run."""
    path = Path(result_json).with_name("episodes.csv")
    if not path.is_file():
        return {}
    return {
        (r["task"], int(r["scene_seed"])): r["success"] == "True"
        for r in learned_episodes(path).values()
    }


def paired_with_in_process(rows, in_process, task: str) -> dict[str, Any] | None:
    """ROS against in-process learned outcomes (`in_process_outcomes`) on the scenes both ran;
    None without shared scenes."""
    pairs = [
        (r["success"], in_process[(task, r["scene_seed"])]) for r in rows
        if r["task"] == task and (task, r["scene_seed"]) in in_process
    ]  # fmt: skip
    if not pairs:
        return None
    paired = paired_comparison(
        "".join("1" if ros else "0" for ros, _ in pairs),
        "".join("1" if other else "0" for _, other in pairs),
    )
    return {
        "scenes": len(pairs), "ros": sum(ros for ros, _ in pairs),
        "in_process": sum(other for _, other in pairs), "only_ros": paired["only_learned"],
        "only_in_process": paired["only_scripted"], "mcnemar_p": paired["mcnemar_p"],
    }  # fmt: skip


def evaluate_ros(config, out: Path, log=print, compare: str = "") -> dict[str, Any]:
    """Run the evaluation through ROS (see the module docstring); returns the result.
    Raises ValueError for a bad option, DemoError / BringupError when the cells fail."""
    from mtopt_demo.bringup import ros_environment, stage_config
    from mtopt_demo.config import DemoError
    from mtopt_demo.episodes import oracle_success
    from mtopt_demo.stages import Progress, WeightsAnnouncer, collect

    registry = load_task_registry()
    tasks = list(config.tasks)
    if not tasks:
        raise ValueError("--ros needs --tasks (lift-type tasks)")
    lift_tasks = _names(registry.tasks_of_skill(CollectorConfig.lift_skill))
    for task in tasks:
        if task not in registry:
            raise ValueError(f"unknown task {task!r}; known: {list(registry.names)}")
        if task not in lift_tasks:
            raise ValueError(f"--ros evaluates lift-type tasks only, not {task!r}")
    if not 1 <= config.workers <= 4:
        raise ValueError("--ros runs 1..4 cells (--workers)")
    reference = json.loads(Path(compare).read_text()) if compare else None
    in_process = in_process_outcomes(compare) if compare else {}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = Progress(prefix="mtopt-eval --ros", stream=sys.stderr)
    ros_environment(say)
    announcer = WeightsAnnouncer(WEIGHTS_TOPIC, Path(config.checkpoint))
    policy_params = {k: v for k, v in config.policy_params}
    policy_params["epsilon"] = float(config.epsilon)
    # The policy feeds the network images of its own size (as the in-process evaluation).
    image_size = read_checkpoint(config.checkpoint).qnet_config.image_size
    policy_params.setdefault("image_size", image_size)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    per_task: dict[str, dict[str, Any]] = {}
    with announcer as weights:
        log(f"mtopt-eval --ros: weights version {weights.version} on {WEIGHTS_TOPIC}")
        for index, task in enumerate(tasks):
            weights_list = [f"{t}={1 if t == task else 0}" for t in lift_tasks]
            cell_config = stage_config(
                out, f"ros_{task}", 0.0, weights_list, policy_params, FRESH_SCENES
            )
            n = config.episodes_per_task
            # Each collector may log up to twice the episodes (place episodes in between); the
            # cells are stopped as soon as the task has its episodes.
            per_cell = 2 * n // config.workers + 2
            seeds_by_cell = [
                cell_scene_seeds(config.seed, registry.index(task), cell, config.workers,
                                 per_cell + 1)
                for cell in range(config.workers)
            ]  # fmt: skip
            set_scene_seeds(cell_config, seeds_by_cell)

            def mine(infos, task=task):
                return [
                    i for i in infos if i.task == task and i.policy_kind == "cem"
                    and int(i.weights_version) == weights.version
                ]  # fmt: skip

            args = [
                f"cells:={config.workers}", f"seed:={config.seed + index}",
                f"config_dir:={cell_config}", f"weights_topic:={WEIGHTS_TOPIC}",
                f"camera_size:={config.camera_size or 64}",
            ]  # fmt: skip
            if config.sd_checkpoint:
                args.append(f"sd_checkpoint:={config.sd_checkpoint}")
            infos, seconds = collect(
                index + 1, out, per_cell, args, SECONDS_PER_EPISODE * 2 * n + 120.0, say,
                until=lambda infos, n=n, mine=mine: len(mine(infos)) >= n,
                progress_of=lambda infos, n=n, mine=mine, task=task: (
                    f"{min(len(mine(infos)), n)}/{n} {task} episodes on the weights, "
                    f"{len(infos)} logged"
                ),
            )  # fmt: skip
            counted = sorted(mine(infos), key=lambda i: (i.start_time.sec, i.start_time.nanosec))[
                :n
            ]
            if len(counted) < n:
                raise DemoError(
                    f"{task}: {len(counted)} of {n} episodes with the weights in {seconds:.0f} s"
                )
            successes = [bool(oracle_success(i)) for i in counted]
            scenes = scenes_of_episodes(infos, lift_tasks, seeds_by_cell)
            for info, success in zip(counted, successes, strict=True):
                cell, seed = scenes[str(info.episode_id)]
                rows.append({
                    "task": task, "episode_id": str(info.episode_id), "cell": cell,
                    "scene_seed": seed, "steps": int(info.steps), "success": success,
                    "policy_kind": str(info.policy_kind),
                })  # fmt: skip
            k = sum(successes)
            low, high = wilson_interval(k, n)
            entry: dict[str, Any] = {
                "episodes": n, "learned": k, "learned_rate": round(k / n, 4),
                "learned_ci": [round(low, 4), round(high, 4)],
                "episodes_logged": len(infos), "seconds": round(seconds, 1),
            }  # fmt: skip
            if reference and task in reference.get("tasks", {}):
                ref = reference["tasks"][task]
                lo, hi = ref["learned_ci"]
                entry["in_process"] = {
                    "learned": ref["learned"], "episodes": ref["episodes"],
                    "learned_rate": ref["learned_rate"], "learned_ci": [lo, hi],
                    "ros_rate_in_interval": lo <= k / n <= hi,
                    "two_proportion_p": round(
                        two_proportion_p(k, n, ref["learned"], ref["episodes"]), 4
                    ),
                    "paired": paired_with_in_process(rows, in_process, task),
                }  # fmt: skip
            per_task[task] = entry
            log(f"mtopt-eval --ros: {task}: {k}/{n} lifted through ROS in {seconds:.0f} s")
            paired = entry.get("in_process", {}).get("paired")
            if paired:
                log(
                    f"mtopt-eval --ros: {task}: on the {paired['scenes']} scenes both ran, "
                    f"ROS {paired['ros']}, in-process {paired['in_process']} (only ROS "
                    f"{paired['only_ros']} / only in-process {paired['only_in_process']}, "
                    f"McNemar p = {paired['mcnemar_p']})"
                )
    result = {
        "checkpoint": str(config.checkpoint), "sha256": announcer.sha256, "ros": True,
        "seed": config.seed, "episodes_per_task": config.episodes_per_task,
        "epsilon": config.epsilon, "cells": config.workers, "tasks": per_task,
        "compare": compare or None, "out": str(out),
        "wall_time_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer,
        ["task", "episode_id", "cell", "scene_seed", "steps", "success", "policy_kind"],
        lineterminator="\n",
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "episodes.csv", buffer.getvalue().encode())
    atomic_write_bytes(out / "result.json", (json.dumps(result) + "\n").encode())
    return result
