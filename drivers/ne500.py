"""Wire format of the New Era NE-500 / NE-1000 family RS-232 protocol (both directions).

Facts from the published New Era manuals (NE-500 publication 1200-02, NE-1000 1200-01,
section "RS-232 Protocol"):

- Basic mode. To the pump: ``[address] command [parameters] CR``; the pump strips spaces and
  control characters and upper-cases. From the pump: ``STX address status [data] ETX``. The
  address in replies is two digits.
- Safe mode. Both directions: ``STX length data CRC-hi CRC-lo ETX``; ``length`` counts the bytes
  after STX (itself, data, CRC, ETX); the CRC is the 16-bit CCITT CRC (polynomial 0x1021,
  initial value 0, i.e. CRC-16/XMODEM) of ``data``. The manual's example: ``SAF0`` -> 0x5543.
- Status: a prompt (I infusing, W withdrawing, S stopped, P paused, T pause phase, U user wait,
  X purging) or an alarm ``A?`` + type (R reset, S motor stalled, T safe-mode time-out,
  E program error, O phase out of range). An alarm replaces the reply to the command that
  reported it; reporting it acknowledges it.
- Errors follow the prompt: ``?`` (not recognised), ``?NA`` (not applicable now), ``?OOR``
  (out of range), ``?COM`` (bad packet), ``?IGN`` (ignored, new phase started).
- Query replies: ``RAT`` -> ``<float><UM|MM|UH|MH>``, ``VOL`` -> ``<float><UL|ML>``,
  ``DIS`` -> ``I<float>W<float><UL|ML>``, ``DIA`` -> ``<float>`` (mm), ``DIR`` -> ``INF|WDR``.

Decoding is total: any bytes give a ``Reply`` or raise ``ProtocolError`` (never anything else).
The host side can only encode the queries and the stop command below: there is no way to build
a rate-setting command with ``encode_command``.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from enum import StrEnum

from monitord.drivers.base import ProtocolError

STX, ETX, CR = 0x02, 0x03, 0x0D
MAX_DATA = 64  # longest reply data we accept (the pump's are < 20 characters)


class Prompt(StrEnum):
    INFUSING = "I"
    WITHDRAWING = "W"
    STOPPED = "S"
    PAUSED = "P"
    PAUSE_PHASE = "T"
    USER_WAIT = "U"
    PURGING = "X"


class Alarm(StrEnum):
    RESET = "R"
    STALLED = "S"
    COMMS_TIMEOUT = "T"
    PROGRAM_ERROR = "E"
    OUT_OF_RANGE = "O"


class CommandError(StrEnum):
    NOT_RECOGNISED = ""
    NOT_APPLICABLE = "NA"
    OUT_OF_RANGE = "OOR"
    BAD_PACKET = "COM"
    IGNORED = "IGN"


class Query(StrEnum):
    """Commands monitord sends without parameters: each reads a value."""

    STATUS = ""
    RATE = "RAT"
    DISPENSED = "DIS"
    DIAMETER = "DIA"
    VOLUME = "VOL"
    DIRECTION = "DIR"
    VERSION = "VER"


class Action(StrEnum):
    """The only action monitord can send. First STP pauses a running program, a second stops it."""

    STOP = "STP"


@dataclass(frozen=True, slots=True)
class Reply:
    address: int
    prompt: Prompt | None  # None when the status is an alarm
    alarm: Alarm | None
    data: str = ""
    error: CommandError | None = None


def crc16(data: bytes) -> int:
    """16-bit CCITT CRC as the pump computes it (CRC-16/XMODEM)."""
    return binascii.crc_hqx(data, 0)


def _safe_packet(data: bytes) -> bytes:
    return bytes([STX, len(data) + 4]) + data + crc16(data).to_bytes(2, "big") + bytes([ETX])


# --- host side ------------------------------------------------------------------------------


def encode_command(address: int, command: Query | Action, *, safe: bool = False) -> bytes:
    if not 0 <= address <= 99:
        raise ValueError("NE-500 address is 0..99")
    data = f"{address}{command.value}".encode("ascii")
    return _safe_packet(data) if safe else data + b"\r"


def encode_comm_timeout(address: int, seconds: int) -> bytes:
    """``SAF<n>`` in safe mode: the pump stops itself (alarm ``A?T``) when no valid packet arrives
    for ``n`` seconds (manual 8.3.3); ``SAF0`` returns it to basic mode. The one setting monitord
    writes, and only as the interlock's heartbeat."""
    if not 0 <= address <= 99:
        raise ValueError("NE-500 address is 0..99")
    if not 1 <= seconds <= 255:
        raise ValueError("NE-500 communications time-out is 1..255 s")
    return _safe_packet(f"{address}SAF{seconds}".encode("ascii"))


