"""Episode recording logic of the logger node (no rclpy here: the node is thin glue).

`EpisodeRecorder` owns at most one open `EpisodeBagWriter`. The node's subscriptions hand it
serialized CDR bytes exactly as received (rclpy `raw=True`), so nothing is re-encoded.

Camera frames are subsampled on a fixed time grid: a frame is kept when it is the first to
arrive at or after the camera's next due time, and the due time then advances by one period
(restarting from the kept frame when the source paused for longer than a period). Kept frames
average exactly the configured rate when the camera is faster, and never exceed it. Plain "keep
when >= 1/rate since the last kept frame" would instead round every gap up to a whole number of
input frames (a 30 Hz camera at 5 Hz would give 4.3 Hz). The newest frame of every camera is
buffered, and written at finish if it was not kept, so the final images are always in the bag.

Timestamps in the bag are receive times on the caller's clock (the node clock: wall time, or
/clock with use_sim_time); the message headers keep the publishers' stamps. The EpisodeInfo is
stamped after every other message, so it is the last message of the bag.

Who may finish an episode: `start` takes the requester (who records, e.g. the collector's node
name; required) and returns a fresh random token (`secrets.token_hex`). `finish` (also with
`discard`) closes only the recording episode, and only when the caller names it
(`EpisodeInfo.episode_id`) and presents its token; anything else is refused as BAD_REQUEST and
changes nothing: the bag keeps recording. The EpisodeInfo written is the caller's with
`closed_by` set to the start's requester, whatever the caller put there. A start repeated with
the recording episode's id and requester (a retry after a lost reply) is answered like the
first, with the same token; any other start while an episode records is ALREADY_RECORDING.
The requester is what the caller says it is: the token keeps other callers (a stray
`ros2 service call`, a second tool) from closing or relabelling an episode they did not start,
it does not authenticate anyone.

Episode ids must follow `mtopt_core.episodes` (checked before anything else).

Leftovers: a logger killed mid-episode leaves its `<id>.part` behind. `remove_stale_parts`
deletes those of the given cells (ids `cell<k>_...`, as the collectors name them); the node
calls it at startup for its own cell, before recording anything. Other cells' `.part`
directories are never touched: their loggers may share the directory and be writing now.

Thread safety: every method takes one lock (the bag writer is not thread-safe). `start` and
`finish` must not run concurrently with each other (the node serves them in one mutually
exclusive callback group); recording calls may come from any thread at any time.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import shutil
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from mtopt_core.episode_bag import (
    EpisodeBagError,
    EpisodeBagWriter,
    find_stale_parts,
    make_typestore,
    remove_stale_parts,
)
from mtopt_core.episodes import episode_id_problem

IMAGE_TYPE = "sensor_msgs/msg/Image"
EPISODE_INFO_TYPE = "mtopt_interfaces/msg/EpisodeInfo"
BYTES_PER_GB = 1e9
TOKEN_BYTES = 16  # 32 hex digits
REQUESTER_MAX_LENGTH = 256


class Outcome(enum.Enum):
    """Why a start or finish request was refused. The names are the outcome constants of
    StartEpisode/FinishEpisode responses (the node sends the code of the same name)."""

    ALREADY_RECORDING = enum.auto()  # start: another episode is still recording
    NOT_RECORDING = enum.auto()  # finish: no episode is recording
    BAD_REQUEST = enum.auto()  # start: invalid id or requester, or the id is used already;
    # finish: not the recording episode's id and token
    WRITE_FAILED = enum.auto()  # the bag could not be created, written or closed
    LOW_DISK = enum.auto()  # start: free disk below min_free_disk_gb


class RecorderError(RuntimeError):
    """A start or finish request cannot be honoured: `outcome` says which way, the message
    says why (both are sent to the caller)."""

    def __init__(self, outcome: Outcome, message: str):
        super().__init__(message)
        self.outcome = outcome


def free_disk_gb(path: Path) -> float:
    """Free space in GB (10^9 bytes) on the file system that holds `path` (or would hold it)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free / BYTES_PER_GB


@dataclass
class _CameraState:
    next_due_ns: int | None = None
    latest_ns: int = 0
    latest_data: bytes | None = None
    latest_written: bool = True


def requester_problem(requester: object) -> str:
    """Why `requester` cannot name who records ("" when it can)."""
    if not isinstance(requester, str) or not requester.strip():
        return "the requester must name who records (e.g. the collector's node name)"
    if len(requester) > REQUESTER_MAX_LENGTH:
        return f"the requester is longer than {REQUESTER_MAX_LENGTH} characters"
    if not requester.isprintable():
        return f"the requester {requester!r} contains control characters"
    return ""


@dataclass(frozen=True)
class Recording:
    """The episode being recorded: what `start` returns (the token goes to the requester only)."""

    episode_id: str
    requester: str
    token: str
    part_path: Path


@dataclass
class FinishedEpisode:
    """What `finish` produced: the final bag path (None when discarded) and message counts."""

    episode_id: str
    path: Path | None
    message_counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        counts = ", ".join(f"{topic}: {n}" for topic, n in sorted(self.message_counts.items()))
        return f"{sum(self.message_counts.values())} messages ({counts})"


