"""iiwa14 kinematics for top-down grasping: forward kinematics, damped-least-squares IK, clamping.

The kinematic description is the iiwa14 URDF that ships in the `pybullet` wheel
(`pybullet_data/kuka_iiwa/model.urdf`), loaded with pinocchio; the MuJoCo cell loads the same
file, so the controller and the simulator agree on the arm. A fixed tool offset (in the flange
frame `lbr_iiwa_link_7`) moves the controlled point to the gripper's grasp point.

The gripper always points down (tool z along base -z, as for the top-down grasps of MT-Opt);
the only free rotation is the yaw about base z. The tool rotation is `Rz(yaw) @ diag(-1, 1, -1)`:
at yaw 0 the tool y axis is base +y, which is the flange orientation of the arm folded over the
table with joint 7 at 0 (so yaw 0 sits in the middle of joint 7's range).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pinocchio as pin

TIP_LINK = "lbr_iiwa_link_7"
GRASP_FRAME = "grasp_point"
NUM_JOINTS = 7
# Tool rotation at yaw 0: tool z points down (base -z), tool y along base +y.
_DOWN = np.diag([-1.0, 1.0, -1.0])


def default_urdf_path() -> str:
    """Path of the iiwa14 URDF in the installed pybullet wheel (no download needed)."""
    import pybullet_data  # only its data directory is used

    path = os.path.join(pybullet_data.getDataPath(), "kuka_iiwa", "model.urdf")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"iiwa URDF not found at {path} (is pybullet installed?)")
    return path


def wrap_angle(angle: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (float(angle) + math.pi) % (2.0 * math.pi) - math.pi


def yaw_rotation(yaw: float) -> np.ndarray:
    """Tool rotation (3x3) pointing down with the given yaw about base z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ _DOWN


def yaw_of(rotation: np.ndarray) -> float:
    """Yaw of a tool rotation: the angle of its y axis (projected on base xy) from base +y."""
    return math.atan2(-rotation[0, 1], rotation[1, 1])


def rotation_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """3x3 rotation -> unit quaternion (x, y, z, w), as geometry_msgs/Quaternion orders it."""
    q = pin.Quaternion(np.asarray(rotation, dtype=np.float64))
    q.normalize()
    return float(q.x), float(q.y), float(q.z), float(q.w)


