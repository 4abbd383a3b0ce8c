"""Runs the nodes of a `LaunchDescription` as child processes.

Each node runs in its own process group; its stdout/stderr lines are read by threads and
printed with a `[label]` prefix. SIGINT/SIGTERM to the launcher start a shutdown: SIGINT to
every node, then SIGTERM after `sigint_timeout_s`, then SIGKILL after `sigterm_timeout_s`
(defaults 5 s + 3 s, so every node is gone within 10 s). A node launched with
`on_exit: shutdown` (required) shuts everything down when it exits.

A node launched with `respawn: "true"` is started again `respawn_delay` seconds after it exits
(whatever its exit code), as long as the launch is not shutting down and it has not used up
`respawn_max_retries`, as launch's `ExecuteLocal` does. A shutdown cancels pending respawns;
`on_exit: shutdown` wins over `respawn` (the exit shuts the launch down). `respawns` counts the
respawns per node and `pids()` gives each node's current process, for fault-injection tests.

Exit status: 0 when every node exited 0 by itself or stopped cleanly on the launcher's SIGINT;
1 otherwise, with a message naming each node that failed (non-zero exit before shutdown,
needed SIGTERM/SIGKILL, or crashed while stopping). An exit that is followed by a respawn is
not a failure; the last exit of a node that is not respawned again is judged as above.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mtopt_launch.commands import node_command, node_environment, resolve_executable
from mtopt_launch.description import LaunchDescription, NodeLaunch

LAUNCHER_LABEL = "mtopt-launch"
# Exit codes of a process that stopped because of our SIGINT (rclpy nodes normally exit 0).
_SIGINT_EXIT_CODES = (0, -signal.SIGINT, 128 + signal.SIGINT)


@dataclass(frozen=True)
class RunnerConfig:
    """Timing of the launcher's process supervision."""

    sigint_timeout_s: float = 5.0  # after SIGINT, wait this long before SIGTERM
    sigterm_timeout_s: float = 3.0  # after SIGTERM, wait this long before SIGKILL
    poll_period_s: float = 0.05  # how often child processes are polled for exit
    log_file: Path | None = None  # every output line of every node is appended here


@dataclass
class _Process:
    node: NodeLaunch
    label: str
    command: list[str]
    popen: subprocess.Popen | None = None
    readers: list[threading.Thread] = field(default_factory=list)
    exit_code: int | None = None
    escalated: str | None = None  # "SIGTERM" / "SIGKILL" when it ignored SIGINT
    respawns: int = 0  # how often it was started again after an exit
    respawn_at: float | None = None  # time.monotonic() of a pending respawn

    def may_respawn(self) -> bool:
        """`respawn` is set and `respawn_max_retries` (< 0: unlimited) is not used up."""
        limit = self.node.respawn_max_retries
        return self.node.respawn and (limit < 0 or self.respawns < limit)


