"""The course panel: the next observation (overdue in words), the plasma-concentration model
estimate against the analgesic band (always called a model estimate, never a measurement), the
plan's progress and discharge readiness; one line at 80x24 that gives way to the alarms, a panel
with a plot at 120x40; and the planned duration entered in the order."""

from __future__ import annotations

import copy

from monitord.dashboard import modals
from monitord.dashboard.course import Part, fit_line, line_text, panel_text, plot_text
from monitord.dashboard.widgets import AlarmList
from tests.dashboard.conftest import Bed, Course, admit_and_order
from tests.dashboard.test_app import connected, make_app, type_in, until
from tests.dashboard.test_snapshots import app_with, bed_run, screen_text


def line(state: str, width: int = 78) -> str:
    _, snapshot, _, _ = bed_run(state)
    return str(line_text(snapshot, 0.0, width))


def test_the_line_names_the_estimate_a_model_estimate_and_fits_80_columns() -> None:
    running = line("normal")
    assert running == "Obs in 10m00s | Plasma 144 ng/mL model estimate, in band 70-160 | 12/140 mg", running
    assert len(running) <= 78
    stopped = line("stopped")
    # After the stop, discharge readiness matters more than where the falling estimate stands.
    assert stopped == "OBSERVATION OVERDUE by 20m00s | 18 ng/mL model estimate | Discharge 5/7", stopped
    for width in (40, 60, 78, 120):
        for state in ("normal", "stopped", "high"):
            text = line(state, width)
            assert len(text) <= width and "measured" not in text.lower(), text
            assert "model estimate" in text or "ng/mL" not in text, text


def test_the_least_important_parts_are_shortened_then_dropped() -> None:
    parts = [Part("Next observation in 5m", "Obs in 5m", same=True), Part("Plasma 90 ng/mL model estimate, x", "90 m"),
             Part("Plan 10/100 mg, projected 100 mg", "10/100 mg")]
    assert [t for t, _ in fit_line(parts, 200)] == [p.long for p in parts]
    # The observation's short form loses nothing: it is shortened first, and lengthened last.
    assert [t for t, _ in fit_line(parts, 80)] == ["Obs in 5m", parts[1].long, parts[2].long]
    assert [t for t, _ in fit_line(parts, 79)] == [parts[0].long, parts[1].long, "10/100 mg"]
    assert [t for t, _ in fit_line(parts, 20)] == ["Obs in 5m", "90 m"]
    assert [t for t, _ in fit_line(parts, 8)] == ["Obs i..."]


def test_discharge_readiness_in_words_after_the_stop() -> None:
    _, snapshot, _, _ = bed_run("stopped")
    text = str(panel_text(snapshot, 0.0, 100))
    missing = [c["id"] for c in snapshot["discharge"]["criteria"] if not c["met"]]
    assert missing == ["alert", "discharge_score"]  # stopped, observed 30 min, escort confirmed
    assert "Discharge   5/7: missing alert, discharge score" in text, text
    assert "OBSERVATION OVERDUE by 20m00s" in text
    assert "below 100 ng/mL" in text and "BELOW the first-treatment minimum" in text
    normal = str(panel_text(bed_run("normal")[1], 0.0, 100))
    assert "Discharge   after the stop" in normal and "first-treatment minimum met" in normal


def test_plot_shows_the_band_edges_and_the_estimate() -> None:
    points = [(1800.0 - 60 * i, min(150.0, 5.0 * i)) for i in range(31)]
    text = plot_text(points, [70.0, 160.0], 50, 8, ascii_only=True)
    rows = text.plain.split("\n")
    assert rows[0] == "Plasma ng/mL, model estimate"
    axis = {row[:4].strip(): i for i, row in enumerate(rows[1:-1]) if row[:4].strip()}
    assert set(axis) == {"160", "70", "0"} and axis["160"] < axis["70"] < axis["0"]
    assert sum(row.count("*") for row in rows) == 31  # each sample one column, none lost
    assert rows[-1].strip().startswith("-30m") and rows[-1].endswith("now")
    shaded = [span for span in text.spans if "green" in str(span.style)]
    assert len(shaded) == axis["70"] - axis["160"] + 1  # the band's rows


async def test_80x24_keeps_vitals_and_alarms_and_gives_the_course_line_way() -> None:
    app, inject = app_with("normal")
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        await pilot.pause()
        screen = screen_text(app)
        [row] = [r for r in screen if "model estimate" in r]
        assert row.strip().startswith("Obs in 10m00s | Plasma 144 ng/mL model estimate")
        text = "\n".join(screen)
        for shown in ("HR", "NIBP", "SpO2", "RR", "EtCO2", "PUMP RUNNING", "No active alarms", "Event log"):
            assert shown in text, shown
    # Seven alarms: the list takes the course line's row.
    app, inject = app_with("crisis")
    async with app.run_test(size=(80, 24)) as pilot:
        await inject(pilot)
        await pilot.pause()
        assert app.has_class("-no-course")
        assert not any("model estimate" in r for r in screen_text(app))
        # Every row but the event log's five: the same room it had before the course existed.
        assert app.query_one("#middle").outer_size.height == 24 - 1 - 7 - 1 - 5
        assert app.query_one(AlarmList).content_region.height == 8


async def test_120x40_plots_the_estimate_over_the_course() -> None:
    app, inject = app_with("normal")
    async with app.run_test(size=(120, 40)) as pilot:
        await inject(pilot)
        await pilot.pause()
        screen = "\n".join(screen_text(app))
        plot = app.query_one("#course-plot").render()
    assert "Plasma ng/mL, model estimate" in screen and "144 ng/mL model estimate, in band 70-160 ng/mL" in screen
    assert "measured" not in screen.lower()
    assert sum(str(plot).count(ch) for ch in "▀▄") >= 20  # 20 min of samples and the value now


async def test_the_curve_comes_from_the_daemon_and_the_plan_from_the_order(bed: Bed) -> None:
    course = Course(bed.engine, bed.clock)
    course.start(planned_duration_min=180.0)
    course.run(600)
    app = make_app(bed)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: len(app.estimate_curve) >= 9, "the estimate curve")
        samples = len(app.estimate_curve)
        course.run(120)  # two more samples: the daemon sends the curve again
        await until(pilot, lambda: len(app.estimate_curve) >= samples + 2, "the longer curve")
        text = str(app.query_one("#course-text").render())
        assert "over 180 min" in text and "projected" in text
    assert bed.engine.snapshot()["infusion"]["planned_duration_min"] == 180.0


async def test_planned_duration_is_entered_with_the_order(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("i", "o")
        await until(pilot, lambda: isinstance(app.screen, modals.OrderModal), "the order screen")
        await type_in(pilot, "30")
        await pilot.press("tab", "tab")
        await type_in(pilot, "240")
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, modals.OrderModal), "the order to be recorded")
    order = bed.engine.state.order
    assert order is not None and order.rate_ml_h == 30.0 and order.planned_duration_min == 240.0


def test_snapshot_fixture_is_a_copy() -> None:
    """The course tests change nothing the other tests read."""
    first = bed_run("normal")
    again = copy.deepcopy(first)
    assert first[1]["estimate"] == again[1]["estimate"]
