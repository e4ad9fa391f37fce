"""Admission, order, start/pause/resume/stop/discharge; dose arithmetic; refusals."""

from __future__ import annotations

import pytest

from monitord import readings as r
from monitord.dose import bolus_mg_kg, dose_rate_mg_kg_h, rate_ml_h_for, volume_delta_ml
from monitord.errors import Refused
from monitord.events import EventKind

from .conftest import Bed


def test_dose_arithmetic() -> None:
    assert dose_rate_mg_kg_h(35, 1.0, 70) == pytest.approx(0.5)
    assert rate_ml_h_for(0.5, 70, 1.0) == pytest.approx(35)
    assert bolus_mg_kg(24.5, 1.0, 70) == pytest.approx(0.35)
    assert volume_delta_ml(None, 5) == 0
    assert volume_delta_ml(5, 7.5) == 2.5
    assert volume_delta_ml(40, 1.0) == 1.0  # counter reset: new syringe


@pytest.mark.parametrize(
    ("weight", "age", "match"),
    [(700, 45, "Weight 700 kg"), (12, 45, "Weight 12 kg"), (70, 9, "Age 9"), (70, 140, "Age 140")],
)
def test_impossible_patient_refused(bed: Bed, weight: float, age: int, match: str) -> None:
    with pytest.raises(Refused, match=match):
        bed.submit(r.Admit("P-1", weight, age, "rn1"))
    assert bed.events[-1].kind is EventKind.REJECTED
    assert match in bed.events[-1].data["reason"]
    assert bed.engine.snapshot()["patient"] is None


def test_action_without_staff_id_refused(bed: Bed) -> None:
    with pytest.raises(Refused, match="staff id"):
        bed.submit(r.Admit("P-1", 70, 45, "  "))


def test_elderly_derived_from_age_unless_given(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 70, "rn1"))
    assert bed.engine.snapshot()["patient"]["elderly"] is True


@pytest.mark.parametrize(
    ("drug", "conc", "rate", "match"),
    [
        ("fentanyl", 1.0, 35, "not in the drug library"),
        ("ketamine", 5.0, 35, "Concentration 5 mg/mL"),
        ("ketamine", 1.0, 0, "Rate 0 mL/h"),
        ("ketamine", 10.0, 140, "entered as a rate"),  # 20 mg/kg/h: mg/h typed into mL/h
    ],
)
def test_impossible_order_refused(bed: Bed, drug: str, conc: float, rate: float, match: str) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    with pytest.raises(Refused, match=match):
        bed.submit(r.SetOrder(drug, conc, rate, "rn1"))
    assert bed.engine.snapshot()["order"] is None


def test_order_before_admission_refused(bed: Bed) -> None:
    with pytest.raises(Refused, match="No patient"):
        bed.submit(r.SetOrder("ketamine", 1.0, 35, "rn1"))


def test_start_needs_an_order(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    with pytest.raises(Refused, match="order"):
        bed.submit(r.StartInfusion("rn1"))


def test_second_admission_refused(bed: Bed) -> None:
    bed.submit(r.Admit("P-1", 70, 45, "rn1"))
    with pytest.raises(Refused, match="discharge first"):
        bed.submit(r.Admit("P-2", 70, 45, "rn1"))


def test_paused_time_is_excluded_and_dose_accumulates_from_pump_volume(bed: Bed) -> None:
    bed.admit_and_start(rate=35)
    bed.run(1800, nibp_every=300)
    bed.submit(r.PauseInfusion("rn1", "patient to bathroom"))
    bed.set_pump(r.PumpState.PAUSED, 35)
    bed.run(600, nibp_every=300)
    bed.submit(r.ResumeInfusion("rn1"))
    bed.set_pump(r.PumpState.RUNNING, 35)
    bed.run(1800, nibp_every=300)
    snap = bed.engine.snapshot()
    # The time the pump infused, from its own reports (the first report only starts the clock).
    assert snap["infusion"]["infusion_time_s"] == pytest.approx(3600, abs=2)
    # 35 mL/h x 1 mg/mL for the hour the pump ran, from the volume it reports.
    assert snap["infusion"]["cumulative_mg"] == pytest.approx(35.0, abs=0.05)
    assert snap["infusion"]["dose_rate_mg_kg_h"] == pytest.approx(0.5)


def test_state_transitions_refused_out_of_order(bed: Bed) -> None:
    bed.admit_and_start()
    with pytest.raises(Refused):
        bed.submit(r.ResumeInfusion("rn1"))
    with pytest.raises(Refused, match="Stop the infusion"):
        bed.submit(r.Discharge("rn1"))
    bed.submit(r.StopInfusion("rn1"))
    with pytest.raises(Refused):
        bed.submit(r.PauseInfusion("rn1"))
    with pytest.raises(Refused, match="criteria not met"):
        bed.submit(r.Discharge("rn1"))
    bed.submit(r.Discharge("rn1", reason="transferred to the ward"))
    assert bed.engine.snapshot()["status"] == "empty"
    assert [e.data["action"] for e in bed.events if e.kind is EventKind.SESSION][-1] == "discharged"


def test_every_user_action_is_an_event_with_its_actor(bed: Bed) -> None:
    bed.admit_and_start()
    bed.submit(r.PainScore(6, "rn2"))
    bed.submit(r.RescueMedication("midazolam", 1.0, "iv", "rn3"))
    obs = [e.data for e in bed.events if e.kind is EventKind.OBSERVATION]
    assert any(o["type"] == "pain" and o["score"] == 6 and o["actor"] == "rn2" and "due_at" in o for o in obs)
    assert any(o["type"] == "rescue" and o["dose_mg"] == 1.0 and o["actor"] == "rn3" for o in obs)
    session = [(e.data["action"], e.data["actor"]) for e in bed.events if e.kind is EventKind.SESSION]
    assert ("admitted", "rn1") in session and ("started", "rn1") in session


def test_seq_is_gapless_and_ordered(bed: Bed) -> None:
    bed.admit_and_start()
    bed.vitals[r.Vital.SPO2] = 80
    bed.run(30)
    assert [e.seq for e in bed.events] == list(range(1, len(bed.events) + 1))


def test_checkpoint_restore_resumes_the_bed(bed: Bed) -> None:
    bed.admit_and_start(rate=35)
    bed.vitals[r.Vital.SPO2] = 80
    bed.run(20)
    bed.vitals[r.Vital.SPO2] = 97
    bed.run(600, nibp_every=300)
    cp = bed.engine.checkpoint()
    again = Bed(bed.config)
    again.engine.restore(cp, downtime_s=30)
    snap = again.engine.snapshot()
    assert snap["patient"]["id"] == "P-1" and snap["order"]["rate_ml_h"] == 35
    assert snap["infusion"]["cumulative_mg"] == pytest.approx(cp["cumulative_mg"], abs=1e-4)
    assert snap["baseline"]["hr"] == 72
    assert {a["rule_id"]: a["state"] for a in snap["alarms"]}["vital.spo2_low"] == "latched"
    assert snap["infusion"]["infusion_time_s"] == pytest.approx(cp["infusion_time_s"] + 30)
    # The first pump reading after restart adds what the pump infused while the daemon was down.
    again.volume = bed.volume + 35 * 30 / 3600
    again.set_pump(r.PumpState.RUNNING, 35)
    again.run(1, monitor=False)
    assert again.engine.snapshot()["infusion"]["cumulative_mg"] == pytest.approx(
        cp["cumulative_mg"] + 35 * 31 / 3600, abs=1e-3)
    again.engine.submit(r.PainScore(3, "rn1"))
    assert again.events[-1].seq == cp["seq"] + len(again.events)
