"""`mtopt-sim-collect`: bulk simulated collection into the same episode bags the ROS logger writes.

    mtopt-sim-collect --episodes 2000 --workers 2 --out /data/eps
    mtopt-sim-collect --episodes 4000 --workers 2 --out /data/eps --weights run1/qnet.ckpt \\
        --epsilon 0.2 --scripted-fraction 0.3
    mtopt-sim-collect --episodes 100000 --workers 64 --out /shared/eps --ray-address auto

W workers, each one simulated cell (`/cell<k>`, k = --first-cell + worker index) running the
cell's own collector and policy logic in-process (`mtopt_sim.bulk_cell`): task choice with pick
-> place sequencing, bin resets and respawns, the planner's scripted / random / CEM mix with
epsilon on the loaded weights, the present move and oracle grade (and the success detector's,
with --sd-checkpoint). --guided-fraction G runs the simulator-aimed guided pick
(`mtopt_sim.guided`) in that share of the lift episodes instead. --place-start-fraction P turns
that share of the lift draws into a place episode that starts from an unlogged noise-free grasp
(as the evaluator's place scenes): place data no longer waits for successful lifts. Every
episode is one rosbag2 MCAP bag under --out with the logger's topics, message types and EpisodeInfo
(`mtopt_sim.bag_writer`), named like the logger's bags (`cell<k>_<UTC start>_<tag>_<counter>`,
ids that follow `mtopt_core.episodes`), written as `<id>.part` and renamed when complete. Their
EpisodeInfo says `closed_by: mtopt-sim-collect` (`mtopt_core.episodes.SIM_COLLECT_CLOSER`), a
closer the learner accepts by default (its `accepted_closers`).

Workers are `spawn` processes (a fork after a GL context exists would share it), or Ray actors
with --ray-address (`local`: a private local instance; `auto` / `HOST:PORT`: a running cluster,
whose nodes must all reach --out, e.g. a shared file system).

Resumable: --episodes is the total wanted in --out. A rerun counts the complete bags already
there and collects only the rest (nothing when the total is reached); `.part` leftovers of the
cells it runs are removed first. The seeds of a worker derive from (--seed, its cell, the
complete bags of that cell already in --out), so a resumed run continues with new scenes and
never repeats episodes already collected, and the same command on the same directory state
collects the same episodes (up to timestamps and ids).

Configuration: the policy and collector node parameters (`mtopt_policy.config.PolicyConfig`,
`CollectorConfig`) at their defaults with the simulated cell's overrides (config/sim_cell.yaml,
`mtopt_sim.sim_params`: oracle labels, oracle sequencing, respawn below 5 objects, step motion
time and start speed), then
--params-file files (ROS 2 parameter files such as config/policy.yaml; blocks matching
`/cell<k>/policy` and `/cell<k>/collector` apply), then the flags.

A dead worker does not stop the run: a worker process killed (SIGKILL, the OOM killer) or
crashed without reporting is started again, a new process for the same cell, after its cell's
`.part` leftovers are removed, for the episodes its cell still misses (counted on disk), with
seeds derived as a resumed run's (from the cell's complete bags now in --out), so no episode
repeats. At most --max-restarts times per cell (default 3), a warning line on stderr each time;
one more death fails the run, naming the cell. An error a worker reports (a Python exception,
e.g. a cell that cannot log its episodes) still fails the run at once. The summary counts the
restarts (`worker_restarts`). Each worker reports on its own pipe, so a kill at any moment
cannot block or corrupt another worker's reports. Ray actors (--ray-address) are not
restarted: a dead actor fails the run; rerun the same command to continue.

Progress (tqdm) and warnings go to stderr; the summary is ONE JSON line on stdout. Exit status
2 for invalid arguments (unknown task, refused weights, bad parameter file), 1 when collection
failed (a worker error, or a worker that died more than --max-restarts times, says which cell
and why).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtopt_bridge.params import ConfigError, config_from_params_files
from mtopt_core.episode_bag import list_episode_bags, remove_stale_parts
from mtopt_core.episodes import episode_cell
from mtopt_core.tasks import TaskRegistry, TaskRegistryError, load_task_registry
from mtopt_policy.config import CollectorConfig, PolicyConfig
from mtopt_sim.bulk_cell import CAMERA_FRAMES, BulkCollectError, WorkerSpec
from mtopt_sim.guided import GUIDED_AIMS, GuidedConfig
from mtopt_sim.sim_params import sim_collector_config, sim_policy_config

PROG = "mtopt-sim-collect"
log = logging.getLogger("mtopt_sim.bulk")
#: A worker process that dies (killed, crashed) is started again at most this often per cell.
MAX_WORKER_RESTARTS = 3


class CollectUsageError(ValueError):
    """Invalid arguments: the message says which and why (exit status 2)."""


@dataclass(frozen=True)
class CollectConfig:
    """One bulk collection (the command line's options)."""

    episodes: int  # total complete bags wanted in `out`
    out: Path
    workers: int = 2
    seed: int = 0
    weights: str = ""
    weights_sha256: str = ""
    epsilon: float | None = None  # None: the policy default
    scripted_fraction: float | None = None
    guided_fraction: float = 0.0  # P(guided pick) per lift episode (`mtopt_sim.guided`)
    guided_noise: float = GuidedConfig.noise
    guided_decoy_fraction: float = 0.0  # P(a guided pick aims at a random point instead)
    guided_aim: str = "commanded"  # lift-X: an object X, or "nearest": any (`GUIDED_AIMS`)
    place_start_fraction: float = 0.0  # P(a lift draw -> privileged grasp + place episode)
    tasks: tuple[str, ...] = ()  # "task" or "task=weight"; () = every task, weight 1
    max_steps: int = 0  # 0: the policy default
    camera_size: int = 64
    camera_frames: str = "step"
    sd_checkpoint: str = ""
    params_files: tuple[str, ...] = ()
    first_cell: int = 0
    ray_address: str = ""  # "" = spawn processes
    min_free_disk_gb: float = 1.0
    max_restarts: int = MAX_WORKER_RESTARTS  # per cell, of a worker process that died
    progress: bool = True


@dataclass
class CollectResult:
    """What a collection did: the JSON summary and when each cell's episodes arrived."""

    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    #: cell -> arrival times of its episodes [s since the collection started]
    arrivals: dict[int, list[float]] = field(default_factory=dict)


# ------------------------------------------------------------------------------- planning
def existing_bags(out: Path) -> Counter:
    """Complete bags in `out` per cell (from the logger's naming, `cell<k>_...`)."""
    counts: Counter = Counter()
    for bag in list_episode_bags(out):
        cell = episode_cell(bag.name)
        counts[-1 if cell is None else cell] += 1
    return counts


def assign_episodes(target: int, existing: Counter, cells: Sequence[int]) -> list[int]:
    """Episodes each of `cells` collects so that `out` ends with `target` bags: what is
    missing is split evenly over the cells (the run ends when its slowest worker does), the
    remainder one each to the cells with the fewest bags so far. Evening out the cells' counts
    instead would leave workers idle when a run resumes with more workers than it had."""
    missing = max(0, target - sum(existing.values()))
    share, remainder = divmod(missing, len(cells))
    fewest = sorted(cells, key=lambda c: (existing.get(c, 0), c))[:remainder]
    return [share + (cell in fewest) for cell in cells]


def task_weights(
    registry: TaskRegistry, tasks: Sequence[str], lift_skill: str, place_skill: str
) -> tuple:
    """CollectorConfig.task_weights for `--tasks`: the listed tasks (weight 1 or `=w`), every
    other task 0; when no task of the place skill is listed they all keep weight 1 (a lift
    that holds something is followed by a place episode: pick -> place sequencing). At least
    one task of the lift skill must have a positive weight (every other episode is one)."""
    if not tasks:
        return ()
    weights = dict.fromkeys(registry.names, 0.0)
    for item in tasks:
        name, sep, value = item.partition("=")
        if name not in registry:
            raise CollectUsageError(
                f"--tasks: unknown task {name!r}; tasks: {list(registry.names)}"
            )
        try:
            weights[name] = float(value) if sep else 1.0
        except ValueError:
            raise CollectUsageError(f"--tasks: {item!r} is not TASK or TASK=WEIGHT") from None
        if weights[name] < 0:
            raise CollectUsageError(f"--tasks: weight of {name} must be >= 0, got {weights[name]}")
    if not any(weights[t] > 0 for t in registry.tasks_of_skill(lift_skill)):
        raise CollectUsageError(
            f"--tasks: no task of skill {lift_skill} with a weight > 0 (a place episode only "
            "follows a lift that holds something)"
        )
    place = registry.tasks_of_skill(place_skill)
    if not any(weights[t] > 0 for t in place):
        weights.update(dict.fromkeys(place, 1.0))
    return tuple(f"{name}={w:g}" for name, w in weights.items())


def node_configs(cfg: CollectConfig, cell: int) -> tuple[PolicyConfig, CollectorConfig]:
    """The policy and collector node parameters of cell `cell` (see the module docstring)."""
    files = list(cfg.params_files)
    policy = config_from_params_files(sim_policy_config(), files, f"/cell{cell}/policy")
    overrides: dict[str, Any] = {}
    if cfg.epsilon is not None:
        overrides["epsilon"] = cfg.epsilon
    if cfg.scripted_fraction is not None:
        overrides["scripted_fraction"] = cfg.scripted_fraction
    if cfg.max_steps:
        overrides["max_steps"] = cfg.max_steps
    policy = dataclasses.replace(policy, **overrides).validate()
    collector = config_from_params_files(sim_collector_config(), files, f"/cell{cell}/collector")
    if cfg.max_steps:
        collector = dataclasses.replace(collector, max_steps=0)  # the policy's, set above
    return policy, collector


def worker_specs(
    cfg: CollectConfig, registry: TaskRegistry, existing: Counter
) -> list[tuple[WorkerSpec, int]]:
    """(spec, episodes to collect) of every worker; validates the configuration."""
    if cfg.episodes < 0:
        raise CollectUsageError(f"--episodes must be >= 0, got {cfg.episodes}")
    if cfg.workers < 1:
        raise CollectUsageError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.seed < 0 or cfg.first_cell < 0 or cfg.max_restarts < 0:
        raise CollectUsageError("--seed, --first-cell and --max-restarts must be >= 0")
    cells = [cfg.first_cell + k for k in range(cfg.workers)]
    quotas = assign_episodes(cfg.episodes, existing, cells)
    specs = []
    for cell, quota in zip(cells, quotas, strict=True):
        try:
            policy, collector = node_configs(cfg, cell)
            weights = task_weights(
                registry, cfg.tasks, collector.lift_skill, collector.place_skill
            )
            if weights:
                collector = dataclasses.replace(collector, task_weights=weights).validate()
            spec = WorkerSpec(
                cell_id=cell,
                out_dir=str(cfg.out),
                seed_entropy=(cfg.seed, cell, existing.get(cell, 0)),
                policy=policy,
                collector=collector,
                camera_size=cfg.camera_size,
                camera_frames=cfg.camera_frames,
                weights=cfg.weights,
                weights_sha256=cfg.weights_sha256,
                sd_checkpoint=cfg.sd_checkpoint,
                min_free_disk_gb=cfg.min_free_disk_gb,
                guided_fraction=cfg.guided_fraction,
                guided_noise=cfg.guided_noise,
                guided_decoy_fraction=cfg.guided_decoy_fraction,
                guided_aim=cfg.guided_aim,
                place_start_fraction=cfg.place_start_fraction,
            )
        except (ConfigError, ValueError) as exc:
            raise CollectUsageError(str(exc)) from None
        specs.append((spec, quota))
    return specs


def check_models(spec: WorkerSpec, registry: TaskRegistry) -> None:
    """Refuse bad --weights / --sd-checkpoint before any worker starts (CollectUsageError)."""
    if spec.weights:
        from mtopt_policy.policy import WeightsRefused, make_planner
        from mtopt_sim.bulk_cell import WeightsFile

        try:
            WeightsFile(spec.weights, spec.weights_sha256).poll(
                make_planner(spec.policy, registry).weights
            )
        except WeightsRefused as exc:
            raise CollectUsageError(f"--weights {spec.weights} refused: {exc.reason}") from None
    if spec.sd_checkpoint:
        from mtopt_core.sd_model import SDCheckpointError
        from mtopt_sd.grader import Grader

        try:
            grader = Grader(spec.sd_checkpoint, registry.names)
        except SDCheckpointError as exc:
            raise CollectUsageError(f"--sd-checkpoint: {exc}") from None
        if grader.image_size != spec.camera_size:
            raise CollectUsageError(
                f"--sd-checkpoint takes {grader.image_size} px images; give --camera-size "
                f"{grader.image_size} (the camera frames it grades)"
            )


# ------------------------------------------------------------------------------- running
def resumed_job(spec: WorkerSpec, target: int) -> tuple[WorkerSpec, int]:
    """The job of a worker started again for `spec`'s cell after its process died, as a
    resumed run would run it: the cell's `.part` leftovers removed, the seeds derived from the
    cell's complete bags now in the output (the last item of `seed_entropy`, see
    `worker_specs`: new scenes, so no episode repeats), and the episodes still missing to
    `target` complete bags of the cell (counted on disk: a bag completed just before the
    kill counts even if its report was lost)."""
    out = Path(spec.out_dir)
    remove_stale_parts(out, [spec.cell_id])
    have = existing_bags(out).get(spec.cell_id, 0)
    entropy = (*spec.seed_entropy[:-1], have)
    return dataclasses.replace(spec, seed_entropy=entropy), max(0, target - have)


def _send(conn, message) -> bool:
    """Send `message` to the parent; False when it is gone (the pipe is broken)."""
    try:
        conn.send(message)
    except OSError:
        return False
    return True


def _process_main(spec: WorkerSpec, episodes: int, conn, log_level: int, parent: int):
    """A spawn worker: collect `episodes`, reporting each one (and the end) on `conn`, its
    own pipe to the parent; stops between episodes when its parent process is gone (killed).
    Sends are synchronous (no feeder thread, no lock shared with other workers): a worker
    killed at any moment loses at most its own unsent report and breaks only its own pipe."""
    from mtopt_sim.bulk_cell import BulkWorker

    logging.basicConfig(level=log_level, format="%(message)s")
    end: tuple | None = ("done", spec.cell_id, None)
    try:
        worker = BulkWorker(spec)
        try:
            for _ in range(episodes):
                if os.getppid() != parent or end is None:
                    end = None
                    break
                for record in worker.collect(1):
                    if not _send(conn, ("episode", spec.cell_id, record)):
                        end = None  # the parent is gone
        finally:
            worker.close()
    except KeyboardInterrupt:
        end = None
    except BulkCollectError as exc:
        end = ("error", spec.cell_id, str(exc))
    except Exception:
        end = ("error", spec.cell_id, traceback.format_exc())
    if end is not None:
        _send(conn, end)
    conn.close()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code} without reporting its end"


