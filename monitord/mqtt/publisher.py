"""Forward one bed to the broker: committed events from the store, live state from the engine.

- ``status`` (retained): "online" on every CONNACK; the retained will says "offline" if the link
  dies; an explicit "offline" is sent before a clean disconnect (the will does not fire then).
- ``events/alarm``, ``vitals``, ``infusion``: read from the store in ``seq`` order, in pages, at
  most ``WINDOW`` unconfirmed at a time, QoS 1. The durable cursor advances only past events
  whose PUBACK paho has confirmed (``on_publish``), so an alarm transition is never lost: after a
  broker outage or a daemon restart the backlog goes out in order, then live data. Readings that
  were already committed when the connection came up are not replayed (they are stale; the store
  keeps them); alarm transitions always are.
- ``state`` and ``alarms`` (retained) come from ``engine.snapshot()`` on the event loop: state
  coalesced to at most one a second, alarms on every change and in full after every connect.
- ``cmd/ack`` (only with ``accept_ack``): an alarm acknowledgement from a listed station.

paho runs its network loop on its own thread; every callback is handed to the event loop with
``call_soon_threadsafe`` and all of this object's state is touched on the event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from monitord.clock import Clock
from monitord.config import Config
from monitord.errors import Refused
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop
from monitord.mqtt import payloads, schemas
from monitord.mqtt import topics as t
from monitord.mqtt.client import describe, make_client
from monitord.readings import Acknowledge, OutputStatus

log = logging.getLogger(__name__)

CURSOR = "mqtt"
PAGE = 200  # events read from the store at once
WINDOW = 100  # forwarded events awaiting PUBACK at most
STATE_MIN_INTERVAL_S = 1.0  # state coalescing
STATE_HEARTBEAT_S = 10.0  # republish state (ages, last-reading times) at least this often
STOP_CONFIRM_S = 2.0  # wait this long for the broker to confirm the "offline" status


class EventStore(Protocol):
    def events_after(self, seq: int, limit: int) -> list[Event]: ...
    def get_cursor(self, name: str) -> int: ...
    def set_cursor(self, name: str, seq: int) -> None: ...
    def add_commit_listener(self, cb: Callable[[int], None]) -> None: ...


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


class MqttPublisher:
    def __init__(self, config: Config, store: EventStore, loop: RuleLoop, clock: Clock) -> None:
        self.config = config
        self.cfg = config.mqtt
        self.store = store
        self.loop = loop
        self.engine = loop.engine
        self.clock = clock
        self.topic = t.Topics(self.cfg.topic_root, config.bed.id)
        self.client_id = self.cfg.client_id or f"monitord-{config.bed.id}"
        self.connected = False
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Forwarding: highest seq taken from the store, and seq -> confirmed, in seq order.
        self._taken = 0
        self._pending: dict[int, bool] = {}
        self._mid_seq: dict[int, int] = {}
        self._cursor = 0
        self._committed = 0  # last committed seq the store told us about
        self._horizon = 0  # readings at or below this seq are backlog: not replayed
        # Live state
        self._state_dirty = True
        self._state_sent_at = float("-inf")
        self._status_sent_at = float("-inf")
        self._alarms_scheduled = False
        self._last_alarms: list[dict[str, Any]] | None = None
        self._last_devices: dict[str, Any] | None = None
        self._reported_ok: bool | None = None
        self.forwarded = 0  # events confirmed by the broker (for tests and diagnostics)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._aloop = asyncio.get_running_loop()
        self._cursor = self._taken = self._committed = self.store.get_cursor(CURSOR)
        self.store.add_commit_listener(self._commit_from_writer)
        self._committed = max(self._committed, self._scan_committed())
        self.engine.subscribe(self._on_engine_event)

        client = make_client(self.cfg, self.client_id)
        client.max_inflight_messages_set(WINDOW + 20)  # ours plus status/state/alarms: never queued by paho
        client.will_set(self.topic(t.STATUS), dumps(self._status(False, "connection lost")), qos=1, retain=True)
        client.on_connect = self._paho_connect
        client.on_connect_fail = self._paho_connect_fail
        client.on_disconnect = self._paho_disconnect
        client.on_publish = self._paho_publish
        client.on_message = self._paho_message
        self._client = client
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        client.loop_start()
        self._tasks = [
            asyncio.create_task(self._forward(), name="mqtt-forward"),
            asyncio.create_task(self._state_loop(), name="mqtt-state"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        client = self._client
        if client is None:
            return
        if self.connected:
            info = client.publish(self.topic(t.STATUS), dumps(self._status(False, "daemon stopped")), qos=1, retain=True)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(info.wait_for_publish, STOP_CONFIRM_S)
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self.connected = False

    # -- paho thread -> event loop --------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if self._aloop is None:
            return
        with contextlib.suppress(RuntimeError):  # the event loop is closed: we are shutting down
            self._aloop.call_soon_threadsafe(fn, *args)

    def _commit_from_writer(self, seq: int) -> None:
        self._post(self._on_commit, seq)

    def _paho_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._post(self._on_link_down, f"broker refused the connection: {reason}")
            return
        if self.cfg.accept_ack:
            client.subscribe(self.topic(t.CMD_ACK), qos=1)
        self._post(self._on_connected)

    def _paho_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._post(self._on_link_down, f"cannot connect to {self.cfg.host}:{self.cfg.port}")

    def _paho_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._post(self._on_link_down, f"disconnected from the broker: {describe(reason)}")

    def _paho_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._post(self._on_puback, mid)

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._post(self._on_command, msg.topic, bytes(msg.payload), bool(msg.retain))

    # -- connection state (event loop) ----------------------------------------------------

    def _report(self, ok: bool, detail: str) -> None:
        if self._reported_ok is ok:
            return
        self._reported_ok = ok
        self.loop.put(OutputStatus("mqtt", ok=ok, detail=detail))

    def _on_connected(self) -> None:
        if self._stopping:
            return
        self.connected = True
        self._horizon = self._committed
        log.info("MQTT connected to %s:%s as %s", self.cfg.host, self.cfg.port, self.client_id)
        self._report(True, "")
        self._last_devices = None
        self._publish_status()
        self._publish_alarms(refresh=True)
        self._publish_state()
        self._wake.set()

    def _on_link_down(self, detail: str) -> None:
        was = self.connected
        self.connected = False
        if self._stopping:
            return
        if was:
            log.warning("MQTT link lost: %s", detail)
        self._report(False, detail)

    # -- forwarding from the store ----------------------------------------------------------

    def _scan_committed(self) -> int:
        """The last seq already in the store (read in pages; nothing kept)."""
        last = self._cursor
        while page := self.store.events_after(last, PAGE):
            last = page[-1].seq
        return last

    def _on_commit(self, seq: int) -> None:
        self._committed = max(self._committed, seq)
        self._wake.set()

    async def _forward(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._forward_some()
            except Exception:  # the store had trouble: it reports its own health; retry on the next wake
                log.exception("MQTT forwarding failed at seq %d", self._taken)
                await asyncio.sleep(1.0)
                self._wake.set()

    def _forward_some(self) -> None:
        while self.connected and not self._stopping:
            room = WINDOW - (len(self._pending) - sum(self._pending.values()))
            if room <= 0:
                return  # the next PUBACK wakes us
            events = self.store.events_after(self._taken, min(PAGE, room))
            for ev in events:
                self._send(ev)
            self._advance()
            if len(events) < min(PAGE, room):
                return

    def _send(self, ev: Event) -> None:
        assert self._client is not None
        route = payloads.FORWARDED.get(ev.kind)
        is_reading = ev.kind in (EventKind.VITALS, EventKind.INFUSION)
        if ev.bed_id != self.config.bed.id or route is None or (is_reading and ev.seq <= self._horizon):
            self._pending[ev.seq] = True  # nothing to send: passes as soon as everything before it has
        else:
            leaf, build, _schema = route
            info = self._client.publish(self.topic(leaf), dumps(build(ev)), qos=1)
            self._pending[ev.seq] = False
            self._mid_seq[info.mid] = ev.seq
        self._taken = ev.seq

    def _on_puback(self, mid: int) -> None:
        seq = self._mid_seq.pop(mid, None)
        if seq is None:
            return  # status, state or alarms
        self._pending[seq] = True
        self.forwarded += 1
        self._advance()
        self._wake.set()

    def _advance(self) -> None:
        """Move the durable cursor past every confirmed event with nothing unconfirmed before it."""
        cursor = self._cursor
        while self._pending:
            first = next(iter(self._pending))
            if not self._pending[first]:
                break
            del self._pending[first]
            cursor = first
        if cursor != self._cursor:
            self._cursor = cursor
            self.store.set_cursor(CURSOR, cursor)

    # -- live state -----------------------------------------------------------------------

    def _on_engine_event(self, event: Event) -> None:
        # Called inside engine.submit: snapshot only once the engine has settled.
        self._state_dirty = True
        if event.kind is EventKind.ALARM and not self._alarms_scheduled and self._aloop is not None:
            self._alarms_scheduled = True
            self._aloop.call_soon(self._publish_alarms)

    async def _state_loop(self) -> None:
        aloop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(STATE_MIN_INTERVAL_S)
            if not self.connected:
                continue
            try:
                if self._state_dirty or aloop.time() - self._state_sent_at >= STATE_HEARTBEAT_S:
                    self._publish_state()
                self._publish_status(only_if_changed=True)
            except Exception:
                log.exception("MQTT state publication failed")

    def _publish(self, leaf: str, payload: dict[str, Any], retain: bool = True) -> None:
        if self._client is not None and self.connected:
            self._client.publish(self.topic(leaf), dumps(payload), qos=1, retain=retain)

    def _status(self, online: bool, reason: str = "", devices: dict[str, Any] | None = None) -> dict[str, Any]:
        return payloads.status(self.config.bed.id, online, self.clock.utc_now(), devices, reason)

    def _publish_status(self, only_if_changed: bool = False) -> None:
        """Birth (on connect), then again when a device link changes or every heartbeat."""
        now_loop = asyncio.get_running_loop().time()
        devices = payloads.devices_from_snapshot(self.engine.snapshot(), self.clock.utc_now())
        links = {k: v["link"] for k, v in devices.items()}
        last_links = {k: v["link"] for k, v in (self._last_devices or {}).items()}
        if only_if_changed and links == last_links and now_loop - self._status_sent_at < STATE_HEARTBEAT_S:
            return
        self._last_devices = devices
        self._status_sent_at = now_loop
        self._publish(t.STATUS, self._status(True, "", devices))

    def _publish_state(self) -> None:
        self._state_dirty = False
        self._state_sent_at = asyncio.get_running_loop().time()
        self._publish(t.STATE, payloads.state(self.engine.snapshot()))

    def _publish_alarms(self, refresh: bool = False) -> None:
        self._alarms_scheduled = False
        snap = self.engine.snapshot()
        current = snap.get("alarms", [])
        if not refresh and current == self._last_alarms:
            return
        if not self.connected:
            return  # sent in full on the next connect
        self._last_alarms = current
        self._publish(t.ALARMS, payloads.alarms(snap, self.engine.alarms.alarm_seq, refresh))

    # -- the one command: acknowledge, from an authorised central station -------------------

    def _on_command(self, topic: str, raw: bytes, retained: bool) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            self._refuse(topic, None, "payload is not JSON")
            return
        if topic != self.topic(t.CMD_ACK):
            self._refuse(topic, payload, "not a command this bed accepts")
            return
        if not self.cfg.accept_ack:
            self._refuse(topic, payload, "acknowledgement from central stations is disabled")
            return
        if retained:
            self._refuse(topic, payload, "retained command (commands must not be retained)")
            return
        problems = schemas.errors("cmd-ack", payload)
        if problems:
            self._refuse(topic, payload, "invalid command: " + "; ".join(problems))
            return
        ack = payloads.parse_ack(payload)
        if ack.station not in self.cfg.ack_stations:
            self._refuse(topic, payload, f"station '{ack.station}' is not authorised to acknowledge")
            return
        task = asyncio.get_running_loop().create_task(self._apply_ack(ack))
        self._tasks.append(task)
        task.add_done_callback(lambda done: self._tasks.remove(done) if done in self._tasks else None)

    async def _apply_ack(self, ack: payloads.AckCommand) -> None:
        actor = f"central:{ack.station}:{ack.user}"
        try:
            await self.loop.command(Acknowledge(ack.rule_id, actor=actor))
            log.info("alarm %s acknowledged by %s", ack.rule_id, actor)
        except Refused as exc:  # the engine recorded it as a rejected event
            log.warning("acknowledgement of %s by %s refused: %s", ack.rule_id, actor, exc)

    def _refuse(self, topic: str, payload: Any, reason: str) -> None:
        station = payload.get("station") if isinstance(payload, dict) else None
        user = payload.get("user") if isinstance(payload, dict) else None
        rule_id = payload.get("rule_id") if isinstance(payload, dict) else None
        log.warning("refused MQTT command on %s from station %r user %r: %s", topic, station, user, reason)
        self.engine.record_system(
            "mqtt_command_refused",
            topic=topic,
            station=station if isinstance(station, str) else None,
            user=user if isinstance(user, str) else None,
            rule_id=rule_id if isinstance(rule_id, str) else None,
            reason=reason,
        )
