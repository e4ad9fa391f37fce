"""The daemon's dashboard link over a real Unix socket: greeting, commands, pushes, and
surviving clients that misbehave."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

from monitord import readings as r
from monitord.link.protocol import COMMANDS
from monitord.link.server import DashboardServer
from monitord.state import SessionStatus
from tests.dashboard.conftest import Bed, admit_and_order, make_config, vitals

TIMEOUT = 10.0


class Raw:
    """A bare protocol client: what a third-party dashboard would do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, path: Path) -> Raw:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=16 * 1024 * 1024)
        return cls(reader, writer)

    async def recv(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line.endswith(b"\n"), "server closed the link"
        msg: dict[str, Any] = json.loads(line)
        self.received.append(msg)
        return msg

    async def recv_type(self, kind: str) -> dict[str, Any]:
        while True:
            msg = await self.recv()
            if msg["type"] == kind:
                return msg

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def ask(self, **msg: Any) -> dict[str, Any]:
        await self.send(json.dumps(msg).encode() + b"\n")
        return await self.recv_type("reply")

    async def close(self) -> None:
        self.writer.close()


async def test_greets_with_hello_then_full_snapshot(bed: Bed) -> None:
    c = await Raw.connect(bed.socket)
    hello = await c.recv()
    assert hello["type"] == "hello" and hello["protocol"] == 1 and hello["bed_id"] == "bed-01"
    cfg = hello["config"]
    assert cfg["care_area"] == "outpatient-infusion"
    assert cfg["audio_pause_s"] == 120
    assert "midazolam" in cfg["rescue_medications"]
    assert {"id": "pregnancy", "text": "Pregnant?", "kind": "contraindication"} in cfg["checklist"]
    snap = await c.recv()
    assert snap["type"] == "snapshot" and snap["snapshot"]["status"] == "empty"
    assert snap["snapshot"]["bed_id"] == "bed-01"
    await c.close()


async def test_command_runs_through_engine_and_refusal_comes_back(bed: Bed) -> None:
    c = await Raw.connect(bed.socket)
    ok = await c.ask(type="admit", id=7, actor="N42", patient_id="P-1", weight_kg=70, age_years=40)
    assert ok == {"type": "reply", "id": 7, "ok": True}
    assert bed.engine.state.status is SessionStatus.ADMITTED
    assert bed.of("session", action="admitted", actor="N42")
    no = await c.ask(type="order", id="x", actor="N42", drug="ketamine", concentration_mg_ml=3.0, rate_ml_h=10)
    assert no["id"] == "x" and no["ok"] is False
    assert "Concentration 3 mg/mL is not in the drug library" in no["error"]
    await c.close()


async def test_snapshots_are_coalesced_and_only_sent_on_change(bed: Bed) -> None:
    admit_and_order(bed.engine)
    c = await Raw.connect(bed.socket)
    await c.recv_type("snapshot")
    for hr in range(60, 100):  # a burst of 40 readings
        bed.loop.put(vitals(hr=hr))
    await bed.settle()
    seen: list[dict[str, Any]] = []
    beats = 0
    deadline = asyncio.get_running_loop().time() + 1.6
    while asyncio.get_running_loop().time() < deadline:
        try:
            msg = await asyncio.wait_for(c.recv(), max(0.01, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            break
        if msg["type"] == "snapshot":
            seen.append(msg["snapshot"])
        beats += msg["type"] == "heartbeat"
    assert 1 <= len(seen) <= 2, f"{len(seen)} snapshots for one burst"
    assert seen[-1]["vitals"]["hr"]["value"] == 99
    assert beats >= 2  # at least one per second
    await c.close()


async def test_log_events_are_pushed_with_the_actor(bed: Bed) -> None:
    admit_and_order(bed.engine)
    c = await Raw.connect(bed.socket)
    reply = await c.ask(type="pain", id=1, actor="N9", score=6)
    assert reply["ok"]
    pushed = [m["event"] for m in c.received if m["type"] == "event" and m["event"]["kind"] == "observation"]
    assert [ev["data"] for ev in pushed] == [{"type": "pain", "score": 6, "actor": "N9"}]
    assert pushed[0]["seq"] == bed.engine.seq
    await c.close()


async def test_garbage_gets_error_replies_and_the_link_keeps_serving(bed: Bed) -> None:
    c = await Raw.connect(bed.socket)
    for raw in (b"not json\n", b"[1,2]\n", b'{"type":"fly","id":1}\n', b'{"type":"pain","id":2,"actor":"N"}\n',
                b'{"type":"pain","id":3,"actor":"N","score":"six"}\n', b'{"type":"pain","id":4,"actor":"N","score":1,"x":0}\n',
                b'{"type":"sedation","id":5,"actor":"N","scale":"gcs","score":1}\n', b"\xff\xfe\n",
                b'{"type":"admit","id":6,"actor":"N","patient_id":"P","weight_kg":NaN,"age_years":4}\n'):
        await c.send(raw)
        reply = await c.recv_type("reply")
        assert reply["ok"] is False and reply["error"].startswith("Bad message"), raw
    assert bed.server.bad_messages == 9
    ok = await c.ask(type="admit", id=10, actor="N1", patient_id="P-2", weight_kg=80, age_years=50)
    assert ok["ok"], ok
    await c.close()


async def test_client_dying_mid_message_does_not_hurt_the_daemon(bed: Bed) -> None:
    c = await Raw.connect(bed.socket)
    await c.recv_type("snapshot")
    await c.send(b'{"type":"admit","id":1,"actor":"N1","patient_')
    c.writer.transport.abort()
    # A second client that vanishes right after connecting, before reading anything.
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(bed.socket))
    s.close()
    await asyncio.sleep(0.05)
    assert bed.engine.state.status is SessionStatus.EMPTY  # the half command did nothing
    bed.loop.put(vitals())
    c2 = await Raw.connect(bed.socket)
    ok = await c2.ask(type="admit", id=2, actor="N1", patient_id="P-3", weight_kg=70, age_years=30)
    assert ok["ok"]
    assert len(bed.server.clients) == 1
    await c2.close()


async def test_oversized_line_is_refused_and_client_dropped(bed: Bed) -> None:
    c = await Raw.connect(bed.socket)
    await c.send(b'{"type":"pain","note":"' + b"x" * 200_000 + b'"}\n')
    reply = await c.recv_type("reply")
    assert reply["ok"] is False and "longer than" in reply["error"]
    await asyncio.wait_for(c.reader.read(), TIMEOUT)  # the server closes the link: read reaches EOF
    assert c.reader.at_eof()
    c2 = await Raw.connect(bed.socket)
    assert (await c2.recv())["type"] == "hello"
    await c2.close()


async def test_stale_socket_file_is_replaced_and_live_one_is_left_alone(bed: Bed, sock_dir: Path) -> None:
    stale = sock_dir / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # file stays, nobody listens: what a crashed daemon leaves
    config = make_config(stale)
    srv = DashboardServer(config, bed.engine, bed.loop)
    await srv.start()
    c = await Raw.connect(stale)
    assert (await c.recv())["type"] == "hello"
    await c.close()
    # A second server on the live socket of the first must not steal it: it reports a fault.
    rival = DashboardServer(config, bed.engine, bed.loop)
    await rival.start()
    await bed.settle()
    assert "dashboard" in bed.engine.state.output_faults
    assert "another process" in bed.engine.state.output_faults["dashboard"]
    c = await Raw.connect(stale)
    assert (await c.recv())["type"] == "hello"
    await c.close()
    await rival.stop()
    await srv.stop()
    assert not stale.exists()


async def test_commands_map_every_type(bed: Bed) -> None:
    """Each protocol command reaches the engine as its typed input, with its optional fields."""
    bed.loop.put(vitals())
    c = await Raw.connect(bed.socket)
    checklist = {item.id: item.id == "pregnancy" for item in bed.config.checklist}
    steps: list[dict[str, Any]] = [
        {"type": "admit", "patient_id": "P-7", "weight_kg": 70, "age_years": 40, "comorbid": False, "elderly": None,
         "previous_weight_kg": None, "confirm": False},
        {"type": "confirm_weight", "weight_kg": 70},
        {"type": "order", "drug": "ketamine", "concentration_mg_ml": 1.0, "rate_ml_h": 35, "bolus_mg": 0,
         "syringe_ml": 50, "planned_duration_min": 240, "confirm": False},
        {"type": "checklist", "answers": checklist},
        {"type": "override", "rule_id": "checklist.pregnancy", "reason": "Not pregnant: test negative today",
         "entered_by": "N6"},
        {"type": "controlled", "action": "dispensed", "witness": "N6", "volume_ml": 50},
        {"type": "baseline"},
        {"type": "start", "confirm": False},
        {"type": "sedation", "scale": "rass", "score": -1},
        {"type": "pain", "score": 4},
        {"type": "effects", "effects": ["dizziness", "nausea"], "note": "mild", "severity": "moderate"},
        {"type": "rescue", "drug": "ondansetron", "dose_mg": 4, "route": "IV", "reason": "nausea"},
        {"type": "manual_bolus", "dose_mg": 5, "route": "IV", "note": "breakthrough pain"},
        {"type": "pause", "reason": "patient request"},
        {"type": "resume"},
        {"type": "stop", "reason": "course complete"},
        {"type": "discharge_score", "scale": "padss", "items": {"vitals": 2, "activity": 2, "nausea": 2, "pain": 2,
                                                                "bleeding": 2}},
        {"type": "escort", "name": "J. Doe"},
    ]
    for i, step in enumerate(steps):
        reply = await c.ask(id=i, actor="N5", **step)
        assert reply["ok"], (step, reply)
    actions = [e.data["action"] for e in bed.of("session", actor="N5")]
    assert actions == ["admitted", "weight_confirmed", "order_set", "checklist", "override", "controlled_dispensed",
                       "baseline_captured", "started", "paused", "resumed", "stopped", "escort_confirmed"]
    assert bed.of("session", action="override", rule_id="checklist.pregnancy", reason="Not pregnant: test negative today",
                  entered_by="N6")
    assert [e.data["type"] for e in bed.of("observation", actor="N5")] == \
        ["sedation", "pain", "effects", "rescue", "manual_bolus", "discharge_score"]
    assert bed.of("observation", type="effects", severity="moderate")
    assert bed.engine.state.order is not None and bed.engine.state.order.planned_duration_min == 240

    # Alarm commands. The ack names the occurrence it saw: an older one is refused as stale.
    alarm = bed.engine.snapshot()["alarms"][0]
    stale = await c.ask(type="ack", id="stale", actor="N5", rule_id=alarm["rule_id"], alarm_seq=0)
    assert stale["ok"] is False and "stale" in stale["error"], stale
    ack = await c.ask(type="ack", id="ack", actor="N5", rule_id=alarm["rule_id"], alarm_seq=alarm["occurrence_seq"])
    assert ack["ok"], ack
    assert bed.of("alarm", rule_id=alarm["rule_id"], transition="acknowledged", actor="N5")
    for kind, extra in (("audio_pause", {}), ("reset", {"rule_id": "vital.hr_high"})):
        reply = await c.ask(type=kind, id=kind, actor="N5", **extra)
        assert reply["ok"] is False and ("No alarm" in reply["error"]), reply
    assert r.AudioPause.__name__ in {e.data["action"] for e in bed.of("rejected")}
    release = await c.ask(type="interlock_release", id="il", actor="N5", reason="breathing well again")
    assert release["ok"] is False and "nothing to release" in release["error"], release  # the interlock is off

    # Discharge before every criterion is met needs a reason; with one it is recorded.
    no = await c.ask(type="discharge", id="d1", actor="N5")
    assert no["ok"] is False and "give a reason" in no["error"], no
    yes = await c.ask(type="discharge", id="d2", actor="N5", reason="transfer to the ward")
    assert yes["ok"], yes
    assert bed.of("session", action="discharged", actor="N5", reason="transfer to the ward")
    assert {step["type"] for step in steps} | {"ack", "audio_pause", "reset", "interlock_release", "discharge"} == set(COMMANDS)
    await c.close()


async def test_confirmation_is_asked_with_the_computed_dose_and_given_with_confirm(bed: Bed) -> None:
    """An order above the monitored-setting threshold in an outpatient bed: the reply carries the
    engine's preview; the same order with ``confirm`` is recorded, and so is the start."""
    bed.loop.put(vitals())
    c = await Raw.connect(bed.socket)
    assert (await c.ask(type="admit", id=1, actor="N5", patient_id="P-8", weight_kg=70, age_years=40))["ok"]
    order = {"type": "order", "actor": "N5", "drug": "ketamine", "concentration_mg_ml": 1.0, "rate_ml_h": 70}
    ask = await c.ask(id=2, **order)
    assert ask["ok"] is False and ask["needs_confirmation"] is True
    preview = ask["preview"]
    assert (preview["dose_mg_kg_h"], preview["dose_mg_h"], preview["care_area"]) == (1.0, 70.0, "outpatient-infusion")
    assert "needs a monitored unit" in preview["verdict"] and "needs a monitored unit" in ask["error"]
    assert bed.engine.state.order is None
    assert (await c.ask(id=3, confirm=True, **order))["ok"]
    assert bed.of("session", action="order_set", confirmed=True)
    answers = {item.id: False for item in bed.config.checklist}
    assert (await c.ask(type="checklist", id=4, actor="N5", answers=answers))["ok"]
    start = await c.ask(type="start", id=5, actor="N5")
    assert start["ok"] is False and start["needs_confirmation"] is True and start["preview"]["dose_mg_kg_h"] == 1.0
    assert (await c.ask(type="start", id=6, actor="N5", confirm=True))["ok"]
    assert bed.engine.state.status is SessionStatus.RUNNING
    # A plain refusal carries no confirmation.
    no = await c.ask(type="pain", id=7, actor="N5", score=11)
    assert no["ok"] is False and "needs_confirmation" not in no
    await c.close()


async def test_estimate_curve_is_sent_on_connect_and_when_it_grows(bed: Bed) -> None:
    from tests.dashboard.conftest import Course

    c = await Raw.connect(bed.socket)
    empty = await c.recv_type("estimate_curve")
    assert empty == {"type": "estimate_curve", "kind": "model_estimate", "points": []}  # no ketamine yet
    course = Course(bed.engine, bed.clock)
    course.start()
    course.run(300)
    curve = await c.recv_type("estimate_curve")
    ages = [age for age, _ in curve["points"]]
    assert len(ages) >= 4 and ages == sorted(ages, reverse=True) and ages[-1] >= 0
    assert all(ng > 0 for _, ng in curve["points"])
    course.pump_state = r.PumpState.STOPPED  # stopped: the curve goes on with the model's fall
    course.run(180)
    later = await c.recv_type("estimate_curve")
    while len(later["points"]) < len(curve["points"]) + 3:
        later = await c.recv_type("estimate_curve")
    assert later["points"][-1][1] < max(ng for _, ng in later["points"])
    await c.close()


async def test_trend_history_starts_again_with_a_new_patient(bed: Bed) -> None:
    for _ in range(3):
        bed.clock.advance(10)
        bed.engine.submit(vitals())
    first = await Raw.connect(bed.socket)
    assert (await first.recv())["trends"]["hr"]  # the bed's monitor, no patient yet
    bed.engine.submit(r.Admit("P-2", 70.0, 40, "N1"))
    second = await Raw.connect(bed.socket)
    hello = await second.recv()
    assert all(series == [] for series in hello["trends"].values())
    await first.close()
    await second.close()
