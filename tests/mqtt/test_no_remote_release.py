"""Nothing over MQTT releases the pump stop interlock: a release attempt on any command topic (or
dressed as a receipt) is refused and audited, and the interlock holds, with or without cmd/ack."""

from __future__ import annotations

import json

import pytest

from monitord.events import EventKind
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import INTERLOCK, Bed, bed_config
from tests.mqtt.support import Subscriber, until
from tests.mqtt.test_security import ack, inactivation, refusals

RELEASE = {"v": 1, "station": "central-icu", "user": "rn-204", "rule_id": "tech.pump.device_fault",
           "action": "interlock_release", "command": "interlock_release", "actor": "rn-204",
           "reason": "patient breathing again"}
# The one command topic there is, and the ones a release might be looked for under.
TOPICS = ["cmd/ack", "cmd/interlock_release", "cmd/interlock/release", "cmd/release", "cmd/interlock",
          "cmd/InterlockRelease", "cmd/release_interlock", "cmd/resume", "cmd/start"]


def interlock_phase(bed: Bed) -> str:
    return str(bed.engine.snapshot()["interlock"]["phase"])


@pytest.mark.parametrize("accept_ack", [True, False])
async def test_a_release_over_mqtt_is_refused_audited_and_the_interlock_holds(
        broker: Mosquitto, subscriber: Subscriber, accept_ack: bool) -> None:
    bed = await Bed(bed_config(broker.port, "bed-a", more=INTERLOCK, accept_ack=accept_ack,
                               ack_stations=["central-icu"], expect_receipts=True)).start()
    bed.obey_stop_commands()
    try:
        await until(lambda: bed.publisher.subscribed, what="subscribed")
        await bed.start_course()
        bed.fault()
        await until(lambda: interlock_phase(bed) == "holding", what="the interlock holds")
        bed.fault(False)  # the trigger is over: only a release at the bedside may end the hold now
        await until(lambda: "tech.pump.device_fault" not in bed.active(), what="trigger cleared")

        for leaf in TOPICS:
            subscriber.client.publish(bed.topic(leaf), json.dumps(RELEASE), qos=1).wait_for_publish(10)
        subscriber.client.publish(bed.topic("receipt"), json.dumps(RELEASE), qos=1).wait_for_publish(10)
        await until(lambda: len(refusals(bed)) == len(TOPICS) + 1, what="every attempt refused and audited")

        audited = {str(r["topic"]).rsplit("bed-a/", 1)[1]: str(r["reason"]) for r in refusals(bed)}
        assert set(audited) == {*TOPICS, "receipt"}
        assert audited["cmd/ack"].startswith("invalid command" if accept_ack else "acknowledgement from central")
        assert audited["receipt"].startswith("invalid receipt")
        for leaf in TOPICS[1:]:
            assert "release the interlock" in audited[leaf]
        assert all(r["station"] == "central-icu" and r["user"] == "rn-204" for r in refusals(bed))
        await bed.settled()
        assert interlock_phase(bed) == "holding"
        steps = [e.data["step"] for e in bed.events() if e.kind is EventKind.INTERLOCK]
        assert "released" not in steps and steps[-1] == "confirmed"
    finally:
        await bed.stop()


async def test_acknowledging_the_trigger_alarm_from_a_station_does_not_release(
        broker: Mosquitto, subscriber: Subscriber) -> None:
    bed = await Bed(bed_config(broker.port, "bed-a", more=INTERLOCK, accept_ack=True,
                               ack_stations=["central-icu"])).start()
    bed.obey_stop_commands()
    try:
        await until(lambda: bed.publisher.subscribed, what="subscribed")
        await bed.start_course()
        bed.fault()
        await until(lambda: interlock_phase(bed) == "holding", what="the interlock holds")
        ack(subscriber, "bed-a", "central-icu", "tech.pump.device_fault")
        await until(lambda: inactivation(bed, "tech.pump.device_fault") == "acknowledged", what="acknowledged")
        bed.fault(False)
        await until(lambda: "tech.pump.device_fault" not in bed.active(), what="trigger cleared")
        await bed.settled()
        assert interlock_phase(bed) == "holding"
        published = await subscriber.until(lambda s: s.on("/bed-a/events/interlock")
                                           if len(s.on("/bed-a/events/interlock")) >= 4 else None)
        assert "released" not in [m.payload["step"] for m in published]
    finally:
        await bed.stop()
