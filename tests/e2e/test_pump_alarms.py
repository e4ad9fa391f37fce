"""Pump alarms over real ptys, for both pump protocols: occlusion and an emptied syringe."""

from __future__ import annotations

import pytest

from monitord.events import EventKind
from tests.e2e.harness import running_bed


@pytest.mark.parametrize("pump", ["modbus", "ne500"])
async def test_occlusion_raises_a_high_technical_alarm_that_clears_on_restart(pump: str) -> None:
    async with running_bed("occlusion", pump) as bed:
        raised = await bed.wait_for(lambda: bed.alarms("tech.pump.occlusion"), "tech.pump.occlusion raised")
        assert raised[0].data["priority"] == "high"
        assert bed.at(raised[0]) >= 2.0  # not before the pump reported it
        # the pump stopped, and said so on the wire
        await bed.wait_for(lambda: bed.engine.snapshot()["infusion"]["state"] == "stopped", "pump reported stopped")
        assert "occlusion" in bed.engine.snapshot()["device_alarms"]["pump"]
        cleared = await bed.wait_for(lambda: bed.alarms("tech.pump.occlusion", "cleared"), "occlusion cleared")
        assert bed.at(cleared[0]) >= 5.0
        await bed.wait_for(lambda: bed.engine.snapshot()["infusion"]["state"] == "running", "pump running again")
    others = {e.data["rule_id"] for e in bed.sounding_alarms()} - {"tech.pump.occlusion"}
    assert others == set()


@pytest.mark.parametrize("pump", ["modbus", "ne500"])
async def test_syringe_empty_raises_tech_pump_empty_and_the_pump_stops(pump: str) -> None:
    async with running_bed("syringe-empty", pump) as bed:
        raised = await bed.wait_for(lambda: bed.alarms("tech.pump.empty"), "tech.pump.empty raised")
        assert raised[0].data["priority"] == "high"
        assert bed.at(raised[0]) >= 3.0
        assert bed.engine.snapshot()["infusion"]["state"] == "stopped"
        # empty is not mistaken for an occlusion (the NE-500 cannot tell a stall from an empty syringe)
        assert bed.alarms("tech.pump.occlusion") == []
        infused = [e.data["volume_infused_ml"] for e in bed.of(EventKind.INFUSION) if e.data["volume_infused_ml"]]
        assert infused and infused[-1] > 0
