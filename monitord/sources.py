"""Which device each vital comes from, where more than one device provides it.

The configuration names each vital source (``[devices.monitor]``, ``[devices.oximeter]``), the
vitals it provides and, per vital, a precedence (``[devices] precedence``; default: the oximeter
before the monitor). Every value keeps the source it came from (``VitalValue.source``). Each
source's latest value of each vital is kept in ``BedState.source_values`` and the rules see one
of them in ``BedState.vitals``: that of the first source in precedence that is *usable* now (link
connected, heard within its timeout, a fresh value that is not invalid). When the source in use
stops being usable the next usable one takes over at once, with its own latest value and age; a
preferred source back from a loss (of the device, or of its value: leads off, probe off) takes
over again once it has delivered for ``source_hold_s``. Every switch is a ``system`` event (action
``vital_source``) saying from which source to which and why, and the snapshot shows each vital's
source: never a silent switch. Where no source is usable the one in use stays, so its value
ages and goes missing exactly as a single device's would.

Heart rate: with ``[devices] hr_from_pulse`` (the default) the pulse rate stands in for HR where
no ECG heart rate is usable, after every device that gives HR itself: the pulse rate of each
device that gives it, in the pulse precedence. Such a source is named ``<device>:pulse``.

After a (re)start a source with no value yet is *pending* for its device's timeout: a less
preferred source does not take over from it (nor from the value restored from the checkpoint)
before it has had the chance to speak, so a restart switches nothing.

A reading from a device the configuration does not name goes straight to ``BedState.vitals``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from monitord import readings as r
from monitord.config import Config
from monitord.events import EventKind
from monitord.state import BedState, VitalValue

if TYPE_CHECKING:
    from monitord.engine import Engine

ACTION = "vital_source"
LABELS = {r.Vital.HR: "HR", r.Vital.SPO2: "SpO2", r.Vital.PULSE: "Pulse rate", r.Vital.RR: "RR",
          r.Vital.ETCO2: "EtCO2", r.Vital.TEMP: "Temperature"}

Source = tuple[str, r.Vital]  # (device name, the vital it measures that is used)


def max_age(cfg: Config, vital: r.Vital) -> float:
    """How old a value may be and still count: NIBP lives one cycle, the rest ``stale_after_s``."""
    if vital in r.NIBP_VITALS:
        return cfg.vitals.nibp_cycle_s * cfg.vitals.nibp_overdue_factor
    return cfg.vitals.stale_after_s


def role_of(cfg: Config, device: str) -> r.DeviceRole:
    """The role of a device sending vitals, by its configured name (unknown names: the monitor)."""
    ox = cfg.devices.oximeter
    return r.DeviceRole.OXIMETER if ox is not None and ox.name == device else r.DeviceRole.MONITOR


def providers(cfg: Config, vital: r.Vital) -> list[str]:
    """The devices that measure ``vital`` themselves, the preferred first."""
    order = cfg.devices.precedence.get(vital)
    if order is not None:
        return list(order)
    return [name for name, vitals in cfg.devices.vital_devices().items() if vital in vitals]


def candidates(cfg: Config, vital: r.Vital) -> list[Source]:
    """Every source of ``vital``, the preferred first: the devices that measure it, then (HR with
    ``hr_from_pulse``) the pulse rate of each device that gives one."""
    out = [(d, vital) for d in providers(cfg, vital)]
    if vital is r.Vital.HR and cfg.devices.hr_from_pulse:
        out += [(d, r.Vital.PULSE) for d in providers(cfg, r.Vital.PULSE)]
    return out


def label(src: Source, vital: r.Vital) -> str:
    """The source as values and events name it: the device, or ``<device>:pulse`` for a stand-in."""
    device, measured = src
    return device if measured is vital else f"{device}:{measured.value}"


def describe(name: str) -> str:
    """A source label in words ("pulse rate of oximeter")."""
    device, sep, measured = name.rpartition(":")
    if sep and measured == r.Vital.PULSE.value:
        return f"pulse rate of {device}"
    return name


def _timeout(cfg: Config, device: str) -> float:
    dev = cfg.devices.for_role(role_of(cfg, device))
    return dev.timeout_s if dev is not None else 0.0


def device_down(state: BedState, cfg: Config, device: str, now: float) -> str | None:
    """Why frames from ``device`` do not arrive now (link lost, silent, never heard), or None."""
    link = state.links.get(device)
    if link is not None and link.state is not r.LinkState.CONNECTED:
        return f"{device} link {link.state.value}"
    seen = state.device_seen_mono.get(device)
    if seen is None:
        return f"nothing from {device} yet"
    if now - seen > _timeout(cfg, device):
        return f"{device} silent for {now - seen:.0f} s"
    return None


def delivering(state: BedState, cfg: Config, vital: r.Vital, now: float) -> bool:
    """Frames still arrive from some device that measures ``vital`` (so a missing value is a probe
    or a module, not a lost device)."""
    return any(device_down(state, cfg, d, now) is None for d in providers(cfg, vital))


def pending(state: BedState, cfg: Config, src: Source, now: float) -> bool:
    """No value from this source since monitoring (re)started, and its device's timeout not yet
    over: it may still come."""
    device, measured = src
    link = state.links.get(device)
    lost = link is not None and link.state is not r.LinkState.CONNECTED
    return (not lost and measured not in state.source_values.get(device, {})
            and now - state.monitoring_started_mono <= _timeout(cfg, device))


def why_not(state: BedState, cfg: Config, src: Source, now: float) -> str | None:
    """Why the source cannot give its value now, or None if it can."""
    device, measured = src
    down = device_down(state, cfg, device, now)
    if down is not None:
        return down
    v = state.source_values.get(device, {}).get(measured)
    if v is None or v.value is None or v.quality is r.Quality.INVALID:
        alarms = sorted(a.value.replace("_", " ") for a in state.device_alarms.get(device, ()))
        return f"no {measured.value} value from {device}" + (f" ({', '.join(alarms)})" if alarms else "")
    if now - v.mono > max_age(cfg, measured):
        return f"{measured.value} from {device} is {now - v.mono:.0f} s old"
    return None


def unsourced(state: BedState, cfg: Config, device: str, vitals: list[r.Vital], now: float) -> list[r.Vital]:
    """Of ``vitals``, those ``device`` measures that no source can give now."""
    return [v for v in vitals if device in providers(cfg, v)
            and all(why_not(state, cfg, src, now) is not None for src in candidates(cfg, v))]


def _settled(state: BedState, cfg: Config, src: Source, now: float) -> bool:
    """The source has delivered for the hold time since it came back (link, silence or value)."""
    device = src[0]
    link = state.links.get(device)
    back = max(state.device_back_mono.get(device, float("-inf")), link.since_mono if link else float("-inf"),
               state.source_back_mono.get(src, float("-inf")))
    return now - back >= cfg.devices.source_hold_s


def select(state: BedState, cfg: Config, vital: r.Vital, now: float) -> tuple[Source | None, str, bool]:
    """The source ``vital`` should come from now (None: none can give it, or one more preferred
    is still pending), why the ones before it in precedence cannot, and whether a more preferred
    source is pending. A source more preferred than the one in use takes over only once it has
    delivered for ``source_hold_s``; one in use that cannot deliver is left at once."""
    current = state.vitals.get(vital)
    in_use = current.source if current is not None else ""
    names = candidates(cfg, vital)
    in_use_ok = any(label(s, vital) == in_use and why_not(state, cfg, s, now) is None for s in names)
    reasons: list[str] = []
    waiting = False
    for src in names:
        reason = why_not(state, cfg, src, now)
        if reason is None:
            if label(src, vital) == in_use:
                return src, "; ".join(reasons), waiting
            if waiting:
                return None, "; ".join(reasons), True
            if not in_use_ok or _settled(state, cfg, src, now):
                return src, "; ".join(reasons), False
            reason = f"{label(src, vital)} back for less than {cfg.devices.source_hold_s:g} s"
        elif pending(state, cfg, src, now):
            waiting = True
        reasons.append(reason)
    return None, "; ".join(reasons), waiting


def _use(st: BedState, vital: r.Vital, src: Source, value: VitalValue) -> None:
    st.vitals[vital] = value if src[1] is vital else replace(value, source=label(src, vital))


def put(engine: Engine, device: str, vital: r.Vital, value: VitalValue, now: float) -> bool:
    """A reading's value of ``vital`` from ``device``: keep it, and let the rules see the value of
    the source in use (switching, visibly, where the one in use can no longer give it). False: a
    configured device this bed does not take ``vital`` from (the value is not used)."""
    st, cfg = engine.state, engine.config
    value.source = device
    configured = cfg.devices.vital_devices()
    if device not in configured:
        st.vitals[vital] = value
        return True
    if vital not in configured[device]:
        return False
    prev = st.source_values.setdefault(device, {}).get(vital)
    usable = value.value is not None and value.quality is not r.Quality.INVALID
    if usable and (prev is None or prev.value is None or prev.quality is r.Quality.INVALID
                   or value.mono - prev.mono > max_age(cfg, vital)):
        st.source_back_mono[(device, vital)] = now  # usable again after a gap
    st.source_values[device][vital] = value
    targets = [vital] + ([r.Vital.HR] if vital is r.Vital.PULSE and cfg.devices.hr_from_pulse else [])
    for target in targets:
        names = candidates(cfg, target)
        if (device, vital) not in names:
            continue
        if len(names) == 1:
            _use(st, target, (device, vital), value)
        else:
            reselect(engine, now, (target,))
    return True


def reselect(engine: Engine, now: float, vitals: tuple[r.Vital, ...] | None = None) -> None:
    """Choose again where each multi-source vital comes from (after a reading or a link change);
    emit a ``vital_source`` event for each switch."""
    st, cfg = engine.state, engine.config
    for vital in vitals if vitals is not None else tuple(r.Vital):
        names = candidates(cfg, vital)
        if len(names) < 2:
            continue
        current = st.vitals.get(vital)
        in_use = current.source if current is not None else ""
        chosen, reason, waiting = select(st, cfg, vital, now)
        if chosen is None:
            if waiting:
                continue  # a more preferred source may still speak: keep what is shown
            # Nothing usable: the source in use stays (its value ages and goes missing as one
            # device's would); before any, the preferred source that has reported.
            chosen = next((s for s in names if label(s, vital) == in_use), None) or next(
                (s for s in names if s[1] in st.source_values.get(s[0], {})), None)
            if chosen is None:
                continue
        latest = st.source_values.get(chosen[0], {}).get(chosen[1])
        if latest is None:
            continue
        _use(st, vital, chosen, latest)
        name = label(chosen, vital)
        if in_use and name != in_use:
            labels = [label(s, vital) for s in names]
            if not reason and in_use in labels and labels.index(name) < labels.index(in_use):
                reason = f"{name} is preferred and delivering again"
            what = LABELS.get(vital, vital.value.upper())
            message = f"{what} now from {describe(name)}, was {describe(in_use)}" + (f": {reason}" if reason else "")
            engine.emit(EventKind.SYSTEM, {"action": ACTION, "vital": vital.value, "source": name,
                                           "previous": in_use, "reason": reason, "message": message})


def in_use(state: BedState) -> dict[str, str]:
    """Vital -> the source its current value came from (for the snapshot)."""
    return {v.value: vv.source for v, vv in state.vitals.items() if vv.source}
