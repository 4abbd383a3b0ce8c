"""The policy of an MT-Opt cell as plain classes (no rclpy): what `policy_node` runs.

* `WeightsSlot`: verifies announced Q-network checkpoints (version order within a learner run,
  location inside `weights_dirs`, file sha256, integrity, NaN/Inf, task list, image size, the
  policy settings it was trained for, all within a time limit) and keeps the newest good one
  as *pending*; `swap()` installs it between episodes. A refused checkpoint leaves the current
  weights in place.
* `EpisodePlanner`: per episode, picks who acts (the configured mix: scripted pick/place by the
  task's skill with probability `scripted_fraction`, else CEM over the current Q-network with
  epsilon-greedy exploration, or the random policy while no weights are loaded) and the start
  pose (uniformly above the right bin for lift-type skills, the left bin for place skills; the
  seed's scripted policies, `mtopt_policy.scripted`, which need only the bin geometry).
* `EpisodeRunner`: runs one episode through a `CellPort` (the ROS side: arm and gripper
  actions, fresh observations, step publishing) as the episode protocol says
  (`mtopt_policy.protocol`, shared with the gym env): the start moves, then per step observe
  (aborting on stale inputs), decide, publish, execute; until terminate, the step limit, a
  fault or a cancel. The present move and grading are the collector's.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mtopt_core.action import ACTION_DIM, GRIPPER, TERMINATE, ActionSpec, to_base_frame
from mtopt_core.cem import CEMConfig, CEMPolicy
from mtopt_core.checkpoint import (
    CheckpointError,
    describe_mismatch,
    policy_settings_mismatch,
    policy_settings_of,
    qnet_from_checkpoint,
    sidecar_path,
)
from mtopt_core.tasks import TaskRegistry
from mtopt_policy.config import POLICY_KINDS, PolicyConfig
from mtopt_policy.inputs import StaleInputError
from mtopt_policy.protocol import ABORTED, TERMINATED, EpisodeProtocol
from mtopt_policy.scripted import (
    BinGeometry,
    ScriptedPick,
    ScriptedPlace,
    pick_config,
    place_config,
)

MODE_DELTA = 0  # MoveEndEffector.Goal.MODE_DELTA
MODE_ABSOLUTE = 1  # MoveEndEffector.Goal.MODE_ABSOLUTE
OUTCOME_NAMES = ("REACHED", "CLAMPED", "BLOCKED", "TIMEOUT", "FAULT")
#: Move outcomes that end an episode (BLOCKED is contact, part of manipulation).
FAILED_OUTCOMES = (3, 4)


# ------------------------------------------------------------------------------- weights
class WeightsRefused(ValueError):
    """A weights update was refused; `reason` says why (the old weights stay)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


#: A weights load that overran `weights_load_timeout_s` is abandoned, but its thread cannot be
#: killed; while this many abandoned loads still run, further updates are refused at once.
MAX_ABANDONED_LOADS = 2
#: Largest `.sha256` sidecar read next to a checkpoint [bytes] (it holds one hash and a name).
MAX_SIDECAR_BYTES = 4096
#: Longest run id accepted (the learner sends 32 hex digits).
MAX_RUN_ID_CHARS = 128
_HEX64 = re.compile(r"[0-9a-f]{64}")


def shown(text: str, limit: int = 200) -> str:
    """`text` for a log line: as is when short and printable, else quoted and cut (a path or
    run id from a message must not forge log lines)."""
    if len(text) <= limit and text.isprintable():
        return text
    cut = text[:limit]
    return repr(cut) + ("..." if len(text) > limit else "")


@dataclass
class LoadedWeights:
    """A verified Q-network and what identifies it."""

    version: int
    sha256: str
    path: str
    policy: CEMPolicy
    run_id: str = ""  # the learner run the version belongs to (WeightsUpdate.run_id)


