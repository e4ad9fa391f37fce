"""``monitord doctor``: check this box's set-up and print the fix for each problem.

Each check is a small function returning ``Result`` (tests call them one by one). The command
runs them all, prints ``OK``/``FAIL``/``SKIP`` lines with the fix under each failure and the
reason for each skip, and exits non-zero if anything failed. It only reads: it opens no serial port, changes no file and opens
the database read-only, so it is safe to run next to the running daemon.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import socket
import sqlite3
import ssl
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from monitord.clock import clock_synchronized
from monitord.config import DEFAULTS_PATH, Config, ConfigError, MqttConfig, load_config

DEFAULT_CONFIG = "/etc/monitord/monitord.toml"
EXAMPLE_CONFIG = DEFAULTS_PATH.parent / "monitord.example.toml"  # shipped; config/monitord.example.toml in a checkout
UDEV_RULE = "/etc/udev/rules.d/99-monitord-serial.rules"
SERIAL_GROUP = "dialout"
SERVICE_USER = "monitord"
# The store keeps 7 days of raw readings plus trends; 1 GiB leaves months of margin on a Pi.
# Below 10 % free an SD card also wears faster and SQLite checkpoints slow down.
MIN_FREE_BYTES = 1 << 30
MIN_FREE_FRACTION = 0.10
SQLITE_FILENAME = "monitord.db"
# The service account, created exactly as docs/install.md (section 2) creates it.
USERADD = (f"sudo useradd --system --user-group --home-dir /var/lib/monitord --shell /usr/sbin/nologin "
           f"--groups {SERIAL_GROUP} {SERVICE_USER}")
# Checks that need the configuration: skipped, with this reason, when it does not load.
NEEDS_CONFIG = ("serial", "mqtt broker", "disk", "database")


class Status(StrEnum):
    OK = "OK"
    FAIL = "FAIL"
    SKIP = "SKIP"  # not applicable to this configuration


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAIL

    def render(self) -> str:
        line = f"{self.status.value:<4} {self.name}: {self.detail}"
        if self.fix:
            line += "\n     fix: " + self.fix.replace("\n", "\n          ")
        return line


def _ok(name: str, detail: str) -> Result:
    return Result(name, Status.OK, detail)


def _fail(name: str, detail: str, fix: str) -> Result:
    return Result(name, Status.FAIL, detail, fix)


# -- configuration --------------------------------------------------------------------------


def check_config(path: str | Path) -> tuple[Result, Config | None]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _fail("config", str(exc),
                     f"edit {path} (start from a copy of {EXAMPLE_CONFIG}), then run "
                     f"`monitord check-config {path}` until it says OK; or give another file with -c FILE"), None
    detail = f"{path}: bed {config.bed.id}, care area {config.bed.care_area.value}"
    disabled = [n for n in config.notes if n.startswith("DISABLED")]
    if disabled:  # allowed, but never silent
        detail += "; " + "; ".join(disabled)
    return _ok("config", detail), config


# -- serial ports ---------------------------------------------------------------------------


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_serial_port(role: str, port: str) -> Result:
    """The port exists, is a character device of group dialout with mode rw for the group (how
    the service reaches it), and this user can read and write it."""
    name = f"serial {role}"
    if "://" in port:
        return Result(name, Status.SKIP, f"{port} is a network port (pyserial URL): not checked here")
    udev_fix = (
        f"plug in the {role}'s USB serial adapter and check `ls -l /dev/monitord-*`; install "
        f"config/udev/99-monitord-serial.rules as {UDEV_RULE} with the adapter's serial number "
        f"(`udevadm info --query=property --name=/dev/ttyUSB0 | grep ID_SERIAL_SHORT`), then "
        "`sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=tty`"
    )
    path = Path(port)
    if not path.exists():
        what = "a dangling symlink (adapter unplugged?)" if path.is_symlink() else "missing"
        return _fail(name, f"{port} is {what}", udev_fix)
    st = path.stat()
    if not stat.S_ISCHR(st.st_mode):
        return _fail(name, f"{port} is not a character device (a serial port is)",
                     f"point devices.{role}.serial.port at the adapter's device node; {udev_fix}")
    group = _group_name(st.st_gid)
    target = os.path.realpath(port)
    if group != SERIAL_GROUP or st.st_mode & 0o060 != 0o060:
        # The service reaches ports only as group dialout (SupplementaryGroups= in the unit).
        return _fail(name, f"{port} ({target}) is {stat.filemode(st.st_mode)} group {group}: the service "
                     f"opens ports as group {SERIAL_GROUP}",
                     f"set GROUP=\"{SERIAL_GROUP}\", MODE=\"0660\" in {UDEV_RULE} and re-trigger udev")
    if not os.access(port, os.R_OK | os.W_OK):
        user = _user_name()
        return _fail(name, f"{port} ({target}) is not readable and writable by {user}",
                     f"`sudo usermod -aG {SERIAL_GROUP} {user}` and log in again (the service itself gets "
                     f"{SERIAL_GROUP} through SupplementaryGroups= in monitord.service)")
    return _ok(name, f"{port} -> {target} (group {group}, {stat.filemode(st.st_mode)})")


def check_serial_ports(config: Config) -> list[Result]:
    devices = [d for d in (config.devices.pump, config.devices.monitor) if d is not None]
    if not devices:
        return [Result("serial", Status.SKIP, "no device configured ([devices.pump], [devices.monitor])")]
    return [check_serial_port(d.name, d.serial.port) for d in devices]


def check_service_user() -> Result:
    """The service account exists (the units run as it)."""
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return _fail("service user", f"no user '{SERVICE_USER}'", f"`{USERADD}`")
    return _ok("service user", f"{SERVICE_USER} (uid {pw.pw_uid})")


# -- MQTT broker ----------------------------------------------------------------------------

# MQTT 5 reason codes (paho maps 3.1.1 return codes 4 and 5 onto these).
_AUTH_CODES = {134, 135}  # bad user name or password, not authorized


def check_broker(mqtt: MqttConfig, timeout_s: float = 5.0) -> Result:
    """Connect with the configured host, port, credentials and TLS; wait for CONNACK."""
    name = "mqtt broker"
    if not mqtt.enabled:
        return Result(name, Status.SKIP, "MQTT is disabled ([mqtt] enabled = false)")
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    where = f"{mqtt.host}:{mqtt.port}" + (" (TLS)" if mqtt.tls else "")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"monitord-doctor-{os.getpid()}")
    client.connect_timeout = timeout_s
    if mqtt.username:
        client.username_pw_set(mqtt.username, mqtt.password)
    if mqtt.tls:
        try:
            client.tls_set(ca_certs=mqtt.tls.ca_file, certfile=mqtt.tls.cert_file, keyfile=mqtt.tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            return _fail(name, f"cannot load the TLS files: {exc}",
                         "check [mqtt.tls] ca_file/cert_file/key_file: they must exist, be PEM and be "
                         "readable by the monitord group")
    outcome: list[object] = []
    closed: list[bool] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: outcome.append(rc)
    client.on_disconnect = lambda *_a: closed.append(True)
    tls_fix = ("check the broker's TLS port (usually 8883) and that [mqtt.tls] ca_file signed the broker's "
               "certificate and the host name matches it")
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
        deadline = time.monotonic() + timeout_s
        while not outcome and not closed and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except ConnectionRefusedError:
        return _fail(name, f"{where}: connection refused (nothing listens there)",
                     "start the broker (`sudo systemctl enable --now mosquitto`) or correct [mqtt] host/port")
    except ssl.SSLCertVerificationError as exc:
        return _fail(name, f"{where}: TLS: the broker's certificate is not trusted: {exc.verify_message}", tls_fix)
    except ssl.SSLError as exc:
        return _fail(name, f"{where}: TLS handshake failed: {exc.reason or exc}", tls_fix)
    except ConnectionResetError as exc:
        if mqtt.tls:  # a plain MQTT listener drops a TLS ClientHello
            return _fail(name, f"{where}: TLS handshake failed: the broker closed the connection "
                         "(is this port plain MQTT?)", tls_fix)
        return _fail(name, f"{where}: connection reset: {exc}", "see the broker's log")
    except socket.gaierror as exc:
        return _fail(name, f"{where}: host name not resolved: {exc}", "correct [mqtt] host or the box's DNS")
    except (TimeoutError, OSError) as exc:
        return _fail(name, f"{where}: cannot connect: {exc}",
                     "check the network path and firewall to the broker, and [mqtt] host/port")
    finally:
        client.disconnect()
        client.loop(timeout=0.1)
    if not outcome:
        happened = "closed the connection without answering" if closed else f"did not answer within {timeout_s:g} s"
        return _fail(name, f"{where}: connected, but the broker {happened} CONNECT",
                     "is this port an MQTT broker? If it expects TLS, set [mqtt.tls] (and usually port 8883)")
    rc = outcome[0]
    value = getattr(rc, "value", rc)
    if value == 0:
        return _ok(name, f"{where}: connected" + (f" as {mqtt.username}" if mqtt.username else ""))
    if value in _AUTH_CODES:
        return _fail(name, f"{where}: credentials refused ({rc})",
                     "check [mqtt] username/password against the broker's password file and its ACL")
    return _fail(name, f"{where}: broker refused the connection ({rc})", "see the broker's log")


# -- clock, disk, database ------------------------------------------------------------------


def check_clock() -> Result:
    if clock_synchronized():
        return _ok("clock", "synchronised by NTP")
    return _fail("clock", "not synchronised: stored wall times are marked clock_synced=false "
                 "(durations are unaffected: they use the monotonic clock)",
                 "`sudo timedatectl set-ntp true` (systemd-timesyncd) or install chrony; check with "
                 "`timedatectl status`. A Pi has no battery clock: it needs the network at boot")


def check_disk(state_dir: str | Path, min_free_bytes: int = MIN_FREE_BYTES,
               min_free_fraction: float = MIN_FREE_FRACTION) -> Result:
    name = "disk"
    path = Path(state_dir)
    if not path.is_dir():
        return _fail(name, f"state directory {path} does not exist",
                     "it is created by systemd (StateDirectory=monitord) on the first start, or "
                     f"`sudo install -d -o {SERVICE_USER} -g {SERVICE_USER} -m 0750 {path}`")
    usage = shutil.disk_usage(path)
    free_gib, frac = usage.free / (1 << 30), usage.free / usage.total if usage.total else 0.0
    detail = f"{path}: {free_gib:.1f} GiB free ({frac:.0%})"
    need = f"at least {min_free_bytes / (1 << 30):g} GiB and {min_free_fraction:.0%} free"
    if usage.free < min_free_bytes or frac < min_free_fraction:
        return _fail(name, f"{detail}; need {need}",
                     "free space on that file system (`sudo journalctl --vacuum-size=100M`, remove old "
                     "exports) or move [store] state_dir to a larger disk")
    return _ok(name, f"{detail}; need {need}")


def database_url(config: Config) -> str:
    """The store's URL, as ``monitord.store.database`` derives it (not imported: it loads alembic)."""
    return config.store.url or f"sqlite:///{Path(config.store.state_dir) / SQLITE_FILENAME}"


