"""The MQTT feed for central stations (contract: ``docs/mqtt.md``).

``publisher`` forwards committed events and the live bed state; ``commands`` bounds and judges
what arrives on the command and receipt topics; ``payloads`` builds every message; ``mdc`` holds the IEEE
11073-10101 identifiers; ``topics`` names the topics; ``schemas`` validates payloads against
``monitord/schemas/*.json``.
"""
