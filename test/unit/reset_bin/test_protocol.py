"""The bin motor controller's line protocol (README.md, "Serial protocol")."""

from pathlib import Path

import pytest

from mtopt_reset_bin import protocol
from mtopt_reset_bin.motor import MotorReading


def test_checksum_is_the_xor_of_the_payload_bytes():
    # 'P' 0x50 ^ 'O' 0x4F ^ 'S' 0x53 ^ '?' 0x3F = 0x73
    assert protocol.checksum("POS?") == "73"
    assert protocol.checksum("") == "00"


def test_encode_decode_round_trip():
    assert protocol.encode("POS?") == b"POS?\n"
    assert protocol.encode("POS?", with_checksum=True) == b"POS?*73\n"
    assert protocol.decode(b"POS?*73\n") == ("POS?", True)
    assert protocol.decode(b"POS?*73\r\n") == ("POS?", True)
    assert protocol.decode("OK\n") == ("OK", False)


def test_decode_rejects_bad_lines():
    with pytest.raises(protocol.ProtocolError, match="bad checksum"):
        protocol.decode(b"POS?*74\n")
    with pytest.raises(protocol.ProtocolError, match="missing checksum"):
        protocol.decode(b"OK\n", require_checksum=True)
    with pytest.raises(protocol.ProtocolError, match="non-ASCII"):
        protocol.decode(b"\xff\xfe\n")
    with pytest.raises(protocol.ProtocolError, match="newlines"):
        protocol.encode("OK\nOK")
    with pytest.raises(protocol.ProtocolError, match="longer"):
        protocol.encode("X" * 300)


def test_parse_requests():
    assert protocol.parse_request("MOVE 1.5 2") == protocol.Request("MOVE", (1.5, 2.0))
    assert protocol.parse_request("pos?") == protocol.Request("POS?")
    assert protocol.parse_request(protocol.move_request(0.25, 1.0)).args == (0.25, 1.0)
    for bad, match in [
        ("", "empty"),
        ("JUMP", "unknown"),
        ("MOVE 1", "takes 2"),
        ("MOVE a b", "bad number"),
        ("MOVE nan 1", "non-finite"),
        ("POS? 3", "takes 0"),
    ]:
        with pytest.raises(protocol.ProtocolError, match=match):
            protocol.parse_request(bad)


def test_position_reply_round_trip():
    reading = MotorReading(1.25, -0.5, False, "")
    assert protocol.position_reply(reading) == "POS 1.250000 -0.500000 0"
    assert protocol.parse_position_reply(protocol.position_reply(reading)) == reading
    faulted = MotorReading(2.0, 0.0, True, "over current on  hinge*motor")
    parsed = protocol.parse_position_reply(protocol.position_reply(faulted))
    assert parsed.fault and parsed.message == "over current on hinge motor"
    for bad in ["POS 1 2", "POS x 2 0", "POS 1 2 7", "POS inf 0 0", "OK"]:
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_position_reply(bad)


def test_parse_ack():
    assert protocol.parse_ack("OK") is None
    assert protocol.parse_ack("ERR fault: stuck") == "fault: stuck"
    assert protocol.parse_ack("ERR") == "unspecified error"
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_ack("POS 1 2 0")


def test_readme_example_lines_are_valid():
    readme = (Path(__file__).resolve().parents[3] / "src/mtopt_reset_bin/README.md").read_text()
    session = readme.split("Example session")[1].split("```")[1]
    lines = [line[2:] for line in session.strip().splitlines()]
    assert lines[0] == protocol.move_request(2.8, 2.5)
    for line in lines:
        payload, _ = protocol.decode(line)  # checksums, where present, are right
        if payload.startswith("POS "):
            protocol.parse_position_reply(payload)
    assert protocol.decode(lines[-1])[1]
