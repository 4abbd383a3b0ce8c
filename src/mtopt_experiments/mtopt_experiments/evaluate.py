"""`mtopt-eval CKPT`: a Q-network against the noisy scripted policy, paired on the same scenes.

    mtopt-eval CKPT [--tasks T ...] [--episodes-per-task N] [--seed S] [--workers W]
        [--out DIR] [--sd-checkpoint SD] [--epsilon E]

For every task, N fresh seeded scenes of the simulated cell (the gym env, no ROS). On each
scene both policies run from the same scene state and the same start pose:

* **scripted**: the policy node's noisy scripted pick or place (uniform start over the bin plus
  start noise, action noise), as `mtopt_policy.policy.EpisodePlanner` runs it;
* **learned**: CEM over the checkpoint's Q-network with the policy node's CEM settings, greedy
  unless `--epsilon` (the node's per-step probability of a random action) is given.
  `--learned-start cell` starts it where the policy node starts a CEM episode on a cell
  instead (its own uniform draw over the bin, without the scripted start noise); the scenes
  stay paired, the start poses do not.

The env is the cell seen through the policy node's parameters (camera, `--camera-size` frame,
`policy_roi`, image size = the checkpoint's, action scale, a simulated cell's step duration and
start speed) and runs the shared episode protocol (`mtopt_policy.protocol`: start, step limit,
present move, grading there); its arm and gripper move as the arm controller node moves them
(`mtopt_sim.controller`). The scripted
episode runs first, then the scene is rebuilt bit for bit (same seed, same
simulated clock) and the learned episode runs. Place tasks start holding an object, as after
a successful lift: the simulator's privileged, noise-free scripted pick grasps one first; a
scene where it grasps nothing is re-drawn (the next draw's seed). Each episode is judged by the
simulator's oracle, and also by the success detector when `--sd-checkpoint` is given (the
success probability of the commanded task on the final images of its cameras, threshold
`--sd-threshold`, the collector's 0.5).

Scene seeds: scene draw d of episode k of the task with registry index i is seeded with
2^32 + S * 10^8 + i * 10^6 + 10 k + d. Training paths seed their scenes below 2^32 (node and
command-line seeds, the bulk collector's 32-bit scene seeds, the gym probe's 31-bit respawn
seeds), so evaluation scenes are never training scenes. Each episode's outcome depends only on
(S, task, k), not on --workers.

Output (in --out, default runs/eval/<time>): `results.md` (per-task table, and where the
grasps went), `tasks.csv`, `episodes.csv` (one row per episode and policy: scene seed, start
pose, start-state hash, outcome, gripper closes and what the first one held), `results.png`
(per-task success with 95 % Wilson intervals) and `result.json`, the line printed on stdout.
Progress goes to stderr. Exit status 2 for a bad option or a refused checkpoint (verified by
the policy node's own `WeightsSlot`), 1 when a place scene never got an
object held in `--scene-draws` draws.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtopt_core.checkpoint import CheckpointError, read_checkpoint
from mtopt_core.sd_model import SDCheckpointError
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_policy.config import CollectorConfig, PolicyConfig
from mtopt_policy.policy import (
    EpisodePlan,
    EpisodePlanner,
    Observation,
    WeightsRefused,
    WeightsSlot,
    make_planner,
)
from mtopt_sim.sim_params import sim_policy_config

PROG = "mtopt-eval"
#: Scene seeds start above every 32-bit seed (see the module docstring).
SCENE_SEED_BASE = 2**32
SEED_STRIDE = 10**8
TASK_STRIDE = 10**6
EPISODE_STRIDE = 10
#: Limits that keep the seed fields from overlapping.
MAX_SEED = 10**9
#: Where a learned episode starts (EvalConfig.learned_start).
LEARNED_STARTS = ("scripted", "cell")
MAX_TASKS = SEED_STRIDE // TASK_STRIDE
MAX_EPISODES_PER_TASK = TASK_STRIDE // EPISODE_STRIDE
MAX_SCENE_DRAWS = EPISODE_STRIDE
#: The task whose success after a lift means "an object is held" (the collector's rule).
HELD_TASK = CollectorConfig.held_task
POLICIES = ("learned", "scripted")


def scene_seed(seed: int, task_index: int, episode: int, draw: int = 0) -> int:
    """Seed of scene draw `draw` of evaluation episode `episode` of a task (module docstring)."""
    if not (0 <= seed < MAX_SEED and 0 <= task_index < MAX_TASKS):
        raise ValueError(f"seed {seed} or task index {task_index} out of range")
    if not (0 <= episode < MAX_EPISODES_PER_TASK and 0 <= draw < MAX_SCENE_DRAWS):
        raise ValueError(f"episode {episode} or scene draw {draw} out of range")
    return (
        SCENE_SEED_BASE
        + seed * SEED_STRIDE
        + task_index * TASK_STRIDE
        + episode * EPISODE_STRIDE
        + draw
    )


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation (the command line's options).

    Fields:
        checkpoint: the Q-network checkpoint (a learner's or the gym probe's `qnet.ckpt`).
        tasks: tasks to evaluate, in this order (empty: every task of the registry).
        episodes_per_task: scenes per task; each runs both policies.
        seed: selects the scene set (see `scene_seed`) and the policies' random draws.
        workers: processes running scenes in parallel (spawned, one simulator each).
        epsilon: learned policy: per-step probability of a random action (0 = greedy).
        sd_checkpoint: success detector checkpoint; "" = judge by the oracle only.
        sd_threshold: SD probability at or above which an episode counts as a success.
        scene_draws: place tasks: scenes drawn per episode until the privileged pick holds
            an object.
        camera_size: side of the policy camera's frame the image is cut from [px] (the cell's
            camera resolution, `mtopt-sim-collect --camera-size`); 0 = the image size.
        policy_params: policy node parameters (`PolicyConfig` fields) that differ from the
            node's defaults, e.g. (("cem_population", 32),); `image_size` defaults to the
            checkpoint's.
        learned_start: "scripted": the learned episode starts where the scripted episode of
            the scene started; "cell": where the policy node starts a CEM episode (its own
            uniform draw, no start noise).
    """

    checkpoint: str
    tasks: tuple[str, ...] = ()
    episodes_per_task: int = 100
    seed: int = 0
    workers: int = 1
    epsilon: float = 0.0
    sd_checkpoint: str = ""
    sd_threshold: float = CollectorConfig.success_threshold
    scene_draws: int = 10
    camera_size: int = 0
    policy_params: tuple[tuple[str, Any], ...] = ()
    learned_start: str = "scripted"

    def __post_init__(self) -> None:
        if self.learned_start not in LEARNED_STARTS:
            raise ValueError(
                f"learned_start must be one of {LEARNED_STARTS}, got {self.learned_start!r}"
            )
        if not 1 <= self.episodes_per_task < MAX_EPISODES_PER_TASK:
            raise ValueError(
                f"episodes_per_task must be in 1..{MAX_EPISODES_PER_TASK - 1}, got "
                f"{self.episodes_per_task}"
            )
        if not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED - 1}, got {self.seed}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not 0.0 < self.sd_threshold < 1.0:
            raise ValueError(f"sd_threshold must be in (0, 1), got {self.sd_threshold}")
        if not 1 <= self.scene_draws <= MAX_SCENE_DRAWS:
            raise ValueError(
                f"scene_draws must be in 1..{MAX_SCENE_DRAWS}, got {self.scene_draws}"
            )
        if self.camera_size != 0 and not 8 <= self.camera_size <= 640:
            raise ValueError(f"camera_size must be 0 or in 8..640, got {self.camera_size}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks are listed twice: {list(self.tasks)}")


