"""The seed's crude scripted policies (Appendix B) and the pick -> place collection sequence.

* `ScriptedPick`: start at a random point above the right bin, descend to the bottom of the
  bin, close the gripper, lift (and terminate).
* `ScriptedPlace`: start at a random point above the left bin (the plate), descend, open the
  gripper to release the held object, retract (and terminate).

Both emit the normalized 6-D MT-Opt action (`mtopt_core.action`) through `env.step`, exactly as
a learned policy, with configurable Gaussian action noise. Their start point is chosen before
the episode (the real cell's pre-episode move; `MTOptCell.reset(options={"start": ...})`).
`aim="object"` / `aim="plate"` pick the start point from privileged simulator knowledge (a random
object in the right bin that the open fingers can straddle without landing on a neighbour or a
wall, `mtopt_sim.grasp`; a random point over the plate);
`aim="uniform"` draws it uniformly over the bin, as the seed's policy did.

`PickPlaceCollector` runs the seed's collection order: a pick episode, then (if something is
held) a place episode, then a bin reset (hinge dump) when requested or on schedule.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtopt_core.action import ActionSpec
from mtopt_sim.env import MTOptCell
from mtopt_sim.grasp import GraspPlanner


@dataclass(frozen=True)
class ScriptedConfig:
    """Behaviour and noise of a scripted policy."""

    #: Start point choice: pick "object" | "uniform"; place "plate" | "uniform".
    aim: str = "object"
    #: Std of the Gaussian noise added to every normalized translation and yaw component.
    action_noise: float = 0.0
    #: Std of the noise added to the start point's x and y [m].
    start_noise: float = 0.0
    #: Probability per step of flipping the gripper bit (pick: an early/late close).
    gripper_flip_prob: float = 0.0
    start_height: float = 0.20  # start TCP height above the bin floor [m]
    #: Pick: TCP height above the floor to close at; place: height to open at [m].
    target_height: float = 0.03
    lift_steps: int = 3  # pick: steps up after closing; place: steps up after opening
    max_descend_steps: int = 6
    #: A descent step that moves less than this [m] counts as blocked (stop descending).
    blocked_distance: float = 0.004
    margin: float = 0.04  # keep uniform start points this far inside the bin walls [m]


def pick_config(noisy: bool = True) -> ScriptedConfig:
    """The scripted pick's configuration: with the default noise, or noise-free."""
    if noisy:
        return ScriptedConfig(aim="object", action_noise=0.5, start_noise=0.04)
    return ScriptedConfig(aim="object")


def place_config(noisy: bool = True) -> ScriptedConfig:
    """The scripted place's configuration: with the default noise, or noise-free."""
    base = ScriptedConfig(aim="plate", target_height=0.09, lift_steps=2)
    if noisy:
        return dataclasses.replace(base, action_noise=0.5, start_noise=0.04)
    return base


