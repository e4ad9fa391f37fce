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


def make_config(socket: Path, care_area: str | None = None) -> Config:
    overrides: dict[str, Any] = {"dashboard": {"socket": str(socket)}, "mqtt": {"enabled": False}}
    if care_area:
        overrides["bed"] = {"care_area": care_area}
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


@contextlib.asynccontextmanager
async def running_bed(sock_dir: Path, care_area: str | None = None) -> AsyncIterator[Bed]:
    socket = sock_dir / "run" / "dashboard.sock"  # the parent is created by the server
    config = make_config(socket, care_area)
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