# ------------------------------------------------------------------------ the policy's setup
def policy_config(config: EvalConfig, image_size: int) -> PolicyConfig:
    """The policy node's parameters for this evaluation: its defaults (config/policy.yaml) with
    a simulated cell's overrides (config/sim_cell.yaml: step motion time, start speed),
    `policy_params`, the checkpoint's image size unless given, `epsilon` and `seed`."""
    fields = {f.name: f for f in dataclasses.fields(PolicyConfig)}
    values: dict[str, Any] = {"image_size": image_size}
    for name, value in config.policy_params:
        if name not in fields:
            raise ValueError(f"unknown policy parameter {name!r}; known: {sorted(fields)}")
        if name in ("epsilon", "seed"):
            raise ValueError(f"policy parameter {name} is set by --{name}")
        values[name] = _coerce_param(name, value, fields[name].default)
    values.update(epsilon=config.epsilon, seed=config.seed)
    return dataclasses.replace(sim_policy_config(), **values).validate()


def _coerce_param(name: str, value: Any, default: Any) -> Any:
    """A parameter value (parsed YAML) as the type of the field's default."""
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"policy parameter {name} must be a list like {list(default)}")
        item = type(default[0]) if default else str
        return tuple(float(v) if item is float and type(v) is int else v for v in value)
    if type(default) is float and type(value) is int:
        return float(value)
    if type(value) is not type(default):
        raise ValueError(
            f"policy parameter {name} must be of type {type(default).__name__}, got {value!r}"
        )
    return value


