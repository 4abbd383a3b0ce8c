"""Parameters of the policy and collector nodes: one dataclass each, the defaults of their ROS
parameters (`mtopt_bridge.params.declare_config`). Lengths in m, angles in rad, times in s."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from mtopt_bridge.params import ConfigError
from mtopt_core.action import ACTION_FRAMES
from mtopt_core.images import FULL_FRAME, check_roi

POLICY_KINDS = ("cem", "scripted_pick", "scripted_place", "random")


def _check_xy(name: str, value: tuple[float, ...], positive: bool = False) -> None:
    if len(value) != 2 or not all(math.isfinite(v) for v in value):
        raise ConfigError(f"parameter {name} must be 2 finite numbers, got {list(value)}")
    if positive and not all(v > 0 for v in value):
        raise ConfigError(f"parameter {name} must be 2 positive numbers, got {list(value)}")


def _check_finite_floats(config) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"parameter {f.name} must be finite, got {value}")


@dataclass(frozen=True)
class PolicyConfig:
    """policy_node parameters (ROS parameter names = field names)."""

    #: Task registry ("" = config/tasks.yaml or $MTOPT_TASKS_FILE): the Q-network's one-hot order.
    tasks_file: str = ""
    #: Camera whose `camera/<name>/image_raw` the policy sees.
    policy_camera: str = "overhead"
    #: Side of the square image the Q-network gets [px]; camera frames are resized to it.
    image_size: int = 64
    #: Region of interest of the camera frame the image is cut from: [x0, y0, x1, y1] as
    #: fractions of the frame's width and height (mtopt_core.images.policy_image); the ROI
    #: is then centre-cropped to a square and resized to image_size. [0, 0, 1, 1] = the
    #: whole frame. The learner must be given the same value (its policy_roi).
    policy_roi: tuple[float, ...] = FULL_FRAME
    #: Step limit of an episode whose goal says max_steps = 0. The seed's episodes take about
    #: 10 steps on average; a limit of 20 leaves room for a second attempt after a missed grasp.
    max_steps: int = 20
    #: Each step waits up to this long for an image and a gripper state newer than the end of
    #: the previous action; none by then aborts the episode ("camera overhead stale for 1.3 s").
    max_staleness_s: float = 1.0
    #: CEM episodes: probability per step of a random (exploratory) action instead of the argmax.
    epsilon: float = 0.1
    #: Fraction of episodes run by the scripted pick/place (by the task's skill). The rest run
    #: CEM over the loaded Q-network, or the random policy while no weights are loaded.
    scripted_fraction: float = 0.5
    #: Random actions (random policy, epsilon exploration): probability of the terminate bit.
    random_terminate_prob: float = 0.1
    #: Random actions keep the gripper's state; a closed gripper opens with this probability
    #: per step (a random open mostly drops what a close caught).
    random_gripper_toggle_prob: float = 0.1
    #: An open gripper closes only at or below this height above the bin floor [m], where the
    #: pads (about 2.5 cm either side of the grasp point) reach the centre of most resting
    #: objects (docs/results/episode_protocol.md); mid-air closes catch nothing...
    random_close_below_m: float = 0.06
    #: ... and there it closes with this probability per step.
    random_close_prob: float = 0.5
    #: Seeds episode mixing, exploration, scripted noise and start poses (-1 = from the OS).
    seed: int = -1
    #: Scripted policies add the seed's action and start noise (False: noise-free scripts).
    scripted_noise: bool = True
    #: A scripted pick first takes k random moves (gripper open, no terminate), k uniform in
    #: 0..this, then descends from where they left it: data that shows descend-and-close
    #: from off-script poses, where a learned policy often is (0 = the seed's script).
    scripted_prefix_steps: int = 0
    #: CEM (QT-Opt's defaults 64 / 6 / 2).
    cem_population: int = 64
    cem_elites: int = 6
    cem_iterations: int = 2
    #: torch CPU threads for inference.
    torch_threads: int = 1
    #: Largest weights file loaded [MB]; a larger one is refused before it is read.
    max_weights_mb: float = 64.0
    #: Directories weights may be loaded from: a WeightsUpdate's path must name a regular file
    #: inside one of them after symlinks and `..` are resolved (a path or symlink leading
    #: elsewhere is refused before the file is opened). Empty = no directory restriction (any
    #: absolute path; the node warns at start): then anyone who can publish on policy/weights
    #: and write a file anywhere the node can read chooses its weights. A cell should list the
    #: learner's checkpoint directory (<out_dir>/checkpoints) and the released models; the
    #: package README, section "Weights trust", says what else an operator must do.
    weights_dirs: tuple[str, ...] = ()
    #: Reading and verifying one weights file (locating, sha256, integrity, building the
    #: network) must finish within this long [s], else the update is refused and the old
    #: weights stay (a hung network file system cannot stall the node's weights updates).
    weights_load_timeout_s: float = 30.0
    #: Versions are ordered within a learner run (WeightsUpdate.run_id): an update of the
    #: newest weights' run must be newer by at most this many versions (training steps); a
    #: larger jump is refused, so a stray huge version cannot block the learner's later
    #: updates. An update of another run id starts that run's numbering afresh.
    max_version_jump: int = 10_000_000
    #: Skills whose episodes start above the left bin and whose scripted policy is the place;
    #: every other skill starts above the right bin with the scripted pick.
    place_skills: tuple[str, ...] = ("object_manipulation",)
    #: Bin geometry in the robot base frame (default: the MuJoCo cell's): centre (x, y) and
    #: inner half extents (x, y) of each bin [m], and the height of the bin floors [m].
    right_bin_center: tuple[float, ...] = (0.56, -0.155)
    right_bin_half: tuple[float, ...] = (0.16, 0.14)
    left_bin_center: tuple[float, ...] = (0.56, 0.155)
    left_bin_half: tuple[float, ...] = (0.13, 0.14)
    bin_floor_z: float = 0.01
    #: Start poses are this far inside the bin walls [m] and this high above the floor [m].
    start_margin: float = 0.04
    start_height: float = 0.20
    #: Before the start move, a gripper lower than this above the floor [m] first rises
    #: vertically to it (it may be down in a bin; the straight line could hit a wall).
    safe_height: float = 0.22
    #: Motion time of one policy step [s] (0 = the controller's default timing).
    step_duration_s: float = 0.0
    #: Speed of the pre-episode moves [m/s] and yaw rate [rad/s] (start_speed_mps 0 = the
    #: controller's default timing).
    start_speed_mps: float = 0.0
    start_yaw_speed_rps: float = 3.0
    #: A step whose translation and yaw are both below these is not sent to the arm.
    min_translation_m: float = 0.001
    min_yaw_rad: float = 0.005
    #: Per-step scale of the normalized action (mtopt_core.action.ActionSpec).
    max_translation_m: float = 0.05
    max_yaw_rad: float = 0.25
    #: Frame of the action's x/y translation: "base" (the robot base frame) or "tool" (the
    #: gripper's frame, turned by its yaw: a wrist camera sees the same move the same way at
    #: every yaw). The learner and evaluator need the same value as the cells that collected.
    action_frame: str = "base"
    #: Gripper targets of gripper/gripper_cmd: opening when open / closed [m], force [N] (0 =
    #: the controller's default).
    gripper_open_position: float = 0.10
    gripper_closed_position: float = 0.0
    gripper_max_effort: float = 0.0
    #: Waiting for iiwa/move_ee and gripper/gripper_cmd: server discovery, goal acceptance and
    #: results (beyond the controller's own move timeout) [s].
    server_timeout_s: float = 5.0
    result_timeout_s: float = 10.0
    #: Before an episode's first step, wait up to this long [s] until policy/step has a
    #: subscriber as seen by this publisher. DDS discovery is asymmetric: the logger may already
    #: see this publisher while it does not see the logger yet, and steps sent in that gap are
    #: lost to the (volatile) logger. Without a logger the episode starts after this wait.
    step_subscriber_wait_s: float = 1.0

    def validate(self) -> PolicyConfig:
        """Return self, or raise ConfigError naming the first bad parameter."""
        _check_finite_floats(self)
        if not self.policy_camera or "/" in self.policy_camera:
            raise ConfigError(
                f"parameter policy_camera must be a camera name, got {self.policy_camera!r}"
            )
        if not 8 <= self.image_size <= 1024:
            raise ConfigError(f"parameter image_size must be in 8..1024, got {self.image_size}")
        if self.action_frame not in ACTION_FRAMES:
            raise ConfigError(
                f"parameter action_frame must be one of {list(ACTION_FRAMES)}, "
                f"got {self.action_frame!r}"
            )
        try:
            check_roi(self.policy_roi, "parameter policy_roi")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.max_steps < 1:
            raise ConfigError(f"parameter max_steps must be >= 1, got {self.max_steps}")
        for name in (
            "epsilon",
            "scripted_fraction",
            "random_terminate_prob",
            "random_gripper_toggle_prob",
            "random_close_prob",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"parameter {name} must be in [0, 1], got {getattr(self, name)}")
        for name in (
            "max_staleness_s",
            "max_translation_m",
            "max_yaw_rad",
            "server_timeout_s",
            "result_timeout_s",
            "start_height",
            "start_yaw_speed_rps",
            "weights_load_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"parameter {name} must be > 0, got {getattr(self, name)}")
        for name in (
            "step_duration_s",
            "start_speed_mps",
            "min_translation_m",
            "min_yaw_rad",
            "gripper_max_effort",
            "start_margin",
            "safe_height",
            "gripper_closed_position",
            "step_subscriber_wait_s",
            "random_close_below_m",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"parameter {name} must be >= 0, got {getattr(self, name)}")
        if self.gripper_open_position <= self.gripper_closed_position:
            raise ConfigError(
                "parameter gripper_open_position must be above gripper_closed_position, got "
                f"{self.gripper_open_position} <= {self.gripper_closed_position}"
            )
        if not (math.isfinite(self.max_weights_mb) and self.max_weights_mb > 0):
            raise ConfigError(
                f"parameter max_weights_mb must be a number > 0, got {self.max_weights_mb}"
            )
        for item in self.weights_dirs:
            if not item.strip() or not os.path.isabs(os.path.expanduser(item)):
                raise ConfigError(
                    f"parameter weights_dirs must list absolute directories, got {item!r}"
                )
        for name in (
            "cem_population",
            "cem_elites",
            "cem_iterations",
            "torch_threads",
            "max_version_jump",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"parameter {name} must be >= 1, got {getattr(self, name)}")
        if self.cem_elites > self.cem_population:
            raise ConfigError(
                f"parameter cem_elites ({self.cem_elites}) must not exceed cem_population "
                f"({self.cem_population})"
            )
        if self.seed < -1:
            raise ConfigError(f"parameter seed must be >= -1, got {self.seed}")
        if not 0 <= self.scripted_prefix_steps < self.max_steps:
            raise ConfigError(
                f"parameter scripted_prefix_steps must be in 0..max_steps-1 "
                f"({self.max_steps - 1}), got {self.scripted_prefix_steps}"
            )
        _check_xy("right_bin_center", self.right_bin_center)
        _check_xy("left_bin_center", self.left_bin_center)
        _check_xy("right_bin_half", self.right_bin_half, positive=True)
        _check_xy("left_bin_half", self.left_bin_half, positive=True)
        for side in ("right", "left"):
            half = getattr(self, f"{side}_bin_half")
            if min(half) <= self.start_margin:
                raise ConfigError(
                    f"parameter start_margin ({self.start_margin}) leaves no room in the "
                    f"{side} bin (half extents {list(half)})"
                )
        return self


@dataclass(frozen=True)
class CollectorConfig:
    """collector_node parameters (ROS parameter names = field names)."""

    #: Robot cell index: in episode ids, EpisodeInfo and CollectorStatus.
    cell_id: int = 0
    #: Task registry ("" = config/tasks.yaml or $MTOPT_TASKS_FILE).
    tasks_file: str = ""
    #: Episodes to collect, then exit 0 (0 = run until stopped).
    episodes: int = 0
    #: Seeds the task choice (-1 = from the OS).
    seed: int = -1
    #: Relative task weights as "task=weight" (e.g. "lift-any=3"); unlisted tasks weigh 1,
    #: weight 0 never commands a task. Lift and place tasks are drawn separately (sequencing).
    task_weights: tuple[str, ...] = ()
    #: Skill of the lift (pick) tasks and of the place tasks (pick -> place sequencing).
    lift_skill: str = "object_acquisition"
    place_skill: str = "object_manipulation"
    #: Task whose success after a lift episode means "something is held" (next: a place task).
    held_task: str = "lift-any"
    #: P(success) at or above which the SD grade counts as a success.
    success_threshold: float = 0.5
    #: Call sd/grade on the final images (unavailable/failing SD: the episode is logged ungraded).
    grade: bool = True
    #: Without an SD grade, sequence by the simulator's oracle (simulation only).
    use_oracle_for_sequencing: bool = True
    #: Without SD and oracle, sequence by the gripper's object detection.
    use_gripper_for_sequencing: bool = True
    #: Read `sim/oracle` into EpisodeInfo's oracle labels (simulation).
    use_oracle: bool = True
    #: Steps per episode sent in the RunEpisode goal (0 = the policy's default).
    max_steps: int = 0
    #: RunEpisode policy_kind ("" = the policy's configured mix).
    policy_kind: str = ""
    #: Bin reset every this many episodes (0 = only when the right bin is found empty).
    reset_every: int = 10
    #: Also reset when the oracle reports an empty right bin (needs SimOracle counts).
    reset_when_empty: bool = True
    #: Simulation: call sim/respawn when the right bin is still empty after a reset.
    respawn_when_empty: bool = True
    #: Simulation, with respawn_when_empty: respawn after a reset when the right bin holds
    #: fewer objects than this (1 = only when empty). The bin reset only dumps the left bin, so
    #: objects knocked onto the table never come back, and long runs otherwise end up picking
    #: from a nearly empty bin.
    respawn_below: int = 1
    #: While a bin reset fails, collection pauses and the reset is retried this often [s].
    retry_period_s: float = 5.0
    #: After the episode, move the arm to the iiwa controller's present pose (`iiwa/present`:
    #: the gripper and what it holds close to the right_shoulder camera, the bins visible to the
    #: others) before the final images are taken for the SD and the oracle. A failed move is
    #: logged as a warning; the episode is graded and logged anyway.
    present_before_grading: bool = True
    #: After the episode ends (and the present move), wait this long before the final images
    #: and the oracle [s] (released objects come to rest).
    final_settle_s: float = 0.2
    #: Waits for the final camera images / a fresh oracle after the episode [s].
    final_image_timeout_s: float = 2.0
    oracle_timeout_s: float = 1.0
    #: Before an episode every camera must have sent a frame within this long [s].
    input_timeout_s: float = 1.0
    #: Cameras whose final images are graded, in GradeEpisode order.
    camera_names: tuple[str, ...] = ("overhead", "left_shoulder", "right_shoulder")
    #: Timeouts of service calls and action goals [s] (each call is retried `call_retries`
    #: times: a freshly restarted node may not answer for a while).
    service_timeout_s: float = 5.0
    call_retries: int = 2
    grade_timeout_s: float = 10.0
    episode_timeout_s: float = 120.0
    #: Longest silence of a running episode [s]: no step feedback from the policy for this
    #: long means its node stopped (a respawned policy does not know the goal), so the episode
    #: is aborted at once instead of after `episode_timeout_s`.
    episode_silence_s: float = 30.0
    #: Wait for the reply to a probe goal of policy/run_episode [s]; unanswered probes are
    #: resent every `wait_period_s` before the first goal (and after a goal got no reply).
    probe_timeout_s: float = 1.0
    reset_timeout_s: float = 30.0
    home_timeout_s: float = 20.0
    present_timeout_s: float = 20.0
    #: While something the cell needs is missing, re-check this often [s].
    wait_period_s: float = 0.5
    #: CollectorStatus publishing period [s].
    status_period_s: float = 1.0

    def validate(self) -> CollectorConfig:
        """Return self, or raise ConfigError naming the first bad parameter."""
        _check_finite_floats(self)
        if self.cell_id < 0:
            raise ConfigError(f"parameter cell_id must be >= 0, got {self.cell_id}")
        if self.episodes < 0:
            raise ConfigError(f"parameter episodes must be >= 0, got {self.episodes}")
        if self.seed < -1:
            raise ConfigError(f"parameter seed must be >= -1, got {self.seed}")
        if self.respawn_below < 0:
            raise ConfigError(f"parameter respawn_below must be >= 0, got {self.respawn_below}")
        if self.reset_every < 0:
            raise ConfigError(f"parameter reset_every must be >= 0, got {self.reset_every}")
        if self.max_steps < 0:
            raise ConfigError(f"parameter max_steps must be >= 0, got {self.max_steps}")
        if self.call_retries < 0:
            raise ConfigError(f"parameter call_retries must be >= 0, got {self.call_retries}")
        if self.policy_kind and self.policy_kind not in POLICY_KINDS:
            raise ConfigError(
                f"parameter policy_kind must be '' or one of {POLICY_KINDS}, got "
                f"{self.policy_kind!r}"
            )
        if not 0.0 < self.success_threshold < 1.0:
            raise ConfigError(
                f"parameter success_threshold must be in (0, 1), got {self.success_threshold}"
            )
        for name in (
            "retry_period_s",
            "final_image_timeout_s",
            "oracle_timeout_s",
            "input_timeout_s",
            "service_timeout_s",
            "grade_timeout_s",
            "episode_timeout_s",
            "episode_silence_s",
            "probe_timeout_s",
            "reset_timeout_s",
            "home_timeout_s",
            "present_timeout_s",
            "wait_period_s",
            "status_period_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"parameter {name} must be > 0, got {getattr(self, name)}")
        if self.final_settle_s < 0:
            raise ConfigError(f"parameter final_settle_s must be >= 0, got {self.final_settle_s}")
        if len(self.camera_names) != 3 or len(set(self.camera_names)) != 3:
            raise ConfigError(
                "parameter camera_names must name the 3 cameras of GradeEpisode (overhead, "
                f"left_shoulder, right_shoulder order), got {list(self.camera_names)}"
            )
        for item in self.task_weights:
            name, sep, weight = item.partition("=")
            try:
                ok = bool(sep and name.strip()) and float(weight) >= 0
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(
                    f"parameter task_weights: {item!r} is not 'task=weight' with weight >= 0"
                )
        return self

    def parsed_task_weights(self) -> dict[str, float]:
        """task_weights as {task: weight}."""
        out = {}
        for item in self.task_weights:
            name, _, weight = item.partition("=")
            out[name.strip()] = float(weight)
        return out
