"""SIGKILL while the interlock holds the pump: after the restart it still holds, and the stopped
pump is not commanded again. A real daemon, simulators on ptys, the store on disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

from tests.store.test_sigkill_recovery import _config, _count, _kill_and_restart, _snapshot, _spawn, _wait

SCENARIO = Path(__file__).with_name("sigkill-interlock.toml")
STEP = "SELECT count(*) FROM events WHERE kind='interlock' AND json_extract(data,'$.step')=?"


async def test_sigkill_while_the_interlock_holds_then_restart(tmp_path: Path) -> None:
    db = tmp_path / "state" / "monitord.db"
    sock = tmp_path / "dash.sock"
    paths = tmp_path / "ports.json"
    sim_log, d1_log, d2_log = tmp_path / "sim.log", tmp_path / "daemon1.log", tmp_path / "daemon2.log"
    sim = await _spawn("-m", "monitord.cli", "sim", "--scenario", str(SCENARIO), "--pump", "modbus",
                       "--link", str(sock), "--paths-file", str(paths), "--workdir", str(tmp_path), log=sim_log)
    daemon: asyncio.subprocess.Process | None = None
    try:
        await _wait(paths.exists, "the simulator's device paths", 30.0, sim, sim_log)
        ports = json.loads(paths.read_text())
        extra = "\n[vitals]\napnoea_s = 3\n\n[interlock]\nenabled = true\nconfirm_s = 5\n"
        site = _config(tmp_path, "bed-kill4", ports["pump_protocol"], ports["pump"], ports["monitor"], extra=extra)
        site = site.replace('[devices.pump.serial]', 'allow_stop_commands = true\n[devices.pump.serial]', 1)
        cfg = tmp_path / "site.toml"
        cfg.write_text(site)
        daemon = await _spawn("-m", "monitord.cli", "run", "-c", str(cfg), log=d1_log)
        await _wait(lambda: _count(db, STEP, "confirmed") == 1, "the interlock to hold the pump", 60.0, daemon, d1_log)
        sent_before = _count(db, STEP, "command_sent")

        daemon, _ = await _kill_and_restart(daemon, cfg, db, d2_log)
        after = await _snapshot(sock, lambda s: s["infusion"].get("state") in ("stopped", "paused")
                                and s["interlock"]["phase"] == "holding")
        await asyncio.sleep(3.0)  # a few pump polls after the restart
        assert after["interlock"]["trigger"] == "resp.apnoea"
        assert _count(db, STEP, "command_sent") == sent_before  # held, not commanded again
        assert _count(db, STEP, "released") == 0
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 60) == 0, d2_log.read_text()[-3000:]
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.returncode is None:
                proc.kill()
                with contextlib.suppress(Exception):
                    await proc.wait()
