"""IHE PCD messages from feed payloads: PCD-01 ``ORU^R01`` observations and PCD-04 ``ORU^R40``
alerts. Pure functions; the mapping and its sources are in docs/hl7.md.

Containment (OBX-4 ``<MDS>.<VMD>.<CHAN>.<METRIC>``): the feed does not describe the devices'
virtual devices or channels, so every metric sits at VMD 1, channel 1 with a fixed metric
number, under one MDS per device: 1 patient monitor, 2 infusion pump, 3 the bedside system
(alerts from nurse entries and schedules, which no device reports).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitord.hl7.er7 import ENCODING, comp, message, num, segment, sub, ts
from monitord.mqtt import mdc
from monitord.readings import VITAL_UNITS, Vital

VERSION = "2.6"
PROFILE_PCD01 = comp("IHE_PCD_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.1.1.1", "ISO")
PROFILE_PCD04 = comp("IHE_PCD_ACM_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.4.4", "ISO")
LOCAL = "99MONITORD"  # HL7 table 0396 "99zzz": a local coding system, for what MDC has no code for here
MONITORING = comp("182777000", "monitoring of patient", "SCT")
MDC_EVT_ALARM = (196616, "MDC_EVT_ALARM")

# Alert facets (OBX-3 of the PCD-04 OBX segments; OBX-4 ends in the facet number).
ALERT_SOURCE = (68480, "MDC_ATTR_ALERT_SOURCE")
EVENT_PHASE = (68481, "MDC_ATTR_EVENT_PHASE")
ALARM_STATE = (68482, "MDC_ATTR_ALARM_STATE")
INACTIVATION = (68483, "MDC_ATTR_ALARM_INACTIVATION_STATE")
ALARM_PRIORITY = (68484, "MDC_ATTR_ALARM_PRIORITY")
ALERT_TYPE = (68485, "MDC_ATTR_ALERT_TYPE")

PRIORITY = {"high": "PH", "medium": "PM", "low": "PL", "advisory": "PN"}
TYPE = {"physiological": "SP", "technical": "ST", "advisory": "SA"}
INACTIVATION_STATE = {"enabled": "enabled", "acknowledged": "alert-acknowledged", "audio_paused": "audio-paused"}


@dataclass(frozen=True)
class Device:
    mds: int
    code: str  # OBX-3 of the device row (CWE)


MONITOR = Device(1, comp("69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "MDC"))
PUMP = Device(2, comp("69985", "MDC_DEV_PUMP_INFUS_MDS", "MDC"))
BEDSIDE = Device(3, comp("bedside", "monitord bedside system", LOCAL))

# Metric numbers (the fourth OBX-4 level), fixed so a receiver sees the same numbers every time.
VITAL_METRIC = {"hr": 1, "pulse": 2, "spo2": 3, "rr": 4, "etco2": 5, "temp": 6, "sbp": 7, "dbp": 8, "map": 9}
EPISODIC = frozenset({"sbp", "dbp", "map"})  # NIBP: one measurement, its own time in OBX-14
INFUSION_METRIC = {"rate": 1, "volume_infused": 2, "volume_to_be_infused": 3, "concentration": 4, "dose_rate": 5,
                   "cumulative": 6}
# Feed quantities without an MDC term in monitord/mqtt/mdc.py: a local code, never an invented MDC one.
LOCAL_CODES = {"cumulative": ("cumulative_dose", "Cumulative drug dose")}
# Feed units (UCUM-style) to UCUM codes: UCUM writes millimetres of mercury mm[Hg].
UCUM = {"mmHg": "mm[Hg]"}
# Alerts whose source is a dose rate (mg/kg/h), reported with MDC_RATE_DOSE.
DOSE_RATE_RULES = frozenset({"dose.low", "dose.care_area", "dose.soft_max", "dose.soft_max_icu", "dose.hard_max"})


@dataclass(frozen=True)
class Identity:
    """Who sends, to whom, and how patients and places are named."""

    facility: str = "HOSPITAL"
    application: str = "MONITORD"
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"  # MSH-11: P production, D debugging
    patient_authority: str = "MONITORD"  # PID-3 CX-4: who assigned the (pseudonymous) patient id
    patient_class: str = "U"  # PV1-2: not known to the bedside
    point_of_care: str = ""  # PV1-3 PL-1; default: the bed's care area
    root: str = "monitord/v1"

    def uid(self, *names: str) -> str:
        """A stable UUID (version 5) for the gateway, a bed's device or a bed."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "monitord:" + "/".join((self.root.strip("/"), *names))))