class WeightsSlot:
    """Current and pending Q-network weights (thread-safe; swapped only between episodes).

    What `offer` accepts (README "Weights trust"), checked in this order, cheap checks first:

    * **Ordering.** Versions are ordered only within one learner run (`run_id`). An update of
      the run of the newest weights must be newer, by at most `max_version_jump`; an update of
      another run id replaces that run (a new learner run restarts numbering), whatever its
      version. Only the newest run is remembered.
    * **Location.** The path, after resolving symlinks and `..`, must name a regular file
      inside one of `weights_dirs` (empty: anywhere); a `.sha256` sidecar next to it must be a
      small regular file inside them too, holding a sha256. (policy_node also requires the
      announced path to be absolute, as WeightsUpdate says.)
    * **Content.** Size limit, the announced sha256, integrity, finiteness, task list, image
      size, the policy settings the learner recorded (`policy_settings`: camera, region of
      interest and action frame; a network reads another camera's image or moves in another
      frame wrongly, without any error of its own); and for an update from the network
      (`announced`) the version may not exceed the training step recorded in the file (which
      the sha256 covers; the learner announces version = step). Location and content checks
      must end within `load_timeout_s` (None: no limit).

    Together: with `weights_dirs` holding only files the learner wrote, a stray or hostile
    update can at worst re-announce an older checkpoint under its own (lower) step, and the
    learner's next update replaces it; a huge version cannot pin the cell.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        image_size: int,
        cem: CEMConfig,
        seed: int,
        max_bytes: int = 64 * 1024**2,
        weights_dirs: Sequence[str] = (),
        load_timeout_s: float | None = None,
        max_version_jump: int = PolicyConfig.max_version_jump,
        policy_settings: dict[str, Any] | None = None,
    ):
        self.task_names = tuple(task_names)
        self.policy_settings = dict(policy_settings or {})
        self.max_bytes = int(max_bytes)
        self.image_size = image_size
        self.cem = cem
        self.seed = seed
        self.weights_dirs = tuple(str(d) for d in weights_dirs)
        self.load_timeout_s = load_timeout_s
        self.max_version_jump = int(max_version_jump)
        self._lock = threading.Lock()
        self.current: LoadedWeights | None = None
        self._pending: LoadedWeights | None = None
        self._abandoned = 0  # loads past their time limit that are still running

    def newest(self) -> LoadedWeights | None:
        """The pending weights if any, else the current ones."""
        with self._lock:
            return self._pending or self.current

    def offer(
        self,
        path: str,
        version: int,
        sha256: str,
        task_names: Sequence[str] = (),
        run_id: str = "",
        announced: bool = False,
    ) -> LoadedWeights:
        """Verify and load a checkpoint as the pending weights (see the class docstring).
        `announced`: the update came from the network (a WeightsUpdate: policy_node), so its
        version may not exceed the training step recorded in the file; a local caller (a file
        named on a command line) may give a nominal version. Raises WeightsRefused; the
        weights in place stay."""
        if not path:
            raise WeightsRefused("empty checkpoint path")
        if not sha256:
            raise WeightsRefused("no sha256 given; refusing unverifiable weights")
        sha256 = sha256.strip().lower()
        version = int(version)
        if version < 0:
            raise WeightsRefused(f"version {version} is negative")
        run_id = str(run_id)
        if len(run_id) > MAX_RUN_ID_CHARS or not run_id.isprintable():
            raise WeightsRefused(
                f"run_id is not a printable name of at most {MAX_RUN_ID_CHARS} characters"
            )
        with self._lock:
            self._check_order(run_id, version, sha256)
        if task_names and tuple(task_names) != self.task_names:
            raise WeightsRefused(
                f"task list mismatch: update has {list(task_names)}, this cell's registry has "
                f"{list(self.task_names)}"
            )
        real, qnet, ckpt = self._load(path, sha256)
        if announced and version > ckpt.step:
            raise WeightsRefused(
                f"version {version} is above the training step {ckpt.step} recorded in the "
                "checkpoint"
            )
        if ckpt.qnet_config.image_size != self.image_size:
            raise WeightsRefused(
                f"network takes {ckpt.qnet_config.image_size} px images, this policy feeds "
                f"{self.image_size} px (parameter image_size)"
            )
        mismatch = policy_settings_mismatch(ckpt.metadata, self.policy_settings)
        if mismatch:
            raise WeightsRefused(describe_mismatch(mismatch, "this policy has"))
        qnet.eval()
        loaded = LoadedWeights(
            version=version,
            sha256=ckpt.file_sha256,
            path=str(real),
            policy=CEMPolicy(qnet, self.cem, seed=(self.seed + version) % 2**63),
            run_id=run_id,
        )
        with self._lock:
            self._check_order(run_id, version, sha256)  # nothing newer came in meanwhile
            self._pending = loaded
        return loaded

    def _check_order(self, run_id: str, version: int, sha256: str) -> None:
        """The ordering rule against the newest weights (call with the lock held)."""
        newest = self._pending or self.current
        if newest is None:
            return
        if newest.sha256 == sha256:
            raise WeightsRefused(f"already have these weights (version {newest.version})")
        if run_id != newest.run_id:
            return  # another learner run: its numbering starts afresh
        if version <= newest.version:
            raise WeightsRefused(
                f"version {version} is not newer than the loaded version {newest.version} of "
                "the same run"
            )
        if version - newest.version > self.max_version_jump:
            raise WeightsRefused(
                f"version {version} jumps {version - newest.version} ahead of the loaded "
                f"version {newest.version} of the same run, more than max_version_jump "
                f"({self.max_version_jump})"
            )

    def resolve(self, path: str) -> Path:
        """The real path of a checkpoint (a relative one is taken from the working directory):
        a regular file inside `weights_dirs` after resolving symlinks and `..`; a `.sha256`
        sidecar next to it a small regular file there too, holding a sha256 (so no refusal can
        quote another file). Raises WeightsRefused."""
        real = self._regular_inside(Path(path), "the file", self.max_bytes)
        side = sidecar_path(real)
        if os.path.lexists(side):
            what = f"its sidecar {shown(side.name)}"
            side = self._regular_inside(side, what, MAX_SIDECAR_BYTES)
            try:
                with open(side, "rb") as f:
                    words = f.read(MAX_SIDECAR_BYTES).split()
            except OSError as exc:
                raise WeightsRefused(f"cannot read {what}: {_os_reason(exc)}") from None
            if not words or not _HEX64.fullmatch(words[0].decode("ascii", "replace").lower()):
                raise WeightsRefused(f"{what} does not hold a sha256")
        return real

    def _regular_inside(self, path: Path, what: str, max_bytes: int) -> Path:
        """`path` resolved, checked to be a regular file inside `weights_dirs`."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop
            raise WeightsRefused(f"{what} cannot be resolved (a symlink loop?)") from None
        self._check_inside(real, what)
        try:
            info = os.stat(real)
        except OSError as exc:
            raise WeightsRefused(f"cannot read {what}: {_os_reason(exc)}") from None
        if not stat.S_ISREG(info.st_mode):
            raise WeightsRefused(f"{what} is not a regular file")
        if info.st_size > max_bytes:  # read_checkpoint says so again for the checkpoint itself
            raise WeightsRefused(
                f"{what} has {info.st_size} bytes, larger than the limit of {max_bytes} bytes"
            )
        return real

    def _check_inside(self, real: Path, what: str) -> None:
        if not self.weights_dirs:
            return
        for directory in self.weights_dirs:
            try:
                root = Path(directory).expanduser().resolve()
            except (OSError, RuntimeError):
                continue
            if real.is_relative_to(root):
                return
        raise WeightsRefused(
            f"{what} resolves to {shown(str(real))}, outside weights_dirs "
            f"{list(self.weights_dirs)}"
        )

    def _load(self, path: str, sha256: str) -> tuple[Path, Any, Any]:
        """(real path, qnet, checkpoint) of a located and verified file, within
        `load_timeout_s` (None: no limit)."""

        def load():
            real = self.resolve(path)
            try:
                qnet, ckpt = qnet_from_checkpoint(
                    real, self.task_names, expected_sha256=sha256, max_bytes=self.max_bytes
                )
            except CheckpointError as exc:
                raise WeightsRefused(exc.reason) from None
            except Exception as exc:  # e.g. a network the file describes cannot be built
                raise WeightsRefused(f"cannot build the network: {type(exc).__name__}") from None
            return real, qnet, ckpt

        if self.load_timeout_s is None:
            return load()
        with self._lock:
            if self._abandoned >= MAX_ABANDONED_LOADS:
                raise WeightsRefused(
                    f"{self._abandoned} earlier loads are still running past "
                    f"weights_load_timeout_s (a hung file system?); not starting another"
                )
        box: dict[str, Any] = {}
        done = threading.Event()
        abandoned = False

        def work():
            nonlocal abandoned
            try:
                box["value"] = load()
            except BaseException as exc:  # handed to the waiting caller
                box["error"] = exc
            finally:
                with self._lock:
                    done.set()
                    if abandoned:
                        self._abandoned -= 1

        threading.Thread(target=work, name="weights-load", daemon=True).start()
        finished = done.wait(self.load_timeout_s)
        with self._lock:
            if not finished and not done.is_set():
                abandoned = True
                self._abandoned += 1
        if abandoned:
            raise WeightsRefused(
                f"reading and verifying took longer than weights_load_timeout_s "
                f"({self.load_timeout_s:g} s); abandoned"
            )
        if "error" in box:
            raise box["error"]
        return box["value"]

    def swap(self) -> LoadedWeights | None:
        """Install the pending weights (call between episodes); returns them, or None."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                self.current = pending
            return pending


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# ------------------------------------------------------------------------------- actions
@dataclass
class Observation:
    """What the policy acts on at one step."""

    image: np.ndarray  # (S, S, 3) uint8, the Q-network's input
    image_msg: Any  # the exact sensor_msgs/Image of `image` (published on policy/observation)
    gripper_closed: bool
    height: float  # gripper height above the bin floor [m]
    object_detected: bool = False  # the gripper reports an object (GripperState)


@dataclass
class Decision:
    """One chosen action."""

    action: np.ndarray  # normalized 6-D
    q_value: float  # Q(s, a, T) when it came from the Q-network, else NaN
    exploratory: bool


class ActionSource(Protocol):
    """Who acts in an episode."""

    kind: str

    def act(self, obs: Observation) -> Decision: ...


class RandomActions:
    """Random normalized actions (the random policy and epsilon exploration).

    Translation and yaw are uniform in [-1, 1]; the terminate bit is set with probability
    `terminate_prob`. The gripper bit keeps the gripper's current state, except that a closed
    gripper opens with probability `gripper_toggle_prob` per step, and an open one closes with
    probability `close_prob` per step, but only at or below `close_below_m` above the bin floor:
    where a close can catch something. (A fresh coin per step would close mid-air in most random
    episodes and drop what a close caught half the time.)
    """

    def __init__(
        self,
        rng: np.random.Generator,
        terminate_prob: float,
        gripper_toggle_prob: float = PolicyConfig.random_gripper_toggle_prob,
        close_below_m: float = PolicyConfig.random_close_below_m,
        close_prob: float = PolicyConfig.random_close_prob,
    ):
        for name, p in (("terminate_prob", terminate_prob), ("close_prob", close_prob),
                        ("gripper_toggle_prob", gripper_toggle_prob)):  # fmt: skip
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.rng = rng
        self.terminate_prob = terminate_prob
        self.gripper_toggle_prob = gripper_toggle_prob
        self.close_below_m = close_below_m
        self.close_prob = close_prob

    @classmethod
    def from_config(cls, rng: np.random.Generator, config: PolicyConfig) -> RandomActions:
        return cls(
            rng,
            config.random_terminate_prob,
            config.random_gripper_toggle_prob,
            config.random_close_below_m,
            config.random_close_prob,
        )

    def sample(self, gripper_closed: bool, height: float) -> np.ndarray:
        """A random action for a gripper in this state at `height` above the bin floor [m]."""
        a = np.empty(ACTION_DIM, dtype=np.float32)
        a[:4] = self.rng.uniform(-1.0, 1.0, 4)
        u = self.rng.random()  # one draw per step whatever the state: reproducible streams
        if gripper_closed:
            closed = u >= self.gripper_toggle_prob
        else:
            closed = height <= self.close_below_m and u < self.close_prob
        a[GRIPPER] = float(closed)
        a[TERMINATE] = float(self.rng.random() < self.terminate_prob)
        return a


class RandomSource:
    """The random policy (before any learned weights, in place of CEM)."""

    kind = "random"

    def __init__(self, actions: RandomActions):
        self.actions = actions

    def act(self, obs: Observation) -> Decision:
        return Decision(self.actions.sample(obs.gripper_closed, obs.height), math.nan, True)


class ScriptedSource:
    """The scripted pick or place (`mtopt_policy.scripted`), acting on the gripper height,
    after `prefix_steps` random moves (gripper kept, no terminate; `scripted_prefix_steps`)."""

    def __init__(
        self, scripted: ScriptedPick | ScriptedPlace, actions: RandomActions, prefix_steps: int = 0
    ):
        self.scripted = scripted
        self.kind = scripted.kind
        self.actions = actions
        self.prefix_left = prefix_steps

    def act(self, obs: Observation) -> Decision:
        if self.prefix_left > 0:
            self.prefix_left -= 1
            action = self.actions.sample(obs.gripper_closed, obs.height)
            action[GRIPPER] = float(obs.gripper_closed)
            action[TERMINATE] = 0.0
            return Decision(action, math.nan, True)
        action = self.scripted.act({"gripper_height": np.array([obs.height], np.float32)})
        return Decision(np.asarray(action, np.float32), math.nan, True)


class CemSource:
    """CEM argmax of Q(s, a, task) with epsilon-greedy exploration."""

    kind = "cem"

    def __init__(
        self,
        policy: CEMPolicy,
        task_index: int,
        epsilon: float,
        actions: RandomActions,
        rng: np.random.Generator,
    ):
        self.policy = policy
        self.task_index = task_index
        self.epsilon = epsilon
        self.actions = actions
        self.rng = rng
        self.step = 0  # step index of the next observation (a source lives for one episode)

    def act(self, obs: Observation) -> Decision:
        step, self.step = self.step, self.step + 1
        if self.rng.random() < self.epsilon:
            return Decision(self.actions.sample(obs.gripper_closed, obs.height), math.nan, True)
        actions, q = self.policy.act(
            obs.image[None], [obs.gripper_closed], [obs.height], [self.task_index],
            [obs.object_detected], [step],
        )  # fmt: skip
        return Decision(actions[0].astype(np.float32), float(q[0]), False)


# ------------------------------------------------------------------------------ planning
@dataclass
class EpisodePlan:
    """Everything decided before an episode starts."""

    episode_id: str
    task: str
    max_steps: int
    source: ActionSource
    start_bin: str  # "right" or "left"
    start_position: np.ndarray  # (3,) base frame [m]
    start_yaw: float
    open_gripper_first: bool  # lift-type episodes start with an open gripper
    weights_version: int  # -1: no learned weights loaded
    weights_sha256: str
    epsilon: float  # per-step probability of an exploratory action (1 for scripted/random)

    @property
    def kind(self) -> str:
        return self.source.kind


class EpisodePlanner:
    """Chooses the acting policy and the start pose of each episode (see module docstring)."""

    def __init__(
        self,
        config: PolicyConfig,
        registry: TaskRegistry,
        weights: WeightsSlot,
        rng: np.random.Generator,
    ):
        self.config = config
        self.registry = registry
        self.weights = weights
        self.rng = rng
        self.spec = ActionSpec(config.max_translation_m, config.max_yaw_rad)
        self.protocol = EpisodeProtocol.from_configs(config)
        self.bins = BinGeometry.from_policy_config(config)
        self.actions = RandomActions.from_config(rng, config)
        noisy = config.scripted_noise

        def scripted(base, cls, start_noise: bool):
            cfg = dataclasses.replace(
                base,
                start_height=config.start_height,
                margin=config.start_margin,
                start_noise=base.start_noise if start_noise else 0.0,
            )
            return cls(cfg, self.spec, rng)

        self.scripted = {
            "right": scripted(pick_config(noisy), ScriptedPick, True),
            "left": scripted(place_config(noisy), ScriptedPlace, True),
        }
        # Start poses of CEM / random episodes: the same uniform draw, without start noise.
        self.start_samplers = {
            "right": scripted(pick_config(False), ScriptedPick, False),
            "left": scripted(place_config(False), ScriptedPlace, False),
        }

    def start_bin(self, task: str) -> str:
        """'left' for tasks of a place skill, else 'right'."""
        lift = self.protocol.opens_gripper_first(self.registry.skill_of(task))
        return "right" if lift else "left"

    def plan(
        self, episode_id: str, task: str, max_steps: int = 0, requested_kind: str = ""
    ) -> EpisodePlan:
        """Plan the next episode; installs pending weights first. Raises ValueError."""
        if task not in self.registry:
            raise ValueError(f"unknown task {task!r}; known tasks: {list(self.registry.names)}")
        if requested_kind and requested_kind not in POLICY_KINDS:
            raise ValueError(f"unknown policy_kind {requested_kind!r}; one of {POLICY_KINDS}")
        self.weights.swap()
        weights = self.weights.current
        bin_ = self.start_bin(task)
        scripted_kind = self.scripted[bin_].kind
        kind = requested_kind
        if not kind:
            if self.rng.random() < self.config.scripted_fraction:
                kind = scripted_kind
            else:
                kind = "cem" if weights is not None else "random"
        if kind == "cem" and weights is None:
            raise ValueError("policy_kind 'cem' requested, but no learned weights are loaded")
        if kind.startswith("scripted") and kind != scripted_kind:
            raise ValueError(
                f"{kind} cannot run task {task!r} (skill {self.registry.skill_of(task)}); "
                f"its scripted policy is {scripted_kind}"
            )
        if kind == "cem":
            source: ActionSource = CemSource(
                weights.policy,
                self.registry.index(task),
                self.config.epsilon,
                self.actions,
                self.rng,
            )
            starter = self.start_samplers[bin_]
        elif kind == "random":
            source = RandomSource(self.actions)
            starter = self.start_samplers[bin_]
        else:
            starter = self.scripted[bin_]
            prefix = 0
            if kind == "scripted_pick" and self.config.scripted_prefix_steps > 0:
                prefix = int(self.rng.integers(0, self.config.scripted_prefix_steps + 1))
            source = ScriptedSource(starter, self.actions, prefix)
        options = starter.start_options(self.bins)  # resets a scripted policy's phase, too
        yaw = options.get("start_yaw")
        if yaw is None:  # the place script keeps any yaw: draw one like the pick does
            yaw = float(self.rng.uniform(-math.pi / 2, math.pi / 2))
        return EpisodePlan(
            episode_id=episode_id,
            task=task,
            max_steps=max_steps or self.config.max_steps,
            source=source,
            start_bin=bin_,
            start_position=np.asarray(options["start"], dtype=float),
            start_yaw=float(yaw),
            open_gripper_first=self.protocol.opens_gripper_first(self.registry.skill_of(task)),
            weights_version=weights.version if weights is not None else -1,
            weights_sha256=weights.sha256 if weights is not None else "",
            epsilon=self.config.epsilon if kind == "cem" else 1.0,
        )


# ------------------------------------------------------------------------------- running
class PortError(RuntimeError):
    """The cell could not do what was asked (server missing, goal rejected, no result)."""


@dataclass
class MoveResult:
    """How an arm move ended."""

    outcome: int  # MoveEndEffector.Result.OUTCOME_*
    message: str
    position: np.ndarray | None = None  # achieved grasp point (3,) [m]
    yaw: float | None = None  # achieved yaw [rad]

    @property
    def outcome_name(self) -> str:
        return OUTCOME_NAMES[self.outcome] if 0 <= self.outcome < 5 else str(self.outcome)


class CellPort(Protocol):
    """The policy's view of the cell (implemented over ROS by policy_node)."""

    def move(
        self, mode: int, translation: Sequence[float], yaw: float, duration: float
    ) -> MoveResult:
        """Move the gripper (MoveEndEffector); raises PortError when no result comes."""

    def gripper(self, close: bool) -> str:
        """Open or close the gripper and wait: "REACHED", "STALLED" (holding something) or
        "UNSETTLED" (no settle in time); raises PortError when it could not be commanded."""

    def wait_first_inputs(self, timeout: float) -> None:
        """Give inputs that never delivered anything (node start, discovery) up to `timeout`."""

    def observe(self, after: float) -> Observation:
        """The newest observation received after `after`; raises StaleInputError."""

    def publish_step(
        self, plan: EpisodePlan, step: int, decision: Decision, obs: Observation
    ) -> None:
        """Publish policy/step, policy/observation and the action feedback."""

    def cancel_requested(self) -> bool:
        """The episode's client asked to stop."""


