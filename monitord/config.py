"""Configuration: TOML files validated into typed models.

Every clinical number lives here (with its defaults in ``config/defaults.toml``, where each one
carries a comment naming its source). Unknown keys are errors: a typo in a threshold must never
fall back to a default silently. ``load_config`` raises ``ConfigError`` whose message names the
file, the key, the bad value and what is allowed.
"""

from __future__ import annotations

import sys
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitord.readings import Vital

DEFAULTS_PATH = Path(__file__).parent / "defaults" / "defaults.toml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CareArea(StrEnum):
    OUTPATIENT = "outpatient-infusion"
    MONITORED = "monitored-unit"
    ICU = "icu"


class Priority(StrEnum):
    """IEC 60601-1-8 alarm priorities, plus advisory (shown, never sounded)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    ADVISORY = "advisory"

    @property
    def rank(self) -> int:
        return {"high": 3, "medium": 2, "low": 1, "advisory": 0}[self.value]


Positive = Annotated[float, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]


class BedConfig(Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    care_area: CareArea
    timezone: str = "UTC"


class PatientLimits(Strict):
    weight_kg_min: Positive
    weight_kg_max: Positive
    age_years_min: Annotated[int, Field(ge=0)]
    age_years_max: Annotated[int, Field(gt=0)]
    elderly_age_years: Annotated[int, Field(gt=0)]
    # Entry safety: a weight this far from the patient's last recorded one, or above the
    # confirmation level, or that matches the last weight in pounds, needs confirming.
    weight_change_confirm_pct: Annotated[float, Field(gt=0, le=100)]
    weight_confirm_above_kg: Positive

    @model_validator(mode="after")
    def _ordered(self) -> PatientLimits:
        if self.weight_kg_min >= self.weight_kg_max:
            raise ValueError("weight_kg_min must be below weight_kg_max")
        if self.age_years_min >= self.age_years_max:
            raise ValueError("age_years_min must be below age_years_max")
        return self


class DoseThresholds(Strict):
    low_mg_kg_h: Positive
    monitored_area_mg_kg_h: Positive
    soft_max_mg_kg_h: Positive
    hard_max_mg_kg_h: Positive
    bolus_max_mg_kg: Positive

    @model_validator(mode="after")
    def _ordered(self) -> DoseThresholds:
        if not (self.low_mg_kg_h < self.soft_max_mg_kg_h < self.hard_max_mg_kg_h):
            raise ValueError("need low_mg_kg_h < soft_max_mg_kg_h < hard_max_mg_kg_h")
        return self


class DrugEntry(Strict):
    """A drug-library entry, as a smart pump would hold it."""

    name: str
    concentrations_mg_ml: list[Positive] = Field(min_length=1)
    rate_ml_h_max: Positive
    syringe_sizes_ml: list[Positive] = Field(min_length=1)
    concentration_tolerance_pct: NonNeg
    rate_tolerance_pct: NonNeg
    rate_mismatch_delay_s: NonNeg
    syringe_tolerance_ml: NonNeg
    # mg/kg/h and mg/kg are compared with the guideline's numbers after rounding to this step.
    dose_precision: Annotated[float, Field(gt=0, le=0.1)]
    bolus_window_s: Annotated[float, Field(gt=0, le=86400)]
    # Boluses in the window above this total alarm in a monitored unit or ICU.
    bolus_window_max_monitored_mg_kg: Positive
    # An order bolus above this per kg is refused as an entry error.
    bolus_order_max_mg_kg: Positive
    # Pump infusing against the recorded intent (after Stop, during Pause, with no order) alarms
    # after this long: time to reach the pump after recording the action.
    intent_mismatch_delay_s: Annotated[float, Field(ge=0, le=600)]
    # Pump infusing before Start was recorded.
    running_not_started_delay_s: Annotated[float, Field(ge=0, le=3600)]
    # Session running but the pump has not infused for this long.
    pump_idle_alarm_s: Annotated[float, Field(gt=0, le=86400)]
    rescue_dose_mg_max: Positive
    dose: DoseThresholds
    dose_elderly_or_comorbid: DoseThresholds
    rescue_medications: list[str] = Field(min_length=1)


class VitalLimit(Strict):
    """One absolute limit on one vital sign. Exactly one of ``above``/``below``."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    vital: Vital
    above: float | None = None
    below: float | None = None
    delay_s: NonNeg
    priority: Priority
    latching: bool = False
    respiratory_warning: bool = False
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _one_bound(self) -> VitalLimit:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        return self


