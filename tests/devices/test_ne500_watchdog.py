"""The NE-500 safe-mode communications watchdog as the interlock's heartbeat, over a real pty: the
driver arms it at connect, every poll keeps the pump going, and a dead daemon stops the pump."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from monitord.config import PumpDevice, SerialPort
from monitord.drivers.pump_ne500 import Ne500PumpDriver
from monitord.readings import DeviceAlarm, DeviceAlarmCode, DeviceInput, PumpReading, PumpState
from monitord.simulators.pump_endpoint import PtyEndpoint
from monitord.simulators.pump_model import PumpModel
from monitord.simulators.pump_ne500_sim import Ne500PumpSim
from tests.devices.test_pump_e2e import wait_until


def _cfg(port: str, watchdog_s: int) -> PumpDevice:
    return PumpDevice(driver="ne500", serial=SerialPort(port=port), poll_interval_s=0.05, timeout_s=1.0,
                      ne500_safe_mode=True, comm_watchdog_s=watchdog_s)


async def test_a_dead_daemon_stops_the_pump_through_its_own_watchdog(tmp_path: Path) -> None:
    model = PumpModel(rate_ml_h=10.0)
    model.start()
    endpoint = PtyEndpoint(tmp_path / "pump")
    sim = Ne500PumpSim(model, endpoint, safe=True)
    sim_task = asyncio.create_task(sim.run())
    out: list[DeviceInput] = []
    driver = Ne500PumpDriver(_cfg(endpoint.url, 1), out.append, safe_mode=True)
    driver.backoff_initial_s, driver.backoff_max_s = 0.05, 0.2
    task = asyncio.create_task(driver.run())
    try:
        await wait_until(lambda: sim.comm_timeout_s == 1.0, "SAF1 accepted by the pump")
        assert [c for c in sim.commands if c.mnemonic == "SAF"][0].parameter == "1"
        await asyncio.sleep(2.0)  # twice the time-out: the polls keep it from firing
        assert model.snapshot().state is PumpState.RUNNING
        # the daemon dies: nothing more reaches the pump
        driver.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await driver.close()
        await wait_until(lambda: model.snapshot().state is not PumpState.RUNNING, "the pump stopped itself", 5.0)
        # a new daemon hears why
        out.clear()
        driver = Ne500PumpDriver(_cfg(endpoint.url, 1), out.append, safe_mode=True)
        task = asyncio.create_task(driver.run())
        await wait_until(lambda: any(isinstance(i, DeviceAlarm) and DeviceAlarmCode.DEVICE_FAULT in i.active
                                     for i in out), "the time-out alarm reported")
        fault = next(i for i in out if isinstance(i, DeviceAlarm) and i.active)
        assert "communications time-out" in fault.detail
        assert [i for i in out if isinstance(i, PumpReading)][-1].state is PumpState.STOPPED
    finally:
        driver.stop()
        task.cancel()
        sim_task.cancel()
        await asyncio.gather(task, sim_task, return_exceptions=True)
        await driver.close()
        endpoint.close()


@pytest.mark.parametrize("cfg", [
    {"driver": "modbus", "comm_watchdog_s": 10},
    {"driver": "ne500", "comm_watchdog_s": 10},  # basic mode has no watchdog
    {"driver": "ne500", "ne500_safe_mode": True, "comm_watchdog_s": 2, "poll_interval_s": 1.0},  # < 3 polls
])
def test_the_watchdog_is_refused_where_it_cannot_work(cfg: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="comm_watchdog_s"):
        PumpDevice.model_validate({"serial": {"port": "/dev/null"}, **cfg})
