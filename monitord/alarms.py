"""The alarm lifecycle (IEC 60601-1-8 semantics). The one module that owns it.

Rules report which conditions are present; ``AlarmManager.update`` turns that into alarms:
- a condition must persist for its rule's delay before it becomes an alarm (artefact filter);
- a condition whose finding carries a higher priority (a merged vital limit, an overdue
  reminder) raises the alarm's priority; it is held until the condition ends;
- when it ends, a non-latching alarm clears; a latching one that reached HIGH stays ``latched``
  until a clinician resets (or acknowledges) it;
- acknowledge silences one alarm (it stays shown while its condition lasts); audio pause
  silences every alarm sounding now for a disclosed time, never one that arises later; an
  acknowledgement tied to an older occurrence (``alarm_seq``) is refused as stale;
- a physiological alarm nobody answers rises one priority after ``escalate_after_s`` (one step
  at a time; never technical alarms or reminders, never acknowledged or paused alarms);
- after a restart, restored alarms are held ``restore_hold_s`` so that inputs not yet re-read
  cannot clear them (no cleared/raised pair across a restart).
Every transition is emitted with a gapless per-bed ``alarm_seq`` and who acted.
Advisory-priority conditions are shown and recorded but never sound; advisory-kind rules
(reminders, course review) sound at their priority but never escalate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from monitord.config import AlarmConfig, Priority
from monitord.errors import Refused
from monitord.rules.base import Finding, Kind, Rule

SYSTEM = "system"


class AlarmState(StrEnum):
    ACTIVE = "active"  # condition present
    LATCHED = "latched"  # condition over, waiting for a clinician's reset
    INACTIVE = "inactive"  # over (only ever seen in the final event)


class Inactivation(StrEnum):
    ENABLED = "enabled"  # sounding
    ACKNOWLEDGED = "acknowledged"
    AUDIO_PAUSED = "audio_paused"


class Transition(StrEnum):
    RAISED = "raised"
    REACTIVATED = "reactivated"  # a latched alarm whose condition came back
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    AUDIO_PAUSED = "audio_paused"
    AUDIO_PAUSE_ENDED = "audio_pause_ended"
    LATCHED = "latched"
    CLEARED = "cleared"
    RESET = "reset"


# IHE PCD ACM alarm phase for each transition (alarm-defaults.md s6).
PHASE = {
    Transition.RAISED: "start",
    Transition.REACTIVATED: "start",
    Transition.ESCALATED: "escalate",
    Transition.ACKNOWLEDGED: "update",
    Transition.AUDIO_PAUSED: "update",
    Transition.AUDIO_PAUSE_ENDED: "update",
    Transition.LATCHED: "update",
    Transition.CLEARED: "end",
    Transition.RESET: "end",
}

_UP = {Priority.LOW: Priority.MEDIUM, Priority.MEDIUM: Priority.HIGH}


@dataclass(slots=True)
class Alarm:
    rule: Rule
    priority: Priority
    state: AlarmState
    inactivation: Inactivation
    latching: bool
    message: str
    value: float | None
    since: datetime
    since_mono: float
    escalate_at: float | None
    actor: str = SYSTEM
    occurrence_seq: int = 0  # alarm_seq of the transition that started this occurrence
    hold_until: float | None = None  # restored after a restart: not cleared before this

    @property
    def sounds(self) -> bool:
        """Advisory priority is shown only; low and up sound (a low reminder too) until silenced."""
        return self.priority is not Priority.ADVISORY and self.inactivation is Inactivation.ENABLED

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule.id,
            "priority": self.priority.value,
            "kind": self.rule.kind.value,
            "state": self.state.value,
            "inactivation": self.inactivation.value,
            "latching": self.latching,
            "message": self.message,
            "value": self.value,
            "source": self.rule.source,
            "since": self.since.isoformat().replace("+00:00", "Z"),
            "occurrence_seq": self.occurrence_seq,
        }


Emit = Callable[[dict[str, Any]], None]


class AlarmManager:
    def __init__(self, rules: list[Rule], cfg: AlarmConfig, emit: Emit) -> None:
        self.rules = {r.id: r for r in rules}
        self.cfg = cfg
        self._emit = emit
        self.alarms: dict[str, Alarm] = {}
        self._pending: dict[str, float] = {}  # rule id -> monotonic time the condition began
        self.alarm_seq = 0
        self.pause_until: float | None = None

    # -- evaluation -----------------------------------------------------------------------

    def update(self, findings: dict[str, Finding], now: float, wall: datetime) -> None:
        """Apply the rules' findings at ``now``: raise, latch, clear, escalate, end pauses."""
        for rule_id, finding in findings.items():
            rule = self.rules[rule_id]
            alarm = self.alarms.get(rule_id)
            if alarm is not None:
                alarm.message, alarm.value = finding.message, finding.value
                alarm.hold_until = None
                if alarm.state is AlarmState.LATCHED:
                    alarm.state = AlarmState.ACTIVE
                    alarm.inactivation = Inactivation.ENABLED
                    self._transition(alarm, Transition.REACTIVATED, SYSTEM, new_occurrence=True)
                prio = finding.priority or rule.priority
                if prio.rank > alarm.priority.rank:
                    alarm.priority = prio
                    if alarm.inactivation is Inactivation.ACKNOWLEDGED:
                        alarm.inactivation = Inactivation.ENABLED  # a worse condition sounds again
                    alarm.escalate_at = self._escalation_time(rule.kind, prio, now)
                    self._transition(alarm, Transition.ESCALATED, SYSTEM)
                continue
            began = self._pending.setdefault(rule_id, now)
            if now - began >= rule.delay_s:
                self._raise(rule, finding, now, wall)
        for rule_id in list(self._pending):
            if rule_id not in findings:
                del self._pending[rule_id]
        for rule_id, alarm in list(self.alarms.items()):
            if rule_id in findings or alarm.state is AlarmState.LATCHED:
                continue
            if alarm.hold_until is not None and now < alarm.hold_until:
                continue
            if alarm.latching and alarm.priority is Priority.HIGH:
                alarm.state = AlarmState.LATCHED
                self._transition(alarm, Transition.LATCHED, SYSTEM)
            else:
                self._end(alarm, Transition.CLEARED, SYSTEM)
        self._expire_pause(now)
        self._escalate(now)

    def _raise(self, rule: Rule, finding: Finding, now: float, wall: datetime) -> None:
        alarm = Alarm(
            rule=rule,
            priority=finding.priority or rule.priority,
            state=AlarmState.ACTIVE,
            inactivation=Inactivation.ENABLED,
            latching=rule.id in self.cfg.latching,
            message=finding.message,
            value=finding.value,
            since=wall,
            since_mono=now,
            escalate_at=self._escalation_time(rule.kind, finding.priority or rule.priority, now),
        )
        self.alarms[rule.id] = alarm
        self._pending.pop(rule.id, None)
        self._transition(alarm, Transition.RAISED, SYSTEM, new_occurrence=True)

    def _escalation_time(self, kind: Kind, priority: Priority, start: float) -> float | None:
        """Only physiological alarms escalate: a technical alarm's priority already says what
        is lost, and a reminder should not become urgent by itself."""
        after = self.cfg.escalate_after_s.get(priority)
        if kind is not Kind.PHYSIOLOGICAL or after is None or priority not in _UP:
            return None
        return start + after

    def _escalate(self, now: float) -> None:
        for alarm in list(self.alarms.values()):
            if alarm.escalate_at is None or now < alarm.escalate_at or alarm.inactivation is not Inactivation.ENABLED:
                continue
            alarm.priority = _UP[alarm.priority]
            alarm.escalate_at = self._escalation_time(alarm.rule.kind, alarm.priority, now)
            self._transition(alarm, Transition.ESCALATED, SYSTEM)

    def _expire_pause(self, now: float) -> None:
        if self.pause_until is None or now < self.pause_until:
            return
        self.pause_until = None
        for alarm in self.alarms.values():
            if alarm.inactivation is Inactivation.AUDIO_PAUSED:
                alarm.inactivation = Inactivation.ENABLED
                alarm.escalate_at = self._escalation_time(alarm.rule.kind, alarm.priority, now)
                self._transition(alarm, Transition.AUDIO_PAUSE_ENDED, SYSTEM)

    def _end(self, alarm: Alarm, how: Transition, actor: str) -> None:
        del self.alarms[alarm.rule.id]
        alarm.state = AlarmState.INACTIVE
        self._transition(alarm, how, actor)

    def _transition(self, alarm: Alarm, how: Transition, actor: str, new_occurrence: bool = False) -> None:
        self.alarm_seq += 1
        if new_occurrence:
            alarm.occurrence_seq = self.alarm_seq
        alarm.actor = actor
        data = alarm.to_dict()
        data.update(alarm_seq=self.alarm_seq, transition=how.value, phase=PHASE[how], actor=actor)
        self._emit(data)

    # -- operator actions -------------------------------------------------------------------

    def acknowledge(self, rule_id: str, actor: str, alarm_seq: int | None = None) -> None:
        """Silence one alarm. A latched alarm whose condition is over is reset by it.
        ``alarm_seq``: the transition the acknowledger saw; older than this occurrence is stale."""
        alarm = self.alarms.get(rule_id)
        if alarm is None:
            raise Refused(f"No alarm '{rule_id}' to acknowledge")
        if alarm_seq is not None and alarm_seq < alarm.occurrence_seq:
            raise Refused(f"Acknowledgement of '{rule_id}' is stale: it refers to alarm_seq {alarm_seq}, the alarm "
                          f"was raised again at {alarm.occurrence_seq}")
        if alarm.state is AlarmState.LATCHED:
            self._end(alarm, Transition.RESET, actor)
            return
        if alarm.inactivation is Inactivation.ACKNOWLEDGED:
            raise Refused(f"Alarm '{rule_id}' is already acknowledged")
        alarm.inactivation = Inactivation.ACKNOWLEDGED
        alarm.escalate_at = None
        self._transition(alarm, Transition.ACKNOWLEDGED, actor)

    def reset(self, rule_id: str, actor: str) -> None:
        alarm = self.alarms.get(rule_id)
        if alarm is None:
            raise Refused(f"No alarm '{rule_id}' to reset")
        if alarm.state is not AlarmState.LATCHED:
            raise Refused(f"Alarm '{rule_id}' is still present; it can be acknowledged, not reset")
        self._end(alarm, Transition.RESET, actor)

    def audio_pause(self, actor: str, now: float) -> int:
        """Silence every alarm sounding now for ``audio_pause_s``; returns how many."""
        paused = [a for a in self.alarms.values() if a.sounds]
        if not paused:
            raise Refused("No alarm is sounding")
        self.pause_until = now + self.cfg.audio_pause_s
        for alarm in paused:
            alarm.inactivation = Inactivation.AUDIO_PAUSED
            alarm.escalate_at = None
            self._transition(alarm, Transition.AUDIO_PAUSED, actor)
        return len(paused)

    # -- what the outputs show ------------------------------------------------------------

    def sounding(self) -> Priority | None:
        """The highest priority that should sound now (None: silence)."""
        prios = [a.priority for a in self.alarms.values() if a.sounds]
        return max(prios, key=lambda p: p.rank) if prios else None

    def pause_remaining(self, now: float) -> float:
        return max(0.0, self.pause_until - now) if self.pause_until is not None else 0.0

    def active(self) -> list[Alarm]:
        """Alarms to show, highest priority first, then oldest first."""
        return sorted(self.alarms.values(), key=lambda a: (-a.priority.rank, a.since_mono))

    def restore(self, saved: list[dict[str, Any]], now: float, wall: datetime,
                pause_remaining_s: float = 0.0) -> None:
        """Bring back alarms that were active or latched before a restart, with their priority,
        acknowledgement and a remaining audio pause (no events emitted: they were recorded when
        they happened). They are held ``restore_hold_s`` until fresh inputs can judge them."""
        if pause_remaining_s > 0:
            self.pause_until = now + pause_remaining_s
        for d in saved:
            rule = self.rules.get(d["rule_id"])
            if rule is None:
                continue
            since = datetime.fromisoformat(str(d["since"]).replace("Z", "+00:00"))
            self.alarms[rule.id] = Alarm(
                rule=rule,
                priority=Priority(d["priority"]),
                state=AlarmState(d["state"]),
                inactivation=Inactivation(d["inactivation"]),
                latching=rule.id in self.cfg.latching,
                message=d["message"],
                value=d.get("value"),
                since=since,
                since_mono=now - max(0.0, (wall - since).total_seconds()),
                escalate_at=None,
                occurrence_seq=int(d.get("occurrence_seq") or 0),
                hold_until=now + self.cfg.restore_hold_s,
            )
            alarm = self.alarms[rule.id]
            if alarm.inactivation is Inactivation.AUDIO_PAUSED and self.pause_until is None:
                alarm.inactivation = Inactivation.ENABLED
            if alarm.inactivation is Inactivation.ENABLED and alarm.state is AlarmState.ACTIVE:
                alarm.escalate_at = self._escalation_time(rule.kind, alarm.priority, now)