def checkpoint_identity(path: str) -> tuple[int, str]:
    """(image size, sha256) of a Q-network checkpoint; raises CheckpointError.

    The sha256 is the file's own (checked against its `.sha256` sidecar when there is one):
    what the learner announces in a WeightsUpdate.
    """
    ckpt = read_checkpoint(path)
    return ckpt.qnet_config.image_size, ckpt.file_sha256


def load_weights(
    path: str, sha256: str, policy: PolicyConfig, registry: TaskRegistry
) -> WeightsSlot:
    """The checkpoint loaded and verified as the policy node loads announced weights (its
    `WeightsSlot`: integrity, sha256, task list, image size, NaN/Inf); raises WeightsRefused."""
    slot = make_planner(policy, registry).weights
    slot.offer(path, 1, sha256, registry.names)
    slot.swap()
    return slot


def env_config(policy: PolicyConfig, camera_size: int):
    """The gym env seen through the cell's node parameters, as bulk collection builds it:
    policy camera, frame size (`camera_size`, 0 = the image size), region of interest, image
    size, action scale and the episode protocol (start, step limit, present, grading)."""
    from mtopt_sim.bulk_cell import env_config as cell_env_config  # loads MuJoCo

    return cell_env_config(policy, CollectorConfig(), 0, camera_size or policy.image_size)


# --------------------------------------------------------------------------- paired scenes
class SceneError(RuntimeError):
    """A scene could not be set up (no grasp for a place task, or a replay that diverged)."""