@dataclass
class _Process:
    """A running spawn worker: its job, its process and the read end of its pipe."""

    spec: WorkerSpec
    process: Any
    conn: Any
    ended: bool = False  # its pipe reached its end (the worker ended or died)
    done: bool = False  # it reported the end of its job


def _run_processes(
    jobs,
    on_record: Callable[[int, dict], None],
    restart: Callable[[WorkerSpec], tuple[WorkerSpec, int]],
    max_restarts: int = MAX_WORKER_RESTARTS,
    target: Callable = _process_main,
) -> int:
    """Run `jobs` as spawn processes until each reported its end; returns how many workers
    were started again. A worker that dies without reporting its end (SIGKILL, a crash of the
    interpreter or of MuJoCo) is started again with `restart(spec)` (its remaining job), at
    most `max_restarts` times per cell, with a warning each time; one more death fails the
    run (BulkCollectError naming the cell). An error the worker reports (a Python exception,
    BulkCollectError) fails the run at once."""
    ctx = mp.get_context("spawn")
    level = log.getEffectiveLevel()
    workers: dict[int, _Process] = {}
    restarts: Counter = Counter()

    def start(spec: WorkerSpec, episodes: int) -> None:
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=target,
            args=(spec, episodes, writer, level, os.getpid()),
            name=f"cell{spec.cell_id}",
        )
        proc.start()
        writer.close()  # the worker holds the only write end: its death ends the pipe
        workers[spec.cell_id] = _Process(spec, proc, reader)

    def take_reports(cell: int, worker: _Process) -> None:
        """Handle every report that arrived, up to the end of the pipe."""
        while not worker.ended and not worker.done:
            try:
                if not worker.conn.poll():
                    return
                kind, _, payload = worker.conn.recv()
            except (EOFError, OSError):  # the end, or a report cut short by a death
                worker.ended = True
                return
            if kind == "episode":
                on_record(cell, payload)
            elif kind == "done":
                worker.done = True
            else:
                raise BulkCollectError(f"worker of cell {cell} failed: {payload}")

    def died(cell: int, worker: _Process) -> None:
        worker.process.join(timeout=10)
        reason = _exit_reason(worker.process.exitcode)
        spec, left = restart(worker.spec)
        if left == 0:  # after its last bag was complete: nothing to do again
            log.warning("%s: worker of cell %d died (%s) after its last bag", PROG, cell, reason)
            return
        if restarts[cell] >= max_restarts:
            raise BulkCollectError(
                f"worker of cell {cell} died ({reason}) after {restarts[cell]} restart(s);"
                f" giving up (at most {max_restarts} per cell); rerun the same command to"
                " continue"
            )
        restarts[cell] += 1
        log.warning(
            "%s: worker of cell %d died (%s); started again (restart %d/%d) for its %d"
            " remaining episode(s)",
            PROG, cell, reason, restarts[cell], max_restarts, left,
        )  # fmt: skip
        start(spec, left)

    for spec, n in jobs:
        start(spec, n)
    try:
        while workers:
            waitables = [w.conn for w in workers.values()]
            waitables += [w.process.sentinel for w in workers.values()]
            mp.connection.wait(waitables, timeout=1.0)
            for cell, worker in list(workers.items()):
                take_reports(cell, worker)
                if not worker.done and not worker.ended and not worker.process.is_alive():
                    take_reports(cell, worker)  # what it sent before it exited
                if worker.done or worker.ended or not worker.process.is_alive():
                    del workers[cell]
                    worker.conn.close()
                    if worker.done:
                        worker.process.join(timeout=10)
                    else:
                        died(cell, worker)
    finally:
        for worker in workers.values():
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in workers.values():
            worker.process.join(timeout=10)
            worker.conn.close()
    return sum(restarts.values())


