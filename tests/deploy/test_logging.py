"""Logs that journald understands, alarms at their priority, no library chatter, no floods.

journald marks a service's stderr with ``JOURNAL_STREAM=<device>:<inode>``; here stderr is a
file whose device and inode the test puts in that variable, exactly as systemd would, so the
daemon (a real process) and the in-process set-up both see "stderr is the journal".
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from monitord import cli, logs
from monitord import readings as r
from monitord.config import load_config
from monitord.daemon import log_alarm
from monitord.store.database import open_database
from tests.core.conftest import DEVICES, Bed
from tests.mqtt.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    logs.reset_logging()


def journal_env(fh: IO[str]) -> dict[str, str]:
    st = os.fstat(fh.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_high_alarm_reaches_the_journal_at_priority_2(tmp_path: Path) -> None:
    with (tmp_path / "journal").open("w", buffering=1) as stream:
        logs.setup_logging("info", stream=stream, environ=journal_env(stream))
        bed = Bed(load_config(overrides={"devices": DEVICES}))
        bed.engine.subscribe(log_alarm)
        bed.admit_and_start()
        bed.vitals[r.Vital.HR] = 190.0
        bed.run(15)
        bed.vitals[r.Vital.HR] = 72.0
        bed.vitals[r.Vital.RR] = 6.0
        bed.run(40)
    lines = (tmp_path / "journal").read_text().splitlines()
    assert any(line.startswith("<2>monitord.alarm: HIGH alarm vital.hr_high raised") for line in lines), lines
    assert any(line.startswith("<4>monitord.alarm: MEDIUM alarm vital.rr_low raised") for line in lines), lines
    assert any(line.startswith("<6>monitord.alarm: HIGH alarm vital.hr_high cleared") for line in lines), lines
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert not any(TIMESTAMP.search(line) for line in lines), "journald stamps lines itself"


def test_outside_the_journal_lines_are_timestamped_and_unprefixed(tmp_path: Path) -> None:
    other = (tmp_path / "other").open("w")
    stream = io.StringIO()
    logs.setup_logging("info", stream=stream, environ=journal_env(other))  # JOURNAL_STREAM names another file
    logging.getLogger("monitord.test").warning("battery low")
    other.close()
    line = stream.getvalue().strip()
    assert TIMESTAMP.match(line) and "WARNING monitord.test: battery low" in line
    assert not line.startswith("<")


def test_daemon_under_journald_logs_with_priorities(tmp_path: Path) -> None:
    """A real ``monitord run``: start-up at <6>, the MQTT output failure as a <4> alarm, no
    timestamps; stopping it is clean."""
    site = tmp_path / "site.toml"
    site.write_text(
        f'[bed]\nid = "journal"\ncare_area = "icu"\n[store]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n[dashboard]\nsocket = "{tmp_path / "d.sock"}"\n'
    )
    journal = tmp_path / "journal"
    with journal.open("w") as stderr:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env.update(journal_env(stderr))
        proc = subprocess.Popen([sys.executable, "-m", "monitord.cli", "run", "-c", str(site)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + WAIT_S
        while "tech.mqtt_failed raised" not in journal.read_text():
            assert proc.poll() is None, journal.read_text()
            assert time.monotonic() < deadline, journal.read_text()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT_S)
    assert proc.returncode == 0
    lines = journal.read_text().splitlines()
    assert any(line.startswith("<6>monitord.daemon: monitoring bed journal") for line in lines), lines
    assert any(line.startswith("<4>monitord.alarm: LOW alarm tech.mqtt_failed raised") for line in lines), lines
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert not any(TIMESTAMP.search(line) for line in lines)


def test_export_prints_no_alembic_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f'[store]\nstate_dir = "{tmp_path}"\n')
    open_database(load_config(site)).engine.dispose()  # an existing, migrated database
    capsys.readouterr()
    assert cli.main(["export", "-c", str(site)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("id\tbed\tpatient")
    assert "alembic" not in out.err.lower() and "INFO" not in out.err, out.err


def test_migrations_log_nothing_at_the_default_level(tmp_path: Path) -> None:
    stream = io.StringIO()
    logs.setup_logging("info", stream=stream, environ={})
    open_database(load_config(overrides={"store": {"state_dir": str(tmp_path)}})).engine.dispose()
    assert stream.getvalue() == ""
    logs.setup_logging("debug", stream=stream, environ={})  # asked for: then they show
    open_database(load_config(overrides={"store": {"state_dir": str(tmp_path / "again")}})).engine.dispose()
    assert "alembic" in stream.getvalue()


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def throttled_logger(window_s: float = 60.0) -> tuple[logging.Logger, io.StringIO, FakeTime, logs.Handler]:
    stream, clock = io.StringIO(), FakeTime()
    handler = logs.Handler(stream, window_s=window_s, clock=clock)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"monitord.test.throttle.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream, clock, handler


def test_a_garbled_frame_every_second_is_summarised() -> None:
    logger, stream, clock, _ = throttled_logger()
    for n in range(150):  # 150 s of one garbled frame per second
        logger.warning("monitor: garbled frame %d", n)
        clock.now += 1.0
    lines = stream.getvalue().splitlines()
    assert lines == [
        "WARNING monitor: garbled frame 0",
        "WARNING monitor: garbled frame 59 [repeated 59 times in the last 60 s]",
        "WARNING monitor: garbled frame 60",
        "WARNING monitor: garbled frame 119 [repeated 59 times in the last 60 s]",
        "WARNING monitor: garbled frame 120",
    ]


def test_flush_writes_the_summary_of_a_flood_that_stopped() -> None:
    logger, stream, clock, handler = throttled_logger()
    for _ in range(5):
        logger.error("pump: no reply")
    handler.flush_repeats()
    assert stream.getvalue().splitlines() == ["ERROR pump: no reply"]  # window not over yet
    clock.now = 61.0
    handler.flush_repeats()
    assert stream.getvalue().splitlines() == ["ERROR pump: no reply",
                                              "ERROR pump: no reply [repeated 4 times in the last 61 s]"]


def test_info_other_causes_and_alarms_are_never_throttled() -> None:
    logger, stream, _, _ = throttled_logger()
    for _ in range(3):
        logger.info("connected")
        for device in ("pump", "monitor"):  # one call site, two devices: two causes
            logger.warning("%s: link silent", device)
        logger.warning("monitor: checksum error")
        logger.critical("HIGH alarm vital.hr_high raised", extra={"throttle": False})
    lines = stream.getvalue().splitlines()
    assert lines.count("INFO connected") == 3
    assert lines.count("WARNING pump: link silent") == 1 and lines.count("WARNING monitor: link silent") == 1
    assert lines.count("WARNING monitor: checksum error") == 1
    assert lines.count("CRITICAL HIGH alarm vital.hr_high raised") == 3


def test_alarm_levels_follow_alarm_priority() -> None:
    assert logs.alarm_level("raised", "high") == logging.CRITICAL
    assert logs.syslog_priority(logs.alarm_level("raised", "high")) == 2
    assert logs.alarm_level("escalated", "high") == logging.CRITICAL
    assert logs.alarm_level("raised", "medium") == logging.WARNING
    assert logs.alarm_level("raised", "low") == logging.WARNING
    assert logs.alarm_level("raised", "advisory") == logging.INFO
    assert logs.alarm_level("cleared", "high") == logging.INFO
    assert logs.alarm_level("acknowledged", "high") == logging.INFO


def test_a_flood_of_distinct_warnings_is_written_and_remembered_within_bounds() -> None:
    logger, stream, _, handler = throttled_logger()
    def letters(n: int) -> str:  # digits would be masked: every text must differ in letters
        return "".join(chr(97 + int(d)) for d in str(n))

    for n in range(3 * logs.MAX_TRACKED):
        logger.warning("bad frame %s", letters(n))
    assert len(stream.getvalue().splitlines()) == 3 * logs.MAX_TRACKED
    assert len(handler._repeats) <= logs.MAX_TRACKED
