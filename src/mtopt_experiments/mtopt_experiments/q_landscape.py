"""Does a lift Q-network aim? Its Q over sideways moves against where the graspable objects are.

    python -m mtopt_experiments.q_landscape CKPT [--episodes N] [--seed S] [--descend-steps K]
        [--camera-size PX] [--policy-param KEY=VALUE ...]

On the evaluator's lift-any scenes (`mtopt-eval`'s seeds, its learned start poses), after K
straight-down steps, the network scores a 9 x 9 grid of sideways moves (normalized x, y in
[-1, 1], the same downward move, gripper open, no terminate). The simulator's grasp planner
(privileged, never seen by the policy) gives the feasible grasp nearest to the gripper. A
network that aims gives higher Q to moves that end nearer that grasp, and its best move ends
nearer it than the gripper starts. Per scene and in the mean over scenes:

* `corr`: correlation over the grid between Q and minus the distance to the grasp after the move;
* `q_range`: max - min of Q over the grid (how much the sideways move matters to the network);
* `dist_start_m`, `dist_argmax_m`, `dist_best_m`: gripper-to-grasp distance at the start, after
  the network's best grid move, and after the grid move that ends nearest.

Prints one JSON line (the means and the per-scene rows); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from mtopt_core.action import to_base_frame
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

TASK = "lift-any"
GRID = np.linspace(-1.0, 1.0, 9)


def scene_row(runner: PairedSceneRunner, episode: int, descend_steps: int, dz: float) -> dict:
    """The landscape of one scene (see the module docstring); {} when no object is left."""
    import torch

    from mtopt_sim.grasp import GraspPlanner

    env = runner.env
    obs = runner.learned_start(TASK, episode)
    down = np.array([0.0, 0.0, dz, 0.0, 0.0, 0.0], dtype=np.float32)
    for _ in range(descend_steps):
        obs, *_ = env.step(down)
    position, yaw = env.cell.tcp_pose()
    grasp = GraspPlanner(env.cell).nearest(position[:2])
    if grasp is None:
        return {}
    dx, dy = np.meshgrid(GRID, GRID, indexing="ij")
    moves = np.stack([dx.ravel(), dy.ravel()], axis=1)
    n = len(moves)
    actions = np.zeros((n, 6), dtype=np.float32)
    actions[:, :2] = moves
    actions[:, 2] = dz
    qfn = runner.weights.current.policy.qfn
    with torch.no_grad():
        q = qfn(
            torch.as_tensor(np.repeat(obs["image"][None], n, axis=0)),
            torch.as_tensor(actions),
            torch.full((n,), float(obs["gripper_closed"])),
            torch.full((n,), float(obs["gripper_height"][0])),
            torch.full((n,), runner.registry.index(TASK), dtype=torch.long),
            torch.full((n,), float(obs["object_detected"])),
        ).numpy()
    frame, scale = env.config.action_frame, env.config.action_spec.max_translation_m
    shifts = np.array([to_base_frame([x, y, 0.0], yaw, frame)[:2] for x, y in moves * scale])
    after = position[:2][None] + shifts
    dist = np.linalg.norm(after - grasp.xy[None], axis=1)
    corr = float(np.corrcoef(q, -dist)[0, 1]) if q.std() > 0 else 0.0
    return {
        "episode": episode,
        "height_m": round(float(obs["gripper_height"][0]), 4),
        "corr": round(corr, 4),
        "q_range": round(float(q.max() - q.min()), 5),
        "dist_start_m": round(float(np.linalg.norm(grasp.xy - position[:2])), 4),
        "dist_argmax_m": round(float(dist[int(np.argmax(q))]), 4),
        "dist_best_m": round(float(dist.min()), 4),
    }


def landscape(config: EvalConfig, descend_steps: int, dz: float, log=print) -> dict:
    image_size, sha256 = checkpoint_identity(config.checkpoint)
    runner = PairedSceneRunner(config, policy_config(config, image_size), sha256)
    rows = []
    try:
        for episode in range(config.episodes_per_task):
            row = scene_row(runner, episode, descend_steps, dz)
            if row:
                rows.append(row)
            log(f"scene {episode + 1}/{config.episodes_per_task}: {row or 'no object'}")
    finally:
        runner.close()
    keys = ("corr", "q_range", "dist_start_m", "dist_argmax_m", "dist_best_m")
    means = {k: round(float(np.mean([r[k] for r in rows])), 4) if rows else None for k in keys}
    return {
        "checkpoint": config.checkpoint,
        "seed": config.seed,
        "descend_steps": descend_steps,
        "dz": dz,
        "scenes": len(rows),
        **means,
        "rows": rows,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtopt_experiments.q_landscape",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="Q-network checkpoint")
    p.add_argument("--episodes", type=int, default=30, help="scenes (default 30)")
    p.add_argument("--seed", type=int, default=7, help="mtopt-eval scene seed (default 7)")
    p.add_argument("--descend-steps", type=int, default=0, help="straight-down steps first")
    p.add_argument("--dz", type=float, default=-1.0, help="normalized z of the moves (-1)")
    add_policy_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "q_landscape"
    if not 0 <= args.descend_steps <= 10 or not -1.0 <= args.dz <= 0.0:
        print(f"{prog}: error: need 0 <= --descend-steps <= 10, -1 <= --dz <= 0", file=sys.stderr)
        return 2
    try:
        config = EvalConfig(
            checkpoint=args.checkpoint,
            tasks=(TASK,),
            episodes_per_task=args.episodes,
            seed=args.seed,
            camera_size=args.camera_size,
            policy_params=parse_policy_params(args.policy_param),
        )
        result = landscape(
            config, args.descend_steps, args.dz, lambda m: print(m, file=sys.stderr, flush=True)
        )
    except CheckpointError as exc:
        print(f"{prog}: error: checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    except (ValueError, SceneError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
