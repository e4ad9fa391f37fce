"""An alarm transition goes out as soon as it is stored: its batch is in the database (seen by
another connection) when the commit listeners run, and its WAL is fsynced right after them.
Batches of readings alone are fsynced before the listeners hear of them, and the numbering file
is renewed after a commit, never between an alarm's batch and its commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from monitord import readings as r
from monitord.events import EventKind
from monitord.store import writer as writer_module
from monitord.store.database import sqlite_path
from monitord.store.numbering import ALARM_BLOCK, Numbering
from tests.store.conftest import Bed, make_config, until

# The alarm fires on the frame that crosses the limit (delay 0), as in bench/bench_latency.py.
HR_LIMITS = [{"id": "hr_high", "vital": "hr", "above": 120, "delay_s": 0, "priority": "medium",
              "source": "test: delay 0 so that each frame toggles the alarm"}]


def _bed(tmp_path: Path) -> Bed:
    config = make_config({"state_dir": str(tmp_path / "state")}, vitals={"limits": HR_LIMITS})
    bed = Bed(config)
    bed.submit(r.Admit("P-1", 70.0, 45, "rn1"))
    return bed


def _frame(bed: Bed, hr: float) -> None:
    bed.clock.advance(1.0)
    bed.submit(r.VitalsReading("monitor", {r.Vital.HR: hr, r.Vital.SPO2: 97.0}))


def _stored_alarm_seqs(path: Path) -> set[int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT seq FROM events WHERE kind = 'alarm'")}


async def test_an_alarm_is_stored_then_published_then_fsynced(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    bed = _bed(tmp_path)
    db_file = sqlite_path(bed.config)
    trace: list[tuple[str, Any]] = []

    @event.listens_for(bed.store.db, "before_cursor_execute")
    def _pragma(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("PRAGMA synchronous"):
            trace.append(("synchronous", statement.rsplit(" ", 1)[-1]))

    def on_commit(last: int) -> None:  # what a publisher would send now: is it in the database?
        alarms = [e.seq for e in bed.events if e.kind is EventKind.ALARM and e.seq <= last]
        trace.append(("published", (last, set(alarms) <= _stored_alarm_seqs(db_file))))

    real_sync = writer_module.sync_wal
    monkeypatch.setattr(writer_module, "sync_wal", lambda path: (trace.append(("fsync", path)), real_sync(path)))
    bed.store.add_commit_listener(on_commit)
    await bed.start()
    try:
        await _published(bed, trace)
        _frame(bed, 80.0)
        await _published(bed, trace)
        readings_only = list(trace)
        trace.clear()
        _frame(bed, 160.0)  # raises vital.hr_high
        await _published(bed, trace, fsync=True)
        alarm = next(e for e in bed.events if e.kind is EventKind.ALARM)
        assert alarm.data["rule_id"] == "vital.hr_high"
        _frame(bed, 80.0)  # clears it: another alarm batch
        await _published(bed, trace, fsync=True)
        bed.submit(r.PainScore(5, "rn1"))  # a batch without an alarm transition
        await _published(bed, trace)
        seen = list(trace)  # what stopping writes is not part of it
    finally:
        await bed.stop()

    # Readings alone: each batch fsynced before anyone hears of its commit.
    assert [k for k, _ in readings_only if k != "synchronous"][:2] == ["fsync", "published"], readings_only
    for i, (k, _) in enumerate(readings_only):
        if k == "published":
            assert readings_only[i - 1][0] in ("fsync", "synchronous") and \
                any(kk == "fsync" for kk, _ in readings_only[:i]), readings_only
    # Each alarm batch: committed without waiting for the disk, in the database when published,
    # then fsynced; the next batch without an alarm is fsynced before it is published again. The
    # connection's setting is never switched back and forth for it.
    kinds = [k for k, _ in seen]
    assert kinds == ["published", "fsync", "published", "fsync", "fsync", "published"], seen
    assert ("synchronous", "FULL") not in seen + readings_only
    assert all(ok for k, (_, ok) in ((k, v) for k, v in seen if k == "published")), seen
    assert seen[0][1][0] >= alarm.seq


async def test_the_numbering_file_is_renewed_after_commits_not_before_an_alarm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bed = _bed(tmp_path)
    writes: list[bool] = []  # one per numbering.json write: was it on the way of a commit?
    before_commit = [False]
    real_write, real_reserve = Numbering._write, writer_module.Writer._reserve

    def write(self: Numbering, new: Any) -> None:
        writes.append(before_commit[0])
        real_write(self, new)

    def reserve(self: writer_module.Writer) -> None:
        before_commit[0] = True
        try:
            real_reserve(self)
        finally:
            before_commit[0] = False

    monkeypatch.setattr(Numbering, "_write", write)
    monkeypatch.setattr(writer_module.Writer, "_reserve", reserve)
    await bed.start()
    try:
        for i in range(2 * ALARM_BLOCK):  # an alarm transition per frame, each batch committed alone
            _frame(bed, 160.0 if i % 2 == 0 else 80.0)
            bed.flush()
    finally:
        await bed.stop()
    assert bed.engine.alarms.alarm_seq >= 2 * ALARM_BLOCK
    assert len(writes) >= 3, "the reservation must have been renewed as alarm_seq grew"
    assert not any(writes), "a renewal was written on an alarm's way to the database"


async def _published(bed: Bed, trace: list[tuple[str, Any]], fsync: bool = False) -> None:
    """Wait until everything emitted is committed and the listeners have run (and the fsync after)."""
    seq = bed.engine.seq

    def done() -> bool:
        for i, (kind, value) in enumerate(trace):
            if kind == "published" and value[0] >= seq:
                return not fsync or any(k == "fsync" for k, _ in trace[i:])
        return False

    await until(done, 30, f"seq {seq} published" + (" and fsynced" if fsync else ""))
