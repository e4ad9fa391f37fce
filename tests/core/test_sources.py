"""Several vital sources per bed: each vital from the preferred device that can give it, the
source shown with every value, a lost device its own technical alarm, and a switch to the next
source that is visible and never makes an alarm flicker."""

from __future__ import annotations

from typing import Any

import pytest

from monitord import readings as r
from monitord.config import ConfigError, load_config
from monitord.engine import Engine
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
    shown = bed.engine.snapshot()["vitals"]
    assert {v["source"] for v in shown.values()} == {"monitor"}
    assert (shown["spo2"]["value"], shown["hr"]["value"]) == (98.0, 72.0)
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


# -- heart rate: the pulse rate stands in where no ECG heart rate is usable -----------------


def hr_switches(b: TwoSources | Bed) -> list[dict[str, Any]]:
    return [e.data for e in b.events if e.kind is EventKind.SYSTEM and e.data["action"] == "vital_source"
            and e.data["vital"] == "hr"]


def test_ecg_leads_off_hr_continues_from_the_pulse_rate_visibly_and_returns_after_the_hold(bed: Bed) -> None:
    bed.vitals[r.Vital.PULSE] = 75.0
    bed.admit_and_start()
    bed.run(30)
    assert bed.engine.snapshot()["vitals"]["hr"]["source"] == "monitor"
    bed.vitals[r.Vital.HR] = None  # the monitor blanks its ECG heart rate with the leads off
    bed.submit(r.DeviceAlarm("monitor", r.DeviceRole.MONITOR, frozenset({r.DeviceAlarmCode.LEADS_OFF})))
    bed.run(1)
    hr = bed.engine.snapshot()["vitals"]["hr"]
    assert (hr["value"], hr["source"], hr["stale"]) == (75.0, "monitor:pulse", False)
    assert hr_switches(bed) == [{
        "action": "vital_source", "vital": "hr", "source": "monitor:pulse", "previous": "monitor",
        "reason": "no hr value from monitor (leads off)",
        "message": "HR now from pulse rate of monitor, was monitor: no hr value from monitor (leads off)"}]
    bed.vitals[r.Vital.PULSE] = 40.0  # a slow pulse is judged as the heart rate it stands for
    bed.run(40)
    assert bed.active()["vital.hr_low"]["value"] == 40.0
    bed.vitals[r.Vital.PULSE] = 75.0
    bed.vitals[r.Vital.HR] = 72.0
    bed.submit(r.DeviceAlarm("monitor", r.DeviceRole.MONITOR, frozenset()))
    bed.run(int(bed.config.devices.source_hold_s) - 1)
    assert bed.engine.snapshot()["vitals"]["hr"]["source"] == "monitor:pulse"  # leads back: the hold first
    bed.run(2)
    assert bed.engine.snapshot()["vitals"]["hr"]["source"] == "monitor"
    back = hr_switches(bed)[-1]
    assert (back["source"], back["previous"]) == ("monitor", "monitor:pulse") and "preferred" in back["reason"]


def test_monitor_lost_hr_from_the_oximeters_pulse_rate(two: TwoSources) -> None:
    two.submit(r.LinkStatus("monitor", r.DeviceRole.MONITOR, r.LinkState.RECONNECTING, "link lost: EIO"))
    assert two.shown("hr") == (71.0, "oximeter:pulse")
    two.run(30, monitor=False)
    assert two.shown("hr") == (71.0, "oximeter:pulse")
    assert two.engine.snapshot()["vitals"]["hr"]["stale"] is False
    assert hr_switches(two)[0]["message"] == "HR now from pulse rate of oximeter, was monitor: monitor link reconnecting"
    assert "tech.monitor_lost" in two.active()


def test_hr_from_pulse_can_be_switched_off() -> None:
    b = Bed(load_config(overrides={"devices": {**DEVICES, "hr_from_pulse": False}}))
    b.admit_and_start()
    b.run(10)
    b.vitals[r.Vital.HR] = None
    b.run(40)
    hr = b.engine.snapshot()["vitals"]["hr"]
    assert (hr["value"], hr["source"]) == (None, "monitor")
    assert hr_switches(b) == []


