"""The `main()` every MT-Opt node shares: init, build, spin, clean shutdown, exit codes.

Exit codes: 0 after Ctrl-C / SIGINT / an external shutdown (also when the shutdown lands while
the executor builds its wait set, which rclpy reports as an RCLError on the dead context), 2 when
the node's parameters are invalid (ConfigError, message naming the parameter on stderr). A node
class may define `close()`: it runs before the executor shuts down (stop hardware, end a running
episode).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from mtopt_bridge.executors import MultiThreadedExecutor
from mtopt_bridge.params import ConfigError


def run_node(
    make_node: Callable[[], Node],
    name: str,
    threads: int | Callable[[Node], int] = 1,
    args: list[str] | None = None,
) -> int:
    """Run a node until interrupted; returns the process exit code.

    `threads` > 1 (or a function of the node returning it) spins a MultiThreadedExecutor (the
    mtopt_bridge.executors one), for nodes whose action/service callbacks block while other
    callbacks must keep running.
    """
    rclpy.init(args=args)
    node = executor = None
    try:
        node = make_node()
        count = threads(node) if callable(threads) else threads
        executor = (
            MultiThreadedExecutor(num_threads=count)
            if count > 1
            else rclpy.executors.SingleThreadedExecutor()
        )
        executor.add_node(node)
        executor.spin()
    except ConfigError as exc:
        print(f"{name}: invalid parameters: {exc}", file=sys.stderr, flush=True)
        return 2
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
    return 0
