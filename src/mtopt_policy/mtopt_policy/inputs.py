"""Latest-value inputs with receive times, and the staleness rule of the policy (no ROS here).

A ROS callback `put`s each message into a `LatestInput`; a worker thread waits for a value
received after some instant (e.g. the end of the previous action) with `wait_newer`.
`wait_fresh` applies the policy's rule: every input must deliver a value newer than `after`
within `max_staleness_s`, otherwise `StaleInputError` says which input and for how long it has
been silent ("camera overhead stale for 1.3 s").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class StaleInputError(RuntimeError):
    """An input delivered nothing new in time. `reason` is the human-readable cause."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class LatestInput(Generic[T]):
    """The newest value of one input stream with its receive time (thread-safe)."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self._clock = clock
        self._cond = threading.Condition()
        self._value: T | None = None
        self._stamp = -float("inf")
        self._count = 0

    def put(self, value: T) -> None:
        """Store a new value, received now."""
        with self._cond:
            self._value = value
            self._stamp = self._clock()
            self._count += 1
            self._cond.notify_all()

    def latest(self) -> tuple[T | None, float]:
        """(value, receive time); (None, -inf) before the first value."""
        with self._cond:
            return self._value, self._stamp

    @property
    def count(self) -> int:
        """Values received so far."""
        with self._cond:
            return self._count

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the last value (None if nothing arrived yet)."""
        with self._cond:
            if self._count == 0:
                return None
            return (self._clock() if now is None else now) - self._stamp

    def wait_newer(self, after: float, timeout: float) -> tuple[T, float] | None:
        """Wait up to `timeout` s for a value received after `after`: (value, stamp) or None."""
        deadline = self._clock() + max(0.0, timeout)
        with self._cond:
            while self._stamp <= after:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.05))
            return self._value, self._stamp

    def describe_silence(self, now: float | None = None) -> str:
        """'<name> stale for 1.3 s' or '<name>: nothing received yet'."""
        age = self.age(now)
        if age is None:
            return f"{self.name}: nothing received yet"
        return f"{self.name} stale for {age:.1f} s"


def wait_fresh(
    inputs: Sequence[LatestInput[Any]],
    after: float,
    max_staleness_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[Any]:
    """Values of all `inputs` received after `after`, waiting up to `max_staleness_s` in total.

    Raises StaleInputError naming the first input that delivered nothing new in time.
    """
    deadline = clock() + max_staleness_s
    values = []
    for item in inputs:
        got = item.wait_newer(after, deadline - clock())
        if got is None:
            raise StaleInputError(item.describe_silence())
        values.append(got[0])
    return values
