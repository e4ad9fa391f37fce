"""Dose rules: guideline dose bands, boluses, the pump's programming against the order, and the
pump against what the nurse recorded.

The pump is the truth: dose rules judge what the pump reports it delivers, whatever the session
status. What the nurse recorded (start, pause, stop, the order) is the intent; a pump that
disagrees with it is an alarm of its own. Doses are compared with the guideline's numbers after
rounding to ``[ketamine] dose_precision`` and with the guideline's own words: "exceeding" is
``>``, "at or above" is ``>=``.
"""

from __future__ import annotations

from monitord.config import CareArea, Config, DoseThresholds, Priority
from monitord.dose import bolus_mg_kg, dose_rate_mg_kg_h
from monitord.readings import PumpState
from monitord.rules.base import Finding, Kind, Rule, fmt
from monitord.state import BedState, SessionStatus

GUIDE_RANGE = "Guideline Table 6 'Dosing range' (line 1658), Table 1 (line 368); grade C"
GUIDE_SETTING = "Guideline Q6 lines 1493-1497, Table 6 'Setting' (line 1699); grade A; stricter for elderly/comorbid: Q6 line 1499"
GUIDE_ICU = "Guideline Table 6 (line 1660); Q3 lines 1268-1275"
INTENT = "clinical-rules.md s1 (the pump delivers the dose); IEC 60601-1-8 technical alarm condition"


def rounded(x: float, cfg: Config) -> float:
    step = cfg.ketamine.dose_precision
    return round(round(x / step) * step, 6)


def _dose(state: BedState, cfg: Config) -> float | None:
    """The infusion dose the pump delivers now (mg/kg/h, rounded), or None when unknown."""
    dose = state.dose_rate_mg_kg_h()
    return rounded(dose, cfg) if dose is not None else None


def _limits(state: BedState, cfg: Config) -> DoseThresholds:
    assert state.patient is not None
    return cfg.dose_thresholds(state.patient.stricter_limits)


def _who(state: BedState) -> str:
    return " (elderly/comorbid threshold)" if state.patient and state.patient.stricter_limits else ""


def low(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state, cfg)
    if not dose:
        return None
    lim = _limits(state, cfg).low_mg_kg_h
    if dose < lim:
        return Finding(f"Dose {fmt(dose)} mg/kg/h is below the {fmt(lim)} mg/kg/h analgesic range", dose)
    return None


def care_area(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state, cfg)
    if dose is None or cfg.bed.care_area is not CareArea.OUTPATIENT:
        return None
    lim = _limits(state, cfg).monitored_area_mg_kg_h
    if dose >= lim:
        return Finding(
            f"Dose {fmt(dose)} mg/kg/h >= {fmt(lim)} mg/kg/h{_who(state)} needs a monitored unit; "
            f"this bed is {cfg.bed.care_area.value}",
            dose,
        )
    return None


def soft_max_outside_icu(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state, cfg)
    if dose is None or cfg.bed.care_area is CareArea.ICU:
        return None
    lim = _limits(state, cfg).soft_max_mg_kg_h
    if dose > lim:
        return Finding(f"Dose {fmt(dose)} mg/kg/h exceeds {fmt(lim)} mg/kg/h: ICU only", dose)
    return None


def soft_max_icu(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state, cfg)
    if dose is None or cfg.bed.care_area is not CareArea.ICU or "dose.soft_max_icu" in state.overrides:
        return None
    lim = _limits(state, cfg).soft_max_mg_kg_h
    if dose > lim:
        return Finding(f"Dose {fmt(dose)} mg/kg/h exceeds {fmt(lim)} mg/kg/h: record a physician override", dose)
    return None


def hard_max(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state, cfg)
    if dose is None:
        return None
    lim = _limits(state, cfg).hard_max_mg_kg_h
    if dose > lim:
        return Finding(f"Dose {fmt(dose)} mg/kg/h exceeds the {fmt(lim)} mg/kg/h hard limit", dose)
    return None


def bolus(state: BedState, now: float, cfg: Config) -> Finding | None:
    """Boluses given (by the pump or by hand) over the window, and the ordered bolus, against the
    care area: a bolus at or above the threshold needs a monitored setting (it is permitted
    there); in a monitored unit or ICU repeated boluses above the bolus range alarm."""
    if state.patient is None:
        return None
    weight = state.patient.weight_kg
    window = cfg.ketamine.bolus_window_s
    given = rounded(state.bolus_mg_in_window(now, window) / weight, cfg)
    pump = state.pump
    if pump is not None and pump.state is PumpState.BOLUS and pump.bolus_ml and state.order is not None:
        # A pump that reports the programmed bolus volume: judge the whole bolus from its start.
        programmed = bolus_mg_kg(pump.bolus_ml, state.order.concentration_mg_ml, weight)
        episode = state.bolus_episode.mg / weight if state.bolus_episode else 0.0
        given = rounded(given - episode + max(episode, programmed), cfg)
    minutes = fmt(window / 60)
    if cfg.bed.care_area is CareArea.OUTPATIENT:
        lim = _limits(state, cfg).bolus_max_mg_kg
        if given >= lim:
            return Finding(f"Bolus {fmt(given)} mg/kg in {minutes} min >= {fmt(lim)} mg/kg{_who(state)}: needs a "
                           "monitored setting", given)
        ordered = rounded(state.order.bolus_mg / weight, cfg) if state.order is not None else 0.0
        if ordered >= lim:
            return Finding(f"Ordered bolus {fmt(ordered)} mg/kg >= {fmt(lim)} mg/kg{_who(state)}: needs a "
                           "monitored setting", ordered)
        return None
    lim = cfg.ketamine.bolus_window_max_monitored_mg_kg
    if given > lim:
        return Finding(f"Boluses {fmt(given)} mg/kg in {minutes} min exceed {fmt(lim)} mg/kg", given)
    return None


