"""Alembic migrations for the monitord database, shipped inside the package.

They run on every ``Store.open`` (configured in code: no alembic.ini is needed at runtime).
To add a revision during development::

    python -m monitord.store.database revision "what changed"
"""
