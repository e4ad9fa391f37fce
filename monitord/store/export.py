"""``monitord export``: one session's readings, alarm events, notes, plan and controlled-substance
record as CSV or JSON, or a one-page picture of it (SVG or PNG: dose, vitals and alarms on one time
axis, ``monitord.store.plot``).

Without ``--session`` it lists the sessions in the database. CSV is one table in seq order with
a ``record`` column (``reading``, ``alarm``, ``note``, ``plan``, ``controlled``; the plan and
controlled-record columns come after the older ones, whose order does not change). JSON keeps the
lists apart and adds the session summary, the ``plan`` and the ``controlled_record``.

The summary has the pain reduction at end of session (last pain score after the stop against the
last before the start). That is not a "positive response" in the guideline's sense (lines
1606-1616: relief sustained over weeks, with satisfaction or a functional measure), which needs
follow-up that monitord does not record; the export never calls it one.

The plan is the last order with its planned duration and total against what was delivered,
computed as the snapshot computes it (``monitord.engine.plan_progress``), and at the stop whether
the course reached the guideline's minimum (``course.short``). The controlled-substance record
lists each dispensed and wasted entry with its actor and witness, the close and every refused
entry, and balances them (``monitord.discharge.record_balance``) against what the pump delivered
in the whole session (hand-given ketamine excluded). ``balanced`` is true only for a record that
was closed and still adds up: a record never closed, or one the pump delivered more after, is
exported as ``balanced: false`` with the unaccounted amount.

The database is only ever read. A SQLite file is opened read-only and never created, migrated or
repaired: no file, or a file that is not a monitord database of this version, is an error (exit
2). A WAL database that the daemon is not running on (no ``-wal``/``-shm`` beside it) is opened
as immutable, so that even ``sudo monitord export`` leaves no file behind that the daemon's user
could not open; the file is compared before and after, and an export during which it changed is
refused. PostgreSQL is read in read-only transactions.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from monitord.config import Config, load_or_report
from monitord.logs import report_error
from monitord.store import models as m
from monitord.store.store import response_of

DEFAULT_CONFIG = "/etc/monitord/monitord.toml"
READING_FIELDS = ("device", "quality", "hr", "pulse", "sbp", "dbp", "map", "spo2", "rr", "etco2", "temp",
                  "pump_state", "rate_ml_h", "volume_infused_ml", "dose_rate_mg_kg_h", "cumulative_mg")
ALARM_FIELDS = ("alarm_seq", "rule_id", "transition", "priority", "alarm_kind", "state", "actor", "message", "value",
                "source")
NOTE_FIELDS = ("note_type", "actor", "detail")
# The order's plan (``record`` = plan: the ordered rate and dose rate in ``rate_ml_h`` and
# ``dose_rate_mg_kg_h``, who ordered it in ``actor``) and the controlled-substance record
# (``record`` = controlled). Appended after the older columns, whose order consumers rely on.
PLAN_FIELDS = ("concentration_mg_ml", "bolus_mg", "planned_duration_min", "planned_total_mg", "delivered_mg",
               "projected_total_mg", "reaches_minimum")
CONTROLLED_FIELDS = ("action", "witness", "volume_ml", "mg", "dispensed_mg", "infused_mg", "wasted_mg",
                     "unaccounted_mg", "closed", "balanced")
CSV_COLUMNS = ("record", "seq", "time", *READING_FIELDS,
               *(f for f in ALARM_FIELDS if f != "actor"), *NOTE_FIELDS, *PLAN_FIELDS, *CONTROLLED_FIELDS)
INFUSING = ("running", "bolus")  # pump states that deliver drug (monitord.state.INFUSING)
PICTURES = ("svg", "png")
FORMATS = ("csv", "json", *PICTURES)
EXIT_NO_DATABASE = 2


class ExportError(Exception):
    """The database cannot be exported from (missing, not monitord's, another schema): exit 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"site configuration: its [store] names the database (default {DEFAULT_CONFIG})")
    p.add_argument("--session", type=int, metavar="ID", help="session id (omit to list the sessions)")
    p.add_argument("--format", choices=FORMATS,
                   help="csv, json, or a one-page picture of the session: svg, png "
                        "(default: from the extension of -o FILE, else csv)")
    p.add_argument("-o", "--output", metavar="FILE", help="file to write (default: standard output)")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="show progress on standard error (default: on a terminal, once an export takes a second)")
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")


