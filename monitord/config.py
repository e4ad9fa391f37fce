"""Configuration: TOML files validated into typed models.

Every clinical number lives here (with its defaults in ``config/defaults.toml``, where each one
carries a comment naming its source). Unknown keys are errors: a typo in a threshold must never
fall back to a default silently. ``load_config`` raises ``ConfigError`` whose message names the
file, the key, the bad value and what is allowed.

A site file is merged over the shipped defaults: tables merge key by key, and the keyed lists
(``[[vitals.limits]]``, ``[[checklist]]``) merge entry by entry on their ``id``, so a site that
changes one limit keeps all the others. An entry is removed only by ``enabled = false``, which
``notes`` reports (``monitord check-config`` prints them). Every number must be finite and of
its type (no ``"90"``, no ``true`` for a number), and every interval, rate and limit lies in a
range that keeps the function it controls working; the bounds below say why.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import Strict as StrictType

from monitord.config_merge import MergeError, describe_changes, merge
from monitord.pk import PkConfig
from monitord.readings import DeviceRole, Vital

DEFAULTS_PATH = Path(__file__).parent / "defaults" / "defaults.toml"

class Strict(BaseModel):
    # allow_inf_nan=False: a nan limit compares false with every value and never alarms; an inf
    # interval stops what it paces. No number in a configuration is meant to be either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


# TOML has real numbers and booleans: a quoted number or a boolean where a number belongs is a
# mistake, not something to convert.
Float = Annotated[float, StrictType()]
Int = Annotated[int, StrictType()]
Bool = Annotated[bool, StrictType()]
Positive = Annotated[Float, Field(gt=0)]
NonNeg = Annotated[Float, Field(ge=0)]
Percent = Annotated[Float, Field(ge=0, le=100)]
# A path or name handed to the operating system: never empty, never with a NUL byte.
OsText = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]


# Condition delays (limits, device alarms): the longest preset in alarm-defaults.md s3 is 30 s
# and the apnoea limit below stops at 120 s; a delay of minutes is an alarm switched off.
ConditionDelay = Annotated[Float, Field(ge=0, le=120)]
# Dose rates: the guideline's highest rate is 7 mg/kg/h (refractory, ICU: Table 6 line 1660);
# a threshold far above it is a unit slip and would switch the dose alarms off.
DoseRate = Annotated[Float, Field(gt=0, le=20)]
# Bolus doses: the top of the guideline's Table 1 is 5-10 mg/kg (IM surgical anaesthesia, line 376).
BolusDose = Annotated[Float, Field(gt=0, le=10)]


class BedConfig(Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    care_area: CareArea
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value == "UTC":
            return value
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("not a known time zone (an IANA name such as 'Europe/London')") from None
        return value


class PatientLimits(Strict):
    # Plausibility bounds on the plausibility bounds: the heaviest person recorded weighed 635 kg.
    weight_kg_min: Annotated[Float, Field(gt=0, le=1000)]
    weight_kg_max: Annotated[Float, Field(gt=0, le=1000)]
    age_years_min: Annotated[Int, Field(ge=0, le=150)]
    age_years_max: Annotated[Int, Field(gt=0, le=150)]
    elderly_age_years: Annotated[Int, Field(gt=0, le=150)]
    # Entry safety: a weight this far from the patient's last recorded one, or above the
    # confirmation level, or that matches the last weight in pounds, needs confirming.
    weight_change_confirm_pct: Annotated[Float, Field(gt=0, le=100)]
    weight_confirm_above_kg: Annotated[Float, Field(gt=0, le=1000)]

    @model_validator(mode="after")
    def _ordered(self) -> PatientLimits:
        if self.weight_kg_min >= self.weight_kg_max:
            raise ValueError("weight_kg_min must be below weight_kg_max")
        if self.age_years_min >= self.age_years_max:
            raise ValueError("age_years_min must be below age_years_max")
        return self


class DoseThresholds(Strict):
    low_mg_kg_h: DoseRate
    monitored_area_mg_kg_h: DoseRate
    soft_max_mg_kg_h: DoseRate
    hard_max_mg_kg_h: DoseRate
    bolus_max_mg_kg: BolusDose

    @model_validator(mode="after")
    def _ordered(self) -> DoseThresholds:
        if not (self.low_mg_kg_h < self.soft_max_mg_kg_h < self.hard_max_mg_kg_h):
            raise ValueError("need low_mg_kg_h < soft_max_mg_kg_h < hard_max_mg_kg_h")
        return self


class DrugEntry(Strict):
    """A drug-library entry, as a smart pump would hold it."""

    name: str
    # Ketamine is sold at 10, 50 and 100 mg/mL: nothing stronger reaches a pump.
    concentrations_mg_ml: list[Annotated[Float, Field(gt=0, le=100)]] = Field(min_length=1)
    # Syringe and volumetric pumps top out near 1200-2000 mL/h; the bound only refuses absurd values.
    rate_ml_h_max: Annotated[Float, Field(gt=0, le=10000)]
    syringe_sizes_ml: list[Annotated[Float, Field(gt=0, le=1000)]] = Field(min_length=1)
    concentration_tolerance_pct: Percent
    rate_tolerance_pct: Percent
    rate_mismatch_delay_s: Annotated[Float, Field(ge=0, le=600)]
    syringe_tolerance_ml: Annotated[Float, Field(ge=0, le=10)]
    # mg/kg/h and mg/kg are compared with the guideline's numbers after rounding to this step.
    dose_precision: Annotated[Float, Field(gt=0, le=0.1)]
    bolus_window_s: Annotated[Float, Field(gt=0, le=86400)]
    # Boluses in the window above this total alarm in a monitored unit or ICU.
    bolus_window_max_monitored_mg_kg: BolusDose
    # An order bolus above this per kg is refused as an entry error.
    bolus_order_max_mg_kg: BolusDose
    # Pump infusing against the recorded intent (after Stop, during Pause, with no order) alarms
    # after this long: time to reach the pump after recording the action.
    intent_mismatch_delay_s: Annotated[Float, Field(ge=0, le=600)]
    # Pump infusing before Start was recorded.
    running_not_started_delay_s: Annotated[Float, Field(ge=0, le=3600)]
    # Session running but the pump has not infused for this long.
    pump_idle_alarm_s: Annotated[Float, Field(gt=0, le=86400)]
    # No rescue drug on the list is dosed in grams: the bound refuses a unit slip in the bound.
    rescue_dose_mg_max: Annotated[Float, Field(gt=0, le=10000)]
    dose: DoseThresholds
    dose_elderly_or_comorbid: DoseThresholds
    rescue_medications: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


class VitalLimit(Strict):
    """One absolute limit on one vital sign. Exactly one of ``above``/``below``.
    ``enabled = false`` removes a shipped limit (reported by ``check-config``)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    vital: Vital
    above: Float | None = None
    below: Float | None = None
    delay_s: ConditionDelay
    priority: Priority
    latching: Bool = False
    respiratory_warning: Bool = False
    source: str = Field(min_length=3)
    enabled: Bool = True

    @model_validator(mode="after")
    def _one_bound(self) -> VitalLimit:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        return self


