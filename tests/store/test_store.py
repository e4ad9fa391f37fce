"""The store on real databases: every event kept once and in order, typed rows derived, the bed
resumed after a restart, a database that refuses writes becoming an alarm and then catching up
with nothing lost (and, past the queue's bound, only the oldest readings dropped), the registry,
retention and trends, a damaged file moved aside."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import event, func, inspect, select

from monitord import readings as r
from monitord.errors import Refused
from monitord.events import EventKind
from monitord.store import models as m
from monitord.store import writer as writer_module
from monitord.store.database import alembic_config, schema_revision
from tests.store.conftest import Bed, make_config


def _rows(bed: Bed, *cols: Any, where: Any = None, order: Any = None) -> list[Any]:
    q = select(*cols)
    if where is not None:
        q = q.where(where)
    if order is not None:
        q = q.order_by(order)
    with bed.store.db.connect() as conn:
        return list(conn.execute(q).all())


def _count(bed: Bed, model: Any) -> int:
    with bed.store.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar() or 0)


def _play_course_with_alarms(bed: Bed) -> None:
    bed.admit_and_start()
    bed.run(120)
    bed.spo2 = 80.0  # below the critical 85 % (latching) for longer than its 10 s delay
    bed.run(20)
    bed.spo2 = 98.0
    bed.run(10)
    bed.submit(r.ResetAlarm("vital.spo2_low", "rn2"))
    with pytest.raises(Refused):
        bed.submit(r.StartInfusion("rn1"))  # already running: refused, and audited
    bed.submit(r.RescueMedication("midazolam", 1.0, "iv", "rn1", reason="dysphoria"))
    bed.submit(r.SedationScore(r.SedationScale.POSS, 2, "rn1"))
    bed.run(60)


async def test_every_event_stored_once_in_order(store_settings: dict[str, Any]) -> None:
    bed = Bed(make_config(store_settings))
    await bed.start()
    _play_course_with_alarms(bed)
    bed.stop_and_discharge()
    bed.flush()

    stored = bed.store.events_after(0, 1_000_000)
    assert [e.to_dict() for e in stored] == [e.to_dict() for e in bed.events]
    paged = bed.store.events_after(10, 5)
    assert [e.seq for e in paged] == [11, 12, 13, 14, 15]

    alarms = [e for e in bed.events if e.kind is EventKind.ALARM]
    assert alarms, "the course should raise alarms"
    rows = _rows(bed, m.AlarmEvent.c.alarm_seq, m.AlarmEvent.c.rule_id, m.AlarmEvent.c.transition, m.AlarmEvent.c.actor,
                 order=m.AlarmEvent.c.alarm_seq)
    assert [(a.data["alarm_seq"], a.data["rule_id"], a.data["transition"], a.data["actor"]) for a in alarms] == \
        [tuple(x) for x in rows]
    assert ("vital.spo2_low", "reset", "rn2") in [(x[1], x[2], x[3]) for x in rows]

    n_readings = sum(1 for e in bed.events if e.kind in (EventKind.VITALS, EventKind.INFUSION))
    assert _count(bed, m.Reading) == n_readings
    (s,) = _rows(bed, m.Session.c.patient_id, m.Session.c.cumulative_mg, m.Session.c.pain_before, m.Session.c.pain_after,
                 m.Session.c.started_at, m.Session.c.stopped_at, m.Session.c.discharged_at, m.Session.c.baseline)
    stopped = next(e for e in bed.events if e.kind is EventKind.SESSION and e.data["action"] == "stopped")
    assert s.patient_id == "P-1"
    assert s.cumulative_mg == pytest.approx(stopped.data["cumulative_mg"])
    assert s.cumulative_mg > 0
    assert (s.pain_before, s.pain_after) == (8, 4)
    assert s.started_at is not None and s.stopped_at is not None and s.discharged_at is not None
    assert s.baseline["hr"] == 72.0

    audit = _rows(bed, m.AuditEntry.c.actor, m.AuditEntry.c.action, m.AuditEntry.c.accepted, order=m.AuditEntry.c.seq)
    assert (None, "StartInfusion", False) in [tuple(a) for a in audit] or ("rn1", "StartInfusion", False) in [
        tuple(a) for a in audit]
    assert ("rn2", "reset", True) in [tuple(a) for a in audit]
    assert all(a.actor != "system" for a in audit)
    (rescue,) = _rows(bed, m.Observation.c.drug, m.Observation.c.dose_mg, where=m.Observation.c.type == "rescue")
    assert tuple(rescue) == ("midazolam", 1.0)
    assert _count(bed, m.ChecklistAnswer) == len(bed.engine.config.checklist)
    await bed.stop()


async def test_restart_resumes_the_session(store_settings: dict[str, Any]) -> None:
    config = make_config(store_settings)
    bed = Bed(config)
    await bed.start()
    bed.admit_and_start()
    bed.run(300)
    bed.spo2 = 80.0
    bed.run(20)
    bed.spo2 = 98.0
    bed.run(5)
    before = bed.engine
    assert before.alarms.alarms["vital.spo2_low"].state.value == "latched"
    bed.flush()
    infusion_before = before.state.infusion_time_at(bed.clock.monotonic())
    await bed.stop()

    bed.clock.advance(120.0)  # the daemon is down for two minutes
    again = Bed(config, clock=bed.clock)
    e = again.engine
    assert e.state.status is before.state.status
    assert e.state.patient == before.state.patient
    assert e.state.order == before.state.order
    assert e.state.cumulative_mg == pytest.approx(before.state.cumulative_mg)
    assert e.state.baseline == before.state.baseline
    assert e.alarms.alarms["vital.spo2_low"].state.value == "latched"
    assert e.state.infusion_time_at(again.clock.monotonic()) == pytest.approx(infusion_before + 120.0)
    assert e.seq == before.seq + 1  # the recovery event follows the stored sequence
    rec = again.events[0]
    assert rec.kind is EventKind.SYSTEM and rec.data["action"] == "recovered"
    assert rec.data["downtime_s"] == pytest.approx(120.0)

    await again.start()
    again.run(30)
    again.flush()
    seqs = [ev.seq for ev in again.store.events_after(0, 1_000_000)]
    assert seqs == list(range(1, e.seq + 1))
    alarm_seqs = [x[0] for x in _rows(again, m.AlarmEvent.c.alarm_seq, order=m.AlarmEvent.c.alarm_seq)]
    assert alarm_seqs == list(range(1, len(alarm_seqs) + 1))
    await again.stop()


def _refuse_writes(bed: Bed, on: dict[str, bool]) -> None:
    """Make the real database refuse writes while ``on["on"]``: SQLite ``PRAGMA query_only``
    (what a read-only file gives) or a PostgreSQL READ ONLY transaction."""
    sqlite = bed.store.db.dialect.name == "sqlite"

    @event.listens_for(bed.store.db, "begin")
    def _begin(conn: Any) -> None:
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA query_only = {1 if on['on'] else 0}")
        elif on["on"]:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")


async def _until(cond: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_refused_writes_raise_the_store_alarm_and_nothing_is_lost(store_settings: dict[str, Any]) -> None:
    bed = Bed(make_config(store_settings | {"flush_interval_s": 0.05}))
    await bed.start()
    task = asyncio.create_task(bed.loop.run())
    refuse = {"on": False}
    _refuse_writes(bed, refuse)
    bed.admit_and_start()
    bed.run(10)
    bed.flush()

    refuse["on"] = True
    bed.run(30)
    await _until(lambda: "tech.store_failed" in bed.engine.alarms.alarms)
    alarm = bed.engine.alarms.alarms["tech.store_failed"]
    assert alarm.priority.value == "high"
    assert bed.store.writer.queued > 0
    bed.run(30)  # monitoring goes on while nothing can be written

    refuse["on"] = False
    await _until(lambda: "tech.store_failed" not in bed.engine.alarms.alarms)
    bed.run(5)
    bed.flush()
    stored = bed.store.events_after(0, 1_000_000)
    assert [ev.to_dict() for ev in stored] == [ev.to_dict() for ev in bed.events]
    transitions = [(ev.data["rule_id"], ev.data["transition"]) for ev in stored if ev.kind is EventKind.ALARM]
    assert ("tech.store_failed", "raised") in transitions and ("tech.store_failed", "cleared") in transitions
    bed.loop.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bed.stop()


async def test_full_queue_drops_oldest_readings_and_keeps_the_rest(store_settings: dict[str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While the database refuses writes the queue is bounded: past ``MAX_PENDING`` the oldest
    raw readings go (counted, in the alarm's detail); alarm, session and observation events stay,
    and everything kept is stored once and in order when the database is back."""
    monkeypatch.setattr(writer_module, "MAX_PENDING", 150)
    monkeypatch.setattr(writer_module, "RETRY_MAX_S", 0.5)  # retry soon once the database is back
    bed = Bed(make_config(store_settings | {"flush_interval_s": 0.05}))
    await bed.start()
    task = asyncio.create_task(bed.loop.run())
    refuse = {"on": False}
    _refuse_writes(bed, refuse)
    bed.admit_and_start()
    bed.run(10)
    bed.flush()

    refuse["on"] = True
    first_refused = bed.engine.seq + 1
    bed.run(2)
    await _until(lambda: "tech.store_failed" in bed.engine.alarms.alarms)
    assert bed.store.writer.dropped == 0
    # About 300 readings (1 Hz pump + 1 Hz monitor) with alarms, a baseline and observations among them.
    bed.spo2 = 80.0
    bed.run(20)  # vital.spo2_low raised (latching)
    bed.spo2 = 98.0
    bed.run(10)  # ... and latched
    bed.submit(r.SedationScore(r.SedationScale.POSS, 2, "rn1"))
    bed.submit(r.PainScore(5, "rn1"))
    bed.run(100)
    bed.submit(r.CaptureBaseline("rn1"))
    bed.submit(r.ResetAlarm("vital.spo2_low", "rn2"))
    bed.run(20)
    dropped = bed.store.writer.dropped
    assert dropped > 100
    assert bed.store.writer.queued <= writer_module.MAX_PENDING + bed.config.store.batch_max
    await _until(lambda: "readings dropped" in bed.engine.alarms.alarms["tech.store_failed"].message)
    detail = re.search(r"(\d+) readings dropped \(queue full\)", bed.engine.alarms.alarms["tech.store_failed"].message)
    assert detail is not None and 1 <= int(detail.group(1)) <= dropped  # refreshed at 1, 10, 100... or each minute

    last_refused = bed.engine.seq
    refuse["on"] = False
    await _until(lambda: "tech.store_failed" not in bed.engine.alarms.alarms)
    bed.run(3)
    bed.flush()

    stored = bed.store.events_after(0, 1_000_000)
    stored_seqs = [ev.seq for ev in stored]
    missing = sorted({ev.seq for ev in bed.events} - set(stored_seqs))
    # (readings may still go while the backlog drains: the count is the writer's final one)
    assert len(missing) == bed.store.writer.dropped >= dropped
    by_seq = {ev.seq: ev for ev in bed.events}
    assert {by_seq[s].kind for s in missing} <= {EventKind.VITALS, EventKind.INFUSION}
    assert missing[0] >= first_refused
    # Oldest first: the dropped readings are one run of consecutive readings, and every newer
    # reading is kept, up to the last one taken while the database was refusing.
    readings = [ev.seq for ev in bed.events if ev.kind in (EventKind.VITALS, EventKind.INFUSION)]
    assert [s for s in readings if missing[0] <= s <= missing[-1]] == missing
    assert [s for s in readings if s < last_refused][-100:] == [s for s in stored_seqs if s in set(readings)
                                                                and s < last_refused][-100:]
    # Never dropped: every alarm, session and observation event of the outage is stored.
    during = [ev for ev in bed.events if ev.seq >= first_refused]
    for kind in (EventKind.ALARM, EventKind.SESSION, EventKind.OBSERVATION, EventKind.SYSTEM):
        assert any(ev.kind is kind for ev in during), kind
    # Everything kept: stored exactly once, in order, as emitted; typed rows for each.
    assert [ev.to_dict() for ev in stored] == [ev.to_dict() for ev in bed.events if ev.seq not in set(missing)]
    kept_readings = [ev.seq for ev in stored if ev.kind in (EventKind.VITALS, EventKind.INFUSION)]
    assert [x[0] for x in _rows(bed, m.Reading.c.seq, order=m.Reading.c.seq)] == kept_readings
    assert [x[0] for x in _rows(bed, m.AlarmEvent.c.seq, order=m.AlarmEvent.c.seq)] == [
        ev.seq for ev in stored if ev.kind is EventKind.ALARM]
    transitions = [(ev.data["rule_id"], ev.data["transition"]) for ev in stored if ev.kind is EventKind.ALARM]
    assert ("vital.spo2_low", "latched") in transitions and ("vital.spo2_low", "reset") in transitions
    bed.loop.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await bed.stop()


