"""Delivery receipts at the bedside: judged like commands (size, rate, schema) off the event loop,
in a lane of their own, and able to do one thing only: note that a station saw an alarm."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from monitord.mqtt import commands, payloads
from monitord.mqtt.commands import CommandGate, Refusal
from monitord.readings import CentralReceipt
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed, bed_config
from tests.mqtt.support import Subscriber, until
from tests.mqtt.test_security import ack, inactivation, refusals

ACK = f"{ROOT}/bed-a/cmd/ack"
RECEIPT = f"{ROOT}/bed-a/receipt"
T = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def gate(now: list[float]) -> CommandGate:
    return CommandGate(ACK, True, frozenset({"central-icu"}), RECEIPT, now=lambda: now[0])


def receipt(station: str = "ward-3", rule_id: str = "tech.pump.device_fault", alarm_seq: int = 1,
            **extra: Any) -> bytes:
    return json.dumps(payloads.receipt(station, rule_id, alarm_seq, T) | extra).encode()


def test_a_valid_receipt_becomes_the_beds_receipt_input() -> None:
    verdict = gate([0.0]).judge(RECEIPT, receipt(alarm_seq=7), False)
    assert verdict == CentralReceipt("ward-3", "tech.pump.device_fault", 7)


def test_receipts_that_are_retained_or_carry_anything_more_are_refused() -> None:
    g = gate([0.0])
    for body, retained, why in [
        (receipt(), True, "retained"),
        (receipt(user="rn-1"), False, "invalid receipt"),  # an ack in disguise
        (receipt(action="acknowledge"), False, "invalid receipt"),
        (receipt(station="ward[3]"), False, "invalid receipt"),  # not a station id the bed records
        (receipt(alarm_seq=-1), False, "invalid receipt"),
        (json.dumps({"v": 1, "station": "ward-3", "rule_id": "x"}).encode(), False, "invalid receipt"),
    ]:
        verdict = g.judge(RECEIPT, body, retained)
        assert isinstance(verdict, Refusal) and why in verdict.reason, (body, verdict)
    # A receipt is not a command: on cmd/ack it is an invalid acknowledgement.
    on_ack = g.judge(ACK, receipt(station="central-icu"), False)
    assert isinstance(on_ack, Refusal) and "invalid command" in on_ack.reason


def test_receipts_are_refused_when_the_bed_does_not_expect_them() -> None:
    g = CommandGate(ACK, True, frozenset({"central-icu"}), None, now=lambda: 0.0)
    verdict = g.judge(RECEIPT, receipt(), False)
    assert isinstance(verdict, Refusal) and verdict.reason == commands.NOT_ACCEPTED


def test_a_station_confirms_a_whole_alarm_set_at_once_and_floods_are_bounded() -> None:
    now = [0.0]
    g = gate(now)
    burst = [g.judge(RECEIPT, receipt(rule_id=f"rule.{i}"), False) for i in range(100)]
    assert sum(isinstance(v, CentralReceipt) for v in burst) == commands.RECEIPT_STATION_BURST
    now[0] += 100.0
    flood = [g.judge(RECEIPT, receipt(station=f"s{i}"), False) for i in range(1000)]
    assert sum(v is not None for v in flood) == commands.RECEIPT_GLOBAL_BURST


def test_receipts_and_commands_do_not_starve_each_other() -> None:
    now = [0.0]
    g = gate(now)
    for i in range(1000):  # receipts under ever new names: the receipt lane is spent
        g.judge(RECEIPT, receipt(station=f"s{i}"), False)
    assert g.judge(RECEIPT, receipt(), False) is None
    ack_body = json.dumps(payloads.ack_command("central-icu", "tech.pump.device_fault", "rn-1")).encode()
    assert isinstance(g.judge(ACK, ack_body, False), payloads.AckCommand)
    now[0] += 100.0
    for i in range(1000):  # junk commands under ever new names: the command lane is spent
        g.judge(ACK, json.dumps({"station": f"x{i}"}).encode(), False)
    assert g.judge(ACK, ack_body, False) is None
    assert isinstance(g.judge(RECEIPT, receipt(), False), CentralReceipt)


def publish_receipt(sub: Subscriber, bed: Bed, rule_id: str, alarm_seq: int, station: str = "ward-3",
                    topic: str = "receipt", **extra: Any) -> None:
    body = json.dumps(payloads.receipt(station, rule_id, alarm_seq, T) | extra)
    sub.client.publish(bed.topic(topic), body, qos=1).wait_for_publish(10)


def occurrence(bed: Bed, rule_id: str) -> int:
    return next(a.occurrence_seq for a in bed.engine.alarms.active() if a.rule.id == rule_id)


async def test_receipts_reach_the_rule_loop_only_when_expected(broker: Mosquitto, subscriber: Subscriber) -> None:
    expecting = await Bed(bed_config(broker.port, "bed-r", expect_receipts=True)).start()
    other = await Bed(bed_config(broker.port, "bed-n")).start()
    try:
        await until(lambda: expecting.publisher.subscribed and other.publisher.subscribed, what="subscribed")
        for bed in (expecting, other):
            bed.fault()
            await until(lambda b=bed: "tech.pump.device_fault" in b.active())  # type: ignore[misc]
            publish_receipt(subscriber, bed, "tech.pump.device_fault", occurrence(bed, "tech.pump.device_fault"))
        occ = occurrence(expecting, "tech.pump.device_fault")
        await until(lambda: expecting.engine.state.receipts.get(occ) == {"ward-3"}, what="receipt noted")
        # The other bed did not subscribe: prove it is live after the receipt had time to arrive.
        other.fault(False)
        await subscriber.until(lambda s: [m for m in s.on("/bed-n/events/alarm") if m.payload["transition"] == "cleared"])
        assert other.publisher.receipts == 0 and not other.engine.state.receipts
    finally:
        await expecting.stop()
        await other.stop()


async def test_a_receipt_cannot_acknowledge_or_silence_anything(broker: Mosquitto, subscriber: Subscriber) -> None:
    bed = await Bed(bed_config(broker.port, "bed-a", expect_receipts=True, accept_ack=True,
                               ack_stations=["central-icu"])).start()
    try:
        await until(lambda: bed.publisher.subscribed, what="subscribed")
        bed.fault()
        await until(lambda: "tech.pump.device_fault" in bed.active())
        occ = occurrence(bed, "tech.pump.device_fault")
        # From an authorised acknowledging station: a plain receipt, one dressed as an ack, and
        # a receipt sent to the ack topic.
        publish_receipt(subscriber, bed, "tech.pump.device_fault", occ, station="central-icu")
        publish_receipt(subscriber, bed, "tech.pump.device_fault", occ, station="central-icu", user="rn-1")
        publish_receipt(subscriber, bed, "tech.pump.device_fault", occ, station="central-icu", topic="cmd/ack")
        await until(lambda: bed.publisher.receipts == 1 and len(refusals(bed)) == 2, what="receipt and refusals")
        assert bed.engine.state.receipts[occ] == {"central-icu"}
        assert inactivation(bed, "tech.pump.device_fault") == "enabled"
        assert bed.engine.snapshot()["audio"]["sounding"] == "high"
        reasons = sorted(str(r["reason"]) for r in refusals(bed))
        assert reasons[0].startswith("invalid command") and reasons[1].startswith("invalid receipt")
        # Still sounding: the only acknowledgement is an acknowledgement.
        ack(subscriber, "bed-a", "central-icu", "tech.pump.device_fault")
        await until(lambda: inactivation(bed, "tech.pump.device_fault") == "acknowledged", what="a real ack")
        transitions = [e.data["transition"] for e in bed.events() if e.kind.value == "alarm"
                       and e.data["rule_id"] == "tech.pump.device_fault"]
        assert transitions == ["raised", "acknowledged"]
    finally:
        await bed.stop()