class PhysicalRange(Strict):
    min: Float
    max: Float

    @model_validator(mode="after")
    def _ordered(self) -> PhysicalRange:
        if self.min >= self.max:
            raise ValueError("min must be below max")
        return self


class VitalsConfig(Strict):
    # A value older than this is not evaluated: beyond 5 min an old value would be judged as current.
    stale_after_s: Annotated[Float, Field(gt=0, le=300)]
    # Monitors cycle the cuff every few minutes up to an hour or two; past 4 h "overdue" means nothing.
    nibp_cycle_s: Annotated[Float, Field(gt=0, le=14400)]
    # Below 1 the NIBP would be overdue before it is due.
    nibp_overdue_factor: Annotated[Float, Field(ge=1, le=10)]
    baseline_hr_rise_pct: Annotated[Float, Field(gt=0, le=200)]
    baseline_sbp_rise_pct: Annotated[Float, Field(gt=0, le=200)]
    baseline_hr_delay_s: Annotated[Float, Field(ge=0, le=600)]
    baseline_max_age_s: Annotated[Float, Field(gt=0, le=3600)]
    respiratory_warnings_for_alarm: Annotated[Int, Field(ge=2, le=10)]
    # A device silent for minutes without a technical alarm is a device nobody watches.
    source_missing_s: dict[Vital, Annotated[Float, Field(gt=0, le=300)]]
    apnoea_s: Annotated[Float, Field(gt=0, le=120)]
    # EtCO2 at or below this with no breath counted is no breath; above it but below the line
    # check level while breaths are counted, the sampling line is suspect (technical).
    apnoea_etco2_mmhg: Annotated[Float, Field(ge=0, le=20)]
    etco2_line_check_mmhg: Annotated[Float, Field(ge=0, le=30)]
    physical_range: dict[Vital, PhysicalRange]
    limits: list[VitalLimit]

    @model_validator(mode="after")
    def _limits_can_fire(self) -> VitalsConfig:
        ids = [lim.id for lim in self.limits]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate limit ids: {sorted(dup)}")
        # A limit outside the vital's physical range could never alarm: values beyond the range
        # are discarded as device faults before any limit sees them.
        for lim in self.limits:
            rng = self.physical_range.get(lim.vital)
            if rng is None:
                continue
            if lim.above is not None and not rng.min <= lim.above < rng.max:
                raise ValueError(f"limit {lim.id}: above = {lim.above} cannot alarm: {lim.vital.value} values "
                                 f"are accepted only from {rng.min} to {rng.max} (physical_range)")
            if lim.below is not None and not rng.min < lim.below <= rng.max:
                raise ValueError(f"limit {lim.id}: below = {lim.below} cannot alarm: {lim.vital.value} values "
                                 f"are accepted only from {rng.min} to {rng.max} (physical_range)")
        return self