def check_database(config: Config) -> Result:
    """SQLite: the file opened read-only passes ``PRAGMA integrity_check``. Else ``SELECT 1``."""
    name = "database"
    url = database_url(config)
    if url.startswith("sqlite:///"):
        return check_sqlite_file(Path(url.removeprefix("sqlite:///")))
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    shown = url.split("@")[-1] if "@" in url else url  # no password in the output
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["error"])[0]
        return _fail(name, f"{shown}: {first}",
                     "check [store] url, that the server runs and accepts this user from this host "
                     "(pg_hba.conf), and that the database exists")
    except ImportError as exc:
        return _fail(name, f"{shown}: driver missing: {exc}",
                     "`/opt/monitord/venv/bin/pip install 'monitord[postgres]'`")
    return _ok(name, f"{shown}: SELECT 1 answered")


def check_sqlite_file(path: Path) -> Result:
    name = "database"
    if not path.exists():
        return Result(name, Status.OK, f"{path}: not created yet (the daemon creates it on first start)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return _fail(name, f"{path}: cannot be read: {exc}",
                     f"stop monitord, move {path} aside (keep it for the records) and start monitord: it "
                     f"creates a new database; or try `sqlite3 {path} .recover` into a new file")
    if rows != ["ok"]:
        return _fail(name, f"{path}: integrity check failed: {'; '.join(rows[:3])}",
                     f"stop monitord, copy {path} aside and rebuild it with `sqlite3 {path} .recover`")
    return _ok(name, f"{path}: integrity check ok")


