"""The database schema: ``events`` is the record; every other table is derived from it in the
same transaction, typed for querying (sessions, readings, alarms, notes, audit, trends).

Times go in and come back timezone-aware UTC (``UTCDateTime``): naive UTC ``timestamp`` on
PostgreSQL, seconds since the epoch on SQLite. Rows carry ``bed_id`` so several beds can share one
PostgreSQL database.

The tables are SQLAlchemy Core ``Table`` objects (columns as ``Session.c.id``): the store never
maps rows to objects, and leaving the ORM out keeps about 10 MB off the daemon's memory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import UserDefinedType

# Alembic's batch mode on SQLite recreates tables; constraints need stable names to be altered.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class _EpochColumn(UserDefinedType[float]):
    """SQLite's side of ``UTCDateTime``: declared ``DATETIME`` as before (NUMERIC affinity), the
    values passed to the driver untouched (REAL seconds since the epoch)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "DATETIME"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out.

    PostgreSQL stores naive UTC ``timestamp``. SQLite stores seconds since the epoch as a REAL
    (8 bytes, or fewer for a whole second) instead of SQLAlchemy's 26-character text: on a bed's
    raw readings, one time in ``events``, one in ``readings`` and one in its index, that is about
    a seventh of the file. Microseconds survive the round trip (a double's step near 2030 is 0.24 µs);
    times compare numerically. Migration 0003 converted databases written with text times.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_EpochColumn())
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return to_epoch(value)
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return from_epoch(value)
        return value.replace(tzinfo=UTC)


def from_epoch(value: float | int | str) -> datetime:
    """A stored SQLite time back to an aware UTC datetime (text left by a failed conversion is
    read as ISO rather than refused)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return datetime.fromtimestamp(value, UTC)


def to_epoch(value: datetime) -> float:
    """An aware datetime as SQLite stores it (also for SQL written by hand with ``sqlite3``)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.timestamp()


metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _req(name: str, type_: Any, **kw: Any) -> Column[Any]:
    """A NOT NULL column."""
    return Column(name, type_, nullable=False, **kw)


def _opt(name: str, type_: Any, *args: Any, **kw: Any) -> Column[Any]:
    """A nullable column."""
    return Column(name, type_, *args, nullable=True, **kw)


def _id() -> Column[Any]:
    return Column("id", BigId, primary_key=True)


# Every event the engine emitted, as emitted: the record that MQTT forwards from.
StoredEvent = Table(
    "events", metadata,
    _id(),
    _req("bed_id", String(64)),
    _req("seq", BigInteger),
    _req("kind", String(16)),
    _req("time", UTCDateTime()),
    _req("mono", Float),
    _req("clock_synced", Boolean),
    _req("data", JSON()),
    UniqueConstraint("bed_id", "seq", name="uq_events_bed_seq"),
)

# A pseudonymous patient id as entered at admission; no identifying data is stored.
Patient = Table(
    "patients", metadata,
    Column("id", String(128), primary_key=True),
    _req("first_seen", UTCDateTime()),
)

# One admission of one patient to one bed; a treatment once the infusion started.
Session = Table(
    "sessions", metadata,
    _id(),
    _req("bed_id", String(64), index=True),
    Column("patient_id", ForeignKey("patients.id"), nullable=False),
    _req("care_area", String(32)),
    _req("weight_kg", Float),
    _req("age_years", Integer),
    _req("elderly", Boolean),
    _req("comorbid", Boolean),
    _req("admitted_seq", BigInteger),
    _req("admitted_at", UTCDateTime()),
    _opt("drug", String(32)),
    _opt("concentration_mg_ml", Float),
    _opt("rate_ml_h", Float),
    _opt("bolus_mg", Float),
    _opt("syringe_ml", Float),
    _opt("baseline", JSON()),
    _opt("started_at", UTCDateTime()),
    _opt("stopped_at", UTCDateTime()),
    _opt("discharged_at", UTCDateTime()),
    _req("cumulative_mg", Float, default=0.0),
    _req("infusion_time_s", Float, default=0.0),
    _opt("pain_before", Integer),  # last pain score before the start
    _opt("pain_after", Integer),  # last pain score after the stop
    Index("ix_sessions_patient_started", "patient_id", "started_at"),
)


def _session_id(index: bool = True) -> Column[Any]:
    return Column("session_id", ForeignKey("sessions.id"), nullable=True, index=index)