class LaunchRunner:
    """Starts, supervises and stops the node processes of one launch description."""

    def __init__(
        self,
        description: LaunchDescription,
        config: RunnerConfig | None = None,
        out: TextIO | None = None,
    ):
        self.description = description
        self.config = config or RunnerConfig()
        self.out = out if out is not None else sys.stdout
        self._lock = threading.Lock()
        self._events: queue.Queue[int] = queue.Queue()
        self._log: TextIO | None = None
        self._processes: list[_Process] = []
        labels: dict[str, int] = {}
        for node in description.nodes:
            count = labels[node.label] = labels.get(node.label, 0) + 1
            label = node.label if count == 1 else f"{node.label}-{count}"
            self._processes.append(_Process(node, label, []))
        #: Node label -> how many times its process was started again (`respawn`).
        self.respawns: dict[str, int] = {p.label: 0 for p in self._processes}
        self._failures: list[str] = []
        self._shutdown_reason: str | None = None
        self._sigterm_at: float | None = None
        self._sigkill_at: float | None = None

    # -- output -------------------------------------------------------------------------------

    def _emit(self, label: str, text: str, to_screen: bool = True) -> None:
        line = f"[{label}] {text}"
        with self._lock:
            if to_screen:
                try:
                    self.out.write(line + "\n")
                    self.out.flush()
                except (OSError, ValueError):
                    pass  # our stdout went away; keep supervising
            if self._log is not None:
                self._log.write(f"{time.time():.3f} {line}\n")
                self._log.flush()

    def info(self, message: str) -> None:
        """Print a launcher message."""
        self._emit(LAUNCHER_LABEL, message)

    def _reader(self, proc: _Process, stream, is_stderr: bool) -> None:
        show = proc.node.output in ("screen", "both") or is_stderr
        for raw in iter(stream.readline, b""):
            self._emit(proc.label, raw.decode("utf-8", errors="replace").rstrip("\n"), show)
        stream.close()

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until all nodes exit (and none is waiting to respawn) or a shutdown completes;
        returns the exit status."""
        # Resolve every executable before starting anything: a typo fails fast and cleanly.
        executables = [resolve_executable(p.node.pkg, p.node.executable) for p in self._processes]
        if self.config.log_file is not None:
            self.config.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.config.log_file, "a")  # noqa: SIM115 - closed in finally
        previous_handlers = self._install_signal_handlers()
        params_dir = Path(tempfile.mkdtemp(prefix="mtopt-launch-params-"))
        try:
            if self._log is not None:
                self.info(f"all log output goes to {self.config.log_file}")
            if not self._processes:
                self.info("the launch file starts no nodes")
            for proc, executable in zip(self._processes, executables, strict=True):
                proc.command = node_command(proc.node, executable, params_dir)
                if not self._start(proc):
                    self._begin_shutdown(f"could not start {proc.label}")
                    break
            self._supervise()
            for proc in self._processes:
                for reader in proc.readers:
                    reader.join(timeout=2.0)
            for failure in self._failures:
                self.info(f"FAILED: {failure}")
            return 1 if self._failures else 0
        finally:
            self._restore_signal_handlers(previous_handlers)
            self._kill_leftovers()
            for path in params_dir.iterdir():
                path.unlink()
            params_dir.rmdir()
            if self._log is not None:
                self._log.close()
                self._log = None

    def pids(self) -> dict[str, int]:
        """Node label -> pid of its process running now (for a respawned node, the new one).

        A node that has exited (and may be waiting to respawn) is absent. Safe to call from
        another thread while `run()` supervises; the pid is also the node's process group."""
        pids = {}
        for proc in list(self._processes):
            popen = proc.popen
            if popen is not None and proc.exit_code is None:
                pids[proc.label] = popen.pid
        return pids

    def _start(self, proc: _Process) -> bool:
        try:
            popen = subprocess.Popen(
                proc.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=node_environment(proc.node),
                start_new_session=True,  # own process group: signals reach only via us
            )
        except OSError as exc:
            proc.exit_code = -1
            self._failures.append(f"node '{proc.label}' could not start: {exc}")
            return False
        # In this order, another thread never sees the new pid with the old count (`respawns`)
        # nor the old pid as running (`pids()`).
        self.respawns[proc.label] = proc.respawns
        proc.popen = popen
        proc.exit_code = None
        proc.escalated = None
        proc.readers = [r for r in proc.readers if r.is_alive()]  # earlier runs' readers
        for stream, is_stderr in ((proc.popen.stdout, False), (proc.popen.stderr, True)):
            reader = threading.Thread(
                target=self._reader, args=(proc, stream, is_stderr), daemon=True
            )
            reader.start()
            proc.readers.append(reader)
        notes = []
        if proc.node.required:
            notes.append("required: on_exit shutdown")
        if proc.node.respawn:
            notes.append(f"respawn {proc.respawns}" if proc.respawns else "respawn: true")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        self.info(f"process started: {proc.label} [pid {proc.popen.pid}]{suffix}")
        self.info(f"  {shlex.join(proc.command)}")
        return True

    def _running(self) -> list[_Process]:
        return [p for p in self._processes if p.popen is not None and p.exit_code is None]

    def _supervise(self) -> None:
        while True:
            try:
                signum = self._events.get(timeout=self.config.poll_period_s)
            except queue.Empty:
                signum = None
            if signum is not None:
                name = signal.Signals(signum).name
                if self._shutdown_reason is None:
                    self._begin_shutdown(f"received {name}")
                else:
                    self.info(f"received {name} again: escalating to SIGTERM now")
                    self._sigterm_at = min(self._sigterm_at or 0.0, time.monotonic())
            for proc in self._running():
                code = proc.popen.poll()
                if code is not None:
                    self._on_exit(proc, code)
            self._respawn_due()
            if not self._running() and not any(p.respawn_at is not None for p in self._processes):
                return
            self._escalate()

    def _on_exit(self, proc: _Process, code: int) -> None:
        proc.exit_code = code
        pid = proc.popen.pid
        if code == 0:
            self.info(f"process has finished cleanly: {proc.label} [pid {pid}]")
        else:
            self.info(f"process has died: {proc.label} [pid {pid}, exit code {code}]")
        if self._shutdown_reason is None:
            if proc.node.required and proc.node.respawn:
                # ros2 launch: the on_exit Shutdown cancels the respawn (ExecuteLocal waits for
                # its shutdown future during respawn_delay and does not start it again).
                self.info(
                    f"[{proc.label}] exited with code {code}; not respawning: "
                    "its on_exit: shutdown ends the launch"
                )
            elif proc.may_respawn():
                self._schedule_respawn(proc, code)
                return
            elif proc.node.respawn:
                limit = proc.node.respawn_max_retries
                self.info(
                    f"[{proc.label}] exited with code {code}; not respawning: "
                    f"respawn_max_retries ({limit}) reached"
                )
            if code != 0:
                kind = "required node" if proc.node.required else "node"
                self._failures.append(f"{kind} '{proc.label}' exited with code {code}")
            if proc.node.required:
                self._begin_shutdown(f"required node '{proc.label}' exited with code {code}")
        elif proc.escalated is None and code not in _SIGINT_EXIT_CODES:
            self._failures.append(f"node '{proc.label}' exited with code {code} while stopping")

    def _schedule_respawn(self, proc: _Process, code: int) -> None:
        delay = proc.node.respawn_delay
        proc.respawn_at = time.monotonic() + delay
        self.info(
            f"[{proc.label}] exited with code {code}; respawning in {delay:g} s "
            f"(respawn {proc.respawns + 1})"
        )

    def _respawn_due(self) -> None:
        """Start again every node whose respawn delay is over (never while shutting down)."""
        if self._shutdown_reason is not None:
            return
        now = time.monotonic()
        for proc in self._processes:
            if proc.respawn_at is None or now < proc.respawn_at:
                continue
            proc.respawn_at = None
            proc.respawns += 1
            if not self._start(proc):
                self._begin_shutdown(f"could not respawn {proc.label}")
                return

    def _begin_shutdown(self, reason: str) -> None:
        self._shutdown_reason = reason
        running = self._running()
        self.info(f"shutting down ({reason}): sending SIGINT to {len(running)} process(es)")
        for proc in self._processes:
            if proc.respawn_at is not None:  # as ros2: a shutdown during respawn_delay wins
                proc.respawn_at = None
                self.info(f"[{proc.label}] respawn cancelled: shutting down")
        now = time.monotonic()
        self._sigterm_at = now + self.config.sigint_timeout_s
        for proc in running:
            self._signal(proc, signal.SIGINT)

    def _escalate(self) -> None:
        if self._shutdown_reason is None:
            return
        now = time.monotonic()
        if self._sigkill_at is None and self._sigterm_at is not None and now >= self._sigterm_at:
            self._sigkill_at = now + self.config.sigterm_timeout_s
            for proc in self._running():
                self.info(f"{proc.label} did not stop on SIGINT: sending SIGTERM")
                proc.escalated = "SIGTERM"
                self._failures.append(f"node '{proc.label}' did not stop on SIGINT")
                self._signal(proc, signal.SIGTERM)
        elif self._sigkill_at is not None and now >= self._sigkill_at:
            for proc in self._running():
                if proc.escalated != "SIGKILL":
                    self.info(f"{proc.label} did not stop on SIGTERM: sending SIGKILL")
                    proc.escalated = "SIGKILL"
                    self._signal(proc, signal.SIGKILL)

    def _signal(self, proc: _Process, signum: int) -> None:
        if proc.popen is None or proc.popen.poll() is not None:
            return  # already exited (and reaped): its pid may belong to someone else now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signum)

    def _kill_leftovers(self) -> None:
        """Last resort (e.g. an exception in the launcher itself): no orphaned node stays."""
        for proc in self._running():
            self._signal(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=2.0)

    # -- signals --------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # only the main thread may set handlers; the caller stops us then
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda s, _f: self._events.put(s))
        return previous

    def _restore_signal_handlers(self, previous: dict[int, object]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def request_shutdown(self, signum: int = signal.SIGINT) -> None:
        """Ask a running `run()` (e.g. in another thread) to shut down as if signalled."""
        self._events.put(signum)
