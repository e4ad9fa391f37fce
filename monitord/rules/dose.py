"""Dose rules: guideline dose bands, bolus, and the pump's programming against the order."""

from __future__ import annotations

from monitord.config import CareArea, Config, DoseThresholds, Priority
from monitord.dose import bolus_mg_kg, dose_rate_mg_kg_h
from monitord.readings import PumpState
from monitord.rules.base import Finding, Kind, Rule, fmt
from monitord.state import BedState, SessionStatus

GUIDE_RANGE = "Guideline Table 6 'Dosing range' (line 1658), Table 1 (line 368); grade C"
GUIDE_SETTING = "Guideline Q6 lines 1493-1497, Table 6 'Setting' (line 1699); grade A; stricter for elderly/comorbid: Q6 line 1499"
GUIDE_ICU = "Guideline Table 6 (line 1660); Q3 lines 1268-1275"


def _dose(state: BedState) -> float | None:
    if state.status is not SessionStatus.RUNNING:
        return None
    return state.dose_rate_mg_kg_h()


def _limits(state: BedState, cfg: Config) -> DoseThresholds:
    assert state.patient is not None
    return cfg.dose_thresholds(state.patient.stricter_limits)


def _who(state: BedState) -> str:
    return " (elderly/comorbid threshold)" if state.patient and state.patient.stricter_limits else ""


def low(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state)
    if not dose:
        return None
    lim = _limits(state, cfg).low_mg_kg_h
    if dose < lim:
        return Finding(f"Dose {fmt(dose)} mg/kg/h is below the {fmt(lim)} mg/kg/h analgesic range", dose)
    return None


def care_area(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state)
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
    dose = _dose(state)
    if dose is None or cfg.bed.care_area is CareArea.ICU:
        return None
    lim = _limits(state, cfg).soft_max_mg_kg_h
    if dose > lim:
        return Finding(f"Dose {fmt(dose)} mg/kg/h is above {fmt(lim)} mg/kg/h{_who(state)}: ICU only", dose)
    return None


def soft_max_icu(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state)
    if dose is None or cfg.bed.care_area is not CareArea.ICU or "dose.soft_max_icu" in state.overrides:
        return None
    lim = _limits(state, cfg).soft_max_mg_kg_h
    if dose > lim:
        return Finding(
            f"Dose {fmt(dose)} mg/kg/h is above {fmt(lim)} mg/kg/h{_who(state)}: record a physician override",
            dose,
        )
    return None


def hard_max(state: BedState, now: float, cfg: Config) -> Finding | None:
    dose = _dose(state)
    if dose is None:
        return None
    lim = _limits(state, cfg).hard_max_mg_kg_h
    if dose > lim:
        return Finding(f"Dose {fmt(dose)} mg/kg/h is above the {fmt(lim)} mg/kg/h hard limit", dose)
    return None


def bolus(state: BedState, now: float, cfg: Config) -> Finding | None:
    """A bolus the pump is giving, or one the order asks for, at or above the limit."""
    if state.patient is None or state.order is None or state.status is SessionStatus.EMPTY:
        return None
    lim = _limits(state, cfg).bolus_max_mg_kg
    pump = state.pump
    if pump is not None and pump.state is PumpState.BOLUS and pump.bolus_ml:
        per_kg = bolus_mg_kg(pump.bolus_ml, state.order.concentration_mg_ml, state.patient.weight_kg)
        if per_kg >= lim:
            return Finding(f"Bolus {fmt(per_kg, 3)} mg/kg >= {fmt(lim)} mg/kg{_who(state)}", per_kg)
    ordered = state.order.bolus_mg / state.patient.weight_kg
    if ordered >= lim:
        return Finding(f"Ordered bolus {fmt(ordered, 3)} mg/kg >= {fmt(lim)} mg/kg{_who(state)}", ordered)
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
        if pump.rate_ml_h:
            alt = dose_rate_mg_kg_h(pump.rate_ml_h, pump.concentration_mg_ml, state.patient.weight_kg)
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
    pump, order = state.pump, state.order
    if pump is None or order is None or pump.rate_ml_h is None or state.status is not SessionStatus.RUNNING:
        return None
    if pump.state is not PumpState.RUNNING:
        return None
    tol = order.rate_ml_h * cfg.ketamine.rate_tolerance_pct / 100
    if abs(pump.rate_ml_h - order.rate_ml_h) > tol:
        return Finding(f"Pump runs at {fmt(pump.rate_ml_h)} mL/h, order says {fmt(order.rate_ml_h)} mL/h", pump.rate_ml_h)
    return None


def rules(cfg: Config) -> list[Rule]:
    d = cfg.ketamine.dose
    e = cfg.ketamine.dose_elderly_or_comorbid
    return [
        Rule("dose.low", Priority.ADVISORY, Kind.ADVISORY,
             f"infusing below {d.low_mg_kg_h} mg/kg/h", GUIDE_RANGE, low,
             why_priority="no harm, a likely ineffective dose"),
        Rule("dose.care_area", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f">= {d.monitored_area_mg_kg_h} mg/kg/h ({e.monitored_area_mg_kg_h} elderly/comorbid) in an outpatient area",
             GUIDE_SETTING, care_area,
             why_priority="'serious adverse sequelae' possible; develops over minutes"),
        Rule("dose.soft_max", Priority.HIGH, Kind.PHYSIOLOGICAL,
             f"> {d.soft_max_mg_kg_h} mg/kg/h ({e.soft_max_mg_kg_h} elderly/comorbid) outside ICU",
             f"{GUIDE_RANGE}; {GUIDE_ICU}", soft_max_outside_icu,
             why_priority="above the chronic-pain range where ICU monitoring is not available"),
        Rule("dose.soft_max_icu", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"> {d.soft_max_mg_kg_h} mg/kg/h in ICU without a recorded physician override",
             f"{GUIDE_ICU}; alarm-defaults.md s5 (soft limit)", soft_max_icu,
             why_priority="permitted in ICU but needs a recorded decision"),
        Rule("dose.hard_max", Priority.HIGH, Kind.PHYSIOLOGICAL,
             f"> {d.hard_max_mg_kg_h} mg/kg/h", GUIDE_ICU, hard_max,
             why_priority="beyond any dose the guideline reports; anesthetic range"),
        Rule("dose.bolus", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"bolus >= {d.bolus_max_mg_kg} mg/kg ({e.bolus_max_mg_kg} elderly/comorbid)",
             "Guideline Table 6 (line 1658); Q6 lines 1493-1497, grade A", bolus,
             why_priority="'serious adverse sequelae' possible"),
        Rule("pump.concentration_mismatch", Priority.HIGH, Kind.TECHNICAL,
             f"pump concentration differs from the order by > {cfg.ketamine.concentration_tolerance_pct} %",
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
             f"pump rate differs from the ordered rate by > {cfg.ketamine.rate_tolerance_pct} %",
             "clinical-rules.md s1 (dose = rate x concentration / weight); site tolerance in config",
             rate_mismatch, delay_s=cfg.ketamine.rate_mismatch_delay_s, why_priority="programming error; dose bands catch the dangerous ones"),
    ]