class _Scripted:
    kind = "scripted"

    @staticmethod
    def default_config() -> ScriptedConfig:  # pragma: no cover - overridden
        raise NotImplementedError

    def __init__(
        self,
        config: ScriptedConfig | None = None,
        action_spec: ActionSpec | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.config = config or self.default_config()
        self.spec = action_spec or ActionSpec()
        self.rng = rng if rng is not None else np.random.default_rng()
        self._phase = "done"

    def _action(self, dz: float, close: bool, terminate: bool = False, dxy=(0.0, 0.0)):
        cfg = self.config
        a = self.spec.from_physical([dxy[0], dxy[1], dz], 0.0, close, terminate)
        if cfg.action_noise > 0:
            a[:4] += self.rng.normal(0.0, cfg.action_noise, 4).astype(np.float32)
        if cfg.gripper_flip_prob > 0 and self.rng.random() < cfg.gripper_flip_prob:
            a[4] = 1.0 - a[4]
        return self.spec.clip(a)

    def _noisy_xy(self, xy: np.ndarray) -> np.ndarray:
        if self.config.start_noise > 0:
            xy = xy + self.rng.normal(0.0, self.config.start_noise, 2)
        return xy

    def _descend_or_next(self, height: float) -> float | None:
        """The next descent (negative dz [m]) or None when it is time to act."""
        cfg = self.config
        blocked = (
            self._last_height is not None and self._last_height - height < cfg.blocked_distance
        )
        self._last_height = height
        remaining = height - cfg.target_height
        if blocked or remaining < 0.005 or self._descents >= cfg.max_descend_steps:
            return None
        self._descents += 1
        return -min(remaining, self.spec.max_translation_m)


class ScriptedPick(_Scripted):
    """Random start above the right bin, descend, close, lift."""

    kind = "scripted_pick"
    _planner: GraspPlanner | None = None

    @staticmethod
    def default_config() -> ScriptedConfig:
        return pick_config(noisy=True)

    def start_options(self, env: MTOptCell) -> dict[str, Any]:
        """Reset options (start point and yaw) for the next pick episode."""
        cell = env.cell
        cfg = self.config
        yaw = float(self.rng.uniform(-math.pi / 2, math.pi / 2))
        if cfg.aim == "object":
            if self._planner is None or self._planner.cell is not cell:
                self._planner = GraspPlanner(cell)
            grasp = self._planner.choose(self.rng)
            if grasp is not None:
                xy, yaw = grasp.xy, grasp.yaw
            else:
                xy = cell.scene_config.bin_center("right")
        elif cfg.aim == "uniform":
            half = cell.scene_config.bin_half("right") - cfg.margin
            xy = cell.scene_config.bin_center("right") + self.rng.uniform(-half, half)
        else:
            raise ValueError(f"pick aim must be 'object' or 'uniform', got {cfg.aim!r}")
        xy = self._noisy_xy(np.asarray(xy, float))
        self._phase = "descend"
        self._descents = 0
        self._last_height = None
        self._lifted = 0
        return {"start": [xy[0], xy[1], cell.floor_z + cfg.start_height], "start_yaw": yaw}

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        height = float(obs["gripper_height"][0])
        if self._phase == "descend":
            dz = self._descend_or_next(height)
            if dz is not None:
                return self._action(dz, close=False)
            self._phase = "lift"
            return self._action(0.0, close=True)
        if self._phase == "lift":
            self._lifted += 1
            last = self._lifted >= self.config.lift_steps
            if last:
                self._phase = "done"
            return self._action(self.spec.max_translation_m, close=True, terminate=last)
        raise RuntimeError("episode over: call start_options() before the next episode")


class ScriptedPlace(_Scripted):
    """Random start above the left bin, descend, open, retract."""

    kind = "scripted_place"

    @staticmethod
    def default_config() -> ScriptedConfig:
        return place_config(noisy=True)

    def start_options(self, env: MTOptCell) -> dict[str, Any]:
        cell = env.cell
        cfg = self.config
        if cfg.aim == "plate":
            origin, _ = cell.plate_frame()
            radius = 0.6 * cell.scene_config.plate_radius * math.sqrt(self.rng.random())
            angle = self.rng.uniform(0, 2 * math.pi)
            xy = origin[:2] + radius * np.array([math.cos(angle), math.sin(angle)])
        elif cfg.aim == "uniform":
            half = cell.scene_config.bin_half("left") - cfg.margin
            xy = cell.scene_config.bin_center("left") + self.rng.uniform(-half, half)
        else:
            raise ValueError(f"place aim must be 'plate' or 'uniform', got {cfg.aim!r}")
        xy = self._noisy_xy(np.asarray(xy, float))
        self._phase = "descend"
        self._descents = 0
        self._last_height = None
        self._lifted = 0
        return {"start": [xy[0], xy[1], cell.floor_z + cfg.start_height]}

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        height = float(obs["gripper_height"][0])
        if self._phase == "descend":
            dz = self._descend_or_next(height)
            if dz is not None:
                return self._action(dz, close=True)
            self._phase = "retract"
            return self._action(0.0, close=False)
        if self._phase == "retract":
            self._lifted += 1
            last = self._lifted >= self.config.lift_steps
            if last:
                self._phase = "done"
            return self._action(self.spec.max_translation_m, close=False, terminate=last)
        raise RuntimeError("episode over: call start_options() before the next episode")


@dataclass
class EpisodeRecord:
    """Outcome of one scripted episode."""

    kind: str
    task: str
    steps: int
    terminated: bool
    oracle: dict[str, bool]
    held_after: bool  # the gripper reports an object (what a real cell knows)


def run_episode(env: MTOptCell, policy: _Scripted, task: str) -> EpisodeRecord:
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
    )


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
        elif env.cell.gripper_closed:
            env.cell.actuate_gripper(close=False)
        if cfg.reset_every_places and self._places_since_reset >= cfg.reset_every_places:
            self._reset()
        stats.records.extend(records)
        return records

    def _reset(self) -> None:
        self.env.reset_bins()
        self.stats.resets += 1
        self._places_since_reset = 0
        self._reset_requested = False
