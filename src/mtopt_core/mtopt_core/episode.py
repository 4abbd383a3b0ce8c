"""One robot episode as the learner holds it in memory.

An episode of T steps has T+1 observations and T actions: observation t is what the policy saw
before action t, observation T is the final state (the one the success detector grades). A
transition is an index t in [0, T): (obs t, action t, obs t+1). The last transition ends the
episode (the policy chose TERMINATE or the step limit was reached) and is the only one that can
carry reward: the seed's reward is sparse and given on the final state. Which of the two ended
it is the last action's terminate bit (`terminated`): an episode whose last action did not
terminate was cut by the step limit (truncated).

An observation is what the sim env and the cell return: an RGB image (uint8, H x W x 3), whether
the gripper is closed, the gripper height [m], and the gripper's object-detected flag (fingers
stopped before closing fully; all False for sources that do not record it, e.g. older bags).
Images are stored once per episode as one contiguous array, never per transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mtopt_core.action import ACTION_DIM, TERMINATE


@dataclass(eq=False)
class Episode:
    """Observations and actions of one episode (validated and made contiguous on creation).

    Fields:
        images: uint8 (T+1, H, W, 3) camera images, observation t before action t.
        gripper_closed: bool (T+1,) gripper state at each observation.
        height: float32 (T+1,) gripper height above the bin floor [m] at each observation.
        actions: float32 (T, 6) normalized actions (see `mtopt_core.action`).
        task: the commanded task (name in the task registry) the episode was collected for.
        labels: per-task outcomes known for the final state (task name -> success), from the
            success detector or an oracle; may be partial.
        episode_id: free-form identifier (bag name, counter, ...).
        object_detected: bool (T+1,) the gripper's object-detected flag at each observation;
            None = not recorded (all False).
    """

    images: np.ndarray
    gripper_closed: np.ndarray
    height: np.ndarray
    actions: np.ndarray
    task: str
    labels: Mapping[str, bool] = field(default_factory=dict)
    episode_id: str = ""
    object_detected: np.ndarray | None = None

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"episode {self.episode_id!r}: images must be uint8 (T+1, H, W, 3), got "
                f"{images.dtype} {images.shape}"
            )
        steps = images.shape[0] - 1
        if steps < 1:
            raise ValueError(f"episode {self.episode_id!r}: needs at least one step")
        actions = np.asarray(self.actions, dtype=np.float32)
        if actions.shape != (steps, ACTION_DIM):
            raise ValueError(
                f"episode {self.episode_id!r}: actions must be ({steps}, {ACTION_DIM}) for "
                f"{steps + 1} images, got {actions.shape}"
            )
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"episode {self.episode_id!r}: actions contain NaN or Inf")
        gripper = np.asarray(self.gripper_closed)
        height = np.asarray(self.height, dtype=np.float32)
        if self.object_detected is None:
            detected = np.zeros(steps + 1, dtype=bool)
        else:
            detected = np.asarray(self.object_detected)
        for name, arr in (
            ("gripper_closed", gripper), ("height", height), ("object_detected", detected),
        ):  # fmt: skip
            if arr.shape != (steps + 1,):
                raise ValueError(
                    f"episode {self.episode_id!r}: {name} must have shape ({steps + 1},), "
                    f"got {arr.shape}"
                )
        if not np.all(np.isfinite(height)):
            raise ValueError(f"episode {self.episode_id!r}: height contains NaN or Inf")
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"episode {self.episode_id!r}: task must be a non-empty string")
        # Own contiguous copies: a view into a larger array would keep that array alive and
        # make the replay's byte accounting wrong.
        self.images = np.array(images, dtype=np.uint8, order="C", copy=True)
        self.gripper_closed = np.array(gripper, dtype=bool, copy=True)
        self.height = np.array(height, dtype=np.float32, copy=True)
        self.object_detected = np.array(detected, dtype=bool, copy=True)
        self.actions = np.array(actions, dtype=np.float32, copy=True)
        self.labels = {str(k): bool(v) for k, v in dict(self.labels).items()}

    @property
    def num_steps(self) -> int:
        """Number of actions (= transitions) T."""
        return self.actions.shape[0]

    @property
    def terminated(self) -> bool:
        """True when the policy ended the episode (its last action's terminate bit), False
        when the step limit cut it (truncation)."""
        return bool(self.actions[-1, TERMINATE] >= 0.5)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes held by the episode's arrays."""
        return (
            self.images.nbytes
            + self.gripper_closed.nbytes
            + self.height.nbytes
            + self.object_detected.nbytes
            + self.actions.nbytes
        )
