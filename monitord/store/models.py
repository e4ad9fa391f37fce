"""The database schema: ``events`` is the record; every other table is derived from it in the
same transaction, typed for querying (sessions, readings, alarms, notes, audit, trends).

Times are stored as naive UTC (``UTCDateTime``) so SQLite and PostgreSQL agree; they come back
timezone-aware. Rows carry ``bed_id`` so several beds can share one PostgreSQL database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC on disk."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class StoredEvent(Base):
    """Every event the engine emitted, as emitted: the record that MQTT forwards from."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("bed_id", "seq", name="uq_events_bed_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    time: Mapped[datetime]
    mono: Mapped[float] = mapped_column(Float)
    clock_synced: Mapped[bool] = mapped_column(Boolean)
    data: Mapped[dict[str, Any]]


class Patient(Base):
    """A pseudonymous patient id as entered at admission; no identifying data is stored."""

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_seen: Mapped[datetime]


class Session(Base):
    """One admission of one patient to one bed; a treatment once the infusion started."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_patient_started", "patient_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    care_area: Mapped[str] = mapped_column(String(32))
    weight_kg: Mapped[float] = mapped_column(Float)
    age_years: Mapped[int] = mapped_column(Integer)
    elderly: Mapped[bool] = mapped_column(Boolean)
    comorbid: Mapped[bool] = mapped_column(Boolean)
    admitted_seq: Mapped[int] = mapped_column(BigInteger)
    admitted_at: Mapped[datetime]
    drug: Mapped[str | None] = mapped_column(String(32))
    concentration_mg_ml: Mapped[float | None] = mapped_column(Float)
    rate_ml_h: Mapped[float | None] = mapped_column(Float)
    bolus_mg: Mapped[float | None] = mapped_column(Float)
    syringe_ml: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    discharged_at: Mapped[datetime | None]
    cumulative_mg: Mapped[float] = mapped_column(Float, default=0.0)
    infusion_time_s: Mapped[float] = mapped_column(Float, default=0.0)
    pain_before: Mapped[int | None] = mapped_column(Integer)  # last pain score before the start
    pain_after: Mapped[int | None] = mapped_column(Integer)  # last pain score after the stop


class Reading(Base):
    """One monitor frame (vitals columns) or one pump reading (pump columns)."""

    __tablename__ = "readings"
    __table_args__ = (Index("ix_readings_bed_time", "bed_id", "time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(8))  # "vitals" | "pump"
    device: Mapped[str | None] = mapped_column(String(64))
    quality: Mapped[str | None] = mapped_column(String(16))
    hr: Mapped[float | None] = mapped_column(Float)
    pulse: Mapped[float | None] = mapped_column(Float)
    sbp: Mapped[float | None] = mapped_column(Float)
    dbp: Mapped[float | None] = mapped_column(Float)
    map: Mapped[float | None] = mapped_column(Float)
    spo2: Mapped[float | None] = mapped_column(Float)
    rr: Mapped[float | None] = mapped_column(Float)
    etco2: Mapped[float | None] = mapped_column(Float)
    temp: Mapped[float | None] = mapped_column(Float)
    pump_state: Mapped[str | None] = mapped_column(String(16))
    rate_ml_h: Mapped[float | None] = mapped_column(Float)
    volume_infused_ml: Mapped[float | None] = mapped_column(Float)
    dose_rate_mg_kg_h: Mapped[float | None] = mapped_column(Float)
    cumulative_mg: Mapped[float | None] = mapped_column(Float)


class AlarmEvent(Base):
    """Every alarm lifecycle transition."""

    __tablename__ = "alarm_events"
    __table_args__ = (UniqueConstraint("bed_id", "alarm_seq", name="uq_alarm_events_bed_alarm_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    alarm_seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    rule_id: Mapped[str] = mapped_column(String(64))
    transition: Mapped[str] = mapped_column(String(24))
    priority: Mapped[str] = mapped_column(String(16))
    alarm_kind: Mapped[str | None] = mapped_column(String(16))  # physiological | technical | advisory
    state: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(Text)


class Observation(Base):
    """Nurse observations: sedation, pain, psychomimetic effects, rescue medication."""

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(16))  # sedation | pain | effects | rescue
    scale: Mapped[str | None] = mapped_column(String(8))
    score: Mapped[int | None] = mapped_column(Integer)
    effects: Mapped[str | None] = mapped_column(Text)  # comma-separated
    drug: Mapped[str | None] = mapped_column(String(64))
    dose_mg: Mapped[float | None] = mapped_column(Float)
    route: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))


class ChecklistAnswer(Base):
    __tablename__ = "checklist_answers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    item_id: Mapped[str] = mapped_column(String(64))
    answer: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(64))


class OverrideRecord(Base):
    __tablename__ = "overrides"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    rule_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))


class AuditEntry(Base):
    """Every user action: each event with an actor other than ``system``, and every refusal."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_bed_time", "bed_id", "time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bed_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    accepted: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[dict[str, Any]]


class Checkpoint(Base):
    """What a restart needs to resume the bed; written with the events it covers."""

    __tablename__ = "checkpoints"

    bed_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime]
    data: Mapped[dict[str, Any]]


class Cursor(Base):
    """How far a consumer (the MQTT publisher) has durably forwarded the events."""

    __tablename__ = "cursors"

    bed_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class StoreMeta(Base):
    """Facts about the database itself; ``database_id`` is created with the database, so a
    database deleted, replaced or restored from elsewhere is recognised."""

    __tablename__ = "store_meta"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))


class Trend(Base):
    """Min/mean/max of one series (a vital, pump rate or dose rate) per trend interval.

    On SQLite the table is clustered on its key (``WITHOUT ROWID``): a trend query is one
    range scan that reads nothing else."""

    __tablename__ = "trends"
    __table_args__ = {"sqlite_with_rowid": False}

    bed_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    series: Mapped[str] = mapped_column(String(24), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(primary_key=True)  # interval start, UTC
    session_id: Mapped[int | None] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(Integer)
    min: Mapped[float] = mapped_column(Float)
    mean: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
