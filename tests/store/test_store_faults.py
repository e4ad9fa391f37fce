"""Faults the store must survive without wedging, losing the record silently or reusing a number:
text longer than its column, an event the database refuses, a database deleted, emptied or
replaced under the running daemon or while it is down, or restored from an older copy. Each
runs on SQLite and on PostgreSQL (where VARCHAR lengths and NUL characters are enforced)."""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, event, func, insert, select, text

from monitord.events import EventKind
from monitord.state import SessionStatus
from monitord.store import models as m
from monitord.store import writer as writer_module
from monitord.store.database import (
    alembic_config,
    database_url,
    make_engine,
    open_database,
    prepare_sqlite,
    sqlite_path,
)
from monitord.store.numbering import ALARM_BLOCK, SEQ_BLOCK, Numbering
from tests.store.conftest import PG_BASE, Bed, make_config, pg_schema, until

LONG_ACTOR = "central:" + "s" * 129  # 137 characters, as in the report: the column holds 64


def _rows(bed: Bed, *cols: Any, where: Any = None) -> list[Any]:
    q = select(*cols)
    if where is not None:
        q = q.where(where)
    with bed.store.db.connect() as conn:
        return list(conn.execute(q).all())


@asynccontextmanager
async def _running(bed: Bed) -> AsyncIterator[None]:
    """The bed's store and rule loop running (the loop carries the store's health to the engine)."""
    await bed.start()
    task = asyncio.create_task(bed.loop.run())
    try:
        yield
    finally:
        bed.loop.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bed.stop()


def _store_alarm(bed: Bed) -> str | None:
    alarm = bed.engine.alarms.alarms.get("tech.store_failed")
    return None if alarm is None else alarm.message


def _wipe(bed_or_store: Bed | dict[str, Any]) -> None:
    """Delete the database: the SQLite file (with its WAL), or the PostgreSQL schema's tables."""
    store = bed_or_store.config.store.model_dump() if isinstance(bed_or_store, Bed) else bed_or_store
    schema = pg_schema(store)
    if schema is None:
        db = Path(store["state_dir"]) / "monitord.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        return
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()


def _play_alarm(bed: Bed) -> None:
    bed.spo2 = 80.0  # the critical SpO2 alarm (latching) after its delay
    bed.run(20)
    bed.spo2 = 98.0
    bed.run(5)


async def test_text_longer_than_its_column_is_cut_and_later_entries_are_kept(store_settings: dict[str, Any]) -> None:
    bed = Bed(make_config(store_settings | {"flush_interval_s": 0.05}))
    async with _running(bed):
        bed.admit_and_start()
        bed.run(5)
        # Entries as any part of the daemon may emit them, each text beyond its column.
        bed.engine.emit(EventKind.OBSERVATION, {"type": "rescue", "drug": "d" * 300, "dose_mg": 1.0,
                                                "route": "r" * 100, "reason": "dysphoria", "actor": LONG_ACTOR})
        bed.engine.emit(EventKind.REJECTED, {"action": "A" * 200, "actor": LONG_ACTOR, "reason": "too long"})
        bed.engine.emit(EventKind.SESSION, {"action": "override", "rule_id": "rule." + "z" * 100,
                                            "reason": "physician decision", "actor": LONG_ACTOR})
        long_seq = bed.engine.seq
        bed.run(10)
        bed.flush()

        stored = bed.store.events_after(0, 1_000_000)
        assert [e.to_dict() for e in stored] == [e.to_dict() for e in bed.events]  # the record keeps every text whole
        (rescue,) = _rows(bed, m.Observation.c.actor, m.Observation.c.drug, m.Observation.c.route,
                          where=m.Observation.c.type == "rescue")
        assert rescue.actor == LONG_ACTOR[:63] + "\u2026"
        assert (len(rescue.drug), len(rescue.route)) == (64, 32)
        audit = _rows(bed, m.AuditEntry.c.actor, m.AuditEntry.c.action, where=m.AuditEntry.c.seq > long_seq - 3)
        assert len(audit) == 3 and all(len(a.actor) == 64 and len(a.action) <= 64 for a in audit)
        (override,) = _rows(bed, m.OverrideRecord.c.rule_id)
        assert len(override.rule_id) == 64
        # Nothing after them was lost, and the store never failed.
        later = _rows(bed, func.count(), where=m.Reading.c.seq > long_seq)[0][0]
        assert later == sum(1 for e in bed.events if e.seq > long_seq and e.kind in (EventKind.VITALS,
                                                                                     EventKind.INFUSION)) > 0
        assert _store_alarm(bed) is None and bed.store.writer.incidents == 0


