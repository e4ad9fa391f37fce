"""Discharge readiness and the controlled-substance record (pure functions of state and config).

Readiness is a list of criteria, each met or not with what is missing, so the dashboard shows
which are met and a central station sees who is ready to go. Discharging before all are met
needs a recorded reason. The controlled-substance record (dispensed = infused + wasted) must add
up before it can be closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitord.config import Config
from monitord.readings import SedationScale, Vital
from monitord.rules.vitals import judged_value
from monitord.state import BedState, SessionStatus


@dataclass(frozen=True, slots=True)
class Criterion:
    id: str
    met: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "met": self.met, "detail": self.detail}


def readiness(state: BedState, now: float, cfg: Config) -> list[Criterion]:
    d = cfg.discharge
    out: list[Criterion] = []
    stopped = state.stopped_mono
    infusing = state.pump_infusing()
    out.append(Criterion("infusion_stopped", state.status is SessionStatus.STOPPED and not infusing,
                         "the pump is still infusing" if infusing else
                         ("" if state.status is SessionStatus.STOPPED else "the infusion is not stopped")))
    waited = (now - stopped) if stopped is not None else 0.0
    out.append(Criterion("observed_after_stop", stopped is not None and waited >= d.min_observation_after_stop_s,
                         f"{waited / 60:.0f} of {d.min_observation_after_stop_s / 60:.0f} min observed after stop"))
    sed = state.sedation
    after_stop = sed is not None and stopped is not None and sed.mono >= stopped
    alert = sed is not None and ((sed.scale is SedationScale.RASS and sed.score == 0)
                                 or (sed.scale is SedationScale.POSS and sed.score <= 1))
    out.append(Criterion("alert", after_stop and alert,
                         "" if after_stop and alert else "score sedation after stop: RASS 0 (POSS 1) needed"))
    effects_ok = not state.effects or state.effects_severity == "mild"
    out.append(Criterion("effects_resolved", effects_ok,
                         "" if effects_ok else f"{state.effects_severity} psychomimetic effects recorded"))
    band = d.vitals_band_pct
    off = []
    for vital in (Vital.HR, Vital.SBP):
        base = state.baseline.get(vital)
        value = judged_value(state, vital, now, cfg)
        if base is None:
            off.append(f"no {vital.value.upper()} baseline")
        elif value is None:
            off.append(f"no current {vital.value.upper()}")
        elif abs(value / base - 1) * 100 > band:
            off.append(f"{vital.value.upper()} {value:.0f} vs baseline {base:.0f}")
    out.append(Criterion("vitals_near_baseline", not off, "; ".join(off) or f"within {band:g} % of baseline"))
    score = state.discharge_score
    score_ok = score is not None and stopped is not None and score[2] >= stopped and score[1] >= d.min_score
    out.append(Criterion("discharge_score", score_ok,
                         f"{score[0].upper()} {score[1]}" if score is not None else
                         f"enter PADSS or Aldrete (>= {d.min_score}) after stop"))
    out.append(Criterion("escort", state.escort is not None, state.escort or "confirm a responsible adult escort"))
    return out


def record_balance(state: BedState, cfg: Config) -> dict[str, Any]:
    """The controlled-substance record: dispensed, infused (from the pump), wasted, and the gap."""
    dispensed, wasted = state.dispensed_mg, state.wasted_mg
    infused = state.pump_infused_mg
    gap = dispensed - infused - wasted
    return {"dispensed_mg": round(dispensed, 3), "infused_mg": round(infused, 3), "wasted_mg": round(wasted, 3),
            "unaccounted_mg": round(gap, 3), "closed": state.record_closed,
            "balanced": abs(gap) <= cfg.discharge.record_tolerance_mg}
