"""Realistic 4-hour ketamine courses, generated from a seed, as scenario dicts.

A course: a patient (weight, age, baseline vitals vary by seed) is admitted, the checklist
answered, the order entered, a baseline taken and the infusion started. Vitals carry frame noise
(HR, SpO2 +-1-2 %), breath-to-breath variation (RR, EtCO2) and slow drift, and HR and BP rise
15-30 % over the first hour as ketamine is known to make them (guideline lines 1382-1386); NIBP
cycles every 5, 10 or 15 min. The nasal EtCO2 sampling line is displaced once for a minute or
two. Observations (sedation on RASS or POSS, pain, effects) follow the protocol's schedule
(every 15 min in the first hour, then 30 min, 15 min after a rate change and after Stop) at
irregular times, some a few minutes late. The rate is changed once; Stop comes at about 4 h,
then an observation and discharge. One patient in eight has mild effects and gets one rescue
dose. A course kind other than ``normal`` plants one event at a random time, with the rule that
must alarm, its priority and its maximum delay taken from the configuration.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from monitord.config import CareArea, Config, Priority, load_config
from monitord.rules import build_rules
from monitord.scenario import Scenario, parse_scenario

NORMAL = "normal"
PLANTED_KINDS = ("apnoea_25s", "spo2_86", "etco2_62", "sbp_190", "pump_10x", "wrong_concentration",
                 "pump_after_stop")
KINDS = (NORMAL, *PLANTED_KINDS)
RESCUE_EVERY = 8  # seed % 8 == 5: one patient in eight needs a rescue dose
MIN = 60
CONCENTRATION = 10.0  # mg/mL: 4 h of 0.5-0.8 mg/kg/h fits one 50 mL syringe (no syringe change)
SYRINGE = 50.0
DOSE_START = 0.5  # mg/kg/h: the floor of the chronic-pain range (guideline Table 6 line 1658), titrated up


@dataclass(frozen=True)
class Planted:
    """A dangerous event planted in a course and the alarm it must raise.

    ``onset_s`` is when the condition is present in every reading (for NIBP: None, the onset is
    the first measurement showing it, ``nibp_above``). The alarm is due within ``delay_s`` of it."""

    kind: str
    at_s: float
    rule: str
    priority: Priority
    delay_s: float
    delay_source: str
    what: str
    ends_s: float  # the event is over (breathing back, pump corrected, hold ended)
    onset_s: float | None = None
    nibp_above: float | None = None


@dataclass
class GeneratedCourse:
    seed: int
    kind: str
    data: dict[str, Any]
    patient: str
    planted: Planted | None = None
    steps_at: dict[str, float] = field(default_factory=dict)  # start, stop, discharge... (s)

    @property
    def duration_s(self) -> float:
        return float(self.data["duration"])

    @property
    def name(self) -> str:
        return self.data["name"]

    def scenario(self) -> Scenario:
        return parse_scenario(self.data)


class Track:
    """A piecewise-linear trajectory of one vital; two knots at the same time are a jump."""

    def __init__(self, v0: float) -> None:
        self.knots: list[tuple[float, float]] = [(0.0, v0)]

    def to(self, t: float, v: float) -> None:
        if t < self.knots[-1][0]:
            raise ValueError("knots must be in time order")
        self.knots.append((float(t), float(v)))

    def at(self, t: float) -> float:
        i = max(j for j, (tk, _) in enumerate(self.knots) if tk <= t)
        t0, v0 = self.knots[i]
        if i + 1 == len(self.knots):
            return v0
        t1, v1 = self.knots[i + 1]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def overlay(self, start: float, end: float, points: list[tuple[float, float]]) -> None:
        """Replace the trajectory between ``start`` and ``end`` with ``points``; it returns to
        its own course at ``end`` (a jump when the last point is at ``end``)."""
        before, after = self.at(start), self.at(end)
        self.knots = ([k for k in self.knots if k[0] < start] + [(start, before)] + points + [(end, after)]
                      + [k for k in self.knots if k[0] > end])

    def steps(self, *vitals: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (t0, v0), (t1, v1) in zip(self.knots, self.knots[1:], strict=False):
            if t1 == t0:
                out.append({"at": t0, "set": {v: round(v1, 1) for v in vitals}})
            elif round(v1, 1) != round(v0, 1):
                out += [{"at": t0, "ramp": {"vital": v, "to": round(v1, 1), "over": t1 - t0}} for v in vitals]
        return out


@dataclass
class _Patient:
    weight: float
    age: int
    elderly: bool
    scale: str
    hr: float
    sbp: float
    dbp: float
    spo2: float
    rr: float
    etco2: float
    hr_noise: float
    spo2_noise: float
    rise_hr: float
    rise_bp: float
    nibp_cycle_s: int
    rescue: bool


def _patient(rng: random.Random, seed: int, cfg: Config) -> _Patient:
    age = rng.randint(22, 80)
    sbp = rng.randint(105, 132)  # normotensive: poorly controlled hypertension is a contraindication (Table 5)
    return _Patient(
        weight=round(rng.uniform(50, 115), 1), age=age, elderly=age >= cfg.patient_limits.elderly_age_years,
        scale=rng.choice(("rass", "poss")), hr=rng.randint(58, 92), sbp=sbp, dbp=round(sbp * rng.uniform(0.58, 0.66)),
        spo2=rng.randint(95, 99), rr=rng.randint(12, 18), etco2=rng.randint(34, 42),
        hr_noise=rng.choice((2.0, 2.5, 3.0)), spo2_noise=rng.choice((1.0, 1.5, 2.0)),
        rise_hr=rng.uniform(0.15, 0.30), rise_bp=rng.uniform(0.15, 0.30),
        nibp_cycle_s=rng.choice((5, 10, 15)) * MIN, rescue=seed % RESCUE_EVERY == 5,
    )


def _map(sbp: float, dbp: float) -> float:
    return (sbp + 2 * dbp) / 3


def _haemo_track(rng: random.Random, base: float, rise: float, start: float, peak_s: float, stop: float,
                 settle: float, end: float, drift: float = 0.03) -> Track:
    """Baseline until Start, ``rise`` reached over ``peak_s``, slow drift, back near baseline after Stop."""
    tr = Track(base)
    tr.to(start, base)
    t = start
    while t < stop:
        t = min(stop, t + rng.randint(8, 15) * MIN)
        frac = min(1.0, (t - start) / peak_s)
        tr.to(t, base * (1 + rise * frac) * (1 + rng.uniform(-drift, drift)))
    tr.to(settle, base * (1 + rng.uniform(0.0, 0.06)))
    tr.to(end, tr.knots[-1][1])
    return tr


def _breath_track(rng: random.Random, base: float, spread: float, end: float, lo: float, hi: float) -> Track:
    """Breath-to-breath variation: a new value every 20-60 s around a slowly drifting level."""
    tr = Track(base)
    level, t = base, 0.0
    while t < end:
        t = min(end, t + rng.randint(20, 60))
        level = min(base + 2 * spread, max(base - 2 * spread, level + rng.uniform(-spread, spread) / 3))
        tr.to(t, min(hi, max(lo, level + rng.uniform(-spread, spread))))
    return tr


def _rate(dose: float, weight: float, conc: float) -> float:
    """mL/h for a dose, rounded up to the pump's 0.1 mL/h so the dose is not below the order."""
    return math.ceil(dose * weight / conc * 10 - 1e-9) / 10


