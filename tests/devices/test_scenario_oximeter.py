"""A scenario file drives the simulated Masimo oximeter on a pty (``ScenarioRunner``, ``monitord sim``):
its values, its ``oximeter_alarm`` steps and its faults reach the real oximeter driver as bytes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitord.config import OximeterDevice
from monitord.drivers.oximeter_masimo import build
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
from monitord.scenario import parse_scenario
from monitord.simulators.scenario_runner import ScenarioRunner

WAIT_S = 30.0  # generous: real I/O on a loaded box; every wait ends on an event
ROOT = Path(__file__).resolve().parents[2]


async def wait_until(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (got := cond()):
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return got


def vitals(got: list[DeviceInput]) -> list[VitalsReading]:
    return [g for g in got if isinstance(g, VitalsReading)]


def alarms(got: list[DeviceInput]) -> list[DeviceAlarm]:
    return [g for g in got if isinstance(g, DeviceAlarm)]


def links(got: list[DeviceInput]) -> list[LinkState]:
    return [g.state for g in got if isinstance(g, LinkStatus)]


def last_spo2(got: list[DeviceInput]) -> float | None:
    v = vitals(got)
    return v[-1].values.get(Vital.SPO2) if v else None


def driver_on(port: str, got: list[DeviceInput]) -> Any:
    cfg = OximeterDevice(driver="masimo", serial={"port": port}, poll_interval_s=0.1, timeout_s=1.0)
    driver = build(cfg, got.append)
    driver.backoff_initial_s = driver.backoff_max_s = 0.1
    return driver


SCENARIO = {
    "name": "oximeter steps on the wire", "duration": 60,
    "monitor": {"start": {"spo2": 95, "pulse": 66}},
    "oximeter": {"period": 0.1, "offset": {"spo2": 1}},
    "step": [{"at": 10, "oximeter_alarm": {"set": ["probe_off"]}},
             {"at": 20, "oximeter_alarm": {"clear": ["probe_off"]}},
             {"at": 30, "fault": {"device": "oximeter", "kind": "unplug", "duration": 1}}],
}


async def test_a_scenarios_probe_off_and_unplug_reach_the_oximeter_driver_over_a_pty() -> None:
    # Scenario time is the test's to move, so nothing depends on how fast this machine is.
    clock = [1000.0]
    runner = ScenarioRunner(parse_scenario(SCENARIO), pump=None, pump_port=None, monitor_port=None,
                            oximeter_port="pty", monotonic=lambda: clock[0])
    ports = await runner.open()
    assert ports.monitor is None and ports.pump is None and ports.oximeter is not None
    got: list[DeviceInput] = []
    driver = driver_on(ports.oximeter, got)
    tasks = [asyncio.create_task(driver.run()), asyncio.create_task(runner.play())]

    async def to(t: float) -> None:
        clock[0] = 1000.0 + t
        await wait_until(lambda: runner.now() >= t, f"scenario time {t:g} s")

    try:
        # the course's SpO2 plus this oximeter's offset, whole numbers as the device shows them
        await wait_until(lambda: last_spo2(got) == 96.0, "SpO2 96 from the course")
        assert vitals(got)[-1].values[Vital.PULSE] == 66.0
        assert alarms(got)[0].active == frozenset()
        await to(10)  # probe off
        await wait_until(lambda: alarms(got)[-1].active == {DeviceAlarmCode.PROBE_OFF}, "probe off at the driver")
        assert "sensor off" in alarms(got)[-1].detail
        n = len(vitals(got))
        await wait_until(lambda: len(vitals(got)) >= n + 3, "lines while the probe is off")
        assert all(v.values[Vital.SPO2] is None and v.quality is Quality.INVALID for v in vitals(got)[n:])
        await to(20)  # probe back on
        await wait_until(lambda: alarms(got)[-1].active == frozenset() and last_spo2(got) == 96.0,
                         "probe off cleared and values back")
        assert links(got) == [LinkState.CONNECTED]  # a probe off is not a lost device
        await to(30)  # the oximeter's adapter pulled for 1 s
        await wait_until(lambda: LinkState.RECONNECTING in links(got), "the driver sees the port gone")
        assert runner.faults_injected == [(30.0, "oximeter", "unplug")]
        await wait_until(lambda: links(got)[-1] is LinkState.CONNECTED and last_spo2(got) == 96.0,
                         "reconnected with values")
    finally:
        runner.stop()
        driver.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.close()


async def test_monitord_sim_plays_a_scenario_file_on_an_oximeter(tmp_path: Path) -> None:
    """As a tester runs it: ``monitord sim`` opens the oximeter because the file has an
    ``[oximeter]`` table, prints its port, and the file's probe-off step reaches a driver on it."""
    scenario = tmp_path / "probe-off.toml"
    scenario.write_text("""
name = "probe off"
duration = "10min"
[monitor]
start = { spo2 = 97, pulse = 70 }
[oximeter]
period = 0.2
[[step]]
at = 1
oximeter_alarm = { set = ["probe_off"] }
""")
    paths = tmp_path / "ports.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitord.cli", "sim", "--scenario", str(scenario), "--pump", "none",
        "--monitor-port", "none", "--paths-file", str(paths), "--workdir", str(tmp_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    got: list[DeviceInput] = []
    driver = None
    task = None
    try:
        await wait_until(lambda: paths.exists() or proc.returncode is not None, "the simulator's paths file")
        assert proc.returncode is None, "monitord sim exited"
        ports = json.loads(paths.read_text())
        assert ports["monitor"] is None and ports["pump"] is None
        assert ports["oximeter"] == str(tmp_path / "oximeter")
        driver = driver_on(ports["oximeter"], got)
        task = asyncio.create_task(driver.run())
        # probe off from 1 s to the end: the driver sees it whenever it first reads
        await wait_until(lambda: alarms(got) and alarms(got)[-1].active == {DeviceAlarmCode.PROBE_OFF},
                         "probe off from the scenario at the driver")
        assert vitals(got)[-1].values[Vital.SPO2] is None
    finally:
        if driver is not None:
            driver.stop()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), WAIT_S)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert proc.returncode == 0, out
    assert f"oximeter (Masimo, 9600 8N1): {tmp_path / 'oximeter'}" in out, out
