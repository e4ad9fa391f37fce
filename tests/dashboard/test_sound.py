"""Alarm sound patterns: the pulses per burst for each priority, silence on None, and a
higher alarm taking over at once. Timing runs on a recorded sleep, not the wall clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.widgets import RichLog, Static

from monitord.buzzer import PATTERNS, AlarmSounder, GpioBuzzer, TerminalBell, bell_problem
from monitord.dashboard.app import DashboardApp
from monitord.dashboard.sound import SoundTestModal
from tests.dashboard.test_app import until


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


class Broken(Recorder):
    name = "broken buzzer"

    def on(self) -> None:
        raise OSError("GPIO busy")


async def no_wait(_s: float) -> None:
    await asyncio.sleep(0)


async def test_self_test_plays_every_priority_through_every_output_then_the_alarm_resumes() -> None:
    a, b = Recorder(), Recorder()
    sounder = AlarmSounder([a, b], sleep=no_wait)
    steps: list[str] = []
    states = await sounder.self_test(steps.append)
    assert steps == ["high", "medium", "low"]
    assert a.pulses == b.pulses == 10 + 3 + 2
    assert [s.working for s in states] == [True, True] and not sounder.testing


async def test_an_output_that_fails_does_not_work_until_it_sounds_again() -> None:
    broken, bell = Broken(), Recorder()
    sounder = AlarmSounder([broken, bell], sleep=no_wait)
    states = await sounder.self_test()
    assert bell.pulses == 15  # the broken one did not silence the other
    assert [(s.name, s.working) for s in states] == [("broken buzzer", False), ("Recorder", True)]
    assert states[0].why == "failed: GPIO busy"
    assert sounder.working()
    only = AlarmSounder([Broken()], sleep=no_wait)
    await only.self_test()
    assert not only.working()


def test_the_bell_on_a_console_without_a_pc_speaker_is_silent(tmp_path: Path) -> None:
    assert bell_problem("linux", pc_speaker=(str(tmp_path / "pcspkr"),)) == \
        "the Linux console rings only a PC speaker, and this machine has none"
    (tmp_path / "pcspkr").mkdir()
    assert bell_problem("linux", pc_speaker=(str(tmp_path / "pcspkr"),)) == ""
    assert bell_problem("xterm-256color") == ""
    assert bell_problem(None).startswith("no terminal")
    assert TerminalBell(lambda: None, "x").problem() == "x"
    assert GpioBuzzer(18).problem().startswith("not available")


def sound_banner(app: DashboardApp) -> str:
    widget = app.query_one("#banner-sound", Static)
    return str(widget.render()) if widget.has_class("-on") else ""


def quiet_app(outputs: list[Any], **kw: Any) -> DashboardApp:
    return DashboardApp(connect=False, nurse="RN1", flash=False, sounder=AlarmSounder(outputs, sleep=no_wait), **kw)


async def test_no_alarm_sound_banner_says_why() -> None:
    console_bell = TerminalBell(lambda: None, bell_problem("linux", pc_speaker=()))
    app = quiet_app([console_bell, GpioBuzzer(18)])
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: bool(sound_banner(app)), "the banner")
        text = sound_banner(app)
    assert text.startswith("NO ALARM SOUND: terminal bell: the Linux console rings only a PC speaker")
    assert "GPIO buzzer (pin 18): not available" in text and text.endswith("- b: sound test")
    off = DashboardApp(connect=False, nurse="RN1", flash=False, sound=False)
    async with off.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: bool(sound_banner(off)), "the banner")
        assert sound_banner(off) == "NO ALARM SOUND: sound turned off (--no-sound)"
    working = quiet_app([Recorder()])
    async with working.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert sound_banner(working) == ""


async def test_sound_test_key_plays_and_an_unheard_test_means_no_sound() -> None:
    out = Recorder()
    app = quiet_app([out])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, SoundTestModal) and app.screen.done, "the test to play")
        shown = "\n".join(str(w.render()) for w in app.screen.query(Static))
        assert "Did you hear three bursts of beeps (10, then 3, then 2)?" in shown
        assert "Recorder: played high, medium, low" in shown
        assert out.pulses == 15
        await pilot.press("n")
        await until(pilot, lambda: "was not heard" in sound_banner(app), "the banner")
        assert sound_banner(app).startswith("NO ALARM SOUND: the sound test at ")
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, SoundTestModal) and app.screen.done, "the test again")
        await pilot.press("y")
        await until(pilot, lambda: sound_banner(app) == "", "the banner to go")
        log = "\n".join(str(line.text) for line in app.query_one("#events", RichLog).lines)
        assert "Sound test NOT HEARD (Recorder ok) (this screen)" in log and "Sound test heard (Recorder ok)" in log
    assert out.pulses == 30