def reply_complete(buf: bytes, *, safe: bool = False) -> bool:
    """Whether ``buf`` holds at least one whole reply frame (or is hopeless garbage)."""
    return bool(split_frames(buf, safe=safe)[0])


def split_frames(buf: bytes, *, safe: bool = False) -> tuple[list[bytes], bytes]:
    """Cut a byte stream into candidate frames and the unfinished remainder.

    Bytes before an STX are returned as a frame of their own (so they are counted as garbage).
    """
    frames: list[bytes] = []
    i = 0
    n = len(buf)
    while i < n:
        start = buf.find(STX, i)
        if start < 0:
            frames.append(buf[i:])
            return frames, b""
        if start > i:
            frames.append(buf[i:start])
        if safe:
            if start + 1 >= n:
                return frames, buf[start:]
            end = start + 1 + buf[start + 1]
            if buf[start + 1] < 4:
                frames.append(buf[start : start + 2])
                i = start + 2
                continue
            if end > n:
                return frames, buf[start:]
            frames.append(buf[start:end])
            i = end
        else:
            stop = buf.find(ETX, start + 1)
            nxt = buf.find(STX, start + 1)
            if stop < 0 or (0 <= nxt < stop):
                if nxt < 0:
                    if n - start > MAX_DATA + 8:  # too long to ever be a reply
                        frames.append(buf[start:])
                        return frames, b""
                    return frames, buf[start:]
                frames.append(buf[start:nxt])  # a new frame began before this one ended
                i = nxt
                continue
            frames.append(buf[start : stop + 1])
            i = stop + 1
    return frames, b""


_REPLY = re.compile(rb"(\d{1,2})(?:([IWSPTUX])|A\?([RSTEO]))(.*)", re.DOTALL)


def decode_reply(frame: bytes, *, safe: bool = False) -> Reply:
    """One whole frame from the pump -> ``Reply``; anything else raises ``ProtocolError``."""
    if len(frame) < 2 or frame[0] != STX or frame[-1] != ETX:
        raise ProtocolError(f"not a framed reply: {frame[:24]!r}")
    if safe:
        if len(frame) < 5 or frame[1] != len(frame) - 1:
            raise ProtocolError(f"safe-mode length byte does not match: {frame[:24]!r}")
        data = frame[2:-3]
        if crc16(data) != int.from_bytes(frame[-3:-1], "big"):
            raise ProtocolError("safe-mode CRC mismatch")
    else:
        data = frame[1:-1]
    if len(data) > MAX_DATA or any(b < 0x20 or b > 0x7E for b in data):
        raise ProtocolError(f"reply holds non-text bytes or is too long: {data[:24]!r}")
    m = _REPLY.fullmatch(data)
    if m is None:
        raise ProtocolError(f"no address and status in reply: {data!r}")
    address = int(m.group(1))
    rest = m.group(4).decode("ascii")
    if m.group(3) is not None:
        if rest:
            raise ProtocolError(f"data after an alarm status: {data!r}")
        return Reply(address, None, Alarm(m.group(3).decode()))
    prompt = Prompt(m.group(2).decode())
    if rest.startswith("?"):
        try:
            return Reply(address, prompt, None, "", CommandError(rest[1:]))
        except ValueError:
            raise ProtocolError(f"unknown error reply {rest!r}") from None
    return Reply(address, prompt, None, rest)


# --- values in replies ---------------------------------------------------------------------