class PairedSceneRunner:
    """One simulator, the verified Q-network and (optionally) the SD: runs paired scenes."""

    def __init__(self, config: EvalConfig, policy: PolicyConfig, sha256: str):
        import torch

        from mtopt_sim.env import MTOptCell  # loads MuJoCo: only when used

        torch.set_num_threads(1)  # one core per worker
        self.config = config
        # The baseline is the seed's noisy scripted pick, whatever prefix collection used.
        self.policy = dataclasses.replace(policy, scripted_prefix_steps=0)
        self.registry = load_task_registry(policy.tasks_file or None)
        self.weights = load_weights(config.checkpoint, sha256, policy, self.registry)
        self.env = MTOptCell(env_config(policy, config.camera_size), registry=self.registry)
        self.grader = None
        if config.sd_checkpoint:
            from mtopt_sd.grader import Grader

            self.grader = Grader(config.sd_checkpoint, self.registry.names)

    def close(self) -> None:
        self.env.close()

    def _scene(self, task: str, episode: int) -> tuple[dict, EpisodePlan, EpisodePlan, int]:
        """Scene `episode` of `task` set up (drawn until usable): (its row fields, the scripted
        and the learned plan, the CEM seed)."""
        task_index = self.registry.index(task)
        # The policies' own randomness (scripted noise, start draw, exploration, CEM samples)
        # is seeded per scene, so an outcome does not depend on which worker ran it.
        policy_seeds = np.random.SeedSequence([self.config.seed, task_index, episode])
        planner_seed, cem_seed = policy_seeds.generate_state(2)
        planner = EpisodePlanner(
            self.policy, self.registry, self.weights, np.random.default_rng(planner_seed)
        )
        place = planner.start_bin(task) == "left"
        seed, draws = self._draw_scene(task, task_index, episode, place)
        scripted_kind = planner.scripted[planner.start_bin(task)].kind
        scripted = planner.plan(f"eval-{task}-{episode}-scripted", task, 0, scripted_kind)
        learned = planner.plan(f"eval-{task}-{episode}-learned", task, 0, "cem")
        if self.config.learned_start == "scripted":
            learned = dataclasses.replace(
                learned, start_position=scripted.start_position, start_yaw=scripted.start_yaw
            )
        scene = {"task": task, "episode": episode, "scene_seed": seed, "scene_draws": draws}
        return scene, scripted, learned, int(cem_seed)

    def learned_start(self, task: str, episode: int) -> dict:
        """The observation the learned policy starts scene `episode` of `task` from (the env
        is left there; nothing runs)."""
        _, _, learned, _ = self._scene(task, episode)
        obs, _ = self.env.reset(options=self._reset_options(learned))
        return obs

    @staticmethod
    def _reset_options(plan: EpisodePlan) -> dict:
        return {
            "start": [float(v) for v in plan.start_position],
            "start_yaw": float(plan.start_yaw),
            "task": plan.task,
        }

    def run_scene(self, task: str, episode: int) -> list[dict]:
        """Both policies on scene `episode` of `task`: one row per policy."""
        task_index = self.registry.index(task)
        scene, scripted, learned, cem_seed = self._scene(task, episode)
        # Scripted first: its noise draws never depend on how long the learned episode ran.
        rows = [{**scene, "policy": "scripted", **self._run(scripted, task_index)}]
        rows.append(self._run_learned(task, episode, scene, learned, cem_seed))
        return rows

    def run_learned(self, task: str, episode: int, on_step=None) -> dict:
        """Only the learned policy on scene `episode` of `task`, exactly as `run_scene` runs
        it; `on_step(decision, obs, info)` is called after every step. Its row."""
        scene, _, learned, cem_seed = self._scene(task, episode)
        return self._run_learned(task, episode, scene, learned, cem_seed, on_step)

    def _run_learned(
        self, task: str, episode: int, scene: dict, learned: EpisodePlan, cem_seed: int,
        on_step=None,
    ) -> dict:  # fmt: skip
        """The learned episode on the scene respawned from its seed (as after the scripted
        episode): its row."""
        if not self._set_scene(scene["scene_seed"], learned.start_bin == "left"):
            raise SceneError(f"{task} episode {episode}: the scene replay did not hold an object")
        self.weights.current.policy.generator.manual_seed(cem_seed)
        row = self._run(learned, self.registry.index(task), on_step)
        return {**scene, "policy": "learned", **row}

    def _draw_scene(self, task: str, task_index: int, episode: int, place: bool):
        """Set up the first usable scene of this episode: (its seed, draws used)."""
        for draw in range(self.config.scene_draws):
            seed = scene_seed(self.config.seed, task_index, episode, draw)
            if self._set_scene(seed, place):
                return seed, draw + 1
        raise SceneError(
            f"{task} episode {episode}: the privileged pick grasped nothing in "
            f"{self.config.scene_draws} scenes"
        )

    def _set_scene(self, seed: int, place: bool) -> bool:
        """Respawn the scene from `seed`; for a place task also grasp an object with the
        privileged noise-free pick. Returns False when that grasp failed."""
        from mtopt_sim.scripted import privileged_grasp

        env = self.env
        # The arm's trajectories are timed in absolute simulated time, so a replay from a
        # different clock differs in the last bits and contacts amplify that; from the same
        # clock a respawn and the pick below replay bit for bit.
        env.cell.data.time = 0.0
        env.respawn(seed)
        if not place:
            return True
        return privileged_grasp(env, np.random.default_rng(seed), HELD_TASK)

    def _run(self, plan: EpisodePlan, task_index: int, on_step=None) -> dict:
        """One episode of `plan` in the env; the row's outcome fields."""
        env = self.env
        obs, _ = env.reset(options=self._reset_options(plan))
        # Hash of the complete physical state the episode starts from: equal for the two
        # policies of a scene (same scene, same start pose).
        start_state = hashlib.sha256(env.cell.data.qpos.tobytes()).hexdigest()[:16]
        steps, closes, first_close = 0, 0, "none"
        was_closed = bool(obs["gripper_closed"])
        while True:
            observation = Observation(
                image=obs["image"],
                image_msg=None,
                gripper_closed=bool(obs["gripper_closed"]),
                height=float(obs["gripper_height"][0]),
                object_detected=bool(obs["object_detected"]),
            )
            decision = plan.source.act(observation)
            obs, _, terminated, truncated, info = env.step(decision.action)
            steps += 1
            if on_step is not None:
                on_step(decision, obs, info)
            closed = bool(obs["gripper_closed"])
            if closed and not was_closed:  # a close: did the fingers stop on something?
                closes += 1
                if closes == 1:
                    first_close = "held" if bool(obs["object_detected"]) else "empty"
            was_closed = closed
            if terminated or truncated:
                break
        row = {
            "kind": plan.kind,
            "start_x": round(float(plan.start_position[0]), 5),
            "start_y": round(float(plan.start_position[1]), 5),
            "start_z": round(float(plan.start_position[2]), 5),
            "start_yaw": round(float(plan.start_yaw), 5),
            "start_state": start_state,
            "steps": steps,
            "terminated": bool(terminated),
            "success": bool(info["oracle"][plan.task]),
            "closes": closes,
            "first_close": first_close,
        }
        # What else the episode achieved: a multi-task policy can do the skill on the wrong
        # target (lift a bottle when asked for a banana).
        achieved = [name for name in self.registry.names if info["oracle"].get(name)]
        skill = self.registry.tasks_of_skill(self.registry.skill_of(plan.task))
        row["achieved"] = ";".join(achieved)
        row["skill_success"] = any(name in skill for name in achieved)
        if self.grader is not None:
            views = env.render_sd_cameras(self.grader.image_size)
            stacked = np.stack([views[name] for name in self.grader.cameras])
            probability = float(self.grader.grade_array(stacked)[task_index])
            row["sd_probability"] = round(probability, 4)
            row["sd_success"] = probability >= self.config.sd_threshold
        return row


