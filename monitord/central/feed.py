"""What a central station knows of each bed, built from the MQTT feed (no UI here).

One ``Overview`` is shared by the Textual overview and the web view. The MQTT thread calls
``Overview.apply``; each display asks ``changed_since(version)`` on its own timer, so a burst of
messages becomes one redraw and any number of displays can read the same model.
"""

from __future__ import annotations

import json
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitord.mqtt import topics as t

# A bed republishes its state at least every 10 s (publisher.STATE_HEARTBEAT_S): after this long
# without any message its numbers are no longer current (docs/mqtt.md, Liveness).
NO_DATA_AFTER_S = 15.0

# Trends kept per bed for the bed page: one row per TREND_STEP_S (the latest value in the step),
# TREND_WINDOW_S back. Fixed-size arrays: 720 rows x 8 columns x 8 bytes = 46 kB per bed.
TREND_STEP_S = 5.0
TREND_WINDOW_S = 3600.0
TREND_SERIES = ("hr", "spo2", "rr", "etco2", "sbp", "dbp", "map", "dose")
HISTORY_MAX = 200  # alarm transitions kept per bed


def epoch(iso: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 time from the feed, or None."""
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Trend:
    """A ring of time buckets, each holding the latest value of every series in that bucket."""

    def __init__(self, step_s: float = TREND_STEP_S, window_s: float = TREND_WINDOW_S) -> None:
        self.step = step_s
        self.cap = max(2, int(window_s / step_s))
        self.times = array("d", [math.nan] * self.cap)
        self.cols = {name: array("d", [math.nan] * self.cap) for name in TREND_SERIES}
        self.head = -1  # index of the newest bucket
        self.count = 0

    def add(self, when: float, name: str, value: Any) -> None:
        if name not in self.cols or not isinstance(value, int | float) or isinstance(value, bool):
            return
        bucket = math.floor(when / self.step) * self.step
        i = self._row(bucket)
        if i is not None:
            self.cols[name][i] = float(value)

    def _row(self, bucket: float) -> int | None:
        if self.count and bucket <= self.times[self.head]:
            for back in range(self.count):  # a late reading: its bucket, if still kept
                i = (self.head - back) % self.cap
                if self.times[i] == bucket:
                    return i
                if self.times[i] < bucket:
                    return None
            return None
        self.head = (self.head + 1) % self.cap
        self.count = min(self.count + 1, self.cap)
        self.times[self.head] = bucket
        for col in self.cols.values():
            col[self.head] = math.nan
        return self.head

    def export(self) -> dict[str, list[float | None]]:
        """Columns in time order (uPlot's aligned data); a missing value is None."""
        idx = [(self.head - k) % self.cap for k in range(self.count - 1, -1, -1)]
        out: dict[str, list[float | None]] = {"t": [self.times[i] for i in idx]}
        for name, col in self.cols.items():
            out[name] = [None if math.isnan(col[i]) else col[i] for i in idx]
        return out


@dataclass
class BedView:
    bed_id: str
    status: str | None = None  # online / offline, from the retained status
    status_reason: str = ""
    state: dict[str, Any] | None = None
    state_at: float | None = None  # local monotonic time the last state arrived (its ages are as of then)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    last_message: float | None = None  # local monotonic time of the last message from this bed
    last_data_time: str | None = None  # the bed's own time of its last state/reading
    version: int = 0  # Overview.version when this bed last changed
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_MAX))
    trend: Trend = field(default_factory=Trend)

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
        self.version = 0
        self.lock = threading.Lock()
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
        with self.lock:
            bed = self.beds.get(bed_id)
            if bed is None:
                bed = self.beds[bed_id] = BedView(bed_id)
            now = self.clock()
            if leaf == t.STATUS:
                bed.status = payload.get("status")
                bed.status_reason = str(payload.get("reason") or "")
                if bed.status == "online":
                    bed.last_message = now
            else:
                bed.last_message = now
                if leaf == t.STATE:
                    bed.state = payload
                    bed.state_at = now
                    bed.last_data_time = payload.get("time")
                elif leaf == t.ALARMS:
                    bed.alarms = [a for a in payload.get("alarms") or [] if isinstance(a, dict)]
                elif leaf == t.ALARM_EVENTS:
                    self._history(bed, payload)
                else:
                    bed.last_data_time = payload.get("time")
                    self._trend(bed, leaf, payload)
            self.version += 1
            bed.version = self.version

    @staticmethod
    def _history(bed: BedView, ev: dict[str, Any]) -> None:
        seq = ev.get("alarm_seq")
        if any(h.get("alarm_seq") == seq for h in bed.history):
            return  # a QoS 1 repeat (docs/mqtt.md: drop a repeat of an alarm_seq already seen)
        bed.history.append({k: ev.get(k) for k in ("time", "alarm_seq", "transition", "priority", "rule_id",
                                                    "message", "state", "actor", "value")})

    @staticmethod
    def _trend(bed: BedView, leaf: str, msg: dict[str, Any]) -> None:
        when = epoch(msg.get("time"))
        if when is None:
            return
        if leaf == t.INFUSION:
            bed.trend.add(when, "dose", (msg.get("dose_rate") or {}).get("value"))
            return
        for name, q in (msg.get("values") or {}).items():
            if not isinstance(q, dict) or q.get("quality") == "invalid":
                continue
            if name in ("sbp", "dbp", "map") and not msg.get("new_nibp"):
                continue  # the same cuff reading repeated with every message
            bed.trend.add(when, name, q.get("value"))

    def changed_since(self, version: int) -> tuple[list[BedView], int]:
        """The beds changed after ``version`` (by name) and the version to ask from next."""
        with self.lock:
            return sorted((b for b in self.beds.values() if b.version > version), key=lambda b: b.bed_id), self.version

    def all(self) -> list[BedView]:
        with self.lock:
            return [self.beds[b] for b in sorted(self.beds)]

    def get(self, bed_id: str) -> BedView | None:
        with self.lock:
            return self.beds.get(bed_id)

    def detail(self, bed_id: str) -> tuple[BedView, list[dict[str, Any]], dict[str, list[float | None]]] | None:
        """A bed with a copy of its alarm history (newest first) and trend, taken under the lock."""
        with self.lock:
            bed = self.beds.get(bed_id)
            if bed is None:
                return None
            return bed, list(reversed(bed.history)), bed.trend.export()