def output_format(given: str | None, output: str | None) -> str:
    if given:
        return given
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    return suffix if suffix in FORMATS else "csv"


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    fmt = output_format(getattr(args, "format", None), args.output)
    if fmt in PICTURES and args.session is not None and not args.output and sys.stdout.isatty():
        report_error(f"monitord export: a {fmt.upper()} picture is not for the terminal: give -o FILE.{fmt}")
        return 2
    try:
        db = ReadOnlyDatabase.open(config)
    except ExportError as exc:
        report_error(f"monitord export: {exc}")
        return EXIT_NO_DATABASE
    progress = Progress(sys.stderr, getattr(args, "progress", None))
    try:
        with db.engine.connect() as conn:
            if args.session is None:
                list_sessions(conn, sys.stdout)
                return 0
            data = session_export(conn, args.session, config, progress)
            trends = session_trends(conn, args.session) if fmt in PICTURES and data is not None else []
    except SQLAlchemyError as exc:
        report_error(f"monitord export: cannot read {db.where}: {_first_line(exc)}")
        return EXIT_NO_DATABASE
    finally:
        db.close()
    changed = db.changed()
    if changed:
        report_error(f"monitord export: {changed}; nothing was written: run the export again")
        return 1
    if data is None:
        report_error(f"monitord export: no session {args.session} in {db.where} (run without --session to list them)")
        return 1
    try:
        write_output(data, trends, fmt, args.output, config)
    except BrokenPipeError:
        raise  # the reader went away: the command line ends quietly
    except OSError as exc:
        report_error(f"monitord export: cannot write {args.output or 'standard output'}: {exc.strerror or exc}")
        return 2
    progress.finish(f"session {args.session}: {data_count(data):,} records written"
                    + (f" to {args.output}" if args.output else ""))
    return 0


def write_output(data: dict[str, Any], trends: list[dict[str, Any]], fmt: str, output: str | None,
                 config: Config) -> None:
    if fmt in PICTURES:
        from monitord.store import plot  # matplotlib: loaded only for a picture

        binary: IO[bytes]
        with (open(output, "wb") if output else _stdout_bytes()) as binary:
            plot.render(data, trends, fmt, binary, config.bed.timezone)
        return
    out: IO[str] = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt == "json":
            json.dump(data, out, indent=2, default=_default)
            out.write("\n")
        else:
            write_csv(data, out)
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()


def _stdout_bytes() -> IO[bytes]:
    return os.fdopen(os.dup(sys.stdout.fileno()), "wb")


# -- opening the database, read-only --------------------------------------------------------


