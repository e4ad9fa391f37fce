"""Every alarm lifecycle transition (IEC 60601-1-8 semantics), on the manager alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from monitord.alarms import AlarmManager
from monitord.config import Priority, load_config
from monitord.errors import Refused
from monitord.rules import Finding, Kind, Rule

WALL = datetime(2026, 1, 1, tzinfo=UTC)


def never(*_: Any) -> None:
    return None


def rule(rid: str, prio: Priority = Priority.MEDIUM, kind: Kind = Kind.PHYSIOLOGICAL, delay: float = 0) -> Rule:
    return Rule(rid, prio, kind, "cond", "src", never, delay_s=delay)


class Harness:
    def __init__(self, *rules: Rule, latching: list[str] | None = None) -> None:
        cfg = load_config().alarms.model_copy(update={"latching": latching or [],
                                                       "escalate_after_s": {Priority.LOW: 300, Priority.MEDIUM: 120}})
        self.events: list[dict[str, Any]] = []
        self.m = AlarmManager(list(rules), cfg, self.events.append)

    def at(self, t: float, *present: str) -> list[tuple[str, str]]:
        before = len(self.events)
        self.m.update({rid: Finding(f"{rid} now", 1.0) for rid in present}, t, WALL)
        return [(e["rule_id"], e["transition"]) for e in self.events[before:]]


def test_condition_shorter_than_delay_never_alarms() -> None:
    h = Harness(rule("a", delay=10))
    assert h.at(0, "a") == []
    assert h.at(9, "a") == []
    assert h.at(10) == []  # gone before the delay ran out
    assert h.events == []


def test_condition_lasting_the_delay_raises_once() -> None:
    h = Harness(rule("a", delay=10))
    h.at(0, "a")
    assert h.at(10, "a") == [("a", "raised")]
    assert h.at(11, "a") == []


def test_non_latching_alarm_clears_with_its_condition() -> None:
    h = Harness(rule("a"))
    h.at(0, "a")
    assert h.at(1) == [("a", "cleared")]
    assert h.events[-1]["state"] == "inactive"
    assert h.events[-1]["phase"] == "end"


def test_latching_alarm_stays_until_reset_by_a_person() -> None:
    h = Harness(rule("a", Priority.HIGH), latching=["a"])
    h.at(0, "a")
    assert h.at(1) == [("a", "latched")]
    assert h.at(100) == []
    assert h.m.sounding() is Priority.HIGH  # sound continues while latched and unacknowledged
    h.m.reset("a", "rn1")
    assert h.events[-1]["transition"] == "reset" and h.events[-1]["actor"] == "rn1"
    assert h.m.sounding() is None


def test_reset_refused_while_condition_present() -> None:
    h = Harness(rule("a", Priority.HIGH), latching=["a"])
    h.at(0, "a")
    with pytest.raises(Refused):
        h.m.reset("a", "rn1")


def test_latched_alarm_whose_condition_returns_is_reactivated() -> None:
    h = Harness(rule("a", Priority.HIGH), latching=["a"])
    h.at(0, "a")
    h.at(1)
    assert h.at(2, "a") == [("a", "reactivated")]


def test_acknowledge_silences_but_keeps_showing() -> None:
    h = Harness(rule("a"))
    h.at(0, "a")
    h.m.acknowledge("a", "rn1")
    assert h.events[-1]["transition"] == "acknowledged" and h.events[-1]["actor"] == "rn1"
    assert h.m.sounding() is None
    assert [a.rule.id for a in h.m.active()] == ["a"]
    with pytest.raises(Refused):
        h.m.acknowledge("a", "rn1")


def test_acknowledging_a_latched_alarm_resets_it() -> None:
    h = Harness(rule("a", Priority.HIGH), latching=["a"])
    h.at(0, "a")
    h.at(1)
    h.m.acknowledge("a", "rn2")
    assert h.events[-1]["transition"] == "reset"
    assert h.m.active() == []


def test_acknowledge_unknown_alarm_refused() -> None:
    with pytest.raises(Refused):
        Harness(rule("a")).m.acknowledge("a", "rn1")


def test_audio_pause_silences_current_alarms_for_its_duration() -> None:
    h = Harness(rule("a"), rule("b"))
    h.at(0, "a")
    assert h.m.audio_pause("rn1", 0) == 1
    assert h.events[-1]["transition"] == "audio_paused"
    assert h.m.sounding() is None
    assert h.m.pause_remaining(60) == 60
    assert h.at(119, "a") == []
    assert h.at(120, "a") == [("a", "audio_pause_ended")]
    assert h.m.sounding() is Priority.MEDIUM


def test_audio_pause_never_silences_a_new_alarm() -> None:
    h = Harness(rule("a", Priority.LOW), rule("b", Priority.HIGH))
    h.at(0, "a")
    h.m.audio_pause("rn1", 0)
    h.at(10, "a", "b")
    assert h.m.sounding() is Priority.HIGH


def test_audio_pause_with_nothing_sounding_refused() -> None:
    with pytest.raises(Refused):
        Harness(rule("a")).m.audio_pause("rn1", 0)


def test_unanswered_alarm_escalates_one_priority_at_a_time() -> None:
    h = Harness(rule("a", Priority.LOW))
    h.at(0, "a")
    assert h.at(299, "a") == []
    assert h.at(300, "a") == [("a", "escalated")]
    assert h.events[-1]["priority"] == "medium" and h.events[-1]["phase"] == "escalate"
    assert h.at(420, "a") == [("a", "escalated")]
    assert h.events[-1]["priority"] == "high"
    assert h.at(10_000, "a") == []  # high is the top


def test_acknowledged_alarm_does_not_escalate() -> None:
    h = Harness(rule("a", Priority.MEDIUM))
    h.at(0, "a")
    h.m.acknowledge("a", "rn1")
    assert h.at(1000, "a") == []


def test_low_priority_reminder_sounds_but_does_not_escalate() -> None:
    h = Harness(rule("reminder", Priority.LOW, Kind.ADVISORY))
    h.at(0, "reminder")
    assert h.m.sounding() is Priority.LOW
    assert h.at(10_000, "reminder") == []


def test_advisory_neither_sounds_nor_escalates() -> None:
    h = Harness(rule("a", Priority.ADVISORY, Kind.ADVISORY))
    h.at(0, "a")
    assert h.m.sounding() is None
    assert h.at(10_000, "a") == []


def test_alarm_seq_is_gapless_across_all_transitions() -> None:
    h = Harness(rule("a"), rule("b", Priority.HIGH), latching=["b"])
    h.at(0, "a", "b")
    h.m.acknowledge("a", "rn1")
    h.at(1)
    h.m.reset("b", "rn1")
    assert [e["alarm_seq"] for e in h.events] == list(range(1, len(h.events) + 1))


def test_active_list_is_ordered_by_priority_then_age() -> None:
    h = Harness(rule("low", Priority.LOW), rule("high", Priority.HIGH), rule("med", Priority.MEDIUM), rule("med2"))
    h.at(0, "low", "med")
    h.at(1, "low", "med", "high", "med2")
    assert [a.rule.id for a in h.m.active()] == ["high", "med", "med2", "low"]


def test_events_carry_source_priority_kind_and_ihe_fields() -> None:
    h = Harness(rule("a", Priority.HIGH, Kind.TECHNICAL))
    h.at(0, "a")
    e = h.events[-1]
    assert e["source"] == "src" and e["priority"] == "high" and e["kind"] == "technical"
    assert e["state"] == "active" and e["inactivation"] == "enabled" and e["phase"] == "start"
    assert e["message"] == "a now" and e["actor"] == "system"


def test_latching_rule_latches_only_once_it_reached_high() -> None:
    h = Harness(rule("a", Priority.MEDIUM), latching=["a"])
    h.at(0, "a")
    assert h.at(1) == [("a", "cleared")]  # a medium condition does not wait for a reset


def test_finding_of_higher_priority_raises_the_alarm_once_and_holds_it() -> None:
    h = Harness(rule("a", Priority.HIGH))
    h.m.update({"a": Finding("medium now", 1.0, priority=Priority.MEDIUM)}, 0, WALL)
    assert h.events[-1]["priority"] == "medium" and h.events[-1]["transition"] == "raised"
    h.m.acknowledge("a", "rn1")
    h.m.update({"a": Finding("high now", 2.0, priority=Priority.HIGH)}, 1, WALL)
    assert (h.events[-1]["transition"], h.events[-1]["priority"]) == ("escalated", "high")
    assert h.m.alarms["a"].sounds, "a worse condition sounds again after an acknowledgement"
    h.m.update({"a": Finding("medium again", 1.0, priority=Priority.MEDIUM)}, 2, WALL)
    assert h.m.alarms["a"].priority is Priority.HIGH and h.events[-1]["transition"] == "escalated"


def test_stale_acknowledgement_is_refused() -> None:
    h = Harness(rule("a"))
    h.at(0, "a")
    first = h.events[-1]["alarm_seq"]
    h.at(1)
    h.at(2, "a")  # a new occurrence
    with pytest.raises(Refused, match="stale"):
        h.m.acknowledge("a", "rn1", alarm_seq=first)
    h.m.acknowledge("a", "rn1", alarm_seq=h.events[-1]["alarm_seq"])
    assert h.events[-1]["transition"] == "acknowledged"


def test_restored_alarm_is_held_until_inputs_can_judge_it() -> None:
    h = Harness(rule("a"))
    h.at(0, "a")
    h.m.acknowledge("a", "rn1")
    saved = [a.to_dict() for a in h.m.active()]
    again = Harness(rule("a"))
    again.m.restore(saved, 100.0, WALL)
    hold = again.m.cfg.restore_hold_s
    assert again.at(101) == [] and again.at(100 + hold - 0.5) == []
    assert again.m.alarms["a"].inactivation.value == "acknowledged"
    assert again.at(100 + hold) == [("a", "cleared")]
