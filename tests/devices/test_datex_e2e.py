"""Simulator -> real pty (or TCP) -> DatexMonitorDriver: every byte crosses a real device."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from monitord.config import MonitorDevice, SerialPort
from monitord.drivers.monitor_datex import DatexMonitorDriver, build
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
from monitord.simulators.datex_sim import DatexSimulator, Fault

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


@pytest.mark.parametrize(
    ("flag", "code", "words"),
    [
        ("ecg_leads_off", DeviceAlarmCode.LEADS_OFF, "ECG lead off"),
        ("co2_occlusion", DeviceAlarmCode.SENSOR_OFF, "sampling line occluded"),
        ("co2_air_leak", DeviceAlarmCode.SENSOR_OFF, "air leak"),
        ("co2_apnea", DeviceAlarmCode.APNOEA, "apnoea"),
    ],
)
async def test_status_flags_raise_their_device_alarm_and_clear(rig: Rig, flag: str, code: DeviceAlarmCode,
                                                               words: str) -> None:
    await wait_until(lambda: len(rig.alarms()) >= 1)
    assert rig.alarms()[-1].active == frozenset()
    setattr(rig.sim.flags, flag, True)
    await wait_until(lambda: rig.alarms()[-1].active == {code})
    assert words in rig.alarms()[-1].detail
    assert rig.links()[-1] is LinkState.CONNECTED  # the monitor answers: a device alarm, not a lost link
    setattr(rig.sim.flags, flag, False)
    await wait_until(lambda: rig.alarms()[-1].active == frozenset())


async def test_lead_off_blanks_hr(rig: Rig) -> None:
    rig.sim.flags.ecg_leads_off = True
    await wait_until(lambda: bool(rig.vitals()) and rig.vitals()[-1].values.get(Vital.HR, 0) is None)


async def test_show_alarms_covers_every_monitor_code_the_record_can_carry(rig: Rig) -> None:
    cannot = rig.sim.show_alarms(DeviceAlarmCode)
    assert cannot == {DeviceAlarmCode.PROBE_OFF, DeviceAlarmCode.OCCLUSION, DeviceAlarmCode.NEAR_EMPTY,
                      DeviceAlarmCode.EMPTY, DeviceAlarmCode.LOW_BATTERY, DeviceAlarmCode.DOOR_OPEN,
                      DeviceAlarmCode.DEVICE_FAULT}
    expected = {DeviceAlarmCode.LEADS_OFF, DeviceAlarmCode.SENSOR_OFF, DeviceAlarmCode.APNOEA,
                DeviceAlarmCode.IMPLAUSIBLE}
    await wait_until(lambda: bool(rig.alarms()) and rig.alarms()[-1].active == expected)
    rig.sim.show_alarms([])
    await wait_until(lambda: rig.alarms()[-1].active == frozenset())


async def test_ambient_pressure_in_another_unit_withholds_etco2(rig: Rig) -> None:
    await wait_until(lambda: rig.count(Vital.ETCO2) >= 1)
    rig.sim.ambient_wire_mmhg = 101.3  # 1013 hPa sent where mmHg belongs: EtCO2 would read 5 mmHg
    await wait_until(lambda: bool(rig.alarms()) and DeviceAlarmCode.IMPLAUSIBLE in rig.alarms()[-1].active)
    assert "ambient pressure 101.3 mmHg" in rig.alarms()[-1].detail
    n = len(rig.vitals())
    await wait_until(lambda: len(rig.vitals()) >= n + 4)
    withheld = [r for r in rig.vitals()[n:] if Vital.ETCO2 in r.values]
    assert withheld and all(r.values[Vital.ETCO2] is None and r.quality is Quality.INVALID for r in withheld)
    assert all(r.values.get(Vital.RR) == 14.0 for r in rig.vitals()[n:] if r.quality is Quality.VALID)
    # never a wrong number: no reading ever carried the 5 mmHg the unit error would give
    assert all((r.values.get(Vital.ETCO2) or 38.0) > 30 for r in rig.vitals())
    rig.sim.ambient_wire_mmhg = None
    await wait_until(lambda: rig.alarms()[-1].active == frozenset())
    await wait_until(lambda: rig.vitals()[-1].values.get(Vital.ETCO2) == pytest.approx(38.0, abs=0.1))


async def test_late_records_carry_their_time_stamp_and_age(rig: Rig) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 3)  # a few on time: the line's normal latency
    assert all(r.age_s == 0.0 for r in rig.vitals())
    rig.sim.late_s = 4.0
    rig.sim.inject(Fault.LATE, 3.0)
    n = len(rig.vitals())
    await wait_until(lambda: any(r.age_s > 0 for r in rig.vitals()[n:]))
    late = next(r for r in rig.vitals()[n:] if r.age_s > 0)
    assert 3.0 <= late.age_s <= 5.5
    assert late.device_time is not None
    # and once the held records are out, records are on time again
    await wait_until(lambda: not rig.sim.active_faults() and not rig.sim._held)
    m = len(rig.vitals())
    await wait_until(lambda: len(rig.vitals()) >= m + 2)
    assert rig.vitals()[-1].age_s == 0.0


async def test_a_megabyte_a_second_of_garbage_writes_a_few_lines(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 1)
    rng = random.Random(5)
    sent = 0
    with caplog.at_level(logging.INFO):
        loop = asyncio.get_running_loop()
        started = loop.time()
        while sent < 1_000_000:
            sent += rig.sim.send_raw(rng.randbytes(4096))
            # about 1 MB/s: 4 KiB every 4 ms of wall time
            await asyncio.sleep(max(0.0, started + sent / 1_000_000 - loop.time()))
        await wait_until(lambda: rig.driver.protocol_errors >= 1000)
        before = rig.count(Vital.HR)
        await wait_until(lambda: rig.count(Vital.HR) > before)  # readings carry on afterwards
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert rig.driver.protocol_errors >= 1000
    assert len(warnings) <= 8, [r.getMessage() for r in warnings]  # one per error kind at most
    assert len(caplog.records) <= 20
    assert not rig.task.done()


async def test_a_baud_rate_the_port_rejects_is_shown_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    sim = DatexSimulator(patient, transport="pty")
    path = await sim.start()
    got: list[DeviceInput] = []
    # past the config's own check (a setting it accepts may still be one this port rejects)
    port = SerialPort.model_construct(port=path, baudrate=12345678901, bytesize=8, parity="N", stopbits=1)
    cfg = MonitorDevice.model_construct(name="monitor", driver="datex", serial=port, poll_interval_s=5.0,
                                        timeout_s=15.0)
    driver = build(cfg, got.append)
    driver.backoff_initial_s = driver.backoff_max_s = 0.02
    task = asyncio.create_task(driver.run())
    try:
        with caplog.at_level(logging.INFO):
            await wait_until(lambda: driver.connect_attempts >= 10)
        assert not task.done()
        (status,) = [g for g in got if isinstance(g, LinkStatus)]
        assert status.state is LinkState.RECONNECTING
        assert "serial settings rejected (baudrate=12345678901" in status.detail
        assert "signed integer is greater than maximum" in status.detail
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1 and "baudrate=12345678901" in lines[0].getMessage()
    finally:
        driver.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sim.stop()


async def test_a_driver_bug_while_reading_reconnects_and_logs_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await wait_until(lambda: rig.count(Vital.HR) >= 1)

    def broken(*args: object, **kw: object) -> list[VitalsReading]:
        raise ZeroDivisionError("bug")

    with caplog.at_level(logging.INFO):
        monkeypatch.setattr("monitord.drivers.monitor_datex.readings_of", broken)
        await wait_until(lambda: LinkState.RECONNECTING in rig.links())
        attempts = rig.driver.connect_attempts
        await wait_until(lambda: rig.driver.connect_attempts >= attempts + 2)
        assert "driver error: bug" in rig.driver.link_detail
        monkeypatch.undo()
        before = rig.count(Vital.HR)
        await wait_until(lambda: rig.count(Vital.HR) > before)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert not any("Exception in callback" in r.getMessage() for r in caplog.records)


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
