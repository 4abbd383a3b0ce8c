"""Synthetic episode bags written the way the logger writes them, for the learner tests.

`write_episode_bag` uses `mtopt_core.episode_bag.EpisodeBagWriter` with the logger's topics
under a cell namespace: the three camera topics (subsampled frames during the episode, and the
newest frame of each camera after the last step, as the logger writes at finish),
`iiwa/joint_states`, `gripper/state`, per step `policy/observation` (the resized image the
policy acted on) just before `policy/step`, and `episode_info` last. It returns what it wrote
so tests can compare the decoded episode with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from mtopt_core.episode_bag import EpisodeBagWriter, make_typestore
from mtopt_core.tasks import TaskRegistry, load_task_registry

torch.set_num_threads(1)  # tiny nets: a second thread only slows a shared 2-core machine

STORE = make_typestore()
T = STORE.types
IMAGE = "sensor_msgs/msg/Image"
INFO = "mtopt_interfaces/msg/EpisodeInfo"
STEP = "mtopt_interfaces/msg/PolicyStep"
GRIPPER = "mtopt_interfaces/msg/GripperState"
JOINTS = "sensor_msgs/msg/JointState"
CAMERAS = ("overhead", "left_shoulder", "right_shoulder")
OBS_SIZE = 16
CAMERA_SHAPE = (24, 32)  # H, W: not square, so the final frame is centre-cropped too
SEC = 10**9


@pytest.fixture(scope="session")
def registry() -> TaskRegistry:
    return load_task_registry()


def _time(ns: int):
    return T["builtin_interfaces/msg/Time"](sec=ns // SEC, nanosec=ns % SEC)


def _header(ns: int):
    return T["std_msgs/msg/Header"](stamp=_time(ns), frame_id="")


def image_msg(pixels: np.ndarray, ns: int, encoding: str = "rgb8"):
    h, w, c = pixels.shape
    return T[IMAGE](
        header=_header(ns), height=h, width=w, encoding=encoding, is_bigendian=0,
        step=w * c, data=np.ascontiguousarray(pixels).reshape(-1),
    )  # fmt: skip


@dataclass
class WrittenEpisode:
    """What `write_episode_bag` put into a bag."""

    path: Path
    episode_id: str
    task: str
    observations: list[np.ndarray] = field(default_factory=list)  # (S, S, 3) per step
    actions: list[np.ndarray] = field(default_factory=list)
    gripper_closed: list[bool] = field(default_factory=list)  # per step, then the final one
    object_detected: list[bool] = field(default_factory=list)  # likewise
    height: list[float] = field(default_factory=list)
    final_frames: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> last frame
    task_names: list[str] = field(default_factory=list)
    sd_probabilities: list[float] = field(default_factory=list)
    oracle_success: list[bool] = field(default_factory=list)


def write_episode_bag(
    directory: Path,
    episode_id: str,
    registry: TaskRegistry,
    *,
    task: str = "lift-any",
    steps: int = 3,
    namespace: str = "/cell0",
    seed: int = 0,
    aborted: bool = False,
    success: dict[str, bool] | None = None,
    graded: bool = True,
    has_oracle: bool = True,
    reverse_task_names: bool = False,
    info_steps: int | None = None,
    skip_step_messages: int = 0,
    closed_by: str = "/cell0/collector",
) -> WrittenEpisode:
    """Write one complete episode bag `<directory>/<episode_id>` (see the module docstring).

    `success` sets the per-task outcome (SD probability 0.9 / 0.1 and oracle True / False;
    tasks not listed get probability 0.2 / oracle False). `info_steps` and
    `skip_step_messages` produce inconsistent bags. `closed_by` is who recorded it (the
    logger writes the collector's node name).
    """
    rng = np.random.default_rng(seed)
    success = success if success is not None else {task: True}
    names = list(registry.names)[::-1] if reverse_task_names else list(registry.names)
    out = WrittenEpisode(Path(directory) / episode_id, episode_id, task, task_names=names)
    out.sd_probabilities = [0.9 if success.get(n) else (0.1 if n in success else 0.2)
                            for n in names]  # fmt: skip
    out.oracle_success = [bool(success.get(n, False)) for n in names]
    ns = namespace

    def frame() -> np.ndarray:
        return rng.integers(0, 256, (*CAMERA_SHAPE, 3), dtype=np.uint8)

    with EpisodeBagWriter(directory, episode_id, typestore=STORE) as bag:
        t = SEC // 2
        for k in range(steps):
            # camera frames and states between steps (subsampled cameras, 50 Hz-ish states)
            for cam in CAMERAS:
                bag.write(f"{ns}/camera/{cam}/image_raw", IMAGE, t, image_msg(frame(), t))
            bag.write(f"{ns}/iiwa/joint_states", JOINTS, t + 1, T[JOINTS](
                header=_header(t), name=["a1"], position=np.array([0.1 * k]),
                velocity=np.zeros(1), effort=np.zeros(1)))  # fmt: skip
            closed, height = bool(k % 2), 0.05 + 0.01 * k
            detected = closed and k % 4 == 3
            bag.write(f"{ns}/gripper/state", GRIPPER, t + 2, T[GRIPPER](
                header=_header(t), position=0.0, effort=0.0, closed=closed,
                object_detected=detected, height=height))  # fmt: skip
            obs = rng.integers(0, 256, (OBS_SIZE, OBS_SIZE, 3), dtype=np.uint8)
            action = rng.uniform(-1, 1, 6).astype(np.float32)
            t += SEC // 10
            bag.write(f"{ns}/policy/observation", IMAGE, t, image_msg(obs, t - 5))
            if k >= skip_step_messages:
                bag.write(f"{ns}/policy/step", STEP, t + 3, T[STEP](
                    header=_header(t), episode_id=episode_id, step=k, task=task,
                    action=action, q_value=np.float32(np.nan), exploratory=True,
                    policy_kind="scripted_pick", gripper_closed=closed,
                    gripper_height=np.float32(height), object_detected=detected))  # fmt: skip
            out.observations.append(obs)
            out.actions.append(action)
            out.gripper_closed.append(closed)
            out.object_detected.append(detected)
            out.height.append(float(np.float32(height)))
            t += SEC // 2
        # after the episode: grading pose, final gripper state, newest frame of every camera
        final_closed, final_height = True, 0.31
        bag.write(f"{ns}/gripper/state", GRIPPER, t, T[GRIPPER](
            header=_header(t), position=0.0, effort=1.0, closed=final_closed,
            object_detected=True, height=final_height))  # fmt: skip
        out.gripper_closed.append(final_closed)
        out.object_detected.append(True)
        out.height.append(final_height)
        t += SEC // 5
        for cam in CAMERAS:
            out.final_frames[cam] = frame()
            bag.write(
                f"{ns}/camera/{cam}/image_raw", IMAGE, t, image_msg(out.final_frames[cam], t)
            )
        t += SEC // 100
        info = T[INFO](
            header=_header(t), episode_id=episode_id, cell_id=0, task=task,
            start_time=_time(0), policy_kind="scripted_pick", weights_version=-1,
            weights_sha256="", epsilon=np.float32(1.0),
            steps=steps if info_steps is None else info_steps, terminated=True,
            aborted=aborted, abort_reason="camera overhead stale for 1.3 s" if aborted else "",
            closed_by=closed_by, task_names=names,
            sd_probabilities=np.array(out.sd_probabilities if graded else [], np.float32),
            sd_model_version="sd-test" if graded else "", has_oracle=has_oracle,
            oracle_success=np.array(out.oracle_success if has_oracle else [], bool),
        )  # fmt: skip
        bag.write(f"{ns}/episode_info", INFO, t, info)
        bag.finish()
    return out


@pytest.fixture
def write_bag(registry):
    """write_bag(directory, episode_id, **kwargs) -> WrittenEpisode."""

    def write(directory, episode_id, **kwargs) -> WrittenEpisode:
        return write_episode_bag(Path(directory), episode_id, registry, **kwargs)

    return write


def truncate_bag(bag: Path) -> None:
    """Cut the bag's .mcap file in half (a copy interrupted mid-way, a damaged disk)."""
    (mcap,) = sorted(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])


@pytest.fixture
def truncate():
    """truncate(bag_dir): cut the bag's .mcap file in half."""
    return truncate_bag
