"""One simulated cell collecting episodes in-process: the cell's own collector and policy logic
over the gym env, without DDS. What each worker of `mtopt-sim-collect` runs.

On a ROS cell an episode spans nodes: `collector_node` runs `mtopt_policy.collector.
CollectorLoop` (task choice with pick -> place sequencing, bin resets and respawns, the present
move, settle, grade, logging), `policy_node` plans with `mtopt_policy.policy.EpisodePlanner`
(scripted / random / CEM with epsilon on the newest verified weights, the start pose) and runs
the episode with `EpisodeRunner` (the protocol's start and steps, `mtopt_policy.protocol`),
`logger_node` writes the bag. Here the same classes run in one process over small ports:

* `InProcessCell` is the collector's `CollectorPort`: `run_episode` does what the policy node
  does for a `policy/run_episode` goal; `present`, `oracle`, `reset_bin`, `respawn` act on the
  simulated cell (`mtopt_sim.env.MTOptCell`); the bag is written by `CellBagWriter` (the
  logger's recorder, recording as `mtopt-sim-collect`, the bags' `closed_by`); with an SD
  checkpoint, `mtopt_sd.grader.Grader` (the SD node's) grades.
* `EnvCellPort` is the policy's `CellPort`: the arm and gripper goals go to the env's
  `SimController` (the arm controller node's planning, monitoring and holding, in simulated
  time), so an episode here moves as through the ROS graph and has the physics of
  `MTOptCell.reset` / `step` for the same actions; observations are rendered on demand.
* `WeightsFile` loads `--weights` into the planner's `WeightsSlot` (verified exactly like a
  `WeightsUpdate` on the policy node) and reloads it between episodes when a learner rewrites
  the file (its `.sha256` sidecar changes).
* `BulkWorker` owns one `InProcessCell` and logs a given number of episodes at a time (a spawn
  process or a Ray actor holds it).

Everything a worker needs is in a picklable `WorkerSpec`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtopt_core.action import ActionSpec
from mtopt_core.checkpoint import CheckpointError, read_checkpoint, sidecar_path
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_logger.recorder import RecorderError
from mtopt_policy.collector import (
    CollectorError,
    CollectorLoop,
    EpisodeResult,
    EpisodeSummary,
    Grade,
    OracleReading,
    StatusSnapshot,
    TaskSequencer,
    align_to_registry,
    task_success,
)
from mtopt_policy.collector_node import GRADE_FIELDS, episode_info_msg
from mtopt_policy.config import CollectorConfig, PolicyConfig
from mtopt_policy.policy import (
    Decision,
    EpisodePlan,
    EpisodeRunner,
    MoveResult,
    Observation,
    WeightsRefused,
    make_planner,
)
from mtopt_policy.policy_node import policy_step_msg
from mtopt_policy.protocol import EpisodeProtocol
from mtopt_sim.bag_writer import CellBagWriter
from mtopt_sim.cell import CellConfig
from mtopt_sim.env import EnvConfig, MTOptCell
from mtopt_sim.guided import GUIDED_AIMS, GuidedConfig, GuidedPick, object_category
from mtopt_sim.robot import ROS_JOINT_NAMES
from mtopt_sim.sim_cell_node import camera_image_msg, gripper_state_msg, joint_state_msg
from mtopt_sim.sim_params import sim_collector_config, sim_policy_config

log = logging.getLogger("mtopt_sim.bulk")

CAMERA_FRAMES = ("step", "final")
#: After this many episodes in a row that could not be logged, the worker gives up.
MAX_LOGGING_FAILURES = 3


class BulkCollectError(RuntimeError):
    """Bulk collection cannot go on (bag writing keeps failing, weights refused, ...)."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs; crosses to spawn processes and Ray actors by pickling."""

    cell_id: int  # namespace /cell<cell_id>, EpisodeInfo.cell_id, the cell's look
    out_dir: str
    #: Seeds the scene, the policy and the task choice (numpy SeedSequence entropy).
    seed_entropy: tuple[int, ...]
    policy: PolicyConfig = field(default_factory=sim_policy_config)
    collector: CollectorConfig = field(default_factory=sim_collector_config)
    camera_size: int = 64  # side of the three camera frames in the bag [px]
    camera_frames: str = "step"  # "step": every policy step + the final frames; "final"
    weights: str = ""  # Q-network checkpoint ("" = none: scripted / random episodes)
    weights_sha256: str = ""  # "" = read the checkpoint's .sha256 sidecar
    sd_checkpoint: str = ""  # success detector grading the final images ("" = none)
    min_free_disk_gb: float = 1.0
    torch_threads: int = 1
    #: P(guided pick) per lift episode (`mtopt_sim.guided`), before the planner's own mix.
    guided_fraction: float = 0.0
    guided_noise: float = GuidedConfig.noise  # its action noise (normalized units)
    guided_decoy_fraction: float = 0.0  # P(a guided pick is a decoy) (`mtopt_sim.guided`)
    guided_aim: str = "commanded"  # `mtopt_sim.guided.GUIDED_AIMS`
    #: P(a lift draw instead grasps with the privileged noise-free pick, unlogged, and runs a
    #: place task holding what it grasped): more place data than lifts alone feed (sim only).
    place_start_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.cell_id < 0:
            raise ValueError(f"cell_id must be >= 0, got {self.cell_id}")
        if self.camera_frames not in CAMERA_FRAMES:
            raise ValueError(
                f"camera_frames must be one of {CAMERA_FRAMES}, got {self.camera_frames!r}"
            )
        if not 8 <= self.camera_size <= 640:
            raise ValueError(f"camera_size must be in 8..640, got {self.camera_size}")
        if not 0.0 <= self.guided_fraction <= 1.0:
            raise ValueError(f"guided_fraction must be in [0, 1], got {self.guided_fraction}")
        if not 0.0 <= self.guided_decoy_fraction <= 1.0:
            raise ValueError(
                f"guided_decoy_fraction must be in [0, 1], got {self.guided_decoy_fraction}"
            )
        if self.guided_aim not in GUIDED_AIMS:
            raise ValueError(f"guided_aim must be one of {GUIDED_AIMS}, got {self.guided_aim!r}")
        if not 0.0 <= self.place_start_fraction <= 1.0:
            raise ValueError(
                f"place_start_fraction must be in [0, 1], got {self.place_start_fraction}"
            )


