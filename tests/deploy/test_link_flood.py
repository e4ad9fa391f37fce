"""The real daemon, under its unit's descriptor limit, flooded on the dashboard link.

``monitord run`` runs with RLIMIT_NOFILE set to the unit's ``LimitNOFILE=``; ``monitord sim``
plays the pump and the monitor on TCP ports. 1,024 connections are opened to the dashboard
socket and held; meanwhile both devices are unplugged (the simulator killed) and plugged back
in (started again at the same addresses). The drivers must reconnect and readings flow again;
the daemon must hold no more descriptors than its sessions allow, stay far from the unit's
memory and task ceilings, keep its log short, and serve a dashboard once the flood is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal

from monitord.link import server as srv
from monitord.link.client import LinkClient
from tests.deploy.bed_daemon import (
    count,
    free_port,
    open_fds,
    rss_mib,
    short_dir,
    site_config,
    spawn_daemon,
    spawn_devices,
    stop,
    unit_setting,
    wait,
)
from tests.deploy.figures import record
from tests.link.flood import close_all, open_connections, received

FLOOD = 1024
READINGS_AFTER = "SELECT count(*) FROM events WHERE kind = ? AND seq > ?"


def mib(setting: str) -> float:
    value, unit = re.fullmatch(r"(\d+)([KMG]?)", setting).groups()  # type: ignore[union-attr]
    return int(value) / 1024 ** "KMG".index(unit) * 1024 if unit else int(value) / 2**20


async def test_1024_connections_leave_the_devices_able_to_reconnect() -> None:
    nofile = int(unit_setting("LimitNOFILE"))
    memory_max = mib(unit_setting("MemoryMax"))
    tasks_max = int(unit_setting("TasksMax"))
    pump_port, monitor_port = free_port(), free_port()
    with short_dir("mflood") as d:
        db, sock = d / "state" / "monitord.db", d / "dash.sock"
        sim_log, daemon_log = d / "sim.log", d / "daemon.log"
        cfg = site_config(d, pump_port=pump_port, monitor_port=monitor_port)
        sim = await spawn_devices(pump_port, monitor_port, sim_log)
        daemon = await spawn_daemon(cfg, daemon_log, nofile=nofile)
        socks: list = []
        try:
            await wait(lambda: count(db, READINGS_AFTER, "vitals", 0) >= 3 and count(db, READINGS_AFTER, "infusion", 0) >= 3,
                       "readings from both devices", 60.0, daemon, daemon_log)
            fds_before, rss_before = open_fds(daemon.pid), rss_mib(daemon.pid)
            log_before = len(daemon_log.read_text().splitlines())

            # 1,024 connections, opened as fast as the daemon takes them (30 s at most), and held.
            socks, attempts = await open_connections(sock, FLOOD, timeout_s=30.0)
            peak_fds = open_fds(daemon.pid)

            # Unplug both devices while the flood holds its connections, then plug them back in.
            sim.kill()
            await sim.wait()
            unplugged_at = count(db, "SELECT max(seq) FROM events")
            lost = "SELECT count(*) FROM events WHERE kind = 'link' AND seq > ? AND json_extract(data, '$.state') != 'connected'"
            await wait(lambda: count(db, lost, unplugged_at) >= 2, "both links to be reported lost", 60.0, daemon,
                       daemon_log)
            sim = await spawn_devices(pump_port, monitor_port, sim_log)
            replugged_at = count(db, "SELECT max(seq) FROM events")

            def flowing() -> bool:
                nonlocal peak_fds
                peak_fds = max(peak_fds, open_fds(daemon.pid))
                return (count(db, READINGS_AFTER, "vitals", replugged_at) >= 3
                        and count(db, READINGS_AFTER, "infusion", replugged_at) >= 3)

            await wait(flowing, "readings from both devices after the replug", 60.0, daemon, daemon_log)
            assert len(socks) == FLOOD, f"{len(socks)} of {FLOOD} connected in {attempts} attempts"
            await wait(lambda: all(received(s) is not None for s in socks), "every connection answered", 60.0,
                       daemon, daemon_log)
            answers = [received(s) or b"" for s in socks]
            hellos = sum(a.startswith(b'{"type":"hello"') for a in answers)
            refusals = sum(a.startswith(b'{"type":"refused"') for a in answers)

            log_lines = len(daemon_log.read_text().splitlines()) - log_before
            rss_growth = rss_mib(daemon.pid) - rss_before
            record("link_connection_flood", tries=FLOOD, survived=hellos + refusals, lost=0, peak_fds=peak_fds,
                   fds_before=fds_before, rss_growth_mib=round(rss_growth, 1), log_lines=log_lines)
            assert hellos <= srv.MAX_CLIENTS and hellos + refusals == FLOOD
            assert peak_fds <= fds_before + srv.MAX_CLIENTS + 4, (fds_before, peak_fds)
            assert "Too many open files" not in daemon_log.read_text()
            assert rss_growth < 40 and rss_mib(daemon.pid) < memory_max / 2
            assert len(os.listdir(f"/proc/{daemon.pid}/task")) < tasks_max / 2
            assert log_lines < 200, daemon_log.read_text()[-3000:]
            close_all(socks)

            # The flood is gone: a dashboard connects and the daemon stops cleanly.
            seen: list[dict] = []
            client = LinkClient(sock, seen.append, retry_s=0.2)
            task = asyncio.create_task(client.run())
            try:
                await wait(lambda: client.connected and any(m.get("type") == "snapshot" for m in seen),
                           "a dashboard after the flood", 30.0, daemon, daemon_log)
            finally:
                await client.close()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 60) == 0, daemon_log.read_text()[-3000:]
        finally:
            close_all(socks)
            await stop(daemon, sim)
