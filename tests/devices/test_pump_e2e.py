"""Simulator -> real pty -> driver -> collected readings, for both pump protocols.

The simulated pump's infusion time is a hand-advanced clock, so volume grows by exactly what the
test says; only the wire runs in real time, and every wait has a generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from monitord.config import PumpDevice, SerialPort
from monitord.drivers.modbus_pump import CommandRefused as ModbusCommandRefused
from monitord.drivers.modbus_pump import ModbusPumpDriver
from monitord.drivers.pump_map import PumpCommand, load_map
from monitord.drivers.pump_ne500 import CommandRefused as Ne500CommandRefused
from monitord.drivers.pump_ne500 import Ne500PumpDriver
from monitord.readings import (
    DeviceAlarm,
    DeviceAlarmCode,
    DeviceInput,
    LinkState,
    LinkStatus,
    PumpReading,
    PumpState,
)
from monitord.simulators.pump_endpoint import Endpoint, PtyEndpoint, TcpEndpoint
from monitord.simulators.pump_modbus_sim import ModbusPumpSim
from monitord.simulators.pump_model import Fault, PumpModel
from monitord.simulators.pump_ne500_sim import Ne500PumpSim

WAIT_S = 20.0


@dataclass
class Rig:
    model: PumpModel
    sim: ModbusPumpSim | Ne500PumpSim
    driver: ModbusPumpDriver | Ne500PumpDriver
    out: list[DeviceInput]
    clock: list[float] = field(default_factory=lambda: [0.0])

    def advance(self, seconds: float) -> None:
        self.clock[0] += seconds

    def readings(self) -> list[PumpReading]:
        return [x for x in self.out if isinstance(x, PumpReading)]

    def alarms(self) -> list[DeviceAlarm]:
        return [x for x in self.out if isinstance(x, DeviceAlarm)]

    def links(self) -> list[LinkState]:
        return [x.state for x in self.out if isinstance(x, LinkStatus)]


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def rig(
    protocol: str,
    tmp_path: Path,
    *,
    tcp: bool = False,
    safe: bool = False,
    allow_stop: bool = False,
    **model_kw: float,
) -> AsyncIterator[Rig]:
    clock = [0.0]
    model = PumpModel(clock=lambda: clock[0], **model_kw)  # type: ignore[arg-type]
    model.start()
    endpoint: Endpoint = await TcpEndpoint().start() if tcp else PtyEndpoint(tmp_path / f"{protocol}-pump")
    sim: ModbusPumpSim | Ne500PumpSim
    sim = ModbusPumpSim(model, endpoint) if protocol == "modbus" else Ne500PumpSim(model, endpoint, safe=safe)
    cfg = PumpDevice(
        driver=protocol,  # type: ignore[arg-type]
        serial=SerialPort(port=endpoint.url),
        poll_interval_s=0.05,
        timeout_s=1.0,
        allow_stop_commands=allow_stop,
    )
    out: list[DeviceInput] = []
    driver: ModbusPumpDriver | Ne500PumpDriver
    driver = ModbusPumpDriver(cfg, out.append) if protocol == "modbus" else Ne500PumpDriver(cfg, out.append, safe_mode=safe)
    driver.backoff_initial_s, driver.backoff_max_s = 0.05, 0.2
    tasks = [asyncio.create_task(sim.run()), asyncio.create_task(driver.run())]
    r = Rig(model, sim, driver, out, clock)
    try:
        await wait_until(lambda: bool(r.readings()), "a first reading")
        yield r
        assert not tasks[1].done(), "driver task ended"
    finally:
        driver.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await driver.close()
        endpoint.close()


PROTOCOLS = ["modbus", "ne500"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_running_pump_reports_rate_and_rising_volume(protocol: str, tmp_path: Path) -> None:
    async with rig(protocol, tmp_path, rate_ml_h=12.0) as r:
        first = r.readings()[-1]
        assert first.state is PumpState.RUNNING and first.rate_ml_h == pytest.approx(12.0)
        r.advance(300)  # 5 min at 12 mL/h = 1 mL
        await wait_until(lambda: (r.readings()[-1].volume_infused_ml or 0) >= 0.999, "1 mL infused")
        r.advance(300)
        await wait_until(lambda: (r.readings()[-1].volume_infused_ml or 0) >= 1.999, "2 mL infused")
        last = r.readings()[-1]
        assert last.volume_infused_ml == pytest.approx(2.0, abs=0.002)
        assert last.rate_ml_h == pytest.approx(12.0)
        assert r.links()[0] is LinkState.CONNECTED
        assert r.driver.protocol_errors == 0
        if protocol == "modbus":
            assert (last.drug, last.concentration_mg_ml, last.syringe_ml) == ("ketamine", 1.0, 50.0)
        else:  # the NE-500 knows no drug or concentration
            assert (last.drug, last.concentration_mg_ml, last.syringe_ml) == (None, None, None)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_occlusion_raises_device_alarm(protocol: str, tmp_path: Path) -> None:
    async with rig(protocol, tmp_path) as r:
        await wait_until(lambda: bool(r.alarms()), "the initial alarm set")
        assert r.alarms()[-1].active == frozenset()
        r.model.raise_alarm(DeviceAlarmCode.OCCLUSION)
        await wait_until(lambda: DeviceAlarmCode.OCCLUSION in r.alarms()[-1].active, "OCCLUSION")
        await wait_until(lambda: r.readings()[-1].state is PumpState.STOPPED, "pump stopped")
        await asyncio.sleep(0.3)  # several more polls: the alarm must still be held
        assert DeviceAlarmCode.OCCLUSION in r.alarms()[-1].active
        r.model.clear_alarm(DeviceAlarmCode.OCCLUSION)
        r.model.start()
        await wait_until(lambda: r.alarms()[-1].active == frozenset(), "alarm cleared after restart")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_syringe_running_empty_raises_empty(protocol: str, tmp_path: Path) -> None:
    async with rig(protocol, tmp_path, rate_ml_h=10.0, loaded_ml=2.0, near_empty_ml=0.5) as r:
        r.advance(3600)  # 10 mL worth: the 2 mL run out
        await wait_until(lambda: bool(r.alarms()) and DeviceAlarmCode.EMPTY in r.alarms()[-1].active, "EMPTY")
        last = r.readings()[-1]
        assert last.state is PumpState.STOPPED
        assert last.volume_infused_ml == pytest.approx(2.0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unplug_then_replug_reconnects(protocol: str, tmp_path: Path) -> None:
    async with rig(protocol, tmp_path) as r:
        n = len(r.readings())
        r.model.inject(Fault.UNPLUG, 1.0)
        await wait_until(
            lambda: any(s in (LinkState.RECONNECTING, LinkState.SILENT) for s in r.links()), "link lost"
        )
        await wait_until(lambda: r.links()[-1] is LinkState.CONNECTED, "link back")
        await wait_until(lambda: len(r.readings()) > n + 3, "readings after replug")
        assert LinkState.RECONNECTING in r.links()  # the port vanished, not just went quiet


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", [Fault.GARBLE, Fault.BAD_CRC, Fault.PARTIAL])
async def test_corrupted_replies_are_counted_without_crash(protocol: str, fault: Fault, tmp_path: Path) -> None:
    async with rig(protocol, tmp_path) as r:
        r.model.inject(fault, 0.6)
        await wait_until(lambda: r.driver.protocol_errors > 0, "protocol errors counted")
        errors = r.driver.protocol_errors
        n = len(r.readings())
        await wait_until(lambda: len(r.readings()) > n + 3, "readings after the fault")
        assert r.links()[-1] is LinkState.CONNECTED
        assert r.driver.protocol_errors >= errors


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_silent_pump_goes_silent_then_recovers(protocol: str, tmp_path: Path) -> None:
    async with rig(protocol, tmp_path) as r:
        r.model.inject(Fault.SILENT, 2.5)
        await wait_until(lambda: LinkState.SILENT in r.links(), "SILENT")
        await wait_until(lambda: r.links()[-1] is LinkState.CONNECTED, "CONNECTED again")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stop_command_is_opt_in_and_touches_only_the_command(protocol: str, tmp_path: Path) -> None:
    refused = (ModbusCommandRefused, Ne500CommandRefused)
    async with rig(protocol, tmp_path) as r:
        with pytest.raises(refused, match="allow_stop_commands is off"):
            await r.driver.send_command(PumpCommand.STOP)
    async with rig(protocol, tmp_path, allow_stop=True, rate_ml_h=7.5) as r:
        await r.driver.send_command(PumpCommand.STOP)
        assert r.model.state is PumpState.STOPPED
        await wait_until(lambda: r.readings()[-1].state is PumpState.STOPPED, "stopped reading")
        assert r.readings()[-1].rate_ml_h == pytest.approx(7.5)  # rate untouched
        if isinstance(r.sim, ModbusPumpSim):
            cmd = load_map().commands
            assert cmd is not None
            assert r.sim.writes == [(cmd.address, cmd.values[PumpCommand.STOP])]
            assert r.sim.refused_writes == []
        else:
            sent = {(c.mnemonic, c.parameter) for c in r.sim.commands}
            assert sent <= {("DIS", ""), ("RAT", ""), ("VOL", ""), ("DIA", ""), ("STP", "")}


async def test_modbus_over_tcp_socket_url(tmp_path: Path) -> None:
    async with rig("modbus", tmp_path, tcp=True, rate_ml_h=3.0) as r:
        assert r.driver.cfg.serial.port.startswith("socket://")
        assert r.readings()[-1].rate_ml_h == pytest.approx(3.0)


async def test_ne500_safe_mode(tmp_path: Path) -> None:
    async with rig("ne500", tmp_path, safe=True, rate_ml_h=4.0) as r:
        r.advance(900)
        await wait_until(lambda: (r.readings()[-1].volume_infused_ml or 0) >= 0.999, "1 mL infused")
        r.model.inject(Fault.BAD_CRC, 0.5)
        await wait_until(lambda: r.driver.protocol_errors > 0, "CRC errors counted")

