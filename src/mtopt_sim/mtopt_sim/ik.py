"""Damped-least-squares inverse kinematics for the gripper TCP (`mj_jacSite`).

The solver works on its own scratch `MjData`, so it never disturbs the simulation state. The
target is a full pose: position and a top-down orientation with a yaw about world z. The 7th
degree of freedom (elbow) is pulled toward a rest posture in the Jacobian's null space, and
every iterate is clamped to the joint limits (minus a margin).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


def top_down_rotation(yaw: float) -> np.ndarray:
    """Gripper orientation (3x3, columns = gripper axes in world) pointing down with `yaw`.

    The gripper z axis points along world -z; yaw 0 puts the finger-closing axis (gripper y)
    along world y, which is the iiwa's pose with A7 = 0 when the flange points down.
    """
    c, s = np.cos(yaw), np.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    down = np.diag([-1.0, 1.0, -1.0])  # rotation by pi about y
    return rz @ down


def yaw_of(rotation: np.ndarray) -> float:
    """Yaw about world z of a (roughly) top-down gripper orientation."""
    y_axis = rotation[:, 1]
    return float(np.arctan2(-y_axis[0], y_axis[1]))


@dataclass(frozen=True)
class IkConfig:
    """Solver settings."""

    damping: float = 0.03  # lambda of the damped least squares
    max_iterations: int = 80
    position_tolerance: float = 2e-4  # m
    rotation_tolerance: float = 2e-3  # rad
    max_step: float = 0.25  # largest joint change per iteration [rad]
    nullspace_gain: float = 0.2  # pull toward the rest posture per iteration
    limit_margin: float = 0.02  # stay this far inside the joint limits [rad]


@dataclass(frozen=True)
class IkResult:
    qpos: np.ndarray  # arm joint positions (7,)
    position_error: float  # m
    rotation_error: float  # rad
    iterations: int

    def converged(self, config: IkConfig) -> bool:
        return (
            self.position_error <= config.position_tolerance * 5
            and self.rotation_error <= config.rotation_tolerance * 5
        )


class DlsIk:
    """DLS IK of one site over a set of hinge joints of a model."""

    def __init__(
        self,
        model: mujoco.MjModel,
        site: str,
        joint_names: tuple[str, ...],
        rest_qpos: np.ndarray,
        config: IkConfig | None = None,
    ):
        self.model = model
        self.config = config or IkConfig()
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site_id < 0:
            raise ValueError(f"IK site {site!r} not in the model")
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names]
        if min(joint_ids) < 0:
            raise ValueError(f"IK joints {joint_names} not all in the model")
        self.qpos_adr = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self.dof_adr = np.array([model.jnt_dofadr[j] for j in joint_ids])
        ranges = np.array([model.jnt_range[j] for j in joint_ids])
        margin = self.config.limit_margin
        self.lower = ranges[:, 0] + margin
        self.upper = ranges[:, 1] - margin
        self.rest = np.asarray(rest_qpos, dtype=float)
        self._data = mujoco.MjData(model)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._quat_target = np.zeros(4)
        self._quat_current = np.zeros(4)
        self._quat_err = np.zeros(4)
        self._rot_err = np.zeros(3)

    def forward(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Site (position, rotation matrix) for arm joint positions `qpos`."""
        d = self._data
        d.qpos[self.qpos_adr] = qpos
        mujoco.mj_kinematics(self.model, d)
        return d.site_xpos[self.site_id].copy(), d.site_xmat[self.site_id].reshape(3, 3).copy()

    def solve(self, q_init: np.ndarray, position: np.ndarray, rotation: np.ndarray) -> IkResult:
        """Joint positions that put the site at `position` with `rotation` (3x3)."""
        cfg = self.config
        m, d = self.model, self._data
        q = np.clip(np.asarray(q_init, dtype=float), self.lower, self.upper)
        mujoco.mju_mat2Quat(self._quat_target, np.asarray(rotation, dtype=float).ravel())
        lam2 = cfg.damping**2
        eye6 = np.eye(6)
        pos_err = rot_err = np.inf
        it = 0
        for it in range(1, cfg.max_iterations + 1):  # noqa: B007 - reported below
            d.qpos[self.qpos_adr] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            err_p = position - d.site_xpos[self.site_id]
            mujoco.mju_mat2Quat(self._quat_current, d.site_xmat[self.site_id])
            mujoco.mju_negQuat(self._quat_err, self._quat_current)
            mujoco.mju_mulQuat(self._quat_err, self._quat_target, self._quat_err)
            mujoco.mju_quat2Vel(self._rot_err, self._quat_err, 1.0)
            pos_err = float(np.linalg.norm(err_p))
            rot_err = float(np.linalg.norm(self._rot_err))
            if pos_err < cfg.position_tolerance and rot_err < cfg.rotation_tolerance:
                break
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp[:, self.dof_adr], self._jacr[:, self.dof_adr]])
            err = np.concatenate([err_p, self._rot_err])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * eye6, err)
            # Posture bias toward the rest pose, projected into the null space of the task
            # (undamped pseudo-inverse, so it cannot disturb the TCP to first order).
            projector = np.eye(len(q)) - np.linalg.pinv(jac) @ jac
            dq += projector @ (cfg.nullspace_gain * (self.rest - q))
            largest = np.max(np.abs(dq))
            if largest > cfg.max_step:
                dq *= cfg.max_step / largest
            q = np.clip(q + dq, self.lower, self.upper)
        return IkResult(q, pos_err, rot_err, it)
