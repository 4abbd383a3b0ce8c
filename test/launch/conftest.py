"""Launcher tests: running `mtopt-launch` as a real process (fixture `start_launch`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
LAUNCHER = VENV_BIN / "mtopt-launch"


class LaunchProcess:
    """A running `mtopt-launch` in its own session; output collected by a thread."""

    def __init__(self, args: list[str], log_dir: Path, extra_env: dict[str, str] | None = None):
        env = dict(os.environ, ROS_LOG_DIR=str(log_dir), **(extra_env or {}))
        self.popen = subprocess.Popen(
            [str(LAUNCHER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout_s: float) -> bool:
        """True once a line containing `needle` was printed (False on timeout or exit)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(needle in line for line in list(self.lines)):
                return True
            if self.popen.poll() is not None:
                self._reader.join(timeout=2.0)
                return any(needle in line for line in self.lines)
            time.sleep(0.05)
        return False

    def wait(self, timeout_s: float) -> int:
        code = self.popen.wait(timeout=timeout_s)
        self._reader.join(timeout=5.0)
        return code

    def child_pids(self) -> dict[str, int]:
        """Node label -> pid, from the launcher's 'process started: LABEL [pid N]' lines."""
        pids = {}
        for line in self.lines:
            if "process started: " in line:
                rest = line.split("process started: ", 1)[1]
                label, pid = rest.split(" [pid ", 1)
                pids[label] = int(pid.split("]", 1)[0])
        return pids

    def kill_everything(self) -> None:
        """Test cleanup: no launcher or node outlives the test."""
        for pid in self.child_pids().values():
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5.0)


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def start_launch(tmp_path) -> Iterator:
    """Factory: start_launch(args, extra_env=None) -> LaunchProcess; all are killed at the end."""
    started: list[LaunchProcess] = []

    def start(args: list[str], extra_env: dict[str, str] | None = None) -> LaunchProcess:
        proc = LaunchProcess(args, tmp_path / "ros_log", extra_env)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.kill_everything()
