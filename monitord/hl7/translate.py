"""Feed messages in, HL7 messages out, bed by bed.

What the translator remembers per bed is a small JSON document (``dump``/``load``) that the
outbox stores in the same transaction as the messages it produced, so a restart resumes exactly:
who the patient is (from the retained ``state``), the last ``seq`` per reading topic and the last
``alarm_seq`` (repeats are dropped, docs/mqtt.md), the alert instance of each active alarm, and
the readings of an export interval not yet sent.

Readings: with ``interval_s`` 0 every ``vitals``/``infusion`` message becomes one PCD-01; with an
interval, each device's latest value of every metric in the interval is sent once the interval is
over (the next reading falls in a later one, or the bed has been silent for the interval plus
``GRACE_S``). NIBP values are sent only with a new cuff measurement, with its own time (OBX-14).

Nothing is sent while no patient is admitted at the bed (the ``state`` has no patient id): there
is no one to chart it to, and PID-3 needs an identifier. Such messages are counted (``no_patient``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitord.hl7 import pcd
from monitord.mqtt import topics as t

log = logging.getLogger(__name__)

GRACE_S = 5.0  # wait this long past an interval for late readings before sending it
LEAVES = (t.STATE, t.VITALS, t.INFUSION, t.ALARM_EVENTS)


def epoch(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Pending:
    """One device's readings of one export interval."""

    role: str
    device: str
    start: float  # epoch seconds
    first_seq: int
    patient: list[str | None]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class BedMemory:
    patient: list[str | None] = field(default_factory=lambda: [None, None])  # patient_id, care_area
    last: dict[str, int] = field(default_factory=dict)  # leaf -> last seq (alarm events: alarm_seq)
    alerts: dict[str, str] = field(default_factory=dict)  # rule_id -> alert instance id
    pending: dict[str, Pending] = field(default_factory=dict)  # device role -> open interval

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> BedMemory:
        d = json.loads(text)
        pending = {k: Pending(**v) for k, v in (d.get("pending") or {}).items()}
        return cls(list(d.get("patient") or [None, None]), dict(d.get("last") or {}), dict(d.get("alerts") or {}),
                   pending)


@dataclass
class Stats:
    repeats: int = 0  # QoS 1 repeats and replays dropped
    alarm_gaps: int = 0  # times alarm_seq jumped (transitions lost upstream)
    ignored: int = 0  # messages that are not part of the feed's contract
    no_patient: int = 0  # readings and alarm transitions while no patient was admitted: not sent


