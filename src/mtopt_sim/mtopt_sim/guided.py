"""A guided pick for simulated collection: closed-loop aiming with the simulator's privileged
object poses, from the same uniform start as CEM and random episodes.

The seed's scripted pick is blind: it descends where it starts. A learned policy starts
uniformly over the bin and must move to an object, but blind-scripted data never show that
move, only noise around straight descents. `GuidedPick` shows it: each step it reads the
measured gripper pose and the nearest feasible top-down grasp (`mtopt_sim.grasp`) of an object
the commanded task asks for (`category`: lift-X's object X; any object for lift-any), moves toward
it sideways and in yaw while descending to a hover height, descends the rest once above it,
closes, rises one step and terminates. Its moves are given in the cell's action frame
(`action_frame`: "base", or "tool" turned with the gripper's yaw, as the runner reads them).
Gaussian action noise (`noise`, in normalized units, as the scripted policies' `action_noise`)
makes every approach different; the next step corrects it, so the data hold corrective moves,
and a noisy last step still misses now and then.

A decoy (`decoy_fraction` of the guided picks, `policy_kind` "guided_decoy") moves exactly
alike but aims at a random point of the bin with a random yaw instead of a grasp. Aimed and
decoy picks then differ only in where their sideways moves go, so what tells their successes
from their failures is whether the move heads for an object in the image, not the form of the
actions (hover, descent, no gripper flips), which a network could learn instead.

Aiming at the commanded object matters for the lift-X tasks: the nearest object is what a
lift-any policy takes, so in data where every pick takes the nearest one, "move to the nearest
object" explains the successes of every lift-X task and the task input is never needed; picks
that go for the commanded object wherever it lies make the task part of what pays.

It is an exploration policy only (the privileged poses exist in simulation, never on a robot
cell, and never in the policy's observation): `mtopt-sim-collect --guided-fraction F` runs it
for a fraction F of the lift episodes. Its episodes are logged like any other, with
`policy_kind` "guided_pick".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtopt_core.action import ActionSpec, to_base_frame
from mtopt_core.tasks import TaskRegistry
from mtopt_policy.policy import Decision, Observation
from mtopt_sim.cell import SimCell
from mtopt_sim.grasp import GraspCandidate, GraspPlanner
from mtopt_sim.oracle import ACQUISITION

KIND = "guided_pick"
DECOY_KIND = "guided_decoy"
#: What a guided pick aims at: an object of the commanded lift-X task's category
#: ("commanded"), or the nearest object whatever the task ("nearest", the control).
GUIDED_AIMS = ("commanded", "nearest")


@dataclass(frozen=True)
class GuidedConfig:
    """Heights [m] above the bin floor, tolerances and noise of the guided pick."""

    noise: float = 0.15  # std of the noise on the normalized translation and yaw
    hover_height: float = 0.08  # descend no lower than this until above the grasp
    close_height: float = 0.03  # close at this TCP height (the scripted pick's target)
    aligned_m: float = 0.012  # sideways error below which the final descent starts
    aligned_yaw: float = 0.25  # yaw error below which the final descent starts [rad]
    #: P(a pick is a decoy: it aims at a random point of the bin, see the module docstring).
    decoy_fraction: float = 0.0
    decoy_margin: float = 0.04  # decoy targets stay this far inside the bin walls [m]

    def __post_init__(self) -> None:
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if not 0.0 <= self.decoy_fraction <= 1.0:
            raise ValueError(f"decoy_fraction must be in [0, 1], got {self.decoy_fraction}")
        if not 0 < self.close_height < self.hover_height:
            raise ValueError("need 0 < close_height < hover_height")


def object_category(registry: TaskRegistry, task: str) -> str | None:
    """The object category a task asks to lift (its `object` attribute, as the oracle grades
    lift-X), None for any other task."""
    spec = registry[task]
    if spec.skill != ACQUISITION:
        return None
    return dict(spec.attributes).get("object")


def yaw_error(target: float, current: float) -> float:
    """The smallest rotation [rad] from `current` to a yaw equivalent to `target` for a
    two-finger gripper (period pi), keeping the result inside the workspace's [-pi/2, pi/2]."""
    best = None
    for candidate in (target - math.pi, target, target + math.pi):
        if -math.pi / 2 <= candidate <= math.pi / 2:
            err = candidate - current
            if best is None or abs(err) < abs(best):
                best = err
    return 0.0 if best is None else best