def test_migrations_run_from_empty(store_settings: dict[str, Any]) -> None:
    bed = Bed(make_config(store_settings))
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert schema_revision(bed.store.db) == head
    tables = set(inspect(bed.store.db).get_table_names())
    assert set(m.metadata.tables) <= tables
    bed.store.db.dispose()
    again = Bed(make_config(store_settings))  # opening an up-to-date database changes nothing
    assert schema_revision(again.store.db) == head
    again.store.db.dispose()


async def test_treatment_count_and_response(store_settings: dict[str, Any]) -> None:
    bed = Bed(make_config(store_settings))
    await bed.start()
    bed.admit_and_start(pain=8)
    assert bed.engine.state.treatments_last_12_months == 1
    bed.run(60)
    bed.stop_and_discharge(pain=4)
    bed.flush()

    bed.clock.advance(30 * 86400)
    bed.admit_and_start(pain=6)
    assert bed.engine.state.treatments_last_12_months == 2
    bed.run(60)
    bed.stop_and_discharge(pain=5)
    bed.flush()

    resp = bed.store.responses("P-1")
    assert [(x.pain_before, x.pain_after, x.reduction_pct, x.reduced_at_end) for x in resp] == [
        (8, 4, 50.0, True), (6, 5, 16.7, False)]
    assert bed.store.treatment_count("someone-else") == 1
    assert bed.store.last_weight_kg("P-1") == 70 and bed.store.last_weight_kg("someone-else") is None

    bed.clock.advance(340 * 86400)  # the first treatment is now over 12 months old
    assert bed.store.treatment_count("P-1") == 2  # the second one, plus this admission
    await bed.stop()


