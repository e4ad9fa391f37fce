"""Every payload the feed publishes or accepts, built in one place (contract: docs/mqtt.md).

Each builder returns a JSON-ready dict that validates against ``monitord/schemas/<kind>.json``.
Times are ISO-8601 UTC with a ``Z``; every quantity carries its unit and, where one exists,
its IEEE 11073-10101 code; every message carries the bed's event ``seq`` (and alarm messages
``alarm_seq``) so a consumer can detect gaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitord import __version__
from monitord.events import Event, EventKind
from monitord.mqtt import mdc
from monitord.mqtt import topics as t
from monitord.readings import VITAL_UNITS, CentralReceipt, Vital

SCHEMA_VERSION = 1


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(value: Any) -> str | None:
    """An ISO time from an event, in the feed's form (milliseconds, ``Z``); None if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _q(value: float | None, unit: str, code: mdc.Mdc | None = None, unit_code: mdc.Mdc | None = None) -> dict[str, Any]:
    """A quantity: value, unit and, when known, the MDC codes of the quantity and the unit."""
    out: dict[str, Any] = {"value": value, "unit": unit}
    if code is not None:
        out["mdc"] = code.as_dict()
    unit_code = unit_code or mdc.UNITS.get(unit)
    if unit_code is not None:
        out["unit_mdc"] = unit_code.as_dict()
    return out


def _vital(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    vital = Vital(name)
    out = _q(fields.get("value"), fields["unit"], mdc.VITALS[vital], mdc.vital_unit(vital, fields["unit"]))
    for key in ("quality", "age_s", "stale", "measured_at", "source"):
        if key in fields:
            out[key] = fields[key]
    return out


# --- bed status (retained; the will is its offline form) -----------------------------------


def status(bed_id: str, online: bool, now: datetime, devices: dict[str, Any] | None = None,
           reason: str = "") -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "bed_id": bed_id,
        "status": "online" if online else "offline",
        "time": iso(now),
        "version": __version__,
        "reason": reason,
        "devices": devices or {},
    }


