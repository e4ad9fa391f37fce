"""The MQTT feed for central stations (contract: ``docs/mqtt.md``).

``publisher`` forwards committed events from the store and the live bed state; ``payloads``
builds every message; ``mdc`` holds the IEEE 11073-10101 identifiers; ``topics`` names the
topics; ``schemas`` validates payloads against ``monitord/schemas/*.json``.
"""
