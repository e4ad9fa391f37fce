"""IntelliVue simulator -> real pty -> IntelliVueMonitorDriver (-> rule loop -> engine -> MQTT payloads):
association, polling, release, re-association after an unplug or a monitor restart, device alarms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from monitord import readings as r
from monitord.clock import SystemClock
from monitord.config import load_config
from monitord.drivers import build_drivers
from monitord.drivers import intellivue as iv
from monitord.drivers.base import Driver
from monitord.drivers.monitor_intellivue import IntelliVueMonitorDriver
from monitord.engine import Engine
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop
from monitord.mqtt import payloads, schemas
from monitord.simulators.intellivue_sim import Fault, IntelliVueSimulator

WAIT_S = 30.0  # generous: real I/O on a loaded box; every wait ends on an event
VALUES: dict[r.Vital, float | None] = {r.Vital.HR: 72.0, r.Vital.SPO2: 97.0, r.Vital.PULSE: 71.0, r.Vital.RR: 14.0,
                                       r.Vital.ETCO2: 38.0, r.Vital.TEMP: 36.8}


async def wait_until(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (got := cond()):
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return got


@dataclass
class Rig:
    sim: IntelliVueSimulator
    driver: IntelliVueMonitorDriver
    got: list[r.DeviceInput]
    task: asyncio.Task[None]

    def vitals(self) -> list[r.VitalsReading]:
        return [g for g in self.got if isinstance(g, r.VitalsReading)]

    def links(self) -> list[r.LinkState]:
        return [g.state for g in self.got if isinstance(g, r.LinkStatus)]

    def alarms(self) -> list[r.DeviceAlarm]:
        return [g for g in self.got if isinstance(g, r.DeviceAlarm)]

    def count(self, vital: r.Vital) -> int:
        return sum(1 for x in self.vitals() if x.values.get(vital) is not None)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = IntelliVueSimulator(lambda t: VALUES, seed=3)
    path = await sim.start()
    got: list[r.DeviceInput] = []
    driver = IntelliVueMonitorDriver("monitor", got.append, port=path, poll_interval_s=1.0, timeout_s=3.0)
    driver.backoff_initial_s = driver.backoff_max_s = 0.2
    task = asyncio.create_task(driver.run())
    try:
        yield Rig(sim, driver, got, task)
    finally:
        driver.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, WAIT_S)
        await sim.stop()


async def test_association_polling_and_release(rig: Rig) -> None:
    rig.sim.measure_nibp(118, 76, 90)
    await wait_until(lambda: rig.count(r.Vital.SBP) >= 2 and rig.count(r.Vital.HR) >= 3, "vitals")
    last = rig.vitals()[-1]
    assert last.values == {r.Vital.HR: 72.0, r.Vital.SPO2: 97.0, r.Vital.PULSE: 71.0, r.Vital.SBP: 118.0,
                           r.Vital.DBP: 76.0, r.Vital.MAP: 90.0, r.Vital.RR: 14.0, r.Vital.ETCO2: 38.0,
                           r.Vital.TEMP: 36.8}
    assert last.quality is r.Quality.VALID and last.device_time is not None and last.nibp_time is not None
    first_nibp = last.nibp_time
    rig.sim.measure_nibp(132, 84, 100)  # the next cuff cycle, with its own time stamp
    await wait_until(lambda: rig.vitals()[-1].values.get(r.Vital.SBP) == 132.0, "the new NIBP")
    assert rig.vitals()[-1].nibp_time >= first_nibp  # type: ignore[operator]
    # one association, the MDS create event answered, polls for numerics and alarms answered
    assert (rig.sim.associations, rig.sim.mds_results, rig.sim.polls_ignored) == (1, 1, 0)
    assert rig.sim.numeric_results >= 3 and rig.sim.alarm_results >= 3
    assert rig.links() == [r.LinkState.CONNECTED] and rig.driver.protocol_errors == 0
    assert rig.alarms()[0].active == frozenset()  # the first alarm poll's (empty) set
    rig.driver.stop()
    await asyncio.wait_for(rig.task, WAIT_S)
    assert rig.sim.releases == 1 and rig.driver.releases_confirmed == 1  # released on shutdown
    assert rig.sim.state.value == "idle"


async def test_unplugged_port_comes_back_and_the_driver_reassociates_by_itself(rig: Rig) -> None:
    await wait_until(lambda: rig.count(r.Vital.HR) >= 2, "vitals")
    rig.sim.inject(Fault.UNPLUG, 1.5)
    await wait_until(lambda: r.LinkState.RECONNECTING in rig.links(), "the lost port noticed")
    n = rig.count(r.Vital.HR)
    await wait_until(lambda: rig.links()[-1] is r.LinkState.CONNECTED and rig.count(r.Vital.HR) >= n + 2,
                     "vitals after the replug")
    assert rig.sim.associations >= 2 and rig.sim.mds_results >= 2
    assert rig.sim.polls_ignored == 0  # never polled before the association was complete


async def test_a_restarted_monitor_is_associated_again_without_a_port_loss(rig: Rig) -> None:
    await wait_until(lambda: rig.count(r.Vital.HR) >= 2, "vitals")
    rig.sim.inject(Fault.POWER_CYCLE, 2.0)  # silent, and the association forgotten
    await wait_until(lambda: r.LinkState.SILENT in rig.links(), "the silence noticed")
    n = rig.count(r.Vital.HR)
    await wait_until(lambda: rig.links()[-1] is r.LinkState.CONNECTED and rig.count(r.Vital.HR) >= n + 2,
                     "vitals after the restart")
    assert rig.sim.associations >= 2 and r.LinkState.RECONNECTING not in rig.links()
    assert rig.driver.assoc_requests >= 2


async def test_monitor_alerts_become_device_alarms_and_clear(rig: Rig) -> None:
    await wait_until(lambda: len(rig.alarms()) >= 1, "the first alarm poll")
    cannot = rig.sim.show_alarms({r.DeviceAlarmCode.APNOEA, r.DeviceAlarmCode.LEADS_OFF,
                                  r.DeviceAlarmCode.PROBE_OFF, r.DeviceAlarmCode.LOW_BATTERY})
    assert cannot == {r.DeviceAlarmCode.LOW_BATTERY}
    await wait_until(lambda: rig.alarms()[-1].active == {r.DeviceAlarmCode.APNOEA, r.DeviceAlarmCode.LEADS_OFF,
                                                         r.DeviceAlarmCode.PROBE_OFF}, "the three alarms")
    assert "apnoea" in rig.alarms()[-1].detail and "ECG lead off" in rig.alarms()[-1].detail
    await wait_until(lambda: rig.vitals()[-1].quality is r.Quality.INVALID or any(
        x.values.get(r.Vital.HR, 0) is None for x in rig.vitals()[-2:]), "HR and SpO2 invalid")
    assert rig.links()[-1] is r.LinkState.CONNECTED  # a device alarm, not a lost link
    rig.sim.show_alarms([])
    await wait_until(lambda: rig.alarms()[-1].active == frozenset(), "the alarms cleared")


async def test_a_unit_the_driver_does_not_know_withholds_the_value_and_is_implausible(rig: Rig) -> None:
    await wait_until(lambda: rig.count(r.Vital.ETCO2) >= 1, "EtCO2")
    rig.sim.units[r.Vital.ETCO2] = iv.NOM_DIM_PERCENT  # EtCO2 in % of an ambient pressure not sent
    await wait_until(lambda: bool(rig.alarms()) and r.DeviceAlarmCode.IMPLAUSIBLE in rig.alarms()[-1].active,
                     "implausible")
    n = len(rig.vitals())
    await wait_until(lambda: len(rig.vitals()) >= n + 2, "more results")
    assert all(x.values.get(r.Vital.ETCO2) is None for x in rig.vitals()[n:] if r.Vital.ETCO2 in x.values)
    rig.sim.units[r.Vital.ETCO2] = iv.NOM_DIM_KILO_PASCAL  # kPa is converted
    await wait_until(lambda: rig.vitals()[-1].values.get(r.Vital.ETCO2) == pytest.approx(38.0, abs=0.1), "kPa")
    await wait_until(lambda: rig.alarms()[-1].active == frozenset(), "implausible cleared")


async def test_garbled_frames_are_counted_and_polling_carries_on(rig: Rig) -> None:
    await wait_until(lambda: rig.count(r.Vital.HR) >= 1, "vitals")
    rig.sim.inject(Fault.GARBLE, 2.5)
    await wait_until(lambda: rig.driver.protocol_errors >= 2, "errors counted")
    await wait_until(lambda: not rig.sim.active_faults(), "the fault over")
    n = rig.count(r.Vital.HR)
    await wait_until(lambda: rig.count(r.Vital.HR) >= n + 2, "vitals after the garble")
    assert not rig.task.done()


# --- a bed: engine, rule loop and the MQTT payloads ------------------------------------------


@dataclass
class Bed:
    engine: Engine
    loop: RuleLoop
    drivers: list[Driver]
    events: list[Event] = field(default_factory=list)

    def alarms(self, rule: str) -> list[Event]:
        return [e for e in self.events if e.kind is EventKind.ALARM and e.data["rule_id"] == rule
                and e.data["transition"] == "raised"]


@contextlib.asynccontextmanager
async def bed(path: str) -> AsyncIterator[Bed]:
    monitor = {"driver": "intellivue", "serial": {"port": path}, "poll_interval_s": 1.0, "timeout_s": 3.0}
    config = load_config(None, overrides={"devices": {"monitor": monitor}, "mqtt": {"enabled": False}})
    assert config.devices.monitor is not None and config.devices.monitor.serial.baudrate == 115200
    engine = Engine(config, SystemClock())
    loop = RuleLoop(engine, config.watchdog.tick_s)
    drivers = build_drivers(config.devices, loop.put)
    assert [type(d) for d in drivers] == [IntelliVueMonitorDriver]
    b = Bed(engine, loop, drivers)
    engine.subscribe(b.events.append)
    tasks = [asyncio.create_task(loop.run()), *(asyncio.create_task(d.run()) for d in drivers)]
    try:
        yield b
    finally:
        for d in drivers:
            d.stop()
        loop.stop()
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_numerics_reach_the_engine_and_the_mqtt_feed_with_their_mdc_codes() -> None:
    sim = IntelliVueSimulator(lambda t: VALUES)
    path = await sim.start()
    sim.measure_nibp(118, 76, 90)
    try:
        async with bed(path) as b:
            vit = lambda: [e for e in b.events if e.kind is EventKind.VITALS and "sbp" in e.data["values"]]  # noqa: E731
            (event, *_) = await wait_until(vit, "a vitals event with NIBP")
            assert b.engine.state.vitals[r.Vital.HR].value == 72.0
            assert b.engine.state.vitals[r.Vital.SBP].value == 118.0
    finally:
        await sim.stop()
    payload = payloads.vitals_event(event)
    assert schemas.errors("vitals", payload) == []
    codes = {name: v["mdc"]["code"] for name, v in payload["values"].items()}
    # where Philips' nomenclature is the IEEE 11073 one, the code is partition 2 (SCADA) and the physio id
    for name, physio in (("hr", iv.NOM_ECG_CARD_BEAT_RATE), ("spo2", iv.NOM_PULS_OXIM_SAT_O2),
                         ("rr", iv.NOM_RESP_RATE), ("temp", iv.NOM_TEMP)):
        assert codes[name] == (iv.NOM_PART_SCADA << 16) + physio
    # NIBP is published with the cuff terms, the pleth pulse with MDC_PULS_OXIM_PULS_RATE
    assert (codes["sbp"], codes["dbp"], codes["map"], codes["pulse"]) == (150301, 150302, 150303, 149530)
    assert payload["values"]["hr"]["value"] == 72.0 and payload["nibp_time"] is not None


async def test_an_apnoea_flagged_by_the_monitor_is_the_high_apnoea_alarm() -> None:
    sim = IntelliVueSimulator(lambda t: VALUES)
    path = await sim.start()
    try:
        async with bed(path) as b:
            await b.loop.command(r.Admit("BED-IV-1", 70.0, 45, "nurse"))
            await wait_until(lambda: r.Vital.RR in b.engine.state.vitals, "vitals in the engine")
            assert b.alarms("resp.apnoea") == []
            sim.show_alarms({r.DeviceAlarmCode.APNOEA})
            raised = await wait_until(lambda: b.alarms("resp.apnoea"), "resp.apnoea")
            assert raised[0].data["priority"] == "high"
            assert b.alarms("tech.monitor.apnoea") == []  # one cause, one alarm
    finally:
        await sim.stop()


async def test_the_scenario_runner_plays_a_course_and_its_cable_fault_on_the_intellivue() -> None:
    from pathlib import Path

    from monitord.scenario import load_scenario
    from monitord.simulators.intellivue_sim import IntelliVueScenarioRunner

    scenario = load_scenario(Path(__file__).parents[1] / "e2e" / "scenarios" / "monitor-unplugged.toml")
    runner = IntelliVueScenarioRunner(scenario, pump=None, pump_port=None, monitor_port="pty")
    ports = await runner.open()
    assert ports.describe() == [f"monitor (Philips IntelliVue, 115200 8N1): {ports.monitor}"]
    got: list[r.DeviceInput] = []
    assert ports.monitor is not None
    driver = IntelliVueMonitorDriver("monitor", got.append, port=ports.monitor, poll_interval_s=1.0, timeout_s=3.0)
    driver.backoff_initial_s = driver.backoff_max_s = 0.2
    task = asyncio.create_task(driver.run())
    try:
        await wait_until(lambda: any(isinstance(g, r.VitalsReading) for g in got), "the first vitals")
        ended = await asyncio.wait_for(runner.play(), scenario.duration_s + WAIT_S)
        assert ended and runner.faults_injected == [(pytest.approx(2.0, abs=0.5), "monitor", "unplug")]
        links = [g.state for g in got if isinstance(g, r.LinkStatus)]
        await wait_until(lambda: [g.state for g in got if isinstance(g, r.LinkStatus)][-1] is r.LinkState.CONNECTED,
                         "connected after the cable fault")
        assert r.LinkState.RECONNECTING in links or r.LinkState.SILENT in links
        sim = runner.monitor
        assert sim is not None and sim.associations >= 2  # type: ignore[attr-defined]
        hr = [g.values[r.Vital.HR] for g in got if isinstance(g, r.VitalsReading) and r.Vital.HR in g.values]
        assert hr and all(v is None or 30 <= v <= 200 for v in hr)  # the course's values, not noise
    finally:
        driver.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, WAIT_S)
        await runner.close()
