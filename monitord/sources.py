"""Which device each vital comes from, where more than one device provides it.

The configuration names each vital source (``[devices.monitor]``, ``[devices.oximeter]``), the
vitals it provides and, per vital, a precedence (``[devices] precedence``; default: the oximeter
before the monitor). Every value keeps the device it came from (``VitalValue.source``). For a
vital with several sources, each source's latest value is kept in ``BedState.source_values``
and the rules see one of them in ``BedState.vitals``: that of the first source in precedence
that is *usable* now (link connected, heard within its timeout, a fresh value that is not
invalid). When the source in use stops being usable the next usable one takes over at once,
with its own latest value and age; a preferred source back from a loss takes over again once
it has delivered for ``source_hold_s``. Every switch is a ``system`` event (action
``vital_source``) saying from which device to which and why, and the snapshot shows each vital's
source: never a silent switch. Where no source is usable the one in use stays, so its value
ages and goes missing exactly as a single device's would.

A vital with a single source, or a reading from a device the configuration does not name,
goes straight to ``BedState.vitals`` as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitord import readings as r
from monitord.config import Config
from monitord.events import EventKind
from monitord.rules.vitals import max_age
from monitord.state import BedState, VitalValue

if TYPE_CHECKING:
    from monitord.engine import Engine

ACTION = "vital_source"
LABELS = {r.Vital.SPO2: "SpO2", r.Vital.PULSE: "Pulse rate", r.Vital.ETCO2: "EtCO2", r.Vital.TEMP: "Temperature"}


def role_of(cfg: Config, device: str) -> r.DeviceRole:
    """The role of a device sending vitals, by its configured name (unknown names: the monitor)."""
    ox = cfg.devices.oximeter
    return r.DeviceRole.OXIMETER if ox is not None and ox.name == device else r.DeviceRole.MONITOR


def providers(cfg: Config, vital: r.Vital) -> list[str]:
    """The devices that provide ``vital``, the preferred first."""
    order = cfg.devices.precedence.get(vital)
    if order is not None:
        return list(order)
    return [name for name, vitals in cfg.devices.vital_devices().items() if vital in vitals]


def _timeout(cfg: Config, device: str) -> float:
    dev = cfg.devices.for_role(role_of(cfg, device))
    return dev.timeout_s if dev is not None else 0.0


def why_not(state: BedState, cfg: Config, device: str, vital: r.Vital, now: float) -> str | None:
    """Why ``device`` cannot give ``vital`` now, or None if it can."""
    link = state.links.get(device)
    if link is not None and link.state is not r.LinkState.CONNECTED:
        return f"{device} link {link.state.value}"
    seen = state.device_seen_mono.get(device)
    if seen is None:
        return f"nothing from {device} yet"
    if now - seen > _timeout(cfg, device):
        return f"{device} silent for {now - seen:.0f} s"
    v = state.source_values.get(device, {}).get(vital)
    if v is None or v.value is None or v.quality is r.Quality.INVALID:
        alarms = sorted(a.value.replace("_", " ") for a in state.device_alarms.get(device, ()))
        return f"no {vital.value} value from {device}" + (f" ({', '.join(alarms)})" if alarms else "")
    if now - v.mono > max_age(cfg, vital):
        return f"{vital.value} from {device} is {now - v.mono:.0f} s old"
    return None


def _settled(state: BedState, cfg: Config, device: str, now: float) -> bool:
    """The device has delivered for the hold time since it came back (link or silence)."""
    link = state.links.get(device)
    back = max(state.device_back_mono.get(device, float("-inf")), link.since_mono if link else float("-inf"))
    return now - back >= cfg.devices.source_hold_s


def select(state: BedState, cfg: Config, vital: r.Vital, now: float) -> tuple[str | None, str]:
    """The source ``vital`` should come from now (None: no source can give it), and why the
    ones before it in precedence cannot. A source more preferred than the one in use takes
    over only once it has delivered for ``source_hold_s``; one in use that cannot deliver is
    left at once."""
    current = state.vitals.get(vital)
    in_use = current.source if current is not None else ""
    names = providers(cfg, vital)
    in_use_ok = in_use in names and why_not(state, cfg, in_use, vital, now) is None
    reasons: list[str] = []
    for device in names:
        reason = why_not(state, cfg, device, vital, now)
        if reason is None:
            if device == in_use or not in_use_ok or _settled(state, cfg, device, now):
                return device, "; ".join(reasons)
            reason = f"{device} back for less than {cfg.devices.source_hold_s:g} s"
        reasons.append(reason)
    return None, "; ".join(reasons)


def put(engine: Engine, device: str, vital: r.Vital, value: VitalValue, now: float) -> None:
    """A reading's value of ``vital`` from ``device``: keep it, and let the rules see the value of
    the source in use (switching, visibly, where the one in use can no longer give it)."""
    st, cfg = engine.state, engine.config
    value.source = device
    names = providers(cfg, vital)
    if device not in names:
        if device in cfg.devices.vital_devices():
            return  # a configured device this bed does not take this vital from
        st.vitals[vital] = value
        return
    if len(names) == 1:
        st.vitals[vital] = value
        return
    st.source_values.setdefault(device, {})[vital] = value
    reselect(engine, now, (vital,))


def reselect(engine: Engine, now: float, vitals: tuple[r.Vital, ...] | None = None) -> None:
    """Choose again where each multi-source vital comes from (after a reading, a link change or
    on a tick); emit a ``vital_source`` event for each switch."""
    st, cfg = engine.state, engine.config
    for vital in vitals if vitals is not None else tuple(r.Vital):
        names = providers(cfg, vital)
        if len(names) < 2:
            continue
        current = st.vitals.get(vital)
        in_use = current.source if current is not None else ""
        chosen, reason = select(st, cfg, vital, now)
        if chosen is None:
            # Nothing usable: the source in use stays (its value ages and goes missing as one
            # device's would); before any, the preferred device that has reported.
            chosen = in_use if in_use in names else next((d for d in names if vital in st.source_values.get(d, {})), None)
            if chosen is None:
                continue
        latest = st.source_values.get(chosen, {}).get(vital)
        if latest is None:
            continue
        st.vitals[vital] = latest
        if in_use and chosen != in_use:
            if not reason and in_use in names and names.index(chosen) < names.index(in_use):
                reason = f"{chosen} is preferred and delivering again"
            label = LABELS.get(vital, vital.value.upper())
            message = f"{label} now from {chosen}, was {in_use}" + (f": {reason}" if reason else "")
            engine.emit(EventKind.SYSTEM, {"action": ACTION, "vital": vital.value, "source": chosen,
                                           "previous": in_use, "reason": reason, "message": message})


def in_use(state: BedState) -> dict[str, str]:
    """Vital -> the device its current value came from (for the snapshot)."""
    return {v.value: vv.source for v, vv in state.vitals.items() if vv.source}
