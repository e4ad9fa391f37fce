"""Vital-sign rules: configured absolute limits, rises over the patient's own baseline, and
the combined respiratory alarm. A stale value is never evaluated (staleness is technical)."""

from __future__ import annotations

from monitord import readings as r
from monitord.config import Config, Priority, VitalLimit
from monitord.readings import NIBP_VITALS, VITAL_UNITS, Vital
from monitord.rules.base import Check, Finding, Kind, Rule, fmt
from monitord.state import BedState, SessionStatus

BASELINE_SOURCE = (
    "Guideline lines 1382-1386 (HR and BP rise even at subanesthetic doses); "
    "alarm-defaults.md s3 (+20 %, Idvall 1979)"
)


def max_age(cfg: Config, vital: Vital) -> float:
    """How old a value may be and still count: NIBP lives one cycle, the rest ``stale_after_s``."""
    if vital in NIBP_VITALS:
        return cfg.vitals.nibp_cycle_s * cfg.vitals.nibp_overdue_factor
    return cfg.vitals.stale_after_s


def _monitoring(state: BedState) -> bool:
    return state.status is not SessionStatus.EMPTY


def limit_breached(lim: VitalLimit, state: BedState, now: float, cfg: Config) -> float | None:
    value = state.fresh(lim.vital, now, max_age(cfg, lim.vital))
    if value is None:
        return None
    if lim.above is not None and value > lim.above:
        return value
    if lim.below is not None and value < lim.below:
        return value
    return None


def _limit_check(lim: VitalLimit) -> Check:
    bound = f"> {fmt(lim.above)}" if lim.above is not None else f"< {fmt(lim.below or 0)}"
    unit = VITAL_UNITS[lim.vital]

    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        if not _monitoring(state):
            return None
        value = limit_breached(lim, state, now, cfg)
        if value is None:
            return None
        return Finding(f"{lim.vital.value.upper()} {fmt(value, 1)} {unit} {bound} {unit}", value)

    return check


def _baseline_check(vital: Vital, pct_of: str) -> Check:
    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        base = state.baseline.get(vital)
        if base is None or state.status not in (SessionStatus.RUNNING, SessionStatus.PAUSED):
            return None
        value = state.fresh(vital, now, max_age(cfg, vital))
        pct = getattr(cfg.vitals, pct_of)
        if value is None or value <= base * (1 + pct / 100):
            return None
        rise = (value / base - 1) * 100
        return Finding(
            f"{vital.value.upper()} {fmt(value, 0)} is {fmt(rise, 0)} % above baseline {fmt(base, 0)} (limit {fmt(pct)} %)",
            value,
        )

    return check


def respiratory_warnings(state: BedState, now: float, cfg: Config) -> list[str]:
    """Respiratory warnings present now: each breached flagged limit, and a missing respiratory
    source (counted once, however many sources a lost monitor takes with it)."""
    found = [
        lim.id for lim in cfg.vitals.limits if lim.respiratory_warning and limit_breached(lim, state, now, cfg) is not None
    ]
    if source_missing(state, now, cfg):
        found.append("respiratory_source_missing")
    return found


def source_missing(state: BedState, now: float, cfg: Config) -> list[Vital]:
    """Respiratory sources (SpO2, EtCO2) with no valid value for their configured time."""
    if not _monitoring(state) or cfg.devices.monitor is None:
        return []
    out = []
    for vital, limit_s in cfg.vitals.source_missing_s.items():
        v = state.vitals.get(vital)
        last = v.mono if v is not None and v.value is not None else state.monitoring_started_mono
        if now - last > limit_s:
            out.append(vital)
    return out


def monitor_delivering(state: BedState, now: float, cfg: Config) -> bool:
    """Frames still arrive from the monitor (so a missing value is a probe, not the device)."""
    seen = [t for name, t in state.device_seen_mono.items() if state.device_roles.get(name) is r.DeviceRole.MONITOR]
    timeout = cfg.devices.monitor.timeout_s if cfg.devices.monitor else 0.0
    return bool(seen) and now - max(seen) <= timeout


def combined(state: BedState, now: float, cfg: Config) -> Finding | None:
    if state.status not in (SessionStatus.RUNNING, SessionStatus.PAUSED):
        return None
    warnings = respiratory_warnings(state, now, cfg)
    if len(warnings) >= cfg.vitals.respiratory_warnings_for_alarm:
        return Finding("Respiratory warnings together: " + ", ".join(warnings), float(len(warnings)))
    return None


def _missing_check(vital: Vital) -> Check:
    """Missing while the monitor itself still talks: a probe off or a module out. A silent
    monitor is ``tech.monitor_lost`` instead, not one alarm per parameter."""

    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        if vital in source_missing(state, now, cfg) and monitor_delivering(state, now, cfg):
            return Finding(f"No {vital.value.upper()} value for over {fmt(cfg.vitals.source_missing_s[vital])} s")
        return None

    return check


def rules(cfg: Config) -> list[Rule]:
    out = []
    for lim in cfg.vitals.limits:
        bound = f"> {lim.above}" if lim.above is not None else f"< {lim.below}"
        out.append(
            Rule(
                f"vital.{lim.id}", lim.priority, Kind.PHYSIOLOGICAL,
                f"{lim.vital.value} {bound} {VITAL_UNITS[lim.vital]} for {fmt(lim.delay_s)} s",
                lim.source, _limit_check(lim), delay_s=lim.delay_s,
                why_priority="configured preset priority",
            )
        )
    v = cfg.vitals
    out += [
        Rule("vital.hr_baseline", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"HR more than {v.baseline_hr_rise_pct} % above the pre-infusion baseline for {fmt(v.baseline_hr_delay_s)} s",
             BASELINE_SOURCE, _baseline_check(Vital.HR, "baseline_hr_rise_pct"), delay_s=v.baseline_hr_delay_s,
             why_priority="sympathomimetic response; may precipitate angina"),
        Rule("vital.sbp_baseline", Priority.MEDIUM, Kind.PHYSIOLOGICAL,
             f"SBP more than {v.baseline_sbp_rise_pct} % above the pre-infusion baseline (per NIBP reading)",
             BASELINE_SOURCE, _baseline_check(Vital.SBP, "baseline_sbp_rise_pct"),
             why_priority="sympathomimetic response; may precipitate angina"),
        Rule("resp.combined", Priority.HIGH, Kind.PHYSIOLOGICAL,
             f"{v.respiratory_warnings_for_alarm} or more respiratory warnings at once "
             "(SpO2 low, RR low, EtCO2 high, respiratory source missing)",
             "OpenICE PCA app / MD PnP PCA scenario (two warnings become an alarm); alarm-defaults.md s3",
             combined, why_priority="respiratory depression; can be fatal within minutes"),
    ]
    for vital in v.source_missing_s:
        out.append(
            Rule(f"tech.{vital.value}_missing", Priority.MEDIUM, Kind.TECHNICAL,
                 f"no {vital.value} value for {fmt(v.source_missing_s[vital])} s",
                 "OpenICE 'no source'; alarm-defaults.md s3", _missing_check(vital),
                 why_priority="a respiratory source lost hides respiratory depression")
        )
    return out
