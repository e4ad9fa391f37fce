"""Nurse entries over the link are answered "ok" only once they are on disk.

A real SQLite store behind the link: the reply to an accepted entry says ``stored: true`` only
after the writer committed every event up to it, so the database read from outside already
holds it when the reply arrives. With the database refusing writes the reply comes after
``STORE_WAIT_S`` as accepted but not yet stored, the rule loop evaluating all along, and a
``stored`` message follows once the database takes writes again. Every accepted action leaves
an audit row with who did it; every refusal one that says it was refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from monitord import readings as r
from monitord.link import server as srv
from tests.link.conftest import TICK_S, Bed, Raw, running_bed, until, vitals


def refuse_writes(bed: Bed, on: dict[str, bool]) -> None:
    """While ``on["on"]`` the database refuses every write, as a read-only or full disk does."""
    assert bed.store is not None

    @event.listens_for(bed.store.db, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(f"PRAGMA query_only = {1 if on['on'] else 0}")


def pain_rows(bed: Bed) -> int:
    return int(bed.db("SELECT count(*) FROM observations WHERE type = 'pain'")[0][0])


async def test_ok_is_sent_only_once_the_entry_is_in_the_database(sock_dir: Path) -> None:
    # The default flush interval: without the wait, an "ok" would often come before the commit.
    async with running_bed(sock_dir, store=True, flush_interval_s=0.5) as bed:
        c = await Raw.connect(bed.socket)
        reply = await c.ask(type="admit", id=0, actor="rn1", patient_id="P-1", weight_kg=70, age_years=45)
        assert reply == {"type": "reply", "id": 0, "ok": True, "stored": True}
        assert bed.db("SELECT patient_id FROM sessions") == [("P-1",)]
        for i in range(1, 41):
            reply = await c.ask(type="pain", id=i, actor="rn1", score=i % 11)
            assert reply["ok"] is True and reply["stored"] is True, reply
            assert pain_rows(bed) == i  # on disk when the nurse is told
        # A refusal is not held up: it promises nothing.
        no = await c.ask(type="pain", id="x", actor="rn1", score=11)
        assert no["ok"] is False and "stored" not in no
        await c.close()


async def test_store_down_answers_accepted_not_yet_stored_then_stored_and_the_loop_runs_on(sock_dir: Path) -> None:
    async with running_bed(sock_dir, store=True, flush_interval_s=0.05) as bed:
        on = {"on": False}
        refuse_writes(bed, on)
        c = await Raw.connect(bed.socket)
        assert (await c.ask(type="admit", id=0, actor="rn1", patient_id="P-1", weight_kg=70, age_years=45))["stored"]
        on["on"] = True
        loop = asyncio.get_running_loop()
        asked = loop.time()
        reply = await c.ask(type="pain", id="p1", actor="rn1", score=6)
        waited = loop.time() - asked
        assert reply["ok"] is True and reply["stored"] is False
        assert reply["note"].startswith("Accepted, not yet stored")
        assert srv.STORE_WAIT_S - 0.1 <= waited < srv.STORE_WAIT_S + 10
        assert bed.server.not_stored == 1
        # The rule loop never waited for the store: it evaluated every tick meanwhile, and the
        # engine took the entry at once (it is in the state the screen shows).
        during = [t for t in bed.evaluations if asked <= t <= asked + waited]
        assert len(during) >= 10, f"{len(during)} evaluations in {waited:.1f} s at a {TICK_S} s tick"
        assert bed.engine.snapshot()["pain"][-1]["score"] == 6
        bed.loop.put(vitals(hr=130))
        await until(lambda: r.Vital.HR in bed.engine.state.vitals and bed.engine.state.vitals[r.Vital.HR].value == 130,
                    "the engine to take readings while the store is down")
        assert pain_rows(bed) == 0
        # The database comes back: the entry is committed and the dashboard told so.
        on["on"] = False
        stored = await c.recv_type("stored", timeout=30.0)
        assert stored["id"] == "p1" and isinstance(stored["seq"], int)
        assert pain_rows(bed) == 1
        reply = await c.ask(type="pain", id="p2", actor="rn1", score=5)
        assert reply["stored"] is True
        await c.close()


# Every command a nurse can send, as a course runs; each is expected to be accepted.
COURSE: list[dict[str, Any]] = [
    {"type": "admit", "patient_id": "P-7", "weight_kg": 70, "age_years": 40},
    {"type": "confirm_weight", "weight_kg": 70},
    {"type": "order", "drug": "ketamine", "concentration_mg_ml": 1.0, "rate_ml_h": 35, "syringe_ml": 50},
    {"type": "checklist", "answers": "ALL"},
    {"type": "override", "rule_id": "checklist.pregnancy", "reason": "Not pregnant: test negative today",
     "entered_by": "N6"},
    {"type": "controlled", "action": "dispensed", "witness": "N6", "volume_ml": 50},
    {"type": "baseline"},
    {"type": "start"},
    {"type": "sedation", "scale": "rass", "score": -1},
    {"type": "pain", "score": 4},
    {"type": "effects", "effects": ["dizziness"], "note": "mild", "severity": "mild"},
    {"type": "rescue", "drug": "ondansetron", "dose_mg": 4, "route": "IV", "reason": "nausea"},
    {"type": "manual_bolus", "dose_mg": 5, "route": "IV", "note": "breakthrough pain"},
    {"type": "pause", "reason": "patient request"},
    {"type": "resume"},
    {"type": "stop", "reason": "course complete"},
    {"type": "discharge_score", "scale": "padss", "items": {"vitals": 2, "activity": 2, "nausea": 2, "pain": 2,
                                                            "bleeding": 2}},
    {"type": "escort", "name": "J. Doe"},
    {"type": "discharge", "reason": "transfer to the ward"},
]
# What each leaves in audit_log.action (the session action, observation type or alarm transition).
AUDITED = ["admitted", "weight_confirmed", "order_set", "checklist", "override", "controlled_dispensed",
           "baseline_captured", "started", "sedation", "pain", "effects", "rescue", "manual_bolus", "paused",
           "resumed", "stopped", "discharge_score", "escort_confirmed", "discharged"]


async def test_every_accepted_action_has_an_audit_row_and_every_refusal_too(sock_dir: Path) -> None:
    async with running_bed(sock_dir, store=True) as bed:
        bed.loop.put(vitals())
        c = await Raw.connect(bed.socket)
        for i, step in enumerate(COURSE):
            if step.get("answers") == "ALL":
                step = step | {"answers": {item.id: item.id == "pregnancy" for item in bed.config.checklist}}
            if step["type"] == "discharge":  # first an alarm action, while the session has alarms
                alarm = bed.engine.snapshot()["alarms"][0]
                ack = await c.ask(type="ack", id="a", actor="N5", rule_id=alarm["rule_id"],
                                  alarm_seq=alarm["occurrence_seq"])
                assert ack["ok"] and ack["stored"], ack
            actor = "Dr-9" if step["type"] == "override" else "N5"
            reply = await c.ask(id=i, actor=actor, **step)
            assert reply["ok"] is True and reply["stored"] is True, (step, reply)
        rows = bed.db("SELECT action, actor FROM audit_log WHERE accepted = 1 ORDER BY seq")
        assert [a for a, _ in rows] == [*AUDITED[:-1], "acknowledged", AUDITED[-1]]
        assert {actor for _, actor in rows} == {"N5", "Dr-9"}
        # A refusal is audited as refused, also under a spoofed identity, and "system" starts nothing.
        for i, actor in enumerate(("N5", "system", "System")):
            no = await c.ask(type="start", id=f"s{i}", actor=actor)
            assert no["ok"] is False and "stored" not in no
        await until(lambda: len(bed.db("SELECT 1 FROM audit_log WHERE accepted = 0 AND action = 'StartInfusion'")) == 3,
                    "the refusals to be audited")
        assert bed.db("SELECT count(*) FROM audit_log WHERE action = 'started'") == [(1,)]
        await c.close()


def test_an_entry_is_answered_only_once_its_batch_is_synced_to_disk() -> None:
    """An alarm batch is published before its fsync; an entry in it is durable only after that."""
    import asyncio
    from types import SimpleNamespace

    from monitord.store.store import Store

    writer = SimpleNamespace(committed_seq=10, synced_seq=9, hurry=lambda: None)
    store = Store.__new__(Store)
    store.writer = writer  # type: ignore[assignment]
    store._stored_waiters = []  # type: ignore[attr-defined]

    async def run() -> tuple[bool, bool]:
        early = await store.wait_stored(10, 0.3)  # committed, not yet synced: not answered ok
        writer.synced_seq = 10
        return early, await store.wait_stored(10, 0.3)

    assert asyncio.run(run()) == (False, True)