async def test_an_event_the_database_refuses_is_isolated_stored_cleaned_and_reported(
        store_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "INCIDENT_HOLD_S", 2.0)
    bed = Bed(make_config(store_settings | {"flush_interval_s": 0.05}))
    postgres = pg_schema(store_settings) is not None
    async with _running(bed):
        bed.admit_and_start()
        bed.run(5)
        bed.flush()
        # NaN cannot be stored in JSON nor turned into a score; PostgreSQL refuses NUL in text.
        bed.engine.emit(EventKind.OBSERVATION, {"type": "pain", "score": math.nan, "actor": "rn1"})
        nan_seq = bed.engine.seq
        bed.engine.emit(EventKind.OBSERVATION, {"type": "effects", "effects": ["dissociation"], "note": "a\x00b",
                                                "actor": "rn1"})
        nul_seq = bed.engine.seq
        bed.run(5)
        await until(lambda: _store_alarm(bed) is not None, what="the store alarm")
        assert f"seq {nan_seq} (observation)" in (_store_alarm(bed) or "")
        bed.run(5)
        bed.flush()

        stored = {e.seq: e for e in bed.store.events_after(0, 1_000_000)}
        assert sorted(stored) == [e.seq for e in bed.events]  # every seq in the record, none held back
        nan_event = stored[nan_seq].data
        assert nan_event["score"] is None and "store_error" in nan_event
        damaged = {nan_seq, nul_seq} if postgres else {nan_seq}
        assert [stored[e.seq].to_dict() for e in bed.events if e.seq not in damaged] == [
            e.to_dict() for e in bed.events if e.seq not in damaged]
        notes = _rows(bed, m.Observation.c.seq, m.Observation.c.note, where=m.Observation.c.seq.in_([nan_seq, nul_seq]))
        # The NaN score has no typed row (the event record says why); the note is kept (cleaned on PostgreSQL).
        assert [tuple(n) for n in notes] == [(nul_seq, "ab" if postgres else "a\x00b")]
        assert _rows(bed, func.count(), where=m.Reading.c.seq > nul_seq)[0][0] > 0
        # A one-off: the alarm is held so that it is seen, then clears.
        await until(lambda: _store_alarm(bed) is None, what="the store alarm to clear after its hold")
    transitions = [(e.data["rule_id"], e.data["transition"]) for e in bed.events if e.kind is EventKind.ALARM]
    assert ("tech.store_failed", "raised") in transitions and ("tech.store_failed", "cleared") in transitions


async def test_database_deleted_under_the_running_daemon(store_settings: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "INCIDENT_HOLD_S", 2.0)
    monkeypatch.setattr(writer_module, "RETRY_MAX_S", 0.5)
    config = make_config(store_settings | {"flush_interval_s": 0.05})
    bed = Bed(config)
    async with _running(bed):
        bed.admit_and_start()
        bed.run(20)
        _play_alarm(bed)
        bed.flush()
        gone_up_to = bed.engine.seq

        _wipe(store_settings)
        bed.run(5)
        await until(lambda: _store_alarm(bed) is not None, what="the store alarm")
        bed.run(5)
        bed.flush()

        stored = [e.seq for e in bed.store.events_after(0, 1_000_000)]
        assert stored and stored[0] > gone_up_to  # nothing numbered again from 1
        assert stored == list(range(stored[0], bed.engine.seq + 1))
        await until(lambda: "may be missing" in (_store_alarm(bed) or ""), what="the store alarm to say why")
        # The open session's row is rebuilt from the checkpoint, so what follows belongs to it.
        (session,) = _rows(bed, m.Session.c.id, m.Session.c.patient_id, m.Session.c.started_at, m.Session.c.rate_ml_h)
        assert (session.patient_id, session.rate_ml_h) == ("P-1", 35.0) and session.started_at is not None
        assert _rows(bed, func.count(), where=m.Reading.c.session_id == session.id)[0][0] > 0
        await until(lambda: _store_alarm(bed) is None, what="the store alarm to clear after its hold")
        last_alarm_seq = bed.engine.alarms.alarm_seq

    again = Bed(config, clock=bed.clock)  # a restart now resumes from the new database
    assert again.engine.state.status is SessionStatus.RUNNING
    assert again.events[0].data["action"] == "recovered" and again.events[0].seq == bed.engine.seq + 1
    assert again.engine.alarms.alarm_seq == last_alarm_seq
    again.store.db.dispose()


