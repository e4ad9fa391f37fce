"""Helpers for the HL7 tests: a recorded course as feed messages, strict validation with hl7apy,
and an MLLP receiver (asyncio server) that acknowledges what it gets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message, parse_segments
from hl7apy.validation import Validator

import monitord.scenario as scenario_mod
from monitord import courses
from monitord.events import EventKind
from monitord.hl7.er7 import END, START, frame
from monitord.mqtt import payloads, schemas
from monitord.mqtt import topics as t

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STATE_EVERY = 60  # a state message every this many events (the bed: on change, at least every 10 s)
CHECK_EVERY = 50  # readings checked against the schema (all states and alarm events are)


@cache
def recorded_course(seed: int = 3, kind: str = "spo2_86") -> tuple[tuple[str, dict[str, Any]], ...]:
    """One generated course played through the engine, as the feed messages a consumer receives,
    in publish order: ``(leaf, payload)``, each checked against the feed's schema."""
    out: list[tuple[str, dict[str, Any]]] = []

    class Recording(scenario_mod.Engine):  # type: ignore[misc, name-defined]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self._since_state = STATE_EVERY
            self.subscribe(self._on_event)

        def _on_event(self, ev: Any) -> None:
            route = payloads.FORWARDED.get(ev.kind)
            if route is not None:
                leaf, build, schema = route
                check = leaf not in (t.VITALS, t.INFUSION) or ev.seq % CHECK_EVERY == 0
                out.append((leaf, _checked(schema, build(ev)) if check else build(ev)))
            self._since_state += 1
            if ev.kind is EventKind.SESSION:
                self._since_state = STATE_EVERY

        def tick(self, *a: Any, **k: Any) -> Any:
            result = super().tick(*a, **k)
            if self._since_state >= STATE_EVERY:
                self._since_state = 0
                out.append((t.STATE, _checked("state", payloads.state(self.snapshot()))))
            return result

    course = courses.generate(seed, kind)
    original = scenario_mod.Engine
    scenario_mod.Engine = Recording  # type: ignore[misc]
    try:
        _, _, problems = scenario_mod.play(course.scenario())
    finally:
        scenario_mod.Engine = original  # type: ignore[misc]
    assert not problems, problems
    return tuple(out)


def _checked(schema: str, payload: dict[str, Any]) -> dict[str, Any]:
    problems = schemas.errors(schema, payload)
    assert not problems, f"{schema}: {problems}"
    return payload


def parse_strict(text: str) -> Message:
    """The message parsed and validated by hl7apy at its strictest (HL7 v2.6 structures, data
    types, required fields). PCD-04 (``ORU^R40^ORU_R40``) is checked against the ORU_R01 grammar
    it uses; hl7apy has no separate ORU_R40 structure."""
    structure = text.split("\r", 1)[0].split("|")[8].split("^")
    if structure[:2] == ["ORU", "R40"]:
        msg = Message("ORU_R01", version="2.6", validation_level=VALIDATION_LEVEL.STRICT)
        msg.children = parse_segments(text, "2.6", None, VALIDATION_LEVEL.STRICT, msg.reference, True)
    else:
        msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    Validator.validate(msg)
    return msg


def observations(msg: Message) -> list[Any]:
    """Every OBX of a parsed ORU message, in order."""
    out = []
    for result in msg.children.get("ORU_R01_PATIENT_RESULT") or []:
        for order in result.children.get("ORU_R01_ORDER_OBSERVATION") or []:
            for obs in order.children.get("ORU_R01_OBSERVATION") or []:
                out.append(obs.obx)
    return out


def ack(text: str, code: str = "AA", detail: str = "") -> str:
    control = text.split("\r", 1)[0].split("|")[9]
    return (f"MSH|^~\\&|EHR|HOSP|MONITORD|HOSPITAL|20260101120000||ACK^R01^ACK|ack-{control}|P|2.6\r"
            f"MSA|{code}|{control}{'|' + detail if detail else ''}\r")


@dataclass
class Receiver:
    """An MLLP receiver on 127.0.0.1: records each message and answers ``answer(text)`` (an ACK
    text, or None for no answer)."""

    port: int = 0
    answer: Callable[[str], str | None] = ack
    received: list[str] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):  # a receiver that goes away drops its connections too
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        try:
            while True:
                data = await reader.readuntil(END)
                text = data[data.index(START) + 1:-len(END)].decode()
                self.received.append(text)
                reply = self.answer(text)
                if reply is not None:
                    writer.write(frame(reply))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    def control_ids(self) -> list[str]:
        return [m.split("\r", 1)[0].split("|")[9] for m in self.received]


async def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = pred()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or pred}")
