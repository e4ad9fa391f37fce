"""The observation schedule: when the next sedation score is due (pure, from state and config).

Every ``first_hour_interval_s`` during the first phase of the infusion, every ``interval_s``
after it; one ``after_rate_change_s`` after the pump's rate changed and ``after_stop_s`` after
the infusion stopped, unless an observation was recorded since. It runs from the start of the
infusion (recorded, or the pump's first infusing report) until discharge.
"""

from __future__ import annotations

from monitord.config import Config
from monitord.state import BedState, SessionStatus


def next_due(state: BedState, cfg: Config) -> float | None:
    """Monotonic time the next observation is due, or None when none is scheduled."""
    start = state.start_mono
    if state.status is SessionStatus.EMPTY or start is None:
        return None
    o = cfg.observations
    last = state.last_assessment_mono
    base = last if last is not None and last >= start else start
    interval = o.first_hour_interval_s if base - start < o.first_phase_s else o.interval_s
    due = base + interval
    for event, after in ((state.rate_change_mono, o.after_rate_change_s), (state.stopped_mono, o.after_stop_s)):
        if event is not None and event >= start and (last is None or last < event):
            due = min(due, event + after)
    return due
