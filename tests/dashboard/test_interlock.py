"""The pump stop interlock at the bedside: its state in the infusion panel and the banner, and a
release that needs a staff id and a reason, offered only while there is something to release.
A real engine with the interlock enabled stops its (simulated) pump on apnoea."""

from __future__ import annotations

from textual.widgets import Static

from monitord.dashboard import entries
from monitord.dashboard.widgets import PumpPanel
from tests.dashboard.conftest import Bed, Course
from tests.dashboard.test_app import connected, footer_keys, make_app, type_in, until

HOLDING = "PUMP STOPPED BY INTERLOCK (resp.apnoea): check the patient"


def banner_line(app: object, name: str) -> str:
    widget = app.query_one(f"#banner-{name}", Static)  # type: ignore[attr-defined]
    return str(widget.render()) if widget.display and widget.has_class("-on") else ""


async def test_apnoea_stops_the_pump_and_only_a_release_with_staff_id_and_reason_re_arms(interlock_bed: Bed) -> None:
    bed = interlock_bed
    course = Course(bed.engine, bed.clock)
    course.start()
    course.run(10)
    app = make_app(bed)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        pump = app.query_one(PumpPanel)
        await until(pilot, lambda: pump.border_subtitle == "interlock armed", "the armed interlock in the panel")
        assert banner_line(app, "interlock") == ""
        assert "Release interlock" not in footer_keys(app)  # nothing to release
        await pilot.press("l")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, entries.InterlockReleaseModal)

        course.apnoea()
        course.run(25)
        assert course.commands == ["stop"]
        assert bed.engine.snapshot()["interlock"]["phase"] == "holding"
        await until(pilot, lambda: banner_line(app, "interlock").startswith(HOLDING), "the interlock banner")
        assert pump.border_subtitle == "INTERLOCK HOLDING"
        assert str(pump.render()).startswith("INTERLOCK HOLDING")
        await until(pilot, lambda: "Release interlock" in footer_keys(app), "the release key")

        course.breathe()
        course.run(5)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, entries.InterlockReleaseModal), "the release screen")
        assert app.screen.query_one("#staff").value == "N1"  # type: ignore[attr-defined]
        await pilot.press("enter")  # no reason: nothing is sent
        error = app.screen.query_one("#error", Static)
        await until(pilot, lambda: "reason" in str(error.render()), "the request for a reason")
        assert bed.engine.snapshot()["interlock"]["phase"] == "holding"
        await type_in(pilot, "airway cleared, RR 14")
        await pilot.press("shift+tab")  # back to the staff id: the nurse who releases it may be another one
        await pilot.press(*["backspace"] * 2)
        await type_in(pilot, "RN9")
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, entries.InterlockReleaseModal), "the release")
        await until(pilot, lambda: banner_line(app, "interlock") == "", "the banner to go")
        await until(pilot, lambda: "Release interlock" not in footer_keys(app), "the release key to go")
        assert pump.border_subtitle == "interlock armed"
    [released] = [e.data for e in bed.of("interlock", step="released")]
    assert (released["actor"], released["reason"], released["from"]) == ("RN9", "airway cleared, RR 14", "holding")


async def test_a_pump_that_does_not_stop_says_stop_it_by_hand(interlock_bed: Bed) -> None:
    bed = interlock_bed
    course = Course(bed.engine, bed.clock, obey=False)
    course.start()
    course.apnoea()
    cfg = bed.config.interlock
    course.run(25 + int(cfg.confirm_s * (cfg.retries + 1)) + 2)
    assert bed.engine.snapshot()["interlock"]["phase"] == "failed"
    app = make_app(bed)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await until(pilot, lambda: banner_line(app, "interlock").startswith("PUMP DID NOT STOP: STOP IT BY HAND"),
                    "the did-not-stop banner")
        assert app.query_one(PumpPanel).border_subtitle == "INTERLOCK: PUMP DID NOT STOP"
        assert "Release interlock" in footer_keys(app)
        log = "\n".join(str(line.text) for line in app.query_one("#events").lines)  # type: ignore[attr-defined]
        assert "INTERLOCK TRIGGERED by resp.apnoea: stopping the pump" in log
        assert "INTERLOCK: PUMP DID NOT STOP after 3 attempts: stop it by hand" in log
