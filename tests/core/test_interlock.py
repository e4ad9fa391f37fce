"""The pump stop interlock, engine side: trigger, verify from the pump, retry, fail, hold, release."""

from __future__ import annotations

from typing import Any

import pytest

from monitord import readings as r
from monitord.config import ConfigError, load_config
from monitord.engine import Engine
from monitord.errors import Refused
from monitord.events import EventKind
from tests.core.conftest import DEVICES, Bed

ON = {"enabled": True}


class InterlockBed(Bed):
    """A bed with the interlock on and a pump that obeys (or ignores) the stop command."""

    def __init__(self, obey: bool = True, **interlock: Any) -> None:
        devices = {**DEVICES, "pump": {**DEVICES["pump"], "allow_stop_commands": True}}
        super().__init__(load_config(overrides={"devices": devices, "interlock": ON | interlock}))
        self.commands: list[str] = []
        self.obey = obey
        self.engine.subscribe_commands(self._command)

    def _command(self, command: str) -> None:
        self.commands.append(command)
        if self.obey:
            self.set_pump(r.PumpState.STOPPED if command == "stop" else r.PumpState.PAUSED)

    def steps(self) -> list[str]:
        return [e.data["step"] for e in self.events if e.kind is EventKind.INTERLOCK]

    def apnoea(self) -> None:
        self.vitals[r.Vital.RR] = 0
        self.vitals[r.Vital.ETCO2] = 0

    def breathe(self) -> None:
        self.vitals[r.Vital.RR] = 14
        self.vitals[r.Vital.ETCO2] = 38


def test_off_by_default_no_command_is_ever_asked_for(bed: Bed) -> None:
    sent: list[str] = []
    bed.engine.subscribe_commands(sent.append)
    bed.admit_and_start()
    bed.vitals[r.Vital.RR] = 0
    bed.vitals[r.Vital.ETCO2] = 0
    bed.run(60)
    assert "resp.apnoea" in bed.active()
    assert sent == []
    assert bed.engine.snapshot()["interlock"]["phase"] == "off"
    assert not [e for e in bed.events if e.kind is EventKind.INTERLOCK]


def test_enabling_it_needs_a_pump_that_may_be_stopped() -> None:
    with pytest.raises(ConfigError, match="allow_stop_commands"):
        load_config(overrides={"devices": DEVICES, "interlock": ON})


def test_unknown_trigger_is_a_configuration_error() -> None:
    devices = {**DEVICES, "pump": {**DEVICES["pump"], "allow_stop_commands": True}}
    cfg = load_config(overrides={"devices": devices, "interlock": ON | {"triggers": ["resp.aponea"]}})
    from monitord.clock import FakeClock

    with pytest.raises(ConfigError, match="resp.aponea"):
        Engine(cfg, FakeClock())


def test_apnoea_stops_the_pump_and_the_pump_report_confirms_it() -> None:
    bed = InterlockBed()
    bed.admit_and_start()
    bed.run(30)
    assert bed.engine.snapshot()["interlock"]["phase"] == "armed"
    bed.apnoea()
    bed.run(25)
    assert bed.commands == ["stop"]
    assert bed.steps() == ["armed", "triggered", "command_sent", "confirmed"]
    snap = bed.engine.snapshot()["interlock"]
    assert snap["phase"] == "holding" and snap["trigger"] == "resp.apnoea"
    assert "interlock.not_stopped" not in bed.active()


def test_a_pump_that_ignores_the_stop_is_a_latched_high_alarm_after_the_retries() -> None:
    bed = InterlockBed(obey=False, confirm_s=5, retries=2)
    bed.admit_and_start()
    bed.apnoea()
    bed.run(21)
    assert bed.commands == ["stop"]
    bed.run(5 * 3 + 1)
    assert bed.commands == ["stop", "stop", "stop"]
    assert bed.steps()[-1] == "not_confirmed"
    bed.run(2)
    alarm = bed.active()["interlock.not_stopped"]
    assert alarm["priority"] == "high" and "stop it by hand" in alarm["message"]
    # Stopped by hand: the interlock now holds; the alarm stays latched until reset.
    bed.set_pump(r.PumpState.STOPPED)
    bed.run(2)
    assert bed.engine.snapshot()["interlock"]["phase"] == "holding"
    assert bed.active()["interlock.not_stopped"]["state"] == "latched"


def test_a_stale_stopped_report_does_not_confirm() -> None:
    """Only a pump report that arrived after the command counts."""
    bed = InterlockBed(obey=False, confirm_s=5, retries=0)
    bed.admit_and_start()
    bed.apnoea()
    bed.run(21)
    assert bed.commands == ["stop"]
    bed.run(6, pump=False)  # the pump falls silent: its last report (running) is older than the command
    assert bed.steps()[-1] == "not_confirmed"


def test_pump_restarted_at_the_device_while_held_is_high() -> None:
    bed = InterlockBed()
    bed.admit_and_start()
    bed.apnoea()
    bed.run(25)
    bed.breathe()
    bed.set_pump(r.PumpState.RUNNING, 35)
    bed.run(2)
    alarm = bed.active()["interlock.pump_restarted"]
    assert alarm["priority"] == "high"
    assert bed.commands == ["stop"]  # it alarms; it does not fight the nurse at the pump


def test_only_a_release_with_a_reason_re_arms_and_the_old_alarm_does_not_re_trigger() -> None:
    bed = InterlockBed()
    bed.admit_and_start()
    bed.apnoea()
    bed.run(25)
    bed.breathe()
    bed.run(5)
    with pytest.raises(Refused, match="reason"):
        bed.submit(r.InterlockRelease("rn1", ""))
    with pytest.raises(Refused):
        bed.submit(r.InterlockRelease("system", "spoofed"))
    bed.submit(r.InterlockRelease("rn1", "airway cleared, breathing, RR 14"))
    assert bed.engine.snapshot()["interlock"]["phase"] == "armed"
    released = [e.data for e in bed.events if e.kind is EventKind.INTERLOCK][-1]
    assert released["step"] == "released" and released["actor"] == "rn1" and released["from"] == "holding"
    # the latched apnoea alarm is still present: it does not stop the pump again
    bed.set_pump(r.PumpState.RUNNING, 35)
    bed.run(10)
    assert bed.commands == ["stop"]
    # a new apnoea after the reset of the old one does
    bed.submit(r.ResetAlarm("resp.apnoea", "rn1"))
    bed.apnoea()
    bed.run(25)
    assert bed.commands == ["stop", "stop"]
    with pytest.raises(Refused, match="nothing to release"):
        InterlockBed().submit(r.InterlockRelease("rn1", "nothing to do"))


def test_the_hold_survives_a_restart() -> None:
    bed = InterlockBed()
    bed.admit_and_start()
    bed.apnoea()
    bed.run(25)
    cp = bed.engine.checkpoint()
    fresh = Engine(bed.config, bed.clock)
    fresh.restore(cp, downtime_s=10)
    assert fresh.snapshot()["interlock"]["phase"] == "holding"
    assert fresh.state.interlock.trigger == "resp.apnoea"