_FLOAT = r"(\d{1,5}(?:\.\d{0,4})?|\.\d{1,4})"
_RATE = re.compile(_FLOAT + r"(UM|MM|UH|MH)")
_VOLUME = re.compile(_FLOAT + r"(UL|ML)")
_DISPENSED = re.compile("I" + _FLOAT + "W" + _FLOAT + r"(UL|ML)")
_DIAMETER = re.compile(_FLOAT)

RATE_TO_ML_H = {"MH": 1.0, "MM": 60.0, "UH": 0.001, "UM": 0.06}
VOLUME_TO_ML = {"ML": 1.0, "UL": 0.001}


def _match(pattern: re.Pattern[str], text: str, what: str) -> re.Match[str]:
    m = pattern.fullmatch(text)
    if m is None:
        raise ProtocolError(f"{what} reply not understood: {text!r}")
    return m


def parse_rate(text: str) -> float:
    """``RAT`` reply data -> mL/h."""
    m = _match(_RATE, text, "RAT")
    return float(m.group(1)) * RATE_TO_ML_H[m.group(2)]


def parse_volume(text: str) -> float:
    """``VOL`` reply data -> mL."""
    m = _match(_VOLUME, text, "VOL")
    return float(m.group(1)) * VOLUME_TO_ML[m.group(2)]


def parse_dispensed(text: str) -> tuple[float, float]:
    """``DIS`` reply data -> (infused mL, withdrawn mL)."""
    m = _match(_DISPENSED, text, "DIS")
    unit = VOLUME_TO_ML[m.group(3)]
    return float(m.group(1)) * unit, float(m.group(2)) * unit


def parse_diameter(text: str) -> float:
    """``DIA`` reply data -> inside diameter, mm."""
    return float(_match(_DIAMETER, text, "DIA").group(1))


# --- device side (simulator) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandFrame:
    address: int | None  # None: no address given
    mnemonic: str  # "" for a status query
    parameter: str


_COMMAND = re.compile(r"(\d{1,2})?([A-Z]{3})?(.*)", re.DOTALL)


def split_commands(buf: bytes, *, safe: bool = False) -> tuple[list[bytes], bytes]:
    """Cut the host's byte stream into command packets (basic: up to CR; safe: STX..ETX)."""
    if safe:
        return split_frames(buf, safe=True)
    parts = buf.split(b"\r")
    return parts[:-1], parts[-1]


def decode_command(packet: bytes, *, safe: bool = False) -> CommandFrame:
    """A host packet -> ``CommandFrame``, as the pump reads it; raises ``ProtocolError``."""
    if safe:
        if len(packet) < 5 or packet[0] != STX or packet[-1] != ETX or packet[1] != len(packet) - 1:
            raise ProtocolError("bad safe-mode packet")
        data = packet[2:-3]
        if crc16(data) != int.from_bytes(packet[-3:-1], "big"):
            raise ProtocolError("safe-mode CRC mismatch")
    else:
        data = packet
    text = bytes(b for b in data if 0x20 < b < 0x7F).decode("ascii").upper()
    m = _COMMAND.fullmatch(text)
    assert m is not None  # every string matches
    address = int(m.group(1)) if m.group(1) else None
    return CommandFrame(address, m.group(2) or "", m.group(3))


def encode_reply(
    address: int,
    status: Prompt | Alarm,
    data: str = "",
    *,
    error: CommandError | None = None,
    safe: bool = False,
) -> bytes:
    body = f"{address:02d}" + (status.value if isinstance(status, Prompt) else f"A?{status.value}")
    if isinstance(status, Prompt):
        body += f"?{error.value}" if error is not None else data
    raw = body.encode("ascii")
    return _safe_packet(raw) if safe else bytes([STX]) + raw + bytes([ETX])


def format_float(value: float) -> str:
    """A number as the pump prints it: at most 4 significant digits and 3 decimals."""
    value = max(0.0, value)
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if len(text.replace(".", "").lstrip("0") or "0") <= 4 or decimals == 0:
            return text
    return f"{value:.0f}"  # pragma: no cover - loop always returns
