"""Technical rules: lost or silent devices, alarms the devices report, impossible values,
overdue NIBP. Priorities for device-reported alarms come from config."""

from __future__ import annotations

from monitord import sources
from monitord.config import Config, Priority
from monitord.readings import DeviceAlarmCode, DeviceRole, LinkState, Vital
from monitord.rules.base import Check, Finding, Kind, Rule, fmt
from monitord.rules.vitals import required
from monitord.state import BedState, SessionStatus

IEC_TECH = "IEC 60601-1-8 technical alarm condition (quoted in alarm-defaults.md s2)"


def _timeout(cfg: Config, role: DeviceRole) -> float | None:
    dev = cfg.devices.for_role(role)
    return dev.timeout_s if dev is not None else None


def _device_names(state: BedState, role: DeviceRole) -> list[str]:
    return [name for name, r in state.device_roles.items() if r is role]


def _without_source(state: BedState, cfg: Config, device: str, now: float) -> str:
    """What a lost device takes with it: the required respiratory vitals (SpO2, EtCO2) it measures
    that no other source gives now, said in the lost device's own alarm (one cause, one alarm)."""
    gone = sources.unsourced(state, cfg, device, required(state, cfg), now)
    return f"; {' and '.join(sources.LABELS[v] for v in gone)} missing: no other source" if gone else ""


def _lost_check(role: DeviceRole) -> Check:
    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        timeout = _timeout(cfg, role)
        dev = cfg.devices.for_role(role)
        if timeout is None or dev is None or state.status is SessionStatus.EMPTY:
            return None
        names = _device_names(state, role)
        for name in names:
            link = state.links.get(name)
            if link is not None and link.state is not LinkState.CONNECTED:
                detail = f": {link.detail}" if link.detail else ""
                return Finding(f"{role.value.capitalize()} {name} link {link.state.value}{detail}"
                               + _without_source(state, cfg, name, now))
        seen = [state.device_seen_mono[n] for n in names if n in state.device_seen_mono]
        last = max(seen) if seen else state.monitoring_started_mono
        if now - last > timeout:
            return Finding(f"{role.value.capitalize()} silent for {fmt(now - last, 0)} s (timeout {fmt(timeout)} s)"
                           + _without_source(state, cfg, dev.name, now))
        return None

    return check


def _device_alarm_check(role: DeviceRole, code: DeviceAlarmCode) -> Check:
    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        for name in _device_names(state, role):
            if code in state.device_alarms.get(name, frozenset()):
                detail = state.device_alarm_detail.get(name)
                return Finding(f"{role.value.capitalize()} {name} reports {code.value.replace('_', ' ')}"
                               + (f" ({detail})" if detail else ""))
        return None

    return check


def _range_check(vital: Vital) -> Check:
    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        bad = state.out_of_range.get(vital)
        if bad is None:
            return None
        rng = cfg.vitals.physical_range[vital]
        return Finding(
            f"Monitor sent {vital.value.upper()} {fmt(bad, 1)}, outside {fmt(rng.min)}-{fmt(rng.max)}: discarded", bad
        )

    return check


def pump_rate_range(state: BedState, now: float, cfg: Config) -> Finding | None:
    pump = state.pump
    if pump is None or pump.rate_ml_h is None:
        return None
    if not 0 <= pump.rate_ml_h <= cfg.ketamine.rate_ml_h_max:
        return Finding(f"Pump reports {fmt(pump.rate_ml_h)} mL/h, outside 0-{fmt(cfg.ketamine.rate_ml_h_max)}", pump.rate_ml_h)
    return None


def nibp_overdue(state: BedState, now: float, cfg: Config) -> Finding | None:
    if not sources.providers(cfg, Vital.SBP) or state.status is SessionStatus.EMPTY or state.start_mono is None:
        return None  # no device at this bed measures blood pressure
    limit = cfg.vitals.nibp_cycle_s * cfg.vitals.nibp_overdue_factor
    last = state.nibp_mono if state.nibp_mono is not None else state.monitoring_started_mono
    if now - last > limit:
        return Finding(f"No new NIBP for {fmt((now - last) / 60, 0)} min (cycle {fmt(cfg.vitals.nibp_cycle_s / 60)} min)")
    return None


OUTPUTS = {
    "store": (Priority.HIGH, "records are not being kept (disk full, read-only or database lost)"),
    "mqtt": (Priority.LOW, "central stations are not receiving this bed (alarm-defaults.md s6)"),
    "dashboard": (Priority.LOW, "the bedside screen cannot connect; monitoring and MQTT continue"),
}