class SedationConfig(Strict):
    poss_medium: Annotated[Int, Field(ge=1, le=4)]
    poss_high: Annotated[Int, Field(ge=1, le=4)]
    rass_medium: Annotated[Int, Field(ge=-5, le=4)]
    rass_high: Annotated[Int, Field(ge=-5, le=4)]
    rass_agitation: Annotated[Int, Field(ge=1, le=4)]

    @model_validator(mode="after")
    def _ordered(self) -> SedationConfig:
        if self.poss_medium > self.poss_high:
            raise ValueError("poss_medium must not be above poss_high (POSS rises with sedation)")
        if self.rass_high > self.rass_medium:
            raise ValueError("rass_high must not be above rass_medium (RASS falls with sedation)")
        return self


class ObservationConfig(Strict):
    """When an observation (sedation score) is due; a reminder is shown when due and sounds
    (low priority) only once it is overdue by ``grace_s``."""

    first_hour_interval_s: Annotated[Float, Field(gt=0, le=14400)]
    interval_s: Annotated[Float, Field(gt=0, le=14400)]
    first_phase_s: Annotated[Float, Field(ge=0, le=86400)]
    after_rate_change_s: Annotated[Float, Field(gt=0, le=14400)]
    after_stop_s: Annotated[Float, Field(gt=0, le=14400)]
    grace_s: Annotated[Float, Field(ge=0, le=14400)]


class DischargeConfig(Strict):
    """Discharge criteria (monitord.discharge) and the controlled-substance record tolerance."""

    min_observation_after_stop_s: Annotated[Float, Field(ge=0, le=86400)]
    vitals_band_pct: Annotated[Float, Field(gt=0, le=100)]
    min_score: Annotated[Int, Field(ge=0, le=10)]
    record_tolerance_mg: Annotated[Float, Field(ge=0, le=100)]


