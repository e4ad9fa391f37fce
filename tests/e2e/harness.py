"""A bed on real ptys: scenario runner (simulators) -> real drivers -> rule loop -> engine.

Everything runs in one event loop on the real clock. Device timeouts are short so that a lost
device is noticed in seconds; every wait is on an event, with a generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitord.clock import SystemClock
from monitord.config import Config, load_config, merge
from monitord.daemon import send_pump_command
from monitord.drivers import build_drivers
from monitord.drivers.base import Driver
from monitord.engine import Engine
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop
from monitord.readings import DeviceRole
from monitord.scenario import Scenario, load_scenario, step_input
from monitord.scenario import Step as ScenarioStep
from monitord.simulators.intellivue_sim import IntelliVueScenarioRunner
from monitord.simulators.scenario_runner import ScenarioRunner

SCENARIOS = Path(__file__).parent / "scenarios"
WAIT_S = 30.0  # generous: real serial I/O on a loaded two-core box
MONITOR_TIMEOUT_S = 3.0
PUMP_TIMEOUT_S = 3.0
# The bed's monitor: the simulator that plays the scenario, and the driver of the same name reads it.
MONITORS: dict[str, type[ScenarioRunner]] = {"datex": ScenarioRunner, "intellivue": IntelliVueScenarioRunner}


@dataclass
class Bed:
    scenario: Scenario
    config: Config
    engine: Engine
    loop: RuleLoop
    drivers: list[Driver]
    runner: ScenarioRunner
    events: list[Event]
    play: asyncio.Task[bool] | None = None
    start_mono: float = 0.0

    def driver(self, name: str) -> Driver:
        return next(d for d in self.drivers if d.name == name)

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]

    def alarms(self, rule: str | None = None, transition: str = "raised") -> list[Event]:
        return [
            e for e in self.of(EventKind.ALARM)
            if (rule is None or e.data["rule_id"] == rule) and e.data["transition"] == transition
        ]

    def sounding_alarms(self) -> list[Event]:
        """Raised alarms a nurse would hear (advisories are shown, never sounded)."""
        return [e for e in self.alarms() if e.data["priority"] in ("high", "medium", "low")]

    def links(self, device: str) -> list[str]:
        return [e.data["state"] for e in self.of(EventKind.LINK) if e.data["device"] == device]

    def vitals_with(self, vital: str) -> list[Event]:
        return [e for e in self.of(EventKind.VITALS) if vital in e.data["values"]]

    def at(self, event: Event) -> float:
        """Seconds from the start of the course to ``event``."""
        return event.mono - self.start_mono

    async def wait_for(self, cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not (got := cond()):
            if loop.time() > end:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(0.05)
        return got

    async def finish(self) -> None:
        """Wait for the course to run to its end."""
        assert self.play is not None
        ended = await asyncio.wait_for(self.play, self.scenario.duration_s + WAIT_S)
        assert ended, "the scenario did not run to its end"


def bed_config(scenario: Scenario, ports: Any, pump: str | None, safe: bool = False,
               monitor: str = "datex") -> Config:
    devices: dict[str, Any] = {
        "monitor": {"driver": monitor, "serial": {"port": ports.monitor}, "poll_interval_s": 1.0,
                    "timeout_s": MONITOR_TIMEOUT_S},
    }
    if pump is not None:
        devices["pump"] = {"driver": pump, "serial": {"port": ports.pump}, "poll_interval_s": 0.5,
                           "timeout_s": PUMP_TIMEOUT_S}
        if safe:
            devices["pump"]["ne500_safe_mode"] = True
        if scenario.config_overrides.get("interlock", {}).get("enabled"):
            devices["pump"]["allow_stop_commands"] = True
    # the scenario may tune clinical settings; the devices are this rig's
    over = merge(scenario.config_overrides, {"devices": devices, "mqtt": {"enabled": False}})
    return load_config(None, overrides=over)


@contextlib.asynccontextmanager
async def running_bed(name: str, pump: str | None = "modbus", *, start: bool = True,
                      monitor: str = "datex") -> AsyncIterator[Bed]:
    """Open the simulators and the bed; once both links are up, play the scenario ``name``.
    ``pump`` is a protocol name; "ne500-safe" is the NE-500 in safe mode (CRC framing).
    ``monitor``: "datex" (GE S/5) or "intellivue" (Philips Data Export), simulator and driver."""
    if monitor not in MONITORS:
        raise ValueError(f"monitor: one of {', '.join(MONITORS)}, got {monitor!r}")
    safe = pump == "ne500-safe"
    pump = "ne500" if safe else pump
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    engine_box: list[RuleLoop] = []

    async def to_engine(step: ScenarioStep) -> None:
        await engine_box[0].command(step_input(step))

    runner = MONITORS[monitor](scenario, pump=pump, pump_port="pty" if pump else None, monitor_port="pty",
                               steps=to_engine, ne500_safe_mode=safe)
    ports = await runner.open()
    tasks: list[asyncio.Task[Any]] = []
    drivers: list[Driver] = []
    bed: Bed | None = None
    try:
        config = bed_config(scenario, ports, pump, safe, monitor)
        engine = Engine(config, SystemClock())
        events: list[Event] = []
        engine.subscribe(events.append)
        loop = RuleLoop(engine, config.watchdog.tick_s)
        engine_box.append(loop)
        drivers = build_drivers(config.devices, loop.put)
        # the interlock's stop reaches the pump driver as in the daemon
        engine.subscribe_commands(lambda command: tasks.append(asyncio.create_task(
            send_pump_command(next(d for d in drivers if d.role is DeviceRole.PUMP), command))))
        tasks.append(asyncio.create_task(loop.run()))
        tasks += [asyncio.create_task(d.run()) for d in drivers]
        bed = Bed(scenario, config, engine, loop, drivers, runner, events)
        names = [d.name for d in drivers]
        await bed.wait_for(lambda: all("connected" in bed.links(n) for n in names), f"links of {names} connected")
        if start:
            bed.start_mono = engine.clock.monotonic()
            bed.play = asyncio.create_task(runner.play())
        yield bed
    finally:
        runner.stop()
        if bed is not None and bed.play is not None:
            await asyncio.gather(bed.play, return_exceptions=True)
        for d in drivers:
            d.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.close()
