"""Clinical scenarios: a course on a timeline, played through the engine on a fake clock.

A scenario file (TOML, see ``docs/scenarios.md`` and ``scenarios/``) describes the patient,
vitals trajectories, pump programming and events, nurse entries, device faults and the alarm
events expected. ``Course`` answers "what does each device show at time t" and is shared
with the device simulators, so the same file drives the in-process runner here and the
simulators on real serial lines. ``run_scenario`` plays it through the engine and checks the
expectations.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import random
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitord import readings as r
from monitord.clock import FakeClock
from monitord.config import Config, load_config, merge
from monitord.engine import Engine
from monitord.errors import Refused
from monitord.events import Event, EventKind

ACTOR = "rn-sim"
CONTINUOUS = (r.Vital.HR, r.Vital.PULSE, r.Vital.SPO2, r.Vital.RR, r.Vital.ETCO2, r.Vital.TEMP)
DEFAULT_START = {"hr": 72, "pulse": 72, "spo2": 98, "rr": 14, "etco2": 38, "temp": 36.8, "sbp": 122, "dbp": 76, "map": 91}
DEVICE_STEPS = {"set", "ramp", "artefact", "bad_value", "pump", "pump_alarm", "monitor_alarm", "oximeter_alarm", "fault",
                "cuff"}
# Steps the runner itself carries out: ``restart`` checkpoints the engine, drops it and restores
# a new one from the checkpoint after ``downtime`` seconds with no device data (a daemon restart).
RUNNER_STEPS = {"restart"}
DEVICE_CONFIG = {
    "pump": {"driver": "modbus", "serial": {"port": "sim"}},
    "monitor": {"driver": "datex", "serial": {"port": "sim"}},
}
# Added where the scenario has an ``[oximeter]`` table (a standalone pulse oximeter at the bed).
OXIMETER_CONFIG = {"driver": "masimo", "serial": {"port": "sim"}}
OXIMETER_VITALS = (r.Vital.SPO2, r.Vital.PULSE)
# Oximeter alarms that blank its values (dashes, marked invalid), as on the wire.
OXIMETER_BLANKING = frozenset({r.DeviceAlarmCode.PROBE_OFF, r.DeviceAlarmCode.SENSOR_OFF})


class ScenarioError(ValueError):
    """A scenario file that cannot be played; the message names the file and step."""


@dataclass
class Step:
    at_s: float
    action: str
    args: dict[str, Any]
    expect_refused: bool = False


@dataclass
class Expectation:
    rule: str
    transition: str = "raised"
    after_s: float | None = None
    before_s: float | None = None
    count: int | None = None  # None: at least once; 0: never
    priority: list[str] | None = None
    message: str | None = None  # a pattern (* and ?) the alarm's message must match

    def describe(self) -> str:
        win = ""
        if self.after_s is not None or self.before_s is not None:
            win = f" between {self.after_s or 0:g} s and {self.before_s if self.before_s is not None else 'end'} s"
        n = "at least once" if self.count is None else f"exactly {self.count} time(s)"
        pr = f" with priority in {self.priority}" if self.priority else ""
        msg = f" saying {self.message!r}" if self.message else ""
        return f"{self.rule} {self.transition}{pr}{msg} {n}{win}"


@dataclass
class SourceExpectation:
    """A ``vital_source`` system event: ``vital`` switched to ``source`` (from ``previous``; both
    patterns with * and ?)."""

    vital: str
    source: str
    previous: str | None = None
    after_s: float | None = None
    before_s: float | None = None
    count: int | None = None  # None: at least once; 0: never

    def describe(self) -> str:
        win = ""
        if self.after_s is not None or self.before_s is not None:
            win = f" between {self.after_s or 0:g} s and {self.before_s if self.before_s is not None else 'end'} s"
        n = "at least once" if self.count is None else f"exactly {self.count} time(s)"
        was = f" from {self.previous}" if self.previous else ""
        return f"{self.vital} switched to {self.source}{was} {n}{win}"


@dataclass
class OximeterPlan:
    """A standalone pulse oximeter on the patient: it shows the course's SpO2 and pulse rate (its
    own probe: ``offset`` added, its own noise), every ``period_s``."""

    period_s: float = 1.0
    offset: dict[r.Vital, float] = field(default_factory=dict)


@dataclass
class Ramp:
    vital: r.Vital
    start_s: float
    over_s: float
    to: float


@dataclass
class Fault:
    device: str  # "pump" | "monitor" | "oximeter"
    kind: str  # unplug | silent | garble | bad_checksum | partial | slow
    start_s: float
    duration_s: float

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s


@dataclass
class PumpProgram:
    state: r.PumpState = r.PumpState.STOPPED
    rate_ml_h: float = 0.0
    drug: str | None = "ketamine"
    concentration_mg_ml: float | None = None
    syringe_ml: float | None = 50.0
    bolus_ml: float | None = None
    volume_infused_ml: float = 0.0
    bolus_rate_ml_h: float = 300.0  # as simulators.pump_model: a bolus runs at this rate, then the pump resumes
    bolus_left_ml: float = 0.0
    report_bolus_rate: bool = False  # some pumps report the bolus rate as their rate during a bolus
    alarms: frozenset[r.DeviceAlarmCode] = frozenset()


@dataclass
class Scenario:
    name: str
    description: str
    path: Path | None
    duration_s: float
    seed: int
    config_overrides: dict[str, Any]
    monitor_period_s: float
    nibp_cycle_s: float
    pump_period_s: float
    start: dict[r.Vital, float]
    noise: dict[r.Vital, float]
    pump: PumpProgram
    steps: list[Step]
    expectations: list[Expectation]
    oximeter: OximeterPlan | None = None
    source_expectations: list[SourceExpectation] = field(default_factory=list)

    def config(self, site_file: str | Path | None = None) -> Config:
        devices: dict[str, Any] = dict(DEVICE_CONFIG)
        if self.oximeter is not None:
            devices["oximeter"] = OXIMETER_CONFIG
        over = merge({"devices": devices}, self.config_overrides)
        return load_config(site_file, overrides=over)


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)min)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def _seconds(value: Any, where: str) -> float:
    """Seconds from a number or a duration like '90s', '5min', '2h', '4h2min'."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mi * 60 + s
    raise ScenarioError(f"{where}: time {value!r} is not a number of seconds or like '90s', '5min', '2h', '4h2min'")


