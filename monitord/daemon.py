"""The daemon: drivers -> rule loop (engine) -> store -> MQTT and the dashboard link.

``run_daemon`` composes the parts for one bed and runs until cancelled or signalled.
Order matters: the store opens (and migrates) first and restores the bed, so every event after
a restart continues the stored sequence; MQTT forwards from the store, never from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from monitord.clock import Clock, SystemClock
from monitord.config import Config
from monitord.engine import Engine
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop
from monitord.readings import TreatmentCount

log = logging.getLogger(__name__)


async def run_daemon(config: Config, clock: Clock | None = None) -> None:
    from drivers import build_drivers
    from monitord.link.server import DashboardServer
    from monitord.notify import Watchdog
    from monitord.store import Store

    clock = clock or SystemClock()
    engine = Engine(config, clock)
    store = Store.open(config, clock)
    store.recover(engine)  # restores the open session, records the downtime
    loop = RuleLoop(engine, config.watchdog.tick_s)
    store.attach(engine, loop)  # subscribes before any new event; reports its health to the loop

    lookups: set[asyncio.Task[None]] = set()

    async def count_treatments(patient_id: str) -> None:
        try:
            loop.put(TreatmentCount(await asyncio.to_thread(store.treatment_count, patient_id)))
        except Exception:  # the course rule then stays silent; the store reports its own health
            log.exception("treatment count for %s failed", patient_id)

    def on_event(event: Event) -> None:
        # The registry is on disk: look it up off the rule loop, then feed the count back in.
        if event.kind is EventKind.SESSION and event.data.get("action") == "admitted":
            task = asyncio.create_task(count_treatments(event.data["patient"]["id"]))
            lookups.add(task)
            task.add_done_callback(lookups.discard)

    engine.subscribe(on_event)

    parts: list[Any] = [store]
    if config.mqtt.enabled:
        from monitord.mqtt.publisher import MqttPublisher

        parts.append(MqttPublisher(config, store, loop, clock))
    parts.append(DashboardServer(config, engine, loop))
    watchdog = Watchdog(engine, clock, config)
    loop.on_evaluated.append(watchdog.evaluated)

    drivers = build_drivers(config.devices, loop.put)
    tasks = [asyncio.create_task(loop.run(), name="rule-loop")]
    for part in parts:
        await part.start()
    tasks += [asyncio.create_task(d.run(), name=f"driver-{d.name}") for d in drivers]
    engine.record_system("started", devices=[d.name for d in drivers])
    watchdog.ready()

    stop = asyncio.Event()
    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            aloop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watchdog.stopping()
        for d in drivers:
            d.stop()
        for t in tasks[1:]:
            t.cancel()
        engine.record_system("stopping")
        for part in reversed(parts):
            with contextlib.suppress(Exception):
                await part.stop()
        loop.stop()
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
