"""Store test fixtures: the same tests run on a SQLite file in a temp dir and on PostgreSQL
(a throwaway schema per test at postgresql+psycopg://postgres@127.0.0.1:5432/test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from monitord import readings as r
from monitord.clock import FakeClock
from monitord.config import Config, load_config
from monitord.engine import Engine
from monitord.events import Event
from monitord.loop import RuleLoop
from monitord.store import Store

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEVICES = {
    "pump": {"driver": "modbus", "serial": {"port": "sim"}, "timeout_s": 10},
    "monitor": {"driver": "datex", "serial": {"port": "sim"}, "timeout_s": 15},
}


def _pg_reachable() -> str | None:
    try:
        eng = create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL at {PG_BASE} unreachable: {str(exc).splitlines()[0]}"


_PG_PROBLEM: list[str | None] = []


def pg_problem() -> str | None:
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(_pg_reachable())
    return _PG_PROBLEM[0]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``[store]`` settings for one backend; PostgreSQL gets a fresh schema, dropped after."""
    if request.param == "sqlite":
        yield {"state_dir": str(tmp_path / "state")}
        return
    problem = pg_problem()
    if problem:
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield {"state_dir": str(tmp_path / "state"), "url": f"{PG_BASE}?options=-csearch_path%3D{schema}"}
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def make_config(store: dict[str, Any], **over: Any) -> Config:
    return load_config(overrides={"devices": DEVICES, "store": store, **over})


class Bed:
    """An engine on a FakeClock with a real Store attached, plus helpers to play a course."""

    def __init__(self, config: Config, clock: FakeClock | None = None) -> None:
        self.config = config
        self.clock = clock or FakeClock()
        self.engine = Engine(config, self.clock)
        self.events: list[Event] = []
        self.engine.subscribe(self.events.append)
        self.store = Store.open(config, self.clock)
        self.store.recover(self.engine)
        self.loop = RuleLoop(self.engine, 1.0)
        self.store.attach(self.engine, self.loop)
        self.volume = 0.0
        self.rate = 0.0
        self.pump_state = r.PumpState.STOPPED
        self.spo2 = 98.0

    async def start(self) -> None:
        await self.store.start()

    async def stop(self) -> None:
        await self.store.stop()

    def submit(self, item: r.Input) -> None:
        self.engine.submit(item)

    def second(self, vitals: bool = True, nibp: bool = False) -> None:
        self.clock.advance(1.0)
        if self.pump_state is r.PumpState.RUNNING:
            self.volume += self.rate / 3600
        self.submit(r.PumpReading("pump", self.pump_state, rate_ml_h=self.rate, volume_infused_ml=round(self.volume, 5),
                                  drug="ketamine", concentration_mg_ml=1.0, syringe_ml=50.0))
        if vitals:
            values: dict[r.Vital, float | None] = {r.Vital.HR: 72.0, r.Vital.SPO2: self.spo2, r.Vital.RR: 14.0,
                                                   r.Vital.ETCO2: 38.0}
            nibp_time = None
            if nibp:
                values |= {r.Vital.SBP: 122.0, r.Vital.DBP: 76.0, r.Vital.MAP: 91.0}
                nibp_time = self.clock.utc_now()
            self.submit(r.VitalsReading("monitor", values, nibp_time=nibp_time))
        self.engine.tick()

    def run(self, seconds: int) -> None:
        for i in range(seconds):
            self.second(nibp=i % 300 == 0)

    def admit_and_start(self, patient: str = "P-1", pain: int = 8) -> None:
        self.submit(r.LinkStatus("pump", r.DeviceRole.PUMP, r.LinkState.CONNECTED))
        self.submit(r.LinkStatus("monitor", r.DeviceRole.MONITOR, r.LinkState.CONNECTED))
        self.submit(r.Admit(patient, 70.0, 45, "rn1"))
        self.submit(r.TreatmentCount(self.store.treatment_count(patient), self.store.last_weight_kg(patient)))
        self.submit(r.ChecklistAnswers({c.id: c.kind == "prompt" for c in self.engine.config.checklist}, "rn1"))
        self.submit(r.PainScore(pain, "rn1"))
        self.submit(r.SetOrder("ketamine", 1.0, 35.0, "rn1", syringe_ml=50.0))
        self.run(30)
        self.submit(r.CaptureBaseline("rn1"))
        self.rate, self.pump_state = 35.0, r.PumpState.RUNNING
        self.submit(r.StartInfusion("rn1"))

    def stop_and_discharge(self, pain: int = 4) -> None:
        self.rate, self.pump_state = 0.0, r.PumpState.STOPPED
        self.submit(r.StopInfusion("rn1", "course complete"))
        self.run(5)
        self.submit(r.PainScore(pain, "rn1"))
        self.submit(r.Discharge("rn1", reason="end of the test course"))

    def flush(self) -> None:
        assert self.store.wait_committed(self.engine.seq, 30.0), f"store did not commit up to seq {self.engine.seq}"



async def until(cond: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``cond()`` until true; fail after ``timeout`` seconds (generous: never a speed test)."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"{what} not met in {timeout} s"
        await asyncio.sleep(0.02)


def pg_schema(store: dict[str, Any]) -> str | None:
    """The throwaway schema of a PostgreSQL ``store_settings`` (None for SQLite)."""
    url = store.get("url")
    return url.split("search_path%3D", 1)[1] if url else None
