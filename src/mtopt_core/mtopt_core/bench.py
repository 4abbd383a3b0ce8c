"""Benchmark of the learning core. Prints ONE JSON line.

    python -m mtopt_core.bench [--quick] [--threads N]

Measures (small preset, 64 px, 12 tasks, default CEM 64/6/2, on CPU):
- CEM policy latency per state with the image trunk broadcast over the population, and the
  naive version that reruns the trunk for every sample, as a ratio measured in this run; the
  floor is one batched forward of the fused layers (head) for the whole population, per CEM
  iteration (plus one trunk pass per state for the per-state floor);
- Bellman targets per second at batch 256 (CEM over target1, clipped double Q with target2);
- training steps per second at batch 256 (Bellman targets + forward/backward + Adam step);
- memory of a 100k-transition replay buffer (10k with --quick) at 64 px filled with synthetic
  10-step episodes: the buffer's own byte count and the process RSS growth.

Times are the fastest of N interleaved repetitions (robust to other load on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from mtopt_core.bellman import bellman_targets
from mtopt_core.cem import CEMConfig, q_cem
from mtopt_core.episode import Episode
from mtopt_core.impersonation import Relabel
from mtopt_core.qnet import QNet, QNetConfig, expand_features
from mtopt_core.replay import ReplayBuffer, ReplayConfig
from mtopt_core.trainer import Trainer, TrainerConfig

NUM_TASKS = 12
TASKS = tuple(f"task{i}" for i in range(NUM_TASKS))


def _best_times(fns: list, reps: int, warmup: int = 2) -> list[float]:
    """Fastest of `reps` timings of each function, the functions interleaved so they see the
    same machine load (the minimum is the least disturbed run on a shared machine)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _rss_bytes(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _synthetic_episode(steps: int, size: int, ident: int) -> Episode:
    images = np.empty((steps + 1, size, size, 3), dtype=np.uint8)
    images[:] = ident % 251  # touches every page, like real images
    actions = np.zeros((steps, 6), np.float32)
    return Episode(images, np.zeros(steps + 1, bool), np.full(steps + 1, 0.1, np.float32),
                   actions, TASKS[ident % NUM_TASKS], episode_id=str(ident))  # fmt: skip


def bench_cem(net: QNet, reps: int) -> dict:
    cfg = CEMConfig()
    size = net.config.image_size
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8, generator=gen)
    grip, height, task = torch.zeros(1), torch.full((1,), 0.1), torch.zeros(1, dtype=torch.long)
    detected = torch.zeros(1)
    n = cfg.population
    with torch.no_grad():
        feats = expand_features(net.trunk(img), n)
        actions = torch.rand(n, 6, generator=gen)
        args = (actions, grip.expand(n), height.expand(n), task.expand(n), detected.expand(n))
        broadcast, naive, head, trunk = _best_times(
            [
                lambda: q_cem(net, img, grip, height, task, cfg, gen, object_detected=detected),
                lambda: q_cem(
                    net,
                    img,
                    grip,
                    height,
                    task,
                    cfg,
                    gen,
                    broadcast_trunk=False,
                    object_detected=detected,
                ),  # fmt: skip
                lambda: net.head_logits(feats, *args),
                lambda: net.trunk(img),
            ],
            reps,
        )
    return {
        "cem_broadcast_ms_per_state": broadcast * 1e3,
        "cem_naive_ms_per_state": naive * 1e3,
        "cem_speedup_broadcast_vs_naive": naive / broadcast,
        "cem_floor_head_ms_per_iteration": head * 1e3,
        "cem_floor_ms_per_state": (trunk + cfg.iterations * head) * 1e3,
        "trunk_ms_per_image": trunk * 1e3,
    }


def _filled_replay(size: int, episodes: int) -> ReplayBuffer:
    buf = ReplayBuffer(TASKS, ReplayConfig(memory_budget_bytes=4 * 1024**3))
    for i in range(episodes):
        ep = _synthetic_episode(10, size, i)
        # relabelled for the commanded task and one more, half successes
        buf.add(ep, [Relabel(ep.task, i % 2 == 0, True),
                     Relabel(TASKS[(i + 1) % NUM_TASKS], False, False)])  # fmt: skip
    return buf


def bench_bellman_and_train(
    net: QNet, reps_bellman: int, train_steps: int, batch_size: int = 256
) -> dict:
    size = net.config.image_size
    replay = _filled_replay(size, 200)
    trainer = Trainer(net, replay, TrainerConfig(batch_size=batch_size, progress=False))
    batch = replay.sample(batch_size, np.random.default_rng(0)).to_torch()
    batch.done.zero_()  # every row needs a CEM max (the worst case)
    gen = torch.Generator().manual_seed(0)
    (t,) = _best_times(
        [lambda: bellman_targets(trainer.target1, trainer.target2, batch, 0.9, CEMConfig(), gen)],
        reps_bellman,
        warmup=1,
    )
    if train_steps > 1:
        trainer.step()  # warm-up (the Bellman stage above already warmed up the networks)
    t0 = time.perf_counter()
    for _ in range(train_steps):
        trainer.step()
    step = (time.perf_counter() - t0) / train_steps
    return {
        "bellman_batch": batch_size,
        "bellman_targets_per_s": batch_size / t,
        "train_batch": batch_size,
        "train_steps_per_s": 1 / step,
        "train_transitions_per_s": batch_size / step,
    }


def bench_replay_memory(size: int, transitions: int) -> dict:
    before = _rss_bytes()
    buf = ReplayBuffer(TASKS, ReplayConfig(memory_budget_bytes=2 * 1024**3))
    t0 = time.perf_counter()
    for i in range(transitions // 10):
        ep = _synthetic_episode(10, size, i)
        buf.add(ep, [Relabel(ep.task, i % 2 == 0, True)])
    fill_s = time.perf_counter() - t0
    after = _rss_bytes()
    t0 = time.perf_counter()
    buf.sample(256)
    sample_ms = (time.perf_counter() - t0) * 1e3
    return {
        "replay_transitions": buf.num_transitions,
        "replay_image_px": size,
        "replay_buffer_bytes": buf.nbytes,
        "replay_rss_growth_bytes": after - before,
        "replay_bytes_per_transition": buf.nbytes / max(buf.num_transitions, 1),
        "replay_evicted_episodes": buf.evicted_episodes,
        "replay_fill_s": fill_s,
        "replay_sample_256_ms": sample_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-sized: fewer repetitions, a 10k-transition replay, batch 32",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared 2-core machine a second OpenMP thread "
        "spins against other processes and makes small ops 10x slower; use 2 when idle)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    net = QNet(QNetConfig.small(NUM_TASKS)).eval()
    result: dict = {
        "bench": "mtopt_core",
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "qnet": "small",
        "image_px": net.config.image_size,
        "cem": [CEMConfig().population, CEMConfig().elites, CEMConfig().iterations],
    }
    # Memory first, so the RSS growth is not hidden by memory freed by the other stages.
    result.update(bench_replay_memory(64, 10_000 if args.quick else 100_000))
    result.update(bench_cem(net, reps=3 if args.quick else 50))
    if args.quick:
        result.update(bench_bellman_and_train(net, 1, 1, batch_size=32))
    else:
        result.update(bench_bellman_and_train(net, 3, 5))
    result["peak_rss_bytes"] = _rss_bytes("VmHWM")
    result["elapsed_s"] = time.perf_counter() - t_start
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
