"""`respawn` / `respawn_delay` / `respawn_max_retries` of a node, with real processes.

The nodes are tiny stdlib-only Python programs (no rclpy) in a colcon-style install prefix:
`sleeper` runs until SIGINT (then exits 0; once its handler is set it prints `up pid N` and
touches `$READY_DIR/<node name>`), `quitter` exits with the code given as its first argument
(after `$READY_DIR/NAME` exists when its second argument is `wait:NAME`). The launcher runs as
`mtopt-launch` (conftest `start_launch`) where signals to it matter, else in-process in a
thread (`LaunchRunner.pids()` / `.respawns`).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mtopt_launch.parser import parse_launch_file
from mtopt_launch.runner import LaunchRunner, RunnerConfig

SLEEPER = f"""#!{sys.executable} -S
import os, signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
print(f"up pid {{os.getpid()}}", flush=True)
name = next(a.split(":=", 1)[1] for a in sys.argv if a.startswith("__node:="))
if os.environ.get("READY_DIR"):
    open(os.path.join(os.environ["READY_DIR"], name), "w").close()
while True:
    time.sleep(1)
"""
QUITTER = f"""#!{sys.executable} -S
import os, sys, time
args = sys.argv[1:sys.argv.index("--ros-args")] if "--ros-args" in sys.argv else sys.argv[1:]
code = int(args[0]) if args else 0
if len(args) > 1 and args[1].startswith("wait:"):
    ready = os.path.join(os.environ["READY_DIR"], args[1][5:])
    deadline = time.monotonic() + 10
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
print(f"quitting with {{code}}", flush=True)
sys.exit(code)
"""


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


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def respawn_prefix(tmp_path, install_package, monkeypatch) -> dict[str, str]:
    """The `respawn_pkg` prefix on AMENT_PREFIX_PATH (here and for `start_launch`)."""
    prefix = install_package(
        tmp_path / "install",
        "respawn_pkg",
        executables={"sleeper": SLEEPER, "quitter": QUITTER},
    )
    ready = tmp_path / "ready"
    ready.mkdir()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    monkeypatch.setenv("READY_DIR", str(ready))
    return {"AMENT_PREFIX_PATH": str(prefix), "READY_DIR": str(ready)}


def launch_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "respawn.launch.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# -- mtopt-launch as a process ----------------------------------------------------------------


def test_killed_node_with_respawn_comes_back_and_others_do_not(
    start_launch, respawn_prefix, tmp_path
):
    path = launch_file(
        tmp_path,
        """\
        launch:
          - arg: {name: respawn, default: "false"}
          - node:
              pkg: respawn_pkg
              exec: sleeper
              name: keeper
              output: screen
              respawn: $(var respawn)
              respawn_delay: 0.3
          - node: {pkg: respawn_pkg, exec: sleeper, name: plain, output: screen}
          - node: {pkg: respawn_pkg, exec: quitter, name: quitter, output: screen}
        """,
    )
    launch = start_launch([str(path), "respawn:=true"], respawn_prefix)
    for needle in ("[keeper] up pid", "[plain] up pid", "process has finished cleanly: quitter"):
        assert launch.wait_for_line(needle, timeout_s=20), launch.output
    first = launch.child_pids()
    assert set(first) == {"keeper", "plain", "quitter"}

    # SIGKILL, as a crash would: a new process after respawn_delay; the launch goes on.
    os.kill(first["keeper"], signal.SIGKILL)
    assert launch.wait_for_line(
        "[keeper] exited with code -9; respawning in 0.3 s (respawn 1)", timeout_s=10
    ), launch.output
    assert wait_until(lambda: launch.child_pids()["keeper"] != first["keeper"], 10), launch.output
    second = launch.child_pids()["keeper"]
    assert launch.wait_for_line(f"[keeper] up pid {second}", timeout_s=10), launch.output
    assert f"process started: keeper [pid {second}] (respawn 1)" in launch.output
    assert pid_alive(second) and not pid_alive(first["keeper"])
    os.kill(second, signal.SIGKILL)
    assert launch.wait_for_line("respawning in 0.3 s (respawn 2)", timeout_s=10), launch.output
    assert wait_until(lambda: launch.child_pids()["keeper"] not in (first["keeper"], second), 10)
    third = launch.child_pids()["keeper"]
    assert launch.wait_for_line(f"[keeper] up pid {third}", timeout_s=10), launch.output

    # Without respawn: neither a crash nor a clean exit (quitter, exit 0) brings a node back.
    os.kill(first["plain"], signal.SIGKILL)
    assert launch.wait_for_line("process has died: plain", timeout_s=10), launch.output
    time.sleep(1.0)  # > respawn_delay + the poll period
    assert launch.output.count("process started: plain") == 1, launch.output
    assert launch.output.count("process started: quitter") == 1, launch.output
    assert launch.popen.poll() is None, launch.output  # still supervising keeper

    launch.popen.send_signal(signal.SIGINT)
    code = launch.wait(timeout_s=10)
    out = launch.output
    assert code == 1, out  # plain's crash before shutdown is a failure; keeper's are not
    assert "FAILED: node 'plain' exited with code -9" in out
    assert "FAILED: node 'keeper'" not in out
    assert not any(pid_alive(p) for p in launch.child_pids().values()), out


def test_ctrl_c_during_respawn_delay_exits_cleanly(start_launch, respawn_prefix, tmp_path):
    path = launch_file(
        tmp_path,
        """\
        launch:
          - node:
              pkg: respawn_pkg
              exec: sleeper
              name: keeper
              output: screen
              respawn: "true"
              respawn_delay: 30.0
        """,
    )
    launch = start_launch([str(path)], respawn_prefix)
    assert launch.wait_for_line("[keeper] up pid", timeout_s=20), launch.output
    os.kill(launch.child_pids()["keeper"], signal.SIGKILL)
    assert launch.wait_for_line("respawning in 30 s (respawn 1)", timeout_s=10), launch.output
    start = time.monotonic()
    launch.popen.send_signal(signal.SIGINT)
    code = launch.wait(timeout_s=10)
    out = launch.output
    assert code == 0, out
    assert time.monotonic() - start < 3.0, out
    assert "[keeper] respawn cancelled: shutting down" in out
    assert out.count("process started: keeper") == 1, out


# -- LaunchRunner in-process: respawns, pids() ----------------------------------------------


class RunnerThread:
    """`LaunchRunner.run()` in a thread (no signal handlers there), output in memory."""

    def __init__(self, path: Path, args: dict[str, str] | None = None):
        self.out = io.StringIO()
        config = RunnerConfig(sigint_timeout_s=2.0, sigterm_timeout_s=1.0)
        self.runner = LaunchRunner(parse_launch_file(path, args or {}), config, self.out)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.runner.run()

    def join(self, timeout_s: float) -> int | None:
        self.thread.join(timeout=timeout_s)
        return self.code

    def stop(self) -> None:
        if self.thread.is_alive():
            self.runner.request_shutdown()
            self.thread.join(timeout=10)


def test_runner_pids_follow_a_respawned_node(respawn_prefix, tmp_path):
    path = launch_file(
        tmp_path,
        """\
        launch:
          - node:
              {pkg: respawn_pkg, exec: sleeper, name: keeper, respawn: "yes", output: screen}
          - node: {pkg: respawn_pkg, exec: sleeper, name: plain, output: screen}
        """,
    )
    run = RunnerThread(path)
    try:
        runner = run.runner
        assert runner.respawns == {"keeper": 0, "plain": 0}
        assert wait_until(lambda: set(runner.pids()) == {"keeper", "plain"}, 10), run.out
        first = runner.pids()
        for line in (f"[{name}] up pid {pid}" for name, pid in first.items()):
            assert wait_until(lambda line=line: line in run.out.getvalue(), 10), run.out
        os.killpg(first["keeper"], signal.SIGKILL)  # each node is its own process group
        old = first["keeper"]
        assert wait_until(lambda: runner.pids().get("keeper", old) != old, 10), run.out
        assert runner.respawns == {"keeper": 1, "plain": 0}
        assert runner.pids()["plain"] == first["plain"]
        new = runner.pids()["keeper"]
        assert wait_until(lambda: f"[keeper] up pid {new}" in run.out.getvalue(), 10), run.out
        assert "[keeper] exited with code -9; respawning in 0 s (respawn 1)" in run.out.getvalue()
    finally:
        run.stop()
    assert run.code == 0, run.out.getvalue()
    assert runner.pids() == {}


def test_clean_exit_is_respawned_up_to_respawn_max_retries(respawn_prefix, tmp_path):
    # As launch's ExecuteLocal: the exit code does not matter, only shutdown and the limit.
    path = launch_file(
        tmp_path,
        """\
        launch:
          - node:
              {pkg: respawn_pkg, exec: quitter, name: ok, respawn: "true",
               respawn_max_retries: 2}
          - node:
              {pkg: respawn_pkg, exec: quitter, name: bad, args: "3", respawn: "true",
               respawn_delay: 0.1, respawn_max_retries: 1}
        """,
    )
    run = RunnerThread(path)
    try:
        code = run.join(timeout_s=20)
    finally:
        run.stop()
    out = run.out.getvalue()
    assert code == 1, out  # bad's last exit (no respawn left) is a failure, only that one
    assert run.runner.respawns == {"ok": 2, "bad": 1}
    assert out.count("process started: ok") == 3 and out.count("process started: bad") == 2
    assert "[ok] exited with code 0; respawning in 0 s (respawn 2)" in out
    assert "[ok] exited with code 0; not respawning: respawn_max_retries (2) reached" in out
    assert "[bad] exited with code 3; respawning in 0.1 s (respawn 1)" in out
    assert "FAILED: node 'bad' exited with code 3" in out and out.count("FAILED") == 1


def test_on_exit_shutdown_wins_over_respawn(respawn_prefix, tmp_path):
    path = launch_file(
        tmp_path,
        """\
        launch:
          - node: {pkg: respawn_pkg, exec: sleeper, name: keeper, respawn: "true"}
          - node:
              {pkg: respawn_pkg, exec: quitter, name: main, args: "0 wait:keeper",
               respawn: "true", on_exit: shutdown}
        """,
    )
    run = RunnerThread(path)
    try:
        code = run.join(timeout_s=20)
    finally:
        run.stop()
    out = run.out.getvalue()
    assert code == 0, out
    assert (
        "[main] exited with code 0; not respawning: its on_exit: shutdown ends the launch" in out
    )
    assert "shutting down (required node 'main' exited with code 0)" in out
    assert run.runner.respawns == {"keeper": 0, "main": 0}  # keeper stopped, not respawned
