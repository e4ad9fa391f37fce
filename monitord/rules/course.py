"""Course rules: a finished course too small to judge, and too many treatments a year."""

from __future__ import annotations

from monitord.config import Config, Priority
from monitord.rules.base import Finding, Kind, Rule, fmt
from monitord.state import BedState

COURSE_SOURCE = "Guideline Q3 lines 1284-1290, Table 6 line 1664; grade C"
YEAR_SOURCE = "Guideline Q8 lines 1616-1620; grade C"


def short(state: BedState, now: float, cfg: Config) -> Finding | None:
    if not state.course_finished:
        return None
    hours = state.infusion_time_at(now) / 3600  # the time the pump actually infused
    c = cfg.course
    if state.cumulative_mg < c.min_total_mg or hours < c.min_duration_h:
        return Finding(
            f"Course ended at {fmt(state.cumulative_mg, 0)} mg over {fmt(hours, 1)} h: below {fmt(c.min_total_mg)} mg "
            f"over > {fmt(c.min_duration_h)} h, unlikely to show the effect; reassess before further treatment",
            state.cumulative_mg,
        )
    return None


def treatments_review(state: BedState, now: float, cfg: Config) -> Finding | None:
    n = state.treatments_last_12_months
    if n is None or state.patient is None:
        return None
    if cfg.course.treatments_per_year_review < n <= cfg.course.treatments_per_year_max:
        return Finding(f"{n} treatments in the last 12 months (> {cfg.course.treatments_per_year_review}): review response", n)
    return None


def treatments_max(state: BedState, now: float, cfg: Config) -> Finding | None:
    n = state.treatments_last_12_months
    if n is None or state.patient is None:
        return None
    if n > cfg.course.treatments_per_year_max:
        return Finding(f"{n} treatments in the last 12 months (> {cfg.course.treatments_per_year_max})", n)
    return None


def rules(cfg: Config) -> list[Rule]:
    c = cfg.course
    return [
        Rule("course.short", Priority.ADVISORY, Kind.ADVISORY,
             f"at stop: total < {c.min_total_mg} mg or time the pump infused < {c.min_duration_h} h",
             COURSE_SOURCE, short, why_priority="informs the next decision; no immediate harm"),
        Rule("course.treatments_review", Priority.ADVISORY, Kind.ADVISORY,
             f"more than {c.treatments_per_year_review} treatments in 12 months",
             YEAR_SOURCE, treatments_review, why_priority="informs the series decision"),
        Rule("course.treatments_max", Priority.LOW, Kind.ADVISORY,
             f"more than {c.treatments_per_year_max} treatments in 12 months",
             YEAR_SOURCE, treatments_max, why_priority="beyond the guideline's yearly limit"),
    ]
