"""Executor benchmark: rclpy's MultiThreadedExecutor against mtopt_bridge's (one JSON line).

    python -m mtopt_bridge.bench [--seconds 3] [--rate 100] [--threads 4]

One process, one context: a node publishes Float64 at `--rate` Hz from a timer, a second node
subscribes (rclpy's default event handlers, as every node has). Each executor spins the pair
for `--seconds`; reported are the messages delivered per second and the process CPU time per
wall second. `delivered_ratio` = fixed / rclpy (higher is better).
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import rclpy
from rclpy import executors
from rclpy.node import Node
from std_msgs.msg import Float64

from mtopt_bridge.executors import MultiThreadedExecutor


def measure(executor_class, seconds: float, rate: float, threads: int) -> dict:
    """Spin a publisher/subscriber pair with `executor_class`; delivered Hz and CPU share."""
    context = rclpy.Context()
    rclpy.init(context=context)
    received = []
    try:
        talker = Node("bench_talker", context=context)
        listener = Node("bench_listener", context=context)
        publisher = talker.create_publisher(Float64, "bench/value", 10)
        talker.create_timer(1.0 / rate, lambda: publisher.publish(Float64(data=1.0)))
        listener.create_subscription(Float64, "bench/value", received.append, 10)
        executor = executor_class(num_threads=threads, context=context)
        executor.add_node(talker)
        executor.add_node(listener)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        time.sleep(0.5)  # discovery
        count, cpu, wall = len(received), time.process_time(), time.monotonic()
        time.sleep(seconds)
        delivered = (len(received) - count) / (time.monotonic() - wall)
        cpu_share = (time.process_time() - cpu) / (time.monotonic() - wall)
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=2.0)
        for node in (talker, listener):
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return {"delivered_hz": round(delivered, 1), "cpu_share": round(cpu_share, 2)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=100.0, help="published messages per s")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    stock = measure(executors.MultiThreadedExecutor, args.seconds, args.rate, args.threads)
    fixed = measure(MultiThreadedExecutor, args.seconds, args.rate, args.threads)
    print(
        json.dumps(
            {
                "bench": "mtopt_bridge.executors",
                "rate_hz": args.rate,
                "threads": args.threads,
                "rclpy": stock,
                "mtopt_bridge": fixed,
                "delivered_ratio": round(
                    fixed["delivered_hz"] / max(stock["delivered_hz"], 1e-9), 2
                ),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
