"""The collector of an MT-Opt cell as plain classes (no rclpy): what `collector_node` runs.

One loop per cell (seed Sec. VI and XII): pick a task, record an episode of it, grade the final
images, log everything, decide between another task and a workspace reset.

* `TaskSequencer`: random tasks from the registry with pick -> place sequencing: after a lift
  episode whose grade says something is held, the next task is a place task; otherwise a lift
  task. Configurable task weights.
* `held_after` / `task_success`: the grade of an episode from the SD, else the simulator's
  oracle (if allowed), else the gripper's object detection.
* `ResetScheduler`: a bin reset every `reset_every` episodes and when the right bin is empty,
  deferred while an object is held (the place episode comes first).
* `CollectorStats`: per-task counts and success rates for `collector/status`.
* `CollectorLoop`: the loop itself, over a `CollectorPort` (the ROS side), including the pause
  while bin resets fail. After each episode it does the episode protocol's end
  (`mtopt_policy.protocol`): the present move, the settle time, then grading.
* `LoggerClient`: the collector's half of `logger/start` / `logger/finish` over a
  `LoggerLink` (the ROS calls): it records as its requester (the node's name), keeps the token
  of each recording it started and presents it to finish or discard that recording.
* `BinWatch`: notices the reset bin moving during an episode (from the logger start to the
  end of grading) that the collector did not cause, by the hinge angle or by a `reset_bin`
  goal it did not send; the loop then logs the episode as aborted ("bin moved during the
  episode: ..."), so the learner never trains on it.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mtopt_core.episodes import check_episode_id
from mtopt_core.tasks import TaskRegistry
from mtopt_policy.config import CollectorConfig
from mtopt_policy.protocol import EpisodeProtocol


class CollectorError(RuntimeError):
    """Something the collector asked for did not happen; the message says what and why."""


class EpisodeRejected(CollectorError):
    """policy/run_episode refused the goal (e.g. a goal of a collector that crashed still
    runs there): nothing ran; the collector waits `retry_period_s` before the next one."""


# --------------------------------------------------------------------------- records
@dataclass
class EpisodeResult:
    """What `policy/run_episode` reported (or why it did not)."""

    steps: int = 0
    terminated: bool = False
    aborted: bool = False
    reason: str = ""
    policy_kind: str = ""
    weights_version: int = -1
    weights_sha256: str = ""
    epsilon: float = 0.0


@dataclass
class Grade:
    """Success-detector output, already in registry task order."""

    probabilities: list[float]
    model_version: str


@dataclass
class OracleReading:
    """Privileged simulator state after an episode (registry task order)."""

    success: list[bool]
    objects_in_right_bin: int | None = None  # None: the oracle message does not say


@dataclass
class EpisodeSummary:
    """Everything EpisodeInfo holds about one episode."""

    episode_id: str
    cell_id: int
    task: str
    start_time: float  # wall clock [s since epoch]
    end_time: float
    result: EpisodeResult
    task_names: tuple[str, ...]
    grade: Grade | None = None
    oracle: OracleReading | None = None


def align_to_registry(
    names: Sequence[str], values: Sequence[Any], registry_names: Sequence[str]
) -> list[Any]:
    """Reorder per-task `values` (indexed like `names`) into registry order.

    Raises ValueError when the task sets differ (the values cannot be attributed).
    """
    if len(names) != len(values):
        raise ValueError(f"{len(names)} task names but {len(values)} values")
    if set(names) != set(registry_names) or len(set(names)) != len(names):
        missing = sorted(set(registry_names) - set(names))
        extra = sorted(set(names) - set(registry_names))
        raise ValueError(f"task lists differ (missing {missing}, unknown {extra})")
    index = {n: i for i, n in enumerate(names)}
    return [values[index[n]] for n in registry_names]


# --------------------------------------------------------------------------- sequencing
class TaskSequencer:
    """Random tasks with pick -> place sequencing (see the module docstring)."""

    def __init__(
        self,
        registry: TaskRegistry,
        lift_skill: str,
        place_skill: str,
        weights: Mapping[str, float],
        rng: np.random.Generator,
    ):
        unknown = sorted(set(weights) - set(registry.names))
        if unknown:
            raise ValueError(f"task_weights names unknown tasks {unknown}")
        for skill in (lift_skill, place_skill):
            if skill not in registry.skills:
                raise ValueError(f"unknown skill {skill!r}; skills: {sorted(registry.skills)}")
        self.registry = registry
        self.lift_skill, self.place_skill = lift_skill, place_skill
        self.rng = rng
        self.lift = self._weighted(registry.tasks_of_skill(lift_skill), weights, lift_skill)
        self.place = self._weighted(registry.tasks_of_skill(place_skill), weights, place_skill)
        self.holding = False

    @staticmethod
    def _weighted(tasks, weights: Mapping[str, float], skill: str):
        names = [t if isinstance(t, str) else t.name for t in tasks]
        w = np.array([float(weights.get(n, 1.0)) for n in names])
        if not names or w.sum() <= 0:
            raise ValueError(f"skill {skill!r} has no task with a positive weight")
        return names, w / w.sum()

    def next_task(self) -> str:
        """A place task while an object is held, else a lift task (weighted draw)."""
        names, p = self.place if self.holding else self.lift
        return str(names[int(self.rng.choice(len(names), p=p))])

    def observe(self, task: str, held: bool) -> None:
        """Record an episode's outcome: after a lift that left something held, place next."""
        self.holding = self.registry.skill_of(task) == self.lift_skill and held


