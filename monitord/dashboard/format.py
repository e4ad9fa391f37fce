"""Text for the bedside screen: priority labels, ages, durations and event-log lines.
Pure functions, so the screen and its tests agree on every word."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

# IEC 60601-1-8: priority shown as symbol and word, never by colour alone.
PRIORITY_LABEL = {"high": "!!! HIGH", "medium": "!! MEDIUM", "low": "! LOW", "advisory": "i ADVISORY"}
PRIORITY_RANK = {"high": 3, "medium": 2, "low": 1, "advisory": 0}


def priority_label(priority: str | None) -> str:
    return PRIORITY_LABEL.get(priority or "", (priority or "?").upper())


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "--"
    return f"{value:.{digits}f}"


def age(seconds: float | None) -> str:
    """How old a measurement is, short: ``45s``, ``3m05s``, ``2h10m``."""
    if seconds is None:
        return "--"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def duration(seconds: float | None) -> str:
    """Elapsed time as ``h:mm:ss``."""
    if seconds is None:
        return "-:--:--"
    s = max(0, int(seconds))
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def countdown(seconds: float) -> str:
    s = max(0, int(seconds + 0.999))
    return f"{s // 60}:{s % 60:02d}"


def vital_of(rule_id: str) -> str | None:
    """Which vital tile an alarm belongs to (``vital.spo2_low`` -> ``spo2``), if any."""
    kind, _, rest = rule_id.partition(".")
    if kind == "vital":
        name = rest.split("_", 1)[0]
    elif kind == "tech" and rest.startswith("range_"):
        name = rest[len("range_"):]
    elif kind == "tech" and rest.endswith("_missing"):
        name = rest[: -len("_missing")]
    elif rule_id == "tech.nibp_overdue":
        name = "sbp"
    else:
        return None
    return "sbp" if name in ("dbp", "map") else name


def clock_time(iso: str | None, tz: tzinfo | None) -> str:
    if not iso:
        return "--:--:--"
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (t.astimezone(tz) if tz else t).strftime("%H:%M:%S")


def _session_text(d: dict[str, Any]) -> str:
    action = d.get("action", "?")
    if action == "admitted":
        p = d.get("patient") or {}
        return f"Admitted {p.get('id')} {p.get('weight_kg')} kg, {p.get('age_years')} y"
    if action == "order_set":
        o = d.get("order") or {}
        return (f"Order {o.get('drug')} {o.get('concentration_mg_ml')} mg/mL at {o.get('rate_ml_h')} mL/h "
                f"= {d.get('dose_rate_mg_kg_h')} mg/kg/h, bolus {o.get('bolus_mg')} mg")
    if action == "baseline_captured":
        base = ", ".join(f"{k.upper()} {v:g}" for k, v in (d.get("baseline") or {}).items())
        return f"Baseline captured: {base}"
    if action == "override":
        return f"Override {d.get('rule_id')}: {d.get('reason')}"
    if action == "checklist":
        answers = d.get("answers") or {}
        yes = [k for k, v in answers.items() if v]
        return f"Checklist: {len(answers)} answered, yes: {', '.join(yes) or 'none'}"
    if action == "stopped":
        return f"Infusion stopped ({d.get('reason') or 'no reason'}), total {d.get('cumulative_mg')} mg"
    if action == "discharged":
        return f"Discharged {d.get('patient_id')}, total {d.get('cumulative_mg')} mg"
    reason = f" ({d['reason']})" if d.get("reason") else ""
    return f"Infusion {action}{reason}" if action in ("started", "paused", "resumed") else f"{action}"


def _observation_text(d: dict[str, Any]) -> str:
    kind = d.get("type")
    if kind == "sedation":
        return f"Sedation {str(d.get('scale')).upper()} {d.get('score')}"
    if kind == "pain":
        return f"Pain {d.get('score')}/10"
    if kind == "effects":
        effects = ", ".join(e.replace("_", " ") for e in d.get("effects", [])) or "none"
        return f"Effects: {effects}" + (f" ({d['note']})" if d.get("note") else "")
    if kind == "rescue":
        return f"Rescue {d.get('drug')} {d.get('dose_mg')} mg {d.get('route')}"
    return str(kind)


def event_line(ev: dict[str, Any]) -> tuple[str, str]:
    """One event-log line and its style class (``high``/``medium``/``low``/``refused``/``info``)."""
    d, kind = ev.get("data", {}), ev.get("kind")
    actor = d.get("actor")
    by = f" [{actor}]" if actor and actor != "system" else ""
    if kind == "alarm":
        text = f"{priority_label(d.get('priority'))} {d.get('transition')}: {d.get('message')} ({d.get('rule_id')})"
        style = d.get("priority", "info") if d.get("transition") in ("raised", "reactivated", "escalated") else "info"
        return text + by, style
    if kind == "session":
        return _session_text(d) + by, "info"
    if kind == "observation":
        return _observation_text(d) + by, "info"
    if kind == "rejected":
        return f"REFUSED {d.get('action')}: {d.get('reason')}" + by, "refused"
    if kind == "link":
        return f"{d.get('device')} link {d.get('state')} {d.get('detail') or ''}".rstrip(), "info"
    if kind == "device_alarm":
        active = ", ".join(d.get("active", [])) or "cleared"
        return f"{d.get('device')} reports: {active}", "info"
    if kind == "system":
        rest = ", ".join(f"{k}={v}" for k, v in d.items() if k != "action")
        return f"System {d.get('action')}" + (f": {rest}" if rest else ""), "info"
    return f"{kind}", "info"
