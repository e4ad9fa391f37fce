"""The state of one bed, in two parts that rules read side by side:

- the *intent*: what the nurse recorded (patient, order, session status, observations);
- the *truth*: what the devices report, each with the monotonic time it arrived, and what follows
  from it (infusion time and dose from the pump's volume, boluses, condition onsets).

``BedState`` is plain data. Only the engine (``monitord.intent``, ``monitord.truth``) mutates it.
Times named ``*_mono`` are monotonic seconds; ``*_at`` are UTC datetimes for display and records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from monitord.dose import dose_rate_mg_kg_h
from monitord.interlock import InterlockState
from monitord.pk import PlasmaEstimate
from monitord.readings import (
    DeviceAlarmCode,
    DeviceRole,
    Effect,
    LinkState,
    PumpState,
    Quality,
    SedationScale,
    Vital,
)


class SessionStatus(StrEnum):
    EMPTY = "empty"  # no patient
    ADMITTED = "admitted"  # patient admitted, infusion not started
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"  # infusion over, patient still in the bed (observation before discharge)


@dataclass(frozen=True, slots=True)
class Patient:
    id: str
    weight_kg: float
    age_years: int
    elderly: bool
    comorbid: bool

    @property
    def stricter_limits(self) -> bool:
        return self.elderly or self.comorbid


@dataclass(frozen=True, slots=True)
class Order:
    drug: str
    concentration_mg_ml: float
    rate_ml_h: float
    bolus_mg: float
    syringe_ml: float | None
    planned_duration_min: float | None = None


@dataclass(slots=True)
class VitalValue:
    value: float | None
    mono: float  # when the daemon received it
    quality: Quality
    measured_at: datetime | None = None  # device time of measurement (NIBP)
    source: str = ""  # the device it came from


@dataclass(slots=True)
class PumpStatus:
    device: str
    state: PumpState
    rate_ml_h: float | None
    volume_infused_ml: float | None
    volume_to_be_infused_ml: float | None
    syringe_ml: float | None
    drug: str | None
    concentration_mg_ml: float | None
    bolus_ml: float | None
    quality: Quality
    mono: float


@dataclass(slots=True)
class LinkInfo:
    role: DeviceRole
    state: LinkState
    detail: str
    protocol_errors: int
    since_mono: float


@dataclass(slots=True)
class Sedation:
    scale: SedationScale
    score: int
    actor: str
    mono: float


@dataclass(slots=True)
class Bolus:
    mono: float
    mg: float
    source: str  # "pump" or "hand"


INFUSING = (PumpState.RUNNING, PumpState.BOLUS)


@dataclass(slots=True)
class BedState:
    bed_id: str
    status: SessionStatus = SessionStatus.EMPTY
    patient: Patient | None = None
    order: Order | None = None
    started_at: datetime | None = None
    admitted_mono: float | None = None
    start_mono: float | None = None  # Start recorded, or the pump first infused (observation schedule)
    stopped_mono: float | None = None
    # Truth from the pump: time it actually infused, mg from its volume (and hand-given boluses).
    infusion_time_s: float = 0.0
    cumulative_mg: float = 0.0
    infusion_rate_ml_h: float | None = None  # the last running (not bolus) rate the pump reported
    rate_change_mono: float | None = None
    pump_idle_since_mono: float | None = None  # pump not infusing since (None: infusing or never seen)
    boluses: list[Bolus] = field(default_factory=list)
    bolus_episode: Bolus | None = None  # a pump bolus under way (mg so far)
    vitals: dict[Vital, VitalValue] = field(default_factory=dict)
    # Monotonic time the last frame of any kind came from each device (silence detection).
    device_seen_mono: dict[str, float] = field(default_factory=dict)
    device_roles: dict[str, DeviceRole] = field(default_factory=dict)
    nibp_mono: float | None = None  # when the last new NIBP measurement arrived
    pump: PumpStatus | None = None
    links: dict[str, LinkInfo] = field(default_factory=dict)
    device_alarms: dict[str, frozenset[DeviceAlarmCode]] = field(default_factory=dict)
    device_alarm_detail: dict[str, str] = field(default_factory=dict)  # what the device said, for messages
    # Values a device sent outside the physical range, by vital (cleared by a good value).
    out_of_range: dict[Vital, float] = field(default_factory=dict)
    # When each limit's condition began (limit id or derived key -> mono); rules judge delays from it.
    onsets: dict[str, float] = field(default_factory=dict)
    capnograph_seen: bool = False  # the monitor has sent a valid EtCO2 in this session
    device_back_mono: dict[str, float] = field(default_factory=dict)  # frames resumed after a silence
    # Each configured device's latest value of each vital it provides (monitord.sources).
    source_values: dict[str, dict[Vital, VitalValue]] = field(default_factory=dict)
    # When each (device, vital) last began giving usable values again after a gap (the hold before
    # a preferred source takes back a vital, e.g. ECG HR after leads off).
    source_back_mono: dict[tuple[str, Vital], float] = field(default_factory=dict)
    baseline: dict[Vital, float] = field(default_factory=dict)
    sedation: Sedation | None = None
    last_assessment_mono: float | None = None
    round_due_mono: float | None = None  # when the observation round of the last sedation score was due
    pain: list[tuple[float, int]] = field(default_factory=list)  # (mono, score)
    effects: frozenset[Effect] = frozenset()
    effects_severity: str = "mild"
    rescues: list[dict[str, object]] = field(default_factory=list)
    weight_check: str | None = None  # why the entered weight needs checking (history disagrees)
    weight_confirmed: bool = False  # checked against history at entry, or confirmed since
    overrides: dict[str, str] = field(default_factory=dict)  # rule id -> reason
    checklist: dict[str, bool] = field(default_factory=dict)
    treatments_last_12_months: int | None = None
    # Set when the infusion stops; the course rules evaluate the finished course.
    course_finished: bool = False
    ever_infused: bool = False
    interlock: InterlockState = field(default_factory=InterlockState)
    # Central stations that confirmed each alarm occurrence (its first alarm_seq) -> station ids
    receipts: dict[int, set[str]] = field(default_factory=dict)
    # Active HIGH alarms as of the last evaluation: rule id -> (occurrence alarm_seq, since mono)
    high_alarms: dict[str, tuple[int, float]] = field(default_factory=dict)
    # The plasma-concentration model estimate (monitord.pk) and what it was fed: ketamine delivered,
    # [mg, t0_mono, t1_mono] runs at a steady rate merged, to rebuild it if the weight is corrected.
    estimate: PlasmaEstimate | None = None
    deliveries: list[list[float]] = field(default_factory=list)
    delivery_segment: tuple[Any, ...] | None = None  # the pump segment the last run was delivered under
    # Discharge: score (scale, total, mono), escort, and the controlled-substance record.
    discharge_score: tuple[str, int, float] | None = None
    escort: str | None = None
    pump_infused_mg: float = 0.0  # from the pump's volume only (hand boluses come from other stock)
    dispensed_mg: float = 0.0
    wasted_mg: float = 0.0
    record_closed: bool = False
    output_faults: dict[str, str] = field(default_factory=dict)  # component -> detail
    monitoring_started_mono: float = 0.0

    def pump_infusing(self) -> bool:
        """The pump's own last report says it is delivering drug."""
        p = self.pump
        if p is None or p.state not in INFUSING:
            return False
        return p.state is PumpState.BOLUS or p.rate_ml_h is None or p.rate_ml_h > 0

    def infusion_time_at(self, now_mono: float) -> float:
        """Time the pump actually infused, up to now."""
        if self.pump is not None and self.pump_infusing():
            return self.infusion_time_s + max(0.0, now_mono - self.pump.mono)
        return self.infusion_time_s

    def bolus_mg_in_window(self, now_mono: float, window_s: float) -> float:
        total = sum(b.mg for b in self.boluses if now_mono - b.mono <= window_s)
        return total + (self.bolus_episode.mg if self.bolus_episode is not None else 0.0)

    def fresh(self, vital: Vital, now_mono: float, max_age_s: float) -> float | None:
        """The current value of ``vital`` if valid and no older than ``max_age_s``, else None."""
        v = self.vitals.get(vital)
        if v is None or v.value is None or v.quality is Quality.INVALID:
            return None
        if now_mono - v.mono > max_age_s:
            return None
        return v.value

    def dose_rate_mg_kg_h(self) -> float | None:
        """Current infusion dose rate from the pump's rate and the ORDERED concentration (what
        pharmacy prepared); a pump programmed with another concentration raises its own alarm.
        During a bolus the rate a pump reports is the bolus rate: the infusion rate is the last
        running rate (the bolus is judged by the bolus rule)."""
        if self.patient is None or self.order is None or self.pump is None:
            return None
        if not self.pump_infusing():
            return 0.0
        rate = self.infusion_rate_ml_h if self.pump.state is PumpState.BOLUS else self.pump.rate_ml_h
        if rate is None:
            return None
        return dose_rate_mg_kg_h(rate, self.order.concentration_mg_ml, self.patient.weight_kg)