def task_success(
    task: str,
    registry_names: Sequence[str],
    grade: Grade | None,
    oracle: OracleReading | None,
    threshold: float,
) -> bool | None:
    """Success of `task` by the SD (P >= threshold), else by the oracle; None if ungraded."""
    i = list(registry_names).index(task)
    if grade is not None:
        return grade.probabilities[i] >= threshold
    if oracle is not None:
        return bool(oracle.success[i])
    return None


def held_after(
    config: CollectorConfig,
    registry_names: Sequence[str],
    grade: Grade | None,
    oracle: OracleReading | None,
    gripper_holding: bool | None,
) -> tuple[bool, str]:
    """Is something held after an episode? (answer, what said so): SD, else oracle (if
    `use_oracle_for_sequencing`), else the gripper (if `use_gripper_for_sequencing`)."""
    i = list(registry_names).index(config.held_task)
    if grade is not None:
        return grade.probabilities[i] >= config.success_threshold, "sd"
    if oracle is not None and config.use_oracle_for_sequencing:
        return bool(oracle.success[i]), "oracle"
    if gripper_holding is not None and config.use_gripper_for_sequencing:
        return bool(gripper_holding), "gripper"
    return False, "none"


class ResetScheduler:
    """When to reset the bins: every `reset_every` episodes, and when the right bin is empty;
    deferred while an object is held."""

    def __init__(self, reset_every: int, reset_when_empty: bool):
        self.reset_every = reset_every
        self.reset_when_empty = reset_when_empty
        self.since_reset = 0
        self.pending = ""  # why a reset is due ("" = not due)

    def after_episode(self, right_bin_objects: int | None, holding: bool) -> str:
        """Count an episode; returns the reason a reset is due now ("" = not now)."""
        self.since_reset += 1
        if self.reset_every and self.since_reset >= self.reset_every and not self.pending:
            self.pending = f"scheduled (every {self.reset_every} episodes)"
        if self.reset_when_empty and right_bin_objects == 0:
            self.pending = "right bin empty"
        return "" if holding else self.pending

    def done(self) -> None:
        self.since_reset = 0
        self.pending = ""


# --------------------------------------------------------------------------- statistics
@dataclass
class StatusSnapshot:
    """What collector/status publishes."""

    cell_id: int
    episodes_total: int
    episodes_aborted: int
    paused: bool
    status: str
    task_names: list[str]
    episodes: list[int]
    successes: list[int]
    success_rate: list[float]