class GraspedPlaceStarts(TaskSequencer):
    """The collector's task choice, except that a lift draw becomes, with P = `fraction`, a
    privileged grasp (`grasp()`: True when something is held) followed by a place task.

    On a cell a place episode only follows a lift that held something, so place data grows with
    the lift success rate (a few % of the episodes early on); in simulation the noise-free pick
    can hand the arm an object the way the evaluator sets up its place scenes."""

    def __init__(
        self,
        config: CollectorConfig,
        registry: TaskRegistry,
        rng: np.random.Generator,
        fraction: float,
        draw_rng: np.random.Generator,
        grasp: Callable[[], bool],
    ):
        super().__init__(
            registry, config.lift_skill, config.place_skill, config.parsed_task_weights(), rng
        )
        self.fraction, self.draw_rng, self.grasp = fraction, draw_rng, grasp
        self.grasped = False  # the last task drawn starts from a privileged grasp

    def next_task(self) -> str:
        self.grasped = False
        if not self.holding and self.draw_rng.random() < self.fraction and self.grasp():
            self.holding = self.grasped = True
        return super().next_task()


def env_config(
    policy: PolicyConfig, collector: CollectorConfig, cell_id: int, camera_size: int
) -> EnvConfig:
    """The gym env of a cell whose policy and collector nodes run these parameters: the same
    policy camera, frame size, region of interest, image size, action scale and episode
    protocol (`mtopt_policy.protocol`)."""
    protocol = EpisodeProtocol.from_configs(policy, collector)
    return EnvConfig(
        cell=CellConfig(cell_id=cell_id),
        image_size=policy.image_size,
        policy_camera=policy.policy_camera,
        policy_roi=tuple(policy.policy_roi),
        policy_frame_size=camera_size,
        max_steps=protocol.max_steps,
        action_spec=ActionSpec(policy.max_translation_m, policy.max_yaw_rad),
        action_frame=policy.action_frame,
        tasks_file=policy.tasks_file or None,
        final_settle_time=protocol.settle_s,
        present_before_grading=protocol.present_before_grading,
        place_skills=protocol.place_skills,
        min_translation_m=protocol.min_translation_m,
        min_yaw_rad=protocol.min_yaw_rad,
        safe_height=protocol.safe_height,
        step_duration_s=policy.step_duration_s,
        start_speed_mps=policy.start_speed_mps,
        start_yaw_speed_rps=policy.start_yaw_speed_rps,
    )


