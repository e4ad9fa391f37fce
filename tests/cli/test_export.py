"""``monitord export`` as a user runs it: it only ever reads the database, says plainly when there is
none, survives ``| head``, shows progress on stderr, and draws a one-page picture of a session."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import struct
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from monitord.config import Config
from monitord.store.export import Progress
from tests.cli.conftest import Recorded, monitord, user_env
from tests.store.conftest import PG_BASE, Bed, make_config, pg_problem

SVG = "{http://www.w3.org/2000/svg}"


def _files(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


# -- no database, another database --------------------------------------------------------------


def test_a_state_dir_without_a_database_is_an_error_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    empty = tmp_path / "empty"
    empty.mkdir()
    for state in (missing, empty):
        site = tmp_path / "site.toml"
        site.write_text(f'[store]\nstate_dir = "{state}"\n')
        for args in ([], ["--session", "1"], ["--session", "1", "--format", "svg", "-o", str(tmp_path / "s.svg")]):
            proc = monitord("export", "-c", str(site), *args)
            assert proc.returncode == 2, proc.stderr
            assert f"no database at {state / 'monitord.db'}" in proc.stderr and "state_dir" in proc.stderr
            assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not missing.exists()
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "s.svg").exists()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "monitord.db").write_bytes(b"these are not the records you are looking for" * 100)
    site = tmp_path / "site.toml"
    site.write_text(f'[store]\nstate_dir = "{state}"\n')
    proc = monitord("export", "-c", str(site))
    assert proc.returncode == 2 and "cannot be read as a SQLite database" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_another_schema_revision_is_refused_and_never_migrated(recorded: Recorded) -> None:
    for revision, says in (("0001", "older than this monitord reads"), ("9999_future", "does not know")):
        with sqlite3.connect(recorded.db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        proc = monitord("export", "-c", str(recorded.config), "--session", "1")
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert "never migrates" in proc.stderr or "newer version" in proc.stderr
        with sqlite3.connect(recorded.db) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision,)]
        assert "INFO" not in proc.stderr  # no migration log lines


# -- read-only ------------------------------------------------------------------------------------


def test_export_leaves_the_database_directory_as_it_found_it(recorded: Recorded, tmp_path: Path) -> None:
    state = recorded.db.parent
    before = _files(state)
    assert "monitord.db-wal" not in before  # closed cleanly: what `sudo monitord export` would meet
    out = tmp_path / "s1.csv"
    for args in ([], ["--session", "1", "-o", str(out)], ["--session", "1", "-o", str(tmp_path / "s1.png")]):
        proc = monitord("export", "-c", str(recorded.config), *args)
        assert proc.returncode == 0, proc.stderr
    assert _files(state) == before  # no -wal/-shm left behind (they would be root's under sudo), no change
    assert out.read_text().count("\nreading,") > 1000


def test_export_reads_a_database_the_daemon_has_open(recorded: Recorded) -> None:
    writer = sqlite3.connect(recorded.db, isolation_level=None)  # as the daemon holds it: WAL files present
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("UPDATE sessions SET cumulative_mg = 99.5 WHERE id = 1")
        assert Path(f"{recorded.db}-wal").exists()
        proc = monitord("export", "-c", str(recorded.config))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[1].endswith("\t99.5")  # committed, not yet checkpointed, is seen
    finally:
        writer.close()


def test_no_session_of_that_id_and_an_output_that_cannot_be_written(recorded: Recorded, tmp_path: Path) -> None:
    proc = monitord("export", "-c", str(recorded.config), "--session", "42")
    assert proc.returncode == 1 and "no session 42" in proc.stderr and "Traceback" not in proc.stderr
    target = tmp_path / "no-such-dir" / "s1.csv"
    proc = monitord("export", "-c", str(recorded.config), "--session", "1", "-o", str(target))
    assert proc.returncode == 2 and f"cannot write {target}: No such file or directory" in proc.stderr, proc.stderr


# -- a closed pipe, progress ---------------------------------------------------------------------


def test_a_closed_pipe_ends_the_export_quietly(recorded: Recorded) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "monitord.cli", "export", "-c", str(recorded.config),
                             "--session", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                            env=user_env())
    assert proc.stdout is not None and proc.stderr is not None
    header = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does after its line
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert header.startswith(b"record,seq,time,")
    assert code == 141, err  # 128 + SIGPIPE, as a shell reports a writer whose reader left
    assert err == ""  # no traceback, no "BrokenPipeError", no "Exception ignored"


def test_the_same_through_a_shell_pipe_into_head(recorded: Recorded) -> None:
    proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"{sys.executable} -m monitord.cli export -c {recorded.config} --session 1 | head -3"],
                          capture_output=True, text=True, timeout=60, cwd="/", env=user_env())
    assert len(proc.stdout.splitlines()) == 3 and proc.stderr == "", proc.stderr
    assert proc.returncode == 141


def test_progress_on_stderr_never_in_the_data(recorded: Recorded, tmp_path: Path) -> None:
    shown = monitord("export", "-c", str(recorded.config), "--session", "1", "--progress", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stderr.splitlines()
    assert lines[0].startswith("export: reading session 1: ") and "records" in lines[0]
    assert lines[-1].startswith("export: session 1: ") and lines[-1].endswith("records written")
    assert shown.stdout.lstrip().startswith("{")  # the data alone on stdout
    quiet = monitord("export", "-c", str(recorded.config), "--session", "1")  # not a terminal: no progress
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_progress_waits_a_second_on_a_terminal_then_rewrites_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    term = Terminal()
    progress = Progress(term, None, clock=lambda: now[0])
    progress.start("reading session 3", 1000)
    for _ in range(400):
        progress.advance()
    assert term.getvalue() == ""  # a short export shows nothing
    now[0] = 1.5
    progress.advance()
    now[0] = 1.6  # too soon to redraw
    progress.advance()
    now[0] = 2.0
    progress.advance(98)
    progress.finish("session 3: 1,000 records written")
    shown = term.getvalue().split("\r\x1b[K")[1:]
    assert shown == ["export: reading session 3: 401 of 1,000 records (40 %)",
                     "export: reading session 3: 500 of 1,000 records (50 %)",
                     "export: session 3: 1,000 records written\n"]
    never = Terminal()
    off = Progress(never, False, clock=lambda: now[0] + 10)
    off.start("x", 10)
    off.advance(10)
    off.finish("done")
    assert never.getvalue() == ""


# -- the picture ---------------------------------------------------------------------------------


def test_svg_picture_of_a_session(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "session-1.svg"
    proc = monitord("export", "-c", str(recorded.config), "--session", "1", "-o", str(out))  # format from the name
    assert proc.returncode == 0, proc.stderr
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG}svg"
    texts = {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")}
    assert {"Dose", "Circulation", "Breathing", "Alarms and observations"} <= texts
    assert "vital.spo2_low" in texts  # the desaturation's alarm has its lane
    assert {"mg/kg/h", "SpO2 %", "pain / sedation"} <= texts
    assert any(t.startswith("Session 1, bed bed-01, patient P-1") for t in texts)
    assert any(t.startswith("start ") for t in texts) and any(t.startswith("stop ") for t in texts)
    assert not any("Minute trends" in t for t in texts)  # raw readings are all there


def test_png_picture_is_one_a4_landscape_page(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "s1.png"
    proc = monitord("export", "-c", str(recorded.config), "--session", "1", "--format", "png", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1169, 827)


def test_picture_falls_back_to_minute_trends_once_raw_readings_are_pruned(recorded: Recorded, tmp_path: Path) -> None:
    with sqlite3.connect(recorded.db) as conn:  # what raw_retention_h does to an old session
        conn.execute("DELETE FROM readings")
    out = tmp_path / "old.svg"
    proc = monitord("export", "-c", str(recorded.config), "--session", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    texts = {"".join(t.itertext()).strip() for t in ET.parse(out).getroot().iter(f"{SVG}text")}
    assert any("Minute trends (mean) where raw readings were pruned: " in t and "spo2" in t for t in texts)
    assert "SpO2 % (trend)" in texts


def test_a_picture_goes_to_a_file_or_a_pipe_not_to_a_terminal(recorded: Recorded) -> None:
    piped = monitord("export", "-c", str(recorded.config), "--session", "1", "--format", "svg")
    assert piped.returncode == 0 and piped.stdout.lstrip().startswith("<?xml"), piped.stderr
    master, slave = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "monitord.cli", "export", "-c", str(recorded.config),
                               "--session", "1", "--format", "png"], stdout=slave, stderr=subprocess.PIPE,
                              cwd="/", env=user_env(), timeout=60, check=False)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 2 and b"give -o FILE.png" in proc.stderr


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgresql_is_read_in_read_only_transactions_and_never_migrated(tmp_path: Path) -> None:
    problem = pg_problem()
    if problem:
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        site = tmp_path / "site.toml"
        site.write_text(f'[store]\nurl = "{PG_BASE}?options=-csearch_path%3D{schema}"\n')
        empty = monitord("export", "-c", str(site))
        assert empty.returncode == 2 and "is not a monitord database" in empty.stderr, empty.stderr
        assert "127.0.0.1:5432/test" in empty.stderr and "postgres@" not in empty.stderr  # no credentials shown
        with admin.connect() as conn:  # nothing was created in the empty schema
            tables = conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                                  {"s": schema}).scalar()
        assert tables == 0

        from monitord.store.export import ReadOnlyDatabase

        config = make_config({"url": f"{PG_BASE}?options=-csearch_path%3D{schema}", "state_dir": str(tmp_path)})
        asyncio.run(_fill(config))
        db = ReadOnlyDatabase.open(config)
        try:
            with db.engine.connect() as conn:
                assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
                with pytest.raises(DBAPIError, match="read-only transaction"):
                    conn.execute(text("UPDATE sessions SET cumulative_mg = 0"))
        finally:
            db.close()
        listed = monitord("export", "-c", str(site))
        assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("1\t"), listed.stderr
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


async def _fill(config: Config) -> None:
    bed = Bed(config)
    await bed.start()
    bed.admit_and_start(pain=6)
    bed.run(30)
    bed.flush()
    await bed.stop()
