"""Several vital sources per bed: each vital from the preferred device that can give it, the
source shown with every value, a lost device its own technical alarm, and a switch to the next
source that is visible and never makes an alarm flicker."""

from __future__ import annotations

from typing import Any

import pytest

from monitord import readings as r
from monitord.config import ConfigError, load_config
from monitord.events import EventKind

from .conftest import DEVICES, Bed

OXIMETER = {"driver": "masimo", "serial": {"port": "sim"}, "timeout_s": 5}


def config(oximeter: dict[str, Any] | None = None, **devices: Any) -> Any:
    return load_config(overrides={"devices": {**DEVICES, "oximeter": {**OXIMETER, **(oximeter or {})}, **devices}})


class TwoSources(Bed):
    """A bed with a monitor and an oximeter; ``run`` plays both every second."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(config(**kw))
        self.oximeter: dict[r.Vital, float | None] = {r.Vital.SPO2: 97.0, r.Vital.PULSE: 71.0}
        self.oximeter_on = True
        self.vitals[r.Vital.SPO2] = 94.0
        self.vitals[r.Vital.PULSE] = 73.0
        for name, role in (("monitor", r.DeviceRole.MONITOR), ("oximeter", r.DeviceRole.OXIMETER)):
            self.submit(r.LinkStatus(name, role, r.LinkState.CONNECTED))

    def run(self, seconds: float, **kw: Any) -> None:
        for _ in range(int(seconds)):
            if self.oximeter_on:
                quality = r.Quality.INVALID if self.oximeter[r.Vital.SPO2] is None else r.Quality.VALID
                self.engine.submit(r.VitalsReading("oximeter", dict(self.oximeter), quality), evaluate=False)
            super().run(1, **kw)

    def unplug_oximeter(self) -> None:
        self.oximeter_on = False
        self.submit(r.LinkStatus("oximeter", r.DeviceRole.OXIMETER, r.LinkState.RECONNECTING, "link lost: EIO"))

    def replug_oximeter(self) -> None:
        self.submit(r.LinkStatus("oximeter", r.DeviceRole.OXIMETER, r.LinkState.CONNECTED))
        self.oximeter_on = True

    def shown(self, vital: str = "spo2") -> tuple[float | None, str | None]:
        v = self.engine.snapshot()["vitals"][vital]
        return v["value"], v["source"]

    def switches(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind is EventKind.SYSTEM and e.data["action"] == "vital_source"]


@pytest.fixture
def two() -> TwoSources:
    b = TwoSources()
    b.admit_and_start()
    b.run(30)
    return b


def test_each_vital_comes_from_its_preferred_source_and_says_which(two: TwoSources) -> None:
    assert two.shown("spo2") == (97.0, "oximeter")  # the oximeter before the monitor by default
    assert two.shown("pulse") == (71.0, "oximeter")
    assert two.shown("hr") == (72.0, "monitor")  # only the monitor gives HR
    assert two.engine.state.vitals[r.Vital.SPO2].source == "oximeter"
    assert "tech.oximeter_lost" not in two.raised() and "tech.monitor_lost" not in two.raised()


def test_oximeter_unplugged_raises_its_own_alarm_and_spo2_continues_from_the_monitor(two: TwoSources) -> None:
    before = len(two.events)
    two.unplug_oximeter()
    # at once, not at the next frame: the monitor's own last value, with its own age
    assert two.shown("spo2") == (94.0, "monitor")
    assert two.shown("pulse") == (73.0, "monitor")
    two.run(60)
    assert two.shown("spo2") == (94.0, "monitor")
    active = two.active()
    assert "oximeter" in active["tech.oximeter_lost"]["message"] and "link reconnecting" in active["tech.oximeter_lost"]["message"]
    switched = {e["vital"]: e for e in two.switches()}
    assert switched.keys() == {"spo2", "pulse"}
    assert switched["spo2"] == {"action": "vital_source", "vital": "spo2", "source": "monitor", "previous": "oximeter",
                    "reason": "oximeter link reconnecting",
                    "message": "SpO2 now from monitor, was oximeter: oximeter link reconnecting"}
    assert switched["pulse"]["source"] == "monitor"
    # The one alarm is the lost device's: SpO2 never went missing, nothing else raised or cleared.
    changes = [(e.data["rule_id"], e.data["transition"]) for e in two.events[before:] if e.kind is EventKind.ALARM]
    assert changes == [("tech.oximeter_lost", "raised")]
    assert "tech.monitor_lost" not in two.raised()


def test_the_oximeter_back_takes_spo2_back_after_the_hold_time(two: TwoSources) -> None:
    two.unplug_oximeter()
    two.run(20)
    two.replug_oximeter()
    two.run(int(two.config.devices.source_hold_s) - 1)
    assert two.shown("spo2")[1] == "monitor"  # a loose connector does not switch on its first frame
    two.run(2)
    assert two.shown("spo2") == (97.0, "oximeter")
    back = next(e for e in reversed(two.switches()) if e["vital"] == "spo2")
    assert (back["vital"], back["source"], back["previous"]) == ("spo2", "oximeter", "monitor")
    assert "preferred" in back["reason"]
    two.run(5)
    assert "tech.oximeter_lost" not in two.active()
    assert [t for rule, t in two.alarms() if rule == "tech.oximeter_lost"] == ["raised", "cleared"]


def test_a_desaturation_alarm_holds_through_the_switch_without_flicker(two: TwoSources) -> None:
    two.oximeter[r.Vital.SPO2] = 88.0
    two.vitals[r.Vital.SPO2] = 87.0
    two.run(20)
    assert two.active()["vital.spo2_low"]["priority"] == "medium"
    since = two.engine.state.onsets["spo2_low"]
    two.unplug_oximeter()
    two.run(30)
    assert two.shown("spo2") == (87.0, "monitor")
    assert two.engine.state.onsets["spo2_low"] == since  # the condition never ended
    assert [t for rule, t in two.alarms() if rule == "vital.spo2_low"] == ["raised"]


def test_a_silent_oximeter_is_left_once_its_timeout_passes(two: TwoSources) -> None:
    two.oximeter_on = False  # no link report: the frames just stop (the last came 1 s ago)
    two.run(4)
    assert two.shown("spo2")[1] == "oximeter"  # within its 5 s timeout: still the source in use
    two.run(1)
    assert two.shown("spo2") == (94.0, "monitor")
    assert "silent" in two.switches()[0]["reason"]
    assert "tech.oximeter_lost" in two.active()
    assert "tech.spo2_missing" not in two.raised()


def test_probe_off_on_the_oximeter_switches_at_once_and_raises_probe_off(two: TwoSources) -> None:
    two.oximeter[r.Vital.SPO2] = two.oximeter[r.Vital.PULSE] = None
    two.submit(r.DeviceAlarm("oximeter", r.DeviceRole.OXIMETER, frozenset({r.DeviceAlarmCode.PROBE_OFF}),
                             "sensor off patient"))
    two.run(1)
    assert two.shown("spo2") == (94.0, "monitor")
    assert two.switches()[0]["reason"] == "no spo2 value from oximeter (probe off)"
    two.run(15)
    assert "sensor off patient" in two.active()["tech.oximeter.probe_off"]["message"]
    assert "tech.spo2_missing" not in two.raised() and "tech.oximeter_lost" not in two.raised()


def test_with_no_source_left_the_value_ages_and_goes_missing_as_one_devices_would(two: TwoSources) -> None:
    two.unplug_oximeter()
    two.vitals[r.Vital.SPO2] = None  # the monitor has no SpO2 either
    two.run(1)
    assert two.shown("spo2")[1] == "monitor"
    two.run(16)
    assert "tech.spo2_missing" in two.active()


def test_precedence_from_the_configuration() -> None:
    b = TwoSources(precedence={"spo2": ["monitor", "oximeter"]})
    b.admit_and_start()
    b.run(10)
    assert b.shown("spo2") == (94.0, "monitor")
    assert b.shown("pulse") == (71.0, "oximeter")  # not listed: the oximeter first
    b.vitals[r.Vital.SPO2] = None
    b.run(1)
    assert b.shown("spo2") == (97.0, "oximeter")


def test_a_vital_a_device_does_not_provide_is_not_taken_from_it() -> None:
    b = TwoSources(oximeter={"provides": ["spo2"]})
    b.admit_and_start()
    b.run(10)
    assert b.shown("spo2") == (97.0, "oximeter")
    assert b.shown("pulse") == (73.0, "monitor")
    assert b.switches() == []


def test_one_source_per_vital_behaves_as_before(bed: Bed) -> None:
    bed.admit_and_start()
    bed.run(10)
    assert bed.engine.snapshot()["vitals"]["spo2"]["source"] == "monitor"
    assert bed.engine.state.source_values == {}
    assert not [e for e in bed.events if e.kind is EventKind.SYSTEM and e.data["action"] == "vital_source"]


@pytest.mark.parametrize(("devices", "says"), [
    ({"precedence": {"spo2": ["monitor"]}}, "list each device that provides spo2 once (oximeter, monitor)"),
    ({"precedence": {"hr": ["oximeter", "monitor"]}}, "list each device that provides hr once (monitor)"),
    ({"precedence": {"spo2": ["monitor", "monitor"]}}, "list each device that provides spo2 once"),
    ({"oximeter": {**OXIMETER, "provides": ["hr"]}}, "an oximeter provides spo2, pulse"),
    ({"oximeter": {**OXIMETER, "name": "monitor"}}, "device names must differ"),
    ({"source_hold_s": 600}, "source_hold_s"),
])
def test_source_configuration_errors_say_what_is_wrong(devices: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        load_config(overrides={"devices": {**DEVICES, "oximeter": OXIMETER, **devices}})


def test_the_sources_stay_with_the_bed_across_a_discharge(two: TwoSources) -> None:
    two.submit(r.StopInfusion("rn1"))
    two.set_pump(r.PumpState.STOPPED, 0)
    two.run(5)
    two.submit(r.Discharge("rn1", reason="test discharge"))
    two.submit(r.VitalsReading("monitor", dict(two.vitals)))  # the monitor's frame first this time
    two.run(10)
    assert two.shown("spo2") == (97.0, "oximeter")
    assert two.switches() == []  # the devices belong to the bed: no switch back and forth