def quaternion_to_rotation(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> 3x3 rotation."""
    q = pin.Quaternion(float(w), float(x), float(y), float(z))
    if q.norm() < 1e-9:
        raise ValueError("quaternion has zero norm")
    q.normalize()
    return np.array(q.toRotationMatrix())


@dataclass(frozen=True)
class EePose:
    """Grasp-point pose in the robot base frame."""

    position: np.ndarray  # (3,) [m]
    rotation: np.ndarray  # (3, 3)

    @property
    def yaw(self) -> float:
        """Yaw about base z [rad] (meaningful when the tool points down)."""
        return yaw_of(self.rotation)

    @property
    def tilt(self) -> float:
        """Angle between the tool z axis and base -z [rad]: 0 when pointing straight down."""
        return math.acos(float(np.clip(-self.rotation[2, 2], -1.0, 1.0)))


@dataclass(frozen=True)
class IkSolution:
    """Result of `IiwaKinematics.ik`."""

    q: np.ndarray  # (7,) joint positions [rad], inside the (margined) joint limits
    position_error: float  # |target - fk(q)| [m]
    orientation_error: float  # angle between the target and achieved tool rotation [rad]
    converged: bool  # both errors under the requested tolerances
    iterations: int
    joints_at_limit: tuple[int, ...]  # indices (0-based) of joints that ended on a limit


@dataclass(frozen=True)
class WorkspaceBox:
    """Axis-aligned box (base frame) the grasp point must stay in."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def __post_init__(self):
        lo, hi = np.asarray(self.low, float), np.asarray(self.high, float)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ValueError("workspace box corners must have 3 components")
        if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or np.any(lo > hi):
            raise ValueError(f"workspace box needs finite low <= high, got {self.low} {self.high}")


class IiwaKinematics:
    """FK, top-down IK and clamping for the iiwa14 with a gripper at a fixed tool offset.

    Args:
        tool_offset: grasp point in the flange frame (`lbr_iiwa_link_7`) [m].
        workspace: box the grasp point is clamped to (None: no workspace clamping).
        limit_margin: IK keeps joints this far inside the URDF limits [rad].
        urdf_path: URDF to load (default: the pybullet wheel's iiwa14).
        position_limits: symmetric joint limits A1..A7 [rad] that apply where they are
            tighter than the URDF's (None: the URDF's alone); the margin applies to them too.
    """

    def __init__(
        self,
        tool_offset=(0.0, 0.0, 0.2),
        workspace: WorkspaceBox | None = None,
        limit_margin: float = 0.01,
        urdf_path: str | None = None,
        position_limits=None,
    ):
        offset = np.asarray(tool_offset, dtype=np.float64)
        if offset.shape != (3,) or not np.all(np.isfinite(offset)):
            raise ValueError(f"tool_offset must be 3 finite numbers, got {tool_offset}")
        if limit_margin < 0:
            raise ValueError(f"limit_margin must be >= 0, got {limit_margin}")
        self.urdf_path = urdf_path or default_urdf_path()
        self.model = pin.buildModelFromUrdf(self.urdf_path)
        if self.model.nq != NUM_JOINTS:
            raise ValueError(
                f"{self.urdf_path}: expected {NUM_JOINTS} joints, got {self.model.nq}"
            )
        tip = self.model.getFrameId(TIP_LINK)
        if tip >= len(self.model.frames):
            raise ValueError(f"{self.urdf_path}: no link named {TIP_LINK}")
        tip_frame = self.model.frames[tip]
        placement = tip_frame.placement * pin.SE3(np.eye(3), offset)
        self._frame = self.model.addFrame(
            pin.Frame(GRASP_FRAME, tip_frame.parentJoint, tip, placement, pin.FrameType.OP_FRAME)
        )
        self.data = self.model.createData()
        self.tool_offset = offset
        self.workspace = workspace
        self.joint_names = tuple(self.model.names[1:])
        lower = np.array(self.model.lowerPositionLimit, dtype=np.float64)
        upper = np.array(self.model.upperPositionLimit, dtype=np.float64)
        if position_limits is not None:
            limits = np.asarray(position_limits, dtype=np.float64)
            if limits.shape != (NUM_JOINTS,) or not np.all(limits > limit_margin):
                raise ValueError(
                    f"position_limits must be {NUM_JOINTS} numbers above limit_margin, "
                    f"got {position_limits}"
                )
            lower, upper = np.maximum(lower, -limits), np.minimum(upper, limits)
        self.lower = lower + limit_margin
        self.upper = upper - limit_margin
        self.velocity_limit = np.array(self.model.velocityLimit, dtype=np.float64)

    # -- forward kinematics ------------------------------------------------------------------
    def fk(self, q) -> EePose:
        """Grasp-point pose for joint positions q (7,)."""
        q = self._check_q(q)
        pin.framesForwardKinematics(self.model, self.data, q)
        placement = self.data.oMf[self._frame]
        return EePose(np.array(placement.translation), np.array(placement.rotation))

    # -- inverse kinematics ------------------------------------------------------------------
    def ik(
        self,
        position,
        yaw: float,
        q_seed,
        position_tolerance: float = 1e-4,
        orientation_tolerance: float = 1e-3,
        max_iterations: int = 300,
        damping: float = 1e-2,
        orientation_weight: float = 0.3,
        rest_q=None,
        rest_gain: float = 0.05,
    ) -> IkSolution:
        """Joint positions that put the grasp point at `position` pointing down with `yaw`.

        Damped least squares on the 6-D error (position + tool rotation) from `q_seed`, with
        the joints clipped to their limits every iteration. It returns the best configuration
        found even when it did not converge (e.g. the target is out of reach or needs a joint
        beyond its limit): callers compare `position_error` with their tolerance.

        `orientation_weight` [m/rad] scales rotation errors against position errors, so one
        radian of yaw counts like that many metres. The arm has one redundant joint: with
        `rest_q`, a null-space term pulls the posture toward it by `rest_gain` per iteration, so
        a long sequence of small moves does not drift the elbow into a joint limit.
        """
        target = np.asarray(position, dtype=np.float64)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"IK target position must be 3 finite numbers, got {position}")
        if not math.isfinite(yaw):
            raise ValueError(f"IK target yaw must be finite, got {yaw}")
        q = self.clamp_joints(self._check_q(q_seed))
        rest = None if rest_q is None else self._check_q(rest_q)
        goal = pin.SE3(yaw_rotation(yaw), target)
        weights = np.array([1.0, 1.0, 1.0] + [orientation_weight] * 3)
        best = None
        for iteration in range(1, max_iterations + 1):
            pin.framesForwardKinematics(self.model, self.data, q)
            current = self.data.oMf[self._frame]
            # Errors in the base frame: translation, and the rotation vector taking current to
            # goal (log of goal * current^-1).
            err_pos = goal.translation - current.translation
            err_rot = pin.log3(goal.rotation @ current.rotation.T)
            pos_err, rot_err = float(np.linalg.norm(err_pos)), float(np.linalg.norm(err_rot))
            score = pos_err + orientation_weight * rot_err
            if best is None or score < best[0]:
                best = (score, q.copy(), pos_err, rot_err, iteration)
            if pos_err <= position_tolerance and rot_err <= orientation_tolerance:
                break
            jac = pin.computeFrameJacobian(
                self.model, self.data, q, self._frame, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
            )
            err = np.concatenate([err_pos, err_rot]) * weights
            jw = jac * weights[:, None]
            # dq = J^T (J J^T + lambda^2 I)^-1 e: well behaved near singularities.
            jw_pinv = jw.T @ np.linalg.inv(jw @ jw.T + damping**2 * np.eye(6))
            dq = jw_pinv @ err
            # The posture term is dropped close to the goal: the damped projector is not exact,
            # and the last iterations should only reduce the task error.
            if rest is not None and pos_err + orientation_weight * rot_err > 1e-3:
                dq += (np.eye(NUM_JOINTS) - jw_pinv @ jw) @ (rest_gain * (rest - q))
            # Limit the step so one iteration cannot fling a joint across its range.
            step = float(np.max(np.abs(dq)))
            if step > 0.5:
                dq *= 0.5 / step
            q = self.clamp_joints(q + dq)
        _, q_best, pos_err, rot_err, iterations = best
        at_limit = tuple(
            int(i)
            for i in np.flatnonzero((q_best <= self.lower + 1e-6) | (q_best >= self.upper - 1e-6))
        )
        return IkSolution(
            q=q_best,
            position_error=pos_err,
            orientation_error=rot_err,
            converged=pos_err <= position_tolerance and rot_err <= orientation_tolerance,
            iterations=iterations,
            joints_at_limit=at_limit,
        )

    # -- clamping ----------------------------------------------------------------------------
    def clamp(self, position) -> tuple[np.ndarray, bool]:
        """Clamp a grasp-point position to the workspace box: (clamped position, was clamped)."""
        p = np.asarray(position, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"position must be 3 finite numbers, got {position}")
        if self.workspace is None:
            return p.copy(), False
        clamped = np.clip(p, self.workspace.low, self.workspace.high)
        return clamped, bool(np.any(np.abs(clamped - p) > 1e-12))

    def clamp_joints(self, q) -> np.ndarray:
        """Clip joint positions to the (margined) joint limits."""
        return np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)

    def _check_q(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (NUM_JOINTS,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint positions must be {NUM_JOINTS} finite numbers, got {q}")
        return q
