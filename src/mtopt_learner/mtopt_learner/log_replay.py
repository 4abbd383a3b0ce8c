"""LogReplay (seed Fig. 11): episode bags on disk -> relabelled per-task replay buffers.

`LogReplay.poll()` scans the episode directory (complete bags only, never `<id>.part`), and
ingests every bag it has not seen yet, in name order: decode (`episode_decoder`), label (SD
probabilities, oracle, or a re-grading callable), relabel with the impersonation function
(`orig`, `all`, `skill`, `skill_stochastic(ps, pf)`) and add the copies to the per-task
success/failure buffers of a `mtopt_core.replay.ReplayBuffer`.

State directory (`state_dir`)::

    ledger.jsonl    one JSON line per bag seen: {"name", "outcome", "reason", "steps",
                    "relabels", "episode_id", "time"}; outcome is ingested | skipped |
                    quarantined. Append-only; each line is flushed and fsync'd before the next
                    bag is looked at.
    quarantine/     corrupt or undecodable bags, moved here (rename) from the episode directory

Outcomes: *ingested* (in the buffer), *skipped* (a fine bag that cannot train: not closed by
an accepted closer (`accepted_closers`, see `episode_decoder`), aborted, 0 steps, ungraded,
unknown task, no known label for any relabelled task, wrong image size; never retried, also not
after `accepted_closers` changed: use a new state directory for that), *quarantined*
(EpisodeBagError or any other decode failure: moved to `quarantine/<name>`; if the move fails,
that is recorded in the reason and the bag stays where it is, never retried). Each is logged
once, when it happens, and listed in the poll's report; bags of no accepted closer (their
labels may be forged) are logged as warnings and named one by one, like quarantined ones.

Crash and restart: the ledger is the durable record of what was counted; the replay buffer
lives in memory. A new LogReplay reads the ledger (a torn last line from a crash mid-append is
tolerated and reported; that bag simply counts as not seen yet), and its first `poll()`
*restores* the buffer: it re-decodes the bags the ledger lists as ingested and adds them again,
in their original order, without counting them as new (`ingested_total` comes from the ledger,
`new_this_run` counts only new bags). Only the newest ingested bags that fit the replay's
memory budget are re-decoded (older ones would be evicted anyway). Relabelling draws from a
generator seeded by (seed, bag name), so `skill_stochastic` picks the same copies on restore.
With a re-grading callable as labels source, restored episodes are graded by the current model.
A restored bag that vanished or no longer decodes is reported (`restore_failures`), not
re-counted.

Thread safety: `poll()` holds `lock` while it changes the buffer; a trainer sampling the buffer
from another thread must hold it too.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtopt_core.atomic_io import fsync_dir
from mtopt_core.episode_bag import EpisodeBagError, list_episode_bags
from mtopt_core.images import FULL_FRAME, check_roi
from mtopt_core.impersonation import Impersonation, make_impersonation
from mtopt_core.replay import (
    EPISODE_OVERHEAD_BYTES,
    REFERENCE_OVERHEAD_BYTES,
    SAMPLERS,
    ReplayBuffer,
    ReplayConfig,
)
from mtopt_core.sd_model import CAMERAS
from mtopt_core.tasks import TaskRegistry, load_task_registry
from mtopt_learner.episode_decoder import (
    DEFAULT_ACCEPTED_CLOSERS,
    LABEL_SOURCES,
    NOT_ACCEPTED,
    DecodedEpisode,
    GradingError,
    accepted_closers_problem,
    episode_from_bag,
)

log = logging.getLogger(__name__)

INGESTED, SKIPPED, QUARANTINED = "ingested", "skipped", "quarantined"
OUTCOMES = (INGESTED, SKIPPED, QUARANTINED)
LEDGER_NAME = "ledger.jsonl"
QUARANTINE_NAME = "quarantine"


@dataclass(frozen=True)
class LogReplayConfig:
    """LogReplay settings.

    Fields:
        bag_dir: directory the logger writes episode bags into (`<id>/`, `<id>.part/`).
        state_dir: LogReplay's own directory: `ledger.jsonl` and `quarantine/` (created).
        labels_source: "sd" (EpisodeInfo SD probabilities), "oracle" (simulation ground
            truth) or a `grade(final_images_by_camera) -> probabilities` callable.
        impersonation: impersonation function, as `make_impersonation` parses it: "orig",
            "all", "skill" (the seed's default) or "skill_stochastic(ps, pf)".
        seed: seeds the replay sampler and the per-bag relabelling draws.
        sampler: replay sampling: "rebalanced" (MT-Opt) or "uniform" (ablation).
        memory_budget_bytes: replay buffer byte budget (oldest episodes evicted beyond it).
        sd_threshold: P(success) at or above which an SD / grade probability is a success.
        image_size: observation side [px]; None keeps the recorded policy image size.
        policy_camera: camera whose last frame is the final observation.
        policy_roi: region of interest (x0, y0, x1, y1, fractions) of that camera's frame the
            policy crops its image from (the policy node's `policy_roi`); the final frame is
            cropped the same way.
        cameras: cameras whose last frames a grade callable gets.
        tasks_file: task registry file (None: `config/tasks.yaml` / $MTOPT_TASKS_FILE).
        quarantine_dir: where corrupt bags go (None: `<state_dir>/quarantine`).
        max_bags_per_poll: at most this many new bags per `poll()` (0: all), so a node's poll
            stays short when a large backlog appears.
        accepted_closers: fnmatch patterns of `EpisodeInfo.closed_by`; bags of other closers
            (or none) are skipped and reported.
    """

    bag_dir: str | os.PathLike
    state_dir: str | os.PathLike
    labels_source: str | Callable[[Mapping[str, np.ndarray]], Any] = "sd"
    impersonation: str = "skill"
    seed: int = 0
    sampler: str = "rebalanced"
    memory_budget_bytes: int = 2 * 1024**3
    sd_threshold: float = 0.5
    image_size: int | None = None
    policy_camera: str = "overhead"
    policy_roi: tuple[float, ...] = FULL_FRAME
    cameras: tuple[str, ...] = CAMERAS
    tasks_file: str | None = None
    quarantine_dir: str | os.PathLike | None = None
    max_bags_per_poll: int = 0
    accepted_closers: tuple[str, ...] = DEFAULT_ACCEPTED_CLOSERS

    def validate(self) -> LogReplayConfig:
        """Return self, or raise ValueError naming the bad field."""
        if not str(self.bag_dir).strip():
            raise ValueError("LogReplayConfig.bag_dir must not be empty")
        if not str(self.state_dir).strip():
            raise ValueError("LogReplayConfig.state_dir must not be empty")
        if not callable(self.labels_source) and self.labels_source not in LABEL_SOURCES:
            raise ValueError(
                f"LogReplayConfig.labels_source must be one of {LABEL_SOURCES} or a grade "
                f"callable, got {self.labels_source!r}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(
                f"LogReplayConfig.sampler must be one of {SAMPLERS}, got {self.sampler!r}"
            )
        if not 0.0 <= self.sd_threshold <= 1.0:
            raise ValueError(
                f"LogReplayConfig.sd_threshold must be in [0, 1], got {self.sd_threshold}"
            )
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"LogReplayConfig.image_size must be >= 8, got {self.image_size}")
        if self.max_bags_per_poll < 0:
            raise ValueError(
                f"LogReplayConfig.max_bags_per_poll must be >= 0, got {self.max_bags_per_poll}"
            )
        check_roi(self.policy_roi, "LogReplayConfig.policy_roi")
        problem = accepted_closers_problem(self.accepted_closers)
        if problem:
            raise ValueError(f"LogReplayConfig.accepted_closers {problem}")
        return self


@dataclass
class LedgerEntry:
    """One ledger line."""

    name: str
    outcome: str
    reason: str = ""
    steps: int = 0
    relabels: int = 0
    episode_id: str = ""
    time: float = 0.0


class Ledger:
    """The append-only JSON-lines record of every bag LogReplay has dealt with.

    Reading tolerates lines that do not parse: a torn last line (the process died while
    appending it; that bag counts as not seen) and, should one exist, malformed lines inside.
    Both are listed in `problems`. Before the first append after a torn line, a newline ends the
    fragment so the new record starts on its own line.
    """

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, LedgerEntry] = {}
        self.ingested_order: list[str] = []  # names with outcome ingested, in ledger order
        self.problems: list[str] = []
        self._needs_newline = False
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        if not data:
            return
        self._needs_newline = not data.endswith(b"\n")
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            entry = self._parse(raw)
            if entry is None:
                torn = number == len(lines) and self._needs_newline
                kind = "torn last line (interrupted write)" if torn else "malformed line"
                text = raw[:80].decode("utf-8", "replace")
                self.problems.append(f"{self.path}:{number}: {kind} ignored: {text!r}")
                continue
            previous = self.entries.get(entry.name)
            if previous is not None and previous.outcome == INGESTED:
                self.ingested_order.remove(entry.name)
            self.entries[entry.name] = entry
            if entry.outcome == INGESTED:
                self.ingested_order.append(entry.name)

    @staticmethod
    def _parse(raw: bytes) -> LedgerEntry | None:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return None
        if obj.get("outcome") not in OUTCOMES:
            return None
        try:
            return LedgerEntry(
                name=obj["name"],
                outcome=obj["outcome"],
                reason=str(obj.get("reason", "")),
                steps=int(obj.get("steps", 0)),
                relabels=int(obj.get("relabels", 0)),
                episode_id=str(obj.get("episode_id", "")),
                time=float(obj.get("time", 0.0)),
            )
        except (TypeError, ValueError):
            return None

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def count(self, outcome: str) -> int:
        return sum(1 for e in self.entries.values() if e.outcome == outcome)

    def append(self, entry: LedgerEntry) -> None:
        """Append one line, flushed and fsync'd (the directory too when the file is new)."""
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        if self._needs_newline:
            line = "\n" + line
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if new_file:
            fsync_dir(self.path.parent)
        self._needs_newline = False
        self.entries[entry.name] = entry
        if entry.outcome == INGESTED:
            self.ingested_order.append(entry.name)


@dataclass
class IngestReport:
    """What one `poll()` did.

    Fields:
        ingested: names of the bags ingested (new this poll).
        skipped / quarantined: (name, reason) of bags skipped / quarantined this poll.
        restored: episodes re-added from the ledger (first poll of a LogReplay only).
        restore_not_needed: ledger-ingested bags not re-decoded because newer ones fill the
            replay budget.
        restore_failures: (name, reason) of ledger-ingested bags that could not be restored.
        ledger_problems: unparsable ledger lines found at start (first poll only).
        pending: complete bags not looked at yet (max_bags_per_poll reached).
        ingest_seconds / restore_seconds: time spent decoding and adding.
        buffer_sizes: `ReplayBuffer.buffer_sizes()` after the poll (per task: success/failure
            episodes and transitions).
        buffer_episodes / buffer_transitions / buffer_bytes: replay totals after the poll.
    """

    ingested: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    restored: int = 0
    restore_not_needed: int = 0
    restore_failures: list[tuple[str, str]] = field(default_factory=list)
    ledger_problems: list[str] = field(default_factory=list)
    pending: int = 0
    ingest_seconds: float = 0.0
    restore_seconds: float = 0.0
    buffer_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    buffer_episodes: int = 0
    buffer_transitions: int = 0
    buffer_bytes: int = 0

    @property
    def ingest_rate(self) -> float:
        """New bags (any outcome) per second of ingest time this poll."""
        seen = len(self.ingested) + len(self.skipped) + len(self.quarantined)
        return seen / self.ingest_seconds if self.ingest_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ingest_rate"] = self.ingest_rate
        return d

    def summary(self) -> str:
        parts = [
            f"{len(self.ingested)} ingested",
            f"{len(self.skipped)} skipped",
            f"{len(self.quarantined)} quarantined",
        ]
        if self.restored or self.restore_failures:
            parts.append(f"{self.restored} restored from the ledger")
        if self.pending:
            parts.append(f"{self.pending} pending")
        return (
            ", ".join(parts)
            + f"; replay holds {self.buffer_episodes} episodes / {self.buffer_transitions}"
            f" transitions ({self.ingest_rate:.1f} bags/s)"
        )


def describe_ingest(
    report: IngestReport, bag_dir: Path | str, ledger_path: Path | str, where: str = ""
) -> str:
    """A poll's report for people: the summary line, then skip reasons (counted), quarantined
    and unrestorable bags and ledger problems. `where` tags the header (e.g. " (Ray actor)")."""
    lines = [f"LogReplay over {bag_dir}{where}: {report.summary()}"]
    if report.restored:
        lines.append(f"  {report.restored} episodes restored from {ledger_path}")
    reasons = Counter(reason.split(":")[0] for _, reason in report.skipped)
    for reason, n in reasons.most_common():
        lines.append(f"  skipped {n}: {reason}")
    for name, reason in report.skipped:
        if reason.startswith(NOT_ACCEPTED):
            lines.append(f"  skipped {name}: {reason}")
    for name, reason in report.quarantined:
        lines.append(f"  quarantined {name}: {reason}")
    for name, reason in report.restore_failures:
        lines.append(f"  not restored {name}: {reason}")
    for problem in report.ledger_problems:
        lines.append(f"  ledger: {problem}")
    return "\n".join(lines)


class LogReplay:
    """Turns the episode directory into a relabelled replay buffer (see module docstring)."""

    def __init__(self, config: LogReplayConfig, registry: TaskRegistry | None = None):
        self.config = config.validate()
        self.registry = registry or load_task_registry(config.tasks_file)
        try:
            self.impersonation: Impersonation = make_impersonation(
                config.impersonation, self.registry
            )
        except ValueError as exc:
            raise ValueError(f"LogReplayConfig.impersonation: {exc}") from None
        self.bag_dir = Path(config.bag_dir)
        self.state_dir = Path(config.state_dir)
        self.quarantine_dir = Path(config.quarantine_dir or self.state_dir / QUARANTINE_NAME)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.state_dir / LEDGER_NAME)
        for problem in self.ledger.problems:
            log.warning("ledger: %s", problem)
        self.buffer = ReplayBuffer(
            self.registry.names,
            ReplayConfig(config.memory_budget_bytes, config.sampler, config.seed),
        )
        self.lock = threading.RLock()
        self.new_this_run = 0
        self.restored = 0
        self._restored_once = False
        self._ingest_seconds = 0.0
        self._seen_this_run = 0

    # --- counters -----------------------------------------------------------------------------

    @property
    def ingested_total(self) -> int:
        """Bags ever ingested by this state directory (ledger), this run's included."""
        return self.ledger.count(INGESTED)

    @property
    def skipped_total(self) -> int:
        return self.ledger.count(SKIPPED)

    @property
    def quarantined_total(self) -> int:
        return self.ledger.count(QUARANTINED)

    @property
    def ingest_rate(self) -> float:
        """New bags (any outcome) per second of ingest time over this run."""
        return self._seen_this_run / self._ingest_seconds if self._ingest_seconds > 0 else 0.0

    def stats(self) -> dict[str, Any]:
        """Counters and replay sizes (for logs, TensorBoard, the CLI summary)."""
        return {
            "ingested_total": self.ingested_total,
            "new_this_run": self.new_this_run,
            "restored": self.restored,
            "skipped_total": self.skipped_total,
            "quarantined_total": self.quarantined_total,
            "ingest_rate": self.ingest_rate,
            "buffer_episodes": self.buffer.num_episodes,
            "buffer_transitions": self.buffer.num_transitions,
            "buffer_bytes": self.buffer.nbytes,
            "buffer_sizes": self.buffer.buffer_sizes(),
        }

    # --- polling ------------------------------------------------------------------------------

    def poll(self) -> IngestReport:
        """Restore from the ledger (first call), then ingest new complete bags in name order."""
        report = IngestReport()
        with self.lock:
            if not self._restored_once:
                report.ledger_problems = list(self.ledger.problems)
                started = time.perf_counter()
                self._restore(report)
                report.restore_seconds = time.perf_counter() - started
                self._restored_once = True
            new = [b for b in list_episode_bags(self.bag_dir) if b.name not in self.ledger]
            limit = self.config.max_bags_per_poll
            if limit and len(new) > limit:
                report.pending = len(new) - limit
                new = new[:limit]
            started = time.perf_counter()
            for bag in new:
                self._ingest(bag, report)
            report.ingest_seconds = time.perf_counter() - started
            self._ingest_seconds += report.ingest_seconds
            report.buffer_sizes = self.buffer.buffer_sizes()
            report.buffer_episodes = self.buffer.num_episodes
            report.buffer_transitions = self.buffer.num_transitions
            report.buffer_bytes = self.buffer.nbytes
        return report

    def _rng(self, name: str) -> np.random.Generator:
        """Relabelling draws of one bag: the same on every ingest of it (restore included)."""
        return np.random.default_rng([self.config.seed, zlib.crc32(name.encode())])

    def _decode(self, bag: Path) -> DecodedEpisode:
        cfg = self.config
        return episode_from_bag(
            bag,
            self.registry,
            cfg.labels_source,
            policy_camera=cfg.policy_camera,
            policy_roi=cfg.policy_roi,
            cameras=cfg.cameras,
            sd_threshold=cfg.sd_threshold,
            image_size=cfg.image_size,
            accepted_closers=cfg.accepted_closers,
        )

    def _ingest(self, bag: Path, report: IngestReport) -> None:
        name = bag.name
        try:
            decoded = self._decode(bag)
        except GradingError:
            raise  # a grader problem, not the bag's: never quarantine or skip for it
        except Exception as exc:  # any decode failure quarantines the bag
            if isinstance(exc, EpisodeBagError):
                reason = exc.reason
            else:
                reason = f"{type(exc).__name__}: {exc}"
            self._quarantine(bag, reason, report)
            return
        if decoded.skip_reason:
            self._record(name, SKIPPED, decoded.skip_reason, decoded, report)
            return
        episode = decoded.episode
        relabels = self.impersonation(episode.task, episode.labels, self._rng(name))
        if not relabels:
            reason = (
                f"no relabelled copies: no known label for {episode.task!r}"
                f"{' or the tasks it impersonates' if self.impersonation.name != 'orig' else ''}"
            )
            self._record(name, SKIPPED, reason, decoded, report)
            return
        try:
            self.buffer.add(episode, relabels)
        except (ValueError, KeyError) as exc:  # e.g. another image size than the buffer's
            self._record(name, SKIPPED, f"not added to the replay: {exc}", decoded, report)
            return
        self.new_this_run += 1
        self._record(name, INGESTED, "", decoded, report, len(relabels))

    def _record(
        self,
        name: str,
        outcome: str,
        reason: str,
        decoded: DecodedEpisode | None,
        report: IngestReport,
        relabels: int = 0,
    ) -> None:
        self.ledger.append(
            LedgerEntry(
                name=name,
                outcome=outcome,
                reason=reason,
                steps=decoded.steps if decoded is not None else 0,
                relabels=relabels,
                episode_id=decoded.episode_id if decoded is not None else "",
                time=time.time(),
            )
        )
        self._seen_this_run += 1
        if outcome == INGESTED:
            report.ingested.append(name)
            log.debug("ingested %s (%d relabelled copies)", name, relabels)
        elif outcome == SKIPPED:
            report.skipped.append((name, reason))
            if reason.startswith(NOT_ACCEPTED):
                log.warning("skipped %s: %s", name, reason)
            else:
                log.info("skipped %s: %s", name, reason)
        else:
            report.quarantined.append((name, reason))
            log.warning("quarantined %s: %s", name, reason)

    def _quarantine(self, bag: Path, reason: str, report: IngestReport) -> None:
        """Move a bad bag out of the episode directory, then record it (never retried)."""
        target = self.quarantine_dir / bag.name
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise FileExistsError(f"{target} exists already")
            os.rename(bag, target)
            fsync_dir(self.quarantine_dir)
            reason = f"{reason} (moved to {target})"
        except OSError as exc:
            reason = f"{reason} (could not move it to {target}: {exc}; left in place)"
        self._record(bag.name, QUARANTINED, reason, None, report)

    # --- restore after a restart --------------------------------------------------------------

    def _restore(self, report: IngestReport) -> None:
        """Re-add the ledger's ingested bags that fit the budget, oldest first; not counted."""
        budget = self.config.memory_budget_bytes
        names = self.ledger.ingested_order
        chosen: list[tuple[str, Any, list]] = []
        used = 0
        for index in range(len(names) - 1, -1, -1):
            name = names[index]
            bag = self.bag_dir / name
            try:
                if not bag.is_dir():
                    raise EpisodeBagError(bag, "bag no longer exists")
                decoded = self._decode(bag)
            except GradingError:
                raise
            except Exception as exc:  # report, never re-count
                reason = exc.reason if isinstance(exc, EpisodeBagError) else repr(exc)
                report.restore_failures.append((name, reason))
                log.warning("cannot restore %s from the ledger: %s", name, reason)
                continue
            if decoded.episode is None:
                reason = f"now skipped: {decoded.skip_reason}"
                report.restore_failures.append((name, reason))
                log.warning("cannot restore %s from the ledger: %s", name, reason)
                continue
            relabels = self.impersonation(
                decoded.episode.task, decoded.episode.labels, self._rng(name)
            )
            if not relabels:
                report.restore_failures.append((name, "no relabelled copies any more"))
                continue
            size = (
                decoded.episode.nbytes
                + EPISODE_OVERHEAD_BYTES
                + len(relabels) * REFERENCE_OVERHEAD_BYTES
            )
            if used + size > budget:
                report.restore_not_needed = index + 1
                break
            used += size
            chosen.append((name, decoded.episode, relabels))
        for name, episode, relabels in reversed(chosen):
            try:
                self.buffer.add(episode, relabels)
            except (ValueError, KeyError) as exc:
                report.restore_failures.append((name, f"not added to the replay: {exc}"))
                continue
            report.restored += 1
        self.restored += report.restored
        if names:
            log.info(
                "restored %d of %d ledger-ingested episodes into the replay (%d failed, %d"
                " beyond the memory budget)",
                report.restored,
                len(names),
                len(report.restore_failures),
                report.restore_not_needed,
            )
