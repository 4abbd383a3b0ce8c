"""mtopt_bridge.node_main.run_node: exit codes around shutdown."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from mtopt_bridge import node_main
from mtopt_bridge.node_main import run_node

pytestmark = pytest.mark.ros


class _ClosingNode(Node):
    closed = 0

    def __init__(self):
        super().__init__("run_node_probe")

    def close(self):
        type(self).closed += 1


def test_sigint_landing_while_the_wait_set_is_built_exits_cleanly(monkeypatch):
    # The launch-shutdown race seen in CI: the signal handler shuts the context down after the
    # executor's ok() check, and building the wait set then fails on the dead context.
    def spin_into_the_race(self, future, timeout_sec=None):
        rclpy.shutdown()
        raise RCLError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(SingleThreadedExecutor, "spin_until_future_complete", spin_into_the_race)
    _ClosingNode.closed = 0
    assert run_node(_ClosingNode, "probe") == 0
    assert _ClosingNode.closed == 1  # close() still ran
    assert not rclpy.ok()


def test_a_runtime_error_on_a_live_context_is_not_swallowed(monkeypatch):
    def fail(self, future, timeout_sec=None):
        raise RuntimeError("a real bug in a callback")

    monkeypatch.setattr(SingleThreadedExecutor, "spin_until_future_complete", fail)
    with pytest.raises(RuntimeError, match="real bug"):
        run_node(_ClosingNode, "probe")
    assert not rclpy.ok()  # shut down all the same


def test_a_main_loop_gives_the_exit_code_and_close_still_runs():
    def loop(node, executor):
        assert node in executor.get_nodes()  # built and added before the loop runs
        return 3

    _ClosingNode.closed = 0
    assert run_node(_ClosingNode, "probe", main_loop=loop) == 3
    assert _ClosingNode.closed == 1
    assert not rclpy.ok()


def test_ctrl_c_in_a_main_loop_without_ros_signal_handlers_is_a_clean_exit():
    def interrupted(node, executor):
        raise KeyboardInterrupt  # what Python's own SIGINT handler raises

    _ClosingNode.closed = 0
    assert run_node(_ClosingNode, "probe", main_loop=interrupted, ros_signal_handlers=False) == 0
    assert _ClosingNode.closed == 1
    assert not rclpy.ok()


class _TickingNode(Node):
    """A 100 Hz timer; `on_tick(node)` runs in each callback. Records what happened in
    `events`."""

    on_tick = None
    events: list[str] = []

    def __init__(self):
        super().__init__("run_node_ticking_probe")
        self.ticks = 0
        self.create_timer(0.01, self._tick)

    def _tick(self):
        self.ticks += 1
        type(self).on_tick(self)

    def close(self):
        self.events.append(f"close after {self.ticks} ticks")

    def destroy_node(self):
        # Callbacks, close() and destroy_node() in one thread, the caller's, as before the own
        # signal handling (the sim cell closes its EGL renderers, usable only in the thread
        # that used them).
        assert threading.current_thread() is threading.main_thread()
        super().destroy_node()


def _run_ticking(on_tick, **kwargs) -> int:
    _TickingNode.on_tick = staticmethod(on_tick)
    _TickingNode.events = []
    return run_node(_TickingNode, "probe", **kwargs)


def test_sigint_during_a_callback_stops_spinning_closes_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)

    def tick(node):
        assert threading.current_thread() is threading.main_thread()  # single-threaded
        if node.ticks == 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal lands while this callback runs

    started = time.monotonic()
    assert _run_ticking(tick) == 0
    assert time.monotonic() - started < 3.0
    (closed,) = _TickingNode.events
    assert closed.startswith("close after")
    assert signal.getsignal(signal.SIGINT) is before
    assert not rclpy.ok()


def test_stopping_runs_while_the_executor_still_spins_then_close():
    def tick(node):
        if node.ticks == 2:
            os.kill(os.getpid(), signal.SIGINT)

    def stopping(node):
        seen = node.ticks
        deadline = time.monotonic() + 5.0
        while node.ticks < seen + 3:  # callbacks still run
            assert time.monotonic() < deadline, "the executor stopped before `stopping` ended"
            time.sleep(0.01)
        _TickingNode.events.append("stopping done")

    assert _run_ticking(tick, threads=2, stopping=stopping) == 0
    assert _TickingNode.events[0] == "stopping done"
    assert _TickingNode.events[1].startswith("close after")


def test_a_node_slow_to_stop_prints_every_threads_stack_and_a_prompt_one_nothing(
    monkeypatch, capfd
):
    """A shutdown that hangs names its place in the node log (before a launch's SIGTERM)."""
    monkeypatch.setattr(node_main, "STOP_STACKS_AFTER_S", 0.3)

    def tick(node):
        if node.ticks == 2:
            # faulthandler reads the other threads' frames without the GIL: a thread running
            # Python code meanwhile can crash the dump (once, the pytest worker). A hung node
            # is mostly blocked; here the timer stops so its executor threads block too.
            for timer in node.timers:
                timer.cancel()
            os.kill(os.getpid(), signal.SIGINT)

    def slow_to_stop(node):
        time.sleep(1.0)

    assert _run_ticking(tick, threads=2, stopping=slow_to_stop) == 0
    err = capfd.readouterr().err
    assert "Timeout (0:00:00.300000)!" in err and "in slow_to_stop" in err, err[-3000:]
    assert _run_ticking(tick, threads=2) == 0
    time.sleep(0.6)  # the dump was cancelled when the node stopped
    assert "Timeout" not in capfd.readouterr().err


HANGS_AT_EXIT = """
import os, signal, threading, time
from rclpy.node import Node
from mtopt_bridge.node_main import run_node

def make_node():
    node = Node("hangs_at_exit")
    node.create_timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT))
    return node

code = run_node(make_node, "hangs_at_exit")
print("node stopped", code, flush=True)
threading.Thread(target=lambda: time.sleep(60)).start()
"""


def test_a_process_that_hangs_after_its_node_stopped_prints_the_stacks_on_sigterm():
    """A node that stopped on SIGINT but whose process does not exit (a thread the interpreter
    waits for) prints every thread's stack when the launch's SIGTERM ends it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGS_AT_EXIT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "node stopped 0"
        time.sleep(0.3)
        assert proc.poll() is None  # hung at exit
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    # The forgotten thread's stack, and the main thread waiting for it at interpreter exit.
    assert "in <lambda>" in err and "in _shutdown" in err, err[-3000:]


def test_an_exception_in_a_callback_propagates_after_an_orderly_shutdown():
    def tick(node):
        if node.ticks == 2:
            raise ValueError("a bug in a callback")

    with pytest.raises(ValueError, match="bug in a callback"):
        _run_ticking(tick)
    assert _TickingNode.events and _TickingNode.events[0].startswith("close after 2")
    assert not rclpy.ok()


def test_a_signal_while_the_node_is_built_stops_it_once_it_spins():
    class _SignalledWhileBuilt(_TickingNode):
        def __init__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # before: rclpy's handler, or death
            super().__init__()

    _TickingNode.on_tick = staticmethod(lambda node: None)
    _TickingNode.events = []
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert run_node(_SignalledWhileBuilt, "probe") == 0
    assert time.monotonic() - started < 3.0
    assert _TickingNode.events and _TickingNode.events[0].startswith("close after")
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_node_shutting_its_context_down_ends_the_spin_with_exit_code_0(recwarn):
    def tick(node):
        if node.ticks == 2:
            node.context.try_shutdown()  # as learner_node does when training ends

    started = time.monotonic()
    assert _run_ticking(tick) == 0
    assert time.monotonic() - started < 3.0
    assert _TickingNode.events and _TickingNode.events[0].startswith("close after 2")
    assert not [w for w in recwarn if "done callback" in str(w.message)]
