"""Philips IntelliVue Data Export over RS-232 (the MIB port): the frame layer only.

On the serial line every Data Export message travels in one frame::

    BOF | header | user data | FCS | EOF
    0xC0  protocol id 0x11, message type 0x01, length (2 bytes, big-endian, of the user data)
          FCS: the PPP 16-bit frame check sequence (RFC 1662) over header and user data,
          sent complemented, low byte first
                                                  0xC1

Between BOF and EOF the bytes 0xC0, 0xC1 and 0x7D are sent as 0x7D followed by the byte XOR
0x20; the FCS is computed over the bytes before escaping. Sources: docs/devices.md, "Philips
IntelliVue". The messages inside (association, MDS create event, extended polls) are
``drivers.intellivue``.

``FrameDecoder`` cuts a byte stream into frames or counted ``FrameError``; it never raises.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

BOF = 0xC0
EOF = 0xC1
ESC = 0x7D
ESC_XOR = 0x20
PROTOCOL_ID = 0x11  # Data Export protocol
MSG_TYPE = 0x01  # Data Export message
HEADER = struct.Struct(">BBH")
FCS_INIT = 0xFFFF
FCS_GOOD = 0xF0B8  # the FCS run over a frame and its own (complemented) FCS
# The length field has 16 bits: nothing longer is a frame. Escaped, a frame takes up to twice its bytes.
MAX_DATA = 0xFFFF
MAX_WIRE = 2 * (HEADER.size + MAX_DATA + 2)

# Bytes outside any frame are reported at the next BOF, or after this many.
JUNK_REPORT = 4096

_SPECIAL = frozenset((BOF, EOF, ESC))


def _table() -> tuple[int, ...]:
    out = []
    for b in range(256):
        v = b
        for _ in range(8):
            v = (v >> 1) ^ 0x8408 if v & 1 else v >> 1
        out.append(v)
    return tuple(out)


_FCSTAB = _table()


def fcs16(data: bytes, fcs: int = FCS_INIT) -> int:
    """The running PPP FCS-16 (RFC 1662, section C.2) of ``data``."""
    for b in data:
        fcs = (fcs >> 8) ^ _FCSTAB[(fcs ^ b) & 0xFF]
    return fcs


def escape(data: bytes) -> bytes:
    if not _SPECIAL.intersection(data):
        return data
    out = bytearray()
    for b in data:
        if b in _SPECIAL:
            out += bytes((ESC, b ^ ESC_XOR))
        else:
            out.append(b)
    return bytes(out)


class FramingError(ValueError):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def unescape(raw: bytes) -> bytes:
    if ESC not in raw:
        return raw
    out = bytearray()
    it = iter(raw)
    for b in it:
        if b == ESC:
            nxt = next(it, None)
            if nxt is None:
                raise FramingError("escape", "escape byte at the end of the frame")
            b = nxt ^ ESC_XOR
            if b not in _SPECIAL:
                raise FramingError("escape", f"escaped byte {nxt:#04x} does not stand for BOF, EOF or ESC")
        out.append(b)
    return bytes(out)


def encode_frame(user_data: bytes, *, protocol_id: int = PROTOCOL_ID, msg_type: int = MSG_TYPE,
                 bad_fcs: bool = False) -> bytes:
    """``user_data`` framed for the line (``bad_fcs``: with a wrong FCS, for tests)."""
    if len(user_data) > MAX_DATA:
        raise ValueError(f"user data of {len(user_data)} bytes: at most {MAX_DATA}")
    body = HEADER.pack(protocol_id, msg_type, len(user_data)) + user_data
    fcs = ~fcs16(body) & 0xFFFF
    if bad_fcs:
        fcs ^= 0x0001
    return bytes((BOF,)) + escape(body + struct.pack("<H", fcs)) + bytes((EOF,))


@dataclass(frozen=True, slots=True)
class Frame:
    protocol_id: int
    msg_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FrameError:
    kind: str  # unframed | aborted | overflow | escape | short | length | fcs | protocol
    detail: str


Decoded = Frame | FrameError


def decode_frame(raw: bytes) -> Frame:
    """The bytes between BOF and EOF -> a frame; raises ``FramingError``."""
    body = unescape(raw)
    if len(body) < HEADER.size + 2:
        raise FramingError("short", f"frame of {len(body)} bytes")
    if fcs16(body) != FCS_GOOD:
        raise FramingError("fcs", f"frame check sequence {body[-2:].hex()} does not match")
    protocol_id, msg_type, length = HEADER.unpack_from(body)
    data = body[HEADER.size : -2]
    if length != len(data):
        raise FramingError("length", f"header says {length} bytes, the frame has {len(data)}")
    if (protocol_id, msg_type) != (PROTOCOL_ID, MSG_TYPE):
        raise FramingError("protocol", f"protocol id {protocol_id:#04x}, message type {msg_type:#04x}")
    return Frame(protocol_id, msg_type, data)


@dataclass
class FrameDecoder:
    """Bytes in, frames or counted errors out. Total: ``feed`` never raises.

    Bytes outside a frame are counted once per run as ``unframed`` (at the next BOF, or every
    ``JUNK_REPORT`` bytes); a BOF inside a frame ends it
    (``aborted``) and starts the next; a frame that grows past ``max_wire`` bytes is dropped
    (``overflow``) and bytes are skipped to the next BOF."""

    max_wire: int = MAX_WIRE
    frames: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _buf: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    _junk: int = 0  # bytes outside frames not yet counted

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def reset(self) -> None:
        self._buf.clear()
        self._in_frame = False
        self._junk = 0

    def feed(self, chunk: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        data = bytes(chunk)
        i, n = 0, len(data)
        while i < n:
            if not self._in_frame:
                j = data.find(BOF, i)
                self._junk += (n if j < 0 else j) - i
                if j < 0:
                    if self._junk >= JUNK_REPORT:  # a line of noise is garbled, not silent
                        self._flush_junk(out)
                    break
                self._flush_junk(out)
                self._in_frame, self._buf = True, bytearray()
                i = j + 1
                continue
            j = _next_flag(data, i)
            if j < 0:
                self._buf += data[i:]
                if len(self._buf) > self.max_wire:
                    self._error(out, "overflow", f"more than {self.max_wire} bytes without EOF")
                    self._in_frame, self._buf = False, bytearray()
                break
            self._buf += data[i:j]
            if data[j] == BOF:
                self._error(out, "aborted", f"BOF after {len(self._buf)} bytes of a frame")
                self._buf = bytearray()
            else:
                self._frame(bytes(self._buf), out)
                self._in_frame, self._buf = False, bytearray()
            i = j + 1
        return out

    def _flush_junk(self, out: list[Decoded]) -> None:
        if self._junk:
            self._error(out, "unframed", f"{self._junk} bytes outside a frame")
            self._junk = 0

    def _frame(self, raw: bytes, out: list[Decoded]) -> None:
        if len(raw) > self.max_wire:
            self._error(out, "overflow", f"frame of {len(raw)} bytes")
            return
        try:
            frame = decode_frame(raw)
        except FramingError as exc:
            self._error(out, exc.kind, str(exc))
            return
        self.frames += 1
        out.append(frame)

    def _error(self, out: list[Decoded], kind: str, detail: str) -> None:
        self.errors[kind] += 1
        out.append(FrameError(kind, detail))


def _next_flag(data: bytes, start: int) -> int:
    """The index of the next BOF or EOF from ``start``, or -1."""
    a, b = data.find(BOF, start), data.find(EOF, start)
    if a < 0:
        return b
    return a if b < 0 else min(a, b)
