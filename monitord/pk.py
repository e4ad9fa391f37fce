"""Plasma ketamine concentration: a population-model estimate, never a measurement.

A linear mammillary model (central compartment 1, up to two peripheral compartments) with the
published parameters in config ``[pk.models.*]`` (docs/course.md), scaled to the patient's weight.
It is driven by the amounts the pump reports as delivered (boluses included), never by the order.

Between two reports the input is a constant rate, so the system is solved exactly: the rate
matrix is symmetrised by the compartment volumes (``S = D^-1 A D``, ``D = diag(sqrt(V))``),
diagonalised once (Jacobi), and each interval advances the modal amounts by ``exp(lambda h)``.
Each update costs O(1); nothing is integrated numerically.

Concentrations are in ng/mL (mg/L x 1000), times in seconds on the caller's monotonic clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import Strict as StrictType

KIND = "model_estimate"
QUANTITY = "plasma ketamine concentration, population-model estimate (not a measurement)"
_MAX_CURVE_POINTS = 1440  # a day at one sample a minute

# Config numbers as monitord.config takes them: finite, of their type, within bounds that refuse a
# unit slip (the fastest published ketamine rate constant is ~0.6/min; anaesthesia is 1200-2400 ng/mL).
Float = Annotated[float, StrictType()]
RateConst = Annotated[Float, Field(ge=0, le=10)]
Level = Annotated[Float, Field(gt=0, le=10000)]
_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PkModelConfig(BaseModel):
    """One published model. ``V1 = v1_l x weight / weight_ref_kg``; ``cl_l_h`` (scaled the same
    way) may stand in for ``k10_per_min`` (``k10 = CL / V1``). Rate constants are per minute."""

    model_config = _CONFIG

    source: str = Field(min_length=3)
    v1_l: Annotated[Float, Field(gt=0, le=1000)]
    weight_ref_kg: Annotated[Float, Field(gt=0, le=1000)] = 1.0
    k10_per_min: Annotated[Float, Field(gt=0, le=10)] | None = None
    cl_l_h: Annotated[Float, Field(gt=0, le=1000)] | None = None
    k12_per_min: RateConst = 0.0
    k21_per_min: RateConst = 0.0
    k13_per_min: RateConst = 0.0
    k31_per_min: RateConst = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> PkModelConfig:
        if (self.k10_per_min is None) == (self.cl_l_h is None):
            raise ValueError("give exactly one of 'k10_per_min' or 'cl_l_h'")
        for out, back in (("k12_per_min", "k21_per_min"), ("k13_per_min", "k31_per_min")):
            if (getattr(self, out) > 0) != (getattr(self, back) > 0):
                raise ValueError(f"'{out}' and '{back}' must both be 0 or both positive")
        return self


class PkConfig(BaseModel):
    """``[pk]``: which model, the levels the estimate is compared with, the models themselves."""

    model_config = _CONFIG

    model: str
    analgesic_level_ng_ml: Level
    analgesic_band_ng_ml: tuple[Level, Level]
    below_level_ng_ml: Level
    # Plot sampling; the curve keeps a day at 60 s. Below 1 s it would only cost memory.
    curve_step_s: Annotated[Float, Field(ge=1, le=3600)] = 60.0
    models: dict[str, PkModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _known(self) -> PkConfig:
        if self.model not in self.models:
            raise ValueError(f"model {self.model!r} is not one of {sorted(self.models)}")
        lo, hi = self.analgesic_band_ng_ml
        if lo >= hi:
            raise ValueError("analgesic_band_ng_ml: the lower bound must be below the upper")
        return self


@dataclass(frozen=True)
class PkParams:
    """Weight-scaled parameters of one model (volumes in L, rate constants per minute)."""

    model: str
    source: str
    weight_kg: float
    v1_l: float
    k10: float
    k12: float = 0.0
    k21: float = 0.0
    k13: float = 0.0
    k31: float = 0.0

    @classmethod
    def from_config(cls, name: str, m: PkModelConfig, weight_kg: float) -> PkParams:
        if not (math.isfinite(weight_kg) and weight_kg > 0):
            raise ValueError(f"weight must be a positive number of kg, not {weight_kg!r}")
        v1 = m.v1_l * weight_kg / m.weight_ref_kg
        k10 = m.k10_per_min if m.k10_per_min is not None else (m.cl_l_h or 0.0) * weight_kg / m.weight_ref_kg / 60 / v1
        return cls(name, m.source, float(weight_kg), v1, k10,
                   m.k12_per_min, m.k21_per_min, m.k13_per_min, m.k31_per_min)

    @property
    def volumes_l(self) -> list[float]:
        """Central, then each connected peripheral compartment (``V_i = V1 k1i / ki1``)."""
        return [self.v1_l] + [self.v1_l * ko / kb for ko, kb in self._peripheral()]

    @property
    def clearance_l_h(self) -> float:
        return self.v1_l * self.k10 * 60

    def steady_state_ng_ml(self, rate_mg_h: float) -> float:
        """Model plasma level a constant rate approaches."""
        return rate_mg_h / self.clearance_l_h * 1000

    def _peripheral(self) -> list[tuple[float, float]]:
        return [(ko, kb) for ko, kb in ((self.k12, self.k21), (self.k13, self.k31)) if ko > 0]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "source": self.source, "weight_kg": self.weight_kg, "v1_l": self.v1_l,
                "k10_per_min": self.k10, "k12_per_min": self.k12, "k21_per_min": self.k21,
                "k13_per_min": self.k13, "k31_per_min": self.k31}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PkParams:
        p = cls(str(d["model"]), str(d["source"]), float(d["weight_kg"]), float(d["v1_l"]),
                float(d["k10_per_min"]), float(d["k12_per_min"]), float(d["k21_per_min"]),
                float(d["k13_per_min"]), float(d["k31_per_min"]))
        ks = (p.k12, p.k21, p.k13, p.k31)
        if not (all(math.isfinite(x) for x in (p.weight_kg, p.v1_l, p.k10, *ks)) and min(p.weight_kg, p.v1_l, p.k10) > 0
                and min(ks) >= 0 and (p.k12 > 0) == (p.k21 > 0) and (p.k13 > 0) == (p.k31 > 0)):
            raise ValueError("model parameters out of range")
        return p


def models_markdown(cfg: PkConfig, weight_kg: float = 70.0) -> str:
    """The configured models as a Markdown table (docs/course.md is checked against it)."""
    rows = ["| model | compartments | V1 (L) | k10 or CL | k12 | k21 | k13 | k31 "
            f"| at {weight_kg:g} kg: V1, CL, terminal t1/2 | source |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in cfg.models.items():
        est = PlasmaEstimate.from_config(cfg, weight_kg, name)
        p = est.params
        v1 = f"{m.v1_l:g} x wt" if m.weight_ref_kg == 1 else f"{m.v1_l:g} per {m.weight_ref_kg:g} kg"
        k10 = f"k10 {m.k10_per_min:g}/min" if m.k10_per_min is not None else f"CL {m.cl_l_h:g} L/h per {m.weight_ref_kg:g} kg"
        ks = [f"{k:g}" if k else "-" for k in (m.k12_per_min, m.k21_per_min, m.k13_per_min, m.k31_per_min)]
        at = f"{p.v1_l:.1f} L, {p.clearance_l_h:.0f} L/h, {est.half_lives_h[-1]:.2f} h"
        rows.append(f"| `{name}` | {len(p.volumes_l)} | {v1} | {k10} | {' | '.join(ks)} | {at} | {m.source} |")
    return "\n".join(rows)


def _sym_eig(a: list[list[float]]) -> tuple[list[float], list[list[float]]]:
    """Eigenvalues and eigenvectors (columns of Q) of a small symmetric matrix (cyclic Jacobi)."""
    n = len(a)
    a = [row[:] for row in a]
    q = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    scale = sum(a[i][j] ** 2 for i in range(n) for j in range(n)) or 1.0
    for _ in range(64):
        if sum(a[i][j] ** 2 for i in range(n) for j in range(i + 1, n)) <= 1e-30 * scale:
            break
        for p in range(n):
            for r in range(p + 1, n):
                if a[p][r] == 0.0:
                    continue
                theta = (a[r][r] - a[p][p]) / (2 * a[p][r])
                t = math.copysign(1.0, theta) / (abs(theta) + math.hypot(theta, 1.0))
                c = 1 / math.hypot(t, 1.0)
                s = t * c
                for k in range(n):  # columns: A P
                    akp, akr = a[k][p], a[k][r]
                    a[k][p], a[k][r] = c * akp - s * akr, s * akp + c * akr
                for k in range(n):  # rows: P^T (A P)
                    apk, ark = a[p][k], a[r][k]
                    a[p][k], a[r][k] = c * apk - s * ark, s * apk + c * ark
                for k in range(n):
                    qkp, qkr = q[k][p], q[k][r]
                    q[k][p], q[k][r] = c * qkp - s * qkr, s * qkp + c * qkr
    return [a[i][i] for i in range(n)], q


def exp_sum_zeros(terms: list[tuple[float, float]], lo: float, hi: float) -> list[float]:
    """Zeros in ``(lo, hi)`` of ``g(t) = sum c e^(lam t)`` for ``terms = [(c, lam), ...]``.

    Exact up to bisection: ``g e^(-lam0 t)`` (``lam0`` the largest rate) has a derivative that is
    a shorter exponential sum; its zeros split the interval into pieces where g changes sign at
    most once (Rolle), and each sign change is bisected.
    """
    merged: dict[float, float] = {}
    for c, lam in terms:
        merged[lam] = merged.get(lam, 0.0) + c
    ts = sorted(((c, lam) for lam, c in merged.items() if c != 0.0), key=lambda x: -x[1])
    if len(ts) <= 1 or not hi > lo:
        return []
    c0, lam0 = ts[0]
    rest = [(c, lam - lam0) for c, lam in ts[1:]]  # exponents <= 0: no overflow for t >= 0

    def f(t: float) -> float:
        return c0 + sum(c * math.exp(d * t) for c, d in rest)

    cuts = [lo, *exp_sum_zeros([(c * d, d) for c, d in rest], lo, hi), hi]
    zeros: list[float] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        fa, fb = f(a), f(b)
        if fb == 0.0 and b < hi:
            zeros.append(b)
        elif fa * fb < 0:
            for _ in range(200):
                m = (a + b) / 2
                if not a < m < b or b - a <= 1e-9 * max(1.0, abs(b)):
                    break
                fm = f(m)
                if (fm < 0) == (fa < 0):
                    a, fa = m, fm
                else:
                    b = m
            zeros.append((a + b) / 2)
    return zeros


class _Solver:
    """Exact solution of ``dx/dt = A x + e1 R`` in modal coordinates (per second)."""

    def __init__(self, p: PkParams) -> None:
        per = p._peripheral()
        n = 1 + len(per)
        s = [[0.0] * n for _ in range(n)]
        s[0][0] = -(p.k10 + sum(ko for ko, _ in per))
        for i, (ko, kb) in enumerate(per, start=1):
            s[0][i] = s[i][0] = math.sqrt(ko * kb)
            s[i][i] = -kb
        lam, q = _sym_eig(s)
        self.n = n
        self.lam = [x / 60 for x in lam]  # per second
        self.q = q
        self.sqrt_v = [math.sqrt(v) for v in p.volumes_l]
        if max(self.lam) >= 0:
            raise ValueError("model has no elimination")

    def modal(self, x: list[float]) -> list[float]:
        y = [xi / sv for xi, sv in zip(x, self.sqrt_v, strict=True)]
        return [sum(self.q[i][k] * y[i] for i in range(self.n)) for k in range(self.n)]

    def amounts(self, z: list[float]) -> list[float]:
        return [self.sqrt_v[i] * sum(self.q[i][k] * z[k] for k in range(self.n)) for i in range(self.n)]

    def central_at(self, z: list[float], rate: float, t: float) -> float:
        """Central concentration (mg/L) ``t`` s after modal state ``z`` under constant ``rate`` (mg/s)."""
        sv = self.sqrt_v[0]
        return sum(q0 / sv * (zk * math.exp(lam * t) + q0 * rate / sv * math.expm1(lam * t) / lam)
                   for q0, zk, lam in zip(self.q[0], z, self.lam, strict=True))

    def slope_terms(self, z: list[float], rate: float) -> list[tuple[float, float]]:
        """``dC/dt = sum b_k e^(lam_k t)`` under constant ``rate``: ``[(b_k, lam_k)]``."""
        sv = self.sqrt_v[0]
        return [(q0 / sv * (lam * zk + q0 * rate / sv), lam) for q0, zk, lam in zip(self.q[0], z, self.lam, strict=True)]

    def decay_terms(self, z: list[float]) -> list[tuple[float, float]]:
        """With no input, ``C(t) = sum a_k e^(lam_k t)``: ``[(a_k, lam_k)]``."""
        sv = self.sqrt_v[0]
        return [(q0 * zk / sv, lam) for q0, zk, lam in zip(self.q[0], z, self.lam, strict=True)]

    def advance(self, z: list[float], rate: float, h: float) -> list[float]:
        sv = self.sqrt_v[0]
        out = []
        for k in range(self.n):
            lam = self.lam[k]
            out.append(z[k] * math.exp(lam * h) + self.q[0][k] * rate / sv * math.expm1(lam * h) / lam)
        return out


class PlasmaEstimate:
    """Model estimate of the plasma ketamine concentration, fed with delivered amounts.

    ``update(delta_mg, t0, t1)`` for each pump report (the amount delivered over ``[t0, t1]``;
    ``t0 == t1`` for an instantaneous bolus); ``estimate(now)`` for the current values. Between
    the last report and ``now`` nothing more is assumed delivered.
    """

    def __init__(self, params: PkParams, *, below_level_ng_ml: float, analgesic_level_ng_ml: float,
                 analgesic_band_ng_ml: tuple[float, float], curve_step_s: float = 60.0) -> None:
        self.params = params
        self.below_level_ng_ml = below_level_ng_ml
        self.analgesic_level_ng_ml = analgesic_level_ng_ml
        self.analgesic_band_ng_ml = analgesic_band_ng_ml
        self.curve_step_s = curve_step_s
        self._solver = _Solver(params)
        self.amounts_mg = [0.0] * self._solver.n
        self.t: float | None = None  # time of the last delivered-amount report
        self.delivered_mg = 0.0
        self.peak_ng_ml = 0.0
        self.peak_t: float | None = None
        self.samples: deque[tuple[float, float]] = deque(maxlen=_MAX_CURVE_POINTS)

    @classmethod
    def from_config(cls, cfg: PkConfig, weight_kg: float, model: str | None = None) -> PlasmaEstimate:
        name = model or cfg.model
        return cls(PkParams.from_config(name, cfg.models[name], weight_kg),
                   below_level_ng_ml=cfg.below_level_ng_ml, analgesic_level_ng_ml=cfg.analgesic_level_ng_ml,
                   analgesic_band_ng_ml=cfg.analgesic_band_ng_ml, curve_step_s=cfg.curve_step_s)

    @property
    def half_lives_h(self) -> list[float]:
        """Model half-lives (h) of each exponential phase, shortest first; the last is terminal."""
        return sorted(math.log(2) / -lam / 3600 for lam in self._solver.lam)

    # -- feeding -------------------------------------------------------------------------------

    def update(self, delta_mg: float, t0: float, t1: float) -> None:
        """Record ``delta_mg`` delivered at a constant rate over ``[t0, t1]`` (seconds).

        A gap since the last report passes with no input; a report overlapping the previous one
        is delivered over the part that is new (instantaneously if none is), so no amount is lost.
        Raises ValueError for a negative or non-finite amount or ``t1 < t0``.
        """
        if not (math.isfinite(delta_mg) and delta_mg >= 0):
            raise ValueError(f"delivered amount must be a finite number >= 0 mg, not {delta_mg!r}")
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 >= t0):
            raise ValueError(f"interval must have t1 >= t0, not [{t0!r}, {t1!r}]")
        if self.t is None:
            self.t = t0
        if t0 > self.t:
            self._advance(0.0, t0)
        start = max(t0, self.t)
        if t1 > start:
            self._advance(delta_mg / (t1 - start), t1)
        elif delta_mg > 0:
            self.amounts_mg[0] += delta_mg
            self._note_peak(self.amounts_mg[0] / self.params.v1_l * 1000, self.t)
        self.delivered_mg += delta_mg

    def _note_peak(self, c_ng_ml: float, t: float) -> None:
        if c_ng_ml > self.peak_ng_ml:
            self.peak_ng_ml, self.peak_t = c_ng_ml, t

    def _advance(self, rate: float, t_end: float) -> None:
        assert self.t is not None
        t_start, h = self.t, t_end - self.t
        z = self._solver.modal(self.amounts_mg)
        sol = self._solver
        if rate > 0:  # with no input the central level only falls (docs/course.md)
            for tt in [h, *exp_sum_zeros(sol.slope_terms(z, rate), 0.0, h)]:
                self._note_peak(max(0.0, sol.central_at(z, rate, tt)) * 1000, t_start + tt)
        step = self.curve_step_s
        g = max(math.floor(t_start / step) + 1, math.ceil((t_end - step * _MAX_CURVE_POINTS) / step))
        while g * step <= t_end:
            self.samples.append((g * step, max(0.0, sol.central_at(z, rate, g * step - t_start)) * 1000))
            g += 1
        self.amounts_mg = [max(0.0, x) for x in self._solver.amounts(self._solver.advance(z, rate, h))]
        self.t = t_end

    # -- reading -------------------------------------------------------------------------------

    def _decay_terms(self, now: float) -> list[tuple[float, float]]:
        """``C(s)`` in mg/L, ``s`` seconds after ``now``, with no further delivery."""
        z = self._solver.modal(self.amounts_mg)
        if self.t is not None and now > self.t:
            z = self._solver.advance(z, 0.0, now - self.t)
        return self._solver.decay_terms(z)

    def concentration_at(self, t: float) -> float:
        """Model plasma concentration (ng/mL) at ``t`` >= the last report, with no further delivery."""
        if self.t is None:
            return 0.0
        terms = self._decay_terms(self.t)
        return max(0.0, sum(a * math.exp(lam * max(0.0, t - self.t)) for a, lam in terms)) * 1000

    def seconds_until_below(self, now: float, level_ng_ml: float | None = None) -> float:
        """Seconds from ``now`` until the model level is below ``level_ng_ml`` for good, assuming
        nothing more is delivered (0 when it already is)."""
        level = (self.below_level_ng_ml if level_ng_ml is None else level_ng_ml) / 1000
        terms = self._decay_terms(now)
        total = sum(abs(a) for a, _ in terms)
        if total <= level:
            return 0.0
        # C(s) <= total e^(lam_max s) < level beyond the horizon (margin: the end must not be a zero)
        horizon = math.log(total / level) / -max(lam for _, lam in terms) * 1.01 + 1.0
        zeros = exp_sum_zeros([*terms, (-level, 0.0)], 0.0, horizon)
        return zeros[-1] if zeros else 0.0

    def estimate(self, now: float) -> dict[str, Any]:
        """The values to show and publish, labelled as a model estimate."""
        p = self.params
        now = max(now, self.t) if self.t is not None else now
        below = self.seconds_until_below(now) if self.t is not None else 0.0
        return {
            "kind": KIND,
            "quantity": QUANTITY,
            "model": p.model,
            "source": p.source,
            "weight_kg": p.weight_kg,
            "unit": "ng/mL",
            "concentration_ng_ml": round(self.concentration_at(now), 1),
            "peak_ng_ml": round(self.peak_ng_ml, 1),
            "peak_age_s": None if self.peak_t is None else round(now - self.peak_t),
            "below_level_ng_ml": self.below_level_ng_ml,
            "below_level_in_s": round(below),
            "analgesic_level_ng_ml": self.analgesic_level_ng_ml,
            "analgesic_band_ng_ml": list(self.analgesic_band_ng_ml),
            "delivered_mg": round(self.delivered_mg, 3),
            "data_age_s": None if self.t is None else round(now - self.t, 1),
        }

    def curve(self, now: float, ahead_s: float = 0.0) -> list[tuple[float, float]]:
        """Sampled model curve ``(t, ng/mL)``: past samples, the value now, and ``ahead_s`` more
        seconds projected with no further delivery (for a plot)."""
        if self.t is None:
            return []
        now = max(now, self.t)
        out = [s for s in self.samples if s[0] < now]
        out.append((now, self.concentration_at(now)))
        step = self.curve_step_s
        g = math.floor(now / step) + 1
        while g * step <= now + ahead_s:
            out.append((g * step, self.concentration_at(g * step)))
            g += 1
        return out

    # -- checkpoint ----------------------------------------------------------------------------

    def to_dict(self, now: float) -> dict[str, Any]:
        """JSON-ready state; times stored as ages before ``now`` (like monitord.checkpoint)."""

        def age(t: float | None) -> float | None:
            return None if t is None else now - t

        return {
            "kind": KIND,
            "version": 1,
            "params": self.params.as_dict(),
            "below_level_ng_ml": self.below_level_ng_ml,
            "analgesic_level_ng_ml": self.analgesic_level_ng_ml,
            "analgesic_band_ng_ml": list(self.analgesic_band_ng_ml),
            "curve_step_s": self.curve_step_s,
            "amounts_mg": list(self.amounts_mg),
            "age_s": age(self.t),
            "delivered_mg": self.delivered_mg,
            "peak_ng_ml": self.peak_ng_ml,
            "peak_age_s": age(self.peak_t),
            "samples": [[now - t, c] for t, c in self.samples],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], now: float, downtime_s: float = 0.0) -> PlasmaEstimate:
        """Restore from ``to_dict``; ``downtime_s`` (time the daemon was down) ages everything,
        the model amounts included (nothing was delivered that the pump did not report)."""
        if d.get("kind") != KIND or d.get("version") != 1:
            raise ValueError("not a plasma model estimate checkpoint (kind/version)")
        band = d["analgesic_band_ng_ml"]
        est = cls(PkParams.from_dict(d["params"]), below_level_ng_ml=float(d["below_level_ng_ml"]),
                  analgesic_level_ng_ml=float(d["analgesic_level_ng_ml"]),
                  analgesic_band_ng_ml=(float(band[0]), float(band[1])), curve_step_s=float(d["curve_step_s"]))
        amounts = [float(x) for x in d["amounts_mg"]]
        if len(amounts) != est._solver.n or any(not (math.isfinite(x) and x >= 0) for x in amounts):
            raise ValueError("amounts_mg do not fit the model")
        base = now - max(0.0, downtime_s)

        def mono(age_s: Any) -> float | None:
            return None if age_s is None else base - float(age_s)

        est.amounts_mg = amounts
        est.t = mono(d["age_s"])
        est.delivered_mg = float(d["delivered_mg"])
        est.peak_ng_ml = float(d["peak_ng_ml"])
        est.peak_t = mono(d["peak_age_s"])
        est.samples.extend((base - float(a), float(c)) for a, c in d["samples"])
        return est
