"""Limits of the command path: size, rate, parsing that cannot stall the rule loop.

The gate alone on a fake clock, then a real broker flooding a real bed."""

from __future__ import annotations

import asyncio
import json
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitord.mqtt import commands, payloads
from monitord.mqtt.commands import CommandGate, Refusal
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed, bed_config
from tests.mqtt.support import Subscriber, until
from tests.mqtt.test_security import ack, inactivation, refusals

TOPIC = f"{ROOT}/bed-a/cmd/ack"


def gate(now: list[float]) -> CommandGate:
    return CommandGate(TOPIC, True, frozenset({"central-icu"}), now=lambda: now[0])


def body(station: str = "central-icu", user: str = "nurse-7", **extra: object) -> bytes:
    return json.dumps(payloads.ack_command(station, "tech.pump.device_fault", user) | extra).encode()


def test_oversized_payload_is_dropped_unread_and_counted() -> None:
    now = [0.0]
    g = gate(now)
    assert g.judge(TOPIC, b"x" * (commands.MAX_BYTES + 1), False) is None
    assert g.judge(TOPIC, b"[" * 5_000_000, False) is None
    dropped = g.take_dropped()
    assert dropped.too_large == 2 and dropped.largest_bytes == 5_000_000
    assert not g.take_dropped()  # reported once
    assert isinstance(g.judge(TOPIC, body(), False), payloads.AckCommand)


def test_deep_nesting_is_a_refusal_not_an_escape() -> None:
    g = gate([0.0])
    verdict = g.judge(TOPIC, b"[" * 1000, False)  # within the size limit, deeper than json likes
    assert isinstance(verdict, Refusal) and verdict.reason == "payload is not JSON"
    assert g.judge(TOPIC, b"\xff\xfe", False) == Refusal(TOPIC, None, None, None, "payload is not JSON")


def test_rate_limit_per_station_and_overall(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    g = gate(now)
    results = [g.judge(TOPIC, body(), False) for _ in range(20)]
    assert sum(isinstance(r, payloads.AckCommand) for r in results) == commands.STATION_BURST
    # Another station still gets through: only the first one's bucket is empty.
    assert isinstance(g.judge(TOPIC, body("rogue"), False), Refusal)
    now[0] += 1.0
    assert sum(isinstance(g.judge(TOPIC, body(), False), payloads.AckCommand) for _ in range(10)) == commands.STATION_RATE
    # A flood under ever new station names is bounded by what may reach the event loop.
    now[0] += 100.0
    judged = [g.judge(TOPIC, body(f"s{i}"), False) for i in range(1000)]
    assert sum(r is not None for r in judged) == commands.GLOBAL_BURST
    # ... and junk beyond the parse budget is not even parsed.
    now[0] += 100.0
    parsed: list[bytes] = []
    loads = json.loads
    monkeypatch.setattr(commands.json, "loads", lambda raw: parsed.append(raw) or loads(raw))
    assert sum(g.judge(TOPIC, b"{", False) is not None for _ in range(1000)) == commands.STATION_BURST
    monkeypatch.undo()
    assert len(parsed) == commands.PARSE_BURST
    dropped = g.take_dropped()
    assert dropped.rate_limited == (20 - commands.STATION_BURST) + (10 - commands.STATION_RATE) + (1000 - 20) + 995


def test_refusals_carry_bounded_text() -> None:
    g = gate([0.0])
    verdict = g.judge(TOPIC, body(user="u" * 300), False)
    assert isinstance(verdict, Refusal)
    assert verdict.user == "u" * 64 and len(verdict.reason) <= commands.TEXT["reason"]


class Flooder:
    """A paho client that publishes as fast as the broker takes it."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flooder")
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, payloads_: list[bytes]) -> None:
        infos = [self.client.publish(TOPIC, p, qos=1) for p in payloads_]
        for info in infos:
            info.wait_for_publish(60)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_a_flood_of_junk_commands_does_not_stall_the_rule_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broker = Mosquitto(tmp_path / "b").start()
    bed = await Bed(bed_config(broker.port, "bed-a", accept_ack=True, ack_stations=["central-icu"])).start()
    gaps: list[float] = []
    last = [time.monotonic()]

    def evaluated() -> None:
        t = time.monotonic()
        gaps.append(t - last[0])
        last[0] = t

    bed.loop.on_evaluated.append(evaluated)  # where the daemon pets the systemd watchdog
    flooder = Flooder(broker.port)
    station = Subscriber(broker.port, f"{ROOT}/bed-a/#")
    try:
        bed.fault()
        await until(lambda: "tech.pump.device_fault" in bed.active())
        junk = [b"{not json", b"[]", b"\x00" * 100, body("rogue"), body(user=""), b"[" * 900]
        flood = [junk[i % len(junk)] for i in range(4500)] + [b"y" * 5_000_000] * 3
        gaps.clear()
        last[0] = time.monotonic()
        await asyncio.to_thread(flooder.send, flood)
        await until(lambda: bed.publisher.gate.total.too_large == 3, what="the large messages counted")
        await asyncio.sleep(0.5)  # the rule loop keeps ticking after the flood
        # The rule loop ticks every 50 ms here; the unit's watchdog allows 20 s.
        assert max(gaps) < 1.0, f"rule loop stalled {max(gaps):.2f} s"
        assert len(gaps) > 5
        total = bed.publisher.gate.total
        assert total.rate_limited > 4000
        audited = refusals(bed)
        assert 0 < len(audited) <= commands.GLOBAL_BURST + 10 * commands.GLOBAL_RATE
        assert all(len(json.dumps(e)) < 2000 for e in audited)
        # The counts of what was dropped are audited too, once the report is due.
        bed.publisher._report_dropped(force=True)
        await until(lambda: [e for e in bed.events() if e.kind.value == "system"
                             and e.data["action"] == "mqtt_commands_dropped"], what="drops audited")
        assert max(len(json.dumps(e.data)) for e in bed.events()) < 5000  # no 5 MB row
        # The bed still takes a real acknowledgement once the flood has passed.
        await asyncio.sleep(1.0 / commands.STATION_RATE)
        ack(station, "bed-a", "central-icu", "tech.pump.device_fault")
        await until(lambda: inactivation(bed, "tech.pump.device_fault") == "acknowledged", what="ack after the flood")
    finally:
        flooder.close()
        station.close()
        await bed.stop()
        broker.stop()
