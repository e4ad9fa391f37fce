"""Vital-sign rules: one condition per vital and direction, apnoea, the combined respiratory alarm,
and respiratory sources missing.

One cause, one alarm: every configured limit on a vital in one direction (``hr > 120``,
``hr > 150``) and the rise over the patient's own baseline (HR, SBP) merge into one rule,
``vital.<vital>_<high|low>``, whose priority is the highest limit met. A limit counts as met only
once its condition has lasted its own delay (``BedState.onsets``), also where it counts towards the
combined respiratory alarm, so one artefact never adds up to an alarm. A stale continuous value
is never evaluated (staleness is technical); an NIBP value holds until a newer measurement.
Vital rules run from admission until discharge (guideline lines 990-995).
"""

from __future__ import annotations

from collections.abc import Iterator

from monitord import readings as r
from monitord import sources
from monitord.config import Config, Priority, VitalLimit
from monitord.readings import NIBP_VITALS, VITAL_UNITS, Vital
from monitord.rules.base import Check, Finding, Kind, Rule, fmt
from monitord.state import BedState, SessionStatus

BASELINE_SOURCE = (
    "Guideline lines 1382-1386 (HR and BP rise 15-30 % even at subanesthetic doses, Idvall 1979); "
    "limit above that band: config [vitals] baseline_*_rise_pct"
)
APNOEA_SOURCE = "alarm-defaults.md s3 'no breath 20 s, high, latching' (vendor apnoea defaults: GE, Draeger)"
BASELINE_KEY = {Vital.HR: "baseline_hr", Vital.SBP: "baseline_sbp"}
NO_BREATH = "no_breath"
ETCO2_LINE = "etco2_line"


max_age = sources.max_age  # how old a value may be and still count (NIBP: one cycle)


def _monitoring(state: BedState) -> bool:
    return state.status is not SessionStatus.EMPTY


def judged_value(state: BedState, vital: Vital, now: float, cfg: Config) -> float | None:
    """The value a physiological limit is judged on. Continuous values while fresh; an NIBP
    value is the latest measurement of this admission, however old: it holds until a newer one."""
    if vital in NIBP_VITALS:
        v = state.vitals.get(vital)
        if v is None or v.value is None or v.quality is r.Quality.INVALID:
            return None
        admitted = state.admitted_mono if state.admitted_mono is not None else state.monitoring_started_mono
        if v.mono < admitted - cfg.vitals.baseline_max_age_s:
            return None  # measured before this patient was admitted
        return v.value
    return state.fresh(vital, now, max_age(cfg, vital))


RELATIVE_UPPER = {Vital.HR: Vital.HR, Vital.SBP: Vital.SBP, Vital.DBP: Vital.SBP, Vital.MAP: Vital.SBP}


def upper_bound(lim: VitalLimit, state: BedState, cfg: Config) -> float | None:
    """A MEDIUM upper limit on HR/SBP/DBP/MAP moves up to the patient's baseline plus the rise
    ketamine is expected to cause, where that is higher; HIGH limits never move."""
    if lim.above is None:
        return None
    base = state.baseline.get(lim.vital)
    if base is None or lim.priority is not Priority.MEDIUM or lim.vital not in RELATIVE_UPPER:
        return lim.above
    pct = cfg.vitals.baseline_hr_rise_pct if RELATIVE_UPPER[lim.vital] is Vital.HR else cfg.vitals.baseline_sbp_rise_pct
    return max(lim.above, base * (1 + pct / 100))


def _breached(lim: VitalLimit, value: float, state: BedState, cfg: Config) -> bool:
    above = upper_bound(lim, state, cfg)
    return (above is not None and value > above) or (lim.below is not None and value < lim.below)


def _baseline_limit(state: BedState, vital: Vital, cfg: Config) -> float | None:
    base = state.baseline.get(vital)
    if base is None or vital not in BASELINE_KEY:
        return None
    pct = cfg.vitals.baseline_hr_rise_pct if vital is Vital.HR else cfg.vitals.baseline_sbp_rise_pct
    return base * (1 + pct / 100)


