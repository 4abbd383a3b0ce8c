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
records (camera, region of interest). With `--control-steps S`, a fresh network of the
checkpoint's architecture is trained supervised (achieved or not) on the last transitions of
four bags in five for S steps, and both networks are scored on the fifth (`control`): whether
the architecture can tell the siblings apart from these transitions at all, which the RL
training then did or did not learn. Prints one JSON line; progress on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import dataclass
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


@dataclass
class Sample:
    """The last transition of one bag with exactly one achieved sibling of `skill`."""

    bag: str
    skill: str
    image: np.ndarray
    action: np.ndarray
    gripper_closed: bool
    height: float
    object_detected: bool
    step: int
    siblings: list[int]  # task indices of the skill's siblings
    achieved: int  # position of the achieved task in `siblings`

    @property
    def held_out(self) -> bool:
        """One bag in five, by a hash of its name: the supervised control's test split."""
        return int(hashlib.sha256(self.bag.encode()).hexdigest(), 16) % 5 == 0


def sample_tensors(samples: list[Sample]):
    """One row per (sample, sibling): the QNet inputs and the label (achieved or not)."""
    import torch

    def rows(values, dtype=torch.float32):
        return torch.as_tensor(np.asarray(values)).to(dtype)

    expanded = [(s, j) for s in samples for j in range(len(s.siblings))]
    inputs = (
        rows([s.image for s, _ in expanded], torch.uint8),
        rows([s.action for s, _ in expanded]),
        rows([s.gripper_closed for s, _ in expanded]),
        rows([s.height for s, _ in expanded]),
        rows([s.siblings[j] for s, j in expanded], torch.long),
        rows([s.object_detected for s, _ in expanded]),
        rows([s.step for s, _ in expanded], torch.long),
    )
    return inputs, rows([float(j == s.achieved) for s, j in expanded])


def score(net, samples: list[Sample]) -> list[np.ndarray]:
    """Q of every sibling of each sample's last transition."""
    import torch

    if not samples:
        return []
    inputs, _ = sample_tensors(samples)
    step = inputs[6] if net.config.step_horizon > 0 else None
    with torch.no_grad():
        q = net.eval()(*inputs[:6], step=step).numpy()
    out, at = [], 0
    for s in samples:
        out.append(q[at : at + len(s.siblings)])
        at += len(s.siblings)
    return out


def tied_rank(q: np.ndarray, k: int, tolerance: float = TIE_TOLERANCE) -> float:
    """Rank of q[k] among q (0 = highest); others within `tolerance` count half."""
    others = np.delete(q, k)
    return float(np.sum(others > q[k] + tolerance) + 0.5 * np.sum(abs(others - q[k]) <= tolerance))


def summarize(groups: dict[str, list[str]], samples: list[Sample], qs: list[np.ndarray]) -> dict:
    """Per skill: episodes, mean rank and top-1 against chance, mean Q achieved / others."""
    out = {}
    for skill, siblings in groups.items():
        k = len(siblings)
        got = [(s, q) for s, q in zip(samples, qs, strict=True) if s.skill == skill]
        ranks = np.array([tied_rank(q, s.achieved) for s, q in got], dtype=float)
        achieved = [float(q[s.achieved]) for s, q in got]
        others = [float((q.sum() - q[s.achieved]) / (k - 1)) for s, q in got]
        out[skill] = {
            "siblings": siblings,
            "episodes": len(got),
            "mean_rank": round(float(ranks.mean()), 3) if got else None,
            "chance_rank": (k - 1) / 2,
            "top1": round(float(np.mean(ranks == 0)), 3) if got else None,
            "chance_top1": round(1 / k, 3),
            "q_achieved": round(float(np.mean(achieved)), 3) if got else None,
            "q_others": round(float(np.mean(others)), 3) if got else None,
        }
    return out


