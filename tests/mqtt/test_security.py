"""TLS with a password, and the one command a central station may send (alarm acknowledge)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from monitord.mqtt import payloads
from tests.mqtt.broker import Mosquitto, make_certs
from tests.mqtt.conftest import ROOT, Bed, bed_config
from tests.mqtt.support import Subscriber, until


async def test_tls_with_password(tmp_path: Path) -> None:
    tls = make_certs(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "broker", users={"bed-t": "s3cret", "central": "c3ntral"}, tls=tls,
                       require_client_cert=True).start()
    tls_cfg = {"ca_file": str(tls.ca), "cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    station = Subscriber(broker.port, f"{ROOT}/#", username="central", password="c3ntral", tls=tls)
    good = await Bed(bed_config(broker.port, "bed-t", username="bed-t", password="s3cret", tls=tls_cfg)).start()
    bad = await Bed(bed_config(broker.port, "bed-x", username="bed-t", password="wrong", tls=tls_cfg)).start(
        wait_connected=False)
    try:
        await station.until(lambda s: s.on("/bed-t/status"), what="birth over TLS")
        assert station.on("/bed-t/status")[-1].payload["status"] == "online"
        await until(lambda: "tech.mqtt_failed" in bad.active(), what="refused credentials reported at the bedside")
        assert not bad.publisher.connected
        assert not station.on("/bed-x/status")
    finally:
        for b in (good, bad):
            await b.stop()
        station.close()
        broker.stop()


def ack(sub: Subscriber, bed_id: str, station: str, rule_id: str, user: str = "nurse-7", retain: bool = False,
        alarm_seq: int | None = None) -> None:
    body = json.dumps(payloads.ack_command(station, rule_id, user, alarm_seq))
    sub.client.publish(f"{ROOT}/{bed_id}/cmd/ack", body, qos=1, retain=retain).wait_for_publish(10)


def inactivation(bed: Bed, rule_id: str) -> str:
    return next(a.inactivation.value for a in bed.engine.alarms.active() if a.rule.id == rule_id)


def refusals(bed: Bed) -> list[dict[str, object]]:
    return [e.data for e in bed.events() if e.kind.value == "system" and e.data["action"] == "mqtt_command_refused"]


@pytest.fixture
async def ack_bed(broker: Mosquitto):  # type: ignore[no-untyped-def]
    b = await Bed(bed_config(broker.port, "bed-a", accept_ack=True, ack_stations=["central-icu"])).start()
    b.fault()
    await until(lambda: "tech.pump.device_fault" in b.active())
    yield b
    await b.stop()


async def test_ack_from_an_authorised_station_is_applied_and_audited(ack_bed: Bed, subscriber: Subscriber) -> None:
    ack(subscriber, "bed-a", "central-icu", "tech.pump.device_fault")
    await until(lambda: inactivation(ack_bed, "tech.pump.device_fault") == "acknowledged", what="acknowledged")
    await subscriber.until(lambda s: [m for m in s.on("/bed-a/events/alarm") if m.payload["transition"] == "acknowledged"],
                           what="acknowledge transition on the feed")
    event = next(m.payload for m in subscriber.on("/bed-a/events/alarm") if m.payload["transition"] == "acknowledged")
    assert event["actor"] == "central:central-icu:nurse-7"


async def test_unauthorised_ack_is_refused_and_logged(ack_bed: Bed, subscriber: Subscriber,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="monitord.mqtt.publisher")
    ack(subscriber, "bed-a", "rogue-station", "tech.pump.device_fault")
    await until(lambda: refusals(ack_bed), what="refusal recorded")
    assert inactivation(ack_bed, "tech.pump.device_fault") == "enabled"
    refused = refusals(ack_bed)[0]
    assert refused["reason"] == "station 'rogue-station' is not authorised to acknowledge"
    assert refused["station"] == "rogue-station" and refused["user"] == "nurse-7"
    assert "rogue-station" in caplog.text


async def test_a_retained_ack_is_not_replayed_on_connect(broker: Mosquitto, subscriber: Subscriber) -> None:
    ack(subscriber, "bed-r", "central-icu", "tech.pump.device_fault", retain=True)
    bed = await Bed(bed_config(broker.port, "bed-r", accept_ack=True, ack_stations=["central-icu"])).start()
    try:
        bed.fault()
        await until(lambda: refusals(bed), what="retained command refused")
        assert "retained" in str(refusals(bed)[0]["reason"])
        await until(lambda: "tech.pump.device_fault" in bed.active())
        assert inactivation(bed, "tech.pump.device_fault") == "enabled"
    finally:
        await bed.stop()


async def test_ack_is_ignored_unless_enabled(bed: Bed, subscriber: Subscriber) -> None:
    bed.fault()
    await until(lambda: "tech.pump.device_fault" in bed.active())
    ack(subscriber, bed.config.bed.id, "central-icu", "tech.pump.device_fault")
    # Prove the bed is live after the command had time to arrive: a later change is published.
    bed.fault(False)
    await subscriber.until(lambda s: [m for m in s.on("/events/alarm") if m.payload["transition"] == "cleared"])
    assert [m.payload["transition"] for m in subscriber.on("/events/alarm")] == ["raised", "cleared"]


async def test_a_stale_ack_does_not_silence_a_later_occurrence(ack_bed: Bed, subscriber: Subscriber) -> None:
    def occurrence() -> int:
        return next(a.occurrence_seq for a in ack_bed.engine.alarms.active() if a.rule.id == "tech.pump.device_fault")

    seen = occurrence()
    ack_bed.fault(False)
    await until(lambda: "tech.pump.device_fault" not in ack_bed.active())
    ack_bed.fault(True)
    await until(lambda: "tech.pump.device_fault" in ack_bed.active() and occurrence() > seen, what="raised again")
    # A station acknowledging what it showed before the alarm cleared: refused, the alarm still sounds.
    ack(subscriber, "bed-a", "central-icu", "tech.pump.device_fault", alarm_seq=seen)
    await until(lambda: [e for e in ack_bed.events() if e.kind.value == "rejected"], what="stale ack rejected")
    rejected = next(e.data for e in ack_bed.events() if e.kind.value == "rejected")
    assert "stale" in rejected["reason"] and rejected["actor"] == "central:central-icu:nurse-7"
    assert inactivation(ack_bed, "tech.pump.device_fault") == "enabled"
    ack(subscriber, "bed-a", "central-icu", "tech.pump.device_fault", alarm_seq=occurrence())
    await until(lambda: inactivation(ack_bed, "tech.pump.device_fault") == "acknowledged", what="current ack applied")
