"""The plasma-concentration model estimate (monitord.pk) against analytic and independent values."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.config import ConfigError, load_config
from monitord.pk import PkParams, PlasmaEstimate, exp_sum_zeros, models_markdown

CFG = load_config().pk
H = 3600.0


def model(name: str, weight_kg: float = 70.0) -> PlasmaEstimate:
    return PlasmaEstimate.from_config(CFG, weight_kg, name)


def feed_in_chunks(est: PlasmaEstimate, rate_mg_h: float, t0: float, t1: float, rng: random.Random) -> None:
    """Deliver ``rate_mg_h`` over ``[t0, t1]`` in irregular pump-report-sized chunks (1-7 s)."""
    t = t0
    while t < t1:
        nxt = min(t1, t + rng.uniform(1.0, 7.0))
        est.update(rate_mg_h * (nxt - t) / H, t, nxt)
        t = nxt


def rk4(p: PkParams, x0: list[float], rate_mg_min: object, t_end_min: float, dt: float = 0.005) -> list[float]:
    """Independent reference: the mammillary ODEs integrated with a small fixed RK4 step.

    Returns the central concentration (ng/mL) at every whole minute, index = minute.
    """

    def f(x: list[float], r: float) -> list[float]:
        x1, x2, x3 = x
        return [r - (p.k10 + p.k12 + p.k13) * x1 + p.k21 * x2 + p.k31 * x3,
                p.k12 * x1 - p.k21 * x2, p.k13 * x1 - p.k31 * x3]

    x, out, steps_per_min = list(x0), [x0[0] / p.v1_l * 1000], round(1 / dt)
    for i in range(round(t_end_min * steps_per_min)):
        r = rate_mg_min((i + 0.5) * dt)  # type: ignore[operator]
        a = f(x, r)
        b = f([xi + dt / 2 * ai for xi, ai in zip(x, a, strict=True)], r)
        c = f([xi + dt / 2 * bi for xi, bi in zip(x, b, strict=True)], r)
        d = f([xi + dt * di for xi, di in zip(x, c, strict=True)], r)
        x = [xi + dt / 6 * (ai + 2 * bi + 2 * ci + di) for xi, ai, bi, ci, di in zip(x, a, b, c, d, strict=True)]
        if (i + 1) % steps_per_min == 0:
            out.append(x[0] / p.v1_l * 1000)
    return out


# -- analytic one-compartment check --------------------------------------------------------------


def test_one_compartment_constant_infusion_matches_the_closed_form() -> None:
    """C(t) = R/CL (1 - e^-kt) during a constant infusion, C(T) e^-k(t-T) after the stop (k = CL/V),
    with the Kamp 2020 one-compartment parameters (V 252 L, CL 79 L/h at 70 kg)."""
    est = model("kamp2020")
    v, cl = 252.0, 79.0
    k, rate = cl / v, 40.0  # per hour; 40 mg/h = 80 mg over 2 h
    rng = random.Random(7)
    checked = 0
    t = 0.0
    while t < 2 * H:
        nxt = min(2 * H, t + rng.uniform(1.0, 7.0))
        est.update(rate * (nxt - t) / H, t, nxt)
        t = nxt
        expected = rate / cl * (1 - math.exp(-k * t / H)) * 1000
        assert est.concentration_at(t) == pytest.approx(expected, rel=1e-9)
        checked += 1
    assert checked > 1000
    c_stop = rate / cl * (1 - math.exp(-k * 2)) * 1000
    for after_h in (0.5, 1, 2.2, 6):
        assert est.concentration_at(2 * H + after_h * H) == pytest.approx(c_stop * math.exp(-k * after_h), rel=1e-9)
    # Time until below 100 ng/mL: ln(C_stop/100)/k, and the half-life ln 2 V/CL = 2.21 h.
    assert est.seconds_until_below(2 * H) == pytest.approx(math.log(c_stop / 100) / k * H, abs=0.01)
    assert est.half_lives_h == [pytest.approx(math.log(2) * v / cl)]
    assert est.peak_ng_ml == pytest.approx(c_stop, rel=1e-9)


# -- cross-check values --------------------------------------------------------------------------

# course-care.md section 1, "Cross-check values, computed from the parameters above for a 70 kg
# adult": clearance (L/h), terminal t1/2 (h), steady state at 0.5 / 1 / 2 mg/kg/h (ng/mL) and
# 80 mg over 2 h at 1 h / 2 h / 1 h after stop / 3 h after stop (ng/mL). Reproduced independently
# with the RK4 integration above before being used here.
CROSS_CHECK = {
    "domino": (116, 1.9, (302, 604, 1208), (202, 245, 74, 36)),
    "clements": (80, 3.05, (436, 873, 1745), (171, 244, 125, 74)),
    "hijazi": (151, 4.95, (232, 463, 927), (195, 217, 29, 10)),
}


@pytest.mark.parametrize("name", sorted(CROSS_CHECK))
def test_published_models_reproduce_the_cross_check_table(name: str) -> None:
    cl, t_half, steady, course = CROSS_CHECK[name]
    est = model(name)
    assert est.params.clearance_l_h == pytest.approx(cl, abs=0.5)
    assert est.half_lives_h[-1] == pytest.approx(t_half, abs=0.05)
    for mg_kg_h, expected in zip((0.5, 1, 2), steady, strict=True):
        long = model(name)
        long.update(mg_kg_h * 70 * 200, 0.0, 200 * H)  # 200 h: steady state to well under 1 ng/mL
        assert long.estimate(200 * H)["concentration_ng_ml"] == pytest.approx(expected, abs=1)
    feed_in_chunks(est, 40.0, 0.0, 1 * H, random.Random(1))
    at_1h = est.estimate(1 * H)["concentration_ng_ml"]
    feed_in_chunks(est, 40.0, 1 * H, 2 * H, random.Random(2))
    got = [at_1h, est.estimate(2 * H)["concentration_ng_ml"], est.concentration_at(3 * H), est.concentration_at(5 * H)]
    assert got == pytest.approx(list(course), abs=1)


# -- reference curves (independent numerical integration) ----------------------------------------


@pytest.mark.parametrize("name", ["domino", "clements", "hijazi"])
def test_bolus_response_follows_the_integrated_odes(name: str) -> None:
    """A 0.15 mg/kg bolus given over 1 min, then 6 h with nothing: every minute of the exact solution
    against RK4 (step 0.3 s) of the same ODEs."""
    est = model(name)
    dose = 0.15 * 70
    ref = rk4(est.params, [0.0, 0.0, 0.0], lambda t: dose if t < 1 else 0.0, 360)
    est.update(dose, 0.0, 60.0)
    assert est.estimate(60.0)["concentration_ng_ml"] == pytest.approx(ref[1], rel=1e-4, abs=0.1)
    for minute in range(2, 361):
        assert est.concentration_at(minute * 60.0) == pytest.approx(ref[minute], rel=1e-5), minute
    assert est.peak_ng_ml == pytest.approx(max(ref), rel=1e-3)


def test_instantaneous_bolus_starts_at_dose_over_v1_and_follows_the_odes() -> None:
    est = model("domino")
    est.update(10.0, 100.0, 100.0)
    v1 = 0.063 * 70
    assert est.peak_ng_ml == pytest.approx(10.0 / v1 * 1000)
    ref = rk4(est.params, [10.0, 0.0, 0.0], lambda t: 0.0, 120)
    for minute in (1, 5, 30, 120):
        assert est.concentration_at(100.0 + minute * 60) == pytest.approx(ref[minute], rel=1e-5)


def test_peak_inside_a_long_report_interval_is_found() -> None:
    """Infuse, pause (the periphery stays loaded), resume at a low rate: the level rises, then falls
    while the periphery drains, all inside one 6 h report. Its peak is still the true one."""
    rate = [(0, 120, 2.0), (120, 140, 0.0), (140, 500, 0.3)]  # (from min, to min, mg/min)

    def r(t: float) -> float:
        return next((x for a, b, x in rate if a <= t < b), 0.0)

    est = model("domino")
    ref = rk4(est.params, [0.0, 0.0, 0.0], r, 500)
    for a, b, x in rate[:2]:
        est.update(x * (b - a), a * 60.0, b * 60.0)
    est.peak_ng_ml, est.peak_t = 0.0, None  # the peak of the last report alone
    est.update(0.3 * 360, 140 * 60.0, 500 * 60.0)
    inner = ref[141:500]
    assert max(inner) > max(ref[140], ref[500]) + 30  # the shape this test is about
    assert est.peak_ng_ml == pytest.approx(max(inner), rel=1e-4)
    assert est.peak_t is not None and est.peak_t / 60 == pytest.approx(141 + inner.index(max(inner)), abs=1)


# -- properties ----------------------------------------------------------------------------------

segment = st.tuples(st.floats(0.0, 3 * H), st.floats(0.0, 50.0))  # (duration s, mg); 0 s is a bolus


@settings(max_examples=150)
@given(
    name=st.sampled_from(sorted(CFG.models)),
    weight=st.floats(30.0, 200.0),
    segments=st.lists(segment, min_size=1, max_size=12),
    gap=st.floats(0.0, 600.0),
    probes=st.lists(st.floats(0.0, 48 * H), min_size=2, max_size=20),
)
def test_estimate_is_never_negative_and_falls_after_stop(
    name: str, weight: float, segments: list[tuple[float, float]], gap: float, probes: list[float]
) -> None:
    est = model(name, weight)
    t = 1000.0
    for duration, mg in segments:
        est.update(mg, t, t + duration)
        t += duration
        c = est.concentration_at(t)
        assert c >= 0 and est.estimate(t)["concentration_ng_ml"] >= 0
        assert est.peak_ng_ml >= c * (1 - 1e-9) - 1e-12  # absolute slack: subnormal amounts have no relative precision
        t += gap
    after = [est.concentration_at(t + s) for s in sorted(probes)]
    assert all(c >= 0 for c in after)
    assert all(b <= a * (1 + 1e-12) + 1e-9 for a, b in zip(after, after[1:], strict=False))
    below = est.seconds_until_below(t)
    level = CFG.below_level_ng_ml
    assert est.concentration_at(t + below + 1.0) < level
    if below > 1.0:
        assert est.concentration_at(t + below - 1.0) > level


def test_exp_sum_zeros_finds_every_sign_change() -> None:
    roots_u = [0.8, 0.5, 0.2]  # g(t) = (u - 0.8)(u - 0.5)(u - 0.2) with u = e^-t, zeros t = -ln u
    c3, c2, c1, c0 = 1.0, -1.5, 0.66, -0.08
    terms = [(c3, -3.0), (c2, -2.0), (c1, -1.0), (c0, 0.0)]
    zeros = exp_sum_zeros(terms, 0.0, 5.0)
    assert zeros == pytest.approx(sorted(-math.log(u) for u in roots_u), abs=1e-7)


# -- checkpoint, config, labels ------------------------------------------------------------------


def test_round_trip_through_json_continues_the_same_course() -> None:
    est = model("domino")
    feed_in_chunks(est, 40.0, 0.0, 1.5 * H, random.Random(3))
    est.update(7.0, 1.5 * H, 1.5 * H + 30)
    now = 1.5 * H + 40
    saved = json.loads(json.dumps(est.to_dict(now)))
    # Restart on another monotonic clock (offset: a whole number of plot steps), 120 s later:
    # everything has aged by the downtime.
    shift = 60.0 * 20000
    back = PlasmaEstimate.from_dict(saved, now + shift + 120, downtime_s=120)
    a, b = est.estimate(now + 120), back.estimate(now + 120 + shift)
    assert a == b
    curve_a = est.curve(now + 120, ahead_s=600)
    curve_b = back.curve(now + shift + 120, ahead_s=600)
    assert [t + shift for t, _ in curve_a] == pytest.approx([t for t, _ in curve_b])
    assert [c for _, c in curve_a] == pytest.approx([c for _, c in curve_b], rel=1e-9)
    for e, off in ((est, 0.0), (back, shift)):
        e.update(5.0, 1.5 * H + 30 + off, 2 * H + off)
    assert back.estimate(2 * H + shift) == est.estimate(2 * H)


def test_restore_refuses_a_foreign_or_damaged_checkpoint() -> None:
    d = model("domino").to_dict(0.0)
    with pytest.raises(ValueError):
        PlasmaEstimate.from_dict({**d, "kind": "measurement"}, 0.0)
    with pytest.raises(ValueError):
        PlasmaEstimate.from_dict({**d, "amounts_mg": [1.0, -2.0, 0.0]}, 0.0)
    with pytest.raises(ValueError):
        PlasmaEstimate.from_dict({**d, "params": {**d["params"], "k21_per_min": 0.0}}, 0.0)


def test_estimate_is_labelled_as_a_model_estimate_with_its_source() -> None:
    est = model("domino", 80.0)
    est.update(20.0, 0.0, 1800.0)
    out = est.estimate(1800.0)
    assert out["kind"] == "model_estimate"
    assert "not a measurement" in out["quantity"]
    assert out["model"] == "domino" and "7198883" in out["source"]
    assert out["weight_kg"] == 80.0 and out["unit"] == "ng/mL"
    assert out["analgesic_level_ng_ml"] == 100.0 and out["analgesic_band_ng_ml"] == [70.0, 160.0]
    assert out["delivered_mg"] == 20.0 and out["data_age_s"] == 0.0
    later = est.estimate(1800.0 + 600)
    assert later["data_age_s"] == 600.0 and later["concentration_ng_ml"] < out["concentration_ng_ml"]


def test_reports_with_gaps_or_overlaps_keep_every_milligram() -> None:
    est = model("clements")
    est.update(10.0, 0.0, 60.0)
    est.update(5.0, 120.0, 180.0)  # a gap: nothing delivered 60-120 s
    est.update(5.0, 170.0, 200.0)  # overlaps the previous report
    est.update(2.0, 150.0, 160.0)  # entirely in the past: given at once
    assert est.delivered_mg == 22.0
    same = model("clements")  # the same delivery reported without gaps or overlaps
    for mg, t0, t1 in ((10.0, 0.0, 60.0), (0.0, 60.0, 120.0), (5.0, 120.0, 180.0), (5.0, 180.0, 200.0)):
        same.update(mg, t0, t1)
    same.update(2.0, 200.0, 200.0)
    assert est.estimate(900.0) == same.estimate(900.0)
    with pytest.raises(ValueError):
        est.update(-1.0, 200.0, 210.0)
    with pytest.raises(ValueError):
        est.update(1.0, 220.0, 210.0)
    with pytest.raises(ValueError):
        est.update(float("nan"), 220.0, 230.0)


def test_nothing_delivered_is_zero_with_no_time_until_below() -> None:
    est = model("domino")
    assert est.estimate(50.0)["concentration_ng_ml"] == 0.0
    assert est.estimate(50.0)["below_level_in_s"] == 0
    assert est.curve(50.0) == []


def test_curve_samples_past_and_projects_ahead() -> None:
    est = model("domino")
    feed_in_chunks(est, 40.0, 0.0, 2 * H, random.Random(4))
    pts = est.curve(2 * H + 30, ahead_s=3 * H)
    times = [t for t, _ in pts]
    assert times == sorted(times) and times[0] == 60.0 and times[-1] == 5 * H
    assert len(pts) == 120 + 1 + 180
    by_t = dict(pts)
    assert by_t[5 * H] == pytest.approx(36, abs=1)  # cross-check table: 3 h after stop


def test_config_rejects_unknown_model_and_half_connected_compartment() -> None:
    with pytest.raises(ConfigError, match="pk"):
        load_config(overrides={"pk": {"model": "nonesuch"}})
    with pytest.raises(ConfigError, match="k13_per_min"):
        load_config(overrides={"pk": {"models": {"domino": {"k31_per_min": 0.0}}}})
    with pytest.raises(ConfigError, match="k10_per_min"):
        load_config(overrides={"pk": {"models": {"kamp2020": {"k10_per_min": 0.005}}}})


def test_weight_scales_volume_not_the_time_course() -> None:
    light, heavy = model("hijazi", 50.0), model("hijazi", 100.0)
    light.update(0.5 * 50 * 4, 0.0, 4 * H)
    heavy.update(0.5 * 100 * 4, 0.0, 4 * H)
    assert heavy.concentration_at(4 * H) == pytest.approx(light.concentration_at(4 * H), rel=1e-12)
    assert heavy.params.v1_l == pytest.approx(108.0)


def test_course_doc_lists_the_shipped_models() -> None:
    """docs/course.md's model table is the shipped configuration's, numbers and sources."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "course.md").read_text()
    table = doc.split("<!-- pk-models:begin -->", 1)[1].split("<!-- pk-models:end -->", 1)[0].strip()
    assert table == models_markdown(CFG), "update the table in docs/course.md from pk.models_markdown"
