"""Injected time: monotonic seconds for durations, UTC datetimes for records.

Everything that needs time takes a ``Clock``; tests use ``FakeClock`` so a four-hour
infusion runs in a second and a wall-clock jump can be simulated without touching durations.
"""

from __future__ import annotations

import ctypes
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (durations, timeouts, delays)."""

    def utc_now(self) -> datetime:
        """Timezone-aware wall time for records; may jump."""

    def wall_synchronized(self) -> bool:
        """Whether the wall clock is known to be synchronised (NTP)."""


class SystemClock:
    """``wall_synchronized`` is asked for every event: the kernel's answer is kept ``sync_ttl_s``
    (NTP changes the state over minutes, so a second's staleness tells nothing new)."""

    def __init__(self, sync_ttl_s: float = 1.0) -> None:
        self.sync_ttl_s = sync_ttl_s
        self._sync_checked = float("-inf")
        self._synced = False

    def monotonic(self) -> float:
        return time.monotonic()

    def utc_now(self) -> datetime:
        return datetime.now(UTC)

    def wall_synchronized(self) -> bool:
        now = time.monotonic()
        if now - self._sync_checked >= self.sync_ttl_s:
            self._synced = clock_synchronized()
            self._sync_checked = now
        return self._synced


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


class _Timex(ctypes.Structure):
    # struct timex is 208 bytes on 64-bit Linux; the padding leaves room for any ABI.
    _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_byte * 508)]


@functools.cache
def _adjtimex() -> Callable[[Any], int] | None:
    """libc's adjtimex, looked up once. ``CDLL(None)`` is the running process, which has libc
    loaded: no ``find_library`` (it spawns ``ldconfig -p``, milliseconds per call)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_Timex)]
    fn.restype = ctypes.c_int
    return cast(Callable[[Any], int], fn)


def clock_synchronized() -> bool:
    """Ask the kernel whether NTP has synchronised the clock (adjtimex STA_UNSYNC clear).

    A read-only ``adjtimex`` (modes 0): one system call, microseconds, never blocks."""
    fn = _adjtimex()
    if fn is None:
        return False
    try:
        state = fn(ctypes.byref(_Timex()))
    except Exception:
        return False
    # TIME_ERROR (5): not synchronised; -1: the call failed (e.g. a seccomp filter), so unknown.
    return state not in (-1, 5)
