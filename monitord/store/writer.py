"""The one writer thread: drains queued events and checkpoints into the database in batches.

``put_event`` and ``put_checkpoint`` are called on the rule loop's thread and only append to
memory. The thread commits up to ``batch_max`` events, plus the newest checkpoint that does not
run ahead of them, in ONE transaction. A batch holding an alarm transition does not wait out
the flush interval, and on SQLite its commit does not wait for the disk either: the commit
listeners (the MQTT publisher) get it as soon as it is in the database, and its WAL is fsynced
right after them. Batches of readings alone are fsynced at commit (``synchronous=FULL``). When the database fails (disk full, read-only, server
gone) the batch is kept and retried with backoff and the failure is reported; monitoring goes on.

A batch refused for its *data* (a value the database rejects) never blocks the ones after it:
its events are written one by one, and an event refused again is stored cleaned, or as the
record alone, or at worst skipped; each such event is logged and reported (the store alarm
is held ``INCIDENT_HOLD_S``). Before each commit the writer checks that the database is still
the one it opened (the SQLite file's inode, ``store_meta.database_id``); one deleted, emptied
or replaced under it is opened again (migrated, the open session row rebuilt from the newest
checkpoint), reported the same way, and numbering goes on from memory and ``numbering.json``.

Memory bound while the database is failing: ``MAX_PENDING`` queued events. Past it the OLDEST
raw readings (vitals, infusion) are dropped, counted and reported; alarm, session, observation,
link and system events are never dropped (they are few).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    ProgrammingError,
    StatementError,
)

from monitord.events import Event, EventKind
from monitord.store import models as m
from monitord.store.database import (
    database_id,
    file_identity,
    migrate,
    prepare_sqlite,
    sync_wal,
    writing_options,
)
from monitord.store.derive import BatchWriter, Derived, sanitized
from monitord.store.numbering import ALARM_BLOCK, SEQ_BLOCK, Numbering
from monitord.store.retention import Retention

log = logging.getLogger(__name__)

# About 7 h of a 1 Hz pump plus a 1 Hz monitor; roughly 100-150 MB of Python objects.
MAX_PENDING = 50_000
KEEP_CHECKPOINTS = 64  # older checkpoints are superseded; only the newest few can still be used
RETRY_MIN_S, RETRY_MAX_S = 0.5, 10.0
RETENTION_EVERY_S = 600.0
# While readings are being dropped the alarm's detail (and the log) is refreshed at 1, 10, 100,
# every 1000 ... drops, and at least this often, so its count stays current without an event per drop.
DROP_REPORT_EVERY_S = 60.0
DROPPABLE = (EventKind.VITALS, EventKind.INFUSION)
# An event that could not be stored as emitted, or a database replaced under the daemon, is a
# one-off: the store alarm is held this long after it so that it is seen, then clears.
INCIDENT_HOLD_S = 120.0
REOPEN_MIN_S = 1.0  # a database replaced again within this of opening it is retried with backoff
# Python errors raised while turning an event into rows: the event's data is at fault.
DATA_FAULTS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError)

Health = Callable[[bool, str], None]
CommitListener = Callable[[int], None]


class DatabaseReset(Exception):
    """The database is not the one the writer has been committing to."""


class Writer:
    def __init__(self, engine: Engine, batch: BatchWriter, batch_max: int, flush_interval_s: float,
                 health: Health, retention: Retention | None, now: Callable[[], datetime],
                 numbering: Numbering, ident: str | None = None, sqlite_path: Path | None = None) -> None:
        self.engine = engine
        self.batch = batch
        self.batch_max = batch_max
        self.flush_interval_s = flush_interval_s
        self.health = health
        self.retention = retention
        self.now = now
        self.numbering = numbering
        self.database_id = ident
        self.sqlite_path = sqlite_path
        self.listeners: list[CommitListener] = []
        self.committed_seq = 0
        self.synced_seq = 0  # committed and on disk against power loss (a deferred fsync done)
        self.dropped = 0
        self.failing: str | None = None
        self.incidents = 0  # events not stored as emitted, and databases replaced under us
        self._pending: deque[Event] = deque()
        self._inflight: list[Event] = []
        self._checkpoints: deque[tuple[int, dict[str, Any]]] = deque(maxlen=KEEP_CHECKPOINTS)
        self._first_at: float | None = None  # when the oldest pending event was queued
        self._urgent = False  # an alarm transition is queued: commit as soon as its checkpoint comes
        self._reading_seen = False  # a reading was queued since start
        self._cond = threading.Condition()  # re-entrant
        self._stopping = False
        self._give_up_at: float | None = None
        self._thread: threading.Thread | None = None
        self._next_retention = time.monotonic() + 5.0
        self._drop_reported_at = 0.0
        self._highest = (0, 0)  # the highest seq and alarm_seq handed to the writer
        self._committed_here = 0  # the highest seq committed to the database we have open now
        self._file_id: tuple[int, int] | None = None
        self._last_cp: tuple[int, dict[str, Any]] | None = None  # the newest checkpoint committed
        self._incident: str | None = None
        self._incident_first, self._incident_more = "", 0
        self._drop_note: str | None = None
        self._incident_until = 0.0
        self._reported: tuple[bool, str] = (True, "")
        self._reopened_at = -REOPEN_MIN_S
        self._unsynced = False  # an alarm batch is committed, its WAL frames not yet fsynced
        # The thread's own connection, kept between batches (checking one out of the pool for every
        # commit cost about a third of an alarm batch's commit); dropped after any failure.
        self._conn: Connection | None = None

    # -- the rule loop's side: never blocks on disk ------------------------------------------

    def put_event(self, event: Event) -> None:
        with self._cond:
            if len(self._pending) >= MAX_PENDING:
                self._drop_one_reading()
            self._pending.append(event)
            if self._first_at is None:
                self._first_at = time.monotonic()
            seq, alarm_seq = self._highest
            if event.kind is EventKind.ALARM:
                self._urgent = True
                a = event.data.get("alarm_seq")
                alarm_seq = max(alarm_seq, a) if isinstance(a, int) else alarm_seq
            elif event.kind in DROPPABLE and not self._reading_seen:
                self._urgent = self._reading_seen = True  # a restarted bed's data reaches central at once
            self._highest = (max(seq, event.seq), alarm_seq)
            self._cond.notify()

    def put_checkpoint(self, seq: int, cp: dict[str, Any]) -> None:
        with self._cond:
            self._checkpoints.append((seq, cp))
            if self._urgent:
                # Alarm transitions (and the first reading after start) go to disk, and so to
                # central stations, without waiting out the flush interval; readings keep their batching.
                self._urgent = False
                self._first_at = time.monotonic() - self.flush_interval_s
            self._cond.notify()

    def _drop_one_reading(self) -> None:
        for i, ev in enumerate(self._pending):
            if ev.kind in DROPPABLE:
                del self._pending[i]
                self.dropped += 1
                now = time.monotonic()
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0 and self.dropped <= 10_000 \
                        or self.dropped % 100_000 == 0 or now - self._drop_reported_at >= DROP_REPORT_EVERY_S:
                    self._drop_reported_at = now
                    log.error("store queue full (%d events): %d readings dropped", MAX_PENDING, self.dropped)
                    self._drop_note = f"{self.dropped} readings dropped (queue full)"
                    self._refresh_health()
                return

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        with self.engine.connect() as conn:
            self.batch.derived = Derived.load(conn, self.batch.bed_id, self.batch.trend_interval_s)
            self.committed_seq = self._committed_here = _max_seq(conn, self.batch.bed_id)
            self.synced_seq = self.committed_seq
        if self.sqlite_path is not None:
            self._file_id = file_identity(self.sqlite_path)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> int:
        """Flush what is queued (for at most ``timeout_s`` if the database is failing) and end
        the thread. Returns how many events could not be written."""
        with self._cond:
            self._stopping = True
            self._give_up_at = time.monotonic() + timeout_s
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s + 5.0)
        with self._cond:
            lost = len(self._pending) + len(self._inflight)
        if lost:
            log.error("store stopped with %d events not written", lost)
        return lost

    def wait_committed(self, seq: int, timeout_s: float) -> bool:
        """Block until every event up to ``seq`` is committed (tests, bench, shutdown)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.committed_seq < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def hurry(self) -> None:
        """Commit what is queued without waiting out the flush interval (someone waits for it)."""
        with self._cond:
            if self._first_at is not None:
                self._first_at = min(self._first_at, time.monotonic() - self.flush_interval_s)
            self._cond.notify()

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._pending) + len(self._inflight)

    def incident(self, detail: str) -> None:
        """Report a one-off store problem: the store alarm, held ``INCIDENT_HOLD_S``."""
        with self._cond:
            self.incidents += 1
            if self._incident is None:
                self._incident_first, self._incident_more = detail, 0
            else:  # several within one hold: the first says what happened, the log has each
                self._incident_more += 1
            more = f" (+{self._incident_more} more, see the log)" if self._incident_more else ""
            self._incident = self._incident_first[:200 - len(more)] + more
            self._incident_until = time.monotonic() + INCIDENT_HOLD_S
            self._refresh_health()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            job = self._next_batch()
            if job is None:
                self._drop_connection()
                self._close_trends()
                self._mark_clean_stop()
                return
            events, cp = job
            try:
                self._reserve()
                try:
                    self._commit(events, cp)
                except DatabaseReset as reset:
                    if time.monotonic() - self._reopened_at < REOPEN_MIN_S:
                        raise  # replaced again at once: back off like any failure
                    self._reopen(str(reset))
                    continue  # the same batch, now into the database as it is
                except Exception as exc:
                    if not self._data_error(exc):
                        raise
                    log.warning("batch up to seq %d refused for its data (%s): writing it event by event",
                                events[-1].seq, _describe(exc))
                    self._isolate()
            except Exception as exc:  # any database failure: keep the batch, report, retry
                detail = _describe(exc)
                if self.failing is None:
                    log.error("store write failed, retrying: %s", detail)
                    self.failing = detail
                    self._refresh_health()
                with self._cond:
                    if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                self._resync()
                continue
            delay = RETRY_MIN_S
            if self.failing is not None or self._drop_note is not None:
                log.warning("store writes again (was: %s); %d readings dropped in all", self.failing, self.dropped)
                self.failing = self._drop_note = None
                self._refresh_health()
            last = self.committed_seq
            for cb in list(self.listeners):
                try:
                    cb(last)
                except Exception:
                    log.exception("commit listener failed")
            self._sync_deferred()
            self._reserve_ahead()
            self._maybe_retain()

    def _next_batch(self) -> tuple[list[Event], tuple[int, dict[str, Any]] | None] | None:
        with self._cond:
            while True:
                self._refresh_health()
                if self._inflight:
                    break
                if not self._pending:
                    if self._stopping:
                        return None
                    self._cond.wait(1.0)
                    continue
                age = time.monotonic() - (self._first_at or 0.0)
                if len(self._pending) < self.batch_max and not self._stopping and age < self.flush_interval_s:
                    self._cond.wait(self.flush_interval_s - age)
                    continue
                batch = [self._pending[i] for i in range(min(self.batch_max, len(self._pending)))]
                cp = self._covering(batch[-1].seq)
                if cp is not None and cp[0] < batch[-1].seq and cp[0] >= batch[0].seq and not self._stopping:
                    # End on the checkpoint's boundary: the tail's checkpoint is about to come.
                    batch = [e for e in batch if e.seq <= cp[0]]
                elif (cp is None and not self._stopping and age < 2 * self.flush_interval_s
                      and not any(c[0] > batch[-1].seq for c in self._checkpoints)):
                    # The checkpoint for these events is being taken right now: wait a moment.
                    self._cond.wait(self.flush_interval_s / 4)
                    continue
                for _ in batch:
                    self._pending.popleft()
                self._first_at = time.monotonic() if self._pending else None
                self._inflight = batch
                break
            return list(self._inflight), self._covering(self._inflight[-1].seq)

    def _covering(self, last_seq: int) -> tuple[int, dict[str, Any]] | None:
        best = None
        for c in self._checkpoints:
            if c[0] <= last_seq:
                best = c
        return best

    def _reserve(self) -> None:
        """Reserve the numbers handed to us outside the database before committing them."""
        with self._cond:
            seq, alarm_seq = self._highest
        self.numbering.ensure(seq, alarm_seq, self.database_id, self._committed_here)

    def _reserve_ahead(self) -> None:
        """After a commit (and its publication), renew a reservation running low a little before
        ``_reserve`` would have to: the numbering file's fsyncs then never delay an alarm's commit."""
        with self._cond:
            seq, alarm_seq = self._highest
        if self.numbering.needs(seq + SEQ_BLOCK // 8, alarm_seq + ALARM_BLOCK // 8, self.database_id):
            with contextlib.suppress(OSError):  # ``_reserve`` tries again before the next commit, and reports
                self.numbering.ensure(seq, alarm_seq, self.database_id, self._committed_here, force=True)

    def _commit(self, events: list[Event], cp: tuple[int, dict[str, Any]] | None) -> None:
        # On SQLite every batch commits without waiting for the disk and its WAL is fsynced by
        # hand (what ``synchronous=FULL`` would do; one setting on the connection, never switched):
        # a batch of readings before the commit listeners hear of it, a batch with an alarm
        # transition after them (``_sync_deferred``), so that it is published at once.
        sqlite = self.sqlite_path is not None
        self._transact(lambda conn: self.batch.write(conn, events, cp), events[-1].seq, cp, synced=not sqlite)
        if sqlite and not any(e.kind is EventKind.ALARM for e in events):
            self._sync_deferred()

    def _sync_deferred(self) -> None:
        """Make the alarm batch just published durable against power loss, as ``synchronous=FULL``
        would have before its commit returned."""
        if not self._unsynced or self.sqlite_path is None:
            return
        self._unsynced = False
        try:
            sync_wal(self.sqlite_path)
            self.synced_seq = self.committed_seq
        except OSError as exc:
            log.error("fsync of the database's WAL failed: %s", exc)
            self.incident(f"a commit could not be synced to disk: {exc}"[:200])

    def _transact(self, write: Callable[[Connection], None], last: int, cp: tuple[int, dict[str, Any]] | None,
                  synced: bool = True) -> None:
        """One transaction into the database we opened (checked first); ``last`` is then done."""
        saved = self.batch.derived.copy()
        try:
            conn = self._connection(synced)
            with conn.begin():
                self._check_database(conn)
                write(conn)
        except Exception:
            self.batch.derived = saved
            self._drop_connection()  # whatever failed, the next try starts from a fresh connection
            raise
        self._unsynced = self._unsynced or not synced
        if cp is not None:
            self._last_cp = cp
        self._done(last)
        if synced:  # this commit's fsync carried every earlier frame of the WAL too
            self.synced_seq = self.committed_seq

    def _connection(self, synced: bool) -> Connection:
        """The writer's connection, set for a write transaction (``database.writing``'s options)."""
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._drop_connection()
            self._conn = self.engine.connect()
        return self._conn.execution_options(**writing_options(synced))  # in place: the same connection

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _done(self, last: int) -> None:
        with self._cond:
            self._inflight = [e for e in self._inflight if e.seq > last]
            self.committed_seq = max(self.committed_seq, last)
            self._committed_here = max(self._committed_here, last)
            while self._checkpoints and self._checkpoints[0][0] <= last:
                self._checkpoints.popleft()
            self._cond.notify_all()

    def _check_database(self, conn: Connection) -> None:
        if self.sqlite_path is not None and file_identity(self.sqlite_path) != self._file_id:
            raise DatabaseReset(f"the database file {self.sqlite_path} was deleted or replaced")
        ident = database_id(conn)
        if ident != self.database_id:
            raise DatabaseReset(f"the database was replaced (identity {self.database_id} is now {ident})")

    # -- a batch refused for its data -----------------------------------------------------------

    def _data_error(self, exc: BaseException) -> bool:
        """Did the database (or the conversion to rows) refuse a value, rather than fail?"""
        if isinstance(exc, DataError | IntegrityError):
            return True
        if isinstance(exc, ProgrammingError | InterfaceError):
            # A value of the wrong type, unless the tables are gone (then the database was reset).
            return self._schema_present() is True
        if isinstance(exc, DBAPIError):
            return False  # disk full, read-only, connection lost, locked...
        if isinstance(exc, StatementError):
            return True  # a value could not even be bound (NaN in JSON, a naive time...)
        return isinstance(exc, DATA_FAULTS)

    def _schema_present(self) -> bool | None:
        """Are all our tables there? None if that cannot be told (the database is failing)."""
        try:
            with self.engine.connect() as conn:
                return set(m.metadata.tables) <= set(inspect(conn).get_table_names())
        except Exception:
            return None

    def _isolate(self) -> None:
        """Write the in-flight events one by one; each one refused again is stored as well as
        it can be (``_store_damaged``). Other failures propagate to the retry path."""
        self._resync()  # a commit whose reply was lost may hold some of them already
        with self._cond:
            events = list(self._inflight)
        if not events:
            return
        cp = self._covering(events[-1].seq)
        for i, ev in enumerate(events):
            ecp = cp if i == len(events) - 1 else None
            try:
                self._commit([ev], ecp)
                continue
            except DatabaseReset:
                raise
            except Exception as exc:
                if not self._data_error(exc):
                    raise
                reason = _describe(exc)
            self._store_damaged(ev, ecp, reason)

    def _store_damaged(self, ev: Event, cp: tuple[int, dict[str, Any]] | None, reason: str) -> None:
        clean = replace(ev, data={**sanitized(ev.data), "store_error": reason})
        attempts: list[tuple[str, Callable[[Connection], None]]] = [
            ("stored with its data cleaned (text cut, no NaN)", lambda conn: self.batch.write(conn, [clean], cp)),
            ("kept in the events record only, without its typed rows",
             lambda conn: self.batch.write_record_only(conn, clean, cp)),
        ]
        how = "NOT stored"
        for what, write in attempts:
            try:
                self._transact(write, ev.seq, cp)
            except DatabaseReset:
                raise
            except Exception as exc:
                if not self._data_error(exc):
                    raise
                reason = f"{reason}; then {_describe(exc)}"
                continue
            how = what
            break
        else:
            self._done(ev.seq)  # never blocks the events after it
        log.error("event seq %d (%s) refused by the database (%s): %s", ev.seq, ev.kind.value, reason, how)
        self.incident(f"event seq {ev.seq} ({ev.kind.value}) {how}: {reason}")

    # -- a database deleted or replaced under us --------------------------------------------------

    def _reopen(self, reason: str) -> None:
        """Open the database at the configured place again (created and migrated if need be),
        rebuild the open session's row from the newest checkpoint and report the loss."""
        log.error("%s: opening it again; events up to seq %d are not in it; numbering continues",
                  reason, self.committed_seq)
        self._reopened_at = time.monotonic()
        self._drop_connection()
        self.engine.dispose()
        if self.sqlite_path is not None:
            prepare_sqlite(self.sqlite_path)
        migrate(self.engine)
        with self.engine.begin() as conn:
            self.database_id = database_id(conn)
            self._file_id = file_identity(self.sqlite_path) if self.sqlite_path is not None else None
            self.batch.derived = Derived.load(conn, self.batch.bed_id, self.batch.trend_interval_s)
            if self.batch.derived.session_id is None and self._last_cp is not None:
                self.batch.resume_session(conn, *self._last_cp)
            self._committed_here = _max_seq(conn, self.batch.bed_id)
        self._reserve()
        self.incident(f"{reason}: events up to seq {self.committed_seq} may be missing from it")

    def _resync(self) -> None:
        """After a failure, find out what the database really has: a commit whose reply was
        lost may have succeeded. Committed events leave the retry batch. A database that is
        no longer ours is opened again."""
        try:
            with self.engine.connect() as conn:
                self._check_database(conn)
                committed = _max_seq(conn, self.batch.bed_id)
                derived = Derived.load(conn, self.batch.bed_id, self.batch.trend_interval_s)
        except DatabaseReset as reset:
            self._try_reopen(str(reset))
            return
        except Exception:
            if self._schema_present() is False:
                self._try_reopen("the database's tables are gone (dropped or never created)")
            return
        self.batch.derived = derived
        with self._cond:
            self._inflight = [e for e in self._inflight if e.seq > committed]
            self.committed_seq = max(self.committed_seq, committed)

    def _try_reopen(self, reason: str) -> None:
        try:
            self._reopen(reason)
        except Exception as exc:  # the retry path reports it and tries again
            log.error("cannot open the database again: %s", _describe(exc))

    # -- upkeep -----------------------------------------------------------------------------------

    def _close_trends(self) -> None:
        """On stop: write the open trend bucket as it stands."""
        try:
            with self.engine.begin() as conn:
                self._check_database(conn)
                self.batch.close_open_bucket(conn)
        except Exception as exc:
            log.warning("open trend bucket not written on stop: %s", _describe(exc))

    def _mark_clean_stop(self) -> None:
        """Everything is committed: record exactly how far, so a restart on an older copy of
        the database can tell."""
        try:
            with self._cond:
                seq, alarm_seq = self._highest
            self.numbering.ensure(seq, alarm_seq, self.database_id, self._committed_here, force=True)
        except OSError as exc:
            log.error("cannot write %s: %s", self.numbering.path, exc)

    def _maybe_retain(self) -> None:
        if self.retention is None or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + RETENTION_EVERY_S
        try:
            self.retention.run(self.now())
        except Exception:
            log.exception("retention pass failed (will retry)")

    def _refresh_health(self) -> None:
        """Report the store's state when it changes: failing, or within an incident's hold."""
        with self._cond:
            if self._incident is not None and time.monotonic() >= self._incident_until:
                self._incident = None
            if self.failing is not None or self._drop_note is not None:
                parts = (self.failing or "failing", self._drop_note, self._incident)
                state = (False, "; ".join(p for p in parts if p is not None))
            elif self._incident is not None:
                state = (False, self._incident)
            else:
                state = (True, "")
            if state != self._reported:
                self._report(*state)

    def _report(self, ok: bool, detail: str) -> None:
        self._reported = (ok, detail)
        try:
            self.health(ok, detail)
        except Exception:
            log.exception("store health report failed")


def _max_seq(conn: Any, bed_id: str) -> int:
    return int(conn.execute(select(func.max(m.StoredEvent.c.seq)).where(m.StoredEvent.c.bed_id == bed_id)).scalar() or 0)


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