class PhysicalRange(Strict):
    min: float
    max: float


class VitalsConfig(Strict):
    stale_after_s: Positive
    nibp_cycle_s: Positive
    nibp_overdue_factor: Positive
    baseline_hr_rise_pct: Positive
    baseline_sbp_rise_pct: Positive
    baseline_hr_delay_s: NonNeg
    baseline_max_age_s: Positive
    respiratory_warnings_for_alarm: Annotated[int, Field(ge=2)]
    source_missing_s: dict[Vital, Positive]
    apnoea_s: Annotated[float, Field(gt=0, le=120)]
    # EtCO2 at or below this with no breath counted is no breath; above it but below the line
    # check level while breaths are counted, the sampling line is suspect (technical).
    apnoea_etco2_mmhg: Annotated[float, Field(ge=0, le=20)]
    etco2_line_check_mmhg: Annotated[float, Field(ge=0, le=30)]
    physical_range: dict[Vital, PhysicalRange]
    limits: list[VitalLimit]

    @model_validator(mode="after")
    def _unique(self) -> VitalsConfig:
        ids = [lim.id for lim in self.limits]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate limit ids: {sorted(dup)}")
        return self


class SedationConfig(Strict):
    poss_medium: Annotated[int, Field(ge=1, le=4)]
    poss_high: Annotated[int, Field(ge=1, le=4)]
    rass_medium: Annotated[int, Field(ge=-5, le=4)]
    rass_high: Annotated[int, Field(ge=-5, le=4)]
    rass_agitation: Annotated[int, Field(ge=1, le=4)]


class ObservationConfig(Strict):
    """When an observation (sedation score) is due; a reminder is shown when due and sounds
    (low priority) only once it is overdue by ``grace_s``."""

    first_hour_interval_s: Annotated[float, Field(gt=0, le=14400)]
    interval_s: Annotated[float, Field(gt=0, le=14400)]
    first_phase_s: Annotated[float, Field(ge=0, le=86400)]
    after_rate_change_s: Annotated[float, Field(gt=0, le=14400)]
    after_stop_s: Annotated[float, Field(gt=0, le=14400)]
    grace_s: Annotated[float, Field(ge=0, le=14400)]


class DischargeConfig(Strict):
    """Discharge criteria (monitord.discharge) and the controlled-substance record tolerance."""

    min_observation_after_stop_s: Annotated[float, Field(ge=0, le=86400)]
    vitals_band_pct: Annotated[float, Field(gt=0, le=100)]
    min_score: Annotated[int, Field(ge=0, le=10)]
    record_tolerance_mg: Annotated[float, Field(ge=0, le=100)]