class CollectorStats:
    """Per-task episode counts and successes (by the SD, else the oracle)."""

    def __init__(self, task_names: Sequence[str]):
        self.task_names = list(task_names)
        self.episodes = dict.fromkeys(self.task_names, 0)
        self.successes = dict.fromkeys(self.task_names, 0)
        self.total = 0
        self.aborted = 0
        self.logged = 0

    def add(self, task: str, aborted: bool, success: bool | None, logged: bool) -> None:
        self.total += 1
        self.aborted += int(aborted)
        self.logged += int(logged)
        self.episodes[task] += 1
        self.successes[task] += int(bool(success))

    def snapshot(self, cell_id: int, paused: bool, status: str) -> StatusSnapshot:
        episodes = [self.episodes[n] for n in self.task_names]
        successes = [self.successes[n] for n in self.task_names]
        rates = [s / e if e else math.nan for s, e in zip(successes, episodes, strict=True)]
        return StatusSnapshot(
            cell_id,
            self.total,
            self.aborted,
            paused,
            status,
            list(self.task_names),
            episodes,
            successes,
            rates,
        )


def make_episode_id_factory(cell_id: int, clock: Callable[[], float] = time.time):
    """Unique episode ids: cell<N>_<UTC start of this collector>_<random>_<counter>, valid
    by `mtopt_core.episodes` (checked: ValueError otherwise)."""
    run = time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock()))
    tag = secrets.token_hex(2)
    counter = 0

    def next_id() -> str:
        nonlocal counter
        counter += 1
        return check_episode_id(f"cell{cell_id}_{run}_{tag}_{counter:05d}")

    return next_id


# --------------------------------------------------------------------------- the logger
@dataclass(frozen=True)
class LoggerReply:
    """A `logger/start` or `logger/finish` reply without ROS types. `outcome` is the name of
    the outcome code ("OK", "ALREADY_RECORDING", "NOT_RECORDING", "BAD_REQUEST",
    "WRITE_FAILED", "LOW_DISK"): the collector decides on it, never on `message`."""

    outcome: str
    message: str = ""
    recording_episode_id: str = ""
    token: str = ""
    bag_path: str = ""


class LostReply(CollectorError):
    """A request was sent but its reply never came: the logger may have acted on it."""


class LoggerLink(Protocol):
    """The logger's two services (implemented over ROS by collector_node)."""

    def start(self, episode_id: str, task: str, requester: str) -> LoggerReply:
        """`logger/start`, with the link's retries; CollectorError when never answered."""
        ...

    def finish(
        self, summary: EpisodeSummary | None, episode_id: str, token: str, discard: bool
    ) -> LoggerReply:
        """One `logger/finish` call (EpisodeInfo from `summary`, else just `episode_id`);
        LostReply when it is not answered."""
        ...


