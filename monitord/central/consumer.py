"""The MQTT side of every central display: one subscription to ``<root>/+/#`` feeding an
``Overview``. Read-only: it publishes nothing."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from monitord.central.feed import Overview
from monitord.config import MqttConfig
from monitord.mqtt.client import describe, make_client

log = logging.getLogger(__name__)


class FeedConsumer:
    def __init__(self, cfg: MqttConfig, overview: Overview, client_id: str | None = None) -> None:
        self.cfg = cfg
        self.overview = overview
        self.client_id = client_id or f"monitord-central-{uuid.uuid4().hex[:8]}"
        self.connected = False
        self._client: mqtt.Client | None = None

    def start(self) -> FeedConsumer:
        client = make_client(self.cfg, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda c, u, msg: self.overview.apply(msg.topic, bytes(msg.payload))
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

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the central station: %s", describe(reason))
            return
        self.connected = True
        client.subscribe(f"{self.cfg.topic_root.strip('/')}/+/#", qos=1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected = False
