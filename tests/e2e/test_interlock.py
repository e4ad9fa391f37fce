"""The pump stop interlock over real ptys, with both pump protocols: the stop reaches the
simulated pump, the pump's own reports confirm it; a pump that ignores it raises the latched alarm."""

from __future__ import annotations

import pytest

from monitord.events import EventKind
from tests.e2e.harness import running_bed


def _steps(bed) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.data["step"] for e in bed.of(EventKind.INTERLOCK)]


@pytest.mark.parametrize("pump", ["modbus", "ne500"])
async def test_apnoea_stops_the_simulated_pump_and_its_reports_confirm_it(pump: str) -> None:
    async with running_bed("interlock-apnoea", pump) as bed:
        await bed.wait_for(lambda: "confirmed" in _steps(bed), "interlock confirmed")
        assert _steps(bed)[:3] == ["armed", "triggered", "command_sent"]
        assert bed.alarms("resp.apnoea")[0].data["priority"] == "high"
        # the simulated pump really stopped (its model, on the device side of the pty)
        assert bed.runner.model is not None and bed.runner.model.state.value in ("stopped", "paused")
        assert bed.engine.snapshot()["interlock"]["phase"] == "holding"
        assert bed.engine.snapshot()["infusion"]["state"] in ("stopped", "paused")
        assert bed.alarms("interlock.not_stopped") == []


async def test_a_pump_that_ignores_the_stop_raises_the_latched_alarm() -> None:
    async with running_bed("interlock-apnoea", "modbus", start=False) as bed:
        model = bed.runner.model
        assert model is not None
        model.stop = lambda *a, **k: None  # type: ignore[method-assign]  # the pump ignores the command
        model.pause = lambda *a, **k: None  # type: ignore[method-assign]
        import asyncio

        bed.start_mono = bed.engine.clock.monotonic()
        bed.play = asyncio.create_task(bed.runner.play())
        raised = await bed.wait_for(lambda: bed.alarms("interlock.not_stopped"), "interlock.not_stopped raised")
        assert raised[0].data["priority"] == "high"
        assert _steps(bed).count("command_sent") == 2  # the first and one retry
        await bed.wait_for(lambda: any(a["rule_id"] == "interlock.not_stopped" for a in bed.engine.snapshot()["alarms"]),
                           "still active")


@pytest.mark.parametrize("pump", ["modbus", "ne500"])
async def test_disabled_by_default_nothing_but_reads_reach_the_pump(pump: str) -> None:
    """Apnoea with the interlock off (the default): the alarm, and not one command on the wire."""
    async with running_bed("apnoea-no-interlock", pump) as bed:
        await bed.wait_for(lambda: bed.alarms("resp.apnoea"), "apnoea raised")
        await bed.finish()
        sim = bed.runner.pump_sim
        if pump == "modbus":
            assert sim.writes == [] and sim.refused_writes == []
        else:
            names = {c.mnemonic for c in sim.commands}
            assert names and "STP" not in names
        assert bed.of(EventKind.INTERLOCK) == []