class WeightsFile:
    """A Q-network checkpoint file fed to a `WeightsSlot` as the policy node feeds a
    `WeightsUpdate`: version = the checkpoint's training step, sha256 = `expected_sha256` or
    the file's `.sha256` sidecar (written by every checkpoint save; the learner announces the
    same hash). `poll` offers the file again whenever it changed."""

    def __init__(self, path: str | os.PathLike, expected_sha256: str = ""):
        self.path = Path(path)
        self.expected_sha256 = expected_sha256.strip().lower()
        self._key: tuple[int, int, int] | None = None

    def _stat_key(self) -> tuple[int, int, int] | None:
        watched = self.path if self.expected_sha256 else sidecar_path(self.path)
        try:
            st = watched.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def sha256(self) -> str:
        if self.expected_sha256:
            return self.expected_sha256
        sidecar = sidecar_path(self.path)
        try:
            return sidecar.read_text().split()[0].lower()
        except (OSError, IndexError):
            raise WeightsRefused(
                f"no sha256 for {self.path}: its sidecar {sidecar.name} is missing or empty "
                "(give the hash explicitly)"
            ) from None

    def poll(self, slot) -> Any:
        """Offer the file to `slot` if it changed since the last poll; returns the loaded
        weights, or None when unchanged. Raises WeightsRefused (the slot keeps its weights)."""
        key = self._stat_key()
        if key is not None and key == self._key:
            return None
        self._key = key
        sha = self.sha256()
        try:
            version = read_checkpoint(self.path, sha).step
        except CheckpointError as exc:
            raise WeightsRefused(exc.reason) from None
        return slot.offer(str(self.path), version, sha, slot.task_names)


def worker_seeds(entropy: tuple[int, ...]) -> tuple[int, int, int]:
    """Independent seeds of the scene, the policy node and the collector node."""
    scene, policy, collector = np.random.SeedSequence(list(entropy)).generate_state(3)
    return int(scene), int(policy % (2**31)), int(collector % (2**31))


