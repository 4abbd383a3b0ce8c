"""Can the Q-network aim when the labels are perfect? A supervised probe of network and camera.

    python -m mtopt_experiments.aim_probe --out DIR [--train-states N] [--test-states M]
        [--steps S] [--seed S] [--descend-steps K] [--sigma M] [--radius R] [--blank-images]
        [--net PRESET] [--net-option KEY=VALUE ...] [--camera-size PX]
        [--policy-param KEY=VALUE ...] [--workers W]

Reinforcement learning asks the network to find, from success labels alone, which sideways
move brings the gripper over something it can grasp. This probe asks the same network the
same question with the answer given: lift-any start states like the learned policy's (a
respawned scene, the uniform start draw over the right bin, random yaw, K straight-down steps)
are labelled with the simulator's top-down grasps (`mtopt_sim.grasp`, privileged; each
object's best, or only those with `--min-clearance`):
Q(s, a) is trained with a cross-entropy against exp(-d^2 / 2 sigma^2), d the distance from
where the sideways move (with a full downward move) leaves the gripper to the nearest
grasp. A grasp is often farther than one move reaches, so the label rewards moving toward it,
not only arriving. On held-out scenes, the network scores a 9 x 9 grid of moves as
`q_landscape` does; reported (means over the test states):

* `dist_start_m`, `dist_argmax_m`, `dist_best_m`: distance to the nearest grasp with the zero
  move, after the network's best grid move, and after the grid move that ends nearest;
* `aim`: (start - argmax) / (start - best), 1 for a perfect aim, 0 for straight down;
* `hit_argmax`, `hit_straight`, `hit_best`: that distance is below `radius`;
* `auc`: how well Q ranks random moves of the test states by their hit label.

If the network aims here and not in Q-learning, the labels (data, targets) are what fails; if
it cannot aim here, the network or the camera is. `--blank-images` is the control: with black
images only the state is left, so `hit_argmax` must fall to about `hit_straight`.

The states are simulated once and cached in DIR (`states_<seed>_<n>_<k>.npz`, keyed by the
camera parameters too), so several networks can be probed on the same states. Prints one JSON
line; progress on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.checkpoint import policy_settings_of
from mtopt_core.mirror import mirror_actions, mirror_images, mirror_settings_error
from mtopt_experiments.evaluate import EvalConfig, env_config, parse_policy_params, policy_config

TASK = "lift-any"
GRID = np.linspace(-1.0, 1.0, 9)
MAX_GRASPS = 16  # grasps kept per state (the sim's lift scenes hold 7-9 objects)
TEST_SEED_OFFSET = 1_000_003  # test scenes are drawn from another seed stream


@dataclass(frozen=True)
class ProbeStates:
    """Start states and their privileged grasp points."""

    images: np.ndarray  # (N, H, W, 3) uint8
    gripper_closed: np.ndarray  # (N,) float32
    height: np.ndarray  # (N,) float32 [m]
    object_detected: np.ndarray  # (N,) float32
    tcp_xy: np.ndarray  # (N, 2) base frame [m]
    yaw: np.ndarray  # (N,) gripper yaw [rad]
    grasps: np.ndarray  # (N, MAX_GRASPS, 2) each object's best grasp point, NaN-padded [m]
    clearance: np.ndarray  # (N, MAX_GRASPS) those grasps' clearance [m] (>= 0: feasible)

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **self.__dict__)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> ProbeStates:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    @classmethod
    def concat(cls, parts: list[ProbeStates]) -> ProbeStates:
        return cls(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__}
        )


# ------------------------------------------------------------------------------- states
def _collect_chunk(args: tuple) -> ProbeStates:
    """States of scenes `first .. first + count - 1` of `seed` (one simulator)."""
    policy, camera_size, seed, first, count, descend_steps, states_per_scene = args
    from mtopt_policy.scripted import BinGeometry, ScriptedPick, pick_config
    from mtopt_sim.env import MTOptCell  # loads MuJoCo: only here, in a spawned worker
    from mtopt_sim.grasp import GraspPlanner

    env = MTOptCell(env_config(policy, camera_size))
    bins = BinGeometry.from_policy_config(policy)
    down = np.array([0.0, 0.0, -1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    rows: dict[str, list] = {k: [] for k in ProbeStates.__dataclass_fields__}
    try:
        for scene in range(first, first + count):
            rng = np.random.default_rng(np.random.SeedSequence([seed, scene]))
            env.cell.data.time = 0.0
            env.respawn(int(rng.integers(2**31)))
            # The learned policy's start draw (`EpisodePlanner.start_samplers`).
            start_config = dataclasses.replace(
                pick_config(noisy=False),
                margin=policy.start_margin,
                start_height=policy.start_height,
            )
            starter = ScriptedPick(start_config, rng=rng)
            for _ in range(states_per_scene):
                options = starter.start_options(bins)
                obs, _ = env.reset(options={**options, "task": TASK})
                for _ in range(descend_steps):
                    obs, *_ = env.step(down)
                position, yaw = env.cell.tcp_pose()
                found = GraspPlanner(env.cell).candidates()[:MAX_GRASPS]
                grasps = np.full((MAX_GRASPS, 2), np.nan, dtype=np.float32)
                clearance = np.full(MAX_GRASPS, np.nan, dtype=np.float32)
                for j, candidate in enumerate(found):
                    grasps[j], clearance[j] = candidate.xy, candidate.clearance
                rows["images"].append(obs["image"])
                rows["gripper_closed"].append(float(obs["gripper_closed"]))
                rows["height"].append(float(obs["gripper_height"][0]))
                rows["object_detected"].append(float(obs["object_detected"]))
                rows["tcp_xy"].append(np.asarray(position[:2], np.float32))
                rows["yaw"].append(float(yaw))
                rows["grasps"].append(grasps)
                rows["clearance"].append(clearance)
    finally:
        env.close()
    return ProbeStates(
        images=np.stack(rows["images"]).astype(np.uint8),
        **{
            k: np.asarray(rows[k], np.float32)
            for k in (
                "gripper_closed",
                "height",
                "object_detected",
                "tcp_xy",
                "yaw",
                "grasps",
                "clearance",
            )  # fmt: skip
        },
    )


def collect_states(
    policy, camera_size: int, seed: int, n: int, descend_steps: int, workers: int, log=print
) -> ProbeStates:
    """`n` states (4 start poses per scene), simulated in `workers` spawned processes."""
    per_scene = 4
    scenes = math.ceil(n / per_scene)
    chunk = max(1, math.ceil(scenes / (4 * workers)))
    jobs = [
        (policy, camera_size, seed, first, min(chunk, scenes - first), descend_steps, per_scene)
        for first in range(0, scenes, chunk)
    ]
    parts = []
    start = time.monotonic()
    if workers == 1:
        results = map(_collect_chunk, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_collect_chunk, jobs)
    try:
        for part in results:
            parts.append(part)
            done = sum(len(p) for p in parts)
            log(f"states {done}/{scenes * per_scene} ({time.monotonic() - start:.0f} s)")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    states = ProbeStates.concat(parts)
    return ProbeStates(**{k: getattr(states, k)[:n] for k in ProbeStates.__dataclass_fields__})


# ------------------------------------------------------------------------------- labels
def turned(moves: np.ndarray, yaw: np.ndarray, frame: str, sign: float = 1.0) -> np.ndarray:
    """Sideways moves (N, K, 2) given in `frame` turned into the base frame by each state's
    yaw (N,) (`to_base_frame`); sign -1 turns base-frame moves into `frame` instead."""
    from mtopt_core.action import to_base_frame

    out = np.empty(moves.shape, np.float32)
    for i in range(moves.shape[0]):
        for k in range(moves.shape[1]):
            out[i, k] = to_base_frame([*moves[i, k], 0.0], sign * float(yaw[i]), frame)[:2]
    return out


def move_endpoints(tcp_xy, yaw, moves: np.ndarray, frame: str, scale: float) -> np.ndarray:
    """Gripper (x, y) after each normalized sideways move: tcp_xy (N, 2), yaw (N,), moves
    (N, K, 2) in `frame`, `scale` [m] per unit move."""
    return tcp_xy[:, None, :] + scale * turned(moves, yaw, frame)


def grasp_distance(grasps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance [m] from each point (N, K, 2) to the nearest grasp of its state (N, G, 2);
    inf when a state has none."""
    d = np.linalg.norm(points[:, :, None, :] - grasps[:, None, :, :], axis=-1)
    d = np.where(np.isnan(d), np.inf, d)
    return d.min(axis=2)


