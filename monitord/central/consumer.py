"""The MQTT side of every central display: one subscription to ``<root>/+/#`` feeding an
``Overview``. The one thing it publishes is delivery receipts (``station`` set): the display
confirms the alarm transitions it has shown (``monitord.central.receipts``); nothing else, and
nothing that acknowledges or changes anything at a bed."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from monitord.central.feed import Overview
from monitord.central.receipts import Receipts
from monitord.config import MqttConfig
from monitord.mqtt.client import describe, make_client

log = logging.getLogger(__name__)


class FeedConsumer:
    def __init__(self, cfg: MqttConfig, overview: Overview, client_id: str | None = None,
                 station: str | None = None) -> None:
        """``station``: the id this display confirms alarm transitions under; None: no receipts."""
        self.cfg = cfg
        self.overview = overview
        self.client_id = client_id or f"monitord-central-{uuid.uuid4().hex[:8]}"
        self.connected = False
        self._client: mqtt.Client | None = None
        self.receipts = Receipts(cfg.topic_root, station, self._publish) if station else None

    def start(self) -> FeedConsumer:
        client = make_client(self.cfg, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        client.loop_start()
        self._client = client
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.connected = False

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        raw = bytes(msg.payload)
        self.overview.apply(msg.topic, raw)
        if self.receipts is not None:
            self.receipts.note(msg.topic, raw)  # after the model has it: shown from the next redraw on

    def _publish(self, topic: str, body: bytes) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, body, qos=1)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the central station: %s", describe(reason))
            return
        self.connected = True
        client.subscribe(f"{self.cfg.topic_root.strip('/')}/+/#", qos=1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected = False