# -- the command ----------------------------------------------------------------------------


def run_checks(config_path: str | Path, broker_timeout_s: float = 5.0) -> list[Result]:
    config_result, config = check_config(config_path)
    results = [config_result, check_service_user()]
    if config is None:  # never silent: each check that needed it says it was not run
        why = "not checked: the configuration did not load (see 'config' above)"
        return [*results, check_clock(), *(Result(name, Status.SKIP, why) for name in NEEDS_CONFIG)]
    results += check_serial_ports(config)
    results.append(check_broker(config.mqtt, broker_timeout_s))
    results.append(check_clock())
    results.append(check_disk(config.store.state_dir))
    results.append(check_database(config))
    return results


def summary(results: list[Result]) -> str:
    failed = [r for r in results if not r.ok]
    skipped = [r.name for r in results if r.status is Status.SKIP]
    line = f"{len(failed)} problem(s) found." if failed else "All checks passed."
    if skipped:
        line += f" {len(skipped)} check(s) skipped (reason on each SKIP line): {', '.join(skipped)}."
    return line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"site configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("--broker-timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for the MQTT broker (default 5)")
    p.add_argument("--sound", action="store_true",
                   help="commissioning: play the high, medium and low alarm patterns through the terminal bell "
                        "(and the GPIO buzzer with --buzzer-pin), then ask whether they were heard")
    p.add_argument("--buzzer-pin", type=int, default=None, metavar="PIN", help="GPIO (BCM) pin of the buzzer")