def train_moves(states: ProbeStates, idx: np.ndarray, k: int, rng: np.random.Generator, scale):
    """K moves per state: half uniform over the action square, half aimed near a grasp (so
    both labels occur often)."""
    moves = rng.uniform(-1.0, 1.0, (len(idx), k, 2)).astype(np.float32)
    for row, i in enumerate(idx):
        grasps = states.grasps[i][~np.isnan(states.grasps[i, :, 0])]
        if len(grasps) == 0:
            continue
        for j in range(k // 2):
            target = grasps[rng.integers(len(grasps))]
            offset = (target - states.tcp_xy[i]) / scale + rng.normal(0.0, 0.4, 2)
            moves[row, j] = offset  # base-frame offset; rotated below for a tool frame
    return np.clip(moves, -1.0, 1.0)


# ------------------------------------------------------------------------------- probe
def probe(
    train: ProbeStates,
    test: ProbeStates,
    qnet_config,
    *,
    frame: str,
    scale: float,
    sigma: float,
    radius: float,
    steps: int,
    batch_states: int = 32,
    moves_per_state: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    blank_images: bool = False,
    mirror: bool = False,
    log=print,
) -> dict[str, Any]:
    """Train Q on the grasp labels of `train`; score its aim on `test`. `mirror`: each
    training state is seen reflected with probability 1/2 (`mtopt_core.mirror`)."""
    import torch
    import torch.nn.functional as F

    from mtopt_core.qnet import QNet, expand_features

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    flip_rng = np.random.default_rng([seed, 1])  # the same states and moves with or without
    net = QNet(qnet_config)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    task = 0  # lift-any's index does not matter: one task here

    def logits(states, idx, moves, flip=None):
        n, k = moves.shape[:2]
        images = states.images[idx]
        if blank_images:
            images = np.zeros_like(images)
        actions = np.zeros((n * k, 6), np.float32)
        actions[:, :2] = moves.reshape(-1, 2)
        actions[:, 2] = -1.0
        if flip is not None:  # the labels stay those of the unreflected moves
            images = mirror_images(images, flip)
            actions = mirror_actions(actions, np.repeat(flip, k))
        feats = net.trunk(torch.as_tensor(images))
        rep = lambda v: torch.as_tensor(np.repeat(v[idx], k))  # noqa: E731
        return net.head_logits(
            expand_features(feats, k),
            torch.as_tensor(actions),
            rep(states.gripper_closed),
            rep(states.height),
            torch.full((n * k,), task, dtype=torch.long),
            rep(states.object_detected),
        ).reshape(n, k)

    usable = np.flatnonzero(~np.isnan(train.grasps[:, 0, 0]))
    start = time.monotonic()
    net.train()
    for step in range(1, steps + 1):
        idx = rng.choice(usable, batch_states)
        # `train_moves` aims in the base frame; the net acts in its action frame.
        aimed = train_moves(train, idx, moves_per_state, rng, scale)
        moves = np.clip(turned(aimed, train.yaw[idx], frame, sign=-1.0), -1.0, 1.0)
        ends = move_endpoints(train.tcp_xy[idx], train.yaw[idx], moves, frame, scale)
        d = grasp_distance(train.grasps[idx], ends)
        labels = np.exp(-0.5 * (d / sigma) ** 2)
        flip = flip_rng.random(batch_states) < 0.5 if mirror else None
        loss = F.binary_cross_entropy_with_logits(
            logits(train, idx, moves, flip), torch.as_tensor(labels, dtype=torch.float32)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == steps:
            log(f"step {step}/{steps} loss {loss.item():.4f} ({time.monotonic() - start:.0f} s)")
    net.eval()
    seen = _subset(train, usable[:500])
    fit = score(seen, logits, frame, scale, radius, rng)
    return {
        **score(test, logits, frame, scale, radius, rng),
        "train_aim": fit["aim"],
        "train_auc": fit["auc"],
    }


def with_min_clearance(states: ProbeStates, min_clearance: float) -> ProbeStates:
    """The states with the grasps below `min_clearance` [m] removed (NaN)."""
    keep = states.clearance >= min_clearance  # NaN (padding) compares False
    grasps = np.where(keep[..., None], states.grasps, np.nan).astype(np.float32)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept grasps first
    return dataclasses.replace(
        states,
        grasps=np.take_along_axis(grasps, order[..., None], axis=1),
        clearance=np.take_along_axis(
            np.where(keep, states.clearance, np.nan), order, axis=1
        ).astype(np.float32),
    )


def _subset(states: ProbeStates, idx: np.ndarray) -> ProbeStates:
    return ProbeStates(**{k: getattr(states, k)[idx] for k in ProbeStates.__dataclass_fields__})


def score(test: ProbeStates, logits, frame: str, scale: float, radius: float, rng) -> dict:
    """The aim measures of the module docstring on `test`."""
    import torch

    idx = np.flatnonzero(~np.isnan(test.grasps[:, 0, 0]))
    dx, dy = np.meshgrid(GRID, GRID, indexing="ij")
    grid = np.stack([dx.ravel(), dy.ravel()], axis=1).astype(np.float32)
    center = int(np.argmin(np.abs(grid).sum(axis=1)))
    hits = {"argmax": [], "straight": [], "best": []}
    dist = {"start": [], "argmax": [], "best": []}
    q_all, y_all = [], []
    sub = _subset(test, idx)
    with torch.no_grad():
        for lo in range(0, len(idx), 32):
            part = np.arange(lo, min(lo + 32, len(idx)))
            # The grid and 8 random moves per state in one pass (one trunk per image).
            random_moves = rng.uniform(-1, 1, (len(part), 8, 2)).astype(np.float32)
            moves = np.concatenate([np.repeat(grid[None], len(part), axis=0), random_moves], 1)
            q_moves = logits(sub, part, moves).numpy()
            ends = move_endpoints(sub.tcp_xy[part], sub.yaw[part], moves, frame, scale)
            d_moves = grasp_distance(sub.grasps[part], ends)
            q, d = q_moves[:, : len(grid)], d_moves[:, : len(grid)]
            best = q.argmax(axis=1)
            rows = np.arange(len(part))
            hits["argmax"] += list(d[rows, best] < radius)
            hits["straight"] += list(d[:, center] < radius)
            hits["best"] += list(d.min(axis=1) < radius)
            dist["start"] += list(d[:, center])
            dist["argmax"] += list(d[rows, best])
            dist["best"] += list(d.min(axis=1))
            q_all.append(q_moves[:, len(grid) :].ravel())
            y_all.append((d_moves[:, len(grid) :] < radius).ravel())
    return {
        "test_states": int(len(idx)),
        **{f"hit_{k}": round(float(np.mean(v)), 4) for k, v in hits.items()},
        **{f"dist_{k}_m": round(float(np.mean(v)), 4) for k, v in dist.items()},
        "aim": round(
            float(np.mean(np.subtract(dist["start"], dist["argmax"])))
            / max(1e-9, float(np.mean(np.subtract(dist["start"], dist["best"])))),
            3,
        ),
        "auc": round(auc(np.concatenate(q_all), np.concatenate(y_all)), 4),
    }


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties half)."""
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    _, inverse, counts = np.unique(
        np.concatenate([pos, neg]), return_inverse=True, return_counts=True
    )
    # Ranks from 1; tied scores share the mean rank of their run.
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


# ------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtopt_experiments.aim_probe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="directory for the cached states")
    p.add_argument("--train-states", type=int, default=3000, help="training states (3000)")
    p.add_argument("--test-states", type=int, default=500, help="held-out states (500)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (3000)")
    p.add_argument("--seed", type=int, default=0, help="scene and training seed (0)")
    p.add_argument("--descend-steps", type=int, default=0, help="straight-down steps first")
    p.add_argument("--sigma", type=float, default=0.03, help="label width [m] (0.03)")
    p.add_argument("--radius", type=float, default=0.015, help="hit radius [m] (0.015)")
    p.add_argument(
        "--min-clearance", type=float, default=-1.0,
        help="grasps with less clearance [m] are not targets (-1: every object's best grasp)",
    )  # fmt: skip
    p.add_argument("--blank-images", action="store_true", help="control: black images")
    p.add_argument(
        "--mirror", action="store_true",
        help="reflect half the training states (mtopt_core.mirror; wrist camera, tool frame)",
    )  # fmt: skip
    p.add_argument("--net", default="compact", help="network preset (compact)")
    p.add_argument(
        "--net-option", action="append", default=[], metavar="KEY=VALUE",
        help="QNetConfig override, e.g. state_skip=false",
    )  # fmt: skip
    p.add_argument("--camera-size", type=int, default=64, help="camera frame side [px] (64)")
    p.add_argument(
        "--policy-param", action="append", default=[], metavar="KEY=VALUE",
        help="policy node parameter, e.g. policy_camera=wrist",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="simulator processes (2)")
    return p


def cached_states(args, policy, seed: int, n: int, log) -> ProbeStates:
    """The states of (seed, n, camera setup), simulated once per DIR."""
    key = json.dumps([args.camera_size, sorted(args.policy_param)]).encode()
    tag = hashlib.sha256(key).hexdigest()[:8]
    path = Path(args.out) / f"states_{seed}_{n}_{args.descend_steps}_{tag}.npz"
    if path.exists():
        return ProbeStates.load(path)
    states = collect_states(
        policy, args.camera_size, seed, n, args.descend_steps, args.workers, log
    )
    states.save(path)
    return states


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "aim_probe"
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    from mtopt_learner.errors import LearnError
    from mtopt_learner.nets import preset_config

    try:
        if args.train_states < 1 or args.test_states < 1 or args.steps < 1:
            raise ValueError("--train-states, --test-states and --steps must be >= 1")
        if not 0 <= args.descend_steps <= 3:
            raise ValueError("need 0 <= --descend-steps <= 3")
        if not 0 < args.radius < 0.1 or not 0 < args.sigma < 0.1:
            raise ValueError("need 0 < --radius < 0.1 and 0 < --sigma < 0.1 [m]")
        if args.workers < 1:
            raise ValueError("--workers must be >= 1")
        policy = policy_config(
            EvalConfig(checkpoint="", policy_params=parse_policy_params(args.policy_param)),
            image_size=64,
        )
        net = preset_config(args.net, 1, policy.image_size, options=args.net_option)
        if args.mirror:
            why = mirror_settings_error(policy_settings_of(policy))
            if why:
                raise ValueError(why)
    except (ValueError, LearnError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    seeds = ((args.seed, args.train_states), (args.seed + TEST_SEED_OFFSET, args.test_states))
    train, test = (
        with_min_clearance(cached_states(args, policy, seed, n, log), args.min_clearance)
        for seed, n in seeds
    )
    result = probe(
        train, test, net, frame=policy.action_frame, scale=policy.max_translation_m,
        sigma=args.sigma, radius=args.radius, steps=args.steps, seed=args.seed,
        blank_images=args.blank_images, mirror=args.mirror, log=log,
    )  # fmt: skip
    print(json.dumps({
        "train_states": len(train), "steps": args.steps, "sigma": args.sigma,
        "radius": args.radius, "min_clearance": args.min_clearance,
        "descend_steps": args.descend_steps, "blank_images": args.blank_images,
        "mirror": args.mirror,
        "net": args.net, "net_options": args.net_option, "policy_params": args.policy_param,
        **result, "wall_s": round(time.monotonic() - started, 1),
    }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
