"""Where exploration closes the gripper: random and noisy scripted lift episodes in the gym env.

    python -m mtopt_experiments.exploration [--episodes 300] [--seed 0] [--high 0.08]
        [--kinds random scripted] [--grade-at-final-pose]

Runs `--episodes` lift-any episodes of each kind in `mtopt_sim.env.MTOptCell`, from the same
seeded scenes (a fresh scene every 10 episodes) and the same start poses (the policy node's
uniform draw over the right bin, `aim="uniform"`):

* `random`: the policy node's random actions (`mtopt_policy.policy.RandomActions` with the
  `PolicyConfig` defaults), as random episodes and epsilon steps draw them;
* `scripted`: the policy node's noisy scripted pick (`mtopt_policy.scripted.pick_config`).

Per episode it records the gripper heights (above the bin floor, as observed when the action
was chosen) of the steps whose action closes an open gripper, and the oracle's lift-any label
(at the present pose, as every path grades; `--grade-at-final-pose`: where the episode ended).
One JSON line per kind: `episodes`, `closing_episodes` (at least one close), `closes_above`
(episodes with a close above `--high`), `fraction_above` (of all episodes), `closes_below`
(episodes with a close at or below `--high`), `lifts` (oracle lift-any successes) and
`lift_rate`, plus `wall_time_s`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from mtopt_core.action import GRIPPER
from mtopt_policy.config import PolicyConfig
from mtopt_policy.policy import RandomActions

KINDS = ("random", "scripted")
TASK = "lift-any"
RESPAWN_EVERY = 10


def random_actions(rng: np.random.Generator) -> RandomActions:
    """The policy node's random actions with its default settings."""
    cfg = PolicyConfig()
    return RandomActions(
        rng,
        cfg.random_terminate_prob,
        cfg.random_gripper_toggle_prob,
        cfg.random_close_below_m,
    )


def measure(env, kind: str, episodes: int, seed: int, high: float) -> dict:
    """Close heights and lift-any labels of `episodes` episodes of `kind` (see the docstring)."""
    from mtopt_sim.scripted import ScriptedPick, pick_config  # loads MuJoCo: only when used

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    start = time.perf_counter()
    scene_rng = np.random.default_rng(seed)  # scenes and start poses: the same for every kind
    scripted = ScriptedPick(
        dataclasses.replace(pick_config(noisy=True), aim="uniform"),
        env.config.action_spec,
        scene_rng,
    )
    explore = random_actions(np.random.default_rng(seed + 1))
    closing = above = below = lifts = 0
    for k in range(episodes):
        if k % RESPAWN_EVERY == 0:
            env.respawn(seed=seed * 100_003 + k)
        options = scripted.start_options(env)
        obs, _ = env.reset(options={**options, "task": TASK})
        heights = []
        while True:
            closed, height = bool(obs["gripper_closed"]), float(obs["gripper_height"][0])
            if kind == "scripted":
                action = scripted.act(obs)
            else:
                action = explore.sample(closed, height)
            if action[GRIPPER] >= 0.5 and not closed:
                heights.append(height)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        closing += bool(heights)
        above += any(h > high for h in heights)
        below += any(h <= high for h in heights)
        lifts += bool(info["oracle"][TASK])
    return {
        "episodes": episodes,
        "closing_episodes": closing,
        "closes_above": above,
        "fraction_above": round(above / max(1, episodes), 4),
        "closes_below": below,
        "lifts": lifts,
        "lift_rate": round(lifts / max(1, episodes), 4),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300, help="episodes per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--high", type=float, default=0.08, help="a close above this is high [m]")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--grade-at-final-pose",
        action="store_true",
        help="grade where the episode ended, without the present move",
    )
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    from mtopt_sim.env import MTOptCell  # loads MuJoCo: only when used

    env = MTOptCell(present_before_grading=not args.grade_at_final_pose)
    env.reset(seed=args.seed)
    try:
        for kind in args.kinds:
            result = measure(env, kind, args.episodes, args.seed, args.high)
            result["present_before_grading"] = env.config.present_before_grading
            print(json.dumps({"kind": kind, "seed": args.seed, "high": args.high, **result}))
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
