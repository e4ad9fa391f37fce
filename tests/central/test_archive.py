"""``monitord archive`` on a real broker and PostgreSQL: replays stored once, two workers sharing
one subscription store every event exactly once between them, a planted gap is reported."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from monitord.central.archive import ArchiveStore, ArchiveWorker, format_gaps
from monitord.config import MqttConfig
from tests.central.conftest import REPO
from tests.central.feeds import ROOT, T0, Publisher, SimBed, alarm
from tests.mqtt.broker import Mosquitto

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of its own per test, dropped after."""
    import psycopg

    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable: {str(exc).splitlines()[0]}")
    name = f"arch_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.close()


def worker(broker: Mosquitto, schema: str, client_id: str, group: str | None = "archive") -> ArchiveWorker:
    store = ArchiveStore(PG_URL, schema)
    store.create()
    w = ArchiveWorker(MqttConfig(host="127.0.0.1", port=broker.port, topic_root=ROOT, keepalive_s=5),
                      store, client_id, group).start()
    assert w.subscribed.wait(10), "archive worker did not subscribe"
    return w


def wait(pred: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rows(schema: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(PG_URL) as conn:
        return conn.execute(sql.format(s=schema)).fetchall()


def course(bed: SimBed, seconds: int) -> list[tuple[str, bytes]]:
    """A bed's forwarded events: an alarm raised and cleared around vitals and pump readings."""
    a = alarm("medium", "spo2.low", "SpO2 89 %")
    out = [bed.alarm_event(a, when=T0)]
    for k in range(seconds):
        when = T0 + timedelta(seconds=k)
        out += [bed.vitals(when=when, hr=70.0 + k % 5, spo2=96.0), bed.infusion(0.5, when=when)]
    out.append(bed.alarm_event(a, transition="cleared", when=T0 + timedelta(seconds=seconds)))
    return out


def test_a_replay_of_the_same_events_is_stored_once(broker: Mosquitto, schema: str) -> None:
    w = worker(broker, schema, "archive-test-1")
    pub = Publisher(broker.port)
    try:
        msgs = [m for i in range(3) for m in course(SimBed(f"bed-{i}"), 20)]
        for m in msgs:
            pub.send(*m)
        wait(lambda: w.processed == len(msgs), "first pass archived")
        for m in msgs:  # the same events again, as a bed's backlog or a QoS 1 redelivery would bring them
            pub.send(*m)
        wait(lambda: w.processed == 2 * len(msgs), "replay processed")
        assert w.received == 2 * len(msgs) and w.stored == len(msgs) and w.ignored == 0
        assert rows(schema, "SELECT count(*), count(DISTINCT (bed, seq)) FROM {s}.archive_events") == [(len(msgs),) * 2]
        stored = rows(schema, "SELECT topic, alarm_seq, payload FROM {s}.archive_events "
                              "WHERE bed = 'bed-1' ORDER BY seq")
        assert [r[0] for r in stored] == ["events/alarm"] + ["vitals", "infusion"] * 20 + ["events/alarm"]
        assert (stored[0][1], stored[-1][1]) == (1, 2)
        assert stored[1][2] == json.loads([p for t, p in msgs if t.startswith(f"{ROOT}/bed-1/")][1])
    finally:
        pub.close()
        w.stop()


def test_two_workers_on_one_shared_subscription_store_each_event_exactly_once(broker: Mosquitto, schema: str) -> None:
    a = worker(broker, schema, "archive-test-a", group="pair")
    b = worker(broker, schema, "archive-test-b", group="pair")
    pub = Publisher(broker.port)
    try:
        msgs = [m for i in range(10) for m in course(SimBed(f"bed-{i:02d}"), 50)]
        for m in msgs:
            pub.send(*m)
        wait(lambda: a.processed + b.processed == len(msgs), "all events archived")
        time.sleep(0.5)  # a message delivered to both would arrive within this; none may
        assert a.received + b.received == len(msgs)  # the broker gave each message to one worker only
        assert a.received > len(msgs) // 10 and b.received > len(msgs) // 10  # and both took a share
        assert a.stored + b.stored == len(msgs)
        assert rows(schema, "SELECT count(*), count(DISTINCT (bed, seq)) FROM {s}.archive_events") == [(len(msgs),) * 2]
    finally:
        pub.close()
        a.stop()
        b.stop()


def test_a_worker_restarted_gets_what_was_published_while_it_was_away(broker: Mosquitto, schema: str) -> None:
    w = worker(broker, schema, "archive-test-r")
    pub = Publisher(broker.port)
    bed = SimBed("bed-1")
    try:
        first, later = course(bed, 5), course(bed, 5)
        for m in first:
            pub.send(*m)
        wait(lambda: w.processed == len(first), "first events archived")
        w.stop()
        for m in later:  # the broker queues them in the worker's persistent session
            pub.send(*m)
        w = worker(broker, schema, "archive-test-r")
        wait(lambda: w.processed == len(later), "queued events archived after the restart")
        assert rows(schema, "SELECT count(*) FROM {s}.archive_events") == [(len(first) + len(later),)]
    finally:
        pub.close()
        w.stop()


def gap_report(schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitord.cli", "archive", "--url", PG_URL, "--schema", schema,
                           "--gap-report"], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_gap_report_finds_a_planted_gap(broker: Mosquitto, schema: str) -> None:
    w = worker(broker, schema, "archive-test-g")
    pub = Publisher(broker.port)
    whole, holed, tail = SimBed("bed-whole"), SimBed("bed-holed"), SimBed("bed-tail")
    try:
        msgs = course(whole, 3) + course(holed, 3) + course(tail, 3)
        a = alarm("high", "spo2.critical", "SpO2 84 %")
        msgs += [holed.alarm_event(a), holed.alarm_event(a, transition="cleared", skip=True),  # alarm_seq 4 lost
                 holed.alarm_event(a), holed.alarm_event(a, transition="cleared")]
        msgs = [m for m in msgs if m[1]]
        tail.alarm_seq += 2  # bed-tail says it is at alarm_seq 4; 3 and 4 never arrive
        msgs.append((tail.topic("alarms"), tail.alarms()))
        for m in msgs:
            pub.send(*m)
        wait(lambda: w.processed == len(msgs), "events archived")
    finally:
        pub.close()
        w.stop()
    report = {r["bed"]: r for r in ArchiveStore(PG_URL, schema).gap_report()}
    assert report["bed-whole"]["missing_alarm_seq"] == []
    assert report["bed-holed"]["missing_alarm_seq"] == [(4, 4)]
    assert report["bed-tail"]["missing_alarm_seq"] == [(3, 4)]
    assert report["bed-holed"]["alarm_transitions"] == 5 and report["bed-holed"]["alarm_seq"] == (1, 6)

    run = gap_report(schema)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = {ln.split()[0]: ln for ln in run.stdout.splitlines() if ln.startswith("bed-")}
    assert lines["bed-holed"].endswith("  4") and lines["bed-tail"].endswith("  3-4")
    assert lines["bed-whole"].endswith("  none")
    assert run.stdout == format_gaps(list(report.values())) + "\n"

    rows(schema, "DELETE FROM {s}.archive_events WHERE bed <> 'bed-whole' RETURNING 1")
    run = gap_report(schema)
    assert run.returncode == 0 and "none" in run.stdout, run.stdout + run.stderr
