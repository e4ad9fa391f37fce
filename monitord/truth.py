"""What the devices report: the engine's handlers for device inputs, and what follows from them.

The pump's own reports drive the infusion picture whatever the nurse recorded: infusion time
and cumulative dose come from the volume it infused, boluses from the volume it delivered in
bolus state, the infusion rate from its last running (not bolus) rate. Vitals are kept with the
time they arrived; ``update_onsets`` records when each limit condition began so rules can judge
their delays as pure functions of state and time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from monitord import readings as r
from monitord import sources
from monitord.dose import volume_delta_ml
from monitord.events import EventKind
from monitord.pk import PlasmaEstimate
from monitord.state import Bolus, LinkInfo, PumpStatus, VitalValue

if TYPE_CHECKING:
    from monitord.engine import Engine


# A frame reported later than this is taken as a driver's error, not as lateness: it is shown as it arrives.
MAX_LATE_S = 3600.0


def iso(t: Any) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def vitals(engine: Engine, item: r.VitalsReading, now: float) -> None:
    st, cfg = engine.state, engine.config
    _seen(engine, item.device, sources.role_of(cfg, item.device), now)
    # How late the frame reached the driver (the driver reads it from the device's time stamps).
    late = item.age_s if math.isfinite(item.age_s) and 0 < item.age_s < MAX_LATE_S else 0.0
    accepted: dict[str, float | None] = {}
    discarded: dict[str, float] = {}
    new_nibp = False
    for vital, value in item.values.items():
        rng = cfg.vitals.physical_range.get(vital)
        if value is not None and (not math.isfinite(value) or (rng is not None and not rng.min <= value <= rng.max)):
            st.out_of_range[vital] = value if math.isfinite(value) else -1.0
            discarded[vital.value] = value if math.isfinite(value) else -1.0
            continue
        st.out_of_range.pop(vital, None)
        accepted[vital.value] = value
        measured = item.nibp_time if vital in r.NIBP_VITALS else item.device_time
        arrived = now - late  # a late frame is as old as its measurement, not as its arrival
        if vital in r.NIBP_VITALS and item.nibp_time is not None and item.device_time is not None:
            # an NIBP taken before this frame (first seen on connecting): as old as the measurement
            taken = (item.device_time - item.nibp_time).total_seconds()
            arrived -= taken if 0 < taken < MAX_LATE_S else 0.0
        repeated = False
        if vital in r.NIBP_VITALS and value is not None:
            prev = st.vitals.get(vital)
            repeated = (prev is not None and prev.value is not None and item.nibp_time is not None
                        and prev.measured_at == item.nibp_time)
            if repeated:
                # The same measurement shown again in a later frame: it ages from its first arrival.
                arrived = prev.mono  # type: ignore[union-attr]
        # A vital this bed does not take from this device (its ``provides``) is recorded, not used.
        used = sources.put(engine, item.device, vital, VitalValue(value, arrived, item.quality, measured), now)
        if used and vital in r.NIBP_VITALS and value is not None and not repeated:
            new_nibp = True
        if used and vital is r.Vital.ETCO2 and value is not None and item.quality is not r.Quality.INVALID \
                and value > cfg.vitals.etco2_line_check_mmhg:
            st.capnograph_seen = True
    if new_nibp:
        st.nibp_mono = now
    engine.emit(
        EventKind.VITALS,
        {
            "device": item.device,
            "values": accepted,
            "quality": item.quality.value,
            "discarded": discarded,
            "new_nibp": new_nibp,
            "device_time": iso(item.device_time),
            "nibp_time": iso(item.nibp_time),
            "late_s": round(late, 1),
        },
    )


def _seen(engine: Engine, device: str, role: r.DeviceRole, now: float) -> None:
    """A frame arrived: note it, and when frames resume after a silence (so per-parameter
    'missing' timers restart instead of flickering on the first frame back)."""
    st = engine.state
    last = st.device_seen_mono.get(device)
    dev = engine.config.devices.for_role(role)
    timeout = dev.timeout_s if dev is not None else 0.0
    if last is None or now - last > timeout:
        st.device_back_mono[device] = now
    st.device_seen_mono[device] = now
    st.device_roles[device] = role


def pump(engine: Engine, item: r.PumpReading, now: float) -> None:
    st, cfg = engine.state, engine.config
    prev = st.pump
    _seen(engine, item.device, r.DeviceRole.PUMP, now)
    was_infusing = st.pump_infusing()
    conc = st.order.concentration_mg_ml if st.order is not None else _finite(item.concentration_mg_ml)
    rate = _finite(item.rate_ml_h)
    volume = _finite(item.volume_infused_ml)
    if volume is not None and volume < 0:
        volume = None
    prev_vol = prev.volume_infused_ml if prev is not None else None
    # Volume infused since the last report, from the pump's counter; rate x time where it has none.
    if volume is not None:
        delta_ml = volume_delta_ml(prev_vol, volume)
    elif prev is not None and was_infusing and prev.rate_ml_h:
        delta_ml = prev.rate_ml_h * (now - prev.mono) / 3600
    else:
        delta_ml = 0.0
    delta_mg = delta_ml * conc if conc is not None else 0.0
    st.cumulative_mg += delta_mg
    # Delivered at the state and rate the pump reported at the start of the interval.
    segment = (prev.state, prev.rate_ml_h, conc) if prev is not None else None
    if prev is not None and delta_mg > 0:
        deliver(engine, delta_mg, prev.mono, now, segment=segment)
    elif segment != st.delivery_segment:
        st.delivery_segment = None  # stopped, paused or changed: the next delivery starts a run
    st.pump_infused_mg += delta_mg
    if prev is not None and was_infusing:
        st.infusion_time_s += max(0.0, now - prev.mono)
    # Boluses: what the pump delivered in intervals that began or ended in bolus state. Where the
    # bolus began or ended within an interval, the basal infusion's share of it is not bolus.
    if item.state is r.PumpState.BOLUS and st.bolus_episode is None:
        st.bolus_episode = Bolus(now, 0.0, "pump")
    prev_bolus = prev is not None and prev.state is r.PumpState.BOLUS
    if st.bolus_episode is not None and (item.state is r.PumpState.BOLUS or prev_bolus):
        bolus_mg = delta_mg
        if prev is not None and prev_bolus != (item.state is r.PumpState.BOLUS) and st.infusion_rate_ml_h and conc:
            basal_mg = st.infusion_rate_ml_h * max(0.0, now - prev.mono) / 3600 * conc
            bolus_mg = max(0.0, delta_mg - basal_mg)
        st.bolus_episode.mg += bolus_mg
    if item.state is not r.PumpState.BOLUS and st.bolus_episode is not None:
        st.boluses.append(st.bolus_episode)
        st.bolus_episode = None
    if item.state is r.PumpState.RUNNING and rate is not None and rate > 0:
        old = st.infusion_rate_ml_h
        if old is not None and abs(rate - old) > max(0.01, old * cfg.ketamine.rate_tolerance_pct / 100):
            st.rate_change_mono = now
        st.infusion_rate_ml_h = rate
    st.pump = PumpStatus(
        device=item.device,
        state=item.state,
        rate_ml_h=rate,
        volume_infused_ml=volume if volume is not None else prev_vol,
        volume_to_be_infused_ml=_finite(item.volume_to_be_infused_ml),
        syringe_ml=_finite(item.syringe_ml),
        drug=item.drug[:64] if item.drug else item.drug,
        concentration_mg_ml=_finite(item.concentration_mg_ml),
        bolus_ml=_finite(item.bolus_ml),
        quality=item.quality,
        mono=now,
    )
    if st.pump_infusing():
        st.pump_idle_since_mono = None
        st.ever_infused = True
        if st.start_mono is None and st.patient is not None:
            st.start_mono = now
    elif st.pump_idle_since_mono is None:
        st.pump_idle_since_mono = now
    engine.emit(EventKind.INFUSION, engine.infusion_data(now) | {"device_time": iso(item.device_time)})


def deliver(engine: Engine, mg: float, t0: float, t1: float, segment: tuple[Any, ...] | None = None) -> None:
    """Ketamine reached the patient (``t0 == t1``: given at once, by hand): feed the model estimate.

    Pieces delivered under one unbroken pump ``segment`` (its reported state, rate and the
    concentration, with no other state between) make one constant-rate run, whatever the steps of
    the pump's volume counter between reports; without a segment, contiguous pieces within 2 % of
    the run's rate do. The run list (kept
    in the checkpoint) then grows with the rate changes of a course, not with its length."""
    st = engine.state
    if st.patient is None or not mg > 0 or not math.isfinite(mg):
        return
    runs = st.deliveries
    last = runs[-1] if runs else None
    extends = False
    if last is not None and t1 > t0:
        if segment is not None and segment == st.delivery_segment:
            extends = t0 >= last[2] - 1e-6
        elif last[2] > last[1] and abs(last[2] - t0) < 1e-6:  # contiguous, at the run's rate within 2 %
            run_rate = last[0] / (last[2] - last[1])
            extends = abs(mg / (t1 - t0) - run_rate) <= 0.02 * run_rate
    if last is not None and extends:
        last[0] += mg
        last[2] = t1
    else:
        runs.append([mg, t0, t1])
    st.delivery_segment = segment
    if st.estimate is None:
        st.estimate = PlasmaEstimate.from_config(engine.config.pk, st.patient.weight_kg)
    st.estimate.update(mg, t0, t1)


def rebuild_estimate(engine: Engine) -> None:
    """The weight changed: the model is weight-scaled, so run it again over what was delivered."""
    st = engine.state
    if st.patient is None or not st.deliveries:
        st.estimate = None
        return
    est = PlasmaEstimate.from_config(engine.config.pk, st.patient.weight_kg)
    for mg, t0, t1 in st.deliveries:
        est.update(mg, t0, t1)
    st.estimate = est


def device_alarm(engine: Engine, item: r.DeviceAlarm, now: float) -> None:
    st = engine.state
    st.device_roles[item.device] = item.role
    if st.device_alarms.get(item.device, frozenset()) == item.active:
        return
    st.device_alarms[item.device] = item.active
    st.device_alarm_detail[item.device] = item.detail[:200] if item.active else ""
    engine.emit(
        EventKind.DEVICE_ALARM,
        {"device": item.device, "role": item.role.value, "active": sorted(a.value for a in item.active),
         "detail": item.detail[:200]},
    )


def link(engine: Engine, item: r.LinkStatus, now: float) -> None:
    st = engine.state
    st.device_roles[item.device] = item.role
    old = st.links.get(item.device)
    st.links[item.device] = LinkInfo(item.role, item.state, item.detail[:200], item.protocol_errors, now)
    if item.state is r.LinkState.CONNECTED:
        _seen(engine, item.device, item.role, now)
    if old is None or old.state is not item.state:
        engine.emit(
            EventKind.LINK,
            {
                "device": item.device,
                "role": item.role.value,
                "state": item.state.value,
                "detail": item.detail[:200],
                "protocol_errors": item.protocol_errors,
            },
        )
    sources.reselect(engine, now)  # a source lost: its vitals from the next source, at once