def _run_ray(jobs, address: str, on_record: Callable[[int, dict], None]) -> None:
    """Run `jobs` as Ray actors, one episode per call. A dead actor fails the run (no restarts,
    unlike the spawn processes); the same command again resumes it."""
    import ray

    from mtopt_sim.bulk_cell import BulkWorker

    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False)
        if address == "local":
            ray.init(address="local", num_cpus=len(jobs), **kwargs)
        else:
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise CollectUsageError(
                    f"--ray-address {address}: cannot connect: {exc}"
                ) from None
        started = True
    actor_class = ray.remote(num_cpus=1)(BulkWorker)
    actors = {spec.cell_id: actor_class.remote(spec) for spec, _ in jobs}
    left = {spec.cell_id: n for spec, n in jobs}
    pending = {actors[cell].collect.remote(1): cell for cell in actors}
    try:
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready)
            try:
                records = ray.get(ready)
            except ray.exceptions.RayError as exc:
                raise BulkCollectError(f"worker of cell {cell} failed: {exc}") from None
            for record in records:
                on_record(cell, record)
            left[cell] -= len(records)
            if left[cell] > 0:
                pending[actors[cell].collect.remote(1)] = cell
        ray.get([actor.close.remote() for actor in actors.values()])
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if started:
            ray.shutdown()


