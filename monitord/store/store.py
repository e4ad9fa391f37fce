"""``Store``: the daemon's storage and recovery.

The engine's events go to a queue (``write``, ``checkpoint``: never blocking on disk) that one
writer thread commits in batches with the checkpoint that covers them. On start, ``recover``
resumes the bed from the stored checkpoint and records the downtime as a system event; a
database that is not the one this bed last wrote to (deleted, emptied, replaced, restored from
an older copy) is recorded as ``store_reset``, raises the store alarm, and numbering continues
after the numbers reserved in ``numbering.json``. The MQTT publisher forwards from here
(``events_after`` + a durable cursor), so a broker outage loses nothing. ``treatment_count``
and ``responses`` are the course registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, and_, func, insert, not_, select, update
from sqlalchemy import Engine as SqlEngine

from monitord.clock import Clock
from monitord.config import Config
from monitord.events import Event, EventKind
from monitord.readings import OutputStatus
from monitord.store import models as m
from monitord.store.database import Opened, open_database, writing
from monitord.store.derive import BatchWriter, bound_text, column_limit, year_before
from monitord.store.numbering import Numbering, Reserved
from monitord.store.retention import Retention
from monitord.store.writer import Writer

if TYPE_CHECKING:
    from monitord.engine import Engine
    from monitord.loop import RuleLoop

log = logging.getLogger(__name__)

STOP_FLUSH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class TreatmentResponse:
    """One treatment's pain reduction at end of session: the last pain score after the stop
    against the last one before the start.

    This is not the guideline's "positive response" (Q8, lines 1606-1616: >= 30 % relief with
    patient satisfaction or a functional measure, sustained for more than 3 weeks after a single
    infusion, 6 after a series), which needs follow-up monitord does not record."""

    session_id: int
    started_at: datetime
    pain_before: int | None
    pain_after: int | None
    reduction_pct: float | None
    # Pain reduction at end of session reached the configured share. None: a score is missing,
    # or there was no pain to reduce.
    reduced_at_end: bool | None


class TrendPoint(NamedTuple):
    bucket: datetime  # interval start, UTC
    n: int
    min: float
    mean: float
    max: float


TREND_SQL = ("SELECT bucket, n, min, mean, max FROM trends WHERE bed_id = ? AND series = ? AND bucket >= ?{} "
             "ORDER BY bucket")
_BUCKETS: dict[float, datetime] = {}  # stored bucket -> time: a few thousand distinct values per query window


class Store:
    def __init__(self, config: Config, clock: Clock, opened: Opened) -> None:
        self.config = config
        self.clock = clock
        self.bed_id = config.bed.id
        self.db: SqlEngine = opened.engine
        self.url = opened.url
        self.moved_aside = opened.moved_aside
        self.database_id = opened.database_id
        self.numbering = Numbering(config.store.state_dir, self.bed_id)
        self._batch = BatchWriter(self.bed_id, config.bed.care_area.value, config.store.trend_interval_s,
                                  self.db.dialect.name)
        self.retention = Retention(self.db, self.bed_id, config.store.raw_retention_h)
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._loop: RuleLoop | None = None
        self.writer = Writer(self.db, self._batch, config.store.batch_max, config.store.flush_interval_s,
                             self._health, self.retention, clock.utc_now, self.numbering, opened.database_id,
                             opened.sqlite_path)
        self._started = False
        self._subscribed: Engine | None = None
        self._stored_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.writer.listeners.append(self._on_commit)

    @classmethod
    def open(cls, config: Config, clock: Clock) -> Store:
        """Open (and migrate) the database the configuration names."""
        return cls(config, clock, open_database(config))

    # -- recovery -------------------------------------------------------------------------

    def recover(self, engine: Engine) -> None:
        """Resume the bed from the stored checkpoint and record the downtime (the store
        subscribes here already, so the recovery event itself is stored). A database that is
        not the one this bed last wrote to is not resumed from: see ``_reset``."""
        self._subscribe(engine)
        reserved = self.numbering.load()
        with self.db.connect() as conn:
            cp_row = conn.execute(select(m.Checkpoint.c.data).where(m.Checkpoint.c.bed_id == self.bed_id)).first()
            last = conn.execute(
                select(m.StoredEvent.c.seq, m.StoredEvent.c.time).where(m.StoredEvent.c.bed_id == self.bed_id)
                .order_by(m.StoredEvent.c.seq.desc()).limit(1)
            ).first()
            last_alarm_seq = int(conn.execute(
                select(func.max(m.AlarmEvent.c.alarm_seq)).where(m.AlarmEvent.c.bed_id == self.bed_id)
            ).scalar() or 0)
        db_seq = int(last.seq) if last is not None else 0
        try:
            reason = self._reset_reason(reserved, db_seq)
            if reason is not None:
                self._reset(engine, reserved, db_seq, last_alarm_seq, reason)
            elif last is not None:
                self._resume(engine, cp_row, last, last_alarm_seq)
        finally:
            try:
                self.numbering.ensure(engine.seq, engine.alarms.alarm_seq, self.database_id, db_seq)
            except OSError as exc:  # the writer tries again before its first commit, and reports
                log.error("cannot write %s: %s", self.numbering.path, exc)

    def _reset_reason(self, reserved: Reserved, db_seq: int) -> str | None:
        if self.moved_aside is not None:
            return f"the database was damaged ({self.moved_aside[0]}) and moved to {self.moved_aside[1]}"
        if reserved.database_id is not None and reserved.database_id != self.database_id:
            return "the database is not the one this bed last wrote to (deleted, emptied or replaced)"
        if db_seq < reserved.committed_seq:
            return (f"the database ends at seq {db_seq}, before seq {reserved.committed_seq} known to be committed "
                    "(restored from an older copy?)")
        return None

    def _reset(self, engine: Engine, reserved: Reserved, db_seq: int, last_alarm_seq: int, reason: str) -> None:
        """Start on a database that lost this bed's record: nothing is resumed from it (its
        checkpoint, if any, is not this bed's present), numbering continues after every number
        that may have been used, and the store alarm says what happened."""
        engine.seq = max(db_seq, reserved.seq)
        engine.alarms.alarm_seq = max(last_alarm_seq, reserved.alarm_seq)
        log.error("%s: the bed is not resumed; numbering continues at seq %d, alarm_seq %d",
                  reason, engine.seq + 1, engine.alarms.alarm_seq + 1)
        extra = {"moved_to": self.moved_aside[1]} if self.moved_aside is not None else {}
        engine.record_system("store_reset", reason=reason[:300], database_id=self.database_id,
                             previous_database_id=reserved.database_id, seq_from=engine.seq + 1,
                             alarm_seq_from=engine.alarms.alarm_seq + 1, **extra)
        detail = f"database reset: {reason}; the session, if any, was not resumed"
        self.writer.incident(detail)
        engine.submit(OutputStatus("store", False, detail[:200]))

    def _resume(self, engine: Engine, cp_row: Any, last: Any, last_alarm_seq: int) -> None:
        now = self.clock.utc_now()
        downtime_s = max(0.0, (now - last.time).total_seconds())
        if cp_row is not None:
            cp = dict(cp_row.data)
            # Events committed after the checkpoint (a batch cut inside one input) keep their seq:
            # numbering continues after the last stored event, never reuses one.
            cp["seq"] = max(int(cp["seq"]), int(last.seq))
            cp["alarm_seq"] = max(int(cp["alarm_seq"]), last_alarm_seq)
            engine.restore(cp, downtime_s)
        else:
            engine.seq = int(last.seq)
            engine.alarms.alarm_seq = last_alarm_seq
        log.info("recovered bed %s at seq %d after %.0f s down", self.bed_id, engine.seq, downtime_s)
        engine.record_system(
            "recovered",
            downtime_s=round(downtime_s, 3),
            down_from=_iso(last.time),
            down_to=_iso(now),
            status=engine.state.status.value,
            database_id=self.database_id,
        )

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, engine: Engine, loop: RuleLoop) -> None:
        """Store every event and checkpoint of ``engine``; report health through ``loop``."""
        self._loop = loop
        self._subscribe(engine)

    def _subscribe(self, engine: Engine) -> None:
        if self._subscribed is engine:
            return
        self._subscribed = engine
        engine.subscribe(self.write)
        engine.subscribe_checkpoint(self.checkpoint)

    def write(self, event: Event) -> None:
        self.writer.put_event(event)

    def checkpoint(self, seq: int, cp: dict[str, Any]) -> None:
        self.writer.put_checkpoint(seq, cp)

    async def start(self) -> None:
        self._aloop = asyncio.get_running_loop()
        self.writer.start()
        self._started = True

    async def stop(self) -> None:
        """Write everything queued, then close the database."""
        if self._started:
            await asyncio.to_thread(self.writer.stop, STOP_FLUSH_TIMEOUT_S)
            self._started = False
        self.db.dispose()

    def wait_committed(self, seq: int, timeout_s: float = 30.0) -> bool:
        return self.writer.wait_committed(seq, timeout_s)

    async def wait_stored(self, seq: int, timeout_s: float) -> bool:
        """Wait, without blocking the event loop, until every event up to ``seq`` is committed and
        synced to disk (an alarm batch is fsynced just after it is published);
        False if that takes longer than ``timeout_s`` (the database is failing). The writer is
        asked not to wait out its flush interval: a nurse is waiting for the answer."""
        if self.writer.synced_seq >= seq:
            return True
        self.writer.hurry()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.writer.synced_seq < seq:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter = (seq, loop.create_future())
            self._stored_waiters.append(waiter)
            try:
                # Woken by the writer's commit; the short poll also covers a commit it learned of
                # only on a retry (a reply lost on the way back from the database).
                await asyncio.wait_for(waiter[1], min(left, 0.25))
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._stored_waiters.remove(waiter)
        return True

    def _on_commit(self, last_seq: int) -> None:
        """From the writer thread: wake the ``wait_stored`` callers this commit satisfies."""
        aloop = self._aloop
        if self._stored_waiters and aloop is not None and not aloop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                aloop.call_soon_threadsafe(self._wake_stored, last_seq)

    def _wake_stored(self, last_seq: int) -> None:
        for seq, fut in list(self._stored_waiters):
            if seq <= last_seq and not fut.done():
                fut.set_result(None)

    def _health(self, ok: bool, detail: str) -> None:
        if self._loop is not None and self._aloop is not None and not self._aloop.is_closed():
            self._loop.put_threadsafe(self._aloop, OutputStatus("store", ok, detail))

    # -- for the MQTT publisher -------------------------------------------------------------

    @property
    def committed_seq(self) -> int:
        """The highest seq committed so far (by this process or an earlier one)."""
        return self.writer.committed_seq

    def add_commit_listener(self, callback: Callable[[int], None]) -> None:
        """``callback(last_seq)`` from the writer thread after each commit. Must not block."""
        self.writer.listeners.append(callback)

    def events_after(self, seq: int, limit: int) -> list[Event]:
        """Committed events with seq > ``seq``, in seq order, at most ``limit``."""
        with self.db.connect() as conn:
            e = m.StoredEvent.c
            rows = conn.execute(
                select(e.seq, e.kind, e.bed_id, e.time, e.mono, e.clock_synced, e.data)
                .where(e.bed_id == self.bed_id, e.seq > seq).order_by(e.seq).limit(limit)
            ).all()
        return [Event(r.seq, EventKind(r.kind), r.bed_id, r.time, r.mono, r.clock_synced, dict(r.data)) for r in rows]

    def get_cursor(self, name: str) -> int:
        with self.db.connect() as conn:
            seq = conn.execute(
                select(m.Cursor.c.seq).where(m.Cursor.c.bed_id == self.bed_id, m.Cursor.c.name == name)
            ).scalar()
        return int(seq or 0)

    def set_cursor(self, name: str, seq: int) -> None:
        now = datetime.now(UTC)
        with writing(self.db) as conn:
            done = conn.execute(
                update(m.Cursor).where(m.Cursor.c.bed_id == self.bed_id, m.Cursor.c.name == name)
                .values(seq=seq, updated_at=now)
            )
            if done.rowcount == 0:
                conn.execute(insert(m.Cursor).values(bed_id=self.bed_id, name=name, seq=seq, updated_at=now))

    # -- registry and queries ---------------------------------------------------------------

    def treatment_count(self, patient_id: str) -> int:
        """Treatments (sessions whose infusion started) of this patient in the last 12 months,
        counting the current admission to this bed as one."""
        since = year_before(self.clock.utc_now())
        patient_id = bound_text(patient_id, column_limit(m.Session, "patient_id"))
        current = and_(m.Session.c.bed_id == self.bed_id, m.Session.c.discharged_at.is_(None))
        with self.db.connect() as conn:
            n = conn.execute(
                select(func.count()).select_from(m.Session).where(
                    m.Session.c.patient_id == patient_id, m.Session.c.started_at >= since, not_(current))
            ).scalar()
        return int(n or 0) + 1

    def last_weight_kg(self, patient_id: str) -> float | None:
        """The weight recorded at this patient's latest earlier admission (any bed), if any."""
        patient_id = bound_text(patient_id, column_limit(m.Session, "patient_id"))
        current = and_(m.Session.c.bed_id == self.bed_id, m.Session.c.discharged_at.is_(None))
        with self.db.connect() as conn:
            w = conn.execute(
                select(m.Session.c.weight_kg).where(m.Session.c.patient_id == patient_id, not_(current))
                .order_by(m.Session.c.admitted_at.desc()).limit(1)
            ).scalar()
        return float(w) if w is not None else None

    def responses(self, patient_id: str) -> list[TreatmentResponse]:
        """Each started treatment of the patient with its pain reduction at end of session,
        oldest first."""
        threshold = self.config.course.response_reduction_pct
        patient_id = bound_text(patient_id, column_limit(m.Session, "patient_id"))
        with self.db.connect() as conn:
            rows = conn.execute(
                select(m.Session.c.id, m.Session.c.started_at, m.Session.c.pain_before, m.Session.c.pain_after)
                .where(m.Session.c.patient_id == patient_id, m.Session.c.started_at.is_not(None))
                .order_by(m.Session.c.started_at)
            ).all()
        return [response_of(r.id, r.started_at, r.pain_before, r.pain_after, threshold) for r in rows]

    def trend(self, series: str, since: datetime, until: datetime | None = None) -> list[TrendPoint]:
        """Downsampled values of ``series`` (a vital name, ``rate_ml_h`` or ``dose_rate_mg_kg_h``),
        oldest first. The bucket being filled now appears when it closes."""
        return self.trends([series], since, until)[series]

    def trends(self, series: list[str], since: datetime, until: datetime | None = None) -> dict[str, list[TrendPoint]]:
        """``trend`` for several series on one connection: one key range scan each."""
        with self.db.connect() as conn:
            if self.db.dialect.name == "sqlite":
                return _sqlite_trends(conn, self.bed_id, series, since, until)
            out = {}
            for name in series:
                q = select(m.Trend.c.bucket, m.Trend.c.n, m.Trend.c.min, m.Trend.c.mean, m.Trend.c.max).where(
                    m.Trend.c.bed_id == self.bed_id, m.Trend.c.series == name, m.Trend.c.bucket >= since)
                if until is not None:
                    q = q.where(m.Trend.c.bucket < until)
                out[name] = [TrendPoint(*r) for r in conn.execute(q.order_by(m.Trend.c.bucket))]
            return out


