"""Fixtures for the MQTT feed: a real mosquitto per test and a bed (engine, rule loop, store,
publisher) wired as the daemon wires it."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitord.clock import FakeClock
from monitord.config import Config, load_config
from monitord.engine import Engine
from monitord.events import Event
from monitord.loop import RuleLoop
from monitord.mqtt.publisher import MqttPublisher
from monitord.readings import (
    Admit,
    ChecklistAnswers,
    DeviceAlarm,
    DeviceAlarmCode,
    DeviceRole,
    PumpReading,
    PumpState,
    SetOrder,
    StartInfusion,
)
from monitord.store import Store
from tests.mqtt.broker import Mosquitto
from tests.mqtt.support import Subscriber, until

ROOT = "monitord/v1"


def bed_config(port: int, bed_id: str = "bed-7", state_dir: str | None = None, more: dict[str, Any] | None = None,
               **mqtt: Any) -> Config:
    """A bed on the test broker; its SQLite store in a fresh temporary directory unless given.
    ``more``: further top-level config tables (``devices``, ``interlock``...)."""
    state_dir = state_dir or tempfile.mkdtemp(prefix="monitord-mqtt-")
    return load_config(overrides={
        "bed": {"id": bed_id, "care_area": "monitored-unit"},
        "store": {"state_dir": state_dir, "flush_interval_s": 0.05},
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_root": ROOT, "keepalive_s": 5, **mqtt},
        **(more or {}),
    })


# A pump whose driver may be sent stop commands, and the interlock on, triggered by the pump's
# own device fault (a HIGH alarm a test raises at once with ``Bed.fault``).
PUMP = {"driver": "modbus", "serial": {"port": "sim"}, "timeout_s": 600, "allow_stop_commands": True}
INTERLOCK = {"devices": {"pump": PUMP}, "interlock": {"enabled": True, "triggers": ["tech.pump.device_fault"]}}


class Bed:
    """One bed as the daemon composes it: engine, rule loop, the real store (SQLite), publisher.
    A second ``Bed`` on the same config is the daemon restarted: the store recovers the bed."""

    def __init__(self, config: Config, clock: FakeClock | None = None) -> None:
        self.config = config
        self.clock = clock or FakeClock()
        self.engine = Engine(config, self.clock)
        self.store = Store.open(config, self.clock)
        self.store.recover(self.engine)
        self.loop = RuleLoop(self.engine, tick_s=0.05)
        self.store.attach(self.engine, self.loop)
        self.publisher = MqttPublisher(config, self.store, self.loop, self.clock)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self, wait_connected: bool = True, publish: bool = True) -> Bed:
        self._task = asyncio.create_task(self.loop.run())
        await self.store.start()
        if publish:
            await self.start_publisher(wait_connected)
        return self

    async def start_publisher(self, wait_connected: bool = True) -> None:
        await self.publisher.start()
        if wait_connected:
            await until(lambda: self.publisher.connected, what="publisher connected")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.publisher.stop()
        self.loop.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.stop()

    def events(self) -> list[Event]:
        return self.store.events_after(0, 1_000_000)

    def fault(self, on: bool = True) -> None:
        """The pump reports a device fault (a high-priority technical alarm, raised at once) or clears it."""
        self.loop.put(DeviceAlarm("pump", DeviceRole.PUMP, frozenset({DeviceAlarmCode.DEVICE_FAULT} if on else ()),
                                  "fault 12" if on else ""))

    def active(self) -> set[str]:
        return {a.rule.id for a in self.engine.alarms.active()}

    def topic(self, leaf: str) -> str:
        return f"{ROOT}/{self.config.bed.id}/{leaf}"

    def obey_stop_commands(self) -> None:
        """The pump does what the interlock asks: its next report shows it stopped."""
        def obey(command: str) -> None:
            self.loop.put(PumpReading("pump", PumpState.STOPPED if command == "stop" else PumpState.PAUSED,
                                      rate_ml_h=0.0, drug="ketamine", concentration_mg_ml=1.0))
        self.engine.subscribe_commands(obey)

    async def start_course(self, planned_duration_min: float | None = None) -> None:
        """Admit, order (1 mg/mL at 10 mL/h), answer the checklist, start; the pump reports running."""
        await self.loop.command(Admit("P-001", 70, 45, actor="n1"))
        await self.loop.command(SetOrder("ketamine", 1.0, 10.0, actor="n1", planned_duration_min=planned_duration_min))
        await self.loop.command(ChecklistAnswers({c.id: c.kind == "prompt" for c in self.engine.config.checklist},
                                                 "n1"))
        await self.loop.command(StartInfusion(actor="n1"))
        self.loop.put(PumpReading("pump", PumpState.RUNNING, rate_ml_h=10.0, volume_infused_ml=0.0, drug="ketamine",
                                  concentration_mg_ml=1.0))

    async def settled(self) -> None:
        """Wait until the rule loop has judged everything queued so far at the clock's current time
        (two evaluations after this call, nothing left in its queue)."""
        count = [0]

        def evaluated() -> None:
            count[0] += 1

        self.loop.on_evaluated.append(evaluated)
        try:
            await until(lambda: count[0] >= 2 and self.loop._queue.empty(), what="the rule loop caught up")
        finally:
            self.loop.on_evaluated.remove(evaluated)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
async def bed(broker: Mosquitto) -> AsyncIterator[Bed]:
    b = await Bed(bed_config(broker.port)).start()
    yield b
    await b.stop()


@pytest.fixture
def subscriber(broker: Mosquitto) -> Iterator[Subscriber]:
    s = Subscriber(broker.port, f"{ROOT}/#")
    yield s
    s.close()
