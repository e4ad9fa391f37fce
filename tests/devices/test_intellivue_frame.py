"""IntelliVue Data Export over RS-232, the frame layer: BOF/EOF, escaping, the PPP frame check
sequence; every bad frame counted, never fatal, and an intact frame decoded whatever came before."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitord.drivers import intellivue_frame as iv


def test_fcs_is_the_ppp_fcs16() -> None:
    # RFC 1662 FCS-16 = CRC-16/X-25: check value 0x906E over "123456789" (init 0xFFFF, complemented)
    assert ~iv.fcs16(b"123456789") & 0xFFFF == 0x906E
    frame = iv.encode_frame(b"123456789")
    body = iv.unescape(frame[1:-1])
    assert iv.fcs16(body) == iv.FCS_GOOD  # frame + its own FCS leaves the good residue


def test_frame_layout() -> None:
    frame = iv.encode_frame(b"\x01\x02")
    assert frame[0] == iv.BOF and frame[-1] == iv.EOF
    assert frame[1:5] == b"\x11\x01\x00\x02" and frame[5:7] == b"\x01\x02"
    fcs = ~iv.fcs16(b"\x11\x01\x00\x02\x01\x02") & 0xFFFF
    assert iv.unescape(frame[7:-1]) == bytes((fcs & 0xFF, fcs >> 8))  # low byte first


def test_special_bytes_are_escaped_and_the_fcs_covers_them_unescaped() -> None:
    data = bytes([0xC0, 0xC1, 0x7D, 0x00, 0x20, 0xE0, 0xE1, 0x5D])
    frame = iv.encode_frame(data)
    inner = frame[1:-1]
    assert iv.BOF not in inner and iv.EOF not in inner
    assert inner[4:10] == b"\x7d\xe0\x7d\xe1\x7d\x5d"
    assert iv.FrameDecoder().feed(frame) == [iv.Frame(0x11, 0x01, data)]


@pytest.mark.parametrize(("raw", "kind"), [
    (iv.encode_frame(b"abc", bad_fcs=True), "fcs"),
    (iv.encode_frame(b"abc", protocol_id=0x12), "protocol"),
    (iv.encode_frame(b"abc", msg_type=0x02), "protocol"),
    (bytes((iv.BOF, 0x11, 0x01, iv.EOF)), "short"),
    (bytes((iv.BOF, 0x11, 0x7D, iv.EOF)), "escape"),  # escape at the end
    (bytes((iv.BOF, 0x11, 0x7D, 0x41, 0x00, 0x00, 0x00, iv.EOF)), "escape"),  # escapes nothing special
])
def test_bad_frames_say_why(raw: bytes, kind: str) -> None:
    dec = iv.FrameDecoder()
    (item,) = dec.feed(raw)
    assert isinstance(item, iv.FrameError) and item.kind == kind, item
    assert dec.errors == {kind: 1}


def test_a_length_that_disagrees_is_an_error() -> None:
    body = iv.HEADER.pack(0x11, 0x01, 5) + b"abc"
    fcs = ~iv.fcs16(body) & 0xFFFF
    raw = bytes((iv.BOF,)) + iv.escape(body + bytes((fcs & 0xFF, fcs >> 8))) + bytes((iv.EOF,))
    (item,) = iv.FrameDecoder().feed(raw)
    assert isinstance(item, iv.FrameError) and item.kind == "length"


def test_noise_an_aborted_frame_and_a_cut_anywhere_cost_only_themselves() -> None:
    a, b = iv.encode_frame(b"first \xc0 frame"), iv.encode_frame(bytes(range(256)))
    stream = b"noise\xc1" + a + a[: len(a) // 2] + b + b"\x00\x01" + b
    for cut in range(0, len(stream), 7):
        dec = iv.FrameDecoder()
        out = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        frames = [x.data for x in out if isinstance(x, iv.Frame)]
        assert frames == [b"first \xc0 frame", bytes(range(256)), bytes(range(256))]
        assert dec.errors == {"unframed": 2, "aborted": 1}


def test_endless_bytes_without_eof_are_bounded() -> None:
    dec = iv.FrameDecoder(max_wire=1000)
    dec.feed(bytes((iv.BOF,)))
    out = []
    for _ in range(5):
        out += dec.feed(b"\x00" * 600)
        assert len(dec._buf) <= 1600
    assert dec.errors["overflow"] == 1
    assert isinstance(dec.feed(iv.encode_frame(b"ok"))[-1], iv.Frame)


def test_a_line_of_noise_is_reported_without_waiting_for_a_frame() -> None:
    dec = iv.FrameDecoder()
    out = dec.feed(bytes(5000))
    assert [e.kind for e in out if isinstance(e, iv.FrameError)] == ["unframed"]


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=97))
def test_decoder_is_total_on_any_bytes(data: bytes, chunk: int) -> None:
    dec = iv.FrameDecoder(max_wire=512)
    for i in range(0, len(data), chunk):
        for item in dec.feed(data[i : i + chunk]):
            assert isinstance(item, iv.Frame | iv.FrameError)


@given(st.binary(max_size=600))
def test_any_user_data_round_trips(data: bytes) -> None:
    assert iv.FrameDecoder().feed(iv.encode_frame(data)) == [iv.Frame(0x11, 0x01, data)]


@pytest.mark.slow
def test_random_and_mutated_frames_never_raise_and_intact_ones_survive() -> None:
    rng = random.Random(20260101)
    samples = [(iv.encode_frame(d), d) for d in (rng.randbytes(rng.randint(0, 300)) for _ in range(32))]
    dec = iv.FrameDecoder()
    intact = lost = 0
    for _ in range(100_000):
        r = rng.random()
        frame, data = rng.choice(samples)
        if r < 0.2:
            chunk, expect = frame, data
            intact += 1
        elif r < 0.7:
            b = bytearray(frame)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(b) + 1)
                op = rng.randrange(4)
                if op == 0 and i < len(b):
                    b[i] ^= 1 << rng.randrange(8)
                elif op == 1:
                    b[i:i] = rng.choice((b"\xc0", b"\xc1", b"\x7d", rng.randbytes(3)))
                elif op == 2:
                    del b[i : i + rng.randint(1, 8)]
                else:
                    b = b[:i]
            chunk, expect = bytes(b), None
        else:
            chunk, expect = rng.randbytes(rng.randint(0, 200)), None
        out = dec.feed(chunk)
        if expect is not None and (not out or out[-1] != iv.Frame(0x11, 0x01, expect)):
            lost += 1
    assert intact > 15_000 and lost == 0
    assert dec.error_count > 40_000