class InProcessCell:
    """The `CollectorPort` of one simulated cell in this process (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, registry: TaskRegistry | None = None):
        import torch

        torch.set_num_threads(spec.torch_threads)
        self.spec = spec
        self.registry = registry or load_task_registry(spec.policy.tasks_file or None)
        self.names = tuple(self.registry.names)
        scene_seed, policy_seed, collector_seed = worker_seeds(spec.seed_entropy)
        policy_cfg = dataclasses.replace(spec.policy, seed=policy_seed).validate()
        self.env = MTOptCell(
            env_config(policy_cfg, spec.collector, spec.cell_id, spec.camera_size),
            registry=self.registry,
        )
        self.env.reset(seed=scene_seed)  # the first scene
        self.cell = self.env.cell
        self.planner = make_planner(policy_cfg, self.registry)
        # Its own stream: the guided share changes no other draw of the planner.
        self.guided_rng = np.random.default_rng([policy_seed, 1])
        self.place_start_rng = np.random.default_rng([policy_seed, 3])
        self.runner = EpisodeRunner(EnvCellPort(self), policy_cfg)
        self.weights = WeightsFile(spec.weights, spec.weights_sha256) if spec.weights else None
        if self.weights is not None:
            try:
                self.weights.poll(self.planner.weights)
            except WeightsRefused as exc:
                raise BulkCollectError(f"weights {spec.weights} refused: {exc.reason}") from None
        self.grader = None
        if spec.sd_checkpoint:
            from mtopt_sd.grader import Grader

            self.grader = Grader(spec.sd_checkpoint, self.names)
        collector_cfg = dataclasses.replace(
            spec.collector,
            cell_id=spec.cell_id,
            seed=collector_seed,
            episodes=0,  # `target` decides when to stop
            grade=self.grader is not None,
        ).validate()
        cameras = tuple(collector_cfg.camera_names)
        if spec.policy.policy_camera not in cameras:
            cameras += (spec.policy.policy_camera,)
        self.bag = CellBagWriter(spec.out_dir, spec.cell_id, spec.min_free_disk_gb, cameras)
        self.loop = CollectorLoop(
            collector_cfg, self.registry, self, np.random.default_rng(collector_seed)
        )
        if spec.place_start_fraction > 0:
            self.loop.sequencer = GraspedPlaceStarts(
                collector_cfg, self.registry, self.loop.sequencer.rng,
                fraction=spec.place_start_fraction,
                draw_rng=np.random.default_rng([policy_seed, 2]),
                grasp=self._privileged_grasp,
            )  # fmt: skip
        self.target = 0  # CollectorLoop runs while fewer episodes than this are logged
        self.records: list[dict[str, Any]] = []
        self.status: StatusSnapshot | None = None
        self.timing: dict[str, Any] = {}
        self._failures = 0
        self._fatal: str | None = None
        self._final: dict[str, Any] | None = None  # final camera frames of this episode

    # -- what the worker calls -------------------------------------------------------------
    def collect(self, episodes: int) -> list[dict[str, Any]]:
        """Run the collector loop until `episodes` more episodes are logged; returns their
        records. Raises BulkCollectError when the cell cannot go on."""
        self.target = self.loop.stats.logged + episodes
        self.records = []
        self.loop.run()
        if self._fatal is not None:
            raise BulkCollectError(self._fatal)
        return self.records

    def close(self) -> None:
        dropped = self.bag.abort()
        if dropped is not None:
            log.warning("cell %d: discarded unfinished episode %s", self.spec.cell_id, dropped)
        self.env.close()

    # -- CollectorPort: state ----------------------------------------------------------------
    def ok(self) -> bool:
        return self._fatal is None and self.loop.stats.logged < self.target

    def missing_inputs(self) -> list[str]:
        return []  # every input is computed on demand

    def sleep(self, seconds: float) -> bool:
        self.cell.advance(seconds)  # waiting on a cell = letting its sim time run
        return True

    def log(self, level: str, message: str) -> None:
        levels = {"error": logging.ERROR, "warn": logging.WARNING}
        log.log(levels.get(level, logging.DEBUG), "cell %d: %s", self.spec.cell_id, message)

    def publish_status(self, snapshot: StatusSnapshot) -> None:
        self.status = snapshot

    def publish_timing(self, timing: dict[str, Any]) -> None:
        self.timing = timing

    # -- CollectorPort: logging --------------------------------------------------------------
    def _logging_failed(self, what: str, exc: Exception) -> CollectorError:
        self._failures += 1
        if self._failures >= MAX_LOGGING_FAILURES:
            self._fatal = f"cell {self.spec.cell_id}: {self._failures} episodes in a row not "
            self._fatal += f"logged; last: {what}: {exc}"
        return CollectorError(str(exc))

    def start_logging(self, episode_id: str, task: str) -> None:
        self._final = None
        try:
            self.bag.start(episode_id)
        except RecorderError as exc:
            raise self._logging_failed("logger/start", exc) from None

    def finish_logging(self, summary: EpisodeSummary) -> str:
        """Final gripper/arm state and camera frames (after present and settle), then the
        EpisodeInfo; returns the bag path."""
        stamp = self.cell.time
        try:
            self.bag.write("iiwa/joint_states", joint_state_msg(self.cell, ROS_JOINT_NAMES, stamp))
            self.bag.write("gripper/state", gripper_state_msg(self.cell, stamp))
            for camera, msg in self._final_frames().items():
                self.bag.write(f"camera/{camera}/image_raw", msg)
            path = self.bag.finish(episode_info_msg(summary))
        except RecorderError as exc:
            raise self._logging_failed("logger/finish", exc) from None
        self._failures = 0
        cfg = self.loop.config
        success = task_success(
            summary.task, self.names, summary.grade, summary.oracle, cfg.success_threshold
        )
        r = summary.result
        self.records.append(
            {
                "episode_id": summary.episode_id,
                "cell_id": summary.cell_id,
                "task": summary.task,
                "policy_kind": r.policy_kind,
                "steps": r.steps,
                "terminated": r.terminated,
                "aborted": r.aborted,
                "success": success,
                "grasped_start": bool(getattr(self.loop.sequencer, "grasped", False)),
                "bag": str(path),
            }
        )
        return str(path)

    # -- CollectorPort: the episode ------------------------------------------------------------
    def run_episode(self, episode_id: str, task: str) -> EpisodeResult:
        """What `policy/run_episode` does on the policy node: install newer weights, plan,
        run the episode with `EpisodeRunner` (the protocol's start and steps)."""
        cfg = self.loop.config
        if self.weights is not None:
            try:
                loaded = self.weights.poll(self.planner.weights)
            except WeightsRefused as exc:
                log.warning("cell %d: new weights refused: %s", self.spec.cell_id, exc.reason)
            else:
                if loaded is not None:
                    log.info("cell %d: weights version %d", self.spec.cell_id, loaded.version)
        kind = cfg.policy_kind
        guided = (
            not kind
            and self.planner.start_bin(task) == "right"
            and self.guided_rng.random() < self.spec.guided_fraction
        )
        try:
            # A guided pick starts where random and CEM episodes start (the uniform draw).
            plan = self.planner.plan(episode_id, task, cfg.max_steps, "random" if guided else kind)
        except ValueError as exc:  # as policy_node: the goal is aborted with the reason
            return EpisodeResult(aborted=True, reason=str(exc))
        if guided:
            guide = GuidedConfig(
                noise=self.spec.guided_noise, decoy_fraction=self.spec.guided_decoy_fraction
            )
            plan.source = GuidedPick(
                self.cell, self.guided_rng, self.planner.spec, guide,
                action_frame=self.planner.config.action_frame,
                category=(
                    object_category(self.registry, task)
                    if self.spec.guided_aim == "commanded" else None
                ),
            )  # fmt: skip
        outcome = self.runner.run(plan)
        return EpisodeResult(
            steps=outcome.steps,
            terminated=outcome.terminated,
            aborted=outcome.aborted,
            reason=outcome.reason,
            policy_kind=plan.kind,
            weights_version=plan.weights_version,
            weights_sha256=plan.weights_sha256,
            epsilon=plan.epsilon,
        )

    def record_step(self, plan: EpisodePlan, step: int, decision: Decision, obs: Observation):
        """What the logger records of one step: camera frames (`camera_frames` "step"), the
        arm and gripper state, the observation the policy acted on and its PolicyStep."""
        stamp = self.cell.time
        bag = self.bag
        if self.spec.camera_frames == "step":
            for camera, image in self._render_cameras().items():
                bag.write(f"camera/{camera}/image_raw", camera_image_msg(image, camera, stamp))
        bag.write("iiwa/joint_states", joint_state_msg(self.cell, ROS_JOINT_NAMES, stamp))
        bag.write("gripper/state", gripper_state_msg(self.cell, stamp))
        bag.write("policy/observation", obs.image_msg)
        msg = policy_step_msg(plan, step, decision, obs)
        msg.header.stamp = obs.image_msg.header.stamp
        bag.write("policy/step", msg)

    def _render_cameras(self) -> dict[str, np.ndarray]:
        """The logger's cameras, and the policy camera when it is another (e.g. the wrist
        camera): the learner reads the episode's final observation from its topic."""
        return self.cell.render_cameras(self.spec.camera_size, self.bag.cameras)

    def _final_frames(self) -> dict[str, Any]:
        """The cameras' frames of the current (final) state, rendered once per episode: the
        images graded and the ones written to the bag."""
        if self._final is None:
            stamp = self.cell.time
            self._final = {
                camera: camera_image_msg(image, camera, stamp)
                for camera, image in self._render_cameras().items()
            }
        return self._final

    # -- CollectorPort: the cell -------------------------------------------------------------
    def present(self) -> None:
        self.env.present()

    def go_home(self) -> None:
        self.cell.go_home()

    def reset_bin(self) -> None:
        self.env.reset_bins()

    def respawn(self) -> bool:
        self.env.respawn()
        return True

    def gripper_holding(self) -> bool | None:
        return bool(self.cell.gripper_status().object_detected)

    def _privileged_grasp(self) -> bool:
        """Grasp an object of the current scene as the evaluator does before a place task
        (not an episode: nothing is logged)."""
        from mtopt_sim.scripted import privileged_grasp

        return privileged_grasp(self.env, self.place_start_rng, self.loop.config.held_task)

    def oracle(self, after: float) -> OracleReading | None:
        result = self.env.evaluate_oracle()
        success = [bool(result.success[name]) for name in self.names]
        return OracleReading(success, self.cell.count_objects()["right_bin"])

    # -- CollectorPort: the success detector -----------------------------------------------------
    def sd_available(self) -> bool:
        return self.grader is not None

    def final_images(self, after: float) -> tuple[dict[str, Any] | None, str]:
        frames = self._final_frames()
        cameras = self.loop.config.camera_names
        return {f: frames[c] for f, c in zip(GRADE_FIELDS, cameras, strict=True)}, ""

    def grade(self, images: dict[str, Any]) -> Grade:
        from mtopt_sd.grader import GradeRequestError

        try:
            probabilities = self.grader.grade_images([images[f] for f in GRADE_FIELDS])
            aligned = align_to_registry(self.grader.task_names, list(probabilities), self.names)
        except (GradeRequestError, ValueError) as exc:
            raise CollectorError(f"sd/grade refused: {exc}") from None
        return Grade([float(p) for p in aligned], self.grader.version)


class EnvCellPort:
    """The `CellPort` of `EpisodeRunner` over the gym env (what `policy_node` does over the arm
    controller's actions and the cell's topics): arm and gripper goals go to the env's
    `SimController` as they are, the observation is rendered when asked for, each step is
    recorded into the episode's bag."""

    def __init__(self, owner: InProcessCell):
        self.owner = owner
        self.env = owner.env

    def move(self, mode: int, translation, yaw: float, duration: float) -> MoveResult:
        report = self.env.controller.move(mode, translation, yaw, duration)
        return MoveResult(int(report.outcome), report.message, report.position, report.yaw)

    def gripper(self, close: bool) -> str:
        return self.env.actuate_gripper(close)

    def wait_first_inputs(self, timeout: float) -> None:
        pass  # observations are rendered on demand

    def observe(self, after: float) -> Observation:
        obs = self.env.observation()
        image = obs["image"]
        camera = self.owner.spec.policy.policy_camera
        return Observation(
            image=image,
            image_msg=camera_image_msg(image, camera, self.env.cell.time),
            gripper_closed=bool(obs["gripper_closed"]),
            height=float(obs["gripper_height"][0]),
            object_detected=bool(obs["object_detected"]),
        )

    def publish_step(self, plan: EpisodePlan, step: int, decision: Decision, obs: Observation):
        self.owner.record_step(plan, step, decision, obs)

    def cancel_requested(self) -> bool:
        return False


class BulkWorker:
    """One cell of a bulk collection (the object a spawn process or a Ray actor holds)."""

    def __init__(self, spec: WorkerSpec):
        self.cell = InProcessCell(spec)

    def collect(self, episodes: int) -> list[dict[str, Any]]:
        """Log `episodes` more episodes; their records (id, task, kind, success, bag ...)."""
        return self.cell.collect(episodes)

    def close(self) -> None:
        self.cell.close()