# ------------------------------------------------------------------------------- workers
_runner: PairedSceneRunner | None = None


def _init_worker(config: EvalConfig, policy: PolicyConfig, sha256: str) -> None:
    global _runner
    _runner = PairedSceneRunner(config, policy, sha256)


def _run_in_worker(task: str, episode: int) -> list[dict]:
    return _runner.run_scene(task, episode)


def run_scenes(
    config: EvalConfig, policy: PolicyConfig, sha256: str, tasks: Sequence[str], log=None
) -> list[dict]:
    """Every (task, episode) scene, in `config.workers` processes; rows in task, episode,
    policy order."""
    from tqdm import tqdm

    units = [(task, k) for task in tasks for k in range(config.episodes_per_task)]
    rows: list[dict] = []
    wins = dict.fromkeys(POLICIES, 0)
    progress = tqdm(
        total=len(units), unit="scene", file=sys.stderr, desc=PROG, disable=log is None
    )

    def done(scene_rows: list[dict]) -> None:
        rows.extend(scene_rows)
        for row in scene_rows:
            wins[row["policy"]] += row["success"]
        progress.set_postfix_str(f"learned {wins['learned']}, scripted {wins['scripted']}")
        progress.update()

    try:
        if config.workers == 1:
            runner = PairedSceneRunner(config, policy, sha256)
            try:
                for unit in units:
                    done(runner.run_scene(*unit))
            finally:
                runner.close()
        else:
            # spawn, never fork: a forked child would inherit no usable GL context.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                config.workers, context, _init_worker, (config, policy, sha256)
            ) as pool:
                futures = [pool.submit(_run_in_worker, *unit) for unit in units]
                try:
                    for future in as_completed(futures):
                        done(future.result())
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
    finally:
        progress.close()
    order = {task: i for i, task in enumerate(tasks)}
    rows.sort(key=lambda r: (order[r["task"]], r["episode"], POLICIES.index(r["policy"])))
    return rows


