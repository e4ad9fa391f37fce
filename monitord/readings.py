"""Typed inputs to the engine: device readings, link states, nurse entries and commands.

Drivers produce ``VitalsReading``, ``PumpReading``, ``DeviceAlarm`` and ``LinkStatus``; the
dashboard and CLI produce the nurse entries and commands. Nothing here knows a wire format
or a guideline threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Vital(StrEnum):
    HR = "hr"  # heart rate from ECG, /min
    PULSE = "pulse"  # pulse rate from SpO2 pleth, /min
    SBP = "sbp"  # NIBP systolic, mmHg
    DBP = "dbp"  # NIBP diastolic, mmHg
    MAP = "map"  # NIBP mean, mmHg
    SPO2 = "spo2"  # %
    RR = "rr"  # respiratory rate, /min
    ETCO2 = "etco2"  # end-tidal CO2, mmHg
    TEMP = "temp"  # degrees Celsius


VITAL_UNITS: dict[Vital, str] = {
    Vital.HR: "/min",
    Vital.PULSE: "/min",
    Vital.SBP: "mmHg",
    Vital.DBP: "mmHg",
    Vital.MAP: "mmHg",
    Vital.SPO2: "%",
    Vital.RR: "/min",
    Vital.ETCO2: "mmHg",
    Vital.TEMP: "Cel",
}

NIBP_VITALS = frozenset({Vital.SBP, Vital.DBP, Vital.MAP})


class Quality(StrEnum):
    VALID = "valid"
    QUESTIONABLE = "questionable"  # device flagged it (artefact, calibrating)
    INVALID = "invalid"  # device marked it not measured / invalid


class PumpState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    BOLUS = "bolus"
    UNKNOWN = "unknown"


class LinkState(StrEnum):
    CONNECTED = "connected"
    SILENT = "silent"  # port open, no valid reply within the timeout
    GARBLED = "garbled"  # bytes arrive but do not parse
    RECONNECTING = "reconnecting"  # port lost, retrying with backoff


class DeviceRole(StrEnum):
    PUMP = "pump"
    MONITOR = "monitor"
    OXIMETER = "oximeter"  # a standalone pulse oximeter


@dataclass(frozen=True, slots=True)
class VitalsReading:
    """Values from the patient monitor. ``values`` holds only what this frame carried;
    ``None`` means the device reported the parameter as not measured."""

    device: str
    values: dict[Vital, float | None]
    quality: Quality = Quality.VALID
    device_time: datetime | None = None
    # When an NIBP value was measured (device time), which can be minutes before this frame.
    nibp_time: datetime | None = None
    # How old the frame already was when it reached the driver (late delivery, estimated by the
    # driver from the device's time stamps; 0 when on time or unknown). NIBP: add device_time - nibp_time.
    age_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PumpReading:
    """What the pump reports it is programmed to do and has done."""

    device: str
    state: PumpState
    rate_ml_h: float | None = None
    volume_infused_ml: float | None = None
    volume_to_be_infused_ml: float | None = None
    syringe_ml: float | None = None
    drug: str | None = None
    concentration_mg_ml: float | None = None
    bolus_ml: float | None = None
    quality: Quality = Quality.VALID
    device_time: datetime | None = None


class DeviceAlarmCode(StrEnum):
    OCCLUSION = "occlusion"
    NEAR_EMPTY = "near_empty"
    EMPTY = "empty"
    LOW_BATTERY = "low_battery"
    DOOR_OPEN = "door_open"
    SENSOR_OFF = "sensor_off"  # a sensor off that the device does not name
    DEVICE_FAULT = "device_fault"
    APNOEA = "apnoea"  # the monitor's own apnoea / no-breath alarm
    LEADS_OFF = "leads_off"  # ECG leads off
    PROBE_OFF = "probe_off"  # SpO2 probe off the finger or disconnected
    IMPLAUSIBLE = "implausible"  # the device sent data that cannot be right (e.g. an ambient pressure)


@dataclass(frozen=True, slots=True)
class DeviceAlarm:
    """The full set of alarms a device currently reports (an empty set clears them)."""

    device: str
    role: DeviceRole
    active: frozenset[DeviceAlarmCode]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LinkStatus:
    device: str
    role: DeviceRole
    state: LinkState
    detail: str = ""
    protocol_errors: int = 0


# --- nurse entries -----------------------------------------------------------------------


class SedationScale(StrEnum):
    RASS = "rass"  # Richmond Agitation-Sedation Scale, +4 .. -5
    POSS = "poss"  # Pasero Opioid-induced Sedation Scale, 1..4 (S = asleep, easy to arouse -> 0)


@dataclass(frozen=True, slots=True)
class SedationScore:
    scale: SedationScale
    score: int
    actor: str


@dataclass(frozen=True, slots=True)
class PainScore:
    """Numeric rating scale 0-10."""

    score: int
    actor: str


class Effect(StrEnum):
    HALLUCINATIONS = "hallucinations"
    DYSPHORIA = "dysphoria"
    VIVID_DREAMS = "vivid_dreams"
    DISSOCIATION = "dissociation"  # out-of-body sensations
    BLURRED_VISION = "blurred_vision"
    NAUSEA = "nausea"
    HEADACHE = "headache"
    DIZZINESS = "dizziness"
    AGITATION = "agitation"


@dataclass(frozen=True, slots=True)
class PsychomimeticEffects:
    """Effects the nurse currently observes; an empty set records that they resolved.
    ``severity`` is the nurse's grading of the worst of them: mild, moderate or severe."""

    effects: frozenset[Effect]
    actor: str
    note: str = ""
    severity: str = "mild"


