"""The seed's crude scripted policies (Appendix B), needing only where the bins are.

* `ScriptedPick`: start at a random point above the right bin, descend to the bottom of the
  bin, close the gripper, lift (and terminate).
* `ScriptedPlace`: start at a random point above the left bin (the plate), descend, open the
  gripper to release the held object, retract (and terminate).

Both emit the normalized 6-D MT-Opt action (`mtopt_core.action`), exactly as a learned policy,
with configurable Gaussian action noise, and act on the gripper height alone. Noise moves the
gripper but never makes it act away from its target height: the gripper acts (pick: closes,
place: opens) on reaching `target_height`, or within `act_window` above it when a descent was
blocked (contact: a commanded descent of at least twice `blocked_distance` moved less than
`blocked_distance`) or the descents ran out. Blocked higher up, the fingertips rest on
something (a bin wall, an object's top) that closing could not catch: the policy keeps
descending, and ends the episode without acting when its descents run out there.
Their start point is chosen before the episode (the cell's pre-episode move):
`start_options(bins)` draws it uniformly over the bin (`aim="uniform"`, as the seed's policy
did) from a `BinGeometry`. This is what a real cell's policy runs; the simulator's privileged
aims ("object": a graspable object, "plate": a point over the plate) are subclasses in
`mtopt_sim.scripted`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtopt_core.action import ActionSpec
from mtopt_policy.config import PolicyConfig

BINS = ("right", "left")


@dataclass(frozen=True)
class BinGeometry:
    """Where the bins are (robot base frame, m): what the uniform start draw needs."""

    right_center: tuple[float, float]
    right_half: tuple[float, float]  # inner half extents (x, y)
    left_center: tuple[float, float]
    left_half: tuple[float, float]
    floor_z: float  # height of the bin floors' top surface

    def __post_init__(self) -> None:
        for name in ("right_center", "right_half", "left_center", "left_half"):
            value = getattr(self, name)
            if len(value) != 2:
                raise ValueError(f"BinGeometry.{name} must be (x, y), got {list(value)}")
        for name in ("right_half", "left_half"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"BinGeometry.{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_policy_config(cls, config: PolicyConfig) -> BinGeometry:
        return cls(
            right_center=tuple(config.right_bin_center),
            right_half=tuple(config.right_bin_half),
            left_center=tuple(config.left_bin_center),
            left_half=tuple(config.left_bin_half),
            floor_z=config.bin_floor_z,
        )

    def center(self, which: str) -> np.ndarray:
        """(x, y) of the 'right' or 'left' bin's centre."""
        return np.array(getattr(self, f"{_check_bin(which)}_center"), dtype=float)

    def half(self, which: str) -> np.ndarray:
        """Inner half extents (x, y) of the 'right' or 'left' bin."""
        return np.array(getattr(self, f"{_check_bin(which)}_half"), dtype=float)


def _check_bin(which: str) -> str:
    if which not in BINS:
        raise ValueError(f"bin must be one of {BINS}, got {which!r}")
    return which


@dataclass(frozen=True)
class ScriptedConfig:
    """Behaviour and noise of a scripted policy."""

    #: Start point choice: "uniform" over the bin; the simulator adds pick "object" and
    #: place "plate" (`mtopt_sim.scripted`).
    aim: str = "uniform"
    #: Std of the Gaussian noise added to every normalized translation and yaw component.
    action_noise: float = 0.0
    #: Std of the noise added to the start point's x and y [m].
    start_noise: float = 0.0
    #: Probability per step of flipping the gripper bit (pick: an early/late close); only
    #: within `act_window` above `target_height`.
    gripper_flip_prob: float = 0.0
    start_height: float = 0.20  # start TCP height above the bin floor [m]
    #: Pick: TCP height above the floor to close at; place: height to open at [m].
    target_height: float = 0.03
    #: The gripper acts only this close above `target_height` [m] (see the module docstring).
    act_window: float = 0.03
    lift_steps: int = 3  # pick: steps up after closing; place: steps up after opening
    max_descend_steps: int = 6
    #: A descent step commanded to go down at least twice this but moving less than this [m]
    #: counts as blocked (contact: stop descending and act).
    blocked_distance: float = 0.004
    margin: float = 0.04  # keep uniform start points this far inside the bin walls [m]


def pick_config(noisy: bool = True) -> ScriptedConfig:
    """The scripted pick's configuration: with the default noise, or noise-free."""
    if noisy:
        return ScriptedConfig(action_noise=0.5, start_noise=0.04)
    return ScriptedConfig()


def place_config(noisy: bool = True) -> ScriptedConfig:
    """The scripted place's configuration: with the default noise, or noise-free."""
    base = ScriptedConfig(target_height=0.09, lift_steps=2)
    if noisy:
        return dataclasses.replace(base, action_noise=0.5, start_noise=0.04)
    return base


