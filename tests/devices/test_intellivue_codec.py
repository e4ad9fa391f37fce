"""IntelliVue Data Export messages: the bytes match the published implementations, every message
round-trips, FLOAT-Type and AbsoluteTime decode as the Programming Guide defines them, and the
decoder is total (malformed input is a counted error, never an exception)."""

from __future__ import annotations

import math
import struct
from datetime import datetime

import pytest

from monitord.drivers import intellivue as iv
from monitord.drivers import intellivue_frame as ivf

# Published bytes, from part-cw/LNhealth modules/ivueparser/ivue-request.scm (BSD-3):
# the association request's session data and presentation header, and the release request.
LN_SESSION_DATA = bytes.fromhex("05 08 13 01 00 16 01 02 80 00 14 02 00 02")
LN_ASSOC_PRESENTATION_HEADER = bytes.fromhex(
    "31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01 A4 80 30 80 02 01 01 06 04 52 01 00 01 30 80 06 02 51 01 00"
    " 00 00 00 30 80 02 01 02 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01 30 80 06 0C 2A 86 48 CE 14 02 01 00 00 00"
    " 02 01 00 00 00 00 00 00 61 80 30 80 02 01 01 A0 80 60 80 A1 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 03 01 00"
    " 00 BE 80 28 80 06 0C 2A 86 48 CE 14 02 01 00 00 00 01 01 02 01 02 81")
LN_RELEASE_REQUEST = bytes.fromhex("09 18 C1 16 61 80 30 80 02 01 01 A0 80 62 80 80 01 00 00 00 00 00 00 00 00 00")
# LNhealth's "polltrends" request (invoke id 0, poll number 1, numerics, all attribute groups)
LN_POLL_NUMERICS = bytes.fromhex(
    "E1 00 00 02 00 01 00 1C 00 00 00 07 00 16 00 21 00 00 00 00 00 00 00 00 0C 16 00 08 00 01 00 01 00 06 00 00")


def test_association_request_is_the_published_one() -> None:
    # LNhealth's request: poll period 6 s (0xBB80 in 1/8 ms), MTU 1000/1000, extension options 0x88000000
    user = iv.UserInfo(min_poll_period=0xBB80, ext_options=0x88000000)
    msg = iv.encode_assoc_request(user)
    ui = (struct.pack(">IIIII", 0x80000000, 0x40000000, 0, 0x80000000, 0x20000000) + bytes(4)
          + bytes.fromhex("0001 002c 0001 0028 80000000 0000bb80 000003e8 000003e8 ffffffff 60000000"
                          " 0001 000c f001 0008 88000000 0000 0000"))
    assert len(ui) == 0x48  # MDSEUserInfoStd of 72 bytes
    presentation = LN_ASSOC_PRESENTATION_HEADER + bytes((len(ui),)) + ui + bytes(16)
    expected = bytes((0x0D, len(LN_SESSION_DATA) + 2 + len(presentation))) + LN_SESSION_DATA \
        + bytes((0xC1, len(presentation))) + presentation
    assert msg == expected
    assert msg[:2] == b"\x0d\xec" and msg[16:18] == b"\xc1\xdc"  # session and presentation lengths 236, 220
    assert iv.decode_message(msg) == iv.AssocRequest(user)


def test_release_request_and_poll_request_are_the_published_ones() -> None:
    assert iv.encode_release_request() == LN_RELEASE_REQUEST
    assert iv.encode_poll_request(0, 1, iv.NOM_MOC_VMO_METRIC_NU, extended=False) == LN_POLL_NUMERICS


def test_mds_create_result_has_the_published_layout() -> None:
    # LNhealth builds it as E1 00 00 02 | 00 02 00 14 | invoke | 00 01 00 0E | class ctx handle | time | 0D 06 00 00
    msg = iv.encode_mds_create_result(0x1234, iv.ObjectId(33, 0, 0), current_time=0x00484700)
    assert msg == bytes.fromhex("E1000002 00020014 1234 0001000E 0021 0000 0000 00484700 0D06 0000")


def test_extended_poll_request_layout() -> None:
    msg = iv.encode_poll_request(3, 9, iv.NOM_MOC_VMO_AL_MON)
    assert msg == bytes.fromhex("E1000002 00010020 0003 0007 001A 0021 0000 0000 00000000 F13B 000C"
                                " 0009 0001 0036 0000 0000 0000")
    assert iv.decode_message(msg) == iv.PollRequest(3, 9, iv.NOM_MOC_VMO_AL_MON)