@dataclass
class EpisodeOutcome:
    """How an episode ended, with where the time went (seconds per phase)."""

    steps: int = 0
    terminated: bool = False
    aborted: bool = False
    reason: str = ""
    #: `mtopt_policy.protocol`: "terminated", "truncated" or "aborted" ("" = not ended).
    ending: str = ""
    timing: dict[str, float] = field(default_factory=dict)
    #: How many step moves ended with each outcome name (REACHED, CLAMPED, BLOCKED, ...).
    move_outcomes: dict[str, int] = field(default_factory=dict)
    #: How many gripper commands ended REACHED, STALLED or UNSETTLED.
    gripper_outcomes: dict[str, int] = field(default_factory=dict)


class _Timer:
    def __init__(self, timing: dict[str, float], clock: Callable[[], float]):
        self.timing, self.clock = timing, clock

    def add(self, key: str, start: float) -> float:
        now = self.clock()
        self.timing[key] = self.timing.get(key, 0.0) + (now - start)
        return now


class EpisodeRunner:
    """Runs one planned episode through a `CellPort` (see the module docstring)."""

    def __init__(
        self,
        port: CellPort,
        config: PolicyConfig,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.port = port
        self.config = config
        self.spec = ActionSpec(config.max_translation_m, config.max_yaw_rad)
        self.protocol = EpisodeProtocol.from_configs(config)
        self.clock = clock
        self._yaw = 0.0  # the gripper's yaw as the last move reported it [rad]

    def run(self, plan: EpisodePlan) -> EpisodeOutcome:
        """Run the episode; never raises for cell faults (they end it as aborted)."""
        outcome = EpisodeOutcome()
        timer = _Timer(outcome.timing, self.clock)
        try:
            t = self.clock()
            self._start(plan)
            after = timer.add("start_move", t)
            for step in range(plan.max_steps):
                if self.port.cancel_requested():
                    return self._abort(outcome, "canceled by the client")
                t = self.clock()
                obs = self.port.observe(after)
                t = timer.add("observe_wait", t)
                decision = plan.source.act(obs)
                t = timer.add("inference", t)
                self.port.publish_step(plan, step, decision, obs)
                # A step counts once its PolicyStep is out, so the bag's steps and the
                # EpisodeInfo agree even when executing it aborts the episode.
                outcome.steps = step + 1
                terminate = self._execute(decision.action, obs, timer, outcome)
                after = self.clock()
                outcome.ending = self.protocol.ending(step + 1, terminate, plan.max_steps)
                if outcome.ending:
                    outcome.terminated = outcome.ending == TERMINATED
                    break
        except StaleInputError as exc:
            return self._abort(outcome, exc.reason)
        except PortError as exc:
            return self._abort(outcome, str(exc))
        return outcome

    @staticmethod
    def _abort(outcome: EpisodeOutcome, reason: str) -> EpisodeOutcome:
        outcome.aborted, outcome.reason, outcome.ending = True, reason, ABORTED
        return outcome

    def _check(self, what: str, result: MoveResult) -> MoveResult:
        if result.outcome in FAILED_OUTCOMES:
            raise PortError(f"{what}: {result.outcome_name}: {result.message}")
        return result

    def _start(self, plan: EpisodePlan) -> None:
        """The protocol's start (`mtopt_policy.protocol`): open the gripper for lift-type
        episodes, rise to the safe height if low, then an absolute move to the start pose."""
        cfg = self.config
        self.port.wait_first_inputs(cfg.server_timeout_s)
        obs = self.port.observe(self.clock() - cfg.max_staleness_s)
        if plan.open_gripper_first and obs.gripper_closed:
            self.port.gripper(close=False)
        rise = self.protocol.rise(obs.height)
        speed = cfg.start_speed_mps
        probe = None
        if rise > 0 or speed > 0:
            # With a start speed, a zero rise still runs (briefly): its result says where the
            # gripper is, which times the start move.
            rise_time = max(rise / speed, 0.05) if speed > 0 else 0.0
            probe = self._check(
                "start move (rise)", self.port.move(MODE_DELTA, (0.0, 0.0, rise), 0.0, rise_time)
            )
        duration = 0.0
        if speed > 0 and probe is not None and probe.position is not None:
            distance = float(np.linalg.norm(plan.start_position - probe.position))
            turn = abs(_wrap(plan.start_yaw - (probe.yaw or 0.0)))
            duration = max(0.1, distance / speed, turn / cfg.start_yaw_speed_rps)
        start = self._check(
            "start move",
            self.port.move(MODE_ABSOLUTE, plan.start_position, plan.start_yaw, duration),
        )
        self._yaw = plan.start_yaw if start.yaw is None else start.yaw

    def _execute(
        self, action: np.ndarray, obs: Observation, timer: _Timer, outcome: EpisodeOutcome
    ) -> bool:
        """Send one action: arm (delta) then gripper if its bit changed. Returns terminate."""
        cfg = self.config
        translation, yaw, close, terminate = self.spec.to_physical(action)
        if self.protocol.moves_arm(translation, yaw):
            t = self.clock()
            # A tool-frame translation turns with the yaw the last move reported.
            translation = to_base_frame(translation, self._yaw, cfg.action_frame)
            result = self.port.move(MODE_DELTA, translation, yaw, cfg.step_duration_s)
            name = result.outcome_name
            outcome.move_outcomes[name] = outcome.move_outcomes.get(name, 0) + 1
            self._check("move_ee", result)
            self._yaw = _wrap(self._yaw + yaw) if result.yaw is None else result.yaw
            timer.add("move", t)
        if close != obs.gripper_closed:
            t = self.clock()
            name = self.port.gripper(close)
            outcome.gripper_outcomes[name] = outcome.gripper_outcomes.get(name, 0) + 1
            timer.add("gripper", t)
        return terminate


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def make_planner(config: PolicyConfig, registry: TaskRegistry) -> EpisodePlanner:
    """A planner with its weights slot, seeded from `config.seed` (-1: from the OS)."""
    seed = config.seed if config.seed >= 0 else int(np.random.SeedSequence().entropy % (2**31))
    cem = CEMConfig(config.cem_population, config.cem_elites, config.cem_iterations)
    weights = WeightsSlot(
        registry.names,
        config.image_size,
        cem,
        seed,
        int(config.max_weights_mb * 1024**2),
        weights_dirs=config.weights_dirs,
        load_timeout_s=config.weights_load_timeout_s,
        max_version_jump=config.max_version_jump,
        policy_settings=policy_settings_of(config),
    )
    return EpisodePlanner(config, registry, weights, np.random.default_rng(seed))