class ScriptedPolicy:
    """What the pick and the place share: noise, the descent, the episode start."""

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
        flip = cfg.gripper_flip_prob > 0 and self.rng.random() < cfg.gripper_flip_prob
        if flip and self._in_act_window():
            a[4] = 1.0 - a[4]
        a = self.spec.clip(a)
        self._last_dz = float(a[2]) * self.spec.max_translation_m  # commanded, noise included
        return a

    def _in_act_window(self) -> bool:
        return self._height <= self.config.target_height + self.config.act_window

    def _uniform_xy(self, bins: BinGeometry, which: str) -> np.ndarray:
        half = bins.half(which) - self.config.margin
        return bins.center(which) + self.rng.uniform(-half, half)

    def _begin(self, xy, floor_z: float, yaw: float | None = None) -> dict[str, Any]:
        """Start an episode above `xy` (plus start noise): the reset options."""
        xy = np.asarray(xy, float)
        if self.config.start_noise > 0:
            xy = xy + self.rng.normal(0.0, self.config.start_noise, 2)
        self._phase = "descend"
        self._descents = 0
        self._last_height = None
        self._last_dz = 0.0
        self._height = math.inf  # gripper height of the current step
        self._lifted = 0
        options: dict[str, Any] = {"start": [xy[0], xy[1], floor_z + self.config.start_height]}
        if yaw is not None:
            options["start_yaw"] = yaw
        return options

    def _descend_or_next(self, height: float) -> float | str:
        """The next descent (negative dz [m]), "act" when it is time to act, or "give_up" when
        the descents ran out above the act window."""
        cfg = self.config
        blocked = (
            self._last_height is not None
            and self._last_dz <= -2 * cfg.blocked_distance
            and self._last_height - height < cfg.blocked_distance
        )
        self._last_height = height
        remaining = height - cfg.target_height
        in_window = remaining <= cfg.act_window
        if remaining < 0.005 or (blocked and in_window):
            return "act"
        if self._descents >= cfg.max_descend_steps:
            return "act" if in_window else "give_up"
        self._descents += 1
        return -min(remaining, self.spec.max_translation_m)

    def _give_up(self, close: bool) -> np.ndarray:
        """End the episode without acting (the gripper keeps its state)."""
        self._phase = "done"
        return self._action(0.0, close=close, terminate=True)

    def _rise(self, close: bool) -> np.ndarray:
        """One step up after the gripper acted; the last one terminates."""
        self._lifted += 1
        last = self._lifted >= self.config.lift_steps
        if last:
            self._phase = "done"
        return self._action(self.spec.max_translation_m, close=close, terminate=last)


class ScriptedPick(ScriptedPolicy):
    """Random start above the right bin, descend, close, lift."""

    kind = "scripted_pick"

    @staticmethod
    def default_config() -> ScriptedConfig:
        return pick_config(noisy=True)

    def start_options(self, bins: BinGeometry) -> dict[str, Any]:
        """Reset options (start point and yaw) for the next pick episode."""
        yaw = float(self.rng.uniform(-math.pi / 2, math.pi / 2))
        if self.config.aim != "uniform":
            raise ValueError(
                f"pick aim must be 'uniform' here (the simulator's scripted pick adds "
                f"'object'), got {self.config.aim!r}"
            )
        return self._begin(self._uniform_xy(bins, "right"), bins.floor_z, yaw)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        height = self._height = float(obs["gripper_height"][0])
        if self._phase == "descend":
            dz = self._descend_or_next(height)
            if dz == "give_up":
                return self._give_up(close=False)
            if dz != "act":
                return self._action(dz, close=False)
            self._phase = "lift"
            return self._action(0.0, close=True)
        if self._phase == "lift":
            return self._rise(close=True)
        raise RuntimeError("episode over: call start_options() before the next episode")


class ScriptedPlace(ScriptedPolicy):
    """Random start above the left bin, descend, open, retract."""

    kind = "scripted_place"

    @staticmethod
    def default_config() -> ScriptedConfig:
        return place_config(noisy=True)

    def start_options(self, bins: BinGeometry) -> dict[str, Any]:
        """Reset options (start point; any yaw) for the next place episode."""
        if self.config.aim != "uniform":
            raise ValueError(
                f"place aim must be 'uniform' here (the simulator's scripted place adds "
                f"'plate'), got {self.config.aim!r}"
            )
        return self._begin(self._uniform_xy(bins, "left"), bins.floor_z)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        height = self._height = float(obs["gripper_height"][0])
        if self._phase == "descend":
            dz = self._descend_or_next(height)
            if dz == "give_up":
                return self._give_up(close=True)
            if dz != "act":
                return self._action(dz, close=True)
            self._phase = "retract"
            return self._action(0.0, close=False)
        if self._phase == "retract":
            return self._rise(close=False)
        raise RuntimeError("episode over: call start_options() before the next episode")
