"""Delivery receipts: a central station confirms each alarm transition it has shown or stored.

A display notes what arrives (``note``, on the MQTT thread, after its model took the message),
and confirms it once it is on screen: ``take`` before drawing, ``send`` after, or ``give_back``
when nobody was looking (the web view with no page open). The archive confirms what it committed
(``confirm``). Each receipt goes to ``<root>/<bed>/receipt`` (QoS 1, never retained) as
``{v, station, rule_id, alarm_seq, time}``: what was seen, nothing else. The bed counts it
against the alarm's occurrence (docs/mqtt.md, "Delivery receipts"); it acknowledges and silences
nothing.

Two sources: every ``events/alarm`` transition (its own ``alarm_seq``), and the retained
``alarms`` set, for alarms raised before the station connected (their transitions are not
retained): each alarm in the set is confirmed once per occurrence with the set's ``alarm_seq``,
which no occurrence in the set is newer than.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from monitord.mqtt import payloads
from monitord.mqtt import topics as t

PENDING_MAX = 5_000  # transitions waiting to be shown; past that the oldest go (the alarms set still has the current ones)
BEDS_MAX = 10_000  # beds whose current alarm set is remembered

Key = tuple[str, str, int]  # bed, rule_id, alarm_seq


def default_station(kind: str) -> str:
    """``<kind>-<host>``, cut to a valid station id (letters, digits and . _ -, at most 64)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
    return f"{kind}-{host}"[:64]


def valid_station(station: str) -> str:
    if not payloads.STATION_ID.match(station):
        raise ValueError(f"station id {station[:80]!r}: 1-64 letters, digits or . _ - (starting with a letter or digit)")
    return station


class Receipts:
    def __init__(self, root: str, station: str, publish: Callable[[str, bytes], Any],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.root = root.strip("/")
        self.station = valid_station(station)
        self.publish = publish
        self.now = now
        self.sent = 0
        self._lock = threading.Lock()
        self._pending: OrderedDict[Key, None] = OrderedDict()
        self._occurrences: OrderedDict[str, dict[str, Any]] = OrderedDict()  # bed -> rule -> occurrence confirmed

    # -- what arrived (MQTT thread) -------------------------------------------------------------

    def note(self, topic: str, raw: bytes) -> None:
        """An ``events/alarm`` or ``alarms`` message the display has taken into its model."""
        where = t.split(self.root, topic)
        if where is None or where[1] not in (t.ALARM_EVENTS, t.ALARMS) or not raw:
            return
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if not isinstance(msg, dict) or not _seq(msg.get("alarm_seq")):
            return
        bed, leaf = where
        with self._lock:
            if leaf == t.ALARM_EVENTS:
                if isinstance(msg.get("rule_id"), str):
                    self._add((bed, msg["rule_id"], msg["alarm_seq"]))
                    self._bed(bed)[msg["rule_id"]] = _occurrence(msg)
                return
            current = {a["rule_id"]: _occurrence(a) for a in msg.get("alarms") or []
                       if isinstance(a, dict) and isinstance(a.get("rule_id"), str)}
            known = self._bed(bed)
            for rule_id, occurrence in current.items():
                if known.get(rule_id) != occurrence:
                    self._add((bed, rule_id, msg["alarm_seq"]))
            self._occurrences[bed] = current

    def _bed(self, bed: str) -> dict[str, Any]:
        known = self._occurrences.setdefault(bed, {})
        self._occurrences.move_to_end(bed)
        if len(self._occurrences) > BEDS_MAX:
            self._occurrences.popitem(last=False)
        return known

    def _add(self, key: Key) -> None:
        self._pending[key] = None
        if len(self._pending) > PENDING_MAX:
            self._pending.popitem(last=False)

    # -- confirming (the display's thread) --------------------------------------------------------

    def take(self) -> list[Key]:
        """What has arrived so far: take it before drawing, send it once drawn."""
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out

    def give_back(self, keys: list[Key]) -> None:
        """Not shown after all (nobody is looking): keep for the next time, oldest first."""
        if not keys:
            return
        with self._lock:
            rest = list(self._pending)
            self._pending = OrderedDict.fromkeys(keys + rest)
            while len(self._pending) > PENDING_MAX:
                self._pending.popitem(last=False)

    def send(self, keys: list[Key]) -> None:
        for bed, rule_id, alarm_seq in keys:
            self.confirm(bed, rule_id, alarm_seq)

    def confirm(self, bed: str, rule_id: str, alarm_seq: int) -> None:
        body = payloads.receipt(self.station, rule_id[:128], alarm_seq, self.now())
        self.publish(f"{self.root}/{bed}/{t.RECEIPT}", json.dumps(body, separators=(",", ":")).encode())
        self.sent += 1


def _seq(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**53 - 1


def _occurrence(alarm: dict[str, Any]) -> Any:
    """What tells one occurrence of an alarm from the next (``occurrence_seq``, else its start)."""
    occ = alarm.get("occurrence_seq")
    return occ if _seq(occ) else alarm.get("since")