def breathing_counted(state: BedState, now: float, cfg: Config) -> bool:
    rr = state.fresh(Vital.RR, now, cfg.vitals.stale_after_s)
    return rr is not None and rr > 0


def capnograph(state: BedState, cfg: Config) -> bool:
    mon = cfg.devices.monitor
    if mon is None:
        return False
    return state.capnograph_seen if mon.capnograph == "auto" else bool(mon.capnograph)


def _monitor_flag(state: BedState, code: r.DeviceAlarmCode) -> bool:
    return any(code in state.device_alarms.get(n, frozenset())
               for n, role in state.device_roles.items() if role is r.DeviceRole.MONITOR)


def present_conditions(state: BedState, now: float, cfg: Config) -> Iterator[str]:
    """Keys of the conditions present now; the engine keeps when each began in ``state.onsets``."""
    if not _monitoring(state):
        return
    for lim in cfg.vitals.limits:
        value = judged_value(state, lim.vital, now, cfg)
        if value is not None and _breached(lim, value, state, cfg):
            yield lim.id
    for vital, key in BASELINE_KEY.items():
        limit = _baseline_limit(state, vital, cfg)
        value = judged_value(state, vital, now, cfg)
        if limit is not None and value is not None and value > limit:
            yield key
    # No breath: RR 0, or a flat capnogram with no breath counted from another source.
    rr = state.fresh(Vital.RR, now, cfg.vitals.stale_after_s)
    if rr is not None and rr <= 0:
        yield NO_BREATH
    elif capnograph(state, cfg) and sources.delivering(state, cfg, Vital.ETCO2, now) \
            and not breathing_counted(state, now, cfg) \
            and not _monitor_flag(state, r.DeviceAlarmCode.IMPLAUSIBLE):  # EtCO2 withheld, not flat
        et = state.vitals.get(Vital.ETCO2)
        flat = et is None or et.value is None or et.quality is r.Quality.INVALID or et.value <= cfg.vitals.apnoea_etco2_mmhg
        if flat:
            yield NO_BREATH
    # EtCO2 implausibly low while breaths are counted: the sampling line, not the patient.
    et_value = state.fresh(Vital.ETCO2, now, cfg.vitals.stale_after_s)
    if et_value is not None and et_value < cfg.vitals.etco2_line_check_mmhg and breathing_counted(state, now, cfg):
        yield ETCO2_LINE


def lasted(state: BedState, key: str, now: float, delay_s: float) -> bool:
    began = state.onsets.get(key)
    return began is not None and now - began >= delay_s


def _group_check(vital: Vital, direction: str, limits: list[VitalLimit]) -> Check:
    unit = VITAL_UNITS[vital]
    name = vital.value.upper()

    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        if not _monitoring(state):
            return None
        value = judged_value(state, vital, now, cfg)
        if value is None:
            return None
        met = [lim for lim in limits if lasted(state, lim.id, now, lim.delay_s)]
        parts: list[tuple[Priority, str]] = []
        over_baseline = False
        if direction == "high" and vital in BASELINE_KEY:
            delay = cfg.vitals.baseline_hr_delay_s if vital is Vital.HR else 0.0
            base = state.baseline.get(vital)
            over_baseline = bool(base) and lasted(state, BASELINE_KEY[vital], now, delay)
        for lim in met:
            above = upper_bound(lim, state, cfg)
            if over_baseline and above is not None and lim.above is not None and above > lim.above:
                continue  # the limit moved to the baseline rise: said once, by the baseline part
            bound = f"> {fmt(above, 0)}" if above is not None else f"< {fmt(lim.below or 0)}"
            parts.append((lim.priority, f"{name} {fmt(value, 1)} {unit} {bound} {unit}"))
        if over_baseline:
            base = state.baseline.get(vital)
            if base:
                pct = cfg.vitals.baseline_hr_rise_pct if vital is Vital.HR else cfg.vitals.baseline_sbp_rise_pct
                rise = (value / base - 1) * 100
                parts.append((Priority.MEDIUM, f"{name} {fmt(value, 0)} is {fmt(rise, 0)} % above baseline "
                                               f"{fmt(base, 0)} (limit +{fmt(pct)} %)"))
        if not parts:
            return None
        priority = max((p for p, _ in parts), key=lambda p: p.rank)
        return Finding("; ".join(m for p, m in parts if p is priority), value, priority=priority)

    return check


