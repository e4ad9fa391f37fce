"""What one bed's tile or row shows now: the rules every central display shares.

A bed is *current* when its status is online and a message arrived within ``NO_DATA_AFTER_S``.
A bed that is not current says OFFLINE or NO DATA and shows no values: old numbers must never
look current. A current bed still blanks a value that is itself old: a vital its bed marks stale,
or a dose whose pump reading (``infusion.age_s`` plus the time since that state arrived) is older
than the vitals' stale limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitord.central.feed import NO_DATA_AFTER_S, BedView
from monitord.config import Config, load_config

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2, "advisory": 3}
NO_ALARM_RANK = 4
# A bed whose feed is gone is a source missing for the whole bed, which alarm-defaults.md s3
# ranks as a medium technical condition: it sorts with the medium alarms, below every HIGH.
NOT_CURRENT_RANK = PRIORITY_RANK["medium"]
PRIORITY_MARK = {"high": "!!!", "medium": "!!", "low": "!", "advisory": ""}
VITALS = ("hr", "spo2", "rr", "etco2", "sbp", "dbp")
LABELS = {"online": "online", "offline": "OFFLINE", "no_data": "NO DATA"}


@dataclass(frozen=True)
class Limits:
    dose_stale_after_s: float
    no_data_after_s: float = NO_DATA_AFTER_S

    @classmethod
    def from_config(cls, config: Config | None = None) -> Limits:
        """The dose is a continuous value like the vitals: ``[vitals] stale_after_s`` applies
        (alarm-defaults.md s3); without a site file, the shipped default."""
        return cls(dose_stale_after_s=(config or load_config()).vitals.stale_after_s)


@dataclass(frozen=True)
class Value:
    value: float | None  # None: blank (not measured, stale, or the bed is not current)
    age_s: float | None = None


BLANK = Value(None)


@dataclass(frozen=True)
class Tile:
    bed_id: str
    condition: str  # online / offline / no_data
    reason: str
    age_s: float | None  # since the last message from the bed
    session: str | None
    dose: Value
    vitals: dict[str, Value]
    alarm: dict[str, Any] | None  # the highest active alarm: priority, message, rule_id
    alarm_count: int
    highs: tuple[str, ...]  # rule ids of the HIGH alarms
    interlock: str | None = None  # the pump stop interlock's phase where enabled (armed, holding, ...)

    @property
    def label(self) -> str:
        return LABELS[self.condition]

    @property
    def live(self) -> bool:
        return self.condition == "online"

    @property
    def rank(self) -> int:
        if not self.live:
            return NOT_CURRENT_RANK
        return PRIORITY_RANK.get(self.alarm["priority"], NO_ALARM_RANK) if self.alarm else NO_ALARM_RANK

    def sort_key(self) -> tuple[int, int, str]:
        # Among beds of one rank, a real alarm goes before a lost feed, then by name.
        return self.rank, 0 if self.live else 1, self.bed_id

    def shown(self) -> tuple[Any, ...]:
        """Everything a display shows except the ages (which change with time alone)."""
        return (self.condition, self.reason, self.session, self.dose.value,
                tuple(x.value for x in self.vitals.values()), self.alarm and tuple(self.alarm.values()),
                self.alarm_count, self.highs, self.interlock)

    def to_json(self) -> dict[str, Any]:
        def v(x: Value) -> list[Any]:
            return [x.value, None if x.age_s is None else round(x.age_s, 1)]

        return {"bed": self.bed_id, "cond": self.condition, "label": self.label, "reason": self.reason,
                "age": None if self.age_s is None else round(self.age_s, 1), "session": self.session,
                "dose": v(self.dose), "vitals": {k: v(x) for k, x in self.vitals.items()},
                "alarm": self.alarm, "count": self.alarm_count, "highs": list(self.highs), "rank": self.rank,
                "interlock": self.interlock}


def condition(bed: BedView, now: float, limits: Limits) -> str:
    age = bed.age_s(now)
    if bed.status == "offline":
        return "offline"
    if bed.status is None or age is None or age > limits.no_data_after_s:
        return "no_data"
    return "online"


def highest(alarms: list[dict[str, Any]]) -> dict[str, Any] | None:
    ranked = sorted((a for a in alarms if a.get("priority") in PRIORITY_RANK),
                    key=lambda a: PRIORITY_RANK[a["priority"]])
    if not ranked:
        return None
    a = ranked[0]
    return {"priority": a["priority"], "message": str(a.get("message") or ""), "rule_id": str(a.get("rule_id") or "")}


def _since_state(bed: BedView, now: float) -> float:
    return max(0.0, now - bed.state_at) if bed.state_at is not None else 0.0


def vital(bed: BedView, name: str, now: float) -> Value:
    v = bed.vital(name) or (bed.vital("pulse") if name == "hr" else None)
    if v is None or not isinstance(v.get("value"), int | float):
        return BLANK
    age = v.get("age_s")
    return Value(float(v["value"]), None if age is None else float(age) + _since_state(bed, now))


def dose(bed: BedView, now: float, limits: Limits) -> Value:
    inf = (bed.state or {}).get("infusion") or {}
    value = (inf.get("dose_rate") or {}).get("value")
    age = inf.get("age_s")
    if not isinstance(value, int | float) or not isinstance(age, int | float):
        return BLANK  # no pump reading, or one of unknown age: not shown as current
    age = float(age) + _since_state(bed, now)
    return Value(float(value), age) if age <= limits.dose_stale_after_s else Value(None, age)


def tile(bed: BedView, now: float, limits: Limits) -> Tile:
    cond = condition(bed, now, limits)
    live = cond == "online"
    top = highest(bed.alarms) if live else None
    return Tile(
        bed_id=bed.bed_id,
        condition=cond,
        reason=bed.status_reason,
        age_s=bed.age_s(now),
        session=(bed.state or {}).get("session") if live else None,
        dose=dose(bed, now, limits) if live else BLANK,
        vitals={name: vital(bed, name, now) if live else BLANK for name in VITALS},
        alarm=top,
        alarm_count=len(bed.alarms) if live else 0,
        highs=tuple(str(a.get("rule_id")) for a in bed.alarms if a.get("priority") == "high") if live else (),
        interlock=interlock_phase(bed) if live else None,
    )


def interlock_phase(bed: BedView) -> str | None:
    """The interlock's phase where a bed has one enabled; None where it is off or not reported."""
    phase = ((bed.state or {}).get("interlock") or {}).get("phase")
    return str(phase) if isinstance(phase, str) and phase in INTERLOCK_PHASES else None


INTERLOCK_PHASES = ("armed", "stopping", "holding", "failed")


def session_text(tile: Tile) -> str:
    """The session, and the interlock where it has acted (it reads in capitals then)."""
    out = tile.session or "--"
    if tile.interlock in ("stopping", "holding", "failed"):
        out += f" | INTERLOCK {tile.interlock.upper()}"
    elif tile.interlock == "armed":
        out += " | interlock armed"
    return out


def ordered(tiles: list[Tile]) -> list[Tile]:
    """Highest alarm first, then by name."""
    return sorted(tiles, key=Tile.sort_key)


def fmt_age(age_s: float | None) -> str:
    if age_s is None:
        return "--"
    if age_s < 100:
        return f"{age_s:.0f} s"
    if age_s < 6000:
        return f"{age_s / 60:.0f} min"
    return f"{age_s / 3600:.0f} h"


def fmt_num(v: Value, digits: int = 0) -> str:
    return "--" if v.value is None else f"{v.value:.{digits}f}"


def beds_text(n: int) -> str:
    return f"{n} bed" if n == 1 else f"{n} beds"