def parse_scenario(data: dict[str, Any], path: Path | None = None) -> Scenario:
    origin = str(path or "<scenario>")
    try:
        mon = data.get("monitor", {})
        pump = data.get("pump", {})
        start = {r.Vital(k): float(v) for k, v in (DEFAULT_START | mon.get("start", {})).items()}
        noise = {r.Vital(k): float(v) for k, v in mon.get("noise", {}).items()}
        steps = []
        for i, raw in enumerate(data.get("step", [])):
            raw = dict(raw)
            at = _seconds(raw.pop("at", 0), f"{origin} step {i + 1}")
            refused = bool(raw.pop("expect_refused", False))
            if len(raw) != 1:
                raise ScenarioError(f"{origin} step {i + 1}: give exactly one action besides 'at', got {sorted(raw)}")
            (action, args), = raw.items()
            if action not in ACTIONS and action not in DEVICE_STEPS and action not in RUNNER_STEPS:
                raise ScenarioError(f"{origin} step {i + 1}: unknown action '{action}'")
            steps.append(Step(at, action, args if isinstance(args, dict) else {}, refused))
        steps.sort(key=lambda s: s.at_s)
        expectations = []
        for raw in data.get("expect", []):
            raw = dict(raw)
            expectations.append(
                Expectation(
                    rule=raw.pop("rule"),
                    transition=raw.pop("transition", "raised"),
                    after_s=_seconds(raw.pop("after"), origin) if "after" in raw else None,
                    before_s=_seconds(raw.pop("before"), origin) if "before" in raw else None,
                    count=raw.pop("count", None),
                    priority=raw.pop("priority", None),
                    message=raw.pop("message", None),
                )
            )
            if raw:
                raise ScenarioError(f"{origin}: unknown expectation keys {sorted(raw)}")
        source_expectations = []
        for raw in data.get("expect_source", []):
            raw = dict(raw)
            source_expectations.append(SourceExpectation(
                vital=r.Vital(raw.pop("vital")).value,
                source=str(raw.pop("source")),
                previous=raw.pop("previous", None),
                after_s=_seconds(raw.pop("after"), origin) if "after" in raw else None,
                before_s=_seconds(raw.pop("before"), origin) if "before" in raw else None,
                count=raw.pop("count", None),
            ))
            if raw:
                raise ScenarioError(f"{origin}: unknown expect_source keys {sorted(raw)}")
        oximeter = None
        if "oximeter" in data:
            ox = dict(data["oximeter"])
            oximeter = OximeterPlan(period_s=_seconds(ox.pop("period", 1), origin),
                                    offset={r.Vital(k): float(v) for k, v in ox.pop("offset", {}).items()})
            wrong = [v.value for v in oximeter.offset if v not in OXIMETER_VITALS]
            if ox or wrong:
                raise ScenarioError(f"{origin}: [oximeter] takes 'period' and 'offset' (spo2, pulse)"
                                    + (f"; not {sorted(ox)}" if ox else "") + (f"; not offset {wrong}" if wrong else ""))
        return Scenario(
            name=data["name"],
            description=data.get("description", ""),
            path=path,
            duration_s=_seconds(data["duration"], origin),
            seed=int(data.get("seed", 1)),
            config_overrides=data.get("config", {}),
            monitor_period_s=_seconds(mon.get("period", 1), origin),
            nibp_cycle_s=_seconds(mon.get("nibp_cycle", 300), origin),
            pump_period_s=_seconds(pump.get("period", 1), origin),
            start=start,
            noise=noise,
            pump=PumpProgram(
                drug=pump.get("drug", "ketamine"),
                concentration_mg_ml=pump.get("concentration_mg_ml"),
                syringe_ml=pump.get("syringe_ml", 50.0),
            ),
            steps=steps,
            expectations=expectations,
            oximeter=oximeter,
            source_expectations=source_expectations,
        )
    except KeyError as exc:
        raise ScenarioError(f"{origin}: missing key {exc.args[0]!r} (a scenario needs at least 'name' and "
                            "'duration'; see docs/scenarios.md)") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{origin}: {type(exc).__name__}: {exc}") from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return parse_scenario(tomllib.load(fh), path)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None


