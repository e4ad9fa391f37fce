"""The system clock's NTP check runs on every emitted event: it must be a plain system call."""

from __future__ import annotations

import ctypes.util
import subprocess
from typing import Any

import pytest

from monitord import clock
from monitord.clock import SystemClock, clock_synchronized


def test_sync_check_spawns_nothing_and_looks_libc_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock._adjtimex.cache_clear()
    lookups: list[Any] = []
    monkeypatch.setattr(ctypes.util, "find_library", lambda *a: lookups.append(a) or None)

    def no_process(*a: Any, **kw: Any) -> None:
        raise AssertionError("the clock check started a process")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    answers = {clock_synchronized() for _ in range(1000)}
    assert len(answers) == 1 and isinstance(answers.pop(), bool)
    assert not lookups
    assert clock._adjtimex.cache_info().misses == 1


def test_system_clock_asks_the_kernel_at_most_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    answer = [True]

    def fake() -> bool:
        calls.append(1)
        return answer[0]

    now = [100.0]
    monkeypatch.setattr(clock, "clock_synchronized", fake)
    monkeypatch.setattr(clock.time, "monotonic", lambda: now[0])
    c = SystemClock(sync_ttl_s=1.0)
    assert all(c.wall_synchronized() for _ in range(500))
    assert len(calls) == 1
    answer[0] = False  # NTP lost: seen within the TTL
    now[0] += 0.5
    assert c.wall_synchronized() is True
    now[0] += 0.6
    assert c.wall_synchronized() is False
    assert len(calls) == 2
