"""``Store``: the daemon's storage and recovery.

The engine's events go to a queue (``write``, ``checkpoint``: never blocking on disk) that one
writer thread commits in batches with the checkpoint that covers them. On start, ``recover``
resumes the bed from the stored checkpoint and records the downtime as a system event. The MQTT
publisher forwards from here (``events_after`` + a durable cursor), so a broker outage loses
nothing. ``treatment_count`` and ``responses`` are the course registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine as SqlEngine
from sqlalchemy import and_, func, insert, not_, select, update

from monitord.clock import Clock
from monitord.config import Config
from monitord.events import Event, EventKind
from monitord.readings import OutputStatus
from monitord.store import models as m
from monitord.store.database import Opened, open_database
from monitord.store.derive import BatchWriter, year_before
from monitord.store.retention import Retention
from monitord.store.writer import Writer

if TYPE_CHECKING:
    from monitord.engine import Engine
    from monitord.loop import RuleLoop

log = logging.getLogger(__name__)

STOP_FLUSH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class TreatmentResponse:
    """One treatment's pain response (guideline Q8): last score before start vs after stop."""

    session_id: int
    started_at: datetime
    pain_before: int | None
    pain_after: int | None
    reduction_pct: float | None
    positive: bool | None  # None: a score is missing, or there was no pain to reduce


@dataclass(frozen=True, slots=True)
class TrendPoint:
    bucket: datetime
    n: int
    min: float
    mean: float
    max: float


