"""`SerialBinMotor`: a hinge motor controller on a serial line (protocol in ../README.md)."""

from __future__ import annotations

import contextlib
import threading
import time

import serial

from mtopt_reset_bin import protocol
from mtopt_reset_bin.motor import BinMotor, MotorFault, MotorReading, MotorTimeout, check_command


class SerialBinMotor(BinMotor):
    """Talks to the motor controller with one request/reply at a time.

    Args:
        port: device path (e.g. /dev/ttyUSB0) or a pyserial URL (e.g. socket://host:port).
        baudrate: line speed (ignored by pseudo-terminals and sockets).
        request_timeout: longest wait for a reply [s]; no reply -> MotorTimeout.
        use_checksum: send and require `*HH` checksums on every line.

    The port is opened lazily and reopened after an I/O error, so a controller that was
    unplugged or restarted is picked up again by the next request.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        request_timeout: float = 0.2,
        use_checksum: bool = False,
    ):
        if not port:
            raise ValueError("serial port must be a non-empty path or URL")
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0, got {request_timeout}")
        self.port = port
        self.baudrate = baudrate
        self.request_timeout = request_timeout
        self.use_checksum = use_checksum
        self._serial: serial.SerialBase | None = None
        self._lock = threading.Lock()

    # -- BinMotor --------------------------------------------------------------------------
    def command(self, angle: float, velocity: float) -> None:
        check_command(angle, velocity)
        self._acknowledged(protocol.move_request(angle, velocity))

    def read(self) -> MotorReading:
        reply = self._request("POS?", "POS")
        try:
            return protocol.parse_position_reply(reply)
        except protocol.ProtocolError as exc:
            raise MotorTimeout(f"bad reply from {self.port}: {exc}") from exc

    def clear_fault(self) -> None:
        self._acknowledged("CLEAR")

    def stop(self) -> None:
        """Hold the current angle."""
        self._acknowledged("STOP")

    def ping(self) -> str:
        """`PONG ...` identification line of the controller."""
        return self._request("PING", "PONG")

    def close(self) -> None:
        with self._lock:
            self._close()

    # -- plumbing --------------------------------------------------------------------------
    def _acknowledged(self, payload: str) -> None:
        """Send a request answered by OK / ERR; ERR raises MotorFault with its message."""
        error = protocol.parse_ack(self._request(payload, "ACK"))
        if error is not None:
            raise MotorFault(error)

    def _open(self) -> serial.SerialBase:
        if self._serial is None:
            try:
                self._serial = serial.serial_for_url(
                    self.port, baudrate=self.baudrate, timeout=self.request_timeout
                )
            except (serial.SerialException, OSError) as exc:
                raise MotorTimeout(f"cannot open {self.port}: {exc}") from exc
        return self._serial

    def _close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    def _request(self, payload: str, expect: str) -> str:
        """Send one request; return the reply payload of the expected kind.

        `expect` is "ACK" (OK/ERR), "POS" or "PONG". Replies of another kind (late answers to
        an earlier, timed-out request) are skipped until the deadline.
        """
        with self._lock:
            port = self._open()
            deadline = time.monotonic() + self.request_timeout
            try:
                port.reset_input_buffer()  # drop late replies to earlier requests
                port.write(protocol.encode(payload, self.use_checksum))
                port.flush()
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    port.timeout = remaining
                    line = port.read_until(b"\n", protocol.MAX_LINE)
                    if not line.endswith(b"\n"):
                        break  # timed out mid-line or with nothing
                    try:
                        reply, _ = protocol.decode(line, require_checksum=self.use_checksum)
                    except protocol.ProtocolError:
                        continue  # corrupted line: wait for a good one until the deadline
                    if _is_kind(reply, expect):
                        return reply
                    if expect != "ACK" and _is_kind(reply, "ACK") and reply != "OK":
                        # The controller rejected this request (e.g. a bad checksum).
                        raise MotorTimeout(f"{self.port} answered {payload!r} with {reply!r}")
            except (serial.SerialException, OSError) as exc:
                self._close()
                raise MotorTimeout(f"{self.port}: {exc}") from exc
        raise MotorTimeout(
            f"no reply to {payload.split()[0]} from {self.port} in {self.request_timeout:.2f} s"
        )


def _is_kind(reply: str, expect: str) -> bool:
    if expect == "ACK":
        return reply == "OK" or reply == "ERR" or reply.startswith("ERR ")
    return reply == expect or reply.startswith(expect + " ")
