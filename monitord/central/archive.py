"""``monitord archive``: every bed's feed into PostgreSQL, and a gap report per bed.

What is kept (schema ``--schema``, default ``monitord_archive``):

- ``archive_events``: every forwarded event (``events/alarm``, ``events/interlock``,
  ``events/observation``, ``vitals``, ``infusion``) with its payload, keyed on ``(bed, seq)``: a
  replay or a QoS 1 duplicate is stored once.
- ``archive_status``: each ``status`` message (online / offline and why), keyed on (bed, time, status).
- ``archive_beds``: per bed, the highest ``alarm_seq`` its ``alarms`` messages announced, so a lost
  alarm transition at the end of the record is found too.

Several workers split the feed through an MQTT shared subscription (``$share/<group>/...``): the
broker hands each message to one member of the group. A message is acknowledged to the broker
only after its row is committed, so a worker that dies loses nothing the broker still holds; the
key makes the redelivery harmless. ``state`` is not archived: it is derived from the events.

Once an alarm transition is committed the worker sends the bed a delivery receipt for it (station
``--station``, default ``archive-<host>``; ``--no-receipts``: none): the archive has it.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt

from monitord.central.receipts import Receipts
from monitord.config import ConfigError, MqttConfig, load_config
from monitord.mqtt import topics as t
from monitord.mqtt.client import describe, make_client

log = logging.getLogger(__name__)

EVENT_LEAVES = (t.ALARM_EVENTS, t.INTERLOCK_EVENTS, t.OBSERVATION_EVENTS, t.VITALS, t.INFUSION)
LEAVES = (*EVENT_LEAVES, t.STATUS, t.ALARMS)
BATCH_MAX = 1000  # rows per transaction; under load batches form by themselves, idle ones are written at once
RETRY_S = 2.0  # pause before writing a batch again after a database error
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def sqlalchemy_free(url: str) -> str:
    """Accept the SQLAlchemy spelling used by ``[store] url`` too (``postgresql+psycopg://``)."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def subscriptions(root: str, group: str | None) -> list[str]:
    base = root.strip("/")
    prefix = f"$share/{group}/" if group else ""
    return [f"{prefix}{base}/+/{leaf}" for leaf in LEAVES]


def _time(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None


@dataclass
class Row:
    leaf: str
    bed: str
    payload: dict[str, Any]
    raw: str


def parse(root: str, topic: str, raw: bytes) -> Row | None:
    """The row a message becomes, or None for a message that is not part of the record."""
    where = t.split(root, topic)
    if where is None or where[1] not in LEAVES or not raw:
        return None
    try:
        text = raw.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    if where[1] in EVENT_LEAVES and not (isinstance(payload.get("seq"), int) and payload["seq"] >= 0):
        return None
    return Row(where[1], where[0], payload, text)


class ArchiveStore:
    """The archive's tables on one PostgreSQL connection (psycopg 3)."""

    def __init__(self, url: str, schema: str = "monitord_archive") -> None:
        import psycopg
        from psycopg import sql

        if not SCHEMA_NAME.match(schema):
            raise ConfigError(f"archive schema {schema!r}: lower-case letters, digits and _ only")
        self.url = sqlalchemy_free(url)
        self.schema = schema
        self._sql = sql
        self._psycopg = psycopg
        self.conn = psycopg.connect(self.url, autocommit=False)
        self.s = sql.Identifier(schema)

    def q(self, text: str) -> Any:
        return self._sql.SQL(text).format(s=self.s)

    def create(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(self.q("CREATE SCHEMA IF NOT EXISTS {s}"))
            cur.execute(self.q("""
                CREATE TABLE IF NOT EXISTS {s}.archive_events (
                    bed text NOT NULL, seq bigint NOT NULL, topic text NOT NULL, time timestamptz,
                    alarm_seq bigint, payload jsonb NOT NULL,
                    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    PRIMARY KEY (bed, seq))"""))
            cur.execute(self.q("""CREATE INDEX IF NOT EXISTS archive_events_alarm_seq
                                  ON {s}.archive_events (bed, alarm_seq) WHERE alarm_seq IS NOT NULL"""))
            cur.execute(self.q("""
                CREATE TABLE IF NOT EXISTS {s}.archive_status (
                    bed text NOT NULL, time timestamptz NOT NULL, status text NOT NULL, reason text,
                    payload jsonb NOT NULL, stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    PRIMARY KEY (bed, time, status))"""))
            cur.execute(self.q("""
                CREATE TABLE IF NOT EXISTS {s}.archive_beds (
                    bed text PRIMARY KEY, announced_alarm_seq bigint, last_seen timestamptz)"""))
        self.conn.commit()

    def write(self, rows: list[Row]) -> int:
        """Store ``rows`` in one transaction; returns how many events were new."""
        events: list[tuple[Any, ...]] = []
        status: list[tuple[Any, ...]] = []
        announced: dict[str, int] = {}
        for r in rows:
            p = r.payload
            if r.leaf in EVENT_LEAVES:
                alarm_seq = p.get("alarm_seq") if r.leaf == t.ALARM_EVENTS else None
                events.append((r.bed, p["seq"], r.leaf, _time(p.get("time")),
                               alarm_seq if isinstance(alarm_seq, int) else None, r.raw))
            elif r.leaf == t.STATUS:
                when = _time(p.get("time"))
                if when is not None and isinstance(p.get("status"), str):
                    status.append((r.bed, when, p["status"], str(p.get("reason") or ""), r.raw))
            elif isinstance(p.get("alarm_seq"), int):
                announced[r.bed] = max(announced.get(r.bed, 0), p["alarm_seq"])
        new = 0
        try:
            with self.conn.cursor() as cur:
                if events:
                    cur.executemany(self.q(
                        "INSERT INTO {s}.archive_events (bed, seq, topic, time, alarm_seq, payload) "
                        "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (bed, seq) DO NOTHING"), events)
                    new = max(0, cur.rowcount)
                if status:
                    cur.executemany(self.q(
                        "INSERT INTO {s}.archive_status (bed, time, status, reason, payload) "
                        "VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING"), status)
                if announced:
                    cur.executemany(self.q(
                        "INSERT INTO {s}.archive_beds AS b (bed, announced_alarm_seq, last_seen) "
                        "VALUES (%s, %s, now()) ON CONFLICT (bed) DO UPDATE SET announced_alarm_seq = "
                        "GREATEST(b.announced_alarm_seq, EXCLUDED.announced_alarm_seq), last_seen = now()"),
                        sorted(announced.items()))
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return new

    def reconnect(self) -> None:
        try:
            self.conn.close()
        finally:
            self.conn = self._psycopg.connect(self.url, autocommit=False)

    def gap_report(self) -> list[dict[str, Any]]:
        """Per bed: what is stored, and which alarm transitions (``alarm_seq``) are missing."""
        with self.conn.cursor() as cur:
            cur.execute(self.q("""
                SELECT e.bed, count(*), min(seq), max(seq), count(alarm_seq), min(alarm_seq), max(alarm_seq),
                       max(b.announced_alarm_seq)
                FROM {s}.archive_events e LEFT JOIN {s}.archive_beds b ON b.bed = e.bed
                GROUP BY e.bed ORDER BY e.bed"""))
            beds = cur.fetchall()
            cur.execute(self.q("""
                SELECT bed, prev + 1, alarm_seq - 1 FROM (
                    SELECT bed, alarm_seq, lag(alarm_seq) OVER (PARTITION BY bed ORDER BY alarm_seq) AS prev
                    FROM {s}.archive_events WHERE alarm_seq IS NOT NULL) x
                WHERE alarm_seq > prev + 1 ORDER BY bed, alarm_seq"""))
            holes: dict[str, list[tuple[int, int]]] = {}
            for bed, lo, hi in cur.fetchall():
                holes.setdefault(bed, []).append((lo, hi))
        self.conn.commit()
        out = []
        for bed, n, seq_lo, seq_hi, n_alarm, a_lo, a_hi, announced in beds:
            missing = list(holes.get(bed, []))
            if a_lo is not None and a_lo > 1:
                missing.insert(0, (1, a_lo - 1))
            top = a_hi or 0
            if announced is not None and announced > top:
                missing.append((top + 1, announced))
            out.append({"bed": bed, "events": n, "seq": (seq_lo, seq_hi), "alarm_transitions": n_alarm,
                        "alarm_seq": (a_lo, a_hi), "announced_alarm_seq": announced, "missing_alarm_seq": missing})
        return out

    def close(self) -> None:
        self.conn.close()


def format_gaps(report: list[dict[str, Any]]) -> str:
    def ranges(rs: list[tuple[int, int]]) -> str:
        return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in rs) or "none"

    def span(p: tuple[Any, Any]) -> str:
        return "-" if p[0] is None else f"{p[0]}..{p[1]}"

    head = ("bed", "events", "seq", "alarm transitions", "alarm_seq", "missing alarm_seq (lost transitions)")
    rows = [head] + [(r["bed"], str(r["events"]), span(r["seq"]), str(r["alarm_transitions"]), span(r["alarm_seq"]),
                      ranges(r["missing_alarm_seq"])) for r in report]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]) for row in rows]
    if not report:
        lines.append("(no events archived)")
    lines.append("Gaps in seq alone are normal (kinds not forwarded one by one; readings are live only): "
                 "docs/mqtt.md.")
    return "\n".join(lines)


