"""Text for the bedside screen: priority labels, ages, durations and event-log lines.
Pure functions, so the screen and its tests agree on every word."""

from __future__ import annotations

import re
import textwrap
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


def wrap(text: str, width: int) -> list[str]:
    """Words wrapped to ``width`` (at least one line, never a hyphen split)."""
    return textwrap.wrap(text, max(1, width), break_on_hyphens=False) or [""]


def clock_time(iso: str | None, tz: tzinfo | None) -> str:
    if not iso:
        return "--:--:--"
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (t.astimezone(tz) if tz else t).strftime("%H:%M:%S")


# Event-log words for the engine's identifiers (docs/events.md).
VITAL_LABEL = {"hr": "HR", "pulse": "Pulse", "sbp": "SBP", "dbp": "DBP", "map": "MAP", "spo2": "SpO2",
               "rr": "RR", "etco2": "EtCO2", "temp": "Temp"}
TRANSITION_LABEL = {"audio_paused": "audio paused", "audio_pause_ended": "audio pause ended"}
LINK_LABEL = {"silent": "SILENT (no reply)", "garbled": "GARBLED (unreadable data)",
              "reconnecting": "LOST, reconnecting"}
# Transitions that call for attention; the others (ack, pause, clear, reset) are shown plain.
ATTENTION = ("raised", "reactivated", "escalated", "latched")


def words(identifier: object) -> str:
    """``near_empty`` -> ``near empty``; ``SetOrder`` -> ``set order``."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(identifier))
    return text.replace("_", " ").lower()


def amount(value: object) -> str:
    """A number without noise (``35.0`` -> ``35``); anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?" if value is None else str(value)
    return f"{value:g}"


def _rest(d: dict[str, Any], skip: tuple[str, ...]) -> str:
    """Fields of an event kind this screen has no words for, so nothing is hidden."""
    rest = ", ".join(f"{words(k)} {v}" for k, v in d.items() if k not in skip and v not in (None, "", [], {}))
    return f": {rest}" if rest else ""


def _total(d: dict[str, Any]) -> str:
    t = f"total {amount(d.get('cumulative_mg'))} mg"
    return t + (f" over {duration(d['infusion_time_s'])}" if d.get("infusion_time_s") is not None else "")


def _session_text(d: dict[str, Any]) -> str:
    action = d.get("action", "?")
    if action == "admitted":
        p = d.get("patient") or {}
        flags = "".join(f", {f}" for f in ("elderly", "comorbid") if p.get(f))
        confirmed = f" (confirmed after: {d['weight_confirmed']})" if d.get("weight_confirmed") else ""
        return f"Admitted {p.get('id')}, {amount(p.get('weight_kg'))} kg, {p.get('age_years')} y{flags}{confirmed}"
    if action == "weight_confirmed":
        entered = d.get("previous_entry_kg")
        was = f" (entry was {amount(entered)} kg)" if entered is not None and entered != d.get("weight_kg") else ""
        return f"Weight {amount(d.get('weight_kg'))} kg confirmed{was}"
    if action == "order_set":
        o = d.get("order") or {}
        bolus = f"bolus {amount(o['bolus_mg'])} mg" if o.get("bolus_mg") else "no bolus"
        if o.get("bolus_mg") and d.get("bolus_mg_kg") is not None:
            bolus += f" ({amount(d['bolus_mg_kg'])} mg/kg)"
        syringe = f", {amount(o['syringe_ml'])} mL syringe" if o.get("syringe_ml") else ""
        confirmed = f"; confirmed: {d.get('verdict')}" if d.get("confirmed") else ""
        return (f"Order {o.get('drug')} {amount(o.get('concentration_mg_ml'))} mg/mL at "
                f"{amount(o.get('rate_ml_h'))} mL/h = {amount(d.get('dose_rate_mg_kg_h'))} mg/kg/h, {bolus}{syringe}"
                f"{confirmed}")
    if action == "baseline_captured":
        base = ", ".join(f"{VITAL_LABEL.get(k, k)} {amount(v)}" for k, v in (d.get("baseline") or {}).items())
        return f"Baseline captured{' at start' if d.get('at_start') else ''}: {base or 'none'}"
    if action == "override":
        who = f"by {d.get('actor')}"
        if d.get("entered_by") and d.get("entered_by") != d.get("actor"):
            who += f", entered by {d['entered_by']}"
        return f"Physician override of {d.get('rule_id')} {who}: {d.get('reason')}"
    if action == "checklist":
        answers = d.get("answers") or {}
        yes = [words(k) for k, v in answers.items() if v]
        return f"Checklist: {len(answers)} answered, yes: {', '.join(yes) or 'none'}"
    if action == "treatment_count":
        last = f", last weight {amount(d['last_weight_kg'])} kg" if d.get("last_weight_kg") is not None else ""
        return f"Treatments in last 12 months: {d.get('count')}{last}"
    if action in ("started", "resumed"):
        return f"Infusion {action}"
    if action == "paused":
        return "Infusion paused" + (f": {d['reason']}" if d.get("reason") else "")
    if action == "stopped":
        still = " - THE PUMP IS STILL INFUSING" if d.get("pump_infusing") else ""
        return f"Infusion stopped ({d.get('reason') or 'no reason given'}), {_total(d)}{still}"
    if action == "discharged":
        unmet = ", ".join(words(c) for c in d.get("criteria_unmet") or [])
        why = f"; criteria not met: {unmet} (reason: {d.get('reason') or 'none given'})" if unmet else ""
        return f"Discharged {d.get('patient_id')}, {_total(d)}{why}"
    if action == "escort_confirmed":
        return "Escort confirmed" + (f": {d['name']}" if d.get("name") else "")
    if action in ("controlled_dispensed", "controlled_wasted"):
        return (f"Controlled drug {action.removeprefix('controlled_')}: {amount(d.get('volume_ml'))} mL = "
                f"{amount(d.get('mg'))} mg, witness {d.get('witness')}")
    if action == "controlled_record_closed":
        return (f"Controlled-drug record closed: dispensed {amount(d.get('dispensed_mg'))} mg, infused "
                f"{amount(d.get('infused_mg'))} mg, wasted {amount(d.get('wasted_mg'))} mg, witness {d.get('witness')}")
    return words(action).capitalize() + _rest(d, ("action", "actor"))


