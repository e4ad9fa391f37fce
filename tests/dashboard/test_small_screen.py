"""The Pi console's 80x24 and the nurse's dialogs: what must stay readable when space is short,
state shown in words (never by colour alone), and a quit that asks first."""

from __future__ import annotations

import copy

from monitord import readings as r
from monitord.dashboard import modals
from monitord.dashboard.app import DashboardApp
from tests.dashboard.conftest import Bed, admit_and_order
from tests.dashboard.test_app import banner, connected, make_app, until
from tests.dashboard.test_snapshots import alarm_text, bed_data, screen_text


async def test_header_keeps_the_nurse_id_at_80_columns() -> None:
    hello, snapshot, _ = copy.deepcopy(bed_data("normal"))
    snapshot["patient"]["id"] = "P-2026-000123456789"
    app = DashboardApp(connect=False, nurse="RN-NIGHT-4711", clock=lambda: 50_000.0, flash=False, sound=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.apply_hello(hello)
        app.apply_snapshot(snapshot)
        await pilot.pause()
        header = screen_text(app)[0]
    assert header.rstrip().endswith("| RN RN-NIGHT-4711"), header
    assert header.startswith("bed-01 | P-2026-000123456789 70 kg | RUNNING | ket"), header
    assert "..." in header and len(header.rstrip()) <= 80  # drug and care area are what gets cut


async def test_not_responding_keeps_its_reason_and_the_alarm_state_is_unknown(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        assert "No active alarms" in "\n".join(screen_text(app))
        await bed.server.stop()
        await until(pilot, lambda: "cannot connect" in banner(app), "the reason in the banner")
        await pilot.pause(0.1)
        screen = " ".join(" ".join(row.replace("│", " ").split()) for row in screen_text(app))
        reason = app.link.why_not_responding() if app.link is not None else ""
        assert f"!!! MONITOR NOT RESPONDING - values are not current ({reason})" in screen, screen
        assert str(bed.socket) in screen  # the whole reason, path included, on an 80-column screen
        assert alarm_text(app).strip() == "ALARM STATE UNKNOWN: the monitor is not responding"


async def test_last_known_alarms_stay_listed_under_unknown(bed: Bed) -> None:
    admit_and_order(bed.engine)
    bed.loop.put(r.OutputStatus("mqtt", False, "broker unreachable"))
    app = make_app(bed)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: bool(app._alarms()), "an alarm")
        await bed.server.stop()
        await until(pilot, lambda: "NOT RESPONDING" in banner(app), "the banner")
        await pilot.pause(0.1)
        shown = alarm_text(app)
    assert shown.startswith("ALARM STATE UNKNOWN: the monitor is not responding; last known alarms:"), shown
    assert "mqtt: broker unreachable" in shown


async def test_checklist_answers_read_as_words(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("i", "c")
        await until(pilot, lambda: isinstance(app.screen, modals.ChecklistModal), "the checklist")
        await pilot.pause()
        first = next(row for row in screen_text(app) if "Unstable angina" in row)
        assert "no   [C] Unstable angina" in first, first
        await pilot.press("space")
        await pilot.pause()
        first = next(row for row in screen_text(app) if "Unstable angina" in row)
        assert "YES  [C] Unstable angina" in first, first


async def test_ctrl_c_asks_before_quitting(bed: Bed) -> None:
    app = make_app(bed)
    async with app.run_test() as pilot:
        await connected(pilot, app)
        await pilot.press("ctrl+c")
        await until(pilot, lambda: isinstance(app.screen, modals.QuitModal), "the question")
        await pilot.press("ctrl+c")  # asking again does not stack a second question or quit
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, modals.QuitModal), "the question to close")
        assert app.is_running
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, modals.QuitModal), "the question")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, "the app to quit", timeout=5)
    assert app.return_value == 0