def collect(cfg: CollectConfig, registry: TaskRegistry | None = None) -> CollectResult:
    """Run a bulk collection (see the module docstring). Raises CollectUsageError for invalid
    arguments and BulkCollectError when a worker fails."""
    from tqdm import tqdm

    if cfg.camera_frames not in CAMERA_FRAMES:
        raise CollectUsageError(f"--camera-frames must be one of {CAMERA_FRAMES}")
    try:
        registry = registry or load_task_registry(
            config_from_params_files(PolicyConfig(), list(cfg.params_files), "/cell0/policy")
            .tasks_file or None
        )  # fmt: skip
    except (ConfigError, TaskRegistryError) as exc:
        raise CollectUsageError(str(exc)) from None
    out = Path(cfg.out)
    cells = [cfg.first_cell + k for k in range(cfg.workers)]
    stale = remove_stale_parts(out, cells)
    existing = existing_bags(out)
    jobs = worker_specs(cfg, registry, existing)
    if jobs:
        check_models(jobs[0][0], registry)
    jobs = [(spec, n) for spec, n in jobs if n > 0]
    before = sum(existing.values())
    result = CollectResult(summary={})
    started = time.monotonic()
    bar = tqdm(
        total=max(cfg.episodes, before), initial=before, desc=PROG, unit="ep",
        disable=not cfg.progress, file=sys.stderr, dynamic_ncols=True,
    )  # fmt: skip
    kinds, successes = Counter(), Counter()

    def on_record(cell: int, record: dict) -> None:
        result.records.append(record)
        result.arrivals.setdefault(cell, []).append(time.monotonic() - started)
        kind = record["policy_kind"]
        kinds[kind] += 1
        successes[kind] += bool(record["success"])
        bar.update(1)
        text = ", ".join(f"{k} {successes[k]}/{kinds[k]}" for k in sorted(kinds))
        bar.set_postfix_str(f"successes: {text}", refresh=False)

    targets = {spec.cell_id: existing.get(spec.cell_id, 0) + n for spec, n in jobs}
    restarts = 0
    try:
        if jobs and cfg.ray_address:
            _run_ray(jobs, cfg.ray_address, on_record)
        elif jobs:
            restarts = _run_processes(
                jobs,
                on_record,
                lambda spec: resumed_job(spec, targets[spec.cell_id]),
                cfg.max_restarts,
            )
    finally:
        bar.close()
        remove_stale_parts(out, cells)  # of workers that were stopped mid-episode
    wall = time.monotonic() - started
    # Counted on disk: a worker killed between renaming its bag and reporting it leaves a
    # complete bag whose record never arrived. Only this run's cells count as collected.
    after = existing_bags(out)
    collected = sum(after.get(c, 0) - existing.get(c, 0) for c in cells)
    result.summary = summarize(
        cfg, result.records, before, len(stale), wall, restarts, collected, sum(after.values())
    )
    return result


