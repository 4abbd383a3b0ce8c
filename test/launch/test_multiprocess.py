"""mtopt-launch with real processes and real DDS (ROS_DOMAIN_ID from test/conftest.py)."""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The demo graph fixture package (conftest `demo_graph_env`), run as `ros2 launch PKG FILE`.
DEMO_LAUNCH = ["demo_graph", "demo.launch.yaml"]

pytestmark = pytest.mark.ros


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


def wait_gone(pids, timeout_s: float) -> list[int]:
    """Pids still alive after waiting up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if pid_alive(p)]
        time.sleep(0.05)
    return alive


def test_demo_runs_to_completion(start_launch, demo_graph_env, tmp_path):
    launch = start_launch([*DEMO_LAUNCH, "episodes:=2"], demo_graph_env, cwd=tmp_path)
    code = launch.wait(timeout_s=60)
    out = launch.output
    assert code == 0, out
    # Both nodes' output arrives with their fully qualified prefix.
    assert re.search(r"^\[demo/demo_cell\] .*DEMO cell", out, re.M), out
    assert re.search(r"^\[demo/demo_collector\] .*DEMO collector", out, re.M), out
    # config/demo.yaml (keys /**/demo_cell, /**/demo_collector) reached both nodes, and the
    # inline `episodes` param (from the launch argument) reached the collector.
    assert "step_period_s=0.02 default_max_steps=8 cell_id=7" in out
    assert "episodes=2 seed=1" in out
    # The action round trip and every PolicyStep of every episode arrived.
    episodes = re.findall(
        r"result steps=(\d+) terminated=True .* policy_step received=(\d+)/(\d+), "
        r"episode_info=cell_id=(\d+)",
        out,
    )
    assert len(episodes) == 2, out
    for steps, received, expected, cell_id in episodes:
        assert int(steps) == 8 and int(received) == int(expected) == 8 and cell_id == "7"
    # Action feedback is best effort: once the result is in, rclpy drops the goal's feedback
    # still queued (its feedback callback is removed); seen once: 10 of 16 received.
    summary = re.search(
        r"summary: episodes=2 steps=16 policy_steps_received=16 feedback_received=(\d+) "
        r"episode_infos=2 cell_ids=7",
        out,
    )
    assert summary and 1 <= int(summary.group(1)) <= 16, out
    # The required collector's exit ended the launch and the cell was stopped.
    assert "required node 'demo/demo_collector' exited with code 0" in out
    assert "process has finished cleanly: demo/demo_cell" in out
    assert wait_gone(launch.child_pids().values(), 2.0) == []


def test_sigint_stops_everything_within_10s(start_launch, demo_graph_env):
    launch = start_launch([*DEMO_LAUNCH, "episodes:=100000", "namespace:=sig"], demo_graph_env)
    assert launch.wait_for_line("policy_step received=", timeout_s=45), launch.output
    pids = launch.child_pids()
    assert set(pids) == {"sig/demo_cell", "sig/demo_collector"}
    assert all(pid_alive(p) for p in pids.values())
    start = time.monotonic()
    launch.popen.send_signal(signal.SIGINT)
    code = launch.wait(timeout_s=10)
    elapsed = time.monotonic() - start
    assert code == 0, launch.output
    assert elapsed < 10.0
    assert "shutting down (received SIGINT)" in launch.output
    assert wait_gone(pids.values(), 1.0) == [], launch.output


def test_required_node_failure_fails_launch(start_launch, tmp_path, demo_graph_env):
    launch_file = tmp_path / "fail.launch.yaml"
    launch_file.write_text(
        textwrap.dedent(
            """\
            launch:
              - group:
                  - push-ros-namespace: {namespace: fail}
                  - node: {pkg: demo_graph, exec: mtopt-demo-cell, name: demo_cell}
                  - node:
                      pkg: demo_graph
                      exec: mtopt-demo-collector
                      name: demo_collector
                      on_exit: shutdown
                      param: [{name: episodes, value: -1}]
            """
        )
    )
    launch = start_launch([str(launch_file)], demo_graph_env)
    code = launch.wait(timeout_s=30)
    out = launch.output
    assert code == 1, out
    assert "episodes must be in [1, 1000000], got -1" in out  # the node says why
    assert "FAILED: required node 'fail/demo_collector' exited with code 2" in out
    assert wait_gone(launch.child_pids().values(), 1.0) == []


def test_node_ignoring_sigint_is_escalated_and_named(start_launch, tmp_path, install_package):
    # A colcon-style install prefix (lib/<pkg>/<exec>) found via AMENT_PREFIX_PATH.
    stubborn = (
        f"#!{sys.executable}\n"
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('ignoring SIGINT', flush=True)\n"
        "time.sleep(60)\n"
    )
    install_package(tmp_path / "install", "stubborn_pkg", executables={"stubborn": stubborn})
    launch_file = tmp_path / "stubborn.launch.yaml"
    launch_file.write_text(
        "launch:\n  - node: {pkg: stubborn_pkg, exec: stubborn, name: stubborn, output: screen}\n"
    )
    launch = start_launch(
        ["--sigint-timeout", "1", "--sigterm-timeout", "1", str(launch_file)],
        extra_env={"AMENT_PREFIX_PATH": str(tmp_path / "install")},
    )
    assert launch.wait_for_line("[stubborn] ignoring SIGINT", timeout_s=10), launch.output
    launch.popen.send_signal(signal.SIGINT)
    code = launch.wait(timeout_s=10)
    out = launch.output
    assert code == 1, out
    assert "stubborn did not stop on SIGINT: sending SIGTERM" in out
    assert "FAILED: node 'stubborn' did not stop on SIGINT" in out
    assert wait_gone(launch.child_pids().values(), 1.0) == []
