"""The rule loop on a real asyncio loop: inputs in order, verdicts to commands, ticks when idle."""

from __future__ import annotations

import asyncio

import pytest

from monitord import readings as r
from monitord.clock import SystemClock
from monitord.engine import Engine
from monitord.errors import Refused
from monitord.events import Event, EventKind
from monitord.loop import RuleLoop

from .conftest import make_config


async def test_commands_get_the_engines_verdict_and_idle_ticks_evaluate() -> None:
    config = make_config(devices={"pump": {"driver": "modbus", "serial": {"port": "x"}, "timeout_s": 0.3}})
    engine = Engine(config, SystemClock())
    events: list[Event] = []
    engine.subscribe(events.append)
    loop = RuleLoop(engine, tick_s=0.05)
    evaluated = 0

    def count() -> None:
        nonlocal evaluated
        evaluated += 1

    loop.on_evaluated.append(count)
    task = asyncio.create_task(loop.run())
    try:
        await loop.command(r.Admit("P-1", 70, 45, "rn1"))
        with pytest.raises(Refused, match="Concentration 5"):
            await loop.command(r.SetOrder("ketamine", 5.0, 35, "rn1"))
        loop.put(r.PumpReading("pump", r.PumpState.STOPPED, rate_ml_h=0))
        # Nothing more arrives: only the loop's own ticks can notice the pump going silent.
        for _ in range(200):
            if any(e.kind is EventKind.ALARM and e.data["rule_id"] == "tech.pump_lost" for e in events):
                break
            await asyncio.sleep(0.02)
        assert any(e.kind is EventKind.ALARM and e.data["rule_id"] == "tech.pump_lost" for e in events)
        assert evaluated > 3
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finally:
        loop.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
