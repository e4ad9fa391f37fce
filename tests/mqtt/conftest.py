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
from monitord.readings import DeviceAlarm, DeviceAlarmCode, DeviceRole
from monitord.store import Store
from tests.mqtt.broker import Mosquitto
from tests.mqtt.support import Subscriber, until

ROOT = "monitord/v1"


def bed_config(port: int, bed_id: str = "bed-7", state_dir: str | None = None, **mqtt: Any) -> Config:
    """A bed on the test broker; its SQLite store in a fresh temporary directory unless given."""
    state_dir = state_dir or tempfile.mkdtemp(prefix="monitord-mqtt-")
    return load_config(overrides={
        "bed": {"id": bed_id, "care_area": "monitored-unit"},
        "store": {"state_dir": state_dir, "flush_interval_s": 0.05},
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_root": ROOT, "keepalive_s": 5, **mqtt},
    })


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