class LoggerClient:
    """The collector's half of the logger protocol (see `mtopt_logger.logger_node`).

    `start` asks to record as `requester` and keeps the token of the recording; `finish`
    presents it with the EpisodeInfo. When the logger is still recording an older episode
    (ALREADY_RECORDING), that one is discarded with its token: the token this client kept
    (its finish failed), or else the one a repeated start of that episode returns when this
    collector's name recorded it (a previous run of this node, which lost its token when it
    stopped). Another requester's recording is left alone: the start is refused.
    """

    MAX_TOKENS = 8  # recordings this client may still have to finish or discard

    def __init__(
        self,
        link: LoggerLink,
        requester: str,
        attempts: int,
        log: Callable[[str, str], None] = lambda level, message: None,
    ):
        if not requester:
            raise ValueError("requester must name the collector (its node name)")
        self.link = link
        self.requester = requester
        self.attempts = max(1, int(attempts))
        self.log = log
        self._tokens: OrderedDict[str, str] = OrderedDict()  # episode id -> token

    def token(self, episode_id: str) -> str:
        """The token of a recording this client started ("" if none)."""
        return self._tokens.get(episode_id, "")

    def _keep(self, episode_id: str, token: str) -> None:
        self._tokens[episode_id] = token
        self._tokens.move_to_end(episode_id)
        while len(self._tokens) > self.MAX_TOKENS:
            self._tokens.popitem(last=False)

    def start(self, episode_id: str, task: str) -> None:
        """Start recording `episode_id`; CollectorError when the logger refuses."""
        for _ in range(2):
            reply = self.link.start(episode_id, task, self.requester)
            if reply.outcome == "OK":
                if not reply.token:
                    raise CollectorError("logger/start answered OK without a token")
                self._keep(episode_id, reply.token)
                return
            if reply.outcome != "ALREADY_RECORDING":
                raise CollectorError(f"logger/start refused: {reply.message}")
            stale, token = reply.recording_episode_id, ""
            if stale and stale != episode_id:
                token = self.token(stale) or self._recover_token(stale, task)
            if not token:
                raise CollectorError(
                    f"logger/start refused: {reply.message} (a recording this collector"
                    " cannot finish: it has no token for it)"
                )
            self.log("warn", f"logger/start: {reply.message}; discarding it")
            self.discard(stale, token)
        raise CollectorError(f"logger/start refused: {reply.message}")

    def _recover_token(self, episode_id: str, task: str) -> str:
        """The token of `episode_id` if the logger records it for this requester ("")."""
        reply = self.link.start(episode_id, task, self.requester)
        if reply.outcome == "OK" and reply.recording_episode_id == episode_id:
            return reply.token
        return ""

    def discard(self, episode_id: str, token: str) -> None:
        """Drop the recording of `episode_id` (done when the logger no longer records)."""
        problem = ""
        for _ in range(self.attempts):
            try:
                reply = self.link.finish(None, episode_id, token, True)
            except LostReply as exc:
                problem = str(exc)
                continue
            if reply.outcome in ("OK", "NOT_RECORDING"):
                self._tokens.pop(episode_id, None)
                return
            raise CollectorError(f"logger/finish (discard) refused: {reply.message}")
        raise CollectorError(f"{problem}; gave up after {self.attempts} attempts")

    def finish(self, summary: EpisodeSummary) -> str:
        """Write `summary` as the EpisodeInfo and close the bag; returns its path."""
        episode_id = summary.episode_id
        token = self.token(episode_id)
        if not token:
            raise CollectorError(
                f"logger/finish: no token for episode {episode_id!r} (not started here)"
            )
        lost_reply, problem = False, ""
        for _ in range(self.attempts):
            try:
                reply = self.link.finish(summary, episode_id, token, False)
            except LostReply as exc:
                lost_reply, problem = True, str(exc)
                continue
            if reply.outcome == "OK":
                self._tokens.pop(episode_id, None)
                return reply.bag_path
            if lost_reply and reply.outcome == "NOT_RECORDING":
                self._tokens.pop(episode_id, None)
                raise CollectorError(
                    "logger/finish: an earlier attempt got no reply and the logger now has no "
                    "recording episode; the bag may or may not be complete"
                )
            raise CollectorError(f"logger/finish refused: {reply.message}")
        raise CollectorError(f"{problem}; gave up after {self.attempts} attempts")


# --------------------------------------------------------------------------- the bin
#: The bin counts as moved when its hinge angle leaves the angle at the episode's start by
#: more than this [rad] (a reset tilts by about 2.6 rad; the motor holds level within 0.03).
BIN_MOTION_TOLERANCE_RAD = 0.05


