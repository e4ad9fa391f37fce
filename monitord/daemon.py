"""The daemon: drivers -> rule loop (engine) -> store -> MQTT and the dashboard link.

``run_daemon`` composes the parts for one bed and runs until cancelled, signalled or ``stop``
is set. Order matters: the state directory is locked (one daemon per store), the store opens
(and migrates) and restores the bed, so every event after a restart continues the stored
sequence; MQTT forwards from the store, never from memory.

Only the local store is needed to monitor. The optional outputs (MQTT, the dashboard link)
never hold up or stop monitoring: one that cannot start is reported as an output fault (its
technical alarm, ``tech.mqtt_failed`` / ``tech.dashboard_failed``) and retried in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from monitord import memory
from monitord.clock import Clock, SystemClock
from monitord.config import Config
from monitord.engine import Engine
from monitord.errors import StartupError
from monitord.events import Event, EventKind
from monitord.logs import REPEAT_WINDOW_S, alarm_level, flush_repeats
from monitord.loop import RuleLoop
from monitord.readings import DeviceRole, OutputStatus, TreatmentCount
from monitord.statelock import StateDirLock

log = logging.getLogger(__name__)
alarm_log = logging.getLogger("monitord.alarm")

# An output that failed to start is tried again after RETRY_MIN_S, doubling up to RETRY_MAX_S:
# soon enough that a broker or socket directory fixed by hand is picked up within a minute,
# rare enough that a permanent fault costs nothing.
RETRY_MIN_S = 5.0
RETRY_MAX_S = 60.0


def log_alarm(event: Event) -> None:
    """Engine subscriber: every alarm transition to the log, at its priority's level."""
    if event.kind is not EventKind.ALARM:
        return
    d = event.data
    priority, transition = str(d.get("priority", "")), str(d.get("transition", ""))
    alarm_log.log(alarm_level(transition, priority), "%s alarm %s %s: %s (alarm_seq %s, %s)",
                  priority.upper(), d.get("rule_id"), transition, d.get("message"), d.get("alarm_seq"),
                  d.get("actor"), extra={"throttle": False})


async def run_daemon(config: Config, clock: Clock | None = None, stop: asyncio.Event | None = None) -> None:
    """Run one bed until SIGTERM/SIGINT or ``stop``. Raises ``StartupError`` (exit code 2) when
    the state directory is held by another daemon or the local database cannot be opened."""
    memory.limit_arenas()  # before the store writer and MQTT threads start
    lock = StateDirLock(config.store.state_dir)
    lock.acquire()
    try:
        await _run(config, clock or SystemClock(), stop or asyncio.Event())
    finally:
        lock.release()


def _open_store(config: Config, clock: Clock) -> Any:
    from monitord.store import Store

    try:
        return Store.open(config, clock)
    except Exception as exc:
        if config.store.url:
            # A remote database may come back: exit 1 so that systemd restarts us (RestartSec=).
            log.critical("cannot open the database %s: %s; exiting for systemd to retry", _safe_url(config.store.url),
                         exc)
            raise SystemExit(1) from None
        raise StartupError(
            f"cannot open the local database in {config.store.state_dir}: {exc}. The directory must be "
            "writable by the service user and hold a usable monitord.db (monitord doctor checks both)"
        ) from None


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(the configured url)"


