"""Generated realistic courses: the burden goals on normal courses, detection of planted events,
reproducibility, and a burden report whose numbers are the engine's events."""

from __future__ import annotations

import io
import math
import statistics

import pytest

from monitord.burden import SOUNDING, analyse, report, run_corpus, signals, truncated
from monitord.config import Priority
from monitord.courses import NORMAL, generate
from monitord.events import EventKind
from monitord.readings import Vital
from monitord.scenario import Course, Expectation, check, play

SEEDS = range(1, 21)
MIN = 60


@pytest.fixture(scope="module")
def normal_courses() -> list:
    return run_corpus(SEEDS, kinds=(NORMAL,))


def _detail(results: list) -> str:
    return "\n".join(f"{b.name}: {'; '.join(b.failures())}\n  " + "\n  ".join(s.line() for s in b.signals)
                     for b in results if not b.ok)


def test_normal_courses_play_through_and_never_sound_high(normal_courses: list) -> None:
    assert [b.problems for b in normal_courses if b.problems] == []
    assert [b.name for b in normal_courses if b.count(Priority.HIGH)] == [], _detail(normal_courses)
    assert all(b.high_s == 0 for b in normal_courses)


def test_normal_courses_sound_at_most_two_alarms(normal_courses: list) -> None:
    assert [b.name for b in normal_courses if not b.ok] == [], _detail(normal_courses)


def test_same_seed_same_course_and_same_alarms() -> None:
    a, b = generate(5, "wrong_concentration"), generate(5, "wrong_concentration")
    assert a.data == b.data and a.planted == b.planted
    assert generate(6, "wrong_concentration").data != a.data
    short = truncated(a)
    runs = [play(short.scenario())[1] for _ in range(2)]
    key = [[(e.mono, e.data["rule_id"], e.data["transition"], e.data["priority"]) for e in run
            if e.kind is EventKind.ALARM] for run in runs]
    assert key[0] == key[1] and key[0]
    # The patient depends on the seed, not on what is planted.
    assert generate(5, NORMAL).patient == a.patient


@pytest.mark.parametrize("seed, kind", [(19, "spo2_86"), (5, "pump_10x")])
def test_report_numbers_are_the_engine_events(seed: int, kind: str) -> None:
    course = truncated(generate(seed, kind))
    sc = course.scenario()
    _, events, problems = play(sc)
    burden = analyse(course, events, problems)
    # Counted independently by the scenario runner's own expectation check.
    expect = [Expectation("*", transition=t, priority=[p.value],
                          count=sum(1 for s in burden.signals if s.transition == t and s.priority is p))
              for t in SOUNDING for p in (Priority.LOW, Priority.MEDIUM, Priority.HIGH)]
    sc.expectations = expect
    assert check(sc, events) == []
    assert burden.audible == sum(e.count or 0 for e in expect) > 0
    out = io.StringIO()
    report([burden], out)
    row = next(line for line in out.getvalue().splitlines() if line.startswith(course.name + " "))
    low, med, high, aud, high_s = row.split()[2:7]
    assert [int(low), int(med), int(high), int(aud)] == [
        burden.count(Priority.LOW), burden.count(Priority.MEDIUM), burden.count(Priority.HIGH), burden.audible]
    assert float(high_s) == pytest.approx(burden.high_s, abs=0.5)
    if kind == "pump_10x":
        # HIGH from the tenfold rate until the nurse corrects the pump, nothing else at HIGH.
        assert burden.high_s == pytest.approx(course.planted.ends_s - course.planted.at_s, abs=1)
        assert signals(events) == burden.signals


def _series(course, vital: Vital, every: float = 1.0) -> list[tuple[float, float | None]]:
    c = Course(course.scenario())
    out, t = [], 0.0
    while t <= course.duration_s:
        c.advance(t)
        out.append((t, c.vitals_at().get(vital)))
        t += every
    return out


def test_a_normal_course_is_what_it_claims() -> None:
    """Ketamine's rise, one displaced EtCO2 line with breaths still counted, the observation
    schedule, a rate change, Stop at about 4 h, discharge after observation."""
    course = generate(2)
    at, steps = course.steps_at, course.data["step"]
    start, stop = at["start"], at["stop"]
    assert abs(stop - start - 4 * 3600) <= 3 * MIN
    assert at["discharge"] - stop >= 30 * MIN
    et = _series(course, Vital.ETCO2)
    rr = dict(_series(course, Vital.RR))
    low = [t for t, v in et if v is not None and v < 15]
    assert 60 <= len(low) <= 121 and low[-1] - low[0] == len(low) - 1  # one episode, a minute or two
    assert all((rr[t] or 0) > 8 for t in low)
    hr = _series(course, Vital.HR, 10)
    base = statistics.mean(v for t, v in hr if t < start and v is not None)
    plateau = statistics.mean(v for t, v in hr if start + 90 * MIN < t < stop - 10 * MIN and v is not None)
    assert 1.12 < plateau / base < 1.35
    sed = sorted(s["at"] for s in steps if "sedation" in s)
    assert sum(1 for t in sed if start < t <= start + 66 * MIN) >= 4
    assert max(b - a for a, b in zip(sed, sed[1:], strict=False)) <= 40 * MIN
    assert any(t > stop for t in sed)
    assert sum(1 for s in steps if "order" in s) == 2 and any(s.get("pump", {}).get("rate_ml_h") for s in steps
                                                              if s["at"] > start + 20 * MIN)
    assert 5 * MIN <= course.data["monitor"]["nibp_cycle"] <= 15 * MIN


def test_the_corpus_varies_and_has_one_rescue_patient_in_eight() -> None:
    courses = [generate(s) for s in range(1, 9)]
    assert len({c.patient for c in courses}) == 8
    rescued = [c for c in courses if any("rescue" in s for s in c.data["step"])]
    assert len(rescued) == 1
    steps = rescued[0].data["step"]
    assert any(s.get("effects", {}).get("severity") == "mild" for s in steps)
    weights = [next(s["admit"]["weight_kg"] for s in c.data["step"] if "admit" in s) for c in courses]
    assert max(weights) - min(weights) > 15 and not any(math.isnan(w) for w in weights)
