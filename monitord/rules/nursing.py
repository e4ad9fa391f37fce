"""Rules on what the nurse enters: sedation scores, overdue assessments, psychomimetic effects,
and the pre-infusion checklist."""

from __future__ import annotations

from monitord.config import Config, Priority
from monitord.readings import SedationScale
from monitord.rules.base import Check, Finding, Kind, Rule, fmt
from monitord.schedule import next_due
from monitord.state import BedState, SessionStatus

SEDATION_SOURCE = "Guideline Monitoring section (line 906 on) and Q6: sedation on a validated scale, grade A"


def _sedation_check(scale: SedationScale, threshold_key: str, deeper: str) -> Check:
    """POSS is worse when higher, RASS when lower; ``deeper`` names the stricter threshold key."""

    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        s = state.sedation
        if s is None or s.scale is not scale or state.status is SessionStatus.EMPTY:
            return None
        threshold = getattr(cfg.sedation, threshold_key)
        worse = getattr(cfg.sedation, deeper)
        if scale is SedationScale.POSS:
            hit = s.score >= threshold and (threshold_key == deeper or s.score < worse)
        else:
            hit = s.score <= threshold and (threshold_key == deeper or s.score > worse)
        if hit:
            return Finding(f"{scale.value.upper()} {s.score:+d} (by {s.actor})" if scale is SedationScale.RASS
                           else f"POSS {s.score} (by {s.actor})", float(s.score))
        return None

    return check


def observation_due(state: BedState, now: float, cfg: Config) -> Finding | None:
    """Shown (advisory) once an observation is due; audible (low) once overdue by the grace."""
    due = next_due(state, cfg)
    if due is None or now < due:
        return None
    late_min = (now - due) / 60
    if now - due >= cfg.observations.grace_s:
        return Finding(f"Observation overdue by {fmt(late_min, 0)} min: score sedation, check the patient",
                       late_min, priority=Priority.LOW)
    return Finding(f"Observation due (sedation score){f', {fmt(late_min, 0)} min ago' if late_min >= 1 else ''}",
                   late_min, priority=Priority.ADVISORY)


def psychomimetic(state: BedState, now: float, cfg: Config) -> Finding | None:
    if not state.effects or state.status is SessionStatus.EMPTY or _severe(state, cfg):
        return None
    names = ", ".join(sorted(e.value.replace("_", " ") for e in state.effects))
    rescue = ", ".join(cfg.ketamine.rescue_medications)
    return Finding(f"Psychomimetic effects ({names}, {state.effects_severity}): consider lowering the rate or "
                   f"stopping. Rescue: {rescue}")


def _severe(state: BedState, cfg: Config) -> str | None:
    s = state.sedation
    if s is not None and s.scale is SedationScale.RASS and s.score >= cfg.sedation.rass_agitation:
        return f"RASS {s.score:+d} (by {s.actor})"
    if state.effects and state.effects_severity == "severe":
        return "severe " + ", ".join(sorted(e.value.replace("_", " ") for e in state.effects))
    return None


