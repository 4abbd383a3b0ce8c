"""The `main()` every MT-Opt node shares: init, build, spin, clean shutdown, exit codes.

Exit codes: 0 after Ctrl-C / SIGINT / SIGTERM / an external shutdown (also when the shutdown
lands while the executor builds its wait set, which rclpy reports as an RCLError on the dead
context), 2 when the node's parameters are invalid (ConfigError: one line on stderr naming the
parameter, no traceback), otherwise what the node's own main loop returns (see `run_node`). A
node class may define `close()`: it runs before the executor shuts down (stop hardware, end a
running episode).

SIGINT and SIGTERM (without a main loop): our own handlers, not rclpy's. rclpy's deferred signal
thread wakes the executor's wait (its SIGINT guard condition) before it shuts the context down,
and that shutdown wakes nothing: an executor that woke in between, still saw a valid context and
waited again, waited forever (seen as logger and reset_bin processes that ignored SIGINT). Its
handler also chains to Python's, whose KeyboardInterrupt could land inside rclpy's C++ code
(a SystemError, exit 1). Here the executor spins in the main thread as before (callbacks keep
their thread: the sim cell's EGL contexts must be closed where they were used); a signal only
writes to Python's wakeup pipe, a watcher thread reading it ends the spin through a future (the
executor's own guard condition, whose trigger is kept until a wait sees it), and the node, the
executor and the context are shut down in order (`serve`, `StopSignals`). A node still running
`STOP_STACKS_AFTER_S` after the signal prints every thread's stack to stderr (the node log), so
a shutdown that hangs says where; a process that hangs after its node stopped (at interpreter
exit) prints them when SIGTERM ends it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_bridge.params import ConfigError, init_arguments

#: Exit code for invalid parameters (and nothing else).
EXIT_CONFIG_ERROR = 2
#: Signals that stop a node (Ctrl-C; a launch escalates SIGINT -> SIGTERM -> SIGKILL).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: A node still running this long after a stop signal prints every thread's stack to stderr
#: (before a launch's SIGTERM, 5 s after its SIGINT), so a hang in shutdown names its place.
STOP_STACKS_AFTER_S = 4.0


class StopSignals:
    """While entered (in the main thread), SIGINT and SIGTERM do nothing but wake `wait()`;
    the previous handlers and wakeup fd come back on exit.

    Python's C-level handler writes the signal number to the wakeup fd from whichever thread
    the signal lands in, so `wait()` (in any thread) returns even while the main thread waits
    inside rclpy, where the Python-level handler cannot run. `release()` wakes `wait()`
    without a signal. Outside the main thread (where Python cannot set handlers) only
    `release()` does."""

    def __init__(self) -> None:
        self.received: list[int] = []  # the signals that arrived, in order
        self._read_fd = self._write_fd = -1
        self._previous: dict[int, object] = {}
        self._previous_wakeup_fd = -1

    def __enter__(self) -> StopSignals:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # set_wakeup_fd's requirement
        if threading.current_thread() is threading.main_thread():
            self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd)
            for sig in STOP_SIGNALS:
                # The Python-level handler itself does nothing: the wakeup fd carries the stop.
                self._previous[sig] = signal.signal(sig, lambda *_: None)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._previous:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def wait(self) -> bool:
        """Block until a signal arrives (True) or `release()` is called (False)."""
        data = os.read(self._read_fd, 64)
        self.received.extend(byte for byte in data if byte)
        return bool(self.received)

    def release(self) -> None:
        """Wake `wait()` (it returns False unless a signal came too)."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full: wait() wakes anyway
            os.write(self._write_fd, b"\0")


def serve(
    executor: Executor, signals: StopSignals, stopping: Callable[[], None] | None = None
) -> None:
    """Spin `executor` in this thread until a stop signal arrives (`signals`) or spinning ends
    by itself (an external shutdown of the context, an exception in a callback, which is
    raised here; an external shutdown is not an error). After a signal, `stopping()` (if
    given) runs first, in a watcher thread while the executor still spins (e.g. end a running
    action and let its result go out); then the spin ends. The executor itself is left to the
    caller to shut down."""
    done: Future = Future()  # no executor: its done callbacks (the executor's wake) run at once
    failed: list[BaseException] = []

    def watch() -> None:
        try:
            if signals.wait():
                faulthandler.dump_traceback_later(STOP_STACKS_AFTER_S, file=sys.__stderr__)
                if stopping is not None:
                    stopping()
        except BaseException as exc:  # raised in the spinning thread below
            failed.append(exc)
        finally:
            done.set_result(None)

    watcher = threading.Thread(target=watch, name="stop-signals", daemon=True)
    watcher.start()
    try:
        with contextlib.suppress(ExternalShutdownException):
            executor.spin_until_future_complete(done)
    finally:
        signals.release()
        watcher.join()
    if failed:
        raise failed[0]


