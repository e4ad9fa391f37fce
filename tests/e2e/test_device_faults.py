"""Line faults over real ptys: a monitor cable pulled and re-seated, garbled bytes on both lines."""

from __future__ import annotations

from monitord.events import EventKind
from tests.e2e.harness import MONITOR_TIMEOUT_S, running_bed


async def test_monitor_unplugged_raises_one_technical_alarm_then_recovers() -> None:
    async with running_bed("monitor-unplugged", "modbus") as bed:
        raised = await bed.wait_for(lambda: bed.alarms("tech.monitor_lost"), "tech.monitor_lost raised")
        # noticed after the cable came out (2 s) and the monitor's timeout, not before
        assert bed.at(raised[0]) >= 2.0 + MONITOR_TIMEOUT_S - 0.5
        assert raised[0].data["priority"] == "medium"
        await bed.wait_for(lambda: "silent" in bed.links("monitor"), "the monitor link reported silent")
        cleared = await bed.wait_for(lambda: bed.alarms("tech.monitor_lost", "cleared"), "tech.monitor_lost cleared")
        assert bed.at(cleared[0]) >= 6.0  # the cable is back at 6 s
        assert bed.links("monitor")[-1] == "connected"
        n = len(bed.vitals_with("hr"))
        await bed.wait_for(lambda: len(bed.vitals_with("hr")) >= n + 2, "vitals after the cable is back")
    # one technical alarm for the device, never one per parameter, no physiological false alarm
    assert len(bed.alarms("tech.monitor_lost")) == 1
    assert {e.data["rule_id"] for e in bed.sounding_alarms()} == {"tech.monitor_lost"}


async def test_garbled_bytes_are_counted_and_readings_carry_on() -> None:
    async with running_bed("garbled", "modbus") as bed:
        monitor, pump = bed.driver("monitor"), bed.driver("pump")
        await bed.wait_for(lambda: monitor.protocol_errors > 0 and pump.protocol_errors > 0,
                           "protocol errors counted on both lines")
        garbled_at = bed.engine.clock.monotonic()
        await bed.wait_for(lambda: bed.runner.now() > 5.5, "the garbled period to end")
        clean_from = bed.engine.clock.monotonic()
        await bed.wait_for(
            lambda: len([e for e in bed.vitals_with("hr") if e.mono > clean_from]) >= 2
            and len([e for e in bed.of(EventKind.INFUSION) if e.mono > clean_from]) >= 2,
            "monitor and pump readings after the line is clean again",
        )
        await bed.wait_for(lambda: bed.links("monitor")[-1] == "connected" and bed.links("pump")[-1] == "connected",
                           "both links connected again")
        # the drivers are still running: bad bytes never end monitoring
        assert all(not t.done() for t in [bed.play] if t is not None)
        assert monitor.frames_ok > 0 and pump.frames_ok > 0
    assert garbled_at >= bed.start_mono + 2.0 - 0.5
    # the count reached the engine with the link state, for the dashboard and the record
    errors = [e.data["protocol_errors"] for e in bed.of(EventKind.LINK)]
    assert max(errors) > 0
