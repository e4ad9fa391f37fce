"""Injected time: monotonic seconds for durations, UTC datetimes for records.

Everything that needs time takes a ``Clock``; tests use ``FakeClock`` so a four-hour
infusion runs in a second and a wall-clock jump can be simulated without touching durations.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (durations, timeouts, delays)."""

    def utc_now(self) -> datetime:
        """Timezone-aware wall time for records; may jump."""

    def wall_synchronized(self) -> bool:
        """Whether the wall clock is known to be synchronised (NTP)."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def utc_now(self) -> datetime:
        return datetime.now(UTC)

    def wall_synchronized(self) -> bool:
        return clock_synchronized()


class FakeClock:
    """A clock tests advance by hand. Monotonic and wall time move together unless jumped."""

    def __init__(self, start: datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._mono = monotonic_start
        self._wall = start or datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
        self.synchronized = True

    def monotonic(self) -> float:
        return self._mono

    def utc_now(self) -> datetime:
        return self._wall

    def wall_synchronized(self) -> bool:
        return self.synchronized

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("monotonic time cannot go backwards")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock only (an NTP correction or a bad RTC), as a real system can."""
        self._wall += timedelta(seconds=seconds)


def clock_synchronized() -> bool:
    """Ask the kernel whether NTP has synchronised the clock (adjtimex STA_UNSYNC clear)."""
    try:
        import ctypes
        import ctypes.util

        class Timex(ctypes.Structure):
            _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_byte * 508)]

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = Timex()
        state = libc.adjtimex(ctypes.byref(tx))
        # TIME_ERROR (5): not synchronised; -1: the call failed (e.g. a seccomp filter), so unknown.
        return state not in (-1, 5)
    except Exception:
        return False
