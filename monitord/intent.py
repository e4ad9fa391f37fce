"""What the nurse records: the engine's handlers for session commands and nurse entries.

These are the *intent*. They never make a device's report untrue: Pause or Stop recorded while
the pump still infuses is itself an alarm (``monitord.rules.dose``), and no command clears an
alarm whose condition still holds. Entries are checked for range, finiteness and length; an
entry that is plausible but unusual (a weight far from the last one, a dose that needs a
monitored setting) raises ``ConfirmationRequired`` with what the nurse must see first.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from monitord import readings as r
from monitord import truth
from monitord.config import CareArea
from monitord.discharge import readiness, record_balance
from monitord.errors import ConfirmationRequired, Refused
from monitord.events import EventKind
from monitord.interlock import Phase, release
from monitord.rules.dose import rounded
from monitord.rules.vitals import judged_value, max_age
from monitord.schedule import next_due
from monitord.state import BedState, Bolus, Order, Patient, Sedation, SessionStatus

if TYPE_CHECKING:
    from monitord.engine import Engine

# Ids typed or scanned at the bedside: letters, digits and a few separators; no markup, no
# control characters, bounded (docs/events.md).
ACTOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@/-]{0,63}$")
PATIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
RESERVED_ACTORS = frozenset({"system", "monitord"})
# An acknowledgement from a central station over MQTT (docs/mqtt.md): central:<station>:<user>,
# each part a staff-id-like token, 64 characters in all (the stored actor's bound).
CENTRAL_ACTOR_RE = re.compile(r"^central:[A-Za-z0-9][A-Za-z0-9._@/-]*:[A-Za-z0-9][A-Za-z0-9 ._@/-]*$")
ACTOR_MAX = 64
TEXT_MAX = 500  # free text (reasons, notes)
LB_PER_KG = 2.20462
BASELINE_VITALS = (r.Vital.HR, r.Vital.SBP, r.Vital.DBP, r.Vital.MAP, r.Vital.SPO2, r.Vital.RR, r.Vital.ETCO2)


def need_actor(actor: str, central: bool = False) -> str:
    """A staff id; with ``central``, also a central station's ``central:<station>:<user>``."""
    actor = (actor or "").strip()
    if not actor:
        raise Refused("Enter your staff id: every action is recorded with who did it")
    if central and len(actor) <= ACTOR_MAX and CENTRAL_ACTOR_RE.match(actor):
        return actor
    if not ACTOR_RE.match(actor):
        raise Refused("Staff id: 1-64 letters, digits, spaces or . _ @ / - (starting with a letter or digit)")
    if actor.lower() in RESERVED_ACTORS:
        raise Refused(f"'{actor}' is reserved for the system, not a staff id")
    return actor


