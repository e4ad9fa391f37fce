"""The web view's server: what it pushes and when, read-only routes, headers, the event stream."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from monitord.central import view as v
from monitord.central.feed import NO_DATA_AFTER_S, Overview
from monitord.central.web import CLIENT_QUEUE, Broadcaster
from tests.central.conftest import Clock, WebView
from tests.central.feeds import ROOT, T0, Publisher, SimBed, alarm
from tests.mqtt.broker import Mosquitto

LIMITS = v.Limits.from_config()


class Hub:
    def __init__(self) -> None:
        self.clock = Clock()
        self.overview = Overview(ROOT, self.clock)
        self.connected = True
        self.b = Broadcaster(self.overview, LIMITS, lambda: self.connected, self.clock)

    def feed(self, bed: SimBed, leaf: str, raw: bytes) -> None:
        self.overview.apply(bed.topic(leaf), raw)

    def step(self, after_s: float = 0.25) -> dict[str, Any] | None:
        self.clock.advance(after_s)
        msg = self.b.step()
        return None if msg is None else json.loads(msg)


def beds_in(msg: dict[str, Any] | None) -> list[str]:
    return [t["bed"] for t in (msg or {}).get("tiles", [])]


def test_pushes_only_what_changed_and_what_time_alone_changes() -> None:
    hub = Hub()
    one, two = SimBed("bed-1"), SimBed("bed-2")
    for bed in (one, two):
        hub.feed(bed, "status", bed.status())
        hub.feed(bed, "state", bed.state(dose=0.5, dose_age=LIMITS.dose_stale_after_s - 2))
    first = hub.step()
    assert first is not None and beds_in(first) == ["bed-1", "bed-2"] and first["order"] == ["bed-1", "bed-2"]
    assert hub.step() is None  # nothing new

    hub.feed(two, "alarms", two.alarms(alarm("high", "spo2.critical", "SpO2 84 %")))
    msg = hub.step()
    assert beds_in(msg) == ["bed-2"] and msg is not None and msg["order"] == ["bed-2", "bed-1"]
    assert msg["tiles"][0]["highs"] == ["spo2.critical"] and msg["tiles"][0]["alarm"]["priority"] == "high"

    hub.feed(one, "status", one.status())  # a heartbeat: new data age, same values: sent (ages restart)
    assert beds_in(hub.step()) == ["bed-1"]

    # 3 s on, the doses' pump readings are older than the limit: both tiles change with no message.
    msg = hub.step(3.0)
    assert sorted(beds_in(msg)) == ["bed-1", "bed-2"] and msg is not None
    assert all(t["dose"][0] is None for t in msg["tiles"]) and "order" not in msg

    msg = hub.step(NO_DATA_AFTER_S)
    assert msg is not None and {t["bed"]: t["label"] for t in msg["tiles"]} == {"bed-1": "NO DATA", "bed-2": "NO DATA"}
    assert msg["order"] == ["bed-1", "bed-2"]  # no current alarm shown: both rank as lost feeds, by name
    snapshot = json.loads(hub.b.snapshot())
    assert snapshot["full"] and [t["bed"] for t in snapshot["tiles"]] == ["bed-1", "bed-2"]


def test_a_broker_loss_is_pushed_even_when_no_bed_changes() -> None:
    hub = Hub()
    bed = SimBed("bed-1")
    hub.feed(bed, "status", bed.status())
    assert hub.step() is not None
    hub.connected = False
    msg = hub.step()
    assert msg is not None and msg["connected"] is False and msg["tiles"] == []


async def test_a_page_that_falls_behind_is_dropped_and_told_to_reconnect() -> None:
    hub = Hub()
    slow: asyncio.Queue[str | None] = asyncio.Queue(CLIENT_QUEUE)
    hub.b.clients.add(slow)
    for i in range(CLIENT_QUEUE + 1):
        hub.b.publish(f"m{i}")
    assert slow not in hub.b.clients
    items = [slow.get_nowait() for _ in range(slow.qsize())]
    assert items[-1] is None and len(items) == CLIENT_QUEUE


def fetch(web: WebView, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(web.url + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_read_only_with_a_strict_content_security_policy(web: WebView) -> None:
    status, headers, body = fetch(web, "/")
    assert status == 200 and b"monitord central" in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    for path in ("/", "/api/beds", "/events", "/bed/bed-1"):
        for method in ("POST", "PUT", "DELETE"):
            assert fetch(web, path, method)[0] == 405, (method, path)
    assert fetch(web, "/api/beds/no-such-bed")[0] == 404
    status, _, lic = fetch(web, "/static/vendor/uplot/LICENSE")
    assert status == 200 and b"MIT" in lic


def test_the_event_stream_starts_with_every_bed_then_sends_changes(broker: Mosquitto, web: WebView) -> None:
    pub = Publisher(broker.port)
    try:
        pub.bed(SimBed("bed-1"))
        web.poll("/api/beds", lambda d: d["tiles"])
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=20)
        conn.request("GET", "/events")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")

        def next_data() -> dict[str, Any]:
            while True:
                line = resp.readline()
                assert line, "stream closed"
                if line.startswith(b"data: "):
                    return dict(json.loads(line[6:]))

        first = next_data()
        assert first["full"] and [t["bed"] for t in first["tiles"]] == ["bed-1"]
        two = SimBed("bed-2")
        pub.bed(two)
        pub.send(two.topic("alarms"), two.alarms(alarm("medium", "rr.low", "RR 7 /min")), retain=True)
        while True:
            msg = next_data()
            if msg.get("order") == ["bed-2", "bed-1"]:
                break
        assert not msg["full"] and "bed-1" not in [t["bed"] for t in msg["tiles"]]
        conn.close()
    finally:
        pub.close()


def test_bed_detail_has_trend_and_history(broker: Mosquitto, web: WebView) -> None:
    bed_id = "bed-1"
    pub, bed = Publisher(broker.port), SimBed(bed_id)
    try:
        pub.bed(bed)
        for k in range(4):
            pub.send(*bed.vitals(when=T0 + timedelta(seconds=10 * k), hr=70.0 + k, spo2=97.0))
        pub.send(*bed.alarm_event(alarm("medium", "spo2.low", "SpO2 89 %")))
        pub.send(*bed.alarm_event(alarm("medium", "spo2.low", "SpO2 89 %"), transition="cleared"))
        d = web.poll(f"/api/beds/{bed_id}", lambda d: len(d["history"]) == 2)
        assert [h["transition"] for h in d["history"]] == ["cleared", "raised"]
        assert d["trend"]["hr"] == [70.0, 71.0, 72.0, 73.0]
        assert d["trend"]["t"][1] - d["trend"]["t"][0] == 10.0
        assert d["tile"]["label"] == "online"
    finally:
        pub.close()
