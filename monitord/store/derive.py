"""Writing one batch: the events as emitted, the typed rows derived from them, the trends and
the checkpoint, all in the caller's transaction.

``Derived`` remembers the bed's open session and its open trend bucket between batches; the
writer copies it before a batch and puts the copy back if the transaction fails, so memory never
runs ahead of the disk.

Text is bounded here, at the store's boundary, to the length of its column (``bound``): a long
actor or message never makes a batch fail on PostgreSQL. The full text stays in the event's
JSON in ``events``. Trends are computed by the database from the committed ``readings`` rows
when a bucket closes: one statement per bucket, not a read and a write per series per batch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    Table,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)

from monitord.events import Event, EventKind
from monitord.readings import Vital
from monitord.store import models as m

SYSTEM = "system"
VITAL_COLUMNS = tuple(v.value for v in Vital)
# Pump series kept as trends besides the vitals.
PUMP_SERIES = ("rate_ml_h", "dose_rate_mg_kg_h")
ELLIPSIS = "\u2026"
# A string inside a damaged event's JSON is cut to this many characters (see ``sanitized``).
RECORD_TEXT_MAX = 4000


def _limits(model: Table) -> tuple[tuple[str, int], ...]:
    return tuple((c.name, c.type.length) for c in model.columns
                 if isinstance(c.type, String) and c.type.length)


# Every bounded text column of every table: (column, length).
LIMITS: dict[Table, tuple[tuple[str, int], ...]] = {
    model: _limits(model) for model in (m.StoredEvent, m.Patient, m.Session, m.Reading, m.AlarmEvent, m.Observation,
                                        m.ChecklistAnswer, m.OverrideRecord, m.AuditEntry, m.Checkpoint, m.Cursor,
                                        m.Trend, m.StoreMeta)
}


def bound_text(value: Any, limit: int) -> str:
    """``value`` as text of at most ``limit`` characters (cut ones end in an ellipsis)."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 1] + ELLIPSIS


def column_limit(model: Table, column: str) -> int:
    return dict(LIMITS[model])[column]