def summarize(
    cfg: CollectConfig,
    records,
    before: int,
    stale: int,
    wall: float,
    restarts: int,
    collected: int,
    total: int,
) -> dict:
    """The JSON summary line. `collected`: the complete bags this run's cells added (counted
    on disk), `unreported` those whose report was lost; `total`: the complete bags in the
    output after the run."""
    by_task: dict[str, dict[str, int]] = defaultdict(lambda: {"episodes": 0, "successes": 0})
    for r in records:
        by_task[r["task"]]["episodes"] += 1
        by_task[r["task"]]["successes"] += bool(r["success"])
    kinds = Counter(r["policy_kind"] for r in records)
    return {
        "command": PROG,
        "out": str(cfg.out),
        "episodes_wanted": cfg.episodes,
        "existing_before": before,
        "collected": collected,
        "unreported": max(0, collected - len(records)),
        "total": total,
        "workers": cfg.workers,
        "backend": "ray" if cfg.ray_address else "processes",
        "wall_s": round(wall, 2),
        "episodes_per_hour": round(len(records) / wall * 3600, 1) if records else 0.0,
        "episodes_by_kind": dict(sorted(kinds.items())),
        "successes_by_kind": {
            k: sum(bool(r["success"]) for r in records if r["policy_kind"] == k)
            for k in sorted(kinds)
        },
        "by_task": {t: by_task[t] for t in sorted(by_task)},
        "aborted": sum(bool(r["aborted"]) for r in records),
        "grasped_place_starts": sum(bool(r.get("grasped_start")) for r in records),
        "stale_parts_removed": stale,
        "worker_restarts": restarts,
    }