class ChecklistItem(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    text: str = Field(min_length=1)
    # contraindication: "yes" needs a physician override with a reason; prompt: a test to consider.
    kind: Literal["contraindication", "prompt"]
    source: str = Field(min_length=3)
    enabled: Bool = True


class CourseConfig(Strict):
    min_total_mg: Annotated[Float, Field(gt=0, le=10000)]
    min_duration_h: Annotated[Float, Field(gt=0, le=168)]
    treatments_per_year_review: Annotated[Int, Field(gt=0, le=366)]
    treatments_per_year_max: Annotated[Int, Field(gt=0, le=366)]
    # Pain reduction at the end of the session (last score after the stop vs last before the
    # start) that the registry reports per treatment. Not a "positive response": the guideline's
    # (lines 1606-1616) needs relief sustained over weeks with a functional measure.
    response_reduction_pct: Annotated[Float, Field(gt=0, le=100)] = 30.0


class AlarmConfig(Strict):
    # IEC 60601-1-8: a disclosed pause, "commonly 2 min" (alarm-defaults.md s1); a pause of more
    # than 10 min is audio off, which monitord does not offer.
    audio_pause_s: Annotated[Float, Field(gt=0, le=600)]
    escalate_after_s: dict[Priority, Annotated[Float, Field(gt=0, le=3600)]]
    latching: list[Annotated[str, Field(min_length=1)]]
    device_alarm_priority: dict[str, Priority]
    device_alarm_delay_s: dict[str, ConditionDelay]
    # After a restart, restored alarms are held this long before their inputs can clear them.
    restore_hold_s: Annotated[Float, Field(ge=0, le=300)]


class SerialPort(Strict):
    port: OsText
    # 50 baud is the lowest standard rate; 4 Mbaud is beyond any USB serial adapter's.
    baudrate: Annotated[Int, Field(ge=50, le=4_000_000)] = 19200
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rtscts: Bool = False  # hardware flow control (the Datex S/5 interface uses RTS/CTS)


# Device polling: below 10 ms a driver would only load the bus and the CPU (monitors send at
# most a few frames a second); above a minute vitals would be stale before they arrive.
PollInterval = Annotated[Float, Field(ge=0.01, le=60)]
# No valid reply for this long: the device is "lost" (technical alarm). Ten minutes of silence
# without an alarm would be an unmonitored patient.
DeviceTimeout = Annotated[Float, Field(ge=0.1, le=600)]


class PumpDevice(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)] = "pump"
    driver: Literal["modbus", "ne500"]
    serial: SerialPort
    poll_interval_s: PollInterval = 1.0
    timeout_s: DeviceTimeout = 10.0
    modbus_unit: Annotated[Int, Field(ge=1, le=247)] = 1
    register_map: OsText | None = None  # path; default map shipped in config/pump-map.toml
    ne500_address: Annotated[Int, Field(ge=0, le=99)] = 0
    ne500_safe_mode: Bool = False  # the NE-500 "safe mode" framing with CRC-16
    allow_stop_commands: Bool = False
    # NE-500 safe mode only: the pump's own communications watchdog (SAF<n>, manual 8.3.3). The
    # pump stops itself when it hears no valid packet for this long, so a daemon that dies stops
    # the infusion. A clinical policy (no monitoring, no drug) for the site to choose: 0 = off.
    comm_watchdog_s: Annotated[Int, Field(ge=0, le=255)] = 0

    @model_validator(mode="after")
    def _watchdog_needs_ne500_safe_mode(self) -> PumpDevice:
        if self.comm_watchdog_s:
            if self.driver != "ne500" or not self.ne500_safe_mode:
                raise ValueError("comm_watchdog_s needs driver = \"ne500\" with ne500_safe_mode = true")
            if self.comm_watchdog_s < 3 * self.poll_interval_s:
                raise ValueError("comm_watchdog_s must be at least 3 poll intervals (the pump would stop between polls)")
        return self


class MonitorDevice(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)] = "monitor"
    driver: Literal["datex", "intellivue"]
    serial: SerialPort
    poll_interval_s: PollInterval = 5.0
    timeout_s: DeviceTimeout = 15.0
    # "auto": a capnograph counts as connected once the monitor has sent a valid EtCO2.
    capnograph: Literal["auto"] | Bool = "auto"
    # The vitals this bed takes from the monitor; unset: every vital it sends.
    provides: Annotated[list[Vital], Field(min_length=1, max_length=len(Vital))] | None = None

    @model_validator(mode="before")
    @classmethod
    def _intellivue_baudrate(cls, data: Any) -> Any:
        # The IntelliVue MIB/RS232 port runs at 115200 baud (docs/devices.md, "Philips IntelliVue");
        # the serial default (19200) is the Datex interface's.
        if isinstance(data, dict) and data.get("driver") == "intellivue":
            port = data.get("serial")
            if isinstance(port, dict) and "baudrate" not in port:
                return {**data, "serial": {**port, "baudrate": 115200}}
        return data