def concentration_mismatch(state: BedState, now: float, cfg: Config) -> Finding | None:
    pump, order = state.pump, state.order
    if pump is None or order is None or pump.concentration_mg_ml is None or state.patient is None:
        return None
    tol = order.concentration_mg_ml * cfg.ketamine.concentration_tolerance_pct / 100
    if abs(pump.concentration_mg_ml - order.concentration_mg_ml) > tol:
        msg = (
            f"Pump programmed {fmt(pump.concentration_mg_ml)} mg/mL, order says "
            f"{fmt(order.concentration_mg_ml)} mg/mL"
        )
        rate = state.infusion_rate_ml_h
        if rate:
            alt = dose_rate_mg_kg_h(rate, pump.concentration_mg_ml, state.patient.weight_kg)
            msg += f" (dose would be {fmt(alt)} mg/kg/h at the pump's concentration)"
        return Finding(msg, pump.concentration_mg_ml)
    return None


def drug_mismatch(state: BedState, now: float, cfg: Config) -> Finding | None:
    pump, order = state.pump, state.order
    if pump is None or order is None or not pump.drug:
        return None
    if pump.drug.strip().lower() != order.drug.lower():
        return Finding(f"Pump programmed drug '{pump.drug}', order is {order.drug}")
    return None


def syringe_mismatch(state: BedState, now: float, cfg: Config) -> Finding | None:
    pump, order = state.pump, state.order
    if pump is None or order is None or pump.syringe_ml is None or order.syringe_ml is None:
        return None
    if abs(pump.syringe_ml - order.syringe_ml) > cfg.ketamine.syringe_tolerance_ml:
        return Finding(f"Pump set for a {fmt(pump.syringe_ml)} mL syringe, order says {fmt(order.syringe_ml)} mL")
    return None


def rate_mismatch(state: BedState, now: float, cfg: Config) -> Finding | None:
    """The pump runs at another rate than ordered, whatever the session status (a Pause or Stop
    recorded in monitord does not make a running pump right)."""
    pump, order = state.pump, state.order
    if pump is None or order is None or pump.rate_ml_h is None or pump.state is not PumpState.RUNNING:
        return None
    if not pump.rate_ml_h > 0:
        return None
    tol = order.rate_ml_h * cfg.ketamine.rate_tolerance_pct / 100
    if abs(pump.rate_ml_h - order.rate_ml_h) > tol:
        return Finding(f"Pump runs at {fmt(pump.rate_ml_h)} mL/h, order says {fmt(order.rate_ml_h)} mL/h", pump.rate_ml_h)
    return None


def _infusing_for(state: BedState) -> str:
    p = state.pump
    rate = f" at {fmt(p.rate_ml_h)} mL/h" if p is not None and p.rate_ml_h else ""
    return f"Pump is infusing{rate}"


def running_no_order(state: BedState, now: float, cfg: Config) -> Finding | None:
    if not state.pump_infusing():
        return None
    if state.patient is None:
        return Finding(f"{_infusing_for(state)} but no patient is admitted to this bed: stop the pump or admit")
    if state.order is None:
        return Finding(f"{_infusing_for(state)} but no order is recorded: dose cannot be checked")
    return None


