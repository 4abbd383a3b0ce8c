"""A tiny image-based multi-task environment for testing the learning core end to end.

The agent moves on a G x G grid rendered as an RGB image. Each task has its own coloured goal
cell; the reward is sparse: an episode is a success for task k when the agent chose TERMINATE
while standing on task k's cell (after that step's move). Reaching the step limit is a failure
for every task.

The 6-D MT-Opt action drives it like the robot: translation x/y move one cell per step along
each axis when beyond +-1/3 (so diagonal moves exist), translation z changes the gripper height,
the gripper bit opens/closes the gripper, terminate ends the episode. The policy only sees the
image, gripper state and height: the agent's cell is drawn in the image, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtopt_core.action import GRIPPER, TERMINATE
from mtopt_core.episode import Episode

GOAL_COLOURS = np.array(
    [[230, 40, 40], [40, 200, 40], [50, 80, 240], [230, 210, 30], [200, 40, 220], [30, 210, 210]],
    dtype=np.uint8,
)
BACKGROUND = np.array([60, 60, 60], dtype=np.uint8)
AGENT = np.array([255, 255, 255], dtype=np.uint8)


@dataclass(frozen=True)
class GridWorldConfig:
    """Fields:
    grid: cells per side.
    cell_px: pixels per cell side (the image is grid * cell_px pixels square).
    goals: goal cell (row, col) of each task, in task order (at most 6 tasks).
    max_steps: step limit of an episode.
    height_step_m: height change per unit of translation z [m].
    """

    grid: int = 4
    cell_px: int = 4
    goals: tuple[tuple[int, int], ...] = ((0, 0), (0, 3), (3, 0), (3, 3))
    max_steps: int = 6
    height_step_m: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= len(self.goals) <= len(GOAL_COLOURS):
            raise ValueError(f"GridWorldConfig: 1 to {len(GOAL_COLOURS)} goals, got {self.goals}")
        if len(set(self.goals)) != len(self.goals):
            raise ValueError("GridWorldConfig: goal cells must be distinct")
        for r, c in self.goals:
            if not (0 <= r < self.grid and 0 <= c < self.grid):
                raise ValueError(f"GridWorldConfig: goal {(r, c)} outside a {self.grid} grid")

    @property
    def image_size(self) -> int:
        return self.grid * self.cell_px

    @property
    def num_tasks(self) -> int:
        return len(self.goals)


class GridWorld:
    """Batch-free, deterministic toy env (state: agent cell, gripper, height)."""

    def __init__(self, config: GridWorldConfig = GridWorldConfig()):
        self.config = config
        g, p = config.grid, config.cell_px
        self._background = np.empty((g * p, g * p, 3), dtype=np.uint8)
        self._background[:] = BACKGROUND
        for k, (r, c) in enumerate(config.goals):
            self._background[r * p : (r + 1) * p, c * p : (c + 1) * p] = GOAL_COLOURS[k]
        self.pos = (0, 0)
        self.gripper_closed = False
        self.height = 0.1
        self.steps = 0
        self.done = False

    def reset(
        self, pos: tuple[int, int], gripper_closed: bool = False, height: float = 0.1
    ) -> tuple[np.ndarray, bool, float]:
        self.pos = (int(pos[0]), int(pos[1]))
        self.gripper_closed, self.height = bool(gripper_closed), float(height)
        self.steps, self.done = 0, False
        return self.observe()

    def render(self) -> np.ndarray:
        img = self._background.copy()
        p = self.config.cell_px
        r, c = self.pos
        m = max(1, p // 4)  # agent: white square inside the cell, goal colour stays visible
        img[r * p + m : (r + 1) * p - m, c * p + m : (c + 1) * p - m] = AGENT
        return img

    def observe(self) -> tuple[np.ndarray, bool, float]:
        return self.render(), self.gripper_closed, self.height

    def step(self, action: np.ndarray) -> tuple[tuple[np.ndarray, bool, float], bool, bool]:
        """Apply a normalized action; returns (observation, done, terminated_by_policy)."""
        if self.done:
            raise RuntimeError("step() after the episode ended")
        a = np.asarray(action, dtype=np.float32)
        g = self.config.grid
        dr = int(a[0] > 1 / 3) - int(a[0] < -1 / 3)
        dc = int(a[1] > 1 / 3) - int(a[1] < -1 / 3)
        self.pos = (min(max(self.pos[0] + dr, 0), g - 1), min(max(self.pos[1] + dc, 0), g - 1))
        self.height = float(np.clip(self.height + a[2] * self.config.height_step_m, 0.0, 0.3))
        self.gripper_closed = bool(a[GRIPPER] >= 0.5)
        self.steps += 1
        terminated = bool(a[TERMINATE] >= 0.5)
        self.done = terminated or self.steps >= self.config.max_steps
        return self.observe(), self.done, terminated

    def labels(self, terminated: bool) -> list[bool]:
        """Per-task success of the final state."""
        return [terminated and self.pos == tuple(goal) for goal in self.config.goals]


def collect_episode(
    env: GridWorld,
    task: int,
    rng: np.random.Generator,
    task_names: tuple[str, ...],
    scripted_prob: float = 0.7,
    noise: float = 0.3,
) -> Episode:
    """One exploration episode for `task` from a random start: with probability
    `scripted_prob` a noisy scripted walker heads for the task's goal (random action with
    probability `noise` per step; terminates with probability 0.7 when the step lands on the
    goal, 0.3 when it lands next to it (near misses), 0.05 elsewhere), otherwise a uniformly
    random policy (terminate probability 0.2)."""
    cfg = env.config
    start = (int(rng.integers(cfg.grid)), int(rng.integers(cfg.grid)))
    obs = env.reset(start, bool(rng.random() < 0.5), float(rng.uniform(0.0, 0.3)))
    scripted = rng.random() < scripted_prob
    images, grips, heights, actions = [obs[0]], [obs[1]], [obs[2]], []
    terminated = False
    done = False
    while not done:
        a = np.zeros(6, dtype=np.float32)
        a[:4] = rng.uniform(-1, 1, size=4)
        a[GRIPPER] = float(rng.random() < 0.5)
        if scripted and rng.random() >= noise:
            goal = cfg.goals[task]
            dr, dc = np.sign(goal[0] - env.pos[0]), np.sign(goal[1] - env.pos[1])
            a[0] = dr * rng.uniform(0.5, 1.0) if dr else rng.uniform(-0.3, 0.3)
            a[1] = dc * rng.uniform(0.5, 1.0) if dc else rng.uniform(-0.3, 0.3)
            after = (env.pos[0] + dr, env.pos[1] + dc)
            gap = max(abs(goal[0] - after[0]), abs(goal[1] - after[1]))
            # Terminates on the goal, often one cell short (near misses), rarely elsewhere.
            a[TERMINATE] = float(rng.random() < {0: 0.7, 1: 0.3}.get(gap, 0.05))
        else:
            a[TERMINATE] = float(rng.random() < 0.2)
        obs, done, terminated = env.step(a)
        images.append(obs[0])
        grips.append(obs[1])
        heights.append(obs[2])
        actions.append(a)
    labels = dict(zip(task_names, env.labels(terminated), strict=True))
    return Episode(
        images=np.stack(images),
        gripper_closed=np.array(grips),
        height=np.array(heights, dtype=np.float32),
        actions=np.stack(actions),
        task=task_names[task],
        labels=labels,
    )


EVAL_GRIPPER_HEIGHTS = ((False, 0.1), (True, 0.05), (False, 0.2), (True, 0.15))


def greedy_success_rates(
    policy_act,
    config: GridWorldConfig,
    gripper_heights: tuple[tuple[bool, float], ...] = EVAL_GRIPPER_HEIGHTS,
) -> np.ndarray:
    """Run the policy for every task from every start cell except the task's goal, each with
    every (gripper closed, height) start in `gripper_heights`, all episodes batched; returns
    the success rate per task.

    policy_act(images (B,H,W,3), gripper (B,), height (B,), task (B,)) -> actions (B, 6).
    """
    runs: list[tuple[int, tuple[int, int], bool, float]] = []
    cells = [(r, c) for r in range(config.grid) for c in range(config.grid)]
    for k, goal in enumerate(config.goals):
        for start in cells:
            if tuple(start) != tuple(goal):
                runs += [(k, start, g, h) for g, h in gripper_heights]
    envs = [GridWorld(config) for _ in runs]
    for env, (_, start, grip, height) in zip(envs, runs, strict=True):
        env.reset(start, grip, height)
    success = np.zeros(len(runs), dtype=bool)
    active = list(range(len(runs)))
    while active:
        obs = [envs[i].observe() for i in active]
        actions = policy_act(
            np.stack([o[0] for o in obs]),
            np.array([o[1] for o in obs], dtype=np.float32),
            np.array([o[2] for o in obs], dtype=np.float32),
            np.array([runs[i][0] for i in active], dtype=np.int64),
        )
        still = []
        for i, a in zip(active, actions, strict=True):
            _, done, terminated = envs[i].step(a)
            if done:
                success[i] = envs[i].labels(terminated)[runs[i][0]]
            else:
                still.append(i)
        active = still
    tasks = np.array([run[0] for run in runs])
    return np.array([success[tasks == k].mean() for k in range(config.num_tasks)])
