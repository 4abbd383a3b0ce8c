"""The scripted pick/place with the simulator's privileged aims, and the pick -> place
collection sequence.

The policies themselves (phases, noise, the uniform start draw over a bin) are
`mtopt_policy.scripted`, what a real cell runs. Here they also read the simulated cell:

* `ScriptedPick` with `aim="object"` starts above a random object in the right bin that the
  open fingers can straddle without landing on a neighbour or a wall (`mtopt_sim.grasp`);
* `ScriptedPlace` with `aim="plate"` starts above a random point over the plate;
* `aim="uniform"` draws the start uniformly over the bin, as the seed's policy did.

`start_options(env)` takes the gymnasium env (`MTOptCell`); its result goes to
`env.reset(options=...)`. `pick_config` / `place_config` are the policy's with the privileged
aims.

`PickPlaceCollector` runs the seed's collection order: a pick episode, then (if something is
held) a place episode, then a bin reset (hinge dump) when requested or on schedule. Episodes
follow the env's episode protocol (`mtopt_policy.protocol`): a pick opens the gripper first, a
place starts holding what the pick lifted, and both are graded at the present pose.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtopt_policy import scripted as policy_scripted
from mtopt_policy.scripted import BinGeometry, ScriptedConfig
from mtopt_sim.cell import SimCell
from mtopt_sim.env import MTOptCell
from mtopt_sim.grasp import GraspPlanner


def pick_config(noisy: bool = True) -> ScriptedConfig:
    """The scripted pick aimed at objects: with the default noise, or noise-free."""
    return dataclasses.replace(policy_scripted.pick_config(noisy), aim="object")


def place_config(noisy: bool = True) -> ScriptedConfig:
    """The scripted place aimed at the plate: with the default noise, or noise-free."""
    return dataclasses.replace(policy_scripted.place_config(noisy), aim="plate")


def bin_geometry(cell: SimCell) -> BinGeometry:
    """The simulated cell's bins, as the policy's uniform start draw reads them."""
    scene = cell.scene_config
    return BinGeometry(
        right_center=tuple(scene.bin_center("right")),
        right_half=tuple(scene.bin_half("right")),
        left_center=tuple(scene.bin_center("left")),
        left_half=tuple(scene.bin_half("left")),
        floor_z=cell.floor_z,
    )


class ScriptedPick(policy_scripted.ScriptedPick):
    """The scripted pick; aim "object" (default) or "uniform"."""

    _planner: GraspPlanner | None = None

    @staticmethod
    def default_config() -> ScriptedConfig:
        return pick_config(noisy=True)

    def start_options(self, env: MTOptCell) -> dict[str, Any]:  # type: ignore[override]
        """Reset options (start point and yaw) for the next pick episode."""
        cell = env.cell
        cfg = self.config
        if cfg.aim == "uniform":
            return super().start_options(bin_geometry(cell))
        if cfg.aim != "object":
            raise ValueError(f"pick aim must be 'object' or 'uniform', got {cfg.aim!r}")
        yaw = float(self.rng.uniform(-math.pi / 2, math.pi / 2))
        if self._planner is None or self._planner.cell is not cell:
            self._planner = GraspPlanner(cell)
        grasp = self._planner.choose(self.rng)
        if grasp is not None:
            xy, yaw = grasp.xy, grasp.yaw
        else:
            xy = cell.scene_config.bin_center("right")
        return self._begin(xy, cell.floor_z, yaw)


class ScriptedPlace(policy_scripted.ScriptedPlace):
    """The scripted place; aim "plate" (default) or "uniform"."""

    @staticmethod
    def default_config() -> ScriptedConfig:
        return place_config(noisy=True)

    def start_options(self, env: MTOptCell) -> dict[str, Any]:  # type: ignore[override]
        """Reset options (start point; any yaw) for the next place episode."""
        cell = env.cell
        cfg = self.config
        if cfg.aim == "uniform":
            return super().start_options(bin_geometry(cell))
        if cfg.aim != "plate":
            raise ValueError(f"place aim must be 'plate' or 'uniform', got {cfg.aim!r}")
        origin, _ = cell.plate_frame()
        radius = 0.6 * cell.scene_config.plate_radius * math.sqrt(self.rng.random())
        angle = self.rng.uniform(0, 2 * math.pi)
        xy = origin[:2] + radius * np.array([math.cos(angle), math.sin(angle)])
        return self._begin(xy, cell.floor_z)


@dataclass
class EpisodeRecord:
    """Outcome of one scripted episode."""

    kind: str
    task: str
    steps: int
    terminated: bool
    oracle: dict[str, bool]
    held_after: bool  # the gripper reports an object (what a real cell knows)
    ending: str = ""  # "terminated" or "truncated" (`info["ending"]`)


def run_episode(env: MTOptCell, policy: ScriptedPick | ScriptedPlace, task: str) -> EpisodeRecord:
    """One episode of a scripted policy through env.reset / env.step."""
    options = policy.start_options(env)
    obs, _ = env.reset(options={**options, "task": task})
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        steps += 1
        if terminated or truncated:
            break
    return EpisodeRecord(
        kind=policy.kind,
        task=task,
        steps=steps,
        terminated=terminated,
        oracle=info["oracle"],
        held_after=env.cell.gripper_status().object_detected,
        ending=info["ending"],
    )


def privileged_grasp(env: MTOptCell, rng: np.random.Generator, task: str) -> bool:
    """Grasp an object of the current scene with the noise-free pick aimed at objects, as an
    episode of `task` (a lift task) through the env; True when the oracle says `task`
    succeeded and the gripper holds something. How simulated place scenes start."""
    picker = ScriptedPick(pick_config(noisy=False), env.config.action_spec, rng)
    record = run_episode(env, picker, task)
    return bool(record.oracle[task]) and bool(env.cell.held_objects())


@dataclass
class CollectorConfig:
    """The pick -> place -> reset schedule."""

    pick_task: str = "lift-any"
    place_task: str = "place-any"
    #: Dump the left bin after this many place episodes (0 = only when requested).
    reset_every_places: int = 1
    #: Respawn the scene when fewer objects than this are left in the right bin.
    respawn_below: int = 3


@dataclass
class CollectorStats:
    picks: int = 0
    pick_successes: int = 0
    places: int = 0
    place_successes: int = 0
    resets: int = 0
    respawns: int = 0
    records: list[EpisodeRecord] = field(default_factory=list)


class PickPlaceCollector:
    """Runs pick -> place cycles with bin resets, like the seed's data collection."""

    def __init__(
        self,
        env: MTOptCell,
        pick: ScriptedPick,
        place: ScriptedPlace,
        config: CollectorConfig | None = None,
    ):
        self.env = env
        self.pick = pick
        self.place = place
        self.config = config or CollectorConfig()
        self.stats = CollectorStats()
        self._reset_requested = False
        self._places_since_reset = 0

    def request_reset(self) -> None:
        """Dump the left bin before the next cycle."""
        self._reset_requested = True

    def run_cycle(self) -> list[EpisodeRecord]:
        """One pick episode, a place episode if something is held, and a reset if due."""
        env, cfg, stats = self.env, self.config, self.stats
        if self._reset_requested:
            self._reset()
        if env.cell.count_objects()["right_bin"] < cfg.respawn_below:
            env.respawn()
            stats.respawns += 1
        records = [run_episode(env, self.pick, cfg.pick_task)]
        stats.picks += 1
        stats.pick_successes += records[0].oracle[cfg.pick_task]
        if records[0].held_after:
            records.append(run_episode(env, self.place, cfg.place_task))
            stats.places += 1
            stats.place_successes += records[1].oracle[cfg.place_task]
            self._places_since_reset += 1
        if cfg.reset_every_places and self._places_since_reset >= cfg.reset_every_places:
            self._reset()
        stats.records.extend(records)
        return records

    def _reset(self) -> None:
        self.env.reset_bins()
        self.stats.resets += 1
        self._places_since_reset = 0
        self._reset_requested = False
