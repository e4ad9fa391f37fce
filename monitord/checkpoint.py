"""Checkpoint and restore of one bed: everything an alarm depends on survives a restart.

A checkpoint is JSON-ready and taken after each input that emitted events. Monotonic times are
stored as ages (seconds before the checkpoint) and restored as ages plus the downtime, so a
restart neither forgets nor rejuvenates anything. Device links are not restored: after a
restart a device counts as heard from only when it speaks again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitord import readings as r
from monitord import truth
from monitord.interlock import InterlockState
from monitord.pk import PlasmaEstimate
from monitord.state import Bolus, Order, Patient, PumpStatus, Sedation, SessionStatus, VitalValue

if TYPE_CHECKING:
    from monitord.engine import Engine

VERSION = 2


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def _parse_iso(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def take(engine: Engine) -> dict[str, Any]:
    st, now = engine.state, engine.clock.monotonic()

    def age(t: float | None) -> float | None:
        return None if t is None else round(now - t, 3)

    p = st.pump
    return {
        "version": VERSION,
        "seq": engine.seq,
        "alarm_seq": engine.alarms.alarm_seq,
        "time": _iso(engine.clock.utc_now()),
        "status": st.status.value,
        "patient": engine.patient_dict(),
        "weight_confirmed": st.weight_confirmed,
        "weight_check": st.weight_check,
        "order": engine.order_dict(),
        "started_at": _iso(st.started_at),
        "admitted_age_s": age(st.admitted_mono),
        "start_age_s": age(st.start_mono),
        "stopped_age_s": age(st.stopped_mono),
        "rate_change_age_s": age(st.rate_change_mono),
        "infusion_time_s": st.infusion_time_s,
        "cumulative_mg": st.cumulative_mg,
        "infusion_rate_ml_h": st.infusion_rate_ml_h,
        "pump_idle_age_s": age(st.pump_idle_since_mono),
        "ever_infused": st.ever_infused,
        "estimate": st.estimate.to_dict(now) if st.estimate is not None else None,
        "deliveries": [[mg, now - t0, now - t1] for mg, t0, t1 in st.deliveries],
        "interlock": st.interlock.to_dict() | {"since_mono": age(st.interlock.since_mono),
                                               "command_mono": age(st.interlock.command_mono)},
        "pump": None if p is None else {
            "device": p.device, "state": p.state.value, "rate_ml_h": p.rate_ml_h,
            "volume_infused_ml": p.volume_infused_ml, "volume_to_be_infused_ml": p.volume_to_be_infused_ml,
            "syringe_ml": p.syringe_ml, "drug": p.drug, "concentration_mg_ml": p.concentration_mg_ml,
            "bolus_ml": p.bolus_ml, "quality": p.quality.value, "age_s": age(p.mono),
        },
        "boluses": [{"age_s": age(b.mono), "mg": b.mg, "source": b.source} for b in st.boluses],
        "bolus_episode": None if st.bolus_episode is None else {
            "age_s": age(st.bolus_episode.mono), "mg": st.bolus_episode.mg},
        "vitals": {v.value: {"value": x.value, "age_s": age(x.mono), "quality": x.quality.value,
                             "measured_at": _iso(x.measured_at), "source": x.source} for v, x in st.vitals.items()},
        "nibp_age_s": age(st.nibp_mono),
        "onsets": {k: age(t) for k, t in st.onsets.items()},
        "capnograph_seen": st.capnograph_seen,
        "baseline": {k.value: v for k, v in st.baseline.items()},
        "sedation": None if st.sedation is None else {
            "scale": st.sedation.scale.value, "score": st.sedation.score, "actor": st.sedation.actor,
            "age_s": age(st.sedation.mono)},
        "sedation_age_s": age(st.last_assessment_mono),
        "pain": [{"age_s": age(t), "score": s} for t, s in st.pain[-10:]],
        "effects": sorted(e.value for e in st.effects),
        "effects_severity": st.effects_severity,
        "rescues": [{"drug": x["drug"], "dose_mg": x["dose_mg"], "age_s": age(float(x["mono"]))}  # type: ignore[arg-type]
                    for x in st.rescues],
        "overrides": dict(st.overrides),
        "checklist": dict(st.checklist),
        "treatments_last_12_months": st.treatments_last_12_months,
        "course_finished": st.course_finished,
        "discharge_score": None if st.discharge_score is None else [
            st.discharge_score[0], st.discharge_score[1], age(st.discharge_score[2])],
        "escort": st.escort,
        "pump_infused_mg": st.pump_infused_mg,
        "dispensed_mg": st.dispensed_mg,
        "wasted_mg": st.wasted_mg,
        "record_closed": st.record_closed,
        "output_faults": dict(st.output_faults),
        "alarms": [a.to_dict() for a in engine.alarms.active()],
        "audio_pause_remaining_s": engine.alarms.pause_remaining(now),
    }


def restore(engine: Engine, cp: dict[str, Any], downtime_s: float = 0.0) -> None:
    """Resume from a checkpoint after a restart. ``downtime_s``: how long the daemon was down."""
    st, now = engine.state, engine.clock.monotonic()
    down = max(0.0, downtime_s)

    def mono(age_s: Any) -> float | None:
        return None if age_s is None else now - float(age_s) - down

    engine.seq = int(cp["seq"])
    engine.alarms.alarm_seq = int(cp["alarm_seq"])
    st.status = SessionStatus(cp["status"])
    if cp.get("patient"):
        p = cp["patient"]
        st.patient = Patient(p["id"], p["weight_kg"], p["age_years"], p["elderly"], p["comorbid"])
    st.weight_confirmed = bool(cp.get("weight_confirmed"))
    st.weight_check = cp.get("weight_check")
    if cp.get("order"):
        o = cp["order"]
        st.order = Order(o["drug"], o["concentration_mg_ml"], o["rate_ml_h"], o["bolus_mg"], o["syringe_ml"],
                         o.get("planned_duration_min"))
    st.started_at = _parse_iso(cp.get("started_at"))
    st.admitted_mono = mono(cp.get("admitted_age_s"))
    st.start_mono = mono(cp.get("start_age_s"))
    st.stopped_mono = mono(cp.get("stopped_age_s"))
    st.rate_change_mono = mono(cp.get("rate_change_age_s"))
    st.infusion_time_s = float(cp.get("infusion_time_s") or 0.0)
    st.cumulative_mg = float(cp.get("cumulative_mg") or 0.0)
    st.infusion_rate_ml_h = cp.get("infusion_rate_ml_h")
    st.pump_idle_since_mono = mono(cp.get("pump_idle_age_s"))
    st.ever_infused = bool(cp.get("ever_infused"))
    st.deliveries = [[float(mg), now - float(a0) - down, now - float(a1) - down] for mg, a0, a1 in cp.get("deliveries", [])]
    if cp.get("estimate"):
        try:
            st.estimate = PlasmaEstimate.from_dict(cp["estimate"], now, downtime_s=down)
        except (ValueError, KeyError, TypeError):  # a model that no longer fits: run it again from the deliveries
            truth.rebuild_estimate(engine)
    if cp.get("interlock"):
        il = InterlockState.from_dict(cp["interlock"])
        # ages in the checkpoint, monotonic times here; a stop in progress is judged again on restart
        il.since_mono, il.command_mono = mono(il.since_mono), mono(il.command_mono)
        st.interlock = il
    if cp.get("pump"):
        p = cp["pump"]
        # The last report, aged by the downtime: a pump that was infusing kept infusing, so the
        # first report after the restart adds what it infused meanwhile (from its volume).
        st.pump = PumpStatus(p["device"], r.PumpState(p["state"]), p["rate_ml_h"], p["volume_infused_ml"],
                             p["volume_to_be_infused_ml"], p["syringe_ml"], p["drug"], p["concentration_mg_ml"],
                             p["bolus_ml"], r.Quality(p["quality"]), mono(p["age_s"]) or now)
        st.device_roles[p["device"]] = r.DeviceRole.PUMP
    elif cp.get("pump_volume_infused_ml") is not None:  # a version-1 checkpoint
        st.pump = PumpStatus("restored", r.PumpState.UNKNOWN, None, float(cp["pump_volume_infused_ml"]),
                             None, None, None, None, None, r.Quality.QUESTIONABLE, now)
    if cp.get("version") is None and st.status is SessionStatus.RUNNING:
        st.start_mono = st.start_mono if st.start_mono is not None else now
    st.boluses = [Bolus(mono(b["age_s"]) or now, float(b["mg"]), b["source"]) for b in cp.get("boluses", [])]
    if cp.get("bolus_episode"):
        st.bolus_episode = Bolus(mono(cp["bolus_episode"]["age_s"]) or now, float(cp["bolus_episode"]["mg"]), "pump")
    for name, v in (cp.get("vitals") or {}).items():
        # With its source: until that device speaks again (or its timeout passes) no other takes over.
        st.vitals[r.Vital(name)] = VitalValue(v["value"], mono(v["age_s"]) or now, r.Quality(v["quality"]),
                                              _parse_iso(v.get("measured_at")), str(v.get("source") or ""))
    st.nibp_mono = mono(cp.get("nibp_age_s"))
    st.onsets = {k: t for k, a in (cp.get("onsets") or {}).items() if (t := mono(a)) is not None}
    st.capnograph_seen = bool(cp.get("capnograph_seen"))
    st.baseline = {r.Vital(k): float(v) for k, v in cp.get("baseline", {}).items()}
    if cp.get("sedation"):
        s = cp["sedation"]
        st.sedation = Sedation(r.SedationScale(s["scale"]), int(s["score"]), s["actor"], mono(s["age_s"]) or now)
    st.last_assessment_mono = mono(cp.get("sedation_age_s"))
    st.pain = [(mono(x["age_s"]) or now, int(x["score"])) for x in cp.get("pain", [])]
    st.effects = frozenset(r.Effect(e) for e in cp.get("effects", []))
    st.effects_severity = cp.get("effects_severity") or "mild"
    st.rescues = [{"drug": x["drug"], "dose_mg": x["dose_mg"], "mono": mono(x["age_s"]) or now}
                  for x in cp.get("rescues", [])]
    st.overrides = dict(cp.get("overrides", {}))
    st.checklist = dict(cp.get("checklist", {}))
    st.treatments_last_12_months = cp.get("treatments_last_12_months")
    st.course_finished = bool(cp.get("course_finished"))
    if cp.get("discharge_score"):
        scale, total, score_age = cp["discharge_score"]
        st.discharge_score = (scale, int(total), mono(score_age) or now)
    st.escort = cp.get("escort")
    st.pump_infused_mg = float(cp.get("pump_infused_mg") or 0.0)
    st.dispensed_mg = float(cp.get("dispensed_mg") or 0.0)
    st.wasted_mg = float(cp.get("wasted_mg") or 0.0)
    st.record_closed = bool(cp.get("record_closed"))
    # Output faults are re-reported by the outputs themselves after a restart.
    st.monitoring_started_mono = now
    engine.alarms.restore(cp.get("alarms", []), now, engine.clock.utc_now(),
                          float(cp.get("audio_pause_remaining_s") or 0.0))