def bound(model: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every text that has a column length cut to it (in place; returned)."""
    for name, limit in LIMITS[model]:
        v = row.get(name)
        if v is not None and (not isinstance(v, str) or len(v) > limit):
            row[name] = bound_text(v, limit)
    return row


def sanitized(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of an event's data that any database accepts: no NaN or infinity, no
    NUL character, text cut to ``RECORD_TEXT_MAX``, keys as text. For an event that could not
    be stored as emitted."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2 ** 63) <= value < 2 ** 63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return bound_text(value.replace("\x00", ""), RECORD_TEXT_MAX)
    if depth >= 16:
        return bound_text(repr(value), 200)
    if isinstance(value, dict):
        return {bound_text(str(k).replace("\x00", ""), 200): sanitized(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitized(v, depth + 1) for v in value]
    return bound_text(str(value).replace("\x00", ""), RECORD_TEXT_MAX)


@dataclass(slots=True)
class Derived:
    """The open session of this bed, as far as the committed rows know."""

    session_id: int | None = None
    started: bool = False
    stopped: bool = False
    # The session just discharged: alarms it raised that end with the discharge belong to it.
    closed_id: int | None = None
    # The trend bucket of the newest committed reading: its trend is written when it closes.
    open_bucket: datetime | None = None

    def copy(self) -> Derived:
        return Derived(self.session_id, self.started, self.stopped, self.closed_id, self.open_bucket)

    @classmethod
    def load(cls, conn: Connection, bed_id: str, trend_interval_s: float) -> Derived:
        newest = conn.execute(
            select(m.Reading.c.time).where(m.Reading.c.bed_id == bed_id).order_by(m.Reading.c.time.desc()).limit(1)
        ).scalar()
        bucket = bucket_start(newest, trend_interval_s) if newest is not None else None
        row = conn.execute(
            select(m.Session.c.id, m.Session.c.started_at, m.Session.c.stopped_at)
            .where(m.Session.c.bed_id == bed_id, m.Session.c.discharged_at.is_(None))
            .order_by(m.Session.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return cls(open_bucket=bucket)
        return cls(row.id, row.started_at is not None, row.stopped_at is not None, open_bucket=bucket)


def _parse_time(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def bucket_start(t: datetime, interval_s: float) -> datetime:
    epoch = t.timestamp()
    return datetime.fromtimestamp(math.floor(epoch / interval_s) * interval_s, UTC)


class BatchWriter:
    """Turns events into rows. One per store; called only from the writer thread."""

    def __init__(self, bed_id: str, care_area: str, trend_interval_s: float, dialect: str) -> None:
        self.bed_id = bed_id
        self.care_area = care_area
        self.trend_interval_s = trend_interval_s
        self.dialect = dialect
        self.derived = Derived()
        self._trend_stmt: Any = None

    def write(self, conn: Connection, events: list[Event], checkpoint: tuple[int, dict[str, Any]] | None) -> None:
        rows: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        buckets: set[datetime] = set()
        last_cumulative: tuple[float, float] | None = None
        for ev in events:
            rows[m.StoredEvent].append(
                {"bed_id": ev.bed_id, "seq": ev.seq, "kind": ev.kind.value, "time": ev.time, "mono": ev.mono,
                 "clock_synced": ev.clock_synced, "data": ev.data}
            )
            d = ev.data
            actor = d.get("actor")
            sid_before = self.derived.session_id
            if ev.kind is EventKind.SESSION:
                # Session rows change the open session: flush what is queued for the old one first.
                self._flush(conn, rows)
                self._session(conn, ev)
            sid = self.derived.session_id or sid_before  # a discharge still belongs to its session
            base = {"bed_id": ev.bed_id, "session_id": sid, "seq": ev.seq, "time": ev.time}
            if ev.kind is EventKind.VITALS:
                row = base | {"source": "vitals", "device": d.get("device"), "quality": d.get("quality")}
                for name, v in d.get("values", {}).items():
                    if name in VITAL_COLUMNS:
                        row[name] = v
                rows[m.Reading].append(row)
                buckets.add(bucket_start(ev.time, self.trend_interval_s))
            elif ev.kind is EventKind.INFUSION:
                rows[m.Reading].append(
                    base | {"source": "pump", "device": d.get("device"), "quality": d.get("quality"),
                            "pump_state": d.get("state"), "rate_ml_h": d.get("rate_ml_h"),
                            "volume_infused_ml": d.get("volume_infused_ml"),
                            "dose_rate_mg_kg_h": d.get("dose_rate_mg_kg_h"), "cumulative_mg": d.get("cumulative_mg")}
                )
                buckets.add(bucket_start(ev.time, self.trend_interval_s))
                if sid is not None and d.get("cumulative_mg") is not None:
                    last_cumulative = (float(d["cumulative_mg"]), float(d.get("infusion_time_s") or 0.0))
            elif ev.kind is EventKind.ALARM:
                if sid is None and d.get("phase") == "end":
                    base["session_id"] = self.derived.closed_id
                rows[m.AlarmEvent].append(
                    base | {"alarm_seq": d["alarm_seq"], "rule_id": d["rule_id"], "transition": d["transition"],
                            "priority": d["priority"], "alarm_kind": d.get("kind"), "state": d.get("state"),
                            "actor": actor or SYSTEM, "message": d.get("message", ""), "value": _num(d.get("value")),
                            "source": d.get("source")}
                )
            elif ev.kind is EventKind.OBSERVATION:
                rows[m.Observation].append(
                    base | {"type": d["type"], "scale": d.get("scale"), "score": d.get("score"),
                            "effects": ",".join(d["effects"]) if "effects" in d else None, "drug": d.get("drug"),
                            "dose_mg": d.get("dose_mg"), "route": d.get("route"), "reason": d.get("reason"),
                            "note": d.get("note"), "actor": actor or SYSTEM}
                )
                if d["type"] == "pain" and sid is not None:
                    self._pain(conn, sid, int(d["score"]))
            elif ev.kind is EventKind.SESSION and d.get("action") == "checklist":
                for item, answer in (d.get("answers") or {}).items():
                    rows[m.ChecklistAnswer].append(base | {"item_id": item, "answer": bool(answer),
                                                           "actor": actor or SYSTEM})
            elif ev.kind is EventKind.SESSION and d.get("action") == "override":
                rows[m.OverrideRecord].append(
                    base | {"rule_id": d["rule_id"], "reason": d.get("reason") or "", "actor": actor or SYSTEM}
                )
            if ev.kind is EventKind.REJECTED or (actor is not None and actor != SYSTEM):
                action = d.get("transition") or d.get("action") or d.get("type") or ev.kind.value
                rows[m.AuditEntry].append(
                    base | {"actor": actor, "action": str(action), "accepted": ev.kind is not EventKind.REJECTED,
                            "detail": {"kind": ev.kind.value, **d}}
                )
        self._flush(conn, rows)
        if last_cumulative is not None and self.derived.session_id is not None:
            conn.execute(
                update(m.Session).where(m.Session.c.id == self.derived.session_id)
                .values(cumulative_mg=last_cumulative[0], infusion_time_s=last_cumulative[1])
            )
        if buckets:
            self._advance_trends(conn, buckets)
        if checkpoint is not None:
            self._checkpoint(conn, *checkpoint)

    def write_record_only(self, conn: Connection, ev: Event, checkpoint: tuple[int, dict[str, Any]] | None) -> None:
        """The event in ``events`` alone, without typed rows (an event whose rows were refused)."""
        conn.execute(insert(m.StoredEvent), [bound(m.StoredEvent, {
            "bed_id": ev.bed_id, "seq": ev.seq, "kind": ev.kind.value, "time": ev.time, "mono": ev.mono,
            "clock_synced": ev.clock_synced, "data": ev.data})])
        if checkpoint is not None:
            self._checkpoint(conn, *checkpoint)

    @staticmethod
    def _flush(conn: Connection, rows: dict[Table, list[dict[str, Any]]]) -> None:
        # Parents before children (sessions exist before rows that point at them).
        for model in (m.StoredEvent, m.Reading, m.AlarmEvent, m.Observation, m.ChecklistAnswer,
                      m.OverrideRecord, m.AuditEntry):
            batch = rows.pop(model, None)
            if batch:
                conn.execute(_insert_of(model), _uniform([bound(model, row) for row in batch]))

    def _session(self, conn: Connection, ev: Event) -> None:
        d, action, st = ev.data, ev.data.get("action"), self.derived
        if action == "admitted":
            p = d["patient"]
            st.session_id = self._insert_session(conn, {
                "bed_id": ev.bed_id, "patient_id": p["id"], "care_area": self.care_area, "weight_kg": p["weight_kg"],
                "age_years": p["age_years"], "elderly": p["elderly"], "comorbid": p["comorbid"],
                "admitted_seq": ev.seq, "admitted_at": ev.time, "cumulative_mg": 0.0, "infusion_time_s": 0.0})
            st.started = st.stopped = False
            return
        if st.session_id is None:
            return
        values: dict[str, Any] = {}
        if action == "order_set":
            o = d["order"]
            values = {"drug": o["drug"], "concentration_mg_ml": o["concentration_mg_ml"], "rate_ml_h": o["rate_ml_h"],
                      "bolus_mg": o["bolus_mg"], "syringe_ml": o["syringe_ml"]}
        elif action == "baseline_captured":
            values = {"baseline": d.get("baseline")}
        elif action == "started":
            values = {"started_at": ev.time}
            st.started = True
        elif action == "stopped":
            values = {"stopped_at": ev.time, "cumulative_mg": d.get("cumulative_mg", 0.0),
                      "infusion_time_s": d.get("infusion_time_s", 0.0)}
            st.stopped = True
        elif action == "discharged":
            values = {"discharged_at": ev.time, "cumulative_mg": d.get("cumulative_mg", 0.0),
                      "infusion_time_s": d.get("infusion_time_s", 0.0)}
        if values:
            conn.execute(update(m.Session).where(m.Session.c.id == st.session_id).values(**bound(m.Session, values)))
        if action == "discharged":
            self.derived = Derived(closed_id=st.session_id, open_bucket=st.open_bucket)

    def _pain(self, conn: Connection, sid: int, score: int) -> None:
        st = self.derived
        if not st.started:
            conn.execute(update(m.Session).where(m.Session.c.id == sid).values(pain_before=score))
        elif st.stopped:
            conn.execute(update(m.Session).where(m.Session.c.id == sid).values(pain_after=score))

    def _upsert(self, model: Table) -> Any:
        """The dialect's INSERT with ON CONFLICT (imported on use: SQLite never loads PostgreSQL's)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(model)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(model)

    def _insert_session(self, conn: Connection, values: dict[str, Any]) -> int:
        values = bound(m.Session, values)
        self._add_patient(conn, values["patient_id"], values["admitted_at"])
        return int(conn.execute(insert(m.Session).returning(m.Session.c.id), values).scalar_one())

    def _add_patient(self, conn: Connection, patient_id: str, when: datetime) -> None:
        conn.execute(self._upsert(m.Patient).values(id=patient_id, first_seen=when).on_conflict_do_nothing())

    def resume_session(self, conn: Connection, seq: int, cp: dict[str, Any]) -> None:
        """In a database that lost the open session (deleted or replaced under the running
        daemon), the session row again, from the newest checkpoint: later rows belong to it."""
        p, status = cp.get("patient"), cp.get("status")
        if not p or status in (None, "empty", "discharged"):
            return
        when = _parse_time(cp.get("time")) or datetime.now(UTC)
        admitted = when - timedelta(seconds=float(cp.get("admitted_age_s") or 0.0))
        o = cp.get("order") or {}
        started = _parse_time(cp.get("started_at"))
        stopped = when - timedelta(seconds=float(cp["stopped_age_s"])) if cp.get("stopped_age_s") is not None else None
        self.derived = Derived(open_bucket=self.derived.open_bucket)
        self.derived.session_id = self._insert_session(conn, {
            "bed_id": self.bed_id, "patient_id": p["id"], "care_area": self.care_area, "weight_kg": p["weight_kg"],
            "age_years": p["age_years"], "elderly": p["elderly"], "comorbid": p["comorbid"], "admitted_seq": seq,
            "admitted_at": admitted, "drug": o.get("drug"), "concentration_mg_ml": o.get("concentration_mg_ml"),
            "rate_ml_h": o.get("rate_ml_h"), "bolus_mg": o.get("bolus_mg"), "syringe_ml": o.get("syringe_ml"),
            "baseline": cp.get("baseline") or None, "started_at": started, "stopped_at": stopped,
            "cumulative_mg": float(cp.get("cumulative_mg") or 0.0),
            "infusion_time_s": float(cp.get("infusion_time_s") or 0.0)})
        self.derived.started = started is not None
        self.derived.stopped = stopped is not None

    def _advance_trends(self, conn: Connection, buckets: set[datetime]) -> None:
        """Write the trend of every bucket that closed with this batch: the bucket that was open
        before it, and any older one a late reading touched. The newest stays open."""
        st = self.derived
        touched = buckets | ({st.open_bucket} if st.open_bucket is not None else set())
        newest = max(touched)
        for bucket in sorted(touched - {newest}):
            self.write_trend(conn, bucket)
        st.open_bucket = newest

    def close_open_bucket(self, conn: Connection) -> None:
        """Write the open bucket's trend as it stands (on stop; it is rewritten when it closes)."""
        if self.derived.open_bucket is not None:
            self.write_trend(conn, self.derived.open_bucket)

    def write_trend(self, conn: Connection, bucket: datetime) -> None:
        """Min/mean/max/count of every series in ``bucket``, computed by the database from the
        committed readings and upserted in one statement (idempotent: rewriting is harmless)."""
        if self._trend_stmt is None:
            self._trend_stmt = self._trend_statement()
        conn.execute(self._trend_stmt, {"t_start": bucket, "t_end": bucket + timedelta(seconds=self.trend_interval_s)})

    def _trend_statement(self) -> Any:
        """INSERT INTO trends SELECT <one aggregate per series> ... ON CONFLICT DO UPDATE, built
        once with the bucket's bounds as parameters."""
        r = m.Reading.c
        start, end = bindparam("t_start", type_=m.UTCDateTime()), bindparam("t_end", type_=m.UTCDateTime())
        parts = []
        for series in (*VITAL_COLUMNS, *PUMP_SERIES):
            col = getattr(r, series)
            valid = (r.source == "pump",) if series in PUMP_SERIES else (
                r.source == "vitals", or_(r.quality.is_(None), r.quality != "invalid"))
            parts.append(
                select(literal(self.bed_id).label("bed_id"), literal(series).label("series"), start.label("bucket"),
                       func.max(r.session_id).label("session_id"), func.count(col).label("n"),
                       func.min(col).label("min"), func.avg(col).label("mean"), func.max(col).label("max"))
                .where(r.bed_id == self.bed_id, r.time >= start, r.time < end, col.is_not(None), *valid)
            )
        agg = union_all(*parts).subquery()
        cols = ("bed_id", "series", "bucket", "session_id", "n", "min", "mean", "max")
        ins = self._upsert(m.Trend).from_select(cols, select(*(agg.c[c] for c in cols)).where(agg.c.n > 0))
        return ins.on_conflict_do_update(index_elements=["bed_id", "series", "bucket"],
                                         set_={c: ins.excluded[c] for c in ("session_id", "n", "min", "mean", "max")})

    def _checkpoint(self, conn: Connection, seq: int, cp: dict[str, Any]) -> None:
        when = _parse_time(cp.get("time")) or datetime.now(UTC)
        params = {"b_bed_id": self.bed_id, "b_seq": seq, "b_time": when, "b_data": cp}
        if conn.execute(_CHECKPOINT_UPDATE, params).rowcount == 0:
            conn.execute(_CHECKPOINT_INSERT, params)