def read_samples(bag_dir: Path, registry, names, groups, settings, image_size, episodes, seed,
                 log=None) -> tuple[list[Sample], int]:  # fmt: skip
    """Up to `episodes` samples from the bags in a seeded random order; (samples, bags read)."""
    from mtopt_learner.episode_decoder import EpisodeBagError, episode_from_bag

    # The camera and region the network was trained for; the decoder's defaults otherwise.
    recorded = {k: settings[k] for k in ("policy_camera", "policy_roi") if k in settings}
    bags = list_episode_bags(bag_dir)
    random.Random(seed).shuffle(bags)
    samples: list[Sample] = []
    read = 0
    for bag in bags:
        if len(samples) >= episodes:
            break
        read += 1
        try:
            decoded = episode_from_bag(bag, registry, "oracle", image_size=image_size, **recorded)
        except EpisodeBagError as exc:
            if log:
                log(f"{PROG}: skipped {bag.name}: {exc}")
            continue
        if not decoded.usable:
            continue
        ep, t = decoded.episode, decoded.episode.num_steps - 1
        for skill, siblings in groups.items():
            achieved = [s for s in siblings if ep.labels.get(s)]
            if len(achieved) == 1:
                samples.append(Sample(
                    bag.name, skill, ep.images[t], ep.actions[t], bool(ep.gripper_closed[t]),
                    float(ep.height[t]), bool(ep.object_detected[t]), t,
                    [names.index(s) for s in siblings], siblings.index(achieved[0]),
                ))  # fmt: skip
        if log and read % 200 == 0:
            log(f"{PROG}: {read} bags read, {len(samples)} samples")
    return samples, read


def fit_control(qnet_config, samples: list[Sample], steps: int, log=None):
    """A fresh network of the checkpoint's architecture, trained supervised (cross-entropy
    on achieved / not, batch 64, Adam 1e-3, seed 0) on the samples' last transitions."""
    import torch
    import torch.nn.functional as F

    from mtopt_core.qnet import QNet

    torch.manual_seed(0)
    net = QNet(qnet_config).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    inputs, labels = sample_tensors(samples)
    rng = np.random.default_rng(0)
    for i in range(steps):
        idx = torch.as_tensor(rng.integers(len(labels), size=64))
        step = inputs[6][idx] if qnet_config.step_horizon > 0 else None
        logits = net.logits(*(x[idx] for x in inputs[:6]), step=step)
        loss = F.binary_cross_entropy_with_logits(logits, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log and (i + 1) % 500 == 0:
            log(f"{PROG}: control step {i + 1}/{steps}, loss {float(loss):.3f}")
    return net.eval()


def contrast(
    checkpoint: str, bag_dir: Path, episodes: int, seed: int, control_steps: int = 0, log=None
) -> dict:
    net, ckpt = qnet_from_checkpoint(checkpoint)
    names = list(ckpt.task_names)
    registry = load_task_registry()
    groups = sibling_groups(registry, names)
    settings = ckpt.metadata.get(POLICY_SETTINGS_KEY) or {}
    samples, read = read_samples(
        bag_dir, registry, names, groups, settings, net.config.image_size, episodes, seed, log
    )
    result: dict = {
        "checkpoint": str(checkpoint),
        "bags": str(bag_dir),
        "bags_read": read,
        "skills": summarize(groups, samples, score(net, samples)),
    }
    if control_steps > 0:
        train = [s for s in samples if not s.held_out]
        test = [s for s in samples if s.held_out]
        control = fit_control(ckpt.qnet_config, train, control_steps, log) if train else None
        result["control"] = {
            "steps": control_steps,
            "train_episodes": len(train),
            "test_episodes": len(test),
            "checkpoint_on_test": summarize(groups, test, score(net, test)),
            "control_on_test": summarize(groups, test, score(control, test) if control else []),
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
    p.add_argument(
        "--control-steps", type=int, default=0,
        help="also train a fresh network of the same architecture supervised for this many "
        "steps on 4/5 of the samples and compare both on the other fifth (default 0: no)",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1 or args.control_steps < 0:
        print(f"{PROG}: error: --episodes must be >= 1, --control-steps >= 0", file=sys.stderr)
        return 2
    if not args.bags.is_dir():
        print(f"{PROG}: error: {args.bags} is not a directory", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    try:
        result = contrast(
            args.checkpoint, args.bags, args.episodes, args.seed, args.control_steps,
            log=lambda m: print(m, file=sys.stderr),
        )  # fmt: skip
    except CheckpointError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
