"""Screenshots of the main screen at the Pi console size (80x24) and a larger screen (120x40),
in normal, medium-alarm and high-alarm states. The data is a real engine's output on a
FakeClock, injected into an unconnected app with a frozen clock and flashing off, so every
run draws the same screen. Update with ``pytest tests/dashboard --snapshot-update`` and look
at the SVGs before committing them."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot

from monitord import readings as r
from monitord.buzzer import AlarmSounder
from monitord.clock import FakeClock
from monitord.config import load_config
from monitord.dashboard.app import DashboardApp
from monitord.dashboard.widgets import AlarmList
from monitord.engine import Engine
from monitord.link.server import DashboardServer
from monitord.loop import RuleLoop

V = r.Vital


def bed_data(state: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(hello, snapshot, log events) of ``bed_run``."""
    hello, snapshot, events, _ = bed_run(state)
    return hello, snapshot, events


def bed_run(state: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(hello, snapshot, log events, estimate curve) after 20 min of a running infusion planned
    for 4 h, then ``state``: ``normal``; ``medium`` (HR high); ``high`` (and SpO2 critical);
    ``crisis``: an ICU bed at 3 mg/kg/h (the soft dose limit's long message) whose vitals all go
    wrong: seven alarms, more than the list holds at 80x24; ``stopped``: stopped after the 20 min
    and observed for 30 min, escort confirmed, the observation due 15 min after stop not made."""
    overrides: dict[str, Any] = {"mqtt": {"enabled": False}}
    if state == "crisis":
        overrides["bed"] = {"care_area": "icu"}
    config = load_config(overrides=overrides)
    clock = FakeClock()
    engine = Engine(config, clock)
    server = DashboardServer(config, engine, RuleLoop(engine, 1.0), socket_path="/nonexistent/unused.sock")
    events: list[dict[str, Any]] = []
    engine.subscribe(lambda e: events.append(e.to_dict()))
    engine.submit(r.Admit("P-1001", 70.0, 45, "RN12"))
    engine.submit(r.SetOrder("ketamine", 1.0, 35.0, "RN12", syringe_ml=50.0, planned_duration_min=240.0))
    engine.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in engine.config.checklist}, "RN12"))
    for i in range(41):  # every 30 s for 20 min
        engine.submit(r.VitalsReading("monitor", {V.HR: 72 + (i * 7) % 9, V.SPO2: 97 + i % 2, V.RR: 14 + i % 3,
                                                  V.ETCO2: 37 + i % 4}))
        engine.submit(r.PumpReading("pump", r.PumpState.RUNNING, 35.0, i * 0.3, drug="ketamine",
                                    concentration_mg_ml=1.0, syringe_ml=50.0))
        if i % 10 == 0:
            engine.submit(r.VitalsReading("monitor", {V.SBP: 122 + i // 10, V.DBP: 78, V.MAP: 93}))
        if i == 1:
            engine.submit(r.CaptureBaseline("RN12"))
            engine.submit(r.StartInfusion("RN12"))
        if i == 30:
            engine.submit(r.SedationScore(r.SedationScale.RASS, -1, "RN12"))
            engine.submit(r.PainScore(4, "RN12"))
        if i < 40:
            clock.advance(30)
    if state in ("medium", "high"):
        for _ in range(3):
            clock.advance(6)
            engine.submit(r.VitalsReading("monitor", {V.HR: 131, V.SPO2: 80 if state == "high" else 96, V.RR: 14,
                                                      V.ETCO2: 38}))
    if state == "crisis":
        # 3 mg/kg/h at 70 kg: the nurse confirmed the dose the engine showed.
        engine.submit(r.SetOrder("ketamine", 1.0, 210.0, "RN12", syringe_ml=50.0, confirm=True))
        for i in range(6):
            clock.advance(6)
            engine.submit(r.PumpReading("pump", r.PumpState.RUNNING, 210.0, 12.0 + i * 0.35, drug="ketamine",
                                        concentration_mg_ml=1.0, syringe_ml=50.0))
            engine.submit(r.VitalsReading("monitor", {V.HR: 131, V.SPO2: 80, V.RR: 6, V.ETCO2: 62, V.SBP: 190,
                                                      V.DBP: 80, V.MAP: 110}))
    if state == "stopped":
        engine.submit(r.PumpReading("pump", r.PumpState.STOPPED, 0.0, 12.0, drug="ketamine", concentration_mg_ml=1.0,
                                    syringe_ml=50.0))
        engine.submit(r.StopInfusion("RN12", reason="course complete"))
        engine.submit(r.EscortConfirmed("RN12", name="partner"))
        for i in range(60):  # every 30 s for 30 min
            clock.advance(30)
            engine.submit(r.PumpReading("pump", r.PumpState.STOPPED, 0.0, 12.0, drug="ketamine",
                                        concentration_mg_ml=1.0, syringe_ml=50.0))
            engine.submit(r.VitalsReading("monitor", {V.HR: 74, V.SPO2: 98, V.RR: 14, V.ETCO2: 38}
                                          | ({V.SBP: 124, V.DBP: 78, V.MAP: 93} if i % 10 == 0 else {})))
    logged = [e for e in events if e["kind"] not in ("vitals", "infusion")]
    return server.hello(), engine.snapshot(), logged, server.estimate_curve()


class QuietOutput:
    """A sound output that works and makes no noise (the screenshots show a bed with sound)."""

    name = "test output"

    def on(self) -> None:
        pass

    def off(self) -> None:
        pass


def app_with(state: str, console: bool = False) -> tuple[DashboardApp, Any]:
    hello, snapshot, events, curve = bed_run(state)
    app = DashboardApp(connect=False, nurse="RN12", clock=lambda: 50_000.0, flash=False,
                       sounder=AlarmSounder([QuietOutput()]), console=console)

    async def inject(pilot: Pilot[Any]) -> None:
        app.apply_hello(hello)
        app.apply_estimate_curve(curve)
        app.apply_snapshot(snapshot)
        for ev in events:
            app.apply_event(ev)
        await pilot.pause()
        await pilot.pause()  # the course and the alarm list settle their rows after a layout

    return app, inject


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("state", ["normal", "medium", "high", "crisis", "stopped"])
def test_main_screen(snap_compare: Any, state: str, size: tuple[int, int]) -> None:
    app, inject = app_with(state)
    assert snap_compare(app, terminal_size=size, run_before=inject)


def test_console_screen_with_high_alarm(snap_compare: Any) -> None:
    """The Pi's Linux console (``--console``, TERM=linux) at its 80x24: ASCII only."""
    app, inject = app_with("high", console=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=inject)


async def test_console_screen_draws_only_ascii() -> None:
    """The Linux console's 16-colour font lacks box-drawing and block glyphs: every character
    on the console screen must be plain ASCII, and priority must read as symbol and word."""
    app, inject = app_with("high", console=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        console = Console(width=80, height=24, file=io.StringIO(), record=True, legacy_windows=False)
        console.print(app.screen._compositor.render_update(full=True))
        screen = console.export_text()
    odd = sorted({ch for ch in screen if not (ch.isascii() and (ch.isprintable() or ch == "\n"))})
    assert odd == [], f"non-ASCII on the console screen: {odd}"
    assert "!!! HIGH" in screen and "SPO2 80 %" in screen


def screen_text(app: DashboardApp) -> list[str]:
    """The screen as the nurse reads it: one string per row, no colours."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text().splitlines()


def alarm_text(app: DashboardApp) -> str:
    """The alarm list's rows joined with single spaces: a wrapped message reads as one line."""
    region = app.query_one(AlarmList).content_region
    rows = screen_text(app)[region.y: region.bottom]
    return " ".join(" ".join(row[region.x: region.right].split()) for row in rows)


DOSE_MESSAGE = "Dose 3 mg/kg/h exceeds 2 mg/kg/h: record a physician override"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_every_alarm_message_can_be_read_in_full(size: tuple[int, int]) -> None:
    """Seven alarms, some with long messages: the highest stays on screen whole, the selected
    one is always whole (here the soft dose limit, longer than the list is wide), and what does
    not fit is counted, not silently dropped; vitals and pump stay on screen."""
    app, inject = app_with("crisis")
    _, snapshot, _ = bed_data("crisis")
    messages = [a["message"] for a in snapshot["alarms"]]
    assert DOSE_MESSAGE in messages and len(messages) == 7
    async with app.run_test(size=size) as pilot:
        await inject(pilot)
        await pilot.pause()
        if size == (80, 24):  # the message is longer than the list is wide
            assert len(DOSE_MESSAGE) + AlarmList.INDENT > app.query_one(AlarmList).content_region.width
        assert f"!!! HIGH {messages[0]}" in alarm_text(app)
        for _ in range(messages.index(DOSE_MESSAGE)):
            await pilot.press("down")
        await pilot.pause()
        shown = alarm_text(app)
        assert f"!! MEDIUM {DOSE_MESSAGE}" in shown and f"!!! HIGH {messages[0]}" in shown
        on_screen = sum(m in shown for m in messages)
        # Each alarm is whole, cut to one line ending in "...", or counted in "+N more".
        hidden = sum(m[:20] not in shown for m in messages)
        if hidden:
            assert f"+{hidden} more" in shown
        else:
            assert "more (up/down)" not in shown
        screen = "\n".join(screen_text(app))
    for text in ("HR", "NIBP", "SpO2", "RR", "EtCO2", "(110) 0s ago", "PUMP RUNNING", "3.00 mg/kg/h", "Event log"):
        assert text in screen, text
    if size == (120, 40):
        assert on_screen == len(messages)  # room for every alarm


@pytest.mark.parametrize(("size", "lines"), [((80, 24), 1), ((120, 40), 3)], ids=["80x24", "120x40"])
async def test_trends_use_the_height_a_large_screen_has(size: tuple[int, int], lines: int) -> None:
    app, inject = app_with("high")
    async with app.run_test(size=size) as pilot:
        await inject(pilot)
        await pilot.pause()
        for tile in ("hr", "spo2"):
            trend = app.query_one(f"#tile-{tile} .tile-trend")
            rows = str(trend.render()).split("\n")
            assert trend.size.height == lines and len(rows) == lines
            assert any(ch != " " for ch in rows[-1])  # the bottom row carries every bar's foot


def test_snapshot_states_differ_as_intended() -> None:
    """Guards the fixtures themselves: the three states show what their names say."""
    _, normal, _ = bed_data("normal")
    _, medium, _ = bed_data("medium")
    _, high, _ = bed_data("high")
    assert normal["alarms"] == []
    assert [a["priority"] for a in medium["alarms"]] == ["medium"]
    assert high["alarms"][0]["priority"] == "high" and high["audio"]["sounding"] == "high"
