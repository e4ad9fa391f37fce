"""The observation schedule: when the next observation (sedation score) is due, a pure function
of state and config.

Due times sit on a grid anchored at the start of the infusion (recorded, or the pump's first
infusing report): every ``first_hour_interval_s`` during the first phase, every ``interval_s``
after it, until discharge. An observation satisfies the grid points up to half an interval after
it, so one charted a few minutes early or late neither pulls the next one forward nor pushes the
timetable back. One more is due ``after_rate_change_s`` after the pump's rate changed and
``after_stop_s`` after the infusion stopped, unless an observation was recorded since.
"""

from __future__ import annotations

from monitord.config import Config
from monitord.state import BedState, SessionStatus


def _grid(start: float, cfg: Config) -> list[tuple[float, float]]:
    """(due time, the interval it belongs to) for the first phase, then the first regular point."""
    o = cfg.observations
    out = []
    t = start + o.first_hour_interval_s
    while t <= start + o.first_phase_s + 1e-6:
        out.append((t, o.first_hour_interval_s))
        t += o.first_hour_interval_s
    last = out[-1][0] if out else start
    out.append((max(last, start + o.first_phase_s) + o.interval_s, o.interval_s))
    return out


def next_due(state: BedState, cfg: Config) -> float | None:
    """Monotonic time the next observation is due, or None when none is scheduled."""
    start = state.start_mono
    if state.status is SessionStatus.EMPTY or start is None:
        return None
    o = cfg.observations
    last = state.last_assessment_mono
    if last is not None and last < start:
        last = None
    due = None
    points = _grid(start, cfg)
    for t, interval in points:
        if last is None or t - last > interval / 2:
            due = t
            break
    if due is None:  # past the first phase: the regular grid goes on
        t, interval = points[-1]
        assert last is not None
        steps = max(0, int((last + interval / 2 - t) // interval) + 1)
        due = t + steps * interval
        if due - last <= interval / 2:
            due += interval
    for event, after in ((state.rate_change_mono, o.after_rate_change_s), (state.stopped_mono, o.after_stop_s)):
        if event is not None and event >= start and (last is None or last < event):
            due = min(due, event + after)
    return due