class Translator:
    def __init__(self, ident: pcd.Identity, interval_s: float = 60.0) -> None:
        self.ident = ident
        self.interval_s = interval_s
        self.beds: dict[str, BedMemory] = {}
        self.arrived: dict[tuple[str, str], float] = {}  # (bed, role) -> monotonic time of its last reading
        self.stats = Stats()

    def load(self, bed: str, text: str, now_mono: float) -> None:
        self.beds[bed] = mem = BedMemory.load(text)
        for role in mem.pending:
            self.arrived[(bed, role)] = now_mono

    def dump(self, bed: str) -> str:
        return self.beds[bed].dump()

    def forget(self, bed: str) -> None:
        self.beds.pop(bed, None)
        for key in [k for k in self.arrived if k[0] == bed]:
            del self.arrived[key]

    # -- in ---------------------------------------------------------------------------------

    def handle(self, bed: str, leaf: str, payload: dict[str, Any], now: datetime, now_mono: float) -> list[pcd.Built]:
        """The HL7 messages one feed message makes (often none: a state, a reading mid-interval)."""
        mem = self.beds.setdefault(bed, BedMemory())
        if leaf == t.STATE:
            return self._state(bed, mem, payload, now)
        if leaf in (t.VITALS, t.INFUSION):
            seq = payload.get("seq")
            if not isinstance(seq, int) or epoch(payload.get("time")) is None:
                self.stats.ignored += 1
                return []
            if seq <= mem.last.get(leaf, 0):
                self.stats.repeats += 1
                return []
            mem.last[leaf] = seq
            return self._reading(bed, mem, leaf, payload, seq, now, now_mono)
        if leaf == t.ALARM_EVENTS:
            return self._alarm(bed, mem, payload, now)
        self.stats.ignored += 1
        return []

    def _state(self, bed: str, mem: BedMemory, st: dict[str, Any], now: datetime) -> list[pcd.Built]:
        who = pcd.Patient.from_state(st)
        out: list[pcd.Built] = []
        if who.patient_id != mem.patient[0]:  # readings so far belong to the previous patient
            out = [self._close(bed, mem, role, now) for role in list(mem.pending)]
        mem.patient = [who.patient_id, who.care_area]
        return out

    def _reading(self, bed: str, mem: BedMemory, leaf: str, p: dict[str, Any], seq: int, now: datetime,
                 now_mono: float) -> list[pcd.Built]:
        if mem.patient[0] is None:
            self.stats.no_patient += 1
            return []
        role = "monitor" if leaf == t.VITALS else "pump"
        rows = pcd.vitals_rows(p) if leaf == t.VITALS else pcd.infusion_rows(p)
        device = str(p.get("device") or role)
        when = epoch(p["time"])
        assert when is not None
        if self.interval_s <= 0:
            if not rows:
                return []
            patient = pcd.Patient(*mem.patient)
            return [pcd.observations(self.ident, bed, device, role, rows.values(), p["time"], patient,
                                     f"{bed}.O{seq}", now)]
        out: list[pcd.Built] = []
        start = math.floor(when / self.interval_s) * self.interval_s
        open_ = mem.pending.get(role)
        if open_ is not None and (start != open_.start or open_.device != device):
            out.append(self._close(bed, mem, role, now))
            open_ = None
        if open_ is None:
            open_ = mem.pending[role] = Pending(role, device, start, seq, list(mem.patient))
        for name, row in rows.items():
            open_.rows[name] = asdict(row)
        self.arrived[(bed, role)] = now_mono
        return out

    def _close(self, bed: str, mem: BedMemory, role: str, now: datetime) -> pcd.Built:
        p = mem.pending.pop(role)
        self.arrived.pop((bed, role), None)
        rows = [pcd.Row(**r) for r in p.rows.values()]
        return pcd.observations(self.ident, bed, p.device, role, rows, iso(p.start), pcd.Patient(*p.patient),
                                f"{bed}.O{p.first_seq}", now)

    def _alarm(self, bed: str, mem: BedMemory, ev: dict[str, Any], now: datetime) -> list[pcd.Built]:
        seq, rule_id = ev.get("alarm_seq"), ev.get("rule_id")
        if not isinstance(seq, int) or not isinstance(rule_id, str) or ev.get("priority") not in pcd.PRIORITY \
                or epoch(ev.get("time")) is None:
            self.stats.ignored += 1
            return []
        last = mem.last.get("alarm", 0)
        if seq <= last:
            self.stats.repeats += 1
            return []
        if last and seq > last + 1:
            self.stats.alarm_gaps += 1
            log.warning("hl7: bed %s alarm_seq jumped from %d to %d: alarm transitions may be lost upstream",
                        bed, last, seq)
        mem.last["alarm"] = seq
        instance = mem.alerts.get(rule_id)
        initial = ev.get("phase") == "start" or instance is None
        if initial:
            instance = f"{bed}.{rule_id}.{seq}"
        assert instance is not None
        if ev.get("phase") == "end":
            mem.alerts.pop(rule_id, None)
        else:
            mem.alerts[rule_id] = instance
        if mem.patient[0] is None:
            self.stats.no_patient += 1
            return []
        return [pcd.alert(self.ident, bed, ev, instance, initial, pcd.Patient(*mem.patient), f"{bed}.A{seq}", now)]

    # -- time -------------------------------------------------------------------------------

    def due(self, now: datetime, now_mono: float) -> list[tuple[str, pcd.Built]]:
        """Intervals of beds that have gone quiet: sent once no reading came for interval + grace."""
        out = []
        for (bed, role), arrived in list(self.arrived.items()):
            if now_mono - arrived >= self.interval_s + GRACE_S and role in self.beds[bed].pending:
                out.append((bed, self._close(bed, self.beds[bed], role, now)))
        return out

    def flush(self, now: datetime) -> list[tuple[str, pcd.Built]]:
        """Every open interval, now (tests, a planned shutdown of the receiver)."""
        return [(bed, self._close(bed, mem, role, now)) for bed, mem in self.beds.items() for role in list(mem.pending)]


def split(root: str, topic: str) -> tuple[str, str] | None:
    """``(bed, leaf)`` of a topic the gateway reads, else None."""
    where = t.split(root, topic)
    return where if where is not None and where[1] in LEAVES else None