class EpisodeRecorder:
    """Records one episode bag at a time; see the module docstring for the policies.

    Args:
        episode_dir: where bags are written (`<id>.part` while recording, `<id>` when done).
        camera_rate_hz: rate camera frames are subsampled to (> 0).
        min_free_disk_gb: `start` refuses when less space than this is free under episode_dir.
    """

    def __init__(self, episode_dir: Path | str, camera_rate_hz: float, min_free_disk_gb: float):
        if camera_rate_hz <= 0:
            raise ValueError(f"camera_rate_hz must be > 0, got {camera_rate_hz}")
        self.episode_dir = Path(episode_dir)
        self.camera_period_ns = round(1e9 / camera_rate_hz)
        self.min_free_disk_gb = float(min_free_disk_gb)
        self.typestore = make_typestore()
        self._lock = threading.Lock()
        self._writer: EpisodeBagWriter | None = None
        self._recording: Recording | None = None
        self._cameras: dict[str, _CameraState] = {}
        self._counts: dict[str, int] = {}
        self._last_ns = 0
        self._failure: str | None = None

    @property
    def episode_id(self) -> str | None:
        """Id of the episode being recorded, or None."""
        recording = self._recording
        return recording.episode_id if recording is not None else None

    @property
    def recording(self) -> Recording | None:
        """The episode being recorded (with its requester and token), or None."""
        return self._recording

    def stale_parts(self) -> list[Path]:
        """`<id>.part` directories under episode_dir other than the recording episode's."""
        with self._lock:
            own = self._recording.part_path if self._recording is not None else None
        return [p for p in find_stale_parts(self.episode_dir) if p != own]

    def remove_stale_parts(self, cells: Collection[int] | None) -> list[Path]:
        """Delete the `.part` leftovers of `cells` (None: of every cell) under episode_dir,
        never the recording episode's; returns the deleted ones. Call it only while no other
        logger of these cells writes into episode_dir (at startup, for the node's own cell)."""
        with self._lock:
            own = () if self._recording is None else (self._recording.part_path,)
            return remove_stale_parts(self.episode_dir, cells, keep=own)

    def check_type(self, msgtype: str) -> None:
        """Raise ValueError unless the bag typestore knows `msgtype` (`pkg/msg/Name`)."""
        if msgtype not in self.typestore.types:
            raise ValueError(f"message type {msgtype!r} is unknown to the bag typestore")

    @staticmethod
    def check_start(episode_id: str, requester: str) -> None:
        """Raise RecorderError(BAD_REQUEST) when a start request is invalid in itself."""
        problem = episode_id_problem(episode_id)
        if problem:
            problem = f"invalid episode id {episode_id!r}: it {problem}"
        problem = problem or requester_problem(requester)
        if problem:
            raise RecorderError(
                Outcome.BAD_REQUEST, f"cannot start episode {episode_id!r}: {problem}"
            )

    def start(self, episode_id: str, requester: str) -> Recording:
        """Open `<episode_dir>/<episode_id>.part` for `requester`; returns the recording with
        its token (the same one again for a repeated start). Raises RecorderError."""
        self.check_start(episode_id, requester)
        with self._lock:
            recording = self._recording
            if recording is not None:
                if recording.episode_id == episode_id and recording.requester == requester:
                    return recording  # a retry after a lost reply: same episode, same token
                raise RecorderError(
                    Outcome.ALREADY_RECORDING,
                    f"episode {recording.episode_id!r} is still recording; finish it first"
                    " (finish with discard=true drops it)",
                )
            free = free_disk_gb(self.episode_dir)
            if free < self.min_free_disk_gb:
                raise RecorderError(
                    Outcome.LOW_DISK,
                    f"free disk {free:.2f} GB under {self.episode_dir} is below"
                    f" min_free_disk_gb {self.min_free_disk_gb:.2f} GB; not recording",
                )
            try:
                writer = EpisodeBagWriter(self.episode_dir, episode_id, typestore=self.typestore)
            except (ValueError, EpisodeBagError) as exc:  # invalid id, or the bag exists
                raise RecorderError(
                    Outcome.BAD_REQUEST, f"cannot start episode {episode_id!r}: {exc}"
                ) from exc
            except (OSError, RuntimeError) as exc:
                raise RecorderError(
                    Outcome.WRITE_FAILED, f"cannot start episode {episode_id!r}: {exc}"
                ) from exc
            self._writer = writer
            self._recording = Recording(
                episode_id, requester, secrets.token_hex(TOKEN_BYTES), writer.part_path
            )
            self._cameras = {}
            self._counts = {}
            self._last_ns = 0
            self._failure = None
            return self._recording

    def record(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> bool:
        """Store one serialized message if an episode is recording; returns whether it was."""
        with self._lock:
            if self._writer is None or self._failure is not None:
                return False
            self._write(topic, msgtype, timestamp_ns, data)
            return self._failure is None

    def record_camera(self, topic: str, timestamp_ns: int, data: bytes) -> bool:
        """Offer one camera frame (sensor_msgs/Image); returns whether it was written now."""
        with self._lock:
            if self._writer is None or self._failure is not None:
                return False
            camera = self._cameras.setdefault(topic, _CameraState())
            camera.latest_ns, camera.latest_data = timestamp_ns, data
            due = camera.next_due_ns
            if due is not None and timestamp_ns < due:
                camera.latest_written = False
                return False
            if due is None or timestamp_ns - due >= self.camera_period_ns:
                camera.next_due_ns = timestamp_ns + self.camera_period_ns  # (re)start the grid
            else:
                camera.next_due_ns = due + self.camera_period_ns
            camera.latest_written = True
            self._write(topic, IMAGE_TYPE, timestamp_ns, data)
            return self._failure is None

    def finish(
        self,
        info_topic: str,
        info_data: bytes,
        timestamp_ns: int,
        token: str,
        discard: bool = False,
    ) -> FinishedEpisode:
        """Write the newest unwritten camera frames and the EpisodeInfo, close, rename.

        `info_data` is the serialized EpisodeInfo (CDR); its `episode_id` must be the recording
        episode's and `token` the one `start` returned, else RecorderError(BAD_REQUEST) and
        nothing changes. The EpisodeInfo is written with `closed_by` set to the requester of
        the start. With `discard` the partial bag is deleted instead. Raises RecorderError
        when no episode is recording or when recording failed (the partial bag is then
        deleted).
        """
        with self._lock:
            writer, recording = self._writer, self._recording
            if writer is None or recording is None:
                raise RecorderError(Outcome.NOT_RECORDING, "no episode is recording")
            info_data = self._authorized_info(recording, info_data, token)
            if not discard and self._failure is None:
                for topic, camera in self._cameras.items():
                    if not camera.latest_written and camera.latest_data is not None:
                        self._write(topic, IMAGE_TYPE, camera.latest_ns, camera.latest_data)
                        camera.latest_written = True
                info_ns = max(int(timestamp_ns), self._last_ns + 1)
                self._write(info_topic, EPISODE_INFO_TYPE, info_ns, info_data)
            # Detach under the lock: recording callbacks from now on see no episode.
            self._writer, self._recording, self._cameras = None, None, {}
            failure, counts = self._failure, dict(self._counts)
        if discard or failure is not None:
            writer.discard()
            if failure is not None:
                raise RecorderError(
                    Outcome.WRITE_FAILED,
                    f"recording episode {writer.episode_id!r} failed ({failure}); bag discarded",
                )
            return FinishedEpisode(writer.episode_id, None, counts)
        try:
            path = writer.finish()
        except Exception as exc:
            writer.discard()
            raise RecorderError(
                Outcome.WRITE_FAILED,
                f"closing episode {writer.episode_id!r} failed ({type(exc).__name__}: {exc});"
                " bag discarded",
            ) from exc
        return FinishedEpisode(writer.episode_id, path, counts)

    def _authorized_info(self, recording: Recording, info_data: bytes, token: str) -> bytes:
        """The EpisodeInfo to write (closed_by = the requester), or RecorderError(BAD_REQUEST)
        unless it names the recording episode and `token` is its token."""
        try:
            info = self.typestore.deserialize_cdr(bytes(info_data), EPISODE_INFO_TYPE)
        except Exception as exc:  # rosbags raises several types for malformed CDR
            raise RecorderError(
                Outcome.BAD_REQUEST,
                f"info is not a serialized EpisodeInfo ({type(exc).__name__}); nothing changed",
            ) from exc
        if info.episode_id != recording.episode_id:
            raise RecorderError(
                Outcome.BAD_REQUEST,
                f"info.episode_id {info.episode_id!r} is not the recording episode"
                f" {recording.episode_id!r}; nothing changed",
            )
        if not isinstance(token, str) or not secrets.compare_digest(
            token.encode(), recording.token.encode()
        ):
            raise RecorderError(
                Outcome.BAD_REQUEST,
                f"{'no token' if not token else 'wrong token'} for episode"
                f" {recording.episode_id!r} (finish needs the token its start returned);"
                " nothing changed",
            )
        if info.closed_by == recording.requester:
            return info_data
        info = dataclasses.replace(info, closed_by=recording.requester)
        return bytes(self.typestore.serialize_cdr(info, EPISODE_INFO_TYPE))

    def abort(self) -> str | None:
        """Drop the episode being recorded, if any (node shutdown); returns its id."""
        with self._lock:
            writer, self._writer, self._cameras = self._writer, None, {}
            self._recording = None
        if writer is None:
            return None
        writer.discard()
        return writer.episode_id

    def _write(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        # Called with the lock held. A failed write (disk full, ...) ends recording for the
        # episode; finish reports it and deletes the partial bag.
        try:
            self._writer.write_serialized(topic, msgtype, timestamp_ns, data)
        except Exception as exc:
            self._failure = f"writing {topic}: {type(exc).__name__}: {exc}"
            return
        self._counts[topic] = self._counts.get(topic, 0) + 1
        self._last_ns = max(self._last_ns, int(timestamp_ns))
