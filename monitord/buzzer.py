"""Audible alarm signals: the burst pattern per priority and a player that drives any number of
outputs (the terminal bell, an optional GPIO buzzer on a Raspberry Pi).

Patterns follow IEC 60601-1-8 as quoted in shared/reference/alarm-defaults.md s1: high 10 pulses
repeated every 2.5-15 s, medium 3 pulses every 2.5-30 s, low 1-2 pulses more than 15 s apart.
The repeat intervals chosen inside those ranges are site defaults for approval.

An output *works* when it could be opened, can make a sound where it is (``problem()`` is empty)
and its last use raised no error. The player says which outputs work (``status``) so the screen
can say NO ALARM SOUND when none does, and plays every pattern once for a test (``self_test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import logging
import os
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
    """A sound output. It may also have ``name`` (str) and ``problem()`` (why it cannot sound
    here, empty when it can); without them it is named by its class and assumed able to."""

    def on(self) -> None: ...

    def off(self) -> None: ...


def output_name(out: Output) -> str:
    return str(getattr(out, "name", type(out).__name__))


def output_problem(out: Output) -> str:
    problem = getattr(out, "problem", None)
    return str(problem()) if callable(problem) else ""


@dataclass(frozen=True, slots=True)
class OutputState:
    name: str
    working: bool
    why: str  # why it does not work (empty when it does)


class AlarmSounder:
    """Plays the pattern of ``priority`` until it changes; ``None`` is silence. A change
    (a higher alarm arising, a pause, an acknowledgement) takes effect at once."""

    def __init__(self, outputs: list[Output], sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.outputs = outputs
        self.priority: str | None = None
        self.testing = False  # a self-test is playing: the alarm pattern waits
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failed: dict[int, str] = {}  # id(output) -> its last error

    def set(self, priority: str | None) -> None:
        if priority not in PATTERNS:
            priority = None
        if priority != self.priority:
            self.priority = priority
            self._changed.set()

    def status(self) -> list[OutputState]:
        out = []
        for o in self.outputs:
            why = output_problem(o) or self._failed.get(id(o), "")
            out.append(OutputState(output_name(o), not why, why))
        return out

    def working(self) -> bool:
        """Whether at least one output can sound."""
        return any(s.working for s in self.status())

    def _playing(self) -> str | None:
        return None if self.testing else self.priority

    def _still(self, prio: str) -> bool:
        return self._playing() == prio

    async def self_test(self, on_step: Callable[[str], None] | None = None, pause_s: float = 1.0) -> list[OutputState]:
        """Play one burst of each priority (high, medium, low) through every output, ``pause_s``
        apart; the alarm pattern resumes after. Returns each output's state after the test."""
        self.testing = True
        self._changed.set()
        try:
            for prio in ("high", "medium", "low"):
                if on_step is not None:
                    on_step(prio)
                await self._burst(PATTERNS[prio], lambda: True)
                await self._sleep(pause_s)
        finally:
            self.testing = False
            self._changed.set()
        return self.status()

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
            except Exception as exc:  # a broken buzzer must not silence the bell
                if id(out) not in self._failed:
                    log.exception("alarm output %s failed", output_name(out))
                self._failed[id(out)] = f"failed: {exc}"[:200]
            else:
                if what == "on" and self._failed.pop(id(out), None) is not None:
                    log.warning("alarm output %s works again", output_name(out))

    async def _burst(self, pattern: Pattern, go_on: Callable[[], bool]) -> None:
        for _ in range(pattern.pulses):
            if not go_on():
                return
            self._all("on")
            await self._sleep(pattern.pulse_s)
            self._all("off")
            await self._sleep(pattern.gap_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            prio = self._playing()
            if prio is None:
                await self._changed.wait()
                continue
            pattern = PATTERNS[prio]
            began = loop.time()
            await self._burst(pattern, functools.partial(self._still, prio))
            if self._playing() != prio:
                continue
            rest = pattern.repeat_s - (loop.time() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, rest))


# The Linux console sounds its bell on a PC speaker only (the kernel's pcspkr input device); a
# Raspberry Pi has none, and an HDMI monitor's speakers never hear it.
PC_SPEAKER = ("/sys/module/pcspkr", "/dev/input/by-path/*pcspkr*")


def bell_problem(term: str | None, pc_speaker: tuple[str, ...] = PC_SPEAKER) -> str:
    """Why the terminal bell cannot sound here (empty when it can, as far as can be told)."""
    if not term or term == "dumb":
        return "no terminal to ring (TERM is not set)"
    if term == "linux" and not any(glob.glob(p) if "*" in p else os.path.exists(p) for p in pc_speaker):
        return "the Linux console rings only a PC speaker, and this machine has none"
    return ""


class TerminalBell:
    """The terminal's bell (BEL). Whether anyone hears it depends on the terminal: see
    ``bell_problem`` for the cases known to be silent."""

    name = "terminal bell"

    def __init__(self, ring: Callable[[], None], problem: str = "") -> None:
        self._ring = ring
        self._problem = problem

    def problem(self) -> str:
        return self._problem

    def on(self) -> None:
        self._ring()

    def off(self) -> None:
        pass


class GpioBuzzer:
    """An active buzzer on a GPIO pin (BCM numbering). Uses gpiozero, else RPi.GPIO; with
    neither (not a Pi) it does nothing and says so once in the log and in ``problem()``."""

    def __init__(self, pin: int) -> None:
        self.pin = pin
        self.name = f"GPIO buzzer (pin {pin})"
        self._why = ""
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
                self._why = f"not available: gpiozero: {exc}; RPi.GPIO: {exc2}"[:200]
                log.warning("GPIO buzzer on pin %d not available (%s; %s): terminal bell only", pin, exc, exc2)

    @property
    def available(self) -> bool:
        return self._on is not None

    def problem(self) -> str:
        return self._why

    def on(self) -> None:
        if self._on is not None:
            self._on()

    def off(self) -> None:
        if self._off is not None:
            self._off()