async def test_retention_prunes_raw_readings_and_keeps_trends(store_settings: dict[str, Any]) -> None:
    bed = Bed(make_config(store_settings | {"raw_retention_h": 0.1, "trend_interval_s": 60.0}))
    await bed.start()
    bed.admit_and_start()
    bed.run(1200)
    bed.flush()
    bed.store.retention.run(bed.clock.utc_now())  # the writer also runs it every few minutes
    produced = sum(1 for e in bed.events if e.kind in (EventKind.VITALS, EventKind.INFUSION))
    cutoff = bed.clock.utc_now().timestamp() - 0.1 * 3600
    times = [t.timestamp() for (t,) in _rows(bed, m.Reading.c.time)]
    assert times and min(times) >= cutoff
    assert len(times) == sum(1 for e in bed.events if e.kind in (EventKind.VITALS, EventKind.INFUSION)
                             and e.time.timestamp() >= cutoff) < produced
    kinds = {k for (k,) in _rows(bed, m.StoredEvent.c.kind, where=m.StoredEvent.c.seq < 20)}
    assert "session" in kinds and "vitals" not in kinds  # decisions kept, old raw readings gone

    spo2 = bed.store.trend("spo2", bed.clock.utc_now().replace(year=2000))
    assert len(spo2) >= 20  # the whole 20 minutes, one point a minute, pruned or not
    assert all(p.min == p.max == p.mean == 98.0 for p in spo2)
    rate = bed.store.trend("rate_ml_h", bed.clock.utc_now().replace(year=2000))
    assert any(p.min == 0.0 and p.max == 35.0 for p in rate)  # the minute the pump started
    await bed.stop()


