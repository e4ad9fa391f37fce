"""Shared helpers for engine tests: a configured engine on a fake clock and a recorder."""

from __future__ import annotations

from typing import Any

import pytest

from monitord import readings as r
from monitord.clock import FakeClock
from monitord.config import Config, load_config
from monitord.engine import Engine
from monitord.events import Event, EventKind

DEVICES = {
    "pump": {"driver": "modbus", "serial": {"port": "sim"}, "timeout_s": 10},
    "monitor": {"driver": "datex", "serial": {"port": "sim"}, "timeout_s": 15},
}
STEADY = {r.Vital.HR: 72.0, r.Vital.SPO2: 98.0, r.Vital.RR: 14.0, r.Vital.ETCO2: 38.0}
NIBP = {r.Vital.SBP: 122.0, r.Vital.DBP: 76.0, r.Vital.MAP: 91.0}


def make_config(**over: Any) -> Config:
    return load_config(overrides={"devices": DEVICES, **over})


class Bed:
    """An engine on a fake clock, with helpers to play readings second by second."""

    def __init__(self, config: Config | None = None) -> None:
        self.clock = FakeClock()
        self.config = config or make_config()
        self.engine = Engine(self.config, self.clock)
        self.events: list[Event] = []
        self.engine.subscribe(self.events.append)
        self.vitals = dict(STEADY)
        self.nibp = dict(NIBP)
        self.pump = r.PumpReading("pump", r.PumpState.STOPPED, rate_ml_h=0.0, volume_infused_ml=0.0,
                                  drug="ketamine", concentration_mg_ml=1.0, syringe_ml=50.0)
        self.volume = 0.0

    def submit(self, item: r.Input) -> None:
        self.engine.submit(item)

    def answer_checklist(self) -> None:
        """Every item answered: no contraindication, every prompted test done."""
        self.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in self.config.checklist}, "rn1"))

    def admit_and_start(self, weight: float = 70, age: int = 45, conc: float = 1.0, rate: float = 35.0,
                        **admit: Any) -> None:
        self.submit(r.Admit("P-1", weight, age, "rn1", confirm=True, **admit))
        self.answer_checklist()
        self.submit(r.SetOrder("ketamine", conc, rate, "rn1", syringe_ml=50.0, confirm=True))
        self.run(60, nibp_every=300)
        self.set_pump(r.PumpState.RUNNING, rate, conc=conc)
        self.submit(r.StartInfusion("rn1", confirm=True))

    def set_pump(self, state: r.PumpState, rate: float | None = None, **kw: Any) -> None:
        p = self.pump
        self.pump = r.PumpReading(
            "pump", state, rate_ml_h=p.rate_ml_h if rate is None else rate, volume_infused_ml=self.volume,
            drug=kw.get("drug", p.drug), concentration_mg_ml=kw.get("conc", p.concentration_mg_ml),
            syringe_ml=kw.get("syringe", p.syringe_ml), bolus_ml=kw.get("bolus_ml", p.bolus_ml),
        )

    def run(self, seconds: float, *, monitor: bool = True, pump: bool = True, nibp_every: float | None = None,
            nibp_now: bool = False) -> None:
        """Advance second by second, delivering a monitor and a pump frame each second."""
        for i in range(int(seconds)):
            self.clock.advance(1)
            if pump:
                p = self.pump
                if p.state in (r.PumpState.RUNNING, r.PumpState.BOLUS) and p.rate_ml_h:
                    self.volume += p.rate_ml_h / 3600
                self.engine.submit(r.PumpReading(p.device, p.state, rate_ml_h=p.rate_ml_h, volume_infused_ml=self.volume,
                                                 drug=p.drug, concentration_mg_ml=p.concentration_mg_ml,
                                                 syringe_ml=p.syringe_ml, bolus_ml=p.bolus_ml), evaluate=False)
            if monitor:
                values: dict[r.Vital, float | None] = dict(self.vitals)
                if (nibp_now and i == 0) or (nibp_every and i % int(nibp_every) == 0):
                    values.update(self.nibp)
                self.engine.submit(r.VitalsReading("monitor", values), evaluate=False)
            self.engine.tick()

    def alarms(self, transition: str | None = None) -> list[tuple[str, str]]:
        return [(e.data["rule_id"], e.data["transition"]) for e in self.events
                if e.kind is EventKind.ALARM and (transition is None or e.data["transition"] == transition)]

    def raised(self) -> set[str]:
        return {rule for rule, t in self.alarms("raised")}

    def active(self) -> dict[str, dict[str, Any]]:
        return {a["rule_id"]: a for a in self.engine.snapshot()["alarms"]}


@pytest.fixture
def bed() -> Bed:
    return Bed()