async def test_database_reset_while_down_never_reuses_a_number(store_settings: dict[str, Any]) -> None:
    config = make_config(store_settings | {"flush_interval_s": 0.05})
    bed = Bed(config)
    await bed.start()
    bed.admit_and_start()
    bed.run(20)
    _play_alarm(bed)
    bed.flush()
    await bed.stop()
    used = {e.seq for e in bed.events}
    used_alarms = {e.data["alarm_seq"] for e in bed.events if e.kind is EventKind.ALARM}
    assert used_alarms

    _wipe(store_settings)
    again = Bed(config, clock=bed.clock)
    reset = again.events[0]
    assert reset.kind is EventKind.SYSTEM and reset.data["action"] == "store_reset"
    assert reset.seq > max(used) and reset.data["alarm_seq_from"] > max(used_alarms)
    assert again.engine.state.status is SessionStatus.EMPTY  # nothing is resumed from a database that lost it
    assert "database reset" in (_store_alarm(again) or "")
    async with _running(again):
        again.admit_and_start(patient="P-2")
        again.run(10)
        _play_alarm(again)
        again.flush()
        stored = again.store.events_after(0, 1_000_000)
        assert stored[0].seq == reset.seq and not used & {e.seq for e in stored}
        new_alarms = [e.data["alarm_seq"] for e in stored if e.kind is EventKind.ALARM]
        assert new_alarms and min(new_alarms) > max(used_alarms)
        assert new_alarms == list(range(new_alarms[0], new_alarms[0] + len(new_alarms)))
    # The consumer contract (docs/mqtt.md): keep the highest alarm_seq seen, drop anything at or
    # below it. Across the reset such a consumer drops no real alarm transition.
    highest, accepted = 0, []
    for e in (*bed.events, *again.events):
        if e.kind is EventKind.ALARM and e.data["alarm_seq"] > highest:
            highest = e.data["alarm_seq"]
            accepted.append(e.seq)
    assert accepted == [e.seq for e in (*bed.events, *again.events) if e.kind is EventKind.ALARM]


async def test_database_restored_from_an_older_copy_is_not_resumed(tmp_path: Path) -> None:
    """A clean stop records how far the database got (``numbering.json``): a copy from before
    that is recognised and not resumed from."""
    config = make_config({"state_dir": str(tmp_path / "state"), "flush_interval_s": 0.05})
    db = sqlite_path(config)
    bed = Bed(config)
    await bed.start()
    bed.admit_and_start()
    bed.run(10)
    bed.flush()
    await bed.stop()
    shutil.copy(db, tmp_path / "copy.db")  # a clean stop leaves no WAL behind

    later = Bed(config, clock=bed.clock)
    await later.start()
    later.run(60)
    later.flush()
    await later.stop()
    used = later.engine.seq
    shutil.copy(tmp_path / "copy.db", db)

    again = Bed(config, clock=bed.clock)
    reset = again.events[0]
    assert reset.data["action"] == "store_reset" and "older copy" in reset.data["reason"]
    assert reset.seq > used and again.engine.state.status is SessionStatus.EMPTY
    again.store.db.dispose()