class OximeterSerial(SerialPort):
    # Masimo Rad-series and Radical serial output: 9600 baud, 8N1, no handshaking (docs/devices.md).
    baudrate: Annotated[Int, Field(ge=50, le=4_000_000)] = 9600


# What a standalone pulse oximeter measures (monitord takes no other vital from it).
OXIMETER_VITALS = (Vital.SPO2, Vital.PULSE)


class OximeterDevice(Strict):
    """A standalone pulse oximeter (docs/devices.md, "Pulse oximeter")."""

    name: Annotated[str, Field(min_length=1, max_length=64)] = "oximeter"
    driver: Literal["masimo"]
    serial: OximeterSerial
    poll_interval_s: PollInterval = 1.0  # how often the driver checks the port; lines are read as they come
    # It sends a line a second: five missing lines are a lost device.
    timeout_s: DeviceTimeout = 5.0
    # The vitals this bed takes from the oximeter: SpO2 and/or pulse rate.
    provides: Annotated[list[Vital], Field(min_length=1, max_length=len(OXIMETER_VITALS))] = \
        Field(default_factory=lambda: list(OXIMETER_VITALS))

    @field_validator("provides")
    @classmethod
    def _measured(cls, value: list[Vital]) -> list[Vital]:
        other = [v.value for v in value if v not in OXIMETER_VITALS]
        if other or len(set(value)) != len(value):
            raise ValueError(f"an oximeter provides {', '.join(v.value for v in OXIMETER_VITALS)}, each once"
                             + (f" (not {', '.join(other)})" if other else ""))
        return value


class DevicesConfig(Strict):
    pump: PumpDevice | None = None
    monitor: MonitorDevice | None = None
    oximeter: OximeterDevice | None = None
    # Where two devices provide the same vital: their names, the preferred first, e.g.
    # spo2 = ["oximeter", "monitor"]. A vital not listed takes the oximeter before the monitor.
    precedence: dict[Vital, Annotated[list[str], Field(min_length=1, max_length=8)]] = Field(default_factory=dict)
    # A preferred device back from a loss (link or silence) takes its vitals back only after it has
    # delivered this long, so a loose connector does not switch the source on every frame (site default).
    source_hold_s: Annotated[Float, Field(ge=0, le=60)] = 5.0
    # Where no ECG heart rate is usable (leads off, monitor lost, no device gives one), HR is taken
    # from the pulse rate in use (SpO2 pleth: oximeter or monitor), shown as "<device>:pulse".
    hr_from_pulse: Bool = True

    def for_role(self, role: DeviceRole) -> PumpDevice | MonitorDevice | OximeterDevice | None:
        """The configured device of ``role``."""
        return {DeviceRole.PUMP: self.pump, DeviceRole.MONITOR: self.monitor, DeviceRole.OXIMETER: self.oximeter}[role]

    def vital_devices(self) -> Mapping[str, frozenset[Vital]]:
        """The configured vital sources, dedicated devices first: device name -> vitals it provides."""
        return self.vital_device_map

    @cached_property
    def vital_device_map(self) -> Mapping[str, frozenset[Vital]]:
        # Computed once: the rules ask for it many times a second.
        out: dict[str, frozenset[Vital]] = {}
        if self.oximeter is not None:
            out[self.oximeter.name] = frozenset(self.oximeter.provides)
        if self.monitor is not None:
            out[self.monitor.name] = frozenset(self.monitor.provides or Vital)
        return MappingProxyType(out)

    @model_validator(mode="after")
    def _sources(self) -> DevicesConfig:
        names = [d.name for d in (self.pump, self.monitor, self.oximeter) if d is not None]
        if len(set(names)) != len(names):
            raise ValueError(f"device names must differ (names: {', '.join(names)})")
        provides = self.vital_devices()
        for vital, order in self.precedence.items():
            able = [n for n, vs in provides.items() if vital in vs]
            wrong = [n for n in order if n not in able]
            if wrong or len(set(order)) != len(order) or set(order) != set(able):
                raise ValueError(f"precedence.{vital.value} = {order}: list each device that provides "
                                 f"{vital.value} once ({', '.join(able) or 'none configured'})")
        return self


