"""The arm interlock of the reset bin: a reset may tilt the bin only while the arm is parked.

`ArmInterlock` keeps the newest joint state of the arm (the node feeds it every
`iiwa/joint_states` message) and answers `check()`: "" when the state is fresh and every joint
is within the tolerance of one of the safe poses, else the reason, e.g.
"arm not at a safe pose: A2 (joint_a2) off by 0.80 rad (tolerance 0.10 rad)" or
"no fresh joint states: last iiwa/joint_states 2.31 s ago (joint_state_timeout_s 1.0)".
No ROS here: the node passes names and positions, tests pass a clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from mtopt_reset_bin.config import ResetBinConfig


class ArmInterlock:
    """Whether the arm is at a safe pose, from its joint states.

    Args:
        joint_names: the arm's 7 joints A1..A7 as named in the joint-state messages.
        safe_poses: safe postures, each 7 joint angles in the order of `joint_names` [rad].
        tolerance: largest deviation of any joint that still counts as at a pose [rad].
        state_timeout: a joint state older than this [s] counts as none.
        clock: monotonic time source [s] (receipt times of the states).
        source: what `check()` calls the joint-state stream in its reasons.
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        safe_poses: Sequence[Sequence[float]],
        tolerance: float,
        state_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        source: str = "iiwa/joint_states",
    ):
        self.joint_names = tuple(joint_names)
        self.safe_poses = [tuple(float(q) for q in pose) for pose in safe_poses]
        if not self.safe_poses or any(len(p) != len(self.joint_names) for p in self.safe_poses):
            raise ValueError(f"need safe poses of {len(self.joint_names)} joint angles each")
        if not (tolerance > 0 and state_timeout > 0):
            raise ValueError(
                f"need tolerance > 0 and state_timeout > 0, got {tolerance}, {state_timeout}"
            )
        self.tolerance = tolerance
        self.state_timeout = state_timeout
        self.source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._q: tuple[float, ...] | None = None
        self._stamp = 0.0
        #: Set when a message lacked some of `joint_names` (the node warns once).
        self.names_missing: list[str] = []

    @classmethod
    def from_config(
        cls, config: ResetBinConfig, clock: Callable[[], float] = time.monotonic
    ) -> ArmInterlock:
        return cls(
            config.joint_names,
            config.safe_pose_list(),
            config.safe_pose_tolerance,
            config.joint_state_timeout_s,
            clock,
        )

    def on_joint_state(self, names: Sequence[str], positions: Sequence[float]) -> bool:
        """Store one joint-state sample; False (and ignored) if it lacks one of the arm's
        joints or has a non-finite position for one."""
        index = {name: i for i, name in enumerate(names)}
        try:
            q = tuple(float(positions[index[n]]) for n in self.joint_names)
        except (KeyError, IndexError):
            self.names_missing = [n for n in self.joint_names if n not in index]
            return False
        if not all(math.isfinite(v) for v in q):
            return False
        with self._lock:
            self._q, self._stamp = q, self._clock()
        return True

    def check(self) -> str:
        """ "" if the arm is at a safe pose by a fresh joint state, else why not."""
        with self._lock:
            q, stamp = self._q, self._stamp
        if q is None:
            return f"no fresh joint states: none received on {self.source}"
        age = self._clock() - stamp
        if age > self.state_timeout:
            return (
                f"no fresh joint states: last {self.source} {age:.2f} s ago "
                f"(joint_state_timeout_s {self.state_timeout:g})"
            )
        pose, joint, error = self.nearest(q)
        if error <= self.tolerance:
            return ""
        which = f" (nearest safe pose {pose + 1})" if len(self.safe_poses) > 1 else ""
        return (
            f"arm not at a safe pose: A{joint + 1} ({self.joint_names[joint]}) off by "
            f"{error:.2f} rad (tolerance {self.tolerance:g} rad){which}"
        )

    def nearest(self, q: Sequence[float]) -> tuple[int, int, float]:
        """(safe pose index, worst joint index, its absolute error [rad]) of the safe pose
        whose worst joint deviation from `q` is smallest."""
        best = (0, 0, math.inf)
        for k, pose in enumerate(self.safe_poses):
            errors = [abs(a - b) for a, b in zip(q, pose, strict=True)]
            joint = max(range(len(errors)), key=errors.__getitem__)
            if errors[joint] < best[2]:
                best = (k, joint, errors[joint])
        return best

    def margin(self) -> float:
        """Worst joint deviation [rad] from the nearest safe pose by the newest state (inf
        without one), for logs."""
        with self._lock:
            q = self._q
        return math.inf if q is None else self.nearest(q)[2]
