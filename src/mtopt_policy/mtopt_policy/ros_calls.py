"""Blocking service calls and action goals with timeouts and retries, for worker threads.

The node's executor (multi-threaded, spinning elsewhere) completes the futures; a worker
thread (an action's execute callback, the collector's loop) waits on them here. Every wait is
bounded: a peer that crashed, hangs, or was just restarted (its DDS endpoints may stay
unmatched for a while) turns into a `CallError` naming the interface and what did not happen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.client import Client
from rclpy.task import Future

STATUS_NAMES = {
    GoalStatus.STATUS_UNKNOWN: "UNKNOWN",
    GoalStatus.STATUS_ACCEPTED: "ACCEPTED",
    GoalStatus.STATUS_EXECUTING: "EXECUTING",
    GoalStatus.STATUS_CANCELING: "CANCELING",
    GoalStatus.STATUS_SUCCEEDED: "SUCCEEDED",
    GoalStatus.STATUS_CANCELED: "CANCELED",
    GoalStatus.STATUS_ABORTED: "ABORTED",
}


class CallError(RuntimeError):
    """A service call or action goal did not complete; the message says which and why."""


class Stopped(CallError):
    """The waiting node is shutting down."""


def wait_future(
    future: Future,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    cancel: bool = True,
) -> Any:
    """The future's result, or raise TimeoutError after `timeout_s`, or Stopped as soon as
    `alive()` turns false (checked every 50 ms). Either way the future is cancelled unless
    `cancel` is false (then a late answer still completes it)."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    deadline = time.monotonic() + timeout_s
    while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
        if not alive():
            if cancel:
                future.cancel()
            raise Stopped("node shutting down")
        if time.monotonic() >= deadline:
            if cancel:
                future.cancel()
            raise TimeoutError
    exc = future.exception()
    if exc is not None:
        raise CallError(str(exc))
    return future.result()


def wait_ready(is_ready: Callable[[], bool], timeout_s: float, alive: Callable[[], bool]) -> bool:
    """Poll `is_ready()` (discovery of a server) for up to `timeout_s`; Stopped on shutdown."""
    deadline = time.monotonic() + timeout_s
    while not is_ready():
        if not alive():
            raise Stopped("node shutting down")
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def call_service(
    client: Client,
    request: Any,
    timeout_s: float,
    retries: int = 0,
    what: str = "",
    alive: Callable[[], bool] = lambda: True,
) -> Any:
    """Call a service: wait for it, send, wait for the reply; retry `retries` more times."""
    name = what or client.srv_name
    attempts = retries + 1
    problem = ""
    for _ in range(attempts):
        if not wait_ready(client.service_is_ready, timeout_s, alive):
            problem = f"{name}: service not available after {timeout_s:.1f} s"
            continue
        try:
            return wait_future(client.call_async(request), timeout_s, alive)
        except TimeoutError:
            problem = f"{name}: no reply within {timeout_s:.1f} s"
    raise CallError(f"{problem} ({attempts} attempt(s))")


@dataclass
class GoalOutcome:
    """Final status and result of an action goal."""

    status: int
    result: Any

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))

    @property
    def succeeded(self) -> bool:
        return self.status == GoalStatus.STATUS_SUCCEEDED


class CallRejected(CallError):
    """The server refused the goal: nothing was started."""


def cancel_if_accepted(future) -> None:
    """Done callback of a goal request given up on: cancel the goal if it was accepted."""
    if future.cancelled() or future.exception() is not None:
        return
    handle = future.result()
    if handle is not None and handle.accepted:
        handle.cancel_goal_async()


class GoalRun:
    """One action goal: `send` (accepted or CallError), then `result` (bounded wait)."""

    def __init__(self, client: ActionClient, what: str, alive: Callable[[], bool] = lambda: True):
        self.client = client
        self.what = what
        self.alive = alive
        self.handle = None
        self.last_heard = 0.0  # monotonic time of the acceptance or the newest feedback

    def send(self, goal: Any, timeout_s: float, feedback_callback=None) -> GoalRun:
        def heard(feedback):
            self.last_heard = time.monotonic()
            if feedback_callback is not None:
                feedback_callback(feedback)

        if not wait_ready(self.client.server_is_ready, timeout_s, self.alive):
            raise CallError(f"{self.what}: action server not available after {timeout_s:.1f} s")
        future = self.client.send_goal_async(goal, feedback_callback=heard)
        try:
            handle = wait_future(future, timeout_s, self.alive, cancel=False)
        except (TimeoutError, Stopped) as exc:
            # Given up on, but still pending: a server that accepts it late must not run it
            # (it would move the hardware unobserved and stay busy for the next goal).
            future.add_done_callback(cancel_if_accepted)
            if isinstance(exc, Stopped):
                raise
            raise CallError(f"{self.what}: goal not answered within {timeout_s:.1f} s") from None
        if handle is None or not handle.accepted:
            raise CallRejected(f"{self.what}: goal rejected")
        self.handle = handle
        self.last_heard = time.monotonic()
        return self

    def result(self, timeout_s: float, silence_s: float | None = None) -> GoalOutcome:
        """The goal's outcome within `timeout_s`, else CallError. With `silence_s`, also
        CallError as soon as neither the acceptance nor a feedback came for that long: a
        server that crashed (and perhaps came back, not knowing the goal) never answers, so
        the caller need not wait out the whole timeout."""

        def heard_lately() -> bool:
            return silence_s is None or time.monotonic() - self.last_heard < silence_s

        try:
            response = wait_future(
                self.handle.get_result_async(),
                timeout_s,
                lambda: self.alive() and heard_lately(),
            )
        except Stopped:
            self.cancel()
            if not heard_lately():
                raise CallError(
                    f"{self.what}: no feedback for {silence_s:.0f} s (its server stopped?)"
                ) from None
            raise
        except TimeoutError:
            self.cancel()
            raise CallError(f"{self.what}: no result within {timeout_s:.1f} s") from None
        return GoalOutcome(response.status, response.result)

    def cancel(self) -> None:
        """Ask the server to cancel (best effort, does not wait)."""
        if self.handle is not None:
            self.handle.cancel_goal_async()


def run_goal(
    client: ActionClient,
    goal: Any,
    accept_timeout_s: float,
    result_timeout_s: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
) -> GoalOutcome:
    """Send a goal and wait for its result (CallError when either does not happen in time)."""
    run = GoalRun(client, what, alive).send(goal, accept_timeout_s)
    return run.result(result_timeout_s)


def sleep_while(ok, seconds: float, step: float = 0.05) -> bool:
    """Sleep up to `seconds` while `ok()` stays true; returns ok()."""
    deadline = time.monotonic() + seconds
    while ok() and time.monotonic() < deadline:
        time.sleep(min(step, max(0.0, deadline - time.monotonic())))
    return ok()
