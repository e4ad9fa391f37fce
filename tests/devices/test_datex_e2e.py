"""Simulator -> real pty (or TCP) -> DatexMonitorDriver: every byte crosses a real device."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from drivers.monitor_datex import DatexMonitorDriver, build
from monitord.config import MonitorDevice, SerialPort
from monitord.readings import (
    DeviceAlarm,
    DeviceAlarmCode,
    DeviceInput,
    LinkState,
    LinkStatus,
    Vital,
    VitalsReading,
)
from simulators.datex_sim import DatexSimulator, Fault

WAIT_S = 30.0  # generous: real I/O on a loaded CI box


async def wait_until(cond: Callable[[], bool], timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def patient(t: float) -> dict[Vital, float | None]:
    return {
        Vital.HR: 72.0,
        Vital.SPO2: 97.0,
        Vital.PULSE: 71.0,
        Vital.RR: 14.0,
        Vital.ETCO2: 38.0,
        Vital.TEMP: 36.8,
    }


@dataclass
class Rig:
    sim: DatexSimulator
    driver: DatexMonitorDriver
    got: list[DeviceInput]
    task: asyncio.Task[None]

    def vitals(self) -> list[VitalsReading]:
        return [g for g in self.got if isinstance(g, VitalsReading)]

    def links(self) -> list[LinkState]:
        return [g.state for g in self.got if isinstance(g, LinkStatus)]

    def alarms(self) -> list[DeviceAlarm]:
        return [g for g in self.got if isinstance(g, DeviceAlarm)]

    def count(self, vital: Vital) -> int:
        return sum(1 for r in self.vitals() if r.values.get(vital) is not None)


async def start_rig(transport: str) -> Rig:
    sim = DatexSimulator(patient, transport=transport, seed=7)
    path = await sim.start()
    got: list[DeviceInput] = []
    cfg = MonitorDevice(driver="datex", serial=SerialPort(port=path), poll_interval_s=1.0, timeout_s=1.5)
    driver = build(cfg, got.append)
    driver.backoff_initial_s = driver.backoff_max_s = 0.2
    task = asyncio.create_task(driver.run())
    return Rig(sim, driver, got, task)


@pytest.fixture(params=["pty"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    r = await start_rig(request.param)
    try:
        yield r
    finally:
        r.driver.stop()
        r.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await r.task
        await r.sim.stop()


async def test_continuous_vitals_and_nibp_arrive(rig: Rig) -> None:
    rig.sim.measure_nibp(118, 76, 90)
    await wait_until(lambda: rig.count(Vital.SBP) >= 1 and rig.count(Vital.HR) >= 3)
    r = rig.vitals()[-1]
    assert (r.values[Vital.HR], r.values[Vital.SPO2], r.values[Vital.PULSE]) == (72.0, 97.0, 71.0)
    assert (r.values[Vital.SBP], r.values[Vital.DBP], r.values[Vital.MAP]) == (118.0, 76.0, 90.0)
    assert r.values[Vital.ETCO2] == pytest.approx(38.0, abs=0.1)
    assert r.device_time is not None and r.nibp_time is not None
    first_nibp_time = r.nibp_time

    rig.sim.measure_nibp(132, 84, 100)  # next cycle
    await wait_until(lambda: rig.vitals()[-1].values.get(Vital.SBP) == 132.0)
    assert rig.vitals()[-1].nibp_time > first_nibp_time  # type: ignore[operator]
    assert rig.links() == [LinkState.CONNECTED]
    assert rig.driver.protocol_errors == 0
    assert rig.alarms()[0].active == frozenset()


async def test_garbled_bytes_are_counted_and_readings_continue(rig: Rig) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 1)
    rig.sim.inject(Fault.GARBLE, 2.5)
    await wait_until(lambda: rig.driver.protocol_errors >= 2)
    await wait_until(lambda: not rig.sim.active_faults())
    before = rig.count(Vital.HR)
    await wait_until(lambda: rig.count(Vital.HR) >= before + 2)
    assert not rig.task.done()
    assert rig.links()[-1] is LinkState.CONNECTED
    assert rig.driver.decoder.error_count >= 2


async def test_bad_checksum_and_partial_frames_are_counted(rig: Rig) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 1)
    rig.sim.inject(Fault.BAD_CHECKSUM, 1.5)
    rig.sim.inject(Fault.PARTIAL, 3.0)
    await wait_until(lambda: rig.driver.decoder.errors["checksum"] >= 2)
    await wait_until(lambda: not rig.sim.active_faults())
    before = rig.count(Vital.HR)
    await wait_until(lambda: rig.count(Vital.HR) >= before + 1)


async def test_slow_trickled_frames_still_decode(rig: Rig) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 1)
    rig.sim.inject(Fault.SLOW, 3.0)
    before = rig.count(Vital.HR)
    await wait_until(lambda: rig.count(Vital.HR) >= before + 2)
    assert rig.driver.protocol_errors == 0


async def test_unplug_then_replug_reconnects(rig: Rig) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 1)
    rig.sim.inject(Fault.UNPLUG, 3.0)
    await wait_until(lambda: rig.links()[-1] in (LinkState.SILENT, LinkState.RECONNECTING))
    await wait_until(lambda: rig.links()[-1] is LinkState.CONNECTED)
    before = rig.count(Vital.HR)
    await wait_until(lambda: rig.count(Vital.HR) > before)


async def test_power_cycled_monitor_is_asked_again(rig: Rig) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 1)
    asked = rig.driver.requests_sent
    rig.sim.inject(Fault.POWER_CYCLE, 1.0)
    await wait_until(lambda: rig.links()[-1] is LinkState.SILENT)
    await wait_until(lambda: rig.links()[-1] is LinkState.CONNECTED)
    assert rig.driver.requests_sent > asked


async def test_lead_off_raises_sensor_off_and_clears(rig: Rig) -> None:
    await wait_until(lambda: len(rig.alarms()) >= 1)
    rig.sim.flags.ecg_leads_off = True
    await wait_until(lambda: DeviceAlarmCode.SENSOR_OFF in rig.alarms()[-1].active)
    assert "ECG lead off" in rig.alarms()[-1].detail
    await wait_until(lambda: rig.vitals()[-1].values.get(Vital.HR, 0) is None)
    rig.sim.flags.ecg_leads_off = False
    await wait_until(lambda: rig.alarms()[-1].active == frozenset())


async def test_tcp_drop_goes_reconnecting_then_connected() -> None:
    rig = await start_rig("tcp")
    try:
        await wait_until(lambda: rig.count(Vital.HR) >= 1)
        rig.sim.inject(Fault.UNPLUG, 1.5)
        await wait_until(lambda: LinkState.RECONNECTING in rig.links())
        await wait_until(lambda: rig.links()[-1] is LinkState.CONNECTED)
        before = rig.count(Vital.HR)
        await wait_until(lambda: rig.count(Vital.HR) > before)
    finally:
        rig.driver.stop()
        rig.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rig.task
        await rig.sim.stop()


async def test_missing_port_reports_reconnecting() -> None:
    got: list[DeviceInput] = []
    cfg = MonitorDevice(driver="datex", serial=SerialPort(port="/dev/monitord-no-such-port"))
    driver = build(cfg, got.append)
    task = asyncio.create_task(driver.run())
    try:
        await wait_until(lambda: any(isinstance(g, LinkStatus) for g in got))
        (status,) = [g for g in got if isinstance(g, LinkStatus)]
        assert status.state is LinkState.RECONNECTING and "cannot open" in status.detail
    finally:
        driver.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