def devices_from_snapshot(snapshot: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Link state and time of the last reading of each device."""
    out = {}
    for name, link in sorted(snapshot.get("links", {}).items()):
        age = link.get("last_seen_age_s")
        out[name] = {
            "role": link.get("role"),
            "link": link.get("state"),
            "last_reading_at": iso(now - timedelta(seconds=age)) if age is not None else None,
        }
    return out


# --- live state (retained, coalesced) ------------------------------------------------------


def state(snapshot: dict[str, Any]) -> dict[str, Any]:
    inf = snapshot.get("infusion") or {}
    order = snapshot.get("order")
    patient = snapshot.get("patient")
    sed = snapshot.get("sedation")
    alarms = snapshot.get("alarms", [])
    return {
        "v": SCHEMA_VERSION,
        "bed_id": snapshot["bed_id"],
        "seq": snapshot["seq"],
        "time": snapshot["time"],
        "care_area": snapshot["care_area"],
        "session": snapshot["status"],
        "patient_id": patient["id"] if patient else None,
        "order": {
            "drug": order["drug"],
            "concentration": _q(order["concentration_mg_ml"], "mg/mL", mdc.INFUSION["concentration"]),
            "rate": _q(order["rate_ml_h"], "mL/h", mdc.INFUSION["rate"]),
            "bolus": _q(order["bolus_mg"], "mg"),
        } if order else None,
        "started_at": snapshot.get("started_at"),
        "infusion": {
            "pump_state": inf.get("state"),
            "rate": _q(inf.get("rate_ml_h"), "mL/h", mdc.INFUSION["rate"]),
            "dose_rate": _q(inf.get("dose_rate_mg_kg_h"), "mg/kg/h", mdc.INFUSION["dose_rate"]),
            "cumulative": _q(inf.get("cumulative_mg"), "mg"),
            "elapsed": _q(inf.get("infusion_time_s"), "s"),
            "age_s": inf.get("age_s"),
        },
        "vitals": {name: _vital(name, v) for name, v in snapshot.get("vitals", {}).items()},
        "sedation": {"scale": sed["scale"], "score": sed["score"], "age_s": sed["age_s"]} if sed else None,
        "alarm_count": len(alarms),
        "highest_alarm": _alarm_brief(alarms[0]) if alarms else None,
        "sounding": (snapshot.get("audio") or {}).get("sounding"),
        # Optional in v1 (added later; a consumer must not require them).
        "estimate": _estimate(snapshot.get("estimate")),
        "interlock": _interlock(snapshot.get("interlock")),
        "plan": _plan(inf),
        "observation": _observation_due(snapshot.get("observation")),
        "discharge": _discharge(snapshot.get("discharge")),
    }


def _alarm_brief(a: dict[str, Any]) -> dict[str, Any]:
    return {"rule_id": a["rule_id"], "priority": a["priority"], "message": a["message"]}


def _estimate(e: dict[str, Any] | None) -> dict[str, Any] | None:
    """The plasma-concentration estimate, labelled as what it is: a population-model estimate,
    never a measurement (no MDC observation code, ``kind`` = ``model_estimate``)."""
    if not e:
        return None
    band = e.get("analgesic_band_ng_ml") or [None, None]
    return {
        "kind": e.get("kind"),
        "quantity": e.get("quantity"),
        "model": e.get("model"),
        "source": e.get("source"),
        "concentration": _q(e.get("concentration_ng_ml"), "ng/mL"),
        "peak": _q(e.get("peak_ng_ml"), "ng/mL"),
        "peak_age_s": e.get("peak_age_s"),
        "below_level": _q(e.get("below_level_ng_ml"), "ng/mL"),
        "below_level_in": _q(e.get("below_level_in_s"), "s"),
        "analgesic_level": _q(e.get("analgesic_level_ng_ml"), "ng/mL"),
        "analgesic_band": {"low": _q(band[0], "ng/mL"), "high": _q(band[1], "ng/mL")},
        "delivered": _q(e.get("delivered_mg"), "mg"),
        "data_age_s": e.get("data_age_s"),
    }


def _interlock(il: dict[str, Any] | None) -> dict[str, Any] | None:
    if not il:
        return None
    return {k: il.get(k) for k in ("phase", "trigger", "attempts", "pump_restarted", "since_s")}


def _plan(inf: dict[str, Any]) -> dict[str, Any] | None:
    """Delivered against the order's plan; None when the order has no plan."""
    if inf.get("planned_duration_min") is None:
        return None
    return {
        "duration": _q(inf.get("planned_duration_min"), "min"),
        "total": _q(inf.get("planned_total_mg"), "mg"),
        "delivered": _q(inf.get("delivered_mg"), "mg"),
        "projected_total": _q(inf.get("projected_total_mg"), "mg"),
        "reaches_minimum": inf.get("reaches_minimum"),
    }


def _observation_due(o: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"due_in_s": o.get("due_in_s"), "overdue": bool(o.get("overdue"))} if o else None


def _discharge(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if not d:
        return None
    return {"ready": bool(d.get("ready")),
            "criteria": [{"id": c.get("id"), "met": bool(c.get("met")), "detail": c.get("detail") or ""}
                         for c in d.get("criteria") or []]}


# --- active alarms (retained, resent in full on every connect: IHE ACM "refresh") -----------


def alarms(snapshot: dict[str, Any], alarm_seq: int, refresh: bool) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "bed_id": snapshot["bed_id"],
        "seq": snapshot["seq"],
        "alarm_seq": alarm_seq,
        "time": snapshot["time"],
        "refresh": refresh,
        "alarms": [_alarm_fields(a) for a in snapshot.get("alarms", [])],
    }


_ALARM_KEYS = ("rule_id", "priority", "kind", "state", "inactivation", "latching", "message", "value", "source",
               "since")


def _alarm_fields(a: dict[str, Any]) -> dict[str, Any]:
    out = {k: a.get(k) for k in _ALARM_KEYS}
    if isinstance(a.get("occurrence_seq"), int):  # optional: the alarm_seq that started this occurrence
        out["occurrence_seq"] = a["occurrence_seq"]
    return out


# --- forwarded events (from the store, in seq order) ----------------------------------------


def _envelope(ev: Event) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "bed_id": ev.bed_id, "seq": ev.seq, "time": iso(ev.time),
            "clock_synced": ev.clock_synced}


def alarm_event(ev: Event) -> dict[str, Any]:
    d = ev.data
    return _envelope(ev) | _alarm_fields(d) | {
        "alarm_seq": d["alarm_seq"],
        "transition": d["transition"],
        "phase": d["phase"],
        "actor": d.get("actor"),
    }


def vitals_event(ev: Event) -> dict[str, Any]:
    d = ev.data
    return _envelope(ev) | {
        "device": d.get("device"),
        "device_time": d.get("device_time"),
        "nibp_time": d.get("nibp_time"),
        "new_nibp": bool(d.get("new_nibp")),
        "values": {
            name: _vital(name, {"value": v, "unit": VITAL_UNITS[Vital(name)], "quality": d.get("quality")})
            for name, v in d.get("values", {}).items()
        },
        "discarded": dict(d.get("discarded", {})),
    }