def text(value: str, what: str) -> str:
    value = (value or "").strip()
    if len(value) > TEXT_MAX:
        raise Refused(f"{what} is longer than {TEXT_MAX} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise Refused(f"{what} contains control characters")
    return value


def finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused(f"{what} must be a number")
    return float(value)


def need_patient(st: BedState) -> Patient:
    if st.patient is None:
        raise Refused("No patient is admitted to this bed")
    return st.patient


def _iso(wall: Any, offset_s: float) -> str:
    from datetime import timedelta

    return (wall + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def session_event(engine: Engine, action: str, actor: str, **details: Any) -> None:
    engine.emit(EventKind.SESSION, {"action": action, "actor": actor, **details})


# -- nurse entries ------------------------------------------------------------------------------


def sedation(engine: Engine, item: r.SedationScore, now: float) -> None:
    need_patient(engine.state)
    actor = need_actor(item.actor)
    lo, hi = (-5, 4) if item.scale is r.SedationScale.RASS else (0, 4)
    if isinstance(item.score, bool) or not isinstance(item.score, int) or not lo <= item.score <= hi:
        raise Refused(f"{item.scale.value.upper()} score {item.score} is not on the scale ({lo} to {hi})")
    due = next_due(engine.state, engine.config)
    engine.state.sedation = Sedation(item.scale, item.score, actor, now)
    engine.state.last_assessment_mono = now
    engine.state.round_due_mono = due
    engine.emit(EventKind.OBSERVATION, {"type": "sedation", "scale": item.scale.value, "score": item.score,
                                        "actor": actor, **_schedule(engine, due, now)})


def _schedule(engine: Engine, due: float | None, now: float) -> dict[str, Any]:
    """When the observation round this entry belongs to was due, and how late it is."""
    if due is None:
        return {}
    return {"due_at": _iso(engine.clock.utc_now(), due - now), "late_s": round(max(0.0, now - due), 1)}


def _round_due(engine: Engine, now: float) -> float | None:
    """Pain and effects are charted in the round of the sedation score: its due time while the
    round lasts (the grace after the score), else the next due time."""
    st = engine.state
    if st.last_assessment_mono is not None and now - st.last_assessment_mono <= engine.config.observations.grace_s:
        return st.round_due_mono
    return next_due(st, engine.config)


def pain(engine: Engine, item: r.PainScore, now: float) -> None:
    need_patient(engine.state)
    actor = need_actor(item.actor)
    if isinstance(item.score, bool) or not isinstance(item.score, int) or not 0 <= item.score <= 10:
        raise Refused(f"Pain score {item.score} is not on the 0-10 scale")
    engine.state.pain.append((now, item.score))
    del engine.state.pain[:-50]
    engine.emit(EventKind.OBSERVATION, {"type": "pain", "score": item.score, "actor": actor,
                                        **_schedule(engine, _round_due(engine, now), now)})


SEVERITIES = ("mild", "moderate", "severe")


def effects(engine: Engine, item: r.PsychomimeticEffects, now: float) -> None:
    need_patient(engine.state)
    actor = need_actor(item.actor)
    if item.severity not in SEVERITIES:
        raise Refused(f"Severity '{item.severity}' is not one of {', '.join(SEVERITIES)}")
    note = text(item.note, "The note")
    engine.state.effects = item.effects
    engine.state.effects_severity = item.severity
    engine.emit(
        EventKind.OBSERVATION,
        {"type": "effects", "effects": sorted(e.value for e in item.effects), "severity": item.severity,
         "note": note, "actor": actor, **_schedule(engine, _round_due(engine, now), now)},
    )


def rescue(engine: Engine, item: r.RescueMedication, now: float) -> None:
    need_patient(engine.state)
    actor = need_actor(item.actor)
    drug = text(item.drug, "The drug").lower()
    allowed = engine.config.ketamine.rescue_medications
    if drug not in allowed:
        raise Refused(f"'{drug[:40]}' is not on the rescue list ({', '.join(allowed)})")
    dose = finite(item.dose_mg, "Rescue dose")
    cap = engine.config.ketamine.rescue_dose_mg_max
    if not 0 < dose <= cap:
        raise Refused(f"Rescue dose {dose:g} mg must be above 0 and at most {cap:g} mg: check the entry")
    entry = {"type": "rescue", "drug": drug, "dose_mg": dose, "route": text(item.route, "The route")[:32],
             "reason": text(item.reason, "The reason"), "actor": actor}
    engine.state.rescues.append({"drug": drug, "dose_mg": dose, "mono": now})
    engine.emit(EventKind.OBSERVATION, entry)


def manual_bolus(engine: Engine, item: r.ManualBolus, now: float) -> None:
    st = engine.state
    patient = need_patient(st)
    actor = need_actor(item.actor)
    dose = finite(item.dose_mg, "Bolus dose")
    cap = engine.config.ketamine.bolus_order_max_mg_kg * patient.weight_kg
    if not 0 < dose <= cap:
        raise Refused(f"Hand bolus {dose:g} mg must be above 0 and at most {cap:g} mg "
                      f"({engine.config.ketamine.bolus_order_max_mg_kg:g} mg/kg): check the entry")
    st.cumulative_mg += dose
    st.boluses.append(Bolus(now, dose, "hand"))
    truth.deliver(engine, dose, now, now)
    engine.emit(EventKind.OBSERVATION, {"type": "manual_bolus", "drug": engine.config.ketamine.name, "dose_mg": dose,
                                        "dose_mg_kg": round(dose / patient.weight_kg, 4),
                                        "route": text(item.route, "The route")[:32],
                                        "note": text(item.note, "The note"), "actor": actor})


# -- session commands ---------------------------------------------------------------------------


def _weight_warning(weight: float, previous: float | None, engine: Engine) -> str | None:
    lim = engine.config.patient_limits
    if previous is not None and previous > 0:
        if abs(weight / LB_PER_KG - previous) / previous <= 0.05:
            return (f"Weight {weight:g} kg is this patient's last weight {previous:g} kg in pounds: "
                    f"enter kilograms ({weight / LB_PER_KG:.1f} kg?)")
        change = abs(weight - previous) / previous * 100
        if change > lim.weight_change_confirm_pct:
            return (f"Weight {weight:g} kg differs by {change:.0f} % from this patient's last recorded "
                    f"{previous:g} kg: confirm")
    elif weight > lim.weight_confirm_above_kg:
        return f"Weight {weight:g} kg is above {lim.weight_confirm_above_kg:g} kg: is it kilograms, not pounds? Confirm"
    return None


def admit(engine: Engine, item: r.Admit, now: float) -> None:
    st, lim = engine.state, engine.config.patient_limits
    actor = need_actor(item.actor)
    if st.status is not SessionStatus.EMPTY:
        raise Refused(f"Bed {st.bed_id} already has patient {st.patient.id if st.patient else '?'}: discharge first")
    pid = (item.patient_id or "").strip()
    if not pid:
        raise Refused("Patient id is empty")
    if not PATIENT_RE.match(pid):
        raise Refused("Patient id: 1-64 letters, digits or . _ / - (starting with a letter or digit)")
    weight = finite(item.weight_kg, "Weight")
    if not lim.weight_kg_min <= weight <= lim.weight_kg_max:
        raise Refused(
            f"Weight {weight:g} kg is outside {lim.weight_kg_min:g}-{lim.weight_kg_max:g} kg: check the entry (kg, not lb)"
        )
    if isinstance(item.age_years, bool) or not isinstance(item.age_years, int) \
            or not lim.age_years_min <= item.age_years <= lim.age_years_max:
        raise Refused(f"Age {item.age_years} is outside {lim.age_years_min}-{lim.age_years_max} years")
    previous = item.previous_weight_kg if item.previous_weight_kg is not None and math.isfinite(item.previous_weight_kg) \
        else None
    warning = _weight_warning(weight, previous, engine)
    if warning and not item.confirm:
        raise ConfirmationRequired(warning, {"weight_kg": weight, "previous_weight_kg": previous})
    elderly = item.elderly if item.elderly is not None else item.age_years >= lim.elderly_age_years
    st.patient = Patient(pid, weight, item.age_years, elderly, item.comorbid)
    st.status = SessionStatus.ADMITTED
    st.monitoring_started_mono = now
    st.admitted_mono = now
    st.weight_check = None
    # checked against a history only when the nurse saw one; the registry's last weight is checked later
    st.weight_confirmed = previous is not None
    session_event(engine, "admitted", actor, patient=engine.patient_dict(),
                  **({"weight_confirmed": warning} if warning else {}))


def confirm_weight(engine: Engine, item: r.ConfirmWeight, now: float) -> None:
    st = engine.state
    patient = need_patient(st)
    actor = need_actor(item.actor)
    lim = engine.config.patient_limits
    weight = finite(item.weight_kg, "Weight")
    if not lim.weight_kg_min <= weight <= lim.weight_kg_max:
        raise Refused(f"Weight {weight:g} kg is outside {lim.weight_kg_min:g}-{lim.weight_kg_max:g} kg")
    st.patient = Patient(patient.id, weight, patient.age_years, patient.elderly, patient.comorbid)
    st.weight_check = None
    st.weight_confirmed = True
    truth.rebuild_estimate(engine)
    session_event(engine, "weight_confirmed", actor, weight_kg=weight, previous_entry_kg=patient.weight_kg)


def preview_order(engine: Engine, concentration_mg_ml: float, rate_ml_h: float, bolus_mg: float = 0.0) -> dict[str, Any]:
    """What an order would deliver for this patient in this bed, and whether it needs the nurse's
    explicit confirmation (or is refused). Pure: nothing is recorded."""
    cfg, st = engine.config, engine.state
    patient = need_patient(st)
    lim = cfg.dose_thresholds(patient.stricter_limits)
    dose = rounded(finite(rate_ml_h, "Rate") * finite(concentration_mg_ml, "Concentration") / patient.weight_kg, cfg)
    bolus_kg = rounded(finite(bolus_mg, "Bolus") / patient.weight_kg, cfg)
    area = cfg.bed.care_area
    who = " (elderly/comorbid threshold)" if patient.stricter_limits else ""
    verdict, confirm, refused = "within the chronic-pain range for this bed", False, False
    if dose > lim.hard_max_mg_kg_h:
        verdict, refused = f"exceeds the {lim.hard_max_mg_kg_h:g} mg/kg/h hard limit", True
    elif dose > lim.soft_max_mg_kg_h:
        if area is CareArea.ICU:
            verdict, confirm = f"exceeds {lim.soft_max_mg_kg_h:g} mg/kg/h: ICU with a physician override", True
        else:
            verdict, refused = f"exceeds {lim.soft_max_mg_kg_h:g} mg/kg/h: ICU only; this bed is {area.value}", True
    elif dose >= lim.monitored_area_mg_kg_h and area is CareArea.OUTPATIENT:
        verdict, confirm = (f">= {lim.monitored_area_mg_kg_h:g} mg/kg/h{who} needs a monitored unit; this bed is "
                            f"{area.value}"), True
    elif dose < lim.low_mg_kg_h:
        verdict = f"below the {lim.low_mg_kg_h:g} mg/kg/h analgesic range"
    if bolus_kg >= lim.bolus_max_mg_kg and area is CareArea.OUTPATIENT and not refused:
        verdict += f"; bolus {bolus_kg:g} mg/kg >= {lim.bolus_max_mg_kg:g} mg/kg{who} needs a monitored setting"
        confirm = True
    return {"dose_mg_kg_h": dose, "dose_mg_h": round(rate_ml_h * concentration_mg_ml, 3), "bolus_mg_kg": bolus_kg,
            "care_area": area.value, "verdict": verdict, "needs_confirmation": confirm, "refused": refused}


def set_order(engine: Engine, item: r.SetOrder, now: float) -> None:
    st, drug = engine.state, engine.config.ketamine
    patient = need_patient(st)
    actor = need_actor(item.actor)
    if st.status is SessionStatus.STOPPED:
        raise Refused("The infusion has stopped; discharge and admit again for a new course")
    if (item.drug or "").strip().lower() != drug.name:
        raise Refused(f"Drug '{text(item.drug, 'The drug')[:40]}' is not in the drug library (only {drug.name})")
    conc = finite(item.concentration_mg_ml, "Concentration")
    if not any(abs(conc - c) < 1e-6 for c in drug.concentrations_mg_ml):
        allowed = ", ".join(f"{c:g}" for c in drug.concentrations_mg_ml)
        raise Refused(f"Concentration {conc:g} mg/mL is not in the drug library ({allowed} mg/mL)")
    rate = finite(item.rate_ml_h, "Rate")
    if not 0 < rate <= drug.rate_ml_h_max:
        raise Refused(f"Rate {rate:g} mL/h is outside 0-{drug.rate_ml_h_max:g} mL/h")
    bolus = finite(item.bolus_mg, "Bolus")
    if bolus < 0:
        raise Refused("Bolus cannot be negative")
    syringe = finite(item.syringe_ml, "Syringe") if item.syringe_ml is not None else None
    if syringe is not None and not any(abs(syringe - s) < 1e-6 for s in drug.syringe_sizes_ml):
        raise Refused(f"Syringe {syringe:g} mL is not in the drug library")
    if syringe is not None and bolus > syringe * conc:
        raise Refused(f"Bolus {bolus:g} mg is more than the syringe holds ({syringe * conc:g} mg): check the entry")
    if bolus / patient.weight_kg > drug.bolus_order_max_mg_kg:
        raise Refused(f"Bolus {bolus / patient.weight_kg:.2f} mg/kg is above {drug.bolus_order_max_mg_kg:g} mg/kg "
                      "(an anaesthetic induction dose): was mg/kg entered as mg?")
    planned = item.planned_duration_min
    if planned is not None and not (math.isfinite(planned) and 0 < planned <= 24 * 60):
        raise Refused("Planned duration must be 1 min to 24 h")
    preview = preview_order(engine, conc, rate, bolus)
    if preview["refused"]:
        hard = engine.config.dose_thresholds(patient.stricter_limits).hard_max_mg_kg_h
        hint = " was a dose (mg/h) entered as a rate (mL/h)?" if preview["dose_mg_kg_h"] > hard else ""
        raise Refused(f"{rate:g} mL/h at {conc:g} mg/mL is {preview['dose_mg_kg_h']:g} mg/kg/h: {preview['verdict']}.{hint}")
    if preview["needs_confirmation"] and not item.confirm:
        raise ConfirmationRequired(f"{preview['dose_mg_kg_h']:g} mg/kg/h ({preview['dose_mg_h']:g} mg/h): "
                                   f"{preview['verdict']}. Confirm to record the order", preview)
    st.order = Order(drug.name, conc, rate, bolus, syringe, planned)
    session_event(engine, "order_set", actor, order=engine.order_dict(), dose_rate_mg_kg_h=preview["dose_mg_kg_h"],
                  bolus_mg_kg=preview["bolus_mg_kg"], verdict=preview["verdict"],
                  confirmed=bool(preview["needs_confirmation"]))


def start(engine: Engine, item: r.StartInfusion, now: float) -> None:
    st, cfg = engine.state, engine.config
    actor = need_actor(item.actor)
    need_patient(st)
    if st.order is None:
        raise Refused("Enter the order (concentration, rate) before starting")
    if st.status is not SessionStatus.ADMITTED:
        raise Refused(f"Cannot start: the infusion is {st.status.value}")
    unanswered = [c.id for c in cfg.checklist if c.id not in st.checklist]
    if unanswered and "checklist.incomplete" not in st.overrides:
        raise Refused(f"Answer the checklist first ({len(unanswered)} unanswered: {', '.join(unanswered)}), "
                      "or record a physician override of checklist.incomplete")
    preview = preview_order(engine, st.order.concentration_mg_ml, st.order.rate_ml_h, st.order.bolus_mg)
    if preview["needs_confirmation"] and not item.confirm:
        raise ConfirmationRequired(f"Start at {preview['dose_mg_kg_h']:g} mg/kg/h: {preview['verdict']}. Confirm",
                                   preview)
    if not st.baseline:
        capture_baseline(engine, now, "system", at_start=True)
    st.status = SessionStatus.RUNNING
    if st.pump_idle_since_mono is not None:
        st.pump_idle_since_mono = max(st.pump_idle_since_mono, now)  # idle counts from Start
    st.started_at = engine.clock.utc_now()
    if st.start_mono is None:
        st.start_mono = now
    session_event(engine, "started", actor)


def pause(engine: Engine, item: r.PauseInfusion, now: float) -> None:
    st = engine.state
    actor = need_actor(item.actor)
    if st.status is not SessionStatus.RUNNING:
        raise Refused(f"Cannot pause: the infusion is {st.status.value}")
    st.status = SessionStatus.PAUSED
    session_event(engine, "paused", actor, reason=text(item.reason, "The reason"))


def resume(engine: Engine, item: r.ResumeInfusion, now: float) -> None:
    st = engine.state
    actor = need_actor(item.actor)
    if st.status is not SessionStatus.PAUSED:
        raise Refused(f"Cannot resume: the infusion is {st.status.value}")
    st.status = SessionStatus.RUNNING
    if st.pump_idle_since_mono is not None:
        st.pump_idle_since_mono = max(st.pump_idle_since_mono, now)  # the idle time starts now
    session_event(engine, "resumed", actor)


def stop(engine: Engine, item: r.StopInfusion, now: float) -> None:
    st = engine.state
    actor = need_actor(item.actor)
    if st.status not in (SessionStatus.RUNNING, SessionStatus.PAUSED):
        raise Refused(f"Cannot stop: the infusion is {st.status.value}")
    st.status = SessionStatus.STOPPED
    st.stopped_mono = now
    st.course_finished = True
    session_event(engine, "stopped", actor, reason=text(item.reason, "The reason"),
                  cumulative_mg=round(st.cumulative_mg, 4), infusion_time_s=round(st.infusion_time_at(now), 3),
                  pump_infusing=st.pump_infusing())


def discharge(engine: Engine, item: r.Discharge, now: float) -> None:
    st = engine.state
    actor = need_actor(item.actor)
    if st.status in (SessionStatus.RUNNING, SessionStatus.PAUSED):
        raise Refused("Stop the infusion before discharging")
    if st.status is SessionStatus.EMPTY:
        raise Refused("No patient to discharge")
    unmet = [c for c in readiness(st, now, engine.config) if not c.met]
    reason = text(item.reason, "The reason")
    if unmet and len(reason) < 3:
        raise Refused("Discharge criteria not met (" + "; ".join(f"{c.id}: {c.detail}" for c in unmet)
                      + "): give a reason to discharge anyway")
    summary = {"patient_id": st.patient.id if st.patient else None, "cumulative_mg": round(st.cumulative_mg, 4),
               "infusion_time_s": round(st.infusion_time_at(now), 3),
               "criteria_unmet": [c.id for c in unmet], "reason": reason,
               "controlled_record": record_balance(st, engine.config)}
    # The devices stay: their truth belongs to the bed, not the patient.
    keep = {k: getattr(st, k) for k in ("bed_id", "vitals", "device_seen_mono", "device_roles", "nibp_mono",
                                          "pump", "links", "device_alarms", "device_alarm_detail", "out_of_range", "device_back_mono", "source_values",
                                          "infusion_rate_ml_h", "pump_idle_since_mono")}
    engine.state = BedState(**keep, monitoring_started_mono=now)
    session_event(engine, "discharged", actor, **summary)


SCORE_SCALES = ("padss", "aldrete")


def discharge_score(engine: Engine, item: r.DischargeScore, now: float) -> None:
    st = engine.state
    need_patient(st)
    actor = need_actor(item.actor)
    if item.scale not in SCORE_SCALES:
        raise Refused(f"Score '{text(item.scale, 'The scale')[:20]}' is not one of {', '.join(SCORE_SCALES)}")
    if len(item.items) != 5 or any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 2
                                   for v in item.items.values()):
        raise Refused(f"{item.scale.upper()} has five items scored 0-2")
    if any(len(k) > 32 for k in item.items):
        raise Refused("Item names are at most 32 characters")
    total = sum(item.items.values())
    st.discharge_score = (item.scale, total, now)
    engine.emit(EventKind.OBSERVATION, {"type": "discharge_score", "scale": item.scale, "items": dict(item.items),
                                        "total": total, "actor": actor})


def escort(engine: Engine, item: r.EscortConfirmed, now: float) -> None:
    st = engine.state
    need_patient(st)
    actor = need_actor(item.actor)
    name = text(item.name, "The escort's name")[:64]
    st.escort = f"escort confirmed by {actor}" + (f": {name}" if name else "")
    session_event(engine, "escort_confirmed", actor, name=name)


def controlled_drug(engine: Engine, item: r.ControlledDrug, now: float) -> None:
    st = engine.state
    need_patient(st)
    actor = need_actor(item.actor)
    witness = need_actor(item.witness)
    if witness == actor:
        raise Refused("A controlled-drug entry needs a second person as witness")
    if st.record_closed:
        raise Refused("The controlled-substance record is closed")
    if item.action == "close":
        balance = record_balance(st, engine.config)
        if not balance["balanced"]:
            raise Refused(f"Record does not add up: dispensed {balance['dispensed_mg']:g} mg, infused "
                          f"{balance['infused_mg']:g} mg, wasted {balance['wasted_mg']:g} mg "
                          f"({balance['unaccounted_mg']:+g} mg unaccounted)")
        st.record_closed = True
        session_event(engine, "controlled_record_closed", actor, witness=witness, **balance)
        return
    if item.action not in ("dispensed", "wasted"):
        raise Refused("Controlled-drug action is dispensed, wasted or close")
    if st.order is None:
        raise Refused("Enter the order first: its concentration gives the amount")
    volume = finite(item.volume_ml, "Volume")
    if not 0 < volume <= max(engine.config.ketamine.syringe_sizes_ml):
        raise Refused(f"Volume {volume:g} mL must be above 0 and at most one syringe")
    mg = volume * st.order.concentration_mg_ml
    if item.action == "dispensed":
        st.dispensed_mg += mg
    else:
        st.wasted_mg += mg
    session_event(engine, f"controlled_{item.action}", actor, witness=witness, volume_ml=volume, mg=round(mg, 3),
                  concentration_mg_ml=st.order.concentration_mg_ml)


def capture(engine: Engine, item: r.CaptureBaseline, now: float) -> None:
    need_patient(engine.state)
    capture_baseline(engine, now, need_actor(item.actor))


def capture_baseline(engine: Engine, now: float, actor: str, at_start: bool = False) -> None:
    st, cfg = engine.state, engine.config
    max_age_s = cfg.vitals.baseline_max_age_s
    base = {}
    for vital in BASELINE_VITALS:
        value = st.fresh(vital, now, min(max_age_s, max_age(cfg, vital)))
        if value is None and vital in r.NIBP_VITALS:
            value = judged_value(st, vital, now, cfg) if st.fresh(vital, now, max_age_s) is not None else None
        if value is not None:
            base[vital] = value
    if r.Vital.HR not in base and r.Vital.SBP not in base:
        if at_start:
            return
        raise Refused("No fresh heart rate or blood pressure to take as baseline: measure NIBP first")
    st.baseline = base
    session_event(engine, "baseline_captured", actor, baseline={k.value: v for k, v in base.items()}, at_start=at_start)


def overridable(engine: Engine) -> set[str]:
    """Rule ids a physician may override with a recorded reason: the ICU soft dose limit, an
    incomplete checklist and checklist contraindications. Hard limits cannot be overridden."""
    return {"dose.soft_max_icu", "checklist.incomplete"} | {
        f"checklist.{c.id}" for c in engine.config.checklist if c.kind == "contraindication"
    }


def override(engine: Engine, item: r.Override, now: float) -> None:
    need_patient(engine.state)
    actor = need_actor(item.actor)
    allowed = overridable(engine)
    if item.rule_id not in allowed:
        raise Refused(f"'{text(item.rule_id, 'The rule id')[:64]}' cannot be overridden "
                      f"(overridable: {', '.join(sorted(allowed))})")
    reason = text(item.reason, "The reason")
    if len(reason) < 3:
        raise Refused("An override needs a reason")
    entered_by = need_actor(item.entered_by) if (item.entered_by or "").strip() else actor
    engine.state.overrides[item.rule_id] = reason
    session_event(engine, "override", actor, rule_id=item.rule_id, reason=reason, entered_by=entered_by)


def interlock_release(engine: Engine, item: r.InterlockRelease, now: float) -> None:
    actor = need_actor(item.actor)
    reason = text(item.reason, "The reason")
    if len(reason) < 3:
        raise Refused("Releasing the interlock needs a reason")
    il = engine.state.interlock
    if il.phase in (Phase.OFF, Phase.ARMED):
        raise Refused(f"The interlock is {il.phase.value}: nothing to release")
    engine.emit(EventKind.INTERLOCK, release(il, engine.interlock_triggers(), actor, reason, now))


def checklist(engine: Engine, item: r.ChecklistAnswers, now: float) -> None:
    need_patient(engine.state)
    actor = need_actor(item.actor)
    known = {c.id for c in engine.config.checklist}
    unknown = set(item.answers) - known
    if unknown:
        raise Refused(f"Unknown checklist items: {', '.join(sorted(x[:40] for x in unknown))}")
    if any(not isinstance(v, bool) for v in item.answers.values()):
        raise Refused("Checklist answers are yes or no")
    engine.state.checklist.update(item.answers)
    session_event(engine, "checklist", actor, answers=dict(item.answers))


def acknowledge(engine: Engine, item: r.Acknowledge, now: float) -> None:
    engine.alarms.acknowledge(item.rule_id, need_actor(item.actor, central=True), item.alarm_seq)


def audio_pause(engine: Engine, item: r.AudioPause, now: float) -> None:
    engine.alarms.audio_pause(need_actor(item.actor), now)


def reset(engine: Engine, item: r.ResetAlarm, now: float) -> None:
    engine.alarms.reset(item.rule_id, need_actor(item.actor))


def treatments(engine: Engine, item: r.TreatmentCount, now: float) -> None:
    st = engine.state
    st.treatments_last_12_months = item.count
    last = item.last_weight_kg
    if st.patient is not None and not st.weight_confirmed and last is not None and math.isfinite(last):
        warning = _weight_warning(st.patient.weight_kg, last, engine)
        if warning:
            st.weight_check = warning
    session_event(engine, "treatment_count", "system", count=item.count, last_weight_kg=last)


STATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def central_receipt(engine: Engine, item: r.CentralReceipt, now: float) -> None:
    """A station saw an alarm transition: note it against that alarm's occurrence, silently (a
    receipt is not an entry). Receipts for alarms no longer active are dropped."""
    if not isinstance(item.station, str) or not STATION_RE.match(item.station):
        raise Refused("Receipt: station id must be 1-64 letters, digits or . _ -")
    if isinstance(item.alarm_seq, bool) or not isinstance(item.alarm_seq, int) or item.alarm_seq < 0:
        raise Refused("Receipt: alarm_seq must be a whole number")
    alarm = engine.alarms.alarms.get(item.rule_id) if isinstance(item.rule_id, str) else None
    if alarm is None or item.alarm_seq < alarm.occurrence_seq:
        return  # an old occurrence, or an alarm that has ended: nothing to confirm
    if item.alarm_seq > engine.alarms.alarm_seq:
        raise Refused("Receipt: alarm_seq from the future")
    stations = engine.state.receipts.setdefault(alarm.occurrence_seq, set())
    if len(stations) < 32:  # bounded: a flood of station ids cannot grow it
        stations.add(item.station)


def output_status(engine: Engine, item: r.OutputStatus, now: float) -> None:
    faults = engine.state.output_faults
    before = faults.get(item.component)
    if item.ok:
        faults.pop(item.component, None)
    else:
        faults[item.component] = (item.detail or "failed")[:200]
    if faults.get(item.component) != before:
        engine.emit(EventKind.SYSTEM, {"action": "output_status", "component": item.component, "ok": item.ok,
                                       "detail": item.detail[:200]})