async def _run(config: Config, clock: Clock, stop: asyncio.Event) -> None:
    from monitord.drivers import build_drivers
    from monitord.link.server import DashboardServer
    from monitord.notify import Watchdog

    if config.mqtt.enabled:
        # Imported now, before monitoring starts: importing it from the task that starts MQTT
        # would hold the running rule loop for tens of milliseconds.
        import monitord.mqtt.publisher  # noqa: F401

    for note in config.notes:
        log.log(logging.WARNING if note.startswith("DISABLED") else logging.INFO, "configuration: %s", note)
    engine = Engine(config, clock)
    loop = RuleLoop(engine, config.watchdog.tick_s)
    try:
        drivers = build_drivers(config.devices, loop.put)
    except Exception as exc:  # a device setting the config schema cannot see (a bad register map)
        raise StartupError(f"cannot set up the device drivers: {exc}") from None
    store = _open_store(config, clock)
    store.recover(engine)  # restores the open session, records the downtime
    store.attach(engine, loop)  # subscribes before any new event; reports its health to the loop
    engine.subscribe(log_alarm)  # after the store: an alarm is queued for storage before it is logged

    background: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        background.add(task)
        task.add_done_callback(background.discard)

    async def count_treatments(patient_id: str) -> None:
        try:
            count = await asyncio.to_thread(store.treatment_count, patient_id)
            last_weight = await asyncio.to_thread(store.last_weight_kg, patient_id)
            loop.put(TreatmentCount(count, last_weight))
        except Exception:  # the course rule then stays silent; the store reports its own health
            log.exception("treatment count for %s failed", patient_id)

    def on_event(event: Event) -> None:
        # The registry is on disk: look it up off the rule loop, then feed the count back in.
        if event.kind is EventKind.SESSION and event.data.get("action") == "admitted":
            spawn(count_treatments(event.data["patient"]["id"]), "treatment-count")

    engine.subscribe(on_event)

    # The interlock's stop: the engine asks, the pump driver sends it off the rule loop, and the
    # engine believes only the pump's next reports (a failed send shows as "not confirmed").
    stoppable = [d for d in drivers if d.role is DeviceRole.PUMP and hasattr(d, "send_command")]

    def on_command(command: str) -> None:
        if not stoppable:
            log.error("interlock asked to %s the pump, but no pump driver can send commands", command)
            return
        for d in stoppable:
            spawn(send_pump_command(d, command), f"pump-{command}")

    engine.subscribe_commands(on_command)

    watchdog = Watchdog(engine, clock, config)
    loop.on_evaluated.append(watchdog.evaluated)
    memory.settle()  # the start-up garbage, before anything runs on the loop that it would hold up
    rule_loop = asyncio.create_task(loop.run(), name="rule-loop")
    parts: list[Any] = []
    driver_tasks: list[asyncio.Task[None]] = []
    aloop = asyncio.get_running_loop()
    # Before READY=1 and the first await: a stop asked for during start-up is a clean stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            aloop.add_signal_handler(sig, stop.set)
    try:
        await store.start()
        parts.append(store)
        dashboard = DashboardServer(config, engine, loop, store=store)  # entries answered once stored
        parts.append(dashboard)
        await dashboard.start()  # reports its own failure as an output fault
        if not dashboard.listening:
            spawn(_retry_dashboard(dashboard), "dashboard-retry")
        if config.mqtt.enabled:
            spawn(_start_mqtt(config, store, loop, clock, parts), "mqtt-start")
        driver_tasks += [asyncio.create_task(d.run(), name=f"driver-{d.name}") for d in drivers]
        spawn(_flush_log_repeats(), "log-repeats")
        engine.record_system("started", devices=[d.name for d in drivers])
        watchdog.ready()
        log.info("monitoring bed %s (%s)", config.bed.id, config.bed.care_area.value)
        await stop.wait()
    finally:
        watchdog.stopping()
        for d in drivers:
            d.stop()
        for t in [*driver_tasks, *background]:
            t.cancel()
        engine.record_system("stopping")
        for part in reversed(parts):
            with contextlib.suppress(Exception):
                await part.stop()
        loop.stop()
        rule_loop.cancel()
        await asyncio.gather(rule_loop, *driver_tasks, *background, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                aloop.remove_signal_handler(sig)
        flush_repeats(everything=True)


async def send_pump_command(driver: Any, command: str) -> None:
    """Send the interlock's command to a pump driver; a failure is logged (the engine sees it as
    an unconfirmed stop, from the pump's own reports)."""
    from monitord.drivers.pump_map import PumpCommand

    try:
        await driver.send_command(PumpCommand(command))
        log.warning("interlock: %s sent to pump %s", command, driver.name)
    except Exception as exc:
        log.error("interlock: %s to pump %s failed: %s", command, driver.name, exc)


async def _retry_dashboard(server: Any) -> None:
    """Open the dashboard socket again until it works (it reports each failure itself)."""
    delay = RETRY_MIN_S
    while not server.listening:
        await asyncio.sleep(delay)
        delay = min(2 * delay, RETRY_MAX_S)
        await server.start()
    log.info("dashboard link available after a failed start")


async def _start_mqtt(config: Config, store: Any, loop: RuleLoop, clock: Clock, parts: list[Any]) -> None:
    """Start the MQTT publisher once its client can be built; until then report the fault.

    Building the client loads the TLS files (CA, certificate, key): missing or unreadable ones
    are the faults that keep it from starting, so they are checked, and retried, before the
    publisher subscribes to anything. A broker that cannot be reached is the publisher's own
    business: paho reconnects, and the publisher reports the link as an output fault meanwhile.
    """
    from monitord.mqtt.client import make_client
    from monitord.mqtt.publisher import MqttPublisher

    delay = RETRY_MIN_S
    while True:
        try:
            make_client(config.mqtt, f"monitord-{config.bed.id}-check")
            break
        except Exception as exc:
            detail = f"cannot set up the MQTT client: {exc}"
            log.error("%s; retrying in %.0f s", detail, delay)
            loop.put(OutputStatus("mqtt", False, detail[:200]))
        await asyncio.sleep(delay)
        delay = min(2 * delay, RETRY_MAX_S)
    publisher = MqttPublisher(config, store, loop, clock)
    parts.insert(1, publisher)  # after the store in the list: stopped after the dashboard, before the store
    try:
        await publisher.start()
    except Exception as exc:
        log.exception("MQTT publisher failed to start")
        loop.put(OutputStatus("mqtt", False, f"publisher failed to start: {exc}"[:200]))


async def _flush_log_repeats() -> None:
    while True:
        await asyncio.sleep(REPEAT_WINDOW_S)
        flush_repeats()
