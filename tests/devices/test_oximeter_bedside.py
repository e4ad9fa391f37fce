"""Oximeter and monitor simulators -> ptys -> drivers -> rule loop -> engine: SpO2 from two
sources, the preferred one unplugged mid-course and plugged back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitord import readings as r
from monitord.clock import SystemClock
from monitord.config import load_config
from monitord.drivers import build_drivers
from monitord.engine import Engine
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop
from monitord.simulators.datex_sim import DatexSimulator
from monitord.simulators.oximeter_sim import Fault, OximeterSimulator
from monitord.simulators.pump_endpoint import PtyEndpoint

WAIT_S = 30.0


async def wait_for(cond: Callable[[], Any], what: str) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT_S
    while not (got := cond()):
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return got


def monitor_values(t: float) -> dict[r.Vital, float | None]:
    return {r.Vital.HR: 72.0, r.Vital.SPO2: 94.0, r.Vital.PULSE: 73.0, r.Vital.RR: 14.0, r.Vital.ETCO2: 37.0}


async def test_spo2_switches_to_the_monitor_visibly_when_the_oximeter_is_unplugged(tmp_path: Path) -> None:
    monitor = DatexSimulator(monitor_values, transport="pty")
    endpoint = PtyEndpoint(tmp_path / "oximeter")
    oximeter = OximeterSimulator(lambda t: {r.Vital.SPO2: 98.0, r.Vital.PULSE: 70.0}, endpoint, interval_s=0.25)
    devices = {
        "monitor": {"driver": "datex", "serial": {"port": await monitor.start()}, "poll_interval_s": 1.0,
                    "timeout_s": 3.0},
        "oximeter": {"driver": "masimo", "serial": {"port": endpoint.url}, "poll_interval_s": 0.25, "timeout_s": 1.5},
        "source_hold_s": 1.0,
    }
    config = load_config(overrides={"devices": devices, "mqtt": {"enabled": False}})
    engine = Engine(config, SystemClock())
    events: list[Event] = []
    engine.subscribe(events.append)
    loop = RuleLoop(engine, config.watchdog.tick_s)
    drivers = build_drivers(config.devices, loop.put)
    for d in drivers:
        d.backoff_initial_s = d.backoff_max_s = 0.2
    tasks = [asyncio.create_task(loop.run()), asyncio.create_task(oximeter.run()),
             *(asyncio.create_task(d.run()) for d in drivers)]

    def spo2() -> tuple[Any, Any]:
        v = engine.snapshot()["vitals"].get("spo2") or {}
        return v.get("value"), v.get("source")

    def switches() -> list[dict[str, Any]]:
        return [e.data for e in events if e.kind is EventKind.SYSTEM and e.data["action"] == "vital_source"
                and e.data["vital"] == "spo2"]

    def raised(rule: str) -> list[Event]:
        return [e for e in events if e.kind is EventKind.ALARM and e.data["rule_id"] == rule]

    try:
        await loop.command(r.Admit("BED-OX-1", 70.0, 45, "nurse"))
        await wait_for(lambda: spo2() == (98.0, "oximeter") and engine.state.capnograph_seen, "SpO2 from the oximeter")
        k = len(switches())  # the monitor's SpO2 may have come first, then the oximeter's
        oximeter.inject(Fault.UNPLUG, 4.0)
        await wait_for(lambda: len(switches()) > k, "the switch")
        assert spo2() == (94.0, "monitor")
        assert switches()[k]["previous"] == "oximeter" and "oximeter link" in switches()[k]["reason"]
        await wait_for(lambda: raised("tech.oximeter_lost"), "the oximeter's technical alarm")
        n = len([e for e in events if e.kind is EventKind.VITALS and e.data["device"] == "monitor"])
        await wait_for(lambda: len([e for e in events if e.kind is EventKind.VITALS
                                    and e.data["device"] == "monitor"]) >= n + 2, "more monitor records")
        assert spo2() == (94.0, "monitor")  # the value continues from the monitor
        await wait_for(lambda: len(switches()) >= k + 2, "SpO2 back from the oximeter")
        assert switches()[k + 1]["source"] == "oximeter"
        await wait_for(lambda: spo2() == (98.0, "oximeter"), "oximeter value")
        await wait_for(lambda: [e.data["transition"] for e in raised("tech.oximeter_lost")] == ["raised", "cleared"],
                       "the technical alarm cleared")
    finally:
        for d in drivers:
            d.stop()
        loop.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await monitor.stop()
        endpoint.close()
    assert not raised("tech.spo2_missing") and not raised("tech.monitor_lost")
    assert not [e for e in events if e.kind is EventKind.ALARM and e.data["rule_id"].startswith("vital.spo2")]