def sound_test(buzzer_pin: int | None, ask: Callable[[str], str] = input) -> Result:
    """Play every priority's pattern through every output this box has, and ask whether it was
    heard: the commissioning check that an alarm at this bedside is audible."""
    import asyncio

    from monitord.buzzer import PATTERNS, AlarmSounder, GpioBuzzer, Output, TerminalBell, bell_problem

    def ring() -> None:
        sys.stdout.write("\a")
        sys.stdout.flush()

    outputs: list[Output] = [TerminalBell(ring, bell_problem(os.environ.get("TERM")))]
    if buzzer_pin is not None:
        outputs.append(GpioBuzzer(buzzer_pin))
    sounder = AlarmSounder(outputs)
    states = asyncio.run(sounder.self_test())
    broken = [f"{s.name}: {s.why}" for s in states if not s.working]
    if not any(s.working for s in states):
        return _fail("sound", "no output can sound here: " + "; ".join(broken),
                     "wire an active buzzer to a GPIO pin and install monitord[pi] (docs/dashboard.md, Sound)")
    counts = ", then ".join(str(PATTERNS[p].pulses) for p in ("high", "medium", "low"))
    answer = ask(f"Did you hear three bursts of beeps ({counts})? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        return _fail("sound", "the alarm patterns were played but not heard" + (f" ({'; '.join(broken)})" if broken else ""),
                     "check the buzzer's wiring and pin, the volume, and that the dashboard runs on this console")
    return _ok("sound", "alarm patterns heard" + (f"; not working: {'; '.join(broken)}" if broken else ""))


def main(args: argparse.Namespace) -> int:
    results = run_checks(args.config, args.broker_timeout)
    if getattr(args, "sound", False):
        results.append(sound_test(args.buzzer_pin))
    for result in results:
        print(result.render())
    print("\n" + summary(results))
    sys.stdout.flush()
    return 0 if all(r.ok for r in results) else 1
