"""Masimo Rad-series / Radical pulse oximeter serial output ("ASCII 1"), both directions.

The oximeter sends one line of ASCII text a second, unprompted, ended by CR LF::

    02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800

Date (MM/DD/YY) and time of the oximeter's clock first, then ``KEY=VALUE`` fields separated by
spaces; which fields appear depends on the model (Radical-5: no SN, 2-digit ALARM, 3-digit EXC;
Radical-7: also PVI; Rad-7 colour: EXC1). A value the oximeter does not have is filled with
``-``. ``ALARM`` and ``EXC`` are hexadecimal bit fields (alarm status, exceptions). Sources and
the bit meanings: docs/devices.md, "Pulse oximeter".

``LineDecoder`` cuts the byte stream into lines and parses each into a ``Record`` or a
``LineError``; it never raises. ``encode_line`` writes a line the way the oximeter does (the
simulator's side).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

# The longest documented line (Rad-7 colour, with EXC1) is about 180 characters.
MAX_LINE = 400

# Exception bits (EXC). 0x001-0x800: Rad-8 operator's manual, trend data format; above: the
# MD PnP Radical-5/7 serial reader (poxrad_discrete.h).
EXC_NO_SENSOR = 0x000001
EXC_DEFECTIVE_SENSOR = 0x000002
EXC_LOW_PERFUSION = 0x000004
EXC_PULSE_SEARCH = 0x000008
EXC_INTERFERENCE = 0x000010
EXC_SENSOR_OFF = 0x000020
EXC_AMBIENT_LIGHT = 0x000040
EXC_UNRECOGNIZED_SENSOR = 0x000080
EXC_INCOMPATIBLE_SENSOR = 0x000100
EXC_LOW_SIGNAL_IQ = 0x000400
EXC_SET = 0x000800  # the algorithm runs in full Masimo SET mode: information, not a fault
EXC_NO_CABLE = 0x001000
EXC_CABLE_EXPIRED = 0x002000
EXC_INCOMPATIBLE_CABLE = 0x004000
EXC_UNRECOGNIZED_CABLE = 0x008000
EXC_DEFECTIVE_CABLE = 0x010000
EXC_SENSOR_CALIBRATING = 0x020000
EXC_SENSOR_EXPIRED = 0x040000

EXC_NAMES = {
    EXC_NO_SENSOR: "no sensor",
    EXC_DEFECTIVE_SENSOR: "defective sensor",
    EXC_LOW_PERFUSION: "low perfusion",
    EXC_PULSE_SEARCH: "pulse search",
    EXC_INTERFERENCE: "interference",
    EXC_SENSOR_OFF: "sensor off patient",
    EXC_AMBIENT_LIGHT: "ambient light",
    EXC_UNRECOGNIZED_SENSOR: "unrecognized sensor",
    EXC_INCOMPATIBLE_SENSOR: "incompatible sensor",
    EXC_LOW_SIGNAL_IQ: "low signal IQ",
    EXC_NO_CABLE: "no patient cable",
    EXC_CABLE_EXPIRED: "cable life expired",
    EXC_INCOMPATIBLE_CABLE: "incompatible cable",
    EXC_UNRECOGNIZED_CABLE: "unrecognized cable",
    EXC_DEFECTIVE_CABLE: "defective cable",
    EXC_SENSOR_CALIBRATING: "sensor calibrating",
    EXC_SENSOR_EXPIRED: "sensor life expired",
}

# Alarm status bits (ALARM), from the MD PnP reader; monitord judges SpO2 and pulse itself, so
# only the battery bit becomes a device alarm.
ALARM_SPO2_HIGH = 0x01
ALARM_SPO2_LOW = 0x02
ALARM_PR_HIGH = 0x04
ALARM_PR_LOW = 0x08
ALARM_ACTIVE = 0x10
ALARM_SILENCED = 0x20
ALARM_LOW_BATTERY = 0x40

REQUIRED = ("SPO2", "BPM", "ALARM", "EXC")

_DATE = re.compile(r"(\d\d)/(\d\d)/(\d\d)")
_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)")
_KEY = re.compile(r"[A-Z][A-Z0-9]{0,15}")
_INT = re.compile(r"(\d{1,3})%?")
_DECIMAL = re.compile(r"(\d{1,2}\.\d{1,2})%?")
_DASHES = re.compile(r"[-+]?-+(\.-+)?%?")
_HEX = re.compile(r"[0-9A-Fa-f]{1,8}")
_LINE_END = re.compile(rb"[\r\n]")


@dataclass(frozen=True, slots=True)
class Record:
    """One line. ``time`` is the oximeter's clock (no time zone); None values: shown as dashes."""

    time: datetime
    spo2: int | None
    pulse: int | None
    pi: float | None
    alarm: int
    exceptions: int
    serial: str | None = None


