"""The bounded on-disk queue between the feed and the MLLP sender (SQLite, WAL).

The messages a feed message produced and the translator's memory of that bed are committed in
one transaction before the feed message is acknowledged to the broker, so a crash loses nothing
and repeats nothing. Messages leave in the order they were queued, one at a time, and are deleted
only when the receiver accepted them; a message the receiver refuses for good is moved to
``parked`` (kept for inspection, counted, logged).

Bounded: at ``max_messages`` a new message does not fit. An alert then takes the place of the
oldest observation message (alerts matter more than one interval of readings); otherwise the new
message is dropped. Either way the loss is counted (``overflow``) and logged.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from monitord.hl7.pcd import Built

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, control_id TEXT NOT NULL, bed TEXT NOT NULL,
    text TEXT NOT NULL, queued_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS parked (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, control_id TEXT NOT NULL, bed TEXT NOT NULL, text TEXT NOT NULL,
    queued_at REAL NOT NULL, reason TEXT NOT NULL, parked_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS beds (bed TEXT PRIMARY KEY, memory TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
LOG_EVERY_S = 10.0  # overflow warnings: the first, then at most one per this many seconds


@dataclass(frozen=True, slots=True)
class Queued:
    id: int
    kind: str
    control_id: str
    bed: str
    text: str
    attempts: int


class Outbox:
    def __init__(self, path: str | Path, max_messages: int = 100_000) -> None:
        if max_messages < 1:
            raise ValueError("the queue must hold at least one message")
        self.path = str(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._size = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        self._warned_at = -LOG_EVERY_S

    # -- in ---------------------------------------------------------------------------------

    def store(self, messages: Iterable[tuple[str, Built]], memory: dict[str, str]) -> int:
        """Queue ``(bed, message)`` pairs and save bed memories, in one transaction. Returns how
        many messages were lost to overflow."""
        lost = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for msg_bed, m in messages:
                    lost += self._put(msg_bed, m)
                self._db.executemany("INSERT INTO beds (bed, memory) VALUES (?, ?) "
                                     "ON CONFLICT (bed) DO UPDATE SET memory = excluded.memory", memory.items())
                if lost:
                    self._count("overflow", lost)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._size = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
                raise
        if lost:
            self._warn_overflow(lost)
        return lost

    def _put(self, bed: str, m: Built) -> int:
        lost = 0
        if self._size >= self.max_messages:
            victim = self._db.execute("SELECT id FROM outbox WHERE kind = 'pcd01' ORDER BY id LIMIT 1").fetchone() \
                if m.kind == "pcd04" else None
            if victim is None:
                return 1
            self._db.execute("DELETE FROM outbox WHERE id = ?", victim)
            self._size -= 1
            lost = 1
        self._db.execute("INSERT INTO outbox (kind, control_id, bed, text, queued_at) VALUES (?, ?, ?, ?, ?)",
                         (m.kind, m.control_id, bed, m.text, time.time()))
        self._size += 1
        return lost

    def _count(self, name: str, n: int = 1) -> None:
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (name, n))

    def _warn_overflow(self, lost: int) -> None:
        now = time.monotonic()
        if now - self._warned_at >= LOG_EVERY_S:
            self._warned_at = now
            log.warning("hl7: queue full (%d messages): %d message(s) lost, %d lost in all; is the receiver "
                        "accepting?", self.max_messages, lost, self.counter("overflow"))

    # -- out --------------------------------------------------------------------------------

    def peek(self) -> Queued | None:
        with self._lock:
            row = self._db.execute("SELECT id, kind, control_id, bed, text, attempts FROM outbox "
                                   "ORDER BY id LIMIT 1").fetchone()
        return Queued(*row) if row else None

    def done(self, item: Queued) -> None:
        with self._lock:
            if self._db.execute("DELETE FROM outbox WHERE id = ?", (item.id,)).rowcount:
                self._size -= 1
            self._count("sent")

    def failed(self, item: Queued) -> int:
        """One more refusal of this message; returns how many it has had."""
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item.id,))
            row = self._db.execute("SELECT attempts FROM outbox WHERE id = ?", (item.id,)).fetchone()
        return int(row[0]) if row else item.attempts + 1

    def park(self, item: Queued, reason: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO parked SELECT id, kind, control_id, bed, text, queued_at, ?, ? "
                             "FROM outbox WHERE id = ?", (reason, time.time(), item.id))
            if self._db.execute("DELETE FROM outbox WHERE id = ?", (item.id,)).rowcount:
                self._size -= 1
            self._count("parked")
            self._db.execute("COMMIT")

    # -- looking --------------------------------------------------------------------------------

    def size(self) -> int:
        with self._lock:
            return self._size

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {k: int(v) for k, v in self._db.execute("SELECT name, value FROM counters")}

    def parked(self) -> list[tuple[str, str, str]]:
        """``(control_id, bed, reason)`` of every parked message, oldest first."""
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT control_id, bed, reason FROM parked ORDER BY id")]

    def memories(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT bed, memory FROM beds"))

    def forget(self, bed: str) -> bool:
        """Drop what is remembered of a bed (after its state directory was wiped: numbering restarts)."""
        with self._lock:
            return bool(self._db.execute("DELETE FROM beds WHERE bed = ?", (bed,)).rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()