def limit_met(lim: VitalLimit, state: BedState, now: float) -> bool:
    return lasted(state, lim.id, now, lim.delay_s)


def required(state: BedState, cfg: Config) -> list[Vital]:
    """The respiratory vitals that must not go missing (``source_missing_s``) that this bed
    measures: SpO2 where a device provides it; EtCO2 where a capnograph is present."""
    out = []
    for vital in cfg.vitals.source_missing_s:
        if not sources.providers(cfg, vital):
            continue  # no device at this bed measures it
        if vital is Vital.ETCO2 and (not capnograph(state, cfg) or _monitor_flag(state, r.DeviceAlarmCode.IMPLAUSIBLE)):
            continue  # no capnograph; or withheld as implausible, which tech.monitor.implausible says
        out.append(vital)
    return out


def source_missing(state: BedState, now: float, cfg: Config) -> list[Vital]:
    """Required respiratory vitals (``required``) with no valid value for their configured time,
    whichever device they come from, measured from when one of their devices last resumed sending."""
    if not _monitoring(state):
        return []
    out = []
    for vital in required(state, cfg):
        limit_s = cfg.vitals.source_missing_s[vital]
        back = [t for d in sources.providers(cfg, vital) if (t := state.device_back_mono.get(d)) is not None]
        v = state.vitals.get(vital)
        last = v.mono if v is not None and v.value is not None and v.quality is not r.Quality.INVALID else 0.0
        since = max([last, state.monitoring_started_mono, *back])
        if now - since > limit_s:
            out.append(vital)
    return out


def respiratory_warnings(state: BedState, now: float, cfg: Config) -> list[str]:
    """Respiratory warnings present now: each flagged limit met for its own delay, and a missing
    respiratory source (counted once, however many sources a lost monitor takes with it)."""
    found = [lim.id for lim in cfg.vitals.limits if lim.respiratory_warning and limit_met(lim, state, now)]
    if source_missing(state, now, cfg):
        found.append("respiratory_source_missing")
    return found


def combined(state: BedState, now: float, cfg: Config) -> Finding | None:
    if not _monitoring(state):
        return None
    warnings = respiratory_warnings(state, now, cfg)
    if len(warnings) >= cfg.vitals.respiratory_warnings_for_alarm:
        return Finding("Respiratory warnings together: " + ", ".join(warnings), float(len(warnings)))
    return None


def apnoea(state: BedState, now: float, cfg: Config) -> Finding | None:
    if not _monitoring(state):
        return None
    if _monitor_flag(state, r.DeviceAlarmCode.APNOEA):
        return Finding("No breath: the monitor reports apnoea. Stimulate, check the airway, stop the infusion")
    if lasted(state, NO_BREATH, now, cfg.vitals.apnoea_s):
        secs = now - state.onsets[NO_BREATH]
        return Finding(f"No breath for {fmt(secs, 0)} s: stimulate, check the airway, stop the infusion", secs)
    return None


