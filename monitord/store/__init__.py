"""Storage and recovery: every event committed in order (SQLite in WAL mode or PostgreSQL),
typed tables derived from them, trends, retention, the course registry and session export.
See docs/storage.md."""

from monitord.store.store import Store, TreatmentResponse, TrendPoint

__all__ = ["Store", "TreatmentResponse", "TrendPoint"]