@dataclass
class ReadOnlyDatabase:
    engine: Engine
    where: str
    _path: Path | None = None
    _stamp: tuple[int, int, bool] | None = None  # (size, mtime_ns, -wal present) when opened immutable

    @classmethod
    def open(cls, config: Config) -> ReadOnlyDatabase:
        if config.store.url:
            return cls._postgres(config.store.url)
        return cls._sqlite(Path(config.store.state_dir) / "monitord.db")

    @classmethod
    def _sqlite(cls, path: Path) -> ReadOnlyDatabase:
        if not path.is_file():
            where = "does not exist" if not path.parent.is_dir() else "holds no database"
            raise ExportError(
                f"no database at {path}: the state directory {path.parent} {where}. Check [store] state_dir "
                f"in the configuration (the daemon creates monitord.db there on its first start)")
        wal, shm = (Path(f"{path}{s}") for s in ("-wal", "-shm"))
        # Nobody has the file open in WAL mode: read it as immutable, so SQLite creates no -wal/-shm.
        immutable = not wal.exists() and not shm.exists()
        uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5)
            conn.execute("PRAGMA query_only = ON")
            return conn

        try:
            probe = connect()
            try:
                probe.execute("PRAGMA schema_version").fetchone()
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            raise ExportError(f"{path} cannot be read as a SQLite database: {exc}") from None
        engine = create_engine("sqlite://", creator=connect)
        db = cls(engine, str(path), path, _stamp(path) if immutable else None)
        try:
            with engine.connect() as conn:
                _check_schema(conn, str(path))
        except SQLAlchemyError as exc:
            engine.dispose()
            raise ExportError(f"{path} cannot be read: {_first_line(exc)}") from None
        except ExportError:
            engine.dispose()
            raise
        return db

    @classmethod
    def _postgres(cls, url: str) -> ReadOnlyDatabase:
        from monitord.store.database import make_engine

        engine = make_engine(url)
        where = url.split("@")[-1] if "@" in url else url  # no password in messages

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.close()
            dbapi_conn.commit()

        try:
            with engine.connect() as conn:
                _check_schema(conn, where)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise ExportError(f"{where}: {_first_line(exc)}") from None
        except ExportError:
            engine.dispose()
            raise
        return cls(engine, where)

    def close(self) -> None:
        self.engine.dispose()

    def changed(self) -> str | None:
        """Why the export may be inconsistent (an immutable read of a file that changed), else None."""
        if self._path is None or self._stamp is None or _stamp(self._path) == self._stamp:
            return None
        return f"{self._path} changed while it was read (has the daemon started on it?)"


def _stamp(path: Path) -> tuple[int, int, bool]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, Path(f"{path}-wal").exists()


def _check_schema(conn: Connection, where: str) -> None:
    """The database is monitord's, at the schema revision this monitord reads."""
    from alembic.script import ScriptDirectory

    from monitord.store.database import alembic_config

    try:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:
        raise ExportError(f"{where} is not a monitord database (it has no schema version)") from None
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    if set(found) != heads:
        known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        shown = ", ".join(found) or "none"
        if set(found) <= known:
            raise ExportError(
                f"{where} has schema revision {shown}, older than this monitord reads ({', '.join(sorted(heads))}). "
                "The export never migrates: export with the monitord version that wrote it, or let the daemon "
                "migrate the database on its next start")
        raise ExportError(f"{where} has schema revision {shown}, which this monitord does not know (written by a "
                          "newer version?): export with that version")


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["error"])[0]


# -- progress on stderr ---------------------------------------------------------------------


