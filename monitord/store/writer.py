"""The one writer thread: drains queued events and checkpoints into the database in batches.

``put_event`` and ``put_checkpoint`` are called on the rule loop's thread and only append to
memory. The thread commits up to ``batch_max`` events, plus the newest checkpoint that does not
run ahead of them, in ONE transaction. When the database fails (disk full, read-only, server
gone) the batch is kept and retried with backoff and the failure is reported; monitoring goes on.

Memory bound while the database is failing: ``MAX_PENDING`` queued events. Past it the OLDEST
raw readings (vitals, infusion) are dropped, counted and reported; alarm, session, observation,
link and system events are never dropped (they are few).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from monitord.events import Event, EventKind
from monitord.store import models as m
from monitord.store.derive import BatchWriter, Derived
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

Health = Callable[[bool, str], None]
CommitListener = Callable[[int], None]


class Writer:
    def __init__(self, engine: Engine, batch: BatchWriter, batch_max: int, flush_interval_s: float,
                 health: Health, retention: Retention | None, now: Callable[[], datetime]) -> None:
        self.engine = engine
        self.batch = batch
        self.batch_max = batch_max
        self.flush_interval_s = flush_interval_s
        self.health = health
        self.retention = retention
        self.now = now
        self.listeners: list[CommitListener] = []
        self.committed_seq = 0
        self.dropped = 0
        self.failing: str | None = None
        self._pending: deque[Event] = deque()
        self._inflight: list[Event] = []
        self._checkpoints: deque[tuple[int, dict[str, Any]]] = deque(maxlen=KEEP_CHECKPOINTS)
        self._first_at: float | None = None  # when the oldest pending event was queued
        self._urgent = False  # an alarm transition is queued: commit as soon as its checkpoint comes
        self._cond = threading.Condition()
        self._stopping = False
        self._give_up_at: float | None = None
        self._thread: threading.Thread | None = None
        self._next_retention = time.monotonic() + 5.0
        self._drop_reported_at = 0.0

    # -- the rule loop's side: never blocks on disk ------------------------------------------

    def put_event(self, event: Event) -> None:
        with self._cond:
            if len(self._pending) >= MAX_PENDING:
                self._drop_one_reading()
            self._pending.append(event)
            if self._first_at is None:
                self._first_at = time.monotonic()
            if event.kind is EventKind.ALARM:
                self._urgent = True
            self._cond.notify()

    def put_checkpoint(self, seq: int, cp: dict[str, Any]) -> None:
        with self._cond:
            self._checkpoints.append((seq, cp))
            if self._urgent:
                # Alarm transitions go to disk (and so to central stations) without waiting
                # out the flush interval; readings keep their batching.
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
                    self._report(False, f"{self.failing or 'failing'}; {self.dropped} readings dropped (queue full)")
                return

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        with self.engine.connect() as conn:
            self.batch.derived = Derived.load(conn, self.batch.bed_id)
            self.committed_seq = _max_seq(conn, self.batch.bed_id)
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

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._pending) + len(self._inflight)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            job = self._next_batch()
            if job is None:
                return
            events, cp = job
            try:
                self._commit(events, cp)
            except Exception as exc:  # any database failure: keep the batch, report, retry
                detail = _describe(exc)
                if self.failing is None:
                    log.error("store write failed, retrying: %s", detail)
                    self.failing = detail
                    self._report(False, detail)
                with self._cond:
                    if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                self._resync()
                continue
            delay = RETRY_MIN_S
            if self.failing is not None:
                log.warning("store writes again (was: %s); %d readings dropped in all", self.failing, self.dropped)
                self.failing = None
                self._report(True, "")
            last = events[-1].seq
            for cb in list(self.listeners):
                try:
                    cb(last)
                except Exception:
                    log.exception("commit listener failed")
            self._maybe_retain()

    def _next_batch(self) -> tuple[list[Event], tuple[int, dict[str, Any]] | None] | None:
        with self._cond:
            while True:
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

    def _commit(self, events: list[Event], cp: tuple[int, dict[str, Any]] | None) -> None:
        saved = self.batch.derived.copy()
        try:
            with self.engine.begin() as conn:
                self.batch.write(conn, events, cp)
        except Exception:
            self.batch.derived = saved
            raise
        last = events[-1].seq
        with self._cond:
            self._inflight = []
            self.committed_seq = last
            while self._checkpoints and self._checkpoints[0][0] <= last:
                self._checkpoints.popleft()
            self._cond.notify_all()

    def _resync(self) -> None:
        """After a failure, find out what the database really has: a commit whose reply was
        lost may have succeeded. Committed events leave the retry batch."""
        try:
            with self.engine.connect() as conn:
                committed = _max_seq(conn, self.batch.bed_id)
                derived = Derived.load(conn, self.batch.bed_id)
        except Exception:
            return
        self.batch.derived = derived
        with self._cond:
            self._inflight = [e for e in self._inflight if e.seq > committed]
            self.committed_seq = max(self.committed_seq, committed)

    def _maybe_retain(self) -> None:
        if self.retention is None or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + RETENTION_EVERY_S
        try:
            self.retention.run(self.now())
        except Exception:
            log.exception("retention pass failed (will retry)")

    def _report(self, ok: bool, detail: str) -> None:
        try:
            self.health(ok, detail)
        except Exception:
            log.exception("store health report failed")


def _max_seq(conn: Any, bed_id: str) -> int:
    return int(conn.execute(select(func.max(m.StoredEvent.seq)).where(m.StoredEvent.bed_id == bed_id)).scalar() or 0)


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
