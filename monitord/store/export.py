"""``monitord export``: one session's readings, alarm events and notes as CSV or JSON.

Without ``--session`` it lists the sessions in the database. CSV is one table in seq order with
a ``record`` column (``reading``, ``alarm``, ``note``); JSON keeps the three lists apart and adds
the session summary with its pain reduction at end of session (last pain score after the stop
against the last before the start). That is not a "positive response" in the guideline's sense
(lines 1606-1616: relief sustained over weeks, with satisfaction or a functional measure), which
needs follow-up that monitord does not record; the export never calls it one.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Connection, select

from monitord.config import load_or_report
from monitord.store import models as m
from monitord.store.database import open_database
from monitord.store.store import response_of

READING_FIELDS = ("device", "quality", "hr", "pulse", "sbp", "dbp", "map", "spo2", "rr", "etco2", "temp",
                  "pump_state", "rate_ml_h", "volume_infused_ml", "dose_rate_mg_kg_h", "cumulative_mg")
ALARM_FIELDS = ("alarm_seq", "rule_id", "transition", "priority", "alarm_kind", "state", "actor", "message", "value",
                "source")
NOTE_FIELDS = ("note_type", "actor", "detail")
CSV_COLUMNS = ("record", "seq", "time", *READING_FIELDS,
               *(f for f in ALARM_FIELDS if f != "actor"), *NOTE_FIELDS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default="/etc/monitord/monitord.toml", help="site configuration (finds the database)")
    p.add_argument("--session", type=int, help="session id (omit to list sessions)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    opened = open_database(config, repair=False)
    try:
        with opened.engine.connect() as conn:
            if args.session is None:
                list_sessions(conn, sys.stdout)
                return 0
            data = session_export(conn, args.session, config.course.response_reduction_pct)
    finally:
        opened.engine.dispose()
    if data is None:
        print(f"no session {args.session} (run without --session to list them)", file=sys.stderr)
        return 1
    out: IO[str] = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "json":
            json.dump(data, out, indent=2, default=_default)
            out.write("\n")
        else:
            write_csv(data, out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def list_sessions(conn: Connection, out: IO[str]) -> None:
    s = m.Session
    rows = conn.execute(
        select(s.id, s.bed_id, s.patient_id, s.admitted_at, s.started_at, s.stopped_at, s.cumulative_mg).order_by(s.id)
    ).all()
    out.write("id\tbed\tpatient\tadmitted\tstarted\tstopped\tcumulative_mg\n")
    for r in rows:
        out.write("\t".join(_text(v) for v in r) + "\n")


def session_export(conn: Connection, session_id: int, response_pct: float) -> dict[str, Any] | None:
    s = conn.execute(select(*m.Session.__table__.c).where(m.Session.id == session_id)).mappings().first()
    if s is None:
        return None
    session = dict(s)
    resp = response_of(s["id"], s["started_at"], s["pain_before"], s["pain_after"], response_pct)
    session["pain_reduction_pct"] = resp.reduction_pct
    session["pain_reduction_at_end_of_session"] = resp.reduced_at_end
    session["pain_reduction_threshold_pct"] = response_pct
    readings = _rows(conn, m.Reading, session_id, ("seq", "time", *READING_FIELDS))
    alarms = _rows(conn, m.AlarmEvent, session_id, ("seq", "time", *ALARM_FIELDS))
    notes: list[dict[str, Any]] = []
    for r in _rows(conn, m.Observation, session_id, ("seq", "time", "type", "scale", "score", "effects", "drug",
                                                     "dose_mg", "route", "reason", "note", "actor")):
        kind = r.pop("type")
        notes.append({"seq": r.pop("seq"), "time": r.pop("time"), "note_type": kind, "actor": r.pop("actor"),
                      "detail": {k: v for k, v in r.items() if v is not None}})
    for r in _rows(conn, m.OverrideRecord, session_id, ("seq", "time", "rule_id", "reason", "actor")):
        notes.append({"seq": r["seq"], "time": r["time"], "note_type": "override", "actor": r["actor"],
                      "detail": {"rule_id": r["rule_id"], "reason": r["reason"]}})
    for r in _rows(conn, m.ChecklistAnswer, session_id, ("seq", "time", "item_id", "answer", "actor")):
        notes.append({"seq": r["seq"], "time": r["time"], "note_type": "checklist", "actor": r["actor"],
                      "detail": {"item": r["item_id"], "answer": r["answer"]}})
    notes.sort(key=lambda n: (n["seq"], str(n["detail"])))
    return {"session": session, "readings": readings, "alarm_events": alarms, "notes": notes}


def _rows(conn: Connection, model: Any, session_id: int, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    cols = [getattr(model, f) for f in fields]
    q = select(*cols).where(model.session_id == session_id).order_by(model.seq, model.id)
    return [dict(r) for r in conn.execute(q).mappings()]


def write_csv(data: dict[str, Any], out: IO[str]) -> None:
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    rows: list[dict[str, Any]] = []
    rows += [{"record": "reading", **r} for r in data["readings"]]
    rows += [{"record": "alarm", **r} for r in data["alarm_events"]]
    rows += [{"record": "note", **n, "detail": json.dumps(n["detail"], sort_keys=True)} for n in data["notes"]]
    rows.sort(key=lambda r: r["seq"])
    for r in rows:
        w.writerow({k: _text(r.get(k)) for k in CSV_COLUMNS})


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    return str(v)


def _default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot export {type(v).__name__}")
