"""What a lift network does step by step: per-step traces of its evaluation episodes.

    python -m mtopt_experiments.trace_episodes CKPT --out TRACES.jsonl [--episodes N]
        [--seed S] [--task T] [--camera-size PX] [--policy-param KEY=VALUE ...]

Runs the learned policy alone on `mtopt-eval`'s scenes (the same seeds, start poses and CEM
draws, so each episode's outcome equals its `mtopt-eval` row) and writes one JSON line per
episode to TRACES.jsonl: the row and, per step, the action, Q, the gripper state, the
object-detected flag, the height and `holding`: how many objects touch both fingers (from
the simulator, never shown to the policy).

Prints one JSON line: episodes, successes, and the episodes by what their first close did
(`first_close`): `none`, `empty` (held nothing), `held_kept` (held, the gripper stayed closed
and still held at the end), `held_lost` (held, then lost while closed), `held_reopened` (held,
then opened); each {"episodes", "successes"}. Also `lost_rate_by_move`: of the steps that
started holding, kept the gripper closed and did not terminate, the share that ended holding
nothing, by the size of the step's sideways move (|(x, y)|) and of its yaw, normalized.
Progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mtopt_core.action import GRIPPER, TERMINATE, YAW
from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.checkpoint import CheckpointError
from mtopt_experiments.evaluate import (
    EvalConfig,
    PairedSceneRunner,
    SceneError,
    add_policy_arguments,
    checkpoint_identity,
    parse_policy_params,
    policy_config,
)

FIRST_CLOSE = ("none", "empty", "held_kept", "held_lost", "held_reopened")
MOVE_BINS = ((0.0, 0.3), (0.3, 0.7), (0.7, 1.5))


def trace_episode(runner: PairedSceneRunner, task: str, episode: int) -> dict:
    """The learned episode `episode` of `task` with its per-step trace."""
    steps: list[dict] = []
    cell = runner.env.cell

    def on_step(decision, obs, _info) -> None:
        steps.append({
            "action": [round(float(v), 4) for v in decision.action],
            "q": round(float(decision.q_value), 4),
            "gripper_closed": bool(obs["gripper_closed"]),
            "object_detected": bool(obs["object_detected"]),
            "height_m": round(float(obs["gripper_height"][0]), 4),
            "holding": len(cell.held_objects()),
        })  # fmt: skip

    row = runner.run_learned(task, episode, on_step)
    return {**row, "first_close_kind": first_close_kind(steps), "trace": steps}


def first_close_kind(steps: list[dict]) -> str:
    """What the episode's first close did (see the module docstring)."""
    was_closed = False
    for i, step in enumerate(steps):
        if step["gripper_closed"] and not was_closed:
            if not step["holding"]:
                return "empty"
            for later in steps[i + 1 :]:
                if not later["gripper_closed"]:
                    return "held_reopened"
                if not later["holding"]:
                    return "held_lost"
            return "held_kept"
        was_closed = step["gripper_closed"]
    return "none"


def lost_by_move(episodes: list[dict]) -> dict[str, dict]:
    """Of the steps that started holding, kept the gripper closed and did not terminate (a
    terminating step's outcome includes the present move): how many ended holding nothing, by
    the size of the step's sideways move (|(x, y)|) and of its yaw (|yaw|), normalized."""
    counts = {dim: {f"{lo}-{hi}": [0, 0] for lo, hi in MOVE_BINS} for dim in ("sideways", "yaw")}
    for episode in episodes:
        trace = episode["trace"]
        for before, step in zip(trace, trace[1:], strict=False):
            action = step["action"]
            if not (before["holding"] and before["gripper_closed"]):
                continue
            if action[GRIPPER] < 0.5 or action[TERMINATE] >= 0.5:
                continue
            sizes = {"sideways": float(np.hypot(action[0], action[1])), "yaw": abs(action[YAW])}
            for dim, size in sizes.items():
                for lo, hi in MOVE_BINS:
                    if lo <= size < hi:
                        counts[dim][f"{lo}-{hi}"][0] += 1
                        counts[dim][f"{lo}-{hi}"][1] += int(not step["holding"])
    return {
        dim: {
            key: {"steps": n, "lost": lost, "rate": round(lost / n, 4) if n else None}
            for key, (n, lost) in bins.items()
        }
        for dim, bins in counts.items()
    }


def trace(config: EvalConfig, task: str, out: Path, log=print) -> dict:
    image_size, sha256 = checkpoint_identity(config.checkpoint)
    runner = PairedSceneRunner(config, policy_config(config, image_size), sha256)
    episodes = []
    try:
        for episode in range(config.episodes_per_task):
            episodes.append(trace_episode(runner, task, episode))
            row = episodes[-1]
            log(
                f"episode {episode + 1}/{config.episodes_per_task}: success {row['success']}, "
                f"{row['steps']} steps, first close {row['first_close_kind']}"
            )
    finally:
        runner.close()
    atomic_write_bytes(out, "".join(json.dumps(e) + "\n" for e in episodes).encode())
    by_kind = {
        kind: {
            "episodes": sum(e["first_close_kind"] == kind for e in episodes),
            "successes": sum(e["first_close_kind"] == kind and e["success"] for e in episodes),
        }
        for kind in FIRST_CLOSE
    }
    return {
        "checkpoint": config.checkpoint,
        "task": task,
        "seed": config.seed,
        "episodes": len(episodes),
        "successes": sum(bool(e["success"]) for e in episodes),
        "first_close": by_kind,
        "lost_rate_by_move": lost_by_move(episodes),
        "out": str(out),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtopt_experiments.trace_episodes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="Q-network checkpoint")
    p.add_argument("--out", required=True, help="traces, one JSON line per episode")
    p.add_argument("--episodes", type=int, default=30, help="scenes (default 30)")
    p.add_argument("--seed", type=int, default=11, help="mtopt-eval scene seed (default 11)")
    p.add_argument("--task", default="lift-any", help="task (default lift-any)")
    add_policy_arguments(p)
    p.add_argument(
        "--learned-start", choices=("cell", "scripted"), default="cell",
        help="as mtopt-eval's --learned-start (default cell)",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "trace_episodes"
    if args.episodes < 1:
        print(f"{prog}: error: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        config = EvalConfig(
            checkpoint=args.checkpoint,
            tasks=(args.task,),
            episodes_per_task=args.episodes,
            seed=args.seed,
            camera_size=args.camera_size,
            policy_params=parse_policy_params(args.policy_param),
            learned_start=args.learned_start,
        )
        result = trace(
            config, args.task, Path(args.out), lambda m: print(m, file=sys.stderr, flush=True)
        )
    except CheckpointError as exc:
        print(f"{prog}: error: checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, SceneError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
