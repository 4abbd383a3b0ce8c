"""The episode protocol: how every episode starts, steps, ends and is graded, on every path.

The policy node and the collector on a cell (real or simulated, through ROS), the gym env
`mtopt_sim.env.MTOptCell` and bulk simulated collection all run episodes this way, so their
transitions and labels are interchangeable:

1. **start**: an episode of a lift-type task (a skill not in `place_skills`) first opens the
   gripper, releasing anything still held; a place-type episode keeps holding what the previous
   lift picked. A gripper lower than `safe_height` above the bin floor then rises vertically to
   it (a straight line out of a bin could hit a wall), and the arm moves to the start pose.
2. **steps**: at most `max_steps` actions. Each moves the arm by its translation and yaw
   (unless both are below `min_translation_m` / `min_yaw_rad`), then opens or closes the
   gripper if the action's gripper bit differs from the gripper's commanded state.
3. **end**: `terminated` by the step whose terminate bit is set (the step is executed first),
   else `truncated` after `max_steps` steps; on a cell also `aborted` by a fault.
4. **present**: with `present_before_grading`, the arm moves to the arm controller's present
   pose (`iiwa/present`, `present_q` in config/iiwa.yaml; the simulated cell's
   `RobotConfig.present_qpos` is the same posture) holding whatever it holds, so a held object
   is lifted clear of the bin whatever height the episode ended at. Then `settle_s` passes.
5. **grade**: the success detector, or in simulation the oracle, judges the scene there; the
   episode's final observation is taken there too.

Defaults are the node parameters' (`PolicyConfig`, `CollectorConfig`, which config/policy.yaml
and config/collector.yaml set to the same values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtopt_policy.config import CollectorConfig, PolicyConfig

TERMINATED = "terminated"
TRUNCATED = "truncated"
ABORTED = "aborted"
#: How an episode can end.
ENDINGS = (TERMINATED, TRUNCATED, ABORTED)


@dataclass(frozen=True)
class EpisodeProtocol:
    """The settings of the protocol (see the module docstring); lengths in m, times in s."""

    #: Step limit (truncation).
    max_steps: int = PolicyConfig.max_steps
    #: Before the start move, a gripper lower than this above the bin floor rises to it.
    safe_height: float = PolicyConfig.safe_height
    #: Shorter rises are not made (the gripper is at the safe height already).
    min_rise_m: float = 0.005
    #: Skills whose episodes keep holding at the start (every other skill opens the gripper).
    place_skills: tuple[str, ...] = PolicyConfig.place_skills
    #: A step whose translation and yaw are both below these does not move the arm.
    min_translation_m: float = PolicyConfig.min_translation_m
    min_yaw_rad: float = PolicyConfig.min_yaw_rad
    #: After the last step, move to the present pose before grading.
    present_before_grading: bool = CollectorConfig.present_before_grading
    #: Wait after the episode (and the present move) before grading.
    settle_s: float = CollectorConfig.final_settle_s

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        for name in ("safe_height", "min_rise_m", "min_translation_m", "min_yaw_rad", "settle_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    @classmethod
    def from_configs(
        cls, policy: PolicyConfig | None = None, collector: CollectorConfig | None = None
    ) -> EpisodeProtocol:
        """The protocol a cell runs with these node parameters (defaults for a missing one):
        the policy node does the start and the steps, the collector the present and grading."""
        policy = policy or PolicyConfig()
        collector = collector or CollectorConfig()
        return cls(
            max_steps=collector.max_steps or policy.max_steps,
            safe_height=policy.safe_height,
            place_skills=tuple(policy.place_skills),
            min_translation_m=policy.min_translation_m,
            min_yaw_rad=policy.min_yaw_rad,
            present_before_grading=collector.present_before_grading,
            settle_s=collector.final_settle_s,
        )

    # -- start -------------------------------------------------------------------------------
    def opens_gripper_first(self, skill: str) -> bool:
        """Does an episode of this skill start by opening the gripper? (lift-type: yes)"""
        return skill not in self.place_skills

    def rise(self, height: float) -> float:
        """Vertical rise [m] before the start move of a gripper at `height` above the floor."""
        rise = self.safe_height - height
        return rise if rise > self.min_rise_m else 0.0

    # -- steps -------------------------------------------------------------------------------
    def moves_arm(self, translation, yaw: float) -> bool:
        """Does a step with this physical translation [m] and yaw [rad] move the arm?"""
        norm = math.sqrt(sum(float(v) ** 2 for v in translation))
        return norm >= self.min_translation_m or abs(yaw) >= self.min_yaw_rad

    def ending(self, steps: int, terminate: bool, max_steps: int | None = None) -> str:
        """After `steps` executed steps, the last with this terminate bit: TERMINATED,
        TRUNCATED, or "" while the episode goes on. `max_steps` overrides the protocol's."""
        if terminate:
            return TERMINATED
        return TRUNCATED if steps >= (max_steps or self.max_steps) else ""
