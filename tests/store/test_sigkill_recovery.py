"""Acceptance: the real daemon is SIGKILLed in the middle of an infusion and restarted.

The simulated devices run in their own process, so they keep going while the daemon is dead,
and speak over ptys; the daemon runs with MQTT off and its dashboard socket in the temp dir;
commands go through the real dashboard link. After the restart the session must resume, the
cumulative dose must agree with the pump's volume within one sample, and the events table must
hold every seq exactly once, with every reading and alarm event in the typed tables.

The first test drives a Modbus pump alone; the second plays ``sigkill-with-monitor.toml`` with
``monitord sim`` on the pump AND the patient monitor, and kills the daemon after a latching
alarm has latched: the alarm must still be shown after the restart. The third plays
``sigkill-sedation-nibp.toml``: killed with a latched sedation alarm, an acknowledged high NIBP
alarm and recorded psychomimetic effects, the restarted daemon shows the same alarms at the same
priorities and acknowledgement states, and emits no "cleared" and new "raised" for any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from monitord.config import load_config
from monitord.link.client import LinkClient

ROOT = Path(__file__).resolve().parents[2]
RATE_ML_H = 35.0
POLL_S = 0.5
CONC = 1.0
MONITOR_POLL_S = 1.0
# Every checklist item answered: no contraindication, every prompted test done.
CHECKLIST = {c.id: c.kind == "prompt" for c in load_config().checklist}


def _config(tmp: Path, bed: str, pump_driver: str, pump_port: str, monitor_port: str | None = None,
            extra: str = "") -> str:
    """The daemon's site file for these tests: the pump, optionally the monitor, no MQTT."""
    monitor = f"""
[devices.monitor]
driver = "datex"
poll_interval_s = {MONITOR_POLL_S}
timeout_s = 10.0
[devices.monitor.serial]
port = "{monitor_port}"
""" if monitor_port else ""
    return f"""
[bed]
id = "{bed}"
care_area = "outpatient-infusion"

[devices.pump]
driver = "{pump_driver}"
poll_interval_s = {POLL_S}
timeout_s = 5.0
[devices.pump.serial]
port = "{pump_port}"
{monitor}
[store]
state_dir = "{tmp / 'state'}"
flush_interval_s = 0.2

[mqtt]
enabled = false

[dashboard]
socket = "{tmp / 'dash.sock'}"
{extra}"""


async def _spawn(*args: str, log: Path) -> asyncio.subprocess.Process:
    fh = log.open("ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, stdout=fh, stderr=fh, env=env)


async def _wait(cond: Any, what: str, timeout: float = 60.0, proc: asyncio.subprocess.Process | None = None,
                log: Path | None = None) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if proc is not None and proc.returncode is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}:\n"
                                 + (log.read_text()[-3000:] if log else ""))
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + (log.read_text()[-3000:] if log else ""))
        await asyncio.sleep(0.1)


def _query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _count(db: Path, sql: str, *params: Any) -> int:
    if not db.exists():
        return 0
    try:
        return int(_query(db, sql, *params)[0][0] or 0)
    except sqlite3.OperationalError:  # not migrated yet
        return 0


STARTED = "SELECT count(*) FROM events WHERE kind='session' AND json_extract(data,'$.action')='started'"
RECOVERED = "SELECT count(*) FROM events WHERE kind='system' AND json_extract(data,'$.action')='recovered'"


async def _kill_and_restart(daemon: asyncio.subprocess.Process, cfg: Path, db: Path,
                            log: Path) -> tuple[asyncio.subprocess.Process, int]:
    """SIGKILL the daemon, leave it down a while (the devices carry on), start it again and wait
    for its recovery event. Returns the new process and the last seq stored before the kill."""
    daemon.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(daemon.wait(), 30) == -signal.SIGKILL
    killed_at_seq = _count(db, "SELECT max(seq) FROM events")
    await asyncio.sleep(1.5)
    daemon = await _spawn("-m", "monitord.cli", "run", "-c", str(cfg), log=log)
    await _wait(lambda: _count(db, RECOVERED) == 1, "the recovery event", 60.0, daemon, log)
    return daemon, killed_at_seq


