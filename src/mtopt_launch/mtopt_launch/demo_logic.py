"""Plain logic of the demo graph (no rclpy): a scripted fake episode and collector bookkeeping.

The demo cell moves no robot and learns nothing. Its actions follow a fixed script (descend,
close the gripper, lift, terminate) so every message on the wire is a valid MT-Opt action
(mtopt_core.action) and the plumbing (action round trip, topics, parameters, launch) can be
exercised end to end. Nothing here is a success estimate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from mtopt_bridge.params import ConfigError
from mtopt_core.action import ACTION_DIM, GRIPPER, TERMINATE, TRANSLATION

__all__ = ["ConfigError"]

DEMO_POLICY_KIND = "demo_script"


@dataclass(frozen=True)
class DemoCellConfig:
    """Parameters of the demo cell node (`mtopt-demo-cell`)."""

    step_period_s: float = 0.05  # wall time per fake step [s]
    default_max_steps: int = 10  # steps when a goal asks for max_steps = 0
    cell_id: int = 0  # reported in EpisodeInfo.cell_id
    tasks_file: str = ""  # task registry YAML; "" = the registry's default (config/tasks.yaml)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad parameter."""
        if not 0.0 <= self.step_period_s <= 10.0:
            raise ConfigError(f"step_period_s must be in [0, 10] s, got {self.step_period_s}")
        if not 1 <= self.default_max_steps <= 10_000:
            raise ConfigError(
                f"default_max_steps must be in [1, 10000], got {self.default_max_steps}"
            )
        if self.cell_id < 0:
            raise ConfigError(f"cell_id must be >= 0, got {self.cell_id}")


@dataclass(frozen=True)
class DemoCollectorConfig:
    """Parameters of the demo collector node (`mtopt-demo-collector`)."""

    episodes: int = 3  # episodes to run before exiting
    seed: int = 0  # seeds the task choice
    max_steps: int = 0  # asked per episode; 0 = the cell's default
    tasks_file: str = ""  # task registry YAML; "" = the registry's default (config/tasks.yaml)
    server_timeout_s: float = 15.0  # how long to wait for the cell's action server [s]
    episode_timeout_s: float = 60.0  # longest wait for one episode's result [s]

    def validate(self) -> None:
        """Raise ConfigError naming the first bad parameter."""
        if not 1 <= self.episodes <= 1_000_000:
            raise ConfigError(f"episodes must be in [1, 1000000], got {self.episodes}")
        if not 0 <= self.max_steps <= 10_000:
            raise ConfigError(f"max_steps must be in [0, 10000], got {self.max_steps}")
        if self.server_timeout_s <= 0:
            raise ConfigError(f"server_timeout_s must be > 0, got {self.server_timeout_s}")
        if self.episode_timeout_s <= 0:
            raise ConfigError(f"episode_timeout_s must be > 0, got {self.episode_timeout_s}")


def scripted_action(step: int, total_steps: int) -> np.ndarray:
    """The demo script's normalized action for `step` of `total_steps` (0-based).

    First half: move down at half speed with the gripper open. Then close the gripper and move
    up. The last step sets terminate.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside episode of {total_steps} steps")
    action = np.zeros(ACTION_DIM, dtype=np.float32)
    descending = step < total_steps // 2
    action[TRANSLATION] = (0.0, 0.0, -0.5 if descending else 0.5)
    action[GRIPPER] = 0.0 if descending else 1.0
    action[TERMINATE] = 1.0 if step == total_steps - 1 else 0.0
    return action


class TaskChooser:
    """Seeded uniform choice over the registry's task names."""

    def __init__(self, task_names: tuple[str, ...] | list[str], seed: int):
        if not task_names:
            raise ValueError("no tasks to choose from")
        self._names = list(task_names)
        self._rng = random.Random(seed)

    def next(self) -> str:
        return self._rng.choice(self._names)


@dataclass
class EpisodeTally:
    """What the collector observed for one episode."""

    episode_id: str
    task: str
    result_steps: int = 0
    terminated: bool = False
    feedback_received: int = 0
    policy_steps_received: int = 0
    episode_info_cell_id: int | None = None  # None = no EpisodeInfo seen


@dataclass
class CollectionSummary:
    """Totals over all episodes of a demo collection run."""

    episodes: list[EpisodeTally] = field(default_factory=list)

    def line(self) -> str:
        """One greppable summary line."""
        infos = [e for e in self.episodes if e.episode_info_cell_id is not None]
        cell_ids = sorted({e.episode_info_cell_id for e in infos})
        return (
            f"summary: episodes={len(self.episodes)} "
            f"steps={sum(e.result_steps for e in self.episodes)} "
            f"policy_steps_received={sum(e.policy_steps_received for e in self.episodes)} "
            f"feedback_received={sum(e.feedback_received for e in self.episodes)} "
            f"episode_infos={len(infos)} cell_ids={','.join(map(str, cell_ids)) or '-'}"
        )
