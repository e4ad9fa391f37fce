"""What the overview knows of each bed, built from the MQTT feed (no UI here).

The MQTT thread calls ``Overview.apply``; the app takes the beds that changed with
``Overview.take_dirty`` on its own timer, so a burst of messages becomes one redraw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitord.mqtt import topics as t

# A bed republishes its state at least every 10 s (publisher.STATE_HEARTBEAT_S): after this long
# without any message its numbers are no longer current.
NO_DATA_AFTER_S = 15.0


@dataclass
class BedView:
    bed_id: str
    status: str | None = None  # online / offline, from the retained status
    status_reason: str = ""
    state: dict[str, Any] | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)
    last_message: float | None = None  # local monotonic time of the last message from this bed
    last_data_time: str | None = None  # the bed's own time of its last state/reading

    def age_s(self, now: float) -> float | None:
        return None if self.last_message is None else max(0.0, now - self.last_message)

    def vital(self, name: str) -> dict[str, Any] | None:
        v = (self.state or {}).get("vitals", {}).get(name)
        return v if v and v.get("value") is not None and not v.get("stale") else None


class Overview:
    def __init__(self, root: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.clock = clock
        self.beds: dict[str, BedView] = {}
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self.bad_messages = 0

    def apply(self, topic: str, raw: bytes) -> None:
        where = t.split(self.root, topic)
        if where is None:
            return
        bed_id, leaf = where
        if leaf not in (t.STATUS, t.STATE, t.ALARMS, t.VITALS, t.INFUSION, t.ALARM_EVENTS):
            return
        if not raw:  # a cleared retained topic
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            self.bad_messages += 1
            return
        if not isinstance(payload, dict):
            self.bad_messages += 1
            return
        with self._lock:
            bed = self.beds.setdefault(bed_id, BedView(bed_id))
            if leaf == t.STATUS:
                bed.status = payload.get("status")
                bed.status_reason = str(payload.get("reason") or "")
                if bed.status == "online":
                    bed.last_message = self.clock()
            else:
                bed.last_message = self.clock()
                if leaf == t.STATE:
                    bed.state = payload
                    bed.last_data_time = payload.get("time")
                elif leaf == t.ALARMS:
                    bed.alarms = list(payload.get("alarms") or [])
                elif leaf in (t.VITALS, t.INFUSION):
                    bed.last_data_time = payload.get("time")
            self._dirty.add(bed_id)

    def take_dirty(self) -> list[BedView]:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            return [self.beds[b] for b in sorted(dirty)]

    def all(self) -> list[BedView]:
        with self._lock:
            return [self.beds[b] for b in sorted(self.beds)]
