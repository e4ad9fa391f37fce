"""``monitord export``: a session's readings, alarm events and notes, as CSV and as JSON."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

from monitord.events import EventKind
from monitord.store.export import main
from tests.store.conftest import Bed, make_config


async def _course(tmp_path: Path) -> tuple[Bed, Path]:
    state = tmp_path / "state"
    bed = Bed(make_config({"state_dir": str(state)}))
    await bed.start()
    bed.admit_and_start(pain=8)
    bed.run(60)
    bed.spo2 = 80.0
    bed.run(20)
    bed.spo2 = 98.0
    bed.run(10)
    bed.stop_and_discharge(pain=4)
    bed.flush()
    await bed.stop()
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[store]\nstate_dir = "{state}"\n')
    return bed, cfg


async def test_export_csv_has_readings_alarms_and_notes(tmp_path: Path) -> None:
    bed, cfg = await _course(tmp_path)
    out = tmp_path / "s1.csv"
    assert main(Namespace(config=str(cfg), session=1, format="csv", output=str(out))) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    in_session = [e for e in bed.events if e.seq >= next(
        x.seq for x in bed.events if x.kind is EventKind.SESSION and x.data["action"] == "admitted")]
    readings = [e for e in in_session if e.kind in (EventKind.VITALS, EventKind.INFUSION)]
    alarms = [e for e in in_session if e.kind is EventKind.ALARM]
    assert sum(r["record"] == "reading" for r in rows) == len(readings)
    assert [(r["rule_id"], r["transition"]) for r in rows if r["record"] == "alarm"] == [
        (e.data["rule_id"], e.data["transition"]) for e in alarms]
    notes = [(r["note_type"], r["detail"]) for r in rows if r["record"] == "note"]
    assert ("pain", '{"score": 8}') in notes and ("pain", '{"score": 4}') in notes
    assert any(t == "checklist" for t, _ in notes)
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    spo2 = [float(r["spo2"]) for r in rows if r["record"] == "reading" and r["spo2"]]
    assert min(spo2) == 80.0


async def test_export_json_through_the_cli(tmp_path: Path) -> None:
    bed, cfg = await _course(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "monitord.cli", "export", "-c", str(cfg), "--session", "1", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    stopped = next(e for e in bed.events if e.kind is EventKind.SESSION and e.data["action"] == "stopped")
    assert data["session"]["cumulative_mg"] == stopped.data["cumulative_mg"]
    # Named for what it is: the guideline's "positive response" needs relief sustained over
    # weeks with a functional measure (lines 1606-1616), which a session cannot show.
    assert data["session"]["pain_reduction_at_end_of_session"] is True
    assert data["session"]["pain_reduction_pct"] == 50.0
    assert data["session"]["pain_reduction_threshold_pct"] == 30.0
    assert "positive" not in proc.stdout
    assert {a["rule_id"] for a in data["alarm_events"]} >= {"vital.spo2_low"}
    assert len(data["readings"]) > 100

    missing = subprocess.run(
        [sys.executable, "-m", "monitord.cli", "export", "-c", str(cfg), "--session", "99"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert missing.returncode == 1 and "no session 99" in missing.stderr
