"""The robot model: KUKA LBR iiwa14 with a parallel two-finger gripper, as an `mujoco.MjSpec`.

The arm is the iiwa14 URDF shipped in the `pybullet` wheel (`pybullet_data/kuka_iiwa/model.urdf`,
bodies `lbr_iiwa_link_0..7`, joints `lbr_iiwa_joint_1..7`), loaded with `MjSpec.from_file`, so
the simulator and any URDF-based controller (pinocchio, KDL) share one kinematic description.
The gripper is built here with MjSpec: a palm on the flange and two fingers on slide joints with
force-limited position servos, high-friction pads, and a TCP site `tcp` between the pads.

The robot spec compiles on its own (with a `home` keyframe) and is attached into the scene by
`mtopt_sim.scene`. Arm and gripper bodies use gravity compensation so position servos hold pose.

Frames: the robot base frame is the world frame of the scene (x forward, y left, z up, origin at
the base on the table top). The gripper's "top-down" orientation has its z axis along world -z;
yaw 0 puts the finger-closing axis along world y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

#: Joint names in the MuJoCo model (the URDF's names), base to flange.
URDF_JOINT_NAMES = tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))
#: Joint names on ROS topics (`iiwa/joint_states`, `iiwa/joint_trajectory`), as the iiwa_ros2
#: driver (ICube) names them: joint_a1 .. joint_a7, in the same order as URDF_JOINT_NAMES.
ROS_JOINT_NAMES = tuple(f"joint_a{i}" for i in range(1, 8))
ARM_BODY_NAMES = tuple(f"lbr_iiwa_link_{i}" for i in range(0, 8))
ARM_ACTUATOR_NAMES = tuple(f"act_a{i}" for i in range(1, 8))
FINGER_JOINT_NAMES = ("finger_left_joint", "finger_right_joint")
FINGER_ACTUATOR_NAMES = ("act_finger_left", "act_finger_right")
#: Geoms that count as "gripper fingers" for grasp detection.
FINGER_GEOM_NAMES = ("finger_left", "finger_left_pad", "finger_right", "finger_right_pad")
TCP_SITE = "tcp"
#: The wrist camera on the gripper (a policy camera option; not one of the cell's cameras).
WRIST_CAMERA = "wrist"

#: Flange position on lbr_iiwa_link_7 (z, m), from the iiwa14 datasheet (126 mm from the A6
#: axis; link_7's origin is 81 mm from it).
FLANGE_Z = 0.045
#: TCP (pad centre) offset from the flange along the tool axis [m]. A controller that solves IK
#: for the same point uses this plus FLANGE_Z on lbr_iiwa_link_7.
TCP_FROM_FLANGE = 0.1275
#: Fingertips reach this far below the TCP along the tool axis [m].
FINGERTIP_BELOW_TCP = 0.0225
#: Largest opening between the pads [m] (2 x finger stroke).
MAX_OPENING = 0.10

# iiwa14 torque limits [Nm], A1..A7 (KUKA datasheet).
_TORQUE_LIMITS = (320.0, 320.0, 176.0, 176.0, 110.0, 40.0, 40.0)


def iiwa_urdf_path() -> Path:
    """Path of the iiwa14 URDF in the installed `pybullet` wheel (raises if missing)."""
    try:
        import pybullet_data
    except ImportError as exc:  # pragma: no cover - pybullet is a pinned dependency
        raise FileNotFoundError(
            "pybullet is not installed; the iiwa14 URDF comes from pybullet_data"
        ) from exc
    path = Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "model.urdf"
    if not path.is_file():
        raise FileNotFoundError(f"iiwa14 URDF not found at {path}")
    return path


@dataclass(frozen=True)
class RobotConfig:
    """Physical parameters of the simulated arm and gripper."""

    #: Home joint configuration A1..A7 [rad]: gripper top-down, about 0.45 m above the table,
    #: between the robot and the bins, clear of the tilting left bin (TCP at 0.32, 0, 0.48).
    home_qpos: tuple[float, ...] = (0.0, -0.186, 0.0, -1.856, 0.0, 1.472, 0.0)
    #: Grading ("present") posture A1..A7 [rad]: gripper pointing down at about
    #: (0.18, -0.37, 0.62), half a metre in front of the right_shoulder camera with the floor
    #: (not the cluttered bins) behind it, so a held object is large and clear in that view
    #: while the other two cameras see both bins unblocked. The fingers close across that
    #: camera's line of sight (yaw -2.37; A7 a quarter turn from the first version's yaw -0.8), so
    #: the held object shows between them instead of behind the near finger.
    #: Episodes end here before the success detector and the oracle look at the cell.
    present_qpos: tuple[float, ...] = (-0.491, 0.068, -0.681, -1.279, 0.044, 1.809, 1.210)
    #: Joint position-servo stiffness A1..A7 [Nm/rad].
    arm_kp: tuple[float, ...] = (4000.0, 4000.0, 2500.0, 2500.0, 1000.0, 600.0, 300.0)
    #: Joint damping A1..A7 [Nm s/rad].
    arm_damping: tuple[float, ...] = (120.0, 120.0, 70.0, 70.0, 25.0, 12.0, 6.0)
    #: Reflected motor inertia A1..A7 [kg m^2] (keeps stiff servos stable at the 2 ms step).
    arm_armature: tuple[float, ...] = (0.4, 0.4, 0.3, 0.3, 0.1, 0.1, 0.05)
    #: Finger servo stiffness [N/m]; the force limit is the grip force (GripperCommand effort).
    finger_kp: float = 1500.0
    finger_damping: float = 60.0
    #: Default grip force per finger [N] (GripperCommand.max_effort <= 0 selects it).
    default_grip_force: float = 25.0
    max_grip_force: float = 60.0
    #: Pad friction (sliding, torsional, rolling).
    pad_friction: tuple[float, float, float] = (1.6, 0.02, 0.0005)
    arm_rgba: tuple[float, ...] = (0.93, 0.48, 0.10, 1.0)  # KUKA orange
    base_rgba: tuple[float, ...] = (0.25, 0.25, 0.27, 1.0)
    #: Wrist camera on the palm, in the gripper frame (z along the tool axis, the fingers
    #: closing along y): position [m], tilt of its view from the tool axis toward it [rad]
    #: and vertical field of view [deg]. It sees the fingertips and what lies below them.
    wrist_camera_pos: tuple[float, float, float] = (-0.055, 0.0, 0.03)
    wrist_camera_tilt: float = 0.40
    wrist_camera_fovy: float = 70.0
    gripper_rgba: tuple[float, ...] = (0.15, 0.15, 0.17, 1.0)
    pad_rgba: tuple[float, ...] = (0.05, 0.05, 0.05, 1.0)


def build_robot_spec(config: RobotConfig | None = None) -> mujoco.MjSpec:
    """Build the iiwa14 + gripper spec. It compiles on its own and has a `home` keyframe."""
    config = config or RobotConfig()
    urdf = iiwa_urdf_path()
    spec = mujoco.MjSpec.from_file(str(urdf))
    spec.modelname = "iiwa14_gripper"
    # Absolute mesh paths: the spec is attached into a scene whose files live elsewhere.
    for mesh in spec.meshes:
        mesh.file = str((urdf.parent / mesh.file).resolve())
    spec.meshdir = ""

    for i, name in enumerate(ARM_BODY_NAMES):
        body = spec.body(name)
        body.gravcomp = 1.0
        for geom in body.geoms:
            geom.name = f"{name}_geom"
            geom.rgba = config.base_rgba if i == 0 else config.arm_rgba
            if i in (6, 7):
                geom.rgba = config.base_rgba
    for i, name in enumerate(URDF_JOINT_NAMES):
        joint = spec.joint(name)
        joint.damping = [config.arm_damping[i], 0.0, 0.0]
        joint.armature = config.arm_armature[i]
        joint.frictionloss = 0.0
        act = spec.add_actuator(name=ARM_ACTUATOR_NAMES[i], target=name)
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.set_to_position(kp=config.arm_kp[i])
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = joint.range
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-_TORQUE_LIMITS[i], _TORQUE_LIMITS[i]]

    _add_gripper(spec, config)

    # Home keyframe (arm at home, gripper open). Other keyframes come from the scene.
    spec.add_key(name="home", qpos=_home_qpos(config))
    return spec


def _home_qpos(config: RobotConfig) -> list[float]:
    half = MAX_OPENING / 2
    return [*config.home_qpos, half, half]


def _add_gripper(spec: mujoco.MjSpec, config: RobotConfig) -> None:
    """Palm on the flange, two fingers on slide joints, pads and a TCP site."""
    link7 = spec.body("lbr_iiwa_link_7")
    base = link7.add_body(name="gripper_base", pos=[0, 0, FLANGE_Z], gravcomp=1.0)
    base.add_geom(
        name="gripper_adapter",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[0.034, 0.012, 0],
        pos=[0, 0, 0.012],
        rgba=config.gripper_rgba,
        mass=0.25,
    )
    base.add_geom(
        name="gripper_palm",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.025, 0.058, 0.018],
        pos=[0, 0, 0.042],
        rgba=config.gripper_rgba,
        mass=0.45,
    )
    finger_root_z = 0.06  # palm bottom
    finger_half_len = 0.045  # finger spans z in [0.06, 0.15] in the gripper frame
    for side, sign in (("left", 1.0), ("right", -1.0)):
        finger = base.add_body(name=f"finger_{side}", pos=[0, 0, finger_root_z], gravcomp=1.0)
        joint = finger.add_joint(
            name=f"finger_{side}_joint",
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=[0, sign, 0],
            range=[0.0, MAX_OPENING / 2],
            armature=0.02,
        )
        joint.damping = [config.finger_damping, 0.0, 0.0]
        # Finger body frame: its inner face is at y = 0 (closed) and moves outward with q.
        finger.add_geom(
            name=f"finger_{side}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.011, 0.006, finger_half_len - 0.012],
            pos=[0, sign * 0.008, finger_half_len - 0.012],
            rgba=config.gripper_rgba,
            mass=0.06,
        )
        finger.add_geom(
            name=f"finger_{side}_pad",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.011, 0.004, 0.025],
            pos=[0, sign * 0.004, 2 * finger_half_len - 0.025],
            rgba=config.pad_rgba,
            friction=config.pad_friction,
            condim=4,
            priority=1,  # pad friction wins over the object's
            mass=0.02,
        )
        act = spec.add_actuator(name=f"act_finger_{side}", target=joint.name)
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.set_to_position(kp=config.finger_kp)
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = [0.0, MAX_OPENING / 2]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-config.default_grip_force, config.default_grip_force]
    # The base link is welded to the world, so MuJoCo does not filter its contacts with its
    # child; their convex hulls overlap at the A1 joint.
    spec.add_exclude(bodyname1="lbr_iiwa_link_0", bodyname2="lbr_iiwa_link_1")
    # The pads touch when closed on nothing; that is not a contact worth simulating.
    spec.add_exclude(bodyname1="finger_left", bodyname2="finger_right")
    # MuJoCo cameras look along their -z; image up is their +y (toward the tool axis here).
    sin, cos = math.sin(config.wrist_camera_tilt), math.cos(config.wrist_camera_tilt)
    camera = base.add_camera(
        name=WRIST_CAMERA, pos=list(config.wrist_camera_pos), fovy=config.wrist_camera_fovy
    )
    camera.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
    camera.alt.xyaxes = [0.0, 1.0, 0.0, cos, 0.0, -sin]
    base.add_site(
        name=TCP_SITE,
        pos=[0, 0, TCP_FROM_FLANGE],
        size=[0.005, 0, 0],
        rgba=[1, 0, 0, 0],
        group=4,
    )


def gripper_opening(finger_qpos: np.ndarray) -> float:
    """Distance between the pads [m] from the two finger joint positions."""
    return float(finger_qpos[0] + finger_qpos[1])


def main() -> None:  # pragma: no cover - developer aid
    """Write the robot model as MJCF (stdout), e.g. to inspect it in MuJoCo's viewer."""
    print(build_robot_spec().to_xml())


if __name__ == "__main__":  # pragma: no cover
    main()
