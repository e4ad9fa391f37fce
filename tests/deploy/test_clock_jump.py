"""A step of the wall clock (NTP correcting a Pi that booted without a battery clock, or a bad
RTC) changes no duration and raises no alarm: infusion time, cumulative dose, alarm delays and
overdue checks run on the monotonic clock. Records still carry the wall time and whether the
clock was synchronised when it was taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from monitord import readings as r
from monitord.clock import FakeClock
from monitord.config import load_config
from monitord.engine import Engine
from monitord.events import Event, EventKind

DEVICES = {
    "pump": {"driver": "modbus", "serial": {"port": "/dev/monitord-pump"}, "timeout_s": 10},
    "monitor": {"driver": "datex", "serial": {"port": "/dev/monitord-monitor"}, "timeout_s": 15},
}
JUMP_AT = 1200  # seconds into the run; the wall clock steps here
TOTAL = 2400
START_AT = 60
PAUSE = (1190, 1205)  # infusion paused across the jump
SEDATION_AT = 1000  # the next assessment is due on the schedule grid at 1801 s, after the jump
SPO2_DIPS = [(1195, 1215, 88.0), (1500, 1510, 88.0)]  # the first outlasts the 15 s delay, the second not
DEVICE_EPOCH = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)  # the monitor's own clock: it does not jump


@dataclass
class Run:
    clock: FakeClock
    engine: Engine
    events: list[Event] = field(default_factory=list)
    jump_mono: float | None = None

    def alarms(self) -> list[tuple[float, str, str, str]]:
        return [(e.mono, e.data["rule_id"], e.data["transition"], e.data["priority"])
                for e in self.events if e.kind is EventKind.ALARM]


def play(jump_s: float | None, unsync_at_jump: bool = False) -> Run:
    clock = FakeClock()
    engine = Engine(load_config(overrides={"devices": DEVICES}), clock)
    run = Run(clock, engine)
    engine.subscribe(run.events.append)
    engine.submit(r.Admit("P-1", 70.0, 45, "rn1"))
    engine.submit(r.SetOrder("ketamine", 1.0, 35.0, "rn1", syringe_ml=50.0))  # 0.5 mg/kg/h
    engine.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in engine.config.checklist}, "rn1"))
    volume, state = 0.0, r.PumpState.RUNNING
    for t in range(1, TOTAL + 1):
        if jump_s is not None and t == JUMP_AT:
            clock.jump_wall(jump_s)
            run.jump_mono = clock.monotonic()
            if unsync_at_jump:
                clock.synchronized = False
        clock.advance(1)
        if t == PAUSE[0]:
            engine.submit(r.PauseInfusion("rn1", "line check"))
            state = r.PumpState.PAUSED
        if t == PAUSE[1]:
            engine.submit(r.ResumeInfusion("rn1"))
            state = r.PumpState.RUNNING
        if state is r.PumpState.RUNNING:
            volume += 35.0 / 3600
        engine.submit(r.PumpReading("pump", state, rate_ml_h=35.0, volume_infused_ml=volume, drug="ketamine",
                                    concentration_mg_ml=1.0, syringe_ml=50.0))
        spo2 = next((v for a, b, v in SPO2_DIPS if a <= t < b), 98.0)
        values: dict[r.Vital, float | None] = {r.Vital.HR: 72.0, r.Vital.SPO2: spo2, r.Vital.RR: 14.0,
                                               r.Vital.ETCO2: 38.0}
        nibp_time = None
        if t % 300 == 1:
            values |= {r.Vital.SBP: 122.0, r.Vital.DBP: 76.0, r.Vital.MAP: 91.0}
            nibp_time = DEVICE_EPOCH + timedelta(seconds=t)
        engine.submit(r.VitalsReading("monitor", values, device_time=DEVICE_EPOCH + timedelta(seconds=t),
                                      nibp_time=nibp_time))
        if t == START_AT:
            engine.submit(r.StartInfusion("rn1"))
            engine.submit(r.SedationScore(r.SedationScale.RASS, 0, "rn1"))
        if t == SEDATION_AT:
            engine.submit(r.SedationScore(r.SedationScale.RASS, 0, "rn1"))
        engine.tick()
    return run


@pytest.fixture(scope="module")
def steady() -> Run:
    return play(None)


@pytest.mark.parametrize("jump_s", [3600.0, -3600.0], ids=["forward-1h", "backward-1h"])
def test_wall_clock_jump_changes_no_duration_and_raises_no_alarm(steady: Run, jump_s: float) -> None:
    jumped = play(jump_s)

    # The jump happened: records after it carry the stepped wall time.
    assert jumped.clock.utc_now() - steady.clock.utc_now() == timedelta(seconds=jump_s)
    assert jumped.events[-1].time - steady.events[-1].time == timedelta(seconds=jump_s)

    # Durations: infusion time (the pump's, with a pause across the jump) and cumulative dose are identical.
    s, j = steady.engine.snapshot()["infusion"], jumped.engine.snapshot()["infusion"]
    assert j["infusion_time_s"] == s["infusion_time_s"] == TOTAL - 1 - (PAUSE[1] - PAUSE[0])
    assert j["cumulative_mg"] == s["cumulative_mg"]
    # 1 mg/mL x the volume the pump reported between its first and last reading.
    assert s["cumulative_mg"] == pytest.approx(35.0 * (TOTAL - 1 - (PAUSE[1] - PAUSE[0])) / 3600, abs=1e-4)

    # Alarms: the same transitions at the same monotonic times, nothing extra at the jump.
    assert jumped.alarms() == steady.alarms()
    raised = {(rule, mono) for mono, rule, transition, _ in steady.alarms() if transition == "raised"}
    base = steady.clock.monotonic() - TOTAL
    # The SpO2 dip that straddles the jump is alarmed exactly after its 15 s delay ...
    assert ("vital.spo2_low", base + SPO2_DIPS[0][0] + 15) in raised
    # ... the short dip never is, and the next observation is due on the schedule grid.
    assert not any(rule == "vital.spo2_low" and mono > base + 1400 for rule, mono in raised)
    due = base + 1 + 2 * 900  # on the schedule grid from the pump's first infusing report (t=1): 901, 1801, ...
    assert any(rule == "obs.due" and due <= mono <= due + 1 for rule, mono in raised)
    assert jumped.jump_mono is not None
    assert not [a for a in jumped.alarms() if jumped.jump_mono <= a[0] <= jumped.jump_mono + 5]


def test_records_say_whether_the_clock_was_synchronised() -> None:
    jumped = play(-3600.0, unsync_at_jump=True)
    assert jumped.jump_mono is not None
    before = [e for e in jumped.events if e.mono < jumped.jump_mono]
    after = [e for e in jumped.events if e.mono > jumped.jump_mono]
    assert before and all(e.clock_synced for e in before)
    assert after and not any(e.clock_synced for e in after)
    # The flag survives the one serialisation every output uses (store rows, MQTT payloads).
    wire = after[-1].to_dict()
    assert wire["clock_synced"] is False
    assert Event.from_dict(wire) == after[-1]