def running_not_started(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.pump_infusing() and state.order is not None and state.status is SessionStatus.ADMITTED:
        return Finding(f"{_infusing_for(state)} but Start is not recorded: record Start or stop the pump")
    return None


def running_while_paused(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.pump_infusing() and state.status is SessionStatus.PAUSED:
        return Finding(f"{_infusing_for(state)} although the infusion is recorded as paused: pause the pump")
    return None


def running_after_stop(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.pump_infusing() and state.status is SessionStatus.STOPPED:
        return Finding(f"{_infusing_for(state)} although the infusion is recorded as stopped: stop the pump")
    return None


def not_infusing(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.status is not SessionStatus.RUNNING or state.pump is None or state.pump_infusing():
        return None
    since = state.pump_idle_since_mono
    if since is None or now - since < cfg.ketamine.pump_idle_alarm_s:
        return None
    minutes = (now - since) / 60
    return Finding(f"Pump has not infused for {fmt(minutes, 0)} min ({state.pump.state.value}) while the infusion "
                   "is recorded as running: restart it, or record Pause or Stop", minutes)


def rules(cfg: Config) -> list[Rule]:
    d = cfg.ketamine.dose
    e = cfg.ketamine.dose_elderly_or_comorbid
    k = cfg.ketamine
    return [
        Rule("dose.low", Priority.ADVISORY, Kind.ADVISORY,
             f"pump infusing below {d.low_mg_kg_h} mg/kg/h", GUIDE_RANGE, low,
             why_priority="no harm, a likely ineffective dose"),
        Rule("dose.care_area", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"pump infusing >= {d.monitored_area_mg_kg_h} mg/kg/h ({e.monitored_area_mg_kg_h} elderly/comorbid) "
             "in an outpatient area",
             GUIDE_SETTING, care_area,
             why_priority="'serious adverse sequelae' possible; develops over minutes"),
        Rule("dose.soft_max", Priority.HIGH, Kind.PHYSIOLOGICAL,
             f"pump infusing > {d.soft_max_mg_kg_h} mg/kg/h outside ICU",
             f"{GUIDE_RANGE}; {GUIDE_ICU}", soft_max_outside_icu,
             why_priority="above the chronic-pain range where ICU monitoring is not available"),
        Rule("dose.soft_max_icu", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"pump infusing > {d.soft_max_mg_kg_h} mg/kg/h in ICU without a recorded physician override",
             f"{GUIDE_ICU}; alarm-defaults.md s5 (soft limit)", soft_max_icu,
             why_priority="permitted in ICU but needs a recorded decision"),
        Rule("dose.hard_max", Priority.HIGH, Kind.PHYSIOLOGICAL,
             f"pump infusing > {d.hard_max_mg_kg_h} mg/kg/h", GUIDE_ICU, hard_max,
             why_priority="beyond any dose the guideline reports; anesthetic range"),
        Rule("dose.bolus", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"outpatient area: boluses (pump or by hand) over {fmt(k.bolus_window_s / 60)} min, or the ordered bolus, "
             f">= {d.bolus_max_mg_kg} mg/kg ({e.bolus_max_mg_kg} elderly/comorbid); monitored unit/ICU: "
             f"> {k.bolus_window_max_monitored_mg_kg} mg/kg over the window",
             "Guideline Table 6 (line 1658); Q6 lines 1493-1497, grade A (0.35 mg/kg needs a monitored setting); "
             "Table 1 line 378 (chronic-pain boluses 0.1-0.5 mg/kg)", bolus,
             why_priority="'serious adverse sequelae' possible"),
        Rule("pump.concentration_mismatch", Priority.HIGH, Kind.TECHNICAL,
             f"pump concentration differs from the order by > {k.concentration_tolerance_pct} %",
             "clinical-rules.md s1 (wrong concentration is the classic infusion error); alarm-defaults.md s5",
             concentration_mismatch, why_priority="a multiple-fold dosing error delivered silently"),
        Rule("pump.drug_mismatch", Priority.HIGH, Kind.TECHNICAL,
             "pump programmed with another drug than the order",
             "clinical-rules.md s1; alarm-defaults.md s5 (drug library)", drug_mismatch,
             why_priority="wrong drug or wrong library entry"),
        Rule("pump.syringe_mismatch", Priority.LOW, Kind.TECHNICAL,
             "pump syringe size differs from the order", "alarm-defaults.md s5 (drug library)",
             syringe_mismatch, why_priority="volume alarms and accuracy are off; rate is unaffected"),
        Rule("pump.rate_mismatch", Priority.MEDIUM, Kind.TECHNICAL,
             f"pump running at a rate that differs from the ordered rate by > {k.rate_tolerance_pct} %",
             "clinical-rules.md s1 (dose = rate x concentration / weight); site tolerance in config",
             rate_mismatch, delay_s=k.rate_mismatch_delay_s,
             why_priority="programming error; dose bands catch the dangerous ones"),
        Rule("pump.running_no_order", Priority.HIGH, Kind.TECHNICAL,
             "pump infusing with no patient admitted or no order recorded", INTENT, running_no_order,
             delay_s=k.intent_mismatch_delay_s, why_priority="drug delivered that nothing checks"),
        Rule("pump.running_not_started", Priority.MEDIUM, Kind.TECHNICAL,
             "pump infusing before Start is recorded (dose rules already judge it)", INTENT, running_not_started,
             delay_s=k.running_not_started_delay_s, why_priority="records disagree with the pump; dose is checked"),
        Rule("pump.running_while_paused", Priority.HIGH, Kind.TECHNICAL,
             "pump infusing although the infusion is recorded as paused", INTENT, running_while_paused,
             delay_s=k.intent_mismatch_delay_s, why_priority="drug delivered against the recorded decision"),
        Rule("pump.running_after_stop", Priority.HIGH, Kind.TECHNICAL,
             "pump infusing although the infusion is recorded as stopped", INTENT, running_after_stop,
             delay_s=k.intent_mismatch_delay_s, why_priority="drug delivered against the recorded decision"),
        Rule("pump.not_infusing", Priority.MEDIUM, Kind.TECHNICAL,
             f"infusion recorded as running but the pump has not infused for {fmt(k.pump_idle_alarm_s)} s",
             INTENT, not_infusing, why_priority="therapy interrupted; no immediate harm", after_stop=False),
    ]