class ArchiveWorker:
    """One archive worker: an MQTT client on the (shared) subscription and a writer thread."""

    def __init__(self, mqtt_cfg: MqttConfig, store: ArchiveStore, client_id: str, group: str | None = "archive",
                 persistent: bool = True, station: str | None = None) -> None:
        """``station``: the id this worker confirms stored alarm transitions under; None: no receipts."""
        self.cfg = mqtt_cfg
        self.store = store
        self.client_id = client_id
        self.group = group
        self.persistent = persistent
        self.received = 0  # messages taken from the broker
        self.stored = 0  # new events stored by this worker
        self.ignored = 0  # messages that are not part of the record (not JSON, no seq...)
        self.db_errors = 0
        self.processed = 0  # messages written (or found not part of the record) and acknowledged
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._q: queue.Queue[tuple[Row | None, int, int]] = queue.Queue()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name=f"archive-writer-{client_id}", daemon=True)
        self._client = make_client(mqtt_cfg, client_id, clean_session=not persistent)
        self._client.manual_ack_set(True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = lambda *a: self.subscribed.set()
        self._client.on_message = self._on_message
        self.receipts = Receipts(mqtt_cfg.topic_root, station, self._publish) if station else None

    def _publish(self, topic: str, body: bytes) -> None:
        self._client.publish(topic, body, qos=1)

    def start(self) -> ArchiveWorker:
        self._writer.start()
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        return self

    def stop(self) -> None:
        """Write and acknowledge what was received, then leave (unacknowledged messages stay with the broker)."""
        self._stop.set()
        self._writer.join(30)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("archive %s: broker refused the connection: %s", self.client_id, describe(reason))
            return
        client.subscribe([(topic, 1) for topic in subscriptions(self.cfg.topic_root, self.group)])
        self.connected.set()

    def _on_disconnect(self, *args: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        row = parse(self.cfg.topic_root, msg.topic, bytes(msg.payload))
        self._q.put((row, msg.mid, msg.qos))

    def _write_loop(self) -> None:
        while True:
            try:
                batch = [self._q.get(timeout=0.2)]
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            rows = [r for r, _, _ in batch if r is not None]
            self.ignored += len(batch) - len(rows)
            self._write(rows)
            if self.receipts is not None:  # committed: the archive has these transitions
                for r in rows:
                    if r.leaf == t.ALARM_EVENTS and isinstance(r.payload.get("rule_id"), str) \
                            and isinstance(r.payload.get("alarm_seq"), int):
                        self.receipts.confirm(r.bed, r.payload["rule_id"], r.payload["alarm_seq"])
            for _, mid, qos in batch:
                if qos:
                    self._client.ack(mid, qos)
            self.processed += len(batch)

    def _write(self, rows: list[Row]) -> None:
        while True:
            try:
                self.stored += self.store.write(rows) if rows else 0
                return
            except Exception as exc:  # the database is away: keep the batch (unacknowledged) and retry
                self.db_errors += 1
                log.warning("archive %s: cannot write %d rows (%s); retrying", self.client_id, len(rows), exc)
                time.sleep(RETRY_S)
                try:
                    self.store.reconnect()
                except Exception as again:
                    log.warning("archive %s: database still unreachable: %s", self.client_id, again)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from monitord.central.app import broker_arguments

    broker_arguments(parser)
    parser.add_argument("--url", required=True, help="PostgreSQL URL, e.g. postgresql://archive@db.example/monitord")
    parser.add_argument("--schema", default="monitord_archive", help="schema of the archive tables (created if missing)")
    parser.add_argument("--group", default="archive",
                        help="shared-subscription group: workers in one group split the beds' messages "
                             "(\"\": a plain subscription, for a broker without shared subscriptions)")
    parser.add_argument("--client-id", help="MQTT client id; unique per worker, kept across restarts "
                                            "(default monitord-archive-<host>-<group>)")
    parser.add_argument("--clean-session", action="store_true",
                        help="no persistent session: while this worker is away the broker keeps nothing for it")
    parser.add_argument("--gap-report", action="store_true",
                        help="print what is archived per bed and the lost alarm transitions, then exit (1 if any)")


def main(args: argparse.Namespace) -> int:
    import psycopg

    from monitord.central.app import mqtt_config_from_args, station_from_args

    try:
        config = load_config(args.config) if args.config else None
        mqtt_cfg = mqtt_config_from_args(args, config)
        station = station_from_args(args, "archive")
        store = ArchiveStore(args.url, args.schema)
    except (ConfigError, ValueError) as exc:
        print(exc)
        return 2
    except psycopg.OperationalError as exc:  # the database is away: a restart may succeed
        log.error("archive: cannot connect to the database: %s", str(exc).strip())
        return 1
    try:
        store.create()
        if args.gap_report:
            report = store.gap_report()
            print(format_gaps(report))
            return 1 if any(r["missing_alarm_seq"] for r in report) else 0
        group = args.group or None
        client_id = args.client_id or f"monitord-archive-{socket.gethostname()}-{group or 'single'}"
        worker = ArchiveWorker(mqtt_cfg, store, client_id, group, persistent=not args.clean_session,
                               station=station).start()
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info("archive %s: %s -> %s (schema %s)", client_id, ", ".join(subscriptions(mqtt_cfg.topic_root, group)),
                 store.conn.info.host, args.schema)
        while not stop.wait(60):
            log.info("archive %s: received %d, stored %d new events, ignored %d", client_id, worker.received,
                     worker.stored, worker.ignored)
        worker.stop()
        return 0
    finally:
        store.close()
