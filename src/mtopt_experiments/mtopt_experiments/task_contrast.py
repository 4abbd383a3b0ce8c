"""Does a multi-task Q-network tell sibling tasks apart where the data decided them?

    python -m mtopt_experiments.task_contrast CKPT BAG_DIR [--episodes N] [--seed S]

Siblings are the tasks of one skill that name an attribute (lift-banana ... lift-carrot;
place-bottom, place-top-left, place-top-right), not the skill's generic task (lift-any).
For episode bags whose oracle labels say a sibling task succeeded (the object lifted, the
plate section reached), the network scores the episode's last transition (the observation
before the final action, and that action) for every sibling of the skill. A network that
recognises what was achieved ranks the achieved task first; one that only recognises that the
skill was done scores every sibling alike (rank at chance). Per skill:

* `episodes`: bags with one achieved sibling (read in a seeded random order, up to N in all);
* `mean_rank` (0 = the achieved task scored highest; siblings within 0.01 of its Q count
  half) against `chance_rank` ((k - 1) / 2);
* `top1` (rank 0: above every other sibling by more than 0.01) against `chance_top1` (1 / k);
* `q_achieved`, `q_others`: mean Q of the achieved sibling and of the others.

The images are decoded as the learner decodes them, with the policy settings the checkpoint
records (camera, region of interest). Prints one JSON line; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

from mtopt_core.checkpoint import POLICY_SETTINGS_KEY, CheckpointError, qnet_from_checkpoint
from mtopt_core.episode_bag import list_episode_bags
from mtopt_core.tasks import TaskRegistry, load_task_registry

PROG = "task_contrast"
#: Q values closer than this are a tie (a saturated network scores siblings within 1e-3).
TIE_TOLERANCE = 0.01


def sibling_groups(registry: TaskRegistry, task_names) -> dict[str, list[str]]:
    """Skill -> its tasks with attributes that the network knows (skills with >= 2 only)."""
    groups: dict[str, list[str]] = {}
    for task in registry.tasks:
        if task.attributes and task.name in task_names:
            groups.setdefault(task.skill, []).append(task.name)
    return {skill: names for skill, names in groups.items() if len(names) >= 2}


def last_transition_q(net, episode, task_indices: list[int]) -> np.ndarray:
    """Q of the episode's last (observation, action) for each task index."""
    import torch

    n, t = len(task_indices), episode.num_steps - 1

    def rows(array, dtype=torch.float32):
        return torch.as_tensor(np.asarray(array[t : t + 1])).to(dtype).repeat_interleave(n, 0)

    with torch.no_grad():
        q = net(
            rows(episode.images, torch.uint8), rows(episode.actions),
            rows(episode.gripper_closed), rows(episode.height),
            torch.as_tensor(task_indices), rows(episode.object_detected),
            step=torch.full((n,), t) if net.config.step_horizon > 0 else None,
        )  # fmt: skip
    return q.numpy()


def tied_rank(q: np.ndarray, k: int, tolerance: float = TIE_TOLERANCE) -> float:
    """Rank of q[k] among q (0 = highest); others within `tolerance` count half."""
    others = np.delete(q, k)
    return float(np.sum(others > q[k] + tolerance) + 0.5 * np.sum(abs(others - q[k]) <= tolerance))


def contrast(checkpoint: str, bag_dir: Path, episodes: int, seed: int, log=None) -> dict:
    from mtopt_learner.episode_decoder import EpisodeBagError, episode_from_bag

    net, ckpt = qnet_from_checkpoint(checkpoint)
    net.eval()
    names = list(ckpt.task_names)
    registry = load_task_registry()
    groups = sibling_groups(registry, names)
    settings = ckpt.metadata.get(POLICY_SETTINGS_KEY) or {}
    bags = list_episode_bags(bag_dir)
    random.Random(seed).shuffle(bags)
    rows: dict[str, list[tuple[int, float, float]]] = {skill: [] for skill in groups}
    read = 0
    for bag in bags:
        if sum(len(r) for r in rows.values()) >= episodes:
            break
        read += 1
        try:
            decoded = episode_from_bag(
                bag, registry, "oracle",
                policy_camera=settings.get("policy_camera", "overhead"),
                policy_roi=settings.get("policy_roi", (0.0, 0.0, 1.0, 1.0)),
                image_size=net.config.image_size,
            )  # fmt: skip
        except EpisodeBagError as exc:
            if log:
                log(f"{PROG}: skipped {bag.name}: {exc}")
            continue
        if not decoded.usable:
            continue
        episode = decoded.episode
        for skill, siblings in groups.items():
            achieved = [s for s in siblings if episode.labels.get(s)]
            if len(achieved) != 1:
                continue
            q = last_transition_q(net, episode, [names.index(s) for s in siblings])
            k = siblings.index(achieved[0])
            rows[skill].append(
                (tied_rank(q, k), float(q[k]), float((q.sum() - q[k]) / (len(q) - 1)))
            )
        if log and read % 100 == 0:
            log(f"{PROG}: {read} bags read, {sum(len(r) for r in rows.values())} used")
    result: dict = {
        "checkpoint": str(checkpoint),
        "bags": str(bag_dir),
        "bags_read": read,
        "skills": {},
    }
    for skill, siblings in groups.items():
        k, got = len(siblings), rows[skill]
        ranks = np.array([r[0] for r in got], dtype=float)
        result["skills"][skill] = {
            "siblings": siblings,
            "episodes": len(got),
            "mean_rank": round(float(ranks.mean()), 3) if got else None,
            "chance_rank": (k - 1) / 2,
            "top1": round(float(np.mean(ranks == 0)), 3) if got else None,
            "chance_top1": round(1 / k, 3),
            "q_achieved": round(float(np.mean([r[1] for r in got])), 3) if got else None,
            "q_others": round(float(np.mean([r[2] for r in got])), 3) if got else None,
        }
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", help="multi-task Q-network checkpoint")
    p.add_argument("bags", type=Path, help="directory of episode bags (oracle labels)")
    p.add_argument("--episodes", type=int, default=200, help="achieved-sibling episodes to use")
    p.add_argument("--seed", type=int, default=0, help="seed of the bag order (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        print(f"{PROG}: error: --episodes must be >= 1", file=sys.stderr)
        return 2
    if not args.bags.is_dir():
        print(f"{PROG}: error: {args.bags} is not a directory", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    try:
        result = contrast(
            args.checkpoint, args.bags, args.episodes, args.seed,
            log=lambda m: print(m, file=sys.stderr),
        )  # fmt: skip
    except CheckpointError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