def infusion_event(ev: Event) -> dict[str, Any]:
    d = ev.data
    return _envelope(ev) | {
        "device": d.get("device"),
        "device_time": d.get("device_time"),
        "pump_state": d.get("state"),
        "quality": d.get("quality"),
        "drug": d.get("drug"),
        "rate": _q(d.get("rate_ml_h"), "mL/h", mdc.INFUSION["rate"]),
        "volume_infused": _q(d.get("volume_infused_ml"), "mL", mdc.INFUSION["volume_infused"]),
        "volume_to_be_infused": _q(d.get("volume_to_be_infused_ml"), "mL", mdc.INFUSION["volume_to_be_infused"]),
        "concentration": _q(d.get("concentration_mg_ml"), "mg/mL", mdc.INFUSION["concentration"]),
        "dose_rate": _q(d.get("dose_rate_mg_kg_h"), "mg/kg/h", mdc.INFUSION["dose_rate"]),
        "cumulative": _q(d.get("cumulative_mg"), "mg"),
        "elapsed": _q(d.get("infusion_time_s"), "s"),
    }


def interlock_event(ev: Event) -> dict[str, Any]:
    """One step of the pump stop interlock. The release reason (free text) stays in the store."""
    d = ev.data
    out = _envelope(ev) | {"step": d.get("step"), "phase": d.get("phase"), "trigger": d.get("trigger"),
                           "attempts": d.get("attempts")}
    for key in ("command", "pump_state", "late", "from", "actor"):
        if key in d:
            out[key] = d[key]
    if "rate_ml_h" in d:
        out["rate"] = _q(d["rate_ml_h"], "mL/h", mdc.INFUSION["rate"])
    return out


# Fields of an observation published as they are; free text (notes, reasons) stays in the store.
_OBSERVATION_KEYS = ("scale", "score", "total", "items", "effects", "severity", "drug", "route")


def observation_event(ev: Event) -> dict[str, Any]:
    """A nurse's observation with the time it was due and how late it came (null: not scheduled)."""
    d = ev.data
    out = _envelope(ev) | {"type": d.get("type"), "actor": d.get("actor"), "due_at": _time(d.get("due_at")),
                           "late_s": d.get("late_s")}
    out |= {k: d[k] for k in _OBSERVATION_KEYS if k in d}
    if "dose_mg" in d:
        out["dose"] = _q(d["dose_mg"], "mg")
    if "dose_mg_kg" in d:
        out["dose_per_kg"] = _q(d["dose_mg_kg"], "mg/kg")
    return out


# kind -> (topic leaf, builder, schema name). Kinds absent here are not forwarded one by one:
# their effect reaches central stations through the retained state.
FORWARDED = {
    EventKind.ALARM: (t.ALARM_EVENTS, alarm_event, "alarm-event"),
    EventKind.VITALS: (t.VITALS, vitals_event, "vitals"),
    EventKind.INFUSION: (t.INFUSION, infusion_event, "infusion"),
    EventKind.INTERLOCK: (t.INTERLOCK_EVENTS, interlock_event, "interlock-event"),
    EventKind.OBSERVATION: (t.OBSERVATION_EVENTS, observation_event, "observation-event"),
}


# --- messages to the bed: the one command (optional, off by default) and delivery receipts ---


@dataclass(frozen=True, slots=True)
class AckCommand:
    station: str
    rule_id: str
    user: str
    alarm_seq: int | None = None  # the transition the station saw: an older one is refused as stale


def ack_command(station: str, rule_id: str, user: str, alarm_seq: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"v": SCHEMA_VERSION, "station": station, "rule_id": rule_id, "user": user}
    if alarm_seq is not None:
        out["alarm_seq"] = alarm_seq
    return out


def parse_ack(payload: dict[str, Any]) -> AckCommand:
    """Fields of a schema-valid ``cmd/ack`` payload (validate first)."""
    seq = payload.get("alarm_seq")
    return AckCommand(str(payload["station"]).strip(), str(payload["rule_id"]).strip(), str(payload["user"]).strip(),
                      int(seq) if seq is not None else None)


# Station ids in receipts: what the bed accepts (monitord.intent), and the receipt schema's pattern.
STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def receipt(station: str, rule_id: str, alarm_seq: int, now: datetime) -> dict[str, Any]:
    """A central station's confirmation that it has shown (or stored) alarm transition ``alarm_seq``."""
    return {"v": SCHEMA_VERSION, "station": station, "rule_id": rule_id, "alarm_seq": alarm_seq, "time": iso(now)}


def parse_receipt(payload: dict[str, Any]) -> CentralReceipt:
    """The bed's input for a schema-valid ``receipt`` payload (validate first). It names only
    what was seen: it carries no user, no action, and cannot acknowledge or silence anything."""
    return CentralReceipt(str(payload["station"]), str(payload["rule_id"]), int(payload["alarm_seq"]))