def _late(rng: random.Random) -> float:
    """How late a nurse scores an observation (s): mostly on time, some minutes late, few early."""
    u = rng.random()
    if u < 0.1:
        return -rng.randint(1, 3) * MIN
    if u < 0.75:
        return rng.randint(0, 3 * MIN)
    return rng.randint(3 * MIN, 8 * MIN)


def _limit(cfg: Config, limit_id: str) -> tuple[float, str]:
    lim = next(lim for lim in cfg.vitals.limits if lim.id == limit_id)
    return lim.delay_s, f"[[vitals.limits]] {limit_id} delay_s"


def _rule_delay(cfg: Config, rule_id: str, key: str) -> tuple[float, str]:
    rule = next(r for r in build_rules(cfg) if r.id == rule_id)
    return rule.delay_s, key


def generate(seed: int, kind: str = NORMAL, config: Config | None = None) -> GeneratedCourse:
    """One course for ``seed``; the patient depends on the seed only, the planted event on both."""
    if kind not in KINDS:
        raise ValueError(f"unknown course kind '{kind}' (one of {', '.join(KINDS)})")
    cfg = config or load_config()
    rng = random.Random(f"patient-{seed}")
    p = _patient(rng, seed, cfg)
    area = CareArea.MONITORED if p.elderly else CareArea.OUTPATIENT  # elderly: the stricter threshold (Q6 line 1499)
    b = _Builder(rng, p, cfg)

    # Admission, checklist, order, baseline, Start.
    answers = {c.id: c.kind == "prompt" for c in cfg.checklist}
    b.add(0, "admit", {"patient_id": f"P-{10000 + seed}", "weight_kg": p.weight, "age_years": p.age})
    b.add(rng.randint(30, 90), "checklist", {"answers": answers})
    b.add(rng.randint(100, 150), "pain", {"score": rng.randint(5, 8)})
    b.order(rng.randint(160, 200), DOSE_START)
    baseline_at = rng.randint(240, 420)
    b.add(baseline_at, "baseline")
    start = baseline_at + rng.randint(60, 240)
    b.add(start, "pump", {"state": "running", "rate_ml_h": b.rate(DOSE_START)})
    b.pump_rates.append((start, b.rate(DOSE_START)))
    b.add(start + rng.randint(5, 30), "start")
    stop = start + 4 * 3600 + rng.randint(-2 * MIN, 3 * MIN)
    discharge = stop + rng.randint(35, 48) * MIN
    end = discharge + 2 * MIN
    at: dict[str, float] = {"start": start, "stop": stop, "discharge": discharge}

    # Titration; the rescue patient: mild effects, a rescue dose, then a lower rate.
    dose = rng.choice((0.6, 0.7, 0.8))
    at["rate_change"] = b.change_rate(start + rng.randint(30, 75) * MIN, dose)
    effects_at: dict[float, list[str]] = {}
    rescue_obs = None
    if p.rescue:
        later = [start + m * MIN for m in (60, 90, 120) if start + m * MIN > at["rate_change"] + 20 * MIN]
        rescue_obs = rng.choice(later)
        b.change_rate(rescue_obs + 6 * MIN, max(DOSE_START, dose - 0.2))
    elif rng.random() < 0.3:
        effects_at[start + rng.choice((45, 90, 150)) * MIN] = rng.sample(
            ["dizziness", "dissociation", "vivid_dreams", "blurred_vision"], rng.randint(1, 2))

    # Vitals.
    peak_s = rng.randint(30, 60) * MIN
    settle = stop + rng.randint(20, 28) * MIN
    tr = b.tracks
    tr["hr"] = _haemo_track(rng, p.hr, p.rise_hr, start, peak_s, stop, settle, end)
    tr["sbp"] = _haemo_track(rng, p.sbp, p.rise_bp, start, peak_s, stop, settle, end)
    dbp_ratio = rng.uniform(0.75, 1.0)  # diastolic rises a little less
    tr["dbp"] = Track(p.dbp)
    for t, v in tr["sbp"].knots[1:]:
        tr["dbp"].to(t, p.dbp * (1 + (v / p.sbp - 1) * dbp_ratio))
    tr["spo2"] = _breath_track(rng, p.spo2, 0.5, end, 90, 100)
    tr["rr"] = _breath_track(rng, p.rr, 1.0, end, 8, 30)
    tr["etco2"] = _breath_track(rng, p.etco2, 1.0, end, 25, 48)

    # One displaced nasal sampling line: EtCO2 reads near 0-10 while breaths are counted.
    line_at = rng.randint(start + 20 * MIN, stop - 20 * MIN)
    line_len, low = rng.randint(60, 120), rng.randint(3, 10)
    tr["etco2"].overlay(line_at, line_at + line_len, [(line_at, low), (line_at + line_len, low)])
    at["etco2_line"] = line_at

    planted = None
    if kind != NORMAL:
        prng = random.Random(f"plant-{kind}-{seed}")
        busy = [line_at, *(t for t, _ in b.pump_rates[1:])] + ([rescue_obs] if rescue_obs else [])
        t = prng.randint(start + 20 * MIN, stop - 25 * MIN)
        while any(abs(t - x) < 10 * MIN for x in busy):
            t = prng.randint(start + 20 * MIN, stop - 25 * MIN)
        planted = _plant(kind, stop if kind == "pump_after_stop" else t, prng, b)
        at["planted"] = planted.at_s

    # Stop: the pump first, then Stop recorded (pump_after_stop: the pump is left running).
    if kind != "pump_after_stop":
        b.add(stop - rng.randint(5, 40), "pump", {"state": "stopped"})
    b.add(stop, "stop", {"reason": "course complete"})
    b.add(stop + rng.randint(10, 60), "pain", {"score": rng.randint(1, 5)})

    # Observations on the protocol's schedule, each a little early or late.
    grid = [start + m * MIN for m in (15, 30, 45, 60, *range(90, 24 * 60, 30)) if start + m * MIN <= stop + 5 * MIN]
    nominal = set(grid) | {stop + 15 * MIN}
    for rc, _ in b.pump_rates[1:]:
        if not any(rc + 5 * MIN <= g <= rc + 20 * MIN for g in nominal):
            nominal.add(rc + 15 * MIN)
    if rescue_obs is not None:
        nominal.add(rescue_obs)
    current: list[str] = []
    for i, t_nom in enumerate(sorted(nominal)):
        t_obs = t_nom if t_nom == rescue_obs else t_nom + _late(rng)
        calm = t_obs > stop
        if p.scale == "rass":
            score = 0 if calm or rng.random() < 0.8 else -1
        else:
            score = 1 if calm or rng.random() < 0.75 else 2
        b.add(t_obs, "sedation", {"scale": p.scale, "score": score})
        if t_nom == rescue_obs:
            current = ["nausea"] if seed % 2 else ["dissociation", "dizziness"]
            drug, mg = ("ondansetron", 4.0) if seed % 2 else ("midazolam", 1.0)
            b.add(t_obs + 30, "effects", {"effects": current, "severity": "mild"})
            b.add(t_obs + rng.randint(2, 5) * MIN, "rescue", {"drug": drug, "dose_mg": mg})
            at["rescue"] = t_obs
        elif t_nom in effects_at:
            current = effects_at[t_nom]
            b.add(t_obs + 30, "effects", {"effects": current, "severity": "mild"})
        elif current:
            current = []
            b.add(t_obs + 30, "effects", {"effects": []})
        if i % 2 == 1 or t_obs > stop:
            b.add(t_obs + 40, "pain", {"score": rng.randint(2, 6)})

    # Discharge: score, escort, discharge.
    b.add(discharge - rng.randint(3, 6) * MIN, "discharge_score",
          {"scale": "padss", "items": {"vital_signs": 2, "activity": 2, "nausea_vomiting": 2, "pain": rng.randint(1, 2),
                                       "bleeding": 2}})
    b.add(discharge - rng.randint(1, 2) * MIN, "escort", {"name": "family member"})
    b.add(discharge, "discharge")

    tr["map"] = Track(_map(p.sbp, p.dbp))
    for t, s in tr["sbp"].knots[1:]:
        tr["map"].to(t, _map(s, tr["dbp"].at(t)))
    steps = b.steps + tr["hr"].steps("hr", "pulse")
    for name in ("sbp", "dbp", "map", "spo2", "rr", "etco2"):
        steps += tr[name].steps(name)
    steps.sort(key=lambda s: s["at"])

    who = (f"{p.age} y {p.weight:g} kg {'monitored' if area is CareArea.MONITORED else 'outpatient'}, "
           f"HR {p.hr:g} SBP {p.sbp:g} +{p.rise_hr * 100:.0f}/{p.rise_bp * 100:.0f} %, NIBP "
           f"{p.nibp_cycle_s // MIN} min, {p.scale.upper()}" + (", rescue" if p.rescue else ""))
    data: dict[str, Any] = {
        "name": f"{kind} #{seed}",
        "description": f"Generated 4-hour course ({kind}), seed {seed}: {who}",
        "duration": end,
        "seed": seed,
        "monitor": {
            "start": {"hr": p.hr, "pulse": p.hr, "sbp": p.sbp, "dbp": p.dbp, "map": round(_map(p.sbp, p.dbp), 1),
                      "spo2": p.spo2, "rr": p.rr, "etco2": p.etco2},
            "noise": {"hr": p.hr_noise, "pulse": p.hr_noise, "spo2": p.spo2_noise},
            "nibp_cycle": p.nibp_cycle_s,
        },
        "pump": {"concentration_mg_ml": CONCENTRATION, "syringe_ml": SYRINGE},
        "step": steps,
    }
    if area is not CareArea.OUTPATIENT:
        data["config"] = {"bed": {"care_area": area.value}}
    return GeneratedCourse(seed, kind, data, who, planted, at)