@pytest.mark.parametrize(("raw", "value"), [
    (0x00000048, 72.0),
    (0xFF000170, 36.8),  # exponent -1, mantissa 368
    (0xFE0026AC, 99.0),  # exponent -2, mantissa 9900
    (0x01000005, 50.0),  # exponent +1
    (0xFFFFFFF6, -1.0),  # exponent -1, mantissa -10
    (0x00FFFFFF, -1.0),
])
def test_float_type(raw: int, value: float) -> None:
    assert iv.decode_float(raw) == value


@pytest.mark.parametrize(("mantissa", "name", "value"), [
    (0x7FFFFF, "NaN", math.nan), (0x800000, "NRes", math.nan), (0x7FFFFE, "+INF", math.inf),
    (0x800002, "-INF", -math.inf)])
def test_float_special_values(mantissa: int, name: str, value: float) -> None:
    for exponent in (0x00, 0xFE, 0x05):  # whatever the exponent
        raw = exponent << 24 | mantissa
        assert iv.float_special(raw) == name
        got = iv.decode_float(raw)
        assert (math.isnan(got) and math.isnan(value)) or got == value


@pytest.mark.parametrize("value", [0.0, 72.0, 36.8, 97.5, 38.25, -12.5, 4.96, 8388.0, 1234567.0, 0.001])
def test_float_round_trip(value: float) -> None:
    assert iv.decode_float(iv.encode_float(value)) == pytest.approx(value, rel=1e-9)


def test_float_encodes_specials_and_refuses_what_does_not_fit() -> None:
    assert iv.encode_float(math.nan) == iv.FLOAT_NAN
    assert iv.encode_float(math.inf) == iv.FLOAT_POS_INF and iv.encode_float(-math.inf) == iv.FLOAT_NEG_INF
    assert iv.float_special(iv.encode_float(1e130)) is None  # shifted into the exponent
    with pytest.raises(ValueError):
        iv.encode_float(1e200)


def test_absolute_time_is_bcd_and_unset_or_bad_dates_are_none() -> None:
    t = datetime(2026, 3, 14, 9, 26, 53)
    raw = iv.encode_abs_time(t)
    assert raw == bytes.fromhex("20 26 03 14 09 26 53 00")
    assert iv.decode_abs_time(raw) == t
    assert iv.decode_abs_time(b"\xff" * 8) is None
    assert iv.decode_abs_time(bytes.fromhex("20 26 13 40 09 26 53 00")) is None  # month 13
    assert iv.decode_abs_time(bytes.fromhex("20 2A 03 14 09 26 53 00")) is None  # not BCD


def _poll_result(**kw: object) -> bytes:
    obs = [iv.Observation(0, 0x101, {iv.NOM_ATTR_NU_VAL_OBS: iv.encode_nu_obs(iv.NOM_ECG_CARD_BEAT_RATE, 72,
                                                                               iv.NOM_DIM_BEAT_PER_MIN)}),
           iv.Observation(1, 0x104, {iv.NOM_ATTR_NU_CMPD_VAL_OBS: iv.encode_nu_cmpd([
               (iv.NOM_PRESS_BLD_NONINV_SYS, 120, iv.NOM_DIM_MMHG, 0),
               (iv.NOM_PRESS_BLD_NONINV_DIA, 80, iv.NOM_DIM_MMHG, 0),
               (iv.NOM_PRESS_BLD_NONINV_MEAN, 93, iv.NOM_DIM_MMHG, iv.MS_EARLY_INDICATION)]),
               iv.NOM_ATTR_TIME_STAMP_ABS: iv.encode_abs_time(datetime(2026, 1, 2, 3, 4, 5))})]
    return iv.encode_poll_result(7, 42, iv.NOM_MOC_VMO_METRIC_NU, obs, rel_time=123456,
                                 abs_time=datetime(2026, 1, 2, 3, 4, 6), **kw)  # type: ignore[arg-type]