# One monitor frame (vitals columns) or one pump reading (pump columns).
Reading = Table(
    "readings", metadata,
    _id(),
    _req("bed_id", String(64)),
    _session_id(),
    _req("seq", BigInteger),
    _req("time", UTCDateTime()),
    _req("source", String(8)),  # "vitals" | "pump"
    _opt("device", String(64)),
    _opt("quality", String(16)),
    *(_opt(name, Float) for name in ("hr", "pulse", "sbp", "dbp", "map", "spo2", "rr", "etco2", "temp")),
    _opt("pump_state", String(16)),
    *(_opt(name, Float) for name in ("rate_ml_h", "volume_infused_ml", "dose_rate_mg_kg_h", "cumulative_mg")),
    Index("ix_readings_bed_time", "bed_id", "time"),
)

# Every alarm lifecycle transition.
AlarmEvent = Table(
    "alarm_events", metadata,
    _id(),
    _req("bed_id", String(64)),
    _session_id(),
    _req("seq", BigInteger),
    _req("alarm_seq", BigInteger),
    _req("time", UTCDateTime()),
    _req("rule_id", String(64)),
    _req("transition", String(24)),
    _req("priority", String(16)),
    _opt("alarm_kind", String(16)),  # physiological | technical | advisory
    _opt("state", String(16)),
    _req("actor", String(64)),
    _req("message", Text),
    _opt("value", Float),
    _opt("source", Text),
    UniqueConstraint("bed_id", "alarm_seq", name="uq_alarm_events_bed_alarm_seq"),
)

# Nurse observations: sedation, pain, psychomimetic effects, rescue medication.
Observation = Table(
    "observations", metadata,
    _id(),
    _req("bed_id", String(64)),
    _session_id(),
    _req("seq", BigInteger),
    _req("time", UTCDateTime()),
    _req("type", String(16)),  # sedation | pain | effects | rescue
    _opt("scale", String(8)),
    _opt("score", Integer),
    _opt("effects", Text),  # comma-separated
    _opt("drug", String(64)),
    _opt("dose_mg", Float),
    _opt("route", String(32)),
    _opt("reason", Text),
    _opt("note", Text),
    _req("actor", String(64)),
)

ChecklistAnswer = Table(
    "checklist_answers", metadata,
    _id(),
    _req("bed_id", String(64)),
    _session_id(),
    _req("seq", BigInteger),
    _req("time", UTCDateTime()),
    _req("item_id", String(64)),
    _req("answer", Boolean),
    _req("actor", String(64)),
)

OverrideRecord = Table(
    "overrides", metadata,
    _id(),
    _req("bed_id", String(64)),
    _session_id(),
    _req("seq", BigInteger),
    _req("time", UTCDateTime()),
    _req("rule_id", String(64)),
    _req("reason", Text),
    _req("actor", String(64)),
)

# Every user action: each event with an actor other than ``system``, and every refusal.
AuditEntry = Table(
    "audit_log", metadata,
    _id(),
    _req("bed_id", String(64)),
    _session_id(index=False),
    _req("seq", BigInteger),
    _req("time", UTCDateTime()),
    _opt("actor", String(64)),
    _req("action", String(64)),
    _req("accepted", Boolean),
    _req("detail", JSON()),
    Index("ix_audit_log_bed_time", "bed_id", "time"),
)

# What a restart needs to resume the bed; written with the events it covers.
Checkpoint = Table(
    "checkpoints", metadata,
    Column("bed_id", String(64), primary_key=True),
    _req("seq", BigInteger),
    _req("time", UTCDateTime()),
    _req("data", JSON()),
)

# How far a consumer (the MQTT publisher) has durably forwarded the events.
Cursor = Table(
    "cursors", metadata,
    Column("bed_id", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    _req("seq", BigInteger),
    _req("updated_at", UTCDateTime()),
)

# Facts about the database itself; ``database_id`` is created with the database, so a database
# deleted, replaced or restored from elsewhere is recognised.
StoreMeta = Table(
    "store_meta", metadata,
    Column("name", String(32), primary_key=True),
    _req("value", String(64)),
)

# Min/mean/max of one series (a vital, pump rate or dose rate) per trend interval. On SQLite the
# table is clustered on its key (``WITHOUT ROWID``): a trend query is one range scan that reads
# nothing else.
Trend = Table(
    "trends", metadata,
    Column("bed_id", String(64), primary_key=True),
    Column("series", String(24), primary_key=True),
    Column("bucket", UTCDateTime(), primary_key=True),  # interval start, UTC
    _opt("session_id", BigInteger),
    _req("n", Integer),
    _req("min", Float),
    _req("mean", Float),
    _req("max", Float),
    sqlite_with_rowid=False,
)
