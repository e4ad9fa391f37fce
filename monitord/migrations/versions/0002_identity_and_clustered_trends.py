"""The database's identity, and trends clustered on their key (SQLite).

``store_meta.database_id`` is created with the database (here, for a database that predates
it): a running daemon and a restart both compare it with the one they knew, so a database
deleted, replaced or restored from elsewhere is noticed. On SQLite ``trends`` is rebuilt
``WITHOUT ROWID`` so a trend query is a single range scan of the key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

TREND_COLUMNS = "bed_id, series, bucket, session_id, n, min, mean, max"


def _rebuild_trends(with_rowid: bool) -> None:
    kw = {} if with_rowid else {"sqlite_with_rowid": False}
    op.rename_table('trends', 'trends_old')
    op.create_table('trends',
    sa.Column('bed_id', sa.String(length=64), nullable=False),
    sa.Column('series', sa.String(length=24), nullable=False),
    sa.Column('bucket', sa.DateTime(), nullable=False),
    sa.Column('session_id', sa.BigInteger(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('min', sa.Float(), nullable=False),
    sa.Column('mean', sa.Float(), nullable=False),
    sa.Column('max', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('bed_id', 'series', 'bucket', name=op.f('pk_trends')),
    **kw,
    )
    op.execute(f"INSERT INTO trends ({TREND_COLUMNS}) SELECT {TREND_COLUMNS} FROM trends_old")
    op.drop_table('trends_old')


def upgrade() -> None:
    meta = op.create_table('store_meta',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_store_meta'))
    )
    op.bulk_insert(meta, [
        {"name": "database_id", "value": str(uuid.uuid4())},
        {"name": "created_at", "value": datetime.now(UTC).isoformat().replace("+00:00", "Z")},
    ])
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_trends(with_rowid=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_trends(with_rowid=True)
    op.drop_table('store_meta')
