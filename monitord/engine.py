"""The engine of one bed: takes typed inputs, keeps ``BedState``, runs the rules, drives the
alarm manager and hands every output ``Event`` to its subscribers, in order.

One way in (``submit``, ``tick``), one way out (events to subscribers). The handlers live where
they belong: device reports in ``monitord.truth``, nurse commands and entries in
``monitord.intent``, checkpoints in ``monitord.checkpoint``; the rules in ``monitord.rules``.
It is synchronous and does no I/O: the rule loop (``monitord.loop``) feeds it and calls
``tick`` on a timer; tests feed it directly on a ``FakeClock``. A refused action raises
``Refused`` and is also emitted as a ``rejected`` event, so it is logged and visible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from monitord import checkpoint as checkpoints
from monitord import intent, truth
from monitord import interlock as interlocks
from monitord import readings as r
from monitord.alarms import AlarmManager
from monitord.clock import Clock
from monitord.config import Config, ConfigError, CourseConfig, Priority
from monitord.discharge import readiness, record_balance
from monitord.dose import bolus_mg_kg
from monitord.errors import ConfirmationRequired, Refused
from monitord.events import Event, EventKind
from monitord.rules import Finding, build_rules
from monitord.rules.vitals import max_age, present_conditions
from monitord.schedule import next_due
from monitord.state import BedState, Order, SessionStatus

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]
CheckpointSubscriber = Callable[[int, dict[str, Any]], None]
CommandSubscriber = Callable[[str], None]  # a pump command ("stop" | "pause") to send now


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def plan_progress(order: Order | None, delivered_mg: float, elapsed_s: float | None, rate_ml_h: float | None,
                  course: CourseConfig) -> dict[str, Any]:
    """Delivered against the plan, the total projected at the planned end, and whether the
    course will reach the guideline's minimum for a first treatment (total and duration).

    ``elapsed_s``: since the start (None: not started, the plan as ordered); ``rate_ml_h``: the
    rate the pump infuses at now (0 or None: not infusing). The snapshot and ``monitord export``."""
    delivered = round(delivered_mg, 1)
    if order is None or order.planned_duration_min is None:
        return {"planned_duration_min": None, "planned_total_mg": None, "delivered_mg": delivered,
                "projected_total_mg": None, "reaches_minimum": None}
    planned_h = order.planned_duration_min / 60
    planned_total = order.rate_ml_h * order.concentration_mg_ml * planned_h + order.bolus_mg
    if elapsed_s is None:
        projected = planned_total
    else:
        remaining_h = max(0.0, order.planned_duration_min * 60 - elapsed_s) / 3600
        projected = delivered_mg + (rate_ml_h or 0.0) * order.concentration_mg_ml * remaining_h
    return {
        "planned_duration_min": order.planned_duration_min,
        "planned_total_mg": round(planned_total, 1),
        "delivered_mg": delivered,
        "projected_total_mg": round(projected, 1),
        # Lines 1284-1290: at least min_total_mg over more than min_duration_h.
        "reaches_minimum": projected >= course.min_total_mg and planned_h > course.min_duration_h,
    }


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
        self._command_subscribers: list[CommandSubscriber] = []
        self.last_evaluation_mono: float | None = None
        if config.interlock.enabled:
            known = {rule.id for rule in self.rules}
            unknown = [t for t in config.interlock.triggers if t not in known]
            if unknown or not config.interlock.triggers:
                raise ConfigError(f"interlock.triggers: {', '.join(unknown) or 'empty'}: give rule ids (monitord rules)")

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

    def subscribe_commands(self, callback: CommandSubscriber) -> None:
        """``callback(command)`` when the interlock asks for a pump command. It must not block:
        the daemon hands it to the pump driver; the engine verifies the result from the pump's reports."""
        self._command_subscribers.append(callback)

    def emit(self, kind: EventKind, data: dict[str, Any]) -> None:
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
        self.emit(EventKind.SYSTEM, {"action": action, **data})
        self._settled(seq_before)

    def _emit_alarm(self, data: dict[str, Any]) -> None:
        self.emit(EventKind.ALARM, data)

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
            actor = getattr(item, "actor", None)
            self.emit(
                EventKind.REJECTED,
                {"action": type(item).__name__, "actor": actor[:64] if isinstance(actor, str) else None,
                 "reason": str(exc)[:500], "confirmation_required": isinstance(exc, ConfirmationRequired)},
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
        self._update_onsets(now)
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
        self._note_alarms()
        self._interlock(now)
        self.last_evaluation_mono = now
        return findings

    def _note_alarms(self) -> None:
        """What rules about the alarms themselves read (receipts): the active HIGH alarms; receipts
        of occurrences that ended are dropped."""
        st, alarms = self.state, self.alarms.alarms
        st.high_alarms = {rid: (a.occurrence_seq, a.since_mono) for rid, a in alarms.items()
                          if a.priority is Priority.HIGH}
        if st.receipts:
            live = {a.occurrence_seq for a in alarms.values()}
            for occurrence in [o for o in st.receipts if o not in live]:
                del st.receipts[occurrence]

    def interlock_triggers(self) -> dict[str, int]:
        """Active alarms of the interlock's trigger rules: rule id -> occurrence (alarm_seq)."""
        return {rid: a.occurrence_seq for rid in self.config.interlock.triggers
                if (a := self.alarms.alarms.get(rid)) is not None}

    def _interlock(self, now: float) -> None:
        pump = self.state.pump
        view = interlocks.PumpView(pump.state, pump.rate_ml_h, pump.mono) if pump is not None else None
        out = interlocks.step(self.state.interlock, self.config.interlock, self.interlock_triggers(), view, now)
        for data in out.events:
            self.emit(EventKind.INTERLOCK, data)
        for command in out.commands:
            for cb in self._command_subscribers:
                try:
                    cb(command)
                except Exception:  # the verification from the pump's reports still runs
                    log.exception("pump command subscriber failed")

    def _update_onsets(self, now: float) -> None:
        """Note when each limit condition began (kept while it lasts, dropped when it ends)."""
        onsets = self.state.onsets
        present = set(present_conditions(self.state, now, self.config))
        for key in list(onsets):
            if key not in present:
                del onsets[key]
        for key in present:
            onsets.setdefault(key, now)

    _handlers: dict[type, Callable[[Engine, Any, float], None]] = {
        r.VitalsReading: truth.vitals,
        r.PumpReading: truth.pump,
        r.DeviceAlarm: truth.device_alarm,
        r.LinkStatus: truth.link,
        r.SedationScore: intent.sedation,
        r.PainScore: intent.pain,
        r.PsychomimeticEffects: intent.effects,
        r.RescueMedication: intent.rescue,
        r.ManualBolus: intent.manual_bolus,
        r.Admit: intent.admit,
        r.ConfirmWeight: intent.confirm_weight,
        r.SetOrder: intent.set_order,
        r.StartInfusion: intent.start,
        r.PauseInfusion: intent.pause,
        r.ResumeInfusion: intent.resume,
        r.StopInfusion: intent.stop,
        r.Discharge: intent.discharge,
        r.DischargeScore: intent.discharge_score,
        r.EscortConfirmed: intent.escort,
        r.ControlledDrug: intent.controlled_drug,
        r.CaptureBaseline: intent.capture,
        r.Override: intent.override,
        r.InterlockRelease: intent.interlock_release,
        r.ChecklistAnswers: intent.checklist,
        r.Acknowledge: intent.acknowledge,
        r.AudioPause: intent.audio_pause,
        r.ResetAlarm: intent.reset,
        r.TreatmentCount: intent.treatments,
        r.OutputStatus: intent.output_status,
        r.CentralReceipt: intent.central_receipt,
    }

    def preview_order(self, concentration_mg_ml: float, rate_ml_h: float, bolus_mg: float = 0.0) -> dict[str, Any]:
        """What an order would deliver and its verdict for this bed (pure; raises ``Refused``)."""
        return intent.preview_order(self, concentration_mg_ml, rate_ml_h, bolus_mg)

    def overridable(self) -> set[str]:
        return intent.overridable(self)

    def infusion_data(self, now: float) -> dict[str, Any]:
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
            "infusing": st.pump_infusing(),
            "infusion_rate_ml_h": st.infusion_rate_ml_h,
            "dose_rate_mg_kg_h": st.dose_rate_mg_kg_h(),
            "cumulative_mg": round(st.cumulative_mg, 4),
            "infusion_time_s": round(st.infusion_time_at(now), 3),
        }

    # -- the one way out for state ----------------------------------------------------------

    def patient_dict(self) -> dict[str, Any] | None:
        p = self.state.patient
        if p is None:
            return None
        return {"id": p.id, "weight_kg": p.weight_kg, "age_years": p.age_years, "elderly": p.elderly, "comorbid": p.comorbid}

    def order_dict(self) -> dict[str, Any] | None:
        o = self.state.order
        if o is None:
            return None
        return {"drug": o.drug, "concentration_mg_ml": o.concentration_mg_ml, "rate_ml_h": o.rate_ml_h,
                "bolus_mg": o.bolus_mg, "syringe_ml": o.syringe_ml, "planned_duration_min": o.planned_duration_min}

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
                "source": v.source or None,  # the device in use (monitord.sources)
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
            "patient": self.patient_dict(),
            "order": self.order_dict(),
            "started_at": _iso(st.started_at),
            "infusion": self.infusion_data(now) | {
                "age_s": round(now - st.pump.mono, 1) if st.pump else None,
                "bolus_mg_kg": (round(bolus_mg_kg(st.pump.bolus_ml, st.order.concentration_mg_ml, st.patient.weight_kg), 4)
                                if st.pump and st.pump.bolus_ml and st.order and st.patient else None),
                "bolus_window_mg_kg": (round(st.bolus_mg_in_window(now, self.config.ketamine.bolus_window_s)
                                             / st.patient.weight_kg, 4) if st.patient else None),
                **self._plan(now),
            },
            "observation": self._observation(now),
            "discharge": ({"ready": all(c.met for c in crit), "criteria": [c.to_dict() for c in crit]}
                          if (crit := readiness(st, now, self.config)) and st.status is not SessionStatus.EMPTY
                          else None),
            "controlled_record": record_balance(st, self.config) if st.patient else None,
            "estimate": st.estimate.estimate(now) if st.estimate is not None else None,
            "interlock": {"phase": st.interlock.phase.value, "trigger": st.interlock.trigger,
                          "attempts": st.interlock.attempts, "pump_restarted": st.interlock.pump_restarted,
                          "since_s": None if st.interlock.since_mono is None else round(now - st.interlock.since_mono, 1)},
            "vitals": vitals,
            "baseline": {k.value: v for k, v in st.baseline.items()},
            "links": links,
            "device_alarms": {k: sorted(a.value for a in v) for k, v in st.device_alarms.items() if v},
            "sedation": {"scale": sed.scale.value, "score": sed.score, "actor": sed.actor,
                         "age_s": round(now - sed.mono, 1)} if sed else None,
            "pain": [{"score": s, "age_s": round(now - t, 1)} for t, s in st.pain[-5:]],
            "effects": sorted(e.value for e in st.effects),
            "effects_severity": st.effects_severity,
            "weight_check": st.weight_check,
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

    def _plan(self, now: float) -> dict[str, Any]:
        st = self.state
        rate = st.infusion_rate_ml_h if st.pump_infusing() else 0.0
        elapsed_s = None if st.start_mono is None else now - st.start_mono
        return plan_progress(st.order, st.cumulative_mg, elapsed_s, rate, self.config.course)

    def _observation(self, now: float) -> dict[str, Any] | None:
        due = next_due(self.state, self.config)
        if due is None:
            return None
        return {"due_in_s": round(due - now, 1), "overdue": now - due >= self.config.observations.grace_s}

    # -- recovery ---------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """What a restart needs to resume this bed (JSON-ready). Taken after each input."""
        return checkpoints.take(self)

    def restore(self, cp: dict[str, Any], downtime_s: float = 0.0) -> None:
        """Resume from a checkpoint after a restart; ``downtime_s``: how long the daemon was down."""
        checkpoints.restore(self, cp, downtime_s)
