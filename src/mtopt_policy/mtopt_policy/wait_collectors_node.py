"""`mtopt-wait-collectors`: ends a multi-cell launch when every cell's collector is done.

mtopt-launch (like `ros2 launch` with `on_exit: shutdown`) shuts a launch down when the first
required node exits. With several cells each collector exits after its own N episodes, so the
collectors are not required nodes; this node is: it watches `/<prefix><k>/collector/status`
(CollectorStatus, transient_local) of cells 0..cells-1 and exits 0 once every one reported a
status beginning with "done". A collector that disappears from the graph without reporting
done (a crash) ends it with exit code 1 naming the cell, so the launch fails instead of hanging.

Parameters: `cells` (number of cells), `namespace_prefix` ("cell"), `vanish_grace_s` (how long a
vanished collector's "done" may still arrive, default 5 s), `startup_timeout_s` (a collector
that never shows up within this long is a failure; 0 = wait forever, default 120 s).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from functools import partial

from rclpy.node import Node

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import ConfigError, declare_config, describe_config
from mtopt_bridge.qos import STATUS_QOS
from mtopt_interfaces.msg import CollectorStatus


@dataclass(frozen=True)
class WaitCollectorsConfig:
    """Parameters of mtopt-wait-collectors."""

    cells: int = 1
    namespace_prefix: str = "cell"
    vanish_grace_s: float = 5.0
    startup_timeout_s: float = 120.0

    def validate(self) -> None:
        if self.cells < 1:
            raise ConfigError(f"parameter cells must be >= 1, got {self.cells}")
        if not self.namespace_prefix:
            raise ConfigError("parameter namespace_prefix must not be empty")
        if self.vanish_grace_s < 0 or self.startup_timeout_s < 0:
            raise ConfigError("parameters vanish_grace_s and startup_timeout_s must be >= 0")


class WaitCollectorsNode(Node):
    """Watches the collectors' status and graph presence; `exit_code` is set when decided."""

    def __init__(self, **kwargs):
        super().__init__("wait_collectors", **kwargs)
        self.config = declare_config(self, WaitCollectorsConfig)
        cfg = self.config
        self.get_logger().info(f"parameters: {describe_config(cfg)}")
        self.namespaces = [f"/{cfg.namespace_prefix}{k}" for k in range(cfg.cells)]
        self.done: dict[str, str] = {}
        self.seen: set[str] = set()
        self.vanished_at: dict[str, float] = {}
        self.exit_code: int | None = None
        self._started = time.monotonic()
        for ns in self.namespaces:
            self.create_subscription(
                CollectorStatus, f"{ns}/collector/status", partial(self._on_status, ns), STATUS_QOS
            )
        self.create_timer(0.5, self._check)

    def _on_status(self, ns: str, msg: CollectorStatus) -> None:
        if msg.status.startswith("done") and ns not in self.done:
            self.done[ns] = msg.status
            self.get_logger().info(f"{ns}: {msg.status} ({len(self.done)}/{len(self.namespaces)})")

    def _check(self) -> None:
        if self.exit_code is not None:
            return
        if len(self.done) == len(self.namespaces):
            self.get_logger().info("all collectors are done")
            self.exit_code = 0
            return
        now = time.monotonic()
        present = {ns for name, ns in self.get_node_names_and_namespaces() if name == "collector"}
        for ns in self.namespaces:
            if ns in self.done:
                continue
            if ns in present:
                self.seen.add(ns)
                self.vanished_at.pop(ns, None)
            elif ns in self.seen:
                since = self.vanished_at.setdefault(ns, now)
                if now - since > self.config.vanish_grace_s:
                    self.get_logger().error(f"{ns}/collector exited without reporting done")
                    self.exit_code = 1
                    return
            elif (
                self.config.startup_timeout_s
                and now - self._started > self.config.startup_timeout_s
            ):
                self.get_logger().error(
                    f"{ns}/collector did not appear within {self.config.startup_timeout_s:g} s"
                )
                self.exit_code = 1
                return


def _spin_until_decided(node: WaitCollectorsNode, executor) -> int:
    while node.exit_code is None:
        executor.spin_once(timeout_sec=0.2)
    return node.exit_code


def main(args=None) -> int:
    """0 once every collector is done, 1 when one failed, 2 on invalid parameters."""
    return run_node(
        WaitCollectorsNode, "mtopt-wait-collectors", args=args, main_loop=_spin_until_decided
    )


if __name__ == "__main__":
    sys.exit(main())
