"""A real bed behind the dashboard link: Engine + RuleLoop + DashboardServer, and with ``store``
a real SQLite Store, all in the test's event loop on a short temporary socket path. The rule
loop ticks every ``TICK_S`` of real time so tests can see that it keeps evaluating."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
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
from monitord.store import Store

TICK_S = 0.05
TIMEOUT_S = 15.0


@dataclass
class Bed:
    config: Config
    clock: FakeClock
    engine: Engine
    loop: RuleLoop
    server: DashboardServer
    socket: Path
    store: Store | None
    events: list[Event] = field(default_factory=list)
    evaluations: list[float] = field(default_factory=list)  # loop time of each rule evaluation

    def db(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the bed's SQLite database from outside the store (what is really on disk)."""
        assert self.store is not None
        path = Path(self.config.store.state_dir) / "monitord.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


class Raw:
    """A bare protocol client: what any program on the socket can do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> Raw:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=16 * 1024 * 1024)
        return cls(reader, writer)

    async def recv(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.endswith(b"\n"), "the server closed the link"
        msg: dict[str, Any] = json.loads(line)
        return msg

    async def recv_type(self, kind: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == kind:
                return msg

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def ask(self, **msg: Any) -> dict[str, Any]:
        await self.send(json.dumps(msg).encode() + b"\n")
        return await self.recv_type("reply")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes: keep them short, not under pytest's tmp_path.
    d = Path(tempfile.mkdtemp(prefix="mlink", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_bed(sock_dir: Path, *, store: bool = False, **store_settings: Any) -> AsyncIterator[Bed]:
    socket = sock_dir / "dashboard.sock"
    overrides: dict[str, Any] = {"dashboard": {"socket": str(socket)}, "mqtt": {"enabled": False},
                                 "store": {"state_dir": str(sock_dir / "state"), **store_settings}}
    config = load_config(overrides=overrides)
    clock = FakeClock()
    engine = Engine(config, clock)
    loop = RuleLoop(engine, TICK_S)
    the_store = None
    if store:
        the_store = Store.open(config, clock)
        the_store.recover(engine)
        the_store.attach(engine, loop)
        await the_store.start()
    server = DashboardServer(config, engine, loop, store=the_store)
    bed = Bed(config, clock, engine, loop, server, socket, the_store)
    engine.subscribe(bed.events.append)
    aloop = asyncio.get_running_loop()
    loop.on_evaluated.append(lambda: bed.evaluations.append(aloop.time()))
    task = asyncio.create_task(loop.run())
    await server.start()
    assert server.listening
    try:
        yield bed
    finally:
        await server.stop()
        loop.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if the_store is not None:
            await the_store.stop()


async def until(cond: Any, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def vitals(hr: float = 72, spo2: float = 98) -> r.VitalsReading:
    v = r.Vital
    return r.VitalsReading("monitor", {v.HR: hr, v.SBP: 120, v.DBP: 80, v.MAP: 93, v.SPO2: spo2, v.RR: 14,
                                       v.ETCO2: 38})
