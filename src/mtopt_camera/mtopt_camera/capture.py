"""Frame capture from an OpenCV source with a reconnect state machine (no rclpy here).

States:
  DOWN  - not open. `read()` tries to open the source at most every `reconnect_period_s`
          and returns None until it succeeds (so a consumer publishes nothing while down).
  UP    - open. `read()` returns the next frame (RGB, optionally resized). A failed read
          releases the source and goes DOWN, except at the end of a video file: with `loop`
          it rewinds to the first frame, without it goes ENDED.
  ENDED - a non-looping video file reached its end; `read()` returns None from then on.

Warnings are throttled: one when the source goes down (or fails to open), then at most one per
`warn_period_s` while it stays down.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


class CaptureState(enum.Enum):
    DOWN = "down"
    UP = "up"
    ENDED = "ended"


def parse_source(source: str) -> int | str:
    """An int-like string is a device index (`"0"` -> 0); anything else a file path or URL."""
    text = source.strip()
    if not text:
        raise ValueError("source must not be empty")
    try:
        return int(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class CaptureOptions:
    """How `FrameCapture` reads its source."""

    loop: bool = True  # video files restart at the end
    reconnect_period_s: float = 1.0  # time between attempts to (re)open a source that is down
    warn_period_s: float = 5.0  # at most one "still down" warning per this period
    width: int = 0  # resize to width x height (both 0: keep the source size)
    height: int = 0


def _ignore(_message: str) -> None:
    pass


class FrameCapture:
    """Reads RGB frames from `cv2.VideoCapture(source)`, reopening it after failures.

    Args:
        source: device index (int) or a path / URL OpenCV can open.
        options: loop / reconnect / resize settings.
        warn, info: log sinks (the node passes its logger's methods).
        clock: monotonic time source in seconds.
    """

    def __init__(
        self,
        source: int | str,
        options: CaptureOptions | None = None,
        warn: Callable[[str], None] = _ignore,
        info: Callable[[str], None] = _ignore,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.source = source
        self.options = options or CaptureOptions()
        if (self.options.width > 0) != (self.options.height > 0):
            raise ValueError("width and height must both be > 0 (resize) or both 0 (native)")
        self._warn, self._info, self._clock = warn, info, clock
        self.state = CaptureState.DOWN
        self._capture: cv2.VideoCapture | None = None
        self._next_attempt = 0.0  # open immediately on the first read
        self._down_since: float | None = None
        self._last_warning = -float("inf")
        self.frames_read = 0
        self.reconnects = 0

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, str)

    def read(self) -> np.ndarray | None:
        """The next frame as an (H, W, 3) uint8 RGB array, or None (down, ended, or waiting)."""
        if self.state is CaptureState.ENDED:
            return None
        if self.state is CaptureState.DOWN and not self._try_open():
            return None
        ok, frame = self._capture.read()
        if not ok and self.is_file:
            if not self.options.loop:
                self._release()
                self.state = CaptureState.ENDED
                self._info(f"end of video {self.source}; loop is off, publishing stops")
                return None
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok or frame is None:
            self._go_down(f"reading from {self.source} failed")
            return None
        self.frames_read += 1
        return self._to_rgb(frame)

    def close(self) -> None:
        """Release the source (the state machine would reopen it on the next read)."""
        self._release()
        if self.state is CaptureState.UP:
            self.state = CaptureState.DOWN

    def _try_open(self) -> bool:
        now = self._clock()
        if now < self._next_attempt:
            return False
        self._next_attempt = now + self.options.reconnect_period_s
        capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            capture.release()
            if self._down_since is None:
                self._down_since = now
            if now - self._last_warning >= self.options.warn_period_s:
                self._last_warning = now
                self._warn(
                    f"cannot open {self.source} (down for {now - self._down_since:.1f} s);"
                    f" retrying every {self.options.reconnect_period_s:g} s"
                )
            return False
        self._capture = capture
        if self._down_since is not None:
            self.reconnects += 1
            self._info(f"{self.source} open again after {now - self._down_since:.1f} s")
        else:
            self._info(f"{self.source} open")
        self._down_since = None
        self._last_warning = -float("inf")
        self.state = CaptureState.UP
        return True

    def _go_down(self, reason: str) -> None:
        self._release()
        self.state = CaptureState.DOWN
        now = self._clock()
        self._down_since = now
        self._next_attempt = now + self.options.reconnect_period_s
        self._last_warning = now
        self._warn(f"{reason}; released, retrying every {self.options.reconnect_period_s:g} s")

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2:
            rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif frame.shape[2] == 4:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        width, height = self.options.width, self.options.height
        if width > 0 and (rgb.shape[1], rgb.shape[0]) != (width, height):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return rgb
