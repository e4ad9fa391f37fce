"""The engine of one bed: takes typed inputs, keeps ``BedState``, runs the rules, drives the
alarm manager and hands every output ``Event`` to its subscribers, in order.

It is synchronous and does no I/O: the rule loop (``monitord.loop``) feeds it and calls
``tick`` on a timer; tests feed it directly on a ``FakeClock``. A refused action raises
``Refused`` and is also emitted as a ``rejected`` event, so it is logged and visible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from monitord import readings as r
from monitord.alarms import AlarmManager, Inactivation
from monitord.clock import Clock
from monitord.config import Config
from monitord.dose import bolus_mg_kg, volume_delta_ml
from monitord.errors import Refused
from monitord.events import Event, EventKind
from monitord.rules import Finding, build_rules
from monitord.rules.vitals import max_age
from monitord.state import (
    BedState,
    LinkInfo,
    Order,
    Patient,
    PumpStatus,
    Sedation,
    SessionStatus,
    VitalValue,
)

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]
CheckpointSubscriber = Callable[[int, dict[str, Any]], None]

BASELINE_VITALS = (r.Vital.HR, r.Vital.SBP, r.Vital.DBP, r.Vital.MAP, r.Vital.SPO2, r.Vital.RR, r.Vital.ETCO2)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def _parse_iso(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


class Engine:
    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.state = BedState(bed_id=config.bed.id, monitoring_started_mono=clock.monotonic())
        self.rules = build_rules(config)
        self.alarms = AlarmManager(self.rules, config.alarms, self._emit_alarm)
        self.seq = 0
        self._subscribers: list[Subscriber] = []
        self._checkpoint_subscribers: list[CheckpointSubscriber] = []
        self.last_evaluation_mono: float | None = None

    # -- plumbing -------------------------------------------------------------------------

    @property
    def bed_id(self) -> str:
        return self.state.bed_id

    def subscribe(self, callback: Subscriber) -> None:
        """``callback(event)`` for every event, in ``seq`` order. It must not block."""
        self._subscribers.append(callback)

    def subscribe_checkpoint(self, callback: CheckpointSubscriber) -> None:
        """``callback(seq, checkpoint)`` after each input or tick that emitted events."""
        self._checkpoint_subscribers.append(callback)

    def _emit(self, kind: EventKind, data: dict[str, Any]) -> None:
        self.seq += 1
        event = Event(
            seq=self.seq,
            kind=kind,
            bed_id=self.bed_id,
            time=self.clock.utc_now(),
            mono=self.clock.monotonic(),
            clock_synced=self.clock.wall_synchronized(),
            data=data,
        )
        for cb in self._subscribers:
            try:
                cb(event)
            except Exception:  # an output's bug must not stop monitoring
                log.exception("event subscriber failed on seq %d", event.seq)

    def record_system(self, action: str, **data: Any) -> None:
        """Emit a system event (daemon start, recovery, downtime, storage or link trouble)."""
        seq_before = self.seq
        self._emit(EventKind.SYSTEM, {"action": action, **data})
        self._settled(seq_before)

    def _emit_alarm(self, data: dict[str, Any]) -> None:
        self._emit(EventKind.ALARM, data)

    def _settled(self, seq_before: int) -> None:
        if self.seq == seq_before or not self._checkpoint_subscribers:
            return
        cp = self.checkpoint()
        for cb in self._checkpoint_subscribers:
            try:
                cb(self.seq, cp)
            except Exception:
                log.exception("checkpoint subscriber failed")

    # -- the one way in ---------------------------------------------------------------------

    def submit(self, item: r.Input, evaluate: bool = True) -> None:
        """Apply one input, evaluate the rules and emit what follows. Raises ``Refused``.

        ``evaluate=False`` defers rule evaluation to the next ``tick`` (a batch of readings
        that arrived together is then judged once)."""
        seq_before = self.seq
        now = self.clock.monotonic()
        try:
            handler = self._handlers.get(type(item))
            if handler is None:
                raise Refused(f"Unknown input {type(item).__name__}")
            handler(self, item, now)
        except Refused as exc:
            self._emit(
                EventKind.REJECTED,
                {"action": type(item).__name__, "actor": getattr(item, "actor", None), "reason": str(exc)},
            )
            log.warning("refused %s: %s", type(item).__name__, exc)
            self.evaluate()
            self._settled(seq_before)
            raise
        if evaluate:
            self.evaluate()
        self._settled(seq_before)

    def tick(self) -> None:
        """Evaluate time-based conditions (silence, delays, overdue checks, pause expiry)."""
        seq_before = self.seq
        self.evaluate()
        self._settled(seq_before)

    def evaluate(self) -> dict[str, Finding]:
        now = self.clock.monotonic()
        findings: dict[str, Finding] = {}
        for rule in self.rules:
            try:
                found = rule.check(self.state, now, self.config)
            except Exception:  # a rule bug is logged; the other rules still run
                log.exception("rule %s failed", rule.id)
                continue
            if found is not None:
                findings[rule.id] = found
        self.alarms.update(findings, now, self.clock.utc_now())
        self.last_evaluation_mono = now
        return findings

    # -- devices ----------------------------------------------------------------------------

    def _vitals(self, item: r.VitalsReading, now: float) -> None:
        st = self.state
        st.device_seen_mono[item.device] = now
        st.device_roles[item.device] = r.DeviceRole.MONITOR
        accepted: dict[str, float | None] = {}
        discarded: dict[str, float] = {}
        new_nibp = False
        for vital, value in item.values.items():
            rng = self.config.vitals.physical_range.get(vital)
            if value is not None and rng is not None and not rng.min <= value <= rng.max:
                st.out_of_range[vital] = value
                discarded[vital.value] = value
                continue
            st.out_of_range.pop(vital, None)
            accepted[vital.value] = value
            measured = item.nibp_time if vital in r.NIBP_VITALS else item.device_time
            arrived = now
            if vital in r.NIBP_VITALS and value is not None:
                prev = st.vitals.get(vital)
                repeated = (prev is not None and prev.value is not None and item.nibp_time is not None
                            and prev.measured_at == item.nibp_time)
                if repeated:
                    # The same measurement shown again in a later frame: it ages from its first arrival.
                    arrived = prev.mono  # type: ignore[union-attr]
                else:
                    new_nibp = True
            st.vitals[vital] = VitalValue(value, arrived, item.quality, measured)
        if new_nibp:
            st.nibp_mono = now
        self._emit(
            EventKind.VITALS,
            {
                "device": item.device,
                "values": accepted,
                "quality": item.quality.value,
                "discarded": discarded,
                "new_nibp": new_nibp,
                "device_time": _iso(item.device_time),
                "nibp_time": _iso(item.nibp_time),
            },
        )

    def _pump(self, item: r.PumpReading, now: float) -> None:
        st = self.state
        prev = st.pump
        st.device_seen_mono[item.device] = now
        st.device_roles[item.device] = r.DeviceRole.PUMP
        conc = st.order.concentration_mg_ml if st.order is not None else None
        if conc is not None:
            if item.volume_infused_ml is not None and item.volume_infused_ml >= 0:
                prev_vol = prev.volume_infused_ml if prev is not None else None
                st.cumulative_mg += volume_delta_ml(prev_vol, item.volume_infused_ml) * conc
            elif prev is not None and prev.rate_ml_h and prev.state in (r.PumpState.RUNNING, r.PumpState.BOLUS):
                st.cumulative_mg += prev.rate_ml_h * (now - prev.mono) / 3600 * conc
        st.pump = PumpStatus(
            device=item.device,
            state=item.state,
            rate_ml_h=item.rate_ml_h,
            volume_infused_ml=item.volume_infused_ml
            if item.volume_infused_ml is not None
            else (prev.volume_infused_ml if prev else None),
            volume_to_be_infused_ml=item.volume_to_be_infused_ml,
            syringe_ml=item.syringe_ml,
            drug=item.drug,
            concentration_mg_ml=item.concentration_mg_ml,
            bolus_ml=item.bolus_ml,
            quality=item.quality,
            mono=now,
        )
        self._emit(EventKind.INFUSION, self._infusion_data(now) | {"device_time": _iso(item.device_time)})

    def _infusion_data(self, now: float) -> dict[str, Any]:
        st, p = self.state, self.state.pump
        return {
            "device": p.device if p else None,
            "state": p.state.value if p else None,
            "rate_ml_h": p.rate_ml_h if p else None,
            "volume_infused_ml": p.volume_infused_ml if p else None,
            "volume_to_be_infused_ml": p.volume_to_be_infused_ml if p else None,
            "syringe_ml": p.syringe_ml if p else None,
            "drug": p.drug if p else None,
            "concentration_mg_ml": p.concentration_mg_ml if p else None,
            "bolus_ml": p.bolus_ml if p else None,
            "quality": p.quality.value if p else None,
            "dose_rate_mg_kg_h": st.dose_rate_mg_kg_h(),
            "cumulative_mg": round(st.cumulative_mg, 4),
            "infusion_time_s": round(st.infusion_time_at(now), 3),
        }

    def _device_alarm(self, item: r.DeviceAlarm, now: float) -> None:
        st = self.state
        st.device_roles[item.device] = item.role
        if st.device_alarms.get(item.device, frozenset()) == item.active:
            return
        st.device_alarms[item.device] = item.active
        self._emit(
            EventKind.DEVICE_ALARM,
            {"device": item.device, "role": item.role.value, "active": sorted(a.value for a in item.active), "detail": item.detail},
        )

    def _link(self, item: r.LinkStatus, now: float) -> None:
        st = self.state
        st.device_roles[item.device] = item.role
        old = st.links.get(item.device)
        st.links[item.device] = LinkInfo(item.role, item.state, item.detail, item.protocol_errors, now)
        if item.state is r.LinkState.CONNECTED:
            st.device_seen_mono[item.device] = now
        if old is None or old.state is not item.state:
            self._emit(
                EventKind.LINK,
                {
                    "device": item.device,
                    "role": item.role.value,
                    "state": item.state.value,
                    "detail": item.detail,
                    "protocol_errors": item.protocol_errors,
                },
            )

    # -- nurse entries ----------------------------------------------------------------------

    def _need_patient(self) -> Patient:
        if self.state.patient is None:
            raise Refused("No patient is admitted to this bed")
        return self.state.patient

    @staticmethod
    def _need_actor(actor: str) -> str:
        if not actor or not actor.strip():
            raise Refused("Enter your staff id: every action is recorded with who did it")
        return actor.strip()

    def _sedation(self, item: r.SedationScore, now: float) -> None:
        self._need_patient()
        actor = self._need_actor(item.actor)
        lo, hi = (-5, 4) if item.scale is r.SedationScale.RASS else (0, 4)
        if not lo <= item.score <= hi:
            raise Refused(f"{item.scale.value.upper()} score {item.score} is not on the scale ({lo} to {hi})")
        self.state.sedation = Sedation(item.scale, item.score, actor, now)
        self.state.last_assessment_mono = now
        self._emit(EventKind.OBSERVATION, {"type": "sedation", "scale": item.scale.value, "score": item.score, "actor": actor})

    def _pain(self, item: r.PainScore, now: float) -> None:
        self._need_patient()
        actor = self._need_actor(item.actor)
        if not 0 <= item.score <= 10:
            raise Refused(f"Pain score {item.score} is not on the 0-10 scale")
        self.state.pain.append((now, item.score))
        self._emit(EventKind.OBSERVATION, {"type": "pain", "score": item.score, "actor": actor})

    def _effects(self, item: r.PsychomimeticEffects, now: float) -> None:
        self._need_patient()
        actor = self._need_actor(item.actor)
        self.state.effects = item.effects
        self._emit(
            EventKind.OBSERVATION,
            {"type": "effects", "effects": sorted(e.value for e in item.effects), "note": item.note, "actor": actor},
        )

    def _rescue(self, item: r.RescueMedication, now: float) -> None:
        self._need_patient()
        actor = self._need_actor(item.actor)
        if not item.drug.strip():
            raise Refused("Name the rescue medication")
        if not item.dose_mg > 0:
            raise Refused(f"Rescue dose {item.dose_mg} mg must be above 0")
        self._emit(
            EventKind.OBSERVATION,
            {"type": "rescue", "drug": item.drug.strip(), "dose_mg": item.dose_mg, "route": item.route,
             "reason": item.reason, "actor": actor},
        )

    # -- session commands -------------------------------------------------------------------

    def _session_event(self, action: str, actor: str, **details: Any) -> None:
        self._emit(EventKind.SESSION, {"action": action, "actor": actor, **details})

    def _admit(self, item: r.Admit, now: float) -> None:
        st, lim = self.state, self.config.patient_limits
        actor = self._need_actor(item.actor)
        if st.status is not SessionStatus.EMPTY:
            raise Refused(f"Bed {st.bed_id} already has patient {st.patient.id if st.patient else '?'}: discharge first")
        pid = item.patient_id.strip()
        if not pid:
            raise Refused("Patient id is empty")
        if not lim.weight_kg_min <= item.weight_kg <= lim.weight_kg_max:
            raise Refused(
                f"Weight {item.weight_kg:g} kg is outside {lim.weight_kg_min:g}-{lim.weight_kg_max:g} kg: check the entry (kg, not lb)"
            )
        if not lim.age_years_min <= item.age_years <= lim.age_years_max:
            raise Refused(f"Age {item.age_years} is outside {lim.age_years_min}-{lim.age_years_max} years")
        elderly = item.elderly if item.elderly is not None else item.age_years >= lim.elderly_age_years
        st.patient = Patient(pid, float(item.weight_kg), item.age_years, elderly, item.comorbid)
        st.status = SessionStatus.ADMITTED
        st.monitoring_started_mono = now
        self._session_event("admitted", actor, patient=self._patient_dict())

    def _set_order(self, item: r.SetOrder, now: float) -> None:
        st, drug = self.state, self.config.ketamine
        patient = self._need_patient()
        actor = self._need_actor(item.actor)
        if st.status is SessionStatus.STOPPED:
            raise Refused("The infusion has stopped; discharge and admit again for a new course")
        if item.drug.strip().lower() != drug.name:
            raise Refused(f"Drug '{item.drug}' is not in the drug library (only {drug.name})")
        if not any(abs(item.concentration_mg_ml - c) < 1e-6 for c in drug.concentrations_mg_ml):
            allowed = ", ".join(f"{c:g}" for c in drug.concentrations_mg_ml)
            raise Refused(f"Concentration {item.concentration_mg_ml:g} mg/mL is not in the drug library ({allowed} mg/mL)")
        if not 0 < item.rate_ml_h <= drug.rate_ml_h_max:
            raise Refused(f"Rate {item.rate_ml_h:g} mL/h is outside 0-{drug.rate_ml_h_max:g} mL/h")
        hard = self.config.dose_thresholds(patient.stricter_limits).hard_max_mg_kg_h
        dose = item.rate_ml_h * item.concentration_mg_ml / patient.weight_kg
        if dose > hard:
            raise Refused(
                f"{item.rate_ml_h:g} mL/h at {item.concentration_mg_ml:g} mg/mL is {dose:.1f} mg/kg/h, above the "
                f"{hard:g} mg/kg/h hard limit: was a dose (mg/h) entered as a rate (mL/h)?"
            )
        if item.bolus_mg < 0:
            raise Refused("Bolus cannot be negative")
        if item.syringe_ml is not None and not any(abs(item.syringe_ml - s) < 1e-6 for s in drug.syringe_sizes_ml):
            raise Refused(f"Syringe {item.syringe_ml:g} mL is not in the drug library")
        st.order = Order(drug.name, item.concentration_mg_ml, item.rate_ml_h, item.bolus_mg, item.syringe_ml)
        self._session_event(
            "order_set",
            actor,
            order=self._order_dict(),
            dose_rate_mg_kg_h=round(dose, 4),
            bolus_mg_kg=round(item.bolus_mg / patient.weight_kg, 4),
        )

    def _start(self, item: r.StartInfusion, now: float) -> None:
        st = self.state
        actor = self._need_actor(item.actor)
        self._need_patient()
        if st.order is None:
            raise Refused("Enter the order (concentration, rate) before starting")
        if st.status is not SessionStatus.ADMITTED:
            raise Refused(f"Cannot start: the infusion is {st.status.value}")
        if not st.baseline:
            self._capture_baseline(now, "system", at_start=True)
        st.status = SessionStatus.RUNNING
        st.started_at = self.clock.utc_now()
        st.running_since_mono = now
        st.last_assessment_mono = st.last_assessment_mono or now
        self._session_event("started", actor)

    def _pause(self, item: r.PauseInfusion, now: float) -> None:
        st = self.state
        actor = self._need_actor(item.actor)
        if st.status is not SessionStatus.RUNNING:
            raise Refused(f"Cannot pause: the infusion is {st.status.value}")
        st.infusion_time_s = st.infusion_time_at(now)
        st.running_since_mono = None
        st.status = SessionStatus.PAUSED
        self._session_event("paused", actor, reason=item.reason)

    def _resume(self, item: r.ResumeInfusion, now: float) -> None:
        st = self.state
        actor = self._need_actor(item.actor)
        if st.status is not SessionStatus.PAUSED:
            raise Refused(f"Cannot resume: the infusion is {st.status.value}")
        st.running_since_mono = now
        st.status = SessionStatus.RUNNING
        self._session_event("resumed", actor)

    def _stop(self, item: r.StopInfusion, now: float) -> None:
        st = self.state
        actor = self._need_actor(item.actor)
        if st.status not in (SessionStatus.RUNNING, SessionStatus.PAUSED):
            raise Refused(f"Cannot stop: the infusion is {st.status.value}")
        st.infusion_time_s = st.infusion_time_at(now)
        st.running_since_mono = None
        st.status = SessionStatus.STOPPED
        st.course_finished = True
        self._session_event(
            "stopped",
            actor,
            reason=item.reason,
            cumulative_mg=round(st.cumulative_mg, 4),
            infusion_time_s=round(st.infusion_time_s, 3),
        )

    def _discharge(self, item: r.Discharge, now: float) -> None:
        st = self.state
        actor = self._need_actor(item.actor)
        if st.status in (SessionStatus.RUNNING, SessionStatus.PAUSED):
            raise Refused("Stop the infusion before discharging")
        if st.status is SessionStatus.EMPTY:
            raise Refused("No patient to discharge")
        summary = {"patient_id": st.patient.id if st.patient else None, "cumulative_mg": round(st.cumulative_mg, 4),
                   "infusion_time_s": round(st.infusion_time_s, 3)}
        keep = {k: getattr(st, k) for k in ("bed_id", "vitals", "device_seen_mono", "device_roles", "nibp_mono",
                                              "pump", "links", "device_alarms", "out_of_range")}
        self.state = BedState(**keep, monitoring_started_mono=now)
        self._session_event("discharged", actor, **summary)

    def _capture(self, item: r.CaptureBaseline, now: float) -> None:
        self._need_patient()
        self._capture_baseline(now, self._need_actor(item.actor))

    def _capture_baseline(self, now: float, actor: str, at_start: bool = False) -> None:
        st = self.state
        max_age_s = self.config.vitals.baseline_max_age_s
        base = {}
        for vital in BASELINE_VITALS:
            value = st.fresh(vital, now, min(max_age_s, max_age(self.config, vital)))
            if value is not None:
                base[vital] = value
        if r.Vital.HR not in base and r.Vital.SBP not in base:
            if at_start:
                log.info("infusion started with no baseline: no fresh HR or SBP")
                return
            raise Refused("No fresh heart rate or blood pressure to take as baseline: measure NIBP first")
        st.baseline = base
        self._session_event(
            "baseline_captured", actor, baseline={k.value: v for k, v in base.items()}, at_start=at_start
        )

    def _override(self, item: r.Override, now: float) -> None:
        self._need_patient()
        actor = self._need_actor(item.actor)
        overridable = self.overridable()
        if item.rule_id not in overridable:
            raise Refused(f"'{item.rule_id}' cannot be overridden (overridable: {', '.join(sorted(overridable))})")
        if len(item.reason.strip()) < 3:
            raise Refused("An override needs a reason")
        self.state.overrides[item.rule_id] = item.reason.strip()
        self._session_event("override", actor, rule_id=item.rule_id, reason=item.reason.strip(),
                            entered_by=item.entered_by.strip() or actor)

    def overridable(self) -> set[str]:
        """Rule ids a physician may override with a recorded reason: the ICU soft dose limit and
        checklist contraindications. Hard limits and everything else cannot be overridden."""
        return {"dose.soft_max_icu"} | {
            f"checklist.{c.id}" for c in self.config.checklist if c.kind == "contraindication"
        }

    def _checklist(self, item: r.ChecklistAnswers, now: float) -> None:
        self._need_patient()
        actor = self._need_actor(item.actor)
        known = {c.id for c in self.config.checklist}
        unknown = set(item.answers) - known
        if unknown:
            raise Refused(f"Unknown checklist items: {', '.join(sorted(unknown))}")
        self.state.checklist.update(item.answers)
        self._session_event("checklist", actor, answers=dict(item.answers))

    def _ack(self, item: r.Acknowledge, now: float) -> None:
        self.alarms.acknowledge(item.rule_id, self._need_actor(item.actor))

    def _audio_pause(self, item: r.AudioPause, now: float) -> None:
        self.alarms.audio_pause(self._need_actor(item.actor), now)

    def _reset(self, item: r.ResetAlarm, now: float) -> None:
        self.alarms.reset(item.rule_id, self._need_actor(item.actor))

    def _treatments(self, item: r.TreatmentCount, now: float) -> None:
        self.state.treatments_last_12_months = item.count
        self._session_event("treatment_count", "system", count=item.count)

    def _output_status(self, item: r.OutputStatus, now: float) -> None:
        faults = self.state.output_faults
        before = faults.get(item.component)
        if item.ok:
            faults.pop(item.component, None)
        else:
            faults[item.component] = item.detail or "failed"
        if faults.get(item.component) != before:
            self._emit(EventKind.SYSTEM, {"action": "output_status", "component": item.component, "ok": item.ok,
                                          "detail": item.detail})

    _handlers: dict[type, Callable[[Engine, Any, float], None]] = {
        r.VitalsReading: _vitals,
        r.PumpReading: _pump,
        r.DeviceAlarm: _device_alarm,
        r.LinkStatus: _link,
        r.SedationScore: _sedation,
        r.PainScore: _pain,
        r.PsychomimeticEffects: _effects,
        r.RescueMedication: _rescue,
        r.Admit: _admit,
        r.SetOrder: _set_order,
        r.StartInfusion: _start,
        r.PauseInfusion: _pause,
        r.ResumeInfusion: _resume,
        r.StopInfusion: _stop,
        r.Discharge: _discharge,
        r.CaptureBaseline: _capture,
        r.Override: _override,
        r.ChecklistAnswers: _checklist,
        r.Acknowledge: _ack,
        r.AudioPause: _audio_pause,
        r.ResetAlarm: _reset,
        r.TreatmentCount: _treatments,
        r.OutputStatus: _output_status,
    }

    # -- the one way out for state ----------------------------------------------------------

    def _patient_dict(self) -> dict[str, Any] | None:
        p = self.state.patient
        if p is None:
            return None
        return {"id": p.id, "weight_kg": p.weight_kg, "age_years": p.age_years, "elderly": p.elderly, "comorbid": p.comorbid}

    def _order_dict(self) -> dict[str, Any] | None:
        o = self.state.order
        if o is None:
            return None
        return {"drug": o.drug, "concentration_mg_ml": o.concentration_mg_ml, "rate_ml_h": o.rate_ml_h,
                "bolus_mg": o.bolus_mg, "syringe_ml": o.syringe_ml}

    def snapshot(self) -> dict[str, Any]:
        """The bed as a nurse or central station should see it now (JSON-ready)."""
        st, now = self.state, self.clock.monotonic()
        vitals = {}
        for vital, v in st.vitals.items():
            age = now - v.mono
            vitals[vital.value] = {
                "value": v.value,
                "unit": r.VITAL_UNITS[vital],
                "quality": v.quality.value,
                "age_s": round(age, 1),
                "stale": v.value is None or age > max_age(self.config, vital) or v.quality is r.Quality.INVALID,
                "measured_at": _iso(v.measured_at),
            }
        links = {
            name: {"role": li.role.value, "state": li.state.value, "detail": li.detail,
                   "protocol_errors": li.protocol_errors,
                   "last_seen_age_s": round(now - st.device_seen_mono[name], 1) if name in st.device_seen_mono else None}
            for name, li in st.links.items()
        }
        for name, seen in st.device_seen_mono.items():
            links.setdefault(name, {"role": st.device_roles[name].value, "state": None, "detail": "",
                                    "protocol_errors": 0, "last_seen_age_s": round(now - seen, 1)})
        sed = st.sedation
        return {
            "bed_id": st.bed_id,
            "care_area": self.config.bed.care_area.value,
            "time": _iso(self.clock.utc_now()),
            "seq": self.seq,
            "status": st.status.value,
            "patient": self._patient_dict(),
            "order": self._order_dict(),
            "started_at": _iso(st.started_at),
            "infusion": self._infusion_data(now) | {
                "age_s": round(now - st.pump.mono, 1) if st.pump else None,
                "bolus_mg_kg": (round(bolus_mg_kg(st.pump.bolus_ml, st.order.concentration_mg_ml, st.patient.weight_kg), 4)
                                if st.pump and st.pump.bolus_ml and st.order and st.patient else None),
            },
            "vitals": vitals,
            "baseline": {k.value: v for k, v in st.baseline.items()},
            "links": links,
            "device_alarms": {k: sorted(a.value for a in v) for k, v in st.device_alarms.items() if v},
            "sedation": {"scale": sed.scale.value, "score": sed.score, "actor": sed.actor,
                         "age_s": round(now - sed.mono, 1)} if sed else None,
            "pain": [{"score": s, "age_s": round(now - t, 1)} for t, s in st.pain[-5:]],
            "effects": sorted(e.value for e in st.effects),
            "overrides": dict(st.overrides),
            "checklist": dict(st.checklist),
            "treatments_last_12_months": st.treatments_last_12_months,
            "alarms": [a.to_dict() for a in self.alarms.active()],
            "audio": {
                "sounding": s.value if (s := self.alarms.sounding()) else None,
                "paused": self.alarms.pause_remaining(now) > 0,
                "pause_remaining_s": round(self.alarms.pause_remaining(now), 1),
            },
        }

    # -- recovery ---------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """What a restart needs to resume this bed (JSON-ready). Taken after each input."""
        st, now = self.state, self.clock.monotonic()
        return {
            "seq": self.seq,
            "alarm_seq": self.alarms.alarm_seq,
            "time": _iso(self.clock.utc_now()),
            "status": st.status.value,
            "patient": self._patient_dict(),
            "order": self._order_dict(),
            "started_at": _iso(st.started_at),
            "infusion_time_s": st.infusion_time_at(now),
            "cumulative_mg": st.cumulative_mg,
            "pump_volume_infused_ml": st.pump.volume_infused_ml if st.pump else None,
            "baseline": {k.value: v for k, v in st.baseline.items()},
            "overrides": dict(st.overrides),
            "checklist": dict(st.checklist),
            "treatments_last_12_months": st.treatments_last_12_months,
            "course_finished": st.course_finished,
            "sedation_age_s": (now - st.last_assessment_mono) if st.last_assessment_mono is not None else None,
            "alarms": [a.to_dict() for a in self.alarms.active()],
        }

    def restore(self, cp: dict[str, Any], downtime_s: float = 0.0) -> None:
        """Resume from a checkpoint after a restart. ``downtime_s``: how long the daemon was
        down; a running infusion kept running on the pump, so it counts as infusion time."""
        now, st = self.clock.monotonic(), self.state
        self.seq = int(cp["seq"])
        self.alarms.alarm_seq = int(cp["alarm_seq"])
        st.status = SessionStatus(cp["status"])
        if cp.get("patient"):
            p = cp["patient"]
            st.patient = Patient(p["id"], p["weight_kg"], p["age_years"], p["elderly"], p["comorbid"])
        if cp.get("order"):
            o = cp["order"]
            st.order = Order(o["drug"], o["concentration_mg_ml"], o["rate_ml_h"], o["bolus_mg"], o["syringe_ml"])
        st.started_at = _parse_iso(cp.get("started_at"))
        st.infusion_time_s = float(cp["infusion_time_s"])
        if st.status is SessionStatus.RUNNING:
            st.infusion_time_s += downtime_s
            st.running_since_mono = now
        st.cumulative_mg = float(cp["cumulative_mg"])
        if cp.get("pump_volume_infused_ml") is not None:
            # The first pump reading after restart then adds what was infused while down.
            st.pump = PumpStatus("restored", r.PumpState.UNKNOWN, None, float(cp["pump_volume_infused_ml"]),
                                 None, None, None, None, None, r.Quality.QUESTIONABLE, now)
        st.baseline = {r.Vital(k): float(v) for k, v in cp.get("baseline", {}).items()}
        st.overrides = dict(cp.get("overrides", {}))
        st.checklist = dict(cp.get("checklist", {}))
        st.treatments_last_12_months = cp.get("treatments_last_12_months")
        st.course_finished = bool(cp.get("course_finished"))
        if cp.get("sedation_age_s") is not None:
            st.last_assessment_mono = now - float(cp["sedation_age_s"]) - downtime_s
        st.monitoring_started_mono = now
        self.alarms.restore(cp.get("alarms", []), now, self.clock.utc_now())
        for alarm in self.alarms.alarms.values():
            if alarm.inactivation is Inactivation.AUDIO_PAUSED:
                alarm.inactivation = Inactivation.ENABLED
