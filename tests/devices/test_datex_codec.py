"""The S/5 Computer Interface codec: framing, the request record, displayed values, totality."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.drivers import datex_s5 as dx


def frames_in(data: bytes, chunk: int = 0) -> tuple[list[dx.Decoded], dx.StreamDecoder]:
    dec = dx.StreamDecoder()
    out: list[dx.Decoded] = []
    if chunk:
        for i in range(0, len(data), chunk):
            out += dec.feed(data[i : i + chunk])
    else:
        out = dec.feed(data)
    return out, dec


TYPICAL = dx.DisplayedValues(
    time=1_767_254_400,
    record_time=1_767_254_401,
    ecg=dx.GroupHeader(dx.ST_EXISTS | dx.ST_ACTIVE, 2),
    hr=72.0,
    imp_rr=15.0,
    nibp=dx.GroupHeader(dx.ST_EXISTS | dx.ST_ACTIVE, dx.NIBP_AUTO | 3),
    nibp_sys=121.0,
    nibp_dia=79.0,
    nibp_mean=93.0,
    nibp_hr=70.0,
    temps=(36.85, None, None, None),
    spo2=97.5,
    spo2_pr=71.0,
    co2_et=5.0,
    co2_fi=0.1,
    co2_rr=12.0,
    amb_press=760.0,
    dri_level=dx.DRI_LEVEL_2005,
)


# --- the host's request ----------------------------------------------------------------------


def test_request_record_has_the_documented_layout() -> None:
    rec = dx.encode_phdb_request(dx.PhdbRequest(dx.PH_DISPL, 10, 0, dx.DRI_LEVEL_2003))
    assert len(rec) == 49
    r_len, _nbr, level, _plug, _t, _s, _r2, _r3, maintype = struct.unpack_from("<hBBHIBBHh", rec)
    assert (r_len, level, maintype) == (49, dx.DRI_LEVEL_2003, dx.MT_PHDB)
    # first subrecord: offset 0, type 0 (transmission request); the second ends the list
    assert struct.unpack_from("<hBhB", rec, 16) == (0, dx.PH_XMIT_REQ, 0, 0xFF)
    assert struct.unpack_from("<BhIh", rec, 40) == (dx.PH_DISPL, 10, 0, 0)


def test_request_frames_ask_at_each_dri_level() -> None:
    out, dec = frames_in(dx.request_frames(5))
    assert [r.dri_level for r in out if isinstance(r, dx.PhdbRequest)] == [
        dx.DRI_LEVEL_2005,
        dx.DRI_LEVEL_2003,
        dx.DRI_LEVEL_2001,
    ]
    assert all(isinstance(r, dx.PhdbRequest) and r.interval_s == 5 for r in out)
    assert dec.error_count == 0


def test_interval_that_collides_with_the_escape_byte_is_escaped() -> None:
    frame = dx.encode_frame(dx.encode_phdb_request(dx.PhdbRequest(interval_s=0x7D)))
    assert dx.FLAG not in frame[1:-1]
    (req,), _ = frames_in(frame)
    assert isinstance(req, dx.PhdbRequest) and req.interval_s == 0x7D


# --- framing ---------------------------------------------------------------------------------


def test_frame_is_flag_delimited_with_sum_checksum() -> None:
    record = bytes(range(40))
    frame = dx.encode_frame(record)
    assert frame[0] == frame[-1] == 0x7E
    assert frame[-2] == sum(record) % 256


def test_flag_and_escape_bytes_inside_a_record_survive() -> None:
    rec = dx.encode_displayed(TYPICAL)
    hostile = rec[:60] + b"\x7e\x7d\x7e\x7d" + rec[64:]
    frame = dx.encode_frame(hostile)
    assert frame.count(b"\x7e") == 2
    assert dx.unescape(frame[1:-1])[:-1] == hostile


def test_checksum_is_over_unescaped_bytes() -> None:
    # 7D 01 sums to 0x7E before escaping (0xDB after); the checksum itself is then escaped
    frame = dx.encode_frame(bytes([0x7D, 0x01]) + bytes(38))
    assert frame.startswith(b"\x7e\x7d\x5d\x01")
    assert frame.endswith(b"\x7d\x5e\x7e")


def test_escape_errors_are_counted_not_raised() -> None:
    out, dec = frames_in(b"\x7e\x01\x02\x7d\x7e" + b"\x7e\x7d\x7d\x01\x7e")
    assert [e.kind for e in out if isinstance(e, dx.FrameError)] == ["escape", "escape"]
    assert dec.errors["escape"] == 2


# --- displayed values ------------------------------------------------------------------------


def test_displayed_values_round_trip() -> None:
    rec = dx.encode_displayed(TYPICAL)
    assert len(rec) == dx.HEADER_SIZE + dx.PHDB_SUBRECORD_SIZE == 318
    (dv,), dec = frames_in(dx.encode_frame(rec))
    assert dv == TYPICAL
    assert dec.records == 1


def test_decoder_reads_fields_at_the_public_offsets() -> None:
    """Built by hand from the published struct layout, not by our encoder."""
    basic = bytearray(270)
    struct.pack_into("<IHh", basic, 0, 0x3, 0, 64)  # ecg: status, label, hr
    struct.pack_into("<IHhhhh", basic, 72, 0x3, dx.NIBP_OLDER_THAN_60S, 11000, 7000, 8500, 66)
    struct.pack_into("<IHh", basic, 86, 0x3, 6, 3712)  # t1 = 37.12 C
    struct.pack_into("<IHhh", basic, 118, 0x3, 0, 9400, 63)  # SpO2 94.00 %, PR 63
    struct.pack_into("<IHhhhh", basic, 132, 0x3 | dx.CO2_OCCLUSION, 1, 610, 0, 9, 7500)
    sub = struct.pack("<I", 1_700_000_000) + bytes(basic) + struct.pack("<BBH", 0, 0, 0)
    header = struct.pack("<hBBHIBBHh", 40 + len(sub), 1, 9, 0, 1_700_000_001, 0, 0, 0, 0)
    header += struct.pack("<hB", 0, dx.PH_DISPL) + struct.pack("<hB", 0, 0xFF) + bytes(18)
    record = header + sub
    (dv,), _ = frames_in(b"\x7e" + dx.escape(record + bytes([sum(record) % 256])) + b"\x7e")
    assert isinstance(dv, dx.DisplayedValues)
    assert (dv.hr, dv.nibp_sys, dv.nibp_dia, dv.nibp_mean) == (64.0, 110.0, 70.0, 85.0)
    assert dv.nibp.label & dx.NIBP_OLDER_THAN_60S
    assert (dv.spo2, dv.spo2_pr, dv.temps[0], dv.co2_rr) == (94.0, 63.0, 37.12, 9.0)
    # EtCO2 6.10 % of 750.0 mmHg ambient = 45.75 mmHg
    assert dv.etco2_mmhg == pytest.approx(45.75)
    assert dv.co2.status & dx.CO2_OCCLUSION
    assert (dv.time, dv.record_time) == (1_700_000_000, 1_700_000_001)


@pytest.mark.parametrize(
    "marker",
    [dx.DATA_INVALID, dx.DATA_NOT_UPDATED, dx.DATA_DISCONT, dx.DATA_UNDER_RANGE, dx.DATA_OVER_RANGE, -32001],
)
def test_marker_values_decode_to_none(marker: int) -> None:
    basic = bytearray(dx.encode_basic(TYPICAL))
    struct.pack_into("<h", basic, 6, marker)  # ECG HR
    struct.pack_into("<h", basic, 118 + 6, marker)  # SpO2
    dv = dx.decode_basic(bytes(basic))
    assert dv.hr is None and dv.spo2 is None
    assert dv.spo2_pr == 71.0


def test_smallest_real_value_is_not_a_marker() -> None:
    basic = bytearray(dx.encode_basic(TYPICAL))
    struct.pack_into("<h", basic, 86 + 6, -32000)
    assert dx.decode_basic(bytes(basic)).temps[0] == -320.0


def test_out_of_range_values_are_sent_as_range_markers() -> None:
    dv = dx.decode_basic(dx.encode_basic(dx.DisplayedValues(nibp_sys=400.0, hr=-40000.0)))
    assert dv.nibp_sys is None and dv.hr is None
    basic = dx.encode_basic(dx.DisplayedValues(nibp_sys=400.0, hr=-40000.0))
    assert struct.unpack_from("<h", basic, 72 + 6)[0] == dx.DATA_OVER_RANGE
    assert struct.unpack_from("<h", basic, 6)[0] == dx.DATA_UNDER_RANGE


def test_etco2_missing_without_ambient_pressure() -> None:
    assert dx.DisplayedValues(co2_et=5.0, amb_press=None).etco2_mmhg is None


def test_ext_class_subrecord_alone_is_a_plain_record() -> None:
    rec = bytearray(dx.encode_displayed(TYPICAL))
    struct.pack_into("<H", rec, dx.HEADER_SIZE + 276, dx.CLASS_EXT1 << 8)
    (item,), _ = frames_in(dx.encode_frame(bytes(rec)))
    assert isinstance(item, dx.Record)


# --- stream behaviour --------------------------------------------------------------------


def test_byte_at_a_time_gives_the_same_records() -> None:
    stream = dx.encode_frame(dx.encode_displayed(TYPICAL)) * 3
    out, dec = frames_in(stream, chunk=1)
    assert out == [TYPICAL] * 3
    assert dec.error_count == 0


def test_shared_flags_between_frames() -> None:
    f = dx.encode_frame(dx.encode_displayed(TYPICAL))
    out, dec = frames_in(f + f[1:])  # second frame reuses the first one's closing flag
    assert out == [TYPICAL, TYPICAL] and dec.error_count == 0


def test_bad_frames_are_counted_and_good_ones_still_decode() -> None:
    good = dx.encode_frame(dx.encode_displayed(TYPICAL))
    bad_ck = dx.encode_frame(dx.encode_displayed(TYPICAL), bad_checksum=True)
    bad_len = bytearray(dx.encode_displayed(TYPICAL))
    bad_len[0] ^= 0x01
    stream = b"noise" + good + bad_ck + good + dx.encode_frame(bytes(bad_len)) + good[: len(good) // 2] + good
    out, dec = frames_in(stream)
    assert [o for o in out if isinstance(o, dx.DisplayedValues)] == [TYPICAL] * 3
    assert dict(dec.errors) == {"unframed": 1, "checksum": 2, "record": 1}


def test_endless_bytes_without_a_flag_are_bounded() -> None:
    dec = dx.StreamDecoder()
    errors = []
    for _ in range(20):
        errors += dec.feed(b"\x7e" + b"\x01" * 4000)
    assert len(dec._buf) <= 2 * (dx.MAX_RECORD + 1) + 4000
    assert dec.errors["overflow"] >= 1
    assert dec.feed(dx.encode_frame(dx.encode_displayed(TYPICAL)))[-1] == TYPICAL


# --- properties --------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=12))
def test_decoder_is_total_on_arbitrary_bytes(chunks: list[bytes]) -> None:
    dec = dx.StreamDecoder()
    errors = 0
    for c in chunks:
        for item in dec.feed(c):
            assert isinstance(item, dx.DisplayedValues | dx.PhdbRequest | dx.Record | dx.FrameError)
            errors += isinstance(item, dx.FrameError)
    assert errors == dec.error_count


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=3000), split=st.integers(min_value=1, max_value=400))
def test_a_valid_frame_after_any_junk_is_recovered(junk: bytes, split: int) -> None:
    out, _ = frames_in(junk + dx.encode_frame(dx.encode_displayed(TYPICAL)), chunk=split)
    assert out[-1] == TYPICAL


def _val(scale: int, lo: int = -32000, hi: int = 32767) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.integers(lo, hi).map(lambda r: r / scale if scale != 1 else float(r)))


_groups = st.builds(dx.GroupHeader, st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1))


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        dx.DisplayedValues,
        time=st.integers(0, 2**32 - 1),
        record_time=st.integers(1, 2**32 - 1),
        ecg=_groups,
        hr=_val(1),
        imp_rr=_val(1),
        nibp=_groups,
        nibp_sys=_val(100),
        nibp_dia=_val(100),
        nibp_mean=_val(100),
        nibp_hr=_val(1),
        temp=st.tuples(_groups, _groups, _groups, _groups),
        temps=st.tuples(_val(100), _val(100), _val(100), _val(100)),
        spo2_group=_groups,
        spo2=_val(100),
        spo2_pr=_val(1),
        co2=_groups,
        co2_et=_val(100),
        co2_fi=_val(100),
        co2_rr=_val(1),
        amb_press=_val(10),
        marker=st.integers(0, 255),
        dri_level=st.integers(0, 255),
    )
)
def test_encode_decode_round_trip(dv: dx.DisplayedValues) -> None:
    (out,), dec = frames_in(dx.encode_frame(dx.encode_displayed(dv, dri_level=dv.dri_level)))
    assert out == dv
    assert dec.error_count == 0
