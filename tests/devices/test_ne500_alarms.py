"""NE-500 alarms and errors in the reply to any command, over a real pty; garbage floods and a
rejected serial setting; the Modbus pump's alarm bits, each to its DeviceAlarmCode."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest

from monitord.config import PumpDevice, SerialPort
from monitord.drivers.ne500 import Alarm, CommandError
from monitord.drivers.pump_ne500 import Ne500PumpDriver
from monitord.readings import DeviceAlarmCode, DeviceInput, LinkState, LinkStatus, PumpState
from monitord.simulators.pump_endpoint import PtyEndpoint
from monitord.simulators.pump_model import PumpModel
from monitord.simulators.pump_ne500_sim import Ne500PumpSim
from tests.devices.test_pump_e2e import Rig, rig, wait_until


def sim(r: Rig) -> Ne500PumpSim:
    assert isinstance(r.sim, Ne500PumpSim)
    return r.sim


def polls_after(r: Rig, n: int) -> int:
    """Readings emitted after the first ``n``."""
    return len(r.readings()) - n


@pytest.mark.parametrize("command", ["RAT", "VOL", "DIS", "DIA"])
async def test_a_stall_in_the_reply_to_any_command_is_an_occlusion(command: str, tmp_path: Path) -> None:
    async with rig("ne500", tmp_path, rate_ml_h=10.0) as r:
        await wait_until(lambda: bool(r.alarms()) and r.alarms()[-1].active == frozenset(), "no alarm")
        sim(r).alarm_on = command
        r.model.raise_alarm(DeviceAlarmCode.OCCLUSION)  # the pump stalls: A?S in reply to `command`
        await wait_until(lambda: DeviceAlarmCode.OCCLUSION in r.alarms()[-1].active, "OCCLUSION")
        assert "motor stalled" in r.alarms()[-1].detail
        n = len(r.readings())
        await wait_until(lambda: polls_after(r, n) >= 5, "more polls")
        assert r.alarms()[-1].active == {DeviceAlarmCode.OCCLUSION}  # held while stopped
        assert r.readings()[-1].state is PumpState.STOPPED
        assert r.links() == [LinkState.CONNECTED]  # the pump answered all along
        r.model.clear_alarm(DeviceAlarmCode.OCCLUSION)
        r.model.start()
        await wait_until(lambda: r.alarms()[-1].active == frozenset(), "cleared once running")


@pytest.mark.parametrize("command", ["RAT", "VOL", "DIA"])
@pytest.mark.parametrize("then", ["retry lost", "second alarm"])
async def test_a_running_prompt_earlier_in_the_poll_does_not_clear_the_stall(command: str, then: str,
                                                                             tmp_path: Path) -> None:
    """The stall happens between DIS (which still said I, infusing) and ``command``; the query's
    retry then brings no prompt (its reply is lost, or is another alarm)."""
    async with rig("ne500", tmp_path, rate_ml_h=10.0) as r:
        await wait_until(lambda: bool(r.alarms()) and r.alarms()[-1].active == frozenset(), "no alarm")
        seen = len(sim(r).commands)
        sim(r).inject_alarm(Alarm.STALLED, on=command)
        if then == "retry lost":
            sim(r).lose_reply(on=command, after=1)
        else:
            sim(r).inject_alarm(Alarm.PROGRAM_ERROR, on=command)
        await wait_until(lambda: DeviceAlarmCode.OCCLUSION in r.alarms()[-1].active, "OCCLUSION")
        sent = [c.mnemonic for c in sim(r).commands[seen:]]
        assert sent[: sent.index(command)].count("DIS") >= 1  # an I prompt came earlier in that poll
        n = len(r.readings())
        await wait_until(lambda: polls_after(r, n) >= 5, "more polls")
        assert DeviceAlarmCode.OCCLUSION in r.alarms()[-1].active  # held: never cleared by the stale I
        sets = [a.active for a in r.alarms()]
        first = next(i for i, a in enumerate(sets) if DeviceAlarmCode.OCCLUSION in a)
        assert all(DeviceAlarmCode.OCCLUSION in a for a in sets[first:])  # never cleared in between
        assert r.readings()[-1].state is PumpState.STOPPED


@pytest.mark.parametrize("alarm", [Alarm.COMMS_TIMEOUT, Alarm.PROGRAM_ERROR, Alarm.OUT_OF_RANGE, Alarm.RESET])
async def test_pump_alarms_are_device_faults(alarm: Alarm, tmp_path: Path) -> None:
    async with rig("ne500", tmp_path, rate_ml_h=10.0) as r:
        await wait_until(lambda: bool(r.alarms()) and r.readings()[-1].state is PumpState.RUNNING, "running")
        sim(r).inject_alarm(alarm, on="RAT")  # A?R while running: power was interrupted mid-infusion
        await wait_until(lambda: DeviceAlarmCode.DEVICE_FAULT in r.alarms()[-1].active, "DEVICE_FAULT")
        assert r.alarms()[-1].active == {DeviceAlarmCode.DEVICE_FAULT}
        r.model.start()
        await wait_until(lambda: r.alarms()[-1].active == frozenset(), "cleared once running")


async def test_power_on_reset_while_stopped_is_no_alarm(tmp_path: Path) -> None:
    async with rig("ne500", tmp_path) as r:  # the simulator reports A?R at power-on
        n = len(r.readings())
        await wait_until(lambda: polls_after(r, n) >= 3, "polls")
        assert [a.active for a in r.alarms()] == [frozenset()]


@pytest.mark.parametrize("error", [CommandError.OUT_OF_RANGE, CommandError.NOT_APPLICABLE, CommandError.BAD_PACKET])
async def test_an_error_reply_is_counted_and_the_state_still_read(error: CommandError, tmp_path: Path) -> None:
    async with rig("ne500", tmp_path, rate_ml_h=10.0) as r:
        errors = r.driver.protocol_errors
        n = len(r.readings())
        sim(r).inject_error(error, on="RAT")
        await wait_until(lambda: r.driver.protocol_errors > errors, "the refusal counted")
        await wait_until(lambda: polls_after(r, n) >= 3, "polls")
        refused = [x for x in r.readings()[n:] if x.rate_ml_h is None]
        assert len(refused) == 1 and refused[0].state is PumpState.RUNNING
        assert refused[0].volume_infused_ml is not None  # the other replies of that poll still count
        assert r.readings()[-1].rate_ml_h == pytest.approx(10.0)
        assert r.links()[-1] is LinkState.CONNECTED


async def test_a_megabyte_a_second_of_garbage_writes_a_few_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with rig("ne500", tmp_path) as r:
        endpoint = sim(r).endpoint
        rng = random.Random(9)
        loop = asyncio.get_running_loop()
        with caplog.at_level(logging.INFO):
            started = loop.time()
            for i in range(250):  # 1 MB at about 1 MB/s
                await endpoint.write(rng.randbytes(4000))
                await asyncio.sleep(max(0.0, started + (i + 1) * 0.004 - loop.time()))
            await wait_until(lambda: r.driver.protocol_errors >= 100, "errors counted")
            n = len(r.readings())
            await wait_until(lambda: polls_after(r, n) >= 3, "readings after the flood")
        warnings = [x for x in caplog.records if x.levelno >= logging.WARNING]
        assert len(warnings) <= 6, [x.getMessage() for x in warnings]  # one per kind of error
        assert len(caplog.records) <= 20


async def test_a_baud_rate_the_port_rejects_is_shown_and_retried(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    model = PumpModel()
    endpoint = PtyEndpoint(tmp_path / "pump")
    # past the config's own check (a setting it accepts may still be one this port rejects)
    port = SerialPort.model_construct(port=endpoint.url, baudrate=10**30, bytesize=8, parity="N", stopbits=1)
    cfg = PumpDevice.model_construct(name="pump", driver="ne500", serial=port, poll_interval_s=0.05, timeout_s=1.0,
                                     ne500_address=0, ne500_safe_mode=False, allow_stop_commands=False)
    got: list[DeviceInput] = []
    driver = Ne500PumpDriver(cfg, got.append)
    driver.backoff_initial_s = driver.backoff_max_s = 0.02
    tasks = [asyncio.create_task(Ne500PumpSim(model, endpoint).run()), asyncio.create_task(driver.run())]
    try:
        with caplog.at_level(logging.INFO):
            await wait_until(lambda: driver.connect_attempts >= 10, "retries")
        assert not tasks[1].done()
        (status,) = [g for g in got if isinstance(g, LinkStatus)]
        assert status.state is LinkState.RECONNECTING and "serial settings rejected" in status.detail
        assert len([x for x in caplog.records if x.levelno >= logging.WARNING]) == 1
    finally:
        driver.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        endpoint.close()


@pytest.mark.parametrize(
    "code",
    [DeviceAlarmCode.OCCLUSION, DeviceAlarmCode.NEAR_EMPTY, DeviceAlarmCode.EMPTY, DeviceAlarmCode.LOW_BATTERY,
     DeviceAlarmCode.DOOR_OPEN],
)
async def test_modbus_alarm_bits_map_to_their_codes(code: DeviceAlarmCode, tmp_path: Path) -> None:
    async with rig("modbus", tmp_path) as r:
        await wait_until(lambda: bool(r.alarms()) and r.alarms()[-1].active == frozenset(), "no alarm")
        r.model.raise_alarm(code)
        await wait_until(lambda: r.alarms()[-1].active == {code}, code.value)
        r.model.clear_alarm(code)
        await wait_until(lambda: r.alarms()[-1].active == frozenset(), "cleared")