def test_at_start_a_source_without_a_value_yet_is_waited_for_not_switched_from() -> None:
    b = TwoSources()
    b.submit(r.VitalsReading("oximeter", {r.Vital.SPO2: 97.0, r.Vital.PULSE: 71.0}))  # before any ECG HR
    assert "hr" not in b.engine.snapshot()["vitals"]  # the monitor's HR may still come (its timeout)
    b.admit_and_start()
    b.run(30)
    assert b.shown("hr") == (72.0, "monitor")
    assert b.switches() == []  # nothing switched at start


# -- a bed without a patient monitor --------------------------------------------------------

CAPNOGRAPH = {"name": "capnograph", "driver": "datex", "serial": {"port": "sim"}, "timeout_s": 15,
              "provides": ["etco2", "rr"], "capnograph": True}


class ChairBed(TwoSources):
    """An infusion chair: an oximeter and a capnograph (the bed's [devices.monitor]), no patient monitor."""

    def __init__(self) -> None:
        Bed.__init__(self, config(monitor=CAPNOGRAPH))
        self.oximeter = {r.Vital.SPO2: 97.0, r.Vital.PULSE: 71.0}
        self.oximeter_on = True
        for name, role in (("capnograph", r.DeviceRole.MONITOR), ("oximeter", r.DeviceRole.OXIMETER)):
            self.submit(r.LinkStatus(name, role, r.LinkState.CONNECTED))

    def run(self, seconds: float, **kw: Any) -> None:
        for _ in range(int(seconds)):
            if self.oximeter_on:
                quality = r.Quality.INVALID if self.oximeter[r.Vital.SPO2] is None else r.Quality.VALID
                self.engine.submit(r.VitalsReading("oximeter", dict(self.oximeter), quality), evaluate=False)
            # The capnograph sends only what it measures.
            self.engine.submit(r.VitalsReading("capnograph", {r.Vital.ETCO2: 38.0, r.Vital.RR: 14.0}), evaluate=False)
            super(TwoSources, self).run(1, monitor=False, **kw)


@pytest.fixture
def chair() -> ChairBed:
    b = ChairBed()
    b.admit_and_start()
    b.run(30)
    return b


def test_a_chair_with_oximeter_and_capnograph_runs_without_alarms(chair: ChairBed) -> None:
    chair.run(3600)
    shown = chair.engine.snapshot()["vitals"]
    assert {k: (v["value"], v["source"]) for k, v in shown.items()} == {
        "spo2": (97.0, "oximeter"), "pulse": (71.0, "oximeter"), "hr": (71.0, "oximeter:pulse"),
        "etco2": (38.0, "capnograph"), "rr": (14.0, "capnograph")}
    # No blood pressure device: nothing overdue; nothing missing. (Nurse observations fall due.)
    assert [(rule, t) for rule, t in chair.alarms() if not rule.startswith("obs.")] == []
    assert chair.switches() == []


def test_a_chair_losing_its_oximeter_says_spo2_is_missing(chair: ChairBed) -> None:
    from monitord.rules.vitals import respiratory_warnings, source_missing

    chair.unplug_oximeter()
    lost = chair.active()["tech.oximeter_lost"]["message"]
    assert lost == "Oximeter oximeter link reconnecting: link lost: EIO; SpO2 missing: no other source"
    st, now = chair.engine.state, chair.clock.monotonic()
    assert source_missing(st, now, chair.config) == []
    chair.run(16)
    now = chair.clock.monotonic()
    assert source_missing(st, now, chair.config) == [r.Vital.SPO2]
    assert "respiratory_source_missing" in respiratory_warnings(st, now, chair.config)
    # One cause, one alarm: the lost oximeter's, naming SpO2; the capnograph still delivers.
    assert {rule for rule, _ in chair.alarms()} == {"tech.oximeter_lost"}
    # The respiratory rules count it: with the rate low as well it is the combined alarm.
    chair.engine.submit(r.VitalsReading("capnograph", {r.Vital.ETCO2: 38.0, r.Vital.RR: 6.0}))
    for _ in range(60):
        chair.clock.advance(1)
        chair.engine.submit(r.VitalsReading("capnograph", {r.Vital.ETCO2: 38.0, r.Vital.RR: 6.0}), evaluate=False)
        chair.engine.tick()
    assert "respiratory source missing" in chair.active()["resp.combined"]["message"].replace("_", " ")
    assert chair.engine.snapshot()["vitals"]["spo2"]["stale"] is True
    chair.replug_oximeter()
    chair.run(5)
    assert "tech.oximeter_lost" not in chair.active()
    assert source_missing(st, chair.clock.monotonic(), chair.config) == []


