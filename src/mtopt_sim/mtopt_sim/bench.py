"""Benchmark of the simulated cell (prints ONE JSON line).

    python -m mtopt_sim.bench [--quick]

Reports physics steps/s (arm moving, objects awake and with island sleeping), ms per rendered
frame at 64/128/472 px, the wall time of a 10-step episode with a policy-camera image per step,
and episodes/s with 1 and 2 worker processes (multiprocessing 'spawn'; each worker owns its env).
An episode here is `reset()` from the current state plus 10 steps of seeded random actions (the
gripper closes at step 5, terminate at step 10); every 20 episodes the scene is respawned.
`--quick` finishes in well under 30 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np

EPISODE_STEPS = 10


def _episode_actions(rng: np.random.Generator) -> list[np.ndarray]:
    actions = []
    for step in range(EPISODE_STEPS):
        a = np.zeros(6, dtype=np.float32)
        a[:4] = rng.uniform(-1.0, 1.0, 4)
        a[4] = 1.0 if step >= EPISODE_STEPS // 2 else 0.0
        a[5] = 1.0 if step == EPISODE_STEPS - 1 else 0.0
        actions.append(a)
    return actions


def run_episodes(count: int, image_size: int, seed: int) -> tuple[int, float]:
    """Run `count` benchmark episodes in a fresh env; returns (episodes, wall seconds)."""
    from mtopt_sim.env import EnvConfig, MTOptCell

    env = MTOptCell(EnvConfig(image_size=image_size))
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for k in range(count):
        if k and k % 20 == 0:
            env.respawn()
        center = env.cell.scene_config.bin_center("right")
        env.reset(options={"start": [center[0], center[1], env.cell.floor_z + 0.2]})
        for action in _episode_actions(rng):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    elapsed = time.perf_counter() - start
    env.close()
    return count, elapsed


def _worker(args) -> tuple[int, float]:
    return run_episodes(*args)


def throughput(workers: int, episodes_per_worker: int, image_size: int) -> float:
    """Episodes/s of `workers` spawn processes running episodes at the same time."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        # Warm up (imports, model build) outside the timed part: each worker times itself.
        results = pool.map(
            _worker, [(episodes_per_worker, image_size, 100 + w) for w in range(workers)]
        )
    total = sum(n for n, _ in results)
    slowest = max(t for _, t in results)
    return total / slowest


def measure_physics(cell, sim_seconds: float) -> float:
    """Physics steps/s while the arm sweeps back and forth above the right bin."""
    q0 = cell.arm_qpos()
    q1 = q0 + np.array([0.3, 0.2, 0.0, -0.2, 0.0, 0.2, 0.3])
    steps = int(sim_seconds / cell.model.opt.timestep)
    cell.set_joint_trajectory([sim_seconds / 2, sim_seconds], [q1, q0])
    start = time.perf_counter()
    cell.step_physics(steps)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 30 s)")
    args = parser.parse_args(argv)
    quick = args.quick

    import mujoco

    from mtopt_sim.cell import SimCell

    wall_start = time.perf_counter()
    cell = SimCell(seed=0)
    cell.respawn(np.random.default_rng(0))
    result: dict[str, object] = {"quick": quick}
    sim_s = 1.0 if quick else 4.0
    result["physics_steps_per_s"] = round(measure_physics(cell, sim_s))
    sleep_bit = int(mujoco.mjtEnableBit.mjENBL_SLEEP)
    cell.model.opt.enableflags &= ~sleep_bit
    result["physics_steps_per_s_no_sleep"] = round(measure_physics(cell, sim_s))
    cell.model.opt.enableflags |= sleep_bit

    frames = 20 if quick else 100
    render_ms = {}
    for size in (64, 128, 472):
        cell.render("overhead", size)  # create the renderer outside the timing
        start = time.perf_counter()
        for _ in range(frames):
            cell.render("overhead", size)
        render_ms[str(size)] = round((time.perf_counter() - start) / frames * 1e3, 2)
    result["render_ms_per_frame"] = render_ms
    cell.close()

    n_single = 4 if quick else 30
    count, elapsed = run_episodes(n_single, 64, seed=1)
    result["episode_10_steps_64px_s"] = round(elapsed / count, 3)
    result["episodes_per_s_1_process_64px"] = round(count / elapsed, 2)
    n_worker = 3 if quick else 20
    result["episodes_per_s_1_worker_spawn"] = round(throughput(1, n_worker, 64), 2)
    result["episodes_per_s_2_workers_spawn"] = round(throughput(2, n_worker, 64), 2)
    result["cpu_count"] = os.cpu_count()
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    result["wall_time_s"] = round(time.perf_counter() - wall_start, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
