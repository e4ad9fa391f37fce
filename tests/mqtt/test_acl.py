"""The shipped Mosquitto ACL (config/mosquitto-acl.example) enforces who may publish what."""

from __future__ import annotations

from pathlib import Path

from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed, bed_config
from tests.mqtt.support import Subscriber, until
from tests.mqtt.test_security import ack, inactivation, refusals

ACL = Path(__file__).resolve().parents[2] / "config" / "mosquitto-acl.example"
USERS = {"bed-1": "pw-bed", "bed-2": "pw-bed2", "central-icu": "pw-icu", "central-view": "pw-view"}


async def test_only_listed_stations_can_reach_cmd_ack(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "b", users=USERS, acl=ACL.read_text()).start()
    view = Subscriber(broker.port, f"{ROOT}/#", username="central-view", password="pw-view")
    icu = Subscriber(broker.port, f"{ROOT}/+/status", username="central-icu", password="pw-icu")
    bed = await Bed(bed_config(broker.port, "bed-1", username="bed-1", password="pw-bed", accept_ack=True,
                               ack_stations=["central-icu", "central-view"])).start()
    try:
        bed.fault()
        await view.until(lambda s: s.on("/bed-1/alarms") and s.on("/bed-1/alarms")[-1].payload["alarms"],
                         what="a bed may publish its own topics")
        # A read-only display's command is dropped by the broker, even if a bed would accept it.
        ack(view, "bed-1", "central-view", "tech.pump.device_fault")
        # A display cannot forge a bed's status.
        view.client.publish(f"{ROOT}/bed-1/status", b'{"status":"offline"}', qos=1).wait_for_publish(10)
        ack(icu, "bed-1", "central-icu", "tech.pump.device_fault")
        await until(lambda: inactivation(bed, "tech.pump.device_fault") == "acknowledged", what="listed station's ack")
        actors = [e.data["actor"] for e in bed.events() if e.kind.value == "alarm"
                  and e.data["transition"] == "acknowledged"]
        assert actors == ["central:central-icu:nurse-7"]  # the display's ack never reached the bed
        assert not refusals(bed)
        assert all(m.payload.get("status") == "online" for m in view.on("/bed-1/status"))
    finally:
        await bed.stop()
        view.close()
        icu.close()
        broker.stop()


async def test_displays_may_send_receipts_and_a_bed_cannot_forge_another_beds(tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime

    from monitord.mqtt import payloads

    broker = Mosquitto(tmp_path / "b", users=USERS, acl=ACL.read_text()).start()
    view = Subscriber(broker.port, f"{ROOT}/#", username="central-view", password="pw-view")
    forger = Subscriber(broker.port, f"{ROOT}/bed-2/status", username="bed-2", password="pw-bed2")
    bed = await Bed(bed_config(broker.port, "bed-1", username="bed-1", password="pw-bed", expect_receipts=True)).start()
    try:
        await until(lambda: bed.publisher.subscribed, what="bed subscribed")
        bed.fault()
        await until(lambda: "tech.pump.device_fault" in bed.active())
        occ = next(a.occurrence_seq for a in bed.engine.alarms.active())
        when = datetime(2026, 1, 1, tzinfo=UTC)
        for client, station in ((forger, "bed-2"), (view, "central-view")):
            body = json.dumps(payloads.receipt(station, "tech.pump.device_fault", occ, when))
            client.client.publish(f"{ROOT}/bed-1/receipt", body, qos=1).wait_for_publish(10)
        await until(lambda: bed.engine.state.receipts.get(occ), what="the display's receipt")
        await view.until(lambda s: s.on("/bed-1/events/alarm"), what="bed-1's alarm event published")
        assert bed.engine.state.receipts[occ] == {"central-view"}  # the other bed's was dropped by the broker
        assert bed.publisher.receipts == 1
    finally:
        await bed.stop()
        view.close()
        forger.close()
        broker.stop()