def run_node(
    make_node: Callable[[], Node],
    name: str,
    threads: int | Callable[[Node], int] = 1,
    args: list[str] | None = None,
    *,
    main_loop: Callable[[Node, Executor], int | None] | None = None,
    ros_signal_handlers: bool = True,
    stopping: Callable[[Node], None] | None = None,
) -> int:
    """Run a node until interrupted; returns the process exit code.

    `threads` > 1 (or a function of the node returning it) spins a MultiThreadedExecutor (the
    mtopt_bridge.executors one), for nodes whose action/service callbacks block while other
    callbacks must keep running.

    Without `main_loop`, the node spins in the calling thread until SIGINT or SIGTERM (our
    handlers, see the module docstring; the previous ones come back when run_node returns) or
    an external shutdown; `stopping(node)`, when given, runs after the signal (in another
    thread) while the executor still spins (end running work whose results must still go
    out); then spinning ends, `close()` runs, and the executor, the node and the context shut
    down.

    `main_loop(node, executor)`, when given, runs in the main thread instead (e.g. a collection
    loop that spins the executor in another thread); its return value is the exit code (None:
    0). For a main loop, `ros_signal_handlers=False` leaves SIGINT to Python (KeyboardInterrupt,
    or the caller's own handlers) instead of rclpy shutting the context down at once, for nodes
    that must finish work after Ctrl-C (print a summary, send a result).
    """
    if main_loop is not None:
        return _run(make_node, name, threads, args, main_loop, ros_signal_handlers)
    with StopSignals() as signals:

        def spin(node: Node, executor: Executor) -> None:
            serve(executor, signals, None if stopping is None else lambda: stopping(node))

        try:
            code = _run(make_node, name, threads, args, spin, ros_signal_handlers=False)
        finally:
            faulthandler.cancel_dump_traceback_later()  # stopped in time
    if signals.received and threading.current_thread() is threading.main_thread():
        # The node stopped, but the process may still hang on its way out (a thread the
        # interpreter waits for at exit): a launch's SIGTERM then prints every thread's stack
        # before it ends the process as before.
        faulthandler.unregister(signal.SIGTERM)  # a repeat in one process installs anew
        faulthandler.register(signal.SIGTERM, file=sys.__stderr__, all_threads=True, chain=True)
    return code


def _run(
    make_node: Callable[[], Node],
    name: str,
    threads: int | Callable[[Node], int],
    args: list[str] | None,
    main_loop: Callable[[Node, Executor], int | None],
    ros_signal_handlers: bool,
) -> int:
    signal_options = None if ros_signal_handlers else SignalHandlerOptions.NO  # None: rclpy's
    rclpy.init(args=args, signal_handler_options=signal_options)
    node = executor = None
    code: int | None = 0
    try:
        with init_arguments(args):
            node = make_node()
        count = threads(node) if callable(threads) else threads
        executor = (
            MultiThreadedExecutor(num_threads=count)
            if count > 1
            else rclpy.executors.SingleThreadedExecutor()
        )
        executor.add_node(node)
        code = main_loop(node, executor)
    except ConfigError as exc:
        print(f"{name}: invalid parameters: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # An external shutdown (rclpy's SIGINT handler with a main loop, a node ending its own
        # process) between the executor's ok() check and its wait-set creation makes rclpy
        # raise RCLError ("the given context is not valid") instead of
        # ExternalShutdownException. Same shutdown, exit 0; any other RuntimeError (context
        # still valid) is a real failure.
        if rclpy.ok():
            raise
    finally:
        close = getattr(node, "close", None)
        if close is not None:
            close()
        if executor is not None:
            executor.shutdown(timeout_sec=3.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code or 0