def _observation_text(d: dict[str, Any]) -> str:
    kind = d.get("type")
    if kind == "sedation":
        late = f" ({age(d['late_s'])} late)" if (d.get("late_s") or 0) >= 60 else ""
        return f"Sedation {str(d.get('scale')).upper()} {d.get('score')}{late}"
    if kind == "pain":
        return f"Pain {d.get('score')}/10"
    if kind == "effects":
        seen = d.get("effects") or []
        effects = ", ".join(words(e) for e in seen) + (f" - {d['severity']}" if d.get("severity") else "") \
            if seen else "none (resolved)"
        return f"Effects: {effects}" + (f" ({d['note']})" if d.get("note") else "")
    if kind == "rescue":
        reason = f" ({d['reason']})" if d.get("reason") else ""
        return f"Rescue {d.get('drug')} {amount(d.get('dose_mg'))} mg {d.get('route')}{reason}"
    if kind == "manual_bolus":
        note = f" ({d['note']})" if d.get("note") else ""
        return (f"Hand bolus {d.get('drug')} {amount(d.get('dose_mg'))} mg ({amount(d.get('dose_mg_kg'))} mg/kg) "
                f"{d.get('route')}{note}")
    if kind == "discharge_score":
        return f"Discharge score {str(d.get('scale')).upper()} {d.get('total')}/10"
    return words(kind).capitalize() + _rest(d, ("type", "actor"))


def _system_text(d: dict[str, Any], tz: tzinfo | None) -> tuple[str, str]:
    action = d.get("action")
    if action == "started":
        devices = ", ".join(d.get("devices") or []) or "no devices"
        return f"Monitoring started ({devices})", "info"
    if action == "stopping":
        return "Monitoring stopping", "warning"
    if action == "recovered":
        span = f" ({clock_time(d.get('down_from'), tz)} to {clock_time(d.get('down_to'), tz)})" if d.get("down_from") else ""
        status = f", bed {d['status']}" if d.get("status") else ""
        return f"Monitoring resumed after {age(d.get('downtime_s'))} down{span}{status}", "warning"
    if action == "output_status":
        if d.get("ok"):
            return f"Output {d.get('component')} working again", "info"
        return f"OUTPUT FAULT {d.get('component')}: {d.get('detail') or 'failed'}", "refused"
    if action == "store_reset":
        moved = f": old records moved to {d['moved_to']}" if d.get("moved_to") else ""
        return (f"EVENT STORE RESET ({d.get('reason')}){moved}", "refused")
    if action == "mqtt_command_refused":
        who = "/".join(str(x) for x in (d.get("station"), d.get("user")) if x) or "unknown station"
        alarm = f" for {d['rule_id']}" if d.get("rule_id") else ""
        return f"Central station command{alarm} from {who} refused: {d.get('reason')}", "refused"
    return f"System {words(action)}" + _rest(d, ("action",)), "info"


def _alarm_text(d: dict[str, Any], by: str) -> tuple[str, str]:
    transition = d.get("transition")
    text = (f"{priority_label(d.get('priority'))} {TRANSITION_LABEL.get(str(transition), transition)}{by}: "
            f"{d.get('message')} ({d.get('rule_id')})")
    return text, (d.get("priority") or "info") if transition in ATTENTION else "info"


# -- the pump stop interlock (docs/interlock.md) ---------------------------------------------------

