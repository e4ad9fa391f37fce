"""What a message to the bed may cost before the event loop ever sees it.

Two kinds of message reach the bed: commands (``cmd/#``; the only one accepted is ``cmd/ack``) and
delivery receipts (``receipt``). ``CommandGate.judge`` runs on paho's network thread, never on the
event loop. In order:
1. size: a payload over ``MAX_BYTES`` is dropped unread (an ack or a receipt is about 100 bytes);
2. a token bucket for parsing, so a flood costs at most ``PARSE_RATE`` parses a second;
3. JSON parsing (any exception, ``RecursionError`` included, is a refusal);
4. a token bucket per (topic, station), so one station's flood leaves the others their share;
5. a token bucket for everything passed on to the event loop (a flood under ever new names);
6. the checks: for ``cmd/ack`` topic, enabled, not retained, schema, station listed; for a
   receipt not retained and schema. Any other command topic is refused.
Commands and receipts each have their own buckets (a ``Lane``), so a flood of one cannot starve
the other. Dropped messages (1, 2, 4, 5) are only counted: the publisher logs and audits the
counts at most every ``REPORT_EVERY_S``. Refusals (3, 6) are audited one by one, with bounded
text; the buckets bound how many reach the event loop: a lane's ``global_burst`` at once, its
``global_rate`` a second after.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitord.mqtt import payloads, schemas
from monitord.readings import CentralReceipt

MAX_BYTES = 1024
# Rates in messages per second, bursts in messages. An ack is a person's action: a few a minute.
PARSE_RATE, PARSE_BURST = 200.0, 200.0  # parsed at all (about 20 us each)
STATION_RATE, STATION_BURST = 2.0, 5.0  # per topic and station
GLOBAL_RATE, GLOBAL_BURST = 10.0, 20.0  # passed on to the event loop, from everyone
# A station sends a receipt for each alarm transition it shows: on (re)connecting one for each
# active alarm at once, then a few a minute. Each costs the rule loop about 50 us.
RECEIPT_STATION_RATE, RECEIPT_STATION_BURST = 10.0, 50.0
RECEIPT_GLOBAL_RATE, RECEIPT_GLOBAL_BURST = 50.0, 200.0
NOT_ACCEPTED = ("not a command this bed accepts: the only command is cmd/ack (alarm acknowledge); nothing "
                "over MQTT can change an infusion or release the interlock")
MAX_KEYS = 256  # (topic, station) buckets kept; the least recently used goes first
REPORT_EVERY_S = 10.0
TEXT = {"topic": 128, "station": 64, "user": 64, "rule_id": 128, "reason": 300}


_NOT_JSON = object()


def bounded(value: Any, what: str) -> str | None:
    """A field of a refused command as recorded: strings only, cut to the column's size."""
    return value[: TEXT[what]] if isinstance(value, str) else None


class Bucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class Refusal:
    topic: str | None
    station: str | None
    user: str | None
    rule_id: str | None
    reason: str

    @classmethod
    def of(cls, topic: str, payload: Any, reason: str) -> Refusal:
        p = payload if isinstance(payload, dict) else {}
        return cls(bounded(topic, "topic"), bounded(p.get("station"), "station"), bounded(p.get("user"), "user"),
                   bounded(p.get("rule_id"), "rule_id"), reason[: TEXT["reason"]])


@dataclass
class Dropped:
    """Messages dropped unread since the last report."""

    too_large: int = 0
    rate_limited: int = 0
    largest_bytes: int = 0

    def __bool__(self) -> bool:
        return bool(self.too_large or self.rate_limited)


@dataclass(frozen=True, slots=True)
class Limits:
    parse_rate: float
    parse_burst: float
    station_rate: float
    station_burst: float
    global_rate: float
    global_burst: float


COMMAND_LIMITS = Limits(PARSE_RATE, PARSE_BURST, STATION_RATE, STATION_BURST, GLOBAL_RATE, GLOBAL_BURST)
RECEIPT_LIMITS = Limits(PARSE_RATE, PARSE_BURST, RECEIPT_STATION_RATE, RECEIPT_STATION_BURST, RECEIPT_GLOBAL_RATE,
                        RECEIPT_GLOBAL_BURST)


