"""The systemd units, udev rules and example config that ship for a Raspberry Pi box.

``systemd-analyze verify`` checks each unit's syntax and directives. It also checks that the
ExecStart= binary exists and is executable, and /opt/monitord/venv/bin/monitord does not exist
on a build machine. The units are therefore verified as copies in which only that path is
rewritten to an executable this test creates; everything else is byte for byte the shipped
file, and a separate assertion pins the shipped ExecStart=. (``--root`` was the alternative, but
then verify also looks for sysinit.target and every other dependency under the temporary root.)
verify does not resolve User=, so an absent ``monitord`` user on this machine is not an issue.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitord.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
UNITS = ["monitord.service", "monitord-dashboard.service", "monitord-sim@.service"]
BINARY = "/opt/monitord/venv/bin/monitord"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_verify = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")


def parse(unit: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    text = re.sub(r"\\\n\s*", " ", (SYSTEMD / unit).read_text())  # join continued lines
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: str, section: str, key: str) -> list[str]:
    return [v for k, v in parse(unit)[section] if k == key]


def one(unit: str, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"{unit} [{section}] {key}: {found}"
    return found[0]


def verify(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    exe = tmp_path / "bin" / "monitord"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    paths = []
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text.replace(BINARY, str(exe)))
        paths.append(str(path))
    return subprocess.run([SYSTEMD_ANALYZE, "verify", *paths], capture_output=True, text=True, timeout=60)


def shipped(unit: str) -> str:
    return (SYSTEMD / unit).read_text()


@needs_verify
def test_units_verify_clean(tmp_path: Path) -> None:
    # A template is verified as an instance, so %i is expanded as systemd would.
    files = {u.replace("@.", "@ramp."): shipped(u) for u in UNITS}
    proc = verify(tmp_path, files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no unknown key, no bad value, no warning


@needs_verify
def test_verify_catches_a_misspelt_directive(tmp_path: Path) -> None:
    # The check above could only pass vacuously if verify ignored our files: prove it reads them.
    text = shipped("monitord.service").replace("WatchdogSec=", "WatchdogSecs=")
    proc = verify(tmp_path, {"monitord.service": text})
    assert "Unknown key" in proc.stderr and "WatchdogSecs" in proc.stderr


def test_daemon_unit_runs_under_systemd_supervision() -> None:
    u = "monitord.service"
    assert one(u, "Service", "ExecStart") == f"{BINARY} run -c /etc/monitord/monitord.toml"
    assert one(u, "Service", "Type") == "notify"
    assert one(u, "Service", "NotifyAccess") == "main"
    assert one(u, "Service", "Restart") == "on-failure"  # includes a watchdog timeout
    watchdog_s = int(re.fullmatch(r"(\d+)s?", one(u, "Service", "WatchdogSec")).group(1))  # type: ignore[union-attr]
    # The loop pets at most every tick; a timeout many ticks long tolerates a slow SD card write.
    assert watchdog_s >= 10 * load_config().watchdog.tick_s
    # A box whose USB enumerates late must never end up "failed" for good.
    assert one(u, "Unit", "StartLimitIntervalSec") == "0"
    assert one(u, "Service", "RestartSec")


def test_daemon_unit_reaches_serial_ports_but_nothing_else() -> None:
    u = "monitord.service"
    service = dict(parse(u)["Service"])
    assert service["User"] == "monitord"
    assert one(u, "Service", "SupplementaryGroups") == "dialout"
    assert "PrivateDevices" not in service  # it would hide /dev/ttyUSB*
    assert service["DevicePolicy"] == "closed"
    allowed = {v.split()[0]: v.split()[1] for v in values(u, "Service", "DeviceAllow")}
    assert {"char-ttyUSB", "char-ttyACM", "char-ttyAMA"} <= set(allowed)
    assert set(allowed.values()) == {"rw"}
    assert service["StateDirectory"] == "monitord"
    assert service["ConfigurationDirectory"] == "monitord"
    assert service["RuntimeDirectory"] == "monitord"
    for key, want in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                      "ProtectHome": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
                      "LockPersonality": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6"}.items():
        assert service[key] == want, key
    # Reading the NTP state uses adjtimex(); ProtectClock= would block it (see the unit's comment).
    assert "ProtectClock" not in service
    assert "adjtimex" in values(u, "Service", "SystemCallFilter")


def test_dashboard_unit_owns_tty1() -> None:
    u = "monitord-dashboard.service"
    s = dict(parse(u)["Service"])
    assert s["ExecStart"] == f"{BINARY} dashboard -c /etc/monitord/monitord.toml"
    assert (s["TTYPath"], s["StandardInput"], s["StandardOutput"]) == ("/dev/tty1", "tty", "tty")
    assert "getty@tty1.service" in one(u, "Unit", "Conflicts")
    assert "TERM=linux" in values(u, "Service", "Environment")
    assert (s["User"], s["SupplementaryGroups"], s["Restart"]) == ("monitord", "tty", "always")


def test_sim_unit_arguments_are_what_monitord_sim_accepts() -> None:
    from monitord.scenario import find_scenario
    from monitord.simulators.cli import add_arguments

    exec_start = one("monitord-sim@.service", "Service", "ExecStart")
    assert exec_start.startswith(f"{BINARY} sim ")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(exec_start.replace("%i", "normal-outpatient-4h").split()[2:])
    # The instance names a scenario of the shipped library.
    assert find_scenario(args.scenario).is_file()
    assert (args.pump_port, args.monitor_port) == ("tcp:5020", "tcp:5021")
    assert args.link == load_config().dashboard.socket


def test_example_config_is_valid_and_matches_the_udev_names_and_the_units() -> None:
    config = load_config(ROOT / "config" / "monitord.example.toml")
    rules = (ROOT / "config" / "udev" / "99-monitord-serial.rules").read_text()
    active = [ln for ln in rules.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    links = {m for ln in active for m in re.findall(r'SYMLINK\+="([^"]+)"', ln)}
    assert config.devices.pump is not None and config.devices.monitor is not None
    assert {config.devices.pump.serial.port, config.devices.monitor.serial.port} == {f"/dev/{n}" for n in links}
    for ln in active:
        assert 'SUBSYSTEM=="tty"' in ln and 'GROUP="dialout"' in ln and 'MODE="0660"' in ln
        assert re.search(r'ATTRS\{serial\}=="[^"]+"', ln), "match by USB serial number"
    # Paths the config uses are the directories systemd creates for the service.
    assert config.dashboard.socket.startswith("/run/" + one("monitord.service", "Service", "RuntimeDirectory") + "/")
    assert config.store.state_dir == "/var/lib/" + one("monitord.service", "Service", "StateDirectory")
    assert config.mqtt.tls is None  # TLS is shown commented out
