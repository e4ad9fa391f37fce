"""The rules every central display shares: current or not, blanked values, order, ages."""

from __future__ import annotations

import pytest

from monitord.central import view as v
from monitord.central.feed import NO_DATA_AFTER_S, Overview, Trend
from monitord.config import load_config
from tests.central.conftest import Clock
from tests.central.feeds import ROOT, SimBed, alarm

LIMITS = v.Limits.from_config()


def make(clock: Clock) -> Overview:
    return Overview(ROOT, clock)


def feed(ov: Overview, bed: SimBed, leaf: str, raw: bytes) -> None:
    ov.apply(bed.topic(leaf), raw)


def tile(ov: Overview, bed_id: str, clock: Clock) -> v.Tile:
    b = ov.get(bed_id)
    assert b is not None
    return v.tile(b, clock(), LIMITS)


def test_dose_limit_is_the_configured_vitals_stale_limit() -> None:
    cfg = load_config(overrides={"vitals": {"stale_after_s": 12.0}})
    assert v.Limits.from_config(cfg).dose_stale_after_s == 12.0
    assert LIMITS.dose_stale_after_s == load_config().vitals.stale_after_s


def test_a_bed_is_current_only_while_online_and_heard_within_the_limit() -> None:
    clock = Clock()
    ov, bed = make(clock), SimBed("bed-1")
    feed(ov, bed, "status", bed.status())
    feed(ov, bed, "state", bed.state(hr=80.0))
    assert tile(ov, "bed-1", clock).label == "online"
    assert tile(ov, "bed-1", clock).vitals["hr"].value == 80.0
    clock.advance(NO_DATA_AFTER_S)
    assert tile(ov, "bed-1", clock).live
    clock.advance(0.5)
    t = tile(ov, "bed-1", clock)
    assert t.label == "NO DATA" and not t.live
    assert all(x.value is None for x in t.vitals.values()) and t.dose.value is None and t.session is None
    assert t.age_s == pytest.approx(NO_DATA_AFTER_S + 0.5)  # the age of what was last heard stays visible
    feed(ov, bed, "status", bed.status(online=False, reason="stopped"))
    t = tile(ov, "bed-1", clock)
    assert t.label == "OFFLINE" and t.reason == "stopped"


def test_a_bed_with_no_status_yet_is_not_current() -> None:
    clock = Clock()
    ov, bed = make(clock), SimBed("bed-1")
    feed(ov, bed, "state", bed.state())
    assert tile(ov, "bed-1", clock).label == "NO DATA"


def test_vital_age_counts_the_time_since_the_state_arrived_and_stale_vitals_are_blank() -> None:
    clock = Clock()
    ov, bed = make(clock), SimBed("bed-1")
    feed(ov, bed, "status", bed.status())
    feed(ov, bed, "state", bed.state(vital_age=2.0, stale=("rr",)))
    clock.advance(3.0)
    t = tile(ov, "bed-1", clock)
    assert t.vitals["hr"] == v.Value(72.0, 5.0)
    assert t.vitals["rr"].value is None


def test_dose_blanked_once_the_pump_reading_is_older_than_the_limit() -> None:
    clock = Clock()
    ov, bed = make(clock), SimBed("bed-1")
    limit = LIMITS.dose_stale_after_s
    feed(ov, bed, "status", bed.status())
    feed(ov, bed, "state", bed.state(dose=0.5, dose_age=limit - 5))
    assert tile(ov, "bed-1", clock).dose == v.Value(0.5, limit - 5)
    clock.advance(4.0)  # status heartbeats keep the bed current; the state is now 4 s old
    feed(ov, bed, "status", bed.status())
    assert tile(ov, "bed-1", clock).dose.value == 0.5
    clock.advance(2.0)
    feed(ov, bed, "status", bed.status())
    t = tile(ov, "bed-1", clock)
    assert t.live and t.vitals["hr"].value == 72.0
    assert t.dose.value is None and t.dose.age_s == pytest.approx(limit + 1)
    feed(ov, bed, "state", bed.state(dose=0.5, dose_age=None))  # no pump reading at all
    assert tile(ov, "bed-1", clock).dose.value is None