_INSERTS: dict[Table, Any] = {}


def _insert_of(model: Table) -> Any:
    """``insert(model)``, built once per table (every batch runs a few of them)."""
    stmt = _INSERTS.get(model)
    if stmt is None:
        stmt = _INSERTS[model] = insert(model)
    return stmt


# Built once: every commit that carries a checkpoint runs one of these (SQLAlchemy then only
# looks the compiled form up in its cache).
_CHECKPOINT_UPDATE = (update(m.Checkpoint).where(m.Checkpoint.c.bed_id == bindparam("b_bed_id"))
                      .values(seq=bindparam("b_seq"), time=bindparam("b_time"), data=bindparam("b_data")))
_CHECKPOINT_INSERT = insert(m.Checkpoint).values(bed_id=bindparam("b_bed_id"), seq=bindparam("b_seq"),
                                                 time=bindparam("b_time"), data=bindparam("b_data"))


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _uniform(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """executemany needs the same keys in every row: fill the missing ones with None."""
    keys: set[str] = set()
    for row in batch:
        keys.update(row)
    return [{k: row.get(k) for k in keys} for row in batch]


def year_before(t: datetime) -> datetime:
    """The same moment twelve calendar months earlier (29 February -> 28 February)."""
    try:
        return t.replace(year=t.year - 1)
    except ValueError:
        return t.replace(year=t.year - 1, day=28)

