"""The `main()` every MT-Opt node shares: init, build, spin, clean shutdown, exit codes.

Exit codes: 0 after Ctrl-C / SIGINT / an external shutdown (also when the shutdown lands while
the executor builds its wait set, which rclpy reports as an RCLError on the dead context), 2
when the node's parameters are invalid (ConfigError: one line on stderr naming the parameter,
no traceback), otherwise what the node's own main loop returns (see `run_node`). A node class
may define `close()`: it runs before the executor shuts down (stop hardware, end a running
episode).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_bridge.params import ConfigError, init_arguments

#: Exit code for invalid parameters (and nothing else).
EXIT_CONFIG_ERROR = 2


def run_node(
    make_node: Callable[[], Node],
    name: str,
    threads: int | Callable[[Node], int] = 1,
    args: list[str] | None = None,
    *,
    main_loop: Callable[[Node, Executor], int | None] | None = None,
    ros_signal_handlers: bool = True,
) -> int:
    """Run a node until interrupted; returns the process exit code.

    `threads` > 1 (or a function of the node returning it) spins a MultiThreadedExecutor (the
    mtopt_bridge.executors one), for nodes whose action/service callbacks block while other
    callbacks must keep running.

    `main_loop(node, executor)`, when given, runs in the main thread instead of
    `executor.spin()` (e.g. a collection loop that spins the executor in another thread); its
    return value is the exit code (None: 0). `ros_signal_handlers=False` leaves SIGINT to
    Python (KeyboardInterrupt) instead of rclpy shutting the context down at once, for nodes
    that must finish work after Ctrl-C (print a summary, send a result).
    """
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
        if main_loop is None:
            executor.spin()
        else:
            code = main_loop(node, executor)
    except ConfigError as exc:
        print(f"{name}: invalid parameters: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # SIGINT shuts the context down from the signal handler; if that happens between the
        # executor's ok() check and its wait-set creation, rclpy raises RCLError ("the given
        # context is not valid") instead of ExternalShutdownException. Same shutdown, exit 0;
        # any other RuntimeError (context still valid) is a real failure.
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
