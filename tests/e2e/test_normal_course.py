"""A normal course over real ptys, for both pump protocols: readings flow, dose computed, no alarm."""

from __future__ import annotations

import pytest

from monitord.events import EventKind
from tests.e2e.harness import running_bed


@pytest.mark.parametrize("pump", ["modbus", "ne500", "ne500-safe"])
async def test_normal_course_reads_both_devices_computes_dose_and_stays_quiet(pump: str) -> None:
    async with running_bed("normal", pump) as bed:
        await bed.finish()
        snap = bed.engine.snapshot()

    assert [o.error for o in bed.runner.outcomes if o.error] == []
    assert snap["status"] == "running"
    # the pump's programming crossed the wire and the engine derived the dose from it
    infusion = snap["infusion"]
    assert infusion["state"] == "running"
    assert infusion["rate_ml_h"] == pytest.approx(35.0)
    assert infusion["dose_rate_mg_kg_h"] == pytest.approx(0.5)
    assert infusion["cumulative_mg"] > 0
    running = [e for e in bed.of(EventKind.INFUSION) if e.data["state"] == "running"]
    assert len(running) >= 5, "pump readings should keep arriving while it runs"
    # vitals arrived with the scenario's values (72/min +-2 noise)
    hr = [e.data["values"]["hr"] for e in bed.vitals_with("hr")]
    assert len(hr) >= 4 and all(68 <= v <= 76 for v in hr)
    assert snap["vitals"]["sbp"]["value"] == 122
    # and nothing sounded
    assert bed.sounding_alarms() == [], [(e.data["rule_id"], e.data["message"]) for e in bed.sounding_alarms()]
