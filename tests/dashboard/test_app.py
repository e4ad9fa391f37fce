"""The dashboard driven by key presses against a real daemon core (Engine + RuleLoop +
DashboardServer on a FakeClock) over a real Unix socket: every action must reach the engine,
recorded with the nurse's id, and a refusal must be shown where the nurse typed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from monitord import readings as r
from monitord.dashboard import modals
from monitord.dashboard.app import DashboardApp
from monitord.state import SessionStatus
from tests.dashboard.conftest import Bed, admit_and_order, vitals

TIMEOUT = 10.0


async def until(pilot: Pilot[Any], cond: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def make_app(bed: Bed, nurse: str | None = "N1", **kw: Any) -> DashboardApp:
    return DashboardApp(str(bed.socket), nurse=nurse, flash=False, sound=False, **kw)


async def connected(pilot: Pilot[Any], app: DashboardApp) -> None:
    await until(pilot, lambda: app.snapshot is not None and app.responding(), "the first snapshot")


async def type_in(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*list(text))


def banner(app: DashboardApp) -> str:
    return str(app.query_one("#banner", Static).render())


async def test_nurse_id_is_asked_once_and_recorded_with_each_action(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed, nurse=None)
    async with app.run_test() as pilot:
        await connected(pilot, app)
        assert isinstance(app.screen, modals.NurseModal)
        await type_in(pilot, "RN77")
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, modals.NurseModal), "the nurse screen to close")
        await pilot.press("p")
        await type_in(pilot, "4")
        await pilot.press("enter")
        await until(pilot, lambda: bool(bed.of("observation", type="pain")), "the pain score")
        await pilot.press("p")
        await type_in(pilot, "2")
        await pilot.press("enter")
        await until(pilot, lambda: len(bed.of("observation", type="pain")) == 2, "the second pain score")
    assert [(e.data["score"], e.data["actor"]) for e in bed.of("observation", type="pain")] == [(4, "RN77"), (2, "RN77")]


async def test_infusion_life_cycle_from_the_menu(bed: Bed) -> None:
    bed.loop.put(vitals(hr=70, sbp=118))
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)

        async def menu(key: str) -> None:
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, modals.SessionMenu), "the infusion menu")
            await pilot.press(key)
            await until(pilot, lambda: not isinstance(app.screen, modals.SessionMenu), "the menu to close")

        async def saved(what: str) -> None:
            await until(pilot, lambda: not isinstance(app.screen, modals.EntryModal), f"{what} to be accepted")

        await menu("a")
        await type_in(pilot, "P-2001")
        await pilot.press("tab")
        await type_in(pilot, "72.5")
        await pilot.press("tab")
        await type_in(pilot, "51")
        await pilot.press("enter")
        await saved("admit")
        assert bed.engine.state.patient is not None and bed.engine.state.patient.weight_kg == 72.5

        await menu("o")
        await type_in(pilot, "36")
        await pilot.press("enter")
        await saved("order")
        assert bed.engine.state.order is not None and bed.engine.state.order.rate_ml_h == 36.0

        await menu("c")
        # "Pregnant?" is the sixth item: select it (yes), then give the physician's override.
        await pilot.press("down", "down", "down", "down", "down", "space", "tab")
        await type_in(pilot, "DR5")
        await pilot.press("tab")
        await type_in(pilot, "test negative today")
        await pilot.press("enter")
        await saved("checklist")
        assert bed.engine.state.checklist["pregnancy"] is True
        assert bed.engine.state.overrides == {"checklist.pregnancy": "test negative today"}
        assert bed.of("session", action="override", actor="DR5", entered_by="N1")

        await menu("b")
        await pilot.press("enter")
        await saved("baseline")
        await menu("s")
        await pilot.press("y")
        await saved("start")
        assert bed.engine.state.status is SessionStatus.RUNNING
        await menu("p")
        await type_in(pilot, "nausea")
        await pilot.press("enter")
        await saved("pause")
        await menu("r")
        await pilot.press("enter")
        await saved("resume")
        await menu("x")
        await type_in(pilot, "done")
        await pilot.press("enter")
        await saved("stop")
        await menu("d")
        await until(pilot, lambda: isinstance(app.screen, modals.DischargeModal), "the discharge screen")
        # The criteria follow the daemon's snapshots while the screen is open (the stop may arrive after it).
        await until(pilot, lambda: "MET      infusion stopped" in [str(w.render()) for w in app.screen.query(".criterion")],
                    "the stopped infusion among the criteria")
        criteria = [str(w.render()) for w in app.screen.query(".criterion")]
        assert any(c.startswith("NOT MET  observed after stop: 0 of ") for c in criteria), criteria
        await pilot.press("enter")  # not every criterion is met: the daemon wants a reason
        error = app.screen.query_one("#error", Static)
        await until(pilot, lambda: "give a reason" in str(error.render()), "the request for a reason")
        await type_in(pilot, "transfer to the ward")
        await pilot.press("enter")
        await saved("discharge")
    actions = [(e.data["action"], e.data["actor"]) for e in bed.of("session") if e.data["actor"] != "system"]
    assert actions == [("admitted", "N1"), ("order_set", "N1"), ("checklist", "N1"), ("override", "DR5"),
                       ("baseline_captured", "N1"), ("started", "N1"), ("paused", "N1"), ("resumed", "N1"),
                       ("stopped", "N1"), ("discharged", "N1")]
    assert bed.of("session", action="paused", reason="nausea")
    assert bed.of("session", action="stopped", reason="done")
    assert bed.of("session", action="discharged", reason="transfer to the ward")


async def test_refusal_is_shown_in_the_modal_which_stays_open(bed: Bed) -> None:
    app = make_app(bed)
    async with app.run_test() as pilot:
        await connected(pilot, app)
        await pilot.press("i", "a")
        await until(pilot, lambda: isinstance(app.screen, modals.AdmitModal), "the admit screen")
        await type_in(pilot, "P-1")
        await pilot.press("tab")
        await type_in(pilot, "700")  # lb typed as kg
        await pilot.press("tab")
        await type_in(pilot, "40")
        await pilot.press("enter")
        error = app.screen.query_one("#error", Static)
        await until(pilot, lambda: "outside" in str(error.render()), "the refusal")
        assert "NOT RECORDED: Weight 700 kg is outside 30-250 kg" in str(error.render())
        assert isinstance(app.screen, modals.AdmitModal)
        assert bed.engine.state.patient is None
        # A contraindication answered yes without the physician's override is not sent at all.
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, modals.AdmitModal), "the admit screen to close")
    assert bed.of("rejected", action="Admit", actor="N1")


async def test_checklist_yes_needs_physician_override(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("i", "c")
        await until(pilot, lambda: isinstance(app.screen, modals.ChecklistModal), "the checklist")
        await pilot.press("space", "ctrl+s")  # first item (a contraindication) yes, no physician
        error = app.screen.query_one("#error", Static)
        await until(pilot, lambda: "physician" in str(error.render()), "the override prompt")
        assert isinstance(app.screen, modals.ChecklistModal)
    assert not bed.of("session", action="checklist")


async def test_nurse_entries_reach_the_engine(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed, nurse="N3")
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("s")
        await type_in(pilot, "-2")
        await pilot.press("enter")
        await until(pilot, lambda: bool(bed.of("observation", type="sedation")), "the sedation score")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, modals.EffectsModal), "the effects screen")
        await pilot.press("space", "down", "down", "space", "tab")  # hallucinations, vivid dreams
        await pilot.press("enter", "down", "enter", "tab")  # severity: mild -> moderate
        await type_in(pilot, "brief")
        await pilot.press("enter")
        await until(pilot, lambda: bool(bed.of("observation", type="effects")), "the effects")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, modals.RescueModal), "the rescue screen")
        await type_in(pilot, "1.5")
        await pilot.press("enter")
        await until(pilot, lambda: bool(bed.of("observation", type="rescue")), "the rescue medication")
        await pilot.press("t")
        assert app.trend_minutes == 60
    sed = bed.of("observation", type="sedation")[0].data
    assert sed == {"type": "sedation", "scale": "rass", "score": -2, "actor": "N3"}
    eff = bed.of("observation", type="effects")[0].data
    assert eff["effects"] == ["hallucinations", "vivid_dreams"] and eff["note"] == "brief" and eff["actor"] == "N3"
    assert eff["severity"] == "moderate"
    rescue = bed.of("observation", type="rescue")[0].data
    assert (rescue["drug"], rescue["dose_mg"], rescue["route"], rescue["actor"]) == ("midazolam", 1.5, "IV", "N3")
    assert bed.engine.state.sedation is not None and bed.engine.state.sedation.actor == "N3"


async def test_alarm_pause_acknowledge_and_reset(bed: Bed) -> None:
    admit_and_order(bed.engine)
    app = make_app(bed, nurse="N8")
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        # SpO2 80 % for 10 s: the latching high alarm (and, later, SpO2 low medium).
        bed.loop.put(vitals(spo2=80))
        await bed.settle()
        bed.clock.advance(11)
        bed.loop.put(vitals(spo2=80))
        await until(pilot, lambda: any(a["rule_id"] == "vital.spo2_low" for a in app._alarms()), "the alarm on screen")
        assert app.snapshot is not None and app.snapshot["audio"]["sounding"] == "high"
        alarms = str(app.query_one("#alarms", Static).render())
        assert "!!! HIGH" in alarms and "SPO2 80 % < 85 %" in alarms
        assert app.query_one("#tile-spo2").has_class("-high")

        await pilot.press("m")
        await until(pilot, lambda: "AUDIO PAUSED" in banner(app), "the audio pause countdown")
        assert "2:00" in banner(app)
        assert bed.of("alarm", transition="audio_paused", actor="N8")

        await pilot.press("a")
        await until(pilot, lambda: bool(bed.of("alarm", transition="acknowledged")), "the acknowledgement")
        assert bed.of("alarm", transition="acknowledged", actor="N8", rule_id="vital.spo2_low")

        bed.loop.put(vitals(spo2=97))  # condition over: the latching alarm stays, latched
        await until(pilot, lambda: any(a.get("state") == "latched" for a in app._alarms()), "the latched alarm")
        await pilot.press("a")  # on a latched alarm: reset
        await until(pilot, lambda: bool(bed.of("alarm", transition="reset")), "the reset")
    assert bed.of("alarm", transition="reset", actor="N8", rule_id="vital.spo2_low")
    assert [e for e in bed.events if e.kind.value == "rejected"] == []


async def test_shows_not_responding_when_the_daemon_goes_and_reconnects(bed: Bed) -> None:
    app = make_app(bed)
    async with app.run_test() as pilot:
        await connected(pilot, app)
        assert "NOT RESPONDING" not in banner(app)
        await bed.server.stop()
        await until(pilot, lambda: "MONITOR NOT RESPONDING" in banner(app), "the not-responding banner")
        assert app.query_one("#tile-hr").has_class("-stale")
        await bed.server.start()
        await until(pilot, lambda: app.responding(), "the reconnection")
        await until(pilot, lambda: "NOT RESPONDING" not in banner(app), "the banner to go")


async def test_silent_daemon_is_not_responding_within_seconds(sock_dir: Any) -> None:
    """A daemon that keeps the socket open but stops talking (hung) is also caught."""
    path = sock_dir / "hung.sock"

    async def hung(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"type":"hello","protocol":1,"bed_id":"bed-01","config":{}}\n')
        writer.write(b'{"type":"snapshot","snapshot":{"status":"empty","alarms":[]}}\n')
        await writer.drain()
        await asyncio.sleep(60)

    server = await asyncio.start_unix_server(hung, path=str(path))
    app = DashboardApp(str(path), nurse="N1", flash=False, sound=False, not_responding_after_s=1.0)
    try:
        async with app.run_test() as pilot:
            await until(pilot, lambda: app.snapshot is not None, "the snapshot")
            await until(pilot, lambda: "MONITOR NOT RESPONDING" in banner(app), "the banner", timeout=5)
            assert app.link is not None and app.link.connected  # the socket is open, the daemon silent
    finally:
        server.close()


async def test_commands_without_a_link_fail_in_words(bed: Bed) -> None:
    app = make_app(bed)
    async with app.run_test() as pilot:
        await connected(pilot, app)
        await bed.server.stop()
        await until(pilot, lambda: not app.responding(), "the link to drop")
        await pilot.press("p")
        await type_in(pilot, "3")
        await pilot.press("enter")
        error = app.screen.query_one("#error", Static)
        await until(pilot, lambda: "NOT RECORDED" in str(error.render()), "the failure")
        assert isinstance(app.screen, modals.PainModal)
    assert not bed.of("observation")  # the entry never reached the engine


def footer_keys(app: DashboardApp) -> list[str]:
    return [k.description for k in app.screen.query(FooterKey)]


async def test_physician_overrides_the_icu_soft_dose_limit_from_the_alarm_list(icu_bed: Bed) -> None:
    bed = icu_bed
    bed.engine.submit(r.Admit("P-1001", 70.0, 45, "N1"))
    bed.engine.submit(r.SetOrder("ketamine", 1.0, 210.0, "N1", confirm=True))  # 210 mL/h x 1 mg/mL / 70 kg = 3 mg/kg/h
    bed.engine.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in bed.engine.config.checklist}, "N1"))
    bed.loop.put(vitals())
    await bed.settle()
    bed.engine.submit(r.StartInfusion("N1", confirm=True))
    app = make_app(bed, nurse="N1")
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        assert "Override" not in footer_keys(app)  # nothing to override yet
        bed.loop.put(r.PumpReading("pump", r.PumpState.RUNNING, 210.0, 1.0, drug="ketamine", concentration_mg_ml=1.0))
        await until(pilot, lambda: any(a["rule_id"] == "dose.soft_max_icu" for a in app._alarms()), "the dose alarm")
        alarms = str(app.query_one("#alarms", Static).render())
        assert "!! MEDIUM  Dose 3 mg/kg/h exceeds 2 mg/kg/h" in alarms and "o: physician override" in alarms
        assert app._alarms()[app.selected]["rule_id"] == "dose.soft_max_icu"
        await until(pilot, lambda: "Override" in footer_keys(app), "the override key in the footer")

        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, modals.OverrideModal), "the override screen")
        error = app.screen.query_one("#error", Static)
        await type_in(pilot, "DR5")
        await pilot.press("enter")  # no reason: the screen asks for it and sends nothing
        await until(pilot, lambda: "reason" in str(error.render()), "the missing-reason prompt")
        await pilot.press("tab")
        await type_in(pilot, "ok")  # too short for the engine
        await pilot.press("enter")
        await until(pilot, lambda: "NOT RECORDED: An override needs a reason" in str(error.render()), "the refusal")
        assert isinstance(app.screen, modals.OverrideModal) and bed.engine.state.overrides == {}
        await type_in(pilot, " - refractory pain, ICU team aware")
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, modals.OverrideModal), "the override to be accepted")
        await until(pilot, lambda: not any(a["rule_id"] == "dose.soft_max_icu" for a in app._alarms()),
                    "the alarm to leave the screen")
        assert "Dose 3 mg/kg/h" not in str(app.query_one("#alarms", Static).render())
        await until(pilot, lambda: "Override" not in footer_keys(app), "the override key to go")
    assert bed.engine.state.overrides == {"dose.soft_max_icu": "ok - refractory pain, ICU team aware"}
    [override] = bed.of("session", action="override")
    assert (override.data["rule_id"], override.data["actor"], override.data["entered_by"]) == \
        ("dose.soft_max_icu", "DR5", "N1")
    assert bed.of("rejected", action="Override", actor="DR5")
    assert bed.of("alarm", rule_id="dose.soft_max_icu", transition="cleared")


def dialog_text(app: DashboardApp) -> str:
    return "\n".join(str(w.render()) for w in app.screen.query(Static))


async def test_dose_needing_confirmation_is_shown_and_sent_again_only_after_yes(bed: Bed) -> None:
    """1 mg/kg/h in an outpatient bed needs a monitored unit: the daemon asks for confirmation.
    The nurse sees mg/kg/h, mg/h and the care-area verdict; Enter or n records nothing; y
    sends the order again with confirm, and the same for the start."""
    bed.loop.put(vitals())
    bed.engine.submit(r.Admit("P-1001", 70.0, 45, "N1"))
    bed.engine.submit(r.ChecklistAnswers({c.id: False for c in bed.engine.config.checklist}, "N1"))
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("i", "o")
        await until(pilot, lambda: isinstance(app.screen, modals.OrderModal), "the order screen")
        await type_in(pilot, "70")  # mL/h of 1 mg/mL at 70 kg
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, modals.ConfirmEntryModal), "the confirmation")
        shown = dialog_text(app)
        assert "Confirm the order" in shown
        assert "Dose       1 mg/kg/h   (70 mg/h)" in shown
        assert "Care area  outpatient-infusion" in shown
        assert "Verdict    >= 1 mg/kg/h needs a monitored unit; this bed is outpatient-infusion" in shown
        await pilot.press("enter")  # a habitual Enter does not confirm
        await pilot.pause(0.2)
        assert isinstance(app.screen, modals.ConfirmEntryModal) and bed.engine.state.order is None
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, modals.OrderModal), "back to the order")
        error = app.screen.query_one("#error", Static)
        assert "NOT RECORDED (not confirmed)" in str(error.render()) and bed.engine.state.order is None
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, modals.ConfirmEntryModal), "the confirmation again")
        await pilot.press("y")
        await until(pilot, lambda: not isinstance(app.screen, modals.EntryModal | modals.ConfirmEntryModal),
                    "the order to be recorded")
        assert bed.engine.state.order is not None and bed.engine.state.order.rate_ml_h == 70.0
        assert bed.of("session", action="order_set", actor="N1", confirmed=True)

        await pilot.press("i", "s")
        await until(pilot, lambda: isinstance(app.screen, modals.ConfirmModal), "the start question")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, modals.ConfirmEntryModal), "the dose confirmation")
        assert "Confirm the start of the infusion" in dialog_text(app) and "1 mg/kg/h   (70 mg/h)" in dialog_text(app)
        assert bed.engine.state.status is SessionStatus.ADMITTED
        await pilot.press("y")
        await until(pilot, lambda: bed.engine.state.status is SessionStatus.RUNNING, "the start")
        await until(pilot, lambda: not isinstance(app.screen, modals.EntryModal | modals.ConfirmEntryModal),
                    "the dialogs to close")
    assert [e.data["action"] for e in bed.of("rejected", actor="N1")] == ["SetOrder", "SetOrder", "StartInfusion"]
    assert all(e.data["confirmation_required"] for e in bed.of("rejected"))


async def test_weight_needing_confirmation_is_confirmed_at_admission(bed: Bed) -> None:
    app = make_app(bed)
    async with app.run_test(size=(100, 32)) as pilot:
        await connected(pilot, app)
        await pilot.press("i", "a")
        await until(pilot, lambda: isinstance(app.screen, modals.AdmitModal), "the admit screen")
        await type_in(pilot, "P-2002")
        await pilot.press("tab")
        await type_in(pilot, "154")
        await pilot.press("tab")
        await type_in(pilot, "60")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, modals.ConfirmEntryModal), "the weight confirmation")
        shown = dialog_text(app)
        assert "Confirm the weight" in shown and "Weight entered        154 kg" in shown
        assert "is it kilograms, not pounds?" in shown
        assert bed.engine.state.patient is None
        await pilot.press("y")
        await until(pilot, lambda: bed.engine.state.patient is not None, "the admission")
    assert bed.engine.state.patient is not None and bed.engine.state.patient.weight_kg == 154.0
    assert bed.of("session", action="admitted", actor="N1")[0].data["weight_confirmed"]