def test_poll_result_round_trip_with_contexts_compound_and_linked() -> None:
    for kw in ({}, {"linked": (iv.RORLS_FIRST, 1)}, {"extended": False}):
        res = iv.decode_message(_poll_result(**kw))
        assert isinstance(res, iv.PollResult)
        assert (res.invoke_id, res.poll_number, res.rel_time) == (7, 42, 123456)
        assert res.abs_time == datetime(2026, 1, 2, 3, 4, 6)
        assert res.linked == kw.get("linked") and res.extended == kw.get("extended", True)
        assert [(o.context_id, o.handle) for o in res.observations] == [(0, 0x101), (1, 0x104)]
        hr = iv.decode_nu_obs(res.observations[0].attributes[iv.NOM_ATTR_NU_VAL_OBS])
        assert (hr.physio_id, hr.unit, hr.value, hr.state) == (iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_DIM_BEAT_PER_MIN,
                                                               72.0, 0)
        nibp = iv.decode_nu_cmpd(res.observations[1].attributes[iv.NOM_ATTR_NU_CMPD_VAL_OBS])
        assert [(n.physio_id, n.value) for n in nibp] == [(0x4A05, 120.0), (0x4A06, 80.0), (0x4A07, 93.0)]
        assert nibp[2].state == iv.MS_EARLY_INDICATION


def test_every_message_round_trips() -> None:
    user = iv.UserInfo(system_type=iv.SYST_SERVER, min_poll_period=8000, ext_options=None)
    t = datetime(2026, 5, 6, 7, 8, 9)
    cases: list[tuple[bytes, iv.Message]] = [
        (iv.encode_assoc_response(user), iv.AssocResponse(user)),
        (iv.encode_refuse(), iv.AssocRefuse()),
        (iv.encode_release_request(), iv.ReleaseRequest()),
        (iv.encode_release_response(), iv.ReleaseResponse()),
        (iv.encode_abort(), iv.Abort()),
        (iv.encode_mds_create_result(5), iv.MdsCreateResult(5, iv.MDS)),
        (iv.encode_error(5, iv.NO_SUCH_ACTION), iv.RemoteError(5, iv.NO_SUCH_ACTION)),
    ]
    for raw, msg in cases:
        assert iv.decode_message(raw) == msg
        assert iv.MessageDecoder().feed(iv.frame(raw)) == [msg]  # and through the frame layer
    ev = iv.decode_message(iv.encode_mds_create_event(9, 4000, [(iv.NOM_ATTR_TIME_ABS, iv.encode_abs_time(t))]))
    assert isinstance(ev, iv.MdsCreateEvent) and ev.invoke_id == 9 and ev.event_time == 4000 and ev.abs_time == t
    entries = [iv.AlarmEntry(iv.NOM_AWAY_RESP_RATE, iv.NOM_EVT_APNEA, iv.HI_PRI_P_AL, 0x0008, "APNEA"), iv.AlarmEntry(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_EVT_LEAD_DISCONN, 2, 0)]
    assert iv.decode_alarm_list(iv.encode_alarm_list(entries)) == entries


@pytest.mark.parametrize("raw", [
    iv.encode_mds_create_event(1, 2, [(iv.NOM_ATTR_TIME_ABS, bytes(8))]),
    iv.encode_poll_request(1, 2, 6),
    _poll_result(),
    iv.encode_assoc_request(),
])
def test_every_truncation_and_length_lie_is_a_message_error(raw: bytes) -> None:
    for n in range(len(raw)):
        with pytest.raises(iv.MessageError):
            iv.decode_message(raw[:n])
    if raw[0] == iv.DATA_EXPORT:
        lie = bytearray(raw)
        lie[7] ^= 0x01  # the ROapdus length no longer matches
        with pytest.raises(iv.MessageError):
            iv.decode_message(bytes(lie))


def test_stream_decoder_counts_bad_messages_in_good_frames_and_never_raises() -> None:
    dec = iv.MessageDecoder()
    good = iv.frame(iv.encode_release_request())
    out = dec.feed(ivf.encode_frame(b"\xe1\x00\x00\x02\x00\x01") + ivf.encode_frame(b"\x42junk") + good
                   + b"\x00\xff" + ivf.encode_frame(b"", bad_fcs=True) + good)
    faults = [o for o in out if isinstance(o, (iv.MessageFault, ivf.FrameError))]
    assert [o for o in out if isinstance(o, iv.ReleaseRequest)] == [iv.ReleaseRequest()] * 2
    assert {f.kind for f in faults} >= {"short", "unknown", "fcs"}
    assert dec.messages == 2 and dec.error_count == len(faults)
