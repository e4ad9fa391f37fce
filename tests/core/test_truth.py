"""The devices are the truth: what the pump and the monitor report drives the rules; what the
nurse records is intent, checked against them. Each test is a failure seen on real courses."""

from __future__ import annotations

import pytest

from monitord import readings as r
from monitord.errors import ConfirmationRequired, Refused
from monitord.events import EventKind

from .conftest import Bed, make_config

# -- the pump, whatever was recorded -----------------------------------------------------------


def test_pump_infusing_with_no_start_recorded_is_judged_by_dose_rules(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    bed.answer_checklist()
    bed.submit(r.SetOrder("ketamine", 1.0, 35, "rn1", syringe_ml=50.0))
    bed.set_pump(r.PumpState.RUNNING, 350)  # 5 mg/kg/h; nobody pressed Start in monitord
    bed.run(61)
    assert bed.active()["dose.soft_max"]["priority"] == "high"
    assert "pump.running_not_started" in bed.active()
    assert bed.engine.snapshot()["infusion"]["cumulative_mg"] > 0


def test_pump_infusing_without_a_patient_or_order_alarms(bed: Bed) -> None:
    bed.set_pump(r.PumpState.RUNNING, 20)
    bed.run(16)
    assert bed.active()["pump.running_no_order"]["priority"] == "high"
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    bed.run(1)
    assert "no order" in bed.active()["pump.running_no_order"]["message"]


def test_pump_running_after_stop_alarms_and_stop_does_not_end_dose_rules(bed: Bed) -> None:
    bed.admit_and_start(rate=35)
    bed.run(60)
    bed.submit(r.StopInfusion("rn1"))
    bed.set_pump(r.PumpState.RUNNING, 350)  # turned up instead of off
    bed.run(16)
    assert bed.active()["pump.running_after_stop"]["priority"] == "high"
    assert bed.active()["dose.soft_max"]["priority"] == "high"


def test_pause_recorded_never_clears_an_alarm_whose_condition_holds(bed: Bed) -> None:
    bed.admit_and_start(rate=35)
    bed.set_pump(r.PumpState.RUNNING, 70)
    bed.run(int(bed.config.ketamine.rate_mismatch_delay_s) + 1)
    assert "pump.rate_mismatch" in bed.active()
    bed.submit(r.PauseInfusion("rn1", "to check"))
    bed.run(16)
    assert "pump.rate_mismatch" in bed.active()
    assert bed.active()["pump.running_while_paused"]["priority"] == "high"
    bed.set_pump(r.PumpState.PAUSED, 70)
    bed.run(2)
    assert "pump.running_while_paused" not in bed.active()


def test_pump_idle_while_the_session_runs_alarms(bed: Bed) -> None:
    bed.admit_and_start(rate=35)
    bed.set_pump(r.PumpState.STOPPED, 0)
    bed.run(299)
    assert "pump.not_infusing" not in bed.raised()
    bed.run(3)
    assert bed.active()["pump.not_infusing"]["priority"] == "medium"


def test_infusion_time_and_dose_come_from_the_pump_not_the_keys(bed: Bed) -> None:
    bed.admit_and_start(rate=35)
    bed.run(600)
    bed.submit(r.PauseInfusion("rn1"))  # recorded, but the pump runs on for 20 min
    bed.run(1200)
    snap = bed.engine.snapshot()
    assert snap["infusion"]["infusion_time_s"] == pytest.approx(1800, abs=2)
    assert snap["infusion"]["cumulative_mg"] == pytest.approx(35 * 1800 / 3600, abs=0.05)


def test_bolus_rate_reported_by_the_pump_is_not_an_infusion_rate() -> None:
    bed = Bed(make_config(bed={"care_area": "icu"}))
    bed.admit_and_start(rate=35)
    bed.run(5)
    bed.set_pump(r.PumpState.BOLUS, 1200, bolus_ml=10)  # a 10 mL bolus delivered at 1200 mL/h
    bed.run(20)
    assert "dose.hard_max" not in bed.raised()
    assert bed.engine.snapshot()["infusion"]["dose_rate_mg_kg_h"] == pytest.approx(0.5)


def test_hand_given_ketamine_counts_in_the_dose_and_the_bolus_window(bed: Bed) -> None:
    bed.admit_and_start(rate=35)
    before = bed.engine.snapshot()["infusion"]["cumulative_mg"]
    bed.submit(r.ManualBolus(10, "rn1"))
    bed.run(1)
    assert bed.engine.snapshot()["infusion"]["cumulative_mg"] == pytest.approx(before + 10 + 35 / 3600, abs=1e-3)
    bed.submit(r.ManualBolus(15, "rn1"))  # 25 mg / 70 kg = 0.36 mg/kg within the hour
    bed.run(1)
    assert "dose.bolus" in bed.active()


def test_three_small_boluses_in_ten_minutes_add_up() -> None:
    bed = Bed(make_config(bed={"care_area": "monitored-unit"}))
    bed.admit_and_start(rate=35)
    for _ in range(3):
        bed.set_pump(r.PumpState.BOLUS, 600)  # 0.3 mg/kg each: 21 mL at 600 mL/h = 126 s
        bed.run(126)
        bed.set_pump(r.PumpState.RUNNING, 35)
        bed.run(74)
    assert "0.9 mg/kg" in bed.active()["dose.bolus"]["message"]


def test_one_bolus_of_0_35_is_permitted_in_a_monitored_unit() -> None:
    bed = Bed(make_config(bed={"care_area": "monitored-unit"}))
    bed.admit_and_start(rate=35)
    bed.set_pump(r.PumpState.BOLUS, 35, bolus_ml=24.5)  # 0.35 mg/kg
    bed.run(5)
    assert "dose.bolus" not in bed.raised()


@pytest.mark.parametrize(("weight", "rate", "conc", "rule", "present"), [
    (60.3, 12.06, 10.0, "dose.soft_max", False),   # exactly 2.00 mg/kg/h: not "exceeding" 2
    (60.3, 12.1, 10.0, "dose.soft_max", True),     # 2.007 -> 2.01
    (62.9, 62.9, 1.0, "dose.care_area", True),     # exactly 1.00: ">= 1"
    (69.7, 6.97, 10.0, "dose.care_area", True),    # 0.99999... in floating point: still 1.00
    (70.5, 70.0, 1.0, "dose.care_area", False),    # 0.993 -> 0.99
])
def test_dose_boundaries_as_the_guideline_writes_them(weight: float, rate: float, conc: float, rule: str,
                                                      present: bool) -> None:
    area = "outpatient-infusion" if rule == "dose.care_area" else "monitored-unit"
    bed = Bed(make_config(bed={"care_area": area}))
    bed.submit(r.Admit("P-1", weight, 45, "rn1", confirm=True))
    bed.submit(r.SetOrder("ketamine", conc, 1.0, "rn1"))
    bed.set_pump(r.PumpState.RUNNING, rate, conc=conc)
    bed.run(2)
    assert (rule in bed.active()) is present


def test_elderly_in_a_monitored_unit_is_not_moved_to_icu_only() -> None:
    bed = Bed(make_config(bed={"care_area": "monitored-unit"}))
    bed.admit_and_start(weight=70, age=81, rate=105)  # 1.5 mg/kg/h
    bed.run(5)
    assert not {a for a in bed.raised() if a.startswith("dose.")}


# -- breathing and the heart --------------------------------------------------------------------


def test_apnoea_is_high_and_latching_within_its_delay(bed: Bed) -> None:
    bed.admit_and_start()
    bed.vitals[r.Vital.RR] = 0
    bed.vitals[r.Vital.ETCO2] = 0
    bed.run(19)
    assert "resp.apnoea" not in bed.raised()
    bed.run(3)
    assert bed.active()["resp.apnoea"]["priority"] == "high"
    bed.vitals[r.Vital.RR] = 14
    bed.vitals[r.Vital.ETCO2] = 38
    bed.run(2)
    assert bed.active()["resp.apnoea"]["state"] == "latched"


def test_flat_capnogram_with_no_breath_counted_is_apnoea(bed: Bed) -> None:
    bed.admit_and_start()
    bed.vitals[r.Vital.RR] = None  # type: ignore[assignment]
    bed.vitals[r.Vital.ETCO2] = None  # type: ignore[assignment]
    bed.run(22)
    assert bed.active()["resp.apnoea"]["priority"] == "high"


def test_displaced_etco2_line_while_breathing_is_one_technical_alarm(bed: Bed) -> None:
    bed.admit_and_start()
    bed.vitals[r.Vital.ETCO2] = 4  # room air at the cannula; RR from impedance goes on
    bed.run(120)
    assert bed.raised() == {"tech.etco2_missing"}
    assert "sampling line" in bed.active()["tech.etco2_missing"]["message"]


def test_monitor_apnoea_flag_alarms_at_once(bed: Bed) -> None:
    bed.admit_and_start()
    bed.submit(r.DeviceAlarm("monitor", r.DeviceRole.MONITOR, frozenset({r.DeviceAlarmCode.APNOEA})))
    assert bed.active()["resp.apnoea"]["priority"] == "high"
    assert "tech.monitor.apnoea" not in {rule.id for rule in bed.engine.rules}


def test_respiratory_depression_after_stop_still_raises_the_combined_alarm(bed: Bed) -> None:
    bed.admit_and_start()
    bed.run(60)
    bed.submit(r.StopInfusion("rn1"))
    bed.set_pump(r.PumpState.STOPPED, 0)
    bed.vitals[r.Vital.RR] = 6
    bed.vitals[r.Vital.ETCO2] = 56
    bed.run(32)
    assert bed.active()["resp.combined"]["priority"] == "high"


def test_agitation_or_severe_effects_say_what_to_consider(bed: Bed) -> None:
    bed.admit_and_start()
    bed.submit(r.SedationScore(r.SedationScale.RASS, 4, "rn1"))
    msg = bed.active()["effects.severe"]["message"]
    assert "RASS +4" in msg and "midazolam" in msg
    bed.submit(r.SedationScore(r.SedationScale.RASS, 0, "rn1"))
    assert "effects.severe" not in bed.active()
    bed.submit(r.PsychomimeticEffects(frozenset({r.Effect.HALLUCINATIONS}), "rn1", severity="severe"))
    assert "effects.severe" in bed.active() and "effects.psychomimetic" not in bed.active()


def test_monitor_coming_back_does_not_flicker_missing_parameters(bed: Bed) -> None:
    bed.admit_and_start()
    bed.run(60, monitor=False)  # the monitor falls silent
    assert "tech.monitor_lost" in bed.active()
    before = set(bed.raised())
    bed.run(5)
    assert not {"tech.spo2_missing", "tech.etco2_missing"} & (bed.raised() - before)


# -- entries -----------------------------------------------------------------------------------


def test_weight_that_looks_like_pounds_needs_confirmation(bed: Bed) -> None:
    with pytest.raises(ConfirmationRequired, match="pounds"):
        bed.submit(r.Admit("P-1", 154, 45, "rn1", previous_weight_kg=70))
    with pytest.raises(ConfirmationRequired, match="kilograms, not pounds"):
        bed.submit(r.Admit("P-1", 154, 45, "rn1"))
    bed.submit(r.Admit("P-1", 154, 45, "rn1", confirm=True))
    assert bed.engine.snapshot()["patient"]["weight_kg"] == 154


def test_weight_far_from_history_raises_a_check_until_confirmed(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 90, 45, "rn1"))
    bed.submit(r.TreatmentCount(2, last_weight_kg=70))
    assert "differs" in bed.active()["entry.weight_check"]["message"]
    bed.submit(r.ConfirmWeight(72, "rn1"))
    assert "entry.weight_check" not in bed.active()
    assert bed.engine.snapshot()["patient"]["weight_kg"] == 72