@dataclass(frozen=True)
class Patient:
    """What the bed's ``state`` says about who and where, when a message is built."""

    patient_id: str | None = None
    care_area: str | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Patient:
        state = state or {}
        pid, area = state.get("patient_id"), state.get("care_area")
        return cls(pid if isinstance(pid, str) and pid else None, area if isinstance(area, str) else None)


@dataclass(frozen=True)
class Row:
    """One observation: OBX-3, value, OBX-6, OBX-4 metric number, OBX-14 (episodic only), status."""

    code: str
    value: float
    units: str
    metric: int
    measured: str | None = None
    flags: str = ""  # OBX-8


@dataclass(frozen=True)
class Built:
    kind: str  # "pcd01" or "pcd04"
    control_id: str
    text: str


def cwe(mdc: Any) -> str | None:
    if isinstance(mdc, dict) and isinstance(mdc.get("code"), int) and isinstance(mdc.get("refid"), str):
        return comp(str(mdc["code"]), mdc["refid"], "MDC")
    return None


def units(q: dict[str, Any]) -> str:
    """OBX-6: the MDC unit code where the feed has one, and the UCUM code as the alternate."""
    unit = str(q.get("unit") or "")
    ucum = UCUM.get(unit, unit)
    um = q.get("unit_mdc")
    if isinstance(um, dict) and isinstance(um.get("code"), int):
        return comp(str(um["code"]), um.get("refid"), "MDC", ucum, unit, "UCUM")
    return comp(ucum, unit, "UCUM") if unit else ""


def quantity_row(name: str, q: Any, metric: int, measured: str | None = None) -> Row | None:
    """A feed quantity as an OBX row, or None when it has no value (not measured)."""
    if not isinstance(q, dict) or not isinstance(q.get("value"), int | float) or isinstance(q.get("value"), bool):
        return None
    code = cwe(q.get("mdc"))
    if code is None and name in LOCAL_CODES:
        code = comp(LOCAL_CODES[name][0], LOCAL_CODES[name][1], LOCAL)
    if code is None:
        return None
    flags = "QUES" if q.get("quality") == "questionable" else ""
    return Row(code, float(q["value"]), units(q), metric, measured, flags)


def vitals_rows(payload: dict[str, Any]) -> dict[str, Row]:
    """Rows of one ``vitals`` message, keyed by vital. Invalid values and repeated NIBP are left out."""
    out: dict[str, Row] = {}
    nibp_time = payload.get("nibp_time") or payload.get("time")
    for name, q in (payload.get("values") or {}).items():
        if name not in VITAL_METRIC or not isinstance(q, dict) or q.get("quality") == "invalid":
            continue
        episodic = name in EPISODIC
        if episodic and not payload.get("new_nibp"):
            continue  # the last cuff reading, repeated with every frame
        row = quantity_row(name, q, VITAL_METRIC[name], nibp_time if episodic else None)
        if row is not None:
            out[name] = row
    return out


def infusion_rows(payload: dict[str, Any]) -> dict[str, Row]:
    if payload.get("quality") == "invalid":
        return {}
    rows = {name: quantity_row(name, payload.get(name), n) for name, n in INFUSION_METRIC.items()}
    return {name: r for name, r in rows.items() if r is not None}


