"""Simulator -> pty -> driver -> rule loop -> engine: what the driver fixes look like as alarms.

- a stall in the reply to RAT is the HIGH occlusion alarm while the pump answers (no "pump lost");
- an ambient pressure in another unit is a technical alarm and never a wrong EtCO2;
- a monitor back from a silence raises no per-parameter "missing" alarm, not even for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitord import readings as r
from monitord.clock import SystemClock
from monitord.config import load_config
from monitord.drivers import build_drivers
from monitord.drivers.base import Driver
from monitord.engine import Engine
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop
from monitord.simulators.datex_sim import DatexSimulator, Fault
from monitord.simulators.pump_endpoint import PtyEndpoint
from monitord.simulators.pump_model import PumpModel
from monitord.simulators.pump_ne500_sim import Ne500PumpSim

WAIT_S = 30.0


def patient(t: float) -> dict[r.Vital, float | None]:
    return {r.Vital.HR: 72.0, r.Vital.SPO2: 97.0, r.Vital.PULSE: 71.0, r.Vital.RR: 14.0, r.Vital.ETCO2: 37.0,
            r.Vital.TEMP: 36.8}


@dataclass
class Bed:
    engine: Engine
    loop: RuleLoop
    drivers: list[Driver]
    events: list[Event] = field(default_factory=list)

    def alarms(self, rule: str, transition: str = "raised") -> list[Event]:
        return [e for e in self.events if e.kind is EventKind.ALARM and e.data["rule_id"] == rule
                and e.data["transition"] == transition]

    def links(self, device: str) -> list[str]:
        return [e.data["state"] for e in self.events if e.kind is EventKind.LINK and e.data["device"] == device]

    def vitals(self) -> list[Event]:
        return [e for e in self.events if e.kind is EventKind.VITALS]

    async def wait_for(self, cond: Callable[[], Any], what: str) -> Any:
        loop = asyncio.get_running_loop()
        end = loop.time() + WAIT_S
        while not (got := cond()):
            if loop.time() > end:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)
        return got


@contextlib.asynccontextmanager
async def bed(devices: dict[str, Any], vitals: dict[str, Any] | None = None) -> AsyncIterator[Bed]:
    config = load_config(None, overrides={"devices": devices, "vitals": vitals or {}, "mqtt": {"enabled": False}})
    engine = Engine(config, SystemClock())
    loop = RuleLoop(engine, config.watchdog.tick_s)
    drivers = build_drivers(config.devices, loop.put)
    for d in drivers:
        d.backoff_initial_s = d.backoff_max_s = 0.2
    b = Bed(engine, loop, drivers)
    engine.subscribe(b.events.append)
    tasks = [asyncio.create_task(loop.run()), *(asyncio.create_task(d.run()) for d in drivers)]
    try:
        await b.wait_for(lambda: all("connected" in b.links(d.name) for d in drivers), "links connected")
        yield b
        assert not any(t.done() for t in tasks), "a task ended"
    finally:
        for d in drivers:
            d.stop()
        loop.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_stall_in_reply_to_rat_is_a_high_occlusion_alarm_while_the_pump_answers(tmp_path: Path) -> None:
    model = PumpModel(rate_ml_h=10.0)
    model.start()
    endpoint = PtyEndpoint(tmp_path / "pump")
    sim = Ne500PumpSim(model, endpoint)
    sim_task = asyncio.create_task(sim.run())
    pump = {"driver": "ne500", "serial": {"port": endpoint.url}, "poll_interval_s": 0.2, "timeout_s": 2.0}
    try:
        async with bed({"pump": pump}) as b:
            await b.wait_for(lambda: b.engine.state.pump is not None, "a pump reading")
            sim.alarm_on = "RAT"
            model.raise_alarm(r.DeviceAlarmCode.OCCLUSION)
            raised = await b.wait_for(lambda: b.alarms("tech.pump.occlusion"), "tech.pump.occlusion")
            assert raised[0].data["priority"] == "high"
            stalls = [c for c in sim.commands if c.mnemonic == "RAT"]
            assert stalls, "the stall was reported in reply to RAT"
            await asyncio.sleep(1.0)  # several more polls: still held, the link never lost
            assert b.alarms("tech.pump.occlusion", "cleared") == []
            assert b.links("pump") == ["connected"]
            assert b.alarms("tech.pump_lost") == []
    finally:
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
        endpoint.close()


async def _monitor_bed(sim: DatexSimulator, vitals: dict[str, Any] | None = None) -> contextlib.AbstractAsyncContextManager[Bed]:
    path = await sim.start()
    monitor = {"driver": "datex", "serial": {"port": path}, "poll_interval_s": 1.0, "timeout_s": 2.0}
    return bed({"monitor": monitor}, vitals)


async def _admit(b: Bed) -> None:
    await b.loop.command(r.Admit("BED-TEST-1", 70.0, 45, "nurse"))


async def test_ambient_pressure_in_another_unit_is_a_technical_alarm_not_a_wrong_etco2() -> None:
    sim = DatexSimulator(patient, transport="pty")
    try:
        async with await _monitor_bed(sim) as b:
            await _admit(b)
            await b.wait_for(lambda: b.engine.state.capnograph_seen, "a valid EtCO2")
            sim.ambient_wire_mmhg = 101.3  # 1013 hPa where mmHg belongs: EtCO2 37 would read 4.9
            raised = await b.wait_for(lambda: b.alarms("tech.monitor.implausible"), "tech.monitor.implausible")
            assert raised[0].data["priority"] == "medium"
            (reported,) = [e for e in b.events if e.kind is EventKind.DEVICE_ALARM and "implausible" in e.data["active"]]
            assert "ambient pressure 101.3 mmHg" in reported.data["detail"]
            et = b.engine.state.vitals[r.Vital.ETCO2]
            assert et.value is None and et.quality is r.Quality.INVALID
    finally:
        await sim.stop()
    etco2 = [e.data["values"]["etco2"] for e in b.vitals() if "etco2" in e.data["values"]]
    assert None in etco2
    assert all(v is None or v > 30 for v in etco2)  # the 4.9 mmHg never reached the engine
    assert not [e for e in b.events if e.kind is EventKind.ALARM and e.data["rule_id"].startswith("vital.etco2")]


async def test_a_monitor_back_from_silence_raises_no_missing_parameter_alarm() -> None:
    sim = DatexSimulator(patient, transport="pty")
    # missing after 3 s; monitor timeout 2 s; the cable is out for 6 s, longer than both
    try:
        async with await _monitor_bed(sim, {"source_missing_s": {"spo2": 3.0, "etco2": 3.0}}) as b:
            await _admit(b)
            await b.wait_for(lambda: b.engine.state.capnograph_seen, "a valid EtCO2")
            sim.inject(Fault.UNPLUG, 6.0)
            sim.flags.co2_zeroing = True  # the first records back split into VALID and QUESTIONABLE
            await b.wait_for(lambda: b.alarms("tech.monitor_lost"), "tech.monitor_lost")
            await b.wait_for(lambda: b.alarms("tech.monitor_lost", "cleared"), "the monitor back")
            n = len(b.vitals())
            await b.wait_for(lambda: len(b.vitals()) >= n + 4, "records after the return")
            sim.flags.co2_zeroing = False
            m = len(b.vitals())
            await b.wait_for(lambda: len(b.vitals()) >= m + 4, "more records")
    finally:
        await sim.stop()
    assert b.alarms("tech.spo2_missing") == [] and b.alarms("tech.etco2_missing") == []
    assert len(b.alarms("tech.monitor_lost")) == 1  # one technical alarm for the device