class BinWatch:
    """Foreign motion of the reset bin during an episode (thread-safe: ROS callbacks feed it,
    the collector loop asks it).

    Fed with every hinge angle (`on_angle`, topic `reset_bin/state`), the goals of the
    `reset_bin/reset` action that are active (`on_active_goals`, its status topic), and the
    ids of the goals the collector sends itself (`own_goal`). Between `begin` and `end` the
    bin has moved when its angle differs from the angle at `begin` (or the first angle after
    it, if none came before) by more than `tolerance_rad`, or when a goal the collector did
    not send is active. `end` returns why ("" when it did not move).
    """

    def __init__(self, tolerance_rad: float = BIN_MOTION_TOLERANCE_RAD, remember_own: int = 16):
        if not tolerance_rad > 0:
            raise ValueError(f"tolerance_rad must be > 0, got {tolerance_rad}")
        self.tolerance_rad = float(tolerance_rad)
        self._lock = threading.Lock()
        self._angle: float | None = None
        self._active: frozenset[bytes] = frozenset()
        self._own: deque[bytes] = deque(maxlen=remember_own)
        self._watching = False
        self._reference: float | None = None
        self._problem = ""

    def own_goal(self, goal_id: bytes) -> None:
        """A `reset_bin/reset` goal the collector sent (never counted as foreign)."""
        with self._lock:
            self._own.append(bytes(goal_id))

    def on_angle(self, angle: float) -> None:
        with self._lock:
            angle = float(angle)
            self._angle = angle
            if not self._watching or self._problem or not math.isfinite(angle):
                return
            if self._reference is None:
                self._reference = angle
            elif abs(angle - self._reference) > self.tolerance_rad:
                self._problem = (
                    f"bin moved during the episode: hinge angle {angle:.3f} rad, "
                    f"{abs(angle - self._reference):.3f} rad from {self._reference:.3f} rad at "
                    f"its start (tolerance {self.tolerance_rad:g} rad)"
                )

    def on_active_goals(self, goal_ids: Iterable[bytes]) -> None:
        """The ids of the `reset_bin/reset` goals accepted, executing or canceling now."""
        with self._lock:
            self._active = frozenset(bytes(g) for g in goal_ids)
            self._check_goals()

    def _check_goals(self) -> None:
        # Called with the lock held.
        if not self._watching or self._problem:
            return
        foreign = sorted(self._active - set(self._own))
        if foreign:
            self._problem = (
                "bin moved during the episode: a reset_bin/reset goal ran that this collector "
                f"did not send (goal {foreign[0].hex()[:8]})"
            )

    def begin(self) -> None:
        """Start watching (an episode starts)."""
        with self._lock:
            self._watching, self._problem = True, ""
            finite = self._angle is not None and math.isfinite(self._angle)
            self._reference = self._angle if finite else None
            self._check_goals()

    def end(self) -> str:
        """Stop watching; why the bin moved since `begin` ("" when it did not)."""
        with self._lock:
            self._watching = False
            problem, self._problem = self._problem, ""
            return problem


# --------------------------------------------------------------------------- the loop
class CollectorPort(Protocol):
    """The collector's view of the cell (implemented over ROS by collector_node).
    Methods that talk to other nodes raise CollectorError when that fails."""

    def ok(self) -> bool: ...
    def missing_inputs(self) -> list[str]: ...
    def start_logging(self, episode_id: str, task: str) -> None: ...
    def run_episode(self, episode_id: str, task: str) -> EpisodeResult: ...
    def final_images(self, after: float) -> tuple[dict[str, Any] | None, str]: ...
    def grade(self, images: dict[str, Any]) -> Grade: ...
    def sd_available(self) -> bool: ...
    def oracle(self, after: float) -> OracleReading | None: ...
    def gripper_holding(self) -> bool | None: ...
    def finish_logging(self, summary: EpisodeSummary) -> str: ...
    def go_home(self) -> None: ...
    def present(self) -> None: ...
    def reset_bin(self) -> None: ...
    def respawn(self) -> bool: ...
    def publish_status(self, snapshot: StatusSnapshot) -> None: ...
    def publish_timing(self, timing: dict[str, Any]) -> None: ...
    def log(self, level: str, message: str) -> None: ...
    def sleep(self, seconds: float) -> bool: ...


def _log_now(count: int) -> bool:
    """Log the 1st, 10th, 100th and every 1000th occurrence of a recurring warning."""
    return count in (1, 10, 100) or count % 1000 == 0


@dataclass
class _Phases:
    clock: Callable[[], float]
    timing: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, start: float) -> float:
        now = self.clock()
        self.timing[key] = round(self.timing.get(key, 0.0) + now - start, 4)
        return now


