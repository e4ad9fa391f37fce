"""HL7 v2 encoding (ER7: ``|`` fields, ``^`` components, ``&`` subcomponents, ``~`` repeats),
MLLP framing and acknowledgement parsing (with hl7apy)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime

ENCODING = "^~\\&"
START, END = b"\x0b", b"\x1c\r"  # MLLP: <VT> message <FS><CR>
FRAME_MAX = 1 << 20  # an ACK or a PCD message is a few kB; anything this large is garbage
_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\",
                          "\r": " ", "\n": " "})


def esc(value: object) -> str:
    """A value as HL7 text: delimiters escaped, line breaks turned into spaces."""
    return "" if value is None else str(value).translate(_ESCAPES)


def _join(sep: str, parts: tuple[object, ...], escape: bool) -> str:
    items = [esc(p) if escape else ("" if p is None else str(p)) for p in parts]
    while items and not items[-1]:
        items.pop()
    return sep.join(items)


def comp(*parts: object) -> str:
    """Components of one field (each escaped), trailing empty ones dropped."""
    return _join("^", parts, True)


def sub(*parts: object) -> str:
    """Subcomponents of one component (each escaped)."""
    return _join("&", parts, True)


def segment(name: str, *fields: object) -> str:
    """One segment from already-encoded fields, trailing empty fields dropped."""
    return _join("|", (name, *fields), False)


def message(*segments: str) -> str:
    return "".join(s + "\r" for s in segments)


def num(value: float) -> str:
    """A number for an NM field: plain decimal notation, no exponent, no trailing zeros."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def ts(when: datetime | str) -> str:
    """A DTM in UTC with milliseconds: ``20260101080000.000+0000``."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    when = when.astimezone(UTC)
    return when.strftime("%Y%m%d%H%M%S") + f".{when.microsecond // 1000:03d}+0000"


def frame(text: str) -> bytes:
    return START + text.encode("utf-8") + END


async def read_frame(reader: asyncio.StreamReader) -> str:
    """The next MLLP frame's content; bytes before the start block are skipped."""
    data = await reader.readuntil(END)
    if len(data) > FRAME_MAX:
        raise ValueError("MLLP frame too large")
    start = data.rfind(START)
    if start < 0:
        raise ValueError("MLLP frame without a start block")
    return data[start + 1:-len(END)].decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Ack:
    code: str  # MSA-1: AA/CA accepted, AE/CE error, AR/CR rejected
    control_id: str  # MSA-2: the MSH-10 it answers
    text: str  # MSA-3 and ERR, for the log

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @property
    def rejected(self) -> bool:
        return self.code in ("AR", "CR")


class AckError(ValueError):
    """An answer that is not an HL7 acknowledgement."""


def parse_ack(text: str) -> Ack:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    try:
        msg = parse_message(text.replace("\n", "\r").strip("\r"), validation_level=VALIDATION_LEVEL.TOLERANT,
                            find_groups=False)
        msa = msg.msa
        code = str(msa.msa_1.value or "").strip()
        control = str(msa.msa_2.value or "").strip()
        detail = [str(msa.msa_3.value or "")] if msa.msa_3.value else []
        detail += [e.to_er7() for e in msg.children if e.name == "ERR"]
    except Exception as exc:
        raise AckError(f"not an HL7 acknowledgement: {exc}") from exc
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise AckError(f"unknown acknowledgement code {code!r}")
    return Ack(code, control, "; ".join(detail))
