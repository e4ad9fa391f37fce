"""Forward one bed to the broker: committed events, and the live state from the engine.

- ``status`` (retained): "online" on every CONNACK; the retained will says "offline" if the link
  dies; an explicit "offline" is sent before a clean disconnect (the will does not fire then).
- ``events/alarm``, ``vitals``, ``infusion``: in ``seq`` order, QoS 1, at most ``WINDOW``
  unconfirmed at a time, and only once the store has committed them (stored before published).
  The publisher keeps the engine's events in memory (at most ``MEMORY_MAX``) and sends them when
  the writer reports their commit, from the writer's thread right after it (paho's ``publish`` is
  thread-safe): an alarm transition does not wait for the event loop as well. Nothing is read back. Only what is not in memory is read from
  the store, in pages: the backlog of an earlier run, or what was shed during a long outage.
- The cursor (the last seq below which the broker has confirmed everything, ``on_publish``) is
  saved at most every ``CURSOR_SAVE_S`` and at stop, never on the event loop: on the writer's
  thread right after one of its commits, or in a worker thread when the writer is idle. After a
  restart forwarding resumes from the saved cursor: alarm transitions confirmed after it are sent
  again (identical, same ``seq``/``alarm_seq``), none is lost. Readings that were already
  committed when the connection came up are not replayed (they are stale; the store keeps them).
- ``state`` and ``alarms`` (retained) come from ``engine.snapshot()`` on the event loop: state
  coalesced to at most one a second, alarms on every change and in full after every connect.
- ``events/interlock``, ``events/observation``: forwarded like alarm transitions (never dropped).
- ``cmd/#``: every command is judged on paho's thread by ``monitord.mqtt.commands`` (size, rate,
  parsing, checks) before the event loop sees it; the only one applied is ``cmd/ack`` (only with
  ``accept_ack``, from a listed station). Every other command is refused and audited.
- ``receipt`` (only with ``expect_receipts``): central stations confirm the alarm transitions they
  showed; judged by the same gate and put into the rule loop as ``CentralReceipt``.

paho runs its network loop on its own thread; every callback is handed to the event loop with
``call_soon_threadsafe``. The forwarding state (what is kept, taken, unconfirmed, the cursor) is
changed under ``_fwd``, by the event loop and by the store's writer thread after a commit; the
rest of this object's state is changed on the event loop only (the cursor savers hold
``_cursor_lock`` for what they change).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from monitord.clock import Clock
from monitord.config import Config
from monitord.errors import Refused
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop
from monitord.mqtt import payloads
from monitord.mqtt import topics as t
from monitord.mqtt.client import describe, make_client
from monitord.mqtt.commands import MAX_BYTES, REPORT_EVERY_S, CommandGate, Refusal
from monitord.readings import Acknowledge, CentralReceipt, OutputStatus

log = logging.getLogger(__name__)

CURSOR = "mqtt"
PAGE = 200  # events read from the store at once
WINDOW = 100  # forwarded events awaiting PUBACK at most
MEMORY_MAX = 2_000  # events held for forwarding (~15 min of readings offline); older: from the store
CURSOR_SAVE_S = 2.0  # the cursor is saved at most this often: a restart resends at most this much
STATE_MIN_INTERVAL_S = 1.0  # state coalescing
STATE_HEARTBEAT_S = 10.0  # republish state (ages, last-reading times) at least this often
STOP_CONFIRM_S = 2.0  # wait this long for the broker to confirm the "offline" status
READINGS = (EventKind.VITALS, EventKind.INFUSION)


class EventStore(Protocol):
    @property
    def committed_seq(self) -> int: ...
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
        self.subscribed = False  # the broker confirmed the subscriptions of this connection
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Forwarding. Every event up to _taken was sent or needs no sending; _unconfirmed holds
        # the seqs sent and not yet confirmed (in seq order), _mid_seq maps paho's mids to them.
        self._taken = 0
        self._unconfirmed: dict[int, int] = {}
        self._mid_seq: dict[int, int] = {}
        self._buffer: deque[Event] = deque()  # forwardable events after _store_until, not yet taken
        self._store_until = 0  # events up to this seq are not in memory: read from the store
        self._cursor = 0
        self._saved_cursor = 0
        self._saved_at = float("-inf")
        self._last_commit_at = float("-inf")
        self._cursor_lock = threading.Lock()
        self._committed = 0  # last committed seq the store told us about
        self._horizon = 0  # readings at or below this seq are backlog: not replayed
        self._reading_store = False
        self._kept = 0  # the highest seq the engine has handed us (kept or not)
        self._fwd = threading.RLock()  # the forwarding state: event loop and the writer's thread
        # Commands
        self.gate = CommandGate(self.topic(t.CMD_ACK), self.cfg.accept_ack, frozenset(self.cfg.ack_stations),
                                self.topic(t.RECEIPT) if self.cfg.expect_receipts else None)
        self.receipts = 0  # receipts passed to the rule loop (for tests and diagnostics)
        self._dropped_reported_at = float("-inf")
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
        saved = await asyncio.to_thread(self.store.get_cursor, CURSOR)
        self._cursor = self._saved_cursor = self._taken = saved
        self.store.add_commit_listener(self._commit_from_writer)  # first: no commit goes unheard
        self._committed = max(saved, self.store.committed_seq)
        # Events so far are in the store (or on their way): read from there; later ones are kept.
        self._store_until = self.engine.seq
        self.engine.subscribe(self._on_engine_event)

        client = make_client(self.cfg, self.client_id)
        client.max_inflight_messages_set(WINDOW + 20)  # ours plus status/state/alarms: never queued by paho
        client.will_set(self.topic(t.STATUS), dumps(self._status(False, "connection lost")), qos=1, retain=True)
        client.on_connect = self._paho_connect
        client.on_connect_fail = self._paho_connect_fail
        client.on_disconnect = self._paho_disconnect
        client.on_publish = self._paho_publish
        client.on_message = self._paho_message
        client.on_subscribe = self._paho_subscribe
        self._client = client
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        client.loop_start()
        self._tasks = [
            asyncio.create_task(self._forward(), name="mqtt-forward"),
            asyncio.create_task(self._state_loop(), name="mqtt-state"),
            asyncio.create_task(self._cursor_loop(), name="mqtt-cursor"),
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
        self._report_dropped(force=True)
        await self._save_cursor()

    # -- paho thread -> event loop --------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        if self._aloop is None:
            return
        with contextlib.suppress(RuntimeError):  # the event loop is closed: we are shutting down
            self._aloop.call_soon_threadsafe(fn, *args)

    def _commit_from_writer(self, seq: int) -> None:
        """On the store's writer thread, right after a commit: send what memory holds of it now.
        What needs the store (a backlog) or was committed before the engine handed it to us
        goes through the event loop."""
        self._last_commit_at = time.monotonic()
        with self._fwd:
            self._committed = max(self._committed, seq)
            here = self._kept >= seq and not self._reading_store and self._taken >= self._store_until
            if here:
                self._forward_from_memory()
        if not here:
            self._post(self._on_commit, seq)
        # Saved here, between the writer's own transactions, the cursor never competes with them.
        if self._cursor > self._saved_cursor and self._last_commit_at - self._saved_at >= CURSOR_SAVE_S:
            try:
                self._write_cursor(self._cursor)
            except Exception:  # the store reports its own health; the next commit retries
                log.exception("saving the MQTT cursor failed")

    def _paho_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._post(self._on_link_down, f"broker refused the connection: {reason}")
            return
        # Every command topic, accepted or not: what is refused is audited (an attempt to release
        # the interlock over MQTT included).
        subscriptions = [(self.topic(t.CMD_ALL), 1)]
        if self.gate.receipt_topic is not None:
            subscriptions.append((self.gate.receipt_topic, 1))
        client.subscribe(subscriptions)
        self._post(self._on_connected)

    def _paho_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        refused = [str(r) for r in reasons or () if getattr(r, "is_failure", False)]
        if refused:  # commands and receipts will not arrive; without receipts the bed alarms by itself
            log.warning("broker refused the command/receipt subscriptions: %s", ", ".join(refused))
            return
        self._post(self._on_subscribed)

    def _paho_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._post(self._on_link_down, f"cannot connect to {self.cfg.host}:{self.cfg.port}")

    def _paho_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._post(self._on_link_down, f"disconnected from the broker: {describe(reason)}")

    def _paho_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._post(self._on_puback, mid)

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Judged here, on paho's thread: a flood or a huge payload never reaches the event loop.
        try:
            verdict = self.gate.judge(msg.topic, msg.payload, bool(msg.retain))
        except Exception:  # a bug in judging must not kill paho's thread
            log.exception("MQTT command on %s could not be judged", msg.topic[:128])
            return
        if isinstance(verdict, Refusal):
            self._post(self._refuse, verdict)
        elif isinstance(verdict, CentralReceipt):
            self._post(self._on_receipt, verdict)
        elif verdict is not None:
            self._post(self._on_ack, verdict)

    # -- connection state (event loop) ----------------------------------------------------

    def _report(self, ok: bool, detail: str) -> None:
        if self._reported_ok is ok:
            return
        self._reported_ok = ok
        self.loop.put(OutputStatus("mqtt", ok=ok, detail=detail))

    def _on_connected(self) -> None:
        if self._stopping:
            return
        with self._fwd:
            self.connected = True
            self._horizon = self._committed
        log.info("MQTT connected to %s:%s as %s", self.cfg.host, self.cfg.port, self.client_id)
        self._report(True, "")
        self._last_devices = None
        self._publish_status()
        self._publish_alarms(refresh=True)
        self._publish_state()
        self._wake.set()

    def _on_subscribed(self) -> None:
        self.subscribed = self.connected

    def _on_link_down(self, detail: str) -> None:
        was = self.connected
        with self._fwd:
            self.connected = self.subscribed = False
        if self._stopping:
            return
        if was:
            log.warning("MQTT link lost: %s", detail)
        self._report(False, detail)

    # -- forwarding: from memory once committed, from the store what memory does not hold ---

    def _on_commit(self, seq: int) -> None:
        with self._fwd:
            self._committed = max(self._committed, seq)
            self._pump()

    def _pump(self) -> None:
        """Send what can go now; a store read is left to the forwarding task (event loop)."""
        with self._fwd:
            if self._taken < self._store_until:
                self._wake.set()
            else:
                self._forward_from_memory()

    async def _forward(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                while self._backlog_to_read():
                    if not await self._forward_from_store():
                        break
                with self._fwd:
                    self._forward_from_memory()
            except Exception:  # the store had trouble: it reports its own health; retry on the next wake
                log.exception("MQTT forwarding failed at seq %d", self._taken)
                await asyncio.sleep(1.0)
                self._wake.set()

    def _backlog_to_read(self) -> bool:
        with self._fwd:
            return self._room() > 0 and self._taken < min(self._store_until, self._committed)

    def _room(self) -> int:
        if not self.connected or self._stopping:
            return 0
        return WINDOW - len(self._unconfirmed)

    async def _forward_from_store(self) -> bool:
        """Send one page of stored events up to ``_store_until``; False if nothing could be sent."""
        with self._fwd:
            n = min(PAGE, self._room())
            taken = self._taken
            self._reading_store = True
        try:
            events = await asyncio.to_thread(self.store.events_after, taken, n)
        finally:
            with self._fwd:
                self._reading_store = False
        with self._fwd:
            if self._room() < len(events) or self._taken != taken:
                return False  # the link dropped meanwhile: read again once it is back
            limit = min(self._store_until, self._committed)
            for ev in events:
                if ev.seq > limit:
                    break
                self._send(ev)
            if len(events) < n or (events and events[-1].seq > limit):
                self._taken = max(self._taken, limit)  # nothing else stored up to the limit
            while self._buffer and self._buffer[0].seq <= self._taken:
                self._buffer.popleft()
            self._advance()
            return True

    def _forward_from_memory(self) -> None:
        if self._reading_store or self._taken < self._store_until:
            return
        room = self._room()
        if room <= 0:
            return
        buf = self._buffer
        while buf and buf[0].seq <= self._committed and room > 0:
            self._send(buf.popleft())
            room -= 1
        if not buf or buf[0].seq > self._committed:
            # The rest up to the commit are kinds that are not forwarded one by one.
            self._taken = max(self._taken, self._committed)
        self._advance()

    def _keep(self, event: Event) -> None:
        with self._fwd:
            self._kept = max(self._kept, event.seq)
            if event.seq <= self._store_until or event.bed_id != self.config.bed.id \
                    or event.kind not in payloads.FORWARDED:
                return
            self._buffer.append(event)
            if len(self._buffer) > MEMORY_MAX:
                self._shed()

    def _shed(self) -> None:
        """Memory is full (a long outage): drop what will not be sent, else leave the oldest to the store."""
        if not self.connected:
            # Readings committed while the link is down fall under the next connect's horizon anyway.
            kept = [e for e in self._buffer if not (e.kind in READINGS and e.seq <= self._committed)]
            self._buffer = deque(kept)
        while len(self._buffer) > MEMORY_MAX:
            self._store_until = max(self._store_until, self._buffer.popleft().seq)

    def _send(self, ev: Event) -> None:
        assert self._client is not None
        route = payloads.FORWARDED.get(ev.kind)
        if ev.bed_id == self.config.bed.id and route is not None and not (ev.kind in READINGS and ev.seq <= self._horizon):
            leaf, build, _schema = route
            info = self._client.publish(self.topic(leaf), dumps(build(ev)), qos=1)
            self._unconfirmed[ev.seq] = info.mid
            self._mid_seq[info.mid] = ev.seq
        self._taken = max(self._taken, ev.seq)

    def _on_puback(self, mid: int) -> None:
        with self._fwd:
            seq = self._mid_seq.pop(mid, None)
            if seq is None:
                return  # status, state or alarms
            self._unconfirmed.pop(seq, None)
            self.forwarded += 1
            self._advance()
            self._pump()

    def _advance(self) -> None:
        """The cursor: everything at or below it is confirmed or needs no sending (saved later)."""
        first = next(iter(self._unconfirmed), None)
        self._cursor = max(self._cursor, self._taken if first is None else first - 1)

    async def _cursor_loop(self) -> None:
        """Saves the cursor when the writer is idle (no commit to save it after)."""
        while not self._stopping:
            await asyncio.sleep(CURSOR_SAVE_S)
            if time.monotonic() - self._last_commit_at >= CURSOR_SAVE_S:
                await self._save_cursor()

    async def _save_cursor(self) -> None:
        if self._cursor > self._saved_cursor:
            try:
                await asyncio.to_thread(self._write_cursor, self._cursor)
            except Exception:  # the store reports its own health; the next save retries
                log.exception("saving the MQTT cursor failed")

    def _write_cursor(self, cursor: int) -> None:
        """Off the event loop. Never moves the saved cursor back (two saves may overlap)."""
        with self._cursor_lock:
            if cursor > self._saved_cursor:
                self.store.set_cursor(CURSOR, cursor)
                self._saved_cursor = cursor
                self._saved_at = time.monotonic()

    # -- live state -----------------------------------------------------------------------

    def _on_engine_event(self, event: Event) -> None:
        # Called inside engine.submit: snapshot only once the engine has settled.
        self._state_dirty = True
        self._keep(event)
        if event.kind is EventKind.ALARM and not self._alarms_scheduled and self._aloop is not None:
            self._alarms_scheduled = True
            self._aloop.call_soon(self._publish_alarms)

    async def _state_loop(self) -> None:
        aloop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(STATE_MIN_INTERVAL_S)
            self._report_dropped()
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

    def _on_ack(self, ack: payloads.AckCommand) -> None:
        task = asyncio.get_running_loop().create_task(self._apply_ack(ack))
        self._tasks.append(task)
        task.add_done_callback(lambda done: self._tasks.remove(done) if done in self._tasks else None)

    async def _apply_ack(self, ack: payloads.AckCommand) -> None:
        actor = f"central:{ack.station}:{ack.user}"
        try:
            await self.loop.command(Acknowledge(ack.rule_id, actor=actor, alarm_seq=ack.alarm_seq))
            log.info("alarm %s acknowledged by %s", ack.rule_id, actor)
        except Refused as exc:  # the engine recorded it as a rejected event
            log.warning("acknowledgement of %s by %s refused: %s", ack.rule_id, actor, exc)

    def _on_receipt(self, receipt: CentralReceipt) -> None:
        # A reading, not a command: it only notes which station saw which alarm transition.
        self.receipts += 1
        self.loop.put(receipt)

    def _refuse(self, r: Refusal) -> None:
        log.warning("refused MQTT command on %s from station %r user %r: %s", r.topic, r.station, r.user, r.reason)
        self.engine.record_system("mqtt_command_refused", topic=r.topic, station=r.station, user=r.user,
                                  rule_id=r.rule_id, reason=r.reason)

    def _report_dropped(self, force: bool = False) -> None:
        """Commands dropped unread (too large, over the rate): logged and audited as counts."""
        now = asyncio.get_running_loop().time()
        if not force and now - self._dropped_reported_at < REPORT_EVERY_S:
            return
        dropped = self.gate.take_dropped()
        if not dropped:
            return
        self._dropped_reported_at = now
        log.warning("dropped MQTT commands unread: %d too large (largest %d bytes, limit %d), %d over the rate limit",
                    dropped.too_large, dropped.largest_bytes, MAX_BYTES, dropped.rate_limited)
        self.engine.record_system("mqtt_commands_dropped", too_large=dropped.too_large,
                                  rate_limited=dropped.rate_limited, largest_bytes=dropped.largest_bytes)
