"""Privileged top-down grasp choice for the scripted pick (simulation only).

Objects are covered by spheres (`objects.variant_spheres`). A candidate grasp is an object and a
yaw: the fingers come down open on both sides of the object, so the candidate is feasible when
the object fits between the pads and neither finger (nor the palm, for tall neighbours) would
land on another object or outside the bin. This stands in for the crude start-point choice of
the seed's scripted policy, so that noise-free scripted picks mostly succeed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtopt_sim import objects as objects_mod
from mtopt_sim import robot as robot_mod
from mtopt_sim.cell import SimCell


@dataclass(frozen=True)
class GraspPlannerConfig:
    """Gripper footprint (in the closing-axis frame u, v) and planning margins [m]."""

    yaw_candidates: int = 12
    finger_half_u: float = 0.008  # finger half thickness along the closing axis
    finger_half_v: float = 0.012  # finger half width across it
    palm_half_u: float = 0.058
    palm_half_v: float = 0.026
    palm_clear_height: float = 0.095  # neighbours taller than this (above the floor) hit the palm
    margin: float = 0.004
    width_margin: float = 0.012  # the object must be this much narrower than the open gripper


@dataclass(frozen=True)
class GraspCandidate:
    object_index: int
    xy: np.ndarray  # grasp centre (TCP x, y)
    yaw: float  # gripper yaw [rad]
    clearance: float  # smallest free distance of the fingers/palm [m]; >= 0 is feasible
    width: float  # object width between the pads [m]


class GraspPlanner:
    """Scores top-down grasps of the objects in the right bin of a `SimCell`."""

    def __init__(self, cell: SimCell, config: GraspPlannerConfig | None = None):
        self.cell = cell
        self.config = config or GraspPlannerConfig()
        self._spheres = [objects_mod.variant_spheres(v) for v in cell.variants]
        n = self.config.yaw_candidates
        self._yaws = -math.pi / 2 + math.pi * (np.arange(n) + 0.5) / n

    def _world_spheres(self, index: int) -> np.ndarray:
        body = self.cell.object_body[index]
        rot = self.cell.data.xmat[body].reshape(3, 3)
        pos = self.cell.data.xpos[body]
        local = self._spheres[index]
        return np.column_stack([local[:, :3] @ rot.T + pos, local[:, 3]])

    def candidates(self) -> list[GraspCandidate]:
        """The best-clearance grasp of every object in the right bin."""
        cell, cfg = self.cell, self.config
        in_bin = [i for i in cell.active_objects if cell.object_region(i) == "right_bin"]
        spheres = {i: self._world_spheres(i) for i in in_bin}
        center = cell.scene_config.bin_center("right")
        half = cell.scene_config.bin_half("right")
        open_half = robot_mod.MAX_OPENING / 2
        finger_offset = open_half + 0.002 + cfg.finger_half_u  # pads protrude 2 mm
        palm_z = cell.floor_z + cfg.palm_clear_height
        result = []
        for i in in_bin:
            target = spheres[i]
            others = [spheres[j] for j in in_bin if j != i]
            obstacles = np.vstack(others) if others else np.zeros((0, 4))
            tall = obstacles[obstacles[:, 2] + obstacles[:, 3] > palm_z]
            best: GraspCandidate | None = None
            for yaw in self._yaws:
                u = np.array([-math.sin(yaw), math.cos(yaw)])
                v = np.array([math.cos(yaw), math.sin(yaw)])
                pu = target[:, :2] @ u
                pv = target[:, :2] @ v
                r = target[:, 3]
                lo_u, hi_u = float(np.min(pu - r)), float(np.max(pu + r))
                lo_v, hi_v = float(np.min(pv - r)), float(np.max(pv + r))
                width = hi_u - lo_u
                xy = u * (lo_u + hi_u) / 2 + v * (lo_v + hi_v) / 2
                clearance = 2 * open_half - cfg.width_margin - width
                for sign in (-1.0, 1.0):
                    finger = xy + sign * finger_offset * u
                    clearance = min(
                        clearance,
                        _rect_clearance(
                            finger, u, v, cfg.finger_half_u, cfg.finger_half_v, obstacles
                        )
                        - cfg.margin,
                        _wall_clearance(
                            finger, u, v, cfg.finger_half_u, cfg.finger_half_v, center, half
                        )
                        - cfg.margin,
                    )
                clearance = min(
                    clearance,
                    _rect_clearance(xy, u, v, cfg.palm_half_u, cfg.palm_half_v, tall) - cfg.margin,
                )
                if best is None or clearance > best.clearance:
                    best = GraspCandidate(i, xy, float(yaw), float(clearance), width)
            if best is not None:
                result.append(best)
        return result

    def nearest(
        self, xy: np.ndarray, found: list[GraspCandidate] | None = None
    ) -> GraspCandidate | None:
        """The feasible grasp nearest to `xy` (else the nearest infeasible one); `found`:
        candidates already computed."""
        found = self.candidates() if found is None else found
        if not found:
            return None
        feasible = [c for c in found if c.clearance >= 0] or found
        return min(feasible, key=lambda c: float(np.linalg.norm(c.xy - xy)))

    def choose(self, rng: np.random.Generator) -> GraspCandidate | None:
        """A random feasible grasp (uniform over objects), else the best infeasible one."""
        found = self.candidates()
        if not found:
            return None
        feasible = [c for c in found if c.clearance >= 0]
        if feasible:
            return feasible[int(rng.integers(len(feasible)))]
        return max(found, key=lambda c: c.clearance)


def _rect_clearance(center, u, v, half_u, half_v, spheres: np.ndarray) -> float:
    """Smallest distance between a rectangle (axes u, v) and sphere footprints (xy discs)."""
    if len(spheres) == 0:
        return math.inf
    d = spheres[:, :2] - center
    du = np.maximum(np.abs(d @ u) - half_u, 0.0)
    dv = np.maximum(np.abs(d @ v) - half_v, 0.0)
    return float(np.min(np.hypot(du, dv) - spheres[:, 3]))


def _wall_clearance(center, u, v, half_u, half_v, bin_center, bin_half) -> float:
    """How far a rectangle stays inside the bin's inner walls (negative: it overlaps one)."""
    extent = np.abs(u) * half_u + np.abs(v) * half_v  # rectangle half extents along x, y
    offset = np.abs(center - bin_center) + extent
    return float(np.min(bin_half - offset))
