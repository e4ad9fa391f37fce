"""SQLite times as seconds since the epoch (migration 0003): a database written with the older
text times is converted exactly, and reads back as it was written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.dialects.sqlite import DATETIME
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from monitord.store import models as m
from monitord.store.database import alembic_config, make_engine, schema_revision
from tests.store.conftest import Bed, make_config

TEXT = DATETIME().bind_processor(SQLiteDialect_pysqlite())  # how SQLAlchemy wrote a time before 0003


def _snapshot(bed: Bed) -> dict[str, Any]:
    since = datetime(2000, 1, 1).astimezone()
    with bed.store.db.connect() as conn:
        sessions = [tuple(r) for r in conn.execute(select(m.Session).order_by(m.Session.c.id))]
        readings = [tuple(r) for r in conn.execute(select(m.Reading.c.seq, m.Reading.c.time).order_by(m.Reading.c.seq))]
        checkpoint = tuple(conn.execute(select(m.Checkpoint.c.seq, m.Checkpoint.c.time)).one())
    return {"events": [e.to_dict() for e in bed.store.events_after(0, 100_000)],
            "trends": bed.store.trends(["hr", "spo2", "rate_ml_h"], since),
            "sessions": sessions, "readings": readings, "checkpoint": checkpoint}


def _raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_an_older_database_with_text_times_reads_back_exactly(tmp_path: Path) -> None:
    cfg = make_config({"state_dir": str(tmp_path / "state")})
    db = tmp_path / "state" / "monitord.db"
    bed = Bed(cfg)
    bed.clock.advance(0.123457)  # times with microseconds, not whole seconds
    await bed.start()
    bed.admit_and_start()
    bed.run(150)
    bed.flush()
    await bed.stop()
    before = _snapshot(bed)
    bed.store.db.dispose()
    assert {t for (t,) in _raw(db, "SELECT DISTINCT typeof(time) FROM events")} <= {"real", "integer"}

    # Back to revision 0002: every time as SQLAlchemy wrote it then, naive UTC text.
    engine = make_engine(f"sqlite:///{db}")
    cfg_alembic = alembic_config()
    with engine.begin() as conn:
        cfg_alembic.attributes["connection"] = conn
        command.downgrade(cfg_alembic, "0002")
    assert schema_revision(engine) == "0002"
    engine.dispose()
    stored = [t for (t,) in _raw(db, "SELECT time FROM events ORDER BY seq")]
    assert stored == [TEXT(datetime.fromisoformat(e["time"].replace("Z", "+00:00")).replace(tzinfo=None))
                      for e in before["events"]]
    assert _raw(db, "SELECT count(*) FROM sessions WHERE typeof(admitted_at) != 'text' "
                    "OR typeof(started_at) != 'text'") == [(0,)]

    # Opening it migrates it to 0003: numbers again, and everything reads back as first written.
    bed.clock.advance(60.0)  # down for a minute
    again = Bed(cfg, clock=bed.clock)
    assert schema_revision(again.store.db) == "0003"
    for table, col in (("events", "time"), ("readings", "time"), ("trends", "bucket"), ("sessions", "admitted_at"),
                       ("checkpoints", "time"), ("patients", "first_seen")):
        assert {t for (t,) in _raw(db, f"SELECT DISTINCT typeof({col}) FROM {table}")} <= {"real", "integer"}, table
    assert _snapshot(again) == before
    # The bed resumed from its checkpoint, its downtime measured from the converted times.
    assert again.engine.state.status is bed.engine.state.status
    rec = again.events[0]
    assert rec.data["action"] == "recovered" and rec.data["downtime_s"] == pytest.approx(60.0, abs=1e-6)
    again.store.db.dispose()


@pytest.mark.parametrize("micro", [0, 1, 123456, 499999, 500000, 999499, 999500, 999844, 999999])
@pytest.mark.parametrize("when", ["1970-01-01 00:00:00", "2026-12-04 23:59:59", "2038-01-19 03:14:07",
                                  "2099-12-31 23:59:59"])
def test_the_conversion_is_the_double_python_computes_and_back(when: str, micro: int) -> None:
    import importlib
    import sqlite3

    mig = importlib.import_module("monitord.migrations.versions.0003_sqlite_epoch_times")
    t = datetime.fromisoformat(when).replace(microsecond=micro)
    text = TEXT(t)
    conn = sqlite3.connect(":memory:")
    (epoch,) = conn.execute(f"SELECT {mig._to_epoch('x')} FROM (SELECT ? AS x)", (text,)).fetchone()
    assert epoch == m.to_epoch(t.replace(tzinfo=UTC))  # exact: rows compare equal to bound times
    assert m.from_epoch(epoch) == t.replace(tzinfo=UTC)
    (back,) = conn.execute(f"SELECT {mig._to_text('x')} FROM (SELECT ? AS x)", (epoch,)).fetchone()
    assert back == text
    conn.close()