# Phases with something to release at the bedside (the daemon refuses a release otherwise).
RELEASABLE = ("stopping", "holding", "failed")
INTERLOCK_PANEL = {"armed": "interlock armed", "stopping": "INTERLOCK STOPPING PUMP", "holding": "INTERLOCK HOLDING",
                   "failed": "INTERLOCK: PUMP DID NOT STOP"}


def interlock_releasable(il: dict[str, Any] | None) -> bool:
    return bool(il) and (il or {}).get("phase") in RELEASABLE


def interlock_banner(il: dict[str, Any] | None) -> str:
    """The banner line for an interlock that has acted (empty while off or armed)."""
    if not interlock_releasable(il):
        return ""
    assert il is not None
    trigger = il.get("trigger") or "?"
    if il.get("phase") == "failed":
        return f"PUMP DID NOT STOP: STOP IT BY HAND (interlock, {trigger})"
    if il.get("phase") == "stopping":
        return f"INTERLOCK STOPPING THE PUMP ({trigger}): check the patient"
    if il.get("pump_restarted"):
        return f"PUMP RESTARTED WHILE THE INTERLOCK HOLDS ({trigger}): check the patient"
    return f"PUMP STOPPED BY INTERLOCK ({trigger}): check the patient"


def _interlock_text(d: dict[str, Any], by: str) -> tuple[str, str]:
    step, trigger = d.get("step"), d.get("trigger") or "?"
    if step == "armed":
        return "Interlock armed", "info"
    if step == "triggered":
        return f"INTERLOCK TRIGGERED by {trigger}: stopping the pump", "high"
    if step == "command_sent":
        return f"Interlock sent {d.get('command', 'stop')} to the pump (attempt {d.get('attempts')})", "info"
    if step == "confirmed":
        late = " (late: after the did-not-stop alarm)" if d.get("late") else ""
        return (f"Interlock: the pump reports it stopped ({d.get('pump_state')}, {amount(d.get('rate_ml_h'))} mL/h)"
                f"{late}", "warning")
    if step == "not_confirmed":
        return f"INTERLOCK: PUMP DID NOT STOP after {d.get('attempts')} attempts: stop it by hand", "high"
    if step == "pump_restarted":
        return f"PUMP RESTARTED while the interlock holds ({d.get('pump_state')}, {amount(d.get('rate_ml_h'))} mL/h)", "high"
    if step == "pump_stopped_again":
        return "Pump stopped again; the interlock still holds", "warning"
    if step == "released":
        return f"Interlock released (was {d.get('from')}): {d.get('reason')}{by}", "warning"
    return f"Interlock {words(step)}" + _rest(d, ("step",)), "info"


def event_line(ev: dict[str, Any], tz: tzinfo | None = None) -> tuple[str, str]:
    """One event-log line and its style (``high``/``medium``/``low``/``advisory``/``refused``/
    ``warning``/``info``). ``tz`` is for times inside the event (a recovery's downtime)."""
    d, kind = ev.get("data") or {}, ev.get("kind")
    actor = d.get("actor")
    by = f" [{actor}]" if actor and actor != "system" else ""
    if kind == "alarm":
        return _alarm_text(d, f" by {actor}" if by else "")
    if kind == "session":
        action = d.get("action")
        style = "warning" if (action == "stopped" and d.get("pump_infusing")) or \
            (action == "discharged" and d.get("criteria_unmet")) else "info"
        return _session_text(d) + ("" if action == "override" else by), style
    if kind == "observation":
        return _observation_text(d) + by, "info"
    if kind == "rejected":
        who = f"{words(d.get('action'))}{f' by {actor}' if by else ''}"
        if d.get("confirmation_required"):
            return f"NOT RECORDED until confirmed: {d.get('reason')} ({who})", "warning"
        return f"NOT RECORDED: {d.get('reason')} ({who})", "refused"
    if kind == "link":
        state = str(d.get("state"))
        errors = f", {d['protocol_errors']} protocol errors" if d.get("protocol_errors") else ""
        detail = f": {d['detail']}" if d.get("detail") else ""
        return (f"{d.get('device')} ({d.get('role')}) link {LINK_LABEL.get(state, state)}{detail}{errors}",
                "info" if state == "connected" else "warning")
    if kind == "device_alarm":
        active = ", ".join(words(a) for a in d.get("active") or [])
        detail = f" ({d['detail']})" if d.get("detail") else ""
        if not active:
            return f"{d.get('device')} ({d.get('role')}) device alarms cleared{detail}", "info"
        return f"{d.get('device')} ({d.get('role')}) reports: {active.upper()}{detail}", "warning"
    if kind == "system":
        return _system_text(d, tz)
    if kind == "interlock":
        return _interlock_text(d, by)
    return f"{words(kind).capitalize()}{_rest(d, ())}", "info"