class _Builder:
    """The steps of one course being built, its vital tracks and the pump's rate over time."""

    def __init__(self, rng: random.Random, p: _Patient, cfg: Config) -> None:
        self.rng, self.p, self.cfg = rng, p, cfg
        self.steps: list[dict[str, Any]] = []
        self.tracks: dict[str, Track] = {}
        self.pump_rates: list[tuple[float, float]] = []

    def add(self, at: float, action: str, args: dict[str, Any] | None = None) -> None:
        self.steps.append({"at": int(round(at)), action: args or {}})

    def rate(self, dose: float) -> float:
        return _rate(dose, self.p.weight, CONCENTRATION)

    def rate_at(self, t: float) -> float:
        return [r for when, r in self.pump_rates if when <= t][-1]

    def order(self, at: float, dose: float) -> None:
        self.add(at, "order", {"concentration_mg_ml": CONCENTRATION, "rate_ml_h": self.rate(dose),
                               "syringe_ml": SYRINGE, "planned_duration_min": 240})

    def change_rate(self, at: float, dose: float) -> float:
        """New order, then the pump reprogrammed some seconds later; returns when the pump changed."""
        self.order(at, dose)
        pump_at = at + self.rng.randint(5, 40)
        self.add(pump_at, "pump", {"rate_ml_h": self.rate(dose)})
        self.pump_rates.append((pump_at, self.rate(dose)))
        self.pump_rates.sort()
        return pump_at


