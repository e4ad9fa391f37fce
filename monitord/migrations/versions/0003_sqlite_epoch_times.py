"""SQLite stores times as seconds since the epoch (REAL) instead of 26-character text.

Every time column (declared ``DATETIME``, so its affinity is NUMERIC either way) is converted in
place: ``YYYY-MM-DD HH:MM:SS.ffffff`` becomes ``seconds + microseconds / 1e6``, computed from whole
microseconds so the value is the same double Python's ``datetime.timestamp()`` gives. On a bed's
raw readings this is about a seventh of the file. PostgreSQL keeps its ``timestamp`` columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

TIME_COLUMNS = {
    "events": ["time"],
    "patients": ["first_seen"],
    "sessions": ["admitted_at", "started_at", "stopped_at", "discharged_at"],
    "readings": ["time"],
    "alarm_events": ["time"],
    "observations": ["time"],
    "checklist_answers": ["time"],
    "overrides": ["time"],
    "audit_log": ["time"],
    "checkpoints": ["time"],
    "cursors": ["updated_at"],
    "trends": ["bucket"],
}


def _seconds(col: str) -> str:
    # The text is naive UTC. Whole seconds from its first 19 characters: strftime would round a
    # fraction to milliseconds first (21.9998 s to 22 s). NULL if the text is not a time.
    return f"strftime('%s', substr({col}, 1, 19))"


def _to_epoch(col: str) -> str:
    # The fraction from what follows the seconds ('.ffffff', or nothing).
    micros = (f"CAST({_seconds(col)} AS INTEGER) * 1000000 "
              f"+ CAST(round(CAST(substr({col}, 20) AS REAL) * 1000000) AS INTEGER)")
    return f"({micros}) / 1000000.0"


def _to_text(col: str) -> str:
    micros = f"CAST(round({col} * 1000000) AS INTEGER)"
    return (f"strftime('%Y-%m-%d %H:%M:%S', {micros} / 1000000, 'unixepoch') "
            f"|| printf('.%06d', {micros} % 1000000)")


def _convert(value: Callable[[str], str], where: Callable[[str], str]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, cols in TIME_COLUMNS.items():
        for col in cols:
            op.execute(f"UPDATE {table} SET {col} = {value(col)} WHERE {where(col)}")


def upgrade() -> None:
    _convert(_to_epoch, lambda col: f"typeof({col}) = 'text' AND {_seconds(col)} IS NOT NULL")


def downgrade() -> None:
    _convert(_to_text, lambda col: f"typeof({col}) IN ('real', 'integer')")
