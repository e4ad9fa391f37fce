"""A paho-mqtt 2.x client set up from ``[mqtt]``: credentials, TLS, reconnect backoff."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitord.config import MqttConfig

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


def make_client(cfg: MqttConfig, client_id: str, clean_session: bool = True) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=clean_session,
    )
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls is not None:
        client.tls_set(
            ca_certs=cfg.tls.ca_file,
            certfile=cfg.tls.cert_file,
            keyfile=cfg.tls.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client


def describe(reason: object) -> str:
    """A reason code as words (paho passes ReasonCode objects or error numbers)."""
    if isinstance(reason, mqtt.MQTTErrorCode):
        return mqtt.error_string(reason)
    return str(reason)