def _equipment(ident: Identity, bed: str, device: str) -> str:
    """OBX-18 (EI): a readable id and a stable UUID for the device at this bed."""
    uid = ident.uid(bed, device)
    return comp(f"{bed}.{device}", "", uid, "UUID")


def _header(ident: Identity, kind: str, control_id: str, now: datetime, patient: Patient, bed: str) -> list[str]:
    msg_type, profile = (("ORU", "R01", "ORU_R01"), PROFILE_PCD01) if kind == "pcd01" else \
        (("ORU", "R40", "ORU_R40"), PROFILE_PCD04)
    msh = segment("MSH", ENCODING, comp(ident.application, ident.uid("gateway"), "UUID"), comp(ident.facility),
                  comp(ident.receiving_application), comp(ident.receiving_facility), ts(now), "", comp(*msg_type),
                  comp(control_id), ident.processing_id, VERSION, "", "", "AL", "NE", "", "UNICODE UTF-8", "", "",
                  profile)
    pid = segment("PID", "", "", comp(patient.patient_id or "", "", "", ident.patient_authority, "PI"), "",
                  comp("", "", "", "", "", "", "U"))
    location = comp(ident.point_of_care or patient.care_area or "", "", bed, ident.facility)
    pv1 = segment("PV1", "", ident.patient_class, location)
    return [msh, pid, pv1]


def observations(ident: Identity, bed: str, device: str, role: str, rows: Iterable[Row], when: str,
                 patient: Patient, control_id: str, now: datetime) -> Built:
    """PCD-01 for one device: its MDS row, then its metrics. ``when`` (OBR-7) is the interval start."""
    dev = PUMP if role == "pump" else MONITOR
    segs = _header(ident, "pcd01", control_id, now, patient, bed)
    filler = comp(control_id, ident.application, ident.uid("gateway"), "UUID")
    segs.append(segment("OBR", "1", filler, filler, MONITORING, "", "", ts(when)))
    segs.append(segment("OBX", "1", "", dev.code, f"{dev.mds}.0.0.0", "", "", "", "", "", "", "X", "", "", "", "",
                        "", "", _equipment(ident, bed, device)))
    for i, r in enumerate(sorted(rows, key=lambda r: r.metric), start=2):
        segs.append(segment("OBX", str(i), "NM", r.code, f"{dev.mds}.1.1.{r.metric}", num(r.value), r.units, "",
                            r.flags, "", "", "R", "", "", ts(r.measured) if r.measured else ""))
    return Built("pcd01", control_id, message(*segs))


def alert_device(rule_id: str) -> tuple[Device, str]:
    """Which device an alert comes from (its MDS) and that device's role name."""
    if rule_id.startswith(("pump.", "tech.pump", "dose.")):
        return PUMP, "pump"
    if rule_id.startswith(("vital.", "resp.", "tech.monitor", "tech.spo2_missing", "tech.etco2_missing",
                           "tech.range_")):
        return MONITOR, "monitor"
    return BEDSIDE, "bedside"


def _source(ev: dict[str, Any]) -> tuple[str, str, str, str, int]:
    """Facet 2 (source identification): value type, OBX-3, OBX-5, OBX-6 and the metric number."""
    rule_id, raw = str(ev.get("rule_id")), ev.get("value")
    has_value = isinstance(raw, int | float) and not isinstance(raw, bool)
    value = float(raw) if isinstance(raw, int | float) else 0.0
    vital = rule_id[len("vital."):].rsplit("_", 1)[0] if rule_id.startswith("vital.") else ""
    if has_value and vital in VITAL_METRIC:
        v = Vital(vital)
        code, unit_text = mdc.VITALS[v], VITAL_UNITS[v]
        unit = mdc.vital_unit(v, unit_text)
        obx6 = comp(str(unit.code), unit.refid, "MDC", UCUM.get(unit_text, unit_text), unit_text, "UCUM") if unit else ""
        return "NM", comp(str(code.code), code.refid, "MDC"), num(value), obx6, VITAL_METRIC[vital]
    if has_value and rule_id in DOSE_RATE_RULES:
        code = mdc.INFUSION["dose_rate"]
        return ("NM", comp(str(code.code), code.refid, "MDC"), num(value), comp("mg/kg/h", "mg/kg/h", "UCUM"),
                INFUSION_METRIC["dose_rate"])
    dev, _ = alert_device(rule_id)
    return "CWE", comp(str(ALERT_SOURCE[0]), ALERT_SOURCE[1], "MDC"), dev.code, "", 0


