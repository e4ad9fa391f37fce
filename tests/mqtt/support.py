"""Test helpers: an MQTT subscriber that records what central stations would receive."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Received:
    topic: str
    payload: Any
    retain: bool
    qos: int


class Subscriber:
    """A paho client subscribed to ``topic``; every message is recorded, in arrival order."""

    def __init__(self, port: int, topic: str, client_id: str = "", clean_session: bool = True,
                 username: str | None = None, password: str | None = None, tls: Any = None) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=clean_session)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
        self.topic = topic
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscription not confirmed")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            payload = msg.payload
        with self._lock:
            self.messages.append(Received(msg.topic, payload, bool(msg.retain), msg.qos))

    def on(self, suffix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, pred: Callable[[Subscriber], Any], timeout: float = 20.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = pred(self)
            if result:
                return result
            time.sleep(0.02)
        topics = sorted({m.topic for m in self.messages})
        raise AssertionError(f"timed out waiting for {what or pred}; topics seen: {topics}")

    async def until(self, pred: Callable[[Subscriber], Any], timeout: float = 20.0, what: str = "") -> Any:
        """``wait_for`` without blocking the event loop the publisher runs on."""
        return await until(lambda: pred(self), timeout, what or str(pred), lambda: sorted({m.topic for m in self.messages}))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "",
                detail: Callable[[], Any] | None = None) -> Any:
    """Poll ``pred`` on the event loop until it is truthy (generous timeout: real I/O)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = pred()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f"; {detail()}" if detail else ""))