class CollectorLoop:
    """Runs episodes until `episodes` are logged (0 = until the port stops being ok)."""

    def __init__(
        self,
        config: CollectorConfig,
        registry: TaskRegistry,
        port: CollectorPort,
        rng: np.random.Generator,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        bin_watch: BinWatch | None = None,
    ):
        self.config = config
        self.registry = registry
        self.names = tuple(registry.names)
        if config.held_task not in registry:
            raise ValueError(f"held_task {config.held_task!r} is not a registry task")
        self.port = port
        self.protocol = EpisodeProtocol.from_configs(collector=config)
        self.sequencer = TaskSequencer(
            registry, config.lift_skill, config.place_skill, config.parsed_task_weights(), rng
        )
        self.resets = ResetScheduler(config.reset_every, config.reset_when_empty)
        self.stats = CollectorStats(self.names)
        self.next_id = make_episode_id_factory(config.cell_id, wall)
        self.monotonic, self.wall = monotonic, wall
        self.bin_watch = bin_watch  # None: nothing else can move the bin (in-process cells)
        self.paused = False
        self.status = "starting"
        self._warned_ungraded = 0
        self._warned_present = 0
        self.last_oracle: OracleReading | None = None

    # -- status ----------------------------------------------------------------------------
    def snapshot(self) -> StatusSnapshot:
        return self.stats.snapshot(self.config.cell_id, self.paused, self.status)

    def _set_status(self, status: str, paused: bool | None = None) -> None:
        changed = status != self.status or (paused is not None and paused != self.paused)
        self.status = status
        if paused is not None:
            self.paused = paused
        if changed:
            self.port.publish_status(self.snapshot())

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> bool:
        """Collect until done (True) or the port stops (False)."""
        cfg, port = self.config, self.port
        while port.ok():
            if cfg.episodes and self.stats.logged >= cfg.episodes:
                self._set_status(f"done: {self.stats.logged} episodes logged")
                return True
            reset_now = self.resets.pending and not self.sequencer.holding
            if reset_now and not self._reset():
                port.sleep(cfg.retry_period_s)
                continue
            missing = port.missing_inputs()
            if missing:
                self._set_status("waiting: " + "; ".join(missing))
                port.sleep(cfg.wait_period_s)
                continue
            self._set_status("running")
            self.run_one()
        return False

    def run_one(self) -> EpisodeSummary | None:
        """One episode: log start, run, grade, log finish, bookkeeping."""
        cfg, port = self.config, self.port
        phases = _Phases(self.monotonic)
        task = self.sequencer.next_task()
        episode_id = self.next_id()
        t = self.monotonic()
        watch = self.bin_watch
        if watch is not None:
            watch.begin()
        try:
            port.start_logging(episode_id, task)
        except CollectorError as exc:
            if watch is not None:
                watch.end()
            self._set_status(f"waiting: {exc}")
            port.log("warn", f"episode {episode_id} not started: {exc}")
            port.sleep(cfg.wait_period_s)
            return None
        t = phases.add("logger_start", t)
        start_wall = self.wall()
        rejected = False
        try:
            result = port.run_episode(episode_id, task)
        except CollectorError as exc:
            result = EpisodeResult(aborted=True, reason=str(exc))
            rejected = isinstance(exc, EpisodeRejected)
        end_wall = self.wall()
        t = phases.add("run_episode", t)
        if self.protocol.present_before_grading:
            try:
                port.present()
            except CollectorError as exc:
                self._warned_present += 1
                if _log_now(self._warned_present):
                    port.log(
                        "warn",
                        f"episode {episode_id}: present pose not reached ({exc}); graded from "
                        f"where the arm is ({self._warned_present} such episodes so far)",
                    )
            t = phases.add("present", t)
        if self.protocol.settle_s > 0:
            port.sleep(self.protocol.settle_s)
        after = self.monotonic()
        t = phases.add("settle", t)
        grade = None
        if cfg.grade:
            grade, problem = self._grade(after)
            if grade is None:
                self._warned_ungraded += 1
                if _log_now(self._warned_ungraded):
                    port.log(
                        "warn",
                        f"episode {episode_id} ungraded ({problem}); logged with empty SD "
                        f"probabilities ({self._warned_ungraded} ungraded so far)",
                    )
        t = phases.add("grade", t)
        oracle = port.oracle(after) if cfg.use_oracle else None
        if oracle is not None:
            self.last_oracle = oracle
        t = phases.add("oracle", t)
        moved = watch.end() if watch is not None else ""
        if moved:  # the scene changed under the policy: never logged as normal data
            reason = f"{moved}; {result.reason}" if result.aborted and result.reason else moved
            result = dataclasses.replace(result, aborted=True, reason=reason)
            port.log("warn", f"episode {episode_id} aborted: {moved}")
        summary = EpisodeSummary(
            episode_id,
            cfg.cell_id,
            task,
            start_wall,
            end_wall,
            result,
            self.names,
            grade,
            oracle,
        )
        logged = True
        try:
            bag = port.finish_logging(summary)
        except CollectorError as exc:
            logged = False
            port.log("error", f"episode {episode_id} NOT logged: {exc}")
        t = phases.add("logger_finish", t)
        success = task_success(task, self.names, grade, oracle, cfg.success_threshold)
        held, source = held_after(cfg, self.names, grade, oracle, port.gripper_holding())
        self.sequencer.observe(task, held)
        self.stats.add(task, result.aborted, success, logged)
        right_bin = oracle.objects_in_right_bin if oracle is not None else None
        due = self.resets.after_episode(right_bin, self.sequencer.holding)
        port.publish_status(self.snapshot())
        outcome = f"ABORTED ({result.reason})" if result.aborted else f"{result.steps} steps"
        port.log(
            "info",
            f"episode {episode_id} {task} [{result.policy_kind or '-'}]: {outcome}, "
            f"success={success}, held={held} (by {source})"
            + (f", bag {bag}" if logged else "")
            + (f"; bin reset due: {due}" if due else ""),
        )
        timing = {"episode_id": episode_id, "task": task, "aborted": result.aborted}
        timing.update(phases.timing)
        port.publish_timing(timing)
        if rejected:  # do not hammer a policy that is busy with an orphaned goal
            self._set_status(f"waiting: {result.reason}")
            port.sleep(cfg.retry_period_s)
        return summary

    def _grade(self, after: float) -> tuple[Grade | None, str]:
        port = self.port
        if not port.sd_available():
            return None, "sd/grade not available"
        images, problem = port.final_images(after)
        if images is None:
            return None, problem
        try:
            return port.grade(images), ""
        except CollectorError as exc:
            return None, str(exc)

    def _reset(self) -> bool:
        """Park the arm and reset the bin; on failure pause (status) and return False."""
        port, phases = self.port, _Phases(self.monotonic)
        reason = self.resets.pending
        self._set_status(f"resetting bin ({reason})", paused=self.paused)
        t = self.monotonic()
        try:
            port.go_home()
            t = phases.add("go_home", t)
            port.reset_bin()
            phases.add("reset_bin", t)
        except CollectorError as exc:
            self._set_status(
                f"paused: bin reset failed ({exc}); retrying every "
                f"{self.config.retry_period_s:g} s",
                paused=True,
            )
            port.log("error", f"bin reset failed, collection paused: {exc}")
            return False
        if self.paused:
            port.log("info", "bin reset succeeded: collection resumes")
        else:
            port.log("info", f"bin reset done ({reason}) in {sum(phases.timing.values()):.1f} s")
        self.resets.done()
        self._set_status("running", paused=False)
        if self.config.respawn_when_empty:
            oracle = port.oracle(self.monotonic()) if self.config.use_oracle else None
            below = self.config.respawn_below
            count = None if oracle is None else oracle.objects_in_right_bin
            if count is not None and count < below and port.respawn():
                what = "still empty" if count == 0 else f"holds {count} < {below} objects"
                port.log("info", f"right bin {what} after the reset: respawned objects")
        port.publish_timing({"reset": reason, **phases.timing})
        return True
