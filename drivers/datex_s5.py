"""GE Datex-Ohmeda S/5 Computer Interface: the "Datex Record Interface" (DRI) wire format.

One module for both directions, used by the driver and by the simulator.

Framing (S/5 and CARESCAPE B-series Computer Interface, RS-232)
    ``7E  <record, escaped>  <checksum, escaped>  7E``
    Inside a frame 0x7E and 0x7D are sent as ``7D (b XOR 0x20)``. The checksum is the sum,
    modulo 256, of the record bytes BEFORE escaping (that is what receivers that work with real
    monitors check). A 0x7E always closes the current frame and opens the next one, so frames
    may share a flag and junk between frames shows up as one bad frame.

Record = 40-byte header + data area (all little-endian)
    short r_len, byte r_nbr, byte dri_level, word plug_id, dword r_time,
    byte n_subnet, byte reserved2, word reserved3, short r_maintype,
    8 x {short sr_offset, byte sr_type}   (sr_type 0xFF ends the list;
                                            sr_offset is relative to the data area)

Physiological database (r_maintype 0)
    Host request: subrecord type 0, body ``{byte phdb_rcrd_type, short tx_interval (s),
    dword phdb_class_bf, short reserved}`` (9 bytes, record 49 bytes). Interval 0 stops the
    transmission, -1 asks for one record.
    Monitor reply: subrecords of type 1 (displayed values), each a ``dri_phdb`` of 278 bytes:
    ``dword time, 270-byte class union, byte marker, byte reserved, word cl_drilvl_subt``
    (bits 8-11 of cl_drilvl_subt = class: 0 basic, 1-3 ext1-3). Only the basic class is decoded.

Values are signed 16-bit; anything below -32000 is a marker (invalid, not updated, over/under
range, calibrating...) and decodes to ``None``. Scale factors are noted beside each field.

The parser is total: ``StreamDecoder.feed`` takes any bytes and returns decoded records or
counted ``FrameError`` values; it never raises.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field

# --- framing ---------------------------------------------------------------------------------

FLAG = 0x7E
ESC = 0x7D
ESC_XOR = 0x20
_FLAG_B = b"\x7e"
_ESC_B = b"\x7d"

# --- record constants ------------------------------------------------------------------------

HEADER = struct.Struct("<hBBHIBBHh" + "hB" * 8)  # 40 bytes
HEADER_SIZE = HEADER.size
MAX_SUBRECORDS = 8
EOL_SUBRECORD = 0xFF
# Largest record a receiver must accept (header + 1450-byte data area).
MAX_RECORD = 1490

MT_PHDB = 0  # physiological data and its transmission requests
MT_WAVE = 1
MT_ALARM = 4

PH_XMIT_REQ = 0  # subrecord type of a host's transmission request
PH_DISPL = 1  # displayed values
PH_10S_TREND = 2
PH_60S_TREND = 3

CLASS_BASIC = 0
CLASS_EXT1 = 1
CLASS_EXT2 = 2
CLASS_EXT3 = 3
# phdb_class_bf in a request: bit 0 set DENIES the basic class; bits 1-3 request ext1-3.
CLASS_BF_DENY_BASIC = 0x0001
CLASS_BF_EXT1 = 0x0002
CLASS_BF_EXT2 = 0x0004
CLASS_BF_EXT3 = 0x0008

DRI_LEVEL_2001 = 0x07
DRI_LEVEL_2003 = 0x08
DRI_LEVEL_2005 = 0x09
DRI_LEVEL_2009 = 0x0A
DRI_LEVEL_2015 = 0x0B

PHDB_REQUEST = struct.Struct("<BhIh")  # 9 bytes
SUBRECORD_TIME = struct.Struct("<I")
SUBRECORD_TAIL = struct.Struct("<BBH")
BASIC_SIZE = 270
PHDB_SUBRECORD_SIZE = SUBRECORD_TIME.size + BASIC_SIZE + SUBRECORD_TAIL.size  # 278

# --- value markers ---------------------------------------------------------------------------

DATA_INVALID_LIMIT = -32001  # values at or below this are markers, not measurements
DATA_INVALID = -32767
DATA_NOT_UPDATED = -32766
DATA_DISCONT = -32765
DATA_UNDER_RANGE = -32764
DATA_OVER_RANGE = -32763
DATA_NOT_CALIBRATED = -32762
VALUE_MIN = -32000
VALUE_MAX = 32767

# --- group status bits (group header dword) -------------------------------------------------

ST_EXISTS = 1 << 0  # measurement module present
ST_ACTIVE = 1 << 1  # measurement on
ECG_ASYSTOLE = 1 << 2
ECG_HR_SOURCE_SHIFT = 3  # bits 3-6: 1 ECG, 2-5 invasive pressure 1-4, 6 SpO2, 7-8 pressure 5-6
ECG_HR_SOURCE_MASK = 0xF << ECG_HR_SOURCE_SHIFT
ECG_NOISE = 1 << 7
ECG_ARTIFACT = 1 << 8
ECG_LEARNING = 1 << 9
ECG_PACER = 1 << 10
ECG_CH1_OFF = 1 << 11
ECG_CH2_OFF = 1 << 12
ECG_CH3_OFF = 1 << 13
CO2_APNEA = 1 << 2
CO2_CALIBRATING = 1 << 3
CO2_ZEROING = 1 << 4
CO2_OCCLUSION = 1 << 5
CO2_AIR_LEAK = 1 << 6
# NIBP state lives in the group's label word, not its status dword.
NIBP_CUFF_MASK = 0x7
NIBP_AUTO = 1 << 3
NIBP_STAT = 1 << 4
NIBP_MEASURING = 1 << 5
NIBP_STASIS = 1 << 6
NIBP_CALIBRATING = 1 << 7
NIBP_OLDER_THAN_60S = 1 << 8

# --- basic class layout: (offset in the 270-byte class, number of 16-bit values) -------------
# Each group is {dword status, word label, short values...} except ecg_extra (values only).

_GROUP_HEADER = struct.Struct("<IH")
OFF_ECG = 0  # hr (1/min), st1-3 (1/100 mm), imp_rr (1/min)
OFF_NIBP = 72  # sys, dia, mean (1/100 mmHg), hr (1/min)
OFF_TEMP = (86, 94, 102, 110)  # temp (1/100 degC)
OFF_SPO2 = 118  # SpO2 (1/100 %), pr (1/min), ir_amp, SvO2 (1/100 %)
OFF_CO2 = 132  # et, fi (1/100 %), rr (1/min), amb_press (1/10 mmHg)
_BASIC_GROUPS: tuple[tuple[int, int, bool], ...] = (
    # (offset, values, has header)
    (OFF_ECG, 5, True),
    (16, 4, True),  # invasive pressure 1-4
    (30, 4, True),
    (44, 4, True),
    (58, 4, True),
    (OFF_NIBP, 4, True),
    *((off, 1, True) for off in OFF_TEMP),
    (OFF_SPO2, 4, True),
    (OFF_CO2, 4, True),
    (146, 2, True),  # O2
    (156, 2, True),  # N2O
    (166, 3, True),  # anaesthetic agent
    (178, 8, True),  # flow and volume
    (200, 4, True),  # cardiac output / wedge
    (214, 3, True),  # NMT
    (226, 3, False),  # ecg_extra
    (232, 1, True),  # SvO2
    (240, 4, True),  # invasive pressure 5-6
    (254, 4, True),
)


def _blank_basic() -> bytes:
    buf = bytearray(BASIC_SIZE)
    for off, n, has_hdr in _BASIC_GROUPS:
        start = off + (_GROUP_HEADER.size if has_hdr else 0)
        struct.pack_into(f"<{n}h", buf, start, *([DATA_INVALID] * n))
    return bytes(buf)


_BLANK_BASIC = _blank_basic()


class DatexError(ValueError):
    """A frame or record that does not follow the format."""


# --- frames ----------------------------------------------------------------------------------


def checksum(record: bytes) -> int:
    return sum(record) & 0xFF


def escape(data: bytes) -> bytes:
    return data.replace(_ESC_B, b"\x7d\x5d").replace(_FLAG_B, b"\x7d\x5e")


def encode_frame(record: bytes, *, bad_checksum: bool = False) -> bytes:
    """Frame one record. ``bad_checksum`` (for fault injection) sends a wrong checksum."""
    ck = (checksum(record) + (1 if bad_checksum else 0)) & 0xFF
    return _FLAG_B + escape(record + bytes((ck,))) + _FLAG_B


def unescape(raw: bytes) -> bytes:
    """Undo 0x7D escaping; raises DatexError on an escape with nothing valid after it."""
    if ESC not in raw:
        return raw
    pieces = raw.split(_ESC_B)
    out = bytearray(pieces[0])
    for piece in pieces[1:]:
        if not piece:  # 7D 7D, or 7D at the end of the frame
            raise DatexError("escape byte not followed by an escaped byte")
        out.append(piece[0] ^ ESC_XOR)
        out += piece[1:]
    return bytes(out)


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordHeader:
    r_len: int
    r_nbr: int
    dri_level: int
    plug_id: int
    r_time: int  # seconds since 1970-01-01 (monitor clock)
    maintype: int
    subrecords: tuple[tuple[int, int], ...]  # (offset in data area, type), up to the 0xFF end


@dataclass(frozen=True, slots=True)
class Record:
    """A valid record of a kind this module does not interpret further."""

    header: RecordHeader
    data: bytes


def encode_record(
    maintype: int,
    subrecords: list[tuple[int, bytes]],
    *,
    r_time: int = 0,
    r_nbr: int = 0,
    dri_level: int = 0,
    plug_id: int = 0,
) -> bytes:
    """Header + data area for ``subrecords`` = [(type, body)], laid out back to back."""
    if len(subrecords) > MAX_SUBRECORDS:
        raise ValueError("at most 8 subrecords")
    descs: list[int] = []
    data = bytearray()
    for sr_type, body in subrecords:
        descs += [len(data), sr_type]
        data += body
    if len(subrecords) < MAX_SUBRECORDS:
        descs += [0, EOL_SUBRECORD]
    while len(descs) < 2 * MAX_SUBRECORDS:
        descs += [0, 0]
    r_len = HEADER_SIZE + len(data)
    if r_len > MAX_RECORD:
        raise ValueError(f"record of {r_len} bytes is over {MAX_RECORD}")
    hdr = HEADER.pack(r_len, r_nbr & 0xFF, dri_level, plug_id, r_time & 0xFFFFFFFF, 0, 0, 0, maintype, *descs)
    return hdr + bytes(data)


def decode_header(record: bytes) -> RecordHeader:
    if len(record) < HEADER_SIZE:
        raise DatexError(f"record of {len(record)} bytes is shorter than its header")
    f = HEADER.unpack_from(record)
    r_len = f[0]
    if r_len != len(record):
        raise DatexError(f"r_len {r_len} but the frame holds {len(record)} bytes")
    subs: list[tuple[int, int]] = []
    for i in range(MAX_SUBRECORDS):
        off, typ = f[9 + 2 * i], f[10 + 2 * i]
        if typ == EOL_SUBRECORD:
            break
        if not 0 <= off < r_len - HEADER_SIZE:
            raise DatexError(f"subrecord {i} offset {off} outside the data area")
        subs.append((off, typ))
    return RecordHeader(r_len, f[1], f[2], f[3], f[4], f[8], tuple(subs))


# --- the host's request ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhdbRequest:
    """Host -> monitor: send physiological records of ``record_type`` every ``interval_s``."""

    record_type: int = PH_DISPL
    interval_s: int = 5  # 0 stops, -1 asks for a single record
    class_bits: int = 0  # 0 = basic class only
    dri_level: int = DRI_LEVEL_2005


def encode_phdb_request(req: PhdbRequest) -> bytes:
    body = PHDB_REQUEST.pack(req.record_type, req.interval_s, req.class_bits, 0)
    return encode_record(MT_PHDB, [(PH_XMIT_REQ, body)], dri_level=req.dri_level)


def request_frames(
    interval_s: int, levels: tuple[int, ...] = (DRI_LEVEL_2005, DRI_LEVEL_2003, DRI_LEVEL_2001)
) -> bytes:
    """The bytes a host sends to start displayed-values transmission every ``interval_s``.

    One request per DRI level: a monitor answers the request of the level it speaks and
    ignores the others (this is how hosts that work with mixed S/5 and B-series fleets do it).
    """
    return b"".join(
        encode_frame(encode_phdb_request(PhdbRequest(PH_DISPL, interval_s, 0, lv))) for lv in levels
    )


def _decode_request(hdr: RecordHeader, data: bytes) -> PhdbRequest:
    off = hdr.subrecords[0][0]
    if off + PHDB_REQUEST.size > len(data):
        raise DatexError("transmission request too short")
    rtype, ival, cls, _ = PHDB_REQUEST.unpack_from(data, off)
    return PhdbRequest(rtype, ival, cls, hdr.dri_level)


# --- displayed values ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupHeader:
    status: int = 0
    label: int = 0


@dataclass(frozen=True, slots=True)
class DisplayedValues:
    """The basic class of a displayed-values subrecord, in engineering units.

    ``None`` = the monitor sent a marker (invalid, not measured, out of range, calibrating).
    """

    time: int = 0  # unix seconds, monitor clock, when these values were displayed
    ecg: GroupHeader = GroupHeader()
    hr: float | None = None  # /min; from the monitor's selected HR source (status bits 3-6)
    imp_rr: float | None = None  # /min, ECG impedance respiration
    nibp: GroupHeader = GroupHeader()
    nibp_sys: float | None = None  # mmHg
    nibp_dia: float | None = None
    nibp_mean: float | None = None
    nibp_hr: float | None = None  # /min
    temp: tuple[GroupHeader, GroupHeader, GroupHeader, GroupHeader] = (GroupHeader(),) * 4
    temps: tuple[float | None, float | None, float | None, float | None] = (None, None, None, None)
    spo2_group: GroupHeader = GroupHeader()
    spo2: float | None = None  # %
    spo2_pr: float | None = None  # /min
    co2: GroupHeader = GroupHeader()
    co2_et: float | None = None  # % of ambient pressure
    co2_fi: float | None = None  # %
    co2_rr: float | None = None  # /min (source in the CO2 label bits 0-2: 1 CO2, 2 impedance)
    amb_press: float | None = None  # mmHg
    marker: int = 0
    record_time: int = 0  # header r_time (when the frame was sent)
    dri_level: int = 0

    @property
    def etco2_mmhg(self) -> float | None:
        """EtCO2 as partial pressure: the record gives a percentage of the ambient pressure it
        also carries, so mmHg = % / 100 * ambient mmHg."""
        if self.co2_et is None or self.amb_press is None:
            return None
        return self.co2_et / 100.0 * self.amb_press


def _scaled(raw: int, divisor: int) -> float | None:
    if raw <= DATA_INVALID_LIMIT:
        return None
    return raw / divisor if divisor != 1 else float(raw)


def _raw(value: float | None, divisor: int) -> int:
    """Engineering value -> wire integer; out-of-range values become the range markers."""
    if value is None or math.isnan(value):
        return DATA_INVALID
    if math.isinf(value):
        return DATA_OVER_RANGE if value > 0 else DATA_UNDER_RANGE
    raw = round(value * divisor)
    if raw > VALUE_MAX:
        return DATA_OVER_RANGE
    if raw < VALUE_MIN:
        return DATA_UNDER_RANGE
    return raw


def _read_group(buf: bytes, off: int, n: int) -> tuple[GroupHeader, tuple[int, ...]]:
    status, label = _GROUP_HEADER.unpack_from(buf, off)
    return GroupHeader(status, label), struct.unpack_from(f"<{n}h", buf, off + _GROUP_HEADER.size)


def _write_group(buf: bytearray, off: int, grp: GroupHeader, raws: list[int]) -> None:
    _GROUP_HEADER.pack_into(buf, off, grp.status & 0xFFFFFFFF, grp.label & 0xFFFF)
    struct.pack_into(f"<{len(raws)}h", buf, off + _GROUP_HEADER.size, *raws)


def decode_basic(
    basic: bytes, *, time: int = 0, marker: int = 0, record_time: int = 0, dri_level: int = 0
) -> DisplayedValues:
    """The 270-byte basic class -> values (the caller has checked the length)."""
    ecg, (hr, _st1, _st2, _st3, imp_rr) = _read_group(basic, OFF_ECG, 5)
    nibp, (sys_, dia, mean, nibp_hr) = _read_group(basic, OFF_NIBP, 4)
    temp_groups = []
    temp_vals = []
    for off in OFF_TEMP:
        grp, (t,) = _read_group(basic, off, 1)
        temp_groups.append(grp)
        temp_vals.append(_scaled(t, 100))
    spo2_grp, (spo2, pr, _ir, _svo2) = _read_group(basic, OFF_SPO2, 4)
    co2, (et, fi, rr, amb) = _read_group(basic, OFF_CO2, 4)
    return DisplayedValues(
        time=time,
        ecg=ecg,
        hr=_scaled(hr, 1),
        imp_rr=_scaled(imp_rr, 1),
        nibp=nibp,
        nibp_sys=_scaled(sys_, 100),
        nibp_dia=_scaled(dia, 100),
        nibp_mean=_scaled(mean, 100),
        nibp_hr=_scaled(nibp_hr, 1),
        temp=(temp_groups[0], temp_groups[1], temp_groups[2], temp_groups[3]),
        temps=(temp_vals[0], temp_vals[1], temp_vals[2], temp_vals[3]),
        spo2_group=spo2_grp,
        spo2=_scaled(spo2, 100),
        spo2_pr=_scaled(pr, 1),
        co2=co2,
        co2_et=_scaled(et, 100),
        co2_fi=_scaled(fi, 100),
        co2_rr=_scaled(rr, 1),
        amb_press=_scaled(amb, 10),
        marker=marker,
        record_time=record_time,
        dri_level=dri_level,
    )


def encode_basic(v: DisplayedValues) -> bytes:
    buf = bytearray(_BLANK_BASIC)
    _write_group(
        buf, OFF_ECG, v.ecg, [_raw(v.hr, 1), DATA_INVALID, DATA_INVALID, DATA_INVALID, _raw(v.imp_rr, 1)]
    )
    _write_group(
        buf,
        OFF_NIBP,
        v.nibp,
        [_raw(v.nibp_sys, 100), _raw(v.nibp_dia, 100), _raw(v.nibp_mean, 100), _raw(v.nibp_hr, 1)],
    )
    for off, grp, t in zip(OFF_TEMP, v.temp, v.temps, strict=True):
        _write_group(buf, off, grp, [_raw(t, 100)])
    _write_group(
        buf, OFF_SPO2, v.spo2_group, [_raw(v.spo2, 100), _raw(v.spo2_pr, 1), DATA_INVALID, DATA_INVALID]
    )
    _write_group(
        buf,
        OFF_CO2,
        v.co2,
        [_raw(v.co2_et, 100), _raw(v.co2_fi, 100), _raw(v.co2_rr, 1), _raw(v.amb_press, 10)],
    )
    return bytes(buf)


def encode_displayed(
    v: DisplayedValues, *, r_nbr: int = 0, dri_level: int = DRI_LEVEL_2005, plug_id: int = 0
) -> bytes:
    """A displayed-values record with one basic-class subrecord (what a monitor sends when
    asked for the basic class only). Header time = ``v.record_time`` or else ``v.time``."""
    sub = (
        SUBRECORD_TIME.pack(v.time & 0xFFFFFFFF)
        + encode_basic(v)
        + SUBRECORD_TAIL.pack(v.marker & 0xFF, 0, CLASS_BASIC << 8)
    )
    return encode_record(
        MT_PHDB,
        [(PH_DISPL, sub)],
        r_time=v.record_time or v.time,
        r_nbr=r_nbr,
        dri_level=dri_level,
        plug_id=plug_id,
    )


def _decode_displayed(hdr: RecordHeader, data: bytes) -> DisplayedValues | None:
    """The basic-class subrecord of a displayed-values record, or None if it has none."""
    for off, typ in hdr.subrecords:
        if typ != PH_DISPL:
            continue
        if off + PHDB_SUBRECORD_SIZE > len(data):
            raise DatexError(f"displayed-values subrecord at {off} runs past the record")
        tail = off + SUBRECORD_TIME.size + BASIC_SIZE
        marker, _, cl = SUBRECORD_TAIL.unpack_from(data, tail)
        if (cl >> 8) & 0x0F != CLASS_BASIC:
            continue
        (t,) = SUBRECORD_TIME.unpack_from(data, off)
        start = off + SUBRECORD_TIME.size
        return decode_basic(
            data[start : start + BASIC_SIZE],
            time=t,
            marker=marker,
            record_time=hdr.r_time,
            dri_level=hdr.dri_level,
        )
    return None


def decode_record(record: bytes) -> DisplayedValues | PhdbRequest | Record:
    """One unframed, checksum-verified record. Raises DatexError if it is malformed."""
    hdr = decode_header(record)
    data = record[HEADER_SIZE:]
    if hdr.maintype == MT_PHDB and hdr.subrecords:
        first_type = hdr.subrecords[0][1]
        if first_type == PH_XMIT_REQ:
            return _decode_request(hdr, data)
        if first_type == PH_DISPL:
            dv = _decode_displayed(hdr, data)
            if dv is not None:
                return dv
    return Record(hdr, data)


# --- the stream decoder ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameError:
    kind: str  # unframed | overflow | escape | short | checksum | record
    detail: str


Decoded = DisplayedValues | PhdbRequest | Record | FrameError


@dataclass
class StreamDecoder:
    """Bytes in, records or counted errors out. Total: ``feed`` never raises.

    Bytes before the first flag are counted once as ``unframed``; a frame that grows past
    ``MAX_RECORD`` without a flag is dropped (``overflow``) and bytes are skipped to the next
    flag.
    """

    max_record: int = MAX_RECORD
    records: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _buf: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    _skipping: bool = False

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def reset(self) -> None:
        self._buf.clear()
        self._in_frame = False
        self._skipping = False

    def feed(self, chunk: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        if not chunk:
            return out
        parts = bytes(chunk).split(_FLAG_B)
        # parts[0] continues what is buffered; parts[-1] is the start of an unfinished frame.
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i == 0:
                if self._skipping:
                    if not last:
                        self._skipping = False
                    continue
                self._buf += part
                if last:
                    self._check_overflow(out)
                    continue
                body = bytes(self._buf)
                self._buf.clear()
                if not self._in_frame:
                    self._in_frame = True
                    if body:
                        self._error(out, "unframed", f"{len(body)} bytes before the first frame flag")
                    continue
                if body:
                    self._frame(body, out)
            elif last:
                self._buf += part
                self._check_overflow(out)
            elif part:
                self._frame(part, out)
        return out

    def _check_overflow(self, out: list[Decoded]) -> None:
        # escaped bytes take up to two on the wire
        if len(self._buf) > 2 * (self.max_record + 1):
            n = len(self._buf)
            self._buf.clear()
            self._skipping = True
            kind = "overflow" if self._in_frame else "unframed"
            self._error(out, kind, f"{n} bytes without a frame flag")
            self._in_frame = True

    def _error(self, out: list[Decoded], kind: str, detail: str) -> None:
        self.errors[kind] += 1
        out.append(FrameError(kind, detail))

    def _frame(self, raw: bytes, out: list[Decoded]) -> None:
        try:
            payload = unescape(raw)
        except DatexError as exc:
            self._error(out, "escape", str(exc))
            return
        if len(payload) < HEADER_SIZE + 1:
            self._error(out, "short", f"frame of {len(payload)} bytes")
            return
        if len(payload) > self.max_record + 1:
            self._error(out, "overflow", f"frame of {len(payload)} bytes")
            return
        record, ck = payload[:-1], payload[-1]
        if checksum(record) != ck:
            self._error(out, "checksum", f"checksum {ck:#04x}, computed {checksum(record):#04x}")
            return
        try:
            decoded = decode_record(record)
        except DatexError as exc:
            self._error(out, "record", str(exc))
            return
        self.records += 1
        out.append(decoded)