# ------------------------------------------------------------------------------- the CLI
def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--episodes", type=int, required=True, help="total bags wanted in --out")
    p.add_argument("--out", type=Path, required=True, help="directory of the episode bags")
    p.add_argument("--workers", type=int, default=2, help="simulated cells (default 2)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--weights", default="", help="Q-network checkpoint for CEM episodes")
    p.add_argument(
        "--weights-sha256", default="", help="expected sha256 (default: the .sha256 sidecar)"
    )
    p.add_argument("--epsilon", type=_probability, help="CEM: P(random action) per step")
    p.add_argument(
        "--scripted-fraction", type=_probability, help="P(scripted episode); else CEM / random"
    )
    p.add_argument(
        "--guided-fraction", type=_probability, default=0.0,
        help="P(guided pick) per lift episode: simulator-aimed exploration (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--guided-noise", type=float, default=GuidedConfig.noise,
        help=f"guided pick's action noise std, normalized (default {GuidedConfig.noise})",
    )  # fmt: skip
    p.add_argument(
        "--guided-decoy-fraction", type=_probability, default=0.0,
        help="P(a guided pick aims at a random point of the bin instead of a grasp), the "
        "contrast for the move's direction (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--guided-aim", choices=GUIDED_AIMS, default="commanded",
        help="what a guided pick of a lift-X episode aims at: an object X (commanded) or the "
        "nearest object (default commanded)",
    )  # fmt: skip
    p.add_argument(
        "--place-start-fraction", type=_probability, default=0.0,
        help="P(a lift draw becomes an unlogged noise-free grasp and a place episode holding "
        "what it grasped): more place data (simulation only; default 0)",
    )  # fmt: skip
    p.add_argument(
        "--tasks", nargs="+", default=(), metavar="TASK[=W]", help="commanded tasks (weights)"
    )
    p.add_argument("--max-steps", type=int, default=0, help="steps per episode (0: policy's)")
    p.add_argument("--camera-size", type=int, default=64, help="camera frame side [px]")
    p.add_argument(
        "--camera-frames", choices=CAMERA_FRAMES, default="step",
        help="camera frames written: every policy step + final, or final only",
    )  # fmt: skip
    p.add_argument("--sd-checkpoint", default="", help="success detector grading each episode")
    p.add_argument(
        "--params-file", action="append", default=[], dest="params_files", metavar="FILE",
        help="ROS 2 parameter file for the policy/collector nodes (repeatable)",
    )  # fmt: skip
    p.add_argument("--first-cell", type=int, default=0, help="cell id of the first worker")
    p.add_argument(
        "--ray-address", default="", help="run workers as Ray actors: local | auto | HOST:PORT"
    )
    p.add_argument("--min-free-disk-gb", type=float, default=1.0)
    p.add_argument(
        "--max-restarts", type=int, default=MAX_WORKER_RESTARTS, metavar="N",
        help="a worker process that dies is started again at most N times per cell"
        f" (default {MAX_WORKER_RESTARTS}; not with --ray-address)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="log every episode")
    return p


def config_from_args(args: argparse.Namespace) -> CollectConfig:
    return CollectConfig(
        episodes=args.episodes,
        out=args.out,
        workers=args.workers,
        seed=args.seed,
        weights=args.weights,
        weights_sha256=args.weights_sha256,
        epsilon=args.epsilon,
        scripted_fraction=args.scripted_fraction,
        guided_fraction=args.guided_fraction,
        guided_noise=args.guided_noise,
        guided_decoy_fraction=args.guided_decoy_fraction,
        guided_aim=args.guided_aim,
        place_start_fraction=args.place_start_fraction,
        tasks=tuple(args.tasks),
        max_steps=args.max_steps,
        camera_size=args.camera_size,
        camera_frames=args.camera_frames,
        sd_checkpoint=args.sd_checkpoint,
        params_files=tuple(args.params_files),
        first_cell=args.first_cell,
        ray_address=args.ray_address,
        min_free_disk_gb=args.min_free_disk_gb,
        max_restarts=args.max_restarts,
        progress=not args.no_progress,
    )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # `kill` stops like Ctrl-C: workers stopped, partial bags removed


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        result = collect(config_from_args(args))
    except CollectUsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BulkCollectError as exc:
        print(f"{PROG}: collection failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130
    print(json.dumps(result.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