def _sqlite_trends(conn: Connection, bed_id: str, series: list[str], since: datetime,
                   until: datetime | None) -> dict[str, list[TrendPoint]]:
    """The trend query on the driver's cursor: each stored bucket (epoch seconds) is turned into
    a time once per distinct value (SQLAlchemy's per-row type processing was most of the query's
    time)."""
    sql = TREND_SQL.format("" if until is None else " AND bucket < ?")
    bounds = [m.to_epoch(since)] + ([] if until is None else [m.to_epoch(until)])
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    out: dict[str, list[TrendPoint]] = {}
    try:
        for name in series:
            points = []
            for bucket, n, lo, mean, hi in cur.execute(sql, (bed_id, name, *bounds)).fetchall():
                t = _BUCKETS.get(bucket)
                if t is None:
                    if len(_BUCKETS) > 50_000:
                        _BUCKETS.clear()
                    t = _BUCKETS[bucket] = m.from_epoch(bucket)
                points.append(TrendPoint(t, n, lo, mean, hi))
            out[name] = points
    finally:
        cur.close()
    return out


def response_of(session_id: int, started_at: datetime, before: int | None, after: int | None,
                threshold_pct: float) -> TreatmentResponse:
    """Pain reduction at end of session, and whether it reached ``threshold_pct``."""
    if before is None or after is None or before == 0:
        return TreatmentResponse(session_id, started_at, before, after, None, None)
    reduction = (before - after) / before * 100.0
    return TreatmentResponse(session_id, started_at, before, after, round(reduction, 1), reduction >= threshold_pct)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