class Progress:
    """Records read so far, on stderr. Shown on a terminal (one line, rewritten) once the export has
    taken ``delay_s``; ``forced`` shows it anywhere at once (a line at most every second when
    stderr is not a terminal); ``forced=False`` never."""

    def __init__(self, stream: IO[str], forced: bool | None = None, *, delay_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = _isatty(stream)
        self.enabled = self.tty if forced is None else forced
        self.delay_s = 0.0 if forced else delay_s
        self.every_s = 0.2 if self.tty else 1.0
        self.clock = clock
        self.t0 = clock()
        self.last: float | None = None
        self.total = 0
        self.done = 0
        self.what = "records"

    def start(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        if now - self.t0 < self.delay_s or (self.last is not None and now - self.last < self.every_s):
            return
        self.last = now
        pct = f" ({self.done * 100 // self.total} %)" if self.total else ""
        self._write(f"export: {self.what}: {self.done:,} of {self.total:,} records{pct}")

    def finish(self, message: str) -> None:
        """The closing line, if any progress was shown (or progress was asked for)."""
        if self.enabled and (self.last is not None or self.delay_s == 0.0):
            self._write(f"export: {message}", final=True)

    def _write(self, line: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- what is exported -----------------------------------------------------------------------


def list_sessions(conn: Connection, out: IO[str]) -> None:
    s = m.Session.c
    rows = conn.execute(
        select(s.id, s.bed_id, s.patient_id, s.admitted_at, s.started_at, s.stopped_at, s.cumulative_mg).order_by(s.id)
    ).all()
    out.write("id\tbed\tpatient\tadmitted\tstarted\tstopped\tcumulative_mg\n")
    for r in rows:
        out.write("\t".join(_text(v) for v in r) + "\n")
    out.flush()


def session_export(conn: Connection, session_id: int, config: Config,
                   progress: Progress | None = None) -> dict[str, Any] | None:
    s = conn.execute(select(*m.Session.c).where(m.Session.c.id == session_id)).mappings().first()
    if s is None:
        return None
    response_pct = config.course.response_reduction_pct
    progress = progress or Progress(sys.stderr, False)
    tables = (m.Reading, m.AlarmEvent, m.Observation, m.OverrideRecord, m.ChecklistAnswer)
    total = sum(conn.execute(select(func.count()).select_from(t).where(t.c.session_id == session_id)).scalar() or 0
                for t in tables)
    progress.start(f"reading session {session_id}", total)
    session = dict(s)
    resp = response_of(s["id"], s["started_at"], s["pain_before"], s["pain_after"], response_pct)
    session["pain_reduction_pct"] = resp.reduction_pct
    session["pain_reduction_at_end_of_session"] = resp.reduced_at_end
    session["pain_reduction_threshold_pct"] = response_pct

    def rows(model: Any, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for row in _rows(conn, model, session_id, fields):
            out.append(row)
            progress.advance()
        return out

    readings = rows(m.Reading, ("seq", "time", *READING_FIELDS))
    alarms = rows(m.AlarmEvent, ("seq", "time", *ALARM_FIELDS))
    notes: list[dict[str, Any]] = []
    for r in rows(m.Observation, ("seq", "time", "type", "scale", "score", "effects", "drug", "dose_mg", "route",
                                  "reason", "note", "actor")):
        kind = r.pop("type")
        notes.append({"seq": r.pop("seq"), "time": r.pop("time"), "note_type": kind, "actor": r.pop("actor"),
                      "detail": {k: v for k, v in r.items() if v is not None}})
    for r in rows(m.OverrideRecord, ("seq", "time", "rule_id", "reason", "actor")):
        notes.append({"seq": r["seq"], "time": r["time"], "note_type": "override", "actor": r["actor"],
                      "detail": {"rule_id": r["rule_id"], "reason": r["reason"]}})
    for r in rows(m.ChecklistAnswer, ("seq", "time", "item_id", "answer", "actor")):
        notes.append({"seq": r["seq"], "time": r["time"], "note_type": "checklist", "actor": r["actor"],
                      "detail": {"item": r["item_id"], "answer": r["answer"]}})
    notes.sort(key=lambda n: (n["seq"], str(n["detail"])))
    course = CourseRecords.read(conn, s)
    return {"session": session, "readings": readings, "alarm_events": alarms, "notes": notes,
            "plan": plan_export(course, config), "controlled_record": controlled_export(course, config)}


# -- the plan and the controlled-substance record ---------------------------------------------


@dataclass
class CourseRecords:
    """What the store holds of one session's order and controlled-drug entries: its ``session``
    and ``rejected`` events (``events`` of its bed from its admission to its discharge), the pump
    as last reported, and what the pump delivered (``pump_infused_mg``, hand-given ketamine
    excluded, as in ``monitord.discharge.record_balance``)."""

    session: Any
    events: list[dict[str, Any]]
    last_seq: int
    last_time: datetime
    pump_state: str | None
    pump_rate_ml_h: float | None  # the last rate the pump ran at (engine: ``infusion_rate_ml_h``)
    pump_time: datetime | None
    pump_infused_mg: float
    infused_from: str

    @classmethod
    def read(cls, conn: Connection, s: Any) -> CourseRecords:
        e, rd = m.StoredEvent.c, m.Reading.c
        nxt = conn.execute(select(func.min(m.Session.c.admitted_seq)).where(
            m.Session.c.bed_id == s["bed_id"], m.Session.c.admitted_seq > s["admitted_seq"])).scalar()
        span = [e.bed_id == s["bed_id"], e.seq >= s["admitted_seq"]] + ([e.seq < nxt] if nxt is not None else [])
        events: list[dict[str, Any]] = []
        q = select(e.seq, e.time, e.kind, e.data).where(*span, e.kind.in_(("session", "rejected"))).order_by(e.seq)
        for row in conn.execute(q).mappings():
            ev = dict(row)
            ev["data"] = ev["data"] if isinstance(ev["data"], dict) else {}
            events.append(ev)
            if ev["kind"] == "session" and ev["data"].get("action") == "discharged":
                span.append(e.seq <= ev["seq"])
                break
        last = conn.execute(select(e.seq, e.time).where(*span).order_by(e.seq.desc()).limit(1)).first()
        pump = conn.execute(select(rd.seq, rd.time, rd.pump_state, rd.rate_ml_h, rd.cumulative_mg).where(
            rd.session_id == s["id"], rd.source == "pump").order_by(rd.seq.desc()).limit(1)).first()
        ran = conn.execute(select(rd.rate_ml_h).where(
            rd.session_id == s["id"], rd.source == "pump", rd.pump_state == "running", rd.rate_ml_h > 0,
        ).order_by(rd.seq.desc()).limit(1)).scalar()
        infused, source = _pump_infused(conn, s, events, pump)
        return cls(s, events, last.seq if last else s["admitted_seq"], last.time if last else s["admitted_at"],
                   pump.pump_state if pump else None, ran, pump.time if pump else None, infused, source)

    def session_events(self, *actions: str) -> list[dict[str, Any]]:
        return [ev for ev in self.events if ev["kind"] == "session" and ev["data"].get("action") in actions]


def _pump_infused(conn: Connection, s: Any, events: list[dict[str, Any]], pump: Any) -> tuple[float, str]:
    """What the pump delivered in this session: the engine's own figure at discharge, else the
    session's cumulative dose as last stored less the hand-given boluses it includes."""
    for ev in events:
        rec = ev["data"].get("controlled_record") if ev["data"].get("action") == "discharged" else None
        if isinstance(rec, dict) and (infused := _number(rec.get("infused_mg"))) is not None:
            return infused, "the record at discharge"
    points = [(ev["seq"], mg) for ev in events
              if ev["kind"] == "session" and ev["data"].get("action") in ("stopped", "discharged")
              and (mg := _number(ev["data"].get("cumulative_mg"))) is not None]
    if pump is not None and pump.cumulative_mg is not None:
        points.append((pump.seq, float(pump.cumulative_mg)))
    o = m.Observation.c
    hand = select(func.coalesce(func.sum(o.dose_mg), 0.0)).where(o.session_id == s["id"], o.type == "manual_bolus")
    if points:
        upto, cumulative = max(points)
        hand = hand.where(o.seq <= upto)
    else:
        cumulative = float(s["cumulative_mg"] or 0.0)
    return max(0.0, cumulative - float(conn.execute(hand).scalar() or 0.0)), "pump readings"


def plan_export(c: CourseRecords, config: Config) -> dict[str, Any] | None:
    """The last order with its plan against what was delivered (``monitord.engine.plan_progress``,
    as the snapshot shows it), and at the stop whether the course reached the guideline's minimum
    (``course.short``). None: no order was recorded."""
    from monitord.engine import plan_progress
    from monitord.rules.course import COURSE_SOURCE, short
    from monitord.state import BedState, Order

    orders = c.session_events("order_set")
    if not orders:
        return None
    ev = orders[-1]
    o = ev["data"].get("order")
    o = o if isinstance(o, dict) else {}
    conc, ordered = _number(o.get("concentration_mg_ml")), _number(o.get("rate_ml_h"))
    if conc is None or ordered is None:  # an order event that could not be stored as emitted
        return None
    order = Order(str(o.get("drug")), conc, ordered, _number(o.get("bolus_mg")) or 0.0, _number(o.get("syringe_ml")),
                  _number(o.get("planned_duration_min")))
    s = c.session
    stops = c.session_events("stopped")
    stopped = stops[-1] if stops else None
    ended = stopped is not None or s["discharged_at"] is not None
    delivered = float(s["cumulative_mg"] or 0.0)
    if ended:  # the course is over: it totals what was given
        elapsed_s: float | None = 0.0
        rate: float | None = 0.0
        as_of = stopped["time"] if stopped is not None else s["discharged_at"]
    elif s["started_at"] is None:  # not started: the plan as ordered
        elapsed_s, rate, as_of = None, None, c.last_time
    else:  # running (or paused) when last recorded: at the rate the pump last reported
        as_of = c.pump_time or c.last_time
        elapsed_s = (as_of - s["started_at"]).total_seconds()
        rate = c.pump_rate_ml_h if c.pump_state in INFUSING else 0.0
    out: dict[str, Any] = {
        "seq": ev["seq"], "ordered_at": ev["time"], "ordered_by": ev["data"].get("actor"), "drug": order.drug,
        "concentration_mg_ml": order.concentration_mg_ml, "rate_ml_h": order.rate_ml_h,
        "dose_rate_mg_kg_h": ev["data"].get("dose_rate_mg_kg_h"), "bolus_mg": order.bolus_mg,
        "syringe_ml": order.syringe_ml,
        **plan_progress(order, delivered, elapsed_s, rate, config.course),
        "as_of": as_of,
        "minimum": {"total_mg": config.course.min_total_mg, "duration_h": config.course.min_duration_h,
                    "source": COURSE_SOURCE},
        "at_stop": None,
    }
    if stopped is not None:
        d = stopped["data"]
        st = BedState(s["bed_id"], course_finished=True, cumulative_mg=_number(d.get("cumulative_mg")) or 0.0,
                      infusion_time_s=_number(d.get("infusion_time_s")) or 0.0)
        below = short(st, 0.0, config)
        out["at_stop"] = {"time": stopped["time"], "delivered_mg": round(st.cumulative_mg, 1),
                          "infusion_time_s": st.infusion_time_s, "reached_minimum": below is None,
                          "finding": below.message if below is not None else None}
    return out


def controlled_export(c: CourseRecords, config: Config) -> dict[str, Any]:
    """Every dispensed and wasted entry, the close and the refused entries, and the balance
    (``monitord.discharge.record_balance``) with what the pump delivered in the whole session.
    ``balanced`` is true only for a record that was closed and still adds up."""
    from monitord.discharge import record_balance
    from monitord.state import BedState

    entries: list[dict[str, Any]] = []
    dispensed = wasted = 0.0
    close: dict[str, Any] | None = None
    for ev in c.events:
        d = ev["data"]
        action = d.get("action")
        if ev["kind"] == "rejected" and action == "ControlledDrug":
            entries.append({"seq": ev["seq"], "time": ev["time"], "action": "refused", "actor": d.get("actor"),
                            "reason": d.get("reason")})
        elif ev["kind"] == "session" and action in ("controlled_dispensed", "controlled_wasted"):
            volume, conc = _number(d.get("volume_ml")), _number(d.get("concentration_mg_ml"))
            mg = volume * conc if volume is not None and conc is not None else _number(d.get("mg")) or 0.0
            if action == "controlled_dispensed":
                dispensed += mg
            else:
                wasted += mg
            entries.append({"seq": ev["seq"], "time": ev["time"], "action": action.removeprefix("controlled_"),
                            "actor": d.get("actor"), "witness": d.get("witness"), "volume_ml": volume,
                            "concentration_mg_ml": conc, "mg": round(mg, 3)})
        elif ev["kind"] == "session" and action == "controlled_record_closed":
            close = {"seq": ev["seq"], "time": ev["time"], "action": "close", "actor": d.get("actor"),
                     "witness": d.get("witness"),
                     **{k: d.get(k) for k in ("dispensed_mg", "infused_mg", "wasted_mg", "unaccounted_mg")}}
            entries.append(close)
    balance = record_balance(BedState(c.session["bed_id"], pump_infused_mg=c.pump_infused_mg, dispensed_mg=dispensed,
                                      wasted_mg=wasted, record_closed=close is not None), config)
    adds_up = bool(balance["balanced"])
    gap, tol = balance["unaccounted_mg"], config.discharge.record_tolerance_mg
    if close is not None and adds_up:
        status = f"closed and balanced: dispensed = infused + wasted within {tol:g} mg"
    elif close is not None:
        status = f"NOT BALANCED: closed, but {gap:+g} mg are unaccounted with all the pump delivered"
    elif adds_up:
        status = f"NOT BALANCED: never closed (dispensed, infused and wasted agree within {tol:g} mg)"
    else:
        status = f"NOT BALANCED: never closed, {gap:+g} mg unaccounted"
    return {
        "entries": entries,
        **balance,
        "balanced": close is not None and adds_up,
        "adds_up": adds_up,
        "tolerance_mg": tol,
        "infused_from": c.infused_from,
        "closed_at": close["time"] if close else None,
        "as_of": c.last_time,
        "as_of_seq": c.last_seq,
        "status": status,
    }


def _number(v: Any) -> float | None:
    """A finite number from a stored event, else None."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def session_trends(conn: Connection, session_id: int) -> list[dict[str, Any]]:
    """The session's minute trends (they outlive the raw readings, kept ``raw_retention_h``)."""
    t = m.Trend.c
    q = select(t.series, t.bucket, t.mean).where(t.session_id == session_id).order_by(t.bucket)
    return [dict(r) for r in conn.execute(q).mappings()]


def data_count(data: dict[str, Any]) -> int:
    return len(data["readings"]) + len(data["alarm_events"]) + len(data["notes"])


def _rows(conn: Connection, model: Any, session_id: int, fields: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    cols = [model.c[f] for f in fields]
    q = select(*cols).where(model.c.session_id == session_id).order_by(model.c.seq, model.c.id)
    for r in conn.execute(q).mappings():
        yield dict(r)


def write_csv(data: dict[str, Any], out: IO[str]) -> None:
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    rows: list[dict[str, Any]] = []
    rows += [{"record": "reading", **r} for r in data["readings"]]
    rows += [{"record": "alarm", **r} for r in data["alarm_events"]]
    rows += [{"record": "note", **n, "detail": json.dumps(n["detail"], sort_keys=True)} for n in data["notes"]]
    rows += _plan_rows(data.get("plan"))
    rows += _controlled_rows(data.get("controlled_record"))
    rows.sort(key=lambda r: r["seq"])
    balance = _balance_row(data.get("controlled_record"))
    if balance is not None:  # the record's balance ends the table, after all it sums up
        last = rows[-1] if rows else balance
        rows.append(balance | {"seq": max(last["seq"], balance["seq"]), "time": last["time"]})
    for r in rows:
        w.writerow({k: _text(r.get(k)) for k in CSV_COLUMNS})


def _plan_rows(plan: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The plan: one row at the order's seq; what is not a column is in ``detail``."""
    if not plan:
        return []
    extra = {k: plan[k] for k in ("drug", "syringe_ml", "as_of", "minimum", "at_stop")}
    return [{"record": "plan", **plan, "time": plan["ordered_at"], "actor": plan["ordered_by"],
             "detail": json.dumps(extra, sort_keys=True, default=_default)}]


def _controlled_rows(rec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A row per controlled-drug entry (``action``: dispensed, wasted, close, refused)."""
    return [{"record": "controlled", **e, "closed": True if e["action"] == "close" else None,
             "detail": json.dumps({"reason": e["reason"]}) if "reason" in e else None}
            for e in (rec["entries"] if rec else [])]


def _balance_row(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    if not rec:
        return None
    return {"record": "controlled", "seq": rec["as_of_seq"], "time": rec["as_of"], "action": "total",
            **{k: rec[k] for k in CONTROLLED_FIELDS if k in rec},
            "detail": json.dumps({k: rec[k] for k in ("status", "adds_up", "tolerance_mg", "infused_from")},
                                 sort_keys=True)}


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    return str(v)


def _default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot export {type(v).__name__}")
