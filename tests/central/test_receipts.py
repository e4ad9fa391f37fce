"""Delivery receipts end to end: a bed expecting them raises "central not confirming" in time when
no central station runs, and stays quiet while the web view (with a page open), the terminal
overview or the archive confirms what it showed or stored."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitord.central.archive import ArchiveStore, ArchiveWorker
from monitord.central.receipts import Receipts, default_station
from monitord.config import MqttConfig
from monitord.mqtt import schemas
from tests.central.conftest import WebView
from tests.central.feeds import SimBed, alarm
from tests.central.test_web import Hub
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed, bed_config
from tests.mqtt.support import Subscriber, until

TIMEOUT_S = 5.0  # [mqtt] receipt_timeout_s for these beds (its minimum)
HIGH = "tech.pump.device_fault"
UNCONFIRMED = "tech.central_unconfirmed"


# -- which transitions a display confirms -------------------------------------------------------------


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, topic: str, body: bytes) -> None:
        self.messages.append((topic, json.loads(body)))

    def keys(self) -> list[tuple[str, str, int]]:
        return [(topic.split("/")[2], p["rule_id"], p["alarm_seq"]) for topic, p in self.messages]


def test_each_transition_and_each_alarm_of_a_set_once_per_occurrence() -> None:
    sent = Sent()
    r = Receipts(ROOT, "ward-3", sent)
    bed = SimBed("bed-1")
    fault = alarm("high", HIGH, "pump fault") | {"occurrence_seq": 1}
    topic, raw = bed.alarm_event(fault)  # alarm_seq 1
    r.note(topic, raw)
    r.note(bed.topic("alarms"), bed.alarms(fault))  # the set after it: already confirmed
    low = alarm("low", "tech.nibp_overdue", "NIBP overdue") | {"occurrence_seq": 2}
    bed.alarm_seq = 2  # raised while this station was away: known only from the retained set
    r.note(bed.topic("alarms"), bed.alarms(fault, low))
    r.note(bed.topic("vitals"), b"{}")  # not an alarm: nothing to confirm
    r.send(r.take())
    assert sent.keys() == [("bed-1", HIGH, 1), ("bed-1", "tech.nibp_overdue", 2)]
    topic, body = sent.messages[0]
    assert topic == f"{ROOT}/bed-1/receipt" and not schemas.errors("receipt", body)
    assert set(body) == {"v", "station", "rule_id", "alarm_seq", "time"} and body["station"] == "ward-3"
    # The same alarm raised again (a new occurrence) is confirmed again.
    again = fault | {"occurrence_seq": 5}
    bed.alarm_seq = 5
    r.note(bed.topic("alarms"), bed.alarms(again))
    assert r.take() == [("bed-1", HIGH, 5)]


def test_station_ids_are_what_a_bed_records() -> None:
    with pytest.raises(ValueError):
        Receipts(ROOT, "ward 3", Sent())
    assert default_station("central").startswith("central-") and len(default_station("x" * 80)) == 64


def test_the_web_view_confirms_only_what_an_open_page_was_sent() -> None:
    hub = Hub()
    sent = Sent()
    hub.b.receipts = Receipts(ROOT, "ward-3-web", sent)
    bed = SimBed("bed-1")
    topic, raw = bed.alarm_event(alarm("high", HIGH, "pump fault"))
    for leaf, body in (("status", bed.status()), ("events/alarm", raw)):
        hub.overview.apply(bed.topic(leaf), body)
        hub.b.receipts.note(bed.topic(leaf), body)
    hub.clock.advance(0.25)
    hub.b.tick()
    assert sent.messages == []  # no page open: nobody saw it
    page: asyncio.Queue[str | None] = asyncio.Queue(64)
    hub.b.clients.add(page)
    hub.clock.advance(0.25)
    hub.b.tick()
    assert sent.keys() == [("bed-1", HIGH, 1)]


# -- a bed expecting receipts, and the central stations that send them ----------------------------------


@pytest.fixture
async def bed(broker: Mosquitto) -> AsyncIterator[Bed]:
    b = await Bed(bed_config(broker.port, "bed-1", expect_receipts=True, receipt_timeout_s=TIMEOUT_S)).start()
    await until(lambda: b.publisher.subscribed, what="bed subscribed to its receipts")
    yield b
    await b.stop()


@pytest.fixture
def feed(broker: Mosquitto) -> Iterator[Subscriber]:
    """Everything on the broker, as a station listening to all beds would see it."""
    s = Subscriber(broker.port, f"{ROOT}/#")
    yield s
    s.close()


async def raise_high(bed: Bed) -> int:
    bed.fault()
    await until(lambda: HIGH in bed.active(), what="HIGH alarm raised")
    return next(a.occurrence_seq for a in bed.engine.alarms.active() if a.rule.id == HIGH)


async def stays_quiet(bed: Bed, occurrence: int, station: str) -> None:
    """The station's receipt arrives; well past the timeout, the bed has raised nothing."""
    await until(lambda: station in bed.engine.state.receipts.get(occurrence, ()), what=f"receipt from {station}")
    bed.clock.advance(TIMEOUT_S * 4)
    await bed.settled()
    assert HIGH in bed.active() and UNCONFIRMED not in bed.active()
    assert not [e for e in bed.events() if e.kind.value == "alarm" and e.data["rule_id"] == UNCONFIRMED]
    assert next(a.inactivation.value for a in bed.engine.alarms.active() if a.rule.id == HIGH) == "enabled"