class GuidedPick:
    """The `ActionSource` of a guided pick episode on one `SimCell` (see module docstring)."""

    kind = KIND

    def __init__(
        self,
        cell: SimCell,
        rng: np.random.Generator,
        spec: ActionSpec | None = None,
        config: GuidedConfig | None = None,
        action_frame: str = "base",
        category: str | None = None,
    ):
        """`category`: aim at an object of this category (`ObjectVariant.category`; the
        commanded lift-X task's object, `object_category`); None: at any object. With no
        object of the category in the bin it aims at any object."""
        to_base_frame([0.0, 0.0, 0.0], 0.0, action_frame)  # validates the frame
        self.action_frame = action_frame
        self.cell = cell
        self.rng = rng
        self.spec = spec or ActionSpec()
        self.config = config or GuidedConfig()
        self.planner = GraspPlanner(cell)
        self.category = category
        self.object_index: int | None = None
        self.phase = "approach"
        self._last_height: float | None = None  # height before the last final-descent step
        self._yaw: float | None = None  # the target yaw, chosen once (see `act`)
        self._xy = np.zeros(2)  # the target grasp point
        self._decoy: GraspCandidate | None = None
        if self.config.decoy_fraction > 0 and rng.random() < self.config.decoy_fraction:
            scene = cell.scene_config
            half = np.asarray(scene.bin_half("right")) - self.config.decoy_margin
            xy = np.asarray(scene.bin_center("right")) + rng.uniform(-half, half)
            yaw = float(rng.uniform(-math.pi / 2, math.pi / 2))
            self._decoy = GraspCandidate(-1, xy, yaw, 0.0, 0.0)
            self.kind = DECOY_KIND

    def _target(self, tcp_xy: np.ndarray) -> GraspCandidate | None:
        """The grasp of the chosen object, re-planned each step (it may have been pushed);
        the first time, the nearest feasible grasp (else the nearest infeasible one) of an
        object of `category`; a decoy's fixed random point."""
        if self._decoy is not None:
            return self._decoy
        found = self.planner.candidates()
        if self.object_index is not None:
            for c in found:
                if c.object_index == self.object_index:
                    return c
        if self.category is not None:
            variants = self.cell.variants
            found = [
                c for c in found if variants[c.object_index].category == self.category
            ] or found
        best = self.planner.nearest(tcp_xy, found)
        if best is not None:
            self.object_index = best.object_index
        return best

    def _decision(self, translation, dyaw: float, close: bool, terminate: bool) -> Decision:
        a = self.spec.from_physical(translation, dyaw, close, terminate)
        if self.config.noise > 0:
            a[:4] += self.rng.normal(0.0, self.config.noise, 4).astype(np.float32)
        return Decision(self.spec.clip(a).astype(np.float32), math.nan, True)

    def act(self, obs: Observation) -> Decision:
        cfg, step = self.config, self.spec.max_translation_m
        if self.phase == "rise":  # one step up holding, and done
            self.phase = "done"
            return self._decision([0.0, 0.0, step], 0.0, True, True)
        if self.phase == "done":
            return self._decision([0.0, 0.0, 0.0], 0.0, obs.gripper_closed, True)
        position, yaw = self.cell.tcp_pose()
        height = obs.height
        if self.phase == "approach":
            grasp = self._target(position[:2])
            if grasp is None:  # nothing to pick: give up where it is
                self.phase = "done"
                return self._decision([0.0, 0.0, 0.0], 0.0, False, True)
            self._xy = grasp.xy
            if self._yaw is None:
                # The yaw is chosen once: the grasp yaw's equivalent (period pi) nearest to
                # the gripper (a re-planned yaw jumps between near-equal clearances).
                self._yaw = yaw + yaw_error(grasp.yaw, yaw)
        err = self._xy - position[:2]
        dyaw = self._yaw - yaw
        aligned = float(np.linalg.norm(err)) < cfg.aligned_m and abs(dyaw) < cfg.aligned_yaw
        if self.phase == "approach" and aligned:
            # Committed: the object stays where it was seen (contact may push it).
            self.phase = "descend"
        if self.phase == "descend":
            blocked = self._last_height is not None and self._last_height - height < 0.004
            if height <= cfg.close_height + 0.005 or blocked:
                self.phase = "rise"
                return self._decision([0.0, 0.0, 0.0], 0.0, True, False)
            dz = -min(height - cfg.close_height, step)
            self._last_height = height if dz < -0.008 else None
        else:
            dz = -min(max(height - cfg.hover_height, 0.0), step)
        # A tool-frame move turns by the yaw the gripper has now (the runner's reference):
        # express the base-frame error in that frame before clipping each axis.
        err = to_base_frame([err[0], err[1], 0.0], -yaw, self.action_frame)[:2]
        dxy = np.clip(err, -step, step)
        dyaw = float(np.clip(dyaw, -self.spec.max_yaw_rad, self.spec.max_yaw_rad))
        return self._decision([dxy[0], dxy[1], dz], dyaw, False, False)
