"""The terminal overview as a nurse reads it: order, full status words, ages on screen, blanking."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from monitord.central import view as v
from monitord.central.app import CentralApp
from monitord.central.feed import Overview
from tests.central.conftest import Clock, line_of, screen_text
from tests.central.feeds import ROOT, SimBed, alarm


def make_app(clock: Clock) -> CentralApp:
    return CentralApp(Overview(ROOT, clock), None, v.Limits.from_config(), clock)


def feed(app: CentralApp, bed: SimBed, leaf: str, raw: bytes) -> None:
    app.overview.apply(bed.topic(leaf), raw)


def order(app: CentralApp) -> list[str]:
    table = app.query_one(DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def cell(app: CentralApp, bed_id: str, column: str) -> str:
    return str(app.query_one(DataTable).get_cell(bed_id, column))


async def test_beds_sort_by_highest_alarm_then_name_and_resort_when_an_alarm_changes() -> None:
    clock = Clock()
    app = make_app(clock)
    beds = {name: SimBed(name) for name in ("bed-a", "bed-b", "bed-c", "bed-d")}
    async with app.run_test(size=(120, 20)) as pilot:
        for bed in beds.values():
            feed(app, bed, "status", bed.status())
            feed(app, bed, "state", bed.state())
        feed(app, beds["bed-d"], "alarms", beds["bed-d"].alarms(alarm("high", "tech.pump.device_fault", "Pump fault")))
        feed(app, beds["bed-b"], "alarms", beds["bed-b"].alarms(alarm("low", "obs.due", "Sedation score due")))
        feed(app, beds["bed-c"], "alarms", beds["bed-c"].alarms(alarm("medium", "spo2.low", "SpO2 88 %")))
        app.refresh_rows()
        await pilot.pause()
        assert order(app) == ["bed-d", "bed-c", "bed-b", "bed-a"]
        text = screen_text(app)
        assert "!!! HIGH Pump fault" in line_of(text, "bed-d")  # priority in words and marks, not colour alone
        assert "!! MEDIUM SpO2 88 %" in line_of(text, "bed-c")

        feed(app, beds["bed-a"], "alarms", beds["bed-a"].alarms(alarm("high", "spo2.critical", "SpO2 84 %")))
        feed(app, beds["bed-d"], "alarms", beds["bed-d"].alarms())  # its fault cleared
        app.refresh_rows()
        await pilot.pause()
        assert order(app) == ["bed-a", "bed-c", "bed-b", "bed-d"]


@pytest.mark.parametrize("columns", [80, 120])
async def test_status_words_in_full_and_data_age_on_screen(columns: int) -> None:
    clock = Clock()
    app = make_app(clock)
    live, gone, silent = SimBed("bed-live"), SimBed("bed-gone"), SimBed("bed-quiet")
    async with app.run_test(size=(columns, 16)) as pilot:
        for bed in (live, gone, silent):
            feed(app, bed, "status", bed.status())
            feed(app, bed, "state", bed.state(hr=91.0))
        feed(app, gone, "status", gone.status(online=False, reason="stopped"))
        clock.advance(20.0)
        feed(app, live, "status", live.status())
        feed(app, live, "state", live.state(hr=91.0))
        clock.advance(3.0)
        app.refresh_rows()
        await pilot.pause()
        text = screen_text(app)
        header = line_of(text, "Status")
        assert "Age" in header and "Highest alarm" in header
        assert "online" in line_of(text, "bed-live") and "3 s" in line_of(text, "bed-live")
        assert "91" in line_of(text, "bed-live")
        for bed_id, word in (("bed-gone", "OFFLINE"), ("bed-quiet", "NO DATA")):
            row = line_of(text, bed_id)
            assert word in row and "23 s" in row, row
            assert "91" not in row  # old numbers are not shown as if current
        assert "OFFLI " not in text and "NO DAT " not in text


async def test_bed_count_in_the_title_says_1_bed() -> None:
    clock = Clock()
    app = make_app(clock)
    one, two = SimBed("bed-1"), SimBed("bed-2")
    async with app.run_test(size=(100, 12)) as pilot:
        feed(app, one, "status", one.status())
        app.refresh_rows()
        await pilot.pause()
        assert app.sub_title == "1 bed"
        assert "1 bed" in screen_text(app) and "1 beds" not in screen_text(app)
        feed(app, two, "status", two.status())
        app.refresh_rows()
        await pilot.pause()
        assert app.sub_title == "2 beds"


async def test_a_stale_dose_is_blanked_while_the_bed_stays_current() -> None:
    clock = Clock()
    app = make_app(clock)
    bed = SimBed("bed-1")
    limit = app.limits.dose_stale_after_s
    async with app.run_test(size=(120, 12)) as pilot:
        feed(app, bed, "status", bed.status())
        feed(app, bed, "state", bed.state(dose=0.75, dose_age=limit - 5))
        app.refresh_rows()
        await pilot.pause()
        assert cell(app, "bed-1", "dose") == "0.75"
        for _ in range(3):  # the pump has gone quiet; the bed's status heartbeat goes on
            clock.advance(2.0)
            feed(app, bed, "status", bed.status())
        app.refresh_rows()
        await pilot.pause()
        assert cell(app, "bed-1", "status") == "online"
        assert cell(app, "bed-1", "dose") == "--"
        assert cell(app, "bed-1", "hr") == "72"
        feed(app, bed, "state", bed.state(dose=0.5, dose_age=1.0))  # the pump reports again
        app.refresh_rows()
        await pilot.pause()
        assert cell(app, "bed-1", "dose") == "0.50"


async def test_the_alarm_column_widens_with_the_screen_and_shortens_visibly() -> None:
    clock = Clock()
    app = make_app(clock)
    bed = SimBed("bed-1")
    message = "Pump pump reports device fault 12 (occlusion)"
    async with app.run_test(size=(80, 12)) as pilot:
        feed(app, bed, "status", bed.status())
        feed(app, bed, "state", bed.state())
        feed(app, bed, "alarms", bed.alarms(alarm("high", "tech.pump.device_fault", message), alarm("low", "x", "y")))
        app.refresh_rows()
        await pilot.pause()
        row = line_of(screen_text(app), "bed-1")
        assert "!!! HIGH Pump pump" in row and "\u2026 (+1)" in row and "1 s" not in row
        await pilot.resize_terminal(160, 12)
        app.refresh_rows()
        await pilot.pause()
        row = line_of(screen_text(app), "bed-1")
        assert f"!!! HIGH {message} (+1)" in row
        assert "72" in row and "120/75" in row
