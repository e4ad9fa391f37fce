"""A real bed for dashboard tests: Engine + RuleLoop + DashboardServer on a FakeClock, on a
temporary Unix socket in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from monitord import readings as r
from monitord.clock import FakeClock
from monitord.config import Config, load_config
from monitord.engine import Engine
from monitord.events import Event
from monitord.link.server import DashboardServer
from monitord.loop import RuleLoop


@dataclass
class Bed:
    config: Config
    clock: FakeClock
    engine: Engine
    loop: RuleLoop
    server: DashboardServer
    socket: Path
    events: list[Event] = field(default_factory=list)

    def of(self, kind: str, **match: object) -> list[Event]:
        """Events of ``kind`` whose data contains every ``match`` item."""
        return [e for e in self.events if e.kind.value == kind and all(e.data.get(k) == v for k, v in match.items())]

    async def settle(self) -> None:
        """Let the rule loop drain what was put."""
        for _ in range(20):
            await asyncio.sleep(0)
            if self.loop._queue.empty():
                break
        await asyncio.sleep(0.01)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes: keep them short, not under pytest's tmp_path.
    d = Path(tempfile.mkdtemp(prefix="mdash", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# A pump the daemon may send stop commands to: what an enabled interlock needs (docs/interlock.md).
STOPPABLE_PUMP = {"pump": {"driver": "modbus", "serial": {"port": "sim"}, "timeout_s": 10, "allow_stop_commands": True}}


def make_config(socket: Path, care_area: str | None = None, interlock: bool = False) -> Config:
    overrides: dict[str, Any] = {"dashboard": {"socket": str(socket)}, "mqtt": {"enabled": False}}
    if care_area:
        overrides["bed"] = {"care_area": care_area}
    if interlock:
        overrides["devices"] = STOPPABLE_PUMP
        overrides["interlock"] = {"enabled": True}
    return load_config(overrides=overrides)


@pytest.fixture
async def bed(sock_dir: Path) -> AsyncIterator[Bed]:
    async with running_bed(sock_dir) as b:
        yield b


@pytest.fixture
async def icu_bed(sock_dir: Path) -> AsyncIterator[Bed]:
    """A bed whose care area is the ICU, where the soft dose limit may be overridden."""
    async with running_bed(sock_dir, care_area="icu") as b:
        yield b


@pytest.fixture
async def interlock_bed(sock_dir: Path) -> AsyncIterator[Bed]:
    """A bed whose pump stop interlock is enabled (its pump may be sent stop commands)."""
    async with running_bed(sock_dir, interlock=True) as b:
        yield b


@contextlib.asynccontextmanager
async def running_bed(sock_dir: Path, care_area: str | None = None, interlock: bool = False) -> AsyncIterator[Bed]:
    socket = sock_dir / "run" / "dashboard.sock"  # the parent is created by the server
    config = make_config(socket, care_area, interlock)
    clock = FakeClock()
    engine = Engine(config, clock)
    loop = RuleLoop(engine, config.watchdog.tick_s)
    server = DashboardServer(config, engine, loop)
    b = Bed(config, clock, engine, loop, server, socket)
    engine.subscribe(b.events.append)
    task = asyncio.create_task(loop.run())
    await server.start()
    yield b
    await server.stop()
    loop.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def vitals(hr: float = 72, sbp: float = 120, dbp: float = 80, mean: float = 93, spo2: float = 98,
           rr: float = 14, etco2: float = 38) -> r.VitalsReading:
    v = r.Vital
    return r.VitalsReading("monitor", {v.HR: hr, v.SBP: sbp, v.DBP: dbp, v.MAP: mean, v.SPO2: spo2,
                                       v.RR: rr, v.ETCO2: etco2})


def admit_and_order(engine: Engine, actor: str = "N1") -> None:
    engine.submit(r.Admit("P-1001", 70.0, 45, actor))
    engine.submit(r.SetOrder("ketamine", 1.0, 35.0, actor, bolus_mg=0.0, syringe_ml=50.0))


class Course:
    """Drives a bed's engine second by second on its FakeClock, as the drivers would: a pump that
    obeys stop commands (or ignores them) and a monitor whose breathing can stop."""

    def __init__(self, engine: Engine, clock: FakeClock, obey: bool = True) -> None:
        self.engine = engine
        self.clock = clock
        self.obey = obey
        self.pump_state = r.PumpState.STOPPED
        self.rate = 35.0
        self.volume = 0.0
        self.rr, self.etco2 = 14.0, 38.0
        self.commands: list[str] = []
        engine.subscribe_commands(self._command)

    def _command(self, command: str) -> None:
        self.commands.append(command)
        if self.obey:  # the pump's next report shows it stopped
            self.pump_state = r.PumpState.STOPPED if command == "stop" else r.PumpState.PAUSED

    def run(self, seconds: int) -> None:
        engine = self.engine
        for i in range(seconds):
            self.clock.advance(1)
            if self.pump_state is r.PumpState.RUNNING:
                self.volume += self.rate / 3600
            engine.submit(r.PumpReading("pump", self.pump_state, rate_ml_h=self.rate, volume_infused_ml=self.volume,
                                        drug="ketamine", concentration_mg_ml=1.0, syringe_ml=50.0), evaluate=False)
            values = {r.Vital.HR: 72.0, r.Vital.SPO2: 98.0, r.Vital.RR: self.rr, r.Vital.ETCO2: self.etco2}
            if i % 300 == 0:
                values |= {r.Vital.SBP: 122.0, r.Vital.DBP: 76.0, r.Vital.MAP: 91.0}
            engine.submit(r.VitalsReading("monitor", values), evaluate=False)
            engine.tick()

    def start(self, **order: Any) -> None:
        """Admitted, checklist answered, ordered, baseline taken, the pump running, started."""
        engine = self.engine
        engine.submit(r.Admit("P-1001", 70.0, 45, "N1", confirm=True))
        engine.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in engine.config.checklist}, "N1"))
        engine.submit(r.SetOrder("ketamine", 1.0, self.rate, "N1", syringe_ml=50.0, confirm=True, **order))
        self.run(30)
        self.pump_state = r.PumpState.RUNNING
        engine.submit(r.StartInfusion("N1", confirm=True))

    def apnoea(self) -> None:
        self.rr, self.etco2 = 0.0, 0.0

    def breathe(self) -> None:
        self.rr, self.etco2 = 14.0, 38.0
