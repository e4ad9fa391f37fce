"""The Masimo serial-output line: parsed as the published examples show it, every bad line
counted and never fatal, and what a line means for monitord (values, quality, device alarms)."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitord.drivers import masimo as mx
from monitord.drivers.oximeter_masimo import alarms_of, reading_of
from monitord.readings import DeviceAlarmCode, Quality, Vital

# Lines as published (docs/devices.md, "Pulse oximeter": sources).
RAD8 = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800"
RAD8_NO_SENSOR = b"03/19/16 13:37:12 SN=0000093112 SPO2=---% BPM=---% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000001"
RADICAL7 = (b"12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% DESAT=01 "
            b"PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820")
RADICAL5 = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800"
RAD7_COLOUR = (b"03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- "
               b"SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000")


def test_published_lines_parse() -> None:
    rec = mx.parse_line(RAD8)
    assert rec == mx.Record(datetime(2016, 2, 22, 22, 47, 45), 98, 97, 3.6, 0, mx.EXC_SET, "0000056661")
    off = mx.parse_line(RAD8_NO_SENSOR)
    assert isinstance(off, mx.Record) and (off.spo2, off.pulse, off.pi, off.exceptions) == (None, None, None, 1)
    r7 = mx.parse_line(RADICAL7)
    assert isinstance(r7, mx.Record) and (r7.spo2, r7.pulse, r7.pi) == (98, 240, 20.0)
    assert r7.exceptions == mx.EXC_SET | mx.EXC_SENSOR_OFF
    r5 = mx.parse_line(RADICAL5)
    assert isinstance(r5, mx.Record) and (r5.serial, r5.alarm, r5.exceptions) == (None, mx.ALARM_SILENCED, 0x800)
    colour = mx.parse_line(RAD7_COLOUR)
    assert isinstance(colour, mx.Record) and (colour.pi, colour.serial, colour.exceptions) == (0.55, None, 0xC00)


@pytest.mark.parametrize("model", mx.MODELS)
def test_encoded_lines_round_trip(model: str) -> None:
    rec = mx.Record(datetime(2026, 3, 4, 5, 6, 7), 91, 58, None, 0x40, mx.EXC_LOW_PERFUSION | mx.EXC_SET,
                    None if model == "radical5" else "0000000042")
    line = mx.encode_line(rec, model)
    assert line.endswith(b"\r\n")
    assert mx.parse_line(line.rstrip()) == rec


@pytest.mark.parametrize(("line", "kind"), [
    (b"", "time"),
    (b"SPO2=098% BPM=097 ALARM=0000 EXC=000800", "time"),
    (b"13/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=000800", "time"),  # month 13
    (b"02/30/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=000800", "time"),  # 30 February
    (b"02/22/16 25:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=000800", "time"),
    (b"02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000", "missing"),
    (b"02/22/16 22:47:45 BPM=097 ALARM=0000 EXC=000800", "missing"),
    (b"02/22/16 22:47:45 SPO2=098% SPO2=097% BPM=097 ALARM=0000 EXC=000800", "duplicate"),
    (b"02/22/16 22:47:45 SPO2=98.5% BPM=097 ALARM=0000 EXC=000800", "value"),
    (b"02/22/16 22:47:45 SPO2=1000% BPM=097 ALARM=0000 EXC=000800", "value"),
    (b"02/22/16 22:47:45 SPO2=101% BPM=097 ALARM=0000 EXC=000800", "value"),
    (b"02/22/16 22:47:45 SPO2=098% BPM=097 PI=3% ALARM=0000 EXC=000800", "value"),
    (b"02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=00G0 EXC=000800", "value"),
    (b"02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=0000 EXC=123456789", "value"),
    (b"02/22/16 22:47:45 SPO2=098% junk BPM=097 ALARM=0000 EXC=000800", "field"),
    (b"02/22/16 22:47:45 spo2=098% BPM=097 ALARM=0000 EXC=000800", "field"),
    (b"02/22/16 22:47:45 SPO2=098% BPM=0\xe97 ALARM=0000 EXC=000800", "encoding"),
])
def test_bad_lines_say_why(line: bytes, kind: str) -> None:
    item = mx.parse_line(line)
    assert isinstance(item, mx.LineError) and item.kind == kind, item


def test_a_value_after_a_space_belongs_to_its_field() -> None:
    rec = mx.parse_line(b"02/22/16 22:47:45 PIDELTA= 02 SPO2=098% BPM=097 ALARM=0000 EXC=000800")
    assert isinstance(rec, mx.Record) and rec.spo2 == 98


def test_stream_cut_anywhere_gives_the_same_records() -> None:
    lines = [mx.encode_line(mx.Record(datetime(2026, 1, 1, 0, 0, s), 90 + s, 60 + s, 2.5, 0, 0x800)) for s in range(5)]
    stream = b"".join(lines)
    for cut in range(1, len(stream)):
        dec = mx.LineDecoder()
        dec._synced = True  # as if mid-stream
        out = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert [r.spo2 for r in out if isinstance(r, mx.Record)] == [90, 91, 92, 93, 94]
        assert dec.error_count == 0


def test_noise_before_a_line_is_counted_and_the_line_still_read() -> None:
    dec = mx.LineDecoder()
    good = mx.encode_line(mx.Record(datetime(2026, 1, 1), 97, 70, None, 0, 0))
    out = dec.feed(good + b"\x13\x88garbage" + good[:30])  # a line cut off, then
    out += dec.feed(good)                                 # the next one runs into it
    assert [type(x).__name__ for x in out] == ["Record", "LineError", "Record"]
    assert dec.errors == {"unframed": 1}


def test_first_fragment_after_connecting_is_not_an_error() -> None:
    dec = mx.LineDecoder()
    good = mx.encode_line(mx.Record(datetime(2026, 1, 1), 97, 70, None, 0, 0))
    out = dec.feed(good[40:] + good)
    assert len(out) == 1 and isinstance(out[0], mx.Record)
    assert dec.error_count == 0
    dec.reset()
    assert dec.feed(b"ANYTHING\r\n") == [] and dec.error_count == 0
    assert dec.feed(b"ANYTHING\r\n")[0].kind == "time"  # type: ignore[union-attr]


def test_endless_bytes_without_a_line_end_are_bounded_and_counted_once() -> None:
    dec = mx.LineDecoder()
    dec.feed(b"\r\n")
    for _ in range(100):
        dec.feed(b"x" * 1000)
        assert len(dec._buf) <= dec.max_line
    assert dec.errors == {"overflow": 1}
    good = mx.encode_line(mx.Record(datetime(2026, 1, 1), 97, 70, None, 0, 0))
    out = dec.feed(good)
    assert isinstance(out[-1], mx.Record)  # the first line after the flood is read


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_decoder_is_total_on_any_bytes(data: bytes, chunk: int) -> None:
    dec = mx.LineDecoder()
    for i in range(0, len(data), chunk):
        for item in dec.feed(data[i : i + chunk]):
            assert isinstance(item, mx.Record | mx.LineError)
    assert len(dec._buf) <= dec.max_line


@given(st.lists(st.sampled_from([RAD8, RADICAL7, RADICAL5, RAD7_COLOUR, RAD8_NO_SENSOR, b"", b"\x00\xff",
                                 b"=", b"SPO2=", b" ", b"02/22/16 22:47:45"]), max_size=30))
def test_spliced_fragments_never_raise(parts: list[bytes]) -> None:
    item = mx.parse_line(b" ".join(parts))
    assert isinstance(item, mx.Record | mx.LineError)


# -- what a line means ------------------------------------------------------------------------


def rec(spo2: int | None = 97, pulse: int | None = 72, exc: int = mx.EXC_SET, alarm: int = 0) -> mx.Record:
    return mx.Record(datetime(2026, 1, 1), spo2, pulse, 3.0, alarm, exc)


def test_clean_values_are_valid() -> None:
    r = reading_of("ox", rec())
    assert r.values == {Vital.SPO2: 97.0, Vital.PULSE: 72.0} and r.quality is Quality.VALID
    assert r.device_time is None  # the oximeter's clock has no time zone
    assert alarms_of(rec()) == (frozenset(), "")


@pytest.mark.parametrize("bit", [mx.EXC_NO_SENSOR, mx.EXC_SENSOR_OFF, mx.EXC_NO_CABLE])
def test_a_sensor_off_or_absent_withholds_the_values_and_is_probe_off(bit: int) -> None:
    r = reading_of("ox", rec(exc=bit | mx.EXC_SET))  # numbers on the line are not a measurement
    assert r.values == {Vital.SPO2: None, Vital.PULSE: None} and r.quality is Quality.INVALID
    codes, detail = alarms_of(rec(exc=bit))
    assert codes == {DeviceAlarmCode.PROBE_OFF} and detail == mx.EXC_NAMES[bit]


@pytest.mark.parametrize("bit", [mx.EXC_DEFECTIVE_SENSOR, mx.EXC_UNRECOGNIZED_SENSOR, mx.EXC_INCOMPATIBLE_SENSOR,
                                 mx.EXC_DEFECTIVE_CABLE, mx.EXC_SENSOR_EXPIRED])
def test_an_unusable_sensor_or_cable_is_sensor_off(bit: int) -> None:
    assert reading_of("ox", rec(exc=bit)).quality is Quality.INVALID
    codes, detail = alarms_of(rec(exc=bit))
    assert codes == {DeviceAlarmCode.SENSOR_OFF} and detail == mx.EXC_NAMES[bit]


@pytest.mark.parametrize("bit", [mx.EXC_LOW_PERFUSION, mx.EXC_INTERFERENCE, mx.EXC_AMBIENT_LIGHT,
                                 mx.EXC_LOW_SIGNAL_IQ, mx.EXC_PULSE_SEARCH])
def test_doubtful_signal_gives_questionable_values_and_no_alarm(bit: int) -> None:
    r = reading_of("ox", rec(exc=bit | mx.EXC_SET))
    assert r.values[Vital.SPO2] == 97.0 and r.quality is Quality.QUESTIONABLE
    assert alarms_of(rec(exc=bit))[0] == frozenset()


def test_zero_saturation_and_zero_rate_are_no_measurement() -> None:
    r = reading_of("ox", rec(spo2=0, pulse=0))
    assert r.values == {Vital.SPO2: None, Vital.PULSE: None} and r.quality is Quality.INVALID
    assert reading_of("ox", rec(spo2=85, pulse=0)).values[Vital.PULSE] == 0.0  # one zero is a value


def test_low_battery_is_a_device_alarm_and_limit_alarms_are_not() -> None:
    assert alarms_of(rec(alarm=mx.ALARM_LOW_BATTERY))[0] == {DeviceAlarmCode.LOW_BATTERY}
    own = mx.ALARM_SPO2_LOW | mx.ALARM_PR_HIGH | mx.ALARM_ACTIVE
    assert alarms_of(rec(alarm=own))[0] == frozenset()
