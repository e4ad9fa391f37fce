"""What the engine emits: one envelope for every output event.

Subscribers (store, MQTT, dashboard link) receive ``Event`` objects in ``seq`` order. ``seq``
is per bed, monotonic and gapless across all kinds; alarm transitions also carry
``alarm_seq``, gapless among alarm events alone, so a consumer of alarms only can detect loss.
``data`` is JSON-ready (str, int, float, bool, None, lists, dicts) and its fields per kind are
documented in ``docs/events.md``; ``to_dict``/``from_dict`` are the one serialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    VITALS = "vitals"  # a monitor reading, after range checks
    INFUSION = "infusion"  # a pump reading with derived dose
    ALARM = "alarm"  # one alarm lifecycle transition
    SESSION = "session"  # admit, order, start, pause, resume, stop, discharge, baseline, override, checklist
    OBSERVATION = "observation"  # sedation, pain, psychomimetic effects, rescue medication
    LINK = "link"  # a device link state change
    DEVICE_ALARM = "device_alarm"  # the set of alarms a device reports changed
    REJECTED = "rejected"  # an action or input refused, with the reason
    SYSTEM = "system"  # daemon start, recovery, downtime, storage trouble
    INTERLOCK = "interlock"  # the pump stop interlock: armed, triggered, command sent, confirmed, released...


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    kind: EventKind
    bed_id: str
    time: datetime  # UTC, for records
    mono: float  # monotonic seconds, for durations within one daemon run
    clock_synced: bool
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind.value,
            "bed_id": self.bed_id,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "mono": self.mono,
            "clock_synced": self.clock_synced,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(
            seq=int(d["seq"]),
            kind=EventKind(d["kind"]),
            bed_id=str(d["bed_id"]),
            time=datetime.fromisoformat(str(d["time"]).replace("Z", "+00:00")),
            mono=float(d["mono"]),
            clock_synced=bool(d["clock_synced"]),
            data=dict(d["data"]),
        )