def alert(ident: Identity, bed: str, ev: dict[str, Any], instance: str, initial: bool, patient: Patient,
          control_id: str, now: datetime) -> Built:
    """PCD-04 for one alarm transition. ``instance``: the alert's id, the same from start to end;
    the first message of an instance carries it in OBR-3, later ones in OBR-29 (parent)."""
    rule_id = str(ev.get("rule_id"))
    dev, device = alert_device(rule_id)
    equip = _equipment(ident, bed, device)
    equip_uid = ident.uid(bed, device)
    segs = _header(ident, "pcd04", control_id, now, patient, bed)
    reporter = comp(ident.application, "", ident.uid("gateway"), "UUID")
    own = instance if initial else f"{instance}.{ev.get('alarm_seq')}"
    parent = "" if initial else "^" + sub(instance, "", equip_uid, "UUID")  # EIP-2, subcomponents
    segs.append(segment("OBR", "1", reporter, comp(own, "", equip_uid, "UUID"),
                        comp(str(MDC_EVT_ALARM[0]), MDC_EVT_ALARM[1], "MDC"), "", "", ts(now),
                        *([""] * 21), parent))
    segs.append(segment("OBX", "1", "", dev.code, f"{dev.mds}.0.0.0", "", "", "", "", "", "", "X", "", "", "", "",
                        "", "", equip))
    vtype, src_code, src_value, src_units, metric = _source(ev)
    where = f"{dev.mds}.1.1.{metric}" if metric else f"{dev.mds}.0.0.0"
    event_code = comp(rule_id, rule_id, LOCAL, "", "", "", "", "", str(ev.get("message") or ""))
    phase = "reset" if ev.get("transition") == "reset" else str(ev.get("phase"))
    kind = str(ev.get("kind"))
    facets = [
        ("CWE", comp(str(MDC_EVT_ALARM[0]), MDC_EVT_ALARM[1], "MDC"), event_code, "", ts(str(ev.get("time")))),
        (vtype, src_code, src_value, src_units, ""),
        ("ST", comp(str(EVENT_PHASE[0]), EVENT_PHASE[1], "MDC"), phase, "", ""),
        ("ST", comp(str(ALARM_STATE[0]), ALARM_STATE[1], "MDC"), str(ev.get("state")), "", ""),
        ("ST", comp(str(INACTIVATION[0]), INACTIVATION[1], "MDC"),
         INACTIVATION_STATE.get(str(ev.get("inactivation")), "enabled"), "", ""),
        ("ST", comp(str(ALARM_PRIORITY[0]), ALARM_PRIORITY[1], "MDC"), PRIORITY[str(ev.get("priority"))], "", ""),
        ("ST", comp(str(ALERT_TYPE[0]), ALERT_TYPE[1], "MDC"),
         "SA" if ev.get("priority") == "advisory" else TYPE.get(kind, "SA"), "", ""),
    ]
    for n, (vt, code, value, obx6, when) in enumerate(facets, start=1):
        segs.append(segment("OBX", str(n + 1), vt, code, f"{where}.{n}", value, obx6, "", "", "", "", "R", "", "",
                            when, "", "", "", equip if n == 1 else ""))
    return Built("pcd04", control_id, message(*segs))
