"""Latest-value inputs with receive times, and the staleness rule of the policy (no ROS here).

A ROS callback `put`s each message into a `LatestInput`; a worker thread waits for a value
received after some instant (e.g. the end of the previous action) with `wait_newer`.
`wait_fresh` applies the policy's rule: every input must deliver a value newer than `after`
within `max_staleness_s`, otherwise `StaleInputError` says which input and for how long it has
been silent ("camera overhead stale for 1.3 s").

A `LatestInput` with a `check` drops values the check refuses (a malformed camera frame): they
are counted (`dropped`, `last_drop_reason`) and never become the latest value, so one bad
frame does not end an episode; only when no valid value is fresh in time is the input stale
("camera overhead stale for 1.3 s (4 malformed dropped)").
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

    def __init__(
        self,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        check: Callable[[T], object] | None = None,
    ):
        self.name = name
        self._clock = clock
        self._check = check
        self._cond = threading.Condition()
        self._value: T | None = None
        self._stamp = -float("inf")
        self._count = 0
        self._dropped = 0
        self._dropped_since_valid = 0
        self.last_drop_reason = ""

    def put(self, value: T) -> bool:
        """Store a new value, received now; False when `check` refused it (ValueError): it is
        dropped and counted, the previous value stays the latest."""
        if self._check is not None:
            try:
                self._check(value)
            except ValueError as exc:
                with self._cond:
                    self._dropped += 1
                    self._dropped_since_valid += 1
                    self.last_drop_reason = str(exc)
                return False
        with self._cond:
            self._value = value
            self._stamp = self._clock()
            self._count += 1
            self._dropped_since_valid = 0
            self._cond.notify_all()
        return True

    @property
    def dropped(self) -> int:
        """Values refused by `check` so far."""
        with self._cond:
            return self._dropped

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
        """'<name> stale for 1.3 s' or '<name>: nothing received yet', plus how many refused
        values arrived since the last valid one ('(4 malformed dropped)')."""
        age = self.age(now)
        with self._cond:
            dropped = self._dropped_since_valid
        text = (
            f"{self.name}: nothing received yet"
            if age is None
            else f"{self.name} stale for {age:.1f} s"
        )
        return f"{text} ({dropped} malformed dropped)" if dropped else text


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
