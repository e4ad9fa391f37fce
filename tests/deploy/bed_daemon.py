"""A real ``monitord run`` in a subprocess for deploy tests, with its devices played by
``monitord sim`` on TCP ports (so killing and restarting the simulator unplugs and replugs both
devices at the same addresses), its state in a temp dir and its socket on a short path."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import socket
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "monitord.service"
STEADY = Path(__file__).with_name("steady-devices.toml")


def unit_setting(key: str) -> str:
    """One ``[Service]`` setting of the shipped daemon unit."""
    found = re.findall(rf"^{key}=(.+)$", UNIT.read_text(), re.M)
    assert len(found) == 1, f"{key}: {found}"
    return found[0].strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def short_dir(prefix: str) -> Iterator[Path]:
    """A temp dir with a short path (Unix socket paths are limited to ~107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def site_config(d: Path, *, pump_port: int | None = None, monitor_port: int | None = None, extra: str = "") -> Path:
    devices = ""
    if pump_port is not None:
        devices += f"""
[devices.pump]
driver = "modbus"
poll_interval_s = 0.5
timeout_s = 5.0
[devices.pump.serial]
port = "socket://127.0.0.1:{pump_port}"
"""
    if monitor_port is not None:
        devices += f"""
[devices.monitor]
driver = "datex"
poll_interval_s = 1.0
timeout_s = 10.0
[devices.monitor.serial]
port = "socket://127.0.0.1:{monitor_port}"
"""
    cfg = d / "site.toml"
    cfg.write_text(f"""
[bed]
id = "bed-deploy"
care_area = "outpatient-infusion"
{devices}
[store]
state_dir = "{d / 'state'}"

[mqtt]
enabled = false

[dashboard]
socket = "{d / 'dash.sock'}"
{extra}""")
    return cfg


async def spawn(*args: str, log: Path, nofile: int | None = None) -> asyncio.subprocess.Process:
    """``python *args`` from the repository root, output appended to ``log``; with ``nofile`` the
    process's open file limit is set as LimitNOFILE= sets it (soft and hard)."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    fh = log.open("ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, stdout=fh, stderr=fh, env=env,
                                                preexec_fn=limit)


async def spawn_devices(pump_port: int, monitor_port: int, log: Path) -> asyncio.subprocess.Process:
    return await spawn("-m", "monitord.cli", "sim", "--scenario", str(STEADY), "--pump", "modbus",
                       "--pump-port", f"tcp:{pump_port}", "--monitor-port", f"tcp:{monitor_port}", log=log)


async def spawn_daemon(cfg: Path, log: Path, nofile: int | None = None) -> asyncio.subprocess.Process:
    return await spawn("-m", "monitord.cli", "run", "-c", str(cfg), log=log, nofile=nofile)


async def wait(cond: Callable[[], bool], what: str, timeout: float = 60.0,
               proc: asyncio.subprocess.Process | None = None, log: Path | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if proc is not None and proc.returncode is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}:\n"
                                 + (log.read_text()[-3000:] if log else ""))
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + (log.read_text()[-3000:] if log else ""))
        await asyncio.sleep(0.1)


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(db: Path, sql: str, *params: Any) -> int:
    if not db.exists():
        return 0
    try:
        return int(query(db, sql, *params)[0][0] or 0)
    except sqlite3.OperationalError:  # not created or migrated yet
        return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def stop(*procs: asyncio.subprocess.Process | None) -> None:
    for proc in procs:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