@dataclass(frozen=True, slots=True)
class RescueMedication:
    drug: str
    dose_mg: float
    route: str
    actor: str
    reason: str = ""


# --- commands ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admit:
    patient_id: str
    weight_kg: float
    age_years: int
    actor: str
    elderly: bool | None = None  # None: derive from age and the configured elderly age
    comorbid: bool = False
    # This patient's last recorded weight (looked up by the caller), checked against the entry.
    previous_weight_kg: float | None = None
    confirm: bool = False  # the nurse has seen the warning and confirms the entry


@dataclass(frozen=True, slots=True)
class SetOrder:
    drug: str
    concentration_mg_ml: float
    rate_ml_h: float
    actor: str
    bolus_mg: float = 0.0
    syringe_ml: float | None = None
    planned_duration_min: float | None = None
    confirm: bool = False  # the nurse has seen the computed dose and verdict and confirms


@dataclass(frozen=True, slots=True)
class StartInfusion:
    actor: str
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class PauseInfusion:
    actor: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResumeInfusion:
    actor: str


@dataclass(frozen=True, slots=True)
class StopInfusion:
    actor: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Discharge:
    """``reason``: required when the discharge criteria are not all met (recorded)."""

    actor: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DischargeScore:
    """A post-anaesthesia discharge score entered by the nurse: ``scale`` is "padss" (Chung 1995)
    or "aldrete" (modified, Aldrete 1995); ``items`` its five items, 0-2 each."""

    scale: str
    items: dict[str, int]
    actor: str


@dataclass(frozen=True, slots=True)
class EscortConfirmed:
    """A responsible adult will take the patient home."""

    actor: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ControlledDrug:
    """Controlled-substance record: ``action`` is "dispensed" (a syringe of ``volume_ml`` at the
    ordered concentration), "wasted" (``volume_ml`` discarded) or "close" (the record must add up).
    Every entry needs a witness."""

    action: str
    actor: str
    witness: str
    volume_ml: float = 0.0


@dataclass(frozen=True, slots=True)
class CaptureBaseline:
    """Take the current (fresh) vitals as the patient's pre-infusion baseline."""

    actor: str


@dataclass(frozen=True, slots=True)
class InterlockRelease:
    """A nurse at the bedside releases the pump stop interlock (dashboard only, never over MQTT)."""

    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class Override:
    """A physician's recorded override of a soft limit or a checklist contraindication.
    ``actor`` is the physician who decided; ``entered_by`` the staff member who typed it."""

    rule_id: str
    actor: str
    reason: str
    entered_by: str = ""


@dataclass(frozen=True, slots=True)
class ChecklistAnswers:
    """Pre-infusion checklist (guideline Table 5, Q5). ``answers`` maps item id -> yes/no."""

    answers: dict[str, bool]
    actor: str


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """``alarm_seq``: the transition the acknowledger saw; an ack older than the alarm's current
    occurrence is refused as stale (a late or replayed ack never silences a newer alarm)."""

    rule_id: str
    actor: str
    alarm_seq: int | None = None


@dataclass(frozen=True, slots=True)
class AudioPause:
    actor: str


@dataclass(frozen=True, slots=True)
class ResetAlarm:
    """Clear a latched alarm whose condition has ended."""

    rule_id: str
    actor: str


@dataclass(frozen=True, slots=True)
class TreatmentCount:
    """What the store's registry knows of this patient: treatments in the last 12 months and
    the weight recorded at the last admission."""

    count: int
    last_weight_kg: float | None = None


@dataclass(frozen=True, slots=True)
class ConfirmWeight:
    """The nurse checked the weight after a warning: confirms it, or corrects it."""

    weight_kg: float
    actor: str


@dataclass(frozen=True, slots=True)
class ManualBolus:
    """Ketamine given by hand (not through the monitored pump): counts in the cumulative dose
    and in the bolus window."""

    dose_mg: float
    actor: str
    route: str = "iv"
    note: str = ""


@dataclass(frozen=True, slots=True)
class CentralReceipt:
    """A central station confirms it has shown the alarm transition ``alarm_seq`` of ``rule_id``."""

    station: str
    rule_id: str
    alarm_seq: int


@dataclass(frozen=True, slots=True)
class OutputStatus:
    """Health of one of the daemon's own outputs: ``store``, ``mqtt`` or ``dashboard``."""

    component: str
    ok: bool
    detail: str = ""


NurseEntry = SedationScore | PainScore | PsychomimeticEffects | RescueMedication | ManualBolus
Command = (
    Admit
    | SetOrder
    | StartInfusion
    | PauseInfusion
    | ResumeInfusion
    | StopInfusion
    | Discharge
    | DischargeScore
    | EscortConfirmed
    | ControlledDrug
    | ConfirmWeight
    | CaptureBaseline
    | Override
    | ChecklistAnswers
    | Acknowledge
    | AudioPause
    | ResetAlarm
    | InterlockRelease
)
DeviceInput = VitalsReading | PumpReading | DeviceAlarm | LinkStatus
Input = DeviceInput | NurseEntry | Command | TreatmentCount | OutputStatus | CentralReceipt
