"""A fake bin motor controller on a pseudo-terminal, speaking the protocol of ../README.md.

It simulates the hinge (moves toward the commanded angle at the commanded speed, limited to
`max_velocity`, inside `angle_range`) and has switchable failures: `set_fault(message)` (the
controller reports a latched fault and stops the motor; CLEAR or `clear_fault()` resets it)
and `set_silent(True)` (it stops answering, as an unplugged or hung controller would).

As a script it prints `PORT <device path>` on stdout, then takes commands on stdin, one per
line: `fault <message>`, `clear`, `silent`, `answer`, `quit`:

    python -m mtopt_reset_bin.fake_controller [--link /tmp/binmotor]

It answers with a checksum exactly when the request carried one.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import sys
import threading
import time
import tty

from mtopt_reset_bin import protocol
from mtopt_reset_bin.motor import MotorReading


class FakeMotorController:
    """Simulated motor controller serving one pseudo-terminal from a background thread.

    Args:
        max_velocity: speed limit of the simulated motor [rad/s].
        angle_range: (min, max) hinge angle [rad]; MOVE outside it is refused with ERR.
        reply_delay: time the controller takes to answer [s].
        link: optional path of a symlink to the pty device (a stable name for configs).
    """

    def __init__(
        self,
        max_velocity: float = 3.0,
        angle_range: tuple[float, float] = (0.0, 3.0),
        reply_delay: float = 0.0,
        link: str | None = None,
    ):
        self.max_velocity = max_velocity
        self.angle_range = angle_range
        self.reply_delay = reply_delay
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: a plain byte pipe
        self.port = os.ttyname(self._slave)
        self.link = link
        if link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(self.port, link)
        self._lock = threading.Lock()
        self._angle = 0.0
        self._velocity = 0.0
        self._target = 0.0
        self._speed = max_velocity
        self._fault = ""
        self._silent = False
        self._last_update = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-bin-motor", daemon=True)
        self.requests: list[str] = []  # every request payload received (for tests)

    # -- control (tests, stdin commands) ----------------------------------------------------
    def start(self) -> FakeMotorController:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the pseudo-terminal."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    def __enter__(self) -> FakeMotorController:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def set_fault(self, message: str) -> None:
        """Latch a fault: the motor stops and POS? reports fault 1 with `message`."""
        with self._lock:
            self._update()
            self._fault = message or "fault"
            self._target = self._angle

    def clear_fault(self) -> None:
        with self._lock:
            self._fault = ""

    def set_silent(self, silent: bool) -> None:
        """Stop (True) or resume (False) answering requests; the motor keeps moving."""
        with self._lock:
            self._silent = silent

    def reading(self) -> MotorReading:
        """Current simulated state."""
        with self._lock:
            self._update()
            return MotorReading(self._angle, self._velocity, bool(self._fault), self._fault)

    # -- simulation -------------------------------------------------------------------------
    def _update(self) -> None:
        """Advance the motor to now (call with the lock held)."""
        now = time.monotonic()
        dt, self._last_update = now - self._last_update, now
        step = max(-self._speed * dt, min(self._speed * dt, self._target - self._angle))
        self._angle += step
        self._velocity = step / dt if dt > 0 else 0.0

    def handle(self, payload: str) -> str:
        """The reply payload to one request payload."""
        try:
            request = protocol.parse_request(payload)
        except protocol.ProtocolError as exc:
            return f"ERR {exc}"
        with self._lock:
            self._update()
            if request.command == "PING":
                return f"PONG fake-bin-motor {protocol.PROTOCOL_VERSION}"
            if request.command == "POS?":
                reading = MotorReading(self._angle, self._velocity, bool(self._fault), self._fault)
                return protocol.position_reply(reading)
            if request.command == "STOP":
                self._target = self._angle
                return "OK"
            if request.command == "CLEAR":
                self._fault = ""
                return "OK"
            angle, velocity = request.args  # MOVE
            if self._fault:
                return f"ERR fault: {self._fault}"
            lo, hi = self.angle_range
            if not lo <= angle <= hi:
                return f"ERR angle {angle:.4f} outside [{lo}, {hi}]"
            if not velocity > 0:
                return f"ERR velocity must be > 0, got {velocity}"
            self._target, self._speed = angle, min(velocity, self.max_velocity)
            return "OK"

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 1024)
            except OSError:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                with self._lock:
                    silent = self._silent
                if silent:
                    continue  # read and dropped: a hung controller
                reply = self._reply_to(line)
                if reply is None:
                    continue
                if self.reply_delay:
                    time.sleep(self.reply_delay)
                try:
                    os.write(self._master, reply)
                except OSError:
                    return
            if len(buffer) > protocol.MAX_LINE:
                buffer = b""

    def _reply_to(self, line: bytes) -> bytes | None:
        try:
            payload, had_checksum = protocol.decode(line)
        except protocol.ProtocolError as exc:
            return protocol.encode(f"ERR {exc}".replace("*", " "), with_checksum=True)
        payload = payload.strip()
        if not payload:
            return None
        self.requests.append(payload)
        return protocol.encode(self.handle(payload), with_checksum=had_checksum)


def main(argv: list[str] | None = None) -> None:
    """Run a fake controller until `quit` on stdin (or EOF / Ctrl-C)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", help="also make this symlink to the pty device")
    parser.add_argument("--max-velocity", type=float, default=3.0, help="rad/s")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.max_velocity) and args.max_velocity > 0):
        parser.error("--max-velocity must be > 0")
    controller = FakeMotorController(max_velocity=args.max_velocity, link=args.link).start()
    print(f"PORT {controller.port}", flush=True)
    try:
        for line in sys.stdin:
            word, _, rest = line.strip().partition(" ")
            if word == "fault":
                controller.set_fault(rest.strip() or "fault")
            elif word == "clear":
                controller.clear_fault()
            elif word == "silent":
                controller.set_silent(True)
            elif word == "answer":
                controller.set_silent(False)
            elif word == "quit":
                break
            elif word:
                print(
                    f"unknown command {word!r} (fault MSG, clear, silent, answer, quit)",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            print(f"ACK {word}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        controller.close()


if __name__ == "__main__":
    main()