@dataclass(frozen=True, slots=True)
class LineError:
    kind: str  # encoding | overflow | unframed | time | field | duplicate | missing | value
    detail: str


Decoded = Record | LineError


class _Bad(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _int(key: str, value: str) -> int | None:
    if _DASHES.fullmatch(value):
        return None
    m = _INT.fullmatch(value)
    if m is None:
        raise _Bad("value", f"{key}={value[:20]!r} is not a number")
    return int(m.group(1))


def _percent(value: int | None) -> int | None:
    if value is not None and value > 100:
        raise _Bad("value", f"SPO2={value}: a saturation above 100 %")
    return value


def _pi(value: str) -> float | None:
    if _DASHES.fullmatch(value):
        return None
    m = _DECIMAL.fullmatch(value)
    if m is None:
        raise _Bad("value", f"PI={value[:20]!r} is not a decimal")
    return float(m.group(1))


def _hex(key: str, value: str) -> int:
    if not _HEX.fullmatch(value):
        raise _Bad("value", f"{key}={value[:20]!r} is not hexadecimal")
    return int(value, 16)


def _time(date: str, clock: str) -> datetime:
    d, t = _DATE.fullmatch(date), _TIME.fullmatch(clock)
    if d is None or t is None:
        raise _Bad("time", f"no date and time at the start ({date[:10]!r} {clock[:10]!r})")
    month, day, year = (int(x) for x in d.groups())
    hour, minute, second = (int(x) for x in t.groups())
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise _Bad("time", f"{date} {clock}: {exc}") from None


def _fields(tokens: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    pending: str | None = None  # a key whose value came after a space ("PIDELTA= 02")
    for tok in tokens:
        key, eq, value = tok.partition("=")
        if not eq:
            if pending is None:
                raise _Bad("field", f"{tok[:20]!r} is not KEY=VALUE")
            out[pending], pending = tok, None
            continue
        if not _KEY.fullmatch(key):
            raise _Bad("field", f"{key[:20]!r} is not a field name")
        if key in out:
            raise _Bad("duplicate", f"{key} twice in one line")
        out[key] = value
        pending = key if not value else None
    return out


def parse_line(line: bytes) -> Decoded:
    """One line without its CR/LF -> a record, or the reason it is not one."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return LineError("encoding", "bytes outside ASCII")
    tokens = text.split()
    try:
        if len(tokens) < 2:
            raise _Bad("time", f"line of {len(line)} bytes without a date and time")
        when = _time(tokens[0], tokens[1])
        f = _fields(tokens[2:])
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise _Bad("missing", f"no {', '.join(missing)}")
        serial = f.get("SN")
        return Record(
            time=when,
            spo2=_percent(_int("SPO2", f["SPO2"])),
            pulse=_int("BPM", f["BPM"]),
            pi=_pi(f["PI"]) if "PI" in f else None,
            alarm=_hex("ALARM", f["ALARM"]),
            exceptions=_hex("EXC", f["EXC"]),
            serial=None if serial is None or _DASHES.fullmatch(serial) else serial[:16],
        )
    except _Bad as exc:
        return LineError(exc.kind, str(exc))


# A date-and-time stamp, found also where it overlaps the tail of a cut-off one before it.
_STAMP = re.compile(rb"(?=\d\d/\d\d/\d\d \d\d:\d\d:\d\d(?![\d/:]))")


@dataclass
class LineDecoder:
    """Bytes in, records or counted errors out. Total: ``feed`` never raises.

    A line ends at CR or LF (the oximeter sends CR LF; empty lines are skipped) and is read
    from its last date-and-time stamp: noise before it (a burst on the line, a line cut short)
    is counted as ``unframed`` and the intact line after it still decoded. After ``reset`` (a
    new connection, which can begin mid-line) the first fragment is not counted. Past
    ``max_line`` bytes without a line end only the last ``max_line`` are kept (``overflow``,
    counted once).
    """

    max_line: int = MAX_LINE
    records: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _buf: bytearray = field(default_factory=bytearray)
    _synced: bool = False
    _overflow: bool = False

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def reset(self) -> None:
        self._buf.clear()
        self._synced = False
        self._overflow = False

    def feed(self, chunk: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        if not chunk:
            return out
        parts = _LINE_END.split(bytes(chunk))
        for i, part in enumerate(parts):
            if i == len(parts) - 1:  # no line end yet
                self._buf += part
                if len(self._buf) > self.max_line:
                    self._too_long(out, f"more than {self.max_line} bytes without a line end")
                    del self._buf[: len(self._buf) - self.max_line]
                continue
            if i == 0:
                self._buf += part
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = part
            if line:
                self._line(line, out)
            self._overflow = False
        return out

    def _too_long(self, out: list[Decoded], detail: str) -> None:
        if not self._overflow:
            self._overflow = True
            self._synced = True
            self._error(out, "overflow", detail)

    def _line(self, line: bytes, out: list[Decoded]) -> None:
        if len(line) > self.max_line:
            self._too_long(out, f"line of {len(line)} bytes")
            line = line[-self.max_line :]
        quiet = not self._synced or self._overflow  # a fragment already accounted for
        self._synced = True
        start = None
        for m in _STAMP.finditer(line):
            start = m.start()
        if start is None:
            if not quiet:
                item = parse_line(line)
                self._error(out, item.kind if isinstance(item, LineError) else "time", "no date and time stamp")
            return
        if start > 0 and not quiet:
            self._error(out, "unframed", f"{start} bytes before the time stamp")
        item = parse_line(line[start:])
        if isinstance(item, LineError):
            self._error(out, item.kind, item.detail)
            return
        self.records += 1
        out.append(item)

    def _error(self, out: list[Decoded], kind: str, detail: str) -> None:
        self.errors[kind] += 1
        out.append(LineError(kind, detail))


# --- the oximeter's side ---------------------------------------------------------------------

MODELS = ("rad8", "radical7", "radical5")


def _field(value: float | None, digits: int, decimals: int = 0) -> str:
    if value is None:
        return "-" * digits if not decimals else "-" * (digits - decimals - 1) + "." + "-" * decimals
    if decimals:
        return f"{value:0{digits}.{decimals}f}"
    return f"{round(value):0{digits}d}"


def encode_line(rec: Record, model: str = "rad8") -> bytes:
    """``rec`` as the oximeter ``model`` writes it, CR LF included."""
    stamp = rec.time.strftime("%m/%d/%y %H:%M:%S")
    spo2 = f"SPO2={_field(rec.spo2, 3)}%"
    bpm = f"BPM={_field(rec.pulse, 3)}"
    pi = f"PI={_field(rec.pi, 5, 2)}%"
    if model == "radical5":
        parts = [stamp, spo2, bpm, pi, f"ALARM={rec.alarm:02X}", f"EXC={rec.exceptions:03X}"]
    else:
        sn = f"SN={rec.serial or '-' * 10}"
        extra = ["SPCO=--.-%", "SPMET=--.-%", "DESAT=--", "PIDELTA=+--"]
        if model == "radical7":
            extra.append("PVI=---")
        parts = [stamp, sn, spo2, bpm, pi, *extra, f"ALARM={rec.alarm:04X}", f"EXC={rec.exceptions:06X}"]
    return (" ".join(parts) + "\r\n").encode("ascii")
