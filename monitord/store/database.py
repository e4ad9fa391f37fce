"""Opening the database: SQLite in WAL mode (default) or PostgreSQL, migrated to the latest
schema on open. A SQLite file that is not a sound database is moved aside and a new one started.

SQLite transactions follow SQLAlchemy's documented recipe for pysqlite on Python 3.11: the
driver's own transaction handling is switched off (``isolation_level = None``) and ``BEGIN`` is
emitted explicitly when SQLAlchemy begins, so a transaction spans exactly what we ask for.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DatabaseError

from monitord.config import Config

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
DB_FILENAME = "monitord.db"
# FULL: each commit's WAL frames reach the disk before the commit returns (see docs/storage.md).
SQLITE_SYNCHRONOUS = "FULL"
SQLITE_BUSY_TIMEOUT_MS = 5000
# Page cache per connection, KiB (SQLite's default is 2,000). The daemon's writes touch a few
# pages at the right edge of each index and its reads are short ranges; the OS caches the file
# anyway. Each pooled connection would otherwise grow to 2 MB of the daemon's memory.
SQLITE_CACHE_KIB = 512
PG_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Opened:
    engine: Engine
    url: str
    # Set when a damaged SQLite file was moved aside: (reason, where it went).
    moved_aside: tuple[str, str] | None = None
    database_id: str | None = None  # store_meta.database_id: created with the database
    sqlite_path: Path | None = None


def sqlite_path(config: Config) -> Path:
    return Path(config.store.state_dir) / DB_FILENAME


def database_url(config: Config) -> str:
    return config.store.url or f"sqlite:///{sqlite_path(config)}"


def _json_serializer(obj: Any) -> str:
    import json

    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def make_engine(url: str) -> Engine:
    """An engine with monitord's connection settings; no migration, no integrity check."""
    if url.startswith("sqlite"):
        engine = create_engine(url, json_serializer=_json_serializer, pool_pre_ping=False)
        _sqlite_recipe(engine)
        return engine
    return create_engine(
        url,
        json_serializer=_json_serializer,
        pool_pre_ping=True,  # a connection lost with the server is replaced, not reused
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def _sqlite_recipe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite must not BEGIN on its own
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute(f"PRAGMA synchronous = {SQLITE_SYNCHRONOUS}")
        cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()
        _record.info[SYNCHRONOUS] = SQLITE_SYNCHRONOUS

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        options = conn.get_execution_options()
        sync = "NORMAL" if options.get(SYNC_LATER) else SQLITE_SYNCHRONOUS
        info = conn.info  # kept with the driver's connection (pooled)
        if info.get(SYNCHRONOUS) != sync:
            conn.exec_driver_sql(f"PRAGMA synchronous = {sync}")
            info[SYNCHRONOUS] = sync
        # A write transaction takes the write lock at once (waiting up to busy_timeout): a deferred
        # one that reads first fails at its first write if another connection wrote meanwhile.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(IMMEDIATE) else "BEGIN")


IMMEDIATE = "sqlite_immediate"
SYNC_LATER = "sqlite_sync_later"
SYNCHRONOUS = "monitord_synchronous"


def writing(engine: Engine, synced: bool = True) -> Any:
    """``with writing(engine) as conn:`` a write transaction (SQLite: BEGIN IMMEDIATE).

    ``synced=False`` (SQLite): the commit returns once its WAL frames are written, before they
    are fsynced (``synchronous=NORMAL`` for this transaction: it survives a crash of the process,
    not yet a power loss); the caller then makes it durable with ``sync_wal``."""
    per_engine = _WRITING.get(engine)
    if per_engine is None:
        # Built once per engine: ``execution_options`` makes a new engine object on every call,
        # which cost more than an alarm batch's whole commit.
        per_engine = _WRITING[engine] = {
            True: engine.execution_options(**writing_options(True)),
            False: engine.execution_options(**writing_options(False)),
        }
    return per_engine[synced].begin()


def writing_options(synced: bool) -> dict[str, bool]:
    """The execution options of ``writing``, for a connection held open (the store's writer)."""
    return {IMMEDIATE: True, SYNC_LATER: not synced}


_WRITING: weakref.WeakKeyDictionary[Engine, dict[bool, Engine]] = weakref.WeakKeyDictionary()


def sync_wal(path: Path) -> None:
    """fsync the WAL of the SQLite file ``path``: what ``synchronous=FULL`` does at each commit.
    Nothing to do without a WAL (the last connection's checkpoint synced the database)."""
    try:
        fd = os.open(f"{path}-wal", os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_sqlite(path: Path) -> str | None:
    """None if ``path`` is a sound SQLite database (or absent), else why not."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        raise  # cannot open or read it (permissions, locks): not a damaged file
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def _move_aside(path: Path, reason: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(target) + suffix))
    log.error("database %s is damaged (%s): moved to %s, starting a new one", path, reason, target)
    return str(target)


def open_database(config: Config, repair: bool = True) -> Opened:
    """Connect and migrate. With ``repair``, a damaged SQLite file is moved aside first."""
    url = database_url(config)
    moved: tuple[str, str] | None = None
    path: Path | None = None
    if not config.store.url:
        path = sqlite_path(config)
        moved = prepare_sqlite(path, repair)
    engine = make_engine(url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            ident = database_id(conn)
    except Exception:
        engine.dispose()
        raise
    return Opened(engine, url, moved, ident, path)


def prepare_sqlite(path: Path, repair: bool = True) -> tuple[str, str] | None:
    """Make ``path`` a usable SQLite file in WAL mode (created if absent). A damaged file is
    moved aside with ``repair``; returns (reason, where it went) if so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    moved: tuple[str, str] | None = None
    problem = _check_sqlite(path)
    if problem is not None:
        if not repair:
            raise DatabaseError(f"{path} is damaged: {problem}", None, Exception(problem))
        moved = (problem, _move_aside(path, problem))
    try:
        _set_wal(path)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:  # quick_check passed yet the file cannot be used
        if not repair or moved is not None:
            raise
        moved = (str(exc), _move_aside(path, str(exc)))
        _set_wal(path)
    return moved


def database_id(conn: Connection) -> str | None:
    """The identity created with the database (``store_meta``); None if it has none."""
    # Plain SQL: checked before every commit, where building the statement would cost more than running it.
    value = conn.exec_driver_sql("SELECT value FROM store_meta WHERE name = 'database_id'").scalar()
    return None if value is None else str(value)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a SQLite file, None if it is gone: a file deleted or replaced under
    an open connection keeps answering from the old inode, so only this can tell."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _set_wal(path: Path) -> None:
    """WAL is a property of the file: set once here, every later connection uses it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (from empty, or from any older revision). A
    database already there is left as it is without loading alembic (a tenth of start-up)."""
    head = head_revision()
    if head is not None and schema_revision(engine) == head:
        return
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


_REVISION = re.compile(r"^(down_revision|revision)\b[^=\n]*=\s*(.+?)\s*$", re.MULTILINE)
_QUOTED = re.compile(r"""^['"]([^'"]+)['"]$""")


def head_revision() -> str | None:
    """The newest migration, read from the revision files' ``revision`` and ``down_revision``
    lines; None when that is not plain (a merge, an unreadable file): alembic then decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        found = {m[1]: m[2] for m in _REVISION.finditer(path.read_text(encoding="utf-8"))}
        rev = _QUOTED.match(found.get("revision", ""))
        down = found.get("down_revision", "")
        if rev is None:
            return None
        revisions.add(rev[1])
        if down != "None":
            quoted = _QUOTED.match(down)
            if quoted is None:
                return None
            parents.add(quoted[1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DatabaseError:
            return None


def _revision(message: str) -> None:
    """Autogenerate a revision against a scratch SQLite database at the current head."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        from alembic import command

        engine = make_engine(f"sqlite:///{tmp}/scratch.db")
        migrate(engine)
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        print("usage: python -m monitord.store.database revision MESSAGE", file=sys.stderr)
        sys.exit(2)
    _revision(sys.argv[2])
