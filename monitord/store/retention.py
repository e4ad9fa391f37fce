"""Retention: raw readings older than ``raw_retention_h`` are deleted, in small transactions;
their per-interval trends (min/mean/max) stay. Every other event (alarms, sessions,
observations, overrides, link and system events) is kept.

Raw readings live twice: as ``vitals``/``infusion`` rows of ``events`` and as ``readings``
rows. Both go. SQLite reuses the freed pages, so the file stops growing at the size of the
retention window; a WAL checkpoint afterwards keeps the ``-wal`` file short.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, Table, delete, func, select

from monitord.store import models as m
from monitord.store.database import writing

log = logging.getLogger(__name__)

CHUNK = 5000  # rows per transaction: short locks, so the writer is never held up for long
RAW_KINDS = ("vitals", "infusion")


class Retention:
    def __init__(self, engine: Engine, bed_id: str, raw_retention_h: float) -> None:
        self.engine = engine
        self.bed_id = bed_id
        self.keep = timedelta(hours=raw_retention_h)

    def run(self, now: datetime) -> int:
        """Delete raw readings older than the window; returns how many rows went."""
        cutoff = now - self.keep
        with self.engine.connect() as conn:
            # The newest reading seq before the cutoff bounds the events to prune (events has
            # no time index; its (bed_id, seq) key serves instead).
            upto = conn.execute(
                select(func.max(m.Reading.c.seq)).where(m.Reading.c.bed_id == self.bed_id, m.Reading.c.time < cutoff)
            ).scalar()
            newest = conn.execute(select(func.max(m.StoredEvent.c.seq)).where(m.StoredEvent.c.bed_id == self.bed_id)).scalar()
        if upto is None:
            return 0
        # The bed's newest event always stays: a restart compares it with the numbers used.
        upto = min(int(upto), int(newest or 0) - 1)
        removed = self._chunked(m.Reading, m.Reading.c.seq <= upto)
        removed += self._chunked(m.StoredEvent, m.StoredEvent.c.seq <= upto, m.StoredEvent.c.kind.in_(RAW_KINDS))
        if removed and self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        if removed:
            log.info("retention: removed %d raw reading rows older than %s", removed, cutoff.isoformat())
        return removed

    def _chunked(self, model: Table, *where: ColumnElement[bool]) -> int:
        total = 0
        while True:
            with writing(self.engine) as conn:
                ids = select(model.c.id).where(model.c.bed_id == self.bed_id, *where).limit(CHUNK)
                n = conn.execute(delete(model).where(model.c.id.in_(ids.scalar_subquery()))).rowcount
            total += n
            if n < CHUNK:
                return total