def _missing_check(vital: Vital) -> Check:
    """Missing while a device that measures it still talks: a probe off or a module out. Where
    every device that measures it is lost or silent, the lost device's own alarm
    (``tech.<role>_lost``) names the vital, not one alarm per parameter; the respiratory warning
    counts either way. For EtCO2 a value implausibly low while breaths are counted is the same
    cause (the sampling line)."""

    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        if not sources.delivering(state, cfg, vital, now):
            return None
        limit_s = cfg.vitals.source_missing_s[vital]
        if vital in source_missing(state, now, cfg):
            return Finding(f"No {vital.value.upper()} value for over {fmt(limit_s)} s: check the "
                           + ("sampling line" if vital is Vital.ETCO2 else "probe"))
        if vital is Vital.ETCO2 and lasted(state, ETCO2_LINE, now, limit_s):
            value = state.fresh(Vital.ETCO2, now, cfg.vitals.stale_after_s)
            return Finding(f"EtCO2 {fmt(value or 0, 0)} mmHg while breathing: check the sampling line "
                           "(displaced or leaking)", value)
        return None

    return check


def rules(cfg: Config) -> list[Rule]:
    groups: dict[tuple[Vital, str], list[VitalLimit]] = {}
    for lim in cfg.vitals.limits:
        groups.setdefault((lim.vital, "high" if lim.above is not None else "low"), []).append(lim)
    v = cfg.vitals
    out = []
    for (vital, direction), limits in groups.items():
        unit = VITAL_UNITS[vital]
        parts = [f"{'>' if lim.above is not None else '<'} {fmt(lim.above if lim.above is not None else lim.below or 0)} "
                 f"{unit} for {fmt(lim.delay_s)} s: {lim.priority.value}" for lim in limits]
        sources = [lim.source for lim in limits]
        if direction == "high" and vital in RELATIVE_UPPER:
            pct = v.baseline_hr_rise_pct if RELATIVE_UPPER[vital] is Vital.HR else v.baseline_sbp_rise_pct
            delay = v.baseline_hr_delay_s if vital is Vital.HR else 0.0
            if vital in BASELINE_KEY:
                parts.append(f"> baseline + {fmt(pct)} % for {fmt(delay)} s: medium")
            parts.append(f"(medium limits move up to baseline + {fmt(pct)} % where higher)")
            sources.append(BASELINE_SOURCE)
        top = max((lim.priority for lim in limits), key=lambda p: p.rank)
        out.append(
            Rule(f"vital.{vital.value}_{direction}", top, Kind.PHYSIOLOGICAL,
                 f"{vital.value} " + "; ".join(parts), "; ".join(sources), _group_check(vital, direction, limits),
                 why_priority="highest limit met (configured preset priorities)", after_stop=True)
        )
    out += [
        Rule("resp.apnoea", Priority.HIGH, Kind.PHYSIOLOGICAL,
             f"no breath for {fmt(v.apnoea_s)} s (RR 0, or EtCO2 <= {fmt(v.apnoea_etco2_mmhg)} mmHg or absent with a "
             "capnograph and no breath counted), or the monitor's own apnoea alarm",
             APNOEA_SOURCE, apnoea, why_priority="respiratory arrest; fatal within minutes", after_stop=True),
        Rule("resp.combined", Priority.HIGH, Kind.PHYSIOLOGICAL,
             f"{v.respiratory_warnings_for_alarm} or more respiratory warnings at once, each met for its own delay "
             "(SpO2 low, RR low, EtCO2 high, respiratory source missing)",
             "OpenICE PCA app / MD PnP PCA scenario (two warnings become an alarm); alarm-defaults.md s3",
             combined, why_priority="respiratory depression; can be fatal within minutes", after_stop=True),
    ]
    for vital in v.source_missing_s:
        cond = f"no {vital.value} value for {fmt(v.source_missing_s[vital])} s"
        if vital is Vital.ETCO2:
            cond += (f" (capnograph present), or EtCO2 < {fmt(v.etco2_line_check_mmhg)} mmHg while breaths are "
                     "counted (sampling line)")
        out.append(
            Rule(f"tech.{vital.value}_missing", Priority.MEDIUM, Kind.TECHNICAL, cond,
                 "OpenICE 'no source'; alarm-defaults.md s3 (source missing; EtCO2 low with breaths present)",
                 _missing_check(vital), why_priority="a respiratory source lost hides respiratory depression",
                 after_stop=True)
        )
    return out
