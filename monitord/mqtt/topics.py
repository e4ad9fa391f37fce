"""Topic names of the feed: ``<root>/<bed_id>/<leaf>`` (docs/mqtt.md)."""

from __future__ import annotations

STATUS = "status"
STATE = "state"
VITALS = "vitals"
INFUSION = "infusion"
ALARMS = "alarms"
ALARM_EVENTS = "events/alarm"
INTERLOCK_EVENTS = "events/interlock"
OBSERVATION_EVENTS = "events/observation"
CMD_ACK = "cmd/ack"
CMD_ALL = "cmd/#"  # subscribed in full so that every command sent to the bed is judged and audited
RECEIPT = "receipt"  # delivery receipts from central stations


class Topics:
    def __init__(self, root: str, bed_id: str) -> None:
        self.root = root.strip("/")
        self.bed_id = bed_id

    def __call__(self, leaf: str) -> str:
        return f"{self.root}/{self.bed_id}/{leaf}"


def split(root: str, topic: str) -> tuple[str, str] | None:
    """``(bed_id, leaf)`` for a topic under ``root``, else None."""
    prefix = root.strip("/") + "/"
    if not topic.startswith(prefix):
        return None
    bed, _, leaf = topic[len(prefix):].partition("/")
    return (bed, leaf) if bed and leaf else None
