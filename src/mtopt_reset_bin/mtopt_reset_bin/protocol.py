"""Line protocol of the bin motor controller (specification: ../README.md, "Serial protocol").

Every message is one ASCII line ending in "\\n" ("\\r\\n" accepted). With checksums on, a
line is `<payload>*HH`, HH = the XOR of the payload's bytes as two upper-case hex digits
(NMEA 0183 style). Angles in rad, velocities in rad/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtopt_reset_bin.motor import MotorReading

MAX_LINE = 256  # bytes; longer lines are protocol errors
PROTOCOL_VERSION = 1


class ProtocolError(ValueError):
    """A line that does not follow the protocol."""


def checksum(payload: str) -> str:
    """Two hex digits: XOR of the payload's bytes."""
    value = 0
    for byte in payload.encode("ascii"):
        value ^= byte
    return f"{value:02X}"


def encode(payload: str, with_checksum: bool = False) -> bytes:
    """One protocol line (bytes, newline-terminated)."""
    if "\n" in payload or "\r" in payload or "*" in payload:
        raise ProtocolError(f"payload may not contain newlines or '*': {payload!r}")
    line = f"{payload}*{checksum(payload)}" if with_checksum else payload
    data = (line + "\n").encode("ascii")
    if len(data) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    return data


def decode(line: bytes | str, require_checksum: bool = False) -> tuple[str, bool]:
    """Strip a received line: (payload, had a checksum). Raises ProtocolError if bad."""
    if isinstance(line, bytes):
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"non-ASCII line {line!r}") from exc
    line = line.rstrip("\r\n")
    if "*" in line:
        payload, _, received = line.rpartition("*")
        if received.upper() != checksum(payload):
            raise ProtocolError(f"bad checksum in {line!r} (expected {checksum(payload)})")
        return payload, True
    if require_checksum:
        raise ProtocolError(f"missing checksum in {line!r}")
    return line, False


# -- requests (host -> controller) ----------------------------------------------------------
def move_request(angle: float, velocity: float) -> str:
    """`MOVE <angle> <velocity>`."""
    return f"MOVE {angle:.6f} {velocity:.6f}"


@dataclass(frozen=True)
class Request:
    """A parsed request: command word and its numeric arguments."""

    command: str  # PING, MOVE, POS?, STOP, CLEAR
    args: tuple[float, ...] = ()


_ARITY = {"PING": 0, "MOVE": 2, "POS?": 0, "STOP": 0, "CLEAR": 0}


def parse_request(payload: str) -> Request:
    """Parse a request payload (controller side)."""
    words = payload.split()
    if not words:
        raise ProtocolError("empty request")
    command = words[0].upper()
    if command not in _ARITY:
        raise ProtocolError(f"unknown command {words[0]!r}")
    if len(words) - 1 != _ARITY[command]:
        raise ProtocolError(f"{command} takes {_ARITY[command]} arguments, got {len(words) - 1}")
    try:
        args = tuple(float(w) for w in words[1:])
    except ValueError as exc:
        raise ProtocolError(f"bad number in {payload!r}") from exc
    if not all(math.isfinite(a) for a in args):
        raise ProtocolError(f"non-finite number in {payload!r}")
    return Request(command, args)


# -- replies (controller -> host) -----------------------------------------------------------
def position_reply(reading: MotorReading) -> str:
    """`POS <angle> <velocity> <fault 0|1> [message]`."""
    text = f"POS {reading.angle:.6f} {reading.velocity:.6f} {int(reading.fault)}"
    message = " ".join(reading.message.replace("*", " ").split())
    return f"{text} {message}" if message else text


def parse_position_reply(payload: str) -> MotorReading:
    """Parse a `POS ...` reply."""
    words = payload.split(maxsplit=4)
    if len(words) < 4 or words[0] != "POS":
        raise ProtocolError(f"expected 'POS <angle> <vel> <fault> [msg]', got {payload!r}")
    try:
        angle, velocity = float(words[1]), float(words[2])
    except ValueError as exc:
        raise ProtocolError(f"bad number in {payload!r}") from exc
    if words[3] not in ("0", "1"):
        raise ProtocolError(f"fault flag must be 0 or 1 in {payload!r}")
    if not (math.isfinite(angle) and math.isfinite(velocity)):
        raise ProtocolError(f"non-finite number in {payload!r}")
    return MotorReading(angle, velocity, words[3] == "1", words[4] if len(words) > 4 else "")


def parse_ack(payload: str) -> str | None:
    """`OK` -> None; `ERR <message>` -> the message. Anything else: ProtocolError."""
    if payload == "OK":
        return None
    if payload == "ERR" or payload.startswith("ERR "):
        return payload[4:].strip() or "unspecified error"
    raise ProtocolError(f"expected OK or ERR, got {payload!r}")
