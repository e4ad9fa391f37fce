"""``monitord hl7``: every bed's MQTT feed to an EHR as IHE PCD-01/PCD-04 over MLLP.

The MQTT side is a persistent session (fixed client id, QoS 1): while the gateway is down the
broker keeps the beds' messages for it. Each message is acknowledged to the broker only after the
HL7 messages it made are committed to the outbox, and the MLLP side deletes a message from the
outbox only after the receiver accepted it; so neither a gateway restart nor a receiver outage
loses anything while the outbox has room. It publishes nothing (no delivery receipts: an EHR
interface is not a station that shows alarms to anyone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from monitord.config import ConfigError, MqttConfig, load_config
from monitord.hl7 import pcd
from monitord.hl7.outbox import Outbox
from monitord.hl7.sender import Sender
from monitord.hl7.translate import LEAVES, Translator, split
from monitord.mqtt.client import describe, make_client

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often quiet beds' intervals are closed
REPORT_S = 60.0  # a progress line in the log
STOP_WAIT_S = 5.0  # at stop, how long an exchange in flight may still take


def utc_now() -> datetime:
    return datetime.now(UTC)


class FeedReader:
    """The MQTT consumer: translates each message and queues the result before acknowledging it."""

    def __init__(self, cfg: MqttConfig, outbox: Outbox, translator: Translator, client_id: str,
                 persistent: bool = True, on_queued: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = utc_now, mono: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.translator = translator
        self.client_id = client_id
        self.on_queued = on_queued
        self.clock, self.mono = clock, mono
        self.received = 0
        self.failures = 0  # messages that could not be queued (left unacknowledged for redelivery)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self._client = make_client(cfg, client_id, clean_session=not persistent)
        self._client.manual_ack_set(True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = lambda *a: self.subscribed.set()
        self._client.on_message = self._on_message

    def start(self) -> FeedReader:
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("hl7: broker refused the connection: %s", describe(reason))
            return
        root = self.cfg.topic_root.strip("/")
        client.subscribe([(f"{root}/+/{leaf}", 1) for leaf in LEAVES])
        self.connected.set()

    def _on_disconnect(self, *args: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        where = split(self.cfg.topic_root, msg.topic)
        payload = _json(bytes(msg.payload)) if where else None
        if where is not None and payload is not None:
            bed, leaf = where
            try:
                queued = self._take(bed, leaf, payload)
            except Exception:
                self.failures += 1
                log.exception("hl7: cannot queue %s (left with the broker)", msg.topic)
                return
            if queued:
                self.on_queued()
        elif where is not None:
            self.translator.stats.ignored += 1
        if msg.qos:
            client.ack(msg.mid, msg.qos)

    def _take(self, bed: str, leaf: str, payload: dict[str, Any]) -> int:
        with self._lock:
            try:
                built = self.translator.handle(bed, leaf, payload, self.clock(), self.mono())
                self.outbox.store([(bed, m) for m in built], {bed: self.translator.dump(bed)})
            except Exception:
                self._restore(bed)
                raise
        return len(built)

    def _restore(self, bed: str) -> None:
        """Back to what the outbox holds for the bed, so the redelivered message is not a 'repeat'."""
        saved = self.outbox.memories().get(bed)
        self.translator.forget(bed)
        if saved is not None:
            self.translator.load(bed, saved, self.mono())

    def tick(self) -> int:
        """Send the intervals of beds gone quiet; returns how many messages were queued."""
        with self._lock:
            due = self.translator.due(self.clock(), self.mono())
            if due:
                beds = {bed for bed, _ in due}
                self.outbox.store(due, {bed: self.translator.dump(bed) for bed in beds})
        return len(due)


def _json(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None  # a cleared retained topic
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def load_translator(outbox: Outbox, ident: pcd.Identity, interval_s: float) -> Translator:
    tr = Translator(ident, interval_s)
    now = time.monotonic()
    for bed, memory in outbox.memories().items():
        try:
            tr.load(bed, memory, now)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("hl7: forgetting unreadable memory of bed %s: %s", bed, exc)
    return tr


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="site configuration file (its [mqtt] table names the broker; "
                                               "the outbox goes in its [store] state_dir)")
    parser.add_argument("--host", help="broker host (overrides the config)")
    parser.add_argument("--port", type=int, help="broker port")
    parser.add_argument("--root", help="topic root, e.g. monitord/v1")
    parser.add_argument("--username", help="broker user name (password from MONITORD_MQTT_PASSWORD)")
    parser.add_argument("--ca-file", help="CA certificate: connect with TLS")
    parser.add_argument("--to", metavar="HOST:PORT", help="the MLLP receiver (interface engine or EHR)")
    parser.add_argument("--queue", help="outbox file (SQLite; default hl7-outbox.sqlite3 in [store] state_dir "
                                        "with --config, else in the current directory)")
    parser.add_argument("--queue-max", type=int, default=100_000,
                        help="messages the outbox holds while the receiver is away (default 100000)")
    parser.add_argument("--interval", type=float, default=60.0,
                        help="seconds per PCD-01 export interval: the latest value of each metric "
                             "(0: one message per reading; default 60)")
    parser.add_argument("--facility", default="HOSPITAL", help="MSH-4 and PV1-3 facility")
    parser.add_argument("--receiving-application", default="", help="MSH-5")
    parser.add_argument("--receiving-facility", default="", help="MSH-6")
    parser.add_argument("--point-of-care", default="", help="PV1-3 point of care (default: the bed's care area)")
    parser.add_argument("--patient-authority", default="MONITORD",
                        help="PID-3 assigning authority of the beds' (pseudonymous) patient ids")
    parser.add_argument("--patient-class", default="U", help="PV1-2 (HL7 table 0004; default U, unknown)")
    parser.add_argument("--processing-id", choices=("P", "D", "T"), default="P", help="MSH-11 (default P)")
    parser.add_argument("--client-id", help="MQTT client id, kept across restarts (default monitord-hl7-<host>)")
    parser.add_argument("--clean-session", action="store_true",
                        help="no persistent session: while the gateway is away the broker keeps nothing for it")
    parser.add_argument("--ack-timeout", type=float, default=30.0, help="seconds to wait for each ACK (default 30)")
    parser.add_argument("--retry-max", type=float, default=30.0,
                        help="longest pause between attempts while the receiver is away (default 30 s)")
    parser.add_argument("--forget", metavar="BED", action="append", default=[],
                        help="forget a bed's numbering (after its state directory was wiped), then run")


def _target(text: str | None) -> tuple[str, int]:
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--to {text!r}: give the MLLP receiver as HOST:PORT")
    return host.strip("[]"), int(port)


def main(args: argparse.Namespace) -> int:
    from monitord.central.app import mqtt_config_from_args

    try:
        config = load_config(args.config) if args.config else None
        mqtt_cfg = mqtt_config_from_args(args, config)
        host, port = _target(args.to)
        if args.interval < 0 or args.queue_max < 1:
            raise ConfigError("--interval must be >= 0 and --queue-max >= 1")
    except ConfigError as exc:
        print(exc)
        return 2
    queue = Path(args.queue) if args.queue else \
        (Path(config.store.state_dir) if config is not None else Path.cwd()) / "hl7-outbox.sqlite3"
    ident = pcd.Identity(facility=args.facility, receiving_application=args.receiving_application,
                         receiving_facility=args.receiving_facility, processing_id=args.processing_id,
                         patient_authority=args.patient_authority, patient_class=args.patient_class,
                         point_of_care=args.point_of_care, root=mqtt_cfg.topic_root)
    outbox = Outbox(queue, args.queue_max)
    try:
        for bed in args.forget:
            log.info("hl7: bed %s %s", bed, "forgotten" if outbox.forget(bed) else "was not known")
        client_id = args.client_id or f"monitord-hl7-{socket.gethostname()}"
        return asyncio.run(run(mqtt_cfg, outbox, ident, args.interval, host, port, client_id,
                               persistent=not args.clean_session, ack_timeout_s=args.ack_timeout,
                               retry_max_s=args.retry_max))
    finally:
        outbox.close()


async def run(mqtt_cfg: MqttConfig, outbox: Outbox, ident: pcd.Identity, interval_s: float, host: str, port: int,
              client_id: str, *, persistent: bool = True, ack_timeout_s: float = 30.0,
              retry_max_s: float = 30.0) -> int:
    loop = asyncio.get_running_loop()
    sender = Sender(outbox, host, port, ack_timeout_s=ack_timeout_s, retry_max_s=retry_max_s)

    def queued() -> None:
        loop.call_soon_threadsafe(sender.wake)

    reader = FeedReader(mqtt_cfg, outbox, load_translator(outbox, ident, interval_s), client_id, persistent,
                        on_queued=queued)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("hl7: %s:%d/%s -> MLLP %s:%d (interval %g s, outbox %s, %d queued)", mqtt_cfg.host, mqtt_cfg.port,
             mqtt_cfg.topic_root, host, port, interval_s, outbox.path, outbox.size())
    task = asyncio.create_task(sender.run())
    reader.start()
    last_report = time.monotonic()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
            if reader.tick():
                sender.wake()
            if time.monotonic() - last_report >= REPORT_S:
                last_report = time.monotonic()
                log.info("hl7: received %d, queued %d, delivered %d, counters %s, link failures %d",
                         reader.received, outbox.size(), sender.stats.delivered, outbox.counters(),
                         sender.stats.link_failures)
    finally:
        reader.stop()
        sender.stop()
        try:  # an exchange in flight is abandoned after a while: the message stays queued, sent again next time
            await asyncio.wait_for(task, STOP_WAIT_S)
        except TimeoutError:
            log.warning("hl7: stopped while waiting for an acknowledgement; that message is sent again at restart")
    return 0
