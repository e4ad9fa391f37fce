"""What a rule is: a small pure function of bed state, time and config, with its source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from monitord.config import Config, Priority
from monitord.state import BedState


class Kind(StrEnum):
    PHYSIOLOGICAL = "physiological"
    TECHNICAL = "technical"
    ADVISORY = "advisory"


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's condition is present now. ``priority``, where given, is the priority of what is
    present (a merged condition: the highest limit met); else the rule's own."""

    message: str
    value: float | None = None
    priority: Priority | None = None


Check = Callable[[BedState, float, Config], Finding | None]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    priority: Priority
    kind: Kind
    condition: str  # what the rule checks, in words, with its default threshold
    source: str  # guideline section + line + grade, or the named preset
    check: Check
    delay_s: float = 0.0  # alarm-condition delay (persistence filter)
    why_priority: str = ""  # IEC 60601-1-8: record the reason for each rule's priority
    after_stop: bool = True  # keeps watching after Stop, until discharge (guideline lines 990-995)


def fmt(x: float, digits: int = 2) -> str:
    """A number for a message: at most ``digits`` decimals, no trailing zeros."""
    s = f"{x:.{digits}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s