class StoreConfig(Strict):
    url: OsText | None = None  # None: SQLite file in state_dir
    state_dir: OsText = "/var/lib/monitord"
    # Raw readings kept at most a year: the minute trends and alarms stay for good anyway.
    raw_retention_h: Annotated[Float, Field(gt=0, le=8784)] = 24.0
    trend_interval_s: Annotated[Float, Field(ge=1, le=3600)] = 60.0
    batch_max: Annotated[Int, Field(ge=1, le=100_000)] = 500
    # How long a committed event may wait for the writer. 10 ms is below one SQLite commit on an
    # SD card (nothing gained below it); above 5 s a crash loses seconds of record and the store
    # alarm comes late. inf once stopped the writer thread: nothing stored, nothing alarmed.
    # Default 1 s: a pump and a monitor at 1 Hz share one commit (one fsync) a second. Alarm
    # transitions and nurse entries never wait for it.
    flush_interval_s: Annotated[Float, Field(ge=0.01, le=5)] = 1.0

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        return value


class TLSConfig(Strict):
    ca_file: OsText
    cert_file: OsText | None = None
    key_file: OsText | None = None


class MqttConfig(Strict):
    enabled: Bool = True
    host: Annotated[str, Field(min_length=1, max_length=253)] = "127.0.0.1"
    port: Annotated[Int, Field(gt=0, lt=65536)] = 1883
    topic_root: Annotated[str, Field(min_length=1, pattern=r"^[^#+\x00]+$")] = "monitord/v1"
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: TLSConfig | None = None
    # The broker declares the bed offline after 1.5 x keepalive: beyond 10 min a dead bed would
    # look alive to the central station for a quarter of an hour.
    keepalive_s: Annotated[Int, Field(ge=1, le=600)] = 10
    accept_ack: Bool = False
    ack_stations: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    # Delivery receipts (docs/mqtt.md): with expect_receipts on, a HIGH alarm that no central
    # station has confirmed within receipt_timeout_s raises tech.central_unconfirmed at the bedside,
    # so a silent central is never assumed to be watching. 30 s: a site default (two broker
    # keepalives and a station's refresh); off where no central station watches the bed.
    expect_receipts: Bool = False
    receipt_timeout_s: Annotated[Float, Field(ge=5.0, le=600.0)] = 30.0


class DashboardConfig(Strict):
    socket: OsText = "/run/monitord/dashboard.sock"


class WatchdogConfig(Strict):
    # The rule loop's tick: time-based alarms (condition delays, apnoea, silence) fire at most one
    # tick late. Below 10 ms the loop only burns CPU (an idle tick costs ~15 us, readings arrive at
    # 1 Hz); 1e-9 once held a core at 100 %. Above 2 s alarms come late, and the unit's
    # WatchdogSec=20s must span at least ten ticks (tests/deploy/test_units.py).
    tick_s: Annotated[Float, Field(ge=0.01, le=2.0)] = 1.0


class InterlockConfig(Strict):
    """The opt-in pump stop on respiratory depression (monitord/interlock.py, docs/interlock.md)."""

    enabled: Bool = False
    action: Literal["stop", "pause"] = "stop"
    triggers: list[str] = Field(default_factory=list)  # rule ids; an active alarm of any of them stops the pump
    confirm_s: Annotated[Float, Field(ge=1.0, le=60.0)] = 10.0  # the pump's own report must show it stopped within this
    retries: Annotated[Int, Field(ge=0, le=5)] = 2  # commands resent before "did not stop" is raised