class Lane:
    """The buckets of one kind of message: parsing, and what is passed on to the event loop."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.parse = Bucket(limits.parse_rate, limits.parse_burst, now)
        self.passed = Bucket(limits.global_rate, limits.global_burst, now)


Verdict = payloads.AckCommand | CentralReceipt | Refusal | None


@dataclass
class CommandGate:
    ack_topic: str
    accept_ack: bool
    stations: frozenset[str]
    receipt_topic: str | None = None  # None: receipts are not expected (and refused if they come)
    now: Callable[[], float] = time.monotonic
    dropped: Dropped = field(default_factory=Dropped)  # since the last ``take_dropped``
    total: Dropped = field(default_factory=Dropped)  # since start

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._commands = Lane(COMMAND_LIMITS, self.now())
        self._receipts = Lane(RECEIPT_LIMITS, self.now())
        self._buckets: OrderedDict[tuple[str, str], Bucket] = OrderedDict()

    def judge(self, topic: str, raw: bytes | bytearray, retained: bool) -> Verdict:
        """The command or receipt to apply, a refusal to audit, or None (dropped and counted)."""
        now = self.now()
        if len(raw) > MAX_BYTES:
            self._drop("too_large", len(raw))
            return None
        receipt = self.receipt_topic is not None and topic == self.receipt_topic
        lane = self._receipts if receipt else self._commands
        if not lane.parse.take(now):
            self._drop("rate_limited", len(raw))
            return None
        try:
            payload: Any = json.loads(raw)
        except Exception:  # ValueError, UnicodeDecodeError, RecursionError: all just bad input
            payload = _NOT_JSON
        station = payload.get("station") if isinstance(payload, dict) else None
        key = (topic[: TEXT["topic"]], station[: TEXT["station"]] if isinstance(station, str) else "")
        if not self._bucket(key, now, lane.limits).take(now) or not lane.passed.take(now):
            self._drop("rate_limited", len(raw))
            return None
        if payload is _NOT_JSON:
            return Refusal.of(topic, None, "payload is not JSON")
        return self._check_receipt(topic, payload, retained) if receipt else self._check(topic, payload, retained)

    def _check(self, topic: str, payload: Any, retained: bool) -> payloads.AckCommand | Refusal:
        if topic != self.ack_topic:
            return Refusal.of(topic, payload, NOT_ACCEPTED)
        if not self.accept_ack:
            return Refusal.of(topic, payload, "acknowledgement from central stations is disabled")
        if retained:
            return Refusal.of(topic, payload, "retained command (commands must not be retained)")
        problems = schemas.errors("cmd-ack", payload)
        if problems:
            return Refusal.of(topic, payload, "invalid command: " + "; ".join(problems))
        ack = payloads.parse_ack(payload)
        if ack.station not in self.stations:
            return Refusal.of(topic, payload, f"station '{ack.station}' is not authorised to acknowledge")
        return ack

    @staticmethod
    def _check_receipt(topic: str, payload: Any, retained: bool) -> CentralReceipt | Refusal:
        if retained:
            return Refusal.of(topic, payload, "retained receipt (receipts must not be retained)")
        problems = schemas.errors("receipt", payload)
        if problems:
            return Refusal.of(topic, payload, "invalid receipt: " + "; ".join(problems))
        return payloads.parse_receipt(payload)

    def _bucket(self, key: tuple[str, str], now: float, limits: Limits) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(limits.station_rate, limits.station_burst, now)
            if len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def _drop(self, why: str, size: int) -> None:
        with self._lock:
            for d in (self.dropped, self.total):
                setattr(d, why, getattr(d, why) + 1)
                d.largest_bytes = max(d.largest_bytes, size)

    def take_dropped(self) -> Dropped:
        """The drops since the last call (for the periodic log and audit), and reset them."""
        with self._lock:
            out, self.dropped = self.dropped, Dropped()
        return out
