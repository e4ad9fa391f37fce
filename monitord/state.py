"""The state of one bed: patient, order, session clock, latest readings, nurse observations.

``BedState`` is plain data that rules read. Only ``monitord.engine`` mutates it.
Times named ``*_mono`` are monotonic seconds; ``*_at`` are UTC datetimes for display and records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from monitord.dose import dose_rate_mg_kg_h
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


@dataclass(slots=True)
class VitalValue:
    value: float | None
    mono: float  # when the daemon received it
    quality: Quality
    measured_at: datetime | None = None  # device time of measurement (NIBP)


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
class BedState:
    bed_id: str
    status: SessionStatus = SessionStatus.EMPTY
    patient: Patient | None = None
    order: Order | None = None
    started_at: datetime | None = None
    # Infusion time accumulates only while running; paused time is excluded.
    infusion_time_s: float = 0.0
    running_since_mono: float | None = None
    cumulative_mg: float = 0.0
    vitals: dict[Vital, VitalValue] = field(default_factory=dict)
    # Monotonic time the last frame of any kind came from each device (silence detection).
    device_seen_mono: dict[str, float] = field(default_factory=dict)
    device_roles: dict[str, DeviceRole] = field(default_factory=dict)
    nibp_mono: float | None = None  # when the last new NIBP measurement arrived
    pump: PumpStatus | None = None
    links: dict[str, LinkInfo] = field(default_factory=dict)
    device_alarms: dict[str, frozenset[DeviceAlarmCode]] = field(default_factory=dict)
    # Values a device sent outside the physical range, by vital (cleared by a good value).
    out_of_range: dict[Vital, float] = field(default_factory=dict)
    baseline: dict[Vital, float] = field(default_factory=dict)
    sedation: Sedation | None = None
    last_assessment_mono: float | None = None
    pain: list[tuple[float, int]] = field(default_factory=list)  # (mono, score)
    effects: frozenset[Effect] = frozenset()
    overrides: dict[str, str] = field(default_factory=dict)  # rule id -> reason
    checklist: dict[str, bool] = field(default_factory=dict)
    treatments_last_12_months: int | None = None
    # Set when the infusion stops; the course rules evaluate the finished course.
    course_finished: bool = False
    output_faults: dict[str, str] = field(default_factory=dict)  # component -> detail
    monitoring_started_mono: float = 0.0

    def infusion_time_at(self, now_mono: float) -> float:
        if self.running_since_mono is None:
            return self.infusion_time_s
        return self.infusion_time_s + (now_mono - self.running_since_mono)

    def fresh(self, vital: Vital, now_mono: float, max_age_s: float) -> float | None:
        """The current value of ``vital`` if valid and no older than ``max_age_s``, else None."""
        v = self.vitals.get(vital)
        if v is None or v.value is None or v.quality is Quality.INVALID:
            return None
        if now_mono - v.mono > max_age_s:
            return None
        return v.value

    def dose_rate_mg_kg_h(self) -> float | None:
        """Current dose rate from the pump's rate and the ORDERED concentration (what pharmacy
        prepared); a pump programmed with another concentration raises its own alarm."""
        if self.patient is None or self.order is None or self.pump is None:
            return None
        if self.pump.rate_ml_h is None:
            return None
        if self.pump.state not in (PumpState.RUNNING, PumpState.BOLUS):
            return 0.0
        return dose_rate_mg_kg_h(self.pump.rate_ml_h, self.order.concentration_mg_ml, self.patient.weight_kg)
