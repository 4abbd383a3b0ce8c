"""Benchmark of the learner pipeline (LogReplay, Bellman updater actors, trainer). ONE JSON line.

    python -m mtopt_learner.bench [--quick] [--threads N]

All measured in one run, on CPU (small Q-network preset, 64 px, default CEM 64/6/2):
- LogReplay ingest: bags per second over N synthetic episode bags written like the logger
  writes them (10 steps, three 96x128 cameras per step, 64 px policy observations);
- Bellman targets per second with 1 and with 2 `BellmanUpdaterActor`s on a private local Ray
  instance (each with 2 batches in flight, sampling from a `ReplayActor`), their ratio, and the
  in-process `BellmanUpdater` rate for reference;
- trainer steps per second: a bare torch loop (same QNet, batch, Adam, precomputed targets,
  forward + loss + backward + step), `Trainer.apply_batch` on the same batch (adds gradient
  clipping, target-network updates and metrics) and the whole Ray pipeline (2 updater actors
  labelling fresh batches, the trainer in this process, target weights broadcast every step),
  each with its ratio to the bare loop.

Rates are the best of interleaved repetitions (robust to other load on a shared machine). On a
machine with fewer free cores than processes the updaters compete with each other and with the
trainer, so the 2-vs-1 updater ratio is bounded by the free cores, not by the design.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtopt_core.bellman import bellman_loss, q_logits
from mtopt_core.cem import CEMConfig
from mtopt_core.episode_bag import EpisodeBagWriter, make_typestore
from mtopt_core.qnet import QNet, QNetConfig
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_core.trainer import BellmanUpdater, Trainer, TrainerConfig
from mtopt_learner.checkpoints import CheckpointWriter
from mtopt_learner.log_replay import LogReplay, LogReplayConfig
from mtopt_learner.ray_backend import (
    BellmanUpdaterActor,
    ReplayActor,
    ReplayView,
    _train_loop,
    init_ray,
    state_to_numpy,
)

OBS_SIZE = 64
CAMERA_SHAPE = (96, 128)
CAMERAS = ("overhead", "left_shoulder", "right_shoulder")
STEPS_PER_EPISODE = 10
SEC = 10**9


# --- synthetic bags ----------------------------------------------------------------------------


def write_synthetic_bag(directory: Path, episode_id: str, registry: TaskRegistry, seed: int):
    """One complete episode bag with the logger's topics under /cell0 (random pixels)."""
    store = make_typestore()
    T = store.types
    rng = np.random.default_rng(seed)
    names = list(registry.names)
    task = names[seed % len(names)]

    def stamp(ns: int):
        return T["builtin_interfaces/msg/Time"](sec=ns // SEC, nanosec=ns % SEC)

    def header(ns: int):
        return T["std_msgs/msg/Header"](stamp=stamp(ns), frame_id="")

    def image(shape: tuple[int, int], ns: int):
        pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        return T["sensor_msgs/msg/Image"](
            header=header(ns), height=shape[0], width=shape[1], encoding="rgb8",
            is_bigendian=0, step=shape[1] * 3, data=pixels.reshape(-1),
        )  # fmt: skip

    def gripper(ns: int, closed: bool, height: float):
        return T["mtopt_interfaces/msg/GripperState"](
            header=header(ns), position=0.0, effort=0.0, closed=closed,
            object_detected=closed, height=height,
        )  # fmt: skip

    img, grip = "sensor_msgs/msg/Image", "mtopt_interfaces/msg/GripperState"
    with EpisodeBagWriter(directory, episode_id, typestore=store) as bag:
        t = SEC
        for k in range(STEPS_PER_EPISODE):
            for cam in CAMERAS:
                bag.write(f"/cell0/camera/{cam}/image_raw", img, t, image(CAMERA_SHAPE, t))
            closed, height = bool(k % 2), 0.05 + 0.01 * k
            bag.write("/cell0/gripper/state", grip, t + 1, gripper(t, closed, height))
            t += SEC // 10
            bag.write("/cell0/policy/observation", img, t, image((OBS_SIZE, OBS_SIZE), t))
            step = T["mtopt_interfaces/msg/PolicyStep"](
                header=header(t), episode_id=episode_id, step=k, task=task,
                action=rng.uniform(-1, 1, 6).astype(np.float32), q_value=np.float32(np.nan),
                exploratory=True, policy_kind="scripted_pick", gripper_closed=closed,
                gripper_height=np.float32(height), object_detected=closed,
            )  # fmt: skip
            bag.write("/cell0/policy/step", "mtopt_interfaces/msg/PolicyStep", t + 1, step)
            t += SEC // 2
        bag.write("/cell0/gripper/state", grip, t, gripper(t, True, 0.3))
        t += SEC // 5
        for cam in CAMERAS:
            bag.write(f"/cell0/camera/{cam}/image_raw", img, t, image(CAMERA_SHAPE, t))
        probabilities = np.where(rng.random(len(names)) < 0.5, 0.9, 0.1).astype(np.float32)
        info = T["mtopt_interfaces/msg/EpisodeInfo"](
            header=header(t + 1), episode_id=episode_id, cell_id=0, task=task,
            start_time=stamp(0), policy_kind="scripted_pick", weights_version=-1,
            weights_sha256="", epsilon=np.float32(1.0), steps=STEPS_PER_EPISODE,
            terminated=True, aborted=False, abort_reason="", closed_by="/cell0/collector",
            task_names=names,
            sd_probabilities=probabilities, sd_model_version="bench", has_oracle=False,
            oracle_success=np.zeros(0, bool),
        )  # fmt: skip
        bag.write("/cell0/episode_info", "mtopt_interfaces/msg/EpisodeInfo", t + 1, info)
        bag.finish()


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_ingest(root: Path, registry: TaskRegistry, num_bags: int) -> tuple[Path, dict]:
    bags = root / "bags"
    t0 = time.perf_counter()
    for i in range(num_bags):
        write_synthetic_bag(bags, f"ep{i:05d}", registry, i)
    write_s = time.perf_counter() - t0
    replay = LogReplay(LogReplayConfig(bag_dir=bags, state_dir=root / "logreplay"), registry)
    report = replay.poll()
    if len(report.ingested) != num_bags:
        raise RuntimeError(f"ingested {len(report.ingested)} of {num_bags} bags: {report}")
    return bags, {
        "ingest_bags": num_bags,
        "ingest_bag_bytes": _dir_bytes(bags) // num_bags,
        "ingest_steps_per_bag": STEPS_PER_EPISODE,
        "ingest_bags_per_s": num_bags / report.ingest_seconds,
        "ingest_transitions_per_s": report.buffer_transitions / report.ingest_seconds,
        "bag_write_bags_per_s": num_bags / write_s,
    }


# --- Bellman updaters --------------------------------------------------------------------------


def _drain(updaters: list, batches: int, batch_size: int, in_flight: int) -> float:
    """Seconds to get `batches` labelled batches from `updaters`, `in_flight` per updater."""
    import ray

    pending: list = []
    requested = 0
    t0 = time.perf_counter()
    for _ in range(in_flight):
        for u in updaters:
            if requested < batches:
                pending.append((u, u.next_batch.remote(batch_size)))
                requested += 1
    while pending:
        u, ref = pending.pop(0)
        ray.get(ref)
        if requested < batches:
            pending.append((u, u.next_batch.remote(batch_size)))
            requested += 1
    return time.perf_counter() - t0


def bench_updaters(
    updaters: list, net: QNet, replay_buffer: Any, batch_size: int, batches: int, reps: int
) -> dict:
    import ray

    cem = CEMConfig()
    ray.get([u.next_batch.remote(batch_size) for u in updaters])  # warm-up (imports, first call)
    best1 = best2 = float("inf")
    for _ in range(reps):  # interleaved so both see the same machine load
        best1 = min(best1, _drain(updaters[:1], batches, batch_size, 2))
        best2 = min(best2, _drain(updaters[:2], batches, batch_size, 2))
    local = BellmanUpdater(replay_buffer, net, net, 0.9, cem, seed=0)
    local.next_batch(batch_size)
    best_local = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(max(1, batches // 2)):
            local.next_batch(batch_size)
        best_local = min(best_local, (time.perf_counter() - t0) / max(1, batches // 2))
    one, two = batches * batch_size / best1, batches * batch_size / best2
    return {
        "bellman_batch": batch_size,
        "bellman_targets_per_s_1_updater": one,
        "bellman_targets_per_s_2_updaters": two,
        "bellman_2_vs_1_updaters": two / one,
        "bellman_targets_per_s_in_process": batch_size / best_local,
    }


# --- trainer -----------------------------------------------------------------------------------


def bench_trainer(
    net_config: QNetConfig,
    registry: TaskRegistry,
    view: ReplayView,
    batch: Any,
    targets: torch.Tensor,
    updaters: list,
    steps: int,
    reps: int,
    out: Path,
) -> dict:
    bare_net = QNet(net_config)
    optimizer = torch.optim.Adam(bare_net.parameters(), lr=1e-4)

    def bare_step() -> None:
        loss = bellman_loss(q_logits(bare_net, batch), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    config = TrainerConfig(batch_size=len(targets), progress=False)
    trainer = Trainer(QNet(net_config), view, config, registry.names)

    def timed(fn, n: int) -> float:
        fn()  # warm-up
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n)
        return best

    bare = apply = float("inf")
    for _ in range(2):  # interleaved
        bare = min(bare, timed(bare_step, steps))
        apply = min(apply, timed(lambda: trainer.apply_batch(batch, targets), steps))

    # The whole pipeline: fresh batches labelled by 2 updater actors, targets broadcast.
    writer = CheckpointWriter(out / "checkpoints")
    ray_best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        _train_loop(trainer, updaters, steps, 2, writer, 10**9, None, None)
        ray_best = min(ray_best, (time.perf_counter() - t0) / steps)
    return {
        "train_batch": len(targets),
        "bare_torch_steps_per_s": 1 / bare,
        "trainer_apply_steps_per_s": 1 / apply,
        "trainer_apply_vs_bare": bare / apply,
        "ray_train_steps_per_s_2_updaters": 1 / ray_best,
        "ray_train_vs_bare": bare / ray_best,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: fewer bags, small batches"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per process (default 1: one per updater actor and trainer on "
        "a shared 2-core machine)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    registry = load_task_registry()
    net_config = QNetConfig.small(len(registry))
    # --quick is the smoke size (make test): every figure, from a few small batches.
    batch_size = 16 if args.quick else 128
    num_bags, bellman_batches, train_steps, reps = (20, 2, 2, 1) if args.quick else (40, 6, 6, 2)
    result: dict[str, Any] = {
        "bench": "mtopt_learner",
        "quick": args.quick,
        "torch_threads": args.threads,
        "cpus": os.cpu_count(),
        "qnet": "small",
        "image_px": net_config.image_size,
        "tasks": len(registry),
        "cem": [CEMConfig().population, CEMConfig().elites, CEMConfig().iterations],
        "load_avg_1min_start": os.getloadavg()[0],  # how busy the machine was
    }
    with tempfile.TemporaryDirectory(prefix="mtopt_learner_bench_") as tmp:
        root = Path(tmp)
        bags, ingest = bench_ingest(root, registry, num_bags)
        result.update(ingest)

        import ray

        t0 = time.perf_counter()
        init_ray(num_cpus=max(2, os.cpu_count() or 1))
        try:
            replay = (
                ray.remote(ReplayActor)
                .options(num_cpus=0)
                .remote(LogReplayConfig(bag_dir=bags, state_dir=root / "ray_state"), registry)
            )
            _, stats = ray.get(replay.poll.remote())
            result["ray_start_s"] = time.perf_counter() - t0
            net = QNet(net_config).eval()
            cls = ray.remote(BellmanUpdaterActor).options(num_cpus=1)
            updaters = [
                cls.remote(replay, net_config.to_dict(), 0.9, CEMConfig(), i, args.threads)
                for i in range(2)
            ]
            state = ray.put(state_to_numpy(net))
            ray.get([u.set_targets.remote(0, state, state) for u in updaters])
            local = LogReplay(LogReplayConfig(bag_dir=bags, state_dir=root / "local"), registry)
            local.poll()
            result.update(
                bench_updaters(updaters, net, local.buffer, batch_size, bellman_batches, reps)
            )
            batch = local.buffer.sample(batch_size, np.random.default_rng(0)).to_torch()
            targets = torch.rand(batch_size, generator=torch.Generator().manual_seed(0))
            view = ReplayView(registry.names, stats)
            result.update(
                bench_trainer(
                    net_config, registry, view, batch, targets, updaters, train_steps, reps, root
                )
            )
        finally:
            ray.shutdown()
    result["load_avg_1min_end"] = os.getloadavg()[0]
    result["elapsed_s"] = time.perf_counter() - started
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
