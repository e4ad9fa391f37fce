"""``monitord doctor``: each check finds a real problem on real things (files, ptys, a real
mosquitto, SQLite, PostgreSQL) and prints its fix; the command exits non-zero on any failure."""

from __future__ import annotations

import grp
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitord import doctor
from monitord.config import MqttConfig, TLSConfig, load_config
from monitord.doctor import Status
from tests.mqtt.broker import Mosquitto, free_port, make_certs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "monitord.example.toml"


def site_config(tmp_path: Path, **tables: str) -> Path:
    """A site file like an installer writes, with some tables replaced."""
    text = {
        "bed": '[bed]\nid = "bed-07"\ncare_area = "monitored-unit"\n',
        "devices": ('[devices.pump]\ndriver = "modbus"\n[devices.pump.serial]\nport = "/dev/monitord-pump"\n'
                    '[devices.monitor]\ndriver = "datex"\n[devices.monitor.serial]\nport = "/dev/monitord-monitor"\n'),
        "store": f'[store]\nstate_dir = "{tmp_path}"\n',
        "mqtt": f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n',
    } | tables
    path = tmp_path / "monitord.toml"
    path.write_text("\n".join(text.values()))
    return path


# -- configuration ------------------------------------------------------------------------


def test_bad_config_is_reported_with_the_key_and_the_fix(tmp_path: Path) -> None:
    path = site_config(tmp_path, bed='[bed]\nid = "bed-07"\ncare_area = "ward"\nwatchdog_s = 3\n')
    result, config = doctor.check_config(path)
    assert config is None and result.status is Status.FAIL
    assert "bed.care_area" in result.detail and "bed.watchdog_s: unknown key" in result.detail
    assert f"monitord check-config {path}" in result.fix


def test_missing_config_file_fails(tmp_path: Path) -> None:
    result, _ = doctor.check_config(tmp_path / "nope.toml")
    assert result.status is Status.FAIL and "no such file" in result.detail
    assert "monitord.example.toml" in result.fix


def test_example_config_passes(tmp_path: Path) -> None:
    result, config = doctor.check_config(EXAMPLE)
    assert result.status is Status.OK and config is not None and "ward3-bed07" in result.detail


# -- serial ports -------------------------------------------------------------------------


@pytest.fixture
def pty_port() -> Iterator[str]:
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


def test_missing_port_names_the_udev_rule() -> None:
    result = doctor.check_serial_port("pump", "/dev/monitord-test-nonexistent")
    assert result.status is Status.FAIL and "missing" in result.detail
    assert "99-monitord-serial.rules" in result.fix and "udevadm info" in result.fix


def test_dangling_udev_symlink_says_unplugged(tmp_path: Path) -> None:
    link = tmp_path / "monitord-pump"
    link.symlink_to(tmp_path / "ttyUSB9")
    result = doctor.check_serial_port("pump", str(link))
    assert result.status is Status.FAIL and "dangling symlink" in result.detail


def test_a_regular_file_is_not_a_serial_port(tmp_path: Path) -> None:
    fake = tmp_path / "ttyUSB0"
    fake.write_text("")
    result = doctor.check_serial_port("monitor", str(fake))
    assert result.status is Status.FAIL and "not a character device" in result.detail
    assert "devices.monitor.serial.port" in result.fix


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a pty's group to dialout needs root")
def test_port_group_and_mode_as_udev_sets_them(pty_port: str, tmp_path: Path) -> None:
    link = tmp_path / "monitord-monitor"
    link.symlink_to(pty_port)  # as the udev SYMLINK+= does
    dialout = grp.getgrnam("dialout").gr_gid
    os.chown(pty_port, -1, grp.getgrnam("tty").gr_gid)
    os.chmod(pty_port, 0o620)
    wrong = doctor.check_serial_port("monitor", str(link))
    assert wrong.status is Status.FAIL and "group tty" in wrong.detail
    assert 'GROUP="dialout", MODE="0660"' in wrong.fix

    os.chown(pty_port, -1, dialout)
    os.chmod(pty_port, 0o660)
    right = doctor.check_serial_port("monitor", str(link))
    assert right.status is Status.OK, right.render()
    assert pty_port in right.detail


def test_network_ports_and_no_devices_are_skipped() -> None:
    assert doctor.check_serial_port("pump", "socket://127.0.0.1:5020").status is Status.SKIP
    results = doctor.check_serial_ports(load_config())
    assert [r.status for r in results] == [Status.SKIP]


# -- MQTT broker --------------------------------------------------------------------------


def test_unreachable_broker_is_refused() -> None:
    port = free_port()  # nothing listens there
    result = doctor.check_broker(MqttConfig(host="127.0.0.1", port=port), timeout_s=5)
    assert result.status is Status.FAIL and "refused" in result.detail and str(port) in result.detail
    assert "systemctl enable --now mosquitto" in result.fix


def test_disabled_mqtt_is_skipped() -> None:
    assert doctor.check_broker(MqttConfig(enabled=False)).status is Status.SKIP


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker", users={"bed-07": "right"}).start()
    yield broker
    broker.stop()