class Config(Strict):
    bed: BedConfig
    patient_limits: PatientLimits
    ketamine: DrugEntry
    vitals: VitalsConfig
    sedation: SedationConfig
    observations: ObservationConfig
    discharge: DischargeConfig
    course: CourseConfig
    pk: PkConfig
    alarms: AlarmConfig
    checklist: list[ChecklistItem]
    devices: DevicesConfig = DevicesConfig()
    store: StoreConfig = StoreConfig()
    mqtt: MqttConfig = MqttConfig()
    dashboard: DashboardConfig = DashboardConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    interlock: InterlockConfig = InterlockConfig()

    _notes: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _unique_checklist(self) -> Config:
        ids = [item.id for item in self.checklist]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate checklist ids: {sorted(dup)}")
        return self

    @model_validator(mode="after")
    def _interlock_needs_a_pump_that_may_be_stopped(self) -> Config:
        pump = self.devices.pump
        if self.interlock.enabled and (pump is None or not pump.allow_stop_commands):
            raise ValueError("interlock.enabled needs a pump with allow_stop_commands = true")
        return self

    @property
    def notes(self) -> tuple[str, ...]:
        """What the site changed in the clinical sections, and every shipped entry it disabled."""
        return self._notes

    def dose_thresholds(self, elderly_or_comorbid: bool) -> DoseThresholds:
        return self.ketamine.dose_elderly_or_comorbid if elderly_or_comorbid else self.ketamine.dose


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and why."""


# -- validation -------------------------------------------------------------------------------


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """``vitals.limits[hr_high].above`` rather than ``vitals.limits.6.above``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and isinstance(data, list):
            item = data[part] if 0 <= part < len(data) else None
            ident = item.get("id") if isinstance(item, dict) else None
            out += f"[{ident}]" if isinstance(ident, str) else f"[{part}]"
            data = item
        else:
            out += f".{part}" if out else str(part)
            data = data.get(part) if isinstance(data, dict) else None
    return out or "(top level)"


def _describe(err: dict[str, Any], data: Any) -> str:
    key = _where(tuple(err["loc"]), data)
    value = err.get("input")
    shown = "a table" if isinstance(value, dict) else repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    allowed = err["msg"]
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        allowed = f"expected {ctx['expected']}"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {shown}); check its spelling"
    if err["type"] == "missing":
        return f"{key}: required, missing"
    if err["type"] in ("value_error", "assertion_error"):
        return f"{key}: {allowed.removeprefix('Value error, ')}"
    return f"{key} = {shown}: {allowed}"


def parse_config(data: dict[str, Any], origin: str = "<config>") -> Config:
    """Validate merged data; entries with ``enabled = false`` are dropped from the result."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, data) for e in exc.errors()]  # type: ignore[arg-type]
        raise ConfigError(f"{origin}: invalid configuration\n  " + "\n  ".join(lines)) from None
    vitals = config.vitals.model_copy(update={"limits": [lim for lim in config.vitals.limits if lim.enabled]})
    return config.model_copy(update={"vitals": vitals, "checklist": [c for c in config.checklist if c.enabled]})


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{path}: not usable: nested too deeply") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load the shipped defaults, then the site file over them, then ``overrides``."""
    defaults = read_toml(DEFAULTS_PATH)
    data = defaults
    origin = str(DEFAULTS_PATH)
    layers = []
    if path is not None:
        origin = str(path)
        layers.append(read_toml(Path(path)))
    if overrides:
        layers.append(overrides)
    try:
        for layer in layers:
            data = merge(data, layer)
    except MergeError as exc:
        raise ConfigError(f"{origin}: invalid configuration\n  {exc}") from None
    config = parse_config(data, origin)
    _check_referenced_files(config, origin)
    config._notes = tuple(describe_changes(defaults, data))
    return config


def _check_referenced_files(config: Config, origin: str) -> None:
    """Files the configuration names and a device needs at start: checked here, so that
    check-config and start-up refuse them alike."""
    pump = config.devices.pump
    if pump is not None and pump.driver == "modbus" and pump.register_map is not None:
        from monitord.drivers.pump_map import load_map

        try:
            load_map(pump.register_map)
        except Exception as exc:
            raise ConfigError(f"{origin}: invalid configuration\n  devices.pump.register_map: {exc}") from None


def load_or_report(path: str | Path | None) -> Config | None:
    """``load_config`` for a command line: on error, print the message to stderr and return None."""
    from monitord.logs import report_error

    try:
        return load_config(path)
    except ConfigError as exc:
        report_error(str(exc))
        return None
