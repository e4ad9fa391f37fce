"""Writing one batch: the events as emitted, the typed rows derived from them, the trends and
the checkpoint, all in the caller's transaction.

``Derived`` remembers the bed's open session between batches; the writer copies it before a
batch and puts the copy back if the transaction fails, so memory never runs ahead of the disk.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from monitord.events import Event, EventKind
from monitord.readings import Vital
from monitord.store import models as m

SYSTEM = "system"
VITAL_COLUMNS = tuple(v.value for v in Vital)
# Pump series kept as trends besides the vitals.
PUMP_SERIES = ("rate_ml_h", "dose_rate_mg_kg_h")


@dataclass(slots=True)
class Derived:
    """The open session of this bed, as far as the committed rows know."""

    session_id: int | None = None
    started: bool = False
    stopped: bool = False
    # The session just discharged: alarms it raised that end with the discharge belong to it.
    closed_id: int | None = None

    def copy(self) -> Derived:
        return Derived(self.session_id, self.started, self.stopped, self.closed_id)

    @classmethod
    def load(cls, conn: Connection, bed_id: str) -> Derived:
        row = conn.execute(
            select(m.Session.id, m.Session.started_at, m.Session.stopped_at)
            .where(m.Session.bed_id == bed_id, m.Session.discharged_at.is_(None))
            .order_by(m.Session.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return cls()
        return cls(row.id, row.started_at is not None, row.stopped_at is not None)


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

    def write(self, conn: Connection, events: list[Event], checkpoint: tuple[int, dict[str, Any]] | None) -> None:
        rows: dict[type[m.Base], list[dict[str, Any]]] = defaultdict(list)
        trends: dict[tuple[str, datetime], list[float]] = defaultdict(list)
        trend_session: dict[tuple[str, datetime], int | None] = {}
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
                values = d.get("values", {})
                quality = d.get("quality")
                row = base | {"source": "vitals", "device": d.get("device"), "quality": quality}
                for name, v in values.items():
                    if name in VITAL_COLUMNS:
                        row[name] = v
                        if v is not None and quality != "invalid":
                            key = (name, bucket_start(ev.time, self.trend_interval_s))
                            trends[key].append(float(v))
                            trend_session[key] = sid
                rows[m.Reading].append(row)
            elif ev.kind is EventKind.INFUSION:
                rows[m.Reading].append(
                    base | {"source": "pump", "device": d.get("device"), "quality": d.get("quality"),
                            "pump_state": d.get("state"), "rate_ml_h": d.get("rate_ml_h"),
                            "volume_infused_ml": d.get("volume_infused_ml"),
                            "dose_rate_mg_kg_h": d.get("dose_rate_mg_kg_h"), "cumulative_mg": d.get("cumulative_mg")}
                )
                for name in PUMP_SERIES:
                    if d.get(name) is not None:
                        key = (name, bucket_start(ev.time, self.trend_interval_s))
                        trends[key].append(float(d[name]))
                        trend_session[key] = sid
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
                    rows[m.ChecklistAnswer].append(base | {"item_id": item, "answer": bool(answer), "actor": actor})
            elif ev.kind is EventKind.SESSION and d.get("action") == "override":
                rows[m.OverrideRecord].append(
                    base | {"rule_id": d["rule_id"], "reason": d["reason"], "actor": actor}
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
                update(m.Session).where(m.Session.id == self.derived.session_id)
                .values(cumulative_mg=last_cumulative[0], infusion_time_s=last_cumulative[1])
            )
        self._trends(conn, trends, trend_session)
        if checkpoint is not None:
            self._checkpoint(conn, *checkpoint)

    @staticmethod
    def _flush(conn: Connection, rows: dict[type[m.Base], list[dict[str, Any]]]) -> None:
        # Parents before children (sessions exist before rows that point at them).
        for model in (m.StoredEvent, m.Reading, m.AlarmEvent, m.Observation, m.ChecklistAnswer,
                      m.OverrideRecord, m.AuditEntry):
            batch = rows.pop(model, None)
            if batch:
                conn.execute(insert(model), _uniform(batch))

    def _session(self, conn: Connection, ev: Event) -> None:
        d, action, st = ev.data, ev.data.get("action"), self.derived
        if action == "admitted":
            p = d["patient"]
            self._add_patient(conn, p["id"], ev.time)
            st.session_id = conn.execute(
                insert(m.Session).returning(m.Session.id),
                {"bed_id": ev.bed_id, "patient_id": p["id"], "care_area": self.care_area,
                 "weight_kg": p["weight_kg"], "age_years": p["age_years"], "elderly": p["elderly"],
                 "comorbid": p["comorbid"], "admitted_seq": ev.seq, "admitted_at": ev.time,
                 "cumulative_mg": 0.0, "infusion_time_s": 0.0},
            ).scalar_one()
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
            conn.execute(update(m.Session).where(m.Session.id == st.session_id).values(**values))
        if action == "discharged":
            self.derived = Derived(closed_id=st.session_id)

    def _pain(self, conn: Connection, sid: int, score: int) -> None:
        st = self.derived
        if not st.started:
            conn.execute(update(m.Session).where(m.Session.id == sid).values(pain_before=score))
        elif st.stopped:
            conn.execute(update(m.Session).where(m.Session.id == sid).values(pain_after=score))

    def _add_patient(self, conn: Connection, patient_id: str, when: datetime) -> None:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(pg_insert(m.Patient).values(id=patient_id, first_seen=when).on_conflict_do_nothing())
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            conn.execute(sqlite_insert(m.Patient).values(id=patient_id, first_seen=when).on_conflict_do_nothing())

    def _trends(self, conn: Connection, trends: dict[tuple[str, datetime], list[float]],
                sessions: dict[tuple[str, datetime], int | None]) -> None:
        for (series, bucket), values in trends.items():
            where = (m.Trend.bed_id == self.bed_id, m.Trend.series == series, m.Trend.bucket == bucket)
            old = conn.execute(select(m.Trend.n, m.Trend.min, m.Trend.mean, m.Trend.max).where(*where)).first()
            n, lo, hi, total = len(values), min(values), max(values), sum(values)
            if old is None:
                conn.execute(insert(m.Trend).values(bed_id=self.bed_id, series=series, bucket=bucket,
                                                    session_id=sessions[(series, bucket)], n=n, min=lo,
                                                    mean=total / n, max=hi))
            else:
                both = old.n + n
                conn.execute(update(m.Trend).where(*where).values(
                    n=both, min=min(old.min, lo), max=max(old.max, hi), mean=(old.mean * old.n + total) / both))

    def _checkpoint(self, conn: Connection, seq: int, cp: dict[str, Any]) -> None:
        when = _parse_time(cp.get("time")) or datetime.now(UTC)
        done = conn.execute(
            update(m.Checkpoint).where(m.Checkpoint.bed_id == self.bed_id).values(seq=seq, time=when, data=cp)
        )
        if done.rowcount == 0:
            conn.execute(insert(m.Checkpoint).values(bed_id=self.bed_id, seq=seq, time=when, data=cp))


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