def test_order_shows_the_verdict_and_needs_confirmation(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    preview = bed.engine.preview_order(1.0, 70)
    assert preview["dose_mg_kg_h"] == 1.0 and preview["dose_mg_h"] == 70 and preview["needs_confirmation"]
    assert "monitored unit" in preview["verdict"]
    with pytest.raises(ConfirmationRequired) as exc:
        bed.submit(r.SetOrder("ketamine", 1.0, 70, "rn1"))
    assert exc.value.preview["dose_mg_kg_h"] == 1.0
    bed.submit(r.SetOrder("ketamine", 1.0, 70, "rn1", confirm=True))
    bed.answer_checklist()
    with pytest.raises(ConfirmationRequired):
        bed.submit(r.StartInfusion("rn1"))
    bed.run(1, nibp_now=True)
    bed.submit(r.StartInfusion("rn1", confirm=True))


def test_order_above_the_soft_limit_outside_icu_is_refused_for_an_elderly_outpatient(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 81, "rn1"))
    with pytest.raises(Refused, match="ICU only"):
        bed.submit(r.SetOrder("ketamine", 10.0, 35, "rn1", confirm=True))  # 5 mg/kg/h


def test_start_needs_every_checklist_item_answered(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    bed.submit(r.SetOrder("ketamine", 1.0, 35, "rn1"))
    with pytest.raises(Refused, match="checklist"):
        bed.submit(r.StartInfusion("rn1"))
    bed.submit(r.Override("checklist.incomplete", "md1", "patient answered verbally, form to follow"))
    bed.run(1, nibp_now=True)
    bed.submit(r.StartInfusion("rn1"))
    assert bed.engine.snapshot()["status"] == "running"


@pytest.mark.parametrize("entry", [
    r.Admit("P-[/]", 70, 45, "rn1"),
    r.Admit("P-1", float("nan"), 45, "rn1"),
    r.SedationScore(r.SedationScale.RASS, 0, "system"),
    r.SedationScore(r.SedationScale.RASS, 0, "x" * 65),
])
def test_untrusted_entries_are_refused_with_a_reason(bed: Bed, entry: r.Input) -> None:
    if not isinstance(entry, r.Admit):
        bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    with pytest.raises(Refused):
        bed.submit(entry)
    assert bed.events[-1].kind.value == "rejected"


def test_rescue_drug_and_dose_are_checked(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    with pytest.raises(Refused, match="rescue list"):
        bed.submit(r.RescueMedication("vodka", 10, "po", "rn1"))
    with pytest.raises(Refused, match="at most"):
        bed.submit(r.RescueMedication("midazolam", 1e9, "iv", "rn1"))
    bed.submit(r.RescueMedication("midazolam", 1, "iv", "rn1"))


def test_order_bolus_larger_than_the_syringe_is_refused(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    with pytest.raises(Refused, match="syringe holds"):
        bed.submit(r.SetOrder("ketamine", 1.0, 35, "rn1", bolus_mg=5000, syringe_ml=50.0, confirm=True))


# -- restart -----------------------------------------------------------------------------------


def test_restart_keeps_every_alarm_and_its_inputs(bed: Bed) -> None:
    bed.admit_and_start(rate=70)  # dose.care_area in an outpatient area
    bed.submit(r.SedationScore(r.SedationScale.RASS, -4, "rn1"))
    bed.submit(r.Acknowledge("sedation.rass_high", "rn1"))
    bed.submit(r.PsychomimeticEffects(frozenset({r.Effect.DYSPHORIA}), "rn1"))
    bed.nibp[r.Vital.SBP] = 190
    bed.run(1, nibp_now=True)
    bed.run(30)
    before = {a["rule_id"]: (a["priority"], a["state"], a["inactivation"]) for a in bed.engine.snapshot()["alarms"]}
    assert {"sedation.rass_high", "vital.sbp_high", "dose.care_area", "effects.psychomimetic"} <= set(before)
    cp = bed.engine.checkpoint()
    again = Bed(bed.config)
    again.clock.advance(bed.clock.monotonic())
    again.engine.restore(cp, downtime_s=5)
    again.volume = bed.volume
    again.pump = bed.pump
    again.nibp = dict(bed.nibp)
    again.run(60)  # devices report again; nothing new is measured for NIBP
    after = {a["rule_id"]: (a["priority"], a["state"], a["inactivation"]) for a in again.engine.snapshot()["alarms"]}
    assert after == before
    assert not [t for _, t in again.alarms() if t in ("cleared", "raised")]


def test_a_frame_that_arrives_late_is_shown_with_its_true_age(bed: Bed) -> None:
    """A driver that finds a frame late (from the device's time stamps) says so; the engine ages the
    values by it, so data buffered 12 s on the way is never shown as fresh."""
    for _ in range(5):
        bed.clock.advance(1)
        bed.engine.submit(r.VitalsReading("monitor", {r.Vital.HR: 72.0, r.Vital.SPO2: 98.0}))
    assert bed.engine.snapshot()["vitals"]["hr"]["age_s"] == 0.0
    bed.clock.advance(1)
    bed.engine.submit(r.VitalsReading("monitor", {r.Vital.HR: 140.0, r.Vital.SPO2: 97.0}, age_s=12.0))
    snap = bed.engine.snapshot()["vitals"]
    assert snap["hr"]["value"] == 140.0 and snap["hr"]["age_s"] == pytest.approx(12.0)
    assert [e.data["late_s"] for e in bed.events if e.kind is EventKind.VITALS][-1] == 12.0
    # a nonsense lateness from a driver is not believed
    bed.clock.advance(1)
    bed.engine.submit(r.VitalsReading("monitor", {r.Vital.HR: 72.0}, age_s=float("nan")))
    bed.clock.advance(1)
    bed.engine.submit(r.VitalsReading("monitor", {r.Vital.HR: 73.0}, age_s=1e9))
    assert bed.engine.snapshot()["vitals"]["hr"]["age_s"] == 0.0


def test_implausible_ambient_pressure_is_one_technical_alarm_with_the_monitors_words(bed: Bed) -> None:
    """The monitor withholds EtCO2 computed from an implausible ambient pressure: one technical
    alarm saying why, no 'EtCO2 missing', no apnoea, nothing towards the combined respiratory alarm."""
    bed.admit_and_start()
    bed.run(30)
    bed.engine.submit(r.DeviceAlarm("monitor", r.DeviceRole.MONITOR, frozenset({r.DeviceAlarmCode.IMPLAUSIBLE}),
                                    "ambient pressure 101.3 mmHg outside 350-850 mmHg: EtCO2 withheld"))
    bed.vitals[r.Vital.ETCO2] = None  # type: ignore[assignment]
    bed.vitals[r.Vital.SPO2] = 93.0
    bed.run(120)
    active = bed.active()
    assert "ambient pressure 101.3" in active["tech.monitor.implausible"]["message"]
    assert {"tech.etco2_missing", "resp.apnoea", "resp.combined"}.isdisjoint(bed.raised())


def test_an_nibp_first_seen_on_connecting_is_as_old_as_its_measurement(bed: Bed) -> None:
    from datetime import timedelta

    bed.clock.advance(1)
    now = bed.clock.utc_now()
    bed.engine.submit(r.VitalsReading("monitor", {r.Vital.HR: 72.0, r.Vital.SBP: 120.0, r.Vital.DBP: 70.0,
                                                  r.Vital.MAP: 87.0}, device_time=now,
                                      nibp_time=now - timedelta(seconds=60)))
    assert bed.engine.snapshot()["vitals"]["sbp"]["age_s"] == pytest.approx(60.0)
    assert bed.engine.snapshot()["vitals"]["hr"]["age_s"] == 0.0
