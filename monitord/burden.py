"""Alarm burden on generated courses: what sounds on a realistic course, and whether a planted
event is caught at its priority in time.

- Audible alarm: a transition that starts a sound or raises it, ``raised``, ``reactivated`` or
  ``escalated``, at priority low, medium or high (advisory is shown, never sounded).
- Time in HIGH: seconds during which an alarm at high priority was active (its condition
  present). A latched alarm waiting for a clinician's reset is not counted: the generated
  courses have no nurse resetting alarms.
- A planted event is detected when its rule is raised or escalated to at least its priority no
  later than its documented delay after the onset, plus one reading period (the time the engine
  needs to see the reading at all). The onset is when the condition is present in every reading;
  for NIBP it is the first measurement showing it.

Goals, per generated course (one 4-hour infusion): a normal course sounds no HIGH alarm and at
most two audible alarms; every planted event is detected.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TextIO

from monitord.clock import FakeClock
from monitord.config import Config, Priority
from monitord.courses import KINDS, NORMAL, GeneratedCourse, Planted, generate
from monitord.events import Event, EventKind
from monitord.scenario import play

GOAL_MAX_AUDIBLE = 2  # per normal 4-hour course: acceptance goal for alarm burden
GOAL_MAX_HIGH = 0
AUDIBLE = (Priority.LOW, Priority.MEDIUM, Priority.HIGH)
SOUNDING = ("raised", "reactivated", "escalated")
START_MONO = FakeClock().monotonic()  # the runner's clock at course time 0


@dataclass(frozen=True)
class Signal:
    """One audible alarm transition."""

    at_s: float
    rule: str
    priority: Priority
    transition: str
    message: str

    def line(self) -> str:
        return f"{clock(self.at_s)} {self.transition:<11} {self.priority.value:<6} {self.rule:<28} {self.message}"


@dataclass(frozen=True)
class Detection:
    rule: str
    priority: Priority
    delay_s: float
    allowed_s: float  # delay plus one reading period
    onset_s: float | None
    detected_s: float | None
    seen_priority: Priority | None

    @property
    def latency_s(self) -> float | None:
        if self.detected_s is None or self.onset_s is None:
            return None
        return self.detected_s - self.onset_s

    @property
    def ok(self) -> bool:
        return self.latency_s is not None and self.latency_s <= self.allowed_s

    def describe(self) -> str:
        want = f"{self.rule} {self.priority.value} within {self.delay_s:g} s"
        if self.onset_s is None:
            return f"{want}: the event never showed in the readings"
        if self.detected_s is None or self.latency_s is None:
            return f"{want}: not raised at that priority (onset {clock(self.onset_s)})"
        return f"{want}: {self.latency_s:g} s after onset {clock(self.onset_s)}"


@dataclass
class CourseBurden:
    seed: int
    kind: str
    name: str
    patient: str
    duration_s: float
    signals: list[Signal]
    high_s: float
    planted: Planted | None = None
    detection: Detection | None = None
    problems: list[str] = field(default_factory=list)

    def count(self, priority: Priority) -> int:
        return sum(1 for s in self.signals if s.priority is priority)

    @property
    def audible(self) -> int:
        return len(self.signals)

    def failures(self) -> list[str]:
        out = list(self.problems)
        if self.kind == NORMAL:
            if self.count(Priority.HIGH) > GOAL_MAX_HIGH:
                out.append(f"{self.count(Priority.HIGH)} HIGH")
            if self.audible > GOAL_MAX_AUDIBLE:
                out.append(f"{self.audible} audible > {GOAL_MAX_AUDIBLE}")
        elif self.detection is None or not self.detection.ok:
            out.append("planted event " + (self.detection.describe() if self.detection else "not analysed"))
        return out

    @property
    def ok(self) -> bool:
        return not self.failures()


def clock(t: float) -> str:
    """Course time as h:mm:ss."""
    t = int(round(t))
    return f"{t // 3600}:{t % 3600 // 60:02d}:{t % 60:02d}"


def signals(events: Iterable[Event]) -> list[Signal]:
    out = []
    for e in events:
        if e.kind is not EventKind.ALARM:
            continue
        d = e.data
        prio = Priority(d["priority"])
        if d["transition"] in SOUNDING and prio in AUDIBLE:
            out.append(Signal(e.mono - START_MONO, d["rule_id"], prio, d["transition"], d["message"]))
    return out


def time_in_high(events: Iterable[Event], end_s: float) -> float:
    """Seconds with at least one active (not latched) alarm at high priority."""
    present: dict[str, tuple[str, str]] = {}  # rule -> (priority, state)
    total, since = 0.0, None
    for e in events:
        if e.kind is not EventKind.ALARM:
            continue
        d, t = e.data, e.mono - START_MONO
        if d["transition"] in ("cleared", "reset"):
            present.pop(d["rule_id"], None)
        else:
            present[d["rule_id"]] = (d["priority"], d["state"])
        high = any(p == Priority.HIGH.value and s == "active" for p, s in present.values())
        if high and since is None:
            since = t
        elif not high and since is not None:
            total, since = total + t - since, None
    if since is not None:
        total += max(0.0, end_s - since)
    return total


def _onset(planted: Planted, events: Sequence[Event]) -> float | None:
    if planted.onset_s is not None:
        return planted.onset_s
    for e in events:  # NIBP: the first measurement at or after the event that shows it
        t = e.mono - START_MONO
        if e.kind is EventKind.VITALS and t >= planted.at_s and e.data.get("new_nibp"):
            sbp = e.data["values"].get("sbp")
            if sbp is not None and planted.nibp_above is not None and sbp > planted.nibp_above:
                return t
    return None


def detection(planted: Planted, events: Sequence[Event], reading_s: float) -> Detection:
    onset = _onset(planted, events)
    found = None
    for e in events:
        d = e.data
        if (e.kind is EventKind.ALARM and d["rule_id"] == planted.rule and d["transition"] in SOUNDING
                and e.mono - START_MONO >= planted.at_s and Priority(d["priority"]).rank >= planted.priority.rank):
            found = e
            break
    return Detection(planted.rule, planted.priority, planted.delay_s, planted.delay_s + reading_s, onset,
                     None if found is None else found.mono - START_MONO,
                     None if found is None else Priority(found.data["priority"]))


def analyse(course: GeneratedCourse, events: Sequence[Event], problems: Sequence[str] = (),
            end_s: float | None = None) -> CourseBurden:
    """The burden of one played course, from its events."""
    sc = course.scenario()
    end = sc.duration_s if end_s is None else end_s
    det = None
    if course.planted is not None:
        det = detection(course.planted, events, max(sc.monitor_period_s, sc.pump_period_s))
    return CourseBurden(course.seed, course.kind, course.name, course.patient, end, signals(events),
                        time_in_high(events, end), course.planted, det, list(problems))


def truncated(course: GeneratedCourse) -> GeneratedCourse:
    """The course cut short a minute after its planted event's detection window (for tests)."""
    p = course.planted
    if p is None:
        return course
    end = max(p.ends_s, (p.onset_s or p.at_s) + p.delay_s) + 60
    return replace(course, data=course.data | {"duration": min(course.duration_s, end)})


