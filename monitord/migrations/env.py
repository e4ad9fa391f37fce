"""Alembic environment: run on the connection ``monitord.store.database`` hands over."""

from __future__ import annotations

from alembic import context

from monitord.store.models import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("monitord migrations run through monitord.store.database.migrate(), not the alembic CLI")

# render_as_batch: SQLite cannot ALTER most constraints; batch mode recreates the table instead.
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