async def test_no_central_running_raises_not_confirming_in_time(bed: Bed, feed: Subscriber) -> None:
    await raise_high(bed)
    bed.clock.advance(TIMEOUT_S - 0.1)
    await bed.settled()
    assert UNCONFIRMED not in bed.active()
    bed.clock.advance(0.2)
    await bed.settled()
    assert UNCONFIRMED in bed.active()
    raised = await feed.until(lambda s: [m.payload for m in s.on("/bed-1/events/alarm")
                                               if m.payload["rule_id"] == UNCONFIRMED], what="published")
    assert HIGH in raised[0]["message"]
    assert not feed.on("/receipt")


class Page:
    """A browser tab on the web view: the event stream open, its first message read."""

    def __init__(self, web: WebView) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=20)
        self.conn.request("GET", "/events")
        resp = self.conn.getresponse()
        assert resp.status == 200
        while not resp.readline().startswith(b"data: "):
            pass

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def web(broker: Mosquitto, tmp_path: Path) -> Iterator[WebView]:
    w = WebView(broker.port, tmp_path, args=("--station", "ward-3-web"))
    yield w
    w.stop()


async def test_the_web_view_with_a_page_open_keeps_the_bed_quiet(bed: Bed, web: WebView,
                                                                 feed: Subscriber) -> None:
    page = await asyncio.to_thread(Page, web)
    try:
        occurrence = await raise_high(bed)
        await stays_quiet(bed, occurrence, "ward-3-web")
        receipts = [m for m in feed.on("/bed-1/receipt") if m.payload["rule_id"] == HIGH]
        assert receipts and all(m.qos == 1 and not m.retain and not schemas.errors("receipt", m.payload)
                                for m in receipts)
        assert receipts[0].payload["alarm_seq"] == occurrence
    finally:
        page.close()


async def test_the_terminal_overview_keeps_the_bed_quiet(bed: Bed, broker: Mosquitto) -> None:
    from monitord.central.app import create_app

    app = create_app(MqttConfig(host="127.0.0.1", port=broker.port, topic_root=ROOT), client_id="central-tui",
                     station="ward-3-tui")
    async with app.run_test(size=(120, 20)):
        occurrence = await raise_high(bed)
        await stays_quiet(bed, occurrence, "ward-3-tui")


@pytest.mark.postgres
async def test_the_archive_keeps_the_bed_quiet(bed: Bed, broker: Mosquitto) -> None:
    from tests.central.test_archive import PG_URL

    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable: {str(exc).splitlines()[0]}")
    schema = "arch_receipts_" + bed.config.bed.id.replace("-", "_")
    store = ArchiveStore(PG_URL, schema)
    store.create()
    worker = ArchiveWorker(MqttConfig(host="127.0.0.1", port=broker.port, topic_root=ROOT, keepalive_s=5), store,
                           "archive-receipts", group=None, persistent=False, station="archive-1").start()
    try:
        assert await asyncio.to_thread(worker.subscribed.wait, 10)
        occurrence = await raise_high(bed)
        await stays_quiet(bed, occurrence, "archive-1")
    finally:
        worker.stop()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        store.close()