async def test_trend_written_once_per_closed_bucket(store_settings: dict[str, Any]) -> None:
    """Trends come from the committed readings when a bucket closes: one upsert per bucket
    change (not a read and a write per series per batch), with the exact min/mean/max."""
    bed = Bed(make_config(store_settings | {"trend_interval_s": 60.0, "flush_interval_s": 0.05}))
    upserts: list[str] = []

    @event.listens_for(bed.store.db, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO TRENDS"):
            upserts.append(statement)

    await bed.start()
    bed.admit_and_start()
    for i in range(150):
        bed.spo2 = 94.0 + i % 5
        bed.second()
    bed.flush()
    vitals = [e for e in bed.events if e.kind is EventKind.VITALS]
    buckets = sorted({int(e.time.timestamp()) // 60 * 60 for e in vitals})
    assert len(upserts) == len(buckets) - 1  # every bucket change, once; the newest is still open
    await bed.stop()
    assert len(upserts) == len(buckets)  # ... and written as it stands on stop

    points = {int(p.bucket.timestamp()): p for p in bed.store.trend("spo2", vitals[0].time.replace(year=2000))}
    assert sorted(points) == buckets
    for b in buckets:
        values = [e.data["values"]["spo2"] for e in vitals if int(e.time.timestamp()) // 60 * 60 == b]
        p = points[b]
        assert (p.n, p.min, p.max) == (len(values), min(values), max(values))
        assert p.mean == pytest.approx(sum(values) / len(values))
    assert bed.store.trends(["hr", "rate_ml_h"], vitals[0].time)["rate_ml_h"][-1].max == 35.0
    first_two = bed.store.trend("spo2", vitals[0].time.replace(year=2000), until=datetime.fromtimestamp(buckets[2], UTC))
    assert [int(p.bucket.timestamp()) for p in first_two] == buckets[:2]


def test_numbering_reserves_ahead_and_writes_rarely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    writes: list[int] = []
    original = Numbering._write

    def counting(self: Numbering, new: Any) -> None:
        writes.append(new.seq)
        original(self, new)

    monkeypatch.setattr(Numbering, "_write", counting)
    num = Numbering(tmp_path, "bed-1")
    assert num.load().seq == 0
    num.ensure(1, 1, "db-1", 0)
    assert writes == [1 + SEQ_BLOCK] and num.reserved.alarm_seq == 1 + ALARM_BLOCK
    for seq in range(2, SEQ_BLOCK // 2 + 2):  # half a block goes by without a write
        num.ensure(seq, 1, "db-1", seq - 1)
    assert len(writes) == 1
    num.ensure(SEQ_BLOCK // 2 + 2, 1, "db-1", 10)
    num.ensure(SEQ_BLOCK // 2 + 3, ALARM_BLOCK // 2 + 2, "db-1", 10)
    num.ensure(SEQ_BLOCK // 2 + 3, ALARM_BLOCK // 2 + 2, "db-2", 0)  # another database: recorded at once
    assert len(writes) == 4
    other = Numbering(tmp_path, "bed-2")
    other.ensure(5, 0, "db-9", 0)  # a second bed in the same directory keeps its own numbers
    again = Numbering(tmp_path, "bed-1").load()
    assert (again.seq, again.database_id) == (num.reserved.seq, "db-2") and again.seq > SEQ_BLOCK
    (tmp_path / "numbering.json").write_text("{not json")
    assert Numbering(tmp_path, "bed-1").load().seq == 0
    assert "unreadable" in caplog.text


def test_upgrade_from_the_first_schema_keeps_trends_and_adds_an_identity(store_settings: dict[str, Any]) -> None:
    config = make_config(store_settings)
    if pg_schema(store_settings) is None:
        prepare_sqlite(sqlite_path(config))
    old = make_engine(database_url(config))
    cfg = alembic_config()
    with old.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(insert(m.Trend), [{"bed_id": "bed-01", "series": "hr", "bucket": datetime(2026, 1, 1, 8, 0, tzinfo=UTC),
                                                  "session_id": None, "n": 3, "min": 60.0, "mean": 61.0, "max": 62.0}])
    old.dispose()
    opened = open_database(config)
    try:
        assert opened.database_id is not None and len(opened.database_id) == 36
        with opened.engine.connect() as conn:
            rows = conn.execute(select(m.Trend.c.series, m.Trend.c.n, m.Trend.c.mean)).all()
        assert [tuple(r) for r in rows] == [("hr", 3, 61.0)]
    finally:
        opened.engine.dispose()