def _first(track: Track, t0: float, t1: float, present: Any) -> float:
    """First whole second in [t0, t1] at which ``present(value)`` holds."""
    return next((float(s) for s in range(int(t0), int(t1) + 1) if present(track.at(s))), t1)


def _plant(kind: str, t: float, rng: random.Random, b: _Builder) -> Planted:
    cfg, p, tr = b.cfg, b.p, b.tracks
    if kind == "apnoea_25s":
        tr["rr"].overlay(t, t + 25, [(t, 0), (t + 25, 0)])
        tr["etco2"].overlay(t, t + 25, [(t, 0), (t + 25, 0)])
        return Planted(kind, t, "resp.apnoea", Priority.HIGH, cfg.vitals.apnoea_s, "[vitals] apnoea_s",
                       "no breath for 25 s (RR 0, capnogram flat)", ends_s=t + 25, onset_s=t)
    if kind == "spo2_86":
        down, hold, up = rng.randint(60, 120), rng.randint(120, 240), rng.randint(60, 120)
        tr["spo2"].overlay(t, t + down + hold + up, [(t + down, 86), (t + down + hold, 86)])
        delay, src = _limit(cfg, "spo2_low")
        # From the onset every reading, noise and rounding included, is under 90 %.
        onset = _first(tr["spo2"], t, t + down, lambda v: v + p.spo2_noise < 89.9)
        return Planted(kind, t, "vital.spo2_low", Priority.MEDIUM, delay, src, "SpO2 falls to 86 %",
                       ends_s=t + down + hold, onset_s=onset)
    if kind == "etco2_62":
        up, hold, down = rng.randint(3, 6) * MIN, rng.randint(3, 5) * MIN, rng.randint(3, 5) * MIN
        pts = [(t + up, 62.0)] + [(t + up + s, 62 + rng.uniform(-1, 1)) for s in range(40, hold, 40)]
        tr["etco2"].overlay(t, t + up + hold + down, [*pts, (t + up + hold, 62.0)])
        tr["rr"].overlay(t, t + up + hold + down, [(t + up, 10), (t + up + hold, 10)])
        delay, src = _limit(cfg, "etco2_critical_high")
        onset = _first(tr["etco2"], t, t + up, lambda v: v > 60.1)
        return Planted(kind, t, "vital.etco2_high", Priority.HIGH, delay, src,
                       "EtCO2 rises to 62 mmHg (hypoventilation)", ends_s=t + up + hold, onset_s=onset)
    if kind == "sbp_190":
        up, hold, down = rng.randint(5, 10) * MIN, p.nibp_cycle_s + rng.randint(2, 5) * MIN, 15 * MIN
        end = t + up + hold + down
        tr["sbp"].overlay(t, end, [(t + up, 190), (t + up + hold, 190)])
        tr["dbp"].overlay(t, end, [(t + up, p.dbp * 1.3), (t + up + hold, p.dbp * 1.3)])
        b.add(t + up + hold - MIN, "rescue", {"drug": "labetalol", "dose_mg": 10.0})
        delay, src = _limit(cfg, "sbp_critical_high")
        limit = next(lim.above for lim in cfg.vitals.limits if lim.id == "sbp_critical_high")
        return Planted(kind, t, "vital.sbp_high", Priority.HIGH, delay, src, "SBP rises to 190 mmHg",
                       ends_s=t + up + hold, nibp_above=limit)
    if kind == "pump_10x":
        rate = b.rate_at(t)
        fix = t + rng.randint(60, 180)
        b.add(t, "pump", {"rate_ml_h": round(rate * 10, 1)})
        b.add(fix, "pump", {"rate_ml_h": rate})
        b.pump_rates += [(t, round(rate * 10, 1)), (fix, rate)]
        b.pump_rates.sort()
        delay, src = _rule_delay(cfg, "dose.soft_max", "dose.soft_max rule delay")
        return Planted(kind, t, "dose.soft_max", Priority.HIGH, delay, src,
                       f"pump rate typed 10x ({round(rate * 10, 1):g} mL/h for {rate:g})", ends_s=fix, onset_s=t)
    if kind == "wrong_concentration":
        wrong = rng.choice([x for x in cfg.ketamine.concentrations_mg_ml if abs(x - CONCENTRATION) > 1e-6])
        fix = t + rng.randint(60, 180)
        b.add(t - rng.randint(45, 90), "pump", {"state": "paused"})
        b.add(t, "pump", {"state": "running", "concentration_mg_ml": wrong})  # a new syringe, programmed wrong
        b.add(fix, "pump", {"concentration_mg_ml": CONCENTRATION})
        delay, src = _rule_delay(cfg, "pump.concentration_mismatch", "pump.concentration_mismatch rule delay")
        return Planted(kind, t, "pump.concentration_mismatch", Priority.HIGH, delay, src,
                       f"syringe change: pump programmed {wrong:g} mg/mL, order {CONCENTRATION:g} mg/mL",
                       ends_s=fix, onset_s=t)
    if kind == "pump_after_stop":
        fix = t + rng.randint(60, 180)
        b.add(fix, "pump", {"state": "stopped"})
        delay, src = _rule_delay(cfg, "pump.running_after_stop", "[ketamine] intent_mismatch_delay_s")
        return Planted(kind, t, "pump.running_after_stop", Priority.HIGH, delay, src,
                       "Stop recorded, the pump left running", ends_s=fix, onset_s=t)
    raise ValueError(kind)


def corpus(seeds: int | range, kinds: tuple[str, ...] = KINDS, config: Config | None = None) -> list[GeneratedCourse]:
    """Every kind for every seed (seeds 1..N for an int)."""
    cfg = config or load_config()
    seq = range(1, seeds + 1) if isinstance(seeds, int) else seeds
    return [generate(s, k, cfg) for k in kinds for s in seq]
