"""NE-500 / NE-1000 wire format: command encoding, reply parsing (unit and property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.drivers import ne500
from monitord.drivers.base import ProtocolError
from monitord.drivers.ne500 import Action, Alarm, CommandError, Prompt, Query, Reply

STX, ETX = b"\x02", b"\x03"


def test_manual_safe_mode_example_crc() -> None:
    # Manual: to leave safe mode send (0x2) (0x8) SAF0 (0x55) (0x43) (0x3)
    assert ne500.crc16(b"SAF0") == 0x5543
    assert ne500._safe_packet(b"SAF0") == b"\x02\x08SAF0\x55\x43\x03"


def test_command_encoding() -> None:
    assert ne500.encode_command(0, Query.DISPENSED) == b"0DIS\r"
    assert ne500.encode_command(12, Query.STATUS) == b"12\r"
    assert ne500.encode_command(3, Action.STOP) == b"3STP\r"
    safe = ne500.encode_command(1, Query.RATE, safe=True)
    assert safe[:2] == b"\x02\x08" and safe[2:6] == b"1RAT" and safe[-1:] == ETX
    with pytest.raises(ValueError):
        ne500.encode_command(100, Query.RATE)


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        (b"\x0200S\x03", Reply(0, Prompt.STOPPED, None)),
        (b"\x0200I5.000MH\x03", Reply(0, Prompt.INFUSING, None, "5.000MH")),
        (b"\x0207W\x03", Reply(7, Prompt.WITHDRAWING, None)),
        (b"\x0200A?S\x03", Reply(0, None, Alarm.STALLED)),
        (b"\x0200A?R\x03", Reply(0, None, Alarm.RESET)),
        (b"\x0200S?\x03", Reply(0, Prompt.STOPPED, None, "", CommandError.NOT_RECOGNISED)),
        (b"\x0200S?OOR\x03", Reply(0, Prompt.STOPPED, None, "", CommandError.OUT_OF_RANGE)),
        (b"\x0200P?NA\x03", Reply(0, Prompt.PAUSED, None, "", CommandError.NOT_APPLICABLE)),
        (b"\x0200S?COM\x03", Reply(0, Prompt.STOPPED, None, "", CommandError.BAD_PACKET)),
        (b"\x0200T?IGN\x03", Reply(0, Prompt.PAUSE_PHASE, None, "", CommandError.IGNORED)),
        (b"\x0299XNE500V3.928\x03", Reply(99, Prompt.PURGING, None, "NE500V3.928")),
    ],
)
def test_reply_parsing(frame: bytes, reply: Reply) -> None:
    assert ne500.decode_reply(frame) == reply


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x02\x03",
        b"00S\x03",  # no STX
        b"\x0200S",  # no ETX
        b"\x02S\x03",  # no address
        b"\x02000S\x03",  # three-digit address
        b"\x0200Q\x03",  # unknown prompt
        b"\x0200A?Z\x03",  # unknown alarm
        b"\x0200A?S1.0\x03",  # data after an alarm
        b"\x0200S?XYZ\x03",  # unknown error
        b"\x0200S\x00\x03",  # control byte in data
        b"\x0200S\xff\x03",
    ],
)
def test_bad_replies_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        ne500.decode_reply(frame)


def test_safe_mode_reply_checks_length_and_crc() -> None:
    good = ne500.encode_reply(0, Prompt.INFUSING, "1.000MH", safe=True)
    assert ne500.decode_reply(good, safe=True) == Reply(0, Prompt.INFUSING, None, "1.000MH")
    with pytest.raises(ProtocolError, match="CRC"):
        ne500.decode_reply(good[:-2] + bytes([good[-2] ^ 1]) + ETX, safe=True)
    with pytest.raises(ProtocolError, match="length"):
        ne500.decode_reply(good[:1] + bytes([good[1] + 1]) + good[2:], safe=True)


def test_value_parsers_convert_units() -> None:
    assert ne500.parse_rate("5.000MH") == 5.0
    assert ne500.parse_rate("1.5MM") == 90.0
    assert ne500.parse_rate("500.0UH") == pytest.approx(0.5)
    assert ne500.parse_rate("100UM") == pytest.approx(6.0)
    assert ne500.parse_volume("20.00ML") == 20.0
    assert ne500.parse_volume("250UL") == 0.25
    assert ne500.parse_dispensed("I1.234W0.000ML") == (1.234, 0.0)
    assert ne500.parse_dispensed("I500.0W10.00UL") == (0.5, 0.01)
    assert ne500.parse_diameter("26.59") == 26.59
    for bad in ("", "5.000", "5.000XH", "-1MH", "1e3MH", "..MH"):
        with pytest.raises(ProtocolError):
            ne500.parse_rate(bad)
    with pytest.raises(ProtocolError):
        ne500.parse_dispensed("W1.0I2.0ML")


def test_split_frames_separates_garbage_and_keeps_remainder() -> None:
    frames, rest = ne500.split_frames(b"xx\x0200S\x03\x0200I1.0MH\x03\x0200")
    assert frames == [b"xx", b"\x0200S\x03", b"\x0200I1.0MH\x03"]
    assert rest == b"\x0200"
    frames, rest = ne500.split_frames(b"\x0200S\x0200I\x03")  # a new STX before ETX
    assert frames == [b"\x0200S", b"\x0200I\x03"] and rest == b""


def test_device_side_command_decoding() -> None:
    assert ne500.decode_command(b"0 rat 5.5 mh") == ne500.CommandFrame(0, "RAT", "5.5MH")
    assert ne500.decode_command(b"DIS") == ne500.CommandFrame(None, "DIS", "")
    assert ne500.decode_command(b"12") == ne500.CommandFrame(12, "", "")
    packet = ne500._safe_packet(b"3STP")
    assert ne500.decode_command(packet, safe=True) == ne500.CommandFrame(3, "STP", "")
    with pytest.raises(ProtocolError):
        ne500.decode_command(packet[:-2] + b"\x00\x03", safe=True)


def test_format_float_has_at_most_four_digits() -> None:
    assert ne500.format_float(5) == "5.000"
    assert ne500.format_float(12.3456) == "12.35"
    assert ne500.format_float(1234.5) == "1234"
    assert ne500.format_float(0.0123) == "0.012"


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_decode_reply_is_total(data: bytes, safe: bool) -> None:
    try:
        reply = ne500.decode_reply(data, safe=safe)
    except ProtocolError:
        return
    assert 0 <= reply.address <= 99
    assert (reply.prompt is None) != (reply.alarm is None)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=120), st.booleans())
def test_split_frames_loses_no_byte(data: bytes, safe: bool) -> None:
    frames, rest = ne500.split_frames(data, safe=safe)
    assert b"".join(frames) + rest == data


@settings(max_examples=1000, deadline=None)
@given(
    address=st.integers(0, 99),
    status=st.one_of(st.sampled_from(list(Prompt)), st.sampled_from(list(Alarm))),
    data=st.text(alphabet="0123456789.IWMHULN", max_size=20),
    safe=st.booleans(),
)
def test_encode_decode_round_trip(address: int, status: Prompt | Alarm, data: str, safe: bool) -> None:
    frame = ne500.encode_reply(address, status, data, safe=safe)
    reply = ne500.decode_reply(frame, safe=safe)
    assert reply.address == address
    if isinstance(status, Prompt):
        assert reply.prompt is status and reply.data == data
    else:
        assert reply.alarm is status and reply.data == ""
    frames, rest = ne500.split_frames(frame + frame, safe=safe)
    assert frames == [frame, frame] and rest == b""


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=30))
def test_value_parsers_are_total(text: str) -> None:
    for parse in (ne500.parse_rate, ne500.parse_volume, ne500.parse_dispensed, ne500.parse_diameter):
        try:
            value = parse(text)
        except ProtocolError:
            continue
        assert value is not None


@settings(max_examples=500, deadline=None)
@given(st.floats(0, 9999, allow_nan=False))
def test_formatted_rates_parse_back(value: float) -> None:
    text = ne500.format_float(value)
    assert ne500.parse_rate(text + "MH") == pytest.approx(value, rel=1e-3, abs=1e-3)