class ChecklistItem(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    text: str
    # contraindication: "yes" needs a physician override with a reason; prompt: a test to consider.
    kind: Literal["contraindication", "prompt"]
    source: str = Field(min_length=3)


class CourseConfig(Strict):
    min_total_mg: Positive
    min_duration_h: Positive
    treatments_per_year_review: Annotated[int, Field(gt=0)]
    treatments_per_year_max: Annotated[int, Field(gt=0)]
    # Pain reduction (last score after the stop vs last before the start) that counts as a
    # positive response; the registry reports it per treatment.
    response_reduction_pct: Annotated[float, Field(gt=0, le=100)] = 30.0


class AlarmConfig(Strict):
    audio_pause_s: Positive
    escalate_after_s: dict[Priority, Positive]
    latching: list[str]
    device_alarm_priority: dict[str, Priority]
    device_alarm_delay_s: dict[str, NonNeg]
    # After a restart, restored alarms are held this long before their inputs can clear them.
    restore_hold_s: Annotated[float, Field(ge=0, le=300)]


class SerialPort(Strict):
    port: str
    baudrate: Annotated[int, Field(gt=0)] = 19200
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rtscts: bool = False  # hardware flow control (the Datex S/5 interface uses RTS/CTS)


class PumpDevice(Strict):
    name: str = "pump"
    driver: Literal["modbus", "ne500"]
    serial: SerialPort
    poll_interval_s: Positive = 1.0
    timeout_s: Positive = 10.0
    modbus_unit: Annotated[int, Field(ge=1, le=247)] = 1
    register_map: str | None = None  # path; default map shipped in config/pump-map.toml
    ne500_address: Annotated[int, Field(ge=0, le=99)] = 0
    ne500_safe_mode: bool = False  # the NE-500 "safe mode" framing with CRC-16
    allow_stop_commands: bool = False


class MonitorDevice(Strict):
    name: str = "monitor"
    driver: Literal["datex"]
    serial: SerialPort
    poll_interval_s: Positive = 5.0
    timeout_s: Positive = 15.0
    # "auto": a capnograph counts as connected once the monitor has sent a valid EtCO2.
    capnograph: Literal["auto"] | bool = "auto"


class DevicesConfig(Strict):
    pump: PumpDevice | None = None
    monitor: MonitorDevice | None = None


class StoreConfig(Strict):
    url: str | None = None  # None: SQLite file in state_dir
    state_dir: str = "/var/lib/monitord"
    raw_retention_h: Positive = 24.0
    trend_interval_s: Positive = 60.0
    batch_max: Annotated[int, Field(gt=0)] = 500
    flush_interval_s: Positive = 0.5


class TLSConfig(Strict):
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


class MqttConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 1883
    topic_root: str = "monitord/v1"
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: TLSConfig | None = None
    keepalive_s: Annotated[int, Field(gt=0)] = 10
    accept_ack: bool = False
    ack_stations: list[str] = Field(default_factory=list)


class DashboardConfig(Strict):
    socket: str = "/run/monitord/dashboard.sock"


class WatchdogConfig(Strict):
    tick_s: Positive = 1.0


class Config(Strict):
    bed: BedConfig
    patient_limits: PatientLimits
    ketamine: DrugEntry
    vitals: VitalsConfig
    sedation: SedationConfig
    observations: ObservationConfig
    discharge: DischargeConfig
    course: CourseConfig
    alarms: AlarmConfig
    checklist: list[ChecklistItem]
    devices: DevicesConfig = DevicesConfig()
    store: StoreConfig = StoreConfig()
    mqtt: MqttConfig = MqttConfig()
    dashboard: DashboardConfig = DashboardConfig()
    watchdog: WatchdogConfig = WatchdogConfig()

    def dose_thresholds(self, elderly_or_comorbid: bool) -> DoseThresholds:
        return self.ketamine.dose_elderly_or_comorbid if elderly_or_comorbid else self.ketamine.dose


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and why."""


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` onto ``base``; tables merge, everything else (lists too) replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a table"
    allowed = err["msg"]
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        allowed = f"expected {ctx['expected']}"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {shown}); check its spelling"
    if err["type"] == "missing":
        return f"{key}: required, missing"
    return f"{key} = {shown}: {allowed}"


def parse_config(data: dict[str, Any], origin: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]  # type: ignore[arg-type]
        raise ConfigError(f"{origin}: invalid configuration\n  " + "\n  ".join(lines)) from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load the shipped defaults, then the site file over them, then ``overrides``."""
    data = read_toml(DEFAULTS_PATH)
    origin = str(DEFAULTS_PATH)
    if path is not None:
        data = merge(data, read_toml(Path(path)))
        origin = str(path)
    if overrides:
        data = merge(data, overrides)
    return parse_config(data, origin)


def load_or_report(path: str | Path | None) -> Config | None:
    """``load_config`` for a command line: on error, print the message to stderr and return None."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