def severe_effects(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.status is SessionStatus.EMPTY:
        return None
    what = _severe(state, cfg)
    if what is None:
        return None
    rescue = ", ".join(cfg.ketamine.rescue_medications)
    return Finding(f"Emergence reaction: {what}. Stop or lower the infusion, stay with the patient; consider "
                   f"rescue: {rescue}")


def weight_check(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.weight_check is None or state.patient is None:
        return None
    return Finding(state.weight_check)


def _checklist_check(item_id: str, text: str) -> Check:
    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        if state.checklist.get(item_id) is True and f"checklist.{item_id}" not in state.overrides:
            return Finding(f"Contraindication: {text} Physician override with a reason required.")
        return None

    return check


def _prompt_check(item_id: str, text: str) -> Check:
    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        if state.checklist.get(item_id) is False:
            return Finding(f"Checklist: {text} -> not done")
        return None

    return check


def rules(cfg: Config) -> list[Rule]:
    s = cfg.sedation
    o = cfg.observations
    out = [
        Rule("sedation.poss", Priority.MEDIUM, Kind.PHYSIOLOGICAL, f"POSS >= {s.poss_medium}",
             f"{SEDATION_SOURCE}; POSS action table (Pasero), alarm-defaults.md s4",
             _sedation_check(SedationScale.POSS, "poss_medium", "poss_high"),
             why_priority="unacceptable sedation: reduce dose, watch closely"),
        Rule("sedation.poss_high", Priority.HIGH, Kind.PHYSIOLOGICAL, f"POSS >= {s.poss_high}",
             f"{SEDATION_SOURCE}; POSS action table (Pasero), alarm-defaults.md s4",
             _sedation_check(SedationScale.POSS, "poss_high", "poss_high"),
             why_priority="somnolent: stop, stay with the patient, call for help"),
        Rule("sedation.rass", Priority.MEDIUM, Kind.PHYSIOLOGICAL, f"RASS <= {s.rass_medium}",
             f"{SEDATION_SOURCE}; RASS (Sessler 2002), alarm-defaults.md s4",
             _sedation_check(SedationScale.RASS, "rass_medium", "rass_high"),
             why_priority="moderate sedation beyond the aim of an analgesic infusion"),
        Rule("sedation.rass_high", Priority.HIGH, Kind.PHYSIOLOGICAL, f"RASS <= {s.rass_high}",
             f"{SEDATION_SOURCE}; RASS (Sessler 2002), alarm-defaults.md s4",
             _sedation_check(SedationScale.RASS, "rass_high", "rass_high"),
             why_priority="deep sedation: airway at risk"),
        Rule("obs.due", Priority.LOW, Kind.ADVISORY,
             f"observation (sedation score) due: every {fmt(o.first_hour_interval_s / 60)} min in the first "
             f"{fmt(o.first_phase_s / 60)} min, then every {fmt(o.interval_s / 60)} min, {fmt(o.after_rate_change_s / 60)} "
             f"min after a rate change and {fmt(o.after_stop_s / 60)} min after stop; shown when due, sounds (low) when "
             f"{fmt(o.grace_s / 60)} min late",
             f"{SEDATION_SOURCE}; monitoring until discharge (lines 990-995); schedule in config [observations]",
             observation_due, why_priority="a missed check, not a patient state"),
        Rule("effects.psychomimetic", Priority.ADVISORY, Kind.ADVISORY,
             "psychomimetic effects entered by the nurse (mild or moderate)",
             "Guideline Q6 (effects are treated by lowering the rate or stopping); Q7 lines 1509-1565 (rescue), grade C",
             psychomimetic, why_priority="advice to the nurse; the nurse is already aware"),
        Rule("effects.severe", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"RASS >= +{s.rass_agitation} or a severe psychomimetic effect entered by the nurse",
             "Guideline Q7 lines 1509-1565 (rescue medications), grade C; RASS +3/+4 (Sessler 2002)",
             severe_effects, why_priority="emergence reaction: harm to self or lines possible within minutes"),
    ]
    out.append(Rule("entry.weight_check", Priority.MEDIUM, Kind.ADVISORY,
                    f"weight differs by > {fmt(cfg.patient_limits.weight_change_confirm_pct)} % from this patient's last "
                    "recorded weight, or matches it in pounds, and is not yet confirmed",
                    "clinical-rules.md s1 (a wrong weight is the classic infusion error); config [patient_limits]",
                    weight_check, why_priority="every mg/kg figure depends on it"))
    for item in cfg.checklist:
        if item.kind == "contraindication":
            out.append(Rule(f"checklist.{item.id}", Priority.MEDIUM, Kind.ADVISORY,
                            f"checklist '{item.text}' answered yes without a physician override",
                            f"Guideline {item.source}", _checklist_check(item.id, item.text),
                            why_priority="the infusion should not go ahead without a physician's decision"))
        else:
            out.append(Rule(f"checklist.{item.id}", Priority.ADVISORY, Kind.ADVISORY,
                            f"checklist '{item.text}' answered no", f"Guideline {item.source}",
                            _prompt_check(item.id, item.text), why_priority="a reminder"))
    return out