def test_an_oximeter_only_bed_raises_spo2_missing_when_its_oximeter_gives_no_value() -> None:
    """No patient monitor at all: a missing SpO2 is still a missing respiratory source."""
    b = TwoSources()
    b.config = load_config(overrides={"devices": {"pump": DEVICES["pump"], "oximeter": OXIMETER}})
    b.engine = Engine(b.config, b.clock)
    b.engine.subscribe(b.events.append)
    b.submit(r.LinkStatus("oximeter", r.DeviceRole.OXIMETER, r.LinkState.CONNECTED))

    def run(seconds: int, spo2: float | None) -> None:
        b.oximeter = {r.Vital.SPO2: spo2, r.Vital.PULSE: spo2 and 70.0}
        b.run(seconds, monitor=False)

    b.admit_and_start()  # (plays the oximeter alone)
    run(30, 97.0)
    assert b.alarms() == []
    run(16, None)  # dashes and no exception flag: the oximeter talks, SpO2 is gone
    assert "check the probe" in b.active()["tech.spo2_missing"]["message"]
    run(3, 97.0)
    assert "tech.spo2_missing" not in b.active()
    b.clock.advance(7)  # silent: its own lost alarm names SpO2; no second alarm for it
    b.engine.tick()
    assert b.active()["tech.oximeter_lost"]["message"].endswith("SpO2 missing: no other source")
    b.clock.advance(20)
    b.engine.tick()
    assert "tech.spo2_missing" not in b.active()


def test_vitals_a_device_does_not_provide_are_recorded_not_used(chair: ChairBed) -> None:
    chair.engine.submit(r.VitalsReading("capnograph", {r.Vital.ETCO2: 38.0, r.Vital.HR: 150.0, r.Vital.SBP: 200.0}))
    chair.run(60)
    shown = chair.engine.snapshot()["vitals"]
    assert shown["hr"]["source"] == "oximeter:pulse" and "sbp" not in shown
    assert chair.engine.state.nibp_mono is None  # not a blood pressure measurement of this bed
    recorded = [e.data for e in chair.events if e.kind is EventKind.VITALS and e.data["device"] == "capnograph"]
    assert any(d["values"].get("hr") == 150.0 for d in recorded)  # never disappears from the record
    assert chair.alarms() == []


# -- restart ----------------------------------------------------------------------------------


def test_a_restart_keeps_each_vitals_source_and_switches_nothing(two: TwoSources) -> None:
    two.submit(r.VitalsReading("monitor", dict(two.vitals)))
    cp = two.engine.checkpoint()
    assert cp["vitals"]["spo2"]["source"] == "oximeter" and cp["vitals"]["hr"]["source"] == "monitor"
    two.clock.advance(20)
    two.engine = Engine(two.config, two.clock)
    two.events = []
    two.engine.subscribe(two.events.append)
    two.engine.restore(cp, downtime_s=20)
    assert two.shown("spo2") == (97.0, "oximeter")  # the restored value, with its source
    for name, role in (("monitor", r.DeviceRole.MONITOR), ("oximeter", r.DeviceRole.OXIMETER)):
        two.submit(r.LinkStatus(name, role, r.LinkState.CONNECTED))
    two.oximeter_on = False
    two.run(2)  # the monitor speaks first after the restart: it does not take SpO2 over
    assert two.shown("spo2")[1] == "oximeter"
    two.oximeter_on = True
    two.run(30)
    assert two.shown("spo2") == (97.0, "oximeter")
    assert two.switches() == []
    assert [rule for rule, t in two.alarms("raised")] == []
