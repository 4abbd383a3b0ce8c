"""Measure the scripted policies and the bin reset on seeded episodes (one JSON line).

    mtopt-sim-evaluate-scripted [--episodes 100] [--resets 50] [--seed 0]
    python -m mtopt_experiments.evaluate_scripted [--episodes 100] [--resets 50] [--seed 0]

* pick: each episode starts from a freshly spawned scene (seed + k), runs `ScriptedPick` and
  counts the oracle's lift-any success;
* place: each episode first acquires an object with noiseless scripted picks, then runs
  `ScriptedPlace` and counts the oracle's place-any success;
* resets: each trial drops 1-3 random objects from the right bin into the left bin, lets them
  settle, dumps the left bin and counts where those objects went.

Both noise settings are measured: off (`ScriptedConfig()`) and the default noise
(`scripted.pick_config()` / `place_config()`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

import numpy as np

from mtopt_sim.env import EnvConfig, MTOptCell
from mtopt_sim.scripted import (
    ScriptedConfig,
    ScriptedPick,
    ScriptedPlace,
    pick_config,
    place_config,
    run_episode,
)

NOISELESS_PICK = pick_config(noisy=False)
NOISELESS_PLACE = place_config(noisy=False)


def measure_pick(env: MTOptCell, episodes: int, config: ScriptedConfig, seed: int = 0) -> dict:
    """Success rate of the scripted pick over `episodes` fresh scenes."""
    policy = ScriptedPick(config, env.config.action_spec, np.random.default_rng(seed))
    successes = 0
    for k in range(episodes):
        env.respawn(seed=seed * 100_003 + k)
        record = run_episode(env, policy, "lift-any")
        successes += record.oracle["lift-any"]
    return {"episodes": episodes, "successes": successes, "rate": successes / max(1, episodes)}


def acquire_object(env: MTOptCell, rng: np.random.Generator, attempts: int = 6) -> bool:
    """Noiseless scripted picks until the gripper holds something (False if it never does)."""
    picker = ScriptedPick(NOISELESS_PICK, env.config.action_spec, rng)
    for _ in range(attempts):
        record = run_episode(env, picker, "lift-any")
        if record.held_after and env.cell.held_objects():
            return True
        env.cell.actuate_gripper(close=False)
    return False


def measure_place(env: MTOptCell, episodes: int, config: ScriptedConfig, seed: int = 0) -> dict:
    """Success rate of the scripted place, each episode starting with a held object."""
    rng = np.random.default_rng(seed + 7)
    policy = ScriptedPlace(config, env.config.action_spec, np.random.default_rng(seed))
    successes = done = skipped = 0
    k = 0
    while done < episodes:
        env.respawn(seed=seed * 100_003 + 50_000 + k)
        k += 1
        if not acquire_object(env, rng):
            skipped += 1
            if skipped > episodes:
                raise RuntimeError("the noiseless pick keeps failing; cannot measure place")
            continue
        record = run_episode(env, policy, "place-any")
        successes += record.oracle["place-any"]
        done += 1
    return {
        "episodes": done,
        "successes": successes,
        "rate": successes / max(1, done),
        "scenes_without_grasp": skipped,
    }


def measure_resets(env: MTOptCell, trials: int, seed: int = 0) -> dict:
    """Drop 1-3 objects into the left bin, dump, and count where they end up; `trials` times
    in a row on one scene (consecutive resets)."""
    rng = np.random.default_rng(seed)
    env.respawn(seed=seed)
    cell = env.cell
    moved = in_left = stayed = on_table = lost = 0
    for _ in range(trials):
        in_right = [i for i in cell.active_objects if cell.object_region(i) == "right_bin"]
        count = int(rng.integers(1, 4))
        chosen = rng.choice(in_right, size=min(count, len(in_right)), replace=False)
        center = cell.scene_config.bin_center("left")
        for j, index in enumerate(chosen):
            xy = center + rng.uniform(-0.06, 0.06, 2)
            yaw = rng.uniform(-math.pi, math.pi)
            quat = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
            cell.place_object(int(index), [xy[0], xy[1], cell.floor_z + 0.07 + 0.07 * j], quat)
        cell.advance(1.0)
        dropped = [i for i in chosen if cell.object_region(int(i)) == "left_bin"]
        in_left += len(dropped)
        env.reset_bins()
        for index in dropped:
            region = cell.object_region(int(index))
            moved += region == "right_bin"
            stayed += region == "left_bin"
            on_table += region == "table"
            lost += region == "lost"
    return {
        "resets": trials,
        "objects_in_left_bin": in_left,
        "moved_to_right_bin": moved,
        "stayed_in_left_bin": stayed,
        "on_table": on_table,
        "lost_off_table": lost,
        "moved_fraction": moved / max(1, in_left),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100, help="pick and place episodes")
    parser.add_argument("--resets", type=int, default=50, help="consecutive bin resets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell-id", type=int, default=0)
    args = parser.parse_args(argv)
    if args.episodes < 0 or args.resets < 0:
        parser.error("--episodes and --resets must be >= 0")
    start = time.perf_counter()
    env = MTOptCell(EnvConfig(cell=dataclasses.replace(EnvConfig().cell, cell_id=args.cell_id)))
    env.reset(seed=args.seed)
    result = {
        "cell_id": args.cell_id,
        "seed": args.seed,
        "pick_noise_off": measure_pick(env, args.episodes, NOISELESS_PICK, args.seed),
        "pick_default_noise": measure_pick(env, args.episodes, pick_config(), args.seed),
        # For reference: the seed's crudest start (uniform over the bin), noise off.
        "pick_uniform_start_noise_off": measure_pick(
            env, args.episodes, dataclasses.replace(NOISELESS_PICK, aim="uniform"), args.seed
        ),
        "place_noise_off": measure_place(env, args.episodes, NOISELESS_PLACE, args.seed),
        "place_default_noise": measure_place(env, args.episodes, place_config(), args.seed),
        "bin_resets": measure_resets(env, args.resets, args.seed),
    }
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    env.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