class Store:
    def __init__(self, config: Config, clock: Clock, opened: Opened) -> None:
        self.config = config
        self.clock = clock
        self.bed_id = config.bed.id
        self.db: SqlEngine = opened.engine
        self.url = opened.url
        self.moved_aside = opened.moved_aside
        self._batch = BatchWriter(self.bed_id, config.bed.care_area.value, config.store.trend_interval_s,
                                  self.db.dialect.name)
        self.retention = Retention(self.db, self.bed_id, config.store.raw_retention_h)
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._loop: RuleLoop | None = None
        self.writer = Writer(self.db, self._batch, config.store.batch_max, config.store.flush_interval_s,
                             self._health, self.retention, clock.utc_now)
        self._started = False
        self._subscribed: Engine | None = None

    @classmethod
    def open(cls, config: Config, clock: Clock) -> Store:
        """Open (and migrate) the database the configuration names."""
        return cls(config, clock, open_database(config))

    # -- recovery -------------------------------------------------------------------------

    def recover(self, engine: Engine) -> None:
        """Resume the bed from the stored checkpoint and record the downtime (the store
        subscribes here already, so the recovery event itself is stored)."""
        self._subscribe(engine)
        if self.moved_aside is not None:
            reason, target = self.moved_aside
            engine.record_system("store_reset", reason=reason, moved_to=target)
        with self.db.connect() as conn:
            cp_row = conn.execute(select(m.Checkpoint.data).where(m.Checkpoint.bed_id == self.bed_id)).first()
            last = conn.execute(
                select(m.StoredEvent.seq, m.StoredEvent.time).where(m.StoredEvent.bed_id == self.bed_id)
                .order_by(m.StoredEvent.seq.desc()).limit(1)
            ).first()
            last_alarm_seq = conn.execute(
                select(func.max(m.AlarmEvent.alarm_seq)).where(m.AlarmEvent.bed_id == self.bed_id)
            ).scalar()
        if last is None:
            return
        now = self.clock.utc_now()
        downtime_s = max(0.0, (now - last.time).total_seconds())
        if cp_row is not None:
            cp = dict(cp_row.data)
            # Events committed after the checkpoint (a batch cut inside one input) keep their seq:
            # numbering continues after the last stored event, never reuses one.
            cp["seq"] = max(int(cp["seq"]), int(last.seq))
            cp["alarm_seq"] = max(int(cp["alarm_seq"]), int(last_alarm_seq or 0))
            engine.restore(cp, downtime_s)
        else:
            engine.seq = int(last.seq)
            engine.alarms.alarm_seq = int(last_alarm_seq or 0)
        log.info("recovered bed %s at seq %d after %.0f s down", self.bed_id, engine.seq, downtime_s)
        engine.record_system(
            "recovered",
            downtime_s=round(downtime_s, 3),
            down_from=_iso(last.time),
            down_to=_iso(now),
            status=engine.state.status.value,
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

    def _health(self, ok: bool, detail: str) -> None:
        if self._loop is not None and self._aloop is not None and not self._aloop.is_closed():
            self._loop.put_threadsafe(self._aloop, OutputStatus("store", ok, detail))

    # -- for the MQTT publisher -------------------------------------------------------------

    def add_commit_listener(self, callback: Callable[[int], None]) -> None:
        """``callback(last_seq)`` from the writer thread after each commit. Must not block."""
        self.writer.listeners.append(callback)

    def events_after(self, seq: int, limit: int) -> list[Event]:
        """Committed events with seq > ``seq``, in seq order, at most ``limit``."""
        with self.db.connect() as conn:
            e = m.StoredEvent
            rows = conn.execute(
                select(e.seq, e.kind, e.bed_id, e.time, e.mono, e.clock_synced, e.data)
                .where(e.bed_id == self.bed_id, e.seq > seq).order_by(e.seq).limit(limit)
            ).all()
        return [Event(r.seq, EventKind(r.kind), r.bed_id, r.time, r.mono, r.clock_synced, dict(r.data)) for r in rows]

    def get_cursor(self, name: str) -> int:
        with self.db.connect() as conn:
            seq = conn.execute(
                select(m.Cursor.seq).where(m.Cursor.bed_id == self.bed_id, m.Cursor.name == name)
            ).scalar()
        return int(seq or 0)

    def set_cursor(self, name: str, seq: int) -> None:
        now = datetime.now(UTC)
        with self.db.begin() as conn:
            done = conn.execute(
                update(m.Cursor).where(m.Cursor.bed_id == self.bed_id, m.Cursor.name == name)
                .values(seq=seq, updated_at=now)
            )
            if done.rowcount == 0:
                conn.execute(insert(m.Cursor).values(bed_id=self.bed_id, name=name, seq=seq, updated_at=now))

    # -- registry and queries ---------------------------------------------------------------

    def treatment_count(self, patient_id: str) -> int:
        """Treatments (sessions whose infusion started) of this patient in the last 12 months,
        counting the current admission to this bed as one."""
        since = year_before(self.clock.utc_now())
        current = and_(m.Session.bed_id == self.bed_id, m.Session.discharged_at.is_(None))
        with self.db.connect() as conn:
            n = conn.execute(
                select(func.count()).select_from(m.Session).where(
                    m.Session.patient_id == patient_id, m.Session.started_at >= since, not_(current))
            ).scalar()
        return int(n or 0) + 1

    def responses(self, patient_id: str) -> list[TreatmentResponse]:
        """Each started treatment of the patient with its pain response, oldest first."""
        threshold = self.config.course.response_reduction_pct
        with self.db.connect() as conn:
            rows = conn.execute(
                select(m.Session.id, m.Session.started_at, m.Session.pain_before, m.Session.pain_after)
                .where(m.Session.patient_id == patient_id, m.Session.started_at.is_not(None))
                .order_by(m.Session.started_at)
            ).all()
        return [response_of(r.id, r.started_at, r.pain_before, r.pain_after, threshold) for r in rows]

    def trend(self, series: str, since: datetime, until: datetime | None = None) -> list[TrendPoint]:
        """Downsampled values of ``series`` (a vital name, ``rate_ml_h`` or ``dose_rate_mg_kg_h``)."""
        q = select(m.Trend.bucket, m.Trend.n, m.Trend.min, m.Trend.mean, m.Trend.max).where(
            m.Trend.bed_id == self.bed_id, m.Trend.series == series, m.Trend.bucket >= since)
        if until is not None:
            q = q.where(m.Trend.bucket < until)
        with self.db.connect() as conn:
            rows = conn.execute(q.order_by(m.Trend.bucket)).all()
        return [TrendPoint(r.bucket, r.n, r.min, r.mean, r.max) for r in rows]


def response_of(session_id: int, started_at: datetime, before: int | None, after: int | None,
                threshold_pct: float) -> TreatmentResponse:
    if before is None or after is None or before == 0:
        return TreatmentResponse(session_id, started_at, before, after, None, None)
    reduction = (before - after) / before * 100.0
    return TreatmentResponse(session_id, started_at, before, after, round(reduction, 1), reduction >= threshold_pct)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
