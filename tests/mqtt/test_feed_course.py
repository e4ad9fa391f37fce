"""What the feed adds for the whole course: the plasma-concentration estimate (a model estimate,
never a measurement), the plan, discharge readiness, the next observation, the interlock's phase
and steps, and each observation with the time it was due and how late it came."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from monitord.mqtt import payloads, schemas
from monitord.readings import (
    Effect,
    InterlockRelease,
    PainScore,
    PsychomimeticEffects,
    PumpReading,
    PumpState,
    SedationScale,
    SedationScore,
)
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import INTERLOCK, Bed, bed_config
from tests.mqtt.support import Received, Subscriber, until
from tests.mqtt.test_feed import SCHEMA_OF_LEAF, leaf


def valid(messages: list[Received]) -> None:
    for m in messages:
        problems = schemas.errors(SCHEMA_OF_LEAF[leaf(m.topic)], m.payload)
        assert not problems, (m.topic, problems, m.payload)


@pytest.fixture
async def course_bed(broker: Mosquitto, subscriber: Subscriber) -> AsyncIterator[Bed]:
    """A bed with the interlock on, started after the station subscribed (it sees 'armed')."""
    b = await Bed(bed_config(broker.port, "bed-c", more=INTERLOCK)).start()
    b.obey_stop_commands()
    yield b
    await b.stop()


async def run_pump(bed: Bed, minutes: int) -> None:
    """The pump reports every minute at 10 mL/h of 1 mg/mL."""
    for k in range(1, minutes + 1):
        bed.clock.advance(60)
        bed.loop.put(PumpReading("pump", PumpState.RUNNING, rate_ml_h=10.0, volume_infused_ml=round(k * 10 / 60, 3),
                                 drug="ketamine", concentration_mg_ml=1.0))
    await bed.settled()


async def test_state_carries_the_estimate_plan_readiness_and_interlock(course_bed: Bed, subscriber: Subscriber) -> None:
    bed = course_bed
    await bed.start_course(planned_duration_min=240)
    await run_pump(bed, 30)
    snap = bed.engine.snapshot()
    want = snap["estimate"]["concentration_ng_ml"]
    assert want > 0

    def latest() -> dict | None:  # type: ignore[type-arg]
        states = [m.payload for m in subscriber.on("/bed-c/state") if m.payload["seq"] >= snap["seq"]]
        return states[-1] if states else None

    state = await subscriber.until(lambda s: latest(), what="state after 30 min of pump reports")
    valid(subscriber.on("/bed-c/state"))
    est = state["estimate"]
    assert est["kind"] == "model_estimate" and "not a measurement" in est["quantity"]
    assert est["concentration"] == {"value": want, "unit": "ng/mL"}  # no MDC code: not an observation
    assert est["model"] == snap["estimate"]["model"] and est["source"]
    assert est["peak"]["value"] >= want and est["analgesic_level"]["unit"] == "ng/mL"
    assert est["delivered"] == {"value": snap["estimate"]["delivered_mg"], "unit": "mg",
                                "unit_mdc": {"code": 263890, "refid": "MDC_DIM_MILLI_G"}}
    plan = state["plan"]
    assert plan["duration"] == {"value": 240, "unit": "min"}
    assert plan["total"]["value"] == 40.0  # 10 mL/h x 1 mg/mL x 4 h
    assert plan["delivered"]["value"] == snap["infusion"]["delivered_mg"]
    assert plan["projected_total"]["value"] == snap["infusion"]["projected_total_mg"]
    assert plan["reaches_minimum"] is False  # 40 mg is below the guideline's 80 mg for a first course
    assert state["discharge"]["ready"] is False
    crit = {c["id"]: c for c in state["discharge"]["criteria"]}
    assert crit["infusion_stopped"]["met"] is False and crit["infusion_stopped"]["detail"]
    assert state["observation"]["overdue"] is (snap["observation"]["overdue"])
    assert state["interlock"] == {"phase": "armed", "trigger": None, "attempts": 0, "pump_restarted": False,
                                  "since_s": snap["interlock"]["since_s"]}


async def test_interlock_steps_have_their_own_topic_schema_and_qos(course_bed: Bed, subscriber: Subscriber) -> None:
    bed = course_bed
    await bed.start_course()
    bed.fault()  # a trigger: the pump is told to stop and reports it stopped
    await until(lambda: bed.engine.snapshot()["interlock"]["phase"] == "holding", what="interlock holding")
    steps = await subscriber.until(
        lambda s: [m for m in s.on("/bed-c/events/interlock")] if len(s.on("/bed-c/events/interlock")) >= 4 else None,
        what="interlock events")
    valid(steps)
    assert [m.payload["step"] for m in steps] == ["armed", "triggered", "command_sent", "confirmed"]
    assert all(m.qos == 1 and not m.retain for m in steps)
    sent, confirmed = steps[2].payload, steps[3].payload
    assert sent["command"] == "stop" and sent["attempts"] == 1 and sent["trigger"] == "tech.pump.device_fault"
    assert confirmed["phase"] == "holding" and confirmed["pump_state"] == "stopped"
    assert confirmed["rate"]["value"] == 0.0 and confirmed["rate"]["unit"] == "mL/h"
    seqs = [m.payload["seq"] for m in steps]
    assert seqs == sorted(seqs)
    await subscriber.until(lambda s: s.on("/bed-c/state")[-1].payload["interlock"]["phase"] == "holding",
                           what="state shows the interlock holding")
    # Released at the bedside: published with who released it, not the free-text reason.
    await bed.loop.command(InterlockRelease(actor="n1", reason="breathing again, Mr Smith awake"))
    released = await subscriber.until(lambda s: [m for m in s.on("/bed-c/events/interlock")
                                                 if m.payload["step"] == "released"], what="release published")
    valid(released)
    assert released[0].payload["actor"] == "n1" and released[0].payload["from"] == "holding"
    assert released[0].payload["phase"] == "armed" and "Smith" not in str(released[0].payload)


async def test_observations_carry_their_due_time_and_lateness(course_bed: Bed, subscriber: Subscriber) -> None:
    bed = course_bed
    await bed.start_course()
    await bed.settled()
    due_in = bed.engine.snapshot()["observation"]["due_in_s"]
    due_at = bed.clock.utc_now() + timedelta(seconds=due_in)
    bed.clock.advance(due_in + 300)  # five minutes late
    await bed.loop.command(SedationScore(SedationScale.RASS, -1, actor="n1"))
    await bed.loop.command(PainScore(2, actor="n1"))
    await bed.loop.command(PsychomimeticEffects(frozenset({Effect.HALLUCINATIONS}), "n1",
                                                note="patient John Smith feels odd", severity="mild"))
    obs = await subscriber.until(lambda s: s.on("/bed-c/events/observation")
                                 if len(s.on("/bed-c/events/observation")) >= 3 else None, what="observations")
    valid(obs)
    sedation, pain, effects = (m.payload for m in obs)
    assert sedation["type"] == "sedation" and sedation["scale"] == "rass" and sedation["score"] == -1
    assert sedation["due_at"] == payloads.iso(due_at)
    assert sedation["late_s"] == 300.0
    assert sedation["actor"] == "n1" and all(m.qos == 1 and not m.retain for m in obs)
    assert pain["type"] == "pain" and pain["score"] == 2 and "due_at" in pain and "late_s" in pain
    assert effects["severity"] == "mild" and "note" not in effects  # free text stays in the store
    assert "John" not in str(effects)
