"""Alarm sound patterns: the pulses per burst for each priority, silence on None, and a
higher alarm taking over at once. Timing runs on a recorded sleep, not the wall clock."""

from __future__ import annotations

import asyncio

from monitord.buzzer import PATTERNS, AlarmSounder, GpioBuzzer


class Recorder:
    def __init__(self) -> None:
        self.pulses = 0
        self.on_now = False

    def on(self) -> None:
        self.pulses += 1
        self.on_now = True

    def off(self) -> None:
        self.on_now = False


async def burst(priority: str) -> int:
    """Pulses played in one burst of ``priority`` (the sleep only yields)."""
    out = Recorder()
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        await asyncio.sleep(0)

    sounder = AlarmSounder([out], sleep=sleep)
    sounder.set(priority)
    sounder.start()
    while len(slept) < 2 * PATTERNS[priority].pulses:
        await asyncio.sleep(0)
    sounder.set(None)
    await sounder.stop()
    assert not out.on_now
    return out.pulses


async def test_pulses_per_priority_follow_iec_bursts() -> None:
    assert await burst("high") == 10
    assert await burst("medium") == 3
    assert await burst("low") == 2


async def test_silence_and_takeover() -> None:
    out = Recorder()
    gate = asyncio.Event()

    async def sleep(s: float) -> None:
        await gate.wait()

    sounder = AlarmSounder([out], sleep=sleep)
    sounder.start()
    await asyncio.sleep(0.01)
    assert out.pulses == 0  # nothing sounding: silent
    sounder.set("low")
    await asyncio.sleep(0.01)
    assert out.pulses == 1
    sounder.set("high")  # a higher alarm during the low burst
    gate.set()
    for _ in range(200):
        await asyncio.sleep(0)
        if out.pulses >= 11:
            break
    assert sounder.priority == "high" and out.pulses >= 11
    await sounder.stop()


def test_buzzer_without_gpio_is_a_quiet_no_op() -> None:
    buzzer = GpioBuzzer(18)
    assert not buzzer.available  # no GPIO library on a test machine
    buzzer.on()
    buzzer.off()