async def _command(sock: Path, *commands: tuple[str, dict[str, Any]]) -> None:
    client = LinkClient(sock, lambda msg: None, retry_s=0.2)
    task = asyncio.create_task(client.run())
    try:
        await _wait(lambda: client.connected, "the dashboard link", 30.0)
        for kind, fields in commands:
            await client.command(kind, actor="rn1", **fields)
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def test_sigkill_mid_infusion_then_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(_config(tmp_path, "bed-kill", "modbus", str(tmp_path / "pump")))
    db = tmp_path / "state" / "monitord.db"
    sock = tmp_path / "dash.sock"
    sim_log, d1_log, d2_log = tmp_path / "sim.log", tmp_path / "daemon1.log", tmp_path / "daemon2.log"

    sim = await _spawn("-m", "monitord.simulators.pump_modbus_sim", "--pty", str(tmp_path / "pump"), "--rate", str(RATE_ML_H),
                       log=sim_log)
    daemon: asyncio.subprocess.Process | None = None
    try:
        await _wait(lambda: (tmp_path / "pump").exists(), "the pump simulator's pty", 30.0, sim, sim_log)
        daemon = await _spawn("-m", "monitord.cli", "run", "-c", str(cfg), log=d1_log)
        await _wait(sock.exists, "the dashboard socket", 60.0, daemon, d1_log)
        await _command(sock, ("admit", {"patient_id": "PSN-7", "weight_kg": 70.0, "age_years": 40}),
                       ("order", {"drug": "ketamine", "concentration_mg_ml": CONC, "rate_ml_h": RATE_ML_H,
                                  "syringe_ml": 50.0}),
                       ("checklist", {"answers": CHECKLIST}),
                       ("start", {}))
        await _wait(lambda: _count(db, STARTED) == 1, "the start to be stored", 30.0, daemon, d1_log)
        infusing = "SELECT count(*) FROM events WHERE kind='infusion' AND seq > (SELECT max(seq) FROM events WHERE kind='session')"
        await _wait(lambda: _count(db, infusing) >= 6, "pump readings during the infusion", 60.0, daemon, d1_log)

        daemon, killed_at_seq = await _kill_and_restart(daemon, cfg, db, d2_log)
        after = "SELECT count(*) FROM events WHERE kind='infusion' AND seq > (SELECT seq FROM events WHERE kind='system' AND json_extract(data,'$.action')='recovered')"
        await _wait(lambda: _count(db, after) >= 6, "pump readings after the restart", 60.0, daemon, d2_log)
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 60) == 0, d2_log.read_text()[-3000:]
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

    # Every seq exactly once, in order, across the kill.
    seqs = [s for (s,) in _query(db, "SELECT seq FROM events WHERE bed_id='bed-kill' ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) > killed_at_seq

    # The session resumed: one admission, one start, recovered while running.
    actions = [a for (a,) in _query(db, "SELECT json_extract(data,'$.action') FROM events WHERE kind='session' ORDER BY seq")]
    assert actions.count("admitted") == 1 and actions.count("started") == 1
    (rec,) = _query(db, "SELECT data FROM events WHERE kind='system' AND json_extract(data,'$.action')='recovered'")
    rec_data = json.loads(rec[0])
    assert rec_data["status"] == "running" and rec_data["downtime_s"] > 1.0
    sessions = _query(db, "SELECT patient_id, started_at, stopped_at FROM sessions")
    assert len(sessions) == 1 and sessions[0][0] == "PSN-7" and sessions[0][1] is not None

    # Cumulative dose follows the pump's volume across the kill, within one sample.
    pump = _query(db, "SELECT json_extract(data,'$.cumulative_mg'), json_extract(data,'$.volume_infused_ml') "
                      "FROM events WHERE kind='infusion' AND seq > (SELECT seq FROM events WHERE kind='session' "
                      "AND json_extract(data,'$.action')='order_set') ORDER BY seq")
    first, last = pump[0], pump[-1]
    one_sample_mg = RATE_ML_H / 3600 * POLL_S * CONC * 2 + 1e-3
    assert last[0] - first[0] == pytest.approx((last[1] - first[1]) * CONC, abs=one_sample_mg)
    assert last[0] > 0

    # Typed rows: one reading per pump/vitals event, one alarm row per alarm event, gapless alarm_seq.
    assert _count(db, "SELECT count(*) FROM readings") == _count(
        db, "SELECT count(*) FROM events WHERE kind IN ('vitals','infusion')")
    alarm_events = _query(db, "SELECT json_extract(data,'$.alarm_seq'), seq FROM events WHERE kind='alarm' ORDER BY seq")
    alarm_rows = _query(db, "SELECT alarm_seq, seq FROM alarm_events ORDER BY alarm_seq")
    assert alarm_rows == alarm_events
    assert [a for a, _ in alarm_rows] == list(range(1, len(alarm_rows) + 1))


# -- pump and monitor, played by ``monitord sim`` -------------------------------------------

SCENARIO = Path(__file__).with_name("sigkill-with-monitor.toml")


async def _snapshot(sock: Path, ready: Any) -> dict[str, Any]:
    """The newest snapshot the dashboard link sends for which ``ready(snapshot)`` holds."""
    seen: list[dict[str, Any]] = []
    client = LinkClient(sock, lambda msg: seen.append(msg["snapshot"]) if msg.get("type") == "snapshot" else None,
                        retry_s=0.2)
    task = asyncio.create_task(client.run())
    try:
        await _wait(lambda: any(ready(s) for s in seen), "a snapshot from the dashboard link", 30.0)
        return [s for s in seen if ready(s)][-1]
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _one_row_per_event(db: Path, table: str, kinds: str) -> None:
    """Every event of ``kinds`` has exactly one row in ``table`` (joined on seq), and no row
    of ``table`` is without its event."""
    events = [s for (s,) in _query(db, f"SELECT seq FROM events WHERE kind IN ({kinds}) ORDER BY seq")]
    rows = [s for (s,) in _query(db, f"SELECT seq FROM {table} ORDER BY seq")]
    assert events and rows == events, f"{table}: {len(rows)} rows for {len(events)} events"


async def test_sigkill_with_pump_and_monitor_keeps_the_latched_alarm(tmp_path: Path) -> None:
    db = tmp_path / "state" / "monitord.db"
    sock = tmp_path / "dash.sock"
    paths = tmp_path / "ports.json"
    sim_log, d1_log, d2_log = tmp_path / "sim.log", tmp_path / "daemon1.log", tmp_path / "daemon2.log"

    # The simulator opens both devices, writes their paths, then waits for the daemon on the
    # dashboard socket and plays the course (its admit/order/start steps go over the link).
    sim = await _spawn("-m", "monitord.cli", "sim", "--scenario", str(SCENARIO), "--pump", "modbus",
                       "--link", str(sock), "--paths-file", str(paths), "--workdir", str(tmp_path), log=sim_log)
    daemon: asyncio.subprocess.Process | None = None
    try:
        await _wait(paths.exists, "the simulator's device paths", 30.0, sim, sim_log)
        ports = json.loads(paths.read_text())
        assert ports["monitor"] and ports["pump"]
        cfg = tmp_path / "site.toml"
        cfg.write_text(_config(tmp_path, "bed-kill2", ports["pump_protocol"], ports["pump"], ports["monitor"]))

        daemon = await _spawn("-m", "monitord.cli", "run", "-c", str(cfg), log=d1_log)
        await _wait(lambda: _count(db, STARTED) == 1, "the start to be stored", 60.0, daemon, d1_log)
        latched = "SELECT count(*) FROM alarm_events WHERE rule_id='vital.spo2_low' AND transition='latched'"
        await _wait(lambda: _count(db, latched) == 1, "vital.spo2_low to latch", 60.0, daemon, d1_log)
        infusing = "SELECT count(*) FROM events WHERE kind='infusion' AND seq > (SELECT max(seq) FROM events WHERE kind='alarm')"
        await _wait(lambda: _count(db, infusing) >= 2, "pump readings after the latch", 30.0, daemon, d1_log)

        daemon, killed_at_seq = await _kill_and_restart(daemon, cfg, db, d2_log)
        rec_seq = _count(db, "SELECT seq FROM events WHERE kind='system' AND json_extract(data,'$.action')='recovered'")
        after = "SELECT count(*) FROM events WHERE kind=? AND seq > ?"
        await _wait(lambda: _count(db, after, "infusion", rec_seq) >= 4 and _count(db, after, "vitals", rec_seq) >= 3,
                    "pump and monitor readings after the restart", 60.0, daemon, d2_log)

        # What the bedside screen shows after the restart: the same course, the alarm still latched.
        snap = await _snapshot(sock, lambda s: s["seq"] > rec_seq and "spo2" in s["vitals"])
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 60) == 0, d2_log.read_text()[-3000:]
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert snap["status"] == "running"
    assert snap["patient"]["id"] == "PSN-9" and snap["patient"]["weight_kg"] == 70.0
    assert snap["order"]["rate_ml_h"] == 35.0 and snap["order"]["concentration_mg_ml"] == 1.0
    alarms = {a["rule_id"]: a for a in snap["alarms"]}
    assert "vital.spo2_low" in alarms, snap["alarms"]
    assert alarms["vital.spo2_low"]["state"] == "latched" and alarms["vital.spo2_low"]["priority"] == "high"
    assert snap["vitals"]["spo2"]["value"] >= 95  # SpO2 is back: the alarm shows because it latched

    # Every seq exactly once, in order, across the kill.
    seqs = [s for (s,) in _query(db, "SELECT seq FROM events WHERE bed_id='bed-kill2' ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert killed_at_seq < rec_seq <= len(seqs)

    # The same session row resumed: one admission, one start, recovered while running, no reset.
    actions = [a for (a,) in _query(db, "SELECT json_extract(data,'$.action') FROM events WHERE kind='session' ORDER BY seq")]
    assert actions.count("admitted") == 1 and actions.count("started") == 1
    (rec,) = _query(db, "SELECT data FROM events WHERE kind='system' AND json_extract(data,'$.action')='recovered'")
    rec_data = json.loads(rec[0])
    assert rec_data["status"] == "running" and rec_data["downtime_s"] > 1.0
    sessions = _query(db, "SELECT patient_id, weight_kg, concentration_mg_ml, rate_ml_h, started_at, stopped_at, "
                          "discharged_at FROM sessions")
    assert len(sessions) == 1
    assert sessions[0][:4] == ("PSN-9", 70.0, 1.0, 35.0) and sessions[0][4] is not None
    assert sessions[0][5:] == (None, None)
    spo2_transitions = [t for (t,) in _query(db, "SELECT transition FROM alarm_events "
                                                 "WHERE rule_id='vital.spo2_low' ORDER BY alarm_seq")]
    assert spo2_transitions == ["raised", "latched"]

    # Cumulative dose follows the pump's volume across the kill, within one pump sample.
    pump = _query(db, "SELECT json_extract(data,'$.cumulative_mg'), json_extract(data,'$.volume_infused_ml') "
                      "FROM events WHERE kind='infusion' AND seq > (SELECT seq FROM events WHERE kind='session' "
                      "AND json_extract(data,'$.action')='started') ORDER BY seq")
    first, last = pump[0], pump[-1]
    one_sample_mg = RATE_ML_H / 3600 * POLL_S * CONC + 1e-3
    assert last[0] - first[0] == pytest.approx((last[1] - first[1]) * CONC, abs=one_sample_mg)
    assert last[0] > 0

    # Typed rows: one readings row per vitals/infusion event, one alarm_events row per alarm event.
    _one_row_per_event(db, "readings", "'vitals','infusion'")
    _one_row_per_event(db, "alarm_events", "'alarm'")
    alarm_seqs = [a for (a,) in _query(db, "SELECT alarm_seq FROM alarm_events ORDER BY alarm_seq")]
    assert alarm_seqs == list(range(1, len(alarm_seqs) + 1))

    # The monitor's frames are kept from before and after the kill.
    vitals = "SELECT count(*) FROM readings WHERE source='vitals' AND spo2 IS NOT NULL AND seq {} ?"
    assert _count(db, vitals.format("<="), killed_at_seq) >= 10
    assert _count(db, vitals.format(">"), rec_seq) >= 3
    assert _count(db, "SELECT count(*) FROM readings WHERE source='vitals' AND sbp IS NOT NULL") >= 2  # NIBP


SEDATION_SCENARIO = Path(__file__).with_name("sigkill-sedation-nibp.toml")
# sedation.rass_high is HIGH but not latching in the shipped defaults; the site file makes it
# latching so that a *latched* sedation alarm is carried across the kill.
LATCHING = [*load_config().alarms.latching, "sedation.rass_high"]
END_OR_NEW = ("raised", "reactivated", "cleared", "reset")


def _alarm_set(snap: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """The active-alarm set as the bedside shows it: rule -> (priority, state, acknowledgement)."""
    return {a["rule_id"]: (a["priority"], a["state"], a["inactivation"]) for a in snap["alarms"]}


async def test_sigkill_keeps_sedation_nibp_and_effects_alarms_as_they_were(tmp_path: Path) -> None:
    db = tmp_path / "state" / "monitord.db"
    sock = tmp_path / "dash.sock"
    paths = tmp_path / "ports.json"
    sim_log, d1_log, d2_log = tmp_path / "sim.log", tmp_path / "daemon1.log", tmp_path / "daemon2.log"
    sim = await _spawn("-m", "monitord.cli", "sim", "--scenario", str(SEDATION_SCENARIO), "--pump", "modbus",
                       "--link", str(sock), "--paths-file", str(paths), "--workdir", str(tmp_path), log=sim_log)
    daemon: asyncio.subprocess.Process | None = None
    try:
        await _wait(paths.exists, "the simulator's device paths", 30.0, sim, sim_log)
        ports = json.loads(paths.read_text())
        cfg = tmp_path / "site.toml"
        cfg.write_text(_config(tmp_path, "bed-kill3", ports["pump_protocol"], ports["pump"], ports["monitor"],
                               extra=f"\n[alarms]\nlatching = {json.dumps(LATCHING)}\n"))
        daemon = await _spawn("-m", "monitord.cli", "run", "-c", str(cfg), log=d1_log)

        def transitions(rule: str) -> int:
            return _count(db, "SELECT count(*) FROM alarm_events WHERE rule_id=?", rule)

        latched = "SELECT count(*) FROM alarm_events WHERE rule_id='sedation.rass_high' AND transition='latched'"
        await _wait(lambda: _count(db, latched) == 1, "sedation.rass_high to latch", 60.0, daemon, d1_log)
        await _wait(lambda: transitions("vital.sbp_high") >= 1, "the high NIBP alarm", 60.0, daemon, d1_log)
        await _wait(lambda: transitions("effects.psychomimetic") >= 1, "the effects advisory", 30.0, daemon, d1_log)
        await _command(sock, ("ack", {"rule_id": "vital.sbp_high"}))
        acked = "SELECT count(*) FROM alarm_events WHERE rule_id='vital.sbp_high' AND transition='acknowledged'"
        await _wait(lambda: _count(db, acked) == 1, "the acknowledgement to be stored", 30.0, daemon, d1_log)

        # What the bedside shows just before the kill.
        before = await _snapshot(sock, lambda s: _alarm_set(s).get("vital.sbp_high", ("", "", ""))[2] == "acknowledged")
        daemon, killed_at_seq = await _kill_and_restart(daemon, cfg, db, d2_log)
        rec_seq = _count(db, "SELECT seq FROM events WHERE kind='system' AND json_extract(data,'$.action')='recovered'")
        # Let the devices speak again (a new cuff measurement included) before comparing.
        nibp_after = "SELECT count(*) FROM readings WHERE source='vitals' AND sbp IS NOT NULL AND seq > ?"
        await _wait(lambda: _count(db, nibp_after, rec_seq) >= 1, "a cuff measurement after the restart", 60.0,
                    daemon, d2_log)
        after = await _snapshot(sock, lambda s: s["seq"] > rec_seq and "sbp" in s["vitals"])
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 60) == 0, d2_log.read_text()[-3000:]
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()

    wanted = {"sedation.rass_high": ("high", "latched", "enabled"),
              "vital.sbp_high": ("high", "active", "acknowledged")}
    assert {k: _alarm_set(before).get(k) for k in wanted} == wanted, before["alarms"]
    assert "effects.psychomimetic" in _alarm_set(before)
    # The same set after the restart: rule ids, priorities, states and acknowledgements.
    assert _alarm_set(after) == _alarm_set(before)
    assert after["effects"] == before["effects"] == ["dissociation"]
    assert after["sedation"]["score"] == 0 and after["vitals"]["sbp"]["value"] == 190
    assert killed_at_seq >= before["seq"]
    # No transition that ends or starts any of those alarms across the kill and restart.
    across = _query(db, "SELECT rule_id, transition, seq FROM alarm_events WHERE seq > ? ORDER BY seq", before["seq"])
    assert [a for a in across if a[0] in _alarm_set(before) and a[1] in END_OR_NEW] == [], across
    # The effects entry itself is in the record.
    effects = _query(db, "SELECT effects FROM observations WHERE type='effects'")
    assert effects == [("dissociation",)]
