"""Rules on what the nurse enters: sedation scores, overdue assessments, psychomimetic effects,
and the pre-infusion checklist."""

from __future__ import annotations

from monitord.config import Config, Priority
from monitord.readings import SedationScale
from monitord.rules.base import Check, Finding, Kind, Rule, fmt
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


def overdue(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.status is not SessionStatus.RUNNING:
        return None
    last = state.last_assessment_mono
    since = last if last is not None else state.running_since_mono
    if since is None:
        return None
    if now - since > cfg.sedation.assessment_interval_s:
        minutes = (now - since) / 60
        return Finding(f"Sedation assessment overdue ({fmt(minutes, 0)} min since the last)", minutes)
    return None


def psychomimetic(state: BedState, now: float, cfg: Config) -> Finding | None:
    if not state.effects or state.status is SessionStatus.EMPTY:
        return None
    names = ", ".join(sorted(e.value.replace("_", " ") for e in state.effects))
    rescue = ", ".join(cfg.ketamine.rescue_medications)
    return Finding(f"Psychomimetic effects ({names}): consider lowering the rate or stopping. Rescue: {rescue}")


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
        Rule("sedation.overdue", Priority.LOW, Kind.ADVISORY,
             f"no sedation score for {fmt(s.assessment_interval_s / 60)} min while infusing",
             f"{SEDATION_SOURCE}; interval from alarm-defaults.md s3", overdue,
             why_priority="a missed check, not a patient state"),
        Rule("effects.psychomimetic", Priority.ADVISORY, Kind.ADVISORY,
             "psychomimetic effects entered by the nurse",
             "Guideline Q6 (effects are treated by lowering the rate or stopping); Q7 lines 1509-1565 (rescue), grade C",
             psychomimetic, why_priority="advice to the nurse; the nurse is already aware"),
    ]
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
