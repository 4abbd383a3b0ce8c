"""sim_cell_node in a subprocess over real DDS: topics, rates, commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from mtopt_interfaces.msg import (  # noqa: E402
    BinMotorCommand,
    BinMotorState,
    GripperCommand,
    GripperState,
    SimOracle,
)

pytestmark = pytest.mark.ros

CAMERAS = ("overhead", "left_shoulder", "right_shoulder")
JOINTS = [f"joint_a{i}" for i in range(1, 8)]
HOME = [0.0, -0.186, 0.0, -1.856, 0.0, 1.472, 0.0]


def _start_node(
    namespace: str, mode: str, camera_rate: float, joint_rate: float = 100.0, *extra: str
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "mtopt_sim.sim_cell_node",
        "--ros-args",
        "-r",
        f"__ns:={namespace}",
        "-p",
        f"mode:={mode}",
        "-p",
        f"camera_rate_hz:={camera_rate}",
        "-p",
        f"joint_state_rate_hz:={joint_rate}",
        "-p",
        "camera_width:=64",
        "-p",
        "camera_height:=64",
        "-p",
        f"clock_topic:={namespace}/clock",
        *extra,
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


class _Client:
    """Subscribes to everything the node publishes; records arrival wall times."""

    def __init__(self, namespace: str, cameras=CAMERAS):
        self.node = rclpy.create_node("sim_cell_test_client", namespace=namespace)
        self.lock = threading.Lock()
        self.images: dict[str, list[float]] = {c: [] for c in cameras}
        self.image_msgs: dict[str, Image] = {}
        self.infos: dict[str, CameraInfo] = {}
        self.joint_states: list[JointState] = []
        self.gripper: GripperState | None = None
        self.bin: BinMotorState | None = None
        self.clock: list[float] = []
        self.oracle: SimOracle | None = None
        for cam in cameras:
            self.node.create_subscription(
                Image, f"camera/{cam}/image_raw", lambda m, c=cam: self._on_image(c, m), 10
            )
            self.node.create_subscription(
                CameraInfo,
                f"camera/{cam}/camera_info",
                lambda m, c=cam: self.infos.__setitem__(c, m),
                10,
            )
        self.node.create_subscription(JointState, "iiwa/joint_states", self._on_joints, 50)
        self.node.create_subscription(
            GripperState, "gripper/state", lambda m: setattr(self, "gripper", m), 10
        )
        self.node.create_subscription(
            BinMotorState, "reset_bin/state", lambda m: setattr(self, "bin", m), 10
        )
        self.node.create_subscription(
            SimOracle, "sim/oracle", lambda m: setattr(self, "oracle", m), 10
        )
        self.node.create_subscription(
            Clock,
            "clock",
            self._on_clock,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT),
        )
        self.trajectory = self.node.create_publisher(JointTrajectory, "iiwa/joint_trajectory", 10)
        self.gripper_cmd = self.node.create_publisher(GripperCommand, "gripper/command", 10)
        self.motor_cmd = self.node.create_publisher(BinMotorCommand, "reset_bin/motor", 10)
        self.respawn = self.node.create_client(Trigger, "sim/respawn")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    def _on_image(self, cam: str, msg: Image) -> None:
        with self.lock:
            self.images[cam].append(time.monotonic())
            self.image_msgs[cam] = msg

    def _on_joints(self, msg: JointState) -> None:
        self.joint_states.append(msg)

    def _on_clock(self, msg: Clock) -> None:
        self.clock.append(msg.clock.sec + msg.clock.nanosec * 1e-9)

    def spin_until(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if condition():
                return True
        return False

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def send_trajectory(self, target: list[float], duration: float) -> None:
        msg = JointTrajectory(joint_names=JOINTS)
        sec = int(duration)
        msg.points = [
            JointTrajectoryPoint(
                positions=target,
                time_from_start=Duration(sec=sec, nanosec=int((duration - sec) * 1e9)),
            )
        ]
        self.trajectory.publish(msg)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _converged(client: _Client, target: list[float], tol: float) -> bool:
    if not client.joint_states:
        return False
    last = client.joint_states[-1]
    return all(abs(p - t) < tol for p, t in zip(last.position, target, strict=True))


def test_realtime_topics_rates_and_commands(ros):
    ns = f"/simtest{os.getpid()}"
    proc = _start_node(ns, "realtime", camera_rate=10.0)
    client = _Client(ns)
    try:
        ready = client.spin_until(
            lambda: (
                all(client.images[c] for c in CAMERAS)
                and client.joint_states
                and client.gripper is not None
                and client.bin is not None
                and client.clock
            ),
            timeout=60.0,
        )
        assert ready, f"node did not publish everything; output:\n{_stop(proc)}"
        # Camera rate over a 4 s window, per camera, within 10 % of the configured 10 Hz.
        client.spin_for(0.5)
        with client.lock:
            start = {c: len(client.images[c]) for c in CAMERAS}
        t0 = time.monotonic()
        client.spin_for(4.0)
        elapsed = time.monotonic() - t0
        with client.lock:
            rates = {c: (len(client.images[c]) - start[c]) / elapsed for c in CAMERAS}
        for cam, rate in rates.items():
            assert 9.0 <= rate <= 11.0, f"{cam} at {rate:.2f} Hz (want 10 +- 10 %): {rates}"
        # Image and camera_info content.
        img = client.image_msgs["overhead"]
        assert (img.encoding, img.width, img.height) == ("rgb8", 64, 64)
        assert len(img.data) == 64 * 64 * 3 and len(set(bytes(img.data))) > 10
        info = client.infos["overhead"]
        assert info.width == 64 and info.k[0] > 0 and info.header.frame_id.startswith("overhead")
        assert list(client.joint_states[-1].name) == JOINTS
        assert client.clock[-1] > client.clock[0]
        assert client.oracle is not None and len(client.oracle.success) == 12
        assert not any(client.oracle.success)  # nothing lifted or placed at start
        assert client.oracle.objects_in_right_bin > 0 and client.oracle.objects_lost == 0

        # A joint trajectory: joint_states converge to the target.
        target = [0.3, 0.1, -0.2, -1.6, 0.1, 1.2, 0.5]
        client.send_trajectory(target, 1.0)
        assert client.spin_until(lambda: _converged(client, target, 0.01), timeout=20.0), (
            f"joint states did not converge: {list(client.joint_states[-1].position)}"
        )
        # Gripper closes (nothing between the fingers -> fully closed, no object).
        opening = client.gripper.position
        client.gripper_cmd.publish(GripperCommand(position=0.0, max_effort=20.0))
        assert client.spin_until(
            lambda: client.gripper.closed and client.gripper.position < 0.005, timeout=10.0
        ), f"gripper did not close from {opening}: {client.gripper}"
        assert not client.gripper.object_detected
        # Bin motor moves the hinge.
        client.send_trajectory(HOME, 1.0)
        client.motor_cmd.publish(BinMotorCommand(angle=0.6, max_velocity=1.0))
        assert client.spin_until(lambda: abs(client.bin.angle - 0.6) < 0.02, timeout=10.0)
        # Respawn service answers.
        assert client.respawn.wait_for_service(timeout_sec=5.0)
        future = client.respawn.call_async(Trigger.Request())
        assert client.spin_until(future.done, timeout=10.0)
        assert future.result().success and "spawned" in future.result().message
    finally:
        client.close()
        output = _stop(proc)
    assert proc.returncode == 0, output


def test_fast_mode_runs_ahead_of_the_wall_clock_while_moving(ros):
    ns = f"/simfast{os.getpid()}"
    # Modest output rates: the point is the pacing, not the publishing cost on a busy machine.
    proc = _start_node(ns, "fast", camera_rate=2.0, joint_rate=50.0)
    client = _Client(ns)
    try:
        assert client.spin_until(lambda: client.joint_states and client.clock, timeout=60.0), (
            _stop(proc)
        )
        client.spin_for(0.3)
        target = [-0.4, 0.2, 0.1, -1.5, -0.1, 1.3, -0.4]
        sim0, wall0 = client.clock[-1], time.monotonic()
        client.send_trajectory(target, 6.0)
        assert client.spin_until(lambda: _converged(client, target, 0.01), timeout=30.0)
        sim_elapsed = client.clock[-1] - sim0
        wall_elapsed = time.monotonic() - wall0
        # The 6 s motion took 6 s of sim time, but (stepping flat out) less wall time; a
        # realtime node can never do that (its sim time follows the wall clock).
        assert sim_elapsed >= 5.5
        assert sim_elapsed > wall_elapsed, (sim_elapsed, wall_elapsed)
    finally:
        client.close()
        output = _stop(proc)
    assert proc.returncode == 0, output


def test_parameter_cameras_adds_the_wrist_camera(ros):
    """cameras:=[overhead, wrist]: the gripper's wrist camera is published (with its
    camera_info) for a policy that looks through it; cameras not listed are not."""
    ns = f"/simwrist{os.getpid()}"
    cameras = ("overhead", "wrist", "left_shoulder")
    proc = _start_node(ns, "fast", 20.0, 100.0, "-p", "cameras:=[overhead, wrist]")
    client = _Client(ns, cameras)
    try:
        assert client.spin_until(
            lambda: (
                client.images["overhead"] and client.images["wrist"] and client.infos.get("wrist")
            ),
            timeout=60.0,
        ), f"no wrist frames; output:\n{_stop(proc)}"
        client.spin_for(1.0)
        img = client.image_msgs["wrist"]
        assert (img.encoding, img.width, img.height) == ("rgb8", 64, 64)
        assert client.infos["wrist"].header.frame_id == "wrist_optical_frame"
        assert not client.images["left_shoulder"]
    finally:
        client.close()
        output = _stop(proc)
    assert proc.returncode == 0, output


def test_scene_seeds_give_the_evaluators_scenes_in_order(ros):
    """scene_seeds:=[a, b]: the start-up scene is seed a's, the first respawn seed b's (the
    objects `SimCell.respawn` draws from those seeds, as the in-process evaluator's scenes),
    and the next respawn the cell's own draw."""
    import numpy as np

    from mtopt_sim.cell import CellConfig, SimCell

    seeds = (4_294_967_296 + 7, 4_294_967_296 + 17)
    cell = SimCell(CellConfig())
    expected = [", ".join(cell.respawn(np.random.default_rng(seed))) for seed in seeds]
    cell.close()
    ns = f"/simscenes{os.getpid()}"
    scene_seeds = f"scene_seeds:=[{seeds[0]}, {seeds[1]}]"
    proc = _start_node(ns, "fast", 2.0, 50.0, "-p", "cell_id:=1", "-p", scene_seeds)
    client = _Client(ns)
    try:
        assert client.respawn.wait_for_service(timeout_sec=60.0), _stop(proc)
        answers = []
        for _ in range(2):
            future = client.respawn.call_async(Trigger.Request())
            assert client.spin_until(future.done, timeout=20.0)
            answers.append(future.result().message)
    finally:
        client.close()
        output = _stop(proc)
    assert proc.returncode == 0, output
    assert f"start-up scene: {expected[0]}; scene seed {seeds[0]}" in output, output[-3000:]
    assert answers[0] == f"spawned: {expected[1]}; scene seed {seeds[1]}", answers
    assert answers[1].endswith("; the cell's own draw"), answers
    assert f"spawned {expected[1]}; scene seed {seeds[1]}" in output  # the respawn log line
