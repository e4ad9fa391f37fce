"""Dialogs at the Pi console's 80x24: they never hide the alarms (short ones sit under the alarm
list, every one shows the top alarm in its first line), draw only ASCII on the Linux console, and
wrap the checklist's questions instead of cutting them. Also: trend tiles with a scale that noise
does not fill, trends that start again with a new patient, and staff id changes that are logged."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console
from textual.widgets import RichLog

from monitord import readings as r
from monitord.dashboard import entries, modals
from monitord.dashboard.app import DashboardApp
from monitord.dashboard.widgets import AlarmList, AlarmStrip, trend_scale, trend_text
from tests.dashboard.conftest import Bed, admit_and_order, vitals
from tests.dashboard.test_app import connected, make_app, type_in, until
from tests.dashboard.test_race import DIALOGS
from tests.dashboard.test_snapshots import app_with, bed_run, screen_text

TOP_ALARM = "!!! HIGH  SPO2 80 % < 85 %  (+1 more)"
# Dialogs short enough to sit below the alarm list at 80x24 (the others show the top alarm).
SHORT = (modals.NurseModal, modals.PainModal, modals.ReasonModal, modals.ConfirmModal, modals.QuitModal,
         entries.EscortModal)


def whole_screen(app: DashboardApp) -> str:
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


@pytest.mark.parametrize("index", range(len(DIALOGS)))
async def test_no_dialog_hides_the_top_alarm(index: int) -> None:
    app, inject = app_with("high")
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        alarms = app.query_one(AlarmList).region
        screen = DIALOGS[index]()
        app.push_screen(screen)
        await pilot.pause()
        await pilot.pause()
        strip = screen.query_one(AlarmStrip)
        assert str(strip.render()) == TOP_ALARM and strip.display
        assert TOP_ALARM in whole_screen(app)
        if isinstance(screen, SHORT):
            dialog = screen.query_one(".dialog").region
            assert dialog.y >= alarms.bottom, f"{type(screen).__name__} covers the alarm list"


@pytest.mark.parametrize("index", range(len(DIALOGS)))
async def test_console_dialogs_draw_only_ascii(index: int) -> None:
    app, inject = app_with("high", console=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        screen = DIALOGS[index]()
        app.push_screen(screen)
        await pilot.pause()
        await pilot.pause()
        text = whole_screen(app)
    odd = sorted({ch for ch in text if not (ch.isascii() and (ch.isprintable() or ch == "\n"))})
    assert odd == [], f"{type(screen).__name__}: non-ASCII on the console: {odd}"


async def test_console_select_and_scrolling_list_stay_ascii() -> None:
    """An opened drop-down and a checklist longer than its box (scrollbar) on the console."""
    app, inject = app_with("high", console=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        app.push_screen(modals.ChecklistModal())
        await pilot.pause()
        await pilot.press("down", "down", "down", "down", "down", "down", "down", "down")
        await pilot.pause()
        checklist = whole_screen(app)
        await pilot.press("escape")
        await pilot.pause()
        app.push_screen(modals.SedationModal())
        await pilot.pause()
        await pilot.press("shift+tab", "enter")  # the scale's drop-down, open
        await pilot.pause()
        dropdown = whole_screen(app)
    for text in (checklist, dropdown):
        odd = sorted({ch for ch in text if not (ch.isascii() and (ch.isprintable() or ch == "\n"))})
        assert odd == [], odd
    assert "POSS (S=0, 1 .. 4)" in dropdown


async def test_checklist_questions_wrap_whole_at_80_columns() -> None:
    hello, _, _, _ = bed_run("normal")
    app, inject = app_with("normal")
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        app.push_screen(modals.ChecklistModal())
        await pilot.pause()
        await pilot.pause()
        rows = screen_text(app)
        box = app.screen.query_one("#items").content_region
    text = " ".join(" ".join(row[box.x:box.right].split()) for row in rows[box.y:box.bottom])
    first = hello["config"]["checklist"][0]["text"]
    assert len(first) > 60  # longer than the list is wide
    assert f"no [C] {first}" in text, text
    assert "…" not in text and "..." not in text
    assert text.count(" [C] ") + text.count(" [?] ") >= 5  # the items shown, each whole


def test_trend_scale_is_not_filled_by_noise() -> None:
    spo2 = [(float(t), 97.0 + t % 2) for t in range(0, 1800, 30)]
    assert trend_scale(spo2, 1800.0, 1800.0, 10.0, 100.0) == (90.0, 100.0)
    bars = trend_text(spo2, 1800.0, 1800.0, 20, True, 1, (90.0, 100.0))
    assert set(bars.strip()) <= set("=+*~")  # upper-middle glyphs, not the full and empty ends
    hr = [(0.0, 60.0), (60.0, 150.0)]
    assert trend_scale(hr, 60.0, 1800.0, 20.0) == (60.0, 150.0)  # a real change uses its own range
    assert trend_scale([], 60.0, 1800.0, 20.0) is None
    assert trend_scale([(0.0, 3.0)], 0.0, 60.0, 10.0) == (0.0, 10.0)  # never below zero


async def test_tiles_show_their_scale() -> None:
    app, inject = app_with("normal")
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        assert app.query_one("#tile-spo2").border_subtitle == "90-100"
        assert app.query_one("#tile-nibp").border_subtitle == "104-144 30m"  # the window, where there is room
        assert "90-100" in screen_text(app)[7]
    app, inject = app_with("normal")
    async with app.run_test(size=(120, 40)) as pilot:
        await inject(pilot)
        assert app.query_one("#tile-spo2").border_subtitle == "90-100 30m"


async def test_trends_start_again_with_a_new_patient(bed: Bed) -> None:
    admit_and_order(bed.engine)
    now = [0.0]  # the screen's clock: a trend point per snapshot 5 s apart
    app = make_app(bed, clock=lambda: now[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        for hr in (70, 90, 110):
            bed.clock.advance(5)
            now[0] += 5
            bed.loop.put(vitals(hr=hr))
            await until(pilot, lambda hr=hr: bool(app.trends["hr"]) and app.trends["hr"][-1][1] == hr, "the trend")
        bed.engine.submit(r.Discharge("N1", reason="test: next patient"))
        bed.engine.submit(r.Admit("P-2002", 60.0, 30, "N1"))
        await until(pilot, lambda: (app.snapshot or {}).get("patient", {}).get("id") == "P-2002", "the new patient")
        # The last patient's history is gone; the monitor's current value belongs to whoever is in the bed.
        assert [v for _, v in app.trends["hr"]] in ([], [110.0])
        bed.clock.advance(5)
        now[0] += 5
        bed.loop.put(vitals(hr=65))
        await until(pilot, lambda: app.trends["hr"][-1][1] == 65.0, "the new patient's next value")
        assert 70.0 not in [v for _, v in app.trends["hr"]] and 90.0 not in [v for _, v in app.trends["hr"]]


async def test_staff_id_change_is_logged(bed: Bed, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(bed, nurse="N1")
    caplog.set_level(logging.INFO, logger="monitord.dashboard.app")
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, modals.NurseModal), "the staff id screen")
        await pilot.press("backspace", "backspace")
        await type_in(pilot, "RN2")
        await pilot.press("enter")
        await until(pilot, lambda: app.nurse == "RN2", "the new staff id")
        log = "\n".join(str(line.text) for line in app.query_one("#events", RichLog).lines)
    assert "Staff id changed from N1 to RN2 (this screen)" in log
    assert "Staff id changed from N1 to RN2" in caplog.text