def test_order_is_highest_alarm_then_name_and_a_lost_feed_ranks_with_medium() -> None:
    clock = Clock()
    ov = make(clock)
    setup = {"bed-a": [], "bed-b": [alarm("low", "l", "low one")], "bed-c": [alarm("high", "h", "high one")],
             "bed-d": [alarm("advisory", "a", "info"), alarm("medium", "m", "medium one")],
             "bed-e": [alarm("high", "h2", "another high")], "bed-f": [alarm("high", "h", "was high")]}
    for name, active in setup.items():
        bed = SimBed(name)
        feed(ov, bed, "status", bed.status(online=name != "bed-f"))
        feed(ov, bed, "state", bed.state())
        feed(ov, bed, "alarms", bed.alarms(*active))
    tiles = v.ordered([v.tile(b, clock(), LIMITS) for b in ov.all()])
    assert [t.bed_id for t in tiles] == ["bed-c", "bed-e", "bed-d", "bed-f", "bed-b", "bed-a"]
    assert tiles[2].alarm == {"priority": "medium", "message": "medium one", "rule_id": "m"}
    assert tiles[3].alarm is None and tiles[3].highs == ()  # an offline bed's last alarms are not shown as current


@pytest.mark.parametrize(("age", "text"), [(None, "--"), (0.4, "0 s"), (59.6, "60 s"), (99, "99 s"),
                                           (150, "2 min"), (3600, "60 min"), (7200, "2 h")])
def test_age_text(age: float | None, text: str) -> None:
    assert v.fmt_age(age) == text


def test_bed_count_grammar() -> None:
    assert [v.beds_text(n) for n in (0, 1, 2)] == ["0 beds", "1 bed", "2 beds"]


def test_trend_keeps_the_latest_value_per_step_and_forgets_past_the_window() -> None:
    tr = Trend(step_s=5.0, window_s=20.0)  # 4 rows
    tr.add(100.0, "hr", 70)
    tr.add(103.0, "hr", 71)   # same 5-s step: replaces
    tr.add(104.0, "spo2", 96)
    tr.add(105.0, "hr", 72)
    tr.add(101.0, "spo2", 95)  # late, its step is still kept
    tr.add(50.0, "hr", 1)      # older than anything kept: dropped
    tr.add(106.0, "hr", "x")   # not a number: ignored
    assert tr.export() == {"t": [100.0, 105.0], "hr": [71.0, 72.0], "spo2": [95.0, None],
                           **{k: [None, None] for k in ("rr", "etco2", "sbp", "dbp", "map", "dose")}}
    for k in range(3):
        tr.add(110.0 + 5 * k, "hr", 80 + k)
    assert tr.export()["t"] == [105.0, 110.0, 115.0, 120.0]
    assert tr.export()["hr"] == [72.0, 80.0, 81.0, 82.0]


def test_history_drops_repeats_and_trends_take_readings() -> None:
    clock = Clock()
    ov, bed = make(clock), SimBed("bed-1")
    topic, raw = bed.alarm_event(alarm("high", "spo2.critical", "SpO2 84 %"))
    ov.apply(topic, raw)
    ov.apply(topic, raw)  # QoS 1 repeat
    ov.apply(*bed.alarm_event(alarm("high", "spo2.critical", "SpO2 84 %"), transition="cleared"))
    ov.apply(*bed.vitals(hr=88.0, spo2=95.0, sbp=130.0, new_nibp=True))
    ov.apply(*bed.infusion(0.75))
    got = ov.detail("bed-1")
    assert got is not None
    _, history, trend = got
    assert [(h["alarm_seq"], h["transition"]) for h in history] == [(2, "cleared"), (1, "raised")]
    assert trend["hr"] == [88.0] and trend["sbp"] == [130.0] and trend["dose"] == [0.75]


def test_malformed_messages_are_counted_not_applied() -> None:
    ov = make(Clock())
    ov.apply(f"{ROOT}/bed-1/state", b"{not json")
    ov.apply(f"{ROOT}/bed-1/state", b"[1, 2]")
    ov.apply(f"{ROOT}/bed-1/state", b"")  # a cleared retained topic
    ov.apply("elsewhere/bed-1/state", b"{}")
    assert ov.bad_messages == 2 and ov.all() == []


def test_the_interlock_shows_per_bed_where_enabled() -> None:
    import json

    clock = Clock()
    ov, bed = make(clock), SimBed("bed-1")
    feed(ov, bed, "status", bed.status())
    feed(ov, bed, "state", bed.state())
    t = tile(ov, "bed-1", clock)
    assert t.interlock is None and v.session_text(t) == "running"  # off: nothing shown
    for phase, shown in (("armed", "running | interlock armed"), ("holding", "running | INTERLOCK HOLDING"),
                         ("failed", "running | INTERLOCK FAILED")):
        st = json.loads(bed.state())
        st["interlock"] = {"phase": phase, "trigger": "resp.apnoea", "attempts": 1, "pump_restarted": False,
                           "since_s": 3.0}
        feed(ov, bed, "state", json.dumps(st).encode())
        t = tile(ov, "bed-1", clock)
        assert t.interlock == phase and v.session_text(t) == shown
        assert t.to_json()["interlock"] == phase
