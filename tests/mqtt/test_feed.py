"""What a central station receives: birth, retained state and alarms, readings, alarm events."""

from __future__ import annotations

from monitord.mqtt import schemas
from monitord.readings import Quality, Vital, VitalsReading
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed
from tests.mqtt.support import Subscriber, until

SCHEMA_OF_LEAF = {
    "status": "status",
    "state": "state",
    "alarms": "alarms",
    "events/alarm": "alarm-event",
    "events/interlock": "interlock-event",
    "events/observation": "observation-event",
    "vitals": "vitals",
    "infusion": "infusion",
}


def leaf(topic: str) -> str:
    return topic.split("/", 3)[3]


def vitals(**values: float) -> VitalsReading:
    return VitalsReading("monitor", {Vital(k): v for k, v in values.items()}, Quality.VALID)


async def test_late_subscriber_gets_retained_status_state_and_alarms(bed: Bed, broker: Mosquitto) -> None:
    bed.loop.put(vitals(hr=72, spo2=97))
    bed.fault()
    await until(lambda: "tech.pump.device_fault" in bed.active(), what="store alarm raised")
    await until(lambda: bed.publisher.forwarded >= 2, what="events confirmed by the broker")

    late = Subscriber(broker.port, f"{ROOT}/{bed.config.bed.id}/#")
    try:
        await late.until(lambda s: s.on("/state") and s.on("/status") and s.on("/alarms"), what="retained topics")
        status = late.on("/status")[-1]
        assert status.retain and status.payload["status"] == "online"
        state = late.on("/state")[-1].payload
        await late.until(lambda s: s.on("/state")[-1].payload["vitals"].get("hr"), what="state with heart rate")
        state = late.on("/state")[-1].payload
        hr = state["vitals"]["hr"]
        assert hr["value"] == 72 and hr["unit"] == "/min"
        assert hr["mdc"] == {"code": 147842, "refid": "MDC_ECG_HEART_RATE"}
        assert state["vitals"]["spo2"]["mdc"]["code"] == 150456
        assert state["care_area"] == "monitored-unit"
        alarms = late.on("/alarms")[-1].payload
        assert [a["rule_id"] for a in alarms["alarms"]] == ["tech.pump.device_fault"]
        assert alarms["alarms"][0]["priority"] == "high"
        # Readings and alarm events are not retained: a late subscriber does not get old ones.
        assert not late.on("/vitals") and not late.on("/events/alarm")
    finally:
        late.close()


async def test_every_published_payload_matches_its_schema(bed: Bed, subscriber: Subscriber) -> None:
    from monitord.readings import (
        Acknowledge,
        Admit,
        ChecklistAnswers,
        PainScore,
        PumpReading,
        PumpState,
        SedationScale,
        SedationScore,
        SetOrder,
        StartInfusion,
    )

    bed.loop.put(vitals(hr=80, pulse=79, sbp=120, dbp=80, map=93, spo2=96, rr=14, etco2=38, temp=36.8))
    await bed.loop.command(Admit("P-001", 70, 45, actor="n1"))
    await bed.loop.command(SetOrder("ketamine", 1.0, 10.0, actor="n1", planned_duration_min=240))
    await bed.loop.command(ChecklistAnswers({c.id: c.kind == "prompt" for c in bed.engine.config.checklist}, "n1"))
    await bed.loop.command(StartInfusion(actor="n1"))
    bed.loop.put(PumpReading("pump", PumpState.RUNNING, rate_ml_h=10.0, volume_infused_ml=1.0, drug="ketamine",
                             concentration_mg_ml=1.0))
    await bed.loop.command(SedationScore(SedationScale.RASS, 0, actor="n1"))
    await bed.loop.command(PainScore(3, actor="n1"))
    bed.fault()
    await until(lambda: "tech.pump.device_fault" in bed.active())
    await bed.loop.command(Acknowledge("tech.pump.device_fault", actor="n1"))
    bed.fault(False)
    await subscriber.until(lambda s: len(s.on("/events/alarm")) >= 3 and s.on("/infusion") and s.on("/vitals")
                           and len(s.on("/events/observation")) == 2, what="alarm events, observations and readings")
    await subscriber.until(lambda s: any(m.payload["patient_id"] == "P-001" for m in s.on("/state")),
                           what="state with the patient")
    seen: dict[str, int] = {}
    for m in list(subscriber.messages):
        kind = SCHEMA_OF_LEAF[leaf(m.topic)]
        problems = schemas.errors(kind, m.payload)
        assert not problems, (m.topic, problems, m.payload)
        seen[kind] = seen.get(kind, 0) + 1
    assert set(seen) == set(SCHEMA_OF_LEAF.values()) - {"interlock-event"}  # the interlock is off here
    store_alarm = [m.payload for m in subscriber.on("/events/alarm") if m.payload["rule_id"] == "tech.pump.device_fault"]
    assert [p["transition"] for p in store_alarm] == ["raised", "acknowledged", "cleared"]
    ack = store_alarm[1]
    assert ack["actor"] == "n1" and ack["phase"] == "update"
    infusion = subscriber.on("/infusion")[-1].payload
    assert infusion["dose_rate"]["unit"] == "mg/kg/h"
    assert abs(infusion["dose_rate"]["value"] - 10.0 / 70) < 1e-3

