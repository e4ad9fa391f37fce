"""``monitord export``: one session's readings, alarm events and notes as CSV or JSON, or a one-page
picture of it (SVG or PNG: dose, vitals and alarms on one time axis, ``monitord.store.plot``).

Without ``--session`` it lists the sessions in the database. CSV is one table in seq order with
a ``record`` column (``reading``, ``alarm``, ``note``); JSON keeps the three lists apart and adds
the session summary with its pain reduction at end of session (last pain score after the stop
against the last before the start). That is not a "positive response" in the guideline's sense
(lines 1606-1616: relief sustained over weeks, with satisfaction or a functional measure), which
needs follow-up that monitord does not record; the export never calls it one.

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
CSV_COLUMNS = ("record", "seq", "time", *READING_FIELDS,
               *(f for f in ALARM_FIELDS if f != "actor"), *NOTE_FIELDS)
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
            data = session_export(conn, args.session, config.course.response_reduction_pct, progress)
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
    s = m.Session
    rows = conn.execute(
        select(s.id, s.bed_id, s.patient_id, s.admitted_at, s.started_at, s.stopped_at, s.cumulative_mg).order_by(s.id)
    ).all()
    out.write("id\tbed\tpatient\tadmitted\tstarted\tstopped\tcumulative_mg\n")
    for r in rows:
        out.write("\t".join(_text(v) for v in r) + "\n")
    out.flush()


def session_export(conn: Connection, session_id: int, response_pct: float,
                   progress: Progress | None = None) -> dict[str, Any] | None:
    s = conn.execute(select(*m.Session.__table__.c).where(m.Session.id == session_id)).mappings().first()
    if s is None:
        return None
    progress = progress or Progress(sys.stderr, False)
    tables = (m.Reading, m.AlarmEvent, m.Observation, m.OverrideRecord, m.ChecklistAnswer)
    total = sum(conn.execute(select(func.count()).select_from(t).where(t.session_id == session_id)).scalar() or 0
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
    return {"session": session, "readings": readings, "alarm_events": alarms, "notes": notes}


def session_trends(conn: Connection, session_id: int) -> list[dict[str, Any]]:
    """The session's minute trends (they outlive the raw readings, kept ``raw_retention_h``)."""
    t = m.Trend
    q = select(t.series, t.bucket, t.mean).where(t.session_id == session_id).order_by(t.bucket)
    return [dict(r) for r in conn.execute(q).mappings()]


def data_count(data: dict[str, Any]) -> int:
    return len(data["readings"]) + len(data["alarm_events"]) + len(data["notes"])


def _rows(conn: Connection, model: Any, session_id: int, fields: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    cols = [getattr(model, f) for f in fields]
    q = select(*cols).where(model.session_id == session_id).order_by(model.seq, model.id)
    for r in conn.execute(q).mappings():
        yield dict(r)


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
