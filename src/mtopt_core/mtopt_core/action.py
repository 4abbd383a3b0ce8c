"""The MT-Opt action: one definition shared by the policy, the Q-network, the sim and the arm.

A policy action is a float32 vector of 6, in normalized units (what the Q-function sees):

    [0:3] gripper translation in the robot base frame, in [-1, 1] x `max_translation_m`
    [3]   gripper yaw rotation about base z, in [-1, 1] x `max_yaw_rad`
    [4]   gripper command: >= 0.5 close, < 0.5 open (CEM samples it as 0 or 1)
    [5]   terminate: >= 0.5 ends the episode after this step (CEM samples it as 0 or 1)

`ActionSpec` converts between the normalized vector and physical units. The translation's x/y
are in the base frame, or (action frame "tool") in the gripper's frame turned by its yaw:
`to_base_frame` maps those to the base frame for the arm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTION_DIM = 6
TRANSLATION = slice(0, 3)
YAW = 3
GRIPPER = 4
TERMINATE = 5
CONTINUOUS = slice(0, 4)  # the Gaussian part of CEM
DISCRETE = (GRIPPER, TERMINATE)  # the Bernoulli part of CEM

#: Frames the translation's x/y may be given in (`to_base_frame`).
ACTION_FRAMES = ("base", "tool")

LOW = np.array([-1, -1, -1, -1, 0, 0], dtype=np.float32)
HIGH = np.array([1, 1, 1, 1, 1, 1], dtype=np.float32)


@dataclass(frozen=True)
class ActionSpec:
    """Physical scale of one normalized action step."""

    max_translation_m: float = 0.05  # largest Cartesian move per step [m]
    max_yaw_rad: float = 0.25  # largest yaw change per step [rad]

    def clip(self, action: np.ndarray) -> np.ndarray:
        """Clip a normalized action (or a batch, last axis 6) to its valid range."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape[-1] != ACTION_DIM:
            raise ValueError(f"action must have {ACTION_DIM} components, got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or Inf: {action}")
        return np.clip(action, LOW, HIGH)

    def to_physical(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """Normalized action -> (translation [m] (3,), yaw [rad], close_gripper, terminate)."""
        a = self.clip(action)
        return (
            a[TRANSLATION].astype(np.float64) * self.max_translation_m,
            float(a[YAW]) * self.max_yaw_rad,
            bool(a[GRIPPER] >= 0.5),
            bool(a[TERMINATE] >= 0.5),
        )

    def from_physical(
        self, translation_m, yaw_rad: float, close_gripper: bool, terminate: bool = False
    ) -> np.ndarray:
        """Physical step -> normalized action (clipped to the valid range)."""
        a = np.zeros(ACTION_DIM, dtype=np.float32)
        a[TRANSLATION] = np.asarray(translation_m, dtype=np.float64) / self.max_translation_m
        a[YAW] = yaw_rad / self.max_yaw_rad
        a[GRIPPER] = 1.0 if close_gripper else 0.0
        a[TERMINATE] = 1.0 if terminate else 0.0
        return self.clip(a)


def to_base_frame(translation_m, yaw_rad: float, frame: str) -> np.ndarray:
    """A step's translation [m] (3,) given in `frame` -> the base frame: "tool" turns x/y by the
    gripper's current yaw about base z (z is the same in both); "base" returns it as it is."""
    t = np.asarray(translation_m, dtype=np.float64).copy()
    if frame == "base":
        return t
    if frame != "tool":
        raise ValueError(f"action frame must be one of {ACTION_FRAMES}, got {frame!r}")
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    t[0], t[1] = c * t[0] - s * t[1], s * t[0] + c * t[1]
    return t
