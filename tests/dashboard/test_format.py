"""Event-log lines for every event kind the engine emits (docs/events.md). The events come from
a real Engine on a FakeClock, so a renamed field shows up here as a wrong line."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitord import readings as r
from monitord.clock import FakeClock
from monitord.config import load_config
from monitord.dashboard.format import event_line
from monitord.engine import Engine, Refused
from monitord.errors import ConfirmationRequired

V = r.Vital


def engine_events() -> list[dict[str, Any]]:
    """One run touching every kind: session, observation, alarm, rejected, link, device_alarm, system."""
    clock = FakeClock()
    engine = Engine(load_config(overrides={"mqtt": {"enabled": False}, "bed": {"care_area": "icu"}}), clock)
    events: list[dict[str, Any]] = []
    engine.subscribe(lambda e: events.append(e.to_dict()))
    pump = r.DeviceRole.PUMP
    engine.record_system("started", devices=["pump", "monitor"])
    engine.submit(r.LinkStatus("pump", pump, r.LinkState.CONNECTED))
    engine.submit(r.LinkStatus("pump", pump, r.LinkState.GARBLED, "bad checksum", protocol_errors=3))
    engine.submit(r.DeviceAlarm("pump", pump, frozenset({r.DeviceAlarmCode.OCCLUSION}), "downstream"))
    engine.submit(r.DeviceAlarm("pump", pump, frozenset()))
    with pytest.raises(ConfirmationRequired):  # 154 kg with no history: pounds?
        engine.submit(r.Admit("P-1001", 154.0, 72, "N1", comorbid=True))
    engine.submit(r.Admit("P-1001", 70.0, 72, "N1", comorbid=True))
    engine.submit(r.TreatmentCount(3, last_weight_kg=71.0))
    engine.submit(r.ConfirmWeight(70.0, "N1"))
    with pytest.raises(ConfirmationRequired):  # 3 mg/kg/h in the ICU: the nurse must confirm
        engine.submit(r.SetOrder("ketamine", 1.0, 210.0, "N1"))
    engine.submit(r.SetOrder("ketamine", 1.0, 210.0, "N1", confirm=True))
    engine.submit(r.SetOrder("ketamine", 1.0, 35.0, "N1", bolus_mg=7.0, syringe_ml=50.0, confirm=True))
    engine.submit(r.ControlledDrug("dispensed", "N1", "N2", volume_ml=50.0))
    engine.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in engine.config.checklist} | {"pregnancy": True},
                                     "N1"))
    engine.submit(r.Override("checklist.pregnancy", "DR5", "test negative", entered_by="N1"))
    engine.submit(r.VitalsReading("monitor", {V.HR: 72, V.SBP: 120, V.DBP: 80, V.MAP: 93, V.SPO2: 98}))
    engine.submit(r.CaptureBaseline("N1"))
    engine.submit(r.StartInfusion("N1", confirm=True))
    engine.submit(r.PauseInfusion("N1", reason="nausea"))
    engine.submit(r.ResumeInfusion("N1"))
    engine.submit(r.SedationScore(r.SedationScale.RASS, -1, "N1"))
    engine.submit(r.PainScore(4, "N1"))
    engine.submit(r.PsychomimeticEffects(frozenset({r.Effect.VIVID_DREAMS}), "N1", note="brief", severity="moderate"))
    engine.submit(r.PsychomimeticEffects(frozenset(), "N1"))
    engine.submit(r.RescueMedication("midazolam", 1.0, "IV", "N1", reason="dysphoria"))
    engine.submit(r.ManualBolus(7.0, "N1", route="IV", note="breakthrough pain"))
    clock.advance(5)
    engine.submit(r.VitalsReading("monitor", {V.HR: 72, V.SPO2: 80}))
    clock.advance(11)
    engine.submit(r.VitalsReading("monitor", {V.HR: 72, V.SPO2: 80}))
    engine.submit(r.AudioPause("N2"))
    engine.submit(r.Acknowledge("vital.spo2_low", "N1"))
    with pytest.raises(Refused):
        engine.submit(r.PainScore(11, "N1"))
    engine.submit(r.OutputStatus("mqtt", False, "broker unreachable"))
    engine.submit(r.OutputStatus("mqtt", True))
    engine.submit(r.StopInfusion("N1", reason="course complete"))
    engine.submit(r.DischargeScore("padss", {"vitals": 2, "activity": 2, "nausea": 2, "pain": 1, "bleeding": 2}, "N1"))
    engine.submit(r.EscortConfirmed("N1", name="J. Doe"))
    engine.submit(r.Discharge("N1", reason="end of the test course"))
    engine.record_system("store_reset", reason="database unreadable", moved_to="/var/lib/monitord/bad.db")
    engine.record_system("mqtt_command_refused", topic="monitord/bed-01/ack", station="cs-1", user="RN9",
                         rule_id="vital.hr_high", reason="no such active alarm")
    engine.record_system("recovered", downtime_s=725.0, down_from="2026-01-01T08:00:00Z",
                         down_to="2026-01-01T08:12:05Z", status="running")
    engine.record_system("stopping")
    return events


@pytest.fixture(scope="module")
def lines() -> list[tuple[str, str, str]]:
    """(kind, text, style) for each event except vitals and infusion (which the log never shows)."""
    tz = ZoneInfo("Europe/Berlin")
    return [(e["kind"], *event_line(e, tz)) for e in engine_events() if e["kind"] not in ("vitals", "infusion")]


EXPECTED = [
    ("system", "Monitoring started (pump, monitor)", "info"),
    ("link", "pump (pump) link connected", "info"),
    ("link", "pump (pump) link GARBLED (unreadable data): bad checksum, 3 protocol errors", "warning"),
    ("device_alarm", "pump (pump) reports: OCCLUSION (downstream)", "warning"),
    ("device_alarm", "pump (pump) device alarms cleared", "info"),
    ("rejected", "NOT RECORDED until confirmed: Weight 154 kg is above 130 kg: is it kilograms, not pounds? Confirm "
                 "(admit by N1)", "warning"),
    ("session", "Admitted P-1001, 70 kg, 72 y, elderly, comorbid [N1]", "info"),
    ("session", "Treatments in last 12 months: 3, last weight 71 kg", "info"),
    ("session", "Weight 70 kg confirmed [N1]", "info"),
    ("rejected", "NOT RECORDED until confirmed: 3 mg/kg/h (210 mg/h): exceeds 2 mg/kg/h: ICU with a physician override. "
                 "Confirm to record the order (set order by N1)", "warning"),
    ("session", "Order ketamine 1 mg/mL at 210 mL/h = 3 mg/kg/h, no bolus; confirmed: exceeds 2 mg/kg/h: ICU with a "
                "physician override [N1]", "info"),
    ("session", "Order ketamine 1 mg/mL at 35 mL/h = 0.5 mg/kg/h, bolus 7 mg (0.1 mg/kg), 50 mL syringe [N1]", "info"),
    ("session", "Controlled drug dispensed: 50 mL = 50 mg, witness N2 [N1]", "info"),
    # Every item is answered (Start needs it); a yes to a prompt item means the test was done.
    ("session", "Checklist: 11 answered, yes: pregnancy, ecg cv risk, liver tests [N1]", "info"),
    ("session", "Physician override of checklist.pregnancy by DR5, entered by N1: test negative", "info"),
    ("session", "Baseline captured: HR 72, SBP 120, DBP 80, MAP 93, SpO2 98 [N1]", "info"),
    ("session", "Infusion started [N1]", "info"),
    ("session", "Infusion paused: nausea [N1]", "info"),
    ("session", "Infusion resumed [N1]", "info"),
    ("observation", "Sedation RASS -1 [N1]", "info"),
    ("observation", "Pain 4/10 [N1]", "info"),
    ("observation", "Effects: vivid dreams - moderate (brief) [N1]", "info"),
    ("observation", "Effects: none (resolved) [N1]", "info"),
    ("observation", "Rescue midazolam 1 mg IV (dysphoria) [N1]", "info"),
    ("observation", "Hand bolus ketamine 7 mg (0.1 mg/kg) IV (breakthrough pain) [N1]", "info"),
]


def test_every_kind_reads_as_words(lines: list[tuple[str, str, str]]) -> None:
    assert [line for line in lines if line[0] != "alarm"][: len(EXPECTED)] == EXPECTED
    kinds = {k for k, _, _ in lines}
    assert kinds == {"system", "link", "device_alarm", "session", "observation", "alarm", "rejected"}
    # No line leads with a bare identifier (as "treatment_count" once did) or shows a Python repr.
    for _, text, _ in lines:
        assert "_" not in text.split()[0], text
        assert "None" not in text and "{" not in text, text


def test_alarm_lines_carry_priority_rule_transition_and_actor(lines: list[tuple[str, str, str]]) -> None:
    alarm = [(text, style) for k, text, style in lines if k == "alarm" and "vital.spo2_low" in text]
    assert alarm[0] == ("!!! HIGH raised: SPO2 80 % < 85 % (vital.spo2_low)", "high")
    assert ("!!! HIGH audio paused by N2: SPO2 80 % < 85 % (vital.spo2_low)", "info") in alarm
    assert ("!!! HIGH acknowledged by N1: SPO2 80 % < 85 % (vital.spo2_low)", "info") in alarm
    assert ("!!! HIGH latched: SPO2 80 % < 85 % (vital.spo2_low)", "high") in alarm


def test_refusal_leads_with_the_reason(lines: list[tuple[str, str, str]]) -> None:
    [(text, style)] = [(t, s) for k, t, s in lines if k == "rejected" and s == "refused"]
    assert text == "NOT RECORDED: Pain score 11 is not on the 0-10 scale (pain score by N1)" and style == "refused"


def test_session_end_and_system_lines(lines: list[tuple[str, str, str]]) -> None:
    texts = {text: style for _, text, style in lines}
    stopped = next(t for t in texts if t.startswith("Infusion stopped"))
    assert stopped.startswith("Infusion stopped (course complete), total ") and " mg over 0:00:" in stopped
    assert texts["Discharge score PADSS 9/10 [N1]"] == "info"
    assert texts["Escort confirmed: J. Doe [N1]"] == "info"
    # Discharged before every criterion was met: which ones, and the reason, stand out.
    discharged = next(t for t in texts if t.startswith("Discharged P-1001, total "))
    assert discharged.endswith("; criteria not met: observed after stop, alert (reason: end of the test course) [N1]")
    assert texts[discharged] == "warning"
    assert texts["OUTPUT FAULT mqtt: broker unreachable"] == "refused"
    assert texts["Output mqtt working again"] == "info"
    assert texts["EVENT STORE RESET (database unreadable): old records moved to /var/lib/monitord/bad.db"] == "refused"
    assert texts["Central station command for vital.hr_high from cs-1/RN9 refused: no such active alarm"] == "refused"
    # Downtime in the bed's time zone (UTC+1 in January).
    assert texts["Monitoring resumed after 12m05s down (09:00:00 to 09:12:05), bed running"] == "warning"
    assert texts["Monitoring stopping"] == "warning"


def test_unknown_kinds_and_actions_still_show_their_fields() -> None:
    """A kind or action added to the engine later is readable, never silently blank."""
    assert event_line({"kind": "session", "data": {"action": "weight_corrected", "actor": "N2", "weight_kg": 71}}) == \
        ("Weight corrected: weight kg 71 [N2]", "info")
    assert event_line({"kind": "system", "data": {"action": "clock_stepped", "by_s": 3.5}}) == \
        ("System clock stepped: by s 3.5", "info")
    assert event_line({"kind": "observation", "data": {"type": "temperature", "value": 37.2, "actor": "N2"}}) == \
        ("Temperature: value 37.2 [N2]", "info")


def test_interlock_steps_read_as_words() -> None:
    """The pump stop interlock from trigger to release, on a real engine whose pump obeys."""
    from tests.dashboard.conftest import STOPPABLE_PUMP, Course

    clock = FakeClock()
    engine = Engine(load_config(overrides={"mqtt": {"enabled": False}, "devices": STOPPABLE_PUMP,
                                           "interlock": {"enabled": True}}), clock)
    events: list[dict[str, Any]] = []
    engine.subscribe(lambda e: events.append(e.to_dict()))
    course = Course(engine, clock)
    course.start()
    course.apnoea()
    course.run(25)
    course.breathe()
    engine.submit(r.InterlockRelease("N1", "airway cleared"))
    lines = [event_line(e) for e in events if e["kind"] == "interlock"]
    assert lines == [
        ("Interlock armed", "info"),
        ("INTERLOCK TRIGGERED by resp.apnoea: stopping the pump", "high"),
        ("Interlock sent stop to the pump (attempt 1)", "info"),
        ("Interlock: the pump reports it stopped (stopped, 35 mL/h)", "warning"),
        ("Interlock released (was holding): airway cleared [N1]", "warning"),
    ]