def _output_check(component: str) -> Check:
    def check(state: BedState, now: float, cfg: Config) -> Finding | None:
        detail = state.output_faults.get(component)
        return Finding(f"{component}: {detail}") if detail is not None else None

    return check


def central_unconfirmed(state: BedState, now: float, cfg: Config) -> Finding | None:
    """A HIGH alarm that no central station has confirmed within the receipt timeout."""
    if not (cfg.mqtt.enabled and cfg.mqtt.expect_receipts):
        return None
    timeout = cfg.mqtt.receipt_timeout_s
    waiting = sorted(rid for rid, (occurrence, since) in state.high_alarms.items()
                     if now - since >= timeout and not state.receipts.get(occurrence))
    if not waiting:
        return None
    return Finding(f"No central station has confirmed {', '.join(waiting)} within {fmt(timeout)} s: "
                   "the central station may not be watching this bed", float(len(waiting)))


def rules(cfg: Config) -> list[Rule]:
    out = []
    for role in DeviceRole:
        timeout = _timeout(cfg, role)
        out.append(
            Rule(f"tech.{role.value}_lost", Priority.MEDIUM, Kind.TECHNICAL,
                 f"{role.value} link not connected, or no valid frame for its timeout "
                 f"({f'{timeout:g} s' if timeout is not None else f'devices.{role.value}.timeout_s'})",
                 f"{IEC_TECH}; alarm-defaults.md s3 (source missing)", _lost_check(role),
                 why_priority="monitoring of this device has stopped")
        )
        for code in DeviceAlarmCode:
            if code is DeviceAlarmCode.APNOEA:
                continue  # the monitor's apnoea alarm is resp.apnoea: one cause, one alarm
            prio = cfg.alarms.device_alarm_priority.get(code.value, Priority.MEDIUM)
            out.append(
                Rule(f"tech.{role.value}.{code.value}", prio, Kind.TECHNICAL,
                     f"the {role.value} reports {code.value.replace('_', ' ')}",
                     f"{IEC_TECH}; device's own alarm, priority and delay from config [alarms] device_alarm_*",
                     _device_alarm_check(role, code), delay_s=cfg.alarms.device_alarm_delay_s.get(code.value, 0.0),
                     why_priority="configured per device alarm")
            )
    for vital in Vital:
        out.append(
            Rule(f"tech.range_{vital.value}", Priority.LOW, Kind.TECHNICAL,
                 f"{vital.value} outside its physical range (config [vitals.physical_range])",
                 f"{IEC_TECH}; physical range of typical monitors", _range_check(vital),
                 why_priority="a device or wire fault; the value is discarded")
        )
    out += [
        Rule("tech.pump_rate_range", Priority.MEDIUM, Kind.TECHNICAL,
             f"pump rate outside 0-{cfg.ketamine.rate_ml_h_max} mL/h", IEC_TECH, pump_rate_range,
             why_priority="dose cannot be computed from an impossible rate"),
        Rule("tech.nibp_overdue", Priority.LOW, Kind.TECHNICAL,
             f"no new NIBP for {cfg.vitals.nibp_overdue_factor} x its {cfg.vitals.nibp_cycle_s} s cycle",
             "ASA moderate sedation: BP every 5 min (guideline lines 990-995); alarm-defaults.md s3",
             nibp_overdue, why_priority="a missed measurement, not a patient state"),
    ]
    out.append(Rule("tech.central_unconfirmed", Priority.MEDIUM, Kind.TECHNICAL,
                    f"with [mqtt] expect_receipts: a HIGH alarm no central station confirmed within "
                    f"{fmt(cfg.mqtt.receipt_timeout_s)} s (delivery receipts, docs/mqtt.md)",
                    f"{IEC_TECH}; alarm-defaults.md s6 (QoS 1 proves delivery to the broker, not to a person)",
                    central_unconfirmed, why_priority="the bedside cannot count on the central station"))
    for component, (prio, why) in OUTPUTS.items():
        out.append(Rule(f"tech.{component}_failed", prio, Kind.TECHNICAL, f"the {component} output reports a failure",
                        f"{IEC_TECH}; alarm-defaults.md s2 (log), s6 (link loss)", _output_check(component),
                        why_priority=why))
    return out
