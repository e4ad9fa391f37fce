"""Generated realistic courses with a planted event: each is detected at its priority within its
delay, and the detection check can fail. (Apart from ``test_courses.py`` so that the two corpora
play on different test workers.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitord.burden import analyse, run_courses, truncated
from monitord.courses import PLANTED_KINDS, generate
from monitord.scenario import play
from tests.core.test_courses import SEEDS, _detail


@pytest.fixture(scope="module")
def planted_courses() -> list:
    # One planted kind per seed, rotating: over 20 seeds each kind is planted in 2-3 patients at
    # different times, each course cut a minute after its event to keep the test short.
    # bench/burden.py and `monitord scenario --burden --seeds 20` play every kind for every seed.
    return run_courses([(s, PLANTED_KINDS[s % len(PLANTED_KINDS)]) for s in SEEDS], short=True)



def test_every_planted_event_alarms_at_its_priority_within_its_delay(planted_courses: list) -> None:
    assert {b.kind for b in planted_courses} == set(PLANTED_KINDS)
    assert [b.problems for b in planted_courses if b.problems] == []
    late = [f"{b.name}: {b.detection.describe() if b.detection else '?'}" for b in planted_courses
            if b.detection is None or not b.detection.ok]
    assert late == [], "\n".join(late) + "\n" + _detail(planted_courses)
    for b in planted_courses:
        assert b.detection is not None and b.detection.seen_priority is not None
        assert b.detection.seen_priority.rank >= b.planted.priority.rank


def test_a_planted_event_that_is_missed_fails() -> None:
    """The detection check can fail: the same course judged against a rule that never fires."""
    course = truncated(generate(5, "pump_10x"))
    _, events, problems = play(course.scenario())
    assert analyse(course, events, problems).ok
    course.planted = replace(course.planted, rule="resp.apnoea")
    missed = analyse(course, events, problems)
    assert not missed.ok and missed.detection is not None and missed.detection.detected_s is None
