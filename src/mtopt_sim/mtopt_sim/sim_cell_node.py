"""`sim_cell_node`: the ROS face of the simulated cell, speaking what real cell drivers speak.

Publishes (relative names, so a namespace like /cell0 applies; stamps are sim time):
  camera/<name>/image_raw    sensor_msgs/Image rgb8, <name> in parameter cameras (overhead,
  camera/<name>/camera_info  sensor_msgs/CameraInfo  left_shoulder, right_shoulder; wrist)
  iiwa/joint_states          sensor_msgs/JointState, joints joint_a1..joint_a7 (iiwa_ros2 names)
  gripper/state              mtopt_interfaces/GripperState
  reset_bin/state            mtopt_interfaces/BinMotorState
  /clock                     rosgraph_msgs/Clock (sim time; `clock_topic`, `publish_clock`)
  sim/oracle                 mtopt_interfaces/SimOracle: the privileged per-task success of the
                             current state and object counts per region (for evaluation,
                             labels and bin-reset decisions; never for the policy)
Subscribes:
  iiwa/joint_trajectory      trajectory_msgs/JointTrajectory (points' positions and
                             time_from_start; starts on receipt; empty points = hold). One
                             beyond the iiwa14's joint limits (position, velocity, the
                             documented acceleration; `mtopt_iiwa.safety.JointLimits`) is
                             refused with a warning and the arm keeps what it was doing, as
                             a real arm controller's limits would
  gripper/command            mtopt_interfaces/GripperCommand (opening [m], max effort [N])
  reset_bin/motor            mtopt_interfaces/BinMotorCommand (hinge angle, max velocity)
Services:
  sim/respawn                std_srvs/Trigger: new random object set, arm home, bin level;
                             the objects settle in sim time without any output (logged)

Scenes: the start-up scene and each respawn draw their objects from the cell's `seed`, or, with
`scene_seeds`, take the next seed of that list (the in-process evaluator's scene seeds, so a
ROS evaluation runs on the evaluator's scenes; past its end the cell's own draws go on). The
log line of each scene names its seed.

Parameters: see `SimCellNodeConfig`. All simulation work (physics, EGL rendering) happens in the
executor's single thread; the logic lives in `SimCellRunner` / `SimCell`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from mtopt_bridge.image import numpy_to_image
from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import (
    ConfigError,
    declare_config,
    describe_config,
    parameter_error,
)
from mtopt_bridge.qos import IMAGE_PUBLISH_QOS
from mtopt_core.tasks import TaskRegistryError, load_task_registry
from mtopt_iiwa.safety import JointLimitError
from mtopt_interfaces.msg import (
    BinMotorCommand,
    BinMotorState,
    GripperCommand,
    GripperState,
    SimOracle,
)
from mtopt_sim.cell import CellConfig, SimCell
from mtopt_sim.oracle import SuccessOracle
from mtopt_sim.robot import ROS_JOINT_NAMES
from mtopt_sim.scene import CAMERA_NAMES, POLICY_CAMERA_NAMES, ROBOT_PREFIX
from mtopt_sim.sim_runner import MODES, RunnerConfig, SimCellRunner


@dataclass(frozen=True)
class SimCellNodeConfig:
    """Parameters of sim_cell_node (one ROS parameter per field)."""

    cell_id: int = 0  # seeds the cell's look (lighting, colours, camera jitter)
    seed: int = 0  # seeds the first object set
    #: Seeds of the scenes in order: the start-up scene, then one per sim/respawn (see the
    #: module docstring); () = the cell's own draws from `seed`.
    scene_seeds: tuple[int, ...] = ()
    mode: str = "realtime"  # "realtime" | "fast" (as fast as possible while moving)
    camera_rate_hz: float = 10.0  # per camera, in sim time
    #: Cameras published: the cell's three and optionally the gripper's "wrist" camera (for a
    #: policy with policy_camera "wrist").
    cameras: tuple[str, ...] = CAMERA_NAMES
    camera_width: int = 128
    camera_height: int = 128
    joint_state_rate_hz: float = 100.0  # joint, gripper and bin-motor state
    clock_rate_hz: float = 200.0
    oracle_rate_hz: float = 2.0  # sim/oracle; 0 = off
    publish_clock: bool = True
    clock_topic: str = "/clock"
    #: Names on iiwa/joint_states and accepted on iiwa/joint_trajectory, A1..A7.
    joint_names: tuple[str, ...] = ROS_JOINT_NAMES
    tick_period: float = 0.005  # wall period of the simulation loop [s]
    settle_time: float = 0.3  # fast mode: keep stepping this long after motion ends [s]
    tasks_file: str = ""  # task registry for sim/oracle; "" = config/tasks.yaml

    def validate(self) -> None:
        if self.cell_id < 0:
            raise ConfigError(f"parameter cell_id must be >= 0, got {self.cell_id}")
        if self.mode not in MODES:
            raise ConfigError(f"parameter mode must be one of {MODES}, got {self.mode!r}")
        for name in (
            "camera_rate_hz",
            "joint_state_rate_hz",
            "clock_rate_hz",
            "tick_period",
            "settle_time",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"parameter {name} must be > 0, got {getattr(self, name)}")
        if any(seed < 0 for seed in self.scene_seeds):
            raise ConfigError(f"parameter scene_seeds must be >= 0, got {list(self.scene_seeds)}")
        if self.oracle_rate_hz < 0:
            raise ConfigError(f"parameter oracle_rate_hz must be >= 0, got {self.oracle_rate_hz}")
        unknown = set(self.cameras) - set(POLICY_CAMERA_NAMES)
        if unknown or not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(
                f"parameter cameras must list distinct cameras of {list(POLICY_CAMERA_NAMES)}, "
                f"got {list(self.cameras)}"
            )
        for name in ("camera_width", "camera_height"):
            if not 8 <= getattr(self, name) <= 640:
                raise ConfigError(f"parameter {name} must be in 8..640, got {getattr(self, name)}")
        if len(self.joint_names) != 7 or len(set(self.joint_names)) != 7:
            raise ConfigError(
                f"parameter joint_names must list 7 distinct names, got {list(self.joint_names)}"
            )
        if not self.clock_topic:
            raise ConfigError("parameter clock_topic must not be empty")


def _stamp(t: float) -> Time:
    sec = int(math.floor(t))
    return Time(sec=sec, nanosec=min(999_999_999, int(round((t - sec) * 1e9))))


def joint_state_msg(cell: SimCell, joint_names, stamp: float) -> JointState:
    """`iiwa/joint_states` of the cell now (joints A1..A7 named `joint_names`)."""
    msg = JointState()
    msg.header.stamp = _stamp(stamp)
    msg.name = list(joint_names)
    msg.position = cell.arm_qpos().tolist()
    msg.velocity = cell.arm_qvel().tolist()
    msg.effort = cell.arm_effort().tolist()
    return msg


def gripper_state_msg(cell: SimCell, stamp: float) -> GripperState:
    """`gripper/state` of the cell now."""
    status = cell.gripper_status()
    msg = GripperState(
        position=status.opening,
        effort=status.effort,
        closed=status.closed,
        object_detected=status.object_detected,
        height=cell.gripper_height(),
    )
    msg.header.stamp = _stamp(stamp)
    return msg


def respawn_log_line(before: float, after: float, names, seed: int | None = None) -> str:
    """The info line of a `sim/respawn`: the objects settle in `after - before` s of sim time
    during which nothing is published (a gap in every stream's stamps, not message loss;
    `mtopt-reliability` reads these lines, `mtopt_experiments.graph_monitor.sim_pauses`)."""
    return (
        f"sim/respawn: sim time {before:.4f} -> {after:.4f} s without outputs (objects "
        f"settling); spawned {', '.join(names)}; {scene_seed_text(seed)}"
    )


def scene_seed_text(seed: int | None) -> str:
    return "the cell's own draw" if seed is None else f"scene seed {seed}"


def camera_image_msg(image, camera: str, stamp: float) -> Image:
    """`camera/<camera>/image_raw` of a rendered RGB frame."""
    msg = numpy_to_image(image, "rgb8")
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = f"{camera}_optical_frame"
    return msg


class SimCellNode(Node):
    """ROS glue around `SimCellRunner` (see the module docstring)."""

    def __init__(self, **kwargs):
        super().__init__("sim_cell", **kwargs)
        cfg = declare_config(self, SimCellNodeConfig)
        self.config = cfg
        self.get_logger().info(f"parameters: {describe_config(cfg)}")
        with parameter_error("tasks_file", TaskRegistryError):
            self.registry = load_task_registry(cfg.tasks_file or None)
        self.oracle = SuccessOracle(self.registry)
        self.cell = SimCell(CellConfig(cell_id=cfg.cell_id), seed=cfg.seed)
        self._scene_seeds = list(cfg.scene_seeds)  # the seeds still to use, in order
        seed = self._next_scene_seed()
        names = self.cell.respawn(None if seed is None else np.random.default_rng(seed))
        self.get_logger().info(f"start-up scene: {', '.join(names)}; {scene_seed_text(seed)}")
        runner_cfg = RunnerConfig(
            mode=cfg.mode,
            camera_rate_hz=cfg.camera_rate_hz,
            cameras=tuple(cfg.cameras),
            camera_width=cfg.camera_width,
            camera_height=cfg.camera_height,
            joint_state_rate_hz=cfg.joint_state_rate_hz,
            clock_rate_hz=cfg.clock_rate_hz,
            oracle_rate_hz=cfg.oracle_rate_hz,
            settle_time=cfg.settle_time,
        )
        self.runner = SimCellRunner(self.cell, runner_cfg, self)
        self._joint_index = {name: i for i, name in enumerate(cfg.joint_names)}

        self._image_pubs = {
            n: self.create_publisher(Image, f"camera/{n}/image_raw", IMAGE_PUBLISH_QOS)
            for n in cfg.cameras
        }
        self._info_pubs = {
            n: self.create_publisher(CameraInfo, f"camera/{n}/camera_info", 10)
            for n in cfg.cameras
        }
        self._camera_info = {n: self._make_camera_info(n) for n in cfg.cameras}
        self._joint_pub = self.create_publisher(JointState, "iiwa/joint_states", 10)
        self._gripper_pub = self.create_publisher(GripperState, "gripper/state", 10)
        self._bin_pub = self.create_publisher(BinMotorState, "reset_bin/state", 10)
        self._oracle_pub = self.create_publisher(SimOracle, "sim/oracle", 10)
        self._clock_pub = (
            self.create_publisher(
                ClockMsg,
                cfg.clock_topic,
                QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
            )
            if cfg.publish_clock
            else None
        )
        self.create_subscription(JointTrajectory, "iiwa/joint_trajectory", self._on_trajectory, 10)
        self.create_subscription(GripperCommand, "gripper/command", self._on_gripper, 10)
        self.create_subscription(BinMotorCommand, "reset_bin/motor", self._on_bin_motor, 10)
        self.create_service(Trigger, "sim/respawn", self._on_respawn)
        # The loop runs on the steady clock: this node *makes* sim time, it must not wait on it.
        self._timer = self.create_timer(
            cfg.tick_period, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self.get_logger().info(
            f"cell {cfg.cell_id} ready ({cfg.mode}); objects: "
            f"{[self.cell.variants[i].name for i in self.cell.active_objects]}"
        )

    # ---------------------------------------------------------------------- loop & outputs
    def _tick(self) -> None:
        self.runner.tick()

    def on_clock(self, stamp: float) -> None:
        if self._clock_pub is not None:
            self._clock_pub.publish(ClockMsg(clock=_stamp(stamp)))

    def on_joint_state(self, stamp: float) -> None:
        cell = self.cell
        msg = joint_state_msg(cell, self.config.joint_names, stamp)
        self._joint_pub.publish(msg)
        self._gripper_pub.publish(gripper_state_msg(cell, stamp))
        motor = BinMotorState(angle=cell.hinge_angle(), velocity=cell.hinge_velocity())
        motor.header.stamp = msg.header.stamp
        self._bin_pub.publish(motor)

    def on_camera(self, stamp: float, name: str, image) -> None:
        msg = camera_image_msg(image, name, stamp)
        self._image_pubs[name].publish(msg)
        info = self._camera_info[name]
        info.header.stamp = msg.header.stamp
        self._info_pubs[name].publish(info)

    def on_oracle(self, stamp: float) -> None:
        result = self.oracle.evaluate(self.cell)
        counts = self.cell.count_objects()
        msg = SimOracle(
            task_names=list(self.registry.names),
            success=[bool(result.success[n]) for n in self.registry.names],
            objects_in_right_bin=counts["right_bin"],
            objects_in_left_bin=counts["left_bin"],
            objects_held=counts["held"],
            objects_lost=counts["lost"],
        )
        msg.header.stamp = _stamp(stamp)
        self._oracle_pub.publish(msg)

    def _make_camera_info(self, name: str) -> CameraInfo:
        cfg = self.config
        width, height = cfg.camera_width, cfg.camera_height
        model_name = name if name in CAMERA_NAMES else ROBOT_PREFIX + name  # wrist: on the robot
        fovy = math.radians(float(self.cell.model.cam_fovy[self.cell.model.camera(model_name).id]))
        f = 0.5 * height / math.tan(fovy / 2)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        info.header.frame_id = f"{name}_optical_frame"
        info.d = [0.0] * 5
        info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    # --------------------------------------------------------------------------- commands
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        current = self.cell.data.ctrl[self.cell.arm_act].copy()
        if not msg.points:
            self.runner.command_joint_trajectory([0.0], [current])  # hold (cancel)
            return
        unknown = [n for n in msg.joint_names if n not in self._joint_index]
        if unknown or len(set(msg.joint_names)) != len(msg.joint_names):
            self.get_logger().error(
                f"iiwa/joint_trajectory rejected: joint names {list(msg.joint_names)}; "
                f"expected a subset of {list(self.config.joint_names)}"
            )
            return
        columns = [self._joint_index[n] for n in msg.joint_names]
        times, positions = [], []
        for point in msg.points:
            if len(point.positions) != len(columns):
                self.get_logger().error(
                    "iiwa/joint_trajectory rejected: a point has "
                    f"{len(point.positions)} positions for {len(columns)} joints"
                )
                return
            target = current.copy()
            target[columns] = point.positions
            times.append(point.time_from_start.sec + point.time_from_start.nanosec * 1e-9)
            positions.append(target)
        try:
            self.runner.command_joint_trajectory(times, positions)
        except JointLimitError as exc:
            self.get_logger().warning(f"iiwa/joint_trajectory refused (joint limits): {exc}")
        except ValueError as exc:
            self.get_logger().error(f"iiwa/joint_trajectory rejected: {exc}")

    def _on_gripper(self, msg: GripperCommand) -> None:
        try:
            self.runner.command_gripper(msg.position, msg.max_effort)
        except ValueError as exc:
            self.get_logger().error(f"gripper/command rejected: {exc}")

    def _on_bin_motor(self, msg: BinMotorCommand) -> None:
        try:
            self.runner.command_bin_motor(msg.angle, msg.max_velocity)
        except ValueError as exc:
            self.get_logger().error(f"reset_bin/motor rejected: {exc}")

    def _next_scene_seed(self) -> int | None:
        return self._scene_seeds.pop(0) if self._scene_seeds else None

    def _on_respawn(self, request, response):
        before = self.cell.time
        seed = self._next_scene_seed()
        names = self.runner.respawn(seed)
        self.get_logger().info(respawn_log_line(before, self.cell.time, names, seed))
        response.success = True
        response.message = f"spawned: {', '.join(names)}; {scene_seed_text(seed)}"
        return response

    def destroy_node(self) -> None:
        self.cell.close()
        super().destroy_node()


def main(args=None) -> int:
    """Run the node until interrupted (exit code 2 on invalid parameters)."""
    return run_node(SimCellNode, "sim_cell_node", threads=1, args=args)


if __name__ == "__main__":
    sys.exit(main())