class Course:
    """What each simulated device shows at scenario time ``t`` (seconds from the start).

    Device-side steps (vitals, pump programming, device alarms, faults) are applied in time
    order as ``advance(t)`` passes them; nurse and session steps are returned to the caller,
    which submits them to the engine (in-process) or the daemon (over the dashboard link).
    Noise is deterministic for a given seed, so runs repeat exactly.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.t = 0.0
        self._next = 0
        self.level = dict(scenario.start)
        self.ramps: list[Ramp] = []
        self.artefacts: list[tuple[r.Vital, float, float, float]] = []  # vital, value, start, end
        self.bad_values: dict[r.Vital, float] = {}
        self.pump = PumpProgram(**vars(scenario.pump))
        self.monitor_alarms: frozenset[r.DeviceAlarmCode] = frozenset()
        self.oximeter_alarms: frozenset[r.DeviceAlarmCode] = frozenset()
        self.faults: list[Fault] = []
        self.nibp_cycle_s = scenario.nibp_cycle_s
        self._rng = random.Random(scenario.seed)
        self._ox_rng = random.Random(scenario.seed + 1)  # its own noise: the monitor's numbers stay as they were

    def advance(self, t: float) -> list[Step]:
        """Move to time ``t``; apply device steps due; return session/nurse steps due."""
        p = self.pump
        if p.state is r.PumpState.BOLUS:
            given = min(p.bolus_left_ml, p.bolus_rate_ml_h * (t - self.t) / 3600)
            p.volume_infused_ml += given
            p.bolus_left_ml -= given
            if p.bolus_left_ml <= 1e-9:
                p.state, p.bolus_ml = r.PumpState.RUNNING, 0.0
        elif p.state is r.PumpState.RUNNING:
            p.volume_infused_ml += p.rate_ml_h * (t - self.t) / 3600
        self.t = t
        due = []
        steps = self.scenario.steps
        while self._next < len(steps) and steps[self._next].at_s <= t:
            step = steps[self._next]
            self._next += 1
            if step.action in DEVICE_STEPS:
                self._apply_device(step)
            else:
                due.append(step)
        return due

    def _apply_device(self, step: Step) -> None:
        a, t = step.args, step.at_s
        if step.action == "set":
            for k, v in a.items():
                vital = r.Vital(k)
                self.level[vital] = self._value_now(vital, t)
                self.ramps = [rp for rp in self.ramps if rp.vital is not vital]
                self.level[vital] = float(v)
        elif step.action == "ramp":
            vital = r.Vital(a["vital"])
            self.level[vital] = self._value_now(vital, t)
            self.ramps = [rp for rp in self.ramps if rp.vital is not vital]
            self.ramps.append(Ramp(vital, t, _seconds(a["over"], "ramp"), float(a["to"])))
        elif step.action == "artefact":
            dur = _seconds(a.get("duration", 1), "artefact")
            self.artefacts.append((r.Vital(a["vital"]), float(a["value"]), t, t + dur))
        elif step.action == "bad_value":
            self.bad_values[r.Vital(a["vital"])] = float(a["value"])
        elif step.action == "pump":
            for k, v in a.items():
                if k == "state":
                    self.pump.state = r.PumpState(v)
                    if self.pump.state is r.PumpState.BOLUS:
                        self.pump.bolus_left_ml = float(a.get("bolus_ml", self.pump.bolus_ml) or 0.0)
                elif k in ("rate_ml_h", "concentration_mg_ml", "syringe_ml", "bolus_ml", "drug", "bolus_rate_ml_h",
                           "report_bolus_rate"):
                    setattr(self.pump, k, v)
                else:
                    raise ScenarioError(f"pump step: unknown key '{k}'")
        elif step.action == "pump_alarm":
            self.pump.alarms = (self.pump.alarms | {r.DeviceAlarmCode(c) for c in a.get("set", [])}) - {
                r.DeviceAlarmCode(c) for c in a.get("clear", [])
            }
            if r.DeviceAlarmCode.EMPTY in self.pump.alarms or r.DeviceAlarmCode.OCCLUSION in self.pump.alarms:
                self.pump.state = r.PumpState.STOPPED
        elif step.action == "monitor_alarm":
            self.monitor_alarms = (self.monitor_alarms | {r.DeviceAlarmCode(c) for c in a.get("set", [])}) - {
                r.DeviceAlarmCode(c) for c in a.get("clear", [])
            }
        elif step.action == "oximeter_alarm":
            self.oximeter_alarms = (self.oximeter_alarms | {r.DeviceAlarmCode(c) for c in a.get("set", [])}) - {
                r.DeviceAlarmCode(c) for c in a.get("clear", [])
            }
        elif step.action == "cuff":
            # The NIBP cuff's cycle changes, or it stops measuring (taken off, tubing kinked).
            self.nibp_cycle_s = math.inf if a.get("stopped") else _seconds(a.get("cycle", self.nibp_cycle_s), "cuff")
        elif step.action == "fault":
            self.faults.append(Fault(a["device"], a["kind"], t, _seconds(a.get("duration", 10), "fault")))

    def _value_now(self, vital: r.Vital, t: float) -> float:
        base = self.level.get(vital, 0.0)
        for rp in self.ramps:
            if rp.vital is vital:
                frac = min(1.0, max(0.0, (t - rp.start_s) / rp.over_s)) if rp.over_s > 0 else 1.0
                return base + (rp.to - base) * frac
        return base

    def fault(self, device: str, t: float | None = None) -> str | None:
        """The fault active on ``device`` now, if any."""
        t = self.t if t is None else t
        for f in self.faults:
            if f.device == device and f.active(t):
                return f.kind
        return None

    def vitals_at(self, t: float | None = None) -> dict[r.Vital, float | None]:
        """Continuous vitals now, with noise, artefacts and one-frame bad values applied."""
        t = self.t if t is None else t
        out: dict[r.Vital, float | None] = {}
        for vital in CONTINUOUS:
            if vital not in self.level:
                continue
            v = self._value_now(vital, t)
            amp = self.scenario.noise.get(vital, 0.0)
            if amp:
                v += self._rng.uniform(-amp, amp)
            out[vital] = round(v, 1)
        if r.Vital.SPO2 in out and out[r.Vital.SPO2] is not None:
            out[r.Vital.SPO2] = min(100.0, out[r.Vital.SPO2] or 0.0)
        for vital, value, start, end in self.artefacts:
            if start <= t < end:
                out[vital] = value
        for vital, value in list(self.bad_values.items()):
            out[vital] = value
            del self.bad_values[vital]
        if r.DeviceAlarmCode.SENSOR_OFF in self.monitor_alarms:
            out[r.Vital.SPO2] = None
            out[r.Vital.PULSE] = None
        if r.DeviceAlarmCode.LEADS_OFF in self.monitor_alarms:
            out[r.Vital.HR] = None  # the ECG heart rate is not measured with the leads off
        return out

    def oximeter_at(self, t: float | None = None) -> dict[r.Vital, float | None]:
        """What the standalone oximeter shows now: the course's SpO2 and pulse rate with its
        ``offset`` and its own noise; dashes (None) while its probe is off or its sensor unusable."""
        t = self.t if t is None else t
        plan = self.scenario.oximeter or OximeterPlan()
        if self.oximeter_alarms & OXIMETER_BLANKING:
            return dict.fromkeys(OXIMETER_VITALS)
        out: dict[r.Vital, float | None] = {}
        for vital in OXIMETER_VITALS:
            v = self._value_now(vital, t) + plan.offset.get(vital, 0.0)
            amp = self.scenario.noise.get(vital, 0.0)
            if amp:
                v += self._ox_rng.uniform(-amp, amp)
            out[vital] = round(min(100.0, v) if vital is r.Vital.SPO2 else v)  # the oximeter shows whole numbers
        return out

    def nibp_due(self, last_t: float | None, t: float | None = None) -> bool:
        t = self.t if t is None else t
        return (last_t is None and math.isfinite(self.nibp_cycle_s)) or (
            last_t is not None and t - last_t >= self.nibp_cycle_s)

    def nibp_at(self, t: float | None = None) -> dict[r.Vital, float | None]:
        t = self.t if t is None else t
        return {v: round(self._value_now(v, t)) for v in (r.Vital.SBP, r.Vital.DBP, r.Vital.MAP) if v in self.level}


# -- the in-process runner -------------------------------------------------------------------


def _admit(a: dict[str, Any]) -> r.Input:
    prev = a.get("previous_weight_kg")
    return r.Admit(str(a["patient_id"]), float(a["weight_kg"]), int(a["age_years"]), a.get("actor", ACTOR),
                   elderly=a.get("elderly"), comorbid=bool(a.get("comorbid", False)),
                   previous_weight_kg=None if prev is None else float(prev), confirm=bool(a.get("confirm", False)))


def _order(a: dict[str, Any]) -> r.Input:
    planned = a.get("planned_duration_min")
    return r.SetOrder(a.get("drug", "ketamine"), float(a["concentration_mg_ml"]), float(a["rate_ml_h"]),
                      a.get("actor", ACTOR), float(a.get("bolus_mg", 0)), a.get("syringe_ml"),
                      planned_duration_min=None if planned is None else float(planned),
                      confirm=bool(a.get("confirm", False)))


# Each nurse or session step and the engine input it stands for; ``docs/scenarios.md`` lists them.
ACTIONS: dict[str, Any] = {
    "admit": _admit,
    "order": _order,
    "start": lambda a: r.StartInfusion(a.get("actor", ACTOR), confirm=bool(a.get("confirm", False))),
    "pause": lambda a: r.PauseInfusion(a.get("actor", ACTOR), a.get("reason", "")),
    "resume": lambda a: r.ResumeInfusion(a.get("actor", ACTOR)),
    "stop": lambda a: r.StopInfusion(a.get("actor", ACTOR), a.get("reason", "")),
    "discharge": lambda a: r.Discharge(a.get("actor", ACTOR), a.get("reason", "")),
    "discharge_score": lambda a: r.DischargeScore(a["scale"], {k: int(v) for k, v in a["items"].items()},
                                                  a.get("actor", ACTOR)),
    "escort": lambda a: r.EscortConfirmed(a.get("actor", ACTOR), a.get("name", "")),
    "baseline": lambda a: r.CaptureBaseline(a.get("actor", ACTOR)),
    "sedation": lambda a: r.SedationScore(r.SedationScale(a["scale"]), int(a["score"]), a.get("actor", ACTOR)),
    "pain": lambda a: r.PainScore(int(a["score"]), a.get("actor", ACTOR)),
    "effects": lambda a: r.PsychomimeticEffects(frozenset(r.Effect(e) for e in a.get("effects", [])),
                                                a.get("actor", ACTOR), severity=a.get("severity", "mild")),
    "rescue": lambda a: r.RescueMedication(a["drug"], float(a["dose_mg"]), a.get("route", "iv"), a.get("actor", ACTOR)),
    "manual_bolus": lambda a: r.ManualBolus(float(a["dose_mg"]), a.get("actor", ACTOR), a.get("route", "iv")),
    "ack": lambda a: r.Acknowledge(a["rule_id"], a.get("actor", ACTOR)),
    "audio_pause": lambda a: r.AudioPause(a.get("actor", ACTOR)),
    "reset": lambda a: r.ResetAlarm(a["rule_id"], a.get("actor", ACTOR)),
    "override": lambda a: r.Override(a["rule_id"], a.get("actor", "md-sim"), a.get("reason", "")),
    "checklist": lambda a: r.ChecklistAnswers({k: bool(v) for k, v in a["answers"].items()}, a.get("actor", ACTOR)),
    "confirm_weight": lambda a: r.ConfirmWeight(float(a["weight_kg"]), a.get("actor", ACTOR)),
    "treatments": lambda a: r.TreatmentCount(int(a["count"]),
                                             None if a.get("last_weight_kg") is None else float(a["last_weight_kg"])),
}


def step_input(step: Step) -> r.Input:
    """The engine input a session/nurse step stands for."""
    item: r.Input = ACTIONS[step.action](step.args)
    return item


@dataclass
class Result:
    scenario: Scenario
    events: list[Event]
    failures: list[str] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def alarm_events(self) -> list[Event]:
        return [e for e in self.events if e.kind is EventKind.ALARM]


def play(scenario: Scenario, config: Config | None = None) -> tuple[Engine, list[Event], list[str]]:
    """Run the scenario through an engine on a fake clock; returns engine, events, problems."""
    config = config or scenario.config()
    clock = FakeClock()
    engine = Engine(config, clock)
    events: list[Event] = []
    engine.subscribe(events.append)
    course = Course(scenario)
    problems: list[str] = []
    ox_plan = scenario.oximeter if config.devices.oximeter is not None else None
    dt = min(scenario.monitor_period_s, scenario.pump_period_s, *([ox_plan.period_s] if ox_plan else []))
    t = 0.0
    last_nibp: float | None = None
    next_mon = next_pump = next_ox = 0.0
    prev_pump_alarms: frozenset[r.DeviceAlarmCode] = frozenset()
    prev_mon_alarms: frozenset[r.DeviceAlarmCode] = frozenset()
    prev_ox_alarms: frozenset[r.DeviceAlarmCode] | None = None  # the oximeter reports its set on its first line
    mon = config.devices.monitor
    mon_name = mon.name if mon is not None else "monitor"
    mon_provides = set(mon.provides) if mon is not None and mon.provides else None  # e.g. a capnograph only
    down: tuple[dict[str, Any], float, float] | None = None  # checkpoint, down since, back at
    while t <= scenario.duration_s + 1e-9:
        if down is not None and t >= down[2] - 1e-9:
            engine = Engine(config, clock)
            engine.subscribe(events.append)
            engine.restore(down[0], downtime_s=t - down[1])
            down = None
            prev_pump_alarms = prev_mon_alarms = frozenset()  # drivers report afresh on reconnect
            prev_ox_alarms = None
        for step in course.advance(t):
            if step.action == "restart":
                down = (engine.checkpoint(), t, t + _seconds(step.args.get("downtime", 5), "restart"))
                continue
            if down is not None:
                problems.append(f"step at {step.at_s:g} s ({step.action}) falls while the daemon is down")
                continue
            try:
                engine.submit(step_input(step))
                if step.expect_refused:
                    problems.append(f"step at {step.at_s:g} s ({step.action}) was accepted but should be refused")
            except Refused as exc:
                if not step.expect_refused:
                    problems.append(f"step at {step.at_s:g} s ({step.action}) refused: {exc}")
        wall = clock.utc_now()
        if down is not None:  # the daemon is down: time passes, no device data reaches it
            t = round(t + dt, 6)
            clock.advance(dt)
            continue
        if t >= next_mon - 1e-9:
            next_mon += scenario.monitor_period_s
            if course.fault("monitor") is None:
                values = course.vitals_at()
                nibp_time = None
                if course.nibp_due(last_nibp):
                    last_nibp = t
                    values.update(course.nibp_at())
                    nibp_time = wall
                if mon_provides is not None:  # a device that measures only these sends only these
                    values = {k: v for k, v in values.items() if k in mon_provides}
                    nibp_time = nibp_time if mon_provides & r.NIBP_VITALS else None
                engine.submit(r.VitalsReading(mon_name, values, device_time=wall, nibp_time=nibp_time), evaluate=False)
                if course.monitor_alarms != prev_mon_alarms:
                    engine.submit(r.DeviceAlarm(mon_name, r.DeviceRole.MONITOR, course.monitor_alarms), evaluate=False)
                    prev_mon_alarms = course.monitor_alarms
        if ox_plan is not None and config.devices.oximeter is not None and t >= next_ox - 1e-9:
            next_ox += ox_plan.period_s
            if course.fault("oximeter") is None:
                ox_name = config.devices.oximeter.name
                values = course.oximeter_at()
                quality = r.Quality.INVALID if values[r.Vital.SPO2] is None else r.Quality.VALID
                engine.submit(r.VitalsReading(ox_name, values, quality), evaluate=False)
                if course.oximeter_alarms != prev_ox_alarms:
                    engine.submit(r.DeviceAlarm(ox_name, r.DeviceRole.OXIMETER, course.oximeter_alarms), evaluate=False)
                    prev_ox_alarms = course.oximeter_alarms
        if t >= next_pump - 1e-9:
            next_pump += scenario.pump_period_s
            if course.fault("pump") is None:
                p = course.pump
                rate = p.bolus_rate_ml_h if p.report_bolus_rate and p.state is r.PumpState.BOLUS else p.rate_ml_h
                engine.submit(
                    r.PumpReading("pump", p.state, rate_ml_h=rate, volume_infused_ml=round(p.volume_infused_ml, 4),
                                  syringe_ml=p.syringe_ml, drug=p.drug, concentration_mg_ml=p.concentration_mg_ml,
                                  bolus_ml=p.bolus_ml, device_time=wall),
                    evaluate=False,
                )
                if p.alarms != prev_pump_alarms:
                    engine.submit(r.DeviceAlarm("pump", r.DeviceRole.PUMP, p.alarms), evaluate=False)
                    prev_pump_alarms = p.alarms
        engine.tick()
        t = round(t + dt, 6)
        clock.advance(dt)
    return engine, events, problems


def check(scenario: Scenario, events: list[Event], start_mono: float = 1000.0) -> list[str]:
    """Compare alarm events with the scenario's expectations."""
    failures = []
    alarms = [e for e in events if e.kind is EventKind.ALARM]
    for exp in scenario.expectations:
        hits = []
        for e in alarms:
            if not fnmatch.fnmatchcase(e.data["rule_id"], exp.rule) or e.data["transition"] != exp.transition:
                continue
            if exp.priority and e.data["priority"] not in exp.priority:
                continue
            if exp.message and not fnmatch.fnmatchcase(e.data["message"], exp.message):
                continue
            at = e.mono - start_mono
            if exp.after_s is not None and at < exp.after_s:
                continue
            if exp.before_s is not None and at > exp.before_s:
                continue
            hits.append(e)
        ok = len(hits) >= 1 if exp.count is None else len(hits) == exp.count
        if not ok:
            seen = ", ".join(f"{e.data['rule_id']} {e.data['transition']} @{e.mono - start_mono:g}s" for e in hits[:5])
            failures.append(f"expected {exp.describe()}; got {len(hits)}" + (f" ({seen})" if seen else ""))
    switches = [e for e in events if e.kind is EventKind.SYSTEM and e.data.get("action") == "vital_source"]
    for sx in scenario.source_expectations:
        found = [e for e in switches if e.data["vital"] == sx.vital and fnmatch.fnmatchcase(e.data["source"], sx.source)
                 and (sx.previous is None or fnmatch.fnmatchcase(e.data["previous"], sx.previous))
                 and (sx.after_s is None or e.mono - start_mono >= sx.after_s)
                 and (sx.before_s is None or e.mono - start_mono <= sx.before_s)]
        if not (len(found) >= 1 if sx.count is None else len(found) == sx.count):
            seen = ", ".join(f"{e.data['message']} @{e.mono - start_mono:g}s" for e in switches[:5])
            failures.append(f"expected {sx.describe()}; got {len(found)}" + (f" (switches: {seen})" if seen else ""))
    return failures