def measure(course: GeneratedCourse, config: Config | None = None) -> CourseBurden:
    sc = course.scenario()
    _, events, problems = play(sc, config)
    return analyse(course, events, problems)


def _measure_one(job: tuple[int, str, bool]) -> CourseBurden:
    seed, kind, short = job
    course = generate(seed, kind)
    return measure(truncated(course) if short else course)


def run_courses(pairs: Sequence[tuple[int, str]], jobs: int | None = None, short: bool = False) -> list[CourseBurden]:
    """Generate and measure the course of each (seed, kind), in ``jobs`` processes (default: one
    per CPU). ``short``: cut planted courses after their event (detection only; partial burden)."""
    work = [(seed, kind, short) for seed, kind in pairs]
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(work) <= 1:
        return [_measure_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
        return list(pool.map(_measure_one, work))


def run_corpus(seeds: int | range, kinds: Sequence[str] = KINDS, jobs: int | None = None,
               short: bool = False) -> list[CourseBurden]:
    """Every kind for every seed (1..N for an int)."""
    seq = range(1, seeds + 1) if isinstance(seeds, int) else seeds
    return run_courses([(s, k) for k in kinds for s in seq], jobs, short)


def _planted_cell(b: CourseBurden) -> str:
    d = b.detection
    if d is None:
        return "-"
    if d.latency_s is None:
        return f"{d.rule} NOT DETECTED"
    seen = d.seen_priority.value if d.seen_priority else "?"
    return f"{d.rule} {seen} {d.latency_s:+.0f} s (<= {d.allowed_s:g})"


def report(results: Sequence[CourseBurden], out: TextIO = sys.stdout, events: bool = False) -> bool:
    """Print one row per course, totals per kind and the goals; True when every goal is met."""
    w = out.write
    w("low/med/high/aud: audible alarms (raised, reactivated or escalated at that priority; advisory never sounds);\n"
      "HIGH s: seconds with an active HIGH alarm; planted: the rule, the priority it reached and its latency from\n"
      "the onset (allowed: its configured delay plus one reading period)\n\n")
    w(f"{'course':<24} {'low':>3} {'med':>3} {'high':>4} {'aud':>3} {'HIGH s':>6}  {'planted event detected':<50} "
      f"result  patient\n")
    for b in results:
        fails = b.failures()
        w(f"{b.name:<24} {b.count(Priority.LOW):>3} {b.count(Priority.MEDIUM):>3} {b.count(Priority.HIGH):>4} "
          f"{b.audible:>3} {b.high_s:>6.0f}  {_planted_cell(b):<50} {'FAIL' if fails else 'PASS':<6}  "
          f"{b.patient}\n")
        if events or fails:
            for msg in fails:
                w(f"    ! {msg}\n")
            for s in b.signals:
                w(f"    {s.line()}\n")
    w("\ntotals per kind\n")
    w(f"{'kind':<20} {'courses':>7} {'low':>4} {'med':>4} {'high':>4} {'aud/course':>10} {'max':>4} "
      f"{'HIGH s':>7}  detected in time\n")
    for kind in dict.fromkeys(b.kind for b in results):
        group = [b for b in results if b.kind == kind]
        n = len(group)
        det = [b.detection for b in group if b.detection is not None]
        found = f"{sum(d.ok for d in det)}/{len(det)}" if det else "-"
        lat = [d.latency_s for d in det if d.latency_s is not None]
        if lat:
            found += f" (latency {min(lat):+.0f}..{max(lat):+.0f} s)"
        w(f"{kind:<20} {n:>7} {sum(b.count(Priority.LOW) for b in group):>4} "
          f"{sum(b.count(Priority.MEDIUM) for b in group):>4} {sum(b.count(Priority.HIGH) for b in group):>4} "
          f"{sum(b.audible for b in group) / n:>10.2f} {max(b.audible for b in group):>4} "
          f"{sum(b.high_s for b in group):>7.0f}  {found}\n")
    normal = [b for b in results if b.kind == NORMAL]
    if normal:
        by_rule = Counter((s.rule, s.priority.value) for b in normal for s in b.signals)
        w("\naudible alarms on normal courses by rule: "
          + (", ".join(f"{r} {p} x{n}" for (r, p), n in by_rule.most_common()) or "none") + "\n")
    planted = [b for b in results if b.kind != NORMAL]
    broken = [b for b in results if b.problems]
    goals = [
        (f"normal courses: {GOAL_MAX_HIGH} HIGH", [b for b in normal if b.count(Priority.HIGH) > GOAL_MAX_HIGH],
         normal),
        (f"normal courses: <= {GOAL_MAX_AUDIBLE} audible alarms per 4-h course",
         [b for b in normal if b.audible > GOAL_MAX_AUDIBLE], normal),
        ("planted events: detected at their priority within their delay",
         [b for b in planted if b.detection is None or not b.detection.ok], planted),
        ("every course played without a refused step", broken, list(results)),
    ]
    w("\ngoals\n")
    ok = True
    for text, failed, among in goals:
        if not among:
            continue
        met = not failed
        ok &= met
        names = ", ".join(b.name for b in failed[:12]) + (" ..." if len(failed) > 12 else "")
        w(f"  {'PASS' if met else 'FAIL'}  {text}: {len(among) - len(failed)}/{len(among)} courses"
          + (f" (failing: {names})" if failed else "") + "\n")
    return ok


def main(seeds: int = 8, events: bool = False, out: TextIO = sys.stdout) -> int:
    """``monitord scenario --burden``: the corpus over ``seeds`` seeds; 1 when a goal fails."""
    if seeds < 1:
        out.write("--seeds must be at least 1\n")
        return 2
    results = run_corpus(seeds)
    out.write(f"Alarm burden: {seeds} seed(s) x {len(KINDS)} course kinds (generated 4-hour courses)\n\n")
    return 0 if report(results, out, events) else 1
