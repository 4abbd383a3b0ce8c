"""Launcher tests: running `mtopt-launch` as a real process (fixture `start_launch`), and
colcon-style install prefixes for test packages (`install_package`, fixture
`demo_graph_env`: the demo graph of test/launch/fixtures/demo_graph installed as package
`demo_graph`)."""

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
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEMO_GRAPH_SRC = FIXTURES / "demo_graph"
DEMO_GRAPH_LAUNCH = DEMO_GRAPH_SRC / "launch" / "demo.launch.yaml"
# exec name -> module of the demo_graph fixture package (its console scripts)
DEMO_GRAPH_EXECUTABLES = {
    "mtopt-demo-cell": "demo_graph.demo_cell_node",
    "mtopt-demo-collector": "demo_graph.demo_collector_node",
}

# The fixture package is not pip-installed; tests import its plain logic from its source.
if str(DEMO_GRAPH_SRC) not in sys.path:
    sys.path.insert(0, str(DEMO_GRAPH_SRC))


def install_package(
    prefix: Path,
    package: str,
    share: dict[str, Path] | None = None,
    executables: dict[str, str] | None = None,
) -> Path:
    """Lay `package` out in `prefix` as colcon would: the ament index marker, `share/<pkg>/`
    entries (name -> symlinked source file or directory) and `lib/<pkg>/<exec>` programs
    (name -> script text). Returns `prefix`."""
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / package
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    share_dir = prefix / "share" / package
    share_dir.mkdir(parents=True, exist_ok=True)
    for name, source in (share or {}).items():
        (share_dir / name).symlink_to(source)
    for name, text in (executables or {}).items():
        program = prefix / "lib" / package / name
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text(text)
        program.chmod(0o755)
    return prefix


def python_entry_point(module: str, source_dir: Path) -> str:
    """Text of a console script that runs `module`'s `main()` from `source_dir`."""
    return (
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(source_dir)!r})\n"
        f"from {module} import main\n"
        "sys.exit(main())\n"
    )


def prepend_ament_prefix(prefix: Path) -> str:
    """AMENT_PREFIX_PATH with `prefix` first, then what this process has (the venv)."""
    current = os.environ.get("AMENT_PREFIX_PATH", "")
    return os.pathsep.join(p for p in (str(prefix), current) if p)


@pytest.fixture(name="install_package")
def install_package_fixture():
    """`install_package` for tests (conftest modules are not importable)."""
    return install_package


@pytest.fixture(scope="session")
def demo_graph_prefix(tmp_path_factory) -> Path:
    """An install prefix holding the demo_graph fixture package."""
    return install_package(
        tmp_path_factory.mktemp("demo_graph_install"),
        "demo_graph",
        share={name: DEMO_GRAPH_SRC / name for name in ("package.xml", "launch", "config")},
        executables={
            exe: python_entry_point(module, DEMO_GRAPH_SRC)
            for exe, module in DEMO_GRAPH_EXECUTABLES.items()
        },
    )


@pytest.fixture
def demo_graph_env(demo_graph_prefix, monkeypatch) -> dict[str, str]:
    """Puts the demo_graph prefix on AMENT_PREFIX_PATH (this process and its children);
    returns that setting for `start_launch(..., extra_env=...)`."""
    value = prepend_ament_prefix(demo_graph_prefix)
    monkeypatch.setenv("AMENT_PREFIX_PATH", value)
    return {"AMENT_PREFIX_PATH": value}


class LaunchProcess:
    """A running `mtopt-launch` in its own session; output collected by a thread."""

    def __init__(
        self,
        args: list[str],
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        env = dict(os.environ, ROS_LOG_DIR=str(log_dir), **(extra_env or {}))
        self.popen = subprocess.Popen(
            [str(LAUNCHER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
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
    """Factory: start_launch(args, extra_env=None, cwd=None) -> LaunchProcess; all are killed
    at the end."""
    started: list[LaunchProcess] = []

    def start(
        args: list[str], extra_env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> LaunchProcess:
        proc = LaunchProcess(args, tmp_path / "ros_log", extra_env, cwd)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.kill_everything()