def run_scenario(scenario: Scenario, config: Config | None = None) -> Result:
    engine, events, problems = play(scenario, config)
    return Result(scenario, events, problems + check(scenario, events), engine.snapshot())


# Shipped as package data; in a checkout monitord/scenarios links to the top-level scenarios/.
LIBRARY_DIR = Path(__file__).parent / "scenarios"


def library() -> list[Path]:
    """The scenario files shipped with monitord."""
    return sorted(LIBRARY_DIR.glob("*.toml"))


def find_scenario(name: str | Path) -> Path:
    """A scenario file: a path as given, else a name from the shipped library ('occlusion' or
    'occlusion.toml'). Raises ScenarioError naming what was looked for."""
    path = Path(name)
    if path.exists() or path.parent != Path("."):
        return path
    shipped = LIBRARY_DIR / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    if shipped.is_file():
        return shipped
    raise ScenarioError(f"{name}: no such file, and no scenario of that name in the shipped library "
                        f"({LIBRARY_DIR}; `monitord scenario --list` lists them)")


def scenario_files(names: list[str]) -> list[Path]:
    """Files to play: each name a file, a directory (its *.toml) or a library name; none given,
    the whole library."""
    if not names:
        return library()
    files: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise ScenarioError(f"{path}: no scenario files (*.toml) in this directory")
            files += found
        else:
            files.append(find_scenario(name))
    return files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="scenario files, directories of them, or names from the shipped library "
                        "(default: the whole library)")
    p.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    p.add_argument("--events", action="store_true", help="print every alarm event and source switch")
    p.add_argument("--burden", action="store_true",
                   help="alarm burden on generated realistic 4-hour courses (normal and planted events)")
    p.add_argument("--seeds", type=int, default=8, help="with --burden: seeds per course kind (default 8)")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "burden", False):
        from monitord import burden  # imports this module: load it only when asked

        return burden.main(args.seeds, events=args.events)
    if getattr(args, "list", False):
        for f in library():
            print(f.stem)
        return 0
    try:
        files = scenario_files(args.files)
    except ScenarioError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 2
    if not files:  # nothing played is not a pass
        print(f"ERROR no scenario files: give files, or check the shipped library ({LIBRARY_DIR})", file=sys.stderr)
        return 2
    failed = 0
    for f in files:
        try:
            result = run_scenario(load_scenario(f))
        except ScenarioError as exc:
            print(f"ERROR {exc}")
            failed += 1
            continue
        status = "PASS" if result.ok else "FAIL"
        print(f"{status} {f.name}: {result.scenario.name}")
        if args.events or not result.ok:
            for e in result.events:
                d = e.data
                t = e.mono - 1000.0
                stamp = f"    {math.floor(t / 60):4d}:{int(t % 60):02d}"
                if e.kind is EventKind.ALARM:
                    print(f"{stamp} {d['transition']:<18} {d['priority']:<8} {d['rule_id']:<28} {d['message']}")
                elif e.kind is EventKind.SYSTEM and d.get("action") == "vital_source":
                    print(f"{stamp} {'source':<18} {'':<8} {'vital_source.' + d['vital']:<28} {d['message']}")
        for msg in result.failures:
            print(f"    ! {msg}")
        failed += not result.ok
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    ns = argparse.ArgumentParser()
    add_arguments(ns)
    sys.exit(main(ns.parse_args()))