def test_broker_credentials_are_checked(password_broker: Mosquitto) -> None:
    good = MqttConfig(host="127.0.0.1", port=password_broker.port, username="bed-07", password="right")
    assert doctor.check_broker(good).status is Status.OK
    bad = MqttConfig(host="127.0.0.1", port=password_broker.port, username="bed-07", password="wrong")
    result = doctor.check_broker(bad)
    assert result.status is Status.FAIL and "credentials refused" in result.detail
    assert "username/password" in result.fix


def test_tls_failures_are_told_apart(tmp_path: Path, password_broker: Mosquitto) -> None:
    certs = make_certs(tmp_path / "certs")
    # TLS configured, but the port is plain MQTT.
    plain = MqttConfig(host="127.0.0.1", port=password_broker.port, username="bed-07", password="right",
                       tls=TLSConfig(ca_file=str(certs.ca)))
    result = doctor.check_broker(plain)
    assert result.status is Status.FAIL and "TLS handshake failed" in result.detail
    assert "8883" in result.fix

    broker = Mosquitto(tmp_path / "tls", tls=certs).start()
    try:
        ok = MqttConfig(host="127.0.0.1", port=broker.port, tls=TLSConfig(ca_file=str(certs.ca)))
        assert doctor.check_broker(ok).status is Status.OK
        no_tls = MqttConfig(host="127.0.0.1", port=broker.port)
        result = doctor.check_broker(no_tls, timeout_s=10)
        assert result.status is Status.FAIL and "[mqtt.tls]" in result.fix
        other_ca = make_certs(tmp_path / "other").ca
        untrusted = MqttConfig(host="127.0.0.1", port=broker.port, tls=TLSConfig(ca_file=str(other_ca)))
        result = doctor.check_broker(untrusted)
        assert result.status is Status.FAIL and "certificate is not trusted" in result.detail
        missing = MqttConfig(host="127.0.0.1", port=broker.port, tls=TLSConfig(ca_file=str(tmp_path / "none.crt")))
        assert "cannot load the TLS files" in doctor.check_broker(missing).detail
    finally:
        broker.stop()


# -- clock, disk, database ----------------------------------------------------------------


def test_unsynchronised_clock_names_the_time_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "clock_synchronized", lambda: False)
    result = doctor.check_clock()
    assert result.status is Status.FAIL and "timesyncd" in result.fix and "chrony" in result.fix
    monkeypatch.setattr(doctor, "clock_synchronized", lambda: True)
    assert doctor.check_clock().status is Status.OK


def test_disk_threshold_is_stated_and_applied(tmp_path: Path) -> None:
    ok = doctor.check_disk(tmp_path, min_free_bytes=1, min_free_fraction=0.0)
    assert ok.status is Status.OK and "GiB free" in ok.detail
    full = doctor.check_disk(tmp_path, min_free_bytes=1 << 60)
    assert full.status is Status.FAIL and "need at least" in full.detail and "state_dir" in full.fix
    missing = doctor.check_disk(tmp_path / "absent")
    assert missing.status is Status.FAIL and "StateDirectory" in missing.fix


def test_default_threshold_is_one_gib_and_ten_percent(tmp_path: Path) -> None:
    assert "at least 1 GiB and 10% free" in doctor.check_disk(tmp_path).detail


def test_sqlite_integrity(tmp_path: Path) -> None:
    config = load_config(overrides={"store": {"state_dir": str(tmp_path)}})
    db = tmp_path / "monitord.db"
    assert doctor.check_database(config).status is Status.OK  # not created yet
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    conn.close()
    good = doctor.check_database(config)
    assert good.status is Status.OK and "integrity check ok" in good.detail
    db.write_bytes(b"this is not a database" * 100)
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    bad = doctor.check_database(config)
    assert bad.status is Status.FAIL and ".recover" in bad.fix


def test_doctor_checks_the_file_the_store_opens(tmp_path: Path) -> None:
    from monitord.store.database import database_url

    config = load_config(overrides={"store": {"state_dir": str(tmp_path)}})
    assert doctor.database_url(config) == database_url(config)


@pytest.mark.postgres
def test_postgresql_answers_and_a_wrong_database_fails() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ok = doctor.check_database(load_config(overrides={"store": {"url": url}}))
    assert ok.status is Status.OK, ok.render()
    bad = doctor.check_database(load_config(overrides={"store": {"url": url + "_absent_db"}}))
    assert bad.status is Status.FAIL and "pg_hba.conf" in bad.fix


# -- the command --------------------------------------------------------------------------


def test_doctor_command_reports_every_problem_and_fails(tmp_path: Path) -> None:
    path = site_config(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "monitord.cli", "doctor", "-c", str(path), "--broker-timeout", "5"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert f"OK   config: {path}" in out
    assert "FAIL serial pump: /dev/monitord-pump is missing" in out
    assert "FAIL serial monitor: /dev/monitord-monitor is missing" in out
    assert "FAIL mqtt broker: 127.0.0.1:" in out and "connection refused" in out
    assert out.count("     fix: ") == out.count("FAIL ")  # every failure carries its fix
    assert "OK   disk:" in out or "FAIL disk:" in out
    assert "problem(s) found." in out