# ------------------------------------------------------------------------------- the run
def evaluate(config: EvalConfig, out: Path, log=print, progress: bool = True) -> dict:
    """Run the evaluation, write the report files to `out`, return the result (JSON-able);
    a progress bar on stderr unless `progress` is False. Raises ValueError (bad option),
    CheckpointError / WeightsRefused (refused checkpoint)."""
    from mtopt_experiments import eval_report

    start = time.perf_counter()
    image_size, sha256 = checkpoint_identity(config.checkpoint)
    policy = policy_config(config, image_size)
    registry = load_task_registry(policy.tasks_file or None)
    tasks = config.tasks or registry.names
    unknown = [t for t in tasks if t not in registry]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {list(registry.names)}")
    # Verified here first, exactly as every worker will: a refused file stops before any
    # simulator starts.
    load_weights(config.checkpoint, sha256, policy, registry)
    if config.sd_checkpoint:
        from mtopt_sd.grader import Grader

        Grader(config.sd_checkpoint, registry.names)
    log(
        f"{PROG}: {config.checkpoint} (sha256 {sha256[:12]}...), {len(tasks)} tasks x "
        f"{config.episodes_per_task} scenes, seed {config.seed}, {config.workers} workers"
    )
    rows = run_scenes(config, policy, sha256, tasks, log if progress else None)
    result = eval_report.summarize(rows, tasks, with_sd=bool(config.sd_checkpoint))
    result = {
        "checkpoint": str(config.checkpoint),
        "sha256": sha256,
        "seed": config.seed,
        "episodes_per_task": config.episodes_per_task,
        "epsilon": config.epsilon,
        "learned_start": config.learned_start,
        "sd_checkpoint": config.sd_checkpoint,
        **result,
        "out": str(out),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    settings = {
        "cem": f"{policy.cem_population}/{policy.cem_elites}/{policy.cem_iterations}",
        "image_size": policy.image_size,
        "policy_roi": list(policy.policy_roi),
        "camera_size": config.camera_size or policy.image_size,
        "max_steps": policy.max_steps,
    }
    eval_report.write_report(out, rows, result, settings)
    log(f"{PROG}: wrote {out}/results.md, tasks.csv, episodes.csv, results.png, result.json")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", help="Q-network checkpoint to evaluate")
    p.add_argument("--tasks", nargs="+", default=[], metavar="T", help="default: every task")
    p.add_argument(
        "--episodes-per-task",
        type=int,
        default=EvalConfig.episodes_per_task,
        metavar="N",
        help="paired scenes per task (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="scene set and policy draws")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="simulator processes")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="report directory (default runs/eval/<time>)",
    )
    p.add_argument(
        "--sd-checkpoint",
        default="",
        metavar="SD",
        help="also judge episodes with this success detector",
    )
    p.add_argument(
        "--sd-threshold",
        type=float,
        default=EvalConfig.sd_threshold,
        help="SD probability counted as a success (default %(default)s, the collector's)",
    )
    p.add_argument(
        "--epsilon",
        type=float,
        default=0.0,
        metavar="E",
        help="learned policy: P(random action) per step (default 0: greedy)",
    )
    p.add_argument(
        "--scene-draws",
        type=int,
        default=EvalConfig.scene_draws,
        metavar="D",
        help="place tasks: scenes drawn per episode until an object is held",
    )
    p.add_argument(
        "--camera-size",
        type=int,
        default=0,
        metavar="PX",
        help="policy camera frame side the image (and its policy_roi) is cut from; "
        "0 = the image size (default)",
    )
    p.add_argument(
        "--policy-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a policy node parameter (PolicyConfig field), e.g. cem_population=32; repeatable",
    )
    p.add_argument(
        "--learned-start",
        choices=LEARNED_STARTS,
        default=EvalConfig.learned_start,
        help="learned episode's start: the scene's scripted start (default), or the policy "
        "node's own draw as on a cell (no start noise)",
    )
    p.add_argument(
        "--ros",
        action="store_true",
        help="through the ROS graph of --workers simulated cells (lift-type tasks; the learned"
        " policy only; see mtopt_experiments.evaluate_ros)",
    )
    p.add_argument(
        "--compare",
        default="",
        metavar="RESULT_JSON",
        help="--ros: an in-process result.json to compare each task's rate with",
    )
    return p


def add_policy_arguments(p: argparse.ArgumentParser) -> None:
    """--camera-size and --policy-param of the tools that run the evaluator's scenes
    (q_landscape, trace_episodes)."""
    p.add_argument("--camera-size", type=int, default=64, help="camera frame side [px] (64)")
    p.add_argument(
        "--policy-param", action="append", default=[], metavar="KEY=VALUE",
        help="policy node parameter, e.g. policy_camera=wrist",
    )  # fmt: skip


def parse_policy_params(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """`NAME=VALUE` items (VALUE in YAML: 32, 0.5, true, [0.1, 0.2]) -> ((name, value), ...)."""
    params = []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--policy-param {item!r} is not NAME=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"--policy-param {item!r}: bad value: {exc}") from None
        params.append((name.strip(), value))
    return tuple(params)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def fail(message: str) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
        return 2

    if args.compare and not args.ros:
        return fail("--compare goes with --ros")
    try:
        config = EvalConfig(
            checkpoint=args.checkpoint,
            tasks=tuple(args.tasks),
            episodes_per_task=args.episodes_per_task,
            seed=args.seed,
            workers=args.workers,
            epsilon=args.epsilon,
            sd_checkpoint=args.sd_checkpoint,
            sd_threshold=args.sd_threshold,
            scene_draws=args.scene_draws,
            camera_size=args.camera_size,
            policy_params=parse_policy_params(args.policy_param),
            learned_start=args.learned_start,
        )
    except ValueError as exc:
        return fail(str(exc))
    out = args.out or Path("runs/eval") / time.strftime("%Y%m%d-%H%M%S")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.ros:
        return _main_ros(config, out, log, args.compare, fail)
    try:
        result = evaluate(config, out, log)
    except (CheckpointError, WeightsRefused) as exc:
        return fail(f"checkpoint {config.checkpoint} refused: {getattr(exc, 'reason', exc)}")
    except SDCheckpointError as exc:  # its message names the file
        return fail(str(exc))
    except SceneError as exc:  # the simulation could not set a scene up: not an option error
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except ValueError as exc:  # bad option values (tasks, policy parameters)
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result), flush=True)
    return 0


def _main_ros(config: EvalConfig, out: Path, log, compare: str, fail) -> int:
    from mtopt_demo.bringup import BringupError
    from mtopt_demo.config import DemoError
    from mtopt_experiments.evaluate_ros import evaluate_ros

    try:
        result = evaluate_ros(config, out, log, compare)
    except CheckpointError as exc:
        return fail(f"checkpoint {config.checkpoint} refused: {exc}")
    except (ValueError, OSError) as exc:  # bad options, an unreadable --compare file
        return fail(str(exc))
    except (DemoError, BringupError) as exc:
        print(f"{PROG}: --ros failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