async def test_damaged_file_is_moved_aside(tmp_path: Any) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "monitord.db").write_bytes(b"this is not a database" * 200)
    bed = Bed(make_config({"state_dir": str(state)}))
    await bed.start()
    assert bed.store.moved_aside is not None
    assert list(state.glob("monitord.db.corrupt-*"))
    reset = bed.events[0]
    assert reset.kind is EventKind.SYSTEM and reset.data["action"] == "store_reset"
    assert "moved to" in reset.data["reason"] and reset.data["moved_to"]
    assert "tech.store_failed" in bed.engine.alarms.alarms  # the record before it is elsewhere: say so
    bed.flush()
    assert [(e.kind.value, e.data.get("action") or e.data.get("rule_id")) for e in bed.store.events_after(0, 10)] == [
        ("system", "store_reset"), ("system", "output_status"), ("alarm", "tech.store_failed")]
    await bed.stop()


async def test_a_weight_far_from_the_last_admission_is_flagged_from_the_registry(store_settings: dict[str, Any]) -> None:
    """The daemon looks up the patient's last recorded weight; 154 'kg' after 70 kg raises the entry
    check until a nurse confirms the weight."""
    bed = Bed(make_config(store_settings))
    await bed.start()
    bed.admit_and_start(pain=6)
    bed.run(30)
    bed.stop_and_discharge(pain=4)
    bed.flush()
    bed.clock.advance(7 * 86400)
    bed.submit(r.Admit("P-1", 154.0, 45, "rn1", confirm=True))
    bed.submit(r.TreatmentCount(bed.store.treatment_count("P-1"), bed.store.last_weight_kg("P-1")))
    bed.engine.tick()
    active = {a["rule_id"]: a for a in bed.engine.snapshot()["alarms"]}
    assert "entry.weight_check" in active and "70" in active["entry.weight_check"]["message"]
    bed.submit(r.ConfirmWeight(70.0, "rn1"))
    bed.engine.tick()
    assert "entry.weight_check" not in {a["rule_id"] for a in bed.engine.snapshot()["alarms"]}
    await bed.stop()


def test_a_write_transaction_that_reads_first_is_not_refused_by_a_concurrent_write(tmp_path: Any) -> None:
    """Two writers on one SQLite file (the store writer and a cursor save): the second waits for the
    first instead of failing with 'database is locked' at its first write."""
    import sqlite3
    import threading

    from sqlalchemy import text

    from monitord.store.database import make_engine, writing

    raw = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("CREATE TABLE t (x INTEGER)")
    raw.close()
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    other_done = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            with writing(engine) as conn:
                conn.execute(text("INSERT INTO t VALUES (2)"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        other_done.set()

    with writing(engine) as conn:
        conn.execute(text("SELECT count(*) FROM t")).scalar()  # read first, as the writer does
        threading.Thread(target=other_writer).start()
        other_done.wait(0.5)  # the other writer is waiting for the lock, not writing in between
        conn.execute(text("INSERT INTO t VALUES (1)"))
    other_done.wait(10)
    assert errors == []
    with engine.connect() as conn:
        assert sorted(v for (v,) in conn.execute(text("SELECT x FROM t"))) == [1, 2]
    engine.dispose()
