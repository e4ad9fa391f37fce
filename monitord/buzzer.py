"""Audible alarm signals: the burst pattern per priority and a player that drives any number of
outputs (the terminal bell, an optional GPIO buzzer on a Raspberry Pi).

Patterns follow IEC 60601-1-8 as quoted in shared/reference/alarm-defaults.md s1: high 10 pulses
repeated every 2.5-15 s, medium 3 pulses every 2.5-30 s, low 1-2 pulses more than 15 s apart.
The repeat intervals chosen inside those ranges are site defaults for approval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pattern:
    pulses: int
    pulse_s: float  # sound on, per pulse
    gap_s: float  # silence between pulses of one burst
    repeat_s: float  # start of one burst to the start of the next


PATTERNS: dict[str, Pattern] = {
    "high": Pattern(10, 0.10, 0.10, 5.0),  # alarm-defaults.md s1: 10 pulses, repeat 2.5-15 s
    "medium": Pattern(3, 0.15, 0.15, 10.0),  # 3 pulses, repeat 2.5-30 s
    "low": Pattern(2, 0.15, 0.20, 20.0),  # 1-2 pulses, > 15 s apart
}


class Output(Protocol):
    def on(self) -> None: ...

    def off(self) -> None: ...


class AlarmSounder:
    """Plays the pattern of ``priority`` until it changes; ``None`` is silence. A change
    (a higher alarm arising, a pause, an acknowledgement) takes effect at once."""

    def __init__(self, outputs: list[Output], sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.outputs = outputs
        self.priority: str | None = None
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def set(self, priority: str | None) -> None:
        if priority not in PATTERNS:
            priority = None
        if priority != self.priority:
            self.priority = priority
            self._changed.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alarm-sounder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._all("off")

    def _all(self, what: str) -> None:
        for out in self.outputs:
            try:
                getattr(out, what)()
            except Exception:  # a broken buzzer must not silence the bell
                log.exception("alarm output %r failed", out)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            prio = self.priority
            if prio is None:
                await self._changed.wait()
                continue
            pattern = PATTERNS[prio]
            began = loop.time()
            for _ in range(pattern.pulses):
                if self.priority != prio:
                    break
                self._all("on")
                await self._sleep(pattern.pulse_s)
                self._all("off")
                await self._sleep(pattern.gap_s)
            if self.priority != prio:
                continue
            rest = pattern.repeat_s - (loop.time() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, rest))


class GpioBuzzer:
    """An active buzzer on a GPIO pin (BCM numbering). Uses gpiozero, else RPi.GPIO; with
    neither (not a Pi) it does nothing and says so once in the log."""

    def __init__(self, pin: int) -> None:
        self.pin = pin
        self._on: Callable[[], None] | None = None
        self._off: Callable[[], None] | None = None
        try:
            from gpiozero import Buzzer

            dev = Buzzer(pin)
            self._on, self._off = dev.on, dev.off
        except Exception as exc:
            try:
                import RPi.GPIO as GPIO

                GPIO.setmode(GPIO.BCM)
                GPIO.setup(pin, GPIO.OUT, initial=GPIO.LOW)
                self._on = lambda: GPIO.output(pin, GPIO.HIGH)
                self._off = lambda: GPIO.output(pin, GPIO.LOW)
            except Exception as exc2:
                log.warning("GPIO buzzer on pin %d not available (%s; %s): terminal bell only", pin, exc, exc2)

    @property
    def available(self) -> bool:
        return self._on is not None

    def on(self) -> None:
        if self._on is not None:
            self._on()

    def off(self) -> None:
        if self._off is not None:
            self._off()
