"""Simulated Masimo oximeter -> real pty -> MasimoOximeterDriver: every byte crosses a real device."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitord.config import OximeterDevice
from monitord.drivers.oximeter_masimo import MasimoOximeterDriver, build
from monitord.readings import (
    DeviceAlarm,
    DeviceAlarmCode,
    DeviceInput,
    LinkState,
    LinkStatus,
    Quality,
    Vital,
    VitalsReading,
)
from monitord.simulators.oximeter_sim import Fault, OximeterSimulator
from monitord.simulators.pump_endpoint import PtyEndpoint

WAIT_S = 30.0  # generous: real I/O on a loaded CI box


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Rig:
    sim: OximeterSimulator
    driver: MasimoOximeterDriver
    got: list[DeviceInput]

    def vitals(self) -> list[VitalsReading]:
        return [g for g in self.got if isinstance(g, VitalsReading)]

    def links(self) -> list[LinkState]:
        return [g.state for g in self.got if isinstance(g, LinkStatus)]

    def alarms(self) -> list[DeviceAlarm]:
        return [g for g in self.got if isinstance(g, DeviceAlarm)]

    def valid_spo2(self) -> list[float]:
        return [v for r in self.vitals() if r.quality is not Quality.INVALID
                and (v := r.values.get(Vital.SPO2)) is not None]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    endpoint = PtyEndpoint(tmp_path / "oximeter")
    sim = OximeterSimulator(lambda t: {Vital.SPO2: 96.0, Vital.PULSE: 64.0}, endpoint, interval_s=0.2)
    got: list[DeviceInput] = []
    cfg = OximeterDevice(driver="masimo", serial={"port": endpoint.url}, poll_interval_s=0.2, timeout_s=1.0)
    driver = build(cfg, got.append)
    driver.backoff_initial_s = driver.backoff_max_s = 0.2
    tasks = [asyncio.create_task(sim.run()), asyncio.create_task(driver.run())]
    try:
        yield Rig(sim, driver, got)
        assert not any(t.done() for t in tasks), "a task ended"
    finally:
        driver.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        endpoint.close()


async def test_values_arrive_at_the_line_rate_with_the_link_connected(rig: Rig) -> None:
    await wait_until(lambda: len(rig.valid_spo2()) >= 5, "five lines")
    assert set(rig.valid_spo2()) == {96.0}
    assert {r.values[Vital.PULSE] for r in rig.vitals()} == {64.0}
    assert rig.links() == [LinkState.CONNECTED]
    assert rig.alarms()[0].active == frozenset()  # the first line's alarm set, even if empty
    assert rig.driver.protocol_errors == 0
    assert rig.driver.last is not None and rig.driver.last.pi == 3.6


async def test_sensor_off_withholds_the_values_and_raises_probe_off_then_clears(rig: Rig) -> None:
    await wait_until(lambda: len(rig.valid_spo2()) >= 2, "values")
    rig.sim.probe_off()
    await wait_until(lambda: any(DeviceAlarmCode.PROBE_OFF in a.active for a in rig.alarms()), "probe off")
    off = [a for a in rig.alarms() if a.active][0]
    assert "sensor off patient" in off.detail
    n = len(rig.vitals())
    await wait_until(lambda: len(rig.vitals()) >= n + 2, "lines while off")
    assert all(r.values[Vital.SPO2] is None and r.quality is Quality.INVALID for r in rig.vitals()[n:])
    rig.sim.probe_off(False)
    await wait_until(lambda: rig.alarms()[-1].active == frozenset() and len(rig.alarms()) >= 3, "alarm cleared")
    await wait_until(lambda: rig.vitals()[-1].values[Vital.SPO2] == 96.0, "values back")
    assert rig.links() == [LinkState.CONNECTED]  # a sensor off is not a lost device


async def test_unplugged_adapter_is_a_lost_link_and_comes_back_by_itself(rig: Rig) -> None:
    await wait_until(lambda: len(rig.valid_spo2()) >= 2, "values")
    rig.sim.inject(Fault.UNPLUG, 1.5)
    await wait_until(lambda: LinkState.RECONNECTING in rig.links(), "link lost")
    n = len(rig.valid_spo2())
    await wait_until(lambda: rig.links()[-1] is LinkState.CONNECTED and len(rig.valid_spo2()) >= n + 3,
                     "reconnected with values")
    lost = [g for g in rig.got if isinstance(g, LinkStatus) and g.state is LinkState.RECONNECTING][0]
    assert "link lost" in lost.detail


async def test_a_cable_out_at_the_oximeter_is_a_silent_link(rig: Rig) -> None:
    await wait_until(lambda: len(rig.valid_spo2()) >= 2, "values")
    rig.sim.inject(Fault.SILENT, 2.5)
    await wait_until(lambda: LinkState.SILENT in rig.links(), "link silent")
    await wait_until(lambda: rig.links()[-1] is LinkState.CONNECTED, "connected again")


async def test_garbled_and_cut_lines_are_counted_and_never_stop_the_driver(rig: Rig) -> None:
    await wait_until(lambda: len(rig.valid_spo2()) >= 2, "values")
    rig.sim.inject(Fault.PARTIAL, 60.0)  # half lines, no line ends: they run together
    await wait_until(lambda: rig.driver.decoder.errors["overflow"] == 1, "cut lines counted")
    n = len(rig.valid_spo2())
    await asyncio.sleep(0.6)
    assert len(rig.valid_spo2()) == n  # nothing read from the pieces
    rig.sim.clear_faults()
    await wait_until(lambda: len(rig.valid_spo2()) > n, "the first whole line read")
    rig.sim.inject(Fault.GARBLE, 60.0)
    errors = rig.driver.protocol_errors
    await wait_until(lambda: rig.driver.protocol_errors > errors, "garbled lines counted")
    rig.sim.clear_faults()
    n = len(rig.valid_spo2())
    await wait_until(lambda: len(rig.valid_spo2()) >= n + 3 and rig.links()[-1] is LinkState.CONNECTED,
                     "clean lines again")
    await rig.sim.send_raw(b"\xff" * 5000)  # a flood without a line end
    n = len(rig.valid_spo2())
    await wait_until(lambda: len(rig.valid_spo2()) >= n + 3, "lines after the flood")
    assert rig.driver.decoder.errors["overflow"] >= 1


async def test_an_unusable_sensor_and_a_low_battery_reach_the_host_as_device_alarms(rig: Rig) -> None:
    await wait_until(lambda: len(rig.valid_spo2()) >= 2, "values")
    assert rig.sim.show_alarms({DeviceAlarmCode.SENSOR_OFF, DeviceAlarmCode.LOW_BATTERY,
                                DeviceAlarmCode.OCCLUSION}) == {DeviceAlarmCode.OCCLUSION}
    await wait_until(lambda: rig.alarms()[-1].active == {DeviceAlarmCode.SENSOR_OFF, DeviceAlarmCode.LOW_BATTERY},
                     "sensor off and low battery")
    assert rig.alarms()[-1].detail == "defective sensor; oximeter battery low"
    assert rig.vitals()[-1].quality is Quality.INVALID


async def test_a_scenario_drives_the_oximeter_on_the_wire(tmp_path: Path) -> None:
    """``follow``: the simulated oximeter shows a scenario's course, its probe off and its faults."""
    from monitord.scenario import Course, parse_scenario
    from monitord.simulators.oximeter_sim import follow

    scenario = parse_scenario({
        "name": "oximeter on the wire", "duration": 60, "oximeter": {"offset": {"spo2": 1}},
        "monitor": {"start": {"spo2": 95, "pulse": 66}},
        "step": [{"at": 2, "oximeter_alarm": {"set": ["probe_off"]}},
                 {"at": 4, "oximeter_alarm": {"clear": ["probe_off"]}},
                 {"at": 6, "fault": {"device": "oximeter", "kind": "unplug", "duration": 3}}],
    })
    course = Course(scenario)
    endpoint = PtyEndpoint(tmp_path / "oximeter")
    sim = OximeterSimulator(lambda t: course.oximeter_at(), endpoint, interval_s=0.1)
    got: list[DeviceInput] = []
    cfg = OximeterDevice(driver="masimo", serial={"port": endpoint.url}, poll_interval_s=0.1, timeout_s=1.0)
    driver = build(cfg, got.append)
    driver.backoff_initial_s = driver.backoff_max_s = 0.1
    rig = Rig(sim, driver, got)
    tasks = [asyncio.create_task(sim.run()), asyncio.create_task(driver.run()),
             asyncio.create_task(follow(sim, course, speed=4.0, step_s=0.02))]
    try:
        await wait_until(lambda: rig.valid_spo2()[-1:] == [96.0], "the course's SpO2 plus the offset")
        assert rig.vitals()[-1].values[Vital.PULSE] == 66.0
        await wait_until(lambda: any(DeviceAlarmCode.PROBE_OFF in a.active for a in rig.alarms()), "probe off")
        await wait_until(lambda: LinkState.RECONNECTING in rig.links(), "the oximeter unplugged")
        await wait_until(lambda: rig.links()[-1] is LinkState.CONNECTED and rig.valid_spo2()[-1:] == [96.0],
                         "back with values")
    finally:
        driver.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        endpoint.close()
