"""A course on a Philips IntelliVue over real ptys: the IntelliVue simulator plays a scenario file,
the real IntelliVue driver associates and polls, the rule loop and engine judge; the scenario's
own expectations must hold."""

from __future__ import annotations

from monitord.drivers.monitor_intellivue import IntelliVueMonitorDriver
from monitord.events import EventKind
from monitord.scenario import check
from monitord.simulators.intellivue_sim import IntelliVueSimulator
from tests.e2e.harness import running_bed


async def test_the_monitors_apnoea_flag_on_an_intellivue_alarms_high_as_the_scenario_expects() -> None:
    async with running_bed("monitor-apnoea-flag", "modbus", monitor="intellivue") as bed:
        assert isinstance(bed.driver("monitor"), IntelliVueMonitorDriver)
        assert isinstance(bed.runner.monitor, IntelliVueSimulator)
        raised = await bed.wait_for(lambda: bed.alarms("resp.apnoea"), "resp.apnoea raised")
        await bed.finish()
        sim = bed.runner.monitor
        snap = bed.engine.snapshot()

    # the scenario's [[expect]]: HIGH apnoea once, after the monitor's flag at 4 s; nothing else sounds
    assert check(bed.scenario, bed.events, bed.start_mono) == []
    assert raised[0].data["priority"] == "high" and bed.at(raised[0]) >= 4.0 - 0.5
    assert {e.data["rule_id"] for e in bed.sounding_alarms()} == {"resp.apnoea"}
    # it came from the monitor's alert list (NOM_EVT_APNEA), not from the numbers: RR stayed at 14
    flagged = [e for e in bed.of(EventKind.DEVICE_ALARM) if "apnoea" in e.data["active"]]
    assert flagged and flagged[0].data["device"] == "monitor"
    assert bed.alarms("resp.apnoea")[0].mono >= flagged[0].mono
    rr = [e.data["values"]["rr"] for e in bed.vitals_with("rr")]
    assert rr and set(rr) == {14.0}
    # the monitor's numerics and its NIBP crossed the Data Export link; the pump ran
    hr = [e.data["values"]["hr"] for e in bed.vitals_with("hr")]
    assert len(hr) >= 4 and all(68 <= v <= 76 for v in hr)
    assert snap["vitals"]["sbp"]["value"] == 122
    assert sim.associations >= 1 and sim.numeric_results >= 4 and sim.alarm_results >= 4
    assert snap["infusion"]["state"] == "running" and snap["infusion"]["dose_rate_mg_kg_h"] == 0.5
    assert [o.error for o in bed.runner.outcomes if o.error] == []
