"""What a central station sees when a bed switches the source of a vital: simulated monitor and
oximeter on ptys -> real drivers -> rule loop, engine, store and publisher -> a real mosquitto.
The retained state names the source in use; when it changes the value continues from the other
device, and the switch is recorded as a ``vital_source`` system event."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from monitord.clock import SystemClock
from monitord.drivers import build_drivers
from monitord.events import EventKind
from monitord.readings import Admit, DeviceAlarmCode, Vital
from monitord.simulators.datex_sim import DatexSimulator
from monitord.simulators.oximeter_sim import Fault, OximeterSimulator
from monitord.simulators.pump_endpoint import PtyEndpoint
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import Bed, bed_config
from tests.mqtt.support import Subscriber, until

WAIT_S = 30.0


def monitor_values(t: float) -> dict[Vital, float | None]:
    return {Vital.HR: 72.0, Vital.SPO2: 94.0, Vital.PULSE: 73.0, Vital.RR: 14.0, Vital.ETCO2: 37.0}


def shown(sub: Subscriber, vital: str) -> tuple[Any, Any]:
    """The value and source of ``vital`` in the latest retained state on the feed."""
    states = sub.on("/state")
    v = (states[-1].payload["vitals"].get(vital) or {}) if states else {}
    return v.get("value"), v.get("source")


async def test_the_feed_shows_each_switch_and_the_value_continues_from_the_other_device(
        broker: Mosquitto, subscriber: Subscriber, tmp_path: Path) -> None:
    monitor = DatexSimulator(monitor_values, transport="pty")
    endpoint = PtyEndpoint(tmp_path / "oximeter")
    oximeter = OximeterSimulator(lambda t: {Vital.SPO2: 98.0, Vital.PULSE: 70.0}, endpoint, interval_s=0.25)
    devices = {
        "monitor": {"driver": "datex", "serial": {"port": await monitor.start()}, "poll_interval_s": 1.0,
                    "timeout_s": 3.0},
        "oximeter": {"driver": "masimo", "serial": {"port": endpoint.url}, "poll_interval_s": 0.25, "timeout_s": 1.5},
        "source_hold_s": 1.0,
    }
    bed = await Bed(bed_config(broker.port, more={"devices": devices}), SystemClock()).start()  # type: ignore[arg-type]
    drivers = build_drivers(bed.config.devices, bed.loop.put)
    for d in drivers:
        d.backoff_initial_s = d.backoff_max_s = 0.2
    tasks = [asyncio.create_task(oximeter.run()), *(asyncio.create_task(d.run()) for d in drivers)]

    def switches(vital: str) -> list[dict[str, Any]]:
        return [e.data for e in bed.events()
                if e.kind is EventKind.SYSTEM and e.data["action"] == "vital_source" and e.data["vital"] == vital]

    def alarm_events(rule: str) -> list[str]:
        return [m.payload["transition"] for m in subscriber.on("/events/alarm") if m.payload["rule_id"] == rule]

    async def feed(cond: Any, what: str) -> None:
        await subscriber.until(lambda s: cond(), timeout=WAIT_S, what=what)

    try:
        await bed.loop.command(Admit("BED-SRC-1", 70.0, 45, "nurse"))
        await feed(lambda: shown(subscriber, "spo2") == (98.0, "oximeter") and shown(subscriber, "hr") == (72.0, "monitor"),
                   "SpO2 from the oximeter, HR from the ECG on the feed")
        k = len(switches("spo2"))  # at start the monitor's SpO2 may have come first

        # The preferred SpO2 source unplugged: the feed says SpO2 now comes from the monitor.
        oximeter.inject(Fault.UNPLUG, 4.0)
        await feed(lambda: shown(subscriber, "spo2") == (94.0, "monitor"), "SpO2 from the monitor on the feed")
        await until(lambda: len(switches("spo2")) > k, WAIT_S, "the switch recorded")
        switch = switches("spo2")[k]
        assert (switch["source"], switch["previous"]) == ("monitor", "oximeter")
        assert "oximeter" in switch["message"] and "SpO2 now from monitor" in switch["message"]
        # The value continues: the monitor's readings keep coming and the state stays fresh from it.
        n = len(subscriber.on("/state"))
        await feed(lambda: len(subscriber.on("/state")) >= n + 2, "two more states")
        latest = subscriber.on("/state")[-1].payload["vitals"]["spo2"]
        assert (latest["value"], latest["source"], latest["stale"]) == (94.0, "monitor", False)
        assert any(m.payload["device"] == "monitor" and m.payload["values"].get("spo2", {}).get("value") == 94.0
                   for m in subscriber.on("/vitals"))
        await feed(lambda: "raised" in alarm_events("tech.oximeter_lost"), "the oximeter's technical alarm")

        # Back: after the hold SpO2 comes from the oximeter again, on the feed too.
        await feed(lambda: shown(subscriber, "spo2") == (98.0, "oximeter"), "SpO2 back from the oximeter")
        await until(lambda: len(switches("spo2")) >= k + 2, WAIT_S, "the switch back recorded")
        assert switches("spo2")[k + 1]["source"] == "oximeter"
        await feed(lambda: "cleared" in alarm_events("tech.oximeter_lost"), "the technical alarm cleared")

        # ECG leads off: HR continues from the pulse rate (the oximeter's, first for pulse), visibly.
        monitor.show_alarms({DeviceAlarmCode.LEADS_OFF})
        await feed(lambda: shown(subscriber, "hr") == (70.0, "oximeter:pulse"), "HR from the oximeter's pulse rate")
        await until(lambda: switches("hr"), WAIT_S, "the HR switch recorded")
        assert switches("hr")[0]["message"].startswith("HR now from pulse rate of oximeter, was monitor")
        monitor.show_alarms(set())
        await feed(lambda: shown(subscriber, "hr") == (72.0, "monitor"), "HR from the ECG again")
    finally:
        for d in drivers:
            d.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bed.stop()
        await monitor.stop()
        endpoint.close()
    assert "raised" not in alarm_events("tech.spo2_missing")
    assert not [m for m in subscriber.on("/events/alarm") if m.payload["rule_id"].startswith(("vital.spo2", "vital.hr"))]
